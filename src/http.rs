//! HTTP plumbing shared by the edge and the admin API: one warp filter that hands a handler
//! the raw request (method, raw path, raw query, headers, body stream), a body reader with a
//! hard size limit, and reply helpers.
//!
//! Routing is done by the handlers with a `match` on the path rather than by warp filter
//! combinators: the status codes of DESIGN §3 (404 vs 405 vs 413) then come from one place,
//! and the raw request target Twilio signs is available as received.

use std::future::Future;

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use warp::filters::path::FullPath;
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::error::ApiError;

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

/// A boxed body stream, so handlers need not be generic.
pub type BodyStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<bytes::Bytes, warp::Error>> + Send>>;

/// A filter matching every request and passing it whole to `handler`.
pub fn raw<F, Fut>(
    handler: F,
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
                    body: boxed(body),
                })
            },
        )
}

fn boxed<S, B>(stream: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(stream.map(|r| r.map(|mut b| b.copy_to_bytes(b.remaining()))))
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
        let chunk = chunk.map_err(|e| ApiError::BodyRead(e.to_string()))?;
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
