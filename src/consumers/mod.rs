//! Consumers: independent projections of the log, each behind one small trait, all run by one
//! shared driver.
//!
//! A consumer has a name, a durable cursor (stored with the log: the last sequence it has fully
//! processed), optional upstreams, and its own state trees ([`state`]). The driver owns
//! everything around the consumer's logic: reading batches after the cursor, never passing an
//! upstream's cursor, saving the cursor **after** the effect (at-least-once), retrying transient
//! failures with exponential backoff and full jitter, dead-lettering poison records (the cursor
//! moves on, an alert fires), pause/resume, rewind, redrive, graceful shutdown and metrics.
//!
//! Invariants:
//! - A consumer's cursor never exceeds the end of the log nor any upstream's cursor.
//! - A batch is handled in sequence order; if the process dies before its cursor is saved the
//!   batch is handled again, so [`Consumer::handle`] must be idempotent per record.
//! - A poison record is never skipped silently: it is in the dead-letter list (tree
//!   `dead_letters`, key = sequence big-endian, value = JSON [`DeadLetter`]) until redriven.
//! - Consumers with derived state are rebuilt from the first record on a rewind
//!   ([`RewindMode::Rebuild`]), which reproduces the same state because projections are pure
//!   functions of the log. Once retention has pruned the log (`first_seq > 1`) that is no
//!   longer true, so such a rewind is refused; a [`RewindMode::Replay`] rewind to a point
//!   before the first record starts at the first record still stored.
//! - A consumer that commits its own cursor together with its effects (the Postgres sink)
//!   is the truth about its position: before each batch the driver asks for it
//!   ([`Consumer::committed_cursor`]) and continues from there, and every move the driver makes
//!   without handing records over (rewind, an undecodable record) is made there first
//!   ([`Consumer::move_committed_cursor`]).
//! - A consumer with irreversible effects (dispatch, sender) decides by its effects ledger,
//!   kept in local state, whether an effect is still to be performed; the effects themselves
//!   are in the log as records (attempts, results). Before the first batch, the driver hands
//!   it the records from its cursor to the end of the log as it is at start
//!   ([`Consumer::learn_effects`], the *learning pass*), and it notes in its ledger what they
//!   show was done, without doing anything. Why: with two replicas on one JetStream stream,
//!   the one that takes the consumers' lease after a fail-over starts from its own state,
//!   whose cursors may be stale and whose ledger knows nothing of what the previous holder
//!   did; and on any restart, a ledger entry lost with the local state is recovered from the
//!   log. The pass moves no cursor and only reads what was in the log at start: the records
//!   appended after it are this process's own, and its ledger has them already.

mod batches;
pub mod compliance;
#[cfg(test)]
mod conformance;
pub mod dedup;
pub mod dispatch;
pub mod outbound;
pub mod postgres;
pub mod redelivery;
pub mod retention;
pub mod sender;
pub mod staleness;
#[cfg(test)]
mod testutil;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Notify};

pub use batches::{Batch, Record};

use self::batches::Batches;
use crate::alerts::{Alert, Alerter, Severity};
use crate::event::{Event, Micros, Seq};
use crate::log::{Log, LogError};
use crate::metrics::Metrics;
use crate::state::{self, StateError, StateStore};

/// Why a batch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Worth retrying the same batch (a network blip, a locked database): the driver backs off
    /// and retries, the cursor stays.
    #[error("transient: {0}")]
    Transient(String),
    /// Record `seq` can never be processed (it does not parse, it breaks an invariant). Every
    /// record of the batch before it has been applied; the driver dead-letters `seq` and
    /// continues after it.
    #[error("record {seq} is poison: {error}")]
    Poison {
        /// The bad record.
        seq: Seq,
        /// Why.
        error: String,
    },
}

impl From<StateError> for BatchError {
    fn from(e: StateError) -> Self {
        BatchError::Transient(e.to_string())
    }
}

/// What a rewind does to a consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewindMode {
    /// The consumer's state is derived from the whole log (dedup windows, the suppression
    /// list): a rewind clears it and replays from the first record. The result is the same
    /// state, recomputed.
    Rebuild,
    /// The consumer's effects are idempotent upserts: a rewind moves the cursor back only.
    Replay,
}

