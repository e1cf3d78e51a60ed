//! The outbound API on the admin listener, against the real server: requests are validated,
//! logged, decided by the gates and readable back; one idempotency key is one message.

use std::path::Path;

use chrono::{TimeZone, Utc};
use hooklog::clock::Clock;
use hooklog::config::Config;

use crate::util::{config, TestServer};

/// Two lines: a Quo line that may send and a Twilio line whose 10DLC is pending.
pub const LINES: &str = r#"
[[lines]]
id = "quo-main"
number = "+12125550199"
provider = "openphone"
ten_dlc = "approved"
business_name = "Acme Homes"

[[lines]]
id = "tw-main"
number = "+14155550199"
provider = "twilio"
ten_dlc = "approved"
business_name = "Acme Homes"

[[lines]]
id = "tw-pending"
number = "+13125550199"
provider = "twilio"
ten_dlc = "pending"
business_name = "Acme Homes"
"#;

/// A first message that names the business and says how to opt out.
pub const BODY: &str = "Hi, Sam from Acme Homes here. Still own 12 Elm St? Reply STOP to opt out";

/// A config with [`LINES`] plus `extra_toml`, whose outbound clock reads noon in New York on
/// a weekday (quiet hours make "send now" depend on the hour).
pub fn outbound_config(dir: &Path, extra_toml: &str, env: &[(&str, &str)]) -> Config {
    let file = dir.join("hooklog.toml");
    std::fs::write(&file, format!("{LINES}\n{extra_toml}")).unwrap();
    let mut c = config(Some(&file), &dir.join("data"), env);
    c.clock = Clock::starting_at(Utc.with_ymd_and_hms(2026, 6, 10, 16, 0, 0).unwrap());
    c
}

fn post(s: &TestServer, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (code, text) = s.admin_send("POST", "/v1/messages", &body.to_string());
    (code, serde_json::from_str(&text).unwrap_or_default())
}

fn decided(v: &serde_json::Value) -> bool {
    v["status"] != "pending"
        || v["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|s| s["event"] == "allowed"))
}

#[test]
fn a_request_without_a_line_is_refused_with_400_and_nothing_is_logged() {
    let tmp = crate::engine::tempdir();
    let s = TestServer::start(outbound_config(tmp.path(), "", &[]), None);
    let before = s.status().log.last_seq;
    for body in [
        serde_json::json!({"to": "+12125550100", "content": BODY}),
        serde_json::json!({"from": "  ", "to": "+12125550100", "content": BODY}),
        serde_json::json!({"from": "quo-main", "content": BODY}),
        serde_json::json!({"from": "quo-main", "to": "+12125550100", "content": BODY, "provider": "sms"}),
    ] {
        let (code, v) = post(&s, body.clone());
        assert_eq!(code, 400, "{body}: {v}");
    }
    let (code, v) = post(
        &s,
        serde_json::json!({"to": "+12125550100", "content": BODY}),
    );
    assert_eq!(code, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`from` is required"),
        "{v}"
    );
    let code = crate::util::request(
        s.admin,
        "POST",
        "/v1/messages",
        &[],
        br#"{"from":"quo-main","to":"+12125550100","content":"x"}"#,
    )
    .status;
    assert_eq!(code, 401, "the outbound API needs the admin token");
    assert_eq!(s.status().log.last_seq, before, "nothing was appended");
    let (code, _) = s.admin_get("/v1/messages/msg_00000000000000000000000000");
    assert_eq!(code, 404);
    let (code, _) = s.admin_get("/v1/messages/msg_not-an-id");
    assert_eq!(code, 404);
}

#[test]
fn a_request_is_accepted_decided_by_the_gates_and_readable_with_its_history() {
    let tmp = crate::engine::tempdir();
    let s = TestServer::start(outbound_config(tmp.path(), "", &[]), None);
    let (code, v) = post(
        &s,
        serde_json::json!({"from": "quo-main", "to": "(212) 555-0100", "content": BODY}),
    );
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["status"], "pending");
    let id = v["id"].as_str().unwrap().to_owned();
    let m = s.admin_until(&format!("/v1/messages/{id}"), decided);
    assert_eq!(m["line_id"], "quo-main");
    assert_eq!(m["from_number"], "+12125550199");
    assert_eq!(m["provider"], "openphone");
    let steps: Vec<&str> = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event"].as_str().unwrap())
        .collect();
    assert_eq!(&steps[..2], ["requested", "allowed"]);
    let routes: Vec<String> = s.events().into_iter().map(|e| e.route).collect();
    assert!(routes.contains(&"/v1/messages".to_owned()), "{routes:?}");
    assert!(
        routes.contains(&"/internal/outbound/decision".to_owned()),
        "the decision is in the log: {routes:?}"
    );

    // A pending 10DLC line is refused, with the reason readable.
    let (_, v) = post(
        &s,
        serde_json::json!({"from": "tw-pending", "to": "+12125550100", "content": format!("{BODY}.")}),
    );
    let m = s.admin_until(
        &format!("/v1/messages/{}", v["id"].as_str().unwrap()),
        decided,
    );
    assert_eq!(m["status"], "refused", "{m}");
    assert_eq!(m["reasons"][0]["code"], "line_ten_dlc_pending");
}

