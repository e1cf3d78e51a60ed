//! The dispatch consumer: wakes agents with the events they own (DESIGN §5).
//!
//! For every record that dedup (an upstream) did not flag duplicate and that came from a
//! provider (hooklog's own `outbound`/`internal` records, including the results this
//! consumer writes, are never dispatched; neither is a record that does not parse, which
//! compliance dead-letters), the routing rules ([`crate::dispatch::Routes`]) name zero or
//! more agents. Each agent is sent the event once, by [`crate::dispatch::dispatch_with_retries`]
//! (breaker, retries with full jitter, one idempotency key `hooklog:<seq>:<dedup_key>` for
//! every attempt), with `opted_out` set when the contact (the other party of the message or
//! call) is on compliance's suppression list (compliance is the other upstream, so the list
//! already includes the record itself). The outcome is:
//!
//! - **delivered**: a [`DispatchResult`] record is appended to the log, then the ledger
//!   entry is written; the receipt→delivery latency goes to
//!   `hooklog_dispatch_latency_seconds`.
//! - **rejected** (the gateway refused it with a 4xx): result record, ledger entry, an
//!   alert; not retried, the same request would be refused again.
//! - **not delivered** (the gateway is down, the breaker is open): while the event is younger
//!   than `dispatch.dead_letter_after_secs` the batch fails as *transient* and the driver
//!   retries it with backoff (what was delivered before in the batch is in the ledger and is
//!   skipped). Once older, a `dead_lettered` result and ledger entry are written and the
//!   record is returned as *poison*: the driver dead-letters it, alerts and moves on.
//!
//! # The effects ledger (guarantee 4)
//!
//! A dispatch cannot be undone, so a replay must not repeat it: before calling the gateway
//! the consumer looks up `(seq, agent)` in the ledger and skips what is there. A plain
//! rewind therefore re-dispatches nothing. `rewind dispatch --redeliver` stores a
//! redelivery window `(after, through]` ([`Consumer::redeliver`]); records in it are
//! dispatched again (result records with `redelivery: true`), each once per window: the
//! ledger entry remembers the window's generation, so a batch retried after a transient
//! failure does not send twice. The window is removed when a batch passes `through`.
//!
//! A `dead_lettered` entry does not block a record that is still in the dead-letter list:
//! that is a redrive (or a rewind over a pending dead letter), and it is tried again. A
//! `dead_lettered` entry for a record that is *not* in the list can only mean the process
//! stopped between the ledger write and the driver's dead-lettering: the record is
//! returned as poison again, without a call, so it is never skipped silently.
//!
//! # Crash safety: at least once, with the same key
//!
//! The order is call → append result → write and flush ledger → (driver) save cursor. The
//! ledger entry is flushed at once, and at start the learning pass notes every result
//! record after the cursor in the ledger (below), so only a crash after the call and before
//! the result record is durable means the event is dispatched again at restart, with the
//! same idempotency key (and a second result record): the gateway drops the copy. Writing
//! the ledger before the call would instead lose the dispatch in that window; an agent that
//! is woken twice with one key is the better failure.
//!
//! # Learning from the log (fail-over)
//!
//! The ledger lives in local state; the results are records in the log. At start, before
//! the first batch, the driver hands the consumer the records from its cursor to the end of
//! the log ([`Consumer::learn_effects`]), and each [`DispatchResult`] whose `(seq, agent)`
//! has no ledger entry becomes one (its outcome, time and key; no window). Why: after a
//! fail-over between replicas sharing one JetStream stream, the new holder of the
//! consumers' lease starts from its own ledger and cursors, which know nothing of what the
//! previous holder dispatched: without the pass, it would wake every agent again for every
//! event after its (possibly stale) cursor. A learned `dead_lettered` entry is returned as
//! poison without a call (above), so the record lands in the new holder's dead-letter list.
//! `skipped_stale` is not a record: it is decided again, the same way, from the event's age.
//!
//! Key layout (trees of consumer `dispatch`):
//!
//! | tree          | key                                  | value                     |
//! |---------------|--------------------------------------|---------------------------|
//! | `ledger`      | seq (u64 big-endian) ++ agent, UTF-8 | JSON [`LedgerEntry`]      |
//! | `ledger_meta` | `redeliver`                          | JSON [`RedeliveryWindow`] |

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::dedup::{self, RangeVerdicts, Verdicts};
use super::redelivery::Redelivery;
pub use super::redelivery::RedeliveryWindow;
use super::{compliance, Batch, BatchError, Consumer, RewindMode, DEAD_LETTERS};
use crate::alerts::{Alert, Alerter, Severity};
use crate::dispatch::{
    dispatch_with_retries, Breaker, BreakerConfig, DispatchConfig, DispatchOutcome, DispatchPolicy,
    DispatchReport, DispatchRequest, Gateway, PayloadInput, Route, Routes,
};
use crate::event::{Event, Micros, Seq, Source};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::outbound::{DispatchResult, OutboundRecord};
use crate::parse::{Data, Direction, Parsed};
use crate::state::{to_json, KvTree, StateError, StateStore};

/// The consumer's name.
pub const NAME: &str = "dispatch";
const LEDGER: &str = "ledger";
const LEDGER_META: &str = "ledger_meta";

/// Outcome names, as in [`DispatchResult::outcome`] and the ledger.
const DELIVERED: &str = "delivered";
const REJECTED: &str = "rejected";
const DEAD_LETTERED: &str = "dead_lettered";
/// Ledger only: the event was too old to wake an agent when dispatch first saw it.
const SKIPPED_STALE: &str = "skipped_stale";

/// What the ledger knows about one event sent to one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// `delivered`, `rejected`, `dead_lettered` or `skipped_stale`.
    pub outcome: String,
    /// When (RFC 3339).
    pub at: String,
    /// The key sent to the gateway.
    pub idempotency_key: String,
    /// The generation of the redelivery window this entry was written in, if any.
    #[serde(default)]
    pub window: Option<u64>,
}

