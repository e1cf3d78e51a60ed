//! The sender consumer end to end: the real Quo and Twilio clients against a fake provider
//! (`fake_server::FakeServer`), under the real consumer driver (cursor, upstream, rewind and
//! `--redeliver` through the registry).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::watch;

use hooklog::provider::SendProvider;

use hooklog::alerts::{Alerter, Severity};
use hooklog::config::secret::Secret;
use hooklog::consumers::compliance::{self, Compliance};
use hooklog::consumers::dedup::Dedup;
use hooklog::consumers::driver::{spawn_driver, DriverConfig, DriverContext};
use hooklog::consumers::outbound::{
    apply, Change, GateDecision, GateVerdict, Message, MessageId, MessageRequest, OutboundRecord,
    OutboundStore, SendStatus,
};
use hooklog::consumers::sender::{SendClients, Sender, SenderConfig, SharedClient};
use hooklog::consumers::{Consumer, ControlError, Redeliver, Registry};
use hooklog::event::{Event, Micros, Seq};
use hooklog::gates::{ComplianceConfig, LineConfig, TenDlc};
use hooklog::log::sled::{SledLog, SledOptions};
use hooklog::log::Log;
use hooklog::metrics::Metrics;
use hooklog::send::{quo, twilio, HttpOptions};

use crate::fake_server::{answer, Alerts, FakeServer};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TO: &str = "+12125550100";

fn noon_in_new_york() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 0).unwrap()
}

fn lines() -> Vec<LineConfig> {
    vec![
        LineConfig {
            id: "quo-main".into(),
            number: "+12125550199".into(),
            provider: SendProvider::Quo,
            ten_dlc: TenDlc::Approved,
            business_name: "Acme".into(),
            phone_number_id: None,
        },
        LineConfig {
            id: "tw-main".into(),
            number: "+12125550198".into(),
            provider: SendProvider::Twilio,
            ten_dlc: TenDlc::Approved,
            business_name: "Acme".into(),
            phone_number_id: None,
        },
    ]
}

struct World {
    _dir: tempfile::TempDir,
    log: Arc<dyn Log>,
    outbound: OutboundStore,
    alerts: Arc<Alerts>,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> =
        Arc::new(SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap());
    let outbound = OutboundStore::open(log.state().as_ref()).unwrap();
    World {
        _dir: dir,
        log,
        outbound,
        alerts: Arc::new(Alerts::default()),
    }
}

fn sender(w: &World, clients: SendClients) -> Sender {
    sender_with_lines(w, clients, lines())
}

fn sender_with_lines(w: &World, clients: SendClients, lines: Vec<LineConfig>) -> Sender {
    Sender::new(
        w.log.clone(),
        w.outbound.clone(),
        ComplianceConfig::default(),
        lines,
        clients,
        &SenderConfig::default(),
        w.alerts.clone(),
        Metrics::new(),
    )
    .unwrap()
    .without_controls_consumer()
    .with_clock(hooklog::clock::Clock::starting_at(noon_in_new_york()))
}

fn twilio_client(fake: &FakeServer) -> SharedClient {
    Arc::new(twilio::Client::new(
        SID,
        Secret::new("tok"),
        HttpOptions::new(format!("http://{}", fake.addr)),
    ))
}

fn quo_client(fake: &FakeServer) -> SharedClient {
    Arc::new(quo::Client::new(
        Secret::new("quo-key"),
        HttpOptions::new(format!("http://{}", fake.addr)),
    ))
}

