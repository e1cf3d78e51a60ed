//! The `controls` consumer: projects the operator's emergency stops (the kill switch and the
//! consumers' pauses) from the log into a small tree, so that they survive a restart, a
//! `kill -9` and a fail-over, and every replica that runs the consumers obeys the same ones.
//!
//! It reads only the records on [`CONTROL_ROUTE`] and skips every other record by its route,
//! without parsing it; it has no upstream, so it stays at the head of the log. The sender
//! does not call a provider until this projection has read the log up to the end the log had
//! when the sender's batch started, and checks the kill switch per message at the last
//! moment; the outbound gates decide nothing until it has read the whole log; every other
//! driver waits for it once at start (a fail-over's new leader catches up from its own local
//! state first) and reads its pause from it before every batch.
//!
//! Invariants:
//! - A control record acts only if an operator route wrote it: source `internal` and
//!   [`Verification::AdminToken`](crate::event::Verification::AdminToken). Any other is
//!   poison: dead-lettered with an alert, never applied ([`stops::forged`]).
//! - A stop moves only forward in the log: a record older than (or the same as) the one that
//!   set the current state is skipped, so a batch handled twice or a rewind never lifts a
//!   stop, even for a moment. For the same reason there is nothing to clear on a rewind
//!   ([`RewindMode::Replay`]).
//! - Applied stops are flushed before the batch returns, so the cursor the admin API waits
//!   for never names a stop that a crash could take back.
//! - The consumer cannot pause itself: a pause record naming it is poison.
//!
//! Key layout: see [`stops`].

pub mod stops;

use std::sync::Arc;

use crate::alerts::{Alert, Alerter, Severity};
use crate::consumers::{Batch, BatchError, Consumer, RewindMode};
use crate::event::Event;
use crate::state::{KvTree, StateError, StateStore};

pub use stops::{
    ControlAction, ControlRecord, Controls, KillSwitch, Pause, CONTROL_ROUTE, NAME, OPERATOR,
};

/// The consumer.
pub struct ControlsConsumer {
    tree: Arc<dyn KvTree>,
    alerter: Alerter,
}

impl ControlsConsumer {
    /// Opens its tree in `store`.
    pub fn new(store: &dyn StateStore, alerter: Alerter) -> Result<ControlsConsumer, StateError> {
        Ok(ControlsConsumer {
            tree: store.tree(NAME, stops::TREE)?,
            alerter,
        })
    }

    /// Applies one control record; `Ok(false)` when the state already holds it or a newer one.
    fn apply(&self, event: &Event) -> Result<bool, BatchError> {
        let poison = |error: String| BatchError::Poison {
            seq: event.seq,
            error,
        };
        if let Some(why) = stops::forged(event) {
            return Err(poison(why));
        }
        let record: ControlRecord = serde_json::from_slice(&event.body)
            .map_err(|e| poison(format!("invalid control record: {e}")))?;
        let seq = event.seq.0;
        match &record.action {
            ControlAction::KillSwitch { on } => {
                let key = stops::kill_switch_key();
                if let Some(v) = self.tree.get(key)? {
                    if stops::decode_kill_switch(&v)?.seq >= seq {
                        return Ok(false);
                    }
                }
                let state = KillSwitch {
                    on: *on,
                    by: record.by.clone(),
                    at: record.at.clone(),
                    reason: record.reason.clone(),
                    seq,
                };
                self.tree.insert(key, &crate::state::to_json(&state)?)?;
                self.tree.flush()?;
                self.announce_kill_switch(&state);
            }
            ControlAction::Pause { consumer } | ControlAction::Resume { consumer } => {
                if consumer == NAME {
                    return Err(poison(format!(
                        "`{NAME}` cannot be paused: it is what keeps the stops in force"
                    )));
                }
                let key = stops::pause_key(consumer);
                if let Some(v) = self.tree.get(&key)? {
                    if stops::decode_pause(&v)?.seq >= seq {
                        return Ok(false);
                    }
                }
                let paused = matches!(record.action, ControlAction::Pause { .. });
                let state = Pause {
                    paused,
                    by: record.by.clone(),
                    at: record.at.clone(),
                    reason: record.reason.clone(),
                    seq,
                };
                self.tree.insert(&key, &crate::state::to_json(&state)?)?;
                self.tree.flush()?;
                tracing::warn!(
                    consumer = %consumer,
                    paused,
                    by = %state.by,
                    reason = state.reason.as_deref().unwrap_or(""),
                    seq,
                    "consumer pause changed"
                );
            }
        }
        Ok(true)
    }

    fn announce_kill_switch(&self, state: &KillSwitch) {
        let why = state.reason.as_deref().unwrap_or("no reason given");
        tracing::warn!(on = state.on, by = %state.by, reason = why, seq = state.seq, "kill switch changed");
        self.alerter.raise(Alert {
            key: "kill_switch".into(),
            severity: if state.on {
                Severity::Critical
            } else {
                Severity::Warning
            },
            title: if state.on {
                format!("kill switch ON: nothing is sent ({})", state.by)
            } else {
                format!("kill switch off: sending resumes ({})", state.by)
            },
            reason: format!("{why} (record {}, at {})", state.seq, state.at),
            next_step: if state.on {
                "new outbound requests are refused with kill_switch; turn it off with \
                 `hooklog-replay kill-switch off` when the cause is fixed"
                    .into()
            } else {
                "requests from now on go through the gates as usual".into()
            },
        });
    }
}

impl Consumer for ControlsConsumer {
    fn name(&self) -> &'static str {
        NAME
    }

    /// A stop only moves forward, so a rewind replays the records over the state as it is:
    /// clearing it first would lift every stop until the replay reached it.
    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Replay
    }

    /// Never clears the stops (see [`Self::rewind_mode`]).
    fn reset(&mut self) -> Result<(), BatchError> {
        Ok(())
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        for event in batch.events() {
            if event.route == CONTROL_ROUTE {
                self.apply(event)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
