//! Dead letters: the records a consumer could not process, kept per consumer until redriven.
//!
//! Key layout: tree `dead_letters` of each consumer, key = sequence big-endian, value = JSON
//! [`DeadLetter`]. The driver writes them ([`super::driver`]); status, the admin API and
//! `hooklog-replay` read them with [`dead_letters`].

use serde::{Deserialize, Serialize};

use crate::state::{self, StateError, StateStore};

/// A dead-lettered record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The consumer that could not process it.
    pub consumer: String,
    /// The record.
    pub seq: u64,
    /// Why.
    pub error: String,
    /// When it was dead-lettered (RFC 3339).
    pub at: String,
    /// How many times it has been tried (1 + redrives).
    pub attempts: u32,
}

/// The dead letters of one consumer.
pub fn dead_letters(store: &dyn StateStore, consumer: &str) -> Result<Vec<DeadLetter>, StateError> {
    let tree = store.tree(consumer, DEAD_LETTERS)?;
    let mut out = Vec::new();
    state::for_each(tree.as_ref(), &[], |_, v| {
        out.push(decode_dead_letter(v)?);
        Ok(true)
    })?;
    Ok(out)
}

/// The tree of a consumer's dead letters.
pub const DEAD_LETTERS: &str = "dead_letters";

pub(super) fn decode_dead_letter(v: &[u8]) -> Result<DeadLetter, StateError> {
    serde_json::from_slice(v).map_err(|e| StateError::Corrupt {
        tree: DEAD_LETTERS.into(),
        message: e.to_string(),
    })
}
