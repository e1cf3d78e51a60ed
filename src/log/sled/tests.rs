//! Tests of the sled engine: group commit, contiguous sequences, cursors, the free-space reserve,
//! corrupt records, retention, and a model of appends and reads across reopens.

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
    eprintln!("data directory after each round: {after_round:?} (wrote {written} bytes of bodies)");
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
