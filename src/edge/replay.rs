//! No replay is stored: the edge remembers every webhook it stored, and a byte-identical (or
//! merely re-encoded) copy of one is answered as the first was answered, without a new record.
//!
//! A signed request captured on the way in stays valid for the signature window (±300 s for
//! Quo), and a Twilio signature has no timestamp at all, so a capture can be replayed at will.
//! Dedup marks such copies, but only after they are stored: replayed at line rate they would
//! fill the disk. This module stops them before the append.
//!
//! # The replay key
//!
//! [`ReplayKey`] names what the provider signed, not the bytes of its headers: each scheme
//! lets a sender vary unsigned parts (add a junk `v1,…` entry to `webhook-signature` or a
//! second entry to `openphone-signature`, drop base64 padding, reorder a Twilio form body,
//! whose signature covers the sorted parameters), and a key over the raw bytes would let
//! every such variant through as new. The key is the first 16 bytes of a SHA-256 over a
//! domain tag and length-prefixed fields:
//!
//! | record | fields |
//! |---|---|
//! | Quo Standard Webhooks | `webhook-id`, `webhook-timestamp`, body (exactly what the `v1` MAC covers) |
//! | Quo legacy | the matching `hmac;1` entry's timestamp text and decoded MAC |
//! | Twilio | stored route (path and query: the signed URL), decoded `x-twilio-signature` |
//! | SalesMsg | stored route (its secret redacted), body (SalesMsg signs nothing) |
//!
//! It is a function of what the log stores ([`Verified`] before the append, the [`Event`]
//! after it), plus the configured Quo keys for a legacy header with several entries (the
//! key is the entry that one of them verifies; a single entry needs no key). So the cache can
//! be rebuilt from the log at start ([`ReplayCache::rebuild`]). Only webhook records have
//! keys: backfill, operator and hooklog's own records never reach the edge. A provider's
//! genuine retry is signed anew (a new timestamp, for Quo a new signature) and has a new
//! key, so it is stored, and dedup marks it.
//!
//! # The cache
//!
//! [`ReplayCache`] maps a key to its expiry and state, in [`SHARDS`] shards each behind its
//! own mutex (a lookup takes one uncontended lock and allocates nothing). Invariants:
//! - A key is **pending** from just before its append until the append resolves, and
//!   **stored** (with the record's sequence) only once the append succeeded. A failed
//!   append forgets the key, so the provider's retry of a 503 is stored. A twin that arrives
//!   while its key is pending waits (at most [`TWIN_WAIT`]) for the outcome, then answers as
//!   a replay or appends itself: two identical requests at once never make two records.
//! - An entry expires at the record's receipt time plus the window (the longer of the
//!   signature tolerance and the dedup window), in event time: the receipt time of the
//!   request that looks it up.
//! - At most `[server] replay_cache_entries` entries, split evenly over the shards: a full
//!   shard drops its expired entries, then its oldest eighth by expiry (counted in
//!   `hooklog_replay_cache_evicted_total`). A replay of a forgotten record is stored again
//!   and dedup marks it. Pending entries are never dropped.
//!
//! # The snapshot
//!
//! Rebuilding from the log reads every record of the window, and reading ~100 000 records
//! through sled raises the process's resident memory for good. So a graceful stop (and a
//! stop for a failure, when the log can still be read) writes the cache's stored entries to
//! the consumer state store ([`Log::state`], tree `consumer/edge/replay`), and the next start
//! loads them and reads from the log only the records after the snapshot's sequence
//! ([`ReplayCache::restore`]). Layout:
//!
//! | key | value |
//! |---|---|
//! | `c` + chunk number (`u32` big-endian) | format byte `1`, entry count (`u32` BE), then per entry: key (16 bytes), expiry (µs, `i64` BE), sequence (`u64` BE) — [`SNAPSHOT_CHUNK`] entries at most |
//! | `h` (written last) | format byte `1`, the log's last sequence when it was taken (`u64` BE), the window (µs, `i64` BE), chunk count (`u32` BE), entry count (`u64` BE) |
//!
//! Invariants:
//! - **Correctness does not depend on the snapshot's freshness.** The log's last sequence is
//!   read before the entries are collected, so every record up to it was stored (and its key
//!   settled) by then, except an append still unresolved at the stop (its key is pending, not
//!   saved; a replay of it is stored again and dedup marks it). Keys of records after that
//!   sequence come from the log at the next start, within the window and the bound, as a
//!   rebuild reads them.
//! - **A snapshot is whole or absent.** Writing one clears the tree, writes the chunks, then
//!   the header, then flushes; a start finds the header last written, and checks that every
//!   chunk it names is there and decodes. A missing header means no snapshot; anything that
//!   does not decode, a sequence beyond the log's last (another log), or another window (the
//!   configuration changed) is ignored with a warning and the cache is rebuilt from the log:
//!   a snapshot never stops a start.
//! - **It is kept after loading.** A crash later finds it again and reads the log from its
//!   sequence on, which is the tail a rebuild would read anyway (bounded by the window and
//!   the bound), and its expired entries are dropped; the next graceful stop replaces it.
//! - On JetStream the state store is the replica's own: the snapshot holds the keys this
//!   replica stored or rebuilt, as its cache did while it ran. Records another replica
//!   appended up to the snapshot's sequence are not read again; dedup marks a replay of one.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;

