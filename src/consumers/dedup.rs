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
//! Only duplicates get a verdict entry: a record at or below `processed` without one is an
//! original. Pruning drops expired claims from the map at most once per eighth of the window
//! of event time; a journal entry is deleted once every claim in it has expired before the
//! earliest record of the batch being handled (so a batch handled again after a crash finds
//! the same claims), which bounds storage to about 1.125 windows of claims.
//!
//! Exactly once per record: a batch handed again (the driver's cursor was lost in a crash)
//! skips the records up to `processed`, whose effects are complete. A journal entry after
//! `processed` is from a batch that failed part-way; it is dropped when the window is
//! reloaded, and that batch is decided again from the state before it. Deciding a record a
//! second time against a window that later records changed could differ (a later record may
//! have taken over a key that expired), which is why replays are skipped, not recomputed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::{Batch, BatchError, Consumer, Record};
use crate::event::{Event, Seq};
use crate::state::{KvTree, StateError, StateStore};

/// The consumer's name (and cursor name).
pub const NAME: &str = "dedup";
/// Default window.
pub const DEFAULT_TTL_HOURS: u64 = 72;
const PROCESSED: &[u8] = b"processed";
/// Format byte of a journal entry.
const CLAIMS_V1: u8 = 1;
const CLAIM_LEN: usize = 32;

/// A record's dedup verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// First time this fact was seen in the window.
    Original,
    /// The same fact as an earlier record.
    Duplicate {
        /// The earlier record.
        of: u64,
    },
}

impl Verdict {
    /// Whether downstream consumers should skip the record.
    pub fn is_duplicate(self) -> bool {
        matches!(self, Verdict::Duplicate { .. })
    }

    fn encode(self) -> Vec<u8> {
        match self {
            Verdict::Original => vec![0],
            Verdict::Duplicate { of } => {
                let mut v = vec![1];
                v.extend_from_slice(&of.to_be_bytes());
                v
            }
        }
    }

    fn decode(v: &[u8]) -> Result<Verdict, StateError> {
        match v {
            [0] => Ok(Verdict::Original),
            [1, rest @ ..] if rest.len() == 8 => Ok(Verdict::Duplicate {
                of: u64::from_be_bytes(rest.try_into().map_err(|_| corrupt("verdict"))?),
            }),
            _ => Err(corrupt("verdict")),
        }
    }
}

fn corrupt(what: &str) -> StateError {
    StateError::Corrupt {
        tree: format!("dedup/{what}"),
        message: "unexpected value length".into(),
    }
}

/// The verdict recorded for `seq`, if dedup has processed it.
pub fn verdict(store: &dyn StateStore, seq: Seq) -> Result<Option<Verdict>, StateError> {
    Verdicts::open(store)?.get(seq)
}

/// Deletes the verdicts of records below `before` (retention pruned them from the log): only
/// duplicates have a verdict entry, so without this the tree grows with every duplicate
/// ever seen. Safe because retention never prunes at or above any consumer's cursor, and
/// consumers only read verdicts of records after their cursor. Returns how many went.
pub fn prune_verdicts_below(store: &dyn StateStore, before: Seq) -> Result<u64, StateError> {
    const PAGE: usize = 10_000;
    let verdicts = store.tree(NAME, "verdicts")?;
    let mut removed = 0;
    loop {
        let page = verdicts.scan(&[], PAGE)?;
        let mut n = 0;
        for (k, _) in &page {
            if k.as_slice() >= before.to_key().as_slice() {
                return Ok(removed);
            }
            verdicts.remove(k)?;
            n += 1;
        }
        removed += n;
        if page.len() < PAGE {
            return Ok(removed);
        }
    }
}

/// Reads verdicts for downstream consumers (opened once).
#[derive(Clone)]
pub struct Verdicts {
    verdicts: Arc<dyn KvTree>,
    meta: Arc<dyn KvTree>,
}

impl Verdicts {
    /// Opens the verdict trees.
    pub fn open(store: &dyn StateStore) -> Result<Verdicts, StateError> {
        Ok(Verdicts {
            verdicts: store.tree(NAME, "verdicts")?,
            meta: store.tree(NAME, "meta")?,
        })
    }

