//! Tests of the driver and the registry with probe consumers: cursors, upstreams, retries,
//! dead letters and redrives, rewinds, pauses, the learning pass, committed cursors.

use super::driver::{backoff, spawn_driver, DriverContext};
use super::*;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::alerts::{Alert, Severity};
use crate::event::Micros;
use crate::event::{Source, Verification, Verified};
use crate::log::sled::{SledLog, SledOptions};
use crate::log::Log;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Records what it saw; poisons bodies saying "poison" until healed; fails transiently
/// `flaky` times first.
struct Probe {
    name: &'static str,
    ups: &'static [&'static str],
    seen: Arc<Mutex<Vec<u64>>>,
    healed: Arc<AtomicBool>,
    flaky: Arc<AtomicU32>,
}

impl Consumer for Probe {
    fn name(&self) -> &'static str {
        self.name
    }
    fn upstreams(&self) -> &'static [&'static str] {
        self.ups
    }
    fn reset(&mut self) -> Result<(), BatchError> {
        self.seen.lock().unwrap().clear();
        Ok(())
    }
    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        let batch = batch.events();
        if self.flaky.load(Ordering::SeqCst) > 0 {
            self.flaky.fetch_sub(1, Ordering::SeqCst);
            return Err(BatchError::Transient("the database blinked".into()));
        }
        for e in batch {
            if e.body == b"poison" && !self.healed.load(Ordering::SeqCst) {
                return Err(BatchError::Poison {
                    seq: e.seq,
                    error: "cannot read it".into(),
                });
            }
            self.seen.lock().unwrap().push(e.seq.0);
        }
        Ok(())
    }
}

#[allow(clippy::type_complexity)]
fn probe(
    name: &'static str,
    ups: &'static [&'static str],
) -> (Probe, Arc<Mutex<Vec<u64>>>, Arc<AtomicBool>, Arc<AtomicU32>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let healed = Arc::new(AtomicBool::new(false));
    let flaky = Arc::new(AtomicU32::new(0));
    (
        Probe {
            name,
            ups,
            seen: seen.clone(),
            healed: healed.clone(),
            flaky: flaky.clone(),
        },
        seen,
        healed,
        flaky,
    )
}

fn setup(dir: &std::path::Path) -> (Arc<dyn Log>, DriverContext) {
    let log: Arc<dyn Log> =
        Arc::new(SledLog::open(dir, &SledOptions::default(), Metrics::new()).unwrap());
    let ctx = super::testutil::fast_context(&log, 2);
    (log, ctx)
}