use crate::event::{Event, Micros, Seq, Source, Verification, Verified};
use crate::log::{AppendTicket, Log, LogError};
use crate::signature::{self, HmacKey};
use crate::state::StateError;

use super::verifier::Verifier;

/// Shards of the cache: enough that two cores rarely meet on one lock.
pub const SHARDS: usize = 16;

/// How long a request waits for the append of its identical twin before it gives up with a
/// 503 (the provider retries). Far above an append's normal latency (milliseconds); only a
/// stalled log reaches it.
pub const TWIN_WAIT: Duration = Duration::from_secs(10);

/// Records read per batch when the cache is rebuilt from the log.
const REBUILD_BATCH: usize = 1024;

/// Entries per chunk of the snapshot (32 bytes each: a value of ~128 KiB).
pub const SNAPSHOT_CHUNK: usize = 4096;

/// The snapshot's owner and tree in the state store (`consumer/edge/replay`).
const SNAPSHOT_OWNER: &str = "edge";
const SNAPSHOT_TREE: &str = "replay";

/// The snapshot's format byte, first in the header and in every chunk.
const SNAPSHOT_FORMAT: u8 = 1;

/// Bytes of one snapshot entry: key, expiry, sequence.
const SNAPSHOT_ENTRY: usize = 16 + 8 + 8;

/// Bytes of the snapshot's header value.
const SNAPSHOT_HEADER: usize = 1 + 8 + 8 + 4 + 8;

/// What the provider signed, in 128 bits (see the module docs for the fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 16]);

/// The parts of a record the key is computed from: a [`Verified`] and an [`Event`] alike.
struct Signed<'a> {
    source: Source,
    route: &'a str,
    headers: &'a [(String, String)],
    body: &'a [u8],
    verification: Verification,
}

impl Signed<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// SHA-256 over a domain tag and length-prefixed fields, so that no two field lists hash
/// the same input.
fn digest(tag: &str, fields: &[&[u8]]) -> ReplayKey {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    for f in fields {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f);
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    ReplayKey(out)
}

impl ReplayKey {
    /// The key of a request about to be appended; `None` for a record that is not a webhook
    /// (or, which verification rules out, one whose signature cannot be read).
    pub fn of_verified(v: &Verified, verifier: &Verifier) -> Option<ReplayKey> {
        ReplayKey::of(
            &Signed {
                source: v.source,
                route: &v.route,
                headers: &v.headers,
                body: &v.body,
                verification: v.verification,
            },
            verifier.quo_keys(),
        )
    }

    /// The key of a stored record: the same as that of the [`Verified`] it was made from,
    /// as long as the Quo keys are the same (see [`ReplayKey::of_verified`]).
    pub fn of_event(e: &Event, verifier: &Verifier) -> Option<ReplayKey> {
        ReplayKey::of(
            &Signed {
                source: e.source,
                route: &e.route,
                headers: &e.headers,
                body: &e.body,
                verification: e.verification,
            },
            verifier.quo_keys(),
        )
    }

