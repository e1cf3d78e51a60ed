//! Provider send clients and rate limits: the first piece of the `sender` consumer
//! (docs/outbound.md#provider-send-clients). The consumer, with its effects ledger, is
//! [`crate::consumers::sender`]; the outbound API is [`crate::admin::outbound`].
//!
//! - [`quo`] and [`twilio`]: pure request builders and response classifiers, plus a small
//!   blocking [`Client`](quo::Client) per provider that performs the call with ureq;
//! - [`limiter`]: a token bucket per key (Quo per API key, Twilio per sending number);
//! - [`send_with_retries`]: limiter, call, bounded 429 backoff, operator alerts.
//!
//! # At most once
//!
//! An SMS cannot be taken back, so a send is retried only when the provider *certainly* did
//! not accept it. Every call ends in one [`Outcome`]:
//!
//! | Outcome | When | Safe to send again? |
//! |---|---|---|
//! | `Sent` | 2xx with the provider's message id | no: it went out |
//! | `RateLimited` | 429 (Twilio 20429: "never processed") | **yes**, after a backoff |
//! | `Transient` | no connection was made (refused, DNS, connect timeout), or a 5xx | connection: **yes**; 5xx: only through the ledger, see below |
//! | `OptedOut` | Twilio 400 with code 21610 | no: the recipient said STOP |
//! | `LineBlocked` | Quo 400 about A2P/10DLC registration | no: the line cannot send |
//! | `Rejected` | any other 4xx | no: the same request fails the same way |
//! | `Unknown` | the request was (or may have been) written and no answer was read: read timeout, connection reset, a 2xx without an id | **never** blindly: the message may be out |
//!
//! [`send_with_retries`] retries `RateLimited` only. A 5xx is classified `Transient`
//! because it is an explicit failure answer, but neither provider documents that a 5xx
//! means "not accepted", so it is returned to the caller, whose ledger decides (and a
//! later attempt is a new, recorded attempt, never a silent resend here). ureq itself
//! never re-sends a POST (it retries only idempotent methods), and redirects are off so a
//! POST is never replayed to another URL.

pub mod limiter;
pub mod quo;
pub mod twilio;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::alerts::{Alert, Alerter, Severity};
use crate::retry::RetryPolicy;

pub use limiter::{Limiter, Rate};

/// How one send attempt ended (see the table in the module header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the message; `provider_id` is its id (Quo `AC…`, Twilio `SM…`).
    Sent {
        /// The provider's message id.
        provider_id: String,
    },
    /// Twilio 21610: the recipient opted out at Twilio; record it as an opt-out.
    OptedOut,
    /// Quo refused because the line's A2P (10DLC) registration is not approved.
    LineBlocked {
        /// The provider's message.
        reason: String,
    },
    /// 429: the provider did not process the request. Safe to retry after a backoff.
    RateLimited,
    /// Refused for good (another 4xx); the same request would fail again.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The provider's error code (Twilio's number, Quo's string), if any.
        code: Option<String>,
        /// The provider's message, if any.
        message: String,
    },
    /// The provider was not reached, or answered 5xx.
    Transient {
        /// What happened (no secrets).
        reason: String,
    },
    /// The request may have reached the provider and no usable answer came back: the
    /// message may have gone out. Never retried blindly.
    Unknown {
        /// What happened (no secrets).
        reason: String,
    },
}

impl Outcome {
    /// The short name used in alert keys, logs and (later) ledger events.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::OptedOut => "opted_out",
            Outcome::LineBlocked { .. } => "line_blocked",
            Outcome::RateLimited => "rate_limited",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Transient { .. } => "transient",
            Outcome::Unknown { .. } => "unknown",
        }
    }
}

/// One outbound SMS, already cleared by the gates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundMessage {
    /// The sending line: E.164 (Quo also takes a `PN…` id).
    pub from: String,
    /// The recipient, E.164.
    pub to: String,
    /// The text.
    pub content: String,
}

