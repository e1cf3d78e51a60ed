//! The `sender` consumer: sends the outbound messages the gates allowed, through the Quo or
//! Twilio REST API, and records every attempt and result in the log (docs/outbound.md#sender;
//! guarantees 3, 4 and 6).
//!
//! It follows `outbound` (its upstream), so the message projection has seen every decision
//! the sender reads. For each `allow` decision it reads the message
//! ([`OutboundStore::message`]) and consults its **effects ledger**; when a send is due it
//! runs the last-moment checks again and then:
//!
//! ```text
//! ledger: attempting(n) ──► append SendAttempt (durable) ──► provider call(s) ──► append
//! SendResult (+ an opt-out or a line block) ──► ledger: done
//! ```
//!
//! # At most once
//!
//! An SMS cannot be taken back, so the ledger, not the cursor, decides whether to call the
//! provider. The ledger entry `attempting(n)` is written before the attempt record is
//! appended, and the append's flush (the state trees live in the same sled database as the
//! log) makes both durable **before** the provider is called. A rewind re-reads decisions
//! whose ledger entry is `done` and skips them; only an operator's `rewind sender
//! --redeliver` ([`Consumer::redeliver`]), once confirmed and within `max_redeliver` (the
//! count is [`Consumer::plan_redelivery`], decided by the same function as the sending),
//! sends them again, as a new attempt with `redelivery: true`, after the last-moment checks
//! and the full gate set ([`checks`]), and once per window
//! ([`super::redelivery`]: the ledger entry keeps the window's generation, so a batch handled
//! again inside the window sends nothing more). Nothing retries a call whose
//! outcome may be that the message went out: a read timeout, a 5xx and a crash end as
//! `unknown` for an operator to check in the provider's console.
//!
//! # Crash table
//!
//! | the daemon stopped …                                   | after the restart                                           |
//! |--------------------------------------------------------|-------------------------------------------------------------|
//! | before the ledger entry                                | nothing was called: the decision is handled as new          |
//! | after `attempting(n)`, before the attempt was flushed  | the entry may be lost (then as above) or kept (then below)  |
//! | after the attempt record, before the result            | `attempting(n)` with no result: an `unknown` result (`crashed`) and a critical alert; **never called again** |
//! | after the result, before `done`                        | the learning pass reads the result: `done`, nothing is appended, no alert |
//! | after `done`, before the cursor was saved              | the batch is handled again; `done` skips the message        |
//! | with its state lost, or on another replica (fail-over) | the learning pass rebuilds the entries from the attempt and result records: as the rows above |
//!
//! # Learning from the log
//!
//! The ledger lives in local state, but every attempt and result is a record in the log. At
//! start, before the first batch, the driver hands the sender the records from its cursor to
//! the end of the log ([`Consumer::learn_effects`]): an attempt with no newer ledger entry
//! becomes `attempting(n)`, a result `done` (never the other way round for one attempt,
//! never an older attempt over a newer one). This is what keeps a fail-over at most once:
//! the replica that takes the consumers' lease has a ledger that knows nothing of what the
//! previous holder sent, and cursors that may be stale or at 0. With the pass, a message the
//! previous holder sent is skipped as `done`, and one it was sending when it died (attempt,
//! no result) ends as `unknown` with a critical alert, never called again. The pass also
//! makes a restart independent of the ledger entry surviving: an entry lost with the local
//! state is learned again from the log.
//!
//! When the log refuses an append (disk full), the batch fails and is retried: a refused
//! attempt record undoes its ledger entry (nothing was called), and the records of a call
//! that did happen are kept in memory and appended by the retry instead of an `unknown`.
//!
//! # Last-moment checks (fail closed)
//!
//! Between the decision and the call, time passes (a queue, a retry of the batch, a
//! redelivery). Just before calling, the sender refuses (result `refused` with reasons, no
//! call) when the recipient is suppressed (or the list cannot be read), the kill switch is
//! on (the configuration's, or an operator's record projected by
//! [`crate::consumers::controls`]), the line is blocked by a provider, gone from `[[lines]]`, not approved or on another
//! provider, or the recipient's quiet hours are closed now (or the area code is unknown). An
//! opt-out or a line block the sender itself has appended counts at once, before the
//! compliance and outbound consumers have projected it. A re-send passes every gate again
//! too (caps, duplicates, first-contact wording), and counts toward the caps at once.
//!
//! # The operator's stops
//!
//! Before any call of a batch, the `controls` projection must have read the log up to the
//! end the log had when the batch started: a kill switch already in the log is never missed
//! because its projection lagged (the call waits, then the batch is retried as a transient
//! condition; nothing is refused for it). A pause of the sender in the log stops the batch
//! before the next call (transient too; its driver then pauses).
//!
//! # Only the daemon's decisions
//!
//! A decision, attempt or result that hooklog did not write itself ([`crate::provenance`]:
//! one appended with a token, or carrying a webhook's verification) is never acted on: it is
//! dead-lettered here (and by `outbound`); a forged `allow` sends nothing, a forged attempt or
//! result is not learned into the ledger.
//!
//! # Outcomes
//!
//! | provider outcome ([`Outcome`](crate::send::Outcome)) | result | also |
//! |---|---|---|
//! | `Sent` | `sent` with the provider's id | |
//! | `OptedOut` (Twilio 21610) | `failed` | an opt-out record for the recipient (compliance suppresses it) |
//! | `LineBlocked` (Quo A2P 400) | `failed` | a `blocked` line record (the gates refuse the line from then on); critical alert |
//! | `RateLimited` after the retries | `failed` | alert |
//! | `Rejected` (other 4xx), a request that cannot be built | `failed` | |
//! | `Transient`, "not sent" (no connection) | retried a few times within the attempt, then `failed` | alert |
//! | `Transient`, a 5xx | `unknown` (the provider may have accepted it) | alert |
//! | `Unknown` | `unknown` | alert |
//! | provider not configured | `failed` (never another provider) | alert |
//!
//! # Key layout (trees of consumer `sender`)
//!
//! | tree        | key           | value                                                   |
//! |-------------|---------------|---------------------------------------------------------|
//! | `ledger`    | message id    | JSON [`LedgerEntry`] `{attempt, state, status, at, window}` |
//! | `redeliver` | `redeliver`   | JSON [`RedeliveryWindow`] `{after, through, generation}` ([`super::redelivery`]) |

