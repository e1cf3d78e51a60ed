//! The outbound path (docs/outbound.md): an agent's request to send an SMS, the gates'
//! decision, the send attempt and its result, each a record in the log; and the `outbound`
//! consumer, which runs the gates and projects those records into the state of each message.
//!
//! ```text
//! POST /v1/messages ──► request record ──► `outbound` consumer: gates ──► decision record
//!                                                                            │ allow
//!                     result record ◄── provider API ◄── attempt record ◄── `sender`
//! ```
//!
//! - [`records`]: the record bodies and routes (the on-log format of this path);
//! - [`message`]: the state of one message, a pure fold of its records;
//! - [`store`]: the trees the projection and the API keep (the read model the API, the sender
//!   and the Postgres sync use);
//! - [`gating`]: the gates over that read model, the one evaluation this consumer decides
//!   with and the sender re-checks a re-send with;
//! - this file: the consumer.
//!
//! Invariants: a message is sent only after an `allow` decision for it is in the log; an
//! attempt record (and the sender's ledger entry) precedes every provider call; a message
//! that has an attempt and no result after a restart becomes `unknown`, never sent again by
//! itself (at most once).
//!
//! # The consumer
//!
//! The compliance gates for outbound requests, and the projection of every outbound record
//! into the state of its message.
//!
//! Two halves, kept apart so that a replay never decides anything again:
//!
//! - **Projection** ([`Consumer::handle_batch`], a pure function of the log): requests,
//!   decisions, attempts and results are folded into [`Message`]s with
//!   [`apply`]; allowed messages are counted for blast safety and mark the
//!   recipient as contacted by the line; provider-reported outgoing messages mark contacts
//!   too; line blocks are kept. Nothing here reads the clock.
//! - **Decisions** ([`Consumer::tick`], only when this consumer and the `controls` projection
//!   have read the whole log): every message waiting for the gates whose time has come (new
//!   ones at once, held ones when their window opens) is evaluated with
//!   [`crate::gates::evaluate`] at the clock's now, and the decision is appended as a record,
//!   which the projection then applies. The kill switch is on for the gates when the
//!   configuration says so or when an operator's record in the log has turned it on
//!   ([`crate::consumers::controls`]).
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
//! - Only records whose writer may write them are projected ([`crate::provenance`], checked by
//!   [`OutboundRecord::decode`]): a decision, attempt, result or dispatch result that hooklog
//!   did not write, or a line change by an agent, is a dead letter
//!   ([`BatchError::Forged`]) and changes no message.
//!
//! Key layout: see [`store`].

pub mod gating;
pub mod message;
pub mod records;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::alerts::{Alert, Alerter, Severity};
use crate::clock::Clock;
use crate::consumers::controls::Controls;
use crate::consumers::dedup::{self, Verdicts};
use crate::consumers::{compliance, Batch, BatchError, Consumer, Record};
use crate::event::{Micros, Seq};
use crate::gates::blast_safety::content_hash;
use crate::gates::{self, ComplianceConfig, Decision, LineConfig, Reason};
use crate::live::{Live, Watch};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::parse::{Data, Direction};
use crate::state::{StateError, StateStore};

use gating::{parse_time, Gating, Sending};
pub use message::{apply, Change, Message, Status, Step};
pub use records::{
    DispatchResult, GateDecision, GateVerdict, LineChange, MessageId, MessageRequest,
    OutboundRecord, RecordError, SendAttempt, SendResult, SendStatus,
};
pub use store::OutboundStore;
use store::SentEntry;

/// The consumer's name.
pub const NAME: &str = store::CONSUMER;

