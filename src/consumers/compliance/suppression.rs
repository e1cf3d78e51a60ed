//! The suppression list, as the compliance consumer keeps it and as every other component reads
//! it (the outbound gates, the sender's last-moment check, dispatch's `opted_out`, the Postgres
//! `sms_optouts` rows, the admin API): this file is its one reader and its record formats.
//!
//! Key layout (trees of consumer `compliance`):
//!
//! | tree          | key                  | value                       |
//! |---------------|----------------------|-----------------------------|
//! | `suppression` | E.164 number, UTF-8  | JSON [`OptOutEntry`]        |
//!
//! Only the compliance consumer writes the tree; everyone else reads it through [`list`],
//! [`entry`] and [`is_suppressed`]. A number is looked up in its E.164 form
//! ([`crate::phone::normalize_e164`]), so `(555) 555-0123` and `+15555550123` are one entry.

use serde::{Deserialize, Serialize};

use crate::phone::normalize_e164;
use crate::state::{for_each, StateError, StateStore};

/// The consumer that owns the list.
pub const CONSUMER: &str = "compliance";
/// The tree of the list.
pub(crate) const TREE: &str = "suppression";
/// Route of the `internal` events the admin API appends for manual list changes.
pub const ADMIN_ROUTE: &str = "/internal/optouts";

/// One number on the suppression list, with the evidence of its latest change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOutEntry {
    /// E.164.
    pub number: String,
    /// `opted_out` (suppressed) or `resubscribed`.
    pub state: String,
    /// The record that set this state.
    pub seq: u64,
    /// `openphone`, `twilio`, `salesmsg`, or `admin`.
    pub provider: String,
    /// The line (number or provider line id) the message was sent to, if known.
    pub line: Option<String>,
    /// The message text (or the operator's reason).
    pub text: String,
    /// When the record was received (RFC 3339).
    pub at: String,
    /// `keyword`, `phrase`, `ambiguous`, `opt_out_type`, `admin`, `opt_in`.
    pub how: String,
    /// The classifier's reason.
    pub reason: String,
}

impl OptOutEntry {
    /// Whether the number must not be messaged.
    pub fn is_suppressed(&self) -> bool {
        self.state == "opted_out"
    }
}

/// A manual change appended through the admin API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminChange {
    /// `add` (suppress) or `remove` (lift).
    pub action: String,
    /// The number.
    pub number: String,
    /// Why (kept as evidence).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The body of an [`ADMIN_ROUTE`] record as this consumer reads it: an [`AdminChange`]
/// (same JSON fields), plus where the change came from when hooklog itself appended it. The
/// `sender` appends one when Twilio refuses a send with 21610 (the recipient unsubscribed at
/// Twilio), so the evidence names the provider and the line rather than an operator. Both
/// extra fields default to absent, so every record the admin API wrote reads as before.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OptOutChange {
    /// `add` (suppress) or `remove` (lift).
    pub action: String,
    /// The number.
    pub number: String,
    /// Why (kept as evidence).
    #[serde(default)]
    pub reason: Option<String>,
    /// The provider that reported the opt-out (`twilio`); absent: an operator (`admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The line the refused message was sent from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
}

/// The whole suppression list (suppressed and resubscribed entries), by number.
pub fn list(store: &dyn StateStore) -> Result<Vec<OptOutEntry>, StateError> {
    let tree = store.tree(CONSUMER, TREE)?;
    let mut out = Vec::new();
    for_each(tree.as_ref(), &[], |_, v| {
        out.push(decode(v)?);
        Ok(true)
    })?;
    Ok(out)
}

/// Whether `number` is suppressed.
pub fn is_suppressed(store: &dyn StateStore, number: &str) -> Result<bool, StateError> {
    Ok(entry(store, number)?.is_some_and(|e| e.is_suppressed()))
}

/// The list's entry for `number` (suppressed or resubscribed), if any.
pub fn entry(store: &dyn StateStore, number: &str) -> Result<Option<OptOutEntry>, StateError> {
    let Some(n) = normalize_e164(number) else {
        return Ok(None);
    };
    let tree = store.tree(CONSUMER, TREE)?;
    tree.get(n.as_bytes())?.map(|v| decode(&v)).transpose()
}

pub(crate) fn decode(v: &[u8]) -> Result<OptOutEntry, StateError> {
    serde_json::from_slice(v).map_err(|e| StateError::Corrupt {
        tree: "compliance/suppression".into(),
        message: e.to_string(),
    })
}
