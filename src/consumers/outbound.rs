//! The `outbound` consumer: the compliance gates for outbound requests, and the projection
//! of every outbound record into the state of its message.
//!
//! Two halves, kept apart so that a replay never decides anything again:
//!
//! - **Projection** ([`Consumer::handle_batch`], a pure function of the log): requests,
//!   decisions, attempts and results are folded into [`Message`]s with
//!   [`crate::outbound::apply`]; allowed messages are counted for blast safety and mark the
//!   recipient as contacted by the line; provider-reported outgoing messages mark contacts
//!   too; line blocks are kept. Nothing here reads the clock.
//! - **Decisions** ([`Consumer::tick`], only when this consumer has read the whole log):
//!   every message waiting for the gates whose time has come (new ones at once, held ones
//!   when their window opens) is evaluated with [`crate::gates::evaluate`] at the clock's
//!   now, and the decision is appended as a record, which the projection then applies.
//!
//! Invariants:
//! - A message is decided only when every record before now has been projected, so a
//!   decision already in the log is never made twice: a rebuild (rewind to 0) re-projects
//!   the decisions and decides nothing (tested).
//! - A decision this consumer appended and has not read back yet is remembered in memory,
//!   so the same message is not decided twice in a row.
//! - Blast safety counts a message from its `allow` decision on (not from its send), so two
//!   requests decided in one pass see each other.
//! - Upstreams are dedup (duplicated webhooks are skipped) and compliance (the suppression
//!   list is current up to the record being decided).
//!
//! Key layout: see [`crate::outbound::store`].

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::dedup::{self, Verdicts};
use super::{compliance, Batch, BatchError, Consumer, Record};
use crate::alerts::{Alert, Alerter, Severity};
use crate::clock::Clock;
use crate::event::{Micros, Seq};
use crate::gates::blast_safety::content_hash;
use crate::gates::{self, ComplianceConfig, Decision, Inputs, LineConfig, Provider, Reason};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::outbound::store::{OutboundStore, SentEntry};
use crate::outbound::{apply, Change, GateDecision, Message, MessageId, OutboundRecord, Verdict};
use crate::parse::{Data, Direction};
use crate::state::{StateError, StateStore};

/// The consumer's name.
pub const NAME: &str = crate::outbound::store::CONSUMER;

