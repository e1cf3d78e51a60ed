//! `[staleness]`: whether to watch for silence, how long is too long, and the daily window in
//! which silence counts (parsed by [`Window`]).

use serde::{Deserialize, Serialize};

use super::window::Window;
use crate::config::de::parsed;

/// `[staleness]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StalenessConfig {
    /// Whether to watch for silence at all.
    #[serde(deserialize_with = "parsed")]
    pub enabled: bool,
    /// Alert after this many minutes without an inbound message, counted inside the window.
    #[serde(deserialize_with = "parsed")]
    pub max_silence_mins: u64,
    /// Local time the daily window opens, `HH:MM`.
    pub window_start: String,
    /// Local time the daily window closes, `HH:MM` (`24:00` for midnight; earlier than
    /// `window_start` for a window across midnight).
    pub window_end: String,
    /// IANA zone of the window, e.g. `America/Los_Angeles`.
    pub timezone: String,
    /// How often the daemon calls [`StalenessMonitor::check`](super::StalenessMonitor::check), in seconds.
    #[serde(deserialize_with = "parsed")]
    pub check_interval_secs: u64,
}

impl Default for StalenessConfig {
    fn default() -> Self {
        StalenessConfig {
            enabled: true,
            max_silence_mins: 180,
            window_start: "07:00".into(),
            window_end: "23:00".into(),
            timezone: "America/Los_Angeles".into(),
            check_interval_secs: 60,
        }
    }
}

impl StalenessConfig {
    /// Checks what serde cannot. Messages start with the key (without `staleness.`).
    pub fn validate(&self) -> Result<(), String> {
        Window::new(&self.timezone, &self.window_start, &self.window_end)?;
        if self.max_silence_mins == 0 {
            return Err("max_silence_mins: must be at least 1".into());
        }
        if self.max_silence_mins > 7 * 24 * 60 {
            return Err(format!(
                "max_silence_mins: {} is more than a week (10080)",
                self.max_silence_mins
            ));
        }
        if !(1..=3600).contains(&self.check_interval_secs) {
            return Err(format!(
                "check_interval_secs: {} is outside 1..=3600",
                self.check_interval_secs
            ));
        }
        Ok(())
    }
}