async fn append(log: &Arc<dyn Log>, body: &str) {
    let v = Verified::new(
        Micros::now(),
        Source::Internal,
        "/t".into(),
        vec![],
        body.as_bytes().to_vec(),
        Verification::Internal,
    );
    log.append(v).await.unwrap();
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_the_consumer_keeps_going_and_redrive_reruns_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    for body in ["a", "b", "poison", "d", "e"] {
        append(&log, body).await;
    }
    let (p, seen, healed, _) = probe("probe", &[]);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
    until(|| log.cursor("probe").unwrap() == Seq(5)).await;
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 4, 5]);
    let dls = dead_letters(ctx.store.as_ref(), "probe").unwrap();
    assert_eq!((dls.len(), dls[0].seq, dls[0].attempts), (1, 3, 1));
    assert_eq!(
        ctx.metrics
            .consumer_dead_letters
            .with_label_values(&["probe"])
            .get(),
        1
    );

    let still = ctx.registry.redrive("probe", None).await.unwrap();
    assert_eq!(still.failed, vec![3]);
    assert_eq!(
        dead_letters(ctx.store.as_ref(), "probe").unwrap()[0].attempts,
        2
    );

    healed.store(true, Ordering::SeqCst);
    let fixed = ctx.registry.redrive("probe", None).await.unwrap();
    assert_eq!(fixed.succeeded, vec![3]);
    assert!(dead_letters(ctx.store.as_ref(), "probe")
        .unwrap()
        .is_empty());
    assert!(seen.lock().unwrap().contains(&3));
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_transient_failure_is_retried_with_backoff_and_the_cursor_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    append(&log, "a").await;
    let (p, seen, _, flaky) = probe("probe", &[]);
    flaky.store(3, Ordering::SeqCst);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
    until(|| log.cursor("probe").unwrap() == Seq(1)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1],
        "processed once, after the failures"
    );
    assert_eq!(
        ctx.metrics
            .consumer_errors
            .with_label_values(&["probe", "transient"])
            .get(),
        3
    );
    assert_eq!(
        ctx.registry.infos()[0].last_error,
        None,
        "cleared by the success"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// The alerts raised so far under `key`.
fn alerts_keyed(ctx: &DriverContext, key: &str) -> Vec<Alert> {
    ctx.alerter
        .raised()
        .into_iter()
        .filter(|a| a.key == key)
        .collect()
}

#[tokio::test]
async fn failures_in_a_row_raise_one_critical_alert_at_the_threshold_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path()); // alert_after_failures: 2
    let (p, _, _, flaky) = probe("probe", &[]);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));

    // One failure, below the threshold, then a success: no alert.
    flaky.store(1, Ordering::SeqCst);
    append(&log, "a").await;
    until(|| log.cursor("probe").unwrap() == Seq(1)).await;
    assert_eq!(alerts_keyed(&ctx, "consumer_failing:probe"), vec![]);

    // Five in a row: one alert when the second fails, none for the three after it.
    flaky.store(5, Ordering::SeqCst);
    append(&log, "b").await;
    until(|| log.cursor("probe").unwrap() == Seq(2)).await;
    let alerts = alerts_keyed(&ctx, "consumer_failing:probe");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.title, "probe keeps failing");
    assert_eq!(
        a.reason,
        "2 consecutive failures; last: the database blinked"
    );
    assert!(a.next_step.contains("hooklog-replay status"), "{a:?}");
    assert_eq!(ctx.alerter.raised().len(), 1, "no other alert");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn each_dead_letter_raises_a_warning_under_the_consumers_key_naming_the_record_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    for body in ["a", "poison", "c", "poison", "e"] {
        append(&log, body).await;
    }
    let (p, _, _, _) = probe("probe", &[]);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
    until(|| log.cursor("probe").unwrap() == Seq(5)).await;
    // One alert per dead letter, under one key, so the alerter's gate coalesces a burst
    // into one Discord message with a count.
    let alerts = ctx.alerter.raised();
    let keys: Vec<&str> = alerts.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["dead_letter:probe", "dead_letter:probe"]);
    for (a, seq) in alerts.iter().zip([2, 4]) {
        assert_eq!(a.severity, Severity::Warning);
        assert_eq!(a.title, format!("probe: record {seq} dead-lettered"));
        assert_eq!(a.reason, "cannot read it");
        assert!(
            a.next_step.contains(&format!("hooklog-replay show {seq}"))
                && a.next_step.contains("hooklog-replay redrive probe"),
            "{a:?}"
        );
    }
    // A redrive that fails again dead-letters (and alerts) each record once more.
    let report = ctx.registry.redrive("probe", Some(Seq(4))).await.unwrap();
    assert_eq!(report.failed, vec![4]);
    assert_eq!(alerts_keyed(&ctx, "dead_letter:probe").len(), 3);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_consumer_never_passes_its_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    let (up, _, _, _) = probe("up", &[]);
    let (down, down_seen, _, _) = probe("down", &["up"]);
    // The pauses as a projection would have them (the daemon's is the `controls` consumer).
    let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let p = paused.clone();
    ctx.registry
        .read_pauses_from(crate::consumers::registry::PauseSource {
            projected_by: "pauses",
            paused: Arc::new(move |name: &str| {
                Ok(name == "up" && p.load(std::sync::atomic::Ordering::SeqCst))
            }),
        });
    // No consumer projects these pauses, so nothing moves their cursor: a driver waits at
    // start until the projection has read the log as it was then, and a driver task that first
    // ran after an append below would wait forever (it did, on a loaded machine). Mark the
    // projection as having read everything, as the `controls` consumer would have.
    log.store_cursor("pauses", Seq(u64::MAX / 2)).unwrap();
    let (stop, rx) = watch::channel(false);
    let t1 = tokio::spawn(spawn_driver(up, ctx.clone(), rx.clone()));
    let t2 = tokio::spawn(spawn_driver(down, ctx.clone(), rx));
    for body in ["a", "b", "c"] {
        append(&log, body).await;
    }
    until(|| log.cursor("down").unwrap() == Seq(3)).await;
    paused.store(true, std::sync::atomic::Ordering::SeqCst);
    ctx.registry.wake_all();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for body in ["d", "e", "f"] {
        append(&log, body).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(log.cursor("up").unwrap(), Seq(3), "paused");
    assert_eq!(
        log.cursor("down").unwrap(),
        Seq(3),
        "held back by its upstream"
    );
    paused.store(false, std::sync::atomic::Ordering::SeqCst);
    ctx.registry.wake_all();
    until(|| log.cursor("down").unwrap() == Seq(6)).await;
    assert_eq!(*down_seen.lock().unwrap(), vec![1, 2, 3, 4, 5, 6]);
    stop.send(true).unwrap();
    t1.await.unwrap();
    t2.await.unwrap();
}

