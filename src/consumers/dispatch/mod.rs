//! The dispatch consumer: wakes agents with the events they own (docs/consumers.md#dispatch).
//!
//! The component's files:
//!
//! - this file: the consumer, with its effects ledger, dead letters and latency histogram;
//! - [`config`]: the `[dispatch]` section;
//! - [`routes`]: which agents an event goes to, and at which gateway URL (pure);
//! - [`payload`]: the JSON body and the idempotency key `hooklog:<seq>:<dedup_key>` (pure);
//! - [`client`]: the blocking gateway client and the answer classifier;
//! - [`breaker`]: the circuit breaker;
//! - [`retry`]: breaker, call, full-jitter exponential backoff, alerts.
//!
//! For every record that dedup (an upstream) did not flag duplicate and that came from a
//! provider (hooklog's own `outbound`/`internal` records, including the results this
//! consumer writes, are never dispatched; neither is a record that does not parse, which
//! compliance dead-letters), the routing rules ([`Routes`]) name zero or
//! more agents. Each agent is sent the event once, by [`dispatch_with_retries`]
//! (breaker, retries with full jitter, one idempotency key `hooklog:<seq>:<dedup_key>` for
//! every attempt), with `opted_out` set when the contact (the other party of the message or
//! call) is suppressed on compliance's list for the line the event is on (its number; a
//! re-subscription lifts on its own line only; compliance is the other upstream, so the list
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
//! failure does not send twice. The window is removed when a batch passes `through`. It is
//! opened only once the operator confirmed and the count of wake-ups it performs
//! ([`Consumer::plan_redelivery`], decided by `route_due` like the dispatching)
//! is within `[dispatch] max_redeliver` or the call's own limit.
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

pub mod breaker;
pub mod client;
pub mod config;
pub mod payload;
pub mod retry;
pub mod routes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, Alerter, Severity};
use crate::consumers::dedup::{self, RangeVerdicts, Verdicts};
use crate::consumers::outbound::{DispatchResult, OutboundRecord};
pub use crate::consumers::redelivery::RedeliveryWindow;
use crate::consumers::redelivery::{scan, Redelivery};
use crate::consumers::{
    compliance, Batch, BatchError, Consumer, RedeliveryPlan, RewindMode, DEAD_LETTERS,
};
use crate::event::{Event, Micros, Seq, Source};
use crate::live::{Live, Watch};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::parse::{Data, Direction, Parsed};
use crate::state::{to_json, KvTree, StateError, StateStore};

pub use breaker::{Breaker, BreakerConfig, Permit, Transition};
pub use client::{Client, DispatchOutcome, Gateway, GatewayOptions};
pub use config::{DispatchConfig, RouteConfig};
pub use payload::{idempotency_key, DispatchRequest, PayloadError, PayloadInput};
pub use retry::{dispatch_with_retries, Attempt, DispatchPolicy, DispatchReport};
pub use routes::{Route, RouteError, Routes};

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
    /// The most wake-ups one redelivery may perform without the operator's `--max`.
    pub max_redeliver: u64,
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
            max_redeliver: c.max_redeliver,
        })
    }
}

/// A gateway shared with the blocking call's thread.
pub type SharedGateway = Arc<dyn Gateway + Send + Sync>;

/// What a reload of `[dispatch]` replaces together: the settings and the gateway client
/// (its token and timeouts). The circuit breaker keeps its state (and its settings).
#[derive(Clone)]
pub struct Reloadable {
    /// The settings.
    pub settings: Settings,
    /// The gateway client.
    pub gateway: SharedGateway,
}

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
    /// Reloaded settings and client, taken between batches.
    reloads: Option<Watch<Option<Reloadable>>>,
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

/// A record's parse, its parties, and the routes it matches.
type Targets<'r, 's> = (&'r Parsed, Parties, Vec<&'s Route>);

