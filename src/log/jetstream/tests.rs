//! Tests of the JetStream engine against the machine's nats-server: appends and reads, restarts,
//! the stream check, the lease, the fence, fail-over and restores.

use super::leader::{last_on_subject, poll_interval, take_office};
use super::*;
use crate::event::{Micros, Source, Verification};

pub(crate) fn nats_url() -> String {
    std::env::var("HOOKLOG_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A stream name and subject no other test uses; the stream is deleted on drop.
pub(crate) struct TestStream {
    pub(crate) options: JetStreamOptions,
}

impl TestStream {
    pub(crate) fn new() -> TestStream {
        let tag = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        TestStream {
            options: JetStreamOptions {
                url: nats_url(),
                stream: format!("HOOKLOG_TEST_{tag}"),
                subject: format!("hooklog.test.{tag}"),
                ack_timeout: Duration::from_millis(1500),
                ..JetStreamOptions::default()
            },
        }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (url, name) = (self.options.url.clone(), self.options.stream.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            if let Ok(client) = async_nats::connect(url).await {
                let js = jetstream::new(client);
                let _ = js.delete_stream(&name).await;
                if let Ok(kv) = js.get_key_value(crate::log::jetstream::lease::BUCKET).await {
                    let _ = kv.purge(&name).await;
                }
            }
        });
    }
}

fn verified(n: usize) -> Verified {
    Verified::new(
        Micros(1_000_000 + n as i64),
        Source::Twilio,
        "/sms".into(),
        vec![("x-twilio-signature".into(), format!("sig{n}"))],
        format!("MessageSid=SM{n}&Body=hello+{n}").into_bytes(),
        Verification::Twilio { token: 0, url: 0 },
    )
}

fn open(stream: &TestStream, state: &Path) -> JetStreamLog {
    JetStreamLog::open(&stream.options, state, Metrics::new()).unwrap()
}

#[test]
fn concurrent_appends_get_contiguous_stream_sequences_and_read_back_in_order() {
    let stream = TestStream::new();
    let dir = tempfile::tempdir().unwrap();
    let log = open(&stream, dir.path());
    let tickets: Vec<_> = (0..300).map(|n| log.append(verified(n))).collect();
    let mut seqs: Vec<u64> = tickets
        .into_iter()
        .map(|t| t.wait_blocking().unwrap().0)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());

    let mut all = Vec::new();
    let mut after = Seq(0);
    loop {
        let page = log.read(after, 128).unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        all.extend(page);
    }
    assert_eq!(all.len(), 300);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, Seq(i as u64 + 1), "read in sequence order");
    }
    // The body stored under a sequence is the one whose append got that sequence.
    let ev = log.get(Seq(17)).unwrap().unwrap();
    let n: i64 = ev.received_at.0 - 1_000_000;
    assert_eq!(
        ev.body,
        format!("MessageSid=SM{n}&Body=hello+{n}").into_bytes()
    );
    assert_eq!(log.get(Seq(301)).unwrap(), None, "nothing past the end");
    let stats = log.stats().unwrap();
    assert_eq!(
        (stats.first_seq, stats.last_seq, stats.count),
        (1, 300, 300)
    );
    log.close().unwrap();
}

#[test]
fn a_restore_numbers_records_in_the_order_given_and_keeps_every_field_but_the_sequence() {
    let stream = TestStream::new();
    let dir = tempfile::tempdir().unwrap();
    let log = open(&stream, dir.path());
    // An export from seq 11 on of a 610-record log: renumbered from 1, as sled does. More
    // records than RESTORE_IN_FLIGHT, so acknowledgements are awaited while publishing.
    let exported: Vec<Event> = (0..600)
        .map(|n| verified(n).into_event(Seq(n as u64 + 11)))
        .collect();
    let seqs = crate::log::restore(&log, exported.clone()).unwrap();
    assert_eq!(seqs, (1..=600).map(Seq).collect::<Vec<_>>());
    let mut back = Vec::new();
    while back.len() < 600 {
        let page = log.read(Seq(back.len() as u64), 256).unwrap();
        assert!(!page.is_empty(), "restored records are readable at once");
        back.extend(page);
    }
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
    // A second restore continues after the last record (the CLI refuses it; the library
    // keeps numbering contiguous).
    let more = crate::log::restore(&log, exported[..2].to_vec()).unwrap();
    assert_eq!(more, [Seq(601), Seq(602)]);
    log.close().unwrap();
}

