//! The registry of running consumers: what status shows of each, and the operator's controls
//! (rewind, redrive), which reach a consumer's driver over a channel so that they never run
//! concurrently with a batch. Pauses are not kept here: they are records in the log, and the
//! drivers read them from the projection the daemon names with [`Registry::read_pauses_from`]
//! (the `controls` consumer), before every batch.
//!
//! A rewind with `redeliver` ([`Redeliver`]) is carried out only when the operator confirmed
//! it and the consumer's own count of what it would perform again ([`RedeliveryPlan`]) is
//! within the limit; otherwise it is refused with the report
//! ([`ControlError::Unconfirmed`], [`ControlError::OverLimit`]) and nothing changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify};

use super::batches::Batches;
use crate::event::Seq;

/// A consumer's state as reported by status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Processing or waiting for new records.
    Running,
    /// Paused by an operator.
    Paused,
    /// Backing off after a transient failure.
    Retrying,
    /// Stopped: shutdown, or its task ended (a panic); the last error says which.
    Stopped,
}

/// What status shows of one consumer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// Name.
    pub name: String,
    /// Upstream consumers.
    pub upstreams: Vec<String>,
    /// Current state.
    pub state: RunState,
    /// The last error, if the consumer has failed since it last succeeded.
    pub last_error: Option<String>,
}

/// The outcome of a rewind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewindReport {
    /// The consumer.
    pub consumer: String,
    /// Its cursor before.
    pub from_cursor: u64,
    /// Its cursor after (where replay starts).
    pub to_cursor: u64,
    /// Records that will be processed again.
    pub replay: u64,
    /// Whether state is rebuilt from the first record.
    pub rebuild: bool,
    /// Effects of the records in range are performed again (dispatch, sender).
    #[serde(default)]
    pub redeliver: bool,
    /// With `redeliver`: what would be (or is being) performed again, and the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redelivery: Option<RedeliveryPlan>,
    /// Nothing was changed.
    pub dry_run: bool,
}

impl RewindReport {
    /// Why a rewind with `redeliver` was refused and exactly what to run next (with the
    /// counts); `confirmed` says whether the operator had confirmed it.
    pub fn refusal(&self, confirmed: bool) -> String {
        let name = &self.consumer;
        let to = self.to_cursor;
        let Some(plan) = &self.redelivery else {
            return format!("{name}: nothing was changed");
        };
        let range = match (plan.first_seq, plan.last_seq) {
            (Some(first), Some(last)) => format!(
                " (records {first}..={last}, e.g. {})",
                plan.sample.join(", ")
            ),
            _ => String::new(),
        };
        let mut text = format!(
            "{name}: nothing was changed. Rewinding to {to} with redeliver would perform {} {} \
             again{range}.",
            plan.effects, plan.unit
        );
        if plan.within_limit() {
            text.push_str(&format!(
                " To go ahead: `hooklog-replay rewind {name} --to-seq {to} --redeliver --yes` \
                 (admin API: add \"confirm\": true)."
            ));
        } else {
            let state = if confirmed { "Refused: that" } else { "That" };
            text.push_str(&format!(
                " {state} is more than the limit of {} ({}). Narrow the range (a later \
                 --to-seq), or raise the limit for this call only: `hooklog-replay rewind \
                 {name} --to-seq {to} --redeliver --yes --max {}` (admin API: \"confirm\": \
                 true, \"max_redeliver\": {})",
                plan.limit, plan.limit_from, plan.effects, plan.effects
            ));
            text.push('.');
        }
        text
    }
}

/// How a rewind performs effects again (dispatch, sender): only with the operator's
/// confirmation, and only within a limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Redeliver {
    /// The operator confirmed (`--yes`, `"confirm": true`); without it the rewind only
    /// reports what it would do.
    pub confirm: bool,
    /// The operator's limit for this call instead of the configured `max_redeliver`.
    pub max: Option<u64>,
}

/// Ids a plan names as examples.
pub const SAMPLE: usize = 10;

