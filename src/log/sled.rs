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
//! [`PRUNE_BATCH`] keys each followed by a flush, on the caller's thread: appends go on
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

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::{oneshot, watch};

use super::{AppendTicket, Log, LogError, LogStats, PruneReport};
use crate::event::{Event, Seq, Verified};
use crate::metrics::Metrics;

/// Most appends one group commit serves. Bounds the latency of the last request in a batch
/// and the memory held between insert and flush.
pub const MAX_BATCH: usize = 1024;

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

enum Request {
    Append {
        event: Verified,
        done: oneshot::Sender<Result<Seq, LogError>>,
    },
    /// Commit what is queued before this, then stop.
    Stop,
}

struct Shared {
    /// Cleared by `close`: the writer accepts nothing more.
    open: AtomicBool,
    /// Set once by a failed write; sled refuses everything after it (see "A full disk").
    failed: watch::Sender<Option<String>>,
    dir: PathBuf,
    min_free_bytes: u64,
}

impl Shared {
    /// Free bytes for an unprivileged writer on the log's file system, or `None` when the
    /// file system cannot be asked (then the reserve is not enforced: refusing every append
    /// because `statvfs` failed would turn a monitoring problem into an outage).
    fn free_bytes(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(&self.dir).ok()?;
        #[allow(clippy::useless_conversion)] // the field types differ between targets
        Some(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
    }

    /// `Some((free, reserve))` when the free space is below the reserve.
    fn shortage(&self) -> Option<(u64, u64)> {
        if self.min_free_bytes == 0 {
            return None;
        }
        match self.free_bytes() {
            Some(free) if free < self.min_free_bytes => Some((free, self.min_free_bytes)),
            _ => None,
        }
    }

    fn fail(&self, message: String) {
        self.failed.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(message);
                true
            } else {
                false
            }
        });
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

