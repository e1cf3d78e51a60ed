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
//! Key layout (trees of consumer `dedup`):
//!
//! | tree       | key                 | value                                        |
//! |------------|---------------------|----------------------------------------------|
//! | `keys`     | dedup key, UTF-8    | first seq `u64` BE, expires-at µs `i64` BE   |
//! | `verdicts` | seq `u64` BE        | `1` + original seq `u64` BE (duplicates only) |
//! | `meta`     | `processed`         | last seq handled, `u64` BE                   |
//!
//! Only duplicates get a verdict entry: a record at or below `processed` without one is an
//! original. That keeps the common case to two reads and two writes per record. Pruning scans
//! the key tree at most once per eighth of the window of event time, which bounds storage to
//! about 1.125 windows of keys without an expiry index to maintain on every write.
//!
//! Idempotence: a key stores the *first* sequence that claimed it, and a record is a
//! duplicate only of a strictly earlier one, so handling a batch twice gives the same verdicts.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{BatchError, Consumer};
use crate::event::{Event, Seq};
use crate::state::{KvTree, StateError, StateStore};

/// The consumer's name (and cursor name).
pub const NAME: &str = "dedup";
/// Default window.
pub const DEFAULT_TTL_HOURS: u64 = 72;
const PROCESSED: &[u8] = b"processed";

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

    /// The verdict for `seq`, if dedup has processed it.
    pub fn get(&self, seq: Seq) -> Result<Option<Verdict>, StateError> {
        let processed = self.processed()?;
        self.get_below(seq, processed)
    }

    /// The last record dedup has handled (read it once per batch, then use [`Self::get_below`]).
    pub fn processed(&self) -> Result<Seq, StateError> {
        match self.meta.get(PROCESSED)? {
            Some(v) => Seq::from_key(&v).ok_or_else(|| corrupt("meta")),
            None => Ok(Seq(0)),
        }
    }

    /// The verdict for `seq`, given what [`Self::processed`] returned.
    pub fn get_below(&self, seq: Seq, processed: Seq) -> Result<Option<Verdict>, StateError> {
        if seq > processed {
            return Ok(None);
        }
        match self.verdicts.get(&seq.to_key())? {
            Some(v) => Verdict::decode(&v).map(Some),
            None => Ok(Some(Verdict::Original)),
        }
    }
}

/// The dedup consumer.
pub struct Dedup {
    keys: Arc<dyn KvTree>,
    verdicts: Arc<dyn KvTree>,
    meta: Arc<dyn KvTree>,
    ttl_micros: i64,
    /// Event time of the last prune (in memory: pruning only affects storage, never verdicts,
    /// because an expired key never matches).
    last_prune: i64,
}

impl Dedup {
    /// Opens its trees in `store`.
    pub fn new(store: &dyn StateStore, ttl_hours: u64) -> Result<Dedup, StateError> {
        Ok(Dedup {
            keys: store.tree(NAME, "keys")?,
            verdicts: store.tree(NAME, "verdicts")?,
            meta: store.tree(NAME, "meta")?,
            ttl_micros: i64::try_from(ttl_hours.saturating_mul(3_600_000_000)).unwrap_or(i64::MAX),
            last_prune: i64::MIN,
        })
    }

    fn keys_of(event: &Event) -> Vec<String> {
        match crate::parse::parse(event) {
            Ok(p) => p.dedup_keys,
            // A record that does not parse still dedups against an identical retry; the
            // consumers that need its content dead-letter it themselves.
            Err(_) => vec![format!(
                "body:unparsed:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&event.body))
            )],
        }
    }

