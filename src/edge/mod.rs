//! The public webhook edge: every route of docs/api.md#routes on every configured listener.
//!
//! For a webhook the order is fixed and is the whole point of hooklog:
//! read the body (capped) → verify ([`verifier`]) → append and wait for the group commit →
//! answer 2xx. A request that fails verification never reaches the log; a request whose
//! append fails gets a 503 and is not acknowledged. A request that repeats a stored one is
//! answered as that one was and not appended again ([`replay`]). A request without the header (SalesMsg:
//! the query parameter) its provider signs with is refused before its body is read
//! ([`verifier::presents_signature`]). `/healthz` and `/readyz` are served on the same
//! listeners; nothing else is (`/metrics` is on the admin listener, behind the operator token).
//!
//! What the internet sees: every error is a fixed short text
//! ([`ApiError::into_public_response`]), and the probes answer `ok`, `ready` or `not ready`;
//! the reasons go to the log. Rejections are counted exactly
//! (`hooklog_verify_failures_total`) but logged sampled, at most one line per provider and
//! reason a second ([`http::sampled`]): the rate of rejections is the sender's to choose.

pub mod replay;
pub mod twiml;
pub mod verifier;

use std::sync::Arc;
use std::time::{Duration, Instant};

use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

use crate::config::VoiceConfig;
use crate::consumers::registry::Registry;
use crate::error::ApiError;
use crate::event::Micros;
use crate::http::sampled::Sampler;
use crate::http::{self, BodyStream, RawRequest};
use crate::live::Live;
use crate::log::{Log, LogError};
use crate::metrics::Metrics;
use crate::signature::Rejection;
use verifier::{IncomingRequest, Verifier, WebhookRoute, KEPT_HEADERS};

/// What the edge handlers share.
pub struct Edge {
    /// Decoded keys. A reload replaces them whole: a request is verified against the keys
    /// in force when its body was read, all of one configuration.
    pub verifier: Live<Verifier>,
    /// Where verified requests go.
    pub log: Arc<dyn Log>,
    /// Counters and histograms.
    pub metrics: Metrics,
    /// Body size limit.
    pub max_body_bytes: u64,
    /// Pre-rendered TwiML for voice routes (`[twilio.voice]`; a reload replaces it).
    pub voice_twiml: Live<String>,
    /// Whether the daemon is ready (every listener up, not shutting down).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// The "webhook rejected" lines, by provider and reason.
    rejections_log: Sampler<(&'static str, &'static str)>,
    /// The "not ready" lines, by reason.
    readiness_log: Sampler<&'static str>,
    /// The stored webhooks whose replays are answered without a new record.
    pub replays: Arc<replay::ReplayCache>,
    /// The consumers this replica runs: one that is not running makes it not ready.
    consumers: Arc<Registry>,
}

/// At most one log line per provider and reason (rejections), or per reason (not ready), in
/// this period.
const LOG_PERIOD: Duration = Duration::from_secs(1);

impl Edge {
    /// Builds the edge state.
    pub fn new(
        verifier: Verifier,
        log: Arc<dyn Log>,
        metrics: Metrics,
        max_body_bytes: u64,
        voice: &VoiceConfig,
        ready: Arc<std::sync::atomic::AtomicBool>,
        replays: Arc<replay::ReplayCache>,
    ) -> Edge {
        Edge {
            verifier: Live::new(verifier),
            log,
            metrics,
            max_body_bytes,
            voice_twiml: Live::new(twiml::voice(voice)),
            ready,
            rejections_log: Sampler::new(LOG_PERIOD),
            readiness_log: Sampler::new(LOG_PERIOD),
            replays,
            consumers: Arc::new(Registry::default()),
        }
    }

