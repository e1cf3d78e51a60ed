//! `[alerts]`: where operator alerts go (a Discord webhook) and how they are throttled.

use serde::{Deserialize, Serialize};

use crate::config::secret::Secret;

/// `[alerts]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Discord webhook (`https://discord.com/api/webhooks/<id>/<token>`); unset means alerts
    /// go to the log only. An empty string (e.g. from the environment) means unset.
    #[serde(deserialize_with = "crate::config::de::opt_parsed")]
    pub discord_webhook_url: Option<Secret>,
    /// The same alert key is sent at most once per this many seconds; repeats are counted
    /// and reported with the next one sent. 0 disables coalescing.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub min_interval_secs: u64,
    /// At most this many Discord messages in any rolling hour, all keys together.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub max_per_hour: u32,
    /// Timeout of one webhook request, in seconds.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub timeout_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            discord_webhook_url: None,
            min_interval_secs: 300,
            max_per_hour: 30,
            timeout_secs: 10,
        }
    }
}

impl AlertsConfig {
    /// Checks what serde cannot. Messages name the key (without the `alerts.` prefix) and
    /// never contain the webhook URL.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.discord_webhook_url {
            // Its path is the webhook's token: https unless on this machine (a test fake).
            crate::config::url::check_outgoing(url.expose())
                .map_err(|m| format!("discord_webhook_url: {m}"))?;
        }
        if self.max_per_hour == 0 {
            return Err(
                "max_per_hour: must be at least 1 (unset discord_webhook_url to send no alerts)"
                    .into(),
            );
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs: {} is outside 1..=300",
                self.timeout_secs
            ));
        }
        Ok(())
    }
}