#[test]
fn a_second_opener_of_the_same_state_directory_is_told_it_is_locked() {
    let stream = TestStream::new();
    let dir = tempfile::tempdir().unwrap();
    let _first = open(&stream, dir.path());
    // Another process: sled's lock is per process (fcntl), so a child that opens it.
    let err = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "log::jetstream::tests::opens_the_state_directory_named_by_the_environment",
            "--include-ignored",
            "--nocapture",
        ])
        .env("HOOKLOG_TEST_STATE_DIR", dir.path())
        .env("HOOKLOG_TEST_STREAM", &stream.options.stream)
        .env("HOOKLOG_TEST_SUBJECT", &stream.options.subject)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&err.stdout).into_owned();
    assert!(out.contains("opened: Locked"), "{out}");
}

/// The child of the test above (ignored when run alone).
#[test]
#[ignore]
fn opens_the_state_directory_named_by_the_environment() {
    let Ok(dir) = std::env::var("HOOKLOG_TEST_STATE_DIR") else {
        return;
    };
    let options = JetStreamOptions {
        url: nats_url(),
        stream: std::env::var("HOOKLOG_TEST_STREAM").unwrap(),
        subject: std::env::var("HOOKLOG_TEST_SUBJECT").unwrap(),
        ack_timeout: Duration::from_millis(1500),
        ..JetStreamOptions::default()
    };
    match JetStreamLog::open(&options, Path::new(&dir), Metrics::new()) {
        Err(LogError::Locked(_)) => println!("opened: Locked"),
        Err(e) => println!("opened: another error: {e}"),
        Ok(_) => println!("opened: Ok"),
    }
}

#[test]
fn thousands_of_appends_in_flight_at_once_all_resolve() {
    let stream = TestStream::new();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&stream, dir.path()));
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let log = log.clone();
        std::thread::spawn(move || {
            let tickets: Vec<_> = (0..5000).map(|n| log.append(verified(n))).collect();
            let ok = tickets
                .into_iter()
                .map(|t| t.wait_blocking())
                .filter(Result::is_ok)
                .count();
            let _ = tx.send(ok);
        })
    };
    // Each append also waits for a flush of the local state. (The stall this guards
    // against, sled's flush_async per append, showed only under HTTP load with consumers
    // writing state: `HOOKLOG_LOAD_ENGINES=sled,jetstream cargo bench --bench http_load`.)
    let ok = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("every append resolved within 60 s");
    waiter.join().unwrap();
    assert_eq!(ok, 5000);
    assert_eq!(log.stats().unwrap().last_seq, 5000);
}

