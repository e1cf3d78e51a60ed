//! The suppression list follows the time people wrote, proven from outside the process: a
//! STOP at 14:00 and a START written at 10:30, in both arrival orders, through signed Quo
//! webhooks, backfills (`POST /admin/events`) and a Quo retry re-signed a day later, leave the
//! number suppressed (`GET /admin/optouts`, and `POST /v1/messages` refused
//! `recipient_opted_out`); a newer START lifts it on its own line only; a SalesMsg START lifts
//! nothing unless `[salesmsg] trust_opt_in`; a rewind rebuilds the same list.

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use hooklog::signature::{standard_webhooks, twilio, HmacKey};

use crate::edge::{BASE, QUO_KEY, TOKEN};
use crate::outbound::{outbound_config, BODY};
use crate::util::{self, TestServer};

const SALESMSG: &str = "salesmsg-secret-trust";
/// The lines of `crate::outbound::LINES`.
const QUO_LINE: &str = "+12125550199";
const TWILIO_LINE: &str = "+14155550199";

/// A server with every provider's webhooks configured and the outbound lines, plus
/// `extra_toml`.
fn server(dir: &std::path::Path, extra_toml: &str) -> TestServer {
    let env = [
        ("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN),
        ("HOOKLOG_SERVER_PUBLIC_URLS", BASE),
        ("HOOKLOG_OPENPHONE_SIGNING_KEYS", QUO_KEY),
        ("HOOKLOG_SALESMSG_SECRETS", SALESMSG),
    ];
    TestServer::start(outbound_config(dir, extra_toml, &env), None)
}

/// Two days ago at `h:m` UTC (in the past, so a provider time is never capped at receipt).
fn at(h: u32, m: u32) -> DateTime<Utc> {
    let day: NaiveDate = (Utc::now() - Duration::days(2)).date_naive();
    day.and_hms_opt(h, m, 0).unwrap().and_utc()
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A Quo `message.received` (2026-03-30 shape) from `from` to `line`, written at `written`.
fn quo_body(id: &str, from: &str, line: &str, text: &str, written: DateTime<Utc>) -> Vec<u8> {
    serde_json::json!({
        "id": format!("EV{id}"), "apiVersion": "2026-03-30", "createdAt": stamp(written),
        "type": "message.received",
        "data": {"resource": {"id": format!("AC{id}"), "from": from, "to": [line],
            "direction": "incoming", "text": text, "status": "received",
            "createdAt": stamp(written)},
            "context": {"phoneNumberId": "PNtrust"}}
    })
    .to_string()
    .into_bytes()
}

/// Delivers `body` as a Quo webhook, signed now under delivery id `webhook_id`.
fn quo_deliver(s: &TestServer, webhook_id: &str, body: &[u8]) {
    let ts = util::now().to_string();
    let key = HmacKey::from_quo_secret(QUO_KEY).unwrap();
    let sig = standard_webhooks::sign(&key, webhook_id, &ts, body);
    let r = s.send(
        "POST",
        "/webhook/quo",
        &[
            ("content-type", "application/json"),
            ("webhook-id", webhook_id),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &sig),
        ],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A signed Twilio SMS webhook (which carries no time: its receipt counts).
fn twilio_deliver(s: &TestServer, sid: &str, from: &str, line: &str, text: &str) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("MessageSid", sid)
        .append_pair("AccountSid", "AC00000000000000000000000000000000")
        .append_pair("From", from)
        .append_pair("To", line)
        .append_pair("Body", text)
        .append_pair("SmsStatus", "received")
        .finish()
        .into_bytes();
    let ct = "application/x-www-form-urlencoded";
    let sig = twilio::sign(
        &HmacKey::from_utf8(TOKEN),
        &format!("{BASE}/sms"),
        Some(ct),
        &body,
    );
    let r = s.send(
        "POST",
        "/sms",
        &[("content-type", ct), ("x-twilio-signature", &sig)],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A SalesMsg inbound message, authenticated by the URL secret.
fn salesmsg_deliver(s: &TestServer, id: u64, from: &str, line: &str, text: &str, t: DateTime<Utc>) {
    let body = serde_json::json!({"event": "message.received", "data": {"id": id,
        "direction": "inbound", "status": "received", "body": text, "from": from, "to": line,
        "created_at": stamp(t)}, "triggered_at": stamp(t)})
    .to_string();
    let r = s.send(
        "POST",
        &format!("/webhook/salesmsg?secret={SALESMSG}"),
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Appends a backfilled inbound message through the operator route.
fn backfill(
    s: &TestServer,
    twilio: bool,
    id: &str,
    from: &str,
    line: &str,
    text: &str,
    t: DateTime<Utc>,
) {
    let (source, route, body) = if twilio {
        (
            "backfill-twilio",
            format!("/2010-04-01/Messages/SM{id}.json"),
            serde_json::json!({"sid": format!("SM{id}"), "from": from, "to": line,
                "direction": "inbound", "body": text, "status": "received",
                "date_created": t.to_rfc2822()}),
        )
    } else {
        (
            "backfill-openphone",
            format!("/v1/messages/AC{id}"),
            serde_json::json!({"id": format!("AC{id}"), "from": from, "to": [line],
                "direction": "incoming", "text": text, "status": "received",
                "createdAt": stamp(t)}),
        )
    };
    let req = serde_json::json!({"source": source, "route": route,
        "headers": {"content-type": "application/json"}, "body": body.to_string()});
    let (code, answer) = s.admin_send("POST", "/admin/events", &req.to_string());
    assert_eq!(code, 201, "{answer}");
}

/// Waits until compliance has projected every record in the log.
fn caught_up(s: &TestServer) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let st = s.status();
        if st
            .consumers
            .iter()
            .any(|c| c.name == "compliance" && c.cursor == st.log.last_seq)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "compliance never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `number`'s entry in `GET /admin/optouts`.
fn listed(s: &TestServer, number: &str) -> serde_json::Value {
    caught_up(s);
    let (code, body) = s.admin_get("/admin/optouts");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["optouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["number"] == number)
        .cloned()
        .unwrap_or_else(|| panic!("{number} is not on the list: {v}"))
}

/// Asks to text `to` from line `from` and returns the decision: `allowed`, or the first
/// refusal's code.
fn decision(s: &TestServer, from: &str, to: &str, n: usize) -> String {
    let body =
        serde_json::json!({"from": from, "to": to, "content": format!("{BODY}{}", ".".repeat(n))});
    let (code, text) = s.admin_send("POST", "/v1/messages", &body.to_string());
    assert_eq!(code, 202, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let m = s.admin_until(&format!("/v1/messages/{id}"), |m| {
        m["status"] == "refused"
            || m["history"]
                .as_array()
                .is_some_and(|h| h.iter().any(|e| e["event"] == "allowed"))
    });
    if m["status"] == "refused" {
        m["reasons"][0]["code"].as_str().unwrap().to_owned()
    } else {
        "allowed".to_owned()
    }
}

fn assert_suppressed(s: &TestServer, number: &str) {
    let e = listed(s, number);
    assert_eq!(e["state"], "opted_out", "{e}");
    assert_eq!(e["lifted_on"], serde_json::json!([]), "{e}");
    assert_eq!(e["event_at"], stamp(at(14, 0)).replace(".000Z", "Z"), "{e}");
}

#[test]
fn a_stop_then_an_older_start_through_signed_webhooks_and_a_late_retry_stays_suppressed() {
    let tmp = crate::engine::tempdir();
    let s = server(tmp.path(), "");
    let (stop_first, start_first) = ("+12125550141", "+12125550142");
    let stop = |n: &str, id: &str| quo_body(id, n, QUO_LINE, "STOP", at(14, 0));
    let start = |n: &str, id: &str| quo_body(id, n, QUO_LINE, "START", at(10, 30));
    quo_deliver(&s, "msg_a1", &stop(stop_first, "a1"));
    quo_deliver(&s, "msg_a2", &start(stop_first, "a2"));
    quo_deliver(&s, "msg_b1", &start(start_first, "b1"));
    quo_deliver(&s, "msg_b2", &stop(start_first, "b2"));
    // Quo retries the START a day later: the same body, a new delivery id, signed now.
    quo_deliver(&s, "msg_b1-retry", &start(start_first, "b1"));
    for n in [stop_first, start_first] {
        assert_suppressed(&s, n);
        assert_eq!(decision(&s, "quo-main", n, 0), "recipient_opted_out", "{n}");
        assert_eq!(decision(&s, "tw-main", n, 1), "recipient_opted_out", "{n}");
    }

    // A rewind rebuilds the same list from the log.
    let (_, before) = s.admin_get("/admin/optouts");
    let (code, r) = s.admin_send(
        "POST",
        "/admin/consumers/compliance/rewind",
        r#"{"to_seq": 0}"#,
    );
    assert_eq!(code, 200, "{r}");
    caught_up(&s);
    let (_, after) = s.admin_get("/admin/optouts");
    assert_eq!(after, before);
}

#[test]
fn a_backfilled_start_never_lifts_and_a_backfilled_stop_suppresses_in_both_orders() {
    let tmp = crate::engine::tempdir();
    let s = server(tmp.path(), "");
    // Twilio's newest-first order (STOP 14:00, then START 10:30) and the reverse.
    let (newest_first, oldest_first) = ("+12125550143", "+12125550144");
    backfill(&s, true, "c1", newest_first, QUO_LINE, "STOP", at(14, 0));
    backfill(&s, true, "c2", newest_first, QUO_LINE, "START", at(10, 30));
    backfill(&s, false, "d1", oldest_first, QUO_LINE, "START", at(10, 30));
    backfill(&s, false, "d2", oldest_first, QUO_LINE, "STOP", at(14, 0));
    // Even a backfilled START written after a webhook STOP lifts nothing.
    let newer = "+12125550145";
    quo_deliver(
        &s,
        "msg_e1",
        &quo_body("e1", newer, QUO_LINE, "STOP", at(14, 0)),
    );
    backfill(&s, false, "e2", newer, QUO_LINE, "START", at(15, 0));
    for n in [newest_first, oldest_first, newer] {
        assert_suppressed(&s, n);
        assert_eq!(decision(&s, "quo-main", n, 0), "recipient_opted_out", "{n}");
    }
    let e = listed(&s, newer);
    assert!(
        e["facts"]["ignored_opt_in"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("backfilled")),
        "{e}"
    );
}

#[test]
fn a_newer_start_lifts_the_suppression_on_its_own_line_only() {
    let tmp = crate::engine::tempdir();
    let s = server(tmp.path(), "");
    let n = "+12125550146";
    quo_deliver(
        &s,
        "msg_f1",
        &quo_body("f1", n, QUO_LINE, "STOP", at(14, 0)),
    );
    // START to the Twilio line, received now: lifts tw-main only.
    twilio_deliver(&s, "SMf2", n, TWILIO_LINE, "START");
    let e = listed(&s, n);
    assert_eq!(e["state"], "opted_out", "{e}");
    assert_eq!(e["lifted_on"], serde_json::json!([TWILIO_LINE]), "{e}");
    assert_eq!(decision(&s, "tw-main", n, 0), "allowed");
    assert_eq!(decision(&s, "quo-main", n, 1), "recipient_opted_out");
    // A START to the Quo line written after the STOP lifts that line too.
    quo_deliver(
        &s,
        "msg_f3",
        &quo_body("f3", n, QUO_LINE, "START", at(15, 0)),
    );
    assert_eq!(
        listed(&s, n)["lifted_on"],
        serde_json::json!([QUO_LINE, TWILIO_LINE])
    );
    assert_eq!(decision(&s, "quo-main", n, 2), "allowed");
}

#[test]
fn a_salesmsg_start_lifts_nothing_unless_salesmsg_is_trusted_to_opt_in() {
    let n = "+12125550147";
    for (trusted, extra) in [(false, ""), (true, "[salesmsg]\ntrust_opt_in = true\n")] {
        let tmp = crate::engine::tempdir();
        let s = server(tmp.path(), extra);
        quo_deliver(
            &s,
            "msg_g1",
            &quo_body("g1", n, QUO_LINE, "STOP", at(14, 0)),
        );
        salesmsg_deliver(&s, 77, n, QUO_LINE, "START", at(15, 0));
        let e = listed(&s, n);
        assert_eq!(e["state"], "opted_out", "{e}");
        let expected = if trusted {
            "allowed"
        } else {
            "recipient_opted_out"
        };
        assert_eq!(
            decision(&s, "quo-main", n, 0),
            expected,
            "trusted: {trusted}"
        );
        assert_eq!(decision(&s, "tw-main", n, 1), "recipient_opted_out");
        // A SalesMsg STOP always counts.
        salesmsg_deliver(&s, 78, n, QUO_LINE, "STOP", at(16, 0));
        assert_eq!(decision(&s, "quo-main", n, 2), "recipient_opted_out");
    }
}

#[test]
fn a_persons_start_does_not_lift_an_operators_add_and_an_operators_lift_lifts_every_line() {
    let tmp = crate::engine::tempdir();
    let s = server(tmp.path(), "");
    let n = "+12125550148";
    let (code, r) = s.admin_send(
        "POST",
        "/admin/optouts",
        &serde_json::json!({"number": n, "reason": "asked by phone"}).to_string(),
    );
    assert_eq!(code, 202, "{r}");
    // Written now, after the operator's add: still no lift.
    twilio_deliver(&s, "SMh1", n, TWILIO_LINE, "START");
    let e = listed(&s, n);
    assert_eq!(
        (e["state"].as_str(), e["how"].as_str()),
        (Some("opted_out"), Some("admin")),
        "{e}"
    );
    assert_eq!(decision(&s, "tw-main", n, 0), "recipient_opted_out");
    let (code, r) = s.admin_send("DELETE", &format!("/admin/optouts/{n}"), "");
    assert_eq!(code, 202, "{r}");
    assert_eq!(listed(&s, n)["state"], "resubscribed");
    assert_eq!(decision(&s, "tw-main", n, 1), "allowed");
    assert_eq!(decision(&s, "quo-main", n, 2), "allowed");
}