#[tokio::test]
async fn a_rewind_rebuilds_from_the_first_record_and_a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    for body in ["a", "b", "c", "d"] {
        append(&log, body).await;
    }
    let (p, seen, _, _) = probe("probe", &[]);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
    until(|| log.cursor("probe").unwrap() == Seq(4)).await;
    let dry = ctx
        .registry
        .rewind("probe", Seq(2), true, false)
        .await
        .unwrap();
    assert_eq!(
        (
            dry.from_cursor,
            dry.to_cursor,
            dry.replay,
            dry.rebuild,
            dry.dry_run
        ),
        (4, 0, 4, true, true)
    );
    assert_eq!(log.cursor("probe").unwrap(), Seq(4));
    ctx.registry
        .rewind("probe", Seq(2), false, false)
        .await
        .unwrap();
    until(|| seen.lock().unwrap().len() == 4 && log.cursor("probe").unwrap() == Seq(4)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1, 2, 3, 4],
        "state was reset, then rebuilt"
    );
    let err = ctx
        .registry
        .rewind("nope", Seq(0), true, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("probe"), "{err}");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn after_pruning_a_rebuild_is_refused_and_state_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    for body in ["a", "b", "c", "d"] {
        append(&log, body).await;
    }
    let (p, seen, _, _) = probe("probe", &[]);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(p, ctx.clone(), rx));
    until(|| log.cursor("probe").unwrap() == Seq(4)).await;
    assert_eq!(log.prune_before(Seq(3)).unwrap().first_seq, 3);
    let err = ctx
        .registry
        .rewind("probe", Seq(0), false, false)
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::Refused(_)), "{err}");
    assert!(err.to_string().contains("before 3"), "{err}");
    assert_eq!(log.cursor("probe").unwrap(), Seq(4), "nothing moved");
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3, 4], "state kept");
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Has effects: records redelivery windows and counts idle ticks.
struct Effectful {
    windows: Arc<Mutex<Vec<(u64, u64)>>>,
    ticks: Arc<AtomicU32>,
}

impl Consumer for Effectful {
    fn name(&self) -> &'static str {
        "effectful"
    }
    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Replay
    }
    fn reset(&mut self) -> Result<(), BatchError> {
        Ok(())
    }
    fn has_effects(&self) -> bool {
        true
    }
    fn redeliver(&mut self, after: Seq, through: Seq) -> Result<(), BatchError> {
        self.windows.lock().unwrap().push((after.0, through.0));
        Ok(())
    }
    /// One effect per record in range; the limit is 2.
    fn plan_redelivery(&mut self, after: Seq, through: Seq) -> Result<RedeliveryPlan, BatchError> {
        let mut plan = RedeliveryPlan::new("effects");
        for seq in after.0 + 1..=through.0 {
            plan.add(Seq(seq), || format!("e{seq}"));
        }
        Ok(plan)
    }
    fn max_redeliver(&self) -> (u64, &'static str) {
        (2, "[effectful] max_redeliver")
    }
    async fn tick(&mut self) -> Result<(), BatchError> {
        self.ticks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn handle_batch(&mut self, _: &Arc<Batch>) -> Result<(), BatchError> {
        Ok(())
    }
}

