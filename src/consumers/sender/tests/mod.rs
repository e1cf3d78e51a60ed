//! Tests of the sender: the world they share (a fake provider, a sled log, the outbound and
//! compliance projections), and sending at most once: one attempt before the call, redelivery
//! windows, a batch handled again.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use std::time::Duration;

use crate::provider::SendProvider;

use crate::alerts::Alert;
use crate::alerts::Alerter;
use crate::config::Config;
use crate::consumers::compliance::Compliance;
use crate::consumers::compliance::{self, OptOutChange};
use crate::consumers::dedup::Dedup;
use crate::consumers::outbound::records::{ATTEMPT_ROUTE, LINE_ROUTE};
use crate::consumers::outbound::{apply, Change, MessageRequest};
use crate::consumers::outbound::{LineChange, Message, SendAttempt};
use crate::event::Event;
use crate::event::{Micros, Verified};
use crate::gates::ReasonCode;
use crate::gates::TenDlc;
use crate::log::sled::{SledLog, SledOptions};
use crate::send::{BuildError, OutboundMessage, Outcome, SendClient};

/// A provider that answers from a script (then `default`) and notes every call, with
/// the route of the log's last record at the moment of the call.
struct Fake {
    provider: &'static str,
    script: Mutex<VecDeque<Outcome>>,
    default: Mutex<Outcome>,
    calls: Mutex<Vec<(Instant, OutboundMessage, String)>>,
    log: Arc<dyn Log>,
}

impl Fake {
    fn new(provider: &'static str, log: Arc<dyn Log>) -> Arc<Fake> {
        Arc::new(Fake {
            provider,
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Outcome::Sent {
                provider_id: "AC1".into(),
            }),
            calls: Mutex::new(Vec::new()),
            log,
        })
    }
    fn answer(&self, outcomes: impl IntoIterator<Item = Outcome>) {
        self.script.lock().unwrap().extend(outcomes);
    }
    fn always(&self, outcome: Outcome) {
        *self.default.lock().unwrap() = outcome;
    }
    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl SendClient for Fake {
    fn provider(&self) -> &'static str {
        self.provider
    }
    fn limiter_key(&self, message: &OutboundMessage) -> String {
        format!("{}:from:{}", self.provider, message.from)
    }
    fn send(&self, message: &OutboundMessage) -> Result<Outcome, BuildError> {
        let last = self.log.stats().unwrap().last_seq;
        let route = self.log.get(Seq(last)).unwrap().unwrap().route;
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), message.clone(), route));
        let scripted = self.script.lock().unwrap().pop_front();
        Ok(scripted.unwrap_or_else(|| self.default.lock().unwrap().clone()))
    }
}

#[derive(Default)]
struct Alerts(Mutex<Vec<Alert>>);

impl AlertSink for Alerts {
    fn raise(&self, alert: Alert) {
        self.0.lock().unwrap().push(alert);
    }
}

impl Alerts {
    fn taken(&self) -> Vec<Alert> {
        self.0.lock().unwrap().clone()
    }
}

struct World {
    _dir: tempfile::TempDir,
    log: Arc<dyn Log>,
    outbound: OutboundStore,
    quo: Arc<Fake>,
    twilio: Arc<Fake>,
    alerts: Arc<Alerts>,
    metrics: Metrics,
}

/// A New York recipient.
const TO: &str = "+12125550100";
const QUO_LINE: &str = "quo-main";
const TWILIO_LINE: &str = "tw-main";

/// Monday 30 November 2026, 12:00 in New York.
fn noon_in_new_york() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 0).unwrap()
}

fn lines() -> Vec<LineConfig> {
    let line = |id: &str, number: &str, provider| LineConfig {
        id: id.into(),
        number: number.into(),
        provider,
        ten_dlc: TenDlc::Approved,
        business_name: "Acme".into(),
        phone_number_id: None,
    };
    vec![
        line(QUO_LINE, "+12125550199", SendProvider::Quo),
        line(TWILIO_LINE, "+12125550198", SendProvider::Twilio),
    ]
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> =
        Arc::new(SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap());
    let outbound = OutboundStore::open(log.state().as_ref()).unwrap();
    World {
        quo: Fake::new("openphone", log.clone()),
        twilio: Fake::new("twilio", log.clone()),
        _dir: dir,
        log,
        outbound,
        alerts: Arc::new(Alerts::default()),
        metrics: Metrics::new(),
    }
}

fn clients(w: &World) -> SendClients {
    SendClients {
        openphone: Some(w.quo.clone()),
        twilio: Some(w.twilio.clone()),
    }
}