    /// The verdict for `seq`, if dedup has processed it (one record; a consumer reads its
    /// batch with [`Self::range`]).
    pub fn get(&self, seq: Seq) -> Result<Option<Verdict>, StateError> {
        if seq > self.processed()? {
            return Ok(None);
        }
        match self.verdicts.get(&seq.to_key())? {
            Some(v) => Verdict::decode(&v).map(Some),
            None => Ok(Some(Verdict::Original)),
        }
    }

    /// The last record dedup has handled.
    pub fn processed(&self) -> Result<Seq, StateError> {
        match self.meta.get(PROCESSED)? {
            Some(v) => Seq::from_key(&v).ok_or_else(|| corrupt("meta")),
            None => Ok(Seq(0)),
        }
    }

    /// The verdicts of the records of a downstream consumer's batch: [`Self::range`] from
    /// its first to its last record.
    pub fn of_batch(&self, batch: &[Event]) -> Result<RangeVerdicts, StateError> {
        match (batch.first(), batch.last()) {
            (Some(first), Some(last)) => self.range(first.seq, last.seq),
            _ => Ok(RangeVerdicts {
                processed: Seq(0),
                duplicates: HashMap::new(),
            }),
        }
    }

    /// The verdicts of every record in `first..=last`, read with one range scan: one point
    /// read per record cost more than the rest of a downstream consumer's work.
    pub fn range(&self, first: Seq, last: Seq) -> Result<RangeVerdicts, StateError> {
        // `processed` first: dedup writes verdicts before it, so every record at or below
        // the value read has its verdict in place when the scan runs.
        let processed = self.processed()?;
        let mut duplicates = HashMap::new();
        crate::state::for_each(self.verdicts.as_ref(), &first.to_key(), |k, v| {
            let seq = Seq::from_key(k).ok_or_else(|| corrupt("verdicts"))?;
            if seq > last {
                return Ok(false);
            }
            if let Verdict::Duplicate { of } = Verdict::decode(v)? {
                duplicates.insert(seq, of);
            }
            Ok(true)
        })?;
        Ok(RangeVerdicts {
            processed,
            duplicates,
        })
    }
}

/// Verdicts of a range of records, from [`Verdicts::range`].
pub struct RangeVerdicts {
    processed: Seq,
    duplicates: HashMap<Seq, u64>,
}

impl RangeVerdicts {
    /// The verdict for `seq` (inside the range read), or `None` if dedup has not handled it.
    pub fn get(&self, seq: Seq) -> Option<Verdict> {
        if seq > self.processed {
            return None;
        }
        Some(match self.duplicates.get(&seq) {
            Some(&of) => Verdict::Duplicate { of },
            None => Verdict::Original,
        })
    }

    /// Whether a downstream consumer should handle `seq`: `true` for an original, `false`
    /// for a duplicate. The driver never lets a downstream consumer pass dedup, so a missing
    /// verdict means dedup was rewound under it: a transient error, to wait for dedup.
    pub fn is_original(&self, seq: Seq) -> Result<bool, super::BatchError> {
        match self.get(seq) {
            Some(v) => Ok(!v.is_duplicate()),
            None => Err(super::BatchError::Transient(format!(
                "no dedup verdict yet for record {seq}"
            ))),
        }
    }
}

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
mod tests {
    use super::*;
    use crate::consumers::testutil::{dump, event, from_fixture, quo_inbound, HOUR};
    use crate::event::{Micros, Source};
    use crate::state::MemState;

    fn run(dedup: &mut Dedup, events: &[Event]) {
        futures_util::FutureExt::now_or_never(dedup.handle(events))
            .expect("dedup never waits")
            .unwrap();
    }

    fn verdicts(store: &MemState, n: u64) -> Vec<Verdict> {
        (1..=n)
            .map(|s| verdict(store, Seq(s)).unwrap().unwrap())
            .collect()
    }

    const TREES: &[&str] = &["claims", "verdicts", "meta"];
    const VERDICT_TREES: &[&str] = &["verdicts", "meta"];

