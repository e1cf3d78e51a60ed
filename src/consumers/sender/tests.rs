//! Tests of `crate::consumers::sender`.

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
        content: "Hi, this is Acme. Reply STOP to opt out.".into(),
        requested_at: "2026-11-30T17:00:00Z".into(),
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

#[tokio::test]
async fn an_attempt_without_a_result_becomes_unknown_with_a_critical_alert_and_no_call() {
    let w = world();
    let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
    let s = sender(&w);
    // The daemon died after the ledger entry and the attempt record, during the call.
    s.put_ledger(&id, 1, LedgerState::Attempting, None, None)
        .unwrap();
    append(
        &w,
        OutboundRecord::Attempt(SendAttempt {
            id: id.clone(),
            attempt: 1,
            provider: SendProvider::Twilio,
            from: "+12125550198".into(),
            to: TO.into(),
            redelivery: false,
            at: "2026-11-30T17:00:02Z".into(),
        }),
    )
    .await;
    project(&w);
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    assert_eq!(w.twilio.calls(), 0, "never called again");
    let r = results(&history(&w, &id));
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].attempt, r[0].status, r[0].outcome.as_str()),
        (1, SendStatus::Unknown, "crashed")
    );
    let alerts = w.alerts.taken();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert!(alerts[0].title.contains(id.as_str()), "{:?}", alerts[0]);
    assert_eq!(
        s.ledger_entry(&id).unwrap().unwrap().state,
        LedgerState::Done
    );
    project(&w);
    assert_eq!(
        w.outbound.message(&id).unwrap().unwrap().status,
        crate::consumers::outbound::Status::Unknown
    );
    // And it stays that way.
    s.handle(&events).await.unwrap();
    assert_eq!((w.twilio.calls(), results(&history(&w, &id)).len()), (0, 1));
}

#[tokio::test]
async fn a_result_recorded_before_the_crash_closes_the_ledger_without_a_second_result() {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    project(&w);
    // The daemon stopped after the result was flushed, before the ledger said `done`.
    s.put_ledger(&id, 1, LedgerState::Attempting, None, None)
        .unwrap();
    let mut restarted = sender(&w);
    restarted.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 1);
    assert_eq!(results(&history(&w, &id)).len(), 1, "no redundant result");
    assert!(w.alerts.taken().is_empty(), "nothing to check: it was sent");
    let entry = restarted.ledger_entry(&id).unwrap().unwrap();
    assert_eq!(
        (entry.state, entry.status),
        (LedgerState::Done, Some(SendStatus::Sent))
    );
}

/// The log, refusing every append once `allowed` reaches 0 (a full disk).
struct Flaky {
    inner: Arc<dyn Log>,
    allowed: Mutex<Option<usize>>,
}

impl Flaky {
    fn allow(&self, n: Option<usize>) {
        *self.allowed.lock().unwrap() = n;
    }
}

impl Log for Flaky {
    fn append(&self, event: Verified) -> crate::log::AppendTicket {
        let mut allowed = self.allowed.lock().unwrap();
        match *allowed {
            Some(0) => {
                crate::log::AppendTicket::failed(crate::log::LogError::Storage("disk full".into()))
            }
            Some(n) => {
                *allowed = Some(n - 1);
                self.inner.append(event)
            }
            None => self.inner.append(event),
        }
    }
    fn read(&self, after: Seq, limit: usize) -> Result<Vec<Event>, crate::log::LogError> {
        self.inner.read(after, limit)
    }
    fn get(&self, seq: Seq) -> Result<Option<Event>, crate::log::LogError> {
        self.inner.get(seq)
    }
    fn stats(&self) -> Result<crate::log::LogStats, crate::log::LogError> {
        self.inner.stats()
    }
    fn cursor(&self, consumer: &str) -> Result<Seq, crate::log::LogError> {
        self.inner.cursor(consumer)
    }
    fn store_cursor(&self, consumer: &str, seq: Seq) -> Result<(), crate::log::LogError> {
        self.inner.store_cursor(consumer, seq)
    }
    fn cursors(&self) -> Result<Vec<(String, Seq)>, crate::log::LogError> {
        self.inner.cursors()
    }
    fn watch_last_seq(&self) -> tokio::sync::watch::Receiver<Seq> {
        self.inner.watch_last_seq()
    }
    fn is_writable(&self) -> bool {
        self.inner.is_writable()
    }
    fn close(&self) -> Result<(), crate::log::LogError> {
        self.inner.close()
    }
    fn state(&self) -> Arc<dyn StateStore> {
        self.inner.state()
    }
}