/// The settings the gates read, which a reload replaces together (`[compliance]` and
/// `[[lines]]`): the outbound gates and the sender's last-moment checks watch one cell.
#[derive(Clone, Debug)]
pub struct GateSettings {
    /// `[compliance]`.
    pub compliance: ComplianceConfig,
    /// `[[lines]]`.
    pub lines: Vec<LineConfig>,
}

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
    /// The operator's kill switch as the `controls` consumer projects it.
    controls: Controls,
    /// Whether deciding waits for that projection to have read the whole log (off only in
    /// tests that run no `controls` consumer).
    wait_for_controls: bool,
    /// Reloaded gate settings, taken between batches.
    reloads: Option<Watch<GateSettings>>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
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
            controls: Controls::open(log.clone())?,
            wait_for_controls: true,
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
            reloads: None,
        })
    }

    /// Takes `[compliance]` and `[[lines]]` from `live` between batches (a reload), from
    /// the next batch or tick on.
    pub fn reloading_from(mut self, live: &Live<GateSettings>) -> Outbound {
        self.reloads = Some(live.watch());
        let now = live.get();
        self.config = now.compliance.clone();
        self.lines = now.lines.clone();
        self
    }

    /// The reloaded settings, if a reload replaced them since the last batch.
    fn take_reloaded(&mut self) {
        if let Some(new) = self.reloads.as_mut().and_then(Watch::changed) {
            self.config = new.compliance.clone();
            self.lines = new.lines.clone();
            tracing::info!(
                consumer = NAME,
                "reloaded [compliance] and [[lines]] in force"
            );
        }
    }

    /// For tests that run no `controls` consumer: deciding does not wait for its projection
    /// (the kill switch it holds, off in such a test, is still read).
    pub fn without_controls_consumer(mut self) -> Outbound {
        self.wait_for_controls = false;
        self
    }

    fn project(&mut self, record: Record<'_>) -> Result<(), BatchError> {
        let event = record.event;
        let seq = event.seq;
        let poison = |error: String| BatchError::Poison { seq, error };
        match OutboundRecord::decode(event) {
            Some(Err(RecordError::Forged(forged))) => Err(forged.into()),
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
            Some(Ok(OutboundRecord::Attempt(a))) => {
                self.change(seq, &a.id, Change::Attempt(&a))?;
                if a.redelivery {
                    // A re-send counts toward the caps like any send (the sender has written
                    // the same entry already; this keeps it a projection of the log).
                    if let Some(msg) = self.store.message(&a.id)? {
                        self.store.record_resend(&msg, &a)?;
                    }
                }
                Ok(())
            }
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
                GateVerdict::Hold => {
                    let due = d
                        .hold_until
                        .as_deref()
                        .and_then(parse_time)
                        .map_or(Micros(0), |t| Micros(t.timestamp_micros()));
                    self.store.set_open(id, due)?;
                }
                GateVerdict::Allow => {
                    self.store.close(id)?;
                    self.count_cleared(seq, &msg, d)?;
                }
                GateVerdict::Refuse => self.store.close(id)?,
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

    /// Evaluates `msg` now, under `config` (the configuration with the kill switch as the
    /// log has it).
    fn evaluate(
        &self,
        config: &ComplianceConfig,
        msg: &Message,
        now: DateTime<Utc>,
    ) -> Result<GateDecision, StateError> {
        let gated = Gating {
            store: &self.store,
            state: self.state.as_ref(),
            config,
            lines: &self.lines,
        }
        .evaluate(msg, now, Sending::New)?;
        let (line, provider, to, decision) = (gated.line, gated.provider, gated.to, gated.decision);
        let mut decision = match decision {
            Decision::Allow => (GateVerdict::Allow, Vec::new(), None),
            Decision::Hold { until, reason } => (GateVerdict::Hold, vec![reason], Some(until)),
            Decision::Refuse { reasons } => (GateVerdict::Refuse, reasons, None),
        };
        // One idempotency key, one message: a second request that slipped past the API
        // (a crash between its append and its note) is refused, never sent twice.
        if let Some(key) = &msg.idempotency_key {
            if let Some(owner) = self.store.projected_id_for_key(key)? {
                if owner != msg.id {
                    decision.0 = GateVerdict::Refuse;
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
        // A kill switch in the log must be in force before anything is decided.
        let transient = |e: String| BatchError::Transient(e);
        if self.wait_for_controls
            && self
                .controls
                .projected_through()
                .map_err(|e| transient(e.to_string()))?
                .0
                < last
        {
            return Ok(());
        }
        let kill_switch = self
            .controls
            .kill_switch()
            .map_err(|e| transient(format!("the kill switch cannot be read: {e}")))?
            .is_some_and(|k| k.on);
        let config = if kill_switch && !self.config.kill_switch {
            std::borrow::Cow::Owned(ComplianceConfig {
                kill_switch: true,
                ..self.config.clone()
            })
        } else {
            std::borrow::Cow::Borrowed(&self.config)
        };
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
            let decision = self.evaluate(&config, &msg, now)?;
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
            if verdict == GateVerdict::Allow {
                self.count_cleared(seq, &msg, &decision)?;
            }
            let label = match verdict {
                GateVerdict::Allow => "allow",
                GateVerdict::Hold => "hold",
                GateVerdict::Refuse => "refuse",
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
            if verdict == GateVerdict::Refuse
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
        self.take_reloaded();
        let verdicts = self.verdicts.of_batch(batch.events())?;
        for record in batch.records() {
            if verdicts.is_original(record.event.seq)? {
                self.project(record)?;
            }
        }
        Ok(())
    }

    async fn tick(&mut self) -> Result<(), BatchError> {
        self.take_reloaded();
        self.decide_due().await
    }
}

#[cfg(test)]
mod tests;
