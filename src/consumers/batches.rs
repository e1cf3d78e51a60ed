//! Batches as the drivers hand them to consumers, and the cache the drivers of one log share.
//!
//! A [`Batch`] holds the records and, per record, its parse, computed at most once however
//! many consumers handle the batch. [`Batches`] keeps the last few full batches read and reads
//! the next one ahead, on a thread of its own, parsing every record of it. During a rewind
//! dedup finds each batch already read and parsed, and compliance, which follows dedup batch
//! for batch, finds it again: one read and one parse per record instead of one per consumer,
//! off the consumers' threads. Reading and parsing were two thirds of dedup's time.
//!
//! Invariants:
//! - Only durable records are cached or read ahead (the drivers never read past the last
//!   durable sequence, and the read-ahead only fetches a batch that is durable in full).
//!   Durable records never change, so a cached batch is never stale.
//! - Only full batches (as many records as asked for) are kept: a short one would grow as
//!   records arrive.
//! - A driver asking for a batch the read-ahead is fetching waits for it (at most
//!   [`READAHEAD_WAIT`]) instead of reading it twice; if the read-ahead fails or is slow, the
//!   driver reads the batch itself and sees the error, if any, itself.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::event::{Event, Seq};
use crate::log::{Log, LogError};
use crate::parse::{self, ParseError, Parsed};

/// How many batches are kept at most.
const RECENT_BATCHES: usize = 8;
/// And how many bytes of record bodies at most (the parses take about as much again): bodies
/// are ~1–2 KB, but a batch of large ones should not pin hundreds of megabytes.
const RECENT_BYTES: usize = 32 << 20;
/// Longest wait for a batch the read-ahead is fetching.
const READAHEAD_WAIT: Duration = Duration::from_secs(5);
/// How many batches past the one asked for are read ahead, each by its own worker: reading
/// and parsing cost more than dedup's and compliance's own work together, so one worker
/// alone held a rewind back to its pace.
const READAHEAD_DEPTH: usize = 2;

/// A batch as the driver hands it over: the records, in sequence order, and each record's
/// parse, computed on first use.
pub struct Batch {
    events: Vec<Event>,
    parsed: Vec<OnceLock<Result<Parsed, ParseError>>>,
    /// Body bytes, for the cache's budget.
    bytes: usize,
}

impl Batch {
    /// A batch of `events` (in sequence order), none parsed yet.
    pub fn new(events: Vec<Event>) -> Batch {
        let parsed = events.iter().map(|_| OnceLock::new()).collect();
        let bytes = events.iter().map(|e| e.body.len()).sum();
        Batch {
            events,
            parsed,
            bytes,
        }
    }

    /// The records.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The records with their lazily computed parses.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        self.events
            .iter()
            .zip(&self.parsed)
            .map(|(event, parsed)| Record { event, parsed })
    }

    fn starts_at(&self, first: Seq, limit: usize) -> bool {
        self.events.len() == limit && self.events.first().is_some_and(|e| e.seq == first)
    }
}

/// One record of a [`Batch`].
#[derive(Clone, Copy)]
pub struct Record<'a> {
    /// The record as stored.
    pub event: &'a Event,
    parsed: &'a OnceLock<Result<Parsed, ParseError>>,
}

impl<'a> Record<'a> {
    /// [`parse::parse`] of the record, computed on first use.
    pub fn parsed(&self) -> Result<&'a Parsed, &'a ParseError> {
        self.parsed
            .get_or_init(|| parse::parse(self.event))
            .as_ref()
    }
}

/// The batches shared by the drivers of one log.
#[derive(Default)]
pub(crate) struct Batches {
    shared: Arc<Shared>,
    /// Jobs for the read-ahead thread, started on first use; it ends when this is dropped.
    readahead: Mutex<Option<crossbeam_channel::Sender<Job>>>,
}

#[derive(Default)]
struct Shared {
    cache: Mutex<Cache>,
    /// Signalled when a read-ahead ends.
    done: Condvar,
}

#[derive(Default)]
struct Cache {
    recent: VecDeque<Arc<Batch>>,
    /// Batches the read-ahead is fetching: (first sequence, length).
    in_flight: Vec<(Seq, usize)>,
}

impl Cache {
    fn find(&self, first: Seq, limit: usize) -> Option<Arc<Batch>> {
        self.recent
            .iter()
            .find(|b| b.starts_at(first, limit))
            .cloned()
    }

    fn keep(&mut self, batch: Arc<Batch>) {
        self.recent.push_back(batch);
        // The newest batch stays whatever its size: the driver that read it comes back for
        // the one after, and the next consumer for this one.
        while self.recent.len() > 1
            && (self.recent.len() > RECENT_BATCHES
                || self.recent.iter().map(|b| b.bytes).sum::<usize>() > RECENT_BYTES)
        {
            self.recent.pop_front();
        }
    }
}