/// What the consumer needs from `[dispatch]`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Default gateway URL.
    pub url: String,
    /// Routing rules.
    pub routes: Routes,
    /// Retries within one pass.
    pub policy: DispatchPolicy,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Age (since receipt) after which an undelivered event is dead-lettered.
    pub dead_letter_after: Duration,
    /// Events that happened longer ago than this are not dispatched (`None`: no limit).
    pub max_event_age: Option<Duration>,
}

impl Settings {
    /// From a validated `[dispatch]` with a `url`.
    pub fn from_config(c: &DispatchConfig) -> Result<Settings, String> {
        Ok(Settings {
            url: c.url.clone().ok_or("url: not set: dispatch is off")?,
            routes: c.routes()?,
            policy: c.policy(),
            breaker: c.breaker(),
            dead_letter_after: Duration::from_secs(c.dead_letter_after_secs),
            max_event_age: (c.max_event_age_secs > 0)
                .then(|| Duration::from_secs(c.max_event_age_secs)),
        })
    }
}

/// A gateway shared with the blocking call's thread.
pub type SharedGateway = Arc<dyn Gateway + Send + Sync>;

/// The dispatch consumer.
pub struct Dispatch {
    settings: Settings,
    gateway: SharedGateway,
    breaker: Arc<Mutex<Breaker>>,
    log: Arc<dyn Log>,
    store: Arc<dyn StateStore>,
    ledger: Arc<dyn KvTree>,
    redelivery: Redelivery,
    dead_letters: Arc<dyn KvTree>,
    verdicts: Verdicts,
    alerter: Alerter,
    metrics: Metrics,
}

/// The line and the contact of an event, as far as its payload tells.
#[derive(Debug, Default)]
struct Parties {
    line_number: Option<String>,
    line_id: Option<String>,
    contact: Option<String>,
}

fn nonempty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty()).cloned()
}

impl Parties {
    fn of(parsed: &Parsed) -> Parties {
        match &parsed.data {
            Data::Message(m) => {
                let (ours, theirs) = match m.direction {
                    Direction::Inbound => (m.to.first(), Some(&m.from)),
                    Direction::Outbound => (Some(&m.from), m.to.first()),
                };
                Parties {
                    line_number: nonempty(ours),
                    line_id: nonempty(m.line_id.as_ref()),
                    contact: nonempty(theirs),
                }
            }
            Data::Call(c) => {
                let (ours, theirs) = match c.direction {
                    Direction::Inbound => (c.to.as_ref(), c.from.as_ref()),
                    Direction::Outbound => (c.from.as_ref(), c.to.as_ref()),
                };
                Parties {
                    line_number: nonempty(ours),
                    line_id: nonempty(c.line_id.as_ref()),
                    contact: nonempty(theirs).or_else(|| nonempty(c.participants.first())),
                }
            }
            _ => Parties::default(),
        }
    }

    fn lines(&self) -> Vec<&str> {
        [&self.line_number, &self.line_id]
            .into_iter()
            .filter_map(|l| l.as_deref())
            .collect()
    }

    /// The line as the payload reports it: its number if known, else its id.
    fn line(&self) -> Option<&str> {
        self.line_number.as_deref().or(self.line_id.as_deref())
    }
}

fn ledger_key(seq: Seq, agent: &str) -> Vec<u8> {
    let mut key = seq.to_key().to_vec();
    key.extend_from_slice(agent.as_bytes());
    key
}

fn corrupt(tree: &str, e: serde_json::Error) -> StateError {
    StateError::Corrupt {
        tree: format!("{NAME}/{tree}"),
        message: e.to_string(),
    }
}

impl Dispatch {
    /// A dispatch consumer calling `gateway`, appending its results to `log` and keeping
    /// its ledger in the log's state store.
    pub fn new(
        settings: Settings,
        gateway: SharedGateway,
        log: Arc<dyn Log>,
        alerter: Alerter,
        metrics: Metrics,
    ) -> Result<Dispatch, StateError> {
        let store = log.state();
        let breaker = Breaker::new("agent-gateway", settings.breaker.clone());
        Ok(Dispatch {
            ledger: store.tree(NAME, LEDGER)?,
            redelivery: Redelivery::new(store.tree(NAME, LEDGER_META)?),
            dead_letters: store.tree(NAME, DEAD_LETTERS)?,
            verdicts: Verdicts::open(store.as_ref())?,
            settings,
            gateway,
            breaker: Arc::new(Mutex::new(breaker)),
            log,
            store,
            alerter,
            metrics,
        })
    }

