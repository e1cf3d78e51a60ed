//! The one mapping from failures to HTTP answers, for the edge and the admin API alike.
//!
//! Every handler returns `Result<Response, ApiError>`; [`ApiError::status`] is the only place a
//! status code is chosen for an error, so the table of docs/api.md#status-codes lives here.
//!
//! Two renderings of the same error: [`ApiError::into_response`] for the admin API (behind its
//! token: a JSON body with the kind and the whole message), and
//! [`ApiError::into_public_response`] for the webhook listener, which anyone on the internet
//! reaches: a fixed short text per status ([`ApiError::public_text`]), so that no storage
//! error, path or configuration detail leaves the host. The detail of a server error goes to
//! the log in both cases.

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::log::LogError;
use crate::provider::Provider;
use crate::signature::Rejection;

/// Seconds a provider is told to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// A request that cannot be answered with success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such route → 404.
    #[error("not found")]
    NotFound,
    /// The route exists but the thing it names does not → 404, saying what is missing.
    #[error("{0}")]
    NoSuch(String),
    /// The route exists for other methods → 405 with `Allow`.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// The body exceeds the configured limit → 413.
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(u64),
    /// The webhook did not verify (401 Quo/SalesMsg, 403 Twilio) or its provider is not
    /// configured (503).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The append failed: nothing was acknowledged → 503 with `Retry-After`.
    #[error("append failed: {0}")]
    AppendFailed(LogError),
    /// Missing or wrong admin token → 401.
    #[error("missing or invalid admin token")]
    Unauthorized,
    /// A valid token whose role does not reach the route (an agent token on an operator
    /// route) → 403, saying which routes it may use.
    #[error(
        "this is the agent token `{agent}`: it may use only {allowed}; every other route \
         needs the operator token"
    )]
    Forbidden {
        /// The agent the token belongs to.
        agent: String,
        /// The routes it may use.
        allowed: String,
    },
    /// A malformed admin request → 400.
    #[error("{0}")]
    BadRequest(String),
    /// The client stopped sending the body or sent a broken one → 400.
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// The whole body did not arrive within the body read timeout → 408 (the connection is
    /// then closed: the rest of the body is never read).
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    BodyTimeout(std::time::Duration),
    /// A read of the log failed → 500 (logged; the body carries the message for operators,
    /// the admin API being private).
    #[error("log error: {0}")]
    Log(#[from] LogError),
    /// Not ready to serve (readiness probe) → 503.
    #[error("not ready: {0}")]
    NotReady(String),
    /// A rewind with `redeliver` that was not carried out because the operator has not
    /// confirmed it or it is over the limit → 409, with the report of what it would perform
    /// again; the message says what to run next.
    #[error("{message}")]
    RedeliveryRefused {
        /// `redeliver_unconfirmed` or `redeliver_over_limit`.
        kind: &'static str,
        /// What it would do and what to run next.
        message: String,
        /// The rewind report, as JSON.
        report: serde_json::Value,
    },
    /// An admin route that needs the consumers' state, asked of a standby replica (another
    /// replica runs the consumers; its admin API answers) → 503.
    #[error("this replica is a standby; ask the replica that runs the consumers ({0})")]
    NotLeader(String),
    /// A reload (`POST /admin/reload`) found the new configuration invalid and applied none
    /// of it: the message names the file, line and key, never a value.
    #[error("configuration not reloaded, the running one stays: {0}")]
    ReloadRefused(String),
}

/// Consumer state (the suppression list, outbound messages) that cannot be read is a storage
/// failure like a log read: 500, with the message for the operator.
impl From<crate::state::StateError> for ApiError {
    fn from(e: crate::state::StateError) -> Self {
        ApiError::Log(LogError::Storage(e.to_string()))
    }
}

