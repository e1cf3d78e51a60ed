//! The dedup consumer: marks every record original or duplicate, so that downstream consumers
//! skip provider retries, backfilled copies of delivered events, and redeliveries.
//!
//! Each record has one or more dedup keys ([`crate::parse::Parsed::dedup_keys`]: a retry
//! shares one with its original, a backfilled copy shares one with its webhook twin, two
//! genuinely different events share none). A record is a duplicate of the earliest record
//! that holds any of its keys, if that record is within the window.
//!
//! The window is measured in event time, here the record's `received_at` (part of the log,
//! so a rewind computes the same verdicts): a key seen at time `t` expires at `t + ttl`
//! (72 h by default, longer than Quo's ~28 h retry schedule). Expired keys are pruned as
//! event time advances, so storage stays bounded by the traffic of one window.
//!
//! # The live window is in memory, its journal in sled
//!
//! Every record looks up each of its keys, so the keys live in a hash map (about 48 bytes
//! per key: a 128-bit digest of the key, the first sequence that claimed it, its expiry).
//! Looking keys up and writing them one by one in sled cost ~25 µs per record and made
//! dedup the bottleneck of a rewind. The map is made durable by a journal: each batch
//! writes **one** entry holding every claim the batch made, before its verdicts and before
//! `processed`; on open the journal is replayed in order into the map. A batch's claims
//! reach the map only once its journal entry is written, so a failed batch leaves the map as
//! the journal says it is, and the retry makes the same claims again.
//!
//! Digests are the first 16 bytes of SHA-256 of the key: a false match needs a 128-bit
//! collision (odds about 10⁻²⁶ for a million live keys), so no key string is kept.
//!
//! Key layout (trees of consumer `dedup`):
//!
//! | tree       | key                         | value                                              |
//! |------------|-----------------------------|----------------------------------------------------|
//! | `claims`   | last seq of the batch, BE   | `1`, then per claim: digest (16 B), first seq `u64` BE, expires-at µs `i64` BE |
//! | `verdicts` | seq `u64` BE                | `1` + original seq `u64` BE (duplicates only)      |
//! | `meta`     | `processed`                 | last seq handled, `u64` BE                         |
//!
//! Only duplicates get a verdict entry; other consumers read them through [`verdicts`].
//! Pruning drops expired claims from the map at most once per eighth of the window of event
//! time; a journal entry is deleted once every claim in it has expired before the
//! earliest record of the batch being handled (so a batch handled again after a crash finds
//! the same claims), which bounds storage to about 1.125 windows of claims.
//!
//! Exactly once per record: a batch handed again (the driver's cursor was lost in a crash)
//! skips the records up to `processed`, whose effects are complete. A journal entry after
//! `processed` is from a batch that failed part-way; it is dropped when the window is
//! reloaded, and that batch is decided again from the state before it. Deciding a record a
//! second time against a window that later records changed could differ (a later record may
//! have taken over a key that expired), which is why replays are skipped, not recomputed.

pub mod verdicts;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sha2::Digest as _;

use crate::consumers::{Batch, BatchError, Consumer, Record};
use crate::event::Seq;
use crate::state::{KvTree, StateError, StateStore};

use verdicts::{corrupt, PROCESSED};
pub use verdicts::{prune_verdicts_below, verdict, RangeVerdicts, Verdict, Verdicts};

/// The consumer's name (and cursor name).
pub const NAME: &str = "dedup";
/// Default window.
pub const DEFAULT_TTL_HOURS: u64 = 72;
/// Format byte of a journal entry.
const CLAIMS_V1: u8 = 1;
const CLAIM_LEN: usize = 32;

/// 128-bit digest of a dedup key.
type KeyDigest = [u8; 16];

/// Who holds a key: the first record that claimed it, and until when (event time, µs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Claim {
    first: u64,
    expires: i64,
}

/// The dedup consumer.
pub struct Dedup {
    claims: Arc<dyn KvTree>,
    verdicts: Arc<dyn KvTree>,
    meta: Arc<dyn KvTree>,
    /// Live keys (the journal replayed).
    window: HashMap<KeyDigest, Claim>,
    /// Journal entries still stored: key (last seq of their batch) → latest expiry in them.
    journal: BTreeMap<u64, i64>,
    /// The last record whose effects are all stored (`meta/processed`).
    processed: u64,
    /// A batch failed part-way: the window may hold claims the journal does not.
    stale: bool,
    ttl_micros: i64,
    /// Event time of the last prune (in memory: pruning only affects storage, never verdicts,
    /// because an expired key never matches).
    last_prune: i64,
}

/// Claims made by the batch being handled, seen by its later records but not yet journaled.
#[derive(Default)]
struct Staged {
    claims: HashMap<KeyDigest, Claim>,
    duplicates: Vec<(Seq, Verdict)>,
    pruned: bool,
}