/// Why a request could not be built: nothing was sent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A number is not `+` followed by 8 to 15 digits.
    #[error("{field} is not an E.164 number")]
    NotE164 {
        /// Which field.
        field: &'static str,
    },
    /// Quo's `from` is neither E.164 nor a `PN…` phone-number id.
    #[error("from is neither an E.164 number nor a PN… phone-number id")]
    BadFrom,
    /// The text is empty.
    #[error("the message text is empty")]
    EmptyContent,
    /// The text is longer than the provider accepts.
    #[error("the message text has {len} characters, over the limit of {max}")]
    ContentTooLong {
        /// Characters in the text.
        len: usize,
        /// The provider's limit.
        max: usize,
    },
    /// The Twilio Account SID is not `AC` followed by 32 hex digits.
    #[error("the Twilio account SID is not AC followed by 32 hex digits")]
    BadAccountSid,
}

/// `+` then 8 to 15 digits, the first not 0.
pub(crate) fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// A request ready to perform: the pure output of a builder. Its `Debug` hides the
/// `Authorization` value.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `POST`.
    pub method: &'static str,
    /// The full URL.
    pub url: String,
    /// Header names and values, `Authorization` included.
    pub headers: Vec<(&'static str, String)>,
    /// The encoded body.
    pub body: String,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case("authorization") {
                    (*k, "<redacted>")
                } else {
                    (*k, v.as_str())
                }
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

/// Where a client sends and how long it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// Scheme and host, without a trailing slash (tests point it at a fake server).
    pub base_url: String,
    /// Longest wait for the TCP (and TLS) connection; failing it sends nothing.
    pub connect_timeout: Duration,
    /// Longest wait for the whole call; failing it after the request was written makes the
    /// outcome `Unknown`.
    pub timeout: Duration,
}