    /// Decides and records the verdict of one record.
    fn process(&mut self, event: &Event) -> Result<Verdict, StateError> {
        let t = event.received_at.0;
        let keys = Self::keys_of(event);
        let mut verdict = Verdict::Original;
        let mut stored = Vec::with_capacity(keys.len());
        for key in &keys {
            let entry = self
                .keys
                .get(key.as_bytes())?
                .map(|v| decode_entry(&v))
                .transpose()?;
            if let Some((first, expires)) = entry {
                if first < event.seq.0 && t <= expires {
                    // The earliest original wins when several keys match.
                    verdict = match verdict {
                        Verdict::Duplicate { of } if of <= first => verdict,
                        _ => Verdict::Duplicate { of: first },
                    };
                }
            }
            stored.push(entry);
        }
        for (key, entry) in keys.iter().zip(stored) {
            let claim = match entry {
                None => true,
                // Replaying this very record: keep its claim as it is.
                Some((first, _)) if first >= event.seq.0 => first > event.seq.0,
                // An expired claim is taken over by this record, a live one is kept.
                Some((_, expires)) => t > expires,
            };
            if claim {
                let expires = t.saturating_add(self.ttl_micros);
                self.keys
                    .insert(key.as_bytes(), &encode_entry(event.seq.0, expires))?;
            }
        }
        match verdict {
            Verdict::Duplicate { .. } => self
                .verdicts
                .insert(&event.seq.to_key(), &verdict.encode())?,
            // Replaying a record gives the verdict it had (its keys still name the same first
            // record), so an original never has a duplicate entry to remove.
            Verdict::Original => {}
        }
        if t.saturating_sub(self.last_prune) >= self.ttl_micros / 8 {
            self.prune(t)?;
            self.last_prune = t;
        }
        Ok(verdict)
    }

    /// Removes keys that expired before `now` (event time).
    fn prune(&self, now: i64) -> Result<usize, StateError> {
        let mut expired = Vec::new();
        crate::state::for_each(self.keys.as_ref(), &[], |k, v| {
            if decode_entry(v)?.1 < now {
                expired.push(k.to_vec());
            }
            Ok(true)
        })?;
        for k in &expired {
            self.keys.remove(k)?;
        }
        Ok(expired.len())
    }

    /// Number of live keys (for tests and status).
    pub fn key_count(&self) -> Result<usize, StateError> {
        self.keys.len()
    }
}

fn encode_entry(first: u64, expires: i64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&first.to_be_bytes());
    v[8..].copy_from_slice(&expires.to_be_bytes());
    v
}

fn decode_entry(v: &[u8]) -> Result<(u64, i64), StateError> {
    let bytes: [u8; 16] = v.try_into().map_err(|_| corrupt("keys"))?;
    let (a, b) = bytes.split_at(8);
    Ok((
        u64::from_be_bytes(a.try_into().map_err(|_| corrupt("keys"))?),
        i64::from_be_bytes(b.try_into().map_err(|_| corrupt("keys"))?),
    ))
}

impl Consumer for Dedup {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reset(&mut self) -> Result<(), BatchError> {
        self.keys.clear()?;
        self.verdicts.clear()?;
        self.meta.clear()?;
        self.last_prune = i64::MIN;
        Ok(())
    }

    async fn handle(&mut self, batch: &[Event]) -> Result<(), BatchError> {
        for event in batch {
            self.process(event)?;
        }
        if let Some(last) = batch.last() {
            self.meta.insert(PROCESSED, &last.seq.to_key())?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    const TREES: &[&str] = &["keys", "verdicts", "meta"];

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
        assert!(store
            .tree(NAME, "keys")
            .unwrap()
            .get(b"openphone:evt:EVa")
            .unwrap()
            .is_none());
        assert!(
            dedup.key_count().unwrap() <= 2 * 509,
            "only the live window is kept"
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
        for chunk in events.chunks(64) {
            run(&mut dedup, chunk);
        }
        let before = dump(&store, NAME, TREES);
        dedup.reset().unwrap();
        assert!(dump(&store, NAME, TREES).is_empty());
        for chunk in events.chunks(100) {
            run(&mut dedup, chunk);
        }
        assert_eq!(dump(&store, NAME, TREES), before);
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
}
