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
//! Key layout (tree `meta` of consumer `staleness`):
//!
//! | key            | value                                                              |
//! |----------------|--------------------------------------------------------------------|
//! | `last_inbound` | empty (no live inbound message seen yet), or receipt time µs `i64` BE |

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::dedup::{self, Verdicts};
use super::{Batch, BatchError, Consumer, RewindMode};
use crate::alerts::Alerter;
use crate::event::{Micros, Source};
use crate::parse::{self, Direction, Kind};
use crate::staleness::StalenessMonitor;
use crate::state::{KvTree, StateError, StateStore};

/// The consumer's name.
pub const NAME: &str = "staleness";

/// Key of the latest live inbound receipt time in tree `meta`.
const LAST_INBOUND: &[u8] = b"last_inbound";

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
            Some(v) => {
                let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| StateError::Corrupt {
                    tree: format!("{NAME}/meta"),
                    message: format!("last_inbound holds {} bytes, not 8", v.len()),
                })?;
                Some(Some(Micros(i64::from_be_bytes(bytes))))
            }
        };
        if let Some(Some(at)) = stored {
            monitor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .observe_inbound(at.to_datetime());
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

/// Checks the monitor every `interval` and raises its alerts, until `shutdown`.
pub async fn run_timer(
    monitor: Arc<Mutex<StalenessMonitor>>,
    alerter: Alerter,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let alert = {
            let mut m = monitor.lock().unwrap_or_else(|p| p.into_inner());
            m.check(chrono::Utc::now()).map(|ev| m.to_alert(&ev))
        };
        if let Some(alert) = alert {
            alerter.raise(alert);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::consumers::dedup::Dedup;
    use crate::consumers::testutil::{quo_inbound, HOUR};
    use crate::event::Event;
    use crate::staleness::{StalenessConfig, StalenessEvent};
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
