//! The staleness consumer: feeds the [`crate::staleness::StalenessMonitor`] with the receipt
//! time of every live inbound message, while a timer asks the monitor whether the silence has
//! lasted too long. Backfilled copies are ignored (their receipt time is when they were
//! appended, which would look like a recovery), and so are duplicates.
//!
//! It keeps no state of its own: on start it rebuilds the monitor from the log by replaying
//! from its cursor, which is fine because only the latest inbound time matters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::dedup::{self, Verdicts};
use super::{Batch, BatchError, Consumer, RewindMode};
use crate::alerts::Alerter;
use crate::event::Source;
use crate::parse::{self, Direction, Kind};
use crate::staleness::StalenessMonitor;
use crate::state::{StateError, StateStore};

/// The consumer's name.
pub const NAME: &str = "staleness";

/// Feeds inbound message times to a shared monitor.
pub struct Staleness {
    monitor: Arc<Mutex<StalenessMonitor>>,
    verdicts: Verdicts,
}

impl Staleness {
    /// A consumer feeding `monitor`.
    pub fn new(
        store: &dyn StateStore,
        monitor: Arc<Mutex<StalenessMonitor>>,
    ) -> Result<Staleness, StateError> {
        Ok(Staleness {
            monitor,
            verdicts: Verdicts::open(store)?,
        })
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
            }
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