    fn of(s: &Signed<'_>, quo_keys: &[HmacKey]) -> Option<ReplayKey> {
        if !s.source.is_webhook() {
            return None;
        }
        match (s.source, s.verification) {
            (Source::Quo, Verification::QuoStandard { .. }) => Some(digest(
                "hooklog/replay/quo-standard",
                &[
                    s.header("webhook-id")?.as_bytes(),
                    s.header("webhook-timestamp")?.as_bytes(),
                    s.body,
                ],
            )),
            (Source::Quo, Verification::QuoLegacy { key }) => {
                let (ts, mac) = legacy_entry(
                    s.header("openphone-signature")?,
                    s.body,
                    quo_keys,
                    usize::from(key),
                )?;
                Some(digest("hooklog/replay/quo-legacy", &[ts.as_bytes(), &mac]))
            }
            (Source::Twilio, Verification::Twilio { .. }) => {
                let sig = signature::decode_mac::<20>(s.header("x-twilio-signature")?.trim())?;
                Some(digest("hooklog/replay/twilio", &[s.route.as_bytes(), &sig]))
            }
            (Source::SalesMsg, Verification::SalesMsgSecret { .. }) => Some(digest(
                "hooklog/replay/salesmsg",
                &[s.route.as_bytes(), s.body],
            )),
            // A webhook source with another verification is not something the edge makes.
            _ => None,
        }
    }
}

/// The `hmac;1` entry of an `openphone-signature` header that verified: the only one when
/// there is one (verification succeeded, so it matched), else the first that the record's
/// key (`hint`), or failing that any configured key, verifies over `body`. Entries are
/// parsed as [`signature::quo_legacy`] parses them; others are skipped.
fn legacy_entry<'h>(
    header: &'h str,
    body: &[u8],
    keys: &[HmacKey],
    hint: usize,
) -> Option<(&'h str, [u8; 32])> {
    let mut entries = header.trim().split(',').filter_map(|entry| {
        let mut fields = entry.trim().split(';');
        let (scheme, version, ts, mac) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if fields.next().is_some() || scheme != "hmac" || version != "1" {
            return None;
        }
        Some((ts, signature::decode_mac::<32>(mac)?))
    });
    let first = entries.next()?;
    let Some(second) = entries.next() else {
        return Some(first);
    };
    let all: Vec<(&str, [u8; 32])> = [first, second].into_iter().chain(entries).collect();
    let order = keys.get(hint).into_iter().chain(
        keys.iter()
            .enumerate()
            .filter(|(i, _)| *i != hint)
            .map(|(_, k)| k),
    );
    for key in order {
        if key.is_empty() {
            continue;
        }
        for (ts, mac) in &all {
            let expected = signature::hmac_sha256(key, &[ts.as_bytes(), b".", body]);
            if signature::ct_eq(&expected, mac) {
                return Some((ts, *mac));
            }
        }
    }
    None
}

/// An entry's state: [`PENDING`], [`PENDING_WAITED`] (a twin waits for it), or the
/// sequence of the stored record (sequences start at 1 and stay far below both).
const PENDING: u64 = 0;
const PENDING_WAITED: u64 = u64::MAX;

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Receipt time of the record plus the window, in µs.
    expires: i64,
    /// [`PENDING`], [`PENDING_WAITED`] or the record's sequence.
    state: u64,
}

impl Slot {
    fn is_pending(self) -> bool {
        self.state == PENDING || self.state == PENDING_WAITED
    }
}

/// Keys are SHA-256 output already: their first eight bytes are as good a hash as any.
#[derive(Clone, Copy, Default)]
struct KeyHash;

#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 16]` hashes as its length, then its bytes: keep the first eight of the bytes.
        if bytes.len() >= 8 {
            let mut first = [0u8; 8];
            first.copy_from_slice(&bytes[..8]);
            self.0 = u64::from_le_bytes(first);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }
}

struct Entries {
    slots: HashMap<[u8; 16], Slot, KeyHash>,
    /// When (event time, µs) expired entries are next dropped.
    next_sweep: i64,
}

struct Shard {
    entries: Mutex<Entries>,
    /// Wakes twins waiting for a pending key of this shard.
    settled: Notify,
}

/// What [`ReplayCache::step`] found.
enum Step {
    /// The key is stored: the request is a replay of record `Seq`.
    Stored(Seq),
    /// The key was free and is now pending for the caller.
    Reserved,
    /// Another request holds the key pending.
    Pending,
}

/// The edge's memory of what it stored (see the module docs).
pub struct ReplayCache {
    shards: Box<[Shard]>,
    /// `[server] replay_cache_entries`: how many of the log's newest records a rebuild reads.
    bound: usize,
    /// Entries per shard at most (the bound split evenly, rounded up).
    shard_bound: usize,
    /// How long a key is remembered, in µs of event time.
    window: i64,
    /// `hooklog_replay_cache_evicted_total`.
    evicted: prometheus::IntCounter,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("shard_bound", &self.shard_bound)
            .field("window_us", &self.window)
            .finish_non_exhaustive()
    }
}