fn sender_with(w: &World, compliance: ComplianceConfig, clients: SendClients) -> Sender {
    Sender::new(
        w.log.clone(),
        w.outbound.clone(),
        compliance,
        lines(),
        clients,
        &SenderConfig::default(),
        w.alerts.clone(),
        w.metrics.clone(),
    )
    .unwrap()
    .without_controls_consumer()
    .with_clock(Clock::starting_at(noon_in_new_york()))
    .with_retry_policy(RetryPolicy {
        max_retries: 3,
        base: Duration::from_millis(1),
        max: Duration::from_millis(5),
        ..RetryPolicy::default()
    })
}

fn sender(w: &World) -> Sender {
    sender_with(w, ComplianceConfig::default(), clients(w))
}

async fn append(w: &World, record: OutboundRecord) -> u64 {
    w.log
        .append(record.to_verified(Micros::now()))
        .await
        .unwrap()
        .0
}

/// A request from `line` to `to` and its `allow` decision, appended and projected as the
/// outbound consumer would. Returns the id and the two records.
async fn allowed(w: &World, line: &str, to: &str) -> (MessageId, Vec<Event>) {
    allowed_saying(w, line, to, "Hi, this is Acme. Reply STOP to opt out.").await
}

/// [`allowed`] with its text.
async fn allowed_saying(w: &World, line: &str, to: &str, content: &str) -> (MessageId, Vec<Event>) {
    let (provider, number) = match line {
        QUO_LINE => (SendProvider::Quo, "+12125550199"),
        _ => (SendProvider::Twilio, "+12125550198"),
    };
    let request = MessageRequest {
        id: MessageId::generate(Micros::now()),
        idempotency_key: None,
        from: line.into(),
        provider: None,
        to: to.into(),
        content: content.into(),
        requested_at: "2026-11-30T17:00:00Z".into(),
        requested_by: None,
    };
    let rseq = append(w, OutboundRecord::Request(request.clone())).await;
    let decision = GateDecision {
        id: request.id.clone(),
        verdict: GateVerdict::Allow,
        reasons: vec![],
        hold_until: None,
        line_id: Some(line.into()),
        from_number: Some(number.into()),
        provider: Some(provider),
        to: Some(to.into()),
        evaluation: 1,
        decided_at: "2026-11-30T17:00:01Z".into(),
    };
    let dseq = append(w, OutboundRecord::Decision(decision.clone())).await;
    let mut m = Message::requested(rseq, &request);
    assert!(apply(&mut m, dseq, Change::Decision(&decision)));
    w.outbound.put_message(&m).unwrap();
    let events = vec![
        w.log.get(Seq(rseq)).unwrap().unwrap(),
        w.log.get(Seq(dseq)).unwrap().unwrap(),
    ];
    (request.id, events)
}

/// Projects every attempt and result in the log into the messages, as `outbound` does.
fn project(w: &World) {
    for e in w.log.read(Seq(0), 10_000).unwrap() {
        let Some(Ok(r)) = OutboundRecord::decode(&e) else {
            continue;
        };
        let (id, change) = match &r {
            OutboundRecord::Attempt(a) => (a.id.clone(), Change::Attempt(a)),
            OutboundRecord::Result(r) => (r.id.clone(), Change::Result(r)),
            OutboundRecord::Line(l) => {
                w.outbound.put_line(e.seq.0, l).unwrap();
                continue;
            }
            _ => continue,
        };
        let mut m = w.outbound.message(&id).unwrap().unwrap();
        apply(&mut m, e.seq.0, change);
        w.outbound.put_message(&m).unwrap();
    }
}

/// Runs dedup and compliance over the whole log, as the daemon would.
async fn project_compliance(w: &World) {
    let store = w.log.state();
    let events = w.log.read(Seq(0), 10_000).unwrap();
    let first = Seq(w.log.cursor(compliance::NAME).unwrap().0);
    let events: Vec<Event> = events.into_iter().filter(|e| e.seq > first).collect();
    let mut dedup = Dedup::new(store.as_ref(), 72).unwrap();
    dedup.handle(&events).await.unwrap();
    let mut c = Compliance::new(store.as_ref(), Alerter::disabled()).unwrap();
    c.handle(&events).await.unwrap();
    if let Some(last) = events.last() {
        w.log.store_cursor(compliance::NAME, last.seq).unwrap();
    }
}

/// Every attempt and result for `id`, in log order, with its seq.
fn history(w: &World, id: &MessageId) -> Vec<(u64, OutboundRecord)> {
    w.log
        .read(Seq(0), 10_000)
        .unwrap()
        .into_iter()
        .filter_map(|e| match OutboundRecord::decode(&e) {
            Some(Ok(r)) => {
                let of = match &r {
                    OutboundRecord::Attempt(a) => Some(&a.id),
                    OutboundRecord::Result(x) => Some(&x.id),
                    _ => None,
                };
                (of == Some(id)).then_some((e.seq.0, r))
            }
            _ => None,
        })
        .collect()
}