#[tokio::test]
async fn redeliver_reaches_only_a_consumer_with_effects_and_an_idle_consumer_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    for body in ["a", "b", "c", "d"] {
        append(&log, body).await;
    }
    let (p, _seen, _, _) = probe("probe", &[]);
    let windows = Arc::new(Mutex::new(Vec::new()));
    let ticks = Arc::new(AtomicU32::new(0));
    let e = Effectful {
        windows: windows.clone(),
        ticks: ticks.clone(),
    };
    let (stop, rx) = watch::channel(false);
    let t1 = tokio::spawn(spawn_driver(p, ctx.clone(), rx.clone()));
    let t2 = tokio::spawn(spawn_driver(e, ctx.clone(), rx));
    until(|| log.cursor("effectful").unwrap() == Seq(4) && log.cursor("probe").unwrap() == Seq(4))
        .await;
    until(|| ticks.load(Ordering::SeqCst) >= 2).await;

    let err = ctx
        .registry
        .rewind("probe", Seq(0), false, true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no irreversible effects"), "{err}");
    assert_eq!(
        log.cursor("probe").unwrap(),
        Seq(4),
        "a refused rewind moves nothing"
    );

    let dry = ctx
        .registry
        .rewind("effectful", Seq(1), true, true)
        .await
        .unwrap();
    assert!(dry.redeliver && dry.dry_run);
    assert!(
        windows.lock().unwrap().is_empty(),
        "a dry run redelivers nothing"
    );
    let confirmed = Redeliver {
        confirm: true,
        max: None,
    };
    let report = ctx
        .registry
        .rewind_with("effectful", Seq(2), false, Some(confirmed))
        .await
        .unwrap();
    assert!(report.redeliver);
    assert_eq!(report.redelivery.map(|p| p.effects), Some(2));
    assert_eq!(*windows.lock().unwrap(), vec![(2, 4)]);
    stop.send(true).unwrap();
    t1.await.unwrap();
    t2.await.unwrap();
}

#[tokio::test]
async fn a_redelivery_is_refused_unconfirmed_and_over_the_limit_and_goes_ahead_only_when_confirmed_within_it(
) {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    for body in ["a", "b", "c", "d"] {
        append(&log, body).await;
    }
    let windows = Arc::new(Mutex::new(Vec::new()));
    let e = Effectful {
        windows: windows.clone(),
        ticks: Arc::new(AtomicU32::new(0)),
    };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(e, ctx.clone(), rx));
    until(|| log.cursor("effectful").unwrap() == Seq(4)).await;
    let untouched = |what: &str| {
        assert!(windows.lock().unwrap().is_empty(), "{what}: no window");
        assert_eq!(log.cursor("effectful").unwrap(), Seq(4), "{what}: no move");
    };

    // Not confirmed (the plain `rewind` with redeliver): the report, and nothing changes.
    let err = ctx
        .registry
        .rewind("effectful", Seq(0), false, true)
        .await
        .unwrap_err();
    let ControlError::Unconfirmed(report) = &err else {
        panic!("expected Unconfirmed, got {err}");
    };
    let plan = report.redelivery.clone().unwrap();
    assert_eq!(
        (plan.effects, plan.first_seq, plan.last_seq, plan.limit),
        (4, Some(1), Some(4), 2)
    );
    assert_eq!(plan.sample, ["e1", "e2", "e3", "e4"]);
    let text = err.to_string();
    assert!(text.contains("perform 4 effects again"), "{text}");
    assert!(
        text.contains("hooklog-replay rewind effectful --to-seq 0 --redeliver --yes --max 4"),
        "{text}"
    );
    untouched("unconfirmed");

    // Confirmed, over the configured limit of 2.
    let confirmed = Redeliver {
        confirm: true,
        max: None,
    };
    let err = ctx
        .registry
        .rewind_with("effectful", Seq(0), false, Some(confirmed))
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::OverLimit(_)), "{err}");
    assert!(
        err.to_string()
            .contains("more than the limit of 2 ([effectful] max_redeliver)"),
        "{err}"
    );
    untouched("over the limit");

    // A limit raised for this call, but still below the count.
    let raised = |max| Redeliver {
        confirm: true,
        max: Some(max),
    };
    let err = ctx
        .registry
        .rewind_with("effectful", Seq(0), false, Some(raised(3)))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("limit of 3 (this request)"),
        "{err}"
    );
    untouched("over a raised limit");

    // A dry run reports and changes nothing, whatever the count.
    let dry = ctx
        .registry
        .rewind_with("effectful", Seq(0), true, Some(Redeliver::default()))
        .await
        .unwrap();
    assert_eq!(dry.redelivery.map(|p| p.effects), Some(4));
    untouched("a dry run");

    // Raised to the count: it goes ahead.
    let report = ctx
        .registry
        .rewind_with("effectful", Seq(0), false, Some(raised(4)))
        .await
        .unwrap();
    assert_eq!(report.redelivery.map(|p| p.effects), Some(4));
    assert_eq!(*windows.lock().unwrap(), vec![(0, 4)]);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Journals what the driver hands it (`learn:<seq>`, `handle:<seq>`) and the cursor at
