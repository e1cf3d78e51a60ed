//! The sender's effects ledger: per message, the latest attempt and whether it has its result.
//! The ledger, not the cursor, decides whether the provider may be called (at most once); it is
//! learned again from the attempt and result records of the log at start (see [`super`]).

use std::sync::Arc;

use super::{LedgerEntry, LedgerState, Sender};
use crate::consumers::outbound::{MessageId, OutboundRecord, SendStatus};
use crate::consumers::{Batch, BatchError};
use crate::state::StateError;

impl Sender {
    /// A message's ledger entry.
    pub fn ledger_entry(&self, id: &MessageId) -> Result<Option<LedgerEntry>, StateError> {
        self.ledger
            .get(id.as_str().as_bytes())?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                    tree: "sender/ledger".into(),
                    message: e.to_string(),
                })
            })
            .transpose()
    }

    pub(super) fn put_ledger(
        &self,
        id: &MessageId,
        attempt: u32,
        state: LedgerState,
        status: Option<SendStatus>,
        window: Option<u64>,
    ) -> Result<(), StateError> {
        let entry = LedgerEntry {
            attempt,
            state,
            status,
            at: self.clock.now().to_rfc3339(),
            window,
        };
        self.ledger
            .insert(id.as_str().as_bytes(), &crate::state::to_json(&entry)?)
    }

    /// The attempts and results in `batch`, noted in the ledger: an attempt with no result
    /// becomes `attempting(n)` (the allow decision then ends it as `unknown`, without a
    /// call), a result `done`. Never behind what the ledger already has: an older attempt
    /// number, or `attempting` over `done` for the same attempt, is ignored.
    pub(super) async fn learn(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        for event in batch.events() {
            let (id, attempt, state, status) = match OutboundRecord::decode(event) {
                Some(Ok(OutboundRecord::Attempt(a))) => {
                    (a.id, a.attempt, LedgerState::Attempting, None)
                }
                Some(Ok(OutboundRecord::Result(r))) => {
                    (r.id, r.attempt, LedgerState::Done, Some(r.status))
                }
                // An unreadable record shows nothing; the outbound consumer dead-letters it.
                _ => continue,
            };
            let known = self.ledger_entry(&id)?;
            let newer = match &known {
                None => true,
                Some(e) => {
                    e.attempt < attempt
                        || (e.attempt == attempt
                            && e.state == LedgerState::Attempting
                            && state == LedgerState::Done)
                }
            };
            if newer {
                // The same attempt keeps its redelivery window, as `finish_attempt` does: a
                // batch handled again inside the window must not send again.
                let window = known
                    .filter(|e| e.attempt == attempt)
                    .and_then(|e| e.window);
                self.put_ledger(&id, attempt, state, status, window)?;
            }
        }
        // Durable now: once the cursor has passed these records, a restart does not learn
        // them again.
        self.ledger.flush()?;
        Ok(())
    }
}