fn flaky_sender(w: &World) -> (Sender, Arc<Flaky>) {
    let flaky = Arc::new(Flaky {
        inner: w.log.clone(),
        allowed: Mutex::new(None),
    });
    let s = Sender::new(
        flaky.clone(),
        w.outbound.clone(),
        ComplianceConfig::default(),
        lines(),
        clients(w),
        &SenderConfig::default(),
        w.alerts.clone(),
        w.metrics.clone(),
    )
    .unwrap()
    .with_clock(Clock::starting_at(noon_in_new_york()));
    (s, flaky)
}

#[tokio::test]
async fn an_attempt_the_log_refused_calls_nothing_and_the_retried_batch_sends_once() {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let (mut s, flaky) = flaky_sender(&w);
    flaky.allow(Some(0));
    let err = s.handle(&events).await.unwrap_err();
    assert!(matches!(err, BatchError::Transient(_)), "{err:?}");
    assert_eq!(w.quo.calls(), 0, "never called without its attempt record");
    assert_eq!(s.ledger_entry(&id).unwrap(), None, "the guard was undone");
    flaky.allow(None);
    s.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 1);
    let r = results(&history(&w, &id));
    assert_eq!((r.len(), r[0].status), (1, SendStatus::Sent));
}

#[tokio::test]
async fn a_result_the_log_refused_is_appended_by_the_retry_without_a_second_call() {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let (mut s, flaky) = flaky_sender(&w);
    // The attempt record goes in; the result does not.
    flaky.allow(Some(1));
    assert!(s.handle(&events).await.is_err());
    assert_eq!(w.quo.calls(), 1);
    assert!(results(&history(&w, &id)).is_empty());
    assert_eq!(
        s.ledger_entry(&id).unwrap().unwrap().state,
        LedgerState::Attempting
    );
    flaky.allow(None);
    s.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 1, "never called twice");
    let r = results(&history(&w, &id));
    assert_eq!(
        (r.len(), r[0].status, r[0].provider_id.as_deref()),
        (1, SendStatus::Sent, Some("AC1")),
        "the real result, not `unknown`"
    );
    assert!(w.alerts.taken().is_empty());
}

/// Another hooklog on the same log with state of its own (a replica on a shared
/// JetStream stream), its message projection at the allow decision of `id`, as `w`'s is.
/// Its appends go through a [`Flaky`], to stop it between an attempt and its result.
fn other_replica(w: &World, id: &MessageId) -> (Sender, Arc<Flaky>) {
    let replica: Arc<dyn Log> = crate::consumers::testutil::OtherReplica::on(&w.log);
    let outbound = OutboundStore::open(replica.state().as_ref()).unwrap();
    outbound
        .put_message(&w.outbound.message(id).unwrap().unwrap())
        .unwrap();
    let flaky = Arc::new(Flaky {
        inner: replica,
        allowed: Mutex::new(None),
    });
    let s = Sender::new(
        flaky.clone(),
        outbound,
        ComplianceConfig::default(),
        lines(),
        clients(w),
        &SenderConfig::default(),
        Arc::new(Alerts::default()),
        Metrics::new(),
    )
    .unwrap()
    .with_clock(Clock::starting_at(noon_in_new_york()));
    (s, flaky)
}

