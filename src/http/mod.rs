//! HTTP plumbing shared by the edge and the admin API: one warp filter that hands a handler
//! the raw request (method, raw path, raw query, headers, body stream), a body reader with a
//! hard size limit and a deadline, the server loop with its connection limits ([`serve`]:
//! header read timeout, head size, idle timeout), the accept loop that survives accept errors
//! and caps open connections ([`listener`]), sampled log lines ([`sampled`]), and reply
//! helpers.
//!
//! Routing is done by the handlers with a `match` on the path rather than by warp filter
//! combinators: the status codes of docs/api.md#status-codes (404 vs 405 vs 413) then come from one place,
//! and the raw request target Twilio signs is available as received.

pub mod listener;
pub mod sampled;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;
use warp::filters::path::FullPath;
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The parts of a request a handler needs; the body is read on demand.
pub struct RawRequest<B> {
    /// The method.
    pub method: Method,
    /// Raw path (not percent-decoded).
    pub path: String,
    /// Raw query (without `?`), if any.
    pub query: Option<String>,
    /// All headers.
    pub headers: HeaderMap,
    /// The body, not yet read.
    pub body: B,
}

/// Why the body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The connection failed or the framing was broken.
    Read(warp::Error),
    /// The whole body did not arrive within the body read timeout.
    TimedOut(Duration),
}

/// A boxed body stream, so handlers need not be generic. It ends with
/// [`BodyError::TimedOut`] once the body read timeout has passed.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, BodyError>> + Send>>;

/// Connection limits of a listener (`[server]`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time to receive a whole request head; also how long an idle keep-alive connection
    /// is kept.
    pub header_read_timeout: Duration,
    /// Time to receive a whole body, counted from the end of the head.
    pub body_read_timeout: Duration,
    /// Largest request head in bytes (hyper's read buffer).
    pub max_header_bytes: usize,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once on one listener; past it, new ones wait in the kernel's
    /// backlog ([`listener`]).
    pub max_connections: usize,
}

impl Limits {
    /// The limits configured in `[server]`.
    pub fn from_config(server: &crate::config::ServerConfig) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(server.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(server.body_read_timeout_secs),
            max_header_bytes: server.max_header_bytes,
            idle_timeout: Duration::from_secs(server.idle_timeout_secs),
            max_connections: server.max_connections,
        }
    }
}

/// Why a listener stopped serving before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket became unusable (EBADF, EINVAL, …; see [`listener::classify`]):
    /// retrying the accept cannot help, the daemon must stop for a restart.
    #[error("listener {listener}: {message}")]
    Accept {
        /// The listener's name (its `listener` metric label).
        listener: String,
        /// hyper's error with the accept error it carries.
        message: String,
    },
}

/// Serves `filter` on `listener` (named `name` in logs and metrics) until `shutdown`
/// resolves, then finishes in-flight requests; returns early only with the error that ended
/// the accept loop ([`listener`]).
///
/// This is `warp::serve(..).serve_incoming_with_graceful_shutdown(..)` plus the limits warp
/// does not expose, against clients that hold a connection without finishing a request
/// (slow loris): hyper 0.14 has no header read timeout by default, so a client sending one
/// header byte a minute (or nothing at all) kept its connection and its task forever, and its
/// read buffer grows to ~400 KiB before a head is refused, so a single header of a few hundred
/// KiB was read and accepted. hyper answers a head over `max_header_bytes` (or with more than
/// 100 headers) with `431`, and closes a connection whose head is not complete within
/// `header_read_timeout`. The body has its own deadline, in [`raw`]. hyper's header timer
/// does not cover a keep-alive connection left idle after its first answer, nor a client
/// that stops reading our answer: [`listener::IdleTimeout`] closes those. The accept loop is ours
/// ([`listener::Acceptor`]): hyper's server ends at the first accept error it is given, so it
/// is given only the one that means the socket is gone.
pub fn serve<F>(
    filter: F,
    listener: TcpListener,
    name: &str,
    limits: Limits,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), ServeError>> + Send
where
    F: Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
{
    let service = warp::service(filter);
    let make = warp::hyper::service::make_service_fn(move |_| {
        let service = service.clone();
        async move { Ok::<_, Infallible>(service) }
    });
    let incoming = listener::Acceptor::new(
        listener,
        name,
        limits.max_connections,
        limits.idle_timeout,
        listener::ListenerMetrics::new(metrics, name),
    )
    .into_stream();
    let server = hyper::Server::builder(hyper::server::accept::from_stream(incoming))
        // HTTP/1 only: warp also accepted HTTP/2 with prior knowledge (h2c), where none of the
        // limits above apply (hyper allows a 16 MiB header list and has no header timeout for
        // h2). The tunnel and the providers speak HTTP/1.1 to this listener.
        .http1_only(true)
        .http1_header_read_timeout(limits.header_read_timeout)
        .http1_max_buf_size(limits.max_header_bytes)
        .serve(make)
        .with_graceful_shutdown(shutdown);
    let name = name.to_owned();
    async move {
        server.await.map_err(|e| ServeError::Accept {
            listener: name,
            message: e.to_string(),
        })
    }
}

/// A filter matching every request and passing it whole to `handler`; the body stream fails
/// with [`BodyError::TimedOut`] if the whole body has not arrived `body_timeout` after the
/// head. Without it, a client declaring a `Content-Length` larger than what it sends (or
/// sending a chunked body byte by byte) kept a request, and the handler task awaiting its
/// body, open for as long as it kept the connection.
pub fn raw<F, Fut>(
    handler: F,
    body_timeout: Duration,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static
where
    F: Fn(RawRequest<BodyStream>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let query = warp::query::raw()
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: FullPath,
                  query: Option<String>,
                  headers: HeaderMap,
                  body| {
                handler(RawRequest {
                    method,
                    path: path.as_str().to_owned(),
                    query,
                    headers,
                    body: boxed(body, body_timeout),
                })
            },
        )
}

fn boxed<S, B>(stream: S, timeout: Duration) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(Deadline {
        inner: Box::pin(stream.map(|r| {
            r.map(|mut b| b.copy_to_bytes(b.remaining()))
                .map_err(BodyError::Read)
        })),
        sleep: Box::pin(tokio::time::sleep(timeout)),
        timeout,
        expired: false,
    })
}

/// A body stream that yields [`BodyError::TimedOut`] (and then ends) once its deadline has
/// passed, whatever the client does.
struct Deadline {
    inner: BodyStream,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<bytes::Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = self.inner.as_mut().poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(BodyError::TimedOut(self.timeout))));
        }
        Poll::Pending
    }
}

/// Reads the whole body, refusing (before reading anything) a declared length over `limit`
/// and stopping as soon as the bytes received exceed it, so an oversized body is never
/// buffered whole.
pub async fn read_body(
    headers: &HeaderMap,
    mut body: BodyStream,
    limit: u64,
) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| match e {
            BodyError::Read(e) => ApiError::BodyRead(e.to_string()),
            BodyError::TimedOut(t) => ApiError::BodyTimeout(t),
        })?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A response with a body and a content type.
pub fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<warp::hyper::Body>,
) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => reply(status, "application/json", body),
        Err(e) => ApiError::BadRequest(format!("cannot encode response: {e}")).into_response(),
    }
}