/// What [`ReplayCache::append_once`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The request was new and is now stored as this record.
    New(Seq),
    /// The request is a replay of this stored record: nothing was appended.
    Replay(Seq),
}

/// Why [`ReplayCache::append_once`] stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The append failed; the key is forgotten, so a retry is stored.
    #[error(transparent)]
    Append(#[from] LogError),
    /// An identical request's append did not resolve within [`TWIN_WAIT`]; answer 503 so the
    /// sender retries (by then it has resolved either way).
    #[error("an identical request is still being appended after {} s", TWIN_WAIT.as_secs())]
    TwinStillPending,
}

/// Why a snapshot could not be written or used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The log's statistics could not be read (the snapshot needs its last sequence).
    #[error(transparent)]
    Log(#[from] LogError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The stored snapshot does not decode, or belongs to another log or window; it is
    /// ignored and the cache rebuilt from the log.
    #[error("replay cache snapshot unusable: {0}")]
    Unusable(String),
}

/// What [`ReplayCache::save_snapshot`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// Entries written.
    pub entries: u64,
    /// The log's last sequence it covers.
    pub seq: u64,
}

/// What [`ReplayCache::restore`] did.
#[derive(Debug, Default)]
pub struct Restored {
    /// Entries loaded from the snapshot (expired ones not counted); 0 without one.
    pub loaded: u64,
    /// The snapshot's sequence, if one was used.
    pub snapshot_seq: Option<u64>,
    /// Why a stored snapshot was not used (the cache was rebuilt from the log instead).
    pub ignored: Option<SnapshotError>,
    /// What was read from the log after the snapshot (or the whole window without one).
    pub rebuilt: Rebuilt,
}

/// What a rebuild from the log found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Records read.
    pub read: u64,
    /// Keys remembered (webhook records inside the window).
    pub remembered: u64,
    /// Records that could not be decoded (skipped; the consumers dead-letter them).
    pub corrupt: u64,
}

