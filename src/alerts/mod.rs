//! Operator alerts: always to the log through `tracing`, and to a Discord webhook,
//! coalesced and rate-limited.
//!
//! # Design
//!
//! [`Alerter::raise`] is called from the pipeline (dead letters, staleness, send failures)
//! and must never block it nor fail. It does three cheap things on the caller's thread:
//!
//! 1. logs the alert (`error!` for critical, `warn!` for warnings, `info!` for info), always;
//! 2. if a webhook is configured, passes the alert through the throttle (`throttle.rs`, a pure state
//!    machine behind a `std::sync::Mutex` held for microseconds, never across an await);
//! 3. queues the messages the throttle lets through on a bounded `tokio::sync::mpsc` channel
//!    with `try_send` (a full queue drops the message and counts it `failed`).
//!
//! One background task owns the HTTP side. It sends one message at a time (in order, and
//! Discord's per-webhook limit is low anyway) with `ureq` on `spawn_blocking`, retries a
//! 429 once after Discord's `retry_after`, and 5xx, timeouts and connection errors up to
//! three tries with exponential backoff. The task is spawned by [`Alerter::new`] on the
//! current tokio runtime and ends when the last `Alerter` clone is dropped. Outside a
//! runtime `new` returns a log-only alerter (and says so in the log).
//!
//! # The throttle
//!
//! - **Coalescing**: an alert whose key was last *sent* less than `min_interval_secs` ago
//!   is counted, not sent. The next alert sent for that key carries
//!   `(+N similar since HH:MM UTC)`, HH:MM being when the previous one was sent. A count
//!   that no later alert picks up is not sent by itself: the alert already sent told the
//!   operator what to look at, and every alert is in the log.
//! - **Global cap**: at most `max_per_hour` messages (summaries included) in any rolling
//!   hour. Alerts beyond it are dropped and counted. When there is room again, the count
//!   `N alerts suppressed by the rate limit` goes out once: with the next alert let
//!   through, or on its own from the poster's periodic check (every 30 s) if none comes.
//!
//! The clock is injectable ([`AlerterOptions::clock`]) so tests can move time.
//!
//! # Files
//!
//! This file: [`Alerter`]. `alert.rs`: what callers hand it ([`Alert`], [`Severity`]).
//! [`config`]: `[alerts]`. `throttle.rs`: coalescing and the cap. `discord.rs`: the poster
//! task and Discord's rules. `counters.rs`: `hooklog_alerts_total`.
//!
//! # Secrets
//!
//! The webhook URL contains the webhook token. It is a [`Secret`](crate::config::secret::Secret) and never appears in a
//! log line or `Debug` output of this module: transport errors are described by their kind
//! and cause (whose text is scrubbed of the URL) rather than by ureq's `Display`, which
//! includes the URL. ureq itself logs the URL at `debug` level through the `log` crate, so
//! the daemon's log filter must keep `ureq` at `info` or above.

mod alert;
pub mod config;
mod counters;
mod discord;
mod throttle;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::live::Live;
use crate::metrics::Metrics;

pub use alert::{Alert, Severity};
pub use config::AlertsConfig;
use counters::{Counters, Outcome};
use discord::{Outgoing, Poster};
use throttle::{Admission, Throttle};

/// Messages waiting for the poster. The throttle lets through at most `max_per_hour` messages
/// an hour, so this fills only when Discord has been unreachable for a long time.
const QUEUE_CAPACITY: usize = 256;

/// Knobs that are not configuration: for tests.
#[derive(Clone)]
pub struct AlerterOptions {
    /// Where coalescing and the hourly cap read the time. Default [`Clock::system`].
    pub clock: Clock,
    /// Wait before the second try after a 5xx or transport error; doubled for the third.
    /// Default 1 s.
    pub retry_backoff: Duration,
}

impl Default for AlerterOptions {
    fn default() -> Self {
        AlerterOptions {
            clock: Clock::system(),
            retry_backoff: Duration::from_secs(1),
        }
    }
}

impl fmt::Debug for AlerterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlerterOptions")
            .field("retry_backoff", &self.retry_backoff)
            .finish_non_exhaustive()
    }
}

/// Raises operator alerts. Cheap to clone; `Send + Sync`. Clones share one Discord side,
/// which [`Alerter::reconfigure`] replaces for all of them (a reload of `[alerts]`).
#[derive(Clone)]
pub struct Alerter {
    /// `None`: log only (no webhook configured, or no runtime to send from).
    discord: Live<Option<Arc<Discord>>>,
    /// `hooklog_alerts_total`, registered once and kept across reconfigurations.
    counters: Counters,
    /// The clock and backoff a reconfigured Discord side is built with.
    options: AlerterOptions,
    /// In tests, every alert raised, before the throttle (see [`Alerter::raised`]).
    #[cfg(test)]
    raised: Arc<Mutex<Vec<Alert>>>,
}

/// The caller-side half of Discord delivery.
struct Discord {
    gate: Arc<Mutex<Throttle>>,
    clock: Clock,
    queue: mpsc::Sender<Outgoing>,
    /// Messages queued or being sent (for [`Alerter::flush`]).
    pending: Arc<AtomicUsize>,
    counters: Counters,
}

