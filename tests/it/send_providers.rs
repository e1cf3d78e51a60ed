//! The Quo and Twilio send clients against fake providers (`fake_server::FakeServer`), scripted to
//! answer success, 429, 400 with a code, 500, or a stall that never answers.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use hooklog::alerts::Severity;
use hooklog::config::secret::Secret;
use hooklog::send::{
    quo, send_with_retries, twilio, HttpOptions, Limiter, OutboundMessage, Outcome, Rate,
};
use serde_json::{json, Value};

use crate::fake_server::{Alerts, FakeServer, Reply};
use hooklog::retry::RetryPolicy;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-token-1";
/// base64("AC0123456789abcdef0123456789abcdef:twilio-token-1"), computed outside the code
/// under test.
const TWILIO_BASIC: &str =
    "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjp0d2lsaW8tdG9rZW4tMQ==";
const QUO_KEY: &str = "quo-key-1";

/// The fake's base URL, with a short timeout so the stall tests stay quick.
fn options(fake: &FakeServer) -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_millis(400),
        ..HttpOptions::new(format!("http://{}", fake.addr))
    }
}

fn message(from: &str) -> OutboundMessage {
    OutboundMessage {
        from: from.into(),
        to: "+15550002222".into(),
        content: "Hi, this is Acme Homes. Reply STOP to opt out.".into(),
    }
}

fn quo_ok() -> Reply {
    Reply::Answer(
        202,
        json!({"data": {"id": "AC42", "status": "queued"}}).to_string(),
    )
}

fn twilio_ok() -> Reply {
    Reply::Answer(201, json!({"sid": "SM42", "status": "queued"}).to_string())
}

fn too_many() -> Reply {
    Reply::Answer(
        429,
        json!({"code": 20429, "message": "Too Many Requests"}).to_string(),
    )
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base: Duration::from_millis(20),
        max: Duration::from_millis(80),
        ..RetryPolicy::default()
    }
}

fn unlimited() -> Limiter {
    Limiter::new(Rate {
        per_second: 1000,
        burst: 1000,
    })
}

/// The largest number of arrivals inside any window of length `window`.
fn max_in_window(arrivals: &[Instant], window: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| t.duration_since(sorted[i]) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn quo_sends_the_raw_key_without_bearer_and_one_recipient_in_an_array() {
    let fake = FakeServer::start(quo_ok());
    let client = quo::Client::new(Secret::new(QUO_KEY), options(&fake));
    let alerts = Alerts::default();
    let report = send_with_retries(
        &client,
        &unlimited(),
        &message("+15550001111"),
        &fast_policy(),
        &alerts,
    )
    .unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Sent {
            provider_id: "AC42".into()
        }
    );
    assert_eq!(report.attempts.len(), 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(r.header("authorization"), Some(QUO_KEY));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        body,
        json!({
            "content": "Hi, this is Acme Homes. Reply STOP to opt out.",
            "from": "+15550001111",
            "to": ["+15550002222"],
        })
    );
    assert!(alerts.taken().is_empty());
}

#[test]
fn twilio_sends_a_form_with_basic_auth_of_sid_and_token() {
    let fake = FakeServer::start(twilio_ok());
    let client = twilio::Client::new(SID, Secret::new(TOKEN), options(&fake));
    let report = send_with_retries(
        &client,
        &unlimited(),
        &message("+15550001111"),
        &fast_policy(),
        &Alerts::default(),
    )
    .unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Sent {
            provider_id: "SM42".into()
        }
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
    assert_eq!(r.header("authorization"), Some(TWILIO_BASIC));
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let mut fields: Vec<(String, String)> = form_urlencoded::parse(r.body.as_bytes())
        .into_owned()
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            (
                "Body".to_owned(),
                "Hi, this is Acme Homes. Reply STOP to opt out.".to_owned()
            ),
            ("From".to_owned(), "+15550001111".to_owned()),
            ("To".to_owned(), "+15550002222".to_owned()),
        ]
    );
}

#[test]
fn a_429_storm_is_retried_three_times_with_backoff_then_alerted() {
    let fake = FakeServer::start(too_many());
    let client = quo::Client::new(Secret::new(QUO_KEY), options(&fake));
    let alerts = Alerts::default();
    let policy = RetryPolicy {
        max_retries: 3,
        base: Duration::from_millis(30),
        max: Duration::from_millis(60),
        ..RetryPolicy::default()
    };
    let started = Instant::now();
    let report = send_with_retries(
        &client,
        &unlimited(),
        &message("+15550001111"),
        &policy,
        &alerts,
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert_eq!(report.attempts.len(), 4);
    assert!(report
        .attempts
        .iter()
        .all(|a| a.outcome == Outcome::RateLimited));
    // Let a (wrong) fifth request arrive if one were coming.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(fake.requests().len(), 4, "1 try + 3 retries, then stop");
    // Full jitter can draw 0, so only the cap is checked: 30 + 60 + 60 ms at most, plus
    // slack for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(3));
    let alerts = alerts.taken();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].key, "send:rate_limited:openphone:+15550001111");
    assert!(alerts[0].reason.contains("4 tries"), "{}", alerts[0].reason);
}

#[test]
fn a_429_that_clears_is_retried_and_sent_without_an_alert() {
    let fake = FakeServer::start(twilio_ok());
    fake.script([too_many(), too_many()]);
    let client = twilio::Client::new(SID, Secret::new(TOKEN), options(&fake));
    let alerts = Alerts::default();
    let report = send_with_retries(
        &client,
        &unlimited(),
        &message("+15550001111"),
        &fast_policy(),
        &alerts,
    )
    .unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Sent {
            provider_id: "SM42".into()
        }
    );
    assert_eq!(report.attempts.len(), 3);
    assert_eq!(fake.requests().len(), 3);
    assert!(alerts.taken().is_empty());
}