    #[test]
    fn retries_backfill_twins_and_redeliveries_are_duplicates_and_a_second_contact_update_is_not() {
        let store = MemState::default();
        let mut dedup = Dedup::new(&store, 72).unwrap();
        let t0 = 1_776_000_000_000_000;
        let original = from_fixture("openphone/legacy_message_received_v4.json", 1, t0);
        // A provider retry: same envelope, new signature header, minutes later.
        let mut retry = original.clone();
        retry.seq = Seq(2);
        retry.received_at = Micros(t0 + 5 * 60_000_000);
        retry.headers = vec![("openphone-signature".into(), "hmac;1;1;x".into())];
        // The same message fetched by a backfill a day later.
        let resource = serde_json::json!({
            "id": "AC165e913969111f4e9211018fb2e56a9c", "from": "+15555550123", "to": ["+15555550100"],
            "direction": "incoming", "text": "Is 3pm ok for the walkthrough?", "status": "received",
            "createdAt": "2026-04-14T16:02:11.420Z", "phoneNumberId": "PNtoDbDhuz"
        });
        let backfill = event(
            3,
            t0 + 24 * HOUR,
            Source::BackfillOpenPhone,
            "/v1/messages/AC165e913969111f4e9211018fb2e56a9c",
            &resource.to_string(),
        );
        // A redelivery after a crash of the sender side: the same Twilio request again.
        let sms = from_fixture("twilio/sms_inbound.json", 4, t0 + HOUR);
        let mut sms_again = sms.clone();
        sms_again.seq = Seq(5);
        // Two updates of one contact: different envelopes, same contact.
        let update1 = from_fixture("openphone/legacy_contact_updated.json", 6, t0 + 2 * HOUR);
        let body = String::from_utf8(update1.body.clone())
            .unwrap()
            .replace(
                "EV0638d4bcf6c57383acb27a4fb006c9b3",
                "EV99999999999999999999999999999999",
            )
            .replace("Maple & Oak Realty", "Birch Realty");
        let update2 = event(
            7,
            t0 + 3 * HOUR,
            Source::OpenPhone,
            "/webhook/openphone",
            &body,
        );

        run(
            &mut dedup,
            &[original, retry, backfill, sms, sms_again, update1, update2],
        );
        assert_eq!(
            verdicts(&store, 7),
            vec![
                Verdict::Original,
                Verdict::Duplicate { of: 1 },
                Verdict::Duplicate { of: 1 },
                Verdict::Original,
                Verdict::Duplicate { of: 4 },
                Verdict::Original,
                Verdict::Original,
            ]
        );
    }

    #[test]
    fn an_event_older_than_the_window_is_not_matched_and_expired_keys_are_pruned() {
        let store = MemState::default();
        let mut dedup = Dedup::new(&store, 72).unwrap();
        let t0 = 1_776_000_000_000_000;
        let first = quo_inbound(1, t0, "EVa", "ACa", "+15555550123", "hi");
        let late = quo_inbound(2, t0 + 73 * HOUR, "EVa", "ACa", "+15555550123", "hi");
        let within = quo_inbound(3, t0 + 74 * HOUR, "EVa", "ACa", "+15555550123", "hi");
        run(&mut dedup, &[first, late, within]);
        assert_eq!(
            verdicts(&store, 3),
            vec![
                Verdict::Original,
                Verdict::Original,
                Verdict::Duplicate { of: 2 }
            ]
        );
        // Fill the window with other traffic far in the future: the old keys are pruned.
        let later: Vec<Event> = (4..=40)
            .map(|s| {
                quo_inbound(
                    s,
                    t0 + 200 * HOUR + s as i64,
                    &format!("EV{s}"),
                    &format!("AC{s}"),
                    "+15555550123",
                    "x",
                )
            })
            .collect();
        run(&mut dedup, &later);
        // The first batch's journal entry (claims of records 1 to 3) is gone, in memory
        // and on disk.
        let first_entry = Seq(3).to_key();
        assert!(store
            .tree(NAME, "claims")
            .unwrap()
            .get(&first_entry)
            .unwrap()
            .is_none());
        assert!(!dedup.window.contains_key(&digest("openphone:evt:EVa")));
        assert!(
            dedup.window.values().all(|c| c.expires >= t0 + 200 * HOUR),
            "only the live window is kept"
        );
        assert_eq!(
            dedup.key_count(),
            Dedup::new(&store, 72).unwrap().key_count()
        );
    }