#[test]
fn the_same_idempotency_key_never_creates_a_second_message() {
    let tmp = crate::engine::tempdir();
    let s = TestServer::start(outbound_config(tmp.path(), "", &[]), None);
    let body = serde_json::json!({
        "from": "quo-main", "to": "+12125550100", "content": BODY, "idempotencyKey": "lead-42-day-1"
    });
    let (c1, a) = post(&s, body.clone());
    let (c2, b) = post(&s, body.clone());
    assert_eq!((c1, c2), (202, 202));
    assert_eq!(a["id"], b["id"]);
    s.admin_until(
        &format!("/v1/messages/{}", a["id"].as_str().unwrap()),
        decided,
    );
    let (_, c) = post(&s, body);
    assert_eq!(a["id"], c["id"], "also once decided");
    // The key may come as a header too.
    let h = crate::util::request(
        s.admin,
        "POST",
        "/v1/messages",
        &[
            ("authorization", &format!("Bearer {}", s.token)),
            ("idempotency-key", "lead-42-day-1"),
        ],
        serde_json::json!({"from": "quo-main", "to": "+12125550100", "content": BODY})
            .to_string()
            .as_bytes(),
    );
    let h: serde_json::Value = serde_json::from_str(&h.body).unwrap();
    assert_eq!(a["id"], h["id"]);
    let requests = s
        .events()
        .into_iter()
        .filter(|e| e.route == "/v1/messages")
        .count();
    assert_eq!(requests, 1, "one request record in the log");
}

#[test]
fn an_opted_out_recipient_is_refused_on_every_line_with_the_reason() {
    let tmp = crate::engine::tempdir();
    let s = TestServer::start(outbound_config(tmp.path(), "", &[]), None);
    let (code, _) = s.admin_send(
        "POST",
        "/admin/optouts",
        r#"{"number":"+12125550100","reason":"said stop on a call"}"#,
    );
    assert_eq!(code, 202);
    s.admin_until("/admin/optouts", |v| {
        v["optouts"].as_array().is_some_and(|a| !a.is_empty())
    });
    let (_, v) = post(
        &s,
        serde_json::json!({"from": "+12125550199", "to": "+12125550100", "content": BODY}),
    );
    let m = s.admin_until(
        &format!("/v1/messages/{}", v["id"].as_str().unwrap()),
        decided,
    );
    assert_eq!(m["status"], "refused");
    assert_eq!(m["reasons"][0]["code"], "recipient_opted_out");
}

