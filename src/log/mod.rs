//! The durable event log: the [`Log`] trait and its engines.
//!
//! The log is the source of truth (guarantee 3): one record per accepted request, appended
//! in sequence order, never rewritten. Everything else (dedup verdicts, projections,
//! dispatch) is derived from it through per-consumer cursors.
//!
//! # What every engine guarantees, and who relies on it
//!
//! - **Ack after durable.** [`Log::append`] resolves `Ok(seq)` only after the record is
//!   stored for good (sled: written and flushed; JetStream: acknowledged by the stream); the
//!   edge answers 2xx only then (guarantee 1). A failed write resolves every waiter of its
//!   batch with an error, so the edge answers 503 and the provider retries.
//! - **State written before an append is durable once the append is acknowledged.** Consumer
//!   state ([`Log::state`]) written before an append was made survives any crash after that
//!   append resolved (sled: one database, one flush; JetStream: a flush of the local state
//!   started after the append, awaited beside it). The sender's at-most-once rests on this: its
//!   ledger entry `attempting(n)` is written before the attempt record is appended, and the
//!   provider is called only after that append resolved, so no call can happen that a restart
//!   would not know of.
//! - **One writer assigns sequences.** Sequences start at 1, are contiguous, are assigned in
//!   the order records become durable, and are never reused, not even after retention
//!   deleted everything but the last record (the engine keeps it, so a reopen continues the
//!   sequence).
//! - **Readers see only what is durable.** [`Log::read`], [`Log::get`], [`Log::stats`] and
//!   [`Log::watch_last_seq`] never show a record that a crash or a failed write could take
//!   back: a consumer never acts on a record whose sequence could later name another one.
//! - **Records are immutable and read in order.** [`Log::read`] returns records after a
//!   sequence in sequence order, with no gap but the front that retention deleted; a record
//!   reads the same every time. So a consumer replaying a range sees what it saw the first
//!   time, which is what makes projections reproducible.
//! - **Nothing is skipped silently.** A record the engine cannot decode (an unknown format
//!   byte, a corrupt value) is reported as [`LogError::Corrupt`] with its sequence; the
//!   consumer driver parks it in the consumer's dead letters and moves on.
//! - **Cursors and consumer state live together.** [`Log::cursor`]/[`Log::store_cursor`] keep
//!   each consumer's last fully processed sequence (`0`: nothing yet) in the same store as
//!   [`Log::state`], so a cursor never describes state that is not there. A cursor is durable
//!   at the next flush; one lost in a crash only means reprocessing (consumers are
//!   at-least-once). The driver never moves a cursor past the end of the log.
//! - **Retention deletes from the front only.** [`Log::prune_before`] removes records below a
//!   bound the caller chose below every cursor and dead letter ([`crate::consumers::retention`]);
//!   [`LogStats::first_seq`] then names the first record still stored.
//! - **One process runs the consumers.** [`Log::leadership`] says whether this process may run
//!   them; with several replicas on one JetStream stream only the holder of the consumers'
//!   lease does, and the records its consumers write are fenced (see [`jetstream`]).
//! - **Close drains.** [`Log::close`] stops accepting appends and resolves every queued one
//!   before it returns.
//!
//! Engines: [`sled::SledLog`] (embedded, the default) and [`jetstream::JetStreamLog`] (a NATS
//! JetStream stream). The trait is object-safe, so either sits behind `Arc<dyn Log>` and no
//! consumer knows which one runs. [`config`] holds `[log]`; [`size`] the size gauges.

pub mod config;
pub mod jetstream;
pub mod size;
pub mod sled;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::event::{DecodeError, Event, Seq, Verified};

