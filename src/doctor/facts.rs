//! What one check learns and a later one uses: the providers' accounts ([`Accounts`], from the
//! credential checks) and the log's window ([`Seen`], from the activity reader).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A Quo line of the workspace.
#[derive(Clone, Debug, Deserialize)]
pub struct QuoNumber {
    /// `PN…`.
    pub id: String,
    /// E.164.
    #[serde(default)]
    pub number: Option<String>,
}

/// What the credential checks learnt, for the later checks.
#[derive(Debug, Default)]
pub struct Accounts {
    /// The workspace's numbers, when the Quo key worked.
    pub quo_numbers: Option<Vec<QuoNumber>>,
    /// Whether the Twilio credentials worked.
    pub twilio_ok: bool,
}

/// What the window holds.
#[derive(Debug)]
pub struct Seen {
    /// Where it was read from, or why it could not be.
    pub from: Result<String, String>,
    /// Last Quo webhook received, by event type (the canonical dotted name).
    pub by_type: BTreeMap<String, DateTime<Utc>>,
    /// Last Quo webhook received, by line (`PN…`).
    pub by_line: BTreeMap<String, DateTime<Utc>>,
    /// Records read.
    pub records: u64,
    /// Whether the window held more than [`MAX_WINDOW_RECORDS`](super::report::MAX_WINDOW_RECORDS) (the oldest were not read).
    pub truncated: bool,
}