pub mod checks;
pub mod config;
pub mod deliver;
pub mod ledger;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, Severity};
use crate::clock::Clock;
use crate::consumers::compliance::OptOutChange;
use crate::consumers::controls::Controls;
use crate::consumers::outbound::{
    GateDecision, GateSettings, GateVerdict, Message, MessageId, OutboundRecord, OutboundStore,
    RecordError, SendResult, SendStatus,
};
use crate::consumers::redelivery::{scan, Redelivery, RedeliveryWindow};
use crate::consumers::{Batch, BatchError, Consumer, RedeliveryPlan, RewindMode};
use crate::event::Seq;
use crate::gates::{ComplianceConfig, LineConfig};
use crate::live::{Live, Watch};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::provenance;
use crate::provider::SendProvider;
use crate::retry::RetryPolicy;
use crate::send::{AlertSink, Limiter, Rate, SendClient};
use crate::state::{KvTree, StateError, StateStore};

pub use config::SenderConfig;

/// The consumer's name.
pub const NAME: &str = "sender";

/// A provider client shared with the blocking send thread.
pub type SharedClient = Arc<dyn SendClient + Send + Sync>;

/// The send clients by provider; a provider without one cannot send (fail closed: its
/// messages fail, they never go through the other provider).
#[derive(Clone, Default)]
pub struct SendClients {
    /// Quo (OpenPhone).
    pub openphone: Option<SharedClient>,
    /// Twilio.
    pub twilio: Option<SharedClient>,
}