/// A request and its allow decision, appended and projected as the outbound consumer does.
async fn allowed(w: &World, line: &str, provider: SendProvider, number: &str) -> (MessageId, u64) {
    let request = MessageRequest {
        id: MessageId::generate(Micros::now()),
        idempotency_key: None,
        from: line.into(),
        provider: None,
        to: TO.into(),
        content: "Hi, this is Acme. Reply STOP to opt out.".into(),
        requested_at: "2026-11-30T17:00:00Z".into(),
        requested_by: None,
    };
    let append = |r: OutboundRecord| w.log.append(r.to_verified(Micros::now()));
    let rseq = append(OutboundRecord::Request(request.clone()))
        .await
        .unwrap()
        .0;
    let decision = GateDecision {
        id: request.id.clone(),
        verdict: GateVerdict::Allow,
        reasons: vec![],
        hold_until: None,
        line_id: Some(line.into()),
        from_number: Some(number.into()),
        provider: Some(provider),
        to: Some(TO.into()),
        evaluation: 1,
        decided_at: "2026-11-30T17:00:01Z".into(),
    };
    let dseq = append(OutboundRecord::Decision(decision.clone()))
        .await
        .unwrap()
        .0;
    let mut m = Message::requested(rseq, &request);
    assert!(apply(&mut m, dseq, Change::Decision(&decision)));
    w.outbound.put_message(&m).unwrap();
    (request.id, dseq)
}

