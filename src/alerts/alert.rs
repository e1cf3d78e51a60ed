//! What an operator alert is: its key (for coalescing), its severity, and the words that
//! tell the operator what happened and what to run next.

use serde::{Deserialize, Serialize};

/// How urgent an alert is; sets the log level and the Discord label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing (a recovery).
    Info,
    /// Needs a look soon (dead letters, retries exhausted).
    Warning,
    /// Needs action now (no inbound messages, the log cannot be written).
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub(super) fn badge(self) -> &'static str {
        match self {
            Severity::Info => "ℹ️ **INFO**",
            Severity::Warning => "⚠️ **WARNING**",
            Severity::Critical => "🚨 **CRITICAL**",
        }
    }
}

/// One operator alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Coalescing key: alerts with the same key are one story (e.g. `dead_letter:dedup`).
    pub key: String,
    /// How urgent it is.
    pub severity: Severity,
    /// One line: what happened.
    pub title: String,
    /// Why, with the figures the operator needs.
    pub reason: String,
    /// What the operator should run next, e.g. `hooklog-replay dead-letters`.
    pub next_step: String,
}
