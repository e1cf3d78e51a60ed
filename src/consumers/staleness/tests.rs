//! Tests of the staleness consumer: what counts as a sign of life, what it stores, and the
//! timer across restarts.

use super::*;
use crate::consumers::dedup::Dedup;
use crate::consumers::staleness::config::StalenessConfig;
use crate::consumers::testutil::{event, quo_inbound, HOUR};
use crate::event::{Event, Seq};
use crate::state::MemState;
use futures_util::FutureExt;

const T0: i64 = 1_776_000_000_000_000;

fn monitor() -> Arc<Mutex<StalenessMonitor>> {
    let config = StalenessConfig {
        max_silence_mins: 60,
        window_start: "00:00".into(),
        window_end: "24:00".into(),
        timezone: "UTC".into(),
        ..StalenessConfig::default()
    };
    Arc::new(Mutex::new(StalenessMonitor::new(config).unwrap()))
}

fn feed(store: &MemState, monitor: &Arc<Mutex<StalenessMonitor>>, events: &[Event]) {
    let mut dedup = Dedup::new(store, 72).unwrap();
    dedup.handle(events).now_or_never().unwrap().unwrap();
    let mut feeder = Staleness::new(store, monitor.clone()).unwrap();
    feeder.handle(events).now_or_never().unwrap().unwrap();
}

fn check(monitor: &Arc<Mutex<StalenessMonitor>>, at: i64) -> Option<StalenessEvent> {
    monitor.lock().unwrap().check(Micros(at).to_datetime())
}

const MINUTE: i64 = 60_000_000;

/// One process: dedup and the feeder opened on `store`, feeding a fresh monitor; `tick`
/// is the timer's check, raising on `alerter`.
struct Process {
    monitor: Arc<Mutex<StalenessMonitor>>,
    dedup: Dedup,
    feeder: Staleness,
    alerter: Alerter,
}

impl Process {
    fn start(store: &MemState, alerter: &Alerter) -> Process {
        let monitor = monitor();
        Process {
            dedup: Dedup::new(store, 72).unwrap(),
            feeder: Staleness::new(store, monitor.clone()).unwrap(),
            monitor,
            alerter: alerter.clone(),
        }
    }

    fn receive(&mut self, events: &[Event]) {
        self.dedup.handle(events).now_or_never().unwrap().unwrap();
        self.feeder.handle(events).now_or_never().unwrap().unwrap();
    }

    fn tick(&self, at: i64) {
        super::check(
            &self.monitor,
            self.feeder.meta().as_ref(),
            &self.alerter,
            Micros(at).to_datetime(),
        );
    }
}

fn keys(alerter: &Alerter) -> Vec<String> {
    alerter.raised().into_iter().map(|a| a.key).collect()
}

#[test]
fn a_restart_during_a_stale_episode_raises_no_second_stale_and_one_recovered_after_a_message() {
    let store = MemState::default();
    let alerter = Alerter::disabled();
    let mut first = Process::start(&store, &alerter);
    first.receive(&[quo_inbound(1, T0, "EVa", "ACa", "+15555550111", "hi")]);
    first.tick(T0 + HOUR + MINUTE);
    assert_eq!(keys(&alerter), ["staleness"]);

    // Restarted while still silent: quiet, however long the silence goes on.
    let mut second = Process::start(&store, &alerter);
    for at in [T0 + HOUR + 2 * MINUTE, T0 + 2 * HOUR, T0 + 30 * HOUR] {
        second.tick(at);
    }
    assert_eq!(keys(&alerter), ["staleness"], "no second Stale");
    // A message ends the episode: one Recovered, for the silence since the first message.
    second.receive(&[quo_inbound(
        2,
        T0 + 31 * HOUR,
        "EVb",
        "ACb",
        "+15555550111",
        "back",
    )]);
    second.tick(T0 + 31 * HOUR + MINUTE);
    second.tick(T0 + 31 * HOUR + 2 * MINUTE);
    assert_eq!(keys(&alerter), ["staleness", "staleness:recovered"]);
    let recovered = &alerter.raised()[1];
    assert!(recovered.reason.contains("31 h 00 min"), "{recovered:?}");

    // Restarted after the recovery: no second Recovered, and a new silence alerts again.
    let third = Process::start(&store, &alerter);
    third.tick(T0 + 31 * HOUR + 30 * MINUTE);
    assert_eq!(keys(&alerter), ["staleness", "staleness:recovered"]);
    third.tick(T0 + 32 * HOUR + MINUTE);
    assert_eq!(
        keys(&alerter),
        ["staleness", "staleness:recovered", "staleness"]
    );
}

