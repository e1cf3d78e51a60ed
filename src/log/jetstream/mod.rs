//! The NATS JetStream engine: the log is a JetStream stream, for teams that run hooklog
//! beside (or on) a JetStream cluster and want the log replicated off the machine.
//!
//! # Layout
//!
//! | where | what |
//! |---|---|
//! | stream `log.jetstream.stream` (default `HOOKLOG`) | one message per record on `log.jetstream.subject`; payload = [`Event::encode`] of the record with sequence 0; header `Nats-Msg-Id` |
//! | the same stream, subject `<subject>.leader` | the records only the consumers' leader writes ([`Verification::Internal`]: decisions, send attempts and results, dispatch results, and each leader's [`LEADER_ROUTE`] record); headers `Nats-Msg-Id`, `Hooklog-Replica` |
//! | the stream's sequence | the record's [`Seq`] |
//! | `<data_dir>/state` (a sled database) | tree `cursors` (consumer name → sequence, `u64` big-endian) and the consumers' state ([`crate::state::SledState`]) |
//!
//! The stream is file-backed with `Limits` retention, `log.jetstream.replicas` replicas and the
//! configured duplicate window; start-up creates it, or checks an existing one and refuses a
//! mismatch with a message naming each difference ([`LogError::Incompatible`]).
//!
//! # Files
//!
//! This file: the engine and its [`Log`] implementation. [`options`]: how to reach the stream;
//! [`connect`](mod@connect): NATS and the stream; `campaign.rs`: the campaign for the consumers' lease;
//! [`leader`]: taking office and the fenced leader's writes; [`lease`]: the lease itself;
//! [`flusher`]: the local state database and its group flush; [`restore`]: restoring records
//! in order; `shared.rs`: the layout's names and the helpers every file uses.
//!
//! # Invariants
//!
//! - **Ack after stored.** [`Log::append`] resolves `Ok(seq)` only once the stream has
//!   acknowledged the publish (stored on one server for R1, on a quorum for R3). What that
//!   survives is the server's promise, not fsync: see docs/architecture.md#what-an-acknowledged-webhook-survives.
//! - **A retried publish is stored once.** Each append carries a `Nats-Msg-Id` unique to it
//!   (this process's id and a counter). An append whose acknowledgement is lost is published
//!   again with the same id, and the stream answers with the first copy's sequence (inside
//!   the duplicate window).
//! - **Sequences are the stream's.** Only hooklog publishes on the subject and nothing
//!   deletes single messages, so sequences are contiguous; retention purges from the front
//!   and never reuses one. Readers stop at the last sequence known to be stored (this
//!   process's acknowledgements, and the stream's state polled every
//!   [`LAST_SEQ_POLL`]), so they never ask for a sequence still in flight.
//! - **State written before an append is durable once the append is acknowledged.** Each
//!   append asks the state flusher for a flush that starts after the append was made, runs it
//!   beside its publish and resolves after both, as sled's engine does with its one database.
//!   The sender relies on it: its ledger entry (`attempting(n)`) must outlive a kill once the
//!   attempt record is in the log. One flusher thread serves every waiting append with one
//!   flush (group commit); sled's `flush_async`, called by thousands of appends at once, was
//!   seen to never complete.
//! - **Consumer state and cursors stay together.** Both are in the local state database, so
//!   a cursor never describes state that is not there.
//! - **One leader writes the leader's records, fenced.** Several replicas may serve the edge of
//!   one stream; the holder of the consumers' lease ([`lease`]) runs the consumers
//!   ([`JetStreamLog::campaign`]). Every record of its consumers expects the leader subject's
//!   last sequence to be its own previous one (`Nats-Expected-Last-Subject-Sequence`). When it
//!   takes the lease over from a holder that stopped renewing it, which may be paused rather
//!   than dead (a stopped VM), it first publishes a [`LEADER_ROUTE`] record there; the former
//!   leader, waking up, finds that record in its way: the stream refuses its write and it
//!   stops. So every effect a new leader must know about (a send attempt is written *before*
//!   the call) is in the log before the new leader reads it, and nothing of the old leader's
//!   comes after. A holder that stops cleanly drains its appends before it releases the lease,
//!   and a replica's previous process is gone (the state directory's lock): neither needs the
//!   record, so one daemon's log holds only its own records. A new leader's consumers start
//!   from its own local state and learn from the log what the previous leader did
//!   ([`crate::consumers::Consumer::learn_effects`]), up to the end of the log read when it
//!   took the lease, not the last polled one.
//!
//! # Threads
//!
//! The engine owns a small tokio runtime. The [`Log`] trait is synchronous (consumers run on
//! their own threads), so reads are sent to that runtime and waited for on a plain channel,
//! which works from any thread, inside another runtime or not.

