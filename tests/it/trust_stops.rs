//! Emergency stops that hold, from outside the process: the kill switch and the pauses are
//! records in the log, written through the operator API, so they survive `kill -9`, a restart
//! and a fail-over to another replica, and a record that did not come through an operator
//! route is never obeyed. A fake Quo counts every send.
//!
//! The single-daemon tests run on the suite's engine (sled, or JetStream with
//! `HOOKLOG_TEST_ENGINE=jetstream`); the fail-over test is always on JetStream (two real
//! binaries on one stream of its own).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use hooklog::consumers::controls::{ControlAction, ControlRecord, CONTROL_ROUTE, OPERATOR};
use hooklog::event::{Event, Micros, Seq, Source, Verification};

use crate::failover::{poll, Replica, LEASE_SECS};
use crate::fake_server::{answer, FakeServer};
use crate::jetstream_stream::Stream;
use crate::outbound::{BODY, LINES};

/// The statuses a message ends in.
const ENDED: [&str; 4] = ["sent", "refused", "failed", "unknown"];

/// A fake Quo that accepts every send.
fn fake_quo() -> FakeServer {
    FakeServer::start(answer(202, r#"{"data":{"id":"AC0001","status":"queued"}}"#))
}

/// The environment of a daemon that sends through `quo`, with the outbound lines, at noon
/// in New York on a weekday (quiet hours allow sending).
fn env(dir: &Path, quo: &FakeServer) -> Vec<(String, String)> {
    let file = dir.join("hooklog.toml");
    std::fs::write(&file, LINES).unwrap();
    [
        ("HOOKLOG_CONFIG", file.display().to_string()),
        ("HOOKLOG_OPENPHONE_API_KEY", "quo-test-key".to_owned()),
        ("HOOKLOG_OPENPHONE_API_BASE", format!("http://{}", quo.addr)),
        (
            "DEBUG_HOOKLOG_CLOCK_START",
            "2026-06-10T16:00:00Z".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Requests text `n` (its own recipient and content, so no cap or duplicate rule applies);
/// its id.
fn request(r: &Replica, n: u32) -> String {
    let body = json!({
        "from": "quo-main", "to": format!("+1212555{:04}", 3000 + n),
        "content": content(n), "idempotencyKey": format!("stop-{n}"),
    });
    let (code, v) = r.admin_json("POST", "/v1/messages", &body.to_string());
    assert_eq!(code, 202, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn content(n: u32) -> String {
    format!("{BODY} [stop-{n}]")
}

/// The message once it has ended (sent, refused, failed or unknown).
fn ended(r: &Replica, id: &str) -> Value {
    poll(&format!("{id} ends"), Duration::from_secs(60), || {
        let (code, m) = r.admin_json("GET", &format!("/v1/messages/{id}"), "");
        match m["status"].as_str() {
            Some(s) if code == 200 && ENDED.contains(&s) => Ok(m),
            _ => Err(format!("{code}: {m}")),
        }
    })
}

/// Whether the message was refused because of the kill switch.
fn refused_by_the_kill_switch(m: &Value) -> bool {
    m["status"] == "refused"
        && m["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["code"] == "kill_switch"))
}

/// The texts Quo was asked to send, by content.
fn sent_contents(quo: &FakeServer) -> Vec<String> {
    quo.requests()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            v["content"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn status(r: &Replica) -> Value {
    let (code, v) = r.admin_json("GET", "/admin/status", "");
    assert_eq!(code, 200, "{v}");
    v
}

fn consumer<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no consumer {name} in {status}"))
}

#[test]
fn the_kill_switch_turned_on_through_the_api_survives_kill_9_and_nothing_is_sent_until_it_is_off() {
    let quo = fake_quo();
    let tmp = crate::engine::tempdir();
    let env = env(tmp.path(), &quo);
    let mut d = Replica::new(tmp.path().join("data"));
    d.start(&env);

    for body in [
        r#"{"on": true}"#,
        r#"{"on": true, "reason": "  "}"#,
        r#"{"reason": "no on"}"#,
    ] {
        let (code, v) = d.admin_json("POST", "/admin/kill-switch", body);
        assert_eq!(code, 400, "{body}: {v}");
    }
    let (code, v) = d.admin_json("GET", "/admin/kill-switch", "");
    assert_eq!((code, &v["on"]), (200, &json!(false)), "{v}");

    let (code, on) = d.admin_json(
        "POST",
        "/admin/kill-switch",
        r#"{"on": true, "reason": "a carrier complaint about the spring campaign"}"#,
    );
    assert_eq!(code, 200, "applied before the answer: {on}");
    assert_eq!(on["applied"], true, "{on}");
    assert_eq!(on["action"], "kill_switch_on", "{on}");
    let seq = on["seq"].as_u64().unwrap();
    let m1 = ended(&d, &request(&d, 1));
    assert!(refused_by_the_kill_switch(&m1), "{m1}");

    d.kill(); // SIGKILL: nothing of the shutdown runs
    d.start(&env);
    let st = status(&d);
    let k = &st["kill_switch"];
    assert_eq!(
        (&k["on"], &k["config"]),
        (&json!(true), &json!(false)),
        "{st}"
    );
    let record = &k["record"];
    assert_eq!(record["on"], true, "{st}");
    assert_eq!(record["by"], OPERATOR, "who: {st}");
    assert_eq!(
        record["reason"], "a carrier complaint about the spring campaign",
        "why: {st}"
    );
    assert_eq!(record["seq"], seq, "which record: {st}");
    assert!(
        record["at"].as_str().is_some_and(|a| a.starts_with("20")),
        "when: {st}"
    );
    let m2 = ended(&d, &request(&d, 2));
    assert!(refused_by_the_kill_switch(&m2), "after kill -9: {m2}");
    assert!(sent_contents(&quo).is_empty(), "nothing is sent while on");

    let (code, off) = d.admin_json("POST", "/admin/kill-switch", r#"{"on": false}"#);
    assert_eq!((code, &off["applied"]), (200, &json!(true)), "{off}");
    let m3 = ended(&d, &request(&d, 3));
    assert_eq!(m3["status"], "sent", "{m3}");
    assert_eq!(
        sent_contents(&quo),
        [content(3)],
        "only the text asked after off"
    );
    let st = status(&d);
    assert_eq!(st["kill_switch"]["on"], false, "{st}");
    assert_eq!(st["kill_switch"]["record"]["seq"], off["seq"], "{st}");
}

#[test]
fn a_paused_sender_stays_paused_after_a_restart_and_a_text_allowed_before_the_kill_switch_is_refused_at_the_last_moment(
) {
    let quo = fake_quo();
    let tmp = crate::engine::tempdir();
    let env = env(tmp.path(), &quo);
    let mut d = Replica::new(tmp.path().join("data"));
    d.start(&env);

    let (code, v) = d.admin_json("POST", "/admin/consumers/controls/pause", "");
    assert_eq!(code, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be paused")),
        "{v}"
    );
    let (code, v) = d.admin_json(
        "POST",
        "/admin/consumers/sender/pause",
        r#"{"reason": "checking the template"}"#,
    );
    assert_eq!((code, &v["applied"]), (200, &json!(true)), "{v}");
    let id = request(&d, 1);
    // The gates allow it; the paused sender does not send it.
    poll("allowed", Duration::from_secs(30), || {
        let (_, m) = d.admin_json("GET", &format!("/v1/messages/{id}"), "");
        let allowed = m["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|s| s["event"] == "allowed"));
        if allowed {
            Ok(())
        } else {
            Err(m.to_string())
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sent_contents(&quo).is_empty(), "paused: nothing sent");

    assert!(d.stop().is_some_and(|s| s.success()), "a clean stop");
    d.start(&env);
    let st = status(&d);
    let sender = consumer(&st, "sender");
    assert_eq!(
        sender["state"], "paused",
        "still paused after a restart: {st}"
    );
    let pause = &sender["pause"];
    assert_eq!(
        (&pause["paused"], &pause["by"], &pause["reason"]),
        (
            &json!(true),
            &json!(OPERATOR),
            &json!("checking the template")
        ),
        "who and why: {st}"
    );
    assert!(
        pause["seq"].as_u64().is_some() && pause["at"].is_string(),
        "{st}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sent_contents(&quo).is_empty(), "still paused: nothing sent");

    // The kill switch goes on while the text waits in the sender; resuming must not send it.
    let (code, v) = d.admin_json(
        "POST",
        "/admin/kill-switch",
        r#"{"on": true, "reason": "wrong template"}"#,
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = d.admin_json("POST", "/admin/consumers/sender/resume", "");
    assert_eq!((code, &v["action"]), (200, &json!("resume")), "{v}");
    let m1 = ended(&d, &id);
    assert!(refused_by_the_kill_switch(&m1), "{m1}");
    assert!(sent_contents(&quo).is_empty(), "refused at the last moment");
    let st = status(&d);
    assert_eq!(consumer(&st, "sender")["state"], "running", "{st}");
    assert_eq!(consumer(&st, "sender")["pause"]["paused"], false, "{st}");

    let (code, _) = d.admin_json("POST", "/admin/kill-switch", r#"{"on": false}"#);
    assert_eq!(code, 200);
    let m2 = ended(&d, &request(&d, 2));
    assert_eq!(m2["status"], "sent", "{m2}");
    assert_eq!(sent_contents(&quo), [content(2)]);
}

#[test]
fn a_control_record_that_did_not_come_through_an_operator_route_is_never_obeyed() {
    let quo = fake_quo();
    let tmp = crate::engine::tempdir();
    let env = env(tmp.path(), &quo);
    let data = tmp.path().join("data");
    let mut d = Replica::new(data.clone());
    d.start(&env);
    let (code, on) = d.admin_json(
        "POST",
        "/admin/kill-switch",
        r#"{"on": true, "reason": "incident 42"}"#,
    );
    assert_eq!(code, 200, "{on}");

    // The generic append route cannot write one, whatever source it claims.
    let off = ControlRecord {
        action: ControlAction::KillSwitch { on: false },
        reason: Some("forged".into()),
        at: Micros::now().to_rfc3339(),
        by: OPERATOR.into(),
    };
    let off_json = serde_json::to_string(&off).unwrap();
    for source in ["internal", "backfill-twilio", "outbound"] {
        let body = json!({"source": source, "route": CONTROL_ROUTE, "body": off_json});
        let (code, v) = d.admin_json("POST", "/admin/events", &body.to_string());
        assert_eq!(code, 400, "{source}: {v}");
    }

    // Records written into the log by another path (here: straight into the stopped
    // daemon's log, as a hand-made import would) that claim to be the operator's.
    assert!(d.stop().is_some_and(|s| s.success()));
    let log = crate::engine::open_log(&data, &[]);
    let pause = ControlRecord {
        action: ControlAction::Pause {
            consumer: "outbound".into(),
        },
        ..off.clone()
    };
    // The import path (`hooklog::log::restore`) keeps whatever verification it is given.
    let forged_records: Vec<Event> = [&off, &pause]
        .into_iter()
        .map(|record| Event {
            seq: Seq(0),
            received_at: Micros::now(),
            source: Source::BackfillTwilio,
            route: CONTROL_ROUTE.to_owned(),
            headers: vec![],
            body: serde_json::to_vec(record).unwrap(),
            verification: Verification::AdminToken,
        })
        .collect();
    let forged: Vec<u64> = hooklog::log::restore(log.as_ref(), forged_records)
        .unwrap()
        .into_iter()
        .map(|s| s.0)
        .collect();
    log.close().unwrap();
    drop(log);

    d.start(&env);
    let letters = poll("dead-lettered", Duration::from_secs(30), || {
        let (_, v) = d.admin_json("GET", "/admin/dead-letters?consumer=controls", "");
        let seqs: Vec<u64> = v["dead_letters"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["seq"].as_u64()).collect())
            .unwrap_or_default();
        if seqs == forged {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert!(
        letters
            .to_string()
            .contains("not written by an operator route"),
        "{letters}"
    );
    let st = status(&d);
    assert_eq!(st["kill_switch"]["on"], true, "{st}");
    assert_eq!(st["kill_switch"]["record"]["seq"], on["seq"], "{st}");
    assert!(
        consumer(&st, "outbound")["pause"].is_null(),
        "the forged pause was not applied: {st}"
    );
    let m = ended(&d, &request(&d, 1));
    assert!(refused_by_the_kill_switch(&m), "{m}");
    assert!(sent_contents(&quo).is_empty());
}

#[test]
fn the_kill_switch_survives_a_fail_over_and_a_standby_appends_it_for_the_leader() {
    let stream = Stream::on_machine();
    let quo = fake_quo();
    let tmp = crate::engine::tempdir();
    let mut env = env(tmp.path(), &quo);
    env.extend(
        [
            ("HOOKLOG_LOG_BACKEND", "jetstream".to_owned()),
            ("HOOKLOG_LOG_JETSTREAM_NATS_URL", stream.url.clone()),
            ("HOOKLOG_LOG_JETSTREAM_STREAM", stream.name.clone()),
            ("HOOKLOG_LOG_JETSTREAM_SUBJECT", stream.subject.clone()),
            ("HOOKLOG_LOG_JETSTREAM_LEASE_SECS", LEASE_SECS.to_string()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let mut a = Replica::new(tmp.path().join("a"));
    let mut b = Replica::new(tmp.path().join("b"));
    a.start(&env);
    poll("A leads", Duration::from_secs(30), || match a.leader() {
        Some(1) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    b.start(&env);
    poll("B is a standby", Duration::from_secs(10), || {
        match b.leader() {
            Some(0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // Turned on through the standby: appended there, applied by the leader.
    let (code, on) = b.admin_json(
        "POST",
        "/admin/kill-switch",
        r#"{"on": true, "reason": "opt-out sync is broken"}"#,
    );
    assert_eq!((code, &on["applied"]), (202, &json!(false)), "{on}");
    let seq = on["seq"].as_u64().unwrap();
    poll("A applies it", Duration::from_secs(10), || {
        let st = status(&a);
        if st["kill_switch"]["record"]["seq"] == seq && st["kill_switch"]["on"] == true {
            Ok(())
        } else {
            Err(st["kill_switch"].to_string())
        }
    });
    let m1 = ended(&a, &request(&a, 1));
    assert!(refused_by_the_kill_switch(&m1), "{m1}");

    // The leader dies; B takes over from its own (empty) state and obeys the switch.
    a.kill();
    poll("B takes the lease", Duration::from_secs(60), || {
        match b.leader() {
            Some(1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let st = poll("B shows the switch", Duration::from_secs(30), || {
        let st = status(&b);
        if st["kill_switch"]["record"]["seq"] == seq {
            Ok(st)
        } else {
            Err(st["kill_switch"].to_string())
        }
    });
    let k = &st["kill_switch"];
    assert_eq!(
        (&k["on"], &k["record"]["by"], &k["record"]["reason"]),
        (
            &json!(true),
            &json!(OPERATOR),
            &json!("opt-out sync is broken")
        ),
        "{st}"
    );
    let m2 = ended(&b, &request(&b, 2));
    assert!(refused_by_the_kill_switch(&m2), "on the new leader: {m2}");
    assert!(sent_contents(&quo).is_empty(), "nothing sent on either");

    let (code, off) = b.admin_json("POST", "/admin/kill-switch", r#"{"on": false}"#);
    assert_eq!((code, &off["applied"]), (200, &json!(true)), "{off}");
    let m3 = ended(&b, &request(&b, 3));
    assert_eq!(m3["status"], "sent", "{m3}");
    assert_eq!(sent_contents(&quo), [content(3)]);
    b.stop();
    drop((a, b, tmp, stream));
}