/// Where a message stands in the effects ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerState {
    /// The attempt is recorded and the provider may have been called; no result yet.
    Attempting,
    /// The attempt has its result (or was refused before any call).
    Done,
}

/// One message's entry in the effects ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The latest attempt's number (1 for the first).
    pub attempt: u32,
    /// Where it stands.
    pub state: LedgerState,
    /// The result, once done.
    #[serde(default)]
    pub status: Option<SendStatus>,
    /// When the entry was written (RFC 3339).
    pub at: String,
    /// The generation of the redelivery window the attempt was made in, if any: a batch
    /// handled again inside the same window does not send again.
    #[serde(default)]
    pub window: Option<u64>,
}

/// A window generation no ledger entry has: what a new window looks like to [`Sender::due`]
/// when a redelivery is counted (real generations are times in µs).
const NEW_WINDOW: u64 = u64::MAX;

/// What an `allow` decision calls for.
enum Due {
    /// The ledger says `attempting(n)`: settle it, never call.
    Settle(u32),
    /// The projection does not know the message: nothing can be sent.
    Unknown,
    /// Not approved, or already done (outside a window, or in this window already).
    Nothing,
    /// Send attempt `attempt`; `again` when it was attempted before (a redelivery).
    Send {
        msg: Box<Message>,
        attempt: u32,
        again: bool,
        window: Option<u64>,
    },
}

/// How a provider is reached: its client and its limiter.
#[derive(Clone)]
struct Route {
    pub(super) client: SharedClient,
    pub(super) limiter: Arc<Limiter>,
}

/// A record the sender appends after a call.
#[derive(Clone, Debug)]
enum OutboundOrOptOut {
    Outbound(OutboundRecord),
    OptOut(OptOutChange),
}

/// The sender consumer.
pub struct Sender {
    log: Arc<dyn Log>,
    state: Arc<dyn StateStore>,
    outbound: OutboundStore,
    ledger: Arc<dyn KvTree>,
    redelivery: Redelivery,
    window: Option<RedeliveryWindow>,
    compliance: ComplianceConfig,
    lines: Vec<LineConfig>,
    openphone: Option<Route>,
    twilio: Option<Route>,
    alerts: Arc<dyn AlertSink + Send + Sync>,
    metrics: Metrics,
    retry: RetryPolicy,
    connect_retries: u32,
    /// `[sender] max_redeliver`.
    max_redeliver: u64,
    clock: Clock,
    /// Line blocks this sender appended, by line id, with the record's seq: they count until
    /// the outbound projection has a change at least as new.
    blocked_here: HashMap<String, u64>,
    /// Opt-outs this sender appended, by number, with the record's seq: they count until
    /// the compliance projection has an entry at least as new.
    opted_out_here: HashMap<String, u64>,
    /// Records of a finished call that could not be appended (the log failed): appended
    /// when the batch is retried, instead of declaring the attempt unknown.
    unrecorded: HashMap<MessageId, Vec<OutboundOrOptOut>>,
    /// The operator's stops (kill switch, pauses) as the `controls` consumer projects them.
    controls: Controls,
    /// Whether a call waits for that projection to have read the log up to [`Self::batch_end`]
    /// (off only in tests that run no `controls` consumer).
    wait_for_controls: bool,
    /// The end of the log when the batch in hand started.
    batch_end: Seq,
    /// Reloaded gate settings and provider clients, taken between batches.
    reloads: Option<(Watch<GateSettings>, Watch<SendClients>)>,
    /// The rates a provider's limiter starts with when a reload gives it a client.
    rates: (Rate, Rate),
}

fn transient(e: impl std::fmt::Display) -> BatchError {
    BatchError::Transient(e.to_string())
}