/// The gates and the message projection.
pub struct Outbound {
    log: Arc<dyn Log>,
    state: Arc<dyn StateStore>,
    store: OutboundStore,
    verdicts: Verdicts,
    config: ComplianceConfig,
    lines: Vec<LineConfig>,
    clock: Clock,
    alerter: Alerter,
    metrics: Metrics,
    /// Decisions appended and not yet projected: message id → the decision's record.
    in_flight: HashMap<MessageId, Seq>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Outbound {
    /// The consumer over `log`'s state.
    pub fn new(
        log: Arc<dyn Log>,
        config: ComplianceConfig,
        lines: Vec<LineConfig>,
        clock: Clock,
        alerter: Alerter,
        metrics: Metrics,
    ) -> Result<Outbound, StateError> {
        let state = log.state();
        Ok(Outbound {
            store: OutboundStore::open(state.as_ref())?,
            verdicts: Verdicts::open(state.as_ref())?,
            state,
            log,
            config,
            lines,
            clock,
            alerter,
            metrics,
            in_flight: HashMap::new(),
        })
    }

    /// The line a request's `from` names: a line id, or a line's number.
    fn resolve_line(&self, from: &str) -> Option<&LineConfig> {
        let number = crate::phone::normalize_e164(from);
        self.lines.iter().find(|l| l.id == from).or_else(|| {
            number
                .as_deref()
                .and_then(|n| self.lines.iter().find(|l| l.number == n))
        })
    }

    fn project(&mut self, record: Record<'_>) -> Result<(), BatchError> {
        let event = record.event;
        let seq = event.seq;
        let poison = |error: String| BatchError::Poison { seq, error };
        match OutboundRecord::decode(event) {
            Some(Err(e)) => Err(poison(e.to_string())),
            Some(Ok(OutboundRecord::Request(r))) => {
                if self.store.message(&r.id)?.is_none() {
                    self.store.put_message(&Message::requested(seq.0, &r))?;
                    self.store.set_open(&r.id, Micros(0))?;
                    if let Some(key) = &r.idempotency_key {
                        self.store.claim_key(key, &r.id)?;
                    }
                }
                Ok(())
            }
            Some(Ok(OutboundRecord::Decision(d))) => {
                if self.in_flight.get(&d.id).is_some_and(|s| *s <= seq) {
                    self.in_flight.remove(&d.id);
                }
                self.change(seq, &d.id, Change::Decision(&d))?;
                Ok(())
            }
            Some(Ok(OutboundRecord::Attempt(a))) => self.change(seq, &a.id, Change::Attempt(&a)),
            Some(Ok(OutboundRecord::Result(r))) => self.change(seq, &r.id, Change::Result(&r)),
            Some(Ok(OutboundRecord::Line(l))) => Ok(self.store.put_line(seq.0, &l)?),
            Some(Ok(OutboundRecord::Dispatch(_))) => Ok(()),
            None => self.project_webhook(record),
        }
    }

    /// Applies `change` to its message and keeps the indexes in step with the new state.
    fn change(&mut self, seq: Seq, id: &MessageId, change: Change<'_>) -> Result<(), BatchError> {
        let Some(mut msg) = self.store.message(id)? else {
            // The request record always precedes its decision; only a log edited by hand
            // (or a bug) gets here. Not poison: nothing downstream can act on it either.
            tracing::warn!(seq = seq.0, id = %id, "outbound record for an unknown message; ignored");
            return Ok(());
        };
        if !apply(&mut msg, seq.0, change) {
            return Ok(());
        }
        self.store.put_message(&msg)?;
        if let Change::Decision(d) = change {
            match d.verdict {
                Verdict::Hold => {
                    let due = d
                        .hold_until
                        .as_deref()
                        .and_then(parse_time)
                        .map_or(Micros(0), |t| Micros(t.timestamp_micros()));
                    self.store.set_open(id, due)?;
                }
                Verdict::Allow => {
                    self.store.close(id)?;
                    self.count_cleared(seq, &msg, d)?;
                }
                Verdict::Refuse => self.store.close(id)?,
            }
        }
        Ok(())
    }

    /// An allowed message counts for blast safety and makes the recipient a contact.
    fn count_cleared(&self, seq: Seq, msg: &Message, d: &GateDecision) -> Result<(), StateError> {
        let (Some(line_id), Some(to)) = (&d.line_id, &d.to) else {
            return Ok(());
        };
        let at = parse_time(&d.decided_at).unwrap_or_default();
        self.store.record_send(
            &msg.id,
            &SentEntry {
                line_id: line_id.clone(),
                to: to.clone(),
                content_hash: content_hash(&msg.content),
                at,
            },
        )?;
        self.store.set_contacted(line_id, to, seq.0)
    }

    /// A provider-reported outgoing message (sent from the provider's app, or by us) makes
    /// its recipients contacts of the line.
    fn project_webhook(&mut self, record: Record<'_>) -> Result<(), BatchError> {
        let Ok(parsed) = record.parsed() else {
            // Unparseable webhooks are dedup's and the sinks' to report.
            return Ok(());
        };
        let Data::Message(m) = &parsed.data else {
            return Ok(());
        };
        if m.direction != Direction::Outbound {
            return Ok(());
        }
        let Some(from) = crate::phone::normalize_e164(&m.from) else {
            return Ok(());
        };
        let Some(line) = self.lines.iter().find(|l| l.number == from) else {
            return Ok(());
        };
        for to in &m.to {
            if let Some(to) = crate::phone::normalize_e164(to) {
                self.store
                    .set_contacted(&line.id, &to, record.event.seq.0)?;
            }
        }
        Ok(())
    }

    /// Evaluates `msg` now.
    fn evaluate(&self, msg: &Message, now: DateTime<Utc>) -> Result<GateDecision, StateError> {
        let line = self.resolve_line(&msg.from);
        let line_id = line.map_or_else(|| msg.from.clone(), |l| l.id.clone());
        let provider = msg
            .provider
            .or(line.map(|l| l.provider))
            .unwrap_or(Provider::Openphone);
        let to = crate::phone::normalize_e164(&msg.to);
        let first_requested_at = parse_time(&msg.requested_at).unwrap_or(now);
        let history = self.store.sends_since(now - Duration::hours(24))?;
        let contacted = match &to {
            Some(to) => self.store.contacted(&line_id, to)?,
            None => false,
        };
        let blocked = self.store.line(&line_id)?;
        let state = self.state.clone();
        let suppressions =
            move |n: &str| compliance::is_suppressed(state.as_ref(), n).map_err(|e| e.to_string());
        let request = gates::Request {
            line_id: line_id.clone(),
            provider,
            to: msg.to.clone(),
            body: msg.content.clone(),
            first_requested_at,
            now,
        };
        let decision = gates::evaluate(
            &request,
            &Inputs {
                config: &self.config,
                lines: &self.lines,
                suppressions: &suppressions,
                history: &history,
                line_has_texted_recipient: contacted,
                line_blocked: blocked.as_ref().and_then(|b| b.blocked()),
            },
        );
        let mut decision = match decision {
            Decision::Allow => (Verdict::Allow, Vec::new(), None),
            Decision::Hold { until, reason } => (Verdict::Hold, vec![reason], Some(until)),
            Decision::Refuse { reasons } => (Verdict::Refuse, reasons, None),
        };
        // One idempotency key, one message: a second request that slipped past the API
        // (a crash between its append and its note) is refused, never sent twice.
        if let Some(key) = &msg.idempotency_key {
            if let Some(owner) = self.store.projected_id_for_key(key)? {
                if owner != msg.id {
                    decision.0 = Verdict::Refuse;
                    decision.2 = None;
                    decision.1.push(Reason::new(
                        gates::ReasonCode::DuplicateRequest,
                        format!("idempotency key `{key}` belongs to message {owner}"),
                    ));
                }
            }
        }
        let (verdict, reasons, until) = decision;
        Ok(GateDecision {
            id: msg.id.clone(),
            verdict,
            reasons,
            hold_until: until.map(rfc3339),
            line_id: line.map(|l| l.id.clone()),
            from_number: line.map(|l| l.number.clone()),
            provider: Some(provider),
            to,
            evaluation: msg.evaluations + 1,
            decided_at: rfc3339(now),
        })
    }

    /// Decides every message whose time has come. Only called when the whole log is read.
    async fn decide_due(&mut self) -> Result<(), BatchError> {
        let cursor = self
            .log
            .cursor(NAME)
            .map_err(|e| BatchError::Transient(e.to_string()))?;
        let last = self.log.watch_last_seq().borrow().0;
        if cursor.0 < last {
            return Ok(());
        }
        let now = self.clock.now();
        let due = self.store.due(Micros(now.timestamp_micros()))?;
        for id in due {
            if self.in_flight.contains_key(&id) {
                continue;
            }
            let Some(msg) = self.store.message(&id)? else {
                self.store.close(&id)?;
                continue;
            };
            if !msg.awaits_decision() {
                self.store.close(&id)?;
                continue;
            }
            let decision = self.evaluate(&msg, now)?;
            let verdict = decision.verdict;
            let record = OutboundRecord::Decision(decision.clone());
            let seq = self
                .log
                .append(record.to_verified(Micros(now.timestamp_micros())))
                .await
                .map_err(|e| BatchError::Transient(format!("cannot append a decision: {e}")))?;
            self.in_flight.insert(id.clone(), seq);
            // Blast safety must see this message before the next one is decided; the
            // projection writes the same entry again when it reads the record.
            if verdict == Verdict::Allow {
                self.count_cleared(seq, &msg, &decision)?;
            }
            let label = match verdict {
                Verdict::Allow => "allow",
                Verdict::Hold => "hold",
                Verdict::Refuse => "refuse",
            };
            self.metrics
                .outbound_decisions
                .with_label_values(&[label])
                .inc();
            let codes: Vec<String> = decision
                .reasons
                .iter()
                .map(|r| format!("{:?}", r.code))
                .collect();
            tracing::info!(id = %id, verdict = label, reasons = ?codes, seq = seq.0, "outbound request decided");
            if verdict == Verdict::Refuse
                && decision
                    .reasons
                    .iter()
                    .any(|r| r.code == gates::ReasonCode::SuppressionUnavailable)
            {
                self.alerter.raise(Alert {
                    key: "outbound:suppression_unavailable".into(),
                    severity: Severity::Critical,
                    title: "outbound requests refused: the suppression list cannot be read".into(),
                    reason: format!(
                        "message {id} was refused because opt-outs could not be checked"
                    ),
                    next_step: "check the daemon log for state storage errors".into(),
                });
            }
        }
        // Blast safety looks back 24 h; keep a day more for the record.
        self.store.prune_sends(now - Duration::hours(48))?;
        Ok(())
    }
}

impl Consumer for Outbound {
    fn name(&self) -> &'static str {
        NAME
    }