impl Dedup {
    /// Opens its trees in `store` and loads the live window from the journal.
    pub fn new(store: &dyn StateStore, ttl_hours: u64) -> Result<Dedup, StateError> {
        let claims = store.tree(NAME, "claims")?;
        migrate_key_tree(store, claims.as_ref())?;
        let mut dedup = Dedup {
            claims,
            verdicts: store.tree(NAME, "verdicts")?,
            meta: store.tree(NAME, "meta")?,
            window: HashMap::new(),
            journal: BTreeMap::new(),
            processed: 0,
            stale: true,
            ttl_micros: i64::try_from(ttl_hours.saturating_mul(3_600_000_000)).unwrap_or(i64::MAX),
            last_prune: i64::MIN,
        };
        dedup.reload()?;
        Ok(dedup)
    }

    /// Rebuilds the window from storage: the journal entries of complete batches, in order.
    /// An entry after `processed` belongs to a batch that failed before its end; it is
    /// deleted, and the batch, handled again from the state before it, journals the same
    /// claims again.
    fn reload(&mut self) -> Result<(), StateError> {
        self.processed = Verdicts {
            verdicts: self.verdicts.clone(),
            meta: self.meta.clone(),
        }
        .processed()?
        .0;
        self.window.clear();
        self.journal.clear();
        let mut unfinished = Vec::new();
        let (window, journal, processed) = (&mut self.window, &mut self.journal, self.processed);
        crate::state::for_each(self.claims.as_ref(), &[], |k, v| {
            let seq = Seq::from_key(k).ok_or_else(|| corrupt("claims"))?;
            if seq.0 > processed {
                unfinished.push(seq);
                return Ok(true);
            }
            let mut latest = i64::MIN;
            for (digest, claim) in decode_claims(v)? {
                latest = latest.max(claim.expires);
                window.insert(digest, claim);
            }
            journal.insert(seq.0, latest);
            Ok(true)
        })?;
        for seq in unfinished {
            self.claims.remove(&seq.to_key())?;
        }
        self.stale = false;
        Ok(())
    }

    fn keys_of(record: Record<'_>) -> Vec<String> {
        let event = record.event;
        match record.parsed() {
            Ok(p) => p.dedup_keys.clone(),
            // A record that does not parse still dedups against an identical retry; the
            // consumers that need its content dead-letter it themselves.
            Err(_) => vec![format!(
                "body:unparsed:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&event.body))
            )],
        }
    }

    /// Decides the verdict of one record and stages its claims.
    fn process(&mut self, record: Record<'_>, staged: &mut Staged) -> Verdict {
        let event = record.event;
        let t = event.received_at.0;
        let keys: Vec<KeyDigest> = Self::keys_of(record).iter().map(|k| digest(k)).collect();
        let mut verdict = Verdict::Original;
        let mut found = Vec::with_capacity(keys.len());
        for key in &keys {
            let claim = staged
                .claims
                .get(key)
                .or_else(|| self.window.get(key))
                .copied();
            if let Some(Claim { first, expires }) = claim {
                if first < event.seq.0 && t <= expires {
                    // The earliest original wins when several keys match.
                    verdict = match verdict {
                        Verdict::Duplicate { of } if of <= first => verdict,
                        _ => Verdict::Duplicate { of: first },
                    };
                }
            }
            found.push(claim);
        }
        for (key, claim) in keys.iter().zip(found) {
            let take = match claim {
                None => true,
                // Replaying this very record: keep its claim as it is.
                Some(c) if c.first >= event.seq.0 => c.first > event.seq.0,
                // An expired claim is taken over by this record, a live one is kept.
                Some(c) => t > c.expires,
            };
            if take {
                let claim = Claim {
                    first: event.seq.0,
                    expires: t.saturating_add(self.ttl_micros),
                };
                staged.claims.insert(*key, claim);
            }
        }
        if verdict.is_duplicate() {
            // Replaying a record gives the verdict it had (its keys still name the same first
            // record), so an original never has a duplicate entry to remove.
            staged.duplicates.push((event.seq, verdict));
        }
        if t.saturating_sub(self.last_prune) >= self.ttl_micros / 8 {
            self.window.retain(|_, c| c.expires >= t);
            staged.claims.retain(|_, c| c.expires >= t);
            self.last_prune = t;
            staged.pruned = true;
        }
        verdict
    }

    /// Deletes journal entries whose claims all expired before `horizon`.
    fn prune_journal(&mut self, horizon: i64) -> Result<(), StateError> {
        let dead: Vec<u64> = self
            .journal
            .iter()
            .filter(|(_, &latest)| latest < horizon)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in dead {
            self.claims.remove(&Seq(seq).to_key())?;
            self.journal.remove(&seq);
        }
        Ok(())
    }

    /// Number of live keys (for tests and status).
    pub fn key_count(&self) -> usize {
        self.window.len()
    }