pub use config::{JetStreamConfig, LogBackend, LogConfig};

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The storage engine reported an error (I/O, disk full, corruption found by sled).
    #[error("storage error: {0}")]
    Storage(String),
    /// A stored record could not be decoded. The log refuses to skip it silently.
    #[error("record {seq} cannot be decoded: {source}")]
    Corrupt {
        /// The sequence of the bad record.
        seq: Seq,
        /// What was wrong with it.
        source: DecodeError,
    },
    /// The writer has stopped (shutdown in progress, or it died); nothing more is accepted.
    #[error("the log writer has stopped")]
    WriterStopped,
    /// The data directory was written by an incompatible build, or is not a hooklog log.
    #[error("incompatible data directory: {0}")]
    Incompatible(String),
    /// The data directory is locked by another process (a running daemon).
    #[error("the data directory is in use by another process (is the daemon running?): {0}")]
    Locked(String),
    /// The log's server cannot be reached, or cannot serve the stream yet (JetStream: no
    /// NATS seed answers, the stream lookup or creation timed out, or a cluster that is still
    /// starting refused it). Transient: the daemon retries at start ([`LogError::is_transient`]).
    #[error("the log's server is unavailable: {0}")]
    Unavailable(String),
    /// The configuration cannot work (a `nats_url` that is not a list of NATS URLs, a
    /// credentials file that cannot be read, credentials or TLS the server refuses): fix it;
    /// retrying would not help.
    #[error("{0}")]
    Config(String),
    /// A cursor name that cannot be stored (empty, or too long).
    #[error("invalid consumer name `{0}`")]
    InvalidCursorName(String),
    /// The file system of the data directory has less free space than the configured
    /// reserve (`log.min_free_mb`): nothing is written until space returns.
    #[error("disk full: {free_bytes} bytes free, below the reserve of {reserve_bytes} bytes (log.min_free_mb)")]
    DiskFull {
        /// Free bytes when the append was refused.
        free_bytes: u64,
        /// The configured reserve.
        reserve_bytes: u64,
    },
    /// An earlier write failed and the engine refuses every write since; only reopening the
    /// log (restarting the daemon) recovers.
    #[error("the log failed and needs a restart: {0}")]
    Failed(String),
    /// A record only the consumers' leader may write (one with [`Verification::Internal`]:
    /// a decision, a send attempt, a dispatch result) was refused because this replica does
    /// not hold the consumers' lease, or lost it ([`jetstream::lease`]).
    ///
    /// [`Verification::Internal`]: crate::event::Verification::Internal
    #[error("not the consumers' leader: {0}")]
    NotLeader(String),
}

impl LogError {
    /// Whether opening the log may succeed later without a change of configuration: a busy
    /// data directory ([`LogError::Locked`]: another process holds it, e.g. the previous
    /// daemon still stopping) or a server that is not there yet ([`LogError::Unavailable`]).
    /// The daemon retries these at start with backoff; every other error stops it (a wrong
    /// stream, a configuration error, an I/O error of the data directory).
    pub fn is_transient(&self) -> bool {
        matches!(self, LogError::Locked(_) | LogError::Unavailable(_))
    }
}

/// Whether this process runs the consumers.
///
/// On sled there is one process per log (the database lock), so it always does. Several
/// replicas may serve the edge of one JetStream stream; the holder of the consumers' lease
/// ([`jetstream::lease`]) runs them and the others wait as standbys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// This process runs the consumers.
    Leader,
    /// Another replica (`holder`, when known) holds the lease: this one serves the edge and
    /// takes over when the lease expires.
    Standby {
        /// The lease holder's replica id.
        holder: Option<String>,
    },
}

/// Size and bounds of the log, for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    /// First sequence still stored (0 when empty).
    pub first_seq: u64,
    /// Last durable sequence (0 when empty).
    pub last_seq: u64,
    /// Number of records stored.
    pub count: u64,
    /// Bytes the engine uses on disk.
    pub bytes: u64,
}

/// What one [`Log::prune_before`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Records deleted.
    pub pruned: u64,
    /// The first record still stored afterwards (0 when the log is empty).
    pub first_seq: u64,
}

/// The future returned by [`Log::append`]: resolves once the record is durable, or failed.
#[must_use = "an append is only durable once its ticket resolves"]
pub struct AppendTicket {
    rx: oneshot::Receiver<Result<Seq, LogError>>,
}

