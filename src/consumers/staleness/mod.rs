//! The staleness consumer: feeds the [`StalenessMonitor`] with the receipt
//! time of every live inbound message, while a timer asks the monitor whether the silence has
//! lasted too long. Backfilled copies are ignored (their receipt time is when they were
//! appended, which would look like a recovery), and so are duplicates.
//!
//! The component's files: this one (the consumer and its timer), [`monitor`] (the pure state
//! machine that decides when to alert), [`window`] (the daily window and in-window time) and
//! [`config`] (the `[staleness]` section).
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

pub mod config;
pub mod monitor;
pub mod window;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::alerts::Alerter;
use crate::consumers::dedup::{self, Verdicts};
use crate::consumers::{Batch, BatchError, Consumer, RewindMode};
use crate::event::{Micros, Source};
use crate::parse::{self, Direction, Kind};
use crate::state::{KvTree, StateError, StateStore};

pub use config::StalenessConfig;
pub use monitor::{StalenessEvent, StalenessMonitor};

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
                Source::Quo | Source::Twilio | Source::SalesMsg
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
mod tests;
