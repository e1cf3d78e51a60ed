//! Redelivery windows: how an operator's `rewind … --redeliver` reaches a consumer with an
//! effects ledger (dispatch, sender).
//!
//! A plain rewind replays records and the ledger skips every effect already performed. A
//! rewind with `--redeliver` stores a window `(after, through]` ([`Consumer::redeliver`]):
//! the records in it perform their effect again, **once per window**. Each window has a
//! generation (strictly increasing); the ledger entry of an effect performed inside a window
//! records that generation, so a batch handled twice inside one window (a transient failure
//! later in the batch, a restart) does not perform it twice, while a later window does.
//!
//! The window is durable (one key in a tree of the consumer) so it survives a restart
//! between the rewind and the replay, and it is closed once the consumer's own progress
//! passes `through`. A redrive hands over records behind the cursor: those never close it.
//!
//! # Limits
//!
//! Before a window is opened, the consumer counts what it would perform again
//! ([`Consumer::plan_redelivery`], a [`RedeliveryPlan`](super::RedeliveryPlan)): its own ledger decides, record by
//! record, exactly as handling the range inside a fresh window would, and the range is read
//! from the log in batches of [`SCAN_BATCH`] ([`scan`]), so the count costs no memory per
//! record. The driver opens the window only when the operator confirmed and the count is
//! within the limit (`max_redeliver` of the consumer's section, or the operator's own for
//! that one call); otherwise it refuses and changes nothing (docs/operations.md#redeliver-safely).
//!
//! [`Consumer::redeliver`]: super::Consumer::redeliver
//! [`Consumer::plan_redelivery`]: super::Consumer::plan_redelivery

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{Event, Micros, Seq};
use crate::log::{Log, LogError};
use crate::state::{KvTree, StateError};

const WINDOW_KEY: &[u8] = b"redeliver";

/// Records read from the log at a time while counting a redelivery.
pub const SCAN_BATCH: usize = 512;

/// Hands `f` the records in `(after, through]`, in order, [`SCAN_BATCH`] at a time, so that
/// counting a range of any length holds one batch in memory. A record that cannot be decoded
/// is left out (the driver dead-letters it; it performs nothing).
pub fn scan(
    log: &dyn Log,
    after: Seq,
    through: Seq,
    mut f: impl FnMut(Vec<Event>) -> Result<(), super::BatchError>,
) -> Result<(), super::BatchError> {
    let transient = |e: LogError| super::BatchError::Transient(e.to_string());
    let mut from = after;
    while from < through {
        let want = (through.0 - from.0).min(SCAN_BATCH as u64) as usize;
        let events = match log.read(from, want) {
            Ok(events) => events,
            Err(LogError::Corrupt { seq, .. }) => {
                // The records before it, then on after it.
                let before = seq.0.saturating_sub(from.0 + 1) as usize;
                let events = if before > 0 {
                    log.read(from, before).map_err(transient)?
                } else {
                    Vec::new()
                };
                f(events)?;
                from = seq;
                continue;
            }
            Err(e) => return Err(transient(e)),
        };
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(());
        };
        let events: Vec<Event> = events.into_iter().filter(|e| e.seq <= through).collect();
        f(events)?;
        from = last;
    }
    Ok(())
}

/// Records in `(after, through]` perform their effect again, once each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeliveryWindow {
    /// Exclusive start.
    pub after: u64,
    /// Inclusive end (the cursor when the operator asked).
    pub through: u64,
    /// Distinguishes this window from earlier ones in the ledger.
    pub generation: u64,
}

impl RedeliveryWindow {
    /// Whether record `seq` is inside.
    pub fn contains(&self, seq: Seq) -> bool {
        seq.0 > self.after && seq.0 <= self.through
    }
}

/// The stored window of one consumer.
#[derive(Clone)]
pub struct Redelivery {
    tree: Arc<dyn KvTree>,
}