struct Job {
    log: Arc<dyn Log>,
    after: Seq,
    limit: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Cache> {
        // The cache is only ever changed by whole-entry pushes and removals.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, first: Seq, limit: usize, batch: Option<Arc<Batch>>) {
        let mut cache = self.lock();
        cache.in_flight.retain(|&f| f != (first, limit));
        if let Some(batch) = batch {
            cache.keep(batch);
        }
        drop(cache);
        self.done.notify_all();
    }
}

impl Batches {
    /// Up to `limit` durable records after `after`: a batch read before (by another driver or
    /// by the read-ahead), or a fresh one. Blocks on the read (the log is synchronous), and
    /// at most [`READAHEAD_WAIT`] on a read-ahead of this very batch.
    pub(crate) fn read(
        &self,
        log: &Arc<dyn Log>,
        after: Seq,
        limit: usize,
    ) -> Result<Arc<Batch>, LogError> {
        let first = Seq(after.0.saturating_add(1));
        let mut cache = self.shared.lock();
        loop {
            if let Some(batch) = cache.find(first, limit) {
                drop(cache);
                self.read_ahead(log, &batch, limit);
                return Ok(batch);
            }
            if !cache.in_flight.contains(&(first, limit)) {
                break;
            }
            let (guard, wait) = self
                .shared
                .done
                .wait_timeout(cache, READAHEAD_WAIT)
                .unwrap_or_else(|p| p.into_inner());
            cache = guard;
            if wait.timed_out() {
                break;
            }
        }
        drop(cache);
        let batch = Arc::new(Batch::new(log.read(after, limit)?));
        if batch.events.len() == limit {
            self.shared.lock().keep(batch.clone());
            self.read_ahead(log, &batch, limit);
        }
        Ok(batch)
    }

    /// Starts fetching the [`READAHEAD_DEPTH`] batches after `batch` that are durable in full
    /// and neither cached nor being fetched.
    fn read_ahead(&self, log: &Arc<dyn Log>, batch: &Batch, limit: usize) {
        let Some(last) = batch.events.last().map(|e| e.seq) else {
            return;
        };
        let durable = log.watch_last_seq().borrow().0;
        for k in 0..READAHEAD_DEPTH as u64 {
            let after = Seq(last.0.saturating_add(k * limit as u64));
            let next = Seq(after.0 + 1);
            if durable < after.0.saturating_add(limit as u64) {
                return;
            }
            {
                let mut cache = self.shared.lock();
                if cache.in_flight.contains(&(next, limit)) || cache.find(next, limit).is_some() {
                    continue;
                }
                cache.in_flight.push((next, limit));
            }
            let job = Job {
                log: log.clone(),
                after,
                limit,
            };
            if let Err(e) = self.sender().map(|tx| tx.send(job)) {
                tracing::warn!(error = %e, "read-ahead unavailable; consumers read for themselves");
                self.shared.finish(next, limit, None);
                return;
            }
        }
    }

    fn sender(&self) -> Result<crossbeam_channel::Sender<Job>, String> {
        let mut slot = self.readahead.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = slot.as_ref() {
            return Ok(tx.clone());
        }
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for _ in 0..READAHEAD_DEPTH {
            let (rx, shared) = (rx.clone(), self.shared.clone());
            std::thread::Builder::new()
                .name("hooklog-readahead".into())
                .spawn(move || read_ahead_worker(rx, shared))
                .map_err(|e| format!("cannot start a read-ahead thread: {e}"))?;
        }
        *slot = Some(tx.clone());
        Ok(tx)
    }
}

/// Fetches batches until the [`Batches`] that started it is dropped.
fn read_ahead_worker(jobs: crossbeam_channel::Receiver<Job>, shared: Arc<Shared>) {
    for job in jobs {
        let first = Seq(job.after.0 + 1);
        // A panic while parsing must not leave the batch marked in flight (drivers would wait
        // for it every time): the batch is then simply not cached.
        let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fetch(&job)))
            .unwrap_or_else(|_| {
                tracing::error!(
                    after = job.after.0,
                    "read-ahead panicked; the drivers read for themselves"
                );
                None
            });
        shared.finish(first, job.limit, batch);
    }
}