/// each learning batch. With `late`, its first learning call appends a record (one past
/// the end at start); it fails its first `flaky` learning calls; with `stop`, a learning
/// call requests the shutdown.
struct Learner {
    name: &'static str,
    effects: bool,
    log: Arc<dyn Log>,
    journal: Arc<Mutex<Vec<String>>>,
    cursors: Arc<Mutex<Vec<u64>>>,
    late: bool,
    flaky: u32,
    stop: Option<watch::Sender<bool>>,
}

impl Learner {
    fn new(name: &'static str, effects: bool, log: &Arc<dyn Log>) -> Learner {
        Learner {
            name,
            effects,
            log: log.clone(),
            journal: Arc::new(Mutex::new(Vec::new())),
            cursors: Arc::new(Mutex::new(Vec::new())),
            late: false,
            flaky: 0,
            stop: None,
        }
    }
}

impl Consumer for Learner {
    fn name(&self) -> &'static str {
        self.name
    }
    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Replay
    }
    fn reset(&mut self) -> Result<(), BatchError> {
        Ok(())
    }
    fn has_effects(&self) -> bool {
        self.effects
    }
    async fn learn_effects(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        let cursor = self.log.cursor(self.name).unwrap();
        self.cursors.lock().unwrap().push(cursor.0);
        if std::mem::take(&mut self.late) {
            append(&self.log, "late").await;
        }
        if let Some(stop) = &self.stop {
            stop.send(true).unwrap();
        }
        if self.flaky > 0 {
            self.flaky -= 1;
            return Err(BatchError::Transient("the ledger is locked".into()));
        }
        for e in batch.events() {
            self.journal
                .lock()
                .unwrap()
                .push(format!("learn:{}", e.seq));
        }
        Ok(())
    }
    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        for e in batch.events() {
            self.journal
                .lock()
                .unwrap()
                .push(format!("handle:{}", e.seq));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_consumer_with_effects_learns_from_the_records_after_its_cursor_up_to_the_end_at_start_before_handling_any(
) {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path()); // batch_size: 2
    for body in ["a", "b", "c", "d", "e"] {
        append(&log, body).await;
    }
    log.store_cursor("learner", Seq(2)).unwrap();
    let mut learner = Learner::new("learner", true, &log);
    learner.late = true; // record 6 arrives during the pass: it is not learned
    learner.flaky = 1;
    let (journal, cursors) = (learner.journal.clone(), learner.cursors.clone());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(learner, ctx.clone(), rx));
    until(|| log.cursor("learner").unwrap() == Seq(6)).await;
    assert_eq!(
        *journal.lock().unwrap(),
        ["learn:3", "learn:4", "learn:5", "handle:3", "handle:4", "handle:5", "handle:6"]
    );
    assert_eq!(
        *cursors.lock().unwrap(),
        [2, 2, 2],
        "the failed first call, its retry and the last batch: the cursor never moved"
    );
    assert_eq!(
        ctx.metrics
            .consumer_errors
            .with_label_values(&["learner", "transient"])
            .get(),
        1,
        "a failed learning batch is retried like a transient failure"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_consumer_without_effects_is_never_handed_the_learning_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    for body in ["a", "b", "c"] {
        append(&log, body).await;
    }
    let plain = Learner::new("plain", false, &log);
    let journal = plain.journal.clone();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(plain, ctx.clone(), rx));
    until(|| log.cursor("plain").unwrap() == Seq(3)).await;
    assert_eq!(
        *journal.lock().unwrap(),
        ["handle:1", "handle:2", "handle:3"]
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_shutdown_during_the_learning_pass_ends_it_and_no_batch_is_handled() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path()); // batch_size: 2
    for body in ["a", "b", "c", "d", "e"] {
        append(&log, body).await;
    }
    let (stop, rx) = watch::channel(false);
    let mut learner = Learner::new("learner", true, &log);
    learner.stop = Some(stop);
    let journal = learner.journal.clone();
    tokio::time::timeout(
        Duration::from_secs(5),
        spawn_driver(learner, ctx.clone(), rx),
    )
    .await
    .expect("the driver stops");
    assert_eq!(*journal.lock().unwrap(), ["learn:1", "learn:2"]);
    assert_eq!(log.cursor("learner").unwrap(), Seq(0));
}

