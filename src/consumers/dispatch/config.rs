//! `[dispatch]`: where the agent gateway is, how events are routed to agents, and how hard
//! the `dispatch` consumer tries.
//!
//! Without `url` dispatch is off: the consumer does not run and its cursor waits at 0, so it
//! catches up from the log once configured (like `[postgres]`). `routes` is an array of
//! tables, set in the file only (like `[[lines]]`); every other key also has an environment
//! override `HOOKLOG_DISPATCH_<KEY>` and `token` may be given as `token_file`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::breaker::BreakerConfig;
use super::client::GatewayOptions;
use super::retry::DispatchPolicy;
use super::routes::{Route, RouteError, Routes};
use crate::config::secret::Secret;
use crate::provider::Provider;
use crate::retry::RetryPolicy;

/// One `[[dispatch.routes]]` table.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Kind names (`message.received`, `call.ringing`, …) or `"*"`.
    pub kinds: Vec<String>,
    /// Only events from this provider: `openphone` (or `quo`), `twilio`, `salesmsg`.
    #[serde(default)]
    pub provider: Option<String>,
    /// Only events on this line: its E.164 number or the provider's line id (`PN…`).
    #[serde(default)]
    pub line: Option<String>,
    /// The agent, sent in the payload.
    pub agent: String,
    /// This route's gateway URL instead of `dispatch.url`.
    #[serde(default)]
    pub url: Option<String>,
}

/// `[dispatch]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// The default gateway URL; unset: dispatch is off (its cursor waits).
    #[serde(deserialize_with = "crate::config::de::opt_parsed")]
    pub url: Option<String>,
    /// Bearer token sent to the gateway (required with `url`; prefer `token_file`).
    #[serde(deserialize_with = "crate::config::de::opt_parsed")]
    pub token: Option<Secret>,
    /// Routing rules, in order (file only).
    pub routes: Vec<RouteConfig>,
    /// Longest wait for one gateway call, in seconds.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub timeout_secs: u64,
    /// Longest wait for the connection, in seconds (at most `timeout_secs`).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub connect_timeout_secs: u64,
    /// An event still undelivered this long after receipt is dead-lettered and alerted.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub dead_letter_after_secs: u64,
    /// An event that happened longer ago than this when dispatch first sees it (a backfilled
    /// copy of an old message, a log that predates turning dispatch on) is not sent to
    /// agents: the ledger records it as `skipped_stale`. 0: no limit. A `--redeliver` window
    /// ignores it (the operator asked).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub max_event_age_secs: u64,
    /// Consecutive failed calls that open the circuit breaker.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub failure_threshold: u32,
    /// How long the open breaker refuses calls before one trial, in seconds.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub cool_down_secs: u64,
    /// Retries of one event within one pass, after the first call.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub max_retries: u32,
    /// First retry backoff cap in milliseconds (doubles per retry, full jitter).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub retry_base_ms: u64,
    /// Longest retry backoff in milliseconds.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub retry_max_ms: u64,
    /// No retry within one pass starts later than this after the first call, in seconds;
    /// then the consumer backs off as a whole and tries again later.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub retry_max_elapsed_secs: u64,
    /// The most agent wake-ups (events × agents) one `rewind dispatch --redeliver` may
    /// perform, unless the operator raises it for that call (`--max N`). Higher than the
    /// sender's: a wake-up reaches an agent, which is idempotent per key, not a person; but a
    /// mistyped range must not wake every agent for the whole history.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub max_redeliver: u64,
}

/// The most a configured `max_redeliver` may be: larger redeliveries take `--max` on the
/// one call that needs it, never a standing setting.
pub const MAX_REDELIVER_CEILING: u64 = 1_000_000;

