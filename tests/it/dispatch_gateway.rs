//! The agent-gateway client against a fake gateway (`fake_server::FakeServer`). A "down"
//! gateway is a port whose listener was dropped (connection refused).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hooklog::alerts::Severity;
use hooklog::clock::Clock;
use hooklog::config::secret::Secret;
use hooklog::consumers::dispatch::breaker::State;
use hooklog::consumers::dispatch::{
    dispatch_with_retries, Breaker, BreakerConfig, Client, DispatchOutcome, DispatchPolicy,
    DispatchRequest, Gateway, GatewayOptions, PayloadInput,
};
use hooklog::event::{Micros, Seq};
use hooklog::parse::{Data, Kind, Parsed};
use hooklog::provider::Provider;
use serde_json::Value;

use crate::fake_server::{answer, Alerts, FakeServer, Reply};
use hooklog::retry::RetryPolicy;

const TOKEN: &str = "gw-token-1";

/// A fake gateway: 200 unless a test scripts otherwise.
fn gateway() -> FakeServer {
    FakeServer::start(answer(200, r#"{"ok":true}"#))
}

fn url(gw: &FakeServer) -> String {
    format!("http://{}/v1/dispatch", gw.addr)
}

/// Counts the calls that reach the client, to show an open breaker makes none.
struct Counting<'a>(&'a Client, AtomicU32);

impl Gateway for Counting<'_> {
    fn post(&self, request: &DispatchRequest) -> DispatchOutcome {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.post(request)
    }
}

fn client() -> Client {
    Client::new(
        Secret::new(TOKEN),
        &GatewayOptions {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(3),
        },
    )
}

fn parsed() -> Parsed {
    Parsed {
        kind: Kind::MessageReceived,
        provider: Some(Provider::Quo),
        occurred_at: None,
        dedup_keys: vec!["openphone:message:AC77".into()],
        data: Data::Other,
    }
}

fn request(url: &str, parsed: &Parsed, opted_out: bool) -> DispatchRequest {
    DispatchRequest::new(
        url,
        PayloadInput {
            seq: Seq(9),
            received_at: Micros(1_700_000_000_000_000),
            parsed,
            line: Some("+15550001111"),
            agent: "acquisitions",
            opted_out,
        },
    )
    .unwrap()
}

fn fast(max_retries: u32) -> DispatchPolicy {
    DispatchPolicy {
        retry: RetryPolicy {
            max_retries,
            base: Duration::from_millis(10),
            max: Duration::from_millis(40),
            ..RetryPolicy::default()
        },
        max_elapsed: Duration::from_secs(5),
    }
}

#[test]
fn the_post_carries_the_bearer_token_the_idempotency_key_and_the_documented_json() {
    let gw = gateway();
    let p = parsed();
    let mut breaker = Breaker::new("gw", BreakerConfig::default());
    let report = dispatch_with_retries(
        &client(),
        &mut breaker,
        &request(&url(&gw), &p, true),
        &fast(3),
        &Alerts::default(),
    );
    assert_eq!(report.outcome, DispatchOutcome::Delivered { status: 200 });
    let seen = gw.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.path, "/v1/dispatch");
    assert_eq!(r.header("authorization"), Some("Bearer gw-token-1"));
    assert_eq!(
        r.header("idempotency-key"),
        Some("hooklog:9:openphone:message:AC77")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["seq"], 9);
    assert_eq!(body["idempotency_key"], "hooklog:9:openphone:message:AC77");
    assert_eq!(body["dedup_key"], "openphone:message:AC77");
    assert_eq!(body["kind"], "message.received");
    assert_eq!(body["provider"], "openphone");
    assert_eq!(body["line"], "+15550001111");
    assert_eq!(body["agent"], "acquisitions");
    assert_eq!(body["opted_out"], true);
    assert_eq!(body["event"]["provider"], "openphone");
}

#[test]
fn a_gateway_failing_twice_then_accepting_gets_three_attempts_with_one_key() {
    let gw = gateway();
    gw.script([answer(503, "busy"), answer(500, "oops")]);
    let p = parsed();
    let mut breaker = Breaker::new("gw", BreakerConfig::default());
    let alerts = Alerts::default();
    let report = dispatch_with_retries(
        &client(),
        &mut breaker,
        &request(&url(&gw), &p, false),
        &fast(4),
        &alerts,
    );
    assert_eq!(report.outcome, DispatchOutcome::Delivered { status: 200 });
    assert_eq!(report.attempts.len(), 3);
    let keys: Vec<_> = gw
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys, vec!["hooklog:9:openphone:message:AC77"; 3]);
    let bodies: Vec<_> = gw.requests().into_iter().map(|r| r.body).collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert!(
        alerts.taken().is_empty(),
        "two failures stay under the threshold"
    );
}