    fn upstreams(&self) -> &'static [&'static str] {
        &[dedup::NAME, compliance::NAME]
    }

    fn reset(&mut self) -> Result<(), BatchError> {
        self.store.clear_projection()?;
        self.in_flight.clear();
        Ok(())
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        let verdicts = self.verdicts.of_batch(batch.events())?;
        for record in batch.records() {
            if verdicts.is_original(record.event.seq)? {
                self.project(record)?;
            }
        }
        Ok(())
    }

    async fn tick(&mut self) -> Result<(), BatchError> {
        self.decide_due().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::compliance::Compliance;
    use crate::consumers::dedup::Dedup;
    use crate::consumers::{spawn_driver, DriverConfig, DriverContext, Registry};
    use crate::event::Event;
    use crate::gates::TenDlc;
    use crate::log::sled::{SledLog, SledOptions};
    use crate::outbound::{MessageRequest, Status};
    use chrono::TimeZone;
    use tokio::sync::watch;

    const TO: &str = "+12125550100"; // New York
    const BODY: &str = "Hi, Sam from Acme Homes here. Still own 12 Elm St? Reply STOP to opt out";

    fn lines() -> Vec<LineConfig> {
        vec![
            LineConfig {
                id: "quo-main".into(),
                number: "+12125550199".into(),
                provider: Provider::Openphone,
                ten_dlc: TenDlc::Approved,
                business_name: "Acme Homes".into(),
            },
            LineConfig {
                id: "tw-pending".into(),
                number: "+13125550199".into(),
                provider: Provider::Twilio,
                ten_dlc: TenDlc::Pending,
                business_name: "Acme Homes".into(),
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
            let log: Arc<dyn Log> = Arc::new(
                SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap(),
            );
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
            .unwrap();
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
        assert_eq!(d[0].verdict, Verdict::Allow);
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
        let change = compliance::AdminChange {
            action: "add".into(),
            number: TO.into(),
            reason: Some("asked by phone".into()),
        };
        let v = crate::event::Verified::new(
            Micros::now(),
            crate::event::Source::Internal,
            compliance::ADMIN_ROUTE.into(),
            vec![],
            serde_json::to_vec(&change).unwrap(),
            crate::event::Verification::AdminToken,
        );
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
}