/// The admin token a daemon generated in its data directory.
pub(crate) fn token_of(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// An admin request with `token`; the answer's status and JSON body (null if not JSON).
pub(crate) fn admin_json(
    admin: std::net::SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let r = crate::util::request(
        admin,
        method,
        path,
        &[("authorization", &format!("Bearer {token}"))],
        body.as_bytes(),
    );
    (r.status, serde_json::from_str(&r.body).unwrap_or_default())
}

#[test]
fn repeated_kill_9_while_agents_request_and_the_sender_sends_loses_no_request_and_sends_none_twice()
{
    use crate::fake_server::{answer, FakeServer};
    use rand::Rng;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let quo = FakeServer::start(answer(202, r#"{"data":{"id":"AC0001","status":"queued"}}"#));
    let tmp = crate::engine::tempdir();
    let file = tmp.path().join("hooklog.toml");
    std::fs::write(&file, LINES).unwrap();
    let data = tmp.path().join("data");
    let env = [
        ("HOOKLOG_CONFIG", file.display().to_string()),
        ("HOOKLOG_OPENPHONE_API_KEY", "quo-test-key".to_owned()),
        ("HOOKLOG_OPENPHONE_API_BASE", format!("http://{}", quo.addr)),
        (
            "DEBUG_HOOKLOG_CLOCK_START",
            "2026-06-10T16:00:00Z".to_owned(),
        ),
    ];
    let mut ports = (crate::crash::free_port(), crate::crash::free_port());
    // id → content of every request the API acknowledged (202).
    let accepted: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut next = 0u32;
    for round in 0..4 {
        let mut daemon = crate::crash::spawn_daemon_with(&data, &mut ports, &env);
        let admin = std::net::SocketAddr::from(([127, 0, 0, 1], ports.1));
        let token = token_of(&data);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = {
            let (stop, accepted, token) = (stop.clone(), accepted.clone(), token.clone());
            let first = next;
            std::thread::spawn(move || {
                let mut n = first;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < first + 40 {
                    // One recipient and one text per message: no cap or duplicate rule applies.
                    let content = format!("{BODY} [{round}-{n}]");
                    let body = serde_json::json!({
                        "from": "quo-main", "to": format!("+1212555{:04}", 1000 + n),
                        "content": content, "idempotencyKey": format!("k-{n}"),
                    });
                    let r = ureq::post(&format!("http://{admin}/v1/messages"))
                        .set("authorization", &format!("Bearer {token}"))
                        .timeout(Duration::from_secs(2))
                        .send_string(&body.to_string());
                    match r {
                        Ok(resp) if resp.status() == 202 => {
                            let v: serde_json::Value = resp.into_json().unwrap();
                            let id = v["id"].as_str().unwrap().to_owned();
                            accepted.lock().unwrap().insert(id, content);
                        }
                        _ => break, // the daemon died under us
                    }
                    n += 1;
                }
                n
            })
        };
        std::thread::sleep(Duration::from_millis(
            rand::thread_rng().gen_range(200..700),
        ));
        daemon.child.kill().unwrap(); // SIGKILL, mid-request and mid-send
        daemon.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        next = client.join().unwrap() + 1;
    }

    let mut daemon = crate::crash::spawn_daemon_with(&data, &mut ports, &env);
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], ports.1));
    let token = token_of(&data);
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 4,
        "the rounds accepted requests: {}",
        accepted.len()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut statuses = BTreeMap::new();
    for id in accepted.keys() {
        loop {
            let (code, m) = admin_json(admin, &token, "GET", &format!("/v1/messages/{id}"), "");
            assert_eq!(code, 200, "an acknowledged request was lost: {id}");
            let status = m["status"].as_str().unwrap().to_owned();
            if ["sent", "unknown", "failed", "refused"].contains(&status.as_str()) {
                statuses.insert(id.clone(), status);
                break;
            }
            assert!(Instant::now() < deadline, "{id} stuck at {m}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut calls: BTreeMap<String, usize> = BTreeMap::new();
    for r in quo.requests() {
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        *calls
            .entry(v["content"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for (id, content) in &accepted {
        let n = calls.get(content).copied().unwrap_or(0);
        match statuses[id].as_str() {
            "sent" => assert_eq!(n, 1, "{id} is sent: exactly one call"),
            "unknown" => assert!(n <= 1, "{id} is unknown: at most one call, got {n}"),
            other => panic!("{id} ended {other}: every request here passes the gates"),
        }
    }
    assert!(
        calls.values().all(|&n| n == 1),
        "no text was sent twice: {calls:?}"
    );
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}

#[test]
fn killing_the_daemon_between_a_send_attempt_and_its_result_leaves_the_message_unknown_not_sent_twice(
) {
    use crate::fake_server::{FakeServer, Reply};
    use std::time::{Duration, Instant};

    // Quo takes the request and never answers: the daemon is killed while it waits.
    let quo = FakeServer::start(Reply::Stall(Duration::from_secs(60)));
    let tmp = crate::engine::tempdir();
    let file = tmp.path().join("hooklog.toml");
    std::fs::write(&file, LINES).unwrap();
    let data = tmp.path().join("data");
    let env = [
        ("HOOKLOG_CONFIG", file.display().to_string()),
        ("HOOKLOG_OPENPHONE_API_KEY", "quo-test-key".to_owned()),
        ("HOOKLOG_OPENPHONE_API_BASE", format!("http://{}", quo.addr)),
        // Noon in New York on a weekday (debug builds only).
        (
            "DEBUG_HOOKLOG_CLOCK_START",
            "2026-06-10T16:00:00Z".to_owned(),
        ),
    ];
    let mut ports = (crate::crash::free_port(), crate::crash::free_port());
    let mut daemon = crate::crash::spawn_daemon_with(&data, &mut ports, &env);
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], ports.1));
    let token = token_of(&data);
    let (code, v) = admin_json(
        admin,
        &token,
        "POST",
        "/v1/messages",
        &serde_json::json!({"from": "quo-main", "to": "+12125550100", "content": BODY}).to_string(),
    );
    assert_eq!(code, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    while quo.requests().is_empty() {
        assert!(Instant::now() < deadline, "the sender never called Quo");
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.child.kill().unwrap(); // SIGKILL
    daemon.child.wait().unwrap();

    let mut daemon = crate::crash::spawn_daemon_with(&data, &mut ports, &env);
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], ports.1));
    let deadline = Instant::now() + Duration::from_secs(15);
    let m = loop {
        let (_, m) = admin_json(admin, &token, "GET", &format!("/v1/messages/{id}"), "");
        if m["status"] == "unknown" {
            break m;
        }
        assert!(Instant::now() < deadline, "never became unknown: {m}");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(quo.requests().len(), 1, "never sent twice");
    let steps: Vec<&str> = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["requested", "allowed", "attempt", "unknown"], "{m}");
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn settled(s: &TestServer, id: &str) -> serde_json::Value {
    s.admin_until(&format!("/v1/messages/{id}"), |m| {
        ["sent", "failed", "unknown", "refused"].contains(&m["status"].as_str().unwrap_or(""))
    })
}

fn caught_up(s: &TestServer, consumer: &str) {
    wait_for(&format!("{consumer} to catch up"), 15, || {
        let st = s.status();
        st.consumers
            .iter()
            .any(|c| c.name == consumer && c.cursor == st.log.last_seq)
    });
}

#[test]
fn an_outbound_request_is_gated_sent_once_and_visible_through_the_api_and_in_postgres() {
    use crate::fake_server::{answer, FakeServer};
    use std::time::Duration;

    let quo = FakeServer::start(answer(202, r#"{"data":{"id":"AC0001","status":"queued"}}"#));
    let db = crate::postgres::Db::new();
    let tmp = crate::engine::tempdir();
    let pg = db.env(&crate::postgres::base_url());
    let mut env: Vec<(&str, &str)> = pg.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let base = format!("http://{}", quo.addr);
    env.push(("HOOKLOG_OPENPHONE_API_KEY", "quo-test-key"));
    env.push(("HOOKLOG_OPENPHONE_API_BASE", &base));
    let s = TestServer::start(outbound_config(tmp.path(), "", &env), None);

    let (code, v) = post(
        &s,
        serde_json::json!({"from": "quo-main", "to": "+12125550100", "content": BODY, "idempotencyKey": "e2e-1"}),
    );
    assert_eq!(code, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let m = settled(&s, &id);
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(m["provider_message_id"], "AC0001");
    let calls = quo.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/v1/messages");
    assert_eq!(
        calls[0].header("authorization"),
        Some("quo-test-key"),
        "no Bearer"
    );
    let body: serde_json::Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(body["from"], "+12125550199");
    assert_eq!(body["to"], serde_json::json!(["+12125550100"]));
    assert_eq!(body["content"], BODY);

    // Visible in Postgres once the sink has read the result.
    wait_for("the outbound row", 15, || {
        let migrated = db
            .one("select to_regclass('$S.outbound_messages')::text")
            .is_some();
        migrated
            && db
                .rows(&format!(
                    "select status from $S.outbound_messages where id = '{id}'"
                ))
                .first()
                .and_then(|r| r[0].clone())
                .as_deref()
                == Some("sent")
    });
    assert_eq!(
        db.one(&format!(
            "select provider_message_id from $S.outbound_messages where id = '{id}'"
        )),
        Some("AC0001".into())
    );

    // A rewind of the gates and of the sender to 0 re-projects and sends nothing.
    let last = s.status().log.last_seq;
    for c in ["outbound", "sender"] {
        let (code, r) = s.admin_send(
            "POST",
            &format!("/admin/consumers/{c}/rewind"),
            r#"{"to_seq":0}"#,
        );
        assert_eq!(code, 200, "{r}");
    }
    caught_up(&s, "outbound");
    caught_up(&s, "sender");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(quo.requests().len(), 1, "a rewind sends nothing");
    assert_eq!(s.status().log.last_seq, last, "and decides nothing again");
    assert_eq!(settled(&s, &id)["status"], "sent");

    // --redeliver sends it again, recorded as a redelivery.
    let (code, r) = s.admin_send(
        "POST",
        "/admin/consumers/sender/rewind",
        r#"{"to_seq":0,"redeliver":true,"confirm":true}"#,
    );
    assert_eq!(code, 200, "{r}");
    wait_for("the redelivery", 15, || quo.requests().len() == 2);
    let m = s.admin_until(&format!("/v1/messages/{id}"), |m| {
        m["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|s| s["event"] == "redelivery"))
            && m["status"] == "sent"
    });
    assert_eq!(m["attempts"], 2, "{m}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(quo.requests().len(), 2, "redelivered once");
}

/// The server with Twilio's send API at `twilio`.
fn twilio_server(dir: &Path, twilio: &crate::fake_server::FakeServer) -> TestServer {
    let base = format!("http://{}", twilio.addr);
    let env = [
        (
            "HOOKLOG_TWILIO_ACCOUNT_SID",
            "AC0123456789abcdef0123456789abcdef",
        ),
        ("HOOKLOG_TWILIO_AUTH_TOKENS", "twilio-test-token"),
        ("HOOKLOG_TWILIO_API_BASE", base.as_str()),
        ("HOOKLOG_SERVER_PUBLIC_URLS", "https://hooks.example.com"),
    ];
    TestServer::start(outbound_config(dir, "", &env), None)
}

#[test]
fn a_twilio_line_keeps_to_one_message_a_second_and_a_429_storm_stops_after_three_retries() {
    use crate::fake_server::{answer, FakeServer};

    let twilio = FakeServer::start(answer(
        201,
        r#"{"sid":"SM00000000000000000000000000000001","status":"queued"}"#,
    ));
    let tmp = crate::engine::tempdir();
    let s = twilio_server(tmp.path(), &twilio);
    let mut ids = Vec::new();
    for i in 0..4 {
        let (code, v) = post(
            &s,
            serde_json::json!({"from": "tw-main", "to": format!("+1212555010{i}"), "content": BODY}),
        );
        assert_eq!(code, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(settled(&s, id)["status"], "sent");
    }
    let at: Vec<std::time::Instant> = twilio.requests().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 4);
    for w in at.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= std::time::Duration::from_millis(950),
            "Twilio allows one message a second per number; the fake saw {gap:?}"
        );
    }
    let auth = twilio.requests()[0]
        .header("authorization")
        .unwrap()
        .to_owned();
    assert!(auth.starts_with("Basic "), "{auth}");

    // Four 429s: the first try and three retries, then the message fails.
    twilio.script((0..4).map(|_| answer(429, r#"{"code":20429,"message":"Too Many Requests"}"#)));
    let (_, v) = post(
        &s,
        serde_json::json!({"from": "tw-main", "to": "+12125550109", "content": BODY}),
    );
    let m = settled(&s, v["id"].as_str().unwrap());
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(
        twilio.requests().len(),
        8,
        "1 try + 3 retries, then no more"
    );
}

#[test]
fn twilio_21610_records_an_opt_out_that_refuses_the_next_message_on_every_line() {
    use crate::fake_server::{answer, FakeServer};

    let twilio = FakeServer::start(answer(
        400,
        r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","status":400}"#,
    ));
    let tmp = crate::engine::tempdir();
    let s = twilio_server(tmp.path(), &twilio);
    let (_, v) = post(
        &s,
        serde_json::json!({"from": "tw-main", "to": "+12125550100", "content": BODY}),
    );
    assert_eq!(settled(&s, v["id"].as_str().unwrap())["status"], "failed");
    s.admin_until("/admin/optouts", |v| {
        v["optouts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o["number"] == "+12125550100"))
    });
    // The Quo line is refused too: one suppression list for every line and provider.
    let (_, v) = post(
        &s,
        serde_json::json!({"from": "quo-main", "to": "+12125550100", "content": format!("{BODY}.")}),
    );
    let m = settled(&s, v["id"].as_str().unwrap());
    assert_eq!(m["status"], "refused");
    assert_eq!(m["reasons"][0]["code"], "recipient_opted_out");
    assert_eq!(twilio.requests().len(), 1);
}