/// A record only the consumers' leader writes (a decision, a send attempt, …).
fn leaders_record(n: usize) -> Verified {
    Verified::new(
        Micros::now(),
        Source::Internal,
        "/internal/test".into(),
        vec![],
        format!("{{\"n\": {n}}}").into_bytes(),
        Verification::Internal,
    )
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn leads(log: &JetStreamLog) -> bool {
    *log.leadership().borrow() == Leadership::Leader
}

#[test]
fn a_second_replica_serves_as_a_standby_and_takes_over_when_the_leader_stops() {
    let stream = TestStream::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ttl = Duration::from_secs(15);
    let a = open(&stream, a_dir.path());
    a.campaign(ttl).unwrap();
    assert!(leads(&a), "the first replica finds the lease free");
    let b = open(&stream, b_dir.path());
    b.campaign(ttl).unwrap();
    assert_eq!(
        *b.leadership().borrow(),
        Leadership::Standby {
            holder: Some(a.replica_id().unwrap())
        }
    );
    // Both serve the edge; only the leader writes the leader's records.
    a.append(verified(1)).wait_blocking().unwrap();
    b.append(verified(2)).wait_blocking().unwrap();
    let err = b.append(leaders_record(1)).wait_blocking().unwrap_err();
    assert!(matches!(err, LogError::NotLeader(_)), "{err}");
    let by_a = a.append(leaders_record(2)).wait_blocking().unwrap();

    // Released on close: the standby takes it without waiting for the lease time.
    a.close().unwrap();
    wait_until("the standby takes over", ttl / 2, || leads(&b));
    let by_b = b.append(leaders_record(3)).wait_blocking().unwrap();
    assert!(by_b > by_a);
    // A lease released by a leader that stopped (its appends drained first) needs no
    // fencing record: nothing but the records themselves is in the log.
    let records = b.read(Seq(0), 100).unwrap();
    assert_eq!(
        records.iter().map(|e| e.route.as_str()).collect::<Vec<_>>(),
        ["/sms", "/sms", "/internal/test", "/internal/test"]
    );
}

#[test]
fn a_lease_its_holder_stopped_renewing_is_taken_after_the_lease_time_and_a_restart_takes_its_own_back_at_once(
) {
    let stream = TestStream::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ttl = Duration::from_secs(3);
    let b = open(&stream, b_dir.path());
    // A replica killed with SIGKILL: its entry stays behind and is never renewed.
    let (js, name) = (b.js.clone(), stream.options.stream.clone());
    on(&b.handle, async move {
        let dead = crate::log::jetstream::lease::Lease::acquire(&js, &name, "killed:1", ttl, 1)
            .await
            .map_err(|e| LogError::Storage(e.to_string()))?;
        drop(dead);
        Ok(())
    })
    .unwrap();
    let started = Instant::now();
    b.campaign(ttl).unwrap();
    assert!(!leads(&b), "the entry is fresh");
    wait_until("the lease expires and is taken", ttl * 2, || leads(&b));
    let took = started.elapsed();
    assert!(
        took >= ttl - Duration::from_millis(500) && took <= ttl + poll_interval(ttl) * 3,
        "taken after {took:?}"
    );
    let b_id = b.replica_id().unwrap();
    // Taken from a holder that may still be running: b fenced it out with a record of its
    // own on the leader subject, before anything else of b's.
    b.append(leaders_record(1)).wait_blocking().unwrap();
    let records = b.read(Seq(0), 10).unwrap();
    assert_eq!(
        records.iter().map(|e| e.route.as_str()).collect::<Vec<_>>(),
        [LEADER_ROUTE, "/internal/test"]
    );
    let named: serde_json::Value = serde_json::from_slice(&records[0].body).unwrap();
    assert_eq!(named["replica"], b_id.as_str());
    drop(b); // not a kill, but close() releases: take the entry back as a kill leaves it
    let a = open(&stream, a_dir.path());
    let (js, name) = (a.js.clone(), stream.options.stream.clone());
    let id = b_id.clone();
    on(&a.handle, async move {
        let left = crate::log::jetstream::lease::Lease::acquire(&js, &name, &id, ttl, 1)
            .await
            .map_err(|e| LogError::Storage(e.to_string()))?;
        drop(left);
        Ok(())
    })
    .unwrap();
    a.campaign(ttl).unwrap();
    assert!(!leads(&a), "another replica's fresh entry holds");
    // The same data directory, restarted, takes its own entry back at once.
    let b = open(&stream, b_dir.path());
    b.campaign(ttl).unwrap();
    assert!(leads(&b));
}

#[test]
fn a_leader_that_another_replica_replaced_cannot_write_and_reports_the_log_failed() {
    let stream = TestStream::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ttl = Duration::from_secs(3);
    let a = open(&stream, a_dir.path());
    a.campaign(ttl).unwrap();
    assert!(leads(&a));
    a.append(leaders_record(1)).wait_blocking().unwrap();
    // `a` stalls past the lease time (a paused VM): meanwhile `b` finds the entry expired,
    // takes the lease and writes its leader's record. Played here by writing the entry
    // and the record as `b` would, without waiting.
    let b = open(&stream, b_dir.path());
    let b_id = b.replica_id().unwrap();
    let (js, st, subject) = (b.js.clone(), b.stream.clone(), b.leader_subject.clone());
    let (name, id) = (stream.options.stream.clone(), b_id.clone());
    on(&b.handle, async move {
        let store = js
            .get_key_value(crate::log::jetstream::lease::BUCKET)
            .await
            .map_err(|e| LogError::Storage(e.to_string()))?;
        let revision = store
            .put(name, bytes::Bytes::from(id.clone()))
            .await
            .map_err(|e| LogError::Storage(e.to_string()))?;
        take_office(
            &js,
            &st,
            &subject,
            &id,
            revision,
            "b-leader",
            Duration::from_secs(2),
        )
        .await?;
        Ok(())
    })
    .unwrap();
    // `a` wakes up: its next record is refused before its renewal even runs.
    let err = a.append(leaders_record(2)).wait_blocking().unwrap_err();
    assert!(
        matches!(&err, LogError::NotLeader(m) if m.contains(&b_id)),
        "{err}"
    );
    assert!(a.failure().borrow().as_deref().unwrap().contains("lease"));
    // Webhooks are still stored (its edge answers until the daemon stops).
    a.append(verified(3)).wait_blocking().unwrap();
    let routes = || -> Vec<String> {
        b.read(Seq(0), 100)
            .unwrap()
            .into_iter()
            .map(|e| e.route)
            .collect()
    };
    wait_until("b sees every record", LAST_SEQ_POLL * 10, || {
        routes().len() == 3
    });
    assert_eq!(routes(), ["/internal/test", LEADER_ROUTE, "/sms"]);
}

#[test]
fn a_holder_whose_lease_entry_was_written_by_another_reports_the_log_failed_at_renewal() {
    let stream = TestStream::new();
    let dir = tempfile::tempdir().unwrap();
    let log = open(&stream, dir.path());
    let ttl = Duration::from_secs(3);
    log.campaign(ttl).unwrap();
    assert!(leads(&log));
    assert_eq!(*log.failure().borrow(), None);
    // Someone else writes the entry (as a replica would after the lease aged out).
    let (js, name) = (log.js.clone(), stream.options.stream.clone());
    on(&log.handle, async move {
        let store = js
            .get_key_value(crate::log::jetstream::lease::BUCKET)
            .await
            .map_err(|e| LogError::Storage(e.to_string()))?;
        store
            .put(name, bytes::Bytes::from_static(b"intruder"))
            .await
            .map_err(|e| LogError::Storage(e.to_string()))?;
        Ok(())
    })
    .unwrap();
    let mut failure = log.failure();
    wait_until("the lost lease is noticed", ttl * 2, || {
        failure.borrow_and_update().is_some()
    });
    assert!(failure.borrow().as_deref().unwrap().contains("lease"));
    let err = log.append(leaders_record(1)).wait_blocking().unwrap_err();
    assert!(matches!(err, LogError::NotLeader(_)), "{err}");
}

#[test]
fn tools_without_an_election_write_every_record_on_the_main_subject() {
    let stream = TestStream::new();
    let dir = tempfile::tempdir().unwrap();
    let log = open(&stream, dir.path());
    assert!(leads(&log));
    assert_eq!(
        log.append(leaders_record(1)).wait_blocking().unwrap(),
        Seq(1)
    );
    let (st, subject) = (log.stream.clone(), log.leader_subject.clone());
    let last = on(
        &log.handle,
        async move { last_on_subject(&st, &subject).await },
    )
    .unwrap();
    assert!(last.is_none(), "nothing on the leader subject");
}

#[test]
fn a_publish_retried_with_the_same_message_id_is_stored_once() {
    let stream = TestStream::new();
    let dir = tempfile::tempdir().unwrap();
    let log = open(&stream, dir.path());
    let payload = verified(1).into_event(Seq(0)).encode();
    let first = log
        .publish_with_id(payload.clone(), "retry-1".into())
        .unwrap();
    let again = log.publish_with_id(payload, "retry-1".into()).unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.sequence, again.sequence);
    assert_eq!(log.stats().unwrap().count, 1);
    log.close().unwrap();
}

