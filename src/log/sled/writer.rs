//! The writer thread: group commit. It blocks for the first append, drains what else is
//! queued (up to [`MAX_BATCH`]), checks the free-space reserve, assigns the next sequences,
//! inserts every record, flushes **once**, then publishes the new last sequence and completes
//! every ticket (see [`super`] for why each step is where it is).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use tokio::sync::{oneshot, watch};

use crate::event::{Seq, Verified};
use crate::log::LogError;
use crate::metrics::Metrics;

/// Most appends one group commit serves. Bounds the latency of the last request in a batch
/// and the memory held between insert and flush.
pub const MAX_BATCH: usize = 1024;

pub(super) enum Request {
    Append {
        event: Verified,
        done: oneshot::Sender<Result<Seq, LogError>>,
    },
    /// Commit what is queued before this, then stop.
    Stop,
}

pub(super) struct Shared {
    /// Cleared by `close`: the writer accepts nothing more.
    pub(super) open: AtomicBool,
    /// Set once by a failed write; sled refuses everything after it (see "A full disk").
    pub(super) failed: watch::Sender<Option<String>>,
    pub(super) dir: PathBuf,
    pub(super) min_free_bytes: u64,
}

impl Shared {
    /// Free bytes for an unprivileged writer on the log's file system, or `None` when the
    /// file system cannot be asked (then the reserve is not enforced: refusing every append
    /// because `statvfs` failed would turn a monitoring problem into an outage).
    pub(super) fn free_bytes(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(&self.dir).ok()?;
        #[allow(clippy::useless_conversion)] // the field types differ between targets
        Some(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
    }

    /// `Some((free, reserve))` when the free space is below the reserve.
    pub(super) fn shortage(&self) -> Option<(u64, u64)> {
        if self.min_free_bytes == 0 {
            return None;
        }
        match self.free_bytes() {
            Some(free) if free < self.min_free_bytes => Some((free, self.min_free_bytes)),
            _ => None,
        }
    }

    pub(super) fn fail(&self, message: String) {
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

pub(super) fn storage(e: sled::Error) -> LogError {
    LogError::Storage(e.to_string())
}

pub(super) fn last_key(tree: &sled::Tree) -> Result<Seq, LogError> {
    match tree.last().map_err(storage)? {
        Some((k, _)) => Seq::from_key(&k)
            .ok_or_else(|| LogError::Incompatible(format!("event key of {} bytes", k.len()))),
        None => Ok(Seq(0)),
    }
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) db: sled::Db,
    pub(super) events: sled::Tree,
    pub(super) rx: Receiver<Request>,
    pub(super) next: Seq,
    pub(super) shared: Arc<Shared>,
    pub(super) last_seq: watch::Sender<Seq>,
    pub(super) metrics: Metrics,
}

impl Writer {
    pub(super) fn run(mut self) {
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
