//! Where the CLI reads the log from: the running daemon's admin API ([`api::Api`]) or, with
//! the daemon stopped, the data directory itself ([`direct::Direct`]).
//!
//! Both answer in the admin API's JSON types ([`Status`], [`EventJson`]), so a subcommand
//! prints the same thing whichever backend served it. Neither ever appends or moves a cursor:
//! the direct reader is read-only in spirit (sled has no read-only mode, but nothing here
//! writes through it).

pub mod api;
pub mod direct;

use hooklog::admin::api::{EventJson, Status};

/// A source of log records and status.
pub trait Backend {
    /// Where the data comes from, for messages: `the admin API at …` / `… directly`.
    fn describe(&self) -> String;

    /// Whether this reads the data directory (as opposed to asking the daemon).
    fn is_direct(&self) -> bool;

    /// The status document.
    fn status(&mut self) -> anyhow::Result<StatusReply>;

    /// Up to `limit` events with a sequence greater than `after`, in order.
    fn read(&mut self, after: u64, limit: usize) -> anyhow::Result<Vec<EventJson>>;

    /// One event, or `None` if the log does not hold it.
    fn get(&mut self, seq: u64) -> anyhow::Result<Option<EventJson>>;

    /// Lets go of what is held between calls: the direct reader closes the database so the
    /// daemon can start while `tail --follow` waits; the next call opens it again.
    fn release(&mut self) -> anyhow::Result<()>;
}

/// A status document, decoded and as JSON text.
#[derive(Clone, Debug)]
pub struct StatusReply {
    /// Decoded, for the text output.
    pub status: Status,
    /// One line of JSON: the admin API's answer as it came, or the same shape built from
    /// the data directory.
    pub json: String,
}

/// Nothing accepts connections at the admin URL: the daemon is not running there. This is
/// the one failure that selects the direct backend.
#[derive(Debug, thiserror::Error)]
#[error("daemon not reachable at {url}: {detail}")]
pub struct Unreachable {
    /// The admin base URL.
    pub url: String,
    /// The transport error.
    pub detail: String,
}

/// Whether an error (or one of its causes) is [`Unreachable`].
pub fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Unreachable>())
}