/// What the ledger says about one event for one agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteDue {
    /// Dispatched already (outside a window, or in this window).
    Done,
    /// To dispatch (if not too old, outside a window).
    Dispatch,
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
            reloads: None,
        })
    }

    /// Takes the settings and the gateway client from `live` between batches (a reload of
    /// `[dispatch]`), from the next batch on. `None` there (dispatch turned off) changes
    /// nothing: a running consumer stops only with a restart.
    pub fn reloading_from(mut self, live: &Live<Option<Reloadable>>) -> Dispatch {
        self.reloads = Some(live.watch());
        if let Some(now) = live.get().as_ref() {
            self.settings = now.settings.clone();
            self.gateway = now.gateway.clone();
        }
        self
    }

    /// The reloaded settings, if a reload replaced them since the last batch.
    fn take_reloaded(&mut self) {
        let Some(new) = self.reloads.as_mut().and_then(Watch::changed) else {
            return;
        };
        if let Some(new) = new.as_ref() {
            self.settings = new.settings.clone();
            self.gateway = new.gateway.clone();
            tracing::info!(consumer = NAME, "reloaded [dispatch] in force");
        }
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

    /// The agents `record` goes to, with its parse and parties; `None` when it wakes no one
    /// (a duplicate, hooklog's own record, a record that does not parse).
    fn targets<'r>(
        &self,
        record: &super::Record<'r>,
        verdicts: &RangeVerdicts,
    ) -> Result<Option<Targets<'r, '_>>, BatchError> {
        let event = record.event;
        if !verdicts.is_original(event.seq)? {
            return Ok(None);
        }
        if matches!(event.source, Source::Outbound | Source::Internal) {
            return Ok(None);
        }
        let Ok(parsed) = record.parsed() else {
            // Compliance dead-letters it; there is nothing to tell an agent.
            tracing::debug!(seq = event.seq.0, "record does not parse: not dispatched");
            return Ok(None);
        };
        let Some(provider) = parsed.provider else {
            // hooklog's own records were skipped above; nothing else parses without one.
            return Ok(None);
        };
        let parties = Parties::of(parsed);
        let routes =
            self.settings
                .routes
                .match_event_on(parsed.kind.as_str(), provider, &parties.lines());
        Ok(Some((parsed, parties, routes)))
    }

    /// What the ledger says to do with `event` for `route`'s agent, inside `window` (the
    /// window already filtered to the record) or outside any. What [`Self::process`] acts on,
    /// and what a redelivery's plan counts.
    fn route_due(
        &self,
        event: &Event,
        route: &Route,
        window: Option<RedeliveryWindow>,
    ) -> Result<RouteDue, BatchError> {
        match (self.ledger_entry(event.seq, &route.agent)?, window) {
            (None, _) => {}
            (Some(e), Some(w)) if e.window == Some(w.generation) => return Ok(RouteDue::Done),
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
            (Some(_), None) => return Ok(RouteDue::Done),
        }
        // A window dispatches even an old event: the operator asked.
        Ok(RouteDue::Dispatch)
    }

    async fn process(
        &self,
        record: super::Record<'_>,
        verdicts: &RangeVerdicts,
        window: Option<RedeliveryWindow>,
    ) -> Result<(), BatchError> {
        let event = record.event;
        let Some((parsed, parties, routes)) = self.targets(&record, verdicts)? else {
            return Ok(());
        };
        let window = window.filter(|w| w.contains(event.seq));
        for route in routes {
            if self.route_due(event, route, window)? == RouteDue::Done {
                continue;
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

    /// The wake-ups a redelivery window over `(after, through]` would perform: every agent
    /// every record in range is routed to, as [`Self::route_due`] decides inside a new
    /// window (which dispatches an event that was too old to dispatch at first, too).
    fn plan(&self, after: Seq, through: Seq) -> Result<RedeliveryPlan, BatchError> {
        let mut plan = RedeliveryPlan::new("wake-ups");
        let window = RedeliveryWindow {
            after: after.0,
            through: through.0,
            // A generation no ledger entry has (real ones are times in µs).
            generation: u64::MAX,
        };
        scan(self.log.as_ref(), after, through, |events| {
            let verdicts = self.verdicts.of_batch(&events)?;
            let batch = Batch::new(events);
            for record in batch.records() {
                let Some((_, _, routes)) = self.targets(&record, &verdicts)? else {
                    continue;
                };
                for route in routes {
                    if self.route_due(record.event, route, Some(window))? == RouteDue::Dispatch {
                        plan.add(record.event.seq, || {
                            format!("{}:{}", record.event.seq.0, route.agent)
                        });
                    }
                }
            }
            Ok(())
        })?;
        Ok(plan)
    }

    /// Whether the event is older than `max_event_age`: a backfilled copy of an old message
    /// (aged by the provider's own time) or a record received long ago (dispatch turned on
    /// over an old log) must not wake an agent. A webhook is aged by its receipt only: a
    /// provider retry that arrives late after an outage is still a live conversation.
    fn too_old(&self, event: &Event, parsed: &Parsed) -> bool {
        let Some(max) = self.settings.max_event_age else {
            return false;
        };
        let backfilled = matches!(event.source, Source::BackfillQuo | Source::BackfillTwilio);
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
        // Suppressed for the line the event is on: an agent replies from that line.
        let opted_out = match &parties.contact {
            Some(n) => {
                compliance::is_suppressed(self.store.as_ref(), n, parties.line_number.as_deref())?
            }
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

    fn plan_redelivery(&mut self, after: Seq, through: Seq) -> Result<RedeliveryPlan, BatchError> {
        self.plan(after, through)
    }

    fn max_redeliver(&self) -> (u64, &'static str) {
        (self.settings.max_redeliver, "[dispatch] max_redeliver")
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
        self.take_reloaded();
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
mod tests;
