//! The conformance suite every [`Consumer`] passes.
//!
//! Modelled on vector's component compliance harness: the properties are written once here,
//! each consumer has a small adapter ([`UnderTest`]: how to build a fresh instance over a
//! log and its state, which upstreams must run with it, how to read its projection), and
//! every adapter's module runs the same tests, named as the property they check:
//!
//! 1. **Replay twice gives the same projection.** A realistic mixed log ([`mix`]) is run
//!    through the consumer under the real driver; its projection is read (its state trees,
//!    its dead letters, the records it appended, the Postgres rows for the sink); the
//!    consumer is rewound through the [`Registry`](super::Registry) as an operator does it
//!    (a `Rebuild` consumer is reset and rebuilt from the first record, a `Replay` one has
//!    its cursor moved back) and runs again: the projection must be identical, and a
//!    consumer with effects must have performed none again (a rewind without `redeliver`
//!    calls no service and appends no record).
//! 2. **A crash before the cursor save reprocesses without a second effect.** The process
//!    dies right after a batch was handled (or after the idle tick that appended the gates'
//!    decisions) and before the driver saved the cursor. A new instance on the same log and
//!    state catches up; the result must be the one of a run without a crash over the same
//!    log: the same projection, no second call to a service, no second record appended.
//! 3. **An unknown record version is parked, not skipped.** A record in a format this build
//!    does not know sits between good records: it must be in the consumer's dead-letter
//!    list (with an alert, and still there after a redrive), the cursor must have moved past
//!    it, and the records after it must have been processed. The consumers that park a record
//!    of the outbound path whose body is in a shape this build does not know (compliance,
//!    outbound) run the same check with such a record. The sender and the Postgres sink do
//!    not park it: they log it and go on (the sender sends nothing for it, the sink writes its
//!    `omni_events` row only), and the outbound consumer parks it.
//! 4. **A forged daemon record is never acted on** (the consumers that act on hooklog's own
//!    records: outbound and sender for an `allow` written with the operator's token,
//!    compliance for an opt-out lift written with an agent's). The log with the forged record
//!    must leave the projection, the records appended and the calls made exactly as the same
//!    log with that record under a backfill source (history nobody acts on), and the record
//!    must be a dead letter with a critical alert of its own ([`crate::provenance`]).
//!
//! Everything is real except the far side of the network: a sled log and its state store,
//! the driver with its registry, PostgreSQL on 127.0.0.1:5432 (a schema per world, dropped
//! afterwards), and the consumers' own HTTP clients talking to an in-process server that
//! answers like the agent gateway, Quo and Twilio ([`fake`]), which counts the calls.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::compliance::Compliance;
use super::dedup::Dedup;
use super::driver::{spawn_driver, DriverContext};
use super::outbound::Outbound;
use super::testutil::{dump, fast_context};
use super::{dead_letters, Batch, BatchError, Consumer, RewindMode};
use crate::alerts::Alerter;
use crate::event::{Event, Seq, Verified, FORMAT_V1};
use crate::gates::ComplianceConfig;
use crate::log::sled::{SledLog, SledOptions};
use crate::log::{Log, LogError};
use crate::metrics::Metrics;
use crate::state::StateStore;

use fake::FakeApi;
use mix::{Forgery, Mix, Options, Unreadable};

/// The three as tests of the adapter `$adapter` in the module that invokes it.
macro_rules! properties {
    ($adapter:expr) => {
        #[tokio::test]
        async fn replay_twice_gives_the_same_projection() {
            super::replay_twice_gives_the_same_projection($adapter).await;
        }

        #[tokio::test]
        async fn a_crash_before_the_cursor_save_reprocesses_without_a_second_effect() {
            super::a_crash_before_the_cursor_save_reprocesses_without_a_second_effect($adapter)
                .await;
        }

        #[tokio::test]
        async fn an_unknown_record_version_is_parked_not_skipped() {
            super::an_unknown_record_version_is_parked_not_skipped($adapter).await;
        }
    };
}

mod compliance;
mod controls;
mod dedup;
mod dispatch;
mod fake;
mod mix;
mod outbound;
mod postgres;
mod sender;
mod staleness;