/// One projection of the log.
pub trait Consumer: Send + 'static {
    /// Unique name; also the cursor's name.
    fn name(&self) -> &'static str;
    /// Consumers whose cursor this one must never pass.
    fn upstreams(&self) -> &'static [&'static str] {
        &[]
    }
    /// How a rewind treats this consumer.
    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Rebuild
    }
    /// Clears derived state before a rebuild.
    fn reset(&mut self) -> Result<(), BatchError>;
    /// Applies a batch, in order. Must be idempotent per record. The batch carries each
    /// record's parse, computed once for every consumer that handles it, and is shared, so it
    /// can be handed to another thread.
    fn handle_batch(
        &mut self,
        batch: &Arc<Batch>,
    ) -> impl Future<Output = Result<(), BatchError>> + Send;
    /// [`Self::handle_batch`] on plain records (tests and benches; the driver hands batches).
    fn handle(&mut self, batch: &[Event]) -> impl Future<Output = Result<(), BatchError>> + Send {
        let batch = Arc::new(Batch::new(batch.to_vec()));
        async move { self.handle_batch(&batch).await }
    }

    /// For a consumer that commits its own cursor together with its effects (the Postgres
    /// sink keeps it in the same transaction as its rows): that cursor, the truth about what
    /// has been applied. The driver asks before every batch and continues after it when it
    /// differs from the log's cursor (a cursor save lost in a crash, a database restored from
    /// a backup). `None`, the default: the log's cursor is the truth.
    #[allow(clippy::manual_async_fn)]
    fn committed_cursor(&mut self) -> impl Future<Output = Result<Option<Seq>, BatchError>> + Send {
        async { Ok(None) }
    }

    /// Whether this consumer has irreversible effects recorded in an effects ledger (dispatch,
    /// sender). Only such a consumer accepts a rewind with `redeliver`, and only such a
    /// consumer is handed [`Self::learn_effects`].
    fn has_effects(&self) -> bool {
        false
    }

    /// Notes in the effects ledger the effects that the records of `batch` show were already
    /// performed (by this process before it stopped, or by another replica before a
    /// fail-over), without performing anything. The driver hands over, once at start, the
    /// records between the cursor and the end of the log, before the first
    /// [`Self::handle_batch`]; the cursor does not move.
    ///
    /// Must be idempotent and never downgrade what the ledger already knows (a learned
    /// entry never replaces a newer one). An error is retried as transient; a record that
    /// cannot be read shows no effect and is skipped. The default does nothing. Only called
    /// when [`Self::has_effects`] is true.
    #[allow(clippy::manual_async_fn)]
    fn learn_effects(
        &mut self,
        batch: &Arc<Batch>,
    ) -> impl Future<Output = Result<(), BatchError>> + Send {
        let _ = batch;
        async { Ok(()) }
    }

    /// A rewind with `redeliver` moves this consumer's cursor back to `after` from `through`:
    /// the effects of records in `(after, through]` are to be performed again instead of
    /// skipped by the ledger. Called before the cursor moves; an error cancels the rewind.
    /// Only called when [`Self::has_effects`] is true.
    fn redeliver(&mut self, after: Seq, through: Seq) -> Result<(), BatchError> {
        let _ = (after, through);
        Ok(())
    }

    /// The consumer is caught up (nothing new to read): time-driven work, such as
    /// re-evaluating held requests whose time has come. Called at most once per idle poll
    /// interval or wake-up, never concurrently with a batch. The default does nothing.
    #[allow(clippy::manual_async_fn)]
    fn tick(&mut self) -> impl Future<Output = Result<(), BatchError>> + Send {
        async { Ok(()) }
    }

    /// The driver is stopping (shutdown): finish what is in flight. The default does nothing.
    #[allow(clippy::manual_async_fn)]
    fn finish(&mut self) -> impl Future<Output = Result<(), BatchError>> + Send {
        async { Ok(()) }
    }

    /// The driver moved the cursor to `to` without handing over the records in between: back
    /// for a rewind, forward past a record that cannot be decoded. A consumer with its own
    /// committed cursor moves it the same way; an error cancels the move.
    #[allow(clippy::manual_async_fn)]
    fn move_committed_cursor(
        &mut self,
        to: Seq,
    ) -> impl Future<Output = Result<(), BatchError>> + Send {
        let _ = to;
        async { Ok(()) }
    }
}

/// A dead-lettered record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The consumer that could not process it.
    pub consumer: String,
    /// The record.
    pub seq: u64,
    /// Why.
    pub error: String,
    /// When it was dead-lettered (RFC 3339).
    pub at: String,
    /// How many times it has been tried (1 + redrives).
    pub attempts: u32,
}

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
    /// Stopped (shutdown).
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
    /// Nothing was changed.
    pub dry_run: bool,
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

enum Control {
    Rewind {
        to: Seq,
        dry_run: bool,
        redeliver: bool,
        reply: oneshot::Sender<Result<RewindReport, ControlError>>,
    },
    Redrive {
        seq: Option<Seq>,
        reply: oneshot::Sender<Result<RedriveReport, String>>,
    },
    Pause,
    Resume,
}

struct Entry {
    info: Arc<Mutex<ConsumerInfo>>,
    control: mpsc::Sender<Control>,
}

/// The running consumers, shared with the admin API.
#[derive(Default)]
pub struct Registry {
    consumers: Mutex<BTreeMap<String, Entry>>,
    /// Fired whenever a cursor moves, so downstream consumers wake without polling.
    wake: Notify,
    /// The batches the drivers share, with read-ahead.
    batches: Batches,
    /// Held by a retention pass from choosing its bound to the end of its deletes, and by a
    /// rewind while it checks the log and moves a cursor back: a cursor never moves back
    /// below a bound a pass is deleting up to.
    retention: tokio::sync::Mutex<()>,
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
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
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

    /// Rewinds `name` so that records after `to` are processed again; with `redeliver`, a
    /// consumer with an effects ledger performs their effects again too.
    pub async fn rewind(
        &self,
        name: &str,
        to: Seq,
        dry_run: bool,
        redeliver: bool,
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

    /// Pauses or resumes `name`.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), ControlError> {
        let tx = self.sender(name)?;
        tx.send(if paused {
            Control::Pause
        } else {
            Control::Resume
        })
        .await
        .map_err(|_| ControlError::Stopped(name.to_owned()))
    }
}

/// The dead letters of one consumer.
pub fn dead_letters(store: &dyn StateStore, consumer: &str) -> Result<Vec<DeadLetter>, StateError> {
    let tree = store.tree(consumer, DEAD_LETTERS)?;
    let mut out = Vec::new();
    state::for_each(tree.as_ref(), &[], |_, v| {
        out.push(decode_dead_letter(v)?);
        Ok(true)
    })?;
    Ok(out)
}

const DEAD_LETTERS: &str = "dead_letters";

fn decode_dead_letter(v: &[u8]) -> Result<DeadLetter, StateError> {
    serde_json::from_slice(v).map_err(|e| StateError::Corrupt {
        tree: DEAD_LETTERS.into(),
        message: e.to_string(),
    })
}

/// How the driver paces itself.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Most records per batch.
    pub batch_size: usize,
    /// First retry delay after a transient failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Consecutive transient failures before an alert.
    pub alert_after_failures: u32,
    /// Longest wait between checks for new records (wake-ups normally come sooner).
    pub idle_poll: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            batch_size: 512,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            alert_after_failures: 5,
            idle_poll: Duration::from_millis(500),
        }
    }
}

/// What every driver shares.
#[derive(Clone)]
pub struct DriverContext {
    /// The log.
    pub log: Arc<dyn Log>,
    /// Consumer state.
    pub store: Arc<dyn StateStore>,
    /// Status and control.
    pub registry: Arc<Registry>,
    /// Metrics.
    pub metrics: Metrics,
    /// Operator alerts.
    pub alerter: Alerter,
    /// Pacing.
    pub config: DriverConfig,
}

/// Exponential backoff with full jitter: a random delay in `[0, min(max, base·2^n)]`.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20));
    let cap = exp.min(max);
    let millis = cap.as_millis().max(1) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
}