#[test]
fn a_stream_that_does_not_match_the_configuration_is_refused_naming_each_difference() {
    let stream = TestStream::new();
    let dir = tempfile::tempdir().unwrap();
    drop(open(&stream, dir.path()));
    let other = JetStreamOptions {
        duplicate_window: Duration::from_secs(30),
        subject: format!("{}.other", stream.options.subject),
        ..stream.options.clone()
    };
    let err = JetStreamLog::open(&other, dir.path(), Metrics::new()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LogError::Incompatible(_)), "{err:?}");
    assert!(text.contains("duplicate window is 120 s"), "{text}");
    assert!(text.contains("subjects are"), "{text}");
    assert!(text.contains(&stream.options.stream), "{text}");
    // The stream was left as it was.
    let log = open(&stream, dir.path());
    assert!(log.is_writable());
}

#[test]
fn cursors_and_state_survive_a_reopen_and_pruning_keeps_the_last_record() {
    let stream = TestStream::new();
    let dir = tempfile::tempdir().unwrap();
    let log = open(&stream, dir.path());
    for n in 0..10 {
        log.append(verified(n)).wait_blocking().unwrap();
    }
    log.store_cursor("dedup", Seq(7)).unwrap();
    log.state()
        .tree("dedup", "meta")
        .unwrap()
        .insert(b"k", b"v")
        .unwrap();
    log.close().unwrap();
    drop(log);

    let log = open(&stream, dir.path());
    assert_eq!(log.cursor("dedup").unwrap(), Seq(7));
    assert_eq!(
        log.state()
            .tree("dedup", "meta")
            .unwrap()
            .get(b"k")
            .unwrap(),
        Some(b"v".to_vec())
    );
    let report = log.prune_before(Seq(100)).unwrap();
    assert_eq!(report.pruned, 9, "everything but the last record");
    assert_eq!(log.read(Seq(0), 100).unwrap().len(), 1);
    assert_eq!(log.stats().unwrap().first_seq, 10);
    // Sequences go on after the pruned ones.
    assert_eq!(log.append(verified(10)).wait_blocking().unwrap(), Seq(11));
    assert!(log.drop_cursor("dedup").unwrap());
    assert_eq!(log.cursor("dedup").unwrap(), Seq(0));
}

#[test]
fn appends_by_another_process_wake_this_ones_readers() {
    let stream = TestStream::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(&stream, a_dir.path());
    let b = open(&stream, b_dir.path());
    let mut watch = b.watch_last_seq();
    a.append(verified(0)).wait_blocking().unwrap();
    let deadline = Instant::now() + LAST_SEQ_POLL * 10;
    while *watch.borrow_and_update() < Seq(1) {
        assert!(Instant::now() < deadline, "b never saw a's append");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.read(Seq(0), 10).unwrap().len(), 1);
}
