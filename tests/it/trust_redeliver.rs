//! Redelivery with limits, against the real server (issue 16): a `rewind … --redeliver` of
//! the sender or of dispatch reports what it would perform again and does nothing until the
//! operator confirms, within `max_redeliver` unless raised for that one call; and every
//! re-send passes the full gate set again at the last moment, counting toward the caps.
//!
//! The 10 000 allowed messages are written into the log with the library (request, `allow`
//! decision, attempt and `sent` result each, as the daemon writes them) before the daemon
//! starts on it: sending them through the API would take the sender 1000 s at Quo's 10/s.

use std::time::{Duration, Instant};

use hooklog::consumers::outbound::{MessageId, OutboundRecord};
use hooklog::event::Micros;
use serde_json::{json, Value};

use crate::fake_server::{answer, FakeServer};
use crate::outbound::{outbound_config, BODY};
use crate::util::TestServer;

/// The outbound clock's noon in New York ([`outbound_config`]), and the originals' time:
/// an hour before, so they are inside every 24 h window the gates read.
const DECIDED_AT: &str = "2026-06-10T15:00:00Z";

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn caught_up(s: &TestServer, consumer: &str, secs: u64) {
    wait_for(&format!("{consumer} to catch up"), secs, || {
        let st = s.status();
        st.consumers
            .iter()
            .any(|c| c.name == consumer && c.cursor == st.log.last_seq)
    });
}

fn cursor(s: &TestServer, consumer: &str) -> u64 {
    s.status()
        .consumers
        .iter()
        .find(|c| c.name == consumer)
        .map(|c| c.cursor)
        .unwrap_or_default()
}

fn rewind(s: &TestServer, consumer: &str, body: Value) -> (u16, Value) {
    let (code, text) = s.admin_send(
        "POST",
        &format!("/admin/consumers/{consumer}/rewind"),
        &body.to_string(),
    );
    (code, serde_json::from_str(&text).unwrap_or_default())
}

/// One allowed message that was sent (its four records), built from JSON so that fields
/// added later with defaults do not break it.
fn sent_message(i: usize) -> [OutboundRecord; 4] {
    let id = MessageId::generate(Micros::now());
    let to = format!("+1212555{i:04}");
    let record = |kind: &str, body: Value| -> OutboundRecord {
        let r = match kind {
            "request" => serde_json::from_value(body).map(OutboundRecord::Request),
            "decision" => serde_json::from_value(body).map(OutboundRecord::Decision),
            "attempt" => serde_json::from_value(body).map(OutboundRecord::Attempt),
            _ => serde_json::from_value(body).map(OutboundRecord::Result),
        };
        r.unwrap()
    };
    [
        record(
            "request",
            json!({"id": id, "idempotency_key": null, "from": "quo-main", "provider": null,
                   "to": to, "content": BODY, "requested_at": DECIDED_AT}),
        ),
        record(
            "decision",
            json!({"id": id, "verdict": "allow", "reasons": [], "hold_until": null,
                   "line_id": "quo-main", "from_number": "+12125550199", "provider": "openphone",
                   "to": to, "evaluation": 1, "decided_at": DECIDED_AT}),
        ),
        record(
            "attempt",
            json!({"id": id, "attempt": 1, "provider": "openphone", "from": "+12125550199",
                   "to": to, "redelivery": false, "at": DECIDED_AT}),
        ),
        record(
            "result",
            json!({"id": id, "attempt": 1, "status": "sent", "outcome": "sent",
                   "provider_id": format!("AC{i}"), "code": null, "error": null, "reasons": [],
                   "tries": 1, "at": DECIDED_AT}),
        ),
    ]
}