    /// The ledger entry of `seq` for `agent`, if any.
    pub fn ledger_entry(&self, seq: Seq, agent: &str) -> Result<Option<LedgerEntry>, StateError> {
        self.ledger
            .get(&ledger_key(seq, agent))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt(LEDGER, e)))
            .transpose()
    }

    /// The pending redelivery window, if any.
    pub fn window(&self) -> Result<Option<RedeliveryWindow>, StateError> {
        self.redelivery.current()
    }

    async fn process(
        &self,
        record: super::Record<'_>,
        verdicts: &RangeVerdicts,
        window: Option<RedeliveryWindow>,
    ) -> Result<(), BatchError> {
        let event = record.event;
        if !verdicts.is_original(event.seq)? {
            return Ok(());
        }
        if matches!(event.source, Source::Outbound | Source::Internal) {
            return Ok(());
        }
        let Ok(parsed) = record.parsed() else {
            // Compliance dead-letters it; there is nothing to tell an agent.
            tracing::debug!(seq = event.seq.0, "record does not parse: not dispatched");
            return Ok(());
        };
        let parties = Parties::of(parsed);
        let routes = self.settings.routes.match_event_on(
            parsed.kind.as_str(),
            parsed.provider,
            &parties.lines(),
        );
        let window = window.filter(|w| w.contains(event.seq));
        for route in routes {
            match (self.ledger_entry(event.seq, &route.agent)?, window) {
                (None, _) => {}
                (Some(e), Some(w)) if e.window == Some(w.generation) => continue,
                (Some(_), Some(_)) => {}
                (Some(e), None) if e.outcome == DEAD_LETTERED => {
                    if self.dead_letters.get(&event.seq.to_key())?.is_none() {
                        return Err(BatchError::Poison {
                            seq: event.seq,
                            error: format!(
                                "agent {}: not delivered within {} s of receipt (recorded before a restart)",
                                route.agent,
                                self.settings.dead_letter_after.as_secs()
                            ),
                        });
                    }
                    // Still a dead letter: a redrive, or a rewind over it. Try again.
                }
                (Some(_), None) => continue,
            }
            if window.is_none() && self.too_old(event, parsed) {
                self.skip_stale(event, route)?;
                continue;
            }
            self.dispatch_one(event, parsed, &parties, route, window)
                .await?;
        }
        Ok(())
    }

    /// Whether the event is older than `max_event_age`: a backfilled copy of an old message
    /// (aged by the provider's own time) or a record received long ago (dispatch turned on
    /// over an old log) must not wake an agent. A webhook is aged by its receipt only: a
    /// provider retry that arrives late after an outage is still a live conversation.
    fn too_old(&self, event: &Event, parsed: &Parsed) -> bool {
        let Some(max) = self.settings.max_event_age else {
            return false;
        };
        let backfilled = matches!(
            event.source,
            Source::BackfillOpenPhone | Source::BackfillTwilio
        );
        let happened = match parsed.occurred_at {
            Some(t) if backfilled => t.timestamp_micros().min(event.received_at.0),
            _ => event.received_at.0,
        };
        let age = Micros::now().0.saturating_sub(happened).max(0) as u64;
        Duration::from_micros(age) > max
    }

    /// Records in the ledger that `event` is not dispatched to `route`'s agent because it
    /// is too old. No log record: nothing was sent, and the ledger keeps the decision stable
    /// across rewinds.
    fn skip_stale(&self, event: &Event, route: &Route) -> Result<(), BatchError> {
        let entry = LedgerEntry {
            outcome: SKIPPED_STALE.to_owned(),
            at: Micros::now().to_rfc3339(),
            idempotency_key: String::new(),
            window: None,
        };
        self.ledger
            .insert(&ledger_key(event.seq, &route.agent), &to_json(&entry)?)?;
        self.metrics
            .dispatch_outcomes
            .with_label_values(&[route.agent.as_str(), SKIPPED_STALE])
            .inc();
        tracing::info!(
            seq = event.seq.0,
            agent = %route.agent,
            "event older than dispatch.max_event_age_secs: not dispatched"
        );
        Ok(())
    }

    async fn dispatch_one(
        &self,
        event: &Event,
        parsed: &Parsed,
        parties: &Parties,
        route: &Route,
        window: Option<RedeliveryWindow>,
    ) -> Result<(), BatchError> {
        let seq = event.seq;
        let agent = route.agent.as_str();
        let opted_out = match &parties.contact {
            Some(n) => compliance::is_suppressed(self.store.as_ref(), n)?,
            None => false,
        };
        let url = route.url.as_deref().unwrap_or(&self.settings.url);
        let request = DispatchRequest::new(
            url,
            PayloadInput {
                seq,
                received_at: event.received_at,
                parsed,
                line: parties.line(),
                agent,
                opted_out,
            },
        )
        .map_err(|e| BatchError::Poison {
            seq,
            error: e.to_string(),
        })?;
        let key = request.idempotency_key.clone();
        let report = self.call(request).await?;
        let now = Micros::now();
        let age = Duration::from_micros(now.0.saturating_sub(event.received_at.0).max(0) as u64);
        let (outcome, status, error) = match &report.outcome {
            DispatchOutcome::Delivered { status } => (DELIVERED, Some(*status), None),
            DispatchOutcome::Rejected { status, message } => {
                (REJECTED, Some(*status), Some(message.clone()))
            }
            DispatchOutcome::Retryable { .. } | DispatchOutcome::CircuitOpen { .. } => {
                let reason = match &report.outcome {
                    DispatchOutcome::CircuitOpen { retry_in } => format!(
                        "the gateway's circuit breaker is open (next trial in {} s)",
                        retry_in.as_secs()
                    ),
                    DispatchOutcome::Retryable { reason } => reason.clone(),
                    other => other.as_str().to_owned(),
                };
                if age < self.settings.dead_letter_after {
                    return Err(BatchError::Transient(format!(
                        "record {seq} to agent {agent}: {reason}"
                    )));
                }
                (DEAD_LETTERED, None, Some(reason))
            }
        };
        let result = DispatchResult {
            seq: seq.0,
            agent: agent.to_owned(),
            idempotency_key: key.clone(),
            kind: parsed.kind.as_str().to_owned(),
            outcome: outcome.to_owned(),
            status,
            attempts: report.attempts.len() as u32,
            latency_ms: age.as_millis() as i64,
            opted_out,
            redelivery: window.is_some(),
            error: error.clone(),
            at: now.to_rfc3339(),
        };
        self.log
            .append(OutboundRecord::Dispatch(result).to_verified(now))
            .await
            .map_err(|e| {
                BatchError::Transient(format!("cannot append the dispatch result: {e}"))
            })?;
        let entry = LedgerEntry {
            outcome: outcome.to_owned(),
            at: now.to_rfc3339(),
            idempotency_key: key.clone(),
            window: window.map(|w| w.generation),
        };
        self.ledger
            .insert(&ledger_key(seq, agent), &to_json(&entry)?)?;
        // Durable now, not at sled's next flush: otherwise a crash in the next half second
        // would send this event again at restart (with the same key, but still twice).
        self.ledger.flush()?;
        self.metrics
            .dispatch_outcomes
            .with_label_values(&[agent, outcome])
            .inc();
        match outcome {
            DELIVERED => {
                if window.is_none() {
                    self.metrics
                        .dispatch_latency
                        .with_label_values(&[agent])
                        .observe(age.as_secs_f64());
                }
                tracing::info!(seq = seq.0, agent, key = %key, latency_ms = age.as_millis() as u64, redelivery = window.is_some(), "dispatched");
                Ok(())
            }
            REJECTED => {
                let message = error.unwrap_or_default();
                tracing::warn!(seq = seq.0, agent, status, %message, "the gateway rejected the event");
                self.alerter.raise(Alert {
                    key: format!("dispatch:rejected:{agent}"),
                    severity: Severity::Warning,
                    title: format!("agent gateway rejected record {seq} for {agent}"),
                    reason: format!("HTTP {}: {message}", status.unwrap_or_default()),
                    next_step: format!(
                        "check the route for {agent} and the gateway; after a fix, `hooklog-replay rewind dispatch --to-seq {} --redeliver`",
                        seq.0.saturating_sub(1)
                    ),
                });
                Ok(())
            }
            _ => Err(BatchError::Poison {
                seq,
                error: format!(
                    "agent {agent}: not delivered within {} s of receipt: {}",
                    self.settings.dead_letter_after.as_secs(),
                    error.unwrap_or_default()
                ),
            }),
        }
    }

    /// One dispatch with retries, on a blocking thread (the client is blocking and the
    /// retries sleep).
    async fn call(&self, request: DispatchRequest) -> Result<DispatchReport, BatchError> {
        let gateway = self.gateway.clone();
        let breaker = self.breaker.clone();
        let policy = self.settings.policy.clone();
        let alerter = self.alerter.clone();
        tokio::task::spawn_blocking(move || {
            // The breaker is only touched here, one call at a time; a panic in an earlier
            // call leaves it in a valid state.
            let mut breaker = breaker.lock().unwrap_or_else(|p| p.into_inner());
            dispatch_with_retries(gateway.as_ref(), &mut breaker, &request, &policy, &alerter)
        })
        .await
        .map_err(|e| BatchError::Transient(format!("the dispatch task failed: {e}")))
    }
}