impl Default for DispatchConfig {
    fn default() -> Self {
        let policy = DispatchPolicy::default();
        let breaker = BreakerConfig::default();
        DispatchConfig {
            url: None,
            token: None,
            routes: Vec::new(),
            timeout_secs: 10,
            connect_timeout_secs: 5,
            dead_letter_after_secs: 3600,
            max_event_age_secs: 6 * 3600,
            failure_threshold: breaker.failure_threshold,
            cool_down_secs: breaker.cool_down.as_secs(),
            max_retries: policy.retry.max_retries,
            retry_base_ms: policy.retry.base.as_millis() as u64,
            retry_max_ms: policy.retry.max.as_millis() as u64,
            retry_max_elapsed_secs: policy.max_elapsed.as_secs(),
            max_redeliver: 1000,
        }
    }
}

impl DispatchConfig {
    /// Whether dispatch runs.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Checks what serde cannot. Messages start with the bare key name and never contain
    /// the token.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs: {} is outside 1..=300",
                self.timeout_secs
            ));
        }
        if self.connect_timeout_secs == 0 || self.connect_timeout_secs > self.timeout_secs {
            return Err(format!(
                "connect_timeout_secs: {} must be between 1 and timeout_secs ({})",
                self.connect_timeout_secs, self.timeout_secs
            ));
        }
        if self.dead_letter_after_secs < 60 {
            return Err(format!(
                "dead_letter_after_secs: {} is below 60 (a gateway restart would dead-letter events)",
                self.dead_letter_after_secs
            ));
        }
        if !(1..=MAX_REDELIVER_CEILING).contains(&self.max_redeliver) {
            return Err(format!(
                "max_redeliver: {} is outside 1..={MAX_REDELIVER_CEILING}; it is the most agent \
                 wake-ups one `rewind dispatch --redeliver` may perform (default 1000); for a \
                 larger redelivery, pass --max N to that one rewind instead",
                self.max_redeliver
            ));
        }
        if self.failure_threshold == 0 {
            return Err("failure_threshold: must be at least 1".into());
        }
        if self.cool_down_secs == 0 {
            return Err("cool_down_secs: must be at least 1".into());
        }
        if self.max_retries > 20 {
            return Err(format!("max_retries: {} is above 20", self.max_retries));
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(
                "retry_max_ms: retry_base_ms must be ≥ 1 and retry_max_ms ≥ retry_base_ms".into(),
            );
        }
        if let Some(url) = &self.url {
            // The token and every routed event go there: https unless on this machine.
            crate::config::url::check_outgoing(url).map_err(|m| format!("url: {m}"))?;
            match &self.token {
                None => {
                    return Err(
                        "token: required when dispatch.url is set (or token_file)".to_owned()
                    )
                }
                Some(t) if t.expose().trim().is_empty() => return Err("token: is empty".to_owned()),
                Some(_) => {}
            }
            if self.routes.is_empty() {
                return Err(
                    "routes: dispatch.url is set but no [[dispatch.routes]] are: nothing would be dispatched"
                        .to_owned(),
                );
            }
        }
        self.routes().map(|_| ())
    }

    /// The routes, checked.
    pub fn routes(&self) -> Result<Routes, String> {
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.iter().enumerate() {
            let provider = match &r.provider {
                None => None,
                Some(p) => Some(p.parse::<Provider>().map_err(|_| {
                    format!("routes[{i}].provider: `{p}` is not openphone, quo, twilio or salesmsg")
                })?),
            };
            if let Some(url) = &r.url {
                crate::config::url::check_outgoing(url)
                    .map_err(|m| format!("routes[{i}].url: {m}"))?;
            }
            routes.push(Route {
                kinds: r.kinds.clone(),
                provider,
                line: r.line.clone(),
                agent: r.agent.trim().to_owned(),
                url: r.url.clone(),
            });
        }
        Routes::new(routes).map_err(|e| match e {
            RouteError::NoKinds { index, .. } => format!("routes[{index}].kinds: {e}"),
            RouteError::NoAgent { index } => format!("routes[{index}].agent: {e}"),
        })
    }

    /// The gateway client's timeouts.
    pub fn gateway_options(&self) -> GatewayOptions {
        GatewayOptions {
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            timeout: Duration::from_secs(self.timeout_secs),
        }
    }

    /// The breaker's thresholds.
    pub fn breaker(&self) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: self.failure_threshold,
            cool_down: Duration::from_secs(self.cool_down_secs),
        }
    }

    /// The retry policy of one pass.
    pub fn policy(&self) -> DispatchPolicy {
        DispatchPolicy {
            retry: RetryPolicy {
                max_retries: self.max_retries,
                base: Duration::from_millis(self.retry_base_ms),
                max: Duration::from_millis(self.retry_max_ms),
                ..RetryPolicy::default()
            },
            max_elapsed: Duration::from_secs(self.retry_max_elapsed_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(agent: &str) -> RouteConfig {
        RouteConfig {
            kinds: vec!["message.received".into()],
            provider: None,
            line: None,
            agent: agent.into(),
            url: None,
        }
    }

    fn on() -> DispatchConfig {
        DispatchConfig {
            url: Some("https://gw.example/dispatch".into()),
            token: Some(Secret::new("gw-token-secret")),
            routes: vec![route("acquisitions")],
            ..DispatchConfig::default()
        }
    }

    #[test]
    fn dispatch_is_off_without_a_url_and_the_defaults_are_valid() {
        let c = DispatchConfig::default();
        assert!(!c.enabled());
        c.validate().unwrap();
        on().validate().unwrap();
        assert_eq!(c.timeout_secs, 10);
        assert_eq!(c.dead_letter_after_secs, 3600);
    }

    #[test]
    fn validation_errors_name_the_key_and_never_show_the_token() {
        let cases: Vec<(DispatchConfig, &str)> = vec![
            (
                DispatchConfig {
                    token: None,
                    ..on()
                },
                "token:",
            ),
            (
                DispatchConfig {
                    max_redeliver: 0,
                    ..on()
                },
                "max_redeliver: 0 is outside 1..=1000000",
            ),
            (
                DispatchConfig {
                    max_redeliver: MAX_REDELIVER_CEILING + 1,
                    ..on()
                },
                "max_redeliver: 1000001 is outside",
            ),
            (
                DispatchConfig {
                    routes: vec![],
                    ..on()
                },
                "routes:",
            ),
            (
                DispatchConfig {
                    url: Some("ftp://x".into()),
                    ..on()
                },
                "url:",
            ),
            (
                DispatchConfig {
                    url: Some("http://gw.example/dispatch".into()),
                    ..on()
                },
                "url: must be https://",
            ),
            (
                DispatchConfig {
                    routes: vec![RouteConfig {
                        url: Some("http://atlas.example/hook".into()),
                        ..route("atlas")
                    }],
                    ..on()
                },
                "routes[0].url: must be https://",
            ),
            (
                DispatchConfig {
                    timeout_secs: 0,
                    ..on()
                },
                "timeout_secs:",
            ),
            (
                DispatchConfig {
                    dead_letter_after_secs: 5,
                    ..on()
                },
                "dead_letter_after_secs:",
            ),
            (
                DispatchConfig {
                    failure_threshold: 0,
                    ..on()
                },
                "failure_threshold:",
            ),
            (
                DispatchConfig {
                    routes: vec![RouteConfig {
                        provider: Some("signal".into()),
                        ..route("a")
                    }],
                    ..on()
                },
                "routes[0].provider:",
            ),
            (
                DispatchConfig {
                    routes: vec![
                        route("a"),
                        RouteConfig {
                            kinds: vec![],
                            ..route("b")
                        },
                    ],
                    ..on()
                },
                "routes[1].kinds:",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().unwrap_err();
            assert!(e.starts_with(want), "{want}: {e}");
            assert!(!e.contains("gw-token-secret"), "{e}");
        }
    }
}