#[test]
fn a_gateway_that_times_out_is_retried_with_the_same_key() {
    let gw = gateway();
    gw.script([Reply::Stall(Duration::from_secs(2))]);
    let p = parsed();
    let impatient = Client::new(
        Secret::new(TOKEN),
        &GatewayOptions {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_millis(300),
        },
    );
    let mut breaker = Breaker::new("gw", BreakerConfig::default());
    let report = dispatch_with_retries(
        &impatient,
        &mut breaker,
        &request(&url(&gw), &p, false),
        &fast(2),
        &Alerts::default(),
    );
    assert_eq!(report.outcome, DispatchOutcome::Delivered { status: 200 });
    assert_eq!(report.attempts.len(), 2);
    assert!(matches!(
        report.attempts[0].outcome,
        DispatchOutcome::Retryable { .. }
    ));
    let seen = gw.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].header("idempotency-key"),
        seen[1].header("idempotency-key")
    );
}

#[test]
fn a_4xx_is_not_retried() {
    let gw = gateway();
    gw.script([answer(422, r#"{"error":"unknown agent"}"#)]);
    let p = parsed();
    let mut breaker = Breaker::new("gw", BreakerConfig::default());
    let report = dispatch_with_retries(
        &client(),
        &mut breaker,
        &request(&url(&gw), &p, false),
        &fast(4),
        &Alerts::default(),
    );
    assert_eq!(
        report.outcome,
        DispatchOutcome::Rejected {
            status: 422,
            message: "unknown agent".into()
        }
    );
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(gw.requests().len(), 1);
}

#[test]
fn a_down_gateway_opens_the_breaker_and_a_trial_after_the_cool_down_closes_it() {
    // A port with nothing listening: connections are refused.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{addr}/v1/dispatch");
    let (clock, hand) = Clock::manual(chrono::Utc::now());
    let config = BreakerConfig {
        failure_threshold: 3,
        cool_down: Duration::from_secs(30),
    };
    let mut breaker = Breaker::with_clock("agents", config, clock);
    let real = client();
    let gateway = Counting(&real, AtomicU32::new(0));
    let alerts = Alerts::default();
    let p = parsed();
    let req = request(&url, &p, false);

    let report = dispatch_with_retries(&gateway, &mut breaker, &req, &fast(10), &alerts);
    assert!(
        matches!(report.outcome, DispatchOutcome::CircuitOpen { .. }),
        "{report:?}"
    );
    assert_eq!(report.attempts.len(), 3);
    assert!(report
        .attempts
        .iter()
        .all(|a| matches!(a.outcome, DispatchOutcome::Retryable { .. })));
    assert_eq!(gateway.1.load(Ordering::SeqCst), 3);
    let opened = alerts.taken();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].key, "dispatch:circuit:agents");
    assert_eq!(opened[0].severity, Severity::Critical);

    // Within the cool-down: refused without a call.
    hand.advance(Duration::from_millis(29_000));
    for _ in 0..3 {
        let report = dispatch_with_retries(&gateway, &mut breaker, &req, &fast(10), &alerts);
        assert_eq!(
            report.outcome,
            DispatchOutcome::CircuitOpen {
                retry_in: Duration::from_secs(1)
            }
        );
        assert!(report.attempts.is_empty());
    }
    assert_eq!(gateway.1.load(Ordering::SeqCst), 3);

    // The gateway comes back on the same port; after the cool-down one trial closes it.
    let back = FakeServer::on(
        TcpListener::bind(addr).unwrap(),
        answer(200, r#"{"ok":true}"#),
    );
    hand.advance(Duration::from_millis(1_000));
    let report = dispatch_with_retries(&gateway, &mut breaker, &req, &fast(10), &alerts);
    assert_eq!(report.outcome, DispatchOutcome::Delivered { status: 200 });
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(back.requests().len(), 1);
    assert_eq!(breaker.state(), State::Closed { failures: 0 });
    let all = alerts.taken();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].key, "dispatch:circuit:agents");
    assert_eq!(all[1].severity, Severity::Info);
}
