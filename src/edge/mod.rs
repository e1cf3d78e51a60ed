//! The public webhook edge: every route of docs/api.md#routes on every configured listener.
//!
//! For a webhook the order is fixed and is the whole point of hooklog:
//! read the body (capped) → verify ([`verifier`]) → append and wait for the group commit →
//! answer 2xx. A request that fails verification never reaches the log; a request whose
//! append fails gets a 503 and is not acknowledged. `/healthz`, `/readyz` and `/metrics` are
//! served on the same listeners.

pub mod twiml;
pub mod verifier;

use std::sync::Arc;
use std::time::Instant;

use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

use crate::config::VoiceConfig;
use crate::error::ApiError;
use crate::event::Micros;
use crate::http::{self, BodyStream, RawRequest};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::signature::Rejection;
use verifier::{IncomingRequest, Verifier, WebhookRoute, KEPT_HEADERS};

/// What the edge handlers share.
pub struct Edge {
    /// Decoded keys.
    pub verifier: Verifier,
    /// Where verified requests go.
    pub log: Arc<dyn Log>,
    /// Counters and histograms.
    pub metrics: Metrics,
    /// Body size limit.
    pub max_body_bytes: u64,
    /// Pre-rendered TwiML for voice routes.
    pub voice_twiml: String,
    /// Whether the daemon is ready (listeners up, not shutting down).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

impl Edge {
    /// Builds the edge state.
    pub fn new(
        verifier: Verifier,
        log: Arc<dyn Log>,
        metrics: Metrics,
        max_body_bytes: u64,
        voice: &VoiceConfig,
        ready: Arc<std::sync::atomic::AtomicBool>,
    ) -> Edge {
        Edge {
            verifier,
            log,
            metrics,
            max_body_bytes,
            voice_twiml: twiml::voice(voice),
            ready,
        }
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
        result.unwrap_or_else(ApiError::into_response)
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
            "/metrics" => {
                get_only(&req.method)?;
                return Ok(http::reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render(),
                ));
            }
            _ => {}
        }
        let route = WebhookRoute::for_path(&req.path).ok_or(ApiError::NotFound)?;
        if req.method != Method::POST {
            return Err(ApiError::MethodNotAllowed("POST"));
        }
        let provider = route.provider();
        if !self.verifier.is_configured(provider) {
            // Do not read a body we cannot verify; the provider retries after configuration.
            return Err(Rejection::NotConfigured(provider).into());
        }
        let body = http::read_body(&req.headers, req.body, self.max_body_bytes).await?;
        let incoming = IncomingRequest {
            path: req.path,
            query: req.query,
            headers: kept_headers(&req.headers),
            body,
        };
        let verified = self
            .verifier
            .verify(route, incoming, received_at)
            .inspect_err(|rejection| {
                if let Rejection::Unverified(p, e) = rejection {
                    self.metrics
                        .verify_failures
                        .with_label_values(&[p.as_str(), e.reason()])
                        .inc();
                    tracing::info!(
                        provider = p.as_str(),
                        reason = e.reason(),
                        "webhook rejected"
                    );
                }
            })?;
        let source = verified.source();
        let seq = self
            .log
            .append(verified)
            .await
            .map_err(ApiError::AppendFailed)?;
        self.metrics
            .append_latency
            .with_label_values(&[source.as_str()])
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(seq = seq.0, source = source.as_str(), "appended");
        Ok(match route {
            WebhookRoute::TwilioVoice => {
                http::reply(StatusCode::OK, "text/xml", self.voice_twiml.clone())
            }
            WebhookRoute::TwilioCallback => http::reply(StatusCode::OK, "text/xml", twiml::empty()),
            WebhookRoute::Quo | WebhookRoute::SalesMsg => http::json(
                StatusCode::OK,
                &serde_json::json!({ "ok": true, "seq": seq.0 }),
            ),
        })
    }

    fn readiness(&self) -> Result<Response, ApiError> {
        if !self.ready.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ApiError::NotReady("starting or shutting down".into()));
        }
        if !self.log.is_writable() {
            return Err(ApiError::NotReady("the log is not writable".into()));
        }
        Ok(http::reply(StatusCode::OK, "text/plain", "ready\n"))
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
        "/metrics",
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