impl Sender {
    /// A sender over `log` (and its state store), reading messages from `outbound`, checking
    /// `compliance` and `lines` at the last moment, sending through `clients` at the rates
    /// of `config`, alerting through `alerts`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        log: Arc<dyn Log>,
        outbound: OutboundStore,
        compliance: ComplianceConfig,
        lines: Vec<LineConfig>,
        clients: SendClients,
        config: &SenderConfig,
        alerts: Arc<dyn AlertSink + Send + Sync>,
        metrics: Metrics,
    ) -> Result<Sender, StateError> {
        let state = log.state();
        let controls = Controls::open(log.clone())?;
        let ledger = state.tree(NAME, "ledger")?;
        let redelivery = Redelivery::new(state.tree(NAME, "redeliver")?);
        let window = redelivery.current()?;
        let route = |client: Option<SharedClient>, rate: Rate| {
            client.map(|client| Route {
                client,
                limiter: Arc::new(Limiter::new(rate)),
            })
        };
        let quo_rate = Rate {
            per_second: config.quo_per_second,
            burst: config.quo_per_second,
        };
        let twilio_rate = Rate {
            per_second: config.twilio_per_second,
            burst: 1,
        };
        Ok(Sender {
            log,
            state,
            outbound,
            ledger,
            redelivery,
            window,
            compliance,
            lines,
            openphone: route(clients.openphone, quo_rate),
            twilio: route(clients.twilio, twilio_rate),
            alerts,
            metrics,
            retry: RetryPolicy {
                max_retries: config.max_retries,
                ..RetryPolicy::default()
            },
            connect_retries: 3,
            max_redeliver: config.max_redeliver,
            clock: Clock::system(),
            blocked_here: HashMap::new(),
            opted_out_here: HashMap::new(),
            unrecorded: HashMap::new(),
            controls,
            wait_for_controls: true,
            batch_end: Seq(0),
            reloads: None,
            rates: (quo_rate, twilio_rate),
        })
    }

    /// Takes `[compliance]`, `[[lines]]` and the provider clients (API keys, Twilio's
    /// account and first auth token, endpoints and timeouts) from the cells a reload replaces,
    /// from the next batch on. A provider keeps its limiter across a reload.
    pub fn reloading_from(
        mut self,
        gates: &Live<GateSettings>,
        clients: &Live<SendClients>,
    ) -> Sender {
        self.reloads = Some((gates.watch(), clients.watch()));
        let now = gates.get();
        self.compliance = now.compliance.clone();
        self.lines = now.lines.clone();
        self.set_clients(&clients.get());
        self
    }

    fn set_clients(&mut self, clients: &SendClients) {
        let swap = |route: &mut Option<Route>, client: &Option<SharedClient>, rate: Rate| {
            *route = match (route.take(), client) {
                // Fail closed: a provider whose credentials were removed cannot send.
                (_, None) => None,
                (Some(old), Some(client)) => Some(Route {
                    client: client.clone(),
                    limiter: old.limiter,
                }),
                (None, Some(client)) => Some(Route {
                    client: client.clone(),
                    limiter: Arc::new(Limiter::new(rate)),
                }),
            };
        };
        swap(&mut self.openphone, &clients.openphone, self.rates.0);
        swap(&mut self.twilio, &clients.twilio, self.rates.1);
    }

    /// The reloaded settings, if a reload replaced them since the last batch.
    fn take_reloaded(&mut self) {
        let Some((gates, clients)) = self.reloads.as_mut() else {
            return;
        };
        let (gates, clients) = (gates.changed(), clients.changed());
        if let Some(new) = gates {
            self.compliance = new.compliance.clone();
            self.lines = new.lines.clone();
            tracing::info!(
                consumer = NAME,
                "reloaded [compliance] and [[lines]] in force"
            );
        }
        if let Some(new) = clients {
            self.set_clients(&new);
            tracing::info!(consumer = NAME, providers = ?new.providers(), "reloaded provider credentials in force");
        }
    }

    /// For tests that run no `controls` consumer: a call does not wait for its projection
    /// to catch up (the stops it holds, none in such a test, are still read).
    pub fn without_controls_consumer(mut self) -> Sender {
        self.wait_for_controls = false;
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Sender {
        self.clock = clock;
        self
    }

    /// Replaces the 429 backoff policy; its backoff also paces the retries of a call that
    /// could not connect (tests use a fast one).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Sender {
        self.retry = retry;
        self
    }

    fn now_rfc3339(&self) -> String {
        self.clock.now().to_rfc3339()
    }

    /// What handling the `allow` decision `decision` calls for, by the ledger and the
    /// message, when its record is inside a redelivery window of generation `window`
    /// (`None`: outside any). What [`Self::on_allow`] acts on, and what a redelivery's plan
    /// counts, so the count is exactly what the window would send.
    fn due(&self, decision: &GateDecision, window: Option<u64>) -> Result<Due, StateError> {
        let id = &decision.id;
        let entry = self.ledger_entry(id)?;
        if let Some(e) = entry
            .as_ref()
            .filter(|e| e.state == LedgerState::Attempting)
        {
            return Ok(Due::Settle(e.attempt));
        }
        let Some(msg) = self.outbound.message(id)? else {
            return Ok(Due::Unknown);
        };
        if !msg.approved {
            return Ok(Due::Nothing);
        }
        let done_before = entry.is_some() || msg.attempts > 0;
        if done_before {
            let sent_in_this_window =
                window.is_some() && entry.as_ref().and_then(|e| e.window) == window;
            if window.is_none() || sent_in_this_window {
                return Ok(Due::Nothing);
            }
        }
        let attempt = msg.attempts.max(entry.map_or(0, |e| e.attempt)) + 1;
        Ok(Due::Send {
            msg: Box::new(msg),
            attempt,
            again: done_before,
            window,
        })
    }

    /// Handles one `allow` decision at `seq`.
    async fn on_allow(&mut self, seq: Seq, decision: &GateDecision) -> Result<(), BatchError> {
        let window = self
            .window
            .filter(|w| w.contains(seq))
            .map(|w| w.generation);
        match self.due(decision, window)? {
            Due::Settle(attempt) => self.settle_interrupted(&decision.id, attempt).await,
            Due::Unknown => {
                tracing::warn!(seq = seq.0, id = %decision.id, "allow decision for a message the projection does not know; not sent");
                Ok(())
            }
            Due::Nothing => Ok(()),
            Due::Send {
                msg,
                attempt,
                again,
                window,
            } => self.send(&msg, attempt, again, window).await,
        }
    }

    /// The re-sends a redelivery window over `(after, through]` would make: every allowed
    /// message in range that the ledger says was attempted, as [`Self::due`] decides inside
    /// a new window. A message with two `allow` decisions in range (which the outbound
    /// consumer never appends) would be counted twice: more, never fewer.
    fn plan(&self, after: Seq, through: Seq) -> Result<RedeliveryPlan, BatchError> {
        let mut plan = RedeliveryPlan::new("sends");
        scan(self.log.as_ref(), after, through, |events| {
            for event in &events {
                let Some(Ok(OutboundRecord::Decision(d))) = OutboundRecord::decode(event) else {
                    continue;
                };
                if d.verdict != GateVerdict::Allow {
                    continue;
                }
                if let Due::Send {
                    again: true, msg, ..
                } = self.due(&d, Some(NEW_WINDOW))?
                {
                    plan.add(event.seq, || msg.id.to_string());
                }
            }
            Ok(())
        })?;
        Ok(plan)
    }

    /// The ledger says `attempting(n)`: the process stopped (or the log failed) between the
    /// attempt and its result. Never calls the provider.
    async fn settle_interrupted(&mut self, id: &MessageId, attempt: u32) -> Result<(), BatchError> {
        let msg = self.outbound.message(id)?;
        let provider = msg
            .as_ref()
            .and_then(|m| m.provider)
            .map_or("unknown", SendProvider::as_str);
        if let Some(records) = self.unrecorded.get(id).cloned() {
            return self.finish_attempt(id, attempt, provider, records).await;
        }
        if let Some(m) = msg {
            if m.attempts >= attempt && m.status.is_final() {
                // The result was recorded; only the ledger's `done` was lost.
                let status = match m.status {
                    crate::consumers::outbound::Status::Sent => Some(SendStatus::Sent),
                    crate::consumers::outbound::Status::Failed => Some(SendStatus::Failed),
                    crate::consumers::outbound::Status::Refused => Some(SendStatus::Refused),
                    _ => Some(SendStatus::Unknown),
                };
                let window = self.ledger_entry(id)?.and_then(|e| e.window);
                self.put_ledger(id, attempt, LedgerState::Done, status, window)?;
                return Ok(());
            }
        }
        let error = format!(
            "hooklog stopped after attempt {attempt} was recorded and before its result: the \
             provider may or may not have accepted the message"
        );
        self.alerts.raise(Alert {
            key: format!("send:crashed:{id}"),
            severity: Severity::Critical,
            title: format!("message {id} may or may not have been sent"),
            reason: error.clone(),
            next_step: "check the provider's message log for it before resending; it is \
                        marked unknown and is not sent again by itself"
                .into(),
        });
        let result = SendResult {
            id: id.clone(),
            attempt,
            status: SendStatus::Unknown,
            outcome: "crashed".into(),
            provider_id: None,
            code: None,
            error: Some(error),
            reasons: Vec::new(),
            tries: 0,
            at: self.now_rfc3339(),
        };
        self.finish_attempt(
            id,
            attempt,
            provider,
            vec![OutboundOrOptOut::Outbound(OutboundRecord::Result(result))],
        )
        .await
    }
}