impl Redelivery {
    /// The window kept in `tree` (a tree of the consumer's own).
    pub fn new(tree: Arc<dyn KvTree>) -> Redelivery {
        Redelivery { tree }
    }

    /// The open window, if any.
    pub fn current(&self) -> Result<Option<RedeliveryWindow>, StateError> {
        self.tree
            .get(WINDOW_KEY)?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                    tree: "redelivery window".into(),
                    message: e.to_string(),
                })
            })
            .transpose()
    }

    /// Opens a window for a rewind from `through` back to `after`. A window not yet finished
    /// keeps its unreached part (the cursor is at `through`, so its end is the larger one).
    /// `None` when the range is empty.
    pub fn open(&self, after: Seq, through: Seq) -> Result<Option<RedeliveryWindow>, StateError> {
        if through <= after {
            return Ok(None);
        }
        let old = self.current()?;
        let window = RedeliveryWindow {
            after: after.0,
            through: old.map_or(through.0, |w| w.through.max(through.0)),
            generation: (Micros::now().0.max(0) as u64).max(old.map_or(0, |w| w.generation + 1)),
        };
        self.tree
            .insert(WINDOW_KEY, &crate::state::to_json(&window)?)?;
        Ok(Some(window))
    }

    /// After a batch of `events` handled by `consumer`: closes `window` once the consumer's
    /// own progress (its cursor saved in `log`) has passed its end. Returns the window it
    /// closed, if any. What sender and dispatch both call at the end of a batch.
    pub fn finish(
        &self,
        window: Option<RedeliveryWindow>,
        events: &[crate::event::Event],
        log: &dyn crate::log::Log,
        consumer: &str,
    ) -> Result<Option<RedeliveryWindow>, super::BatchError> {
        let (Some(w), Some(first), Some(last)) = (window, events.first(), events.last()) else {
            return Ok(None);
        };
        let cursor = log
            .cursor(consumer)
            .map_err(|e| super::BatchError::Transient(e.to_string()))?;
        Ok(self
            .finish_batch(w, first.seq, last.seq, cursor)?
            .then_some(w))
    }

    /// After a batch `first..=last` handled from `cursor` (the consumer's saved cursor):
    /// closes `window` once the consumer's own progress has passed its end. Returns whether
    /// it closed.
    pub fn finish_batch(
        &self,
        window: RedeliveryWindow,
        first: Seq,
        last: Seq,
        cursor: Seq,
    ) -> Result<bool, StateError> {
        if first > cursor && last.0 >= window.through {
            self.tree.remove(WINDOW_KEY)?;
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemState, StateStore};

    fn store() -> Redelivery {
        Redelivery::new(MemState::default().tree("c", "meta").unwrap())
    }

    #[test]
    fn a_window_is_stored_widened_by_a_second_request_and_closed_by_progress_only() {
        let r = store();
        assert_eq!(r.open(Seq(5), Seq(5)).unwrap(), None, "empty range");
        let w1 = r.open(Seq(10), Seq(50)).unwrap().unwrap();
        assert!(w1.contains(Seq(11)) && w1.contains(Seq(50)) && !w1.contains(Seq(10)));
        assert_eq!(r.current().unwrap(), Some(w1));
        // A second rewind before the first window finished: a new generation, the old end kept.
        let w2 = r.open(Seq(20), Seq(30)).unwrap().unwrap();
        assert_eq!((w2.after, w2.through), (20, 50));
        assert!(w2.generation > w1.generation);
        // A redrive of records behind the cursor does not close it; progress past its end does.
        assert!(!r.finish_batch(w2, Seq(3), Seq(60), Seq(40)).unwrap());
        assert!(!r.finish_batch(w2, Seq(41), Seq(49), Seq(40)).unwrap());
        assert!(r.finish_batch(w2, Seq(41), Seq(60), Seq(40)).unwrap());
        assert_eq!(r.current().unwrap(), None);
    }
}