impl Discord {
    /// The Discord side for `config`, its poster spawned on the current runtime; `None` (log
    /// only) without a webhook or outside a runtime.
    fn start(
        config: &AlertsConfig,
        counters: &Counters,
        options: &AlerterOptions,
    ) -> Option<Arc<Discord>> {
        let Some(url) = config.discord_webhook_url.clone() else {
            tracing::info!("no alerts.discord_webhook_url: alerts go to the log only");
            return None;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "alerter created outside a tokio runtime: Discord alerts are off, alerts go to the log only"
            );
            return None;
        };
        let gate = Arc::new(Mutex::new(Throttle::new(config)));
        let pending = Arc::new(AtomicUsize::new(0));
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let sender = Poster {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(config.timeout_secs.max(1)))
                .user_agent(concat!("hooklog/", env!("CARGO_PKG_VERSION")))
                .build(),
            url,
            backoff: options.retry_backoff,
            gate: gate.clone(),
            clock: options.clock.clone(),
            pending: pending.clone(),
            counters: counters.clone(),
        };
        runtime.spawn(sender.run(rx));
        Some(Arc::new(Discord {
            gate,
            clock: options.clock.clone(),
            queue,
            pending,
            counters: counters.clone(),
        }))
    }
}

impl fmt::Debug for Alerter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerter")
            .field(
                "discord",
                &if self.discord.get().is_some() {
                    "webhook <redacted>"
                } else {
                    "off (log only)"
                },
            )
            .finish()
    }
}

impl Alerter {
    /// An alerter for `config`. With a webhook, it must be called inside a tokio runtime
    /// (any flavour): it spawns the poster task there. Outside one, or without a webhook,
    /// the alerter logs only. With `metrics`, registers `hooklog_alerts_total{outcome}`.
    pub fn new(config: &AlertsConfig, metrics: Option<&Metrics>) -> Alerter {
        Alerter::with_options(config, metrics, AlerterOptions::default())
    }

    /// [`Alerter::new`] with an injected clock and retry backoff.
    pub fn with_options(
        config: &AlertsConfig,
        metrics: Option<&Metrics>,
        options: AlerterOptions,
    ) -> Alerter {
        let counters = Counters::register(metrics);
        let discord = Discord::start(config, &counters, &options);
        Alerter {
            discord: Live::new(discord),
            counters,
            options,
            #[cfg(test)]
            raised: Arc::default(),
        }
    }

    /// An alerter that only logs.
    pub fn disabled() -> Alerter {
        Alerter {
            discord: Live::new(None),
            counters: Counters::default(),
            options: AlerterOptions::default(),
            #[cfg(test)]
            raised: Arc::default(),
        }
    }

    /// Puts a reloaded `[alerts]` in force for this alerter and every clone: a new Discord
    /// side (webhook, throttle, timeout) replaces the old one at once. The old poster
    /// finishes the messages already queued to the old webhook, then ends.
    pub fn reconfigure(&self, config: &AlertsConfig) {
        self.discord
            .set(Discord::start(config, &self.counters, &self.options));
    }

    /// Every alert raised through this alerter or its clones so far, in order, before
    /// coalescing and the hourly cap (which the throttle's tests cover). Tests only: it is how
    /// the pipeline's tests check which alerts a situation raises.
    #[cfg(test)]
    pub(crate) fn raised(&self) -> Vec<Alert> {
        self.raised
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Logs `alert` and, with a webhook, hands it to the throttle and the poster. Never blocks
    /// and never fails; callable from any thread, inside a runtime or not.
    pub fn raise(&self, alert: Alert) {
        log_alert(&alert);
        #[cfg(test)]
        self.raised
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(alert.clone());
        let discord = self.discord.get();
        let Some(discord) = discord.as_ref() else {
            return;
        };
        let now = discord.clock.now();
        let verdict = discord
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(&alert, now);
        match verdict {
            Admission::Send(message) => {
                discord.pending.fetch_add(1, Ordering::AcqRel);
                let outgoing = Outgoing {
                    key: alert.key.clone(),
                    content: message,
                };
                if discord.queue.try_send(outgoing).is_err() {
                    discord.pending.fetch_sub(1, Ordering::AcqRel);
                    discord.counters.inc(Outcome::Failed);
                    tracing::error!(
                        alert = %alert.key,
                        "alert queue full (Discord unreachable for long?): message dropped"
                    );
                }
            }
            Admission::Coalesced => discord.counters.inc(Outcome::Coalesced),
            Admission::RateLimited => {
                discord.counters.inc(Outcome::RateLimited);
                tracing::debug!(
                    alert = %alert.key,
                    "alert not sent to Discord: over alerts.max_per_hour"
                );
            }
        }
    }

    /// Waits until every queued message was sent or given up, at most `within`. Returns
    /// whether the queue drained. For shutdown (deliver what was raised last) and tests.
    pub async fn flush(&self, within: Duration) -> bool {
        let discord = self.discord.get();
        let Some(discord) = discord.as_ref() else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if discord.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn log_alert(a: &Alert) {
    match a.severity {
        Severity::Critical => tracing::error!(
            alert = %a.key, severity = a.severity.as_str(), reason = %a.reason,
            next = %a.next_step, "ALERT: {}", a.title
        ),
        Severity::Warning => tracing::warn!(
            alert = %a.key, severity = a.severity.as_str(), reason = %a.reason,
            next = %a.next_step, "ALERT: {}", a.title
        ),
        Severity::Info => tracing::info!(
            alert = %a.key, severity = a.severity.as_str(), reason = %a.reason,
            next = %a.next_step, "ALERT: {}", a.title
        ),
    }
}

#[cfg(test)]
mod tests;