/// A consumer that must run with the one under test: the driver never lets a consumer pass
/// its upstreams' cursors, and the outbound consumer projects the messages the sender reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Up {
    /// The operator's stops, which the gates and the sender wait for.
    Controls,
    Dedup,
    Compliance,
    Outbound,
}

impl Up {
    fn name(self) -> &'static str {
        match self {
            Up::Controls => super::controls::NAME,
            Up::Dedup => super::dedup::NAME,
            Up::Compliance => super::compliance::NAME,
            Up::Outbound => super::outbound::NAME,
        }
    }
}

/// Where the process dies in property 2, always after the effects of what it handled and
/// before the driver saved the cursor.
#[derive(Clone, Copy, Debug)]
enum Crash {
    /// After the batch holding this record was handled.
    AfterBatchWith(Seq),
    /// After the first idle tick that appended records (the outbound consumer's decisions).
    AfterTickThatAppends,
}

/// One consumer under the suite.
trait UnderTest {
    /// The consumer.
    type C: Consumer;
    /// Its name (and cursor).
    const NAME: &'static str;
    /// What must run with it, upstream first.
    const UPSTREAMS: &'static [Up];
    /// Whether a run acts outside its own state (calls a service, appends records): then the
    /// crash of property 2 must come after such an effect, or it would prove nothing.
    const EFFECTS: bool = false;
    /// Whether the log carries the gates' decisions (the sender's input; the sink's
    /// message rows then have decisions to fold).
    const DECIDED: bool = false;
    /// Whether a world needs a Postgres schema.
    const POSTGRES: bool = false;

    /// A fresh instance over the world's log and state, as the daemon builds it at start.
    fn build(&self, w: &World) -> Self::C;
    /// Adds its projection to `snap`: its state trees, and what it keeps elsewhere.
    async fn project(&self, w: &World, snap: &mut Snapshot);
    /// Where property 2's process dies.
    fn crash(&self, mix: &Mix) -> Crash;
    /// What in its projection shows that the records after `bad` were processed; one line
    /// per record that is not reflected.
    async fn missing_after(&self, w: &World, bad: Seq) -> Vec<String>;
    /// Whether what it handled is complete outside the state store too (the sink's last
    /// transaction committed).
    async fn caught_up(&self, _w: &World) -> bool {
        true
    }
}

/// A log and its state (sled, as the daemon keeps them), the fake services, and for the
/// sink a Postgres schema: everything one process sees.
struct World {
    log: Arc<dyn Log>,
    mix: Mix,
    api: FakeApi,
    pg: Option<postgres::Schema>,
    _dir: tempfile::TempDir,
}

fn verified(e: &Event) -> Verified {
    Verified::new(
        e.received_at,
        e.source,
        e.route.clone(),
        e.headers.clone(),
        e.body.clone(),
        e.verification,
    )
}

impl World {
    /// The mix of `options` (with the adapter's own options) appended to a new log.
    async fn new<U: UnderTest>(options: Options) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mix = Mix::build(Options {
            decided: U::DECIDED,
            ..options
        });
        {
            let log = SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap();
            let tickets: Vec<_> = mix.events.iter().map(|e| log.append(verified(e))).collect();
            for (ticket, e) in tickets.into_iter().zip(&mix.events) {
                assert_eq!(ticket.await.unwrap(), e.seq);
            }
            log.close().unwrap();
        }
        if options.future_record {
            write_in_a_future_format(dir.path(), mix.seq("future_record"));
        }
        let log: Arc<dyn Log> =
            Arc::new(SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap());
        let pg = if U::POSTGRES {
            Some(postgres::Schema::create().await)
        } else {
            None
        };
        World {
            log,
            mix,
            api: FakeApi::start(),
            pg,
            _dir: dir,
        }
    }

    fn store(&self) -> Arc<dyn StateStore> {
        self.log.state()
    }

    fn last(&self) -> Seq {
        Seq(self.log.stats().unwrap().last_seq)
    }
}