/// Appends `n` sent messages to `log`: every request, then every decision, every attempt,
/// every result (appends in flight together may be numbered in any order on JetStream, so
/// each kind waits for the one before it). Returns the message ids.
fn write_sent_messages(log: &std::sync::Arc<dyn hooklog::log::Log>, n: usize) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let messages: Vec<[OutboundRecord; 4]> = (0..n).map(sent_message).collect();
    let ids = messages
        .iter()
        .filter_map(|m| match &m[0] {
            OutboundRecord::Request(r) => Some(r.id.to_string()),
            _ => None,
        })
        .collect();
    rt.block_on(async {
        for kind in 0..4 {
            let tickets: Vec<_> = messages
                .iter()
                .map(|m| log.append(m[kind].to_verified(Micros::now())))
                .collect();
            for t in tickets {
                t.await.unwrap();
            }
        }
    });
    ids
}

fn quo_env(quo: &FakeServer) -> Vec<(String, String)> {
    vec![
        ("HOOKLOG_OPENPHONE_API_KEY".into(), "quo-test-key".into()),
        (
            "HOOKLOG_OPENPHONE_API_BASE".into(),
            format!("http://{}", quo.addr),
        ),
    ]
}

fn message_of(s: &TestServer, id: &str) -> Value {
    let (code, text) = s.admin_get(&format!("/v1/messages/{id}"));
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The reason codes of the `refused` results for message `id` appended after record `after`.
fn refused_codes(s: &TestServer, after: u64, id: &str) -> Vec<Vec<String>> {
    let (code, text) = s.admin_get(&format!("/admin/events?after={after}&limit=1000"));
    assert_eq!(code, 200, "{text}");
    let page: Value = serde_json::from_str(&text).unwrap();
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["route"] == "/internal/outbound/result")
        .filter_map(|e| serde_json::from_str::<Value>(e["body"].as_str()?).ok())
        .filter(|r| r["id"] == id && r["status"] == "refused")
        .map(|r| {
            r["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|x| x["code"].as_str().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// How many records of the outbound path were appended after record `after`.
fn outbound_after(s: &TestServer, after: u64) -> usize {
    let (code, text) = s.admin_get(&format!("/admin/events?after={after}&limit=1000"));
    assert_eq!(code, 200, "{text}");
    let page: Value = serde_json::from_str(&text).unwrap();
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["route"]
                .as_str()
                .is_some_and(|r| r.starts_with("/internal/outbound/"))
        })
        .count()
}

/// Waits until message `id` shows a refused re-send.
fn resend_refused(s: &TestServer, id: &str) -> Value {
    s.admin_until(&format!("/v1/messages/{id}"), |m| {
        m["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|s| s["event"] == "redelivery_refused"))
    })
}

fn redeliveries(m: &Value) -> usize {
    m["history"].as_array().map_or(0, |h| {
        h.iter().filter(|s| s["event"] == "redelivery").count()
    })
}

#[test]
fn a_redelivery_of_ten_thousand_sent_messages_is_refused_unconfirmed_and_over_the_limit_and_a_small_one_is_gated_again(
) {
    const N: usize = 10_000;
    let started = Instant::now();
    let quo = FakeServer::start(answer(202, r#"{"data":{"id":"AC9","status":"queued"}}"#));
    let tmp = crate::engine::tempdir();
    let env = quo_env(&quo);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The line's daily cap is above the 10 000 originals only for the small range below to
    // be refused by it once they count: 10 000 were sent on quo-main in the last 24 h.
    let cfg = outbound_config(tmp.path(), "", &env);
    let log = crate::engine::open_log(&tmp.path().join("data"), &[]);
    let ids = write_sent_messages(&log, N);
    let s = TestServer::start(cfg, Some(log));
    caught_up(&s, "sender", 60);
    // The messages' records are 1..=4N, the decisions N+1..=2N.
    let written = 4 * N as u64;
    let last = s.status().log.last_seq;
    assert!(last >= written);
    assert_eq!(quo.requests().len(), 0, "every message was sent before");

    // 1. Without confirmation: the report, a 409, nothing done.
    let (code, v) = rewind(&s, "sender", json!({"to_seq": 0, "redeliver": true}));
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"], "redeliver_unconfirmed");
    let plan = &v["report"]["redelivery"];
    assert_eq!(plan["effects"], N as u64, "{v}");
    assert_eq!(plan["unit"], "sends");
    assert_eq!(plan["limit"], 100);
    let n = N as u64;
    assert_eq!(
        (plan["first_seq"].as_u64(), plan["last_seq"].as_u64()),
        (Some(n + 1), Some(2 * n))
    );
    assert!(ids.iter().any(|id| plan["sample"][0] == id.as_str()), "{v}");
    assert_eq!(plan["sample"].as_array().map(Vec::len), Some(10));
    let message_text = v["message"].as_str().unwrap_or_default();
    assert!(
        message_text.contains(&format!(
            "hooklog-replay rewind sender --to-seq 0 --redeliver --yes --max {N}"
        )),
        "{message_text}"
    );

    // 2. Confirmed, over [sender] max_redeliver (100): refused.
    let (code, v) = rewind(
        &s,
        "sender",
        json!({"to_seq": 0, "redeliver": true, "confirm": true}),
    );
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"], "redeliver_over_limit");
    assert_eq!(v["report"]["redelivery"]["effects"], N as u64);
    // Raised for this call, but below the count: still refused.
    let (code, v) = rewind(
        &s,
        "sender",
        json!({"to_seq": 0, "redeliver": true, "confirm": true, "max_redeliver": N - 1}),
    );
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("redeliver_over_limit")),
        "{v}"
    );
    // `confirm` without `redeliver` is a mistake, not a plain rewind.
    let (code, _) = rewind(&s, "sender", json!({"to_seq": 0, "confirm": true}));
    assert_eq!(code, 400);

    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(quo.requests().len(), 0, "nothing was sent");
    assert!(cursor(&s, "sender") >= last, "the cursor did not move back");
    assert_eq!(outbound_after(&s, last), 0, "no attempt, no result");

    // 3. Within the limit (the last three messages), confirmed: every re-send is gated
    //    again, and the 10 000 originals on quo-main are over its daily cap (200): refused
    //    with that reason, no provider call.
    // The last three decisions (every attempt and result follows them: they are not sends).
    let to_seq = 2 * n - 3;
    let last_three: Vec<String> = {
        let (code, text) = s.admin_get(&format!("/admin/events?after={to_seq}&limit=3"));
        assert_eq!(code, 200, "{text}");
        let page: Value = serde_json::from_str(&text).unwrap();
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
                body["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(last_three.len(), 3);
    let (code, v) = rewind(
        &s,
        "sender",
        json!({"to_seq": to_seq, "redeliver": true, "confirm": true}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["redelivery"]["effects"], 3, "{v}");
    for id in &last_three {
        let m = resend_refused(&s, id);
        assert_eq!(m["status"], "sent", "the original went out: {m}");
        assert_eq!(redeliveries(&m), 0, "no attempt: {m}");
        assert_eq!(refused_codes(&s, last, id), [["line_daily_cap"]], "{m}");
    }
    caught_up(&s, "sender", 15);
    assert_eq!(
        quo.requests().len(),
        0,
        "a refused re-send calls no provider"
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn within_the_limit_a_resend_whose_recipient_cap_is_now_reached_is_refused_and_one_that_passes_goes_out_once(
) {
    let quo = FakeServer::start(answer(202, r#"{"data":{"id":"AC1","status":"queued"}}"#));
    let tmp = crate::engine::tempdir();
    let env = quo_env(&quo);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = TestServer::start(outbound_config(tmp.path(), "", &env), None);
    let post = |to: &str, content: &str| -> String {
        let (code, text) = s.admin_send(
            "POST",
            "/v1/messages",
            &json!({"from": "quo-main", "to": to, "content": content}).to_string(),
        );
        assert_eq!(code, 202, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        let m = s.admin_until(&format!("/v1/messages/{id}"), |m| {
            ["sent", "failed", "refused", "unknown"].contains(&m["status"].as_str().unwrap_or(""))
        });
        assert_eq!(m["status"], "sent", "{m}");
        id
    };
    // Three different messages to one person (the cap is 3 in 24 h), one to another.
    let capped: Vec<String> = ["first", "second", "third"]
        .iter()
        .map(|w| post("+12125550100", &format!("{BODY} ({w})")))
        .collect();
    let other = post("+12125550101", BODY);
    caught_up(&s, "sender", 15);
    assert_eq!(quo.requests().len(), 4);

    // Unconfirmed: reported, nothing sent.
    let (code, v) = rewind(&s, "sender", json!({"to_seq": 0, "redeliver": true}));
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["report"]["redelivery"]["effects"], 4);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(quo.requests().len(), 4);

    let before = s.status().log.last_seq;
    let (code, v) = rewind(
        &s,
        "sender",
        json!({"to_seq": 0, "redeliver": true, "confirm": true}),
    );
    assert_eq!(code, 200, "{v}");
    let m = s.admin_until(&format!("/v1/messages/{other}"), |m| {
        redeliveries(m) == 1 && m["status"] == "sent"
    });
    assert_eq!(m["attempts"], 2, "{m}");
    for id in &capped {
        let m = resend_refused(&s, id);
        assert_eq!(redeliveries(&m), 0, "{m}");
        assert_eq!(
            refused_codes(&s, before, id),
            [["recipient_cap_24h"]],
            "{m}"
        );
    }
    caught_up(&s, "sender", 15);
    std::thread::sleep(Duration::from_millis(500));
    let calls = quo.requests();
    assert_eq!(calls.len(), 5, "exactly one re-send went out");
    assert!(calls[4].body.contains("+12125550101"), "{}", calls[4].body);
    assert_eq!(message_of(&s, &other)["status"], "sent");
    // The window is closed: a plain rewind sends nothing more.
    let (code, _) = rewind(&s, "sender", json!({"to_seq": 0}));
    assert_eq!(code, 200);
    caught_up(&s, "sender", 15);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(quo.requests().len(), 5);
}

#[test]
fn a_dispatch_redelivery_is_refused_unconfirmed_and_over_its_limit_and_a_raised_one_wakes_each_agent_once_more(
) {
    use hooklog::fixture::Fixture;
    let gateway = FakeServer::start(answer(202, r#"{"ok":true}"#));
    let tmp = crate::engine::tempdir();
    let cfg = crate::dispatch::config_with_dispatch_and(tmp.path(), &gateway, "max_redeliver = 2");
    let s = TestServer::start(cfg, None);
    for name in [
        "legacy_message_received_v4.json",
        "legacy_call_ringing_v4.json",
        "legacy_call_completed_v4.json",
    ] {
        let f = Fixture::load(&crate::util::fixtures_dir().join("openphone").join(name)).unwrap();
        assert_eq!(s.send_fixture(&f).status, 200, "{name}");
    }
    wait_for("three wake-ups", 10, || gateway.requests().len() == 3);
    caught_up(&s, "dispatch", 10);
    let last = s.status().log.last_seq;

    let (code, v) = rewind(&s, "dispatch", json!({"to_seq": 0, "redeliver": true}));
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("redeliver_unconfirmed")),
        "{v}"
    );
    let plan = &v["report"]["redelivery"];
    assert_eq!(
        (plan["unit"].as_str(), plan["effects"].as_u64()),
        (Some("wake-ups"), Some(3))
    );
    assert_eq!(plan["limit"], 2);
    let (code, v) = rewind(
        &s,
        "dispatch",
        json!({"to_seq": 0, "redeliver": true, "confirm": true}),
    );
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("redeliver_over_limit")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--redeliver --yes --max 3"),
        "{v}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gateway.requests().len(), 3, "nothing dispatched again");
    assert_eq!(s.status().log.last_seq, last);

    let (code, v) = rewind(
        &s,
        "dispatch",
        json!({"to_seq": 0, "redeliver": true, "confirm": true, "max_redeliver": 3}),
    );
    assert_eq!(code, 200, "{v}");
    wait_for("three more wake-ups", 10, || gateway.requests().len() >= 6);
    caught_up(&s, "dispatch", 10);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gateway.requests().len(), 6, "each once more");
}