fn records(w: &World) -> Vec<OutboundRecord> {
    w.log
        .read(Seq(0), 10_000)
        .unwrap()
        .iter()
        .filter_map(|e| OutboundRecord::decode(e).and_then(Result::ok))
        .collect()
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn under_the_driver_a_rewind_sends_nothing_again_and_a_redeliver_rewind_sends_once_more() {
    let w = world();
    let fake = FakeServer::start(answer(201, r#"{"sid":"SM1","status":"queued"}"#));
    let (id, dseq) = allowed(&w, "tw-main", SendProvider::Twilio, "+12125550198").await;
    // The outbound consumer (the sender's upstream) has read the decision.
    w.log.store_cursor("outbound", Seq(dseq)).unwrap();
    let s = sender(
        &w,
        SendClients {
            openphone: None,
            twilio: Some(twilio_client(&fake)),
        },
    );
    let ctx = DriverContext {
        log: w.log.clone(),
        store: w.log.state(),
        registry: Arc::new(Registry::default()),
        metrics: Metrics::new(),
        alerter: Alerter::disabled(),
        config: DriverConfig {
            idle_poll: Duration::from_millis(20),
            ..DriverConfig::default()
        },
    };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(s, ctx.clone(), rx));
    until(|| fake.requests().len() == 1 && w.log.cursor("sender").unwrap() == Seq(dseq)).await;
    let body = &fake.requests()[0].body;
    assert!(
        body.contains("To=%2B12125550100") && body.contains("From=%2B12125550198"),
        "{body}"
    );

    ctx.registry
        .rewind("sender", Seq(0), false, false)
        .await
        .unwrap();
    until(|| w.log.cursor("sender").unwrap() == Seq(dseq)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.requests().len(), 1, "a plain rewind never sends again");

    let unconfirmed = ctx.registry.rewind("sender", Seq(0), false, true).await;
    assert!(
        matches!(unconfirmed, Err(ControlError::Unconfirmed(_))),
        "{unconfirmed:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fake.requests().len(),
        1,
        "an unconfirmed redelivery sends nothing"
    );
    let confirmed = Redeliver {
        confirm: true,
        max: None,
    };
    let report = ctx
        .registry
        .rewind_with("sender", Seq(0), false, Some(confirmed))
        .await
        .unwrap();
    assert!(report.redeliver);
    until(|| fake.requests().len() == 2).await;
    until(|| {
        records(&w)
            .iter()
            .filter(|r| matches!(r, OutboundRecord::Result(x) if x.id == id))
            .count()
            == 2
    })
    .await;
    let attempts: Vec<(u32, bool)> = records(&w)
        .iter()
        .filter_map(|r| match r {
            OutboundRecord::Attempt(a) if a.id == id => Some((a.attempt, a.redelivery)),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![(1, false), (2, true)]);

    // The window closed behind the cursor: another plain rewind sends nothing.
    ctx.registry
        .rewind("sender", Seq(0), false, false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 2);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn twilio_21610_over_http_fails_the_message_and_compliance_suppresses_the_recipient() {
    let w = world();
    let fake = FakeServer::start(answer(
        400,
        r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","status":400}"#,
    ));
    let (id, dseq) = allowed(&w, "tw-main", SendProvider::Twilio, "+12125550198").await;
    let mut s = sender(
        &w,
        SendClients {
            openphone: None,
            twilio: Some(twilio_client(&fake)),
        },
    );
    let events: Vec<Event> = w.log.read(Seq(0), 100).unwrap();
    assert_eq!(events.last().unwrap().seq, Seq(dseq));
    s.handle(&events).await.unwrap();
    assert_eq!(fake.requests().len(), 1);
    let result = records(&w)
        .into_iter()
        .find_map(|r| match r {
            OutboundRecord::Result(x) if x.id == id => Some(x),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (result.status, result.code.as_deref()),
        (SendStatus::Failed, Some("21610"))
    );

    let store = w.log.state();
    let all = w.log.read(Seq(0), 100).unwrap();
    Dedup::new(store.as_ref(), 72)
        .unwrap()
        .handle(&all)
        .await
        .unwrap();
    Compliance::new(store.as_ref(), Alerter::disabled())
        .unwrap()
        .handle(&all)
        .await
        .unwrap();
    let entry = compliance::entry(store.as_ref(), TO).unwrap().unwrap();
    assert!(entry.is_suppressed());
    assert_eq!(entry.provider, "twilio");
}

#[tokio::test]
async fn a_quo_a2p_400_over_http_blocks_the_line_with_a_critical_alert() {
    let w = world();
    let fake = FakeServer::start(answer(
        400,
        r#"{"message":"A2P registration is not approved for this number","code":"0400400"}"#,
    ));
    let (id, _) = allowed(&w, "quo-main", SendProvider::Quo, "+12125550199").await;
    let mut s = sender(
        &w,
        SendClients {
            openphone: Some(quo_client(&fake)),
            twilio: None,
        },
    );
    let events: Vec<Event> = w.log.read(Seq(0), 100).unwrap();
    s.handle(&events).await.unwrap();
    let recs = records(&w);
    assert!(recs.iter().any(
        |r| matches!(r, OutboundRecord::Line(l) if l.line_id == "quo-main" && l.state == "blocked")
    ));
    assert!(recs.iter().any(|r| matches!(r,
        OutboundRecord::Result(x) if x.id == id && x.outcome == "line_blocked")));
    assert!(w
        .alerts
        .taken()
        .iter()
        .any(|a| a.severity == Severity::Critical && a.key.starts_with("send:line_blocked")));
}

#[tokio::test]
async fn a_quo_line_with_a_phone_number_id_sends_from_that_id_on_the_wire() {
    let w = world();
    let fake = FakeServer::start(answer(202, r#"{"data":{"id":"AC77","status":"queued"}}"#));
    let (id, _) = allowed(&w, "quo-main", SendProvider::Quo, "+12125550199").await;
    let mut lines = lines();
    lines[0].phone_number_id = Some("PNmain01".into());
    let mut s = sender_with_lines(
        &w,
        SendClients {
            openphone: Some(quo_client(&fake)),
            twilio: None,
        },
        lines,
    );
    let events: Vec<Event> = w.log.read(Seq(0), 100).unwrap();
    s.handle(&events).await.unwrap();

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(requests[0].header("authorization"), Some("quo-key"));
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["from"], "PNmain01", "{body}");
    assert_eq!(body["to"], serde_json::json!([TO]));
    // Quo calls a separate `phoneNumberId` field deprecated: the id goes in `from` only.
    assert!(body.get("phoneNumberId").is_none(), "{body}");

    // The records keep the number: caps, opt-outs and reports go by number.
    let recs = records(&w);
    assert!(recs.iter().any(|r| matches!(r,
        OutboundRecord::Attempt(a) if a.id == id && a.from == "+12125550199")));
    assert!(recs.iter().any(|r| matches!(r,
        OutboundRecord::Result(x) if x.id == id && x.status == SendStatus::Sent)));
}