impl ApiError {
    /// The status code for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound | ApiError::NoSuch(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Rejected(Rejection::NotConfigured(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Rejected(Rejection::Unverified(Provider::Twilio, _)) => StatusCode::FORBIDDEN,
            ApiError::Rejected(Rejection::Unverified(_, _)) => StatusCode::UNAUTHORIZED,
            ApiError::AppendFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) | ApiError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Log(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotReady(_) | ApiError::NotLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RedeliveryRefused { .. } => StatusCode::CONFLICT,
            ApiError::ReloadRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// A stable label for the `outcome` metric and the JSON body.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::NotFound | ApiError::NoSuch(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "too_large",
            ApiError::Rejected(Rejection::NotConfigured(_)) => "not_configured",
            ApiError::Rejected(Rejection::Unverified(_, e)) => e.reason(),
            ApiError::AppendFailed(_) => "append_failed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::BodyRead(_) => "body_read",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::Log(_) => "log_error",
            ApiError::NotReady(_) => "not_ready",
            ApiError::NotLeader(_) => "not_leader",
            ApiError::RedeliveryRefused { kind, .. } => kind,
            ApiError::ReloadRefused(_) => "reload_refused",
        }
    }

    /// The admin API's answer: a small JSON body `{"error": kind, "message": …}`.
    pub fn into_response(self) -> Response {
        self.log_server_error();
        let mut body = serde_json::json!({ "error": self.kind(), "message": self.to_string() });
        if let ApiError::RedeliveryRefused { report, .. } = &self {
            body["report"] = report.clone();
        }
        self.answer("application/json", body.to_string())
    }

    /// The webhook listener's answer: the same status and headers as [`Self::into_response`],
    /// with [`Self::public_text`] as the whole body.
    pub fn into_public_response(self) -> Response {
        self.log_server_error();
        let text = self.public_text();
        self.answer("text/plain", text)
    }

    /// The fixed body of a public answer: it says what the client can do, never why the server
    /// failed (that is in the log).
    pub fn public_text(&self) -> &'static str {
        match self {
            // The readiness probe's own words.
            ApiError::NotReady(_) => "not ready\n",
            _ => match self.status() {
                StatusCode::NOT_FOUND => "not found\n",
                StatusCode::METHOD_NOT_ALLOWED => "method not allowed\n",
                StatusCode::PAYLOAD_TOO_LARGE => "body too large\n",
                StatusCode::UNAUTHORIZED => "unauthorized\n",
                StatusCode::FORBIDDEN => "forbidden\n",
                StatusCode::BAD_REQUEST => "bad request\n",
                StatusCode::REQUEST_TIMEOUT => "request timeout\n",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable, retry\n",
                StatusCode::CONFLICT => "conflict\n",
                StatusCode::UNPROCESSABLE_ENTITY => "unprocessable\n",
                _ => "internal error\n",
            },
        }
    }

    /// A server error's detail, for the operator. Not-ready answers are left to the readiness
    /// probe, which logs its reason sampled (a probe every few seconds would repeat it).
    fn log_server_error(&self) {
        let status = self.status();
        if status.is_server_error() && !matches!(self, ApiError::NotReady(_)) {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        }
    }

    fn answer(self, content_type: &'static str, body: impl Into<warp::hyper::Body>) -> Response {
        let mut resp = Response::new(body.into());
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        match &self {
            ApiError::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::AppendFailed(_) | ApiError::Rejected(Rejection::NotConfigured(_)) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_answer_carries_its_status_and_headers_but_no_internal_detail() {
        let secret = "/var/lib/hooklog/log: No space left on device (os error 28)";
        let resp = ApiError::AppendFailed(LogError::Storage(secret.into())).into_public_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
        let resp = ApiError::NotReady(secret.into()).into_public_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let resp = ApiError::MethodNotAllowed("POST").into_public_response();
        assert_eq!(resp.headers()[header::ALLOW], "POST");
        // Every variant's public body is one of the fixed texts, whatever its message.
        let fixed = [
            "not ready\n",
            "not found\n",
            "method not allowed\n",
            "body too large\n",
            "unauthorized\n",
            "forbidden\n",
            "bad request\n",
            "request timeout\n",
            "unavailable, retry\n",
            "conflict\n",
            "unprocessable\n",
            "internal error\n",
        ];
        for e in [
            ApiError::NoSuch(secret.into()),
            ApiError::AppendFailed(LogError::Storage(secret.into())),
            ApiError::BodyRead(secret.into()),
            ApiError::BadRequest(secret.into()),
            ApiError::Log(LogError::Storage(secret.into())),
            ApiError::NotReady(secret.into()),
            ApiError::NotLeader(secret.into()),
            ApiError::ReloadRefused(secret.into()),
            ApiError::PayloadTooLarge(1),
            ApiError::BodyTimeout(std::time::Duration::from_secs(1)),
        ] {
            assert!(fixed.contains(&e.public_text()), "{e:?}");
            assert!(!e.public_text().contains("space"));
        }
        assert_eq!(
            ApiError::NotReady(secret.into()).public_text(),
            "not ready\n"
        );
        assert_eq!(
            ApiError::AppendFailed(LogError::Storage(secret.into())).public_text(),
            "unavailable, retry\n"
        );
    }
}
