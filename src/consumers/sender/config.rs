//! `[sender]`: the outbound sender's rates, retries and timeouts.

use serde::{Deserialize, Serialize};

/// `[sender]`: the outbound sender. It runs when enabled and at least one provider's send
/// credentials are configured (`openphone.api_key`; `twilio.account_sid` and an auth token).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderConfig {
    /// Send approved messages (off: the cursor waits, nothing is sent).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub enabled: bool,
    /// Quo requests per second per API key (Quo allows 10).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub quo_per_second: u32,
    /// Twilio messages per second per sending number (1 for a long code).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub twilio_per_second: u32,
    /// Retries of a 429 answer (the provider did not process the request).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub max_retries: u32,
    /// Longest wait for a whole call, in seconds; past it the result is `unknown`.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub timeout_secs: u64,
    /// Longest wait for the connection, in seconds; failing it sends nothing.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub connect_timeout_secs: u64,
    /// The most messages one `rewind sender --redeliver` may send again, unless the operator
    /// raises it for that call (`--max N`). Low on purpose: a redelivery is for a handful of
    /// failed sends, and a mistyped range must not text a whole list again.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub max_redeliver: u64,
}

/// The most a configured `max_redeliver` may be: larger redeliveries take `--max` on the
/// one call that needs it, never a standing setting.
pub const MAX_REDELIVER_CEILING: u64 = 100_000;

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            enabled: true,
            quo_per_second: 10,
            twilio_per_second: 1,
            max_retries: 3,
            timeout_secs: 15,
            connect_timeout_secs: 5,
            max_redeliver: 100,
        }
    }
}

impl SenderConfig {
    /// Checks what serde cannot. Messages start with the bare key name.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10).contains(&self.quo_per_second) {
            return Err(format!(
                "quo_per_second: {} is outside 1..=10 (Quo allows 10 requests/s per key)",
                self.quo_per_second
            ));
        }
        if !(1..=100).contains(&self.twilio_per_second) {
            return Err(format!(
                "twilio_per_second: {} is outside 1..=100",
                self.twilio_per_second
            ));
        }
        if self.max_retries > 10 {
            return Err(format!(
                "max_retries: {} is outside 0..=10",
                self.max_retries
            ));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs: {} is outside 1..=300",
                self.timeout_secs
            ));
        }
        if !(1..=MAX_REDELIVER_CEILING).contains(&self.max_redeliver) {
            return Err(format!(
                "max_redeliver: {} is outside 1..={MAX_REDELIVER_CEILING}; it is the most messages \
                 one `rewind sender --redeliver` may send again (default 100); for a larger \
                 redelivery, pass --max N to that one rewind instead",
                self.max_redeliver
            ));
        }
        if self.connect_timeout_secs == 0 || self.connect_timeout_secs > self.timeout_secs {
            return Err(format!(
                "connect_timeout_secs: {} is outside 1..=timeout_secs ({})",
                self.connect_timeout_secs, self.timeout_secs
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_redeliver_defaults_to_100_and_outside_its_range_says_what_to_do_instead() {
        assert_eq!(SenderConfig::default().max_redeliver, 100);
        assert_eq!(SenderConfig::default().validate(), Ok(()));
        for bad in [0, MAX_REDELIVER_CEILING + 1] {
            let c = SenderConfig {
                max_redeliver: bad,
                ..SenderConfig::default()
            };
            let err = c.validate().unwrap_err();
            assert!(err.starts_with("max_redeliver: "), "{err}");
            assert!(
                err.contains("pass --max N to that one rewind instead"),
                "{err}"
            );
        }
    }
}