impl AppendTicket {
    /// A ticket and the sender that completes it (for engines).
    pub fn channel() -> (oneshot::Sender<Result<Seq, LogError>>, AppendTicket) {
        let (tx, rx) = oneshot::channel();
        (tx, AppendTicket { rx })
    }

    /// A ticket that has already failed.
    pub fn failed(err: LogError) -> AppendTicket {
        let (tx, ticket) = AppendTicket::channel();
        let _ = tx.send(Err(err));
        ticket
    }

    /// Waits for the ticket on a thread that is not inside an async runtime.
    pub fn wait_blocking(self) -> Result<Seq, LogError> {
        self.rx
            .blocking_recv()
            .unwrap_or(Err(LogError::WriterStopped))
    }
}

impl Future for AppendTicket {
    type Output = Result<Seq, LogError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(LogError::WriterStopped)))
    }
}

/// An append-only, durable, sequence-numbered event log with consumer cursors.
pub trait Log: Send + Sync + 'static {
    /// Queues a verified request for the next group commit. The ticket resolves to its
    /// sequence once flushed; dropping the ticket does not cancel the append.
    fn append(&self, event: Verified) -> AppendTicket;

    /// Up to `limit` records with sequence greater than `after`, in order.
    fn read(&self, after: Seq, limit: usize) -> Result<Vec<Event>, LogError>;

    /// One record.
    fn get(&self, seq: Seq) -> Result<Option<Event>, LogError>;

    /// Bounds and size.
    fn stats(&self) -> Result<LogStats, LogError>;

    /// A consumer's cursor: the last sequence it has fully processed (0 if never stored).
    fn cursor(&self, consumer: &str) -> Result<Seq, LogError>;

    /// Stores a consumer's cursor. Durable at the next group commit or background flush; a
    /// cursor lost in a crash only means reprocessing (consumers are at-least-once).
    fn store_cursor(&self, consumer: &str, seq: Seq) -> Result<(), LogError>;

    /// Every stored cursor, by name.
    fn cursors(&self) -> Result<Vec<(String, Seq)>, LogError>;

    /// Forgets a consumer's cursor (a consumer retired for good), so that it no longer holds
    /// retention back. Returns whether there was one. Should that consumer run again, it
    /// starts from the first record still stored.
    /// The default refuses: an engine without it cannot retire a consumer.
    fn drop_cursor(&self, consumer: &str) -> Result<bool, LogError> {
        Err(LogError::Storage(format!(
            "this log engine cannot drop the cursor `{consumer}`"
        )))
    }

    /// Deletes every record with a sequence below `before` (retention), oldest first. The
    /// caller chooses the bound ([`crate::consumers::retention`]: never above any cursor); the engine only
    /// guarantees that sequences are never reused: the last record is always kept, so the
    /// next append continues the sequence even across a reopen. Remaining records keep
    /// their sequences. Runs beside appends without holding the writer.
    /// The default refuses (an engine without retention keeps everything; the retention
    /// task logs the error and deletes nothing).
    fn prune_before(&self, before: Seq) -> Result<PruneReport, LogError> {
        Err(LogError::Storage(format!(
            "this log engine does not support retention (asked to prune before {before})"
        )))
    }

    /// Watches the last durable sequence (a wake-up for tailing readers).
    fn watch_last_seq(&self) -> watch::Receiver<Seq>;

    /// Whether appends can succeed now: the writer runs, no write has failed for good, and
    /// (sled) the disk has room above the reserve.
    fn is_writable(&self) -> bool;

    /// Becomes `Some(reason)` once the log has failed for good: it refuses every append until
    /// it is reopened, so the daemon stops and lets its service manager restart it. An engine
    /// that cannot fail this way keeps the default, which never changes.
    fn failure(&self) -> watch::Receiver<Option<String>> {
        watch::channel(None).1
    }

    /// Whether this process runs the consumers now. An engine with one process per log
    /// keeps the default, [`Leadership::Leader`] for good.
    fn leadership(&self) -> watch::Receiver<Leadership> {
        watch::channel(Leadership::Leader).1
    }

    /// Stops accepting appends, commits what is queued, flushes and waits for the writer.
    /// Idempotent.
    fn close(&self) -> Result<(), LogError>;

    /// Where consumers keep their state, next to the log so that both survive together.
    fn state(&self) -> std::sync::Arc<dyn crate::state::StateStore>;

    /// Re-appends exported records for [`restore`] (read its docs: only the CLI's `import`
    /// calls this, on a log it opened itself), numbered in the order given.
    fn restore_events(&self, events: Vec<Event>) -> Result<Vec<Seq>, LogError> {
        restore_pipelined(self, events)
    }

    /// The sequence of the first record received at or after `at` (for `rewind --since`);
    /// one past the end if none.
    fn seq_at_or_after(&self, at: crate::event::Micros) -> Result<Seq, LogError> {
        let stats = self.stats()?;
        if stats.count == 0 {
            return Ok(Seq(stats.last_seq + 1));
        }
        // Receipt times follow sequence order to within the concurrency of one batch, which
        // is close enough for choosing where a replay starts.
        let (mut lo, mut hi) = (stats.first_seq, stats.last_seq + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // A record that cannot be decoded is judged by the next one that can: where a
            // replay starts must not depend on one damaged record, and the daemon must not
            // refuse to start over it (the consumers dead-letter it when they read it).
            let mut probe = mid;
            let received = loop {
                match self.get(Seq(probe)) {
                    Err(LogError::Corrupt { .. }) if probe + 1 < hi => probe += 1,
                    Err(LogError::Corrupt { .. }) => break None,
                    Err(e) => return Err(e),
                    Ok(ev) => break ev.map(|ev| ev.received_at),
                }
            };
            match received {
                Some(t) if t < at => lo = probe + 1,
                _ => hi = mid,
            }
        }
        Ok(Seq(lo))
    }
}