    /// The live window, sorted: what a rebuild must reproduce (expired claims, which never
    /// match, are left out: when they are pruned depends on where batches start).
    #[cfg(test)]
    fn live_claims(&self, now: i64) -> Vec<(KeyDigest, Claim)> {
        let mut v: Vec<_> = self
            .window
            .iter()
            .filter(|(_, c)| c.expires >= now)
            .map(|(k, c)| (*k, *c))
            .collect();
        v.sort_unstable();
        v
    }
}

/// Moves the keys of the first layout (tree `keys`: one entry per dedup key, value first seq
/// and expiry, 16 bytes) into one journal entry at `processed`, so that a data directory
/// written by an earlier version keeps its window instead of forgetting it.
fn migrate_key_tree(store: &dyn StateStore, claims: &dyn KvTree) -> Result<(), StateError> {
    let old = store.tree(NAME, "keys")?;
    if old.is_empty()? {
        return Ok(());
    }
    let meta = store.tree(NAME, "meta")?;
    let processed = match meta.get(PROCESSED)? {
        Some(v) => Seq::from_key(&v).ok_or_else(|| corrupt("meta"))?,
        None => Seq(0),
    };
    let mut window = HashMap::new();
    crate::state::for_each(old.as_ref(), &[], |k, v| {
        let bytes: [u8; 16] = v.try_into().map_err(|_| corrupt("keys"))?;
        let (first, expires) = bytes.split_at(8);
        let bad = |_| corrupt("keys");
        let claim = Claim {
            first: u64::from_be_bytes(first.try_into().map_err(bad)?),
            expires: i64::from_be_bytes(expires.try_into().map_err(bad)?),
        };
        window.insert(digest(&String::from_utf8_lossy(k)), claim);
        Ok(true)
    })?;
    claims.insert(&processed.to_key(), &encode_claims(&window))?;
    old.clear()?;
    tracing::info!(
        keys = window.len(),
        "dedup: moved the key tree into the journal"
    );
    Ok(())
}

fn digest(key: &str) -> KeyDigest {
    let full = sha2::Sha256::digest(key.as_bytes());
    let mut d = [0u8; 16];
    d.copy_from_slice(&full[..16]);
    d
}

fn encode_claims(claims: &HashMap<KeyDigest, Claim>) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + claims.len() * CLAIM_LEN);
    v.push(CLAIMS_V1);
    for (digest, claim) in claims {
        v.extend_from_slice(digest);
        v.extend_from_slice(&claim.first.to_be_bytes());
        v.extend_from_slice(&claim.expires.to_be_bytes());
    }
    v
}

fn decode_claims(v: &[u8]) -> Result<Vec<(KeyDigest, Claim)>, StateError> {
    let Some((&CLAIMS_V1, rest)) = v.split_first() else {
        return Err(corrupt("claims"));
    };
    if rest.len() % CLAIM_LEN != 0 {
        return Err(corrupt("claims"));
    }
    rest.chunks_exact(CLAIM_LEN)
        .map(|c| {
            let (d, rest) = c.split_at(16);
            let (first, expires) = rest.split_at(8);
            let bad = |_| corrupt("claims");
            Ok((
                d.try_into().map_err(bad)?,
                Claim {
                    first: u64::from_be_bytes(first.try_into().map_err(bad)?),
                    expires: i64::from_be_bytes(expires.try_into().map_err(bad)?),
                },
            ))
        })
        .collect()
}

impl Consumer for Dedup {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reset(&mut self) -> Result<(), BatchError> {
        self.claims.clear()?;
        self.verdicts.clear()?;
        self.meta.clear()?;
        self.window.clear();
        self.journal.clear();
        self.processed = 0;
        self.stale = false;
        self.last_prune = i64::MIN;
        Ok(())
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        if self.stale {
            self.reload()?;
        }
        // Records up to `processed` were decided before a crash lost the driver's cursor:
        // their effects are complete, and deciding them again against a window that later
        // records have changed could give another answer.
        let skip = batch
            .events()
            .partition_point(|e| e.seq.0 <= self.processed);
        let events = &batch.events()[skip..];
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let mut staged = Staged::default();
        for record in batch.records().skip(skip) {
            self.process(record, &mut staged);
        }
        // From here until `processed` is written, memory may be ahead of storage: if a write
        // fails, the next call reloads the window from the journal first.
        self.stale = true;
        if !staged.claims.is_empty() {
            let latest = staged.claims.values().map(|c| c.expires).max();
            self.claims
                .insert(&last.seq.to_key(), &encode_claims(&staged.claims))?;
            self.journal.insert(last.seq.0, latest.unwrap_or(i64::MIN));
            self.window.extend(staged.claims.drain());
        }
        for (seq, verdict) in &staged.duplicates {
            self.verdicts.insert(&seq.to_key(), &verdict.encode())?;
        }
        if staged.pruned {
            let earliest = events.iter().map(|e| e.received_at.0).min();
            self.prune_journal(earliest.unwrap_or(first.received_at.0).min(self.last_prune))?;
        }
        self.meta.insert(PROCESSED, &last.seq.to_key())?;
        self.processed = last.seq.0;
        self.stale = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
