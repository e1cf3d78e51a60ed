//! The embedded engine: a sled 0.34 database with one writer thread doing group commit.
//!
//! # On-disk layout (`<data_dir>/log/`, a sled database)
//!
//! | tree      | key                              | value                                   |
//! |-----------|----------------------------------|-----------------------------------------|
//! | `events`  | sequence, `u64` big-endian       | [`Event::encode`]: format byte + bincode |
//! | `cursors` | consumer name, UTF-8             | sequence, `u64` big-endian              |
//! | `meta`    | `format`                         | `hooklog-log-v1`                        |
//!
//! Big-endian keys make sled's byte order the numeric order, so a range scan from
//! `after + 1` returns records in sequence order.
//!
//! # Group commit
//!
//! Every append goes through a bounded `crossbeam-channel` to one writer thread. The writer
//! blocks for the first request, drains whatever else is queued (up to [`MAX_BATCH`]),
//! assigns the next sequence numbers, inserts every record, calls `Db::flush` **once**, and
//! only then completes every request's ticket. One flush serves the whole batch, which is
//! what makes durable appends cheap under concurrency. Sequences are assigned by this one
//! thread only (never `generate_id`, which can reorder), so they are contiguous.
//!
//! If the insert or the flush fails, every request of the batch gets an error (the edge
//! answers 503 and the provider retries); the writer tries to remove the batch's keys so the
//! sequence stays gap-free, and takes the next sequence from the tree's real last key.
//!
//! Readers ([`Log::read`], [`Log::get`], [`Log::stats`]) see only what the writer published
//! after a successful flush, never a batch that is inserted but not yet durable: a consumer
//! must not act on a record that a crash (or a failed flush) could take back, because the
//! next append would then reuse its sequence and the consumer's cursor would skip it.
//!
//! The writer is `writer.rs`; the rest of this file opens the database and serves reads.
//!
//! # A full disk
//!
//! sled 0.34 does not survive an I/O error: the first failed write sets a global error in
//! the database and every later operation returns it, until the database is opened again.
//! So the writer keeps a **free-space reserve** (`log.min_free_mb`): before each batch it
//! asks the file system how much is free, and below the reserve it refuses the batch with
//! [`LogError::DiskFull`] without touching sled. The edge answers 503, the providers retry,
//! and the reserve leaves room for what still has to be written (consumers' state, cursors,
//! retention's deletes). [`Log::is_writable`] asks the file system again, so `/readyz` and
//! the next append recover by themselves when space returns.
//!
//! If a write fails anyway (the reserve was too small, or another error), the log is
//! **failed**: every append is refused, and [`Log::failure`] reports it, so the daemon can
//! stop and be restarted by its service manager, the only way sled recovers.
//!
//! # Retention
//!
//! [`Log::prune_before`] deletes records from the front only, in batches of
//! `PRUNE_BATCH` keys each followed by a flush, on the caller's thread: appends go on
//! meanwhile. The last durable record is never deleted, because the writer derives the next
//! sequence from the last key at open (and after a failed commit): keeping it means a
//! sequence is never handed out twice, even when every record is old enough to go. The
//! bound is capped by the last *durable* sequence (what the writer published), not the
//! tree's last key, so a batch inserted but not yet flushed (and perhaps taken back) cannot
//! move it. sled reclaims the space of deleted keys lazily, as it rewrites segments.
//!
//! # Durability promise
//!
//! A resolved append survives a crash of the process (`kill -9`): sled's `flush` has written
//! the batch to the file. On Linux sled 0.34 flushes with `sync_file_range`, not `fsync`, so a
//! power loss or kernel crash may lose what was acknowledged since sled's last background
//! `sync_all` (every `flush_every_ms`, 500 ms by default). hooklog does not claim more.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::watch;

mod writer;

use super::{AppendTicket, Log, LogError, LogStats, PruneReport};
use crate::event::{Event, Seq, Verified};
use crate::metrics::Metrics;
pub use writer::MAX_BATCH;
use writer::{last_key, storage, Request, Shared, Writer};

/// Keys one retention batch deletes before it flushes.
const PRUNE_BATCH: usize = 10_000;

/// Appends that may wait for the writer. When full, appends fail at once with
/// [`LogError::WriterStopped`]-like back-pressure rather than queueing without bound.
const QUEUE_DEPTH: usize = 16 * 1024;

const FORMAT_KEY: &[u8] = b"format";
const FORMAT_VALUE: &[u8] = b"hooklog-log-v1";
/// Longest consumer name a cursor may have.
const MAX_CURSOR_NAME: usize = 128;

/// The `cursors` tree (consumer name → sequence, `u64` big-endian): sled's log keeps it next
/// to the records, the JetStream engine next to the consumers' state.
#[derive(Clone)]
pub(crate) struct CursorTree(pub(crate) sled::Tree);

