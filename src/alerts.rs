//! Operator alerts: always to the log through `tracing`, and to a Discord webhook,
//! coalesced and rate-limited.
//!
//! # Design
//!
//! [`Alerter::raise`] is called from the pipeline (dead letters, staleness, send failures)
//! and must never block it nor fail. It does three cheap things on the caller's thread:
//!
//! 1. logs the alert (`error!` for critical, `warn!` for warnings, `info!` for info), always;
//! 2. if a webhook is configured, passes the alert through the [`Gate`] (a pure state
//!    machine behind a `std::sync::Mutex` held for microseconds, never across an await);
//! 3. queues the messages the gate lets through on a bounded `tokio::sync::mpsc` channel
//!    with `try_send` (a full queue drops the message and counts it `failed`).
//!
//! One background task owns the HTTP side. It sends one message at a time (in order, and
//! Discord's per-webhook limit is low anyway) with `ureq` on `spawn_blocking`, retries a
//! 429 once after Discord's `retry_after`, and 5xx, timeouts and connection errors up to
//! three tries with exponential backoff. The task is spawned by [`Alerter::new`] on the
//! current tokio runtime and ends when the last `Alerter` clone is dropped. Outside a
//! runtime `new` returns a log-only alerter (and says so in the log).
//!
//! # The gate
//!
//! - **Coalescing**: an alert whose key was last *sent* less than `min_interval_secs` ago
//!   is counted, not sent. The next alert sent for that key carries
//!   `(+N similar since HH:MM UTC)`, HH:MM being when the previous one was sent. A count
//!   that no later alert picks up is not sent by itself: the alert already sent told the
//!   operator what to look at, and every alert is in the log.
//! - **Global cap**: at most `max_per_hour` messages (summaries included) in any rolling
//!   hour. Alerts beyond it are dropped and counted. When there is room again, the count
//!   `N alerts suppressed by the rate limit` goes out once: with the next alert let
//!   through, or on its own from the sender's periodic check (every 30 s) if none comes.
//!
//! The clock is injectable ([`AlerterOptions::clock`]) so tests can move time.
//!
//! # Secrets
//!
//! The webhook URL contains the webhook token. It is a [`Secret`] and never appears in a
//! log line or `Debug` output of this module: transport errors are described by their kind
//! and cause (whose text is scrubbed of the URL) rather than by ureq's `Display`, which
//! includes the URL. ureq itself logs the URL at `debug` level through the `log` crate, so
//! the daemon's log filter must keep `ureq` at `info` or above.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{IntCounterVec, Opts};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::Secret;
use crate::metrics::Metrics;

/// Discord rejects a `content` longer than this many characters.
const DISCORD_MAX_CONTENT: usize = 2000;
/// Messages waiting for the sender. The gate lets through at most `max_per_hour` messages
/// an hour, so this fills only when Discord has been unreachable for a long time.
const QUEUE_CAPACITY: usize = 256;
/// Tries for a message that meets 5xx answers, timeouts or connection errors.
const MAX_TRIES: u32 = 3;
/// Longest wait honoured for a 429 (Discord's global limit can ask for minutes; one alert
/// must not hold the queue that long).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Wait for a 429 that says neither `retry_after` nor `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often the sender checks whether a rate-limit summary is due when no alert comes.
const SUMMARY_POLL: Duration = Duration::from_secs(30);
/// Past this many coalescing entries, the ones equivalent to "never sent" are dropped.
const MAX_IDLE_KEYS: usize = 1024;

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
            let rest = url
                .expose()
                .strip_prefix("https://")
                .or_else(|| url.expose().strip_prefix("http://"))
                .ok_or("discord_webhook_url: must start with https:// (or http://)")?;
            if rest.split('/').next().unwrap_or_default().is_empty() {
                return Err("discord_webhook_url: the URL has no host".into());
            }
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

    fn badge(self) -> &'static str {
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