impl Consumer for Dispatch {
    fn name(&self) -> &'static str {
        NAME
    }

    fn upstreams(&self) -> &'static [&'static str] {
        &[dedup::NAME, compliance::NAME]
    }

    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Replay
    }

    /// Never called for a [`RewindMode::Replay`] consumer; the ledger is never cleared.
    fn reset(&mut self) -> Result<(), BatchError> {
        Ok(())
    }

    fn has_effects(&self) -> bool {
        true
    }

    fn redeliver(&mut self, after: Seq, through: Seq) -> Result<(), BatchError> {
        if let Some(window) = self.redelivery.open(after, through)? {
            tracing::info!(
                after = window.after,
                through = window.through,
                "dispatch: events in the window will be dispatched again"
            );
        }
        Ok(())
    }

    /// The dispatch results in `batch`, noted in the ledger where it has no entry for their
    /// `(seq, agent)`: the event is not dispatched to that agent again. An existing entry is
    /// kept (it is this process's own, possibly with a redelivery window).
    ///
    /// A learned `dead_lettered` entry is for a record that is not in this process's
    /// dead-letter list: handling it returns it as poison again, without a call, and
    /// the driver dead-letters it here, so it is not lost with the previous holder's list.
    async fn learn_effects(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        for event in batch.events() {
            // Only hooklog writes this route, under source `internal`; `decode` checks both.
            let Some(Ok(OutboundRecord::Dispatch(d))) = OutboundRecord::decode(event) else {
                continue;
            };
            let key = ledger_key(Seq(d.seq), &d.agent);
            if self.ledger.get(&key)?.is_some() {
                continue;
            }
            let entry = LedgerEntry {
                outcome: d.outcome,
                at: d.at,
                idempotency_key: d.idempotency_key,
                window: None,
            };
            self.ledger.insert(&key, &to_json(&entry)?)?;
        }
        // Durable now: once the cursor has passed these records, a restart does not learn
        // them again.
        self.ledger.flush()?;
        Ok(())
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        let events = batch.events();
        let verdicts = self.verdicts.of_batch(events)?;
        let window = self.window()?;
        for record in batch.records() {
            // On a poison record the earlier ones are applied; the driver records that one.
            self.process(record, &verdicts, window).await?;
        }
        if let Some(w) = self
            .redelivery
            .finish(window, events, self.log.as_ref(), NAME)?
        {
            tracing::info!(
                after = w.after,
                through = w.through,
                "redelivery window done"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::compliance::Compliance;
    use crate::consumers::dedup::Dedup;
    use crate::consumers::testutil::{event, quo_inbound, HOUR};
    use crate::event::Verified;
    use crate::log::sled::{SledLog, SledOptions};
    use crate::send::RetryPolicy;
    use std::collections::VecDeque;

    /// Answers from a script, then `Delivered`; keeps every request.
    #[derive(Default)]
    struct FakeGateway {
        script: Mutex<VecDeque<DispatchOutcome>>,
        seen: Mutex<Vec<DispatchRequest>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl Gateway for FakeGateway {
        fn post(&self, request: &DispatchRequest) -> DispatchOutcome {
            self.seen.lock().unwrap().push(request.clone());
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return DispatchOutcome::Retryable {
                    reason: "gateway answered 503".into(),
                };
            }
            self.script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(DispatchOutcome::Delivered { status: 202 })
        }
    }

    impl FakeGateway {
        fn seen(&self) -> Vec<DispatchRequest> {
            self.seen.lock().unwrap().clone()
        }
        fn bodies(&self) -> Vec<serde_json::Value> {
            self.seen()
                .iter()
                .map(|r| serde_json::from_str(&r.body).unwrap())
                .collect()
        }
        fn set_down(&self, down: bool) {
            self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        }
    }

    struct Harness {
        _dir: tempfile::TempDir,
        log: Arc<dyn Log>,
        gateway: Arc<FakeGateway>,
        dedup: Dedup,
        compliance: Compliance,
        dispatch: Dispatch,
    }

    fn harness() -> Harness {
        harness_with(vec![])
    }

    /// The harness with `extra` routes after `message.received` → acquisitions.
    fn harness_with(extra: Vec<Route>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> =
            Arc::new(SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap());
        let store = log.state();
        let gateway = Arc::new(FakeGateway::default());
        let dispatch = Dispatch::new(
            settings(extra),
            gateway.clone(),
            log.clone(),
            Alerter::disabled(),
            Metrics::new(),
        )
        .unwrap();
        Harness {
            dedup: Dedup::new(store.as_ref(), 72).unwrap(),
            compliance: Compliance::new(store.as_ref(), Alerter::disabled()).unwrap(),
            _dir: dir,
            log,
            gateway,
            dispatch,
        }
    }

    /// `message.received` → acquisitions, then `extra`; fast retries, no age limit.
    fn settings(extra: Vec<Route>) -> Settings {
        let mut routes = vec![Route {
            kinds: vec!["message.received".into()],
            provider: None,
            line: None,
            agent: "acquisitions".into(),
            url: None,
        }];
        routes.extend(extra);
        let routes = Routes::new(routes).unwrap();
        Settings {
            url: "http://gateway.test/dispatch".into(),
            routes,
            policy: DispatchPolicy {
                retry: RetryPolicy {
                    max_retries: 1,
                    base: Duration::from_millis(1),
                    max: Duration::from_millis(2),
                },
                max_elapsed: Duration::from_secs(1),
            },
            breaker: BreakerConfig {
                failure_threshold: 1000,
                cool_down: Duration::from_secs(1),
            },
            dead_letter_after: Duration::from_secs(3600),
            max_event_age: None,
        }
    }

    impl Harness {
        /// Dedup and compliance, then dispatch, over `events` (as the driver would order them).
        async fn run(&mut self, events: &[Event]) -> Result<(), BatchError> {
            self.dedup.handle(events).await?;
            self.compliance.handle(events).await?;
            self.dispatch.handle(events).await
        }

        /// The dispatch results appended to the log.
        fn results(&self) -> Vec<DispatchResult> {
            self.log
                .read(Seq(0), 1000)
                .unwrap()
                .iter()
                .filter_map(|e| match OutboundRecord::decode(e) {
                    Some(Ok(OutboundRecord::Dispatch(r))) => Some(r),
                    _ => None,
                })
                .collect()
        }
    }

    fn now() -> i64 {
        Micros::now().0
    }

    fn inbound(seq: u64, at: i64, from: &str, text: &str) -> Event {
        quo_inbound(
            seq,
            at,
            &format!("EV{seq}"),
            &format!("AC{seq}"),
            from,
            text,
        )
    }

    impl Harness {
        /// The `seq` of every body the gateway received, in order.
        fn bodies_seq(&self) -> Vec<u64> {
            self.gateway
                .bodies()
                .iter()
                .map(|b| b["seq"].as_u64().unwrap())
                .collect()
        }
    }

    fn keys(h: &Harness) -> Vec<String> {
        h.gateway
            .seen()
            .into_iter()
            .map(|r| r.idempotency_key)
            .collect()
    }

    #[tokio::test]
    async fn an_inbound_message_is_dispatched_once_to_its_routed_agent_with_the_idempotency_key() {
        let mut h = harness();
        let e = inbound(1, now(), "+15555550101", "is the house still for sale?");
        h.run(std::slice::from_ref(&e)).await.unwrap();

        let seen = h.gateway.seen();
        assert_eq!(seen.len(), 1);
        let dedup_key = crate::parse::parse(&e).unwrap().dedup_keys[0].clone();
        assert_eq!(seen[0].idempotency_key, format!("hooklog:1:{dedup_key}"));
        assert_eq!(seen[0].agent, "acquisitions");
        assert_eq!(seen[0].url, "http://gateway.test/dispatch");
        let body = &h.gateway.bodies()[0];
        assert_eq!(body["kind"], "message.received");
        assert_eq!(body["line"], "+15555550100");
        assert_eq!(body["opted_out"], false);

        let results = h.results();
        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert_eq!(
            (
                r.seq,
                r.agent.as_str(),
                r.outcome.as_str(),
                r.status,
                r.redelivery
            ),
            (1, "acquisitions", "delivered", Some(202), false)
        );
        assert_eq!(r.idempotency_key, seen[0].idempotency_key);
        let entry = h
            .dispatch
            .ledger_entry(Seq(1), "acquisitions")
            .unwrap()
            .unwrap();
        assert_eq!((entry.outcome.as_str(), entry.window), ("delivered", None));
        let latency = h
            .dispatch
            .metrics
            .dispatch_latency
            .with_label_values(&["acquisitions"]);
        assert_eq!(latency.get_sample_count(), 1);
        assert!(h
            .dispatch
            .metrics
            .render()
            .contains("hooklog_dispatch_latency_seconds_bucket"));
    }

    #[tokio::test]
    async fn duplicates_unrouted_kinds_unparseable_and_hooklogs_own_records_are_not_dispatched() {
        let mut h = harness();
        let t = now();
        let original = inbound(1, t, "+15555550102", "hello");
        let mut retry = original.clone();
        retry.seq = Seq(2);
        let own = event(
            3,
            t,
            Source::Internal,
            crate::outbound::events::DISPATCH_ROUTE,
            r#"{"seq":1}"#,
        );
        let garbage = event(4, t, Source::OpenPhone, "/webhook/openphone", "{not json");
        let delivered = serde_json::json!({
            "id": "EVd", "object": "event", "apiVersion": "v4", "createdAt": "2026-04-14T16:02:11.557Z",
            "type": "message.delivered",
            "data": {"object": {"id": "ACd", "object": "message", "from": "+15555550100",
                "to": ["+15555550102"], "direction": "outgoing", "text": "hi", "status": "delivered",
                "createdAt": "2026-04-14T16:02:11.420Z", "phoneNumberId": "PNtoDbDhuz"}}
        });
        let unrouted = event(
            5,
            t,
            Source::OpenPhone,
            "/webhook/openphone",
            &delivered.to_string(),
        );
        let events = [original, retry, own, garbage.clone(), unrouted];
        // Compliance dead-letters the unparseable record; dispatch alone is run over all.
        h.dedup.handle(&events).await.unwrap();
        h.dispatch.handle(&events).await.unwrap();
        assert_eq!(keys(&h).len(), 1, "{:?}", keys(&h));
        assert!(keys(&h)[0].starts_with("hooklog:1:"));
        assert_eq!(h.results().len(), 1);
    }

    #[tokio::test]
    async fn a_rewind_to_zero_dispatches_nothing_again() {
        let mut h = harness();
        let t = now();
        let events: Vec<Event> = (1..=3)
            .map(|s| inbound(s, t + s as i64, &format!("+1555555020{s}"), "hi"))
            .collect();
        h.run(&events).await.unwrap();
        assert_eq!(keys(&h).len(), 3);
        // The driver's rewind of a Replay consumer: the same records again.
        h.dispatch.handle(&events).await.unwrap();
        h.dispatch.handle(&events[1..]).await.unwrap();
        assert_eq!(keys(&h).len(), 3, "nothing re-dispatched");
        assert_eq!(h.results().len(), 3);
    }

    #[tokio::test]
    async fn an_event_older_than_the_maximum_age_is_projected_but_wakes_no_agent_unless_redelivered(
    ) {
        let mut h = harness();
        h.dispatch.settings.max_event_age = Some(Duration::from_secs(3600));
        let hour = 3_600_000_000;
        // The provider's own times (`createdAt`) say when it happened, as in a backfill.
        let happened_at = |seq, at: i64, from: &str, text: &str| {
            let mut e = inbound(seq, at, from, text);
            let when = Micros(at)
                .to_datetime()
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string();
            let body = String::from_utf8(e.body).unwrap();
            e.body = body.replace("2026-04-14T16:02:11", &when).into_bytes();
            e
        };
        let old = happened_at(1, now() - 2 * hour, "+15555550401", "is it still for sale?");
        let fresh = happened_at(2, now(), "+15555550402", "call me");
        // Received just now by backfill, but the message is two hours old.
        let mut backfilled = happened_at(3, now() - 2 * hour, "+15555550403", "hello?");
        let envelope: serde_json::Value = serde_json::from_slice(&backfilled.body).unwrap();
        backfilled.body = serde_json::to_vec(&envelope["data"]["object"]).unwrap();
        backfilled.source = Source::BackfillOpenPhone;
        backfilled.route = "/v1/messages/AC3".into();
        backfilled.received_at = Micros::now();
        h.run(&[old.clone(), fresh.clone(), backfilled])
            .await
            .unwrap();
        let seqs: Vec<u64> = h.bodies_seq();
        assert_eq!(seqs, vec![2], "only the fresh event woke the agent");
        let entry = h
            .dispatch
            .ledger_entry(Seq(3), "acquisitions")
            .unwrap()
            .unwrap();
        assert_eq!(entry.outcome, SKIPPED_STALE, "aged by the provider's time");
        let entry = h
            .dispatch
            .ledger_entry(Seq(1), "acquisitions")
            .unwrap()
            .unwrap();
        assert_eq!(entry.outcome, SKIPPED_STALE);
        assert!(
            h.results().iter().all(|r| r.seq != 1),
            "nothing was sent, so no result record"
        );
        // A rewind does not revisit the decision; an operator's redelivery does.
        h.dispatch
            .handle(&[old.clone(), fresh.clone()])
            .await
            .unwrap();
        assert_eq!(h.bodies_seq(), vec![2]);
        h.dispatch.redeliver(Seq(0), Seq(1)).unwrap();
        h.dispatch.handle(std::slice::from_ref(&old)).await.unwrap();
        assert_eq!(h.bodies_seq(), vec![2, 1]);
    }

    #[tokio::test]
    async fn a_redelivery_window_redispatches_exactly_the_window_once_with_the_same_keys() {
        let mut h = harness();
        let t = now();
        let events: Vec<Event> = (1..=5)
            .map(|s| inbound(s, t + s as i64, &format!("+1555555030{s}"), "hi"))
            .collect();
        h.run(&events).await.unwrap();
        let first = keys(&h);
        assert_eq!(first.len(), 5);

        // rewind --to-seq 1 --redeliver with the cursor at 4: the window is (1, 4].
        h.dispatch.redeliver(Seq(1), Seq(4)).unwrap();
        // A first batch inside the window, then the same batch again (a transient retry).
        h.dispatch.handle(&events[..3]).await.unwrap();
        h.dispatch.handle(&events[..3]).await.unwrap();
        assert_eq!(keys(&h)[5..], first[1..3], "2 and 3 again, once");
        assert!(h.dispatch.window().unwrap().is_some(), "4 is still to come");
        h.dispatch.handle(&events[3..]).await.unwrap();
        assert_eq!(keys(&h)[5..], first[1..4], "then 4; 5 is past the window");
        assert!(
            h.dispatch.window().unwrap().is_none(),
            "the cursor passed the window"
        );

        // The window is gone: another plain replay sends nothing.
        h.dispatch.handle(&events).await.unwrap();
        assert_eq!(keys(&h).len(), 8);
        let redelivered: Vec<u64> = h
            .results()
            .iter()
            .filter(|r| r.redelivery)
            .map(|r| r.seq)
            .collect();
        assert_eq!(redelivered, vec![2, 3, 4]);
        // Not counted as latency: the redelivery's "latency" is the operator's delay.
        assert_eq!(
            h.dispatch
                .metrics
                .dispatch_latency
                .with_label_values(&["acquisitions"])
                .get_sample_count(),
            5
        );
    }

    #[tokio::test]
    async fn an_opted_out_sender_is_dispatched_with_opted_out_true() {
        let mut h = harness();
        let t = now();
        let events = vec![
            inbound(1, t, "+15555550401", "STOP"),
            inbound(2, t + 1, "+15555550401", "who is this anyway"),
            inbound(3, t + 2, "+15555550402", "sounds good"),
        ];
        h.run(&events).await.unwrap();
        let flags: Vec<(u64, bool)> = h
            .gateway
            .bodies()
            .iter()
            .map(|b| {
                (
                    b["seq"].as_u64().unwrap(),
                    b["opted_out"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(flags, vec![(1, true), (2, true), (3, false)]);
        assert!(h.results().iter().find(|r| r.seq == 2).unwrap().opted_out);
    }

    #[tokio::test]
    async fn a_call_is_routed_by_its_quo_line_id_and_flags_a_suppressed_caller() {
        let mut h = harness_with(vec![Route {
            kinds: vec!["call.ringing".into()],
            provider: Some(crate::parse::Provider::OpenPhone),
            line: Some("PNTVGxqnqT".into()),
            agent: "atlas".into(),
            url: Some("http://atlas.test/hook".into()),
        }]);
        let t = now();
        let suppress = event(
            1,
            t,
            Source::Internal,
            compliance::ADMIN_ROUTE,
            r#"{"action":"add","number":"+15555550123","reason":"asked by phone"}"#,
        );
        let call = crate::consumers::testutil::from_fixture(
            "openphone/legacy_call_ringing_v4.json",
            2,
            t + 1,
        );
        h.run(&[suppress, call]).await.unwrap();
        let seen = h.gateway.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].agent.as_str(), seen[0].url.as_str()),
            ("atlas", "http://atlas.test/hook")
        );
        let body = &h.gateway.bodies()[0];
        assert_eq!(body["line"], "PNTVGxqnqT");
        assert_eq!(body["opted_out"], true, "the caller is suppressed");
    }

    #[tokio::test]
    async fn a_down_gateway_is_transient_then_a_dead_letter_once_the_event_is_older_than_the_age() {
        let mut h = harness();
        h.gateway.set_down(true);
        let fresh = inbound(1, now(), "+15555550501", "hi");
        let err = h.run(std::slice::from_ref(&fresh)).await.unwrap_err();
        assert!(matches!(err, BatchError::Transient(_)), "{err:?}");
        assert_eq!(h.gateway.seen().len(), 2, "one call and one retry");
        assert!(h.results().is_empty());
        assert!(h
            .dispatch
            .ledger_entry(Seq(1), "acquisitions")
            .unwrap()
            .is_none());

        // The gateway recovers: the retried batch delivers it.
        h.gateway.set_down(false);
        h.dispatch
            .handle(std::slice::from_ref(&fresh))
            .await
            .unwrap();
        assert_eq!(h.results()[0].outcome, "delivered");

        // Down again, and record 3 was received two hours ago: record 2 is delivered first
        // (the gateway recovers for it), record 3 is dead-lettered.
        let fresh2 = inbound(2, now(), "+15555550502", "hi");
        let old = inbound(3, now() - 2 * HOUR, "+15555550503", "hi");
        h.dedup
            .handle(&[fresh2.clone(), old.clone()])
            .await
            .unwrap();
        h.compliance
            .handle(&[fresh2.clone(), old.clone()])
            .await
            .unwrap();
        h.dispatch
            .handle(std::slice::from_ref(&fresh2))
            .await
            .unwrap();
        h.gateway.set_down(true);
        let calls = h.gateway.seen().len();
        let err = h
            .dispatch
            .handle(&[fresh2.clone(), old.clone()])
            .await
            .unwrap_err();
        assert!(
            matches!(err, BatchError::Poison { seq: Seq(3), .. }),
            "{err:?}"
        );
        assert_eq!(
            h.gateway.seen().len(),
            calls + 2,
            "record 2 was not sent again"
        );
        let last = h.results().pop().unwrap();
        assert_eq!((last.seq, last.outcome.as_str()), (3, "dead_lettered"));
        assert!(last.error.unwrap().contains("503"));

        // Handled again without its dead letter (the process stopped before the driver
        // stored it): poison again, without a call.
        let calls = h.gateway.seen().len();
        let err = h
            .dispatch
            .handle(std::slice::from_ref(&old))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BatchError::Poison { seq: Seq(3), .. }),
            "{err:?}"
        );
        assert_eq!(h.gateway.seen().len(), calls);

        // A redrive of the dead letter once the gateway is back delivers it.
        h.dispatch
            .dead_letters
            .insert(&Seq(3).to_key(), b"{}")
            .unwrap();
        h.gateway.set_down(false);
        h.dispatch.handle(std::slice::from_ref(&old)).await.unwrap();
        assert_eq!(h.results().pop().unwrap().outcome, "delivered");
    }

    #[tokio::test]
    async fn a_rejected_event_is_recorded_and_not_retried() {
        let mut h = harness();
        h.gateway
            .script
            .lock()
            .unwrap()
            .push_back(DispatchOutcome::Rejected {
                status: 422,
                message: "unknown agent".into(),
            });
        let e = inbound(1, now(), "+15555550601", "hi");
        h.run(std::slice::from_ref(&e)).await.unwrap();
        h.dispatch.handle(std::slice::from_ref(&e)).await.unwrap();
        assert_eq!(h.gateway.seen().len(), 1, "no retry, no second pass");
        let r = &h.results()[0];
        assert_eq!(
            (r.outcome.as_str(), r.status, r.error.as_deref()),
            ("rejected", Some(422), Some("unknown agent"))
        );
        assert_eq!(
            h.dispatch
                .ledger_entry(Seq(1), "acquisitions")
                .unwrap()
                .unwrap()
                .outcome,
            "rejected"
        );
    }

    #[tokio::test]
    async fn after_a_fail_over_a_fresh_dispatch_calls_the_gateway_only_for_the_events_without_a_result(
    ) {
        // The shared log: four inbound messages.
        let h = harness();
        let t = now();
        for s in 1..=4 {
            let e = inbound(s, t + s as i64, &format!("+1555555070{s}"), "hi");
            let v = Verified::new(
                e.received_at,
                e.source,
                e.route,
                e.headers,
                e.body,
                e.verification,
            );
            h.log.append(v).await.unwrap();
        }
        let events = h.log.read(Seq(0), 100).unwrap();

        // Another replica, with state of its own, dispatched the first two before it died.
        let replica: Arc<dyn Log> = crate::consumers::testutil::OtherReplica::on(&h.log);
        let store = replica.state();
        let theirs = Arc::new(FakeGateway::default());
        let mut dispatch = Dispatch::new(
            settings(vec![]),
            theirs.clone(),
            replica.clone(),
            Alerter::disabled(),
            Metrics::new(),
        )
        .unwrap();
        Dedup::new(store.as_ref(), 72)
            .unwrap()
            .handle(&events)
            .await
            .unwrap();
        Compliance::new(store.as_ref(), Alerter::disabled())
            .unwrap()
            .handle(&events)
            .await
            .unwrap();
        dispatch.handle(&events[..2]).await.unwrap();
        assert_eq!(theirs.seen().len(), 2);
        let their_results = h.results();
        assert_eq!(their_results.len(), 2);

        // This replica takes over: its dedup and compliance have read the whole log, its
        // dispatch starts from 0 with an empty ledger.
        let Harness {
            _dir,
            log,
            gateway,
            mut dedup,
            mut compliance,
            dispatch,
        } = h;
        let all = log.read(Seq(0), 100).unwrap();
        let last = all.last().unwrap().seq;
        dedup.handle(&all).await.unwrap();
        compliance.handle(&all).await.unwrap();
        log.store_cursor(dedup::NAME, last).unwrap();
        log.store_cursor(compliance::NAME, last).unwrap();
        crate::consumers::testutil::drive_until(&log, dispatch, last).await;

        let seqs: Vec<u64> = gateway
            .bodies()
            .iter()
            .map(|b| b["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            vec![3, 4],
            "1 and 2 were dispatched by the other replica"
        );
        let ours = Dispatch::new(
            settings(vec![]),
            gateway.clone(),
            log.clone(),
            Alerter::disabled(),
            Metrics::new(),
        )
        .unwrap();
        for r in &their_results {
            let entry = ours.ledger_entry(Seq(r.seq), &r.agent).unwrap().unwrap();
            assert_eq!(
                (entry.outcome.as_str(), entry.idempotency_key.as_str()),
                ("delivered", r.idempotency_key.as_str()),
                "learned from the other replica's result"
            );
        }
    }

    #[tokio::test]
    async fn learning_keeps_the_ledger_entries_this_process_wrote() {
        let mut h = harness();
        let ours = LedgerEntry {
            outcome: DELIVERED.into(),
            at: "2026-11-30T17:00:00Z".into(),
            idempotency_key: "hooklog:1:ours".into(),
            window: Some(3),
        };
        h.dispatch
            .ledger
            .insert(
                &ledger_key(Seq(1), "acquisitions"),
                &to_json(&ours).unwrap(),
            )
            .unwrap();
        let result = |seq: u64, outcome: &str| DispatchResult {
            seq,
            agent: "acquisitions".into(),
            idempotency_key: format!("hooklog:{seq}:theirs"),
            kind: "message.received".into(),
            outcome: outcome.into(),
            status: None,
            attempts: 1,
            latency_ms: 0,
            opted_out: false,
            redelivery: false,
            error: None,
            at: "2026-11-30T17:00:01Z".into(),
        };
        for r in [result(1, DEAD_LETTERED), result(2, REJECTED)] {
            h.log
                .append(OutboundRecord::Dispatch(r).to_verified(Micros::now()))
                .await
                .unwrap();
        }
        let batch = Arc::new(Batch::new(h.log.read(Seq(0), 100).unwrap()));
        h.dispatch.learn_effects(&batch).await.unwrap();
        h.dispatch.learn_effects(&batch).await.unwrap();
        let entry = |seq| h.dispatch.ledger_entry(Seq(seq), "acquisitions").unwrap();
        assert_eq!(entry(1), Some(ours), "kept, with its window");
        let learned = entry(2).unwrap();
        assert_eq!(
            (
                learned.outcome.as_str(),
                learned.idempotency_key.as_str(),
                learned.window
            ),
            (REJECTED, "hooklog:2:theirs", None)
        );
        assert!(h.gateway.seen().is_empty(), "learning calls nothing");
    }
}