/// Runs `s` under the driver, as the daemon starts it (the learning pass, then
/// batches), from a cursor at `from` with the outbound projection at `through`, until its
/// cursor reaches `through`.
async fn run_from(w: &World, s: Sender, from: Seq, through: Seq) {
    w.log.store_cursor(NAME, from).unwrap();
    w.log
        .store_cursor(crate::consumers::outbound::store::CONSUMER, through)
        .unwrap();
    crate::consumers::testutil::drive_until(&w.log, s, through).await;
}

#[tokio::test]
async fn a_message_another_replica_sent_before_the_fail_over_is_not_sent_again_and_the_ledger_says_done(
) {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let (mut other, _) = other_replica(&w, &id);
    other.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 1);

    // This replica takes over with its own, empty ledger; its message projection is at
    // the decision (it has not read the attempt and the result yet).
    run_from(&w, sender(&w), Seq(0), events[1].seq).await;
    assert_eq!(w.quo.calls(), 1, "not sent again");
    assert_eq!(history(&w, &id).len(), 2, "nothing appended");
    assert!(w.alerts.taken().is_empty());
    let entry = sender(&w).ledger_entry(&id).unwrap().unwrap();
    assert_eq!(
        (entry.attempt, entry.state, entry.status),
        (1, LedgerState::Done, Some(SendStatus::Sent))
    );
}

#[tokio::test]
async fn a_message_another_replica_was_sending_when_it_died_ends_unknown_with_a_critical_alert_and_no_call(
) {
    let w = world();
    let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
    let (mut other, flaky) = other_replica(&w, &id);
    // Its attempt record goes in and the provider is called; it dies before the result.
    flaky.allow(Some(1));
    assert!(other.handle(&events).await.is_err());
    assert_eq!(w.twilio.calls(), 1);
    assert_eq!(attempts(&history(&w, &id)).len(), 1);
    assert!(results(&history(&w, &id)).is_empty());

    run_from(&w, sender(&w), Seq(0), events[1].seq).await;
    assert_eq!(w.twilio.calls(), 1, "never called again");
    let r = results(&history(&w, &id));
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (r[0].attempt, r[0].status, r[0].outcome.as_str()),
        (1, SendStatus::Unknown, "crashed")
    );
    let alerts = w.alerts.taken();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (alerts[0].severity, alerts[0].key.as_str()),
        (Severity::Critical, format!("send:crashed:{id}").as_str())
    );
    let entry = sender(&w).ledger_entry(&id).unwrap().unwrap();
    assert_eq!(
        (entry.state, entry.status),
        (LedgerState::Done, Some(SendStatus::Unknown))
    );

    // Started again from a stale cursor: nothing more is called, appended or alerted.
    run_from(&w, sender(&w), Seq(0), events[1].seq).await;
    assert_eq!(w.twilio.calls(), 1);
    assert_eq!(results(&history(&w, &id)).len(), 1);
    assert_eq!(w.alerts.taken().len(), 1);
}

#[tokio::test]
async fn a_message_another_replica_only_allowed_before_the_fail_over_is_sent_once() {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    run_from(&w, sender(&w), Seq(0), events[1].seq).await;
    assert_eq!(w.quo.calls(), 1);
    let h = history(&w, &id);
    assert_eq!(
        (attempts(&h).len(), results(&h)[0].status),
        (1, SendStatus::Sent)
    );
    // Started again from a stale cursor (a fail-over back): not sent twice.
    run_from(&w, sender(&w), Seq(0), events[1].seq).await;
    assert_eq!(w.quo.calls(), 1);
    assert_eq!(history(&w, &id).len(), 2);
}

