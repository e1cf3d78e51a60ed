//! Tests of the outbound consumer: the gates at the clock's now, holds, blast safety, rebuilds
//! that decide nothing again, and the projection of every record.

use super::*;
use crate::consumers::compliance::Compliance;
use crate::consumers::dedup::Dedup;
use crate::consumers::driver::{spawn_driver, DriverConfig, DriverContext};
use crate::consumers::outbound::{MessageRequest, Status};
use crate::consumers::Registry;
use crate::event::Event;
use crate::gates::TenDlc;
use crate::log::sled::{SledLog, SledOptions};
use crate::provider::SendProvider;
use chrono::TimeZone;
use tokio::sync::watch;

const TO: &str = "+12125550100"; // New York
const BODY: &str = "Hi, Sam from Acme Homes here. Still own 12 Elm St? Reply STOP to opt out";

fn lines() -> Vec<LineConfig> {
    vec![
        LineConfig {
            id: "quo-main".into(),
            number: "+12125550199".into(),
            provider: SendProvider::Quo,
            ten_dlc: TenDlc::Approved,
            business_name: "Acme Homes".into(),
            phone_number_id: None,
        },
        LineConfig {
            id: "tw-pending".into(),
            number: "+13125550199".into(),
            provider: SendProvider::Twilio,
            ten_dlc: TenDlc::Pending,
            business_name: "Acme Homes".into(),
            phone_number_id: None,
        },
    ]
}

/// Noon in New York on a weekday.
fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 10, 16, 0, 0).unwrap()
}

struct Harness {
    _dir: tempfile::TempDir,
    log: Arc<dyn Log>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: OutboundStore,
    ctx: DriverContext,
}