impl Consumer for Sender {
    fn name(&self) -> &'static str {
        NAME
    }

    fn upstreams(&self) -> &'static [&'static str] {
        &[crate::consumers::outbound::store::CONSUMER]
    }

    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Replay
    }

    /// The ledger is never cleared: it is what keeps a rewind from sending again.
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
        (self.max_redeliver, "[sender] max_redeliver")
    }

    fn redeliver(&mut self, after: Seq, through: Seq) -> Result<(), BatchError> {
        if let Some(w) = self.redelivery.open(after, through)? {
            self.window = Some(w);
            tracing::info!(
                after = w.after,
                through = w.through,
                "sender: allowed messages in the window will be sent again"
            );
        }
        Ok(())
    }

    /// The attempts and results in `batch`, noted in the ledger: an attempt with no result
    /// becomes `attempting(n)` (the allow decision then ends it as `unknown`, without a
    /// call), a result `done`. Never behind what the ledger already has: an older attempt
    /// number, or `attempting` over `done` for the same attempt, is ignored.
    async fn learn_effects(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        self.learn(batch).await
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        self.take_reloaded();
        // A stop appended before this point must be projected before any call of the batch.
        self.batch_end = *self.log.watch_last_seq().borrow();
        for event in batch.events() {
            let decision = match OutboundRecord::decode(event) {
                Some(Ok(OutboundRecord::Decision(d))) => d,
                Some(Err(RecordError::Forged(forged)))
                    if matches!(
                        forged.kind,
                        provenance::Kind::Decision
                            | provenance::Kind::Attempt
                            | provenance::Kind::Result
                    ) =>
                {
                    // The kinds the sender reads: nothing is sent for it, nothing is learned
                    // from it, and the operator hears of it here too.
                    return Err(forged.into());
                }
                Some(Err(e)) => {
                    // The outbound consumer dead-letters it; nothing is sent for it.
                    tracing::warn!(seq = event.seq.0, error = %e, "unreadable outbound record; nothing sent for it");
                    continue;
                }
                _ => continue,
            };
            if decision.verdict == GateVerdict::Allow {
                self.on_allow(event.seq, &decision).await?;
            }
        }
        if self
            .redelivery
            .finish(self.window, batch.events(), self.log.as_ref(), NAME)?
            .is_some()
        {
            self.window = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