impl CursorTree {
    pub(crate) fn get(&self, consumer: &str) -> Result<Seq, LogError> {
        Ok(self
            .0
            .get(consumer.as_bytes())
            .map_err(storage)?
            .and_then(|v| Seq::from_key(&v))
            .unwrap_or_default())
    }

    pub(crate) fn store(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        if consumer.is_empty() || consumer.len() > MAX_CURSOR_NAME {
            return Err(LogError::InvalidCursorName(consumer.to_owned()));
        }
        self.0
            .insert(consumer.as_bytes(), &seq.to_key())
            .map_err(storage)?;
        Ok(())
    }

    pub(crate) fn all(&self) -> Result<Vec<(String, Seq)>, LogError> {
        self.0
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(storage)?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    Seq::from_key(&v).unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// Whether there was one.
    pub(crate) fn remove(&self, consumer: &str) -> Result<bool, LogError> {
        Ok(self
            .0
            .remove(consumer.as_bytes())
            .map_err(storage)?
            .is_some())
    }
}

/// Options for opening the log.
#[derive(Clone, Debug)]
pub struct SledOptions {
    /// sled's page cache, in bytes. sled uses several times this in practice.
    pub cache_capacity: u64,
    /// sled's background flush interval.
    pub flush_every_ms: Option<u64>,
    /// Appends are refused while the data directory's file system has less free space than
    /// this (see "A full disk" above); 0 turns the check off.
    pub min_free_bytes: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_capacity: 32 * 1024 * 1024,
            flush_every_ms: Some(500),
            min_free_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The sled-backed [`Log`].
pub struct SledLog {
    db: sled::Db,
    events: sled::Tree,
    cursors: CursorTree,
    path: PathBuf,
    tx: Sender<Request>,
    shared: Arc<Shared>,
    last_seq: watch::Receiver<Seq>,
    writer: Mutex<Option<JoinHandle<()>>>,
    state: crate::state::SledState,
}

impl std::fmt::Debug for SledLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledLog {
    /// Opens (or creates) the log in `dir` and starts its writer thread.
    pub fn open(dir: &Path, options: &SledOptions, metrics: Metrics) -> Result<SledLog, LogError> {
        // sled's background threads keep the file lock for a moment after the previous
        // handle is dropped (a restart, a tool that just closed it): retry briefly before
        // reporting the directory as in use.
        let mut attempt = 0;
        loop {
            match Self::open_once(dir, options, metrics.clone()) {
                Err(LogError::Locked(_)) if attempt < 20 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path, options: &SledOptions, metrics: Metrics) -> Result<SledLog, LogError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity)
            .flush_every_ms(options.flush_every_ms)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    LogError::Locked(format!("{}: {io}", dir.display()))
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    LogError::Locked(format!("{}: {io}", dir.display()))
                }
                other => storage(other),
            })?;
        let meta = db.open_tree("meta").map_err(storage)?;
        match meta.get(FORMAT_KEY).map_err(storage)? {
            Some(v) if v.as_ref() == FORMAT_VALUE => {}
            Some(v) => {
                return Err(LogError::Incompatible(format!(
                    "{} holds format `{}`, this build writes `{}`",
                    dir.display(),
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(FORMAT_VALUE)
                )))
            }
            None => {
                meta.insert(FORMAT_KEY, FORMAT_VALUE).map_err(storage)?;
                db.flush().map_err(storage)?;
            }
        }
        let events = db.open_tree("events").map_err(storage)?;
        let cursors = CursorTree(db.open_tree("cursors").map_err(storage)?);
        let last = last_key(&events)?;
        metrics.last_seq.set(last.0 as i64);

