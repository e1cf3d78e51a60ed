//! Where the CLI reads the log from: the running daemon's admin API ([`api::Api`]) or, with
//! the daemon stopped, the data directory itself ([`direct::Direct`]).
//!
//! Both answer in the admin API's JSON types ([`Status`], [`EventJson`], [`DeadLetter`],
//! [`OptOutEntry`]), so a subcommand prints the same thing whichever backend served it.
//! Neither ever appends or moves a cursor: the direct reader is read-only in spirit (sled has
//! no read-only mode; the one thing it may write is an empty consumer tree, created when a
//! tree the daemon never wrote is looked at). Commands that change something (rewind,
//! redrive, pause) are not here: only the running daemon can do them ([`api::Api`]).

pub mod api;
pub mod direct;

use hooklog::admin::api::{EventJson, Status};
use hooklog::consumers::compliance::OptOutEntry;
use hooklog::consumers::DeadLetter;
use serde::Serialize;

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

    /// The dead letters of one consumer, or of every consumer, by consumer then sequence.
    fn dead_letters(&mut self, consumer: Option<&str>) -> anyhow::Result<Vec<Item<DeadLetter>>>;

    /// The suppression list, by number.
    fn optouts(&mut self) -> anyhow::Result<Vec<Item<OptOutEntry>>>;

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

/// One entry of a list, decoded and as one line of JSON. The JSON comes from the same
/// `serde_json::Value` form whichever backend served it (so the two print the same text), and
/// keeps fields a newer daemon may add.
#[derive(Clone, Debug)]
pub struct Item<T> {
    /// Decoded, for the text output.
    pub value: T,
    /// One line of JSON.
    pub json: String,
}

impl<T: Serialize> Item<T> {
    /// An entry read here (the direct backend).
    pub fn new(value: T) -> anyhow::Result<Item<T>> {
        let json = serde_json::to_value(&value)?.to_string();
        Ok(Item { value, json })
    }
}

impl<T: serde::de::DeserializeOwned> Item<T> {
    /// An entry as the admin API sent it.
    pub fn from_json(v: serde_json::Value) -> anyhow::Result<Item<T>> {
        let json = v.to_string();
        let value = serde_json::from_value(v)?;
        Ok(Item { value, json })
    }
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