/// What a redelivery would perform again: counted by the consumer from its ledger, before
/// anything changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeliveryPlan {
    /// What one effect is: `sends` (the sender) or `wake-ups` (dispatch: events × agents).
    pub unit: String,
    /// How many effects the window would perform again.
    pub effects: u64,
    /// The first and last record in range that would perform one, if any.
    pub first_seq: Option<u64>,
    /// See `first_seq`.
    pub last_seq: Option<u64>,
    /// The first few of them: message ids (sender), `seq:agent` (dispatch).
    pub sample: Vec<String>,
    /// The most effects this rewind may perform: the configured `max_redeliver`, or the
    /// operator's own for this call.
    #[serde(default)]
    pub limit: u64,
    /// Where the limit came from: `[sender] max_redeliver`, or `this request`.
    #[serde(default)]
    pub limit_from: String,
}

impl RedeliveryPlan {
    /// An empty plan counting `unit`.
    pub fn new(unit: &str) -> RedeliveryPlan {
        RedeliveryPlan {
            unit: unit.to_owned(),
            ..RedeliveryPlan::default()
        }
    }

    /// Counts one effect of record `seq`, named `id` in the sample.
    pub fn add(&mut self, seq: Seq, id: impl FnOnce() -> String) {
        self.effects += 1;
        self.first_seq.get_or_insert(seq.0);
        self.last_seq = Some(seq.0);
        if self.sample.len() < SAMPLE {
            self.sample.push(id());
        }
    }

    /// Whether the count is within the limit.
    pub fn within_limit(&self) -> bool {
        self.effects <= self.limit
    }
}

/// The outcome of a redrive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveReport {
    /// The consumer.
    pub consumer: String,
    /// Records that now succeeded and left the dead-letter list.
    pub succeeded: Vec<u64>,
    /// Records that failed again (still dead letters, error updated).
    pub failed: Vec<u64>,
}

pub(super) enum Control {
    Rewind {
        to: Seq,
        dry_run: bool,
        redeliver: Option<Redeliver>,
        reply: oneshot::Sender<Result<RewindReport, ControlError>>,
    },
    Redrive {
        seq: Option<Seq>,
        reply: oneshot::Sender<Result<RedriveReport, String>>,
    },
}

/// Whether a consumer is paused, as a projection of the log has it (an error: the state
/// cannot be read; the driver then keeps what it knew).
pub type PauseLookup = Arc<dyn Fn(&str) -> Result<bool, String> + Send + Sync>;

/// Where the drivers read the pauses: the consumer that projects them, and the lookup.
#[derive(Clone)]
pub struct PauseSource {
    /// The consumer that projects the pauses. Every other driver waits, before its first
    /// batch, until this one has read the log up to the end it had when the driver started,
    /// so that a pause already in the log holds from the first batch (after a fail-over too);
    /// this one is never paused.
    pub projected_by: &'static str,
    /// The lookup by consumer name.
    pub paused: PauseLookup,
}

pub(super) struct Entry {
    pub(super) info: Arc<Mutex<ConsumerInfo>>,
    pub(super) control: mpsc::Sender<Control>,
}

/// The running consumers, shared with the admin API.
#[derive(Default)]
pub struct Registry {
    consumers: Mutex<BTreeMap<String, Entry>>,
    /// Fired whenever a cursor moves, so downstream consumers wake without polling.
    pub(super) wake: Notify,
    /// The batches the drivers share, with read-ahead.
    pub(super) batches: Batches,
    /// Held by a retention pass from choosing its bound to the end of its deletes, and by a
    /// rewind while it checks the log and moves a cursor back: a cursor never moves back
    /// below a bound a pass is deleting up to.
    pub(super) retention: tokio::sync::Mutex<()>,
    /// Where the pauses are read (none: nothing is ever paused).
    pauses: Mutex<Option<PauseSource>>,
    /// The consumers this replica started (on the leader only), which `/readyz` requires to be
    /// registered and running.
    expected: Mutex<std::collections::BTreeSet<String>>,
}

/// Why an operator command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No consumer of that name runs here.
    #[error("no consumer named `{0}` (running: {1})")]
    Unknown(String, String),
    /// The consumer has stopped.
    #[error("consumer `{0}` has stopped")]
    Stopped(String),
    /// The consumer refused or failed.
    #[error("{0}")]
    Failed(String),
    /// The request does not apply to this consumer (nothing was changed).
    #[error("{0}")]
    Refused(String),
    /// A rewind with `redeliver` the operator has not confirmed: nothing was changed; the
    /// report says what it would perform again.
    #[error("{}", .0.refusal(false))]
    Unconfirmed(Box<RewindReport>),
    /// A confirmed rewind with `redeliver` that would perform more effects again than the
    /// limit: nothing was changed.
    #[error("{}", .0.refusal(true))]
    OverLimit(Box<RewindReport>),
}

