//! `[doctor]`: what `hooklog doctor` accepts beyond hooklog's own routes, which Quo event types
//! it requires, and how far back it looks in the log.

use serde::{Deserialize, Serialize};

use crate::config::de;

/// The Quo event types hooklog needs by default: inbound texts (opt-outs come in these),
/// delivery reports of what it sends, finished calls and their summaries and transcripts (the
/// Postgres sync and agent dispatch project them). `call.ringing`, `call.recording.completed`
/// and the contact events are accepted when they come, but not required.
pub const DEFAULT_QUO_EVENTS: &[&str] = &[
    "message.received",
    "message.delivered",
    "call.completed",
    "call.summary.completed",
    "call.transcript.completed",
];

/// Every Quo webhook event type (docs/reference/quo.md): what `quo_events` may name.
pub const KNOWN_QUO_EVENTS: &[&str] = &[
    "message.received",
    "message.delivered",
    "call.ringing",
    "call.completed",
    "call.recording.completed",
    "call.summary.completed",
    "call.transcript.completed",
    "contact.updated",
    "contact.deleted",
];

/// `[doctor]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoctorConfig {
    /// Webhook URLs approved besides `server.public_urls` joined with hooklog's routes (the
    /// approved registry), e.g. a fallback URL a number keeps on purpose. A provider URL equal
    /// to one of these is never reported.
    #[serde(deserialize_with = "de::list")]
    pub approved_urls: Vec<String>,
    /// The Quo event types hooklog's webhook must subscribe to.
    #[serde(deserialize_with = "de::list")]
    pub quo_events: Vec<String>,
    /// Days a configured Quo line may go without a webhook before the activity check warns.
    #[serde(deserialize_with = "de::parsed")]
    pub quiet_days: u64,
    /// Days of the log the activity check reads (the newest records, at most
    /// [`MAX_WINDOW_RECORDS`](super::MAX_WINDOW_RECORDS) of them).
    #[serde(deserialize_with = "de::parsed")]
    pub window_days: u64,
    /// Seconds each network check may take (a connection, one request).
    #[serde(deserialize_with = "de::parsed")]
    pub timeout_secs: u64,
}

impl Default for DoctorConfig {
    fn default() -> Self {
        DoctorConfig {
            approved_urls: Vec::new(),
            quo_events: DEFAULT_QUO_EVENTS.iter().map(|s| (*s).to_owned()).collect(),
            quiet_days: 3,
            window_days: 7,
            timeout_secs: 10,
        }
    }
}

impl DoctorConfig {
    /// Checks what serde cannot. Messages start with the bare key name.
    pub fn validate(&self) -> Result<(), String> {
        for url in &self.approved_urls {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && crate::config::url::host_of(url).is_some();
            if !ok {
                return Err(format!(
                    "approved_urls: `{url}` is not an absolute http(s) URL such as \
                     https://hooks.example.com/sms"
                ));
            }
        }
        if self.quo_events.is_empty() {
            return Err("quo_events: name at least one event type (e.g. message.received)".into());
        }
        for event in &self.quo_events {
            if !KNOWN_QUO_EVENTS.contains(&event.as_str()) {
                return Err(format!(
                    "quo_events: `{event}` is not a Quo event type (known: {})",
                    KNOWN_QUO_EVENTS.join(", ")
                ));
            }
        }
        if !(1..=31).contains(&self.window_days) {
            return Err(format!(
                "window_days: {} is outside 1..=31",
                self.window_days
            ));
        }
        if !(1..=self.window_days).contains(&self.quiet_days) {
            return Err(format!(
                "quiet_days: {} is outside 1..=window_days ({})",
                self.quiet_days, self.window_days
            ));
        }
        if !(1..=120).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs: {} is outside 1..=120",
                self.timeout_secs
            ));
        }
        Ok(())
    }
}