    #[test]
    fn handling_a_batch_twice_after_a_crash_gives_the_same_verdicts() {
        let store = MemState::default();
        let mut dedup = Dedup::new(&store, 72).unwrap();
        let t0 = 1_776_000_000_000_000;
        let batch: Vec<Event> = (1..=40)
            .map(|s| {
                quo_inbound(
                    s,
                    t0 + s as i64 * 1000,
                    &format!("EV{}", s % 13),
                    &format!("AC{}", s % 13),
                    "+15555550123",
                    "x",
                )
            })
            .collect();
        run(&mut dedup, &batch);
        let first = dump(&store, NAME, TREES);
        // The cursor was never saved: the driver hands the same batch again.
        run(&mut dedup, &batch);
        assert_eq!(dump(&store, NAME, TREES), first);
    }

    #[test]
    fn a_rebuild_from_zero_reproduces_the_whole_state() {
        let store = MemState::default();
        let mut dedup = Dedup::new(&store, 1).unwrap();
        let t0 = 1_776_000_000_000_000;
        let events: Vec<Event> = (1..=700)
            .map(|s| {
                quo_inbound(
                    s,
                    t0 + s as i64 * 20_000_000,
                    &format!("EV{}", s % 97),
                    &format!("AC{}", s % 89),
                    "+15555550123",
                    "x",
                )
            })
            .collect();
        let end = events.last().unwrap().received_at.0;
        for chunk in events.chunks(64) {
            run(&mut dedup, chunk);
        }
        let verdicts_before = dump(&store, NAME, VERDICT_TREES);
        let window_before = dedup.live_claims(end);
        assert!(verdicts_before.len() > 100 && window_before.len() > 100);
        dedup.reset().unwrap();
        assert!(dump(&store, NAME, TREES).is_empty());
        assert!(Dedup::new(&store, 1).unwrap().window.is_empty());
        // Other batch boundaries: the journal's entries differ, what they hold does not.
        for chunk in events.chunks(100) {
            run(&mut dedup, chunk);
        }
        assert_eq!(dump(&store, NAME, VERDICT_TREES), verdicts_before);
        assert_eq!(dedup.live_claims(end), window_before);
        // And the journal reloads into the same window.
        assert_eq!(
            Dedup::new(&store, 1).unwrap().live_claims(end),
            window_before
        );
    }

    #[test]
    fn an_unparseable_record_still_dedups_against_an_identical_copy() {
        let store = MemState::default();
        let mut dedup = Dedup::new(&store, 72).unwrap();
        let a = event(1, 0, Source::OpenPhone, "/webhook/quo", "not json");
        let mut b = a.clone();
        b.seq = Seq(2);
        run(&mut dedup, &[a, b]);
        assert_eq!(
            verdicts(&store, 2),
            vec![Verdict::Original, Verdict::Duplicate { of: 1 }]
        );
    }

    /// The algorithm without journal, staging or pruning: one map, one record at a time.
    fn model(events: &[Event], ttl: i64) -> Vec<Verdict> {
        let mut claims: HashMap<String, (u64, i64)> = HashMap::new();
        let mut out = Vec::new();
        for e in events {
            let t = e.received_at.0;
            let keys = Dedup::keys_of(Batch::new(vec![e.clone()]).records().next().unwrap());
            let mut verdict = Verdict::Original;
            for k in &keys {
                if let Some(&(first, expires)) = claims.get(k) {
                    if t <= expires && !matches!(verdict, Verdict::Duplicate { of } if of <= first)
                    {
                        verdict = Verdict::Duplicate { of: first };
                    }
                }
            }
            for k in keys {
                if claims.get(&k).is_none_or(|&(_, expires)| t > expires) {
                    claims.insert(k, (e.seq.0, t + ttl));
                }
            }
            out.push(verdict);
        }
        out
    }

    fn traffic(ids: &[(u8, u8, u16)]) -> Vec<Event> {
        let t0 = 1_776_000_000_000_000;
        let mut t = t0;
        ids.iter()
            .enumerate()
            .map(|(n, &(envelope, message, step_minutes))| {
                t += i64::from(step_minutes) * 60_000_000;
                quo_inbound(
                    n as u64 + 1,
                    t,
                    &format!("EV{envelope}"),
                    &format!("AC{message}"),
                    "+15555550123",
                    "x",
                )
            })
            .collect()
    }