/// Runs `consumer` under the driver on a thread of its own (with a single-threaded runtime),
/// until `shutdown` turns true. The returned receiver resolves when the thread has finished.
///
/// Why a thread: consumers are CPU-heavy during a catch-up or a rewind. On the edge's runtime
/// they would take worker time from webhook acknowledgements, and tokio keeps a task woken by
/// another on the same worker, so an upstream and its downstream would never run in parallel.
pub fn spawn_on_thread<C: Consumer>(
    consumer: C,
    ctx: DriverContext,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<oneshot::Receiver<()>> {
    let name = consumer.name();
    let driver = spawn_driver(consumer, ctx, shutdown);
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("consumer-{name}"))
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(driver),
                Err(e) => tracing::error!(consumer = name, error = %e, "cannot start the consumer's runtime"),
            }
            let _ = done.send(());
        })?;
    Ok(finished)
}

/// Registers `consumer` and returns the future that drives it until `shutdown` turns true.
pub fn spawn_driver<C: Consumer>(
    consumer: C,
    ctx: DriverContext,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send {
    let (tx, rx) = mpsc::channel(16);
    let info = Arc::new(Mutex::new(ConsumerInfo {
        name: consumer.name().to_owned(),
        upstreams: consumer
            .upstreams()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        state: RunState::Running,
        last_error: None,
    }));
    ctx.registry.lock().insert(
        consumer.name().to_owned(),
        Entry {
            info: info.clone(),
            control: tx,
        },
    );
    Driver {
        consumer,
        ctx,
        info,
        control: rx,
        shutdown,
        paused: false,
        failures: 0,
    }
    .run()
}

struct Driver<C: Consumer> {
    consumer: C,
    ctx: DriverContext,
    info: Arc<Mutex<ConsumerInfo>>,
    control: mpsc::Receiver<Control>,
    shutdown: watch::Receiver<bool>,
    paused: bool,
    failures: u32,
}

enum Step {
    Continue,
    Wait,
}

impl<C: Consumer> Driver<C> {
    fn set_info(&self, state: RunState, error: Option<Option<String>>) {
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        info.state = state;
        if let Some(e) = error {
            info.last_error = e;
        }
    }

    async fn run(mut self) {
        let name = self.consumer.name();
        let mut last_seq = self.ctx.log.watch_last_seq();
        let registry = self.ctx.registry.clone();
        tracing::info!(consumer = name, "consumer started");
        if self.consumer.has_effects() {
            self.learning_pass().await;
        }
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            let step = if self.paused {
                // A paused consumer handles nothing, but the log goes on growing: its lag
                // must show the backlog the pause builds, not the value from before it.
                match self.ctx.log.cursor(name) {
                    Ok(cursor) => {
                        let last = self.ctx.log.watch_last_seq().borrow().0;
                        self.report_position(cursor.0, last);
                    }
                    Err(e) => {
                        tracing::warn!(consumer = name, error = %e, "cannot read the cursor of a paused consumer")
                    }
                }
                Step::Wait
            } else {
                match self.step().await {
                    Ok(step) => step,
                    Err(e) => {
                        self.transient_failure(e.to_string()).await;
                        Step::Continue
                    }
                }
            };
            if let (Step::Wait, false) = (&step, self.paused) {
                if let Err(e) = self.consumer.tick().await {
                    self.transient_failure(e.to_string()).await;
                }
            }
            if let Step::Wait = step {
                let wake = registry.wake.notified();
                tokio::select! {
                    _ = last_seq.changed() => {}
                    _ = wake => {}
                    cmd = self.control.recv() => match cmd {
                        Some(cmd) => self.apply(cmd).await,
                        None => break,
                    },
                    _ = self.shutdown.changed() => {}
                    _ = tokio::time::sleep(self.ctx.config.idle_poll) => {}
                }
            }
            while let Ok(cmd) = self.control.try_recv() {
                self.apply(cmd).await;
            }
        }
        if let Err(e) = self.consumer.finish().await {
            tracing::warn!(consumer = name, error = %e, "the last batch did not complete; it is handled again at the next start");
        }
        self.set_info(RunState::Stopped, None);
        tracing::info!(consumer = name, "consumer stopped");
    }

    /// The learning pass of a consumer with effects: hands it, in batches, the records from
    /// where it would start up to the end of the log as it is now, so that its ledger knows
    /// what was done before (by another replica, or by this process before it stopped)
    /// although it is kept in local state. Moves no cursor; transient errors are retried with
    /// the usual backoff; returns early on shutdown.
    async fn learning_pass(&mut self) {
        let name = self.consumer.name();
        let log = self.ctx.log.clone();
        let end = log.watch_last_seq().borrow().0;
        let started = std::time::Instant::now();
        let (mut after, mut scanned) = (None, 0u64);
        while !*self.shutdown.borrow() {
            let next: Result<Option<(Seq, usize)>, StepError> = async {
                let from = match after {
                    Some(seq) => seq,
                    None => match self.consumer.committed_cursor().await? {
                        Some(seq) => seq,
                        None => log.cursor(name)?,
                    },
                };
                if from.0 >= end {
                    return Ok(None);
                }
                let want = (end - from.0).min(self.ctx.config.batch_size as u64) as usize;
                let batch = match self.ctx.registry.batches.read(&log, from, want) {
                    Ok(batch) => batch,
                    // Learn from the records before it; the record itself shows no effect
                    // (the first batch dead-letters it).
                    Err(LogError::Corrupt { seq, .. }) if seq.0 > from.0 + 1 => {
                        Arc::new(Batch::new(log.read(from, (seq.0 - from.0 - 1) as usize)?))
                    }
                    Err(LogError::Corrupt { seq, .. }) => return Ok(Some((seq, 1))),
                    Err(e) => return Err(e.into()),
                };
                let batch = if batch.events().iter().any(|e| e.seq.0 > end) {
                    let events = batch.events().iter().filter(|e| e.seq.0 <= end);
                    Arc::new(Batch::new(events.cloned().collect()))
                } else {
                    batch
                };
                let Some(last) = batch.events().last().map(|e| e.seq) else {
                    return Ok(None);
                };
                self.consumer.learn_effects(&batch).await?;
                Ok(Some((last, batch.events().len())))
            }
            .await;
            match next {
                Ok(Some((last, records))) => {
                    after = Some(last);
                    scanned += records as u64;
                    self.failures = 0;
                }
                Ok(None) => {
                    if scanned > 0 {
                        tracing::info!(
                            consumer = name,
                            records = scanned,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "learned from the log the effects already performed"
                        );
                    }
                    self.set_info(RunState::Running, Some(None));
                    return;
                }
                Err(e) => self.transient_failure(e.to_string()).await,
            }
        }
    }

    /// Sets the cursor and lag gauges: `lag` is what lies between the cursor and `last`.
    fn report_position(&self, cursor: u64, last: u64) {
        let name = self.consumer.name();
        let metrics = &self.ctx.metrics;
        metrics
            .consumer_cursor
            .with_label_values(&[name])
            .set(cursor as i64);
        metrics
            .consumer_lag
            .with_label_values(&[name])
            .set(last.saturating_sub(cursor) as i64);
    }

    /// Handles one batch if there is one.
    async fn step(&mut self) -> Result<Step, StepError> {
        let name = self.consumer.name();
        let log = self.ctx.log.clone();
        let mut cursor = log.cursor(name)?;
        // The writer publishes the last durable sequence; no need to ask the engine.
        let last = log.watch_last_seq().borrow().0;
        if let Some(committed) = self.consumer.committed_cursor().await? {
            if committed != cursor {
                if committed.0 > last {
                    return Err(StepError(format!(
                        "the cursor {name} committed with its effects ({committed}) is past the end of the log ({last}): \
                         they were made from another log; rewind {name} to re-project this one"
                    )));
                }
                tracing::info!(
                    consumer = name,
                    log_cursor = cursor.0,
                    committed = committed.0,
                    "continuing from the cursor committed with the consumer's effects"
                );
                log.store_cursor(name, committed)?;
                cursor = committed;
            }
        }
        let mut limit = last;
        for up in self.consumer.upstreams() {
            limit = limit.min(log.cursor(up)?.0);
        }
        self.report_position(cursor.0, last);
        if cursor.0 >= limit {
            return Ok(Step::Wait);
        }
        let want = (limit - cursor.0).min(self.ctx.config.batch_size as u64) as usize;
        let batch = match self.ctx.registry.batches.read(&log, cursor, want) {
            Ok(b) => b,
            Err(LogError::Corrupt { seq, source }) => {
                // Never skipped silently: the undecodable record is dead-lettered and alerted.
                self.dead_letter(seq, format!("the record cannot be decoded: {source}"))?;
                self.consumer.move_committed_cursor(seq).await?;
                log.store_cursor(name, seq)?;
                return Ok(Step::Continue);
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = batch.events().last().map(|e| e.seq) else {
            return Ok(Step::Wait);
        };
        match self.consumer.handle_batch(&batch).await {
            Ok(()) => {
                log.store_cursor(name, last)?;
                self.ctx
                    .metrics
                    .consumer_processed
                    .with_label_values(&[name])
                    .inc_by(batch.events().len() as u64);
                if self.failures > 0 {
                    tracing::info!(
                        consumer = name,
                        "recovered after {} failed attempts",
                        self.failures
                    );
                }
                self.failures = 0;
                self.set_info(RunState::Running, Some(None));
            }
            Err(BatchError::Transient(e)) => self.transient_failure(e).await,
            Err(BatchError::Poison { seq, error }) => {
                let done = batch.events().iter().filter(|e| e.seq < seq).count() as u64;
                self.ctx
                    .metrics
                    .consumer_processed
                    .with_label_values(&[name])
                    .inc_by(done);
                self.dead_letter(seq, error)?;
                log.store_cursor(name, seq)?;
            }
        }
        self.ctx.registry.wake.notify_waiters();
        Ok(Step::Continue)
    }

    fn dead_letter(&mut self, seq: Seq, error: String) -> Result<(), StateError> {
        let name = self.consumer.name();
        let tree = self.ctx.store.tree(name, DEAD_LETTERS)?;
        let attempts = match tree.get(&seq.to_key())? {
            Some(v) => decode_dead_letter(&v)?.attempts + 1,
            None => 1,
        };
        let dl = DeadLetter {
            consumer: name.to_owned(),
            seq: seq.0,
            error: error.clone(),
            at: Micros::now().to_rfc3339(),
            attempts,
        };
        let json = state::to_json(&dl)?;
        tree.insert(&seq.to_key(), &json)?;
        self.ctx
            .metrics
            .consumer_errors
            .with_label_values(&[name, "poison"])
            .inc();
        self.ctx
            .metrics
            .consumer_dead_letters
            .with_label_values(&[name])
            .set(tree.len()? as i64);
        self.set_info(
            RunState::Running,
            Some(Some(format!("record {seq} dead-lettered: {error}"))),
        );
        tracing::error!(consumer = name, seq = seq.0, %error, "record dead-lettered");
        self.ctx.alerter.raise(Alert {
            key: format!("dead_letter:{name}"),
            severity: Severity::Warning,
            title: format!("{name}: record {seq} dead-lettered"),
            reason: error,
            next_step: format!(
                "inspect with `hooklog-replay show {seq}` and `hooklog-replay dead-letters`; after a fix, `hooklog-replay redrive {name}`"
            ),
        });
        Ok(())
    }

    async fn transient_failure(&mut self, error: String) {
        let name = self.consumer.name();
        self.failures += 1;
        self.ctx
            .metrics
            .consumer_errors
            .with_label_values(&[name, "transient"])
            .inc();
        self.set_info(RunState::Retrying, Some(Some(error.clone())));
        tracing::warn!(consumer = name, attempt = self.failures, %error, "batch failed; backing off");
        if self.failures == self.ctx.config.alert_after_failures {
            self.ctx.alerter.raise(Alert {
                key: format!("consumer_failing:{name}"),
                severity: Severity::Critical,
                title: format!("{name} keeps failing"),
                reason: format!("{} consecutive failures; last: {error}", self.failures),
                next_step: format!("check `hooklog-replay status` and the daemon log for {name}"),
            });
        }
        let delay = backoff(
            self.ctx.config.backoff_base,
            self.ctx.config.backoff_max,
            self.failures - 1,
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.changed() => {}
        }
    }

    async fn apply(&mut self, cmd: Control) {
        match cmd {
            Control::Pause => {
                self.paused = true;
                self.set_info(RunState::Paused, None);
            }
            Control::Resume => {
                self.paused = false;
                self.set_info(RunState::Running, None);
            }
            Control::Rewind {
                to,
                dry_run,
                redeliver,
                reply,
            } => {
                let registry = self.ctx.registry.clone();
                let _retention = registry.retention.lock().await;
                let name = self.consumer.name();
                let pruned_before = self
                    .ctx
                    .log
                    .stats()
                    .map(|s| s.first_seq)
                    .unwrap_or_default();
                let r = if redeliver && !self.consumer.has_effects() {
                    Err(ControlError::Refused(format!(
                        "{name} has no irreversible effects to redeliver; rewind it without --redeliver"
                    )))
                } else if self.consumer.rewind_mode() == RewindMode::Rebuild && pruned_before > 1 {
                    // A rebuild clears the state and recomputes it from the first record; once
                    // retention has deleted records, what they contributed (an opt-out, a dedup
                    // claim) would be lost, not recomputed.
                    Err(ControlError::Refused(format!(
                        "{name} rebuilds its state from the first record, and retention has deleted                          every record before {pruned_before}: a rebuild would lose what they                          contributed (opt-outs, dedup claims), so it is refused"
                    )))
                } else {
                    self.rewind(to, dry_run, redeliver)
                        .await
                        .map_err(|e| ControlError::Failed(e.to_string()))
                };
                let _ = reply.send(r);
            }
            Control::Redrive { seq, reply } => {
                let r = self.redrive(seq).await.map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
        }
    }

    async fn rewind(
        &mut self,
        to: Seq,
        dry_run: bool,
        redeliver: bool,
    ) -> Result<RewindReport, StepError> {
        let name = self.consumer.name();
        let log = self.ctx.log.clone();
        let from = log.cursor(name)?;
        let stats = log.stats()?;
        let rebuild = self.consumer.rewind_mode() == RewindMode::Rebuild;
        let target = if rebuild {
            Seq(stats.first_seq.saturating_sub(1))
        } else {
            to.min(from)
        };
        let report = RewindReport {
            consumer: name.to_owned(),
            from_cursor: from.0,
            to_cursor: target.0,
            replay: stats.last_seq.saturating_sub(target.0),
            rebuild,
            redeliver,
            dry_run,
        };
        if !dry_run {
            if redeliver {
                self.consumer
                    .redeliver(target, from)
                    .map_err(|e| StepError(e.to_string()))?;
            }
            if rebuild {
                self.consumer
                    .reset()
                    .map_err(|e| StepError(e.to_string()))?;
            }
            self.consumer.move_committed_cursor(target).await?;
            log.store_cursor(name, target)?;
            tracing::info!(
                consumer = name,
                from = from.0,
                to = target.0,
                rebuild,
                redeliver,
                "rewound"
            );
            self.ctx.registry.wake.notify_waiters();
        }
        Ok(report)
    }

    async fn redrive(&mut self, only: Option<Seq>) -> Result<RedriveReport, StepError> {
        let name = self.consumer.name();
        let tree = self.ctx.store.tree(name, DEAD_LETTERS)?;
        let letters = dead_letters(self.ctx.store.as_ref(), name)?;
        let mut report = RedriveReport {
            consumer: name.to_owned(),
            ..RedriveReport::default()
        };
        for dl in letters
            .into_iter()
            .filter(|d| only.is_none_or(|s| s.0 == d.seq))
        {
            let seq = Seq(dl.seq);
            let outcome = match self.ctx.log.get(seq) {
                Ok(Some(event)) => self.consumer.handle(std::slice::from_ref(&event)).await,
                Ok(None) => Err(BatchError::Poison {
                    seq,
                    error: "the record is no longer in the log".into(),
                }),
                Err(e) => Err(BatchError::Poison {
                    seq,
                    error: e.to_string(),
                }),
            };
            match outcome {
                Ok(()) => {
                    tree.remove(&seq.to_key())?;
                    report.succeeded.push(seq.0);
                }
                Err(BatchError::Poison { error, .. }) | Err(BatchError::Transient(error)) => {
                    self.dead_letter(seq, error)?;
                    report.failed.push(seq.0);
                }
            }
        }
        self.ctx
            .metrics
            .consumer_dead_letters
            .with_label_values(&[name])
            .set(tree.len()? as i64);
        Ok(report)
    }
}

/// A failure of the driver's own bookkeeping (log or state access): retried like a
/// transient batch failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StepError(String);

impl From<LogError> for StepError {
    fn from(e: LogError) -> Self {
        StepError(e.to_string())
    }
}

impl From<StateError> for StepError {
    fn from(e: StateError) -> Self {
        StepError(e.to_string())
    }
}

impl From<BatchError> for StepError {
    fn from(e: BatchError) -> Self {
        StepError(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Source, Verification, Verified};
    use crate::log::sled::{SledLog, SledOptions};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// Records what it saw; poisons bodies saying "poison" until healed; fails transiently
    /// `flaky` times first.
    struct Probe {
        name: &'static str,
        ups: &'static [&'static str],
        seen: Arc<Mutex<Vec<u64>>>,
        healed: Arc<AtomicBool>,
        flaky: Arc<AtomicU32>,
    }

    impl Consumer for Probe {
        fn name(&self) -> &'static str {
            self.name
        }
        fn upstreams(&self) -> &'static [&'static str] {
            self.ups
        }
        fn reset(&mut self) -> Result<(), BatchError> {
            self.seen.lock().unwrap().clear();
            Ok(())
        }
        async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
            let batch = batch.events();
            if self.flaky.load(Ordering::SeqCst) > 0 {
                self.flaky.fetch_sub(1, Ordering::SeqCst);
                return Err(BatchError::Transient("the database blinked".into()));
            }
            for e in batch {
                if e.body == b"poison" && !self.healed.load(Ordering::SeqCst) {
                    return Err(BatchError::Poison {
                        seq: e.seq,
                        error: "cannot read it".into(),
                    });
                }
                self.seen.lock().unwrap().push(e.seq.0);
            }
            Ok(())
        }
    }

    #[allow(clippy::type_complexity)]
    fn probe(
        name: &'static str,
        ups: &'static [&'static str],
    ) -> (Probe, Arc<Mutex<Vec<u64>>>, Arc<AtomicBool>, Arc<AtomicU32>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let healed = Arc::new(AtomicBool::new(false));
        let flaky = Arc::new(AtomicU32::new(0));
        (
            Probe {
                name,
                ups,
                seen: seen.clone(),
                healed: healed.clone(),
                flaky: flaky.clone(),
            },
            seen,
            healed,
            flaky,
        )
    }

    fn setup(dir: &std::path::Path) -> (Arc<dyn Log>, DriverContext) {
        let log: Arc<dyn Log> =
            Arc::new(SledLog::open(dir, &SledOptions::default(), Metrics::new()).unwrap());
        let ctx = super::testutil::fast_context(&log, 2);
        (log, ctx)
    }

    async fn append(log: &Arc<dyn Log>, body: &str) {
        let v = Verified::new(
            Micros::now(),
            Source::Internal,
            "/t".into(),
            vec![],
            body.as_bytes().to_vec(),
            Verification::Internal,
        );
        log.append(v).await.unwrap();
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
    async fn a_poison_record_is_dead_lettered_the_consumer_keeps_going_and_redrive_reruns_it() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path());
        for body in ["a", "b", "poison", "d", "e"] {
            append(&log, body).await;
        }
        let (p, seen, healed, _) = probe("probe", &[]);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
        until(|| log.cursor("probe").unwrap() == Seq(5)).await;
        assert_eq!(*seen.lock().unwrap(), vec![1, 2, 4, 5]);
        let dls = dead_letters(ctx.store.as_ref(), "probe").unwrap();
        assert_eq!((dls.len(), dls[0].seq, dls[0].attempts), (1, 3, 1));
        assert_eq!(
            ctx.metrics
                .consumer_dead_letters
                .with_label_values(&["probe"])
                .get(),
            1
        );

        let still = ctx.registry.redrive("probe", None).await.unwrap();
        assert_eq!(still.failed, vec![3]);
        assert_eq!(
            dead_letters(ctx.store.as_ref(), "probe").unwrap()[0].attempts,
            2
        );

        healed.store(true, Ordering::SeqCst);
        let fixed = ctx.registry.redrive("probe", None).await.unwrap();
        assert_eq!(fixed.succeeded, vec![3]);
        assert!(dead_letters(ctx.store.as_ref(), "probe")
            .unwrap()
            .is_empty());
        assert!(seen.lock().unwrap().contains(&3));
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_with_backoff_and_the_cursor_waits() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path());
        append(&log, "a").await;
        let (p, seen, _, flaky) = probe("probe", &[]);
        flaky.store(3, Ordering::SeqCst);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
        until(|| log.cursor("probe").unwrap() == Seq(1)).await;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![1],
            "processed once, after the failures"
        );
        assert_eq!(
            ctx.metrics
                .consumer_errors
                .with_label_values(&["probe", "transient"])
                .get(),
            3
        );
        assert_eq!(
            ctx.registry.infos()[0].last_error,
            None,
            "cleared by the success"
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    /// The alerts raised so far under `key`.
    fn alerts_keyed(ctx: &DriverContext, key: &str) -> Vec<Alert> {
        ctx.alerter
            .raised()
            .into_iter()
            .filter(|a| a.key == key)
            .collect()
    }

    #[tokio::test]
    async fn failures_in_a_row_raise_one_critical_alert_at_the_threshold_with_the_last_error() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path()); // alert_after_failures: 2
        let (p, _, _, flaky) = probe("probe", &[]);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));

        // One failure, below the threshold, then a success: no alert.
        flaky.store(1, Ordering::SeqCst);
        append(&log, "a").await;
        until(|| log.cursor("probe").unwrap() == Seq(1)).await;
        assert_eq!(alerts_keyed(&ctx, "consumer_failing:probe"), vec![]);

        // Five in a row: one alert when the second fails, none for the three after it.
        flaky.store(5, Ordering::SeqCst);
        append(&log, "b").await;
        until(|| log.cursor("probe").unwrap() == Seq(2)).await;
        let alerts = alerts_keyed(&ctx, "consumer_failing:probe");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.title, "probe keeps failing");
        assert_eq!(
            a.reason,
            "2 consecutive failures; last: the database blinked"
        );
        assert!(a.next_step.contains("hooklog-replay status"), "{a:?}");
        assert_eq!(ctx.alerter.raised().len(), 1, "no other alert");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn each_dead_letter_raises_a_warning_under_the_consumers_key_naming_the_record_and_error()
    {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path());
        for body in ["a", "poison", "c", "poison", "e"] {
            append(&log, body).await;
        }
        let (p, _, _, _) = probe("probe", &[]);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
        until(|| log.cursor("probe").unwrap() == Seq(5)).await;
        // One alert per dead letter, under one key, so the alerter's gate coalesces a burst
        // into one Discord message with a count.
        let alerts = ctx.alerter.raised();
        let keys: Vec<&str> = alerts.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["dead_letter:probe", "dead_letter:probe"]);
        for (a, seq) in alerts.iter().zip([2, 4]) {
            assert_eq!(a.severity, Severity::Warning);
            assert_eq!(a.title, format!("probe: record {seq} dead-lettered"));
            assert_eq!(a.reason, "cannot read it");
            assert!(
                a.next_step.contains(&format!("hooklog-replay show {seq}"))
                    && a.next_step.contains("hooklog-replay redrive probe"),
                "{a:?}"
            );
        }
        // A redrive that fails again dead-letters (and alerts) each record once more.
        let report = ctx.registry.redrive("probe", Some(Seq(4))).await.unwrap();
        assert_eq!(report.failed, vec![4]);
        assert_eq!(alerts_keyed(&ctx, "dead_letter:probe").len(), 3);
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_consumer_never_passes_its_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path());
        let (up, _, _, _) = probe("up", &[]);
        let (down, down_seen, _, _) = probe("down", &["up"]);
        let (stop, rx) = watch::channel(false);
        let t1 = tokio::spawn(spawn_driver(up, ctx.clone(), rx.clone()));
        let t2 = tokio::spawn(spawn_driver(down, ctx.clone(), rx));
        for body in ["a", "b", "c"] {
            append(&log, body).await;
        }
        until(|| log.cursor("down").unwrap() == Seq(3)).await;
        ctx.registry.set_paused("up", true).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for body in ["d", "e", "f"] {
            append(&log, body).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(log.cursor("up").unwrap(), Seq(3), "paused");
        assert_eq!(
            log.cursor("down").unwrap(),
            Seq(3),
            "held back by its upstream"
        );
        ctx.registry.set_paused("up", false).await.unwrap();
        until(|| log.cursor("down").unwrap() == Seq(6)).await;
        assert_eq!(*down_seen.lock().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        stop.send(true).unwrap();
        t1.await.unwrap();
        t2.await.unwrap();
    }

    #[tokio::test]
    async fn a_rewind_rebuilds_from_the_first_record_and_a_dry_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path());
        for body in ["a", "b", "c", "d"] {
            append(&log, body).await;
        }
        let (p, seen, _, _) = probe("probe", &[]);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
        until(|| log.cursor("probe").unwrap() == Seq(4)).await;
        let dry = ctx
            .registry
            .rewind("probe", Seq(2), true, false)
            .await
            .unwrap();
        assert_eq!(
            (
                dry.from_cursor,
                dry.to_cursor,
                dry.replay,
                dry.rebuild,
                dry.dry_run
            ),
            (4, 0, 4, true, true)
        );
        assert_eq!(log.cursor("probe").unwrap(), Seq(4));
        ctx.registry
            .rewind("probe", Seq(2), false, false)
            .await
            .unwrap();
        until(|| seen.lock().unwrap().len() == 4 && log.cursor("probe").unwrap() == Seq(4)).await;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![1, 2, 3, 4],
            "state was reset, then rebuilt"
        );
        let err = ctx
            .registry
            .rewind("nope", Seq(0), true, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("probe"), "{err}");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn after_pruning_a_rebuild_is_refused_and_state_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path());
        for body in ["a", "b", "c", "d"] {
            append(&log, body).await;
        }
        let (p, seen, _, _) = probe("probe", &[]);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
        until(|| log.cursor("probe").unwrap() == Seq(4)).await;
        assert_eq!(log.prune_before(Seq(3)).unwrap().first_seq, 3);
        let err = ctx
            .registry
            .rewind("probe", Seq(0), false, false)
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::Refused(_)), "{err}");
        assert!(err.to_string().contains("before 3"), "{err}");
        assert_eq!(log.cursor("probe").unwrap(), Seq(4), "nothing moved");
        assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3, 4], "state kept");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    /// Has effects: records redelivery windows and counts idle ticks.
    struct Effectful {
        windows: Arc<Mutex<Vec<(u64, u64)>>>,
        ticks: Arc<AtomicU32>,
    }

    impl Consumer for Effectful {
        fn name(&self) -> &'static str {
            "effectful"
        }
        fn rewind_mode(&self) -> RewindMode {
            RewindMode::Replay
        }
        fn reset(&mut self) -> Result<(), BatchError> {
            Ok(())
        }
        fn has_effects(&self) -> bool {
            true
        }
        fn redeliver(&mut self, after: Seq, through: Seq) -> Result<(), BatchError> {
            self.windows.lock().unwrap().push((after.0, through.0));
            Ok(())
        }
        async fn tick(&mut self) -> Result<(), BatchError> {
            self.ticks.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn handle_batch(&mut self, _: &Arc<Batch>) -> Result<(), BatchError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn redeliver_reaches_only_a_consumer_with_effects_and_an_idle_consumer_ticks() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path());
        for body in ["a", "b", "c", "d"] {
            append(&log, body).await;
        }
        let (p, _seen, _, _) = probe("probe", &[]);
        let windows = Arc::new(Mutex::new(Vec::new()));
        let ticks = Arc::new(AtomicU32::new(0));
        let e = Effectful {
            windows: windows.clone(),
            ticks: ticks.clone(),
        };
        let (stop, rx) = watch::channel(false);
        let t1 = tokio::spawn(spawn_driver(p, ctx.clone(), rx.clone()));
        let t2 = tokio::spawn(spawn_driver(e, ctx.clone(), rx));
        until(|| {
            log.cursor("effectful").unwrap() == Seq(4) && log.cursor("probe").unwrap() == Seq(4)
        })
        .await;
        until(|| ticks.load(Ordering::SeqCst) >= 2).await;

        let err = ctx
            .registry
            .rewind("probe", Seq(0), false, true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no irreversible effects"), "{err}");
        assert_eq!(
            log.cursor("probe").unwrap(),
            Seq(4),
            "a refused rewind moves nothing"
        );

        let dry = ctx
            .registry
            .rewind("effectful", Seq(1), true, true)
            .await
            .unwrap();
        assert!(dry.redeliver && dry.dry_run);
        assert!(
            windows.lock().unwrap().is_empty(),
            "a dry run redelivers nothing"
        );
        let report = ctx
            .registry
            .rewind("effectful", Seq(1), false, true)
            .await
            .unwrap();
        assert!(report.redeliver);
        assert_eq!(*windows.lock().unwrap(), vec![(1, 4)]);
        stop.send(true).unwrap();
        t1.await.unwrap();
        t2.await.unwrap();
    }

    /// Journals what the driver hands it (`learn:<seq>`, `handle:<seq>`) and the cursor at
    /// each learning batch. With `late`, its first learning call appends a record (one past
    /// the end at start); it fails its first `flaky` learning calls; with `stop`, a learning
    /// call requests the shutdown.
    struct Learner {
        name: &'static str,
        effects: bool,
        log: Arc<dyn Log>,
        journal: Arc<Mutex<Vec<String>>>,
        cursors: Arc<Mutex<Vec<u64>>>,
        late: bool,
        flaky: u32,
        stop: Option<watch::Sender<bool>>,
    }

    impl Learner {
        fn new(name: &'static str, effects: bool, log: &Arc<dyn Log>) -> Learner {
            Learner {
                name,
                effects,
                log: log.clone(),
                journal: Arc::new(Mutex::new(Vec::new())),
                cursors: Arc::new(Mutex::new(Vec::new())),
                late: false,
                flaky: 0,
                stop: None,
            }
        }
    }

    impl Consumer for Learner {
        fn name(&self) -> &'static str {
            self.name
        }
        fn rewind_mode(&self) -> RewindMode {
            RewindMode::Replay
        }
        fn reset(&mut self) -> Result<(), BatchError> {
            Ok(())
        }
        fn has_effects(&self) -> bool {
            self.effects
        }
        async fn learn_effects(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
            let cursor = self.log.cursor(self.name).unwrap();
            self.cursors.lock().unwrap().push(cursor.0);
            if std::mem::take(&mut self.late) {
                append(&self.log, "late").await;
            }
            if let Some(stop) = &self.stop {
                stop.send(true).unwrap();
            }
            if self.flaky > 0 {
                self.flaky -= 1;
                return Err(BatchError::Transient("the ledger is locked".into()));
            }
            for e in batch.events() {
                self.journal
                    .lock()
                    .unwrap()
                    .push(format!("learn:{}", e.seq));
            }
            Ok(())
        }
        async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
            for e in batch.events() {
                self.journal
                    .lock()
                    .unwrap()
                    .push(format!("handle:{}", e.seq));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_consumer_with_effects_learns_from_the_records_after_its_cursor_up_to_the_end_at_start_before_handling_any(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path()); // batch_size: 2
        for body in ["a", "b", "c", "d", "e"] {
            append(&log, body).await;
        }
        log.store_cursor("learner", Seq(2)).unwrap();
        let mut learner = Learner::new("learner", true, &log);
        learner.late = true; // record 6 arrives during the pass: it is not learned
        learner.flaky = 1;
        let (journal, cursors) = (learner.journal.clone(), learner.cursors.clone());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(spawn_driver(learner, ctx.clone(), rx));
        until(|| log.cursor("learner").unwrap() == Seq(6)).await;
        assert_eq!(
            *journal.lock().unwrap(),
            ["learn:3", "learn:4", "learn:5", "handle:3", "handle:4", "handle:5", "handle:6"]
        );
        assert_eq!(
            *cursors.lock().unwrap(),
            [2, 2, 2],
            "the failed first call, its retry and the last batch: the cursor never moved"
        );
        assert_eq!(
            ctx.metrics
                .consumer_errors
                .with_label_values(&["learner", "transient"])
                .get(),
            1,
            "a failed learning batch is retried like a transient failure"
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_consumer_without_effects_is_never_handed_the_learning_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path());
        for body in ["a", "b", "c"] {
            append(&log, body).await;
        }
        let plain = Learner::new("plain", false, &log);
        let journal = plain.journal.clone();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(spawn_driver(plain, ctx.clone(), rx));
        until(|| log.cursor("plain").unwrap() == Seq(3)).await;
        assert_eq!(
            *journal.lock().unwrap(),
            ["handle:1", "handle:2", "handle:3"]
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_shutdown_during_the_learning_pass_ends_it_and_no_batch_is_handled() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path()); // batch_size: 2
        for body in ["a", "b", "c", "d", "e"] {
            append(&log, body).await;
        }
        let (stop, rx) = watch::channel(false);
        let mut learner = Learner::new("learner", true, &log);
        learner.stop = Some(stop);
        let journal = learner.journal.clone();
        tokio::time::timeout(
            Duration::from_secs(5),
            spawn_driver(learner, ctx.clone(), rx),
        )
        .await
        .expect("the driver stops");
        assert_eq!(*journal.lock().unwrap(), ["learn:1", "learn:2"]);
        assert_eq!(log.cursor("learner").unwrap(), Seq(0));
    }

    /// Keeps its own committed cursor, as the Postgres sink does.
    struct Committing {
        committed: Arc<Mutex<u64>>,
        seen: Arc<Mutex<Vec<u64>>>,
        refuse_moves: Arc<AtomicBool>,
    }

    impl Consumer for Committing {
        fn name(&self) -> &'static str {
            "committing"
        }
        fn rewind_mode(&self) -> RewindMode {
            RewindMode::Replay
        }
        fn reset(&mut self) -> Result<(), BatchError> {
            Ok(())
        }
        async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
            let batch = batch.events();
            for e in batch {
                self.seen.lock().unwrap().push(e.seq.0);
            }
            if let Some(last) = batch.last() {
                *self.committed.lock().unwrap() = last.seq.0;
            }
            Ok(())
        }
        async fn committed_cursor(&mut self) -> Result<Option<Seq>, BatchError> {
            Ok(Some(Seq(*self.committed.lock().unwrap())))
        }
        async fn move_committed_cursor(&mut self, to: Seq) -> Result<(), BatchError> {
            if self.refuse_moves.load(Ordering::SeqCst) {
                return Err(BatchError::Transient("the database is unreachable".into()));
            }
            *self.committed.lock().unwrap() = to.0;
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_driver_follows_a_committed_cursor_and_moves_it_first_on_a_rewind() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ctx) = setup(dir.path());
        for body in ["a", "b", "c", "d", "e", "f"] {
            append(&log, body).await;
        }
        // The consumer committed up to 4, but the log's cursor save was lost (it says 1).
        log.store_cursor("committing", Seq(1)).unwrap();
        let committed = Arc::new(Mutex::new(4));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(AtomicBool::new(false));
        let c = Committing {
            committed: committed.clone(),
            seen: seen.clone(),
            refuse_moves: refuse.clone(),
        };
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(spawn_driver(c, ctx.clone(), rx));
        until(|| log.cursor("committing").unwrap() == Seq(6)).await;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![5, 6],
            "2..4 were not handled again"
        );

        // A rewind the consumer cannot carry out is refused and moves nothing.
        refuse.store(true, Ordering::SeqCst);
        let err = ctx
            .registry
            .rewind("committing", Seq(2), false, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unreachable"), "{err}");
        assert_eq!(log.cursor("committing").unwrap(), Seq(6));
        assert_eq!(*committed.lock().unwrap(), 6);

        refuse.store(false, Ordering::SeqCst);
        let report = ctx
            .registry
            .rewind("committing", Seq(2), false, false)
            .await
            .unwrap();
        assert_eq!((report.to_cursor, report.rebuild), (2, false));
        until(|| seen.lock().unwrap().len() == 6).await;
        assert_eq!(*seen.lock().unwrap(), vec![5, 6, 3, 4, 5, 6]);
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_and_a_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(3);
        for attempt in 0..10 {
            let cap = (base * 2u32.pow(attempt)).min(max);
            for _ in 0..50 {
                assert!(backoff(base, max, attempt) <= cap);
            }
        }
        let spread: std::collections::BTreeSet<_> =
            (0..50).map(|_| backoff(base, max, 5)).collect();
        assert!(spread.len() > 10, "jittered");
    }
}