/// Re-appends records exported from a hooklog log (`hooklog-replay import`: a migration or a
/// restore), keeping what each record was when it was first received: `received_at`,
/// source, route, headers, body and verification. Their sequence numbers are assigned anew
/// (in the order given); `event.seq` is ignored.
///
/// Why this exists next to [`Log::append`]: an append takes a [`Verified`], which only code
/// that has just checked a signature or the admin token can make, and it stamps the current
/// time. Webhook records (`openphone`, `twilio`, `salesmsg`) cannot be re-sent through the
/// edge (their signatures are bound to a time window and a public URL) and the admin API
/// refuses those sources (guarantee 2: only authentic requests enter through the network).
/// A restore is not a new request: these records were verified when they were first received
/// and their original verification is kept as evidence. The only caller is the CLI working
/// on a data directory it opened itself, i.e. someone who could already write to the database
/// files; nothing reachable over the network calls this.
///
/// Each engine numbers the records in the order given ([`Log::restore_events`]): an export
/// of a whole log gets its sequence numbers back. The call returns once every record is
/// durable, with their new sequences.
pub fn restore(log: &dyn Log, events: Vec<Event>) -> Result<Vec<Seq>, LogError> {
    log.restore_events(events)
}

/// The default [`Log::restore_events`]: appends pipelined (up to 256 in flight). In order
/// because one writer assigns sequences in queue order (sled); an engine whose concurrent
/// appends may be numbered in another order overrides the method.
fn restore_pipelined(log: &(impl Log + ?Sized), events: Vec<Event>) -> Result<Vec<Seq>, LogError> {
    const IN_FLIGHT: usize = 256;
    let mut seqs = Vec::with_capacity(events.len());
    let mut pending = std::collections::VecDeque::with_capacity(IN_FLIGHT);
    for ev in events {
        let verified = Verified::new(
            ev.received_at,
            ev.source,
            ev.route,
            ev.headers,
            ev.body,
            ev.verification,
        );
        pending.push_back(log.append(verified));
        if pending.len() >= IN_FLIGHT {
            if let Some(t) = pending.pop_front() {
                seqs.push(t.wait_blocking()?);
            }
        }
    }
    for t in pending {
        seqs.push(t.wait_blocking()?);
    }
    Ok(seqs)
}