    #[test]
    fn restarting_after_every_batch_gives_the_verdicts_of_one_long_run() {
        let events = traffic(
            &(0..600u32)
                .map(|n| ((n * 7 % 41) as u8, (n * 5 % 37) as u8, (n % 3) as u16))
                .collect::<Vec<_>>(),
        );
        let store = MemState::default();
        for (n, chunk) in events.chunks(37).enumerate() {
            // Every batch on a freshly opened consumer (the window comes from the journal);
            // every other batch handled twice, as after a crash before the cursor save.
            run(&mut Dedup::new(&store, 1).unwrap(), chunk);
            if n % 2 == 0 {
                run(&mut Dedup::new(&store, 1).unwrap(), chunk);
            }
        }
        let expected = model(&events, HOUR);
        assert!(expected.iter().filter(|v| v.is_duplicate()).count() > 100);
        assert!(expected.iter().filter(|v| !v.is_duplicate()).count() > 100);
        assert_eq!(verdicts(&store, events.len() as u64), expected);
    }

    proptest::proptest! {
        #[test]
        fn any_batching_with_restarts_and_replays_matches_the_model(
            ids in proptest::collection::vec((0u8..12, 0u8..12, 0u16..50), 1..120),
            cuts in proptest::collection::vec((1usize..40, 0u8..4), 1..60),
        ) {
            let events = traffic(&ids);
            let store = MemState::default();
            let mut dedup = Dedup::new(&store, 1).unwrap();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < events.len() {
                let &(len, what) = cut.next().unwrap();
                let chunk = &events[at..(at + len).min(events.len())];
                match what {
                    // Restart: the window is reloaded from the journal.
                    0 => dedup = Dedup::new(&store, 1).unwrap(),
                    // A crash before the cursor save: the batch comes again.
                    1 => run(&mut dedup, chunk),
                    _ => {}
                }
                run(&mut dedup, chunk);
                at += chunk.len();
            }
            proptest::prop_assert_eq!(
                verdicts(&store, events.len() as u64),
                model(&events, HOUR)
            );
        }

        #[test]
        fn journal_entries_round_trip(
            claims in proptest::collection::hash_map(
                proptest::array::uniform16(proptest::num::u8::ANY),
                (proptest::num::u64::ANY, proptest::num::i64::ANY),
                0..50,
            )
        ) {
            let claims: HashMap<KeyDigest, Claim> = claims
                .into_iter()
                .map(|(k, (first, expires))| (k, Claim { first, expires }))
                .collect();
            let back: HashMap<_, _> = decode_claims(&encode_claims(&claims)).unwrap().into_iter().collect();
            proptest::prop_assert_eq!(back, claims);
        }
    }

    #[test]
    fn a_corrupt_journal_entry_is_an_error_not_a_silent_gap() {
        let store = MemState::default();
        store
            .tree(NAME, "claims")
            .unwrap()
            .insert(&Seq(9).to_key(), &[1, 2, 3])
            .unwrap();
        store
            .tree(NAME, "meta")
            .unwrap()
            .insert(PROCESSED, &Seq(9).to_key())
            .unwrap();
        assert!(matches!(
            Dedup::new(&store, 72),
            Err(StateError::Corrupt { .. })
        ));
    }