/// Keeps its own committed cursor, as the Postgres sink does.
struct Committing {
    committed: Arc<Mutex<u64>>,
    seen: Arc<Mutex<Vec<u64>>>,
    refuse_moves: Arc<AtomicBool>,
}

impl Consumer for Committing {
    fn name(&self) -> &'static str {
        "committing"
    }
    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Replay
    }
    fn reset(&mut self) -> Result<(), BatchError> {
        Ok(())
    }
    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        let batch = batch.events();
        for e in batch {
            self.seen.lock().unwrap().push(e.seq.0);
        }
        if let Some(last) = batch.last() {
            *self.committed.lock().unwrap() = last.seq.0;
        }
        Ok(())
    }
    async fn committed_cursor(&mut self) -> Result<Option<Seq>, BatchError> {
        Ok(Some(Seq(*self.committed.lock().unwrap())))
    }
    async fn move_committed_cursor(&mut self, to: Seq) -> Result<(), BatchError> {
        if self.refuse_moves.load(Ordering::SeqCst) {
            return Err(BatchError::Transient("the database is unreachable".into()));
        }
        *self.committed.lock().unwrap() = to.0;
        Ok(())
    }
}

#[tokio::test]
async fn the_driver_follows_a_committed_cursor_and_moves_it_first_on_a_rewind() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ctx) = setup(dir.path());
    for body in ["a", "b", "c", "d", "e", "f"] {
        append(&log, body).await;
    }
    // The consumer committed up to 4, but the log's cursor save was lost (it says 1).
    log.store_cursor("committing", Seq(1)).unwrap();
    let committed = Arc::new(Mutex::new(4));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let refuse = Arc::new(AtomicBool::new(false));
    let c = Committing {
        committed: committed.clone(),
        seen: seen.clone(),
        refuse_moves: refuse.clone(),
    };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(spawn_driver(c, ctx.clone(), rx));
    until(|| log.cursor("committing").unwrap() == Seq(6)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![5, 6],
        "2..4 were not handled again"
    );

    // A rewind the consumer cannot carry out is refused and moves nothing.
    refuse.store(true, Ordering::SeqCst);
    let err = ctx
        .registry
        .rewind("committing", Seq(2), false, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert_eq!(log.cursor("committing").unwrap(), Seq(6));
    assert_eq!(*committed.lock().unwrap(), 6);

    refuse.store(false, Ordering::SeqCst);
    let report = ctx
        .registry
        .rewind("committing", Seq(2), false, false)
        .await
        .unwrap();
    assert_eq!((report.to_cursor, report.rebuild), (2, false));
    until(|| seen.lock().unwrap().len() == 6).await;
    assert_eq!(*seen.lock().unwrap(), vec![5, 6, 3, 4, 5, 6]);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[test]
fn backoff_grows_exponentially_with_full_jitter_and_a_cap() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(3);
    for attempt in 0..10 {
        let cap = (base * 2u32.pow(attempt)).min(max);
        for _ in 0..50 {
            assert!(backoff(base, max, attempt) <= cap);
        }
    }
    let spread: std::collections::BTreeSet<_> = (0..50).map(|_| backoff(base, max, 5)).collect();
    assert!(spread.len() > 10, "jittered");
}