fn attempts(h: &[(u64, OutboundRecord)]) -> Vec<SendAttempt> {
    h.iter()
        .filter_map(|(_, r)| match r {
            OutboundRecord::Attempt(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

fn results(h: &[(u64, OutboundRecord)]) -> Vec<SendResult> {
    h.iter()
        .filter_map(|(_, r)| match r {
            OutboundRecord::Result(x) => Some(x.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_allowed_message_is_sent_once_with_its_attempt_durable_before_the_call_and_its_result_after(
) {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();

    assert_eq!(w.quo.calls(), 1);
    assert_eq!(w.twilio.calls(), 0, "never another provider");
    let (_, sent, route_at_call) = w.quo.calls.lock().unwrap()[0].clone();
    assert_eq!((sent.from.as_str(), sent.to.as_str()), ("+12125550199", TO));
    assert_eq!(
        route_at_call, ATTEMPT_ROUTE,
        "the attempt was in the log first"
    );
    let h = history(&w, &id);
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(matches!(&h[0].1, OutboundRecord::Attempt(a) if a.attempt == 1 && !a.redelivery));
    assert!(h[0].0 < h[1].0);
    let r = &results(&h)[0];
    assert_eq!(
        (r.attempt, r.status, r.provider_id.as_deref(), r.tries),
        (1, SendStatus::Sent, Some("AC1"), 1)
    );
    let entry = s.ledger_entry(&id).unwrap().unwrap();
    assert_eq!(
        (entry.attempt, entry.state, entry.status),
        (1, LedgerState::Done, Some(SendStatus::Sent))
    );
    assert_eq!(
        w.metrics
            .sends
            .with_label_values(&["openphone", "sent"])
            .get(),
        1
    );
    project(&w);
    assert_eq!(
        w.outbound.message(&id).unwrap().unwrap().status,
        crate::consumers::outbound::Status::Sent
    );
}

#[tokio::test]
async fn handling_the_same_batch_again_or_after_a_restart_sends_nothing() {
    let w = world();
    let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    // The message projection is deliberately not updated: the ledger alone must hold.
    s.handle(&events).await.unwrap();
    let mut restarted = sender(&w);
    restarted.handle(&events).await.unwrap();
    assert_eq!(w.twilio.calls(), 1);
    assert_eq!(history(&w, &id).len(), 2);
}

#[tokio::test]
async fn a_redelivery_window_sends_again_as_the_next_attempt_and_closes_behind_the_cursor() {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    project(&w);
    s.redeliver(Seq(0), events[1].seq).unwrap();
    // The window is durable: a restart between the rewind and the replay keeps it.
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 2);
    let h = history(&w, &id);
    let a = attempts(&h);
    assert_eq!(
        a.iter()
            .map(|a| (a.attempt, a.redelivery))
            .collect::<Vec<_>>(),
        vec![(1, false), (2, true)]
    );
    assert_eq!(results(&h)[1].attempt, 2);
    // The cursor passed the window's end: it is closed.
    s.handle(&events).await.unwrap();
    let mut restarted = sender(&w);
    restarted.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 2);
}

#[tokio::test]
async fn a_batch_handled_twice_inside_one_redelivery_window_sends_once_more_not_twice() {
    let w = world();
    let (_id, events) = allowed(&w, QUO_LINE, TO).await;
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    project(&w);
    // The window reaches past this batch: it stays open while the batch is retried (a
    // transient failure later in it, a restart before the cursor moved).
    s.redeliver(Seq(0), Seq(events[1].seq.0 + 100)).unwrap();
    s.handle(&events).await.unwrap();
    project(&w);
    s.handle(&events).await.unwrap();
    let mut restarted = sender(&w);
    restarted.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 2, "the first send and one redelivery");
    // A second --redeliver is a new window: one more.
    restarted
        .redeliver(Seq(0), Seq(events[1].seq.0 + 100))
        .unwrap();
    restarted.handle(&events).await.unwrap();
    restarted.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 3);
}

#[test]
fn a_quo_line_with_a_phone_number_id_is_named_by_it_and_every_other_line_by_its_number() {
    let mut lines = lines();
    lines[0].phone_number_id = Some("PNq1".into());
    assert_eq!(deliver::wire_from(&lines, QUO_LINE, "+12125550199"), "PNq1");
    assert_eq!(
        deliver::wire_from(&lines, TWILIO_LINE, "+12125550198"),
        "+12125550198"
    );
    // A decision made for another number than the line has now keeps that number: the id
    // would send from the line's new number, which the gates did not clear.
    assert_eq!(
        deliver::wire_from(&lines, QUO_LINE, "+12125550100"),
        "+12125550100"
    );
    // A line gone from the configuration: the number.
    assert_eq!(
        deliver::wire_from(&lines, "gone", "+12125550199"),
        "+12125550199"
    );
}

mod outcomes;
mod recovery;
mod redelivery;
