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

/// How many batches are kept.
const RECENT_BATCHES: usize = 8;
/// Longest wait for a batch the read-ahead is fetching.
const READAHEAD_WAIT: Duration = Duration::from_secs(5);

/// A batch as the driver hands it over: the records, in sequence order, and each record's
/// parse, computed on first use.
pub struct Batch {
    events: Vec<Event>,
    parsed: Vec<OnceLock<Result<Parsed, ParseError>>>,
}

impl Batch {
    /// A batch of `events` (in sequence order), none parsed yet.
    pub fn new(events: Vec<Event>) -> Batch {
        let parsed = events.iter().map(|_| OnceLock::new()).collect();
        Batch { events, parsed }
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
        if self.recent.len() >= RECENT_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back(batch);
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

    /// Starts fetching the batch after `batch` if it is durable in full and not cached yet.
    fn read_ahead(&self, log: &Arc<dyn Log>, batch: &Batch, limit: usize) {
        let Some(last) = batch.events.last().map(|e| e.seq) else {
            return;
        };
        let next = Seq(last.0 + 1);
        if log.watch_last_seq().borrow().0 < last.0.saturating_add(limit as u64) {
            return;
        }
        {
            let mut cache = self.shared.lock();
            if cache.in_flight.contains(&(next, limit)) || cache.find(next, limit).is_some() {
                return;
            }
            cache.in_flight.push((next, limit));
        }
        let job = Job {
            log: log.clone(),
            after: last,
            limit,
        };
        if let Err(e) = self.sender().map(|tx| tx.send(job)) {
            tracing::warn!(error = %e, "read-ahead unavailable; consumers read for themselves");
            self.shared.finish(next, limit, None);
        }
    }

    fn sender(&self) -> Result<crossbeam_channel::Sender<Job>, String> {
        let mut slot = self.readahead.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = slot.as_ref() {
            return Ok(tx.clone());
        }
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("hooklog-readahead".into())
            .spawn(move || {
                for job in rx {
                    let first = Seq(job.after.0 + 1);
                    let batch = match job.log.read(job.after, job.limit) {
                        Ok(events) if events.len() == job.limit => {
                            let batch = Batch::new(events);
                            for record in batch.records() {
                                // Errors are kept in the batch for the consumers to handle.
                                let _ = record.parsed();
                            }
                            Some(Arc::new(batch))
                        }
                        // A failed read is retried by the driver itself, which sees the error.
                        _ => None,
                    };
                    shared.finish(first, job.limit, batch);
                }
            })
            .map_err(|e| format!("cannot start the read-ahead thread: {e}"))?;
        *slot = Some(tx.clone());
        Ok(tx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::event::{Micros, Source, Verification, Verified};
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