#[test]
fn a_message_that_ended_the_episode_just_before_a_restart_raises_recovered_after_it_once() {
    let store = MemState::default();
    let alerter = Alerter::disabled();
    let mut first = Process::start(&store, &alerter);
    first.receive(&[quo_inbound(1, T0, "EVa", "ACa", "+15555550111", "hi")]);
    first.tick(T0 + HOUR + MINUTE);
    // The message is stored, then the process stops before the timer's next check.
    first.receive(&[quo_inbound(
        2,
        T0 + 2 * HOUR,
        "EVb",
        "ACb",
        "+15555550111",
        "back",
    )]);
    let second = Process::start(&store, &alerter);
    second.tick(T0 + 2 * HOUR + MINUTE);
    second.tick(T0 + 2 * HOUR + 2 * MINUTE);
    assert_eq!(keys(&alerter), ["staleness", "staleness:recovered"]);
    let third = Process::start(&store, &alerter);
    third.tick(T0 + 2 * HOUR + 3 * MINUTE);
    assert_eq!(keys(&alerter), ["staleness", "staleness:recovered"]);
}

#[test]
fn backfilled_copies_and_duplicates_are_no_sign_of_life_and_end_no_stale_episode() {
    let store = MemState::default();
    let alerter = Alerter::disabled();
    let mut p = Process::start(&store, &alerter);
    let first = quo_inbound(1, T0, "EVa", "ACa", "+15555550111", "hi");
    p.receive(std::slice::from_ref(&first));
    p.tick(T0 + HOUR + MINUTE);
    assert_eq!(keys(&alerter), ["staleness"]);

    // The provider retries the first message two hours later (dedup flags it duplicate),
    // and a backfill appends a message the webhooks missed (an original, but its receipt
    // time is when the backfill ran).
    let mut retry = first.clone();
    retry.seq = Seq(2);
    retry.received_at = Micros(T0 + 2 * HOUR);
    let missed = serde_json::json!({
        "id": "ACmissed", "from": "+15555550112", "to": ["+15555550100"],
        "direction": "incoming", "text": "did you get this?", "status": "received",
        "createdAt": "2026-04-12T16:02:11.420Z", "phoneNumberId": "PNtoDbDhuz"
    });
    let backfilled = event(
        3,
        T0 + 2 * HOUR,
        Source::BackfillQuo,
        "/v1/messages/ACmissed",
        &missed.to_string(),
    );
    p.receive(&[retry, backfilled]);
    p.tick(T0 + 2 * HOUR + MINUTE);
    assert_eq!(keys(&alerter), ["staleness"], "not a recovery");
    assert!(p.monitor.lock().unwrap().is_stale());
    // Nor was the stored time moved: after a restart it is still the alerted episode.
    let meta = store.tree(NAME, "meta").unwrap();
    assert_eq!(
        meta.get(LAST_INBOUND).unwrap(),
        Some(T0.to_be_bytes().to_vec())
    );
    let restarted = Process::start(&store, &alerter);
    restarted.tick(T0 + 3 * HOUR);
    assert_eq!(keys(&alerter), ["staleness"]);
    assert!(restarted.monitor.lock().unwrap().is_stale());
}

#[test]
fn a_restart_restores_the_last_inbound_time_without_reading_the_log_again() {
    let store = MemState::default();
    let first = monitor();
    assert!(!Staleness::new(&store, first.clone()).unwrap().restored());
    feed(
        &store,
        &first,
        &[quo_inbound(1, T0, "EVa", "ACa", "+15555550111", "hi")],
    );

    // A new process: a fresh monitor, primed only from the stored time.
    let second = monitor();
    let feeder = Staleness::new(&store, second.clone()).unwrap();
    assert!(feeder.restored());
    assert_eq!(check(&second, T0 + HOUR / 2), None);
    assert_eq!(
        check(&second, T0 + HOUR + 60_000_000),
        Some(StalenessEvent::Stale {
            silent_since: Micros(T0).to_datetime(),
            minutes: 61
        })
    );
}

#[test]
fn a_replayed_older_message_does_not_move_the_stored_time_back() {
    let store = MemState::default();
    let m = monitor();
    feed(
        &store,
        &m,
        &[
            quo_inbound(1, T0, "EVa", "ACa", "+15555550111", "one"),
            quo_inbound(2, T0 + HOUR, "EVb", "ACb", "+15555550111", "two"),
        ],
    );
    // A rewind replays the first record alone.
    let mut feeder = Staleness::new(&store, m.clone()).unwrap();
    feeder
        .handle(&[quo_inbound(1, T0, "EVa", "ACa", "+15555550111", "one")])
        .now_or_never()
        .unwrap()
        .unwrap();
    let restarted = monitor();
    Staleness::new(&store, restarted.clone()).unwrap();
    assert_eq!(check(&restarted, T0 + HOUR + HOUR / 2), None);
    assert!(check(&restarted, T0 + 2 * HOUR + 60_000_000).is_some());
}

#[test]
fn a_log_without_inbound_messages_is_marked_read_so_the_next_start_does_not_replay_it() {
    let store = MemState::default();
    let m = monitor();
    feed(
        &store,
        &m,
        &[crate::consumers::testutil::from_fixture(
            "openphone/legacy_message_delivered_v4.json",
            1,
            T0,
        )],
    );
    assert!(Staleness::new(&store, monitor()).unwrap().restored());
}