/// One job: the batch, read in full and parsed, or `None` (a failed read is retried by the
/// driver itself, which then sees the error).
fn fetch(job: &Job) -> Option<Arc<Batch>> {
    let events = job.log.read(job.after, job.limit).ok()?;
    if events.len() != job.limit {
        return None;
    }
    let batch = Batch::new(events);
    for record in batch.records() {
        // Errors are kept in the batch for the consumers to handle.
        let _ = record.parsed();
    }
    Some(Arc::new(batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Micros, Source, Verification, Verified};
    use crate::log::sled::{SledLog, SledOptions};
    use crate::metrics::Metrics;

    fn log_of(dir: &std::path::Path, n: usize) -> Arc<dyn Log> {
        let log: Arc<dyn Log> =
            Arc::new(SledLog::open(dir, &SledOptions::default(), Metrics::new()).unwrap());
        for k in 0..n {
            append(&log, &format!("{{\"n\": {k}}}"));
        }
        log
    }

    fn append(log: &Arc<dyn Log>, body: &str) {
        let v = Verified::new(
            Micros::now(),
            Source::Internal,
            "/t".into(),
            vec![],
            body.as_bytes().to_vec(),
            Verification::Internal,
        );
        log.append(v).wait_blocking().unwrap();
    }

    #[test]
    fn drivers_reading_the_same_full_batch_share_it_and_its_parses() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 10);
        let batches = Batches::default();
        let a = batches.read(&log, Seq(2), 4).unwrap();
        let b = batches.read(&log, Seq(2), 4).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second reader gets the same batch");
        assert_eq!(a.events(), &log.read(Seq(2), 4).unwrap()[..]);
        let first = a
            .records()
            .next()
            .unwrap()
            .parsed()
            .ok()
            .map(|p| p as *const Parsed);
        let again = b
            .records()
            .next()
            .unwrap()
            .parsed()
            .ok()
            .map(|p| p as *const Parsed);
        assert!(first.is_some() && first == again, "parsed once");
        // Another start or limit is another batch.
        assert_eq!(batches.read(&log, Seq(2), 3).unwrap().events().len(), 3);
        assert_eq!(
            batches.read(&log, Seq(3), 4).unwrap().events()[0].seq,
            Seq(4)
        );
    }

    #[test]
    fn the_cache_keeps_a_few_batches_and_a_bounded_number_of_bytes() {
        let batch = |first: u64, len: usize, body: usize| {
            Arc::new(Batch::new(
                (first..first + len as u64)
                    .map(|n| Event {
                        seq: Seq(n),
                        received_at: Micros(0),
                        source: Source::Internal,
                        route: "/t".into(),
                        headers: vec![],
                        body: vec![b'x'; body],
                        verification: Verification::Internal,
                    })
                    .collect(),
            ))
        };
        let mut cache = Cache::default();
        for k in 0..20 {
            cache.keep(batch(k * 4 + 1, 4, 10));
        }
        assert_eq!(cache.recent.len(), RECENT_BATCHES);
        assert!(cache.find(Seq(77), 4).is_some() && cache.find(Seq(1), 4).is_none());
        // Batches of 0.4 of the budget each: two fit, a third pushes out the oldest (and
        // every small one before it).
        for k in 0..3 {
            cache.keep(batch(1000 + k * 4, 4, RECENT_BYTES / 10));
        }
        assert_eq!(cache.recent.len(), 2);
        assert!(cache.find(Seq(1004), 4).is_some() && cache.find(Seq(1008), 4).is_some());
        // One batch over the whole budget is still kept, alone.
        cache.keep(batch(2000, 1, RECENT_BYTES + 1));
        assert_eq!(cache.recent.len(), 1);
    }

    #[test]
    fn a_batch_cut_short_by_the_end_of_the_log_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 10);
        let batches = Batches::default();
        assert_eq!(batches.read(&log, Seq(8), 4).unwrap().events().len(), 2);
        append(&log, "{}");
        assert_eq!(batches.read(&log, Seq(8), 4).unwrap().events().len(), 3);
    }

    #[test]
    fn the_next_durable_batch_is_read_and_parsed_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 12);
        let batches = Batches::default();
        batches.read(&log, Seq(0), 4).unwrap();
        // The read-ahead fetches 5..=8 and parses it; wait until it is cached.
        let mut ahead = None;
        for _ in 0..500 {
            ahead = batches.shared.lock().find(Seq(5), 4);
            if ahead.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let ahead = ahead.expect("read ahead within 5 s");
        assert!(
            ahead.parsed.iter().all(|p| p.get().is_some()),
            "parsed ahead"
        );
        assert!(Arc::ptr_eq(&ahead, &batches.read(&log, Seq(4), 4).unwrap()));
        // Records 9..=12 are durable but 13.. are not: the batch after 9..=12 is not fetched.
        batches.read(&log, Seq(8), 4).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(batches.shared.lock().in_flight.is_empty());
        assert!(batches.shared.lock().find(Seq(13), 4).is_none());
        assert_eq!(batches.read(&log, Seq(12), 4).unwrap().events().len(), 0);
    }
}