fn storage(e: sled::Error) -> LogError {
    LogError::Storage(e.to_string())
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

fn last_key(tree: &sled::Tree) -> Result<Seq, LogError> {
    match tree.last().map_err(storage)? {
        Some((k, _)) => Seq::from_key(&k)
            .ok_or_else(|| LogError::Incompatible(format!("event key of {} bytes", k.len()))),
        None => Ok(Seq(0)),
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

struct Writer {
    db: sled::Db,
    events: sled::Tree,
    rx: Receiver<Request>,
    next: Seq,
    shared: Arc<Shared>,
    last_seq: watch::Sender<Seq>,
    metrics: Metrics,
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<(Verified, oneshot::Sender<Result<Seq, LogError>>)> =
            Vec::with_capacity(MAX_BATCH);
        loop {
            let mut stop = false;
            match self.rx.recv() {
                Ok(Request::Append { event, done }) => batch.push((event, done)),
                Ok(Request::Stop) | Err(_) => stop = true,
            }
            while !stop && batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(Request::Append { event, done }) => batch.push((event, done)),
                    Ok(Request::Stop) => stop = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            if stop {
                break;
            }
        }
        // Anything queued after the stop request is refused, never silently dropped.
        self.shared.open.store(false, Ordering::Release);
        while let Ok(req) = self.rx.try_recv() {
            if let Request::Append { done, .. } = req {
                let _ = done.send(Err(LogError::WriterStopped));
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<(Verified, oneshot::Sender<Result<Seq, LogError>>)>) {
        // Refused before sled sees it: a write that fails for want of space would leave sled
        // unusable until the database is reopened.
        let failed = self.shared.failed.borrow().clone();
        let refusal: Option<Box<dyn Fn() -> LogError>> = match failed {
            Some(failure) => Some(Box::new(move || LogError::Failed(failure.clone()))),
            None => self.shared.shortage().map(|(free_bytes, reserve_bytes)| {
                Box::new(move || LogError::DiskFull {
                    free_bytes,
                    reserve_bytes,
                }) as Box<dyn Fn() -> LogError>
            }),
        };
        if let Some(refusal) = refusal {
            self.metrics.append_failures.inc();
            for (_, done) in batch.drain(..) {
                let _ = done.send(Err(refusal()));
            }
            return;
        }
        let first = self.next;
        let mut waiters = Vec::with_capacity(batch.len());
        let mut result = Ok(());
        for (event, done) in batch.drain(..) {
            if result.is_ok() {
                let seq = self.next;
                let bytes = event.into_event(seq).encode();
                match self.events.insert(seq.to_key(), bytes) {
                    Ok(_) => self.next = seq.next(),
                    Err(e) => result = Err(e),
                }
            }
            waiters.push(done);
        }
        if result.is_ok() {
            result = self.db.flush().map(|_| ());
        }
        self.metrics.batch_size.observe(waiters.len() as f64);
        match result {
            Ok(()) => {
                let last = Seq(self.next.0 - 1);
                self.metrics.last_seq.set(last.0 as i64);
                self.last_seq.send_replace(last);
                for (i, done) in waiters.into_iter().enumerate() {
                    let _ = done.send(Ok(Seq(first.0 + i as u64)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = waiters.len(), "group commit failed; answering 503");
                self.metrics.append_failures.inc();
                // sled keeps the error and refuses everything from now on (see "A full disk").
                self.shared.fail(e.to_string());
                // Keep the sequence gap-free: take back what this batch inserted, then resume
                // from whatever the tree really ends at.
                for n in first.0..self.next.0 {
                    let _ = self.events.remove(Seq(n).to_key());
                }
                self.next = match last_key(&self.events) {
                    Ok(last) => last.next(),
                    Err(_) => self.next,
                };
                let msg = e.to_string();
                for done in waiters {
                    let _ = done.send(Err(LogError::Storage(msg.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Micros, Source, Verification};

    fn verified(n: usize) -> Verified {
        Verified::new(
            Micros(n as i64),
            Source::Twilio,
            "/sms".into(),
            vec![("x-twilio-signature".into(), format!("sig{n}"))],
            format!("Body=hello+{n}").into_bytes(),
            Verification::Twilio { token: 0, url: 0 },
        )
    }

    fn open(dir: &Path) -> SledLog {
        SledLog::open(dir, &SledOptions::default(), Metrics::new()).unwrap()
    }

    #[tokio::test]
    async fn concurrent_appends_get_contiguous_sequences_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(open(dir.path()));
        let mut tasks = Vec::new();
        for n in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(verified(n)).await.unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().0);
        }
        seqs.sort();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        let all = log.read(Seq(0), 1000).unwrap();
        assert_eq!(all.len(), 200);
        for (i, ev) in all.iter().enumerate() {
            assert_eq!(ev.seq, Seq(i as u64 + 1));
        }
        assert_eq!(*log.watch_last_seq().borrow(), Seq(200));
    }

    #[test]
    fn records_and_cursors_survive_a_reopen_and_sequences_continue() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path());
            for n in 0..5 {
                log.append(verified(n)).wait_blocking().unwrap();
            }
            log.store_cursor("dedup", Seq(3)).unwrap();
            log.close().unwrap();
        }
        let log = open(dir.path());
        assert_eq!(log.cursor("dedup").unwrap(), Seq(3));
        assert_eq!(log.cursor("never-stored").unwrap(), Seq(0));
        assert_eq!(log.append(verified(9)).wait_blocking().unwrap(), Seq(6));
        let stats = log.stats().unwrap();
        assert_eq!((stats.first_seq, stats.last_seq, stats.count), (1, 6, 6));
        assert!(stats.bytes > 0);
        let ev = log.get(Seq(2)).unwrap().unwrap();
        assert_eq!(ev.body, b"Body=hello+1");
        assert_eq!(ev.header("x-twilio-signature"), Some("sig1"));
    }

    #[test]
    fn after_pruning_everything_and_a_reopen_appends_continue_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path());
            for n in 0..5 {
                log.append(verified(n)).wait_blocking().unwrap();
            }
            // Asked to prune everything: the last record stays, so the sequence survives.
            let report = log.prune_before(Seq(u64::MAX)).unwrap();
            assert_eq!((report.pruned, report.first_seq), (4, 5));
            let stats = log.stats().unwrap();
            assert_eq!((stats.first_seq, stats.last_seq, stats.count), (5, 5, 1));
            assert_eq!(log.append(verified(5)).wait_blocking().unwrap(), Seq(6));
            assert_eq!(log.prune_before(Seq(6)).unwrap().pruned, 1);
            log.close().unwrap();
        }
        let log = open(dir.path());
        let stats = log.stats().unwrap();
        assert_eq!((stats.first_seq, stats.last_seq, stats.count), (6, 6, 1));
        assert_eq!(log.append(verified(6)).wait_blocking().unwrap(), Seq(7));
        assert!(log.get(Seq(5)).unwrap().is_none());
        let rest: Vec<u64> = log
            .read(Seq(0), 10)
            .unwrap()
            .iter()
            .map(|e| e.seq.0)
            .collect();
        assert_eq!(rest, vec![6, 7]);
        // A rewind to 0 reads from the first remaining record; since-searches start there.
        assert_eq!(
            log.seq_at_or_after(crate::event::Micros(0)).unwrap(),
            Seq(6)
        );
        // Pruning an empty range or below the first record deletes nothing.
        assert_eq!(
            log.prune_before(Seq(3)).unwrap(),
            PruneReport {
                pruned: 0,
                first_seq: 6
            }
        );
    }

    #[test]
    fn pruning_spans_several_delete_batches() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let n = PRUNE_BATCH * 2 + 17;
        for chunk in (0..n).collect::<Vec<_>>().chunks(4096) {
            let tickets: Vec<_> = chunk.iter().map(|i| log.append(verified(*i))).collect();
            for t in tickets {
                t.wait_blocking().unwrap();
            }
        }
        let report = log.prune_before(Seq(n as u64 - 3)).unwrap();
        assert_eq!(report.pruned, n as u64 - 4);
        assert_eq!(report.first_seq, n as u64 - 3);
        assert_eq!(log.stats().unwrap().count, 4);
    }

    fn dir_bytes(dir: &Path) -> u64 {
        crate::log::size::dir_bytes(dir).unwrap()
    }

    /// A long append + prune loop: the data directory stays bounded. sled reclaims the space
    /// of deleted keys lazily (as it rewrites segments), so the size is measured after a
    /// flush and compared with a generous bound: a small multiple of what one round holds,
    /// and well below what the loop wrote in total.
    #[test]
    fn the_data_directory_stays_bounded_under_a_long_append_and_prune_loop() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let body = "x".repeat(1024);
        let rounds = 40;
        let per_round = 1000;
        let mut after_round = Vec::new();
        for round in 0..rounds {
            let tickets: Vec<_> = (0..per_round)
                .map(|i| {
                    log.append(Verified::new(
                        crate::event::Micros(i as i64),
                        crate::event::Source::Twilio,
                        "/sms".into(),
                        vec![],
                        format!("{round}-{i}-{body}").into_bytes(),
                        crate::event::Verification::Twilio { token: 0, url: 0 },
                    ))
                })
                .collect();
            let mut last = Seq(0);
            for t in tickets {
                last = t.wait_blocking().unwrap();
            }
            log.store_cursor("dedup", last).unwrap();
            log.prune_before(last).unwrap();
            log.db.flush().unwrap();
            after_round.push(dir_bytes(dir.path()));
        }
        let written = (rounds * per_round * body.len()) as u64;
        let max = *after_round.iter().max().unwrap();
        let last = *after_round.last().unwrap();
        eprintln!(
            "data directory after each round: {after_round:?} (wrote {written} bytes of bodies)"
        );
        let stats = log.stats().unwrap();
        assert_eq!(stats.count, 1);
        assert_eq!(stats.first_seq, (rounds * per_round) as u64);
        assert!(
            max < written / 3,
            "the data directory grew to {max} bytes after writing {written} (sizes: {after_round:?})"
        );
        // Bounded, not just smaller: the last rounds are no bigger than a generous multiple of
        // the early ones.
        let early = after_round[..5].iter().copied().max().unwrap();
        assert!(
            last <= early * 4,
            "grew from {early} to {last} bytes (sizes: {after_round:?})"
        );
    }

    #[test]
    fn range_reads_start_after_the_given_sequence_and_respect_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        for n in 0..10 {
            log.append(verified(n)).wait_blocking().unwrap();
        }
        let page: Vec<u64> = log
            .read(Seq(4), 3)
            .unwrap()
            .iter()
            .map(|e| e.seq.0)
            .collect();
        assert_eq!(page, vec![5, 6, 7]);
        assert!(log.read(Seq(10), 10).unwrap().is_empty());
        assert!(log.read(Seq(u64::MAX), 10).unwrap().is_empty());
        assert!(log.get(Seq(11)).unwrap().is_none());
    }

    #[test]
    fn a_restore_keeps_every_field_but_the_sequence_and_keeps_the_order() {
        let src = tempfile::tempdir().unwrap();
        let original = open(src.path());
        for n in 0..300 {
            original.append(verified(n)).wait_blocking().unwrap();
        }
        // Exported from seq 11 on: the restored records are renumbered from 1, in order.
        let exported = original.read(Seq(10), 1000).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let restored = open(dst.path());
        let seqs = crate::log::restore(&restored, exported.clone()).unwrap();
        assert_eq!(seqs, (1..=290).map(Seq).collect::<Vec<_>>());
        let back = restored.read(Seq(0), 1000).unwrap();
        assert_eq!(back.len(), 290);
        for (a, b) in exported.iter().zip(&back) {
            assert_eq!(b.seq.0, a.seq.0 - 10);
            assert_eq!(
                Event {
                    seq: a.seq,
                    ..b.clone()
                },
                *a
            );
        }
    }

    #[test]
    fn readers_never_see_a_record_inserted_but_not_yet_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        log.append(verified(0)).wait_blocking().unwrap();
        // What the writer does between its insert and its flush: the record is in the tree,
        // not yet published.
        let pending = verified(1).into_event(Seq(2)).encode();
        log.events.insert(Seq(2).to_key(), pending).unwrap();
        let seqs: Vec<Seq> = log
            .read(Seq(0), 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [Seq(1)]);
        assert!(log.read(Seq(1), 10).unwrap().is_empty());
        assert_eq!(log.get(Seq(2)).unwrap(), None);
        assert_eq!(log.stats().unwrap().last_seq, 1);
    }

    #[test]
    fn below_the_free_space_reserve_appends_are_refused_before_sled_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let options = SledOptions {
            min_free_bytes: u64::MAX,
            ..SledOptions::default()
        };
        let log = SledLog::open(dir.path(), &options, Metrics::new()).unwrap();
        let err = log.append(verified(0)).wait_blocking().unwrap_err();
        assert!(
            matches!(err, LogError::DiskFull { reserve_bytes, .. } if reserve_bytes == u64::MAX),
            "{err:?}"
        );
        assert!(!log.is_writable());
        assert!(log.read(Seq(0), 10).unwrap().is_empty());
        assert_eq!(*log.failure().borrow(), None, "a shortage is not a failure");
        drop(log);

        // The same directory with room above the reserve: writable, and the sequence starts at 1.
        let log = open(dir.path());
        assert!(log.is_writable());
        assert_eq!(log.append(verified(1)).wait_blocking().unwrap(), Seq(1));
    }

    #[test]
    fn appends_after_close_are_refused_not_lost_silently() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        log.append(verified(0)).wait_blocking().unwrap();
        log.close().unwrap();
        assert!(matches!(
            log.append(verified(1)).wait_blocking(),
            Err(LogError::WriterStopped)
        ));
        assert!(!log.is_writable());
        log.close().unwrap();
    }

    #[test]
    fn a_second_open_of_a_live_log_reports_it_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _log = open(dir.path());
        let err = SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap_err();
        assert!(matches!(err, LogError::Locked(_)), "{err:?}");
    }

    #[test]
    fn a_data_dir_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(FORMAT_KEY, b"something-else".as_ref())
                .unwrap();
            db.flush().unwrap();
        }
        let err = SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap_err();
        assert!(matches!(err, LogError::Incompatible(_)), "{err:?}");
    }

    #[test]
    fn a_corrupt_record_is_reported_never_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        log.append(verified(0)).wait_blocking().unwrap();
        log.append(verified(1)).wait_blocking().unwrap();
        log.events
            .insert(Seq(2).to_key(), b"\x09garbage".as_ref())
            .unwrap();
        let err = log.read(Seq(0), 10).unwrap_err();
        assert!(
            matches!(err, LogError::Corrupt { seq: Seq(2), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn finding_where_a_time_starts_steps_over_a_corrupt_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        for n in 0..5 {
            log.append(verified(n)).wait_blocking().unwrap();
        }
        let third = log.get(Seq(3)).unwrap().unwrap().received_at;
        log.events
            .insert(Seq(3).to_key(), b"\x09garbage".as_ref())
            .unwrap();
        assert!(matches!(log.get(Seq(3)), Err(LogError::Corrupt { .. })));
        // The answer is never past the damaged record's neighbours, and there is one.
        let at = log.seq_at_or_after(third).unwrap();
        assert!((Seq(3)..=Seq(4)).contains(&at), "{at:?}");
        assert_eq!(log.seq_at_or_after(Micros(0)).unwrap(), Seq(1));
    }

    #[test]
    fn every_group_commit_is_recorded_in_the_batch_histogram() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let log = SledLog::open(dir.path(), &SledOptions::default(), metrics.clone()).unwrap();
        let tickets: Vec<_> = (0..50).map(|n| log.append(verified(n))).collect();
        for t in tickets {
            t.wait_blocking().unwrap();
        }
        let batches = metrics.batch_size.get_sample_count();
        assert!((1..=50).contains(&batches), "{batches}");
        assert_eq!(metrics.batch_size.get_sample_sum() as u64, 50);
        assert_eq!(metrics.last_seq.get(), 50);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Append(usize),
        Read { after: u64, limit: usize },
        StoreCursor { name: u8, seq: u64 },
        Reopen,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (1usize..20).prop_map(Op::Append),
            3 => (0u64..80, 1usize..30).prop_map(|(after, limit)| Op::Read { after, limit }),
            2 => (0u8..3, 0u64..80).prop_map(|(name, seq)| Op::StoreCursor { name, seq }),
            1 => Just(Op::Reopen),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// The log behaves like a plain vector with a map of cursors, across reopens.
        #[test]
        fn the_log_matches_a_vector_model_across_reopens(ops in proptest::collection::vec(op(), 1..25)) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = open(dir.path());
            let mut model: Vec<Vec<u8>> = Vec::new();
            let mut cursors = std::collections::BTreeMap::new();
            for op in ops {
                match op {
                    Op::Append(n) => {
                        let tickets: Vec<_> = (0..n).map(|i| {
                            let v = verified(model.len() + i);
                            (v.body.clone(), log.append(v))
                        }).collect();
                        for (body, t) in tickets {
                            let seq = t.wait_blocking().unwrap();
                            model.push(body);
                            proptest::prop_assert_eq!(seq.0 as usize, model.len());
                        }
                    }
                    Op::Read { after, limit } => {
                        let got: Vec<(u64, Vec<u8>)> = log.read(Seq(after), limit).unwrap()
                            .into_iter().map(|e| (e.seq.0, e.body)).collect();
                        let want: Vec<(u64, Vec<u8>)> = model.iter().enumerate()
                            .map(|(i, b)| (i as u64 + 1, b.clone()))
                            .filter(|(s, _)| *s > after).take(limit).collect();
                        proptest::prop_assert_eq!(got, want);
                    }
                    Op::StoreCursor { name, seq } => {
                        let name = format!("consumer-{name}");
                        log.store_cursor(&name, Seq(seq)).unwrap();
                        cursors.insert(name, seq);
                    }
                    Op::Reopen => {
                        log.close().unwrap();
                        drop(log);
                        log = open(dir.path());
                    }
                }
                let stats = log.stats().unwrap();
                proptest::prop_assert_eq!(stats.last_seq as usize, model.len());
                proptest::prop_assert_eq!(stats.count as usize, model.len());
                proptest::prop_assert_eq!(stats.first_seq, if model.is_empty() { 0 } else { 1 });
                let stored: std::collections::BTreeMap<String, u64> =
                    log.cursors().unwrap().into_iter().map(|(k, v)| (k, v.0)).collect();
                proptest::prop_assert_eq!(&stored, &cursors);
            }
        }
    }
}
