//! The outbound path (DESIGN §5, §7): an agent's request to send an SMS, the gates'
//! decision, the send attempt and its result, each a record in the log.
//!
//! ```text
//! POST /v1/messages ──► request record ──► `outbound` consumer: gates ──► decision record
//!                                                                            │ allow
//!                     result record ◄── provider API ◄── attempt record ◄── `sender`
//! ```
//!
//! - [`events`]: the record bodies and routes (the on-log format of this path);
//! - [`message`]: the state of one message, a pure fold of its records;
//! - [`store`]: the trees the projection and the API keep.
//!
//! Invariants: a message is sent only after an `allow` decision for it is in the log; an
//! attempt record (and the sender's ledger entry) precedes every provider call; a message
//! that has an attempt and no result after a restart becomes `unknown`, never sent again by
//! itself (at most once).

pub mod events;
pub mod message;
pub mod store;

pub use events::{
    DispatchResult, GateDecision, LineChange, MessageId, MessageRequest, OutboundRecord,
    RecordError, SendAttempt, SendResult, SendStatus, Verdict,
};
pub use message::{apply, Change, Message, Status, Step};
pub use store::OutboundStore;