/// Raises operator alerts. Cheap to clone (one `Arc`); `Send + Sync`.
#[derive(Clone)]
pub struct Alerter {
    /// `None`: log only (no webhook configured, or no runtime to send from).
    discord: Option<Arc<Discord>>,
    /// In tests, every alert raised, before the gate (see [`Alerter::raised`]).
    #[cfg(test)]
    raised: Arc<Mutex<Vec<Alert>>>,
}

/// The caller-side half of Discord delivery.
struct Discord {
    gate: Arc<Mutex<Gate>>,
    clock: Clock,
    queue: mpsc::Sender<Outgoing>,
    /// Messages queued or being sent (for [`Alerter::flush`]).
    pending: Arc<AtomicUsize>,
    counters: Counters,
}

impl fmt::Debug for Alerter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerter")
            .field(
                "discord",
                &if self.discord.is_some() {
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
    /// (any flavour): it spawns the sender task there. Outside one, or without a webhook,
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
        let Some(url) = config.discord_webhook_url.clone() else {
            tracing::info!("no alerts.discord_webhook_url: alerts go to the log only");
            return Alerter::disabled();
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "alerter created outside a tokio runtime: Discord alerts are off, alerts go to the log only"
            );
            return Alerter::disabled();
        };
        let gate = Arc::new(Mutex::new(Gate::new(config)));
        let pending = Arc::new(AtomicUsize::new(0));
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let sender = Sender {
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
        Alerter {
            discord: Some(Arc::new(Discord {
                gate,
                clock: options.clock,
                queue,
                pending,
                counters,
            })),
            #[cfg(test)]
            raised: Arc::default(),
        }
    }

    /// An alerter that only logs.
    pub fn disabled() -> Alerter {
        Alerter {
            discord: None,
            #[cfg(test)]
            raised: Arc::default(),
        }
    }

    /// Every alert raised through this alerter or its clones so far, in order, before
    /// coalescing and the hourly cap (which [`Gate`]'s tests cover). Tests only: it is how
    /// the pipeline's tests check which alerts a situation raises.
    #[cfg(test)]
    pub(crate) fn raised(&self) -> Vec<Alert> {
        self.raised
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Logs `alert` and, with a webhook, hands it to the gate and the sender. Never blocks
    /// and never fails; callable from any thread, inside a runtime or not.
    pub fn raise(&self, alert: Alert) {
        log_alert(&alert);
        #[cfg(test)]
        self.raised
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(alert.clone());
        let Some(discord) = &self.discord else {
            return;
        };
        let now = discord.clock.now();
        let verdict = discord
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(&alert, now);
        match verdict {
            Verdict::Send(message) => {
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
            Verdict::Coalesced => discord.counters.inc(Outcome::Coalesced),
            Verdict::RateLimited => {
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
        let Some(discord) = &self.discord else {
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

/// `hooklog_alerts_total{outcome}` values.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Sent,
    Coalesced,
    RateLimited,
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Sent,
        Outcome::Coalesced,
        Outcome::RateLimited,
        Outcome::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Coalesced => "coalesced",
            Outcome::RateLimited => "rate_limited",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Clone, Default)]
struct Counters(Option<IntCounterVec>);

impl Counters {
    fn register(metrics: Option<&Metrics>) -> Counters {
        let Some(metrics) = metrics else {
            return Counters(None);
        };
        let vec = match IntCounterVec::new(
            Opts::new(
                "hooklog_alerts_total",
                "Operator alerts for Discord by outcome (sent, coalesced, rate_limited, failed)",
            ),
            &["outcome"],
        ) {
            Ok(vec) => vec,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create hooklog_alerts_total");
                return Counters(None);
            }
        };
        // Every outcome is exported from the start, so a rate() over it works before the
        // first failure.
        for outcome in Outcome::ALL {
            vec.with_label_values(&[outcome.as_str()]);
        }
        if let Err(e) = metrics.register(Box::new(vec.clone())) {
            // A second alerter on the same registry: its counts are not exported.
            tracing::warn!(error = %e, "hooklog_alerts_total not registered");
        }
        Counters(Some(vec))
    }

    fn inc(&self, outcome: Outcome) {
        if let Some(vec) = &self.0 {
            vec.with_label_values(&[outcome.as_str()]).inc();
        }
    }
}

/// The background half: sends what the gate let through.
struct Sender {
    agent: ureq::Agent,
    url: Secret,
    backoff: Duration,
    gate: Arc<Mutex<Gate>>,
    clock: Clock,
    pending: Arc<AtomicUsize>,
    counters: Counters,
}

/// A message for Discord, with the alert key it came from (for the log).
#[derive(Debug)]
struct Outgoing {
    key: String,
    content: String,
}

/// The result of one POST.
#[derive(Debug)]
enum Attempt {
    Delivered,
    /// 429: wait this long, then try once more.
    RateLimited(Duration),
    /// 5xx, timeout, connection error: worth another try.
    Transient(String),
    /// Anything else (4xx, bad URL, no TLS): retrying will not help.
    Permanent(String),
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Outgoing>) {
        loop {
            let message = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                () = tokio::time::sleep(SUMMARY_POLL) => {
                    let now = self.clock.now();
                    let summary = self
                        .gate
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .poll(now);
                    match summary {
                        Some(content) => {
                            self.pending.fetch_add(1, Ordering::AcqRel);
                            Outgoing { key: "rate_limit_summary".into(), content }
                        }
                        None => continue,
                    }
                }
            };
            self.deliver(message).await;
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
        tracing::debug!("alert sender stopped");
    }

    async fn deliver(&self, message: Outgoing) {
        let body = serde_json::json!({
            "content": message.content,
            "allowed_mentions": { "parse": [] },
        });
        let mut failures = 0u32;
        let mut waited_for_429 = false;
        loop {
            let (agent, url, body) = (self.agent.clone(), self.url.clone(), body.clone());
            let attempt = tokio::task::spawn_blocking(move || post(&agent, &url, &body))
                .await
                .unwrap_or_else(|e| Attempt::Permanent(format!("send task failed: {e}")));
            let why = match attempt {
                Attempt::Delivered => {
                    self.counters.inc(Outcome::Sent);
                    tracing::debug!(alert = %message.key, "alert sent to Discord");
                    return;
                }
                Attempt::RateLimited(wait) if !waited_for_429 => {
                    waited_for_429 = true;
                    let wait = wait.min(MAX_RETRY_AFTER);
                    tracing::warn!(
                        alert = %message.key,
                        retry_after_ms = wait.as_millis() as u64,
                        "Discord rate-limited the alert webhook (429): retrying once"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Attempt::RateLimited(_) => "still rate-limited (429) after waiting".to_owned(),
                Attempt::Transient(why) => {
                    failures += 1;
                    if failures < MAX_TRIES {
                        let wait = self.backoff * 2u32.pow(failures - 1);
                        tracing::warn!(
                            alert = %message.key,
                            error = %why,
                            attempt = failures,
                            retry_in_ms = wait.as_millis() as u64,
                            "alert webhook failed: retrying"
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    format!("{why} (after {MAX_TRIES} tries)")
                }
                Attempt::Permanent(why) => why,
            };
            self.counters.inc(Outcome::Failed);
            tracing::error!(
                alert = %message.key,
                error = %why,
                "alert not delivered to Discord (it is in this log)"
            );
            return;
        }
    }
}

/// One webhook POST (blocking). Nothing it returns contains the URL.
fn post(agent: &ureq::Agent, url: &Secret, body: &serde_json::Value) -> Attempt {
    match agent.post(url.expose()).send_json(body) {
        Ok(resp) => {
            // Read the (empty) body so the connection goes back to the pool.
            let _ = resp.into_string();
            Attempt::Delivered
        }
        Err(ureq::Error::Status(429, resp)) => Attempt::RateLimited(retry_after(resp)),
        Err(ureq::Error::Status(code, _)) if code >= 500 => {
            Attempt::Transient(format!("HTTP {code} from Discord"))
        }
        Err(ureq::Error::Status(code, resp)) => {
            let text = resp.into_string().unwrap_or_default();
            let text: String = text.chars().take(200).collect();
            Attempt::Permanent(scrub(&format!("HTTP {code} from Discord: {text}"), url))
        }
        Err(ureq::Error::Transport(t)) => {
            let cause = std::error::Error::source(&t)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            let why = scrub(&format!("{}{cause}", t.kind()), url);
            match t.kind() {
                ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Io => {
                    Attempt::Transient(why)
                }
                ureq::ErrorKind::UnknownScheme => Attempt::Permanent(format!(
                    "{why} (this build cannot make HTTPS requests: build ureq with its `tls` feature)"
                )),
                _ => Attempt::Permanent(why),
            }
        }
    }
}

/// Discord's wait: the JSON body's `retry_after` (seconds, float), else `Retry-After`.
fn retry_after(resp: ureq::Response) -> Duration {
    let header = resp
        .header("retry-after")
        .and_then(|h| h.trim().parse::<f64>().ok());
    let body = resp
        .into_json::<serde_json::Value>()
        .ok()
        .and_then(|v| v.get("retry_after").and_then(serde_json::Value::as_f64));
    body.or(header)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// Removes the webhook URL (and its path, which holds the token) from error text.
fn scrub(text: &str, url: &Secret) -> String {
    let url = url.expose();
    let mut out = text.replace(url, "<webhook url>");
    if let Some(path) = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
    {
        if path.len() > 1 {
            out = out.replace(path, "/<redacted>");
        }
    }
    out
}

/// What the gate decided about one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Send this text to Discord.
    Send(String),
    /// Same key sent less than `min_interval` ago: counted.
    Coalesced,
    /// Over the hourly cap: dropped and counted for the summary.
    RateLimited,
}

/// Coalescing and the hourly cap: a pure state machine, time passed in.
#[derive(Debug)]
struct Gate {
    min_interval: chrono::Duration,
    max_per_hour: usize,
    keys: HashMap<String, KeyState>,
    /// When each message of the last hour was let through, oldest first.
    sent: VecDeque<DateTime<Utc>>,
    /// Alerts dropped by the cap since the last summary, and when the first was.
    capped: u64,
    capped_since: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct KeyState {
    last_sent: DateTime<Utc>,
    /// Alerts coalesced since `last_sent`.
    similar: u64,
}

impl Gate {
    fn new(config: &AlertsConfig) -> Gate {
        Gate {
            min_interval: chrono::Duration::seconds(
                i64::try_from(config.min_interval_secs).unwrap_or(i64::MAX / 1000),
            ),
            max_per_hour: (config.max_per_hour as usize).max(1),
            keys: HashMap::new(),
            sent: VecDeque::new(),
            capped: 0,
            capped_since: None,
        }
    }

    /// Decides about `alert`. An alert let through while a rate-limit summary is due
    /// carries the summary itself (one message, one slot), so that under sustained
    /// pressure the freed slots go to real alerts rather than to summaries.
    fn admit(&mut self, alert: &Alert, now: DateTime<Utc>) -> Verdict {
        if let Some(k) = self.keys.get_mut(&alert.key) {
            if now - k.last_sent < self.min_interval {
                k.similar += 1;
                return Verdict::Coalesced;
            }
        }
        if !self.has_room(now) {
            self.capped += 1;
            self.capped_since.get_or_insert(now);
            return Verdict::RateLimited;
        }
        self.sent.push_back(now);
        let previous = self.keys.insert(
            alert.key.clone(),
            KeyState {
                last_sent: now,
                similar: 0,
            },
        );
        let similar = previous
            .filter(|p| p.similar > 0)
            .map(|p| (p.similar, p.last_sent));
        let suppressed = self.take_capped(now);
        if self.keys.len() > MAX_IDLE_KEYS {
            let interval = self.min_interval;
            self.keys
                .retain(|_, k| k.similar > 0 || now - k.last_sent < interval);
        }
        Verdict::Send(render(alert, similar, suppressed))
    }

    /// The rate-limit summary on its own, if alerts were dropped and the cap has room
    /// again (called periodically, for when no new alert comes to carry it).
    fn poll(&mut self, now: DateTime<Utc>) -> Option<String> {
        if self.capped == 0 || !self.has_room(now) {
            return None;
        }
        self.sent.push_back(now);
        let (n, since) = self.take_capped(now)?;
        Some(render_summary(n, since, self.max_per_hour))
    }

    fn take_capped(&mut self, now: DateTime<Utc>) -> Option<(u64, DateTime<Utc>)> {
        let n = std::mem::take(&mut self.capped);
        let since = self.capped_since.take().unwrap_or(now);
        (n > 0).then_some((n, since))
    }

    fn has_room(&mut self, now: DateTime<Utc>) -> bool {
        let hour_ago = now - chrono::Duration::hours(1);
        while self.sent.front().is_some_and(|t| *t <= hour_ago) {
            self.sent.pop_front();
        }
        self.sent.len() < self.max_per_hour
    }
}

/// `N alerts suppressed by the rate limit`
fn suppressed_text(n: u64) -> String {
    let alerts = if n == 1 { "alert" } else { "alerts" };
    format!("{n} {alerts} suppressed by the rate limit")
}

/// The Discord text of an alert: label and title, reason, next step, then the coalesced
/// and rate-limited counts. At most [`DISCORD_MAX_CONTENT`] characters: the reason is cut
/// first.
fn render(
    alert: &Alert,
    similar: Option<(u64, DateTime<Utc>)>,
    suppressed: Option<(u64, DateTime<Utc>)>,
) -> String {
    let head = format!("{} {}", alert.severity.badge(), alert.title);
    let mut tail = format!("Next: {}", alert.next_step);
    if let Some((n, since)) = similar {
        tail.push_str(&format!(
            "\n(+{n} similar since {} UTC)",
            since.format("%H:%M")
        ));
    }
    if let Some((n, since)) = suppressed {
        tail.push_str(&format!(
            "\n(+{} since {} UTC; each one is in the hooklog log)",
            suppressed_text(n),
            since.format("%H:%M")
        ));
    }
    let fixed = head.chars().count() + tail.chars().count() + 2;
    let reason = truncate(&alert.reason, DISCORD_MAX_CONTENT.saturating_sub(fixed));
    let text = if reason.is_empty() {
        format!("{head}\n{tail}")
    } else {
        format!("{head}\n{reason}\n{tail}")
    };
    truncate(&text, DISCORD_MAX_CONTENT)
}

fn render_summary(n: u64, since: DateTime<Utc>, max_per_hour: usize) -> String {
    format!(
        "{} {}\n\
         Since {} UTC more alerts were raised than alerts.max_per_hour ({max_per_hour}) allows; \
         each one is in the hooklog log.\n\
         Next: read the hooklog log (`journalctl -u hooklog | grep ALERT`) and run `hooklog-replay status`",
        Severity::Warning.badge(),
        suppressed_text(n),
        since.format("%H:%M"),
    )
}

/// `s` cut to `max` characters, ending with "…" when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(hms: &str) -> DateTime<Utc> {
        format!("2026-05-04T{hms}Z").parse().unwrap()
    }

    fn alert(key: &str) -> Alert {
        Alert {
            key: key.into(),
            severity: Severity::Warning,
            title: format!("{key} happened"),
            reason: "3 records dead-lettered".into(),
            next_step: "hooklog-replay dead-letters".into(),
        }
    }

    fn gate(min_interval_secs: u64, max_per_hour: u32) -> Gate {
        Gate::new(&AlertsConfig {
            min_interval_secs,
            max_per_hour,
            ..AlertsConfig::default()
        })
    }

    fn sent(v: Verdict) -> String {
        match v {
            Verdict::Send(text) => text,
            other => panic!("expected Send, got {other:?}"),
        }
    }

    #[test]
    fn repeats_within_the_interval_are_coalesced_and_reported_with_the_next_one_sent() {
        let mut g = gate(300, 30);
        let first = sent(g.admit(&alert("dead_letter:dedup"), t("14:05:00")));
        assert!(!first.contains("similar"));
        for s in ["14:06:00", "14:07:00", "14:08:00", "14:09:59"] {
            let v = g.admit(&alert("dead_letter:dedup"), t(s));
            assert_eq!(v, Verdict::Coalesced, "{s}");
        }
        // Exactly min_interval after the last sent one: sent again, with the count.
        let next = sent(g.admit(&alert("dead_letter:dedup"), t("14:10:00")));
        assert!(next.contains("(+4 similar since 14:05 UTC)"), "{next}");
        // The count was consumed; the interval restarts from 14:10.
        assert_eq!(
            g.admit(&alert("dead_letter:dedup"), t("14:14:59")),
            Verdict::Coalesced
        );
        let after = sent(g.admit(&alert("dead_letter:dedup"), t("14:15:00")));
        assert!(after.contains("(+1 similar since 14:10 UTC)"), "{after}");
    }

    #[test]
    fn different_keys_do_not_coalesce_and_zero_interval_sends_everything() {
        let mut g = gate(300, 30);
        sent(g.admit(&alert("a"), t("10:00:00")));
        sent(g.admit(&alert("b"), t("10:00:01")));
        assert_eq!(g.admit(&alert("a"), t("10:00:02")), Verdict::Coalesced);
        let mut g = gate(0, 30);
        for s in ["10:00:00", "10:00:00", "10:00:01"] {
            sent(g.admit(&alert("a"), t(s)));
        }
    }

    #[test]
    fn the_hourly_cap_is_rolling_and_a_summary_follows_when_it_lifts() {
        let mut g = gate(300, 3);
        for (k, s) in [("a", "10:00:00"), ("b", "10:10:00"), ("c", "10:20:00")] {
            sent(g.admit(&alert(k), t(s)));
        }
        for (k, s) in [("d", "10:30:00"), ("e", "10:40:00"), ("f", "10:59:59")] {
            assert_eq!(g.admit(&alert(k), t(s)), Verdict::RateLimited, "{k}");
        }
        assert_eq!(g.poll(t("10:59:59")), None);
        // 11:00:00: the 10:00 message left the window; the summary takes that slot.
        let summary = g.poll(t("11:00:00")).unwrap();
        assert!(
            summary.contains("3 alerts suppressed by the rate limit"),
            "{summary}"
        );
        assert!(summary.contains("Since 10:30 UTC"), "{summary}");
        assert_eq!(g.poll(t("11:00:00")), None, "one summary only");
        // The window is full again (10:10, 10:20, 11:00) until 11:10.
        assert_eq!(g.admit(&alert("g"), t("11:05:00")), Verdict::RateLimited);
        // At 11:10 a slot frees: the next alert takes it and carries the count of g.
        let h = sent(g.admit(&alert("h"), t("11:10:00")));
        assert!(h.starts_with("⚠️ **WARNING** h happened"), "{h}");
        assert!(
            h.contains("(+1 alert suppressed by the rate limit since 11:05 UTC;"),
            "{h}"
        );
        assert_eq!(g.poll(t("11:10:00")), None, "the count was reported with h");
        assert_eq!(g.admit(&alert("i"), t("11:19:59")), Verdict::RateLimited);
        assert!(g.poll(t("11:20:00")).is_some());
    }

    #[test]
    fn a_coalesced_alert_does_not_use_the_cap() {
        let mut g = gate(300, 1);
        sent(g.admit(&alert("a"), t("10:00:00")));
        assert_eq!(g.admit(&alert("a"), t("10:01:00")), Verdict::Coalesced);
        assert_eq!(g.admit(&alert("b"), t("10:02:00")), Verdict::RateLimited);
        assert_eq!(g.capped, 1);
    }

    #[test]
    fn a_long_reason_is_cut_to_discords_limit_keeping_the_next_step() {
        let mut a = alert("big");
        a.reason = "é".repeat(5000);
        let text = render(&a, Some((7, t("09:00:00"))), None);
        assert_eq!(text.chars().count(), DISCORD_MAX_CONTENT);
        assert!(text.contains("é…\nNext: hooklog-replay dead-letters"));
        assert!(text.ends_with("(+7 similar since 09:00 UTC)"));
        let short = render(&alert("small"), None, None);
        assert_eq!(
            short,
            "⚠️ **WARNING** small happened\n3 records dead-lettered\nNext: hooklog-replay dead-letters"
        );
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
    }

    #[test]
    fn config_accepts_numbers_or_strings_and_an_empty_url_is_unset() {
        let c: AlertsConfig = toml::from_str(
            "discord_webhook_url = \"https://discord.com/api/webhooks/1/tok\"\nmin_interval_secs = \"60\"\nmax_per_hour = 5\n",
        )
        .unwrap();
        assert_eq!(c.min_interval_secs, 60);
        assert_eq!(c.max_per_hour, 5);
        assert_eq!(c.timeout_secs, 10);
        assert!(c.validate().is_ok());
        let c: AlertsConfig = toml::from_str("discord_webhook_url = \"\"\n").unwrap();
        assert!(c.discord_webhook_url.is_none());
        assert!(toml::from_str::<AlertsConfig>("max_per_hr = 5\n").is_err());
        assert!(toml::from_str::<AlertsConfig>("max_per_hour = \"many\"\n").is_err());
    }

    #[test]
    fn validate_rejects_bad_values_without_echoing_the_url() {
        let bad = AlertsConfig {
            discord_webhook_url: Some(Secret::new("discord.com/api/webhooks/1/sekrit-token")),
            ..AlertsConfig::default()
        };
        let err = bad.validate().unwrap_err();
        assert!(err.starts_with("discord_webhook_url"), "{err}");
        assert!(!err.contains("sekrit"), "{err}");
        let no_host = AlertsConfig {
            discord_webhook_url: Some(Secret::new("https:///x")),
            ..AlertsConfig::default()
        };
        assert!(no_host.validate().is_err());
        let zero = AlertsConfig {
            max_per_hour: 0,
            ..AlertsConfig::default()
        };
        assert!(zero.validate().unwrap_err().starts_with("max_per_hour"));
        let slow = AlertsConfig {
            timeout_secs: 0,
            ..AlertsConfig::default()
        };
        assert!(slow.validate().unwrap_err().starts_with("timeout_secs"));
        assert!(AlertsConfig::default().validate().is_ok());
    }

    #[test]
    fn scrub_removes_the_url_and_its_token_path() {
        let url = Secret::new("https://discord.com/api/webhooks/123/tok-en");
        let s = scrub(
            "Connection Failed: https://discord.com/api/webhooks/123/tok-en and /api/webhooks/123/tok-en",
            &url,
        );
        assert!(!s.contains("tok-en"), "{s}");
        assert!(s.contains("<webhook url>"));
    }

    #[test]
    fn the_alerter_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Alerter>();
    }

    #[test]
    fn outside_a_runtime_the_alerter_logs_only_and_raise_still_works() {
        let config = AlertsConfig {
            discord_webhook_url: Some(Secret::new("http://127.0.0.1:9/hook")),
            ..AlertsConfig::default()
        };
        let metrics = Metrics::new();
        let alerter = Alerter::new(&config, Some(&metrics));
        assert!(alerter.discord.is_none());
        alerter.raise(alert("x"));
        assert!(metrics
            .render()
            .contains("hooklog_alerts_total{outcome=\"sent\"} 0"));
        assert_eq!(
            format!("{alerter:?}"),
            "Alerter { discord: \"off (log only)\" }"
        );
    }
}
