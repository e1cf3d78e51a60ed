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
    let tmp = tempfile::tempdir().unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
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