impl HttpOptions {
    /// Defaults for `base_url`: 5 s to connect, 15 s in all.
    pub fn new(base_url: impl Into<String>) -> HttpOptions {
        HttpOptions {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }

    fn agent(&self) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout_connect(self.connect_timeout)
            .timeout(self.timeout)
            // A redirected POST could be replayed elsewhere (or turned into a GET).
            .redirects(0)
            .user_agent(concat!("hooklog/", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

/// A provider's send client: builds, performs and classifies one call.
pub trait SendClient {
    /// `openphone` or `twilio` (the configuration spelling).
    fn provider(&self) -> &'static str;
    /// The limiter key this message counts against.
    fn limiter_key(&self, message: &OutboundMessage) -> String;
    /// Performs one call; never retries.
    fn send(&self, message: &OutboundMessage) -> Result<Outcome, BuildError>;
}

/// Performs `request` once and classifies the answer. Transport failures are split by
/// whether the request can have been written: only a failure to connect is `Transient`.
pub(crate) fn perform(
    agent: &ureq::Agent,
    request: &HttpRequest,
    classify: fn(u16, &str) -> Outcome,
) -> Outcome {
    let mut call = agent.request(request.method, &request.url);
    for (name, value) in &request.headers {
        call = call.set(name, value);
    }
    let response = match call.send_string(&request.body) {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(t)) => {
            // `t`'s Display includes the URL; Twilio's holds the account SID, so describe
            // the failure by kind only.
            let reason = format!("{}", t.kind());
            return match t.kind() {
                ureq::ErrorKind::Dns
                | ureq::ErrorKind::ConnectionFailed
                | ureq::ErrorKind::InvalidUrl
                | ureq::ErrorKind::UnknownScheme
                | ureq::ErrorKind::InsecureRequestHttpsOnly => Outcome::Transient {
                    reason: format!("not sent: {reason}"),
                },
                _ => Outcome::Unknown {
                    reason: format!("request written, no answer read: {reason}"),
                },
            };
        }
    };
    let status = response.status();
    match response.into_string() {
        Ok(body) => classify(status, &body),
        Err(e) if (200..300).contains(&status) => Outcome::Unknown {
            reason: format!("accepted ({status}) but the answer could not be read: {e}"),
        },
        Err(_) => classify(status, ""),
    }
}

/// Where [`send_with_retries`] raises operator alerts: the daemon's [`Alerter`]; tests
/// record them.
pub trait AlertSink {
    /// Raises `alert`; must not block.
    fn raise(&self, alert: Alert);
}

impl AlertSink for Alerter {
    fn raise(&self, alert: Alert) {
        Alerter::raise(self, alert);
    }
}

/// One call made, for the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// When the call started.
    pub at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
}

/// What [`send_with_retries`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReport {
    /// The last attempt's outcome (`RateLimited` when the retries ran out).
    pub outcome: Outcome,
    /// Every call made, in order (at least one).
    pub attempts: Vec<Attempt>,
}

/// Sends `message`: takes a limiter token, calls, and on `RateLimited` backs off (full
/// jitter) and tries again, at most `policy.max_retries` times. Nothing else is retried
/// (see the module header). Alerts: retries exhausted, line blocked, unknown outcome.
/// Blocks the calling thread (limiter waits, backoffs, the call itself).
pub fn send_with_retries(
    client: &dyn SendClient,
    limiter: &Limiter,
    message: &OutboundMessage,
    policy: &RetryPolicy,
    alerts: &dyn AlertSink,
) -> Result<SendReport, BuildError> {
    let key = client.limiter_key(message);
    let mut attempts = Vec::new();
    let mut rng = rand::thread_rng();
    let outcome = loop {
        limiter.acquire(&key);
        let at = Utc::now();
        let outcome = client.send(message)?;
        attempts.push(Attempt {
            at,
            outcome: outcome.clone(),
        });
        let retries_done = attempts.len() as u32 - 1;
        if outcome != Outcome::RateLimited || retries_done >= policy.max_retries {
            break outcome;
        }
        let wait = policy.backoff(retries_done, rng.gen_range(0.0..=1.0));
        tracing::info!(
            provider = client.provider(),
            from = %message.from,
            retry = retries_done + 1,
            wait_ms = wait.as_millis() as u64,
            "send rate-limited (429): backing off"
        );
        std::thread::sleep(wait);
    };
    if let Some(alert) = alert_for(client.provider(), message, &outcome, attempts.len()) {
        alerts.raise(alert);
    }
    Ok(SendReport { outcome, attempts })
}

/// The alert an outcome calls for, if any. Keys are per provider and line so one line's
/// trouble does not coalesce another's.
fn alert_for(
    provider: &str,
    message: &OutboundMessage,
    outcome: &Outcome,
    tries: usize,
) -> Option<Alert> {
    let line = &message.from;
    let (severity, title, reason, next_step) = match outcome {
        Outcome::RateLimited => (
            Severity::Warning,
            format!("{provider} kept answering 429 to sends from {line}"),
            format!("{tries} tries, each rate-limited; the message was not sent"),
            "check for another client using the same API key or number; the message can be \
             queued again once the rate recovers"
                .to_owned(),
        ),
        Outcome::LineBlocked { reason } => (
            Severity::Critical,
            format!("{provider} line {line} is blocked from sending"),
            format!("A2P/10DLC registration not approved: {reason}"),
            "check the line's 10DLC campaign in the provider console; sends from this line \
             fail until it is approved"
                .to_owned(),
        ),
        Outcome::Unknown { reason } => (
            Severity::Warning,
            format!("{provider} send from {line}: result unknown"),
            format!("{reason}; the message may or may not have gone out, so it is not resent"),
            "look the message up in the provider's message log before sending it again".to_owned(),
        ),
        _ => return None,
    };
    Some(Alert {
        key: format!("send:{}:{provider}:{line}", outcome.as_str()),
        severity,
        title,
        reason,
        next_step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_only_plus_and_8_to_15_digits() {
        assert!(is_e164("+15551234567"));
        assert!(!is_e164("15551234567"));
        assert!(!is_e164("+1555"));
        assert!(!is_e164("+1 555 123 4567"));
        assert!(!is_e164("+05551234567"));
    }

    #[test]
    fn request_debug_hides_the_authorization_value() {
        let r = HttpRequest {
            method: "POST",
            url: "http://x/v1/messages".into(),
            headers: vec![("Authorization", "key-123".into())],
            body: "{}".into(),
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("key-123"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn only_exhausted_429s_blocked_lines_and_unknown_results_alert() {
        let m = OutboundMessage {
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            content: "hi".into(),
        };
        let alerted = |o: Outcome| alert_for("twilio", &m, &o, 1).map(|a| a.key);
        assert_eq!(
            alerted(Outcome::RateLimited).as_deref(),
            Some("send:rate_limited:twilio:+15550001111")
        );
        assert!(alerted(Outcome::LineBlocked { reason: "x".into() }).is_some());
        assert!(alerted(Outcome::Unknown { reason: "x".into() }).is_some());
        assert!(alerted(Outcome::OptedOut).is_none());
        assert!(alerted(Outcome::Sent {
            provider_id: "SM1".into()
        })
        .is_none());
        assert!(alerted(Outcome::Transient { reason: "x".into() }).is_none());
    }
}
