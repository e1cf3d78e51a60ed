//! The staleness consumer: feeds the [`crate::staleness::StalenessMonitor`] with the receipt
//! time of every live inbound message, while a timer asks the monitor whether the silence has
//! lasted too long. Backfilled copies are ignored (their receipt time is when they were
//! appended, which would look like a recovery), and so are duplicates.
//!
//! Only the latest inbound time matters, so that is all it keeps: each batch that saw a newer
//! inbound message stores its receipt time, and a start restores the monitor from it and goes
//! on from the consumer's cursor. Replaying records (a crash before the cursor moved, a
//! rewind) is harmless, since an older time changes nothing.
//!
//! An earlier version kept nothing and replayed the last 48 hours of the log at every start.
//! On a large log that read hundreds of thousands of records, and sled's read path pushed the
//! daemon's resident memory from ~45 MB to ~180 MB before it served a request. A data
//! directory without the stored time (first start after an upgrade) is still rebuilt that way
//! once, by the caller ([`Staleness::restored`] says which).
//!
//! The timer ([`run_timer`]) keeps one more fact: that the current silent episode was
//! alerted. After raising `Stale` it stores the episode's `silent_since`; after raising
//! `Recovered` it removes it. A start restores it into the monitor
//! ([`StalenessMonitor::restore_alerted`]), so a restart during a stale episode raises no
//! second `Stale`, and the first message after it raises `Recovered` once. If the stored
//! `last_inbound` is newer than `alerted`, a message ended the episode but the process
//! stopped before `Recovered` was raised: the restarted monitor raises it. The key is
//! written after the alert is raised, so a crash between the two repeats an alert rather
//! than losing one.
//!
//! Key layout (tree `meta` of consumer `staleness`):
//!
//! | key            | value                                                              |
//! |----------------|--------------------------------------------------------------------|
//! | `last_inbound` | empty (no live inbound message seen yet), or receipt time µs `i64` BE |
//! | `alerted`      | `silent_since` µs `i64` BE of the episode `Stale` was raised for; absent when none is open |

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::dedup::{self, Verdicts};
use super::{Batch, BatchError, Consumer, RewindMode};
use crate::alerts::Alerter;
use crate::event::{Micros, Source};
use crate::parse::{self, Direction, Kind};
use crate::staleness::{StalenessEvent, StalenessMonitor};
use crate::state::{KvTree, StateError, StateStore};

/// The consumer's name.
pub const NAME: &str = "staleness";

/// Key of the latest live inbound receipt time in tree `meta`.
const LAST_INBOUND: &[u8] = b"last_inbound";
/// Key of the start of the silent episode `Stale` was raised for, in tree `meta`.
const ALERTED: &[u8] = b"alerted";

/// A stored time: µs since the epoch, `i64` big-endian.
fn decode_micros(key: &str, v: &[u8]) -> Result<Micros, StateError> {
    let bytes: [u8; 8] = v.try_into().map_err(|_| StateError::Corrupt {
        tree: format!("{NAME}/meta"),
        message: format!("{key} holds {} bytes, not 8", v.len()),
    })?;
    Ok(Micros(i64::from_be_bytes(bytes)))
}

/// Feeds inbound message times to a shared monitor.
pub struct Staleness {
    monitor: Arc<Mutex<StalenessMonitor>>,
    verdicts: Verdicts,
    meta: Arc<dyn KvTree>,
    /// What `meta` holds: `None` before anything was stored, `Some(None)` once a batch was
    /// handled without any inbound message, `Some(Some(t))` for the latest one.
    stored: Option<Option<Micros>>,
}

impl Staleness {
    /// A consumer feeding `monitor`, which it primes with the stored latest inbound time.
    pub fn new(
        store: &dyn StateStore,
        monitor: Arc<Mutex<StalenessMonitor>>,
    ) -> Result<Staleness, StateError> {
        let meta = store.tree(NAME, "meta")?;
        let stored = match meta.get(LAST_INBOUND)? {
            None => None,
            Some(v) if v.is_empty() => Some(None),
            Some(v) => Some(Some(decode_micros("last_inbound", &v)?)),
        };
        let alerted = match meta.get(ALERTED)? {
            Some(v) => Some(decode_micros("alerted", &v)?),
            None => None,
        };
        {
            let mut m = monitor.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(Some(at)) = stored {
                m.observe_inbound(at.to_datetime());
            }
            // After the last message: the monitor compares the two.
            if let Some(since) = alerted {
                m.restore_alerted(since.to_datetime());
            }
        }
        Ok(Staleness {
            monitor,
            verdicts: Verdicts::open(store)?,
            meta,
            stored,
        })
    }

