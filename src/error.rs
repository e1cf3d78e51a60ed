//! The one mapping from failures to HTTP answers, for the edge and the admin API alike.
//!
//! Every handler returns `Result<Response, ApiError>`; [`ApiError::into_response`] is the only
//! place a status code is chosen for an error, so the table of docs/api.md#status-codes lives here.

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
        }
    }

    /// The HTTP answer: a small JSON body `{"error": kind, "message": …}`.
    pub fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        }
        let mut body = serde_json::json!({ "error": self.kind(), "message": self.to_string() });
        if let ApiError::RedeliveryRefused { report, .. } = &self {
            body["report"] = report.clone();
        }
        let mut resp = Response::new(body.to_string().into());
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
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