#[test]
fn twilio_21610_is_an_opt_out_and_is_not_retried() {
    let fake = FakeServer::start(Reply::Answer(
        400,
        json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400})
            .to_string(),
    ));
    let client = twilio::Client::new(SID, Secret::new(TOKEN), options(&fake));
    let alerts = Alerts::default();
    let report = send_with_retries(
        &client,
        &unlimited(),
        &message("+15550001111"),
        &fast_policy(),
        &alerts,
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::OptedOut);
    assert_eq!(fake.requests().len(), 1);
    assert!(alerts.taken().is_empty());
}

#[test]
fn quo_a2p_400_blocks_the_line_and_alerts() {
    let fake = FakeServer::start(Reply::Answer(
        400,
        json!({"message": "A2P registration is not approved for this phone number",
               "code": "0206400", "status": 400, "title": "Bad Request"})
        .to_string(),
    ));
    let client = quo::Client::new(Secret::new(QUO_KEY), options(&fake));
    let alerts = Alerts::default();
    let report = send_with_retries(
        &client,
        &unlimited(),
        &message("+15550001111"),
        &fast_policy(),
        &alerts,
    )
    .unwrap();
    assert!(
        matches!(&report.outcome, Outcome::LineBlocked { reason } if reason.contains("A2P")),
        "{:?}",
        report.outcome
    );
    assert_eq!(fake.requests().len(), 1);
    let alerts = alerts.taken();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].key, "send:line_blocked:openphone:+15550001111");
    assert_eq!(alerts[0].severity, Severity::Critical);
}

#[test]
fn a_stalled_provider_gives_unknown_an_alert_and_no_second_request() {
    let fake = FakeServer::start(Reply::Stall(Duration::from_secs(2)));
    let client = quo::Client::new(Secret::new(QUO_KEY), options(&fake));
    let alerts = Alerts::default();
    let report = send_with_retries(
        &client,
        &unlimited(),
        &message("+15550001111"),
        &fast_policy(),
        &alerts,
    )
    .unwrap();
    assert!(
        matches!(report.outcome, Outcome::Unknown { .. }),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.attempts.len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fake.requests().len(), 1, "a timed-out send is never resent");
    let alerts = alerts.taken();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].key, "send:unknown:openphone:+15550001111");
}

#[test]
fn a_server_error_is_transient_and_not_retried_here() {
    let fake = FakeServer::start(Reply::Answer(500, "{}".into()));
    let client = twilio::Client::new(SID, Secret::new(TOKEN), options(&fake));
    let report = send_with_retries(
        &client,
        &unlimited(),
        &message("+15550001111"),
        &fast_policy(),
        &Alerts::default(),
    )
    .unwrap();
    assert!(matches!(report.outcome, Outcome::Transient { .. }));
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn a_refused_connection_is_transient_because_nothing_was_sent() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = quo::Client::new(
        Secret::new(QUO_KEY),
        HttpOptions::new(format!("http://{addr}")),
    );
    let alerts = Alerts::default();
    let report = send_with_retries(
        &client,
        &unlimited(),
        &message("+15550001111"),
        &fast_policy(),
        &alerts,
    )
    .unwrap();
    assert!(
        matches!(&report.outcome, Outcome::Transient { reason } if reason.starts_with("not sent")),
        "{:?}",
        report.outcome
    );
    assert!(alerts.taken().is_empty());
}

#[test]
fn quo_sends_never_exceed_10_per_second_per_key_measured_at_the_server() {
    let fake = FakeServer::start(quo_ok());
    let client = quo::Client::new(Secret::new(QUO_KEY), options(&fake));
    let limiter = Limiter::new(Rate::QUO);
    let alerts = Alerts::default();
    // Two lines on one key: Quo's limit is per key, so they share one bucket.
    std::thread::scope(|s| {
        for from in ["+15550001111", "+15550003333"] {
            let (client, limiter, alerts) = (&client, &limiter, &alerts);
            s.spawn(move || {
                for _ in 0..13 {
                    let r =
                        send_with_retries(client, limiter, &message(from), &fast_policy(), alerts)
                            .unwrap();
                    assert!(matches!(r.outcome, Outcome::Sent { .. }));
                }
            });
        }
    });
    let arrivals: Vec<Instant> = fake.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 26);
    // burst + rate × T, with 2 of slack for requests delayed between grant and arrival.
    let in_1s = max_in_window(&arrivals, Duration::from_secs(1));
    assert!(in_1s <= 10 + 10 + 2, "{in_1s} arrivals within 1 s");
    let in_half = max_in_window(&arrivals, Duration::from_millis(500));
    assert!(in_half <= 10 + 5 + 2, "{in_half} arrivals within 0.5 s");
    // 16 sends beyond the burst at 10/s take at least 1.6 s.
    let span = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    assert!(
        span >= Duration::from_millis(1450),
        "26 sends took {span:?}"
    );
}

#[test]
fn twilio_sends_from_one_number_are_at_least_a_second_apart() {
    let fake = FakeServer::start(twilio_ok());
    let client = twilio::Client::new(SID, Secret::new(TOKEN), options(&fake));
    let limiter = Limiter::new(Rate::TWILIO);
    for _ in 0..3 {
        let r = send_with_retries(
            &client,
            &limiter,
            &message("+15550001111"),
            &fast_policy(),
            &Alerts::default(),
        )
        .unwrap();
        assert!(matches!(r.outcome, Outcome::Sent { .. }));
    }
    let mut arrivals: Vec<Instant> = fake.requests().iter().map(|r| r.at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 3);
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(900), "gap {gap:?}");
    }
}