mod campaign;
pub mod connect;
pub mod flusher;
pub mod leader;
pub mod lease;
pub mod options;
pub mod restore;
mod shared;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::watch;

use super::{AppendTicket, Leadership, Log, LogError, LogStats, PruneReport};
use crate::event::{Event, Seq, Verification, Verified};
use crate::metrics::Metrics;

use connect::connect;
use flusher::{open_state_db, StateFlusher};
use leader::{LeaderPublish, Role};
use restore::{get_one, restore_in_order};
use shared::{js_err, on, raise, sled_err, READ_CONCURRENCY};

pub use options::{Credentials, JetStreamOptions};
pub use shared::{leader_subject, LAST_SEQ_POLL, LEADER_ROUTE};

/// The JetStream-backed [`Log`].
pub struct JetStreamLog {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    subject: String,
    ack_timeout: Duration,
    /// This process's prefix for `Nats-Msg-Id`, and the counter after it.
    instance: String,
    next_id: AtomicU64,
    open: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    last_seq: watch::Sender<Seq>,
    last_seq_rx: watch::Receiver<Seq>,
    state_db: sled::Db,
    flusher: StateFlusher,
    cursors: super::sled::CursorTree,
    state: crate::state::SledState,
    metrics: Metrics,
    /// Set when the consumers' lease is lost (see [`lease`]).
    failed: watch::Sender<Option<String>>,
    /// The consumers' lease, once taken (released by `close`).
    lease: Arc<tokio::sync::Mutex<Option<lease::Lease>>>,
    /// `<subject>.leader`.
    leader_subject: String,
    /// Guards the leader subject; held across each leader's publish, so they are in order.
    role: Arc<tokio::sync::Mutex<Role>>,
    /// Set once [`Self::campaign`] has started: the leader's records take the fenced path.
    elected: Arc<AtomicBool>,
    leadership: watch::Sender<Leadership>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("stream", &self.stream.cached_info().config.name)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl JetStreamLog {
    /// Connects, creates or checks the stream, opens the local state database in
    /// `state_dir`, and starts following the stream's last sequence.
    pub fn open(
        options: &JetStreamOptions,
        state_dir: &Path,
        metrics: Metrics,
    ) -> Result<JetStreamLog, LogError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hooklog-jetstream")
            .enable_all()
            .build()
            .map_err(|e| LogError::Storage(format!("cannot start the JetStream runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let opts = options.clone();
        let (client, js, stream) = on(&handle, async move { connect(&opts).await })?;
        let last = stream.cached_info().state.last_sequence;

        let state_db = open_state_db(state_dir, options.state_cache_capacity)?;
        let cursors = super::sled::CursorTree(state_db.open_tree("cursors").map_err(sled_err)?);
        let state = crate::state::SledState::new(state_db.clone());

        metrics.last_seq.set(last as i64);
        let (last_seq, last_seq_rx) = watch::channel(Seq(last));
        let open = Arc::new(AtomicBool::new(true));
        handle.spawn(follow_last_seq(
            stream.clone(),
            last_seq.clone(),
            open.clone(),
            metrics.clone(),
        ));
        let instance = format!("{:016x}", rand::random::<u64>());
        Ok(JetStreamLog {
            runtime: Mutex::new(Some(runtime)),
            handle,
            client,
            js,
            stream,
            subject: options.subject.clone(),
            ack_timeout: options.ack_timeout,
            instance,
            next_id: AtomicU64::new(0),
            open,
            in_flight: Arc::new(AtomicUsize::new(0)),
            last_seq,
            last_seq_rx,
            flusher: StateFlusher::start(state_db.clone())?,
            state_db,
            cursors,
            state,
            metrics,
            failed: watch::channel(None).0,
            lease: Arc::new(tokio::sync::Mutex::new(None)),
            leader_subject: leader_subject(&options.subject),
            role: Arc::new(tokio::sync::Mutex::new(Role::Unelected)),
            elected: Arc::new(AtomicBool::new(false)),
            leadership: watch::channel(Leadership::Leader).0,
        })
    }

    /// This data directory's replica id (`<hostname>:<random>`), made at its first election.
    pub fn replica_id(&self) -> Result<String, LogError> {
        let meta = self.state_db.open_tree("meta").map_err(sled_err)?;
        if let Some(id) = meta.get(b"replica_id").map_err(sled_err)? {
            return Ok(String::from_utf8_lossy(&id).into_owned());
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let id = format!("{host}:{:016x}", rand::random::<u64>());
        meta.insert(b"replica_id", id.as_bytes())
            .map_err(sled_err)?;
        self.state_db.flush().map_err(sled_err)?;
        Ok(id)
    }

    /// The last sequence known to be stored: the bound of every read.
    fn durable(&self) -> Seq {
        *self.last_seq_rx.borrow()
    }

    /// Publishes `payload` with `Nats-Msg-Id` `id` (exposed for tests of the duplicate
    /// window); the stream's acknowledgement.
    pub fn publish_with_id(
        &self,
        payload: Vec<u8>,
        id: String,
    ) -> Result<jetstream::publish::PublishAck, LogError> {
        let js = self.js.clone();
        let subject = self.subject.clone();
        on(&self.handle, async move {
            publish_once(&js, &subject, payload.into(), &id)
                .await
                .map_err(|e| js_err("publish", e))
        })
    }
}

async fn publish_once(
    js: &jetstream::Context,
    subject: &str,
    payload: bytes::Bytes,
    id: &str,
) -> Result<jetstream::publish::PublishAck, async_nats::Error> {
    let ack = js
        .send_publish(
            subject.to_owned(),
            PublishMessage::build().payload(payload).message_id(id),
        )
        .await?
        .await?;
    Ok(ack)
}

/// Polls the stream's last sequence, so that appends made elsewhere wake the readers here.
async fn follow_last_seq(
    mut stream: stream::Stream,
    last_seq: watch::Sender<Seq>,
    open: Arc<AtomicBool>,
    metrics: Metrics,
) {
    while open.load(Ordering::Acquire) {
        tokio::time::sleep(LAST_SEQ_POLL).await;
        if let Ok(info) = stream.info().await {
            raise(&last_seq, Seq(info.state.last_sequence), &metrics);
        }
    }
}

impl Log for JetStreamLog {
    fn append(&self, event: Verified) -> AppendTicket {
        if !self.open.load(Ordering::Acquire) {
            return AppendTicket::failed(LogError::WriterStopped);
        }
        let (done, ticket) = AppendTicket::channel();
        // The records only the consumers' leader writes go to the leader subject, fenced,
        // once this process takes part in an election (the daemon); tools and tests, which
        // hold none, publish everything on the main subject.
        let leader = (event.verification == Verification::Internal
            && self.elected.load(Ordering::Acquire))
        .then(|| LeaderPublish {
            js: self.js.clone(),
            stream: self.stream.clone(),
            subject: self.leader_subject.clone(),
            role: self.role.clone(),
            failed: self.failed.clone(),
            instance: self.instance.clone(),
        });
        let payload: bytes::Bytes = event.into_event(Seq(0)).encode().into();
        let id = format!(
            "{}-{}",
            self.instance,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let js = self.js.clone();
        let subject = self.subject.clone();
        let last_seq = self.last_seq.clone();
        let metrics = self.metrics.clone();
        let in_flight = self.in_flight.clone();
        let deadline = self.ack_timeout * 2;
        let flusher = self.flusher.clone();
        in_flight.fetch_add(1, Ordering::AcqRel);
        self.handle.spawn(async move {
            let started = Instant::now();
            let publish = async {
                if let Some(leader) = &leader {
                    return leader.publish(payload.clone(), &id, started + deadline).await;
                }
                // A lost acknowledgement is published again with the same id: the stream
                // stores it once and answers with the first copy's sequence.
                let mut result = publish_once(&js, &subject, payload.clone(), &id).await;
                while result.is_err() && started.elapsed() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    result = publish_once(&js, &subject, payload.clone(), &id).await;
                }
                result
                    .map(|ack| ack.sequence)
                    .map_err(|e| js_err("publish not acknowledged", e))
            };
            // State written before this append is made durable before the append is
            // acknowledged, as on sled (where both are in one database and one flush): the
            // sender's ledger entry must survive a kill once its attempt record is stored.
            // Started after the writes and run beside the publish, so it adds no round trip.
            let (published, flushed) = tokio::join!(publish, flusher.flush());
            let result = match (published, flushed) {
                (Ok(seq), Ok(_)) => {
                    let seq = Seq(seq);
                    raise(&last_seq, seq, &metrics);
                    Ok(seq)
                }
                (Ok(seq), Err(e)) => {
                    // Stored, but what the caller wrote before it may not be: not acknowledged.
                    raise(&last_seq, Seq(seq), &metrics);
                    metrics.append_failures.inc();
                    tracing::error!(error = %e, "local state database flush failed; answering 503");
                    Err(e)
                }
                (Err(e @ LogError::NotLeader(_)), _) => {
                    tracing::warn!(error = %e, "a record only the consumers' leader writes was refused");
                    Err(e)
                }
                (Err(e), _) => {
                    metrics.append_failures.inc();
                    tracing::error!(error = %e, "JetStream publish not acknowledged; answering 503");
                    Err(e)
                }
            };
            let _ = done.send(result);
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        ticket
    }

    fn read(&self, after: Seq, limit: usize) -> Result<Vec<Event>, LogError> {
        let durable = self.durable();
        let first = after.0.saturating_add(1);
        let last = durable.0.min(after.0.saturating_add(limit as u64));
        if first > last {
            return Ok(Vec::new());
        }
        let stream = self.stream.clone();
        on(&self.handle, async move {
            let got: Vec<Option<Event>> = futures_util::stream::iter(first..=last)
                .map(|seq| get_one(stream.clone(), Seq(seq)))
                .buffered(READ_CONCURRENCY)
                .try_collect()
                .await?;
            // A sequence below the stream's first was purged by retention: not a gap.
            Ok(got.into_iter().flatten().collect())
        })
    }

    fn get(&self, seq: Seq) -> Result<Option<Event>, LogError> {
        if seq.0 == 0 || seq > self.durable() {
            return Ok(None);
        }
        let stream = self.stream.clone();
        on(&self.handle, get_one(stream, seq))
    }

    fn stats(&self) -> Result<LogStats, LogError> {
        let stream = self.stream.clone();
        let info = on(&self.handle, async move {
            stream
                .get_info()
                .await
                .map_err(|e| js_err("stream info", e))
        })?;
        let s = info.state;
        Ok(LogStats {
            first_seq: if s.messages == 0 { 0 } else { s.first_sequence },
            last_seq: s.last_sequence,
            count: s.messages,
            bytes: s.bytes,
        })
    }

    /// In order, unlike concurrent [`Log::append`]s (each publishes from a task of its own,
    /// so two may reach the server in either order): see `restore.rs`.
    fn restore_events(&self, events: Vec<Event>) -> Result<Vec<Seq>, LogError> {
        if !self.open.load(Ordering::Acquire) {
            return Err(LogError::WriterStopped);
        }
        let first_id = self
            .next_id
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let (js, stream) = (self.js.clone(), self.stream.clone());
        let (subject, instance) = (self.subject.clone(), self.instance.clone());
        let seqs = on(&self.handle, async move {
            restore_in_order(&js, stream, &subject, &instance, first_id, events).await
        })?;
        if let Some(last) = seqs.last() {
            raise(&self.last_seq, *last, &self.metrics);
        }
        Ok(seqs)
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
        self.cursors.remove(consumer)
    }

    fn prune_before(&self, before: Seq) -> Result<PruneReport, LogError> {
        // The last stored record stays, as in every engine (JetStream would not reuse a
        // sequence anyway, but keeping it keeps `stats` meaningful).
        let bound = before.0.min(self.durable().0);
        if bound <= 1 {
            return Ok(PruneReport::default());
        }
        let stream = self.stream.clone();
        let purged = on(&self.handle, async move {
            stream
                .purge()
                .sequence(bound)
                .await
                .map_err(|e| js_err("purge", e))
        })?;
        Ok(PruneReport {
            pruned: purged.purged,
            first_seq: bound,
        })
    }

    fn watch_last_seq(&self) -> watch::Receiver<Seq> {
        self.last_seq_rx.clone()
    }

    fn is_writable(&self) -> bool {
        self.open.load(Ordering::Acquire)
            && self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failed.subscribe()
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }

    fn close(&self) -> Result<(), LogError> {
        self.open.store(false, Ordering::Release);
        // Appends already published get their acknowledgement (or their 503) first.
        let deadline = Instant::now() + self.ack_timeout * 3;
        while self.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Then the lease is released, so that a successor need not wait for it to expire and
        // need not fence this process out: nothing of it can be stored after this.
        let slot = self.lease.clone();
        let _ = on(&self.handle, async move {
            if let Some(lease) = slot.lock().await.take() {
                lease.release().await;
            }
            Ok(())
        });
        let client = self.client.clone();
        let _ = on(&self.handle, async move {
            client.flush().await.map_err(|e| js_err("flush", e))
        });
        let runtime = match self.runtime.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(runtime) = runtime {
            // Not `drop`: that would panic when close is called from inside another runtime.
            runtime.shutdown_background();
        }
        self.flusher.stop();
        self.state_db.flush().map_err(sled_err)?;
        Ok(())
    }

    fn state(&self) -> Arc<dyn crate::state::StateStore> {
        Arc::new(self.state.clone())
    }
}

impl Drop for JetStreamLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
pub(crate) mod tests;