    /// A store whose `verdicts` tree refuses writes while `fail` is set.
    struct FlakyVerdicts {
        inner: MemState,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    struct FlakyTree {
        inner: Arc<dyn KvTree>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl KvTree for FlakyTree {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            self.inner.get(key)
        }
        fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StateError::Storage("injected".into()));
            }
            self.inner.insert(key, value)
        }
        fn remove(&self, key: &[u8]) -> Result<(), StateError> {
            self.inner.remove(key)
        }
        fn scan(&self, from: &[u8], limit: usize) -> Result<Vec<crate::state::Entry>, StateError> {
            self.inner.scan(from, limit)
        }
        fn len(&self) -> Result<usize, StateError> {
            self.inner.len()
        }
        fn clear(&self) -> Result<(), StateError> {
            self.inner.clear()
        }
    }

    impl StateStore for FlakyVerdicts {
        fn tree(&self, consumer: &str, name: &str) -> Result<Arc<dyn KvTree>, StateError> {
            let inner = self.inner.tree(consumer, name)?;
            if name != "verdicts" {
                return Ok(inner);
            }
            Ok(Arc::new(FlakyTree {
                inner,
                fail: self.fail.clone(),
            }))
        }
    }

    #[test]
    fn a_batch_that_fails_part_way_is_decided_again_from_the_state_before_it() {
        // Record 1 claims the keys; 2 and 3 are its retries; 4 comes after the window and
        // takes the keys over. Deciding 2 again against the taken-over keys would be wrong.
        let t0 = 1_776_000_000_000_000;
        let events: Vec<Event> = [0, 10, 20, 61]
            .iter()
            .enumerate()
            .map(|(n, minutes)| {
                quo_inbound(
                    n as u64 + 1,
                    t0 + minutes * 60_000_000,
                    "EV0",
                    "AC0",
                    "+15555550123",
                    "x",
                )
            })
            .collect();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let store = FlakyVerdicts {
            inner: MemState::default(),
            fail: fail.clone(),
        };
        let mut dedup = Dedup::new(&store, 1).unwrap();
        run(&mut dedup, &events[..1]);
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let failed = futures_util::FutureExt::now_or_never(dedup.handle(&events[1..]))
            .expect("dedup never waits");
        assert!(matches!(failed, Err(BatchError::Transient(_))));
        // The journal entry of the failed batch is there, `processed` is not.
        assert_eq!(store.inner.tree(NAME, "claims").unwrap().len().unwrap(), 2);
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        run(&mut dedup, &events[1..]);
        let expected = model(&events, HOUR);
        assert_eq!(
            expected,
            vec![
                Verdict::Original,
                Verdict::Duplicate { of: 1 },
                Verdict::Duplicate { of: 1 },
                Verdict::Original
            ]
        );
        assert_eq!(verdicts(&store.inner, 4), expected);
        assert_eq!(
            Dedup::new(&store.inner, 1).unwrap().live_claims(t0),
            dedup.live_claims(t0)
        );
    }

    #[test]
    fn a_range_read_gives_each_record_its_own_verdict() {
        let store = MemState::default();
        let mut dedup = Dedup::new(&store, 72).unwrap();
        let t0 = 1_776_000_000_000_000;
        let events: Vec<Event> = (1..=30)
            .map(|s| {
                quo_inbound(
                    s,
                    t0 + s as i64,
                    &format!("EV{}", s % 7),
                    "ACx",
                    "+15555550123",
                    "x",
                )
            })
            .collect();
        run(&mut dedup, &events[..25]);
        let v = Verdicts::open(&store).unwrap();
        let range = v.range(Seq(3), Seq(30)).unwrap();
        for s in 3..=30 {
            assert_eq!(range.get(Seq(s)), v.get(Seq(s)).unwrap(), "record {s}");
        }
        assert_eq!(range.get(Seq(26)), None, "not handled yet");
        assert!(range.get(Seq(9)).unwrap().is_duplicate());
    }

    #[test]
    fn a_key_tree_of_the_first_layout_becomes_the_window() {
        let store = MemState::default();
        let t0 = 1_776_000_000_000_000;
        let first = quo_inbound(1, t0, "EVa", "ACa", "+15555550123", "hi");
        let keys = Dedup::keys_of(Batch::new(vec![first]).records().next().unwrap());
        let old = store.tree(NAME, "keys").unwrap();
        for key in &keys {
            old.insert(
                key.as_bytes(),
                &[&1u64.to_be_bytes()[..], &(t0 + 72 * HOUR).to_be_bytes()].concat(),
            )
            .unwrap();
        }
        store
            .tree(NAME, "meta")
            .unwrap()
            .insert(PROCESSED, &Seq(1).to_key())
            .unwrap();
        let mut dedup = Dedup::new(&store, 72).unwrap();
        assert!(old.is_empty().unwrap());
        assert_eq!(dedup.key_count(), keys.len());
        let retry = quo_inbound(2, t0 + HOUR, "EVa", "ACa", "+15555550123", "hi");
        run(&mut dedup, &[retry]);
        assert_eq!(
            verdict(&store, Seq(2)).unwrap(),
            Some(Verdict::Duplicate { of: 1 })
        );
    }
}