    /// Whether the monitor was restored from stored state. When not, the caller must replay
    /// the recent log into it (by moving this consumer's cursor back).
    pub fn restored(&self) -> bool {
        self.stored.is_some()
    }

    /// The state [`run_timer`] records alerted episodes in.
    pub fn meta(&self) -> Arc<dyn KvTree> {
        self.meta.clone()
    }
}

impl Consumer for Staleness {
    fn name(&self) -> &'static str {
        NAME
    }

    fn upstreams(&self) -> &'static [&'static str] {
        &[dedup::NAME]
    }

    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Replay
    }

    fn reset(&mut self) -> Result<(), BatchError> {
        Ok(())
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        // Dedup's verdicts once per batch, not once per record.
        let verdicts = self.verdicts.of_batch(batch.events())?;
        let mut latest: Option<Micros> = None;
        for record in batch.records() {
            let event = record.event;
            if !matches!(
                event.source,
                Source::OpenPhone | Source::Twilio | Source::SalesMsg
            ) {
                continue;
            }
            if verdicts.get(event.seq).is_some_and(|v| v.is_duplicate()) {
                continue;
            }
            // Unparseable records are the other consumers' business; here they just do not
            // count as a sign of life.
            let Ok(parsed) = record.parsed() else {
                continue;
            };
            let inbound = match &parsed.data {
                parse::Data::Message(m) => m.direction == Direction::Inbound,
                _ => false,
            };
            if parsed.kind == Kind::MessageReceived && inbound {
                self.monitor
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .observe_inbound(event.received_at.to_datetime());
                latest = latest.max(Some(event.received_at));
            }
        }
        // Stored only when it moves forward (or to mark that the log was read once), so a
        // quiet stream of status callbacks costs no writes.
        let next = match (self.stored, latest) {
            (None, l) => Some(l),
            (Some(old), Some(l)) if old.is_none_or(|o| l > o) => Some(Some(l)),
            _ => None,
        };
        if let Some(value) = next {
            let bytes = value
                .map(|t| t.0.to_be_bytes().to_vec())
                .unwrap_or_default();
            self.meta.insert(LAST_INBOUND, &bytes)?;
            self.stored = Some(value);
        }
        Ok(())
    }
}

/// Checks the monitor every `interval` and raises its alerts, until `shutdown`. `meta` is
/// the feeder's tree ([`Staleness::meta`]), where alerted episodes are recorded.
pub async fn run_timer(
    monitor: Arc<Mutex<StalenessMonitor>>,
    meta: Arc<dyn KvTree>,
    alerter: Alerter,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        check(&monitor, meta.as_ref(), &alerter, chrono::Utc::now());
    }
}

/// One check at `now`: raises what the monitor reports, then records it in `meta`.
fn check(
    monitor: &Mutex<StalenessMonitor>,
    meta: &dyn KvTree,
    alerter: &Alerter,
    now: chrono::DateTime<chrono::Utc>,
) {
    let (event, alert) = {
        let mut m = monitor.lock().unwrap_or_else(|p| p.into_inner());
        let Some(event) = m.check(now) else {
            return;
        };
        let alert = m.to_alert(&event);
        (event, alert)
    };
    alerter.raise(alert);
    let recorded = match event {
        StalenessEvent::Stale { silent_since, .. } => {
            let since = Micros(silent_since.timestamp_micros());
            meta.insert(ALERTED, &since.0.to_be_bytes())
        }
        StalenessEvent::Recovered { .. } => meta.remove(ALERTED),
    };
    if let Err(e) = recorded {
        // The alert is out; only its memory is lost, so a restart may raise it again.
        tracing::error!(error = %e, "staleness: cannot record the alerted episode");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::dedup::Dedup;
    use crate::consumers::testutil::{event, quo_inbound, HOUR};
    use crate::event::{Event, Seq};
    use crate::staleness::StalenessConfig;
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
            Source::BackfillOpenPhone,
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
}