#[tokio::test]
async fn learning_never_moves_the_ledger_back_and_keeps_the_window_of_the_same_attempt() {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let mut s = sender(&w);
    // Attempt 2, a redelivery in window 7, was under way when the process stopped.
    s.put_ledger(&id, 2, LedgerState::Attempting, None, Some(7))
        .unwrap();
    let attempt = |n| {
        OutboundRecord::Attempt(SendAttempt {
            id: id.clone(),
            attempt: n,
            provider: SendProvider::Quo,
            from: "+12125550199".into(),
            to: TO.into(),
            redelivery: n > 1,
            at: "2026-11-30T17:00:02Z".into(),
        })
    };
    let msg = w.outbound.message(&id).unwrap().unwrap();
    let result =
        |n, status: SendStatus| OutboundRecord::Result(s.result(&msg, n, status, status.as_str()));
    let records = [
        attempt(1),
        result(1, SendStatus::Sent),
        attempt(2),
        result(2, SendStatus::Failed),
    ];
    for r in records {
        append(&w, r).await;
    }
    let learn = |after: Seq| Arc::new(Batch::new(w.log.read(after, 100).unwrap()));
    let entry = |s: &Sender| {
        let e = s.ledger_entry(&id).unwrap().unwrap();
        (e.attempt, e.state, e.status, e.window)
    };
    s.learn_effects(&learn(events[1].seq)).await.unwrap();
    let done = (2, LedgerState::Done, Some(SendStatus::Failed), Some(7));
    assert_eq!(
        entry(&s),
        done,
        "attempt 1 is older; attempt 2 keeps its window"
    );
    s.learn_effects(&learn(events[1].seq)).await.unwrap();
    assert_eq!(entry(&s), done, "learning again changes nothing");
    let up_to_attempt_2 = Arc::new(Batch::new(w.log.read(events[1].seq, 3).unwrap()));
    s.learn_effects(&up_to_attempt_2).await.unwrap();
    assert_eq!(entry(&s), done, "an attempt never reopens its result");
    let seq = append(&w, attempt(3)).await;
    s.learn_effects(&learn(Seq(seq - 1))).await.unwrap();
    assert_eq!(
        entry(&s),
        (3, LedgerState::Attempting, None, None),
        "a newer attempt"
    );
    assert_eq!(w.quo.calls(), 0, "learning calls nothing");
}

#[tokio::test]
async fn twilio_21610_fails_the_message_and_appends_an_opt_out_that_compliance_projects() {
    let w = world();
    w.twilio.always(Outcome::OptedOut);
    let (first, mut events) = allowed(&w, TWILIO_LINE, TO).await;
    let (second, more) = allowed(&w, QUO_LINE, TO).await;
    events.extend(more);
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();

    let r = &results(&history(&w, &first))[0];
    assert_eq!(
        (r.status, r.outcome.as_str(), r.code.as_deref()),
        (SendStatus::Failed, "opted_out", Some("21610"))
    );
    // The second message, on another line and provider, is refused before any call.
    let r = &results(&history(&w, &second))[0];
    assert_eq!(r.status, SendStatus::Refused);
    assert_eq!(r.reasons[0].code, ReasonCode::RecipientOptedOut);
    assert_eq!((w.twilio.calls(), w.quo.calls()), (1, 0));

    project_compliance(&w).await;
    let e = compliance::entry(w.log.state().as_ref(), TO)
        .unwrap()
        .unwrap();
    assert!(e.is_suppressed());
    assert_eq!(
        (e.provider.as_str(), e.line.as_deref()),
        ("twilio", Some(TWILIO_LINE))
    );
    assert!(e.text.contains("21610"), "{}", e.text);
}

