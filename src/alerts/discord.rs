//! The background half of the alerter: one task that posts what the throttle let through to
//! the Discord webhook, one message at a time, with Discord's retry rules, and never prints the
//! webhook's URL (see the "secrets" section of [`super`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use super::counters::{Counters, Outcome};
use super::throttle::Throttle;
use crate::clock::Clock;
use crate::config::secret::Secret;

/// Tries for a message that meets 5xx answers, timeouts or connection errors.
const MAX_TRIES: u32 = 3;

/// Longest wait honoured for a 429 (Discord's global limit can ask for minutes; one alert
/// must not hold the queue that long).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Wait for a 429 that says neither `retry_after` nor `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often the poster checks whether a rate-limit summary is due when no alert comes.
const SUMMARY_POLL: Duration = Duration::from_secs(30);

/// The background half: posts what the throttle let through.
pub(super) struct Poster {
    pub(super) agent: ureq::Agent,
    pub(super) url: Secret,
    pub(super) backoff: Duration,
    pub(super) gate: Arc<Mutex<Throttle>>,
    pub(super) clock: Clock,
    pub(super) pending: Arc<AtomicUsize>,
    pub(super) counters: Counters,
}

/// A message for Discord, with the alert key it came from (for the log).
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) key: String,
    pub(super) content: String,
}

/// The result of one POST.
#[derive(Debug)]
pub(super) enum Attempt {
    Delivered,
    /// 429: wait this long, then try once more.
    RateLimited(Duration),
    /// 5xx, timeout, connection error: worth another try.
    Transient(String),
    /// Anything else (4xx, bad URL, no TLS): retrying will not help.
    Permanent(String),
}

impl Poster {
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Outgoing>) {
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

    pub(super) async fn deliver(&self, message: Outgoing) {
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
pub(super) fn post(agent: &ureq::Agent, url: &Secret, body: &serde_json::Value) -> Attempt {
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
pub(super) fn retry_after(resp: ureq::Response) -> Duration {
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
pub(super) fn scrub(text: &str, url: &Secret) -> String {
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