/// Rewrites record `seq` of the closed log in `dir` as a newer hooklog would have written it:
/// the next format byte, then the same bytes. The raw engine is the only way to put such a
/// record in a log; this build never writes one.
fn write_in_a_future_format(dir: &Path, seq: Seq) {
    // sled's threads keep the file lock for a moment after the log is closed.
    let mut tries = 0;
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(_) if tries < 40 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot open the closed log: {e}"),
        }
    };
    let events = db.open_tree("events").unwrap();
    let mut bytes = events.get(seq.to_key()).unwrap().unwrap().to_vec();
    assert_eq!(bytes[0], FORMAT_V1);
    bytes[0] = FORMAT_V1 + 1;
    events.insert(seq.to_key(), bytes).unwrap();
    db.flush().unwrap();
}

/// The drivers of one process.
struct Running {
    ctx: DriverContext,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the upstreams and the consumer under test (wrapped to die at `crash`, if given)
/// under the real driver, sharing one registry, as the daemon starts them.
fn start<U: UnderTest>(u: &U, w: &World, crash: Option<(Crash, watch::Sender<bool>)>) -> Running {
    let ctx = fast_context(&w.log, 5);
    let (stop, rx) = watch::channel(false);
    let store = w.store();
    let mut tasks = Vec::new();
    for up in U::UPSTREAMS {
        let (ctx, rx) = (ctx.clone(), rx.clone());
        tasks.push(match up {
            Up::Controls => {
                let controls =
                    super::controls::ControlsConsumer::new(store.as_ref(), Alerter::disabled())
                        .unwrap();
                tokio::spawn(spawn_driver(controls, ctx, rx))
            }
            Up::Dedup => {
                let dedup = Dedup::new(store.as_ref(), super::dedup::DEFAULT_TTL_HOURS).unwrap();
                tokio::spawn(spawn_driver(dedup, ctx, rx))
            }
            Up::Compliance => {
                let compliance = Compliance::new(store.as_ref(), Alerter::disabled()).unwrap();
                tokio::spawn(spawn_driver(compliance, ctx, rx))
            }
            Up::Outbound => tokio::spawn(spawn_driver(outbound_consumer(w), ctx, rx)),
        });
    }
    let consumer = u.build(w);
    tasks.push(match crash {
        None => tokio::spawn(spawn_driver(consumer, ctx.clone(), rx)),
        Some((crash, died)) => {
            let dies = DiesBeforeCursorSave {
                inner: consumer,
                crash,
                log: w.log.clone(),
                died,
            };
            tokio::spawn(spawn_driver(dies, ctx.clone(), rx))
        }
    });
    Running { ctx, stop, tasks }
}

/// The outbound consumer as the daemon configures it for the mix (lines, clock).
fn outbound_consumer(w: &World) -> Outbound {
    Outbound::new(
        w.log.clone(),
        ComplianceConfig::default(),
        mix::lines(),
        mix::clock(),
        Alerter::disabled(),
        Metrics::new(),
    )
    .unwrap()
}

/// Waits until every consumer of the process has read the whole log and the log has stopped
/// growing (the effects of one consumer are records the others read).
async fn settle<U: UnderTest>(u: &U, w: &World) {
    let names: Vec<&str> = U::UPSTREAMS
        .iter()
        .map(|up| up.name())
        .chain([U::NAME])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut before, mut quiet) = (None, 0);
    loop {
        let last = w.last();
        let cursors: Vec<(&str, Seq)> = names
            .iter()
            .map(|n| (*n, w.log.cursor(n).unwrap()))
            .collect();
        let done = cursors.iter().all(|(_, c)| *c == last);
        if done && before == Some(last) && u.caught_up(w).await {
            quiet += 1;
            // Longer than the idle poll, so that an idle tick would have appended by now.
            if quiet >= 8 {
                return;
            }
        } else {
            quiet = 0;
        }
        before = Some(last);
        assert!(
            Instant::now() < deadline,
            "{}: the consumers did not catch up in 30 s: last record {last}, cursors {cursors:?}",
            U::NAME
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A graceful shutdown: every driver finishes what is in flight.
async fn stop(r: Running) {
    r.stop.send(true).unwrap();
    for task in r.tasks {
        task.await.unwrap();
    }
}

/// The process dies: every driver stops where it is, nothing is finished or saved.
async fn kill(r: Running) {
    for task in &r.tasks {
        task.abort();
    }
    for task in r.tasks {
        if let Err(e) = task.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// Runs the consumer until, after the effects of what it handled, the process would die:
/// the batch holding a record (or the idle tick that appended) is complete, and the future
/// that would return to the driver, which would then save the cursor, never resolves. The
/// harness then aborts the process's tasks.
struct DiesBeforeCursorSave<C> {
    inner: C,
    crash: Crash,
    log: Arc<dyn Log>,
    died: watch::Sender<bool>,
}

impl<C: Consumer> DiesBeforeCursorSave<C> {
    async fn die(&mut self) -> Result<(), BatchError> {
        // What the consumer started is done (the sink's transaction in flight committed):
        // the crash is after the effect, not during it.
        self.inner.finish().await?;
        self.died.send_replace(true);
        std::future::pending().await
    }
}

impl<C: Consumer> Consumer for DiesBeforeCursorSave<C> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn upstreams(&self) -> &'static [&'static str] {
        self.inner.upstreams()
    }
    fn rewind_mode(&self) -> RewindMode {
        self.inner.rewind_mode()
    }
    fn reset(&mut self) -> Result<(), BatchError> {
        self.inner.reset()
    }
    fn has_effects(&self) -> bool {
        self.inner.has_effects()
    }
    fn redeliver(&mut self, after: Seq, through: Seq) -> Result<(), BatchError> {
        self.inner.redeliver(after, through)
    }
    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        self.inner.handle_batch(batch).await?;
        let events = batch.events();
        if let (Crash::AfterBatchWith(seq), Some(first), Some(last)) =
            (self.crash, events.first(), events.last())
        {
            if (first.seq..=last.seq).contains(&seq) {
                return self.die().await;
            }
        }
        Ok(())
    }
    async fn committed_cursor(&mut self) -> Result<Option<Seq>, BatchError> {
        self.inner.committed_cursor().await
    }
    async fn learn_effects(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        self.inner.learn_effects(batch).await
    }
    async fn tick(&mut self) -> Result<(), BatchError> {
        let before = *self.log.watch_last_seq().borrow();
        self.inner.tick().await?;
        let appended = *self.log.watch_last_seq().borrow() > before;
        if matches!(self.crash, Crash::AfterTickThatAppends) && appended {
            return self.die().await;
        }
        Ok(())
    }
    async fn finish(&mut self) -> Result<(), BatchError> {
        self.inner.finish().await
    }
    async fn move_committed_cursor(&mut self, to: Seq) -> Result<(), BatchError> {
        self.inner.move_committed_cursor(to).await
    }
}

/// A projection, as text: `section/key → value`, comparable across runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Snapshot(BTreeMap<String, String>);

/// JSON fields holding the wall-clock time at which a consumer did something (a decision, a
/// send, a ledger entry) or a duration measured with it. Two runs over the same log differ
/// there and nowhere else, so they are blanked when two runs are compared (property 2);
/// property 1 compares one run with itself and keeps them.
const WALL_CLOCK: &[&str] = &["at", "decided_at", "updated_at", "latency_ms"];

impl Snapshot {
    fn put(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let old = self.0.insert(key.clone(), value.into());
        assert!(old.is_none(), "two entries under {key}");
    }

    /// Every entry of `trees` of `consumer`.
    fn trees(&mut self, store: &dyn StateStore, consumer: &str, trees: &[&str]) {
        for (tree, k, v) in dump(store, consumer, trees) {
            self.put(
                format!("{consumer}/{tree}/{}", render_key(&k)),
                render_value(&v),
            );
        }
    }

    /// The snapshot with [`WALL_CLOCK`] fields blanked.
    fn without_wall_clock(&self) -> Snapshot {
        fn blank(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(fields) => {
                    for (name, value) in fields.iter_mut() {
                        if WALL_CLOCK.contains(&name.as_str()) {
                            *value = "<wall clock>".into();
                        } else {
                            blank(value);
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(blank),
                _ => {}
            }
        }
        Snapshot(
            self.0
                .iter()
                .map(|(k, v)| {
                    let v = match serde_json::from_str::<serde_json::Value>(v) {
                        Ok(mut json) if json.is_object() => {
                            blank(&mut json);
                            json.to_string()
                        }
                        _ => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }
}

/// A state key as text: printable keys as they are, a sequence (8 bytes big-endian, maybe
/// followed by a name) as `#seq[/name]`, anything else in hex.
fn render_key(k: &[u8]) -> String {
    let printable = |b: &[u8]| b.iter().all(|c| c.is_ascii_graphic() || *c == b' ');
    if printable(k) {
        return String::from_utf8_lossy(k).into_owned();
    }
    if let Some((seq, rest)) = k.split_first_chunk::<8>() {
        if rest.is_empty() || printable(rest) {
            let seq = u64::from_be_bytes(*seq);
            return match rest.is_empty() {
                true => format!("#{seq}"),
                false => format!("#{seq}/{}", String::from_utf8_lossy(rest)),
            };
        }
    }
    hex::encode(k)
}

/// A state value as text: JSON as JSON (so that fields can be compared), anything else in hex.
fn render_value(v: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(v) {
        Ok(json) if json.is_object() || json.is_array() || json.is_string() => json.to_string(),
        _ => hex::encode(v),
    }
}

/// Everything the consumer under test has made of the log: the adapter's projection, its
/// dead letters (the record and why; when and how often are the driver's bookkeeping), and
/// every record after the mix (what the consumers appended).
async fn snapshot<U: UnderTest>(u: &U, w: &World) -> Snapshot {
    let mut snap = Snapshot::default();
    u.project(w, &mut snap).await;
    for d in dead_letters(w.store().as_ref(), U::NAME).unwrap() {
        snap.put(format!("dead_letters/#{}", d.seq), d.error);
    }
    for e in w.log.read(w.mix.last(), 10_000).unwrap() {
        let body = serde_json::from_slice::<serde_json::Value>(&e.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&e.body).into());
        let record =
            serde_json::json!({"source": e.source.as_str(), "route": e.route, "body": body});
        snap.put(format!("log/#{}", e.seq), record.to_string());
    }
    snap
}

/// Fails with the entries that differ (a whole-map `assert_eq!` would bury them).
fn assert_same(what: &str, expected: &Snapshot, got: &Snapshot) {
    let mut diffs = Vec::new();
    for (k, v) in &expected.0 {
        match got.0.get(k) {
            None => diffs.push(format!("missing  {k} = {v}")),
            Some(g) if g != v => diffs.push(format!("changed  {k}\n  from {v}\n  to   {g}")),
            Some(_) => {}
        }
    }
    for (k, v) in &got.0 {
        if !expected.0.contains_key(k) {
            diffs.push(format!("extra    {k} = {v}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} of {} entries differ:\n{}",
        diffs.len(),
        expected.0.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Property 1: replay twice gives the same projection.
async fn replay_twice_gives_the_same_projection<U: UnderTest>(u: U) {
    let name = U::NAME;
    let w = World::new::<U>(Options::default()).await;
    let r = start(&u, &w, None);
    settle(&u, &w).await;
    let first = snapshot(&u, &w).await;
    let (calls, end) = (w.api.calls(), w.last());
    assert!(
        first.0.keys().any(|k| !k.starts_with("log/")),
        "{name}: the first run projected nothing"
    );
    if U::EFFECTS {
        assert!(
            !calls.is_empty() || end > w.mix.last(),
            "{name}: the first run performed no effect that a replay could repeat"
        );
    }

    // What `hooklog-replay rewind <name> --to-seq 0` does on a running daemon.
    let report = r
        .ctx
        .registry
        .rewind(name, Seq(0), false, false)
        .await
        .unwrap();
    assert_eq!(
        (report.to_cursor, report.replay, report.redeliver),
        (0, end.0, false),
        "{name}: {report:?}"
    );
    settle(&u, &w).await;
    let second = snapshot(&u, &w).await;
    stop(r).await;

    assert_same(
        &format!(
            "{name}: the projection after a rewind ({}) and a second run",
            if report.rebuild { "rebuild" } else { "replay" }
        ),
        &first,
        &second,
    );
    assert_eq!(
        w.api.calls(),
        calls,
        "{name}: a rewind without redeliver called a service again"
    );
    assert_eq!(w.last(), end, "{name}: a rewind appended records again");
}

/// Property 2: a crash before the cursor save reprocesses without a second effect.
async fn a_crash_before_the_cursor_save_reprocesses_without_a_second_effect<U: UnderTest>(u: U) {
    let name = U::NAME;
    // The same log run once without a crash: what the crash must not change.
    let reference = World::new::<U>(Options::default()).await;
    let r = start(&u, &reference, None);
    settle(&u, &reference).await;
    stop(r).await;
    let expected = snapshot(&u, &reference).await;

    let w = World::new::<U>(Options::default()).await;
    let crash = u.crash(&w.mix);
    let (died, mut dead) = watch::channel(false);
    let r = start(&u, &w, Some((crash, died)));
    tokio::time::timeout(Duration::from_secs(30), dead.wait_for(|d| *d))
        .await
        .unwrap_or_else(|_| panic!("{name}: never reached the crash point {crash:?}"))
        .unwrap();
    let cursor_at_death = w.log.cursor(name).unwrap();
    let (calls_at_death, last_at_death) = (w.api.calls(), w.last());
    kill(r).await;
    if let Crash::AfterBatchWith(seq) = crash {
        assert!(
            cursor_at_death < seq,
            "{name}: the cursor was at {cursor_at_death} when the process died after the batch \
             with {seq}: it was saved before the batch's effects"
        );
    }
    if U::EFFECTS {
        assert!(
            !calls_at_death.is_empty() || last_at_death > w.mix.last(),
            "{name}: nothing was done before the crash at {crash:?}; the test proves nothing"
        );
    }

    // A new process on the same log and state.
    let r = start(&u, &w, None);
    settle(&u, &w).await;
    stop(r).await;
    let got = snapshot(&u, &w).await;

    let calls = w.api.calls();
    let mut seen = BTreeSet::new();
    for call in &calls {
        assert!(
            seen.insert(call),
            "{name}: called a service twice for one effect: {call:?}"
        );
    }
    let (mut sorted, mut expected_calls) = (calls.clone(), reference.api.calls());
    sorted.sort();
    expected_calls.sort();
    assert!(
        sorted == expected_calls,
        "{name}: the calls after a crash and a restart are not those of a run without a crash:\n{sorted:#?}\nagainst\n{expected_calls:#?}"
    );
    assert_eq!(
        w.last(),
        reference.last(),
        "{name}: the log grew more than in a run without a crash"
    );
    assert_same(
        &format!("{name}: the projection after a crash at {crash:?} and a restart, against a run without a crash"),
        &expected.without_wall_clock(),
        &got.without_wall_clock(),
    );
}

/// The checks of property 3 once the process has settled on a log holding `bad`.
async fn parked_not_skipped<U: UnderTest>(u: &U, w: &World, r: &Running, bad: Seq, why: &str) {
    let name = U::NAME;
    let store = w.store();
    let letters = dead_letters(store.as_ref(), name).unwrap();
    let letter = letters.iter().find(|d| d.seq == bad.0).unwrap_or_else(|| {
        panic!("{name}: record {bad} is not in its dead-letter list: {letters:?}")
    });
    assert!(letter.error.contains(why), "{name}: {letter:?}");
    assert_eq!(
        letters.len(),
        1,
        "{name}: dead letters other than {bad}: {letters:?}"
    );
    let cursor = w.log.cursor(name).unwrap();
    assert!(
        cursor > bad,
        "{name}: the cursor ({cursor}) did not pass {bad}"
    );
    let missing = u.missing_after(w, bad).await;
    assert!(
        missing.is_empty(),
        "{name}: records after {bad} were not processed:\n{}",
        missing.join("\n")
    );
    // Told, not only stored.
    let alerted = r.ctx.alerter.raised().into_iter().any(|a| {
        a.key == format!("dead_letter:{name}") && a.title.contains(&format!("record {bad} "))
    });
    assert!(alerted, "{name}: no alert for dead letter {bad}");
    // Parked: a redrive tries it again and, while it still cannot be read, keeps it.
    let report = r.ctx.registry.redrive(name, Some(bad)).await.unwrap();
    assert_eq!(report.failed, [bad.0], "{name}: {report:?}");
    let letters = dead_letters(store.as_ref(), name).unwrap();
    assert!(
        letters.iter().any(|d| d.seq == bad.0 && d.attempts == 2),
        "{name}: {letters:?}"
    );
}

/// Property 3: an unknown record version is parked, not skipped.
async fn an_unknown_record_version_is_parked_not_skipped<U: UnderTest>(u: U) {
    let w = World::new::<U>(Options {
        future_record: true,
        ..Options::default()
    })
    .await;
    let bad = w.mix.seq("future_record");
    assert!(
        matches!(w.log.get(bad), Err(LogError::Corrupt { .. })),
        "the record in a future format cannot be read"
    );
    let r = start(&u, &w, None);
    settle(&u, &w).await;
    parked_not_skipped(
        &u,
        &w,
        &r,
        bad,
        &format!("unknown record format {}", FORMAT_V1 + 1),
    )
    .await;
    stop(r).await;
}

/// Property 4, for the consumers that act on hooklog's own records (outbound, sender,
/// compliance): a forged daemon record is never acted on. A record that claims a writer it
/// does not have ([`crate::provenance`]) leaves the projection, the records appended and the
/// calls made exactly as the same record under a backfill source does (history that no
/// consumer acts on), and it is a dead letter with a critical alert naming it.
async fn a_forged_daemon_record_is_never_acted_on<U: UnderTest>(u: U, kind: Forgery) {
    let name = U::NAME;
    let options = |as_history| Options {
        forged: Some(kind),
        forged_as_history: as_history,
        ..Options::default()
    };
    let reference = World::new::<U>(options(true)).await;
    let r = start(&u, &reference, None);
    settle(&u, &reference).await;
    stop(r).await;
    let expected = snapshot(&u, &reference).await.without_wall_clock();

    let w = World::new::<U>(options(false)).await;
    let bad = w.mix.seq("forged");
    let r = start(&u, &w, None);
    settle(&u, &w).await;
    let letters = dead_letters(w.store().as_ref(), name).unwrap();
    assert!(
        letters
            .iter()
            .any(|d| d.seq == bad.0 && d.error.starts_with("forged record")),
        "{name}: forged record {bad} is not a dead letter: {letters:?}"
    );
    let alerted = r.ctx.alerter.raised().into_iter().any(|a| {
        a.key == format!("forged:{name}:{bad}") && a.severity == crate::alerts::Severity::Critical
    });
    assert!(alerted, "{name}: no critical alert for forged record {bad}");
    stop(r).await;
    let mut got = snapshot(&u, &w).await.without_wall_clock();
    got.0.remove(&format!("dead_letters/#{bad}"));
    let mut calls = w.api.calls();
    let mut expected_calls = reference.api.calls();
    calls.sort();
    expected_calls.sort();
    assert!(
        calls == expected_calls,
        "{name}: the forged record made calls:\n{calls:#?}\nagainst\n{expected_calls:#?}"
    );
    assert_same(
        &format!("{name}: a forged record against the same record as history"),
        &expected,
        &got,
    );
}

/// Property 3 for a consumer that reads records of the outbound path: one whose body is in a
/// shape this build does not know is parked, not skipped.
async fn an_unreadable_outbound_record_is_parked_not_skipped<U: UnderTest>(u: U, kind: Unreadable) {
    let w = World::new::<U>(Options {
        unreadable: Some(kind),
        ..Options::default()
    })
    .await;
    let bad = w.mix.seq("unreadable");
    let r = start(&u, &w, None);
    settle(&u, &w).await;
    parked_not_skipped(&u, &w, &r, bad, "").await;
    stop(r).await;
}