impl Harness {
    fn start(clock: Clock) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> =
            Arc::new(SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap());
        let mut h = Harness {
            store: OutboundStore::open(log.state().as_ref()).unwrap(),
            ctx: DriverContext {
                log: log.clone(),
                store: log.state(),
                registry: Arc::new(Registry::default()),
                metrics: Metrics::new(),
                alerter: Alerter::disabled(),
                config: DriverConfig {
                    idle_poll: std::time::Duration::from_millis(10),
                    ..DriverConfig::default()
                },
            },
            log,
            stop: watch::channel(false).0,
            tasks: Vec::new(),
            _dir: dir,
        };
        h.spawn(clock);
        h
    }

    fn spawn(&mut self, clock: Clock) {
        let (stop, rx) = watch::channel(false);
        self.stop = stop;
        let state = self.log.state();
        let dedup = Dedup::new(state.as_ref(), 72).unwrap();
        let compliance = Compliance::new(state.as_ref(), Alerter::disabled()).unwrap();
        let outbound = Outbound::new(
            self.log.clone(),
            ComplianceConfig::default(),
            lines(),
            clock,
            Alerter::disabled(),
            Metrics::new(),
        )
        .unwrap()
        .without_controls_consumer();
        self.tasks = vec![
            tokio::spawn(spawn_driver(dedup, self.ctx.clone(), rx.clone())),
            tokio::spawn(spawn_driver(compliance, self.ctx.clone(), rx.clone())),
            tokio::spawn(spawn_driver(outbound, self.ctx.clone(), rx)),
        ];
    }

    async fn stop(&mut self) {
        self.stop.send(true).unwrap();
        for t in self.tasks.drain(..) {
            t.await.unwrap();
        }
    }

    async fn request(&self, from: &str, to: &str, body: &str, key: Option<&str>) -> MessageId {
        let id = MessageId::generate(Micros::now());
        let r = OutboundRecord::Request(MessageRequest {
            id: id.clone(),
            idempotency_key: key.map(str::to_owned),
            from: from.into(),
            provider: None,
            to: to.into(),
            content: body.into(),
            requested_at: rfc3339(Utc::now()),
            requested_by: None,
        });
        self.log.append(r.to_verified(Micros::now())).await.unwrap();
        id
    }

    async fn settled(&self, id: &MessageId) -> Message {
        for _ in 0..500 {
            if let Some(m) = self.store.message(id).unwrap() {
                if m.status != Status::Pending || m.approved {
                    return m;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("message {id} was never decided");
    }

    fn decisions(&self) -> Vec<GateDecision> {
        self.log
            .read(Seq(0), 10_000)
            .unwrap()
            .iter()
            .filter_map(|e: &Event| match OutboundRecord::decode(e) {
                Some(Ok(OutboundRecord::Decision(d))) => Some(d),
                _ => None,
            })
            .collect()
    }
}

fn codes(m: &Message) -> Vec<gates::ReasonCode> {
    m.reasons.iter().map(|r| r.code).collect()
}

#[tokio::test]
async fn a_request_that_passes_every_gate_is_allowed_once_and_its_decision_is_in_the_log() {
    let mut h = Harness::start(Clock::starting_at(noon()));
    let id = h.request("quo-main", TO, BODY, None).await;
    let m = h.settled(&id).await;
    assert!(m.approved, "{m:?}");
    assert_eq!(m.status, Status::Pending);
    assert_eq!(m.line_id.as_deref(), Some("quo-main"));
    assert_eq!(m.from_number.as_deref(), Some("+12125550199"));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let d = h.decisions();
    assert_eq!(d.len(), 1, "decided once: {d:?}");
    assert_eq!(d[0].verdict, GateVerdict::Allow);
    h.stop().await;
}

#[tokio::test]
async fn the_line_may_be_named_by_its_number_and_a_pending_10dlc_line_is_refused() {
    let mut h = Harness::start(Clock::starting_at(noon()));
    let by_number = h.request("+1 (212) 555-0199", TO, BODY, None).await;
    let pending = h.request("tw-pending", TO, &format!("{BODY}."), None).await;
    let unknown = h.request("nope", TO, &format!("{BODY}!"), None).await;
    assert!(h.settled(&by_number).await.approved);
    let p = h.settled(&pending).await;
    assert_eq!(p.status, Status::Refused);
    assert_eq!(codes(&p), [gates::ReasonCode::LineTenDlcPending]);
    assert_eq!(
        codes(&h.settled(&unknown).await),
        [gates::ReasonCode::LineUnknown]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_fourth_message_to_one_recipient_in_24_hours_is_refused_even_in_one_pass() {
    let mut h = Harness::start(Clock::starting_at(noon()));
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            h.request("quo-main", TO, &format!("{BODY} ({i})"), None)
                .await,
        );
    }
    let mut approved = 0;
    for id in &ids {
        let m = h.settled(id).await;
        if m.approved {
            approved += 1;
        } else {
            assert_eq!(codes(&m), [gates::ReasonCode::RecipientCap24h]);
        }
    }
    assert_eq!(approved, 3);
    h.stop().await;
}

#[tokio::test]
async fn an_opted_out_recipient_is_refused() {
    let mut h = Harness::start(Clock::starting_at(noon()));
    let change = compliance::OptOutChange {
        action: "add".into(),
        number: TO.into(),
        reason: Some("asked by phone".into()),
        provider: None,
        line: None,
    };
    let v = change.to_verified_as(Micros::now(), crate::event::Verification::AdminToken);
    h.log.append(v).await.unwrap();
    let id = h.request("quo-main", TO, BODY, None).await;
    let m = h.settled(&id).await;
    assert_eq!(m.status, Status::Refused);
    assert_eq!(codes(&m), [gates::ReasonCode::RecipientOptedOut]);
    h.stop().await;
}

#[tokio::test]
async fn a_request_in_quiet_hours_is_held_and_sent_when_the_window_opens() {
    // 21:30 in New York: held until 08:00. The clock then jumps to 08:00:05.
    let late = Utc.with_ymd_and_hms(2026, 6, 11, 1, 30, 0).unwrap();
    let mut h = Harness::start(Clock::starting_at(late));
    let id = h.request("quo-main", TO, BODY, None).await;
    let m = h.settled(&id).await;
    assert_eq!(m.status, Status::Held);
    assert_eq!(m.hold_until.as_deref(), Some("2026-06-11T12:00:00.000000Z"));
    h.stop().await;
    let morning = Utc.with_ymd_and_hms(2026, 6, 11, 12, 0, 5).unwrap();
    h.spawn(Clock::starting_at(morning));
    for _ in 0..500 {
        if h.store.message(&id).unwrap().unwrap().approved {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let m = h.store.message(&id).unwrap().unwrap();
    assert!(m.approved, "{m:?}");
    assert_eq!(m.evaluations, 2);
    let steps: Vec<&str> = m.history.iter().map(|s| s.event.as_str()).collect();
    assert_eq!(steps, ["requested", "held", "allowed"]);
    h.stop().await;
}

#[tokio::test]
async fn a_rebuild_re_projects_every_message_and_decides_nothing_again() {
    let mut h = Harness::start(Clock::starting_at(noon()));
    let a = h.request("quo-main", TO, BODY, None).await;
    let b = h.request("tw-pending", TO, BODY, None).await;
    h.settled(&a).await;
    h.settled(&b).await;
    let before = (
        h.store.message(&a).unwrap().unwrap(),
        h.store.message(&b).unwrap().unwrap(),
    );
    let end = h.log.stats().unwrap().last_seq;
    for _ in 0..500 {
        if h.log.cursor(NAME).unwrap().0 >= end {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let report = h
        .ctx
        .registry
        .rewind(NAME, Seq(0), false, false)
        .await
        .unwrap();
    assert!(report.rebuild);
    for _ in 0..500 {
        if h.log.cursor(NAME).unwrap().0 >= end && h.store.message(&b).unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(h.decisions().len(), 2, "nothing decided twice");
    assert_eq!(h.log.stats().unwrap().last_seq, end, "nothing appended");
    assert_eq!(h.store.message(&a).unwrap().unwrap(), before.0);
    assert_eq!(h.store.message(&b).unwrap().unwrap(), before.1);
    h.stop().await;
}

#[tokio::test]
async fn a_second_request_with_a_taken_idempotency_key_is_refused_not_sent() {
    let mut h = Harness::start(Clock::starting_at(noon()));
    let a = h.request("quo-main", TO, BODY, Some("k-1")).await;
    let b = h.request("quo-main", TO, BODY, Some("k-1")).await;
    assert!(h.settled(&a).await.approved);
    let m = h.settled(&b).await;
    assert_eq!(m.status, Status::Refused);
    assert!(codes(&m).contains(&gates::ReasonCode::DuplicateRequest));
    h.stop().await;
}