#[tokio::test]
async fn a_quo_a2p_refusal_blocks_the_line_and_later_messages_from_it_are_refused() {
    let w = world();
    w.quo.always(Outcome::LineBlocked {
        reason: "A2P registration not approved".into(),
    });
    let (first, mut events) = allowed(&w, QUO_LINE, TO).await;
    let (second, more) = allowed(&w, QUO_LINE, "+12125550101").await;
    events.extend(more);
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();

    assert_eq!(w.quo.calls(), 1);
    let r = &results(&history(&w, &first))[0];
    assert_eq!(
        (r.status, r.outcome.as_str()),
        (SendStatus::Failed, "line_blocked")
    );
    let r = &results(&history(&w, &second))[0];
    assert_eq!(
        (r.status, r.reasons[0].code),
        (SendStatus::Refused, ReasonCode::LineBlocked)
    );
    let blocks: Vec<LineChange> = w
        .log
        .read(Seq(0), 1000)
        .unwrap()
        .iter()
        .filter(|e| e.route == LINE_ROUTE)
        .filter_map(|e| match OutboundRecord::decode(e) {
            Some(Ok(OutboundRecord::Line(l))) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        (blocks[0].line_id.as_str(), blocks[0].state.as_str()),
        (QUO_LINE, "blocked")
    );

    // Once projected, the block holds for a sender that never saw it happen.
    project(&w);
    assert!(w
        .outbound
        .line(QUO_LINE)
        .unwrap()
        .unwrap()
        .blocked()
        .is_some());
    let (third, events) = allowed(&w, QUO_LINE, TO).await;
    let mut restarted = sender(&w);
    restarted.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 1);
    assert_eq!(results(&history(&w, &third))[0].status, SendStatus::Refused);
}

#[tokio::test]
async fn a_recipient_who_opted_out_after_the_decision_is_refused_without_a_call() {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let stop = OptOutChange {
        action: "add".into(),
        number: TO.into(),
        reason: Some("replied STOP".into()),
        provider: None,
        line: None,
    };
    w.log
        .append(OutboundOrOptOut::OptOut(stop).to_verified())
        .await
        .unwrap();
    project_compliance(&w).await;
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 0);
    let r = &results(&history(&w, &id))[0];
    assert_eq!(
        (r.status, r.tries, r.reasons[0].code),
        (SendStatus::Refused, 0, ReasonCode::RecipientOptedOut)
    );
    assert!(
        attempts(&history(&w, &id)).is_empty(),
        "no attempt was made"
    );
    assert_eq!(
        w.metrics
            .sends
            .with_label_values(&["openphone", "refused"])
            .get(),
        1
    );
}

#[tokio::test]
async fn the_kill_switch_refuses_at_the_last_moment_without_a_call() {
    let w = world();
    let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
    let config = ComplianceConfig {
        kill_switch: true,
        ..ComplianceConfig::default()
    };
    let mut s = sender_with(&w, config, clients(&w));
    s.handle(&events).await.unwrap();
    assert_eq!(w.twilio.calls(), 0);
    let r = &results(&history(&w, &id))[0];
    assert_eq!(
        (r.status, r.reasons[0].code),
        (SendStatus::Refused, ReasonCode::KillSwitch)
    );
}

#[tokio::test]
async fn quiet_hours_closed_at_the_last_moment_refuse_without_a_call() {
    let w = world();
    let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
    // 03:00 in New York.
    let night = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let mut s = sender(&w).with_clock(Clock::starting_at(night));
    s.handle(&events).await.unwrap();
    assert_eq!(w.twilio.calls(), 0);
    let r = &results(&history(&w, &id))[0];
    assert_eq!(
        (r.status, r.reasons[0].code),
        (SendStatus::Refused, ReasonCode::QuietHours)
    );
}

#[tokio::test]
async fn three_429s_after_the_first_try_give_up_as_failed_with_an_alert() {
    let w = world();
    w.twilio.always(Outcome::RateLimited);
    let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
    let mut s = sender_with(&w, ComplianceConfig::default(), clients(&w));
    // Twilio's limiter would space four tries a second apart; the 429 path is what
    // is under test, so give this number a fresh, generous bucket.
    s.twilio.as_mut().unwrap().limiter = Arc::new(Limiter::new(Rate {
        per_second: 100,
        burst: 10,
    }));
    s.handle(&events).await.unwrap();
    assert_eq!(w.twilio.calls(), 4);
    let h = history(&w, &id);
    assert_eq!(attempts(&h).len(), 1, "one attempt, four tries");
    let r = &results(&h)[0];
    assert_eq!(
        (r.status, r.outcome.as_str(), r.tries),
        (SendStatus::Failed, "rate_limited", 4)
    );
    let alerts = w.alerts.taken();
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].key.starts_with("send:rate_limited:twilio"),
        "{:?}",
        alerts[0]
    );
}