        let (tx, rx) = crossbeam_channel::bounded(QUEUE_DEPTH);
        let (seq_tx, seq_rx) = watch::channel(last);
        let shared = Arc::new(Shared {
            open: AtomicBool::new(true),
            failed: watch::channel(None).0,
            dir: dir.to_owned(),
            min_free_bytes: options.min_free_bytes,
        });
        let writer = Writer {
            db: db.clone(),
            events: events.clone(),
            rx,
            next: last.next(),
            shared: shared.clone(),
            last_seq: seq_tx,
            metrics,
        };
        let handle = std::thread::Builder::new()
            .name("hooklog-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| LogError::Storage(format!("cannot start the writer thread: {e}")))?;
        let state = crate::state::SledState::new(db.clone());
        Ok(SledLog {
            db,
            events,
            cursors,
            path: dir.to_owned(),
            tx,
            shared,
            last_seq: seq_rx,
            writer: Mutex::new(Some(handle)),
            state,
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last sequence the writer made durable: the bound of every read.
    fn durable(&self) -> Seq {
        *self.last_seq.borrow()
    }

    fn decode(seq: Seq, bytes: &[u8]) -> Result<Event, LogError> {
        Event::decode(bytes).map_err(|source| LogError::Corrupt { seq, source })
    }
}

impl Log for SledLog {
    fn append(&self, event: Verified) -> AppendTicket {
        let (done, ticket) = AppendTicket::channel();
        match self.tx.try_send(Request::Append { event, done }) {
            Ok(()) => ticket,
            Err(TrySendError::Full(_)) => {
                AppendTicket::failed(LogError::Storage("append queue is full".into()))
            }
            Err(TrySendError::Disconnected(_)) => AppendTicket::failed(LogError::WriterStopped),
        }
    }

    fn read(&self, after: Seq, limit: usize) -> Result<Vec<Event>, LogError> {
        let durable = self.durable();
        let Some(start) = after.0.checked_add(1) else {
            return Ok(Vec::new());
        };
        if start > durable.0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self
            .events
            .range(Seq(start).to_key()..=durable.to_key())
            .take(limit)
        {
            let (k, v) = item.map_err(storage)?;
            let seq = Seq::from_key(&k).ok_or_else(|| LogError::Incompatible("bad key".into()))?;
            out.push(Self::decode(seq, &v)?);
        }
        Ok(out)
    }

    fn get(&self, seq: Seq) -> Result<Option<Event>, LogError> {
        if seq > self.durable() {
            return Ok(None);
        }
        match self.events.get(seq.to_key()).map_err(storage)? {
            Some(v) => Ok(Some(Self::decode(seq, &v)?)),
            None => Ok(None),
        }
    }

    fn stats(&self) -> Result<LogStats, LogError> {
        let first = match self.events.first().map_err(storage)? {
            Some((k, _)) => Seq::from_key(&k).unwrap_or_default().0,
            None => 0,
        };
        let last = last_key(&self.events)?.min(self.durable()).0;
        // Sequences are contiguous and retention only removes from the front, so the count
        // follows from the bounds (sled's `len` is a full scan).
        let count = if last == 0 || first == 0 {
            0
        } else {
            last - first + 1
        };
        Ok(LogStats {
            first_seq: first,
            last_seq: last,
            count,
            bytes: self.db.size_on_disk().map_err(storage)?,
        })
    }

    fn cursor(&self, consumer: &str) -> Result<Seq, LogError> {
        self.cursors.get(consumer)
    }

    fn store_cursor(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        self.cursors.store(consumer, seq)
    }

    fn cursors(&self) -> Result<Vec<(String, Seq)>, LogError> {
        self.cursors.all()
    }

    fn drop_cursor(&self, consumer: &str) -> Result<bool, LogError> {
        let had = self.cursors.remove(consumer)?;
        self.db.flush().map_err(storage)?;
        Ok(had)
    }

    fn prune_before(&self, before: Seq) -> Result<PruneReport, LogError> {
        // Never the last durable record (see the module header).
        let durable_last = self.last_seq.borrow().0;
        let bound = before.0.min(durable_last);
        let mut pruned = 0u64;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0usize;
            for item in self.events.range(..Seq(bound).to_key()).take(PRUNE_BATCH) {
                let (k, _) = item.map_err(storage)?;
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.events.apply_batch(batch).map_err(storage)?;
            self.db.flush().map_err(storage)?;
            pruned += n as u64;
            if n < PRUNE_BATCH {
                break;
            }
        }
        let first_seq = match self.events.first().map_err(storage)? {
            Some((k, _)) => Seq::from_key(&k).unwrap_or_default().0,
            None => 0,
        };
        Ok(PruneReport { pruned, first_seq })
    }

    fn watch_last_seq(&self) -> watch::Receiver<Seq> {
        self.last_seq.clone()
    }

    fn is_writable(&self) -> bool {
        self.shared.open.load(Ordering::Acquire)
            && self.shared.failed.borrow().is_none()
            && self.shared.shortage().is_none()
    }

    fn failure(&self) -> watch::Receiver<Option<String>> {
        self.shared.failed.subscribe()
    }

    fn state(&self) -> Arc<dyn crate::state::StateStore> {
        Arc::new(self.state.clone())
    }

    fn close(&self) -> Result<(), LogError> {
        // A poisoned lock only means another closer panicked; the handle is still valid.
        let handle = match self.writer.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(handle) = handle {
            // Blocking send: the stop request must queue behind every pending append.
            let _ = self.tx.send(Request::Stop);
            let _ = handle.join();
        }
        self.shared.open.store(false, Ordering::Release);
        self.db.flush().map_err(storage)?;
        Ok(())
    }
}

impl Drop for SledLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests;