impl Registry {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // Entries are only inserted whole; a panic elsewhere cannot leave one half-written.
        self.consumers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serializes a retention pass with rewinds (the pass holds the guard while it chooses
    /// its bound and deletes; see the field's comment).
    pub fn retention_guard_blocking(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.retention.blocking_lock()
    }

    /// Names of the registered consumers.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Every consumer's info.
    pub fn infos(&self) -> Vec<ConsumerInfo> {
        self.lock()
            .values()
            .map(|e| e.info.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    fn sender(&self, name: &str) -> Result<mpsc::Sender<Control>, ControlError> {
        let map = self.lock();
        map.get(name).map(|e| e.control.clone()).ok_or_else(|| {
            ControlError::Unknown(
                name.to_owned(),
                map.keys().cloned().collect::<Vec<_>>().join(", "),
            )
        })
    }

    /// Rewinds `name` so that records after `to` are processed again. `redeliver` asks for
    /// their effects again too, unconfirmed: the consumer reports what it would perform and
    /// changes nothing ([`ControlError::Unconfirmed`]); see [`Self::rewind_with`].
    pub async fn rewind(
        &self,
        name: &str,
        to: Seq,
        dry_run: bool,
        redeliver: bool,
    ) -> Result<RewindReport, ControlError> {
        let redeliver = redeliver.then(Redeliver::default);
        self.rewind_with(name, to, dry_run, redeliver).await
    }

    /// Rewinds `name` so that records after `to` are processed again; with `redeliver`, a
    /// consumer with an effects ledger performs their effects again too, once confirmed and
    /// within the limit.
    pub async fn rewind_with(
        &self,
        name: &str,
        to: Seq,
        dry_run: bool,
        redeliver: Option<Redeliver>,
    ) -> Result<RewindReport, ControlError> {
        let tx = self.sender(name)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Control::Rewind {
            to,
            dry_run,
            redeliver,
            reply,
        })
        .await
        .map_err(|_| ControlError::Stopped(name.to_owned()))?;
        rx.await
            .map_err(|_| ControlError::Stopped(name.to_owned()))?
    }

    /// Re-runs `name`'s dead letters (all, or one).
    pub async fn redrive(
        &self,
        name: &str,
        seq: Option<Seq>,
    ) -> Result<RedriveReport, ControlError> {
        let tx = self.sender(name)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Control::Redrive { seq, reply })
            .await
            .map_err(|_| ControlError::Stopped(name.to_owned()))?;
        rx.await
            .map_err(|_| ControlError::Stopped(name.to_owned()))?
            .map_err(ControlError::Failed)
    }

    /// Makes `source` the pauses every driver obeys (the daemon: the `controls` projection).
    pub fn read_pauses_from(&self, source: PauseSource) {
        *self.pauses.lock().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Where the pauses are read, if anywhere.
    pub(super) fn pause_source(&self) -> Option<PauseSource> {
        self.pauses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes that this replica runs `name`: from now on readiness requires it registered
    /// and not stopped ([`Self::not_running`]).
    pub fn expect(&self, name: &str) {
        self.expected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
    }

    /// The expected consumers that are not running, each with why: not registered, or
    /// stopped (its task ended). Empty on a replica that runs no consumers (a standby).
    pub fn not_running(&self) -> Vec<String> {
        let expected = self
            .expected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let map = self.lock();
        expected
            .into_iter()
            .filter_map(|name| match map.get(&name) {
                None => Some(format!("{name} (not registered)")),
                Some(e) => {
                    let info = e.info.lock().unwrap_or_else(|p| p.into_inner());
                    (info.state == RunState::Stopped).then(|| match &info.last_error {
                        Some(error) => format!("{name} (stopped: {error})"),
                        None => format!("{name} (stopped)"),
                    })
                }
            })
            .collect()
    }

    /// Wakes every driver, so that each reads its pause again (the projection changed one).
    pub fn wake_all(&self) {
        self.wake.notify_waiters();
    }
}