#[tokio::test]
async fn the_limiter_keeps_twilio_to_one_message_a_second_per_number() {
    let w = world();
    let mut events = Vec::new();
    for i in 0..4 {
        let (_, e) = allowed(&w, TWILIO_LINE, &format!("+1212555011{i}")).await;
        events.extend(e);
    }
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    let calls = w.twilio.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 4);
    for pair in calls.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(950),
            "sends {gap:?} apart from one number"
        );
    }
}

#[tokio::test]
async fn a_provider_without_credentials_fails_closed_and_never_uses_the_other() {
    let w = world();
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let only_twilio = SendClients {
        openphone: None,
        twilio: Some(w.twilio.clone()),
    };
    let mut s = sender_with(&w, ComplianceConfig::default(), only_twilio);
    s.handle(&events).await.unwrap();
    assert_eq!((w.quo.calls(), w.twilio.calls()), (0, 0));
    let r = &results(&history(&w, &id))[0];
    assert_eq!(
        (r.status, r.outcome.as_str()),
        (SendStatus::Failed, "not_configured")
    );
    assert!(r.error.as_deref().unwrap().contains("openphone"));
    assert_eq!(w.alerts.taken().len(), 1);
}

#[tokio::test]
async fn a_call_that_never_connected_is_tried_again_within_the_same_attempt() {
    let w = world();
    w.quo.answer([
        Outcome::Transient {
            reason: "not sent: Connection Failed".into(),
        },
        Outcome::Sent {
            provider_id: "AC9".into(),
        },
    ]);
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    let h = history(&w, &id);
    assert_eq!(attempts(&h).len(), 1);
    let r = &results(&h)[0];
    assert_eq!(
        (r.status, r.provider_id.as_deref(), r.tries),
        (SendStatus::Sent, Some("AC9"), 2)
    );
}

#[tokio::test]
async fn a_5xx_is_unknown_with_an_alert_and_is_never_retried() {
    let w = world();
    w.quo.always(Outcome::Transient {
        reason: "Quo answered 503".into(),
    });
    let (id, events) = allowed(&w, QUO_LINE, TO).await;
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 1);
    let r = &results(&history(&w, &id))[0];
    assert_eq!(r.status, SendStatus::Unknown);
    assert_eq!(w.alerts.taken().len(), 1);
}

#[test]
fn sender_config_defaults_validate_and_bad_values_name_their_key() {
    let c = SenderConfig::default();
    assert!(c.validate().is_ok());
    assert_eq!(
        (
            c.enabled,
            c.quo_per_second,
            c.twilio_per_second,
            c.max_retries
        ),
        (true, 10, 1, 3)
    );
    let bad = [
        SenderConfig {
            quo_per_second: 11,
            ..SenderConfig::default()
        },
        SenderConfig {
            twilio_per_second: 0,
            ..SenderConfig::default()
        },
        SenderConfig {
            connect_timeout_secs: 30,
            ..SenderConfig::default()
        },
    ];
    for (c, key) in bad.iter().zip([
        "quo_per_second",
        "twilio_per_second",
        "connect_timeout_secs",
    ]) {
        assert!(c.validate().unwrap_err().starts_with(key));
    }
    let env = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    let (c, _) = Config::load_from(None, env("HOOKLOG_SENDER_TWILIO_PER_SECOND", "2")).unwrap();
    assert_eq!(c.sender.twilio_per_second, 2);
    let err = Config::load_from(None, env("HOOKLOG_SENDER_QUO_PER_SECOND", "50"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sender.quo_per_second"), "{err}");
    assert!(SendClients::from_config(&c).is_empty(), "no credentials");
}
