//! The agent-gateway client: one blocking POST per call, classified into a
//! [`DispatchOutcome`].
//!
//! Unlike an SMS, a dispatch is safe to retry: the gateway deduplicates by the
//! `Idempotency-Key` header (see [`super::payload`]), so a request that may or may not have
//! reached it (a read timeout, a reset, a 5xx) is `Retryable`; a copy that did get through
//! is dropped by the gateway. Only an explicit refusal (a 4xx other than 408/425/429) is
//! final, because the same request would be refused again. Redirects are off so the body
//! and the bearer token never go to another host.

use std::fmt;
use std::time::Duration;

use crate::config::secret::Secret;
use crate::send::HttpRequest;

use super::payload::DispatchRequest;

/// How one POST ended (or why none was made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// 2xx: the gateway took the event.
    Delivered {
        /// HTTP status.
        status: u16,
    },
    /// Connection failure, timeout, 408, 425, 429 or 5xx: try again later with the same key.
    Retryable {
        /// What happened (no secrets).
        reason: String,
    },
    /// Another 4xx (or an unexpected 1xx/3xx): the same request would fail the same way.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The gateway's message, if any (at most 300 characters).
        message: String,
    },
    /// The circuit breaker is open: no call was made.
    CircuitOpen {
        /// How long until the breaker lets a trial call through.
        retry_in: Duration,
    },
}

impl DispatchOutcome {
    /// The short name used in logs, metrics and (later) ledger events.
    pub fn as_str(&self) -> &'static str {
        match self {
            DispatchOutcome::Delivered { .. } => "delivered",
            DispatchOutcome::Retryable { .. } => "retryable",
            DispatchOutcome::Rejected { .. } => "rejected",
            DispatchOutcome::CircuitOpen { .. } => "circuit_open",
        }
    }
}

/// Classifies a gateway answer. Pure.
pub fn classify(status: u16, body: &str) -> DispatchOutcome {
    match status {
        200..=299 => DispatchOutcome::Delivered { status },
        408 | 425 | 429 | 500..=599 => DispatchOutcome::Retryable {
            reason: format!("gateway answered {status}"),
        },
        _ => DispatchOutcome::Rejected {
            status,
            message: message_of(body),
        },
    }
}

/// The `message` or `error` field of a JSON answer, else the body itself, shortened so a
/// large error page does not flood logs and ledger events.
fn message_of(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["message", "error", "detail"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_owned))
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    text.chars().take(300).collect()
}

/// Builds the HTTP request for `request`. Pure; the `Debug` of the result hides the token.
pub fn build(token: &Secret, request: &DispatchRequest) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url: request.url.clone(),
        headers: vec![
            ("Authorization", format!("Bearer {}", token.expose())),
            ("Idempotency-Key", request.idempotency_key.clone()),
            ("Content-Type", "application/json".to_owned()),
        ],
        body: request.body.clone(),
    }
}

/// Something that performs one dispatch: the [`Client`], or a fake in tests.
pub trait Gateway {
    /// Performs one POST; never retries, never returns `CircuitOpen`.
    fn post(&self, request: &DispatchRequest) -> DispatchOutcome;
}

/// Timeouts for the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayOptions {
    /// Longest wait for the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for the whole call.
    pub timeout: Duration,
}

impl Default for GatewayOptions {
    /// 5 s to connect, 10 s in all: a retry soon is better than a long wait, given the
    /// 30 s receipt-to-dispatch target.
    fn default() -> Self {
        GatewayOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The blocking ureq gateway client. Its `Debug` hides the token.
pub struct Client {
    agent: ureq::Agent,
    token: Secret,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("token", &self.token)
            .finish()
    }
}

impl Client {
    /// A client sending `token` as a bearer token.
    pub fn new(token: Secret, options: &GatewayOptions) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(options.connect_timeout)
            .timeout(options.timeout)
            .redirects(0)
            .user_agent(concat!("hooklog/", env!("CARGO_PKG_VERSION")))
            .build();
        Client { agent, token }
    }
}

impl Gateway for Client {
    fn post(&self, request: &DispatchRequest) -> DispatchOutcome {
        let http = build(&self.token, request);
        let mut call = self.agent.request(http.method, &http.url);
        for (name, value) in &http.headers {
            call = call.set(name, value);
        }
        let response = match call.send_string(&http.body) {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(t)) => {
                // The kind only: the transport error's Display carries the URL, which may
                // hold credentials in a query string.
                return DispatchOutcome::Retryable {
                    reason: format!("transport: {}", t.kind()),
                };
            }
        };
        let status = response.status();
        match response.into_string() {
            Ok(body) => classify(status, &body),
            // A 2xx whose body could not be read was still accepted: the status decides.
            Err(_) => classify(status, ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_status() {
        assert_eq!(
            classify(200, ""),
            DispatchOutcome::Delivered { status: 200 }
        );
        assert_eq!(
            classify(202, "{}"),
            DispatchOutcome::Delivered { status: 202 }
        );
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(s, ""), DispatchOutcome::Retryable { .. }),
                "{s}"
            );
        }
        assert_eq!(
            classify(422, r#"{"error":"unknown agent"}"#),
            DispatchOutcome::Rejected {
                status: 422,
                message: "unknown agent".into()
            }
        );
        assert_eq!(
            classify(401, "nope"),
            DispatchOutcome::Rejected {
                status: 401,
                message: "nope".into()
            }
        );
        assert!(matches!(
            classify(302, ""),
            DispatchOutcome::Rejected { status: 302, .. }
        ));
    }

    #[test]
    fn a_long_error_body_is_cut_to_300_characters() {
        let body = "x".repeat(5000);
        match classify(400, &body) {
            DispatchOutcome::Rejected { message, .. } => assert_eq!(message.len(), 300),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_request_carries_bearer_token_and_idempotency_key_and_hides_the_token() {
        let request = DispatchRequest {
            url: "http://gw/dispatch".into(),
            idempotency_key: "hooklog:7:k".into(),
            agent: "atlas".into(),
            body: "{}".into(),
        };
        let http = build(&Secret::new("tok-1"), &request);
        assert!(http
            .headers
            .contains(&("Authorization", "Bearer tok-1".to_owned())));
        assert!(http
            .headers
            .contains(&("Idempotency-Key", "hooklog:7:k".to_owned())));
        assert!(!format!("{http:?}").contains("tok-1"));
        let client = Client::new(Secret::new("tok-1"), &GatewayOptions::default());
        assert!(!format!("{client:?}").contains("tok-1"));
    }
}