    /// Readiness also requires the consumers `registry` expects to be running (the daemon's
    /// registry; without it, none are required).
    pub fn with_consumers(mut self, registry: Arc<Registry>) -> Edge {
        self.consumers = registry;
        self
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: RawRequest<BodyStream>) -> Response {
        let started = Instant::now();
        let route_label = metric_route(&req.path);
        let result = self.route(req, started).await;
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(e) => e.kind(),
        };
        self.metrics
            .requests
            .with_label_values(&[route_label, outcome])
            .inc();
        result.unwrap_or_else(ApiError::into_public_response)
    }

    async fn route(
        &self,
        req: RawRequest<BodyStream>,
        started: Instant,
    ) -> Result<Response, ApiError> {
        let received_at = Micros::now();
        match req.path.as_str() {
            "/healthz" => {
                get_only(&req.method)?;
                return Ok(http::reply(StatusCode::OK, "text/plain", "ok\n"));
            }
            "/readyz" => {
                get_only(&req.method)?;
                return self.readiness();
            }
            _ => {}
        }
        let route = WebhookRoute::for_path(&req.path).ok_or(ApiError::NotFound)?;
        if req.method != Method::POST {
            return Err(ApiError::MethodNotAllowed("POST"));
        }
        let provider = route.provider();
        let keys = self.verifier.get();
        if !keys.is_configured(provider) {
            // Do not read a body we cannot verify; the provider retries after configuration.
            return Err(Rejection::NotConfigured(provider).into());
        }
        let has_header = |name: &str| {
            req.headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| !v.trim().is_empty()))
        };
        if let Err(e) = verifier::presents_signature(route, has_header, req.query.as_deref()) {
            let rejection = Rejection::Unverified(provider, e);
            self.count_rejection(&rejection);
            return Err(rejection.into());
        }
        let body = http::read_body(&req.headers, req.body, self.max_body_bytes).await?;
        let incoming = IncomingRequest {
            path: req.path,
            query: req.query,
            headers: kept_headers(&req.headers),
            body,
        };
        let verified = keys
            .verify(route, incoming, received_at)
            .inspect_err(|rejection| self.count_rejection(rejection))?;
        let source = verified.source();
        let seq = match self
            .replays
            .append_once(&keys, self.log.as_ref(), verified)
            .await
        {
            Ok(replay::Appended::New(seq)) => {
                self.metrics
                    .append_latency
                    .with_label_values(&[source.as_str()])
                    .observe(started.elapsed().as_secs_f64());
                tracing::debug!(seq = seq.0, source = source.as_str(), "appended");
                seq
            }
            Ok(replay::Appended::Replay(seq)) => {
                self.metrics
                    .replays
                    .with_label_values(&[provider.as_str()])
                    .inc();
                tracing::debug!(
                    seq = seq.0,
                    source = source.as_str(),
                    "replay: not stored again"
                );
                seq
            }
            Err(replay::ReplayError::Append(e)) => return Err(ApiError::AppendFailed(e)),
            Err(e @ replay::ReplayError::TwinStillPending) => {
                return Err(ApiError::AppendFailed(LogError::Storage(e.to_string())))
            }
        };
        Ok(match route {
            WebhookRoute::TwilioVoice => http::reply(
                StatusCode::OK,
                "text/xml",
                self.voice_twiml.get().to_string(),
            ),
            WebhookRoute::TwilioCallback => http::reply(StatusCode::OK, "text/xml", twiml::empty()),
            WebhookRoute::Quo | WebhookRoute::SalesMsg => http::json(
                StatusCode::OK,
                &serde_json::json!({ "ok": true, "seq": seq.0 }),
            ),
        })
    }

    /// Counts a failed verification (exactly) and logs it (sampled).
    fn count_rejection(&self, rejection: &Rejection) {
        if let Rejection::Unverified(p, e) = rejection {
            self.metrics
                .verify_failures
                .with_label_values(&[p.as_str(), e.reason()])
                .inc();
            if let Some(suppressed) = self
                .rejections_log
                .admit((p.as_str(), e.reason()), Instant::now())
            {
                tracing::info!(
                    provider = p.as_str(),
                    reason = e.reason(),
                    error = %e,
                    times_since_last_line = suppressed,
                    "webhook rejected"
                );
            }
        }
    }

    fn readiness(&self) -> Result<Response, ApiError> {
        let mut detail = String::new();
        let reason = if !self.ready.load(std::sync::atomic::Ordering::Acquire) {
            "starting, shutting down, or a listener stopped"
        } else if !self.log.is_writable() {
            "the log is not writable"
        } else {
            let stopped = self.consumers.not_running();
            if stopped.is_empty() {
                return Ok(http::reply(StatusCode::OK, "text/plain", "ready\n"));
            }
            detail = stopped.join(", ");
            "a consumer is not running"
        };
        if let Some(suppressed) = self.readiness_log.admit(reason, Instant::now()) {
            tracing::info!(
                reason,
                consumers = %detail,
                times_since_last_line = suppressed,
                "not ready"
            );
        }
        // The public answer is the fixed `not ready`; the consumers' names are in the log
        // line above and in the admin status.
        Err(ApiError::NotReady(if detail.is_empty() {
            reason.into()
        } else {
            format!("{reason}: {detail}")
        }))
    }
}

fn get_only(method: &Method) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed("GET, HEAD"))
    }
}

/// The route label for metrics: known paths as themselves, anything else as `other` so that
/// scanners cannot blow up the label cardinality.
fn metric_route(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/webhook/openphone",
        "/webhook/quo",
        "/voice",
        "/voice/webhook",
        "/voice/status",
        "/voice/recording-complete",
        "/voice/transcription",
        "/sms",
        "/sms/webhook",
        "/sms/status",
        "/webhook/salesmsg",
        "/healthz",
        "/readyz",
    ];
    KNOWN
        .iter()
        .find(|k| **k == path)
        .copied()
        .unwrap_or("other")
}

/// The [`KEPT_HEADERS`] of a request, lower-case names, in arrival order. A header whose
/// value is not visible ASCII is skipped: none of the signature headers can be like that
/// legitimately, so such a request fails verification as if the header were missing.
fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in KEPT_HEADERS {
        for value in headers.get_all(*name) {
            if let Ok(v) = value.to_str() {
                out.push(((*name).to_owned(), v.to_owned()));
            }
        }
    }
    out
}
