//! Consumers: independent projections of the log, each behind one small trait, all run by one
//! shared driver.
//!
//! A consumer has a name, a durable cursor (stored with the log: the last sequence it has fully
//! processed), optional upstreams, and its own state trees ([`crate::state`]). The driver owns
//! everything around the consumer's logic: reading batches after the cursor, never passing an
//! upstream's cursor, saving the cursor **after** the effect (at-least-once), retrying transient
//! failures with exponential backoff and full jitter, dead-lettering poison records (the cursor
//! moves on, an alert fires), pauses (read from the log's projection of them, the
//! [`controls`] consumer), rewind, redrive, graceful shutdown and metrics.
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
//!
//! # Layout
//!
//! - this file: the [`Consumer`] trait and how a batch fails ([`BatchError`]);
//! - [`driver`]: the one driver loop; [`registry`]: what status shows, the operator's
//!   controls and where the pauses are read; [`dead_letters`](mod@dead_letters): the parked records; `batches`: the batches the drivers share,
//!   parsed once; [`redelivery`]: the windows of `rewind --redeliver`; [`retention`]: which
//!   records may be deleted, given every cursor and dead letter;
//! - one folder per consumer, its logic and its driver shell together, with the read model
//!   other consumers use in a file of its own: [`dedup`] ([`dedup::verdicts`]), [`compliance`]
//!   ([`compliance::suppression`], [`compliance::classifier`]), [`outbound`]
//!   ([`outbound::store`], [`outbound::records`]), [`postgres`], [`dispatch`], [`sender`],
//!   [`staleness`], [`controls`] ([`controls::stops`]: the kill switch and the pauses);
//! - `conformance` (tests): the properties every consumer passes.

mod batches;
pub mod compliance;
#[cfg(test)]
mod conformance;
pub mod controls;
pub mod dead_letters;
pub mod dedup;
pub mod dispatch;
pub mod driver;
pub mod outbound;
pub mod postgres;
pub mod redelivery;
pub mod registry;
pub mod retention;
pub mod sender;
pub mod staleness;
#[cfg(test)]
mod testutil;

use std::future::Future;
use std::sync::Arc;

use crate::event::{Event, Seq};
use crate::state::StateError;

pub use batches::{Batch, Record};
pub use dead_letters::{dead_letters, DeadLetter, DEAD_LETTERS};
pub use registry::{
    ConsumerInfo, ControlError, Redeliver, RedeliveryPlan, RedriveReport, Registry, RewindReport,
    RunState,
};

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
    /// The record was written by someone who may not write its kind
    /// ([`crate::provenance`]: a decision not written by hooklog, an opt-out edit from an
    /// agent's token): it is never acted on. Handled like [`BatchError::Poison`] (every
    /// record before it applied, this one dead-lettered), with a critical alert of its own
    /// naming the record.
    #[error(transparent)]
    Forged(#[from] crate::provenance::Forged),
}

impl BatchError {
    /// The record that is dead-lettered: `None` for a transient failure.
    pub fn record(&self) -> Option<Seq> {
        match self {
            BatchError::Transient(_) => None,
            BatchError::Poison { seq, .. } => Some(*seq),
            BatchError::Forged(f) => Some(Seq(f.seq)),
        }
    }
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

    /// What [`Self::redeliver`] with the same range would perform again, counted from the
    /// effects ledger by the same rules that handling the range inside a new window follows,
    /// reading the range from the log a batch at a time
    /// ([`redelivery::scan`]); changes nothing. The driver opens the window only when the
    /// operator confirmed and the count is within the limit. Only called when
    /// [`Self::has_effects`] is true; the default counts nothing.
    fn plan_redelivery(&mut self, after: Seq, through: Seq) -> Result<RedeliveryPlan, BatchError> {
        let _ = (after, through);
        Ok(RedeliveryPlan::new("effects"))
    }

    /// The most effects one redelivery may perform unless the operator raises the limit for
    /// that call, and the configuration key that sets it (`[sender] max_redeliver`).
    fn max_redeliver(&self) -> (u64, &'static str) {
        (0, "no redelivery limit set for this consumer")
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

#[cfg(test)]
mod tests;