impl ReplayCache {
    /// An empty cache of at most `entries` keys (at least one per shard), each remembered for
    /// `window` of event time.
    pub fn new(entries: usize, window: Duration, evicted: prometheus::IntCounter) -> ReplayCache {
        let shard_bound = entries.div_ceil(SHARDS).max(1);
        ReplayCache {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    entries: Mutex::new(Entries {
                        slots: HashMap::with_hasher(KeyHash),
                        next_sweep: i64::MIN,
                    }),
                    settled: Notify::new(),
                })
                .collect(),
            bound: entries.max(1),
            shard_bound,
            window: i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
            evicted,
        }
    }

    /// The window of a configuration: the longer of the Quo signature tolerance and the dedup
    /// window, so that a capture is remembered for as long as it verifies and for as long as
    /// dedup would remember its record.
    pub fn window_for(tolerance_secs: u64, dedup_ttl_hours: u64) -> Duration {
        Duration::from_secs(tolerance_secs.max(dedup_ttl_hours.saturating_mul(3600)))
    }

    /// Keys held now (pending included, expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(&s.entries).slots.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &ReplayKey) -> &Shard {
        // Bytes 8.. are independent of the eight the hash map uses.
        &self.shards[usize::from(key.0[8]) % SHARDS]
    }

    /// Looks `key` up at event time `now` and reserves it when it is free.
    fn step(&self, key: &ReplayKey, now: Micros) -> Step {
        let mut e = lock(&self.shard(key).entries);
        if let Some(slot) = e.slots.get_mut(&key.0) {
            if slot.expires > now.0 {
                if !slot.is_pending() {
                    return Step::Stored(Seq(slot.state));
                }
                slot.state = PENDING_WAITED;
                return Step::Pending;
            }
        }
        self.make_room(&mut e, now);
        e.slots.insert(
            key.0,
            Slot {
                expires: now.0.saturating_add(self.window),
                state: PENDING,
            },
        );
        Step::Reserved
    }

    /// Settles a pending key: stored as `seq`, or forgotten (`None`: the append failed).
    fn settle(&self, key: &ReplayKey, outcome: Option<Seq>) {
        let shard = self.shard(key);
        let waited = {
            let mut e = lock(&shard.entries);
            match e.slots.get_mut(&key.0) {
                Some(slot) if slot.is_pending() => {
                    let waited = slot.state == PENDING_WAITED;
                    match outcome {
                        Some(seq) => slot.state = seq.0,
                        None => {
                            e.slots.remove(&key.0);
                        }
                    }
                    waited
                }
                _ => false,
            }
        };
        if waited {
            shard.settled.notify_waiters();
        }
    }

    /// Remembers a stored record (a rebuild): `received_at` is its receipt time. A key
    /// already held keeps its first record.
    pub fn remember(&self, key: ReplayKey, seq: Seq, received_at: Micros, now: Micros) {
        self.remember_until(key, seq, received_at.0.saturating_add(self.window), now);
    }

    /// [`ReplayCache::remember`] by expiry (µs of event time) rather than receipt time.
    fn remember_until(&self, key: ReplayKey, seq: Seq, expires: i64, now: Micros) {
        if expires <= now.0 {
            return;
        }
        let mut e = lock(&self.shard(&key).entries);
        if e.slots.get(&key.0).is_some_and(|s| s.expires > now.0) {
            return;
        }
        self.make_room(&mut e, now);
        e.slots.insert(
            key.0,
            Slot {
                expires,
                state: seq.0,
            },
        );
    }

    /// Drops expired entries when a sweep is due (every eighth of the window of event time)
    /// or the shard is full; then, if it is still full, its oldest eighth.
    fn make_room(&self, e: &mut Entries, now: Micros) {
        let full = e.slots.len() >= self.shard_bound;
        if now.0 >= e.next_sweep || full {
            e.slots.retain(|_, s| s.expires > now.0 || s.is_pending());
            e.next_sweep = now.0.saturating_add((self.window / 8).max(1));
        }
        if e.slots.len() < self.shard_bound {
            return;
        }
        // Still full of live entries: forget the oldest eighth (by expiry, which is receipt
        // time plus the window), not one at a time, so that the scan is paid once per
        // eighth of the bound.
        let mut expiries: Vec<i64> = e
            .slots
            .values()
            .filter(|s| !s.is_pending())
            .map(|s| s.expires)
            .collect();
        if expiries.is_empty() {
            return;
        }
        let nth = (self.shard_bound / 8).min(expiries.len() - 1);
        let (older, cutoff, _) = expiries.select_nth_unstable(nth);
        let cutoff = *cutoff;
        // Everything older than the cutoff goes, and of the entries that expire exactly at
        // it only as many as make up the eighth: many keys can share one expiry (a rebuild
        // of records received in the same microsecond), and a tie must not empty the shard.
        let mut ties = nth + 1 - older.iter().filter(|&&x| x < cutoff).count();
        let before = e.slots.len();
        e.slots.retain(|_, s| {
            if s.is_pending() || s.expires > cutoff {
                return true;
            }
            if s.expires == cutoff && ties == 0 {
                return true;
            }
            if s.expires == cutoff {
                ties -= 1;
            }
            false
        });
        self.evicted.inc_by((before - e.slots.len()) as u64);
    }

    /// Appends `verified` unless it is a replay of a stored record (see the module docs). A
    /// request without a key (not a webhook) is appended as it is.
    pub async fn append_once(
        self: &Arc<Self>,
        verifier: &Verifier,
        log: &dyn Log,
        verified: Verified,
    ) -> Result<Appended, ReplayError> {
        let Some(key) = ReplayKey::of_verified(&verified, verifier) else {
            return Ok(Appended::New(log.append(verified).await?));
        };
        let now = verified.received_at;
        let deadline = tokio::time::Instant::now() + TWIN_WAIT;
        loop {
            match self.step(&key, now) {
                Step::Stored(seq) => return Ok(Appended::Replay(seq)),
                Step::Reserved => break,
                Step::Pending => {}
            }
            // Register for the wake-up first, then look again: a twin that settles between
            // the two looks is seen by the second, one that settles later wakes us.
            let settled = self.shard(&key).settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            match self.step(&key, now) {
                Step::Stored(seq) => return Ok(Appended::Replay(seq)),
                Step::Reserved => break,
                Step::Pending => {}
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return Err(ReplayError::TwinStillPending);
            }
        }
        let reservation = Reservation {
            cache: Some(self.clone()),
            key,
        };
        let mut append = InFlight {
            reservation: Some(reservation),
            ticket: Some(log.append(verified)),
        };
        let result = match append.ticket.as_mut() {
            Some(ticket) => ticket.await,
            // Set just above; `None` only after this point.
            None => Err(LogError::WriterStopped),
        };
        append.ticket = None;
        if let Some(r) = append.reservation.take() {
            r.settle(result.as_ref().ok().copied());
        }
        Ok(Appended::New(result?))
    }

    /// Fills the cache from the log's tail (blocking: run it off the async threads): the
    /// records received within the window before `now`, at most as many as the cache holds
    /// (the newest). Records that cannot be decoded are skipped.
    pub fn rebuild(
        &self,
        log: &dyn Log,
        verifier: &Verifier,
        now: Micros,
    ) -> Result<Rebuilt, LogError> {
        self.rebuild_after(log, verifier, now, Seq(0))
    }

    /// [`ReplayCache::rebuild`] reading only the records after `known` (those up to it are
    /// in the cache already).
    fn rebuild_after(
        &self,
        log: &dyn Log,
        verifier: &Verifier,
        now: Micros,
        known: Seq,
    ) -> Result<Rebuilt, LogError> {
        let mut report = Rebuilt::default();
        let stats = log.stats()?;
        if stats.count == 0 {
            return Ok(report);
        }
        let in_window = log.seq_at_or_after(Micros(now.0.saturating_sub(self.window)))?;
        let newest = stats
            .last_seq
            .saturating_sub(self.bound as u64)
            .saturating_add(1);
        let mut after = Seq(in_window
            .0
            .max(newest)
            .max(stats.first_seq)
            .saturating_sub(1)
            .max(known.0));
        while after.0 < stats.last_seq {
            let batch = match log.read(after, REBUILD_BATCH) {
                Ok(batch) => batch,
                Err(LogError::Corrupt { seq, .. }) if seq > after => {
                    // Read up to the damaged record, then past it.
                    report.corrupt += 1;
                    let good = log.read(after, (seq.0 - after.0 - 1) as usize)?;
                    self.remember_all(&good, verifier, now, &mut report);
                    after = seq;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(last) = batch.last() else { break };
            after = last.seq;
            self.remember_all(&batch, verifier, now, &mut report);
        }
        Ok(report)
    }

    /// Writes the stored entries and the log's last sequence to the state store (blocking),
    /// replacing any earlier snapshot (see the module docs). Run it once the listeners have
    /// drained, so that nothing settles after it.
    pub fn save_snapshot(&self, log: &dyn Log) -> Result<Saved, SnapshotError> {
        // First the sequence, then the entries: every record up to it is settled by now.
        let seq = log.stats()?.last_seq;
        let tree = log.state().tree(SNAPSHOT_OWNER, SNAPSHOT_TREE)?;
        tree.clear()?;
        let mut chunk = Vec::with_capacity(5 + SNAPSHOT_CHUNK * SNAPSHOT_ENTRY);
        let mut in_chunk = 0u32;
        let mut chunks = 0u32;
        let mut entries = 0u64;
        let mut flush_chunk = |chunk: &mut Vec<u8>, in_chunk: &mut u32| {
            if *in_chunk == 0 {
                return Ok::<(), SnapshotError>(());
            }
            chunk[1..5].copy_from_slice(&in_chunk.to_be_bytes());
            tree.insert(&chunk_key(chunks), chunk)?;
            chunks += 1;
            *in_chunk = 0;
            Ok(())
        };
        for shard in self.shards.iter() {
            // Copied out so that the lock is not held across the store's writes.
            let stored: Vec<([u8; 16], Slot)> = lock(&shard.entries)
                .slots
                .iter()
                .filter(|(_, s)| !s.is_pending())
                .map(|(k, s)| (*k, *s))
                .collect();
            for (key, slot) in stored {
                if in_chunk == 0 {
                    chunk.clear();
                    chunk.push(SNAPSHOT_FORMAT);
                    chunk.extend_from_slice(&[0; 4]);
                }
                chunk.extend_from_slice(&key);
                chunk.extend_from_slice(&slot.expires.to_be_bytes());
                chunk.extend_from_slice(&slot.state.to_be_bytes());
                in_chunk += 1;
                entries += 1;
                if in_chunk as usize == SNAPSHOT_CHUNK {
                    flush_chunk(&mut chunk, &mut in_chunk)?;
                }
            }
        }
        flush_chunk(&mut chunk, &mut in_chunk)?;
        let mut header = Vec::with_capacity(SNAPSHOT_HEADER);
        header.push(SNAPSHOT_FORMAT);
        header.extend_from_slice(&seq.to_be_bytes());
        header.extend_from_slice(&self.window.to_be_bytes());
        header.extend_from_slice(&chunks.to_be_bytes());
        header.extend_from_slice(&entries.to_be_bytes());
        tree.insert(HEADER_KEY, &header)?;
        tree.flush()?;
        Ok(Saved { entries, seq })
    }

    /// Fills the cache at start (blocking): from the snapshot plus the log's records after
    /// it when a usable snapshot exists, else from the log's tail as [`ReplayCache::rebuild`]
    /// does. A snapshot that cannot be used is reported in [`Restored::ignored`], never an
    /// error; only a log that cannot be read is.
    pub fn restore(
        &self,
        log: &dyn Log,
        verifier: &Verifier,
        now: Micros,
    ) -> Result<Restored, LogError> {
        let mut restored = Restored::default();
        let mut known = Seq(0);
        match self.load_snapshot(log, now) {
            Ok(None) => {}
            Ok(Some((seq, loaded))) => {
                restored.snapshot_seq = Some(seq);
                restored.loaded = loaded;
                known = Seq(seq);
            }
            Err(e) => {
                // Whatever was loaded before the fault is dropped: a rebuild starts clean.
                self.clear();
                restored.ignored = Some(e);
            }
        }
        restored.rebuilt = self.rebuild_after(log, verifier, now, known)?;
        Ok(restored)
    }

    /// Loads the snapshot, if there is one: its sequence and the entries loaded.
    fn load_snapshot(
        &self,
        log: &dyn Log,
        now: Micros,
    ) -> Result<Option<(u64, u64)>, SnapshotError> {
        let tree = log.state().tree(SNAPSHOT_OWNER, SNAPSHOT_TREE)?;
        let Some(header) = tree.get(HEADER_KEY)? else {
            return Ok(None);
        };
        let unusable = |m: String| SnapshotError::Unusable(m);
        if header.len() != SNAPSHOT_HEADER || header[0] != SNAPSHOT_FORMAT {
            return Err(unusable(format!(
                "header of {} bytes, format {:?} (expected {SNAPSHOT_HEADER} bytes, format \
                 {SNAPSHOT_FORMAT})",
                header.len(),
                header.first()
            )));
        }
        let seq = be_u64(&header[1..9]);
        let window = be_u64(&header[9..17]) as i64;
        let chunks = be_u32(&header[17..21]);
        let entries = be_u64(&header[21..29]);
        if window != self.window {
            return Err(unusable(format!(
                "taken with a window of {} s, now {} s (the configuration changed)",
                window / 1_000_000,
                self.window / 1_000_000
            )));
        }
        let last = log.stats()?.last_seq;
        if seq > last {
            return Err(unusable(format!(
                "it covers the log up to sequence {seq}, but the log ends at {last} (another \
                 log, or one restored from an older copy)"
            )));
        }
        let mut read = 0u64;
        let mut loaded = 0u64;
        for c in 0..chunks {
            let Some(chunk) = tree.get(&chunk_key(c))? else {
                return Err(unusable(format!("chunk {c} of {chunks} is missing")));
            };
            if chunk.len() < 5 || chunk[0] != SNAPSHOT_FORMAT {
                return Err(unusable(format!(
                    "chunk {c} has a bad format byte or length"
                )));
            }
            let n = be_u32(&chunk[1..5]) as usize;
            let body = &chunk[5..];
            if n == 0 || n > SNAPSHOT_CHUNK || body.len() != n * SNAPSHOT_ENTRY {
                return Err(unusable(format!(
                    "chunk {c} says {n} entries in {} bytes",
                    body.len()
                )));
            }
            for e in body.chunks_exact(SNAPSHOT_ENTRY) {
                let mut key = [0u8; 16];
                key.copy_from_slice(&e[..16]);
                let expires = be_u64(&e[16..24]) as i64;
                let state = be_u64(&e[24..32]);
                // A stored entry's sequence is a record of the log it covers.
                if state == PENDING || state == PENDING_WAITED || state > seq {
                    return Err(unusable(format!(
                        "chunk {c} holds sequence {state}, outside 1..={seq}"
                    )));
                }
                read += 1;
                if expires > now.0 {
                    self.remember_until(ReplayKey(key), Seq(state), expires, now);
                    loaded += 1;
                }
            }
        }
        if read != entries {
            return Err(unusable(format!(
                "{read} entries in its chunks, {entries} in its header"
            )));
        }
        Ok(Some((seq, loaded)))
    }

    /// Forgets every entry (a snapshot that failed halfway through loading).
    fn clear(&self) {
        for shard in self.shards.iter() {
            lock(&shard.entries).slots.clear();
        }
    }

    fn remember_all(&self, events: &[Event], verifier: &Verifier, now: Micros, r: &mut Rebuilt) {
        for e in events {
            r.read += 1;
            if let Some(key) = ReplayKey::of_event(e, verifier) {
                if e.received_at.0.saturating_add(self.window) > now.0 {
                    self.remember(key, e.seq, e.received_at, now);
                    r.remembered += 1;
                }
            }
        }
    }
}

/// The key of a snapshot chunk.
fn chunk_key(n: u32) -> [u8; 5] {
    let mut k = [b'c'; 5];
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The key of the snapshot's header.
const HEADER_KEY: &[u8] = b"h";

/// Callers pass exactly eight bytes (slices of checked lengths).
fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Callers pass exactly four bytes (slices of checked lengths).
fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// [`ReplayCache::save_snapshot`] at a stop, logged. A snapshot that cannot be written does
/// not fail the stop: the next start rebuilds from the log instead (or from an older
/// snapshot and the log after it, which is as correct).
pub fn save_logged(cache: &ReplayCache, log: &dyn Log) {
    let started = std::time::Instant::now();
    match cache.save_snapshot(log) {
        Ok(s) => tracing::info!(
            entries = s.entries,
            seq = s.seq,
            ms = started.elapsed().as_millis() as u64,
            "replay cache saved for the next start"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "the replay cache could not be saved: the next start rebuilds it from the log"
        ),
    }
}

/// [`ReplayCache::restore`] at start, logged. A log that cannot be read does not stop the
/// start: the cache then holds only what this process stores, and dedup still marks replays.
pub fn rebuild_logged(cache: &ReplayCache, log: &dyn Log, verifier: &Verifier) {
    let started = std::time::Instant::now();
    match cache.restore(log, verifier, Micros::now()) {
        Ok(r) => {
            if let Some(e) = &r.ignored {
                tracing::warn!(
                    error = %e,
                    "the replay cache's snapshot was ignored: rebuilding it from the log's \
                     tail instead (a slower start, nothing lost)"
                );
            }
            let r_seq = r.snapshot_seq.unwrap_or(0);
            tracing::info!(
                snapshot_loaded = r.loaded,
                snapshot_seq = r_seq,
                read = r.rebuilt.read,
                remembered = r.rebuilt.remembered,
                corrupt = r.rebuilt.corrupt,
                ms = started.elapsed().as_millis() as u64,
                "replay cache restored (snapshot, then the log after it)"
            );
        }
        Err(e) => tracing::warn!(
            error = %e,
            "the replay cache could not be rebuilt from the log: replays of records stored \
             before this start are stored again (dedup marks them)"
        ),
    }
}

/// A key held pending by one request; settling it (or dropping it: forgotten) wakes twins.
struct Reservation {
    cache: Option<Arc<ReplayCache>>,
    key: ReplayKey,
}

impl Reservation {
    fn settle(mut self, outcome: Option<Seq>) {
        if let Some(cache) = self.cache.take() {
            cache.settle(&self.key, outcome);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            cache.settle(&self.key, None);
        }
    }
}

/// An append in flight for a reserved key. If the request is dropped before the append
/// resolves (its client went away, a shutdown), the append still happens (a dropped ticket
/// does not cancel it), so its outcome must still settle the key: a task waits for it.
struct InFlight {
    reservation: Option<Reservation>,
    ticket: Option<AppendTicket>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let (Some(reservation), Some(ticket)) = (self.reservation.take(), self.ticket.take())
        else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let outcome = ticket.await.ok();
                reservation.settle(outcome);
            });
        }
        // Without a runtime the reservation is dropped: the key is forgotten, so a twin
        // appends itself rather than wait for an outcome nobody will report.
    }
}

/// The lock of a shard. A panic while it was held cannot leave an entry half-written (each
/// change is one insert, update or remove), so a poisoned lock is used as it is.
fn lock(m: &Mutex<Entries>) -> MutexGuard<'_, Entries> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
