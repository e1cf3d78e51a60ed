//! Tests of the dedup consumer and its verdicts: retries, backfilled copies, the window in
//! event time, the journal across crashes, and a model of the verdicts under any order.

use super::*;
use crate::consumers::testutil::{dump, event, from_fixture, quo_inbound, HOUR};
use crate::event::{Event, Micros, Source};
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
        Source::BackfillQuo,
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
    let update2 = event(7, t0 + 3 * HOUR, Source::Quo, "/webhook/openphone", &body);

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
    let a = event(1, 0, Source::Quo, "/webhook/quo", "not json");
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
                if t <= expires && !matches!(verdict, Verdict::Duplicate { of } if of <= first) {
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
