//! The admin API (DESIGN §6): a separate, loopback-only listener, every request authorised by
//! `Authorization: Bearer <token>`.
//!
//! The token is `[server] admin_token`, or generated at first start into
//! `<data_dir>/admin.token` (mode 0600), where `hooklog-replay` reads it. sled allows one
//! process per database, so while the daemon runs this API is how tools read and append.

pub mod api;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;
use subtle::ConstantTimeEq;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;

use crate::config::{Config, Secret};
use crate::error::ApiError;
use crate::event::{Micros, Seq, Source, Verification, Verified};
use crate::http::{self, BodyStream, RawRequest};
use crate::log::Log;
use crate::metrics::Metrics;
use api::{AppendRequest, Appended, EventJson, EventPage, Status};

/// File name of the generated token inside the data directory.
pub const TOKEN_FILE: &str = "admin.token";
/// Largest page of `GET /admin/events`.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;
/// Admin request bodies (backfilled resources) may be larger than webhooks, but not unbounded.
const MAX_ADMIN_BODY: u64 = 8 * 1024 * 1024;

/// Why the admin token could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file exists but cannot be read, or cannot be created.
    #[error("admin token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("admin token file {0} is empty; delete it to generate a new token")]
    Empty(PathBuf),
}

/// The path of the generated token for a data directory.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// The configured token, else the one in `<data_dir>/admin.token`, else a new one written
/// there with mode 0600.
pub fn load_or_create_token(config: &Config) -> Result<Secret, TokenError> {
    if let Some(t) = &config.server.admin_token {
        return Ok(t.clone());
    }
    let path = token_path(&config.data_dir);
    let io = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().is_empty() => Err(TokenError::Empty(path.clone())),
        Ok(s) => Ok(Secret::new(s.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let token = hex::encode(bytes);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(io)?;
            f.write_all(token.as_bytes()).map_err(io)?;
            f.write_all(b"\n").map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::info!(path = %path.display(), "generated the admin token");
            Ok(Secret::new(token))
        }
        Err(e) => Err(io(e)),
    }
}

/// What the admin handlers share.
pub struct Admin {
    token: Secret,
    log: Arc<dyn Log>,
    metrics: Metrics,
}

impl Admin {
    /// Builds the admin state.
    pub fn new(token: Secret, log: Arc<dyn Log>, metrics: Metrics) -> Admin {
        Admin {
            token,
            log,
            metrics,
        }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: RawRequest<BodyStream>) -> Response {
        let result = self.dispatch(req).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.metrics
            .requests
            .with_label_values(&["/admin", outcome])
            .inc();
        result.unwrap_or_else(ApiError::into_response)
    }

    fn authorised(&self, req: &RawRequest<BodyStream>) -> bool {
        let Some(value) = req.headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        let expected = self.token.expose().as_bytes();
        given.len() == expected.len() && bool::from(given.ct_eq(expected))
    }

    async fn dispatch(&self, req: RawRequest<BodyStream>) -> Result<Response, ApiError> {
        if !req.path.starts_with("/admin/") {
            return Err(ApiError::NotFound);
        }
        if !self.authorised(&req) {
            return Err(ApiError::Unauthorized);
        }
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["admin", "status"] => {
                method(&req.method, Method::GET)?;
                Ok(http::json(StatusCode::OK, &self.status()?))
            }
            ["admin", "events"] if req.method == Method::POST => {
                let body = http::read_body(&req.headers, req.body, MAX_ADMIN_BODY).await?;
                let appended = self.append(&body).await?;
                Ok(http::json(StatusCode::CREATED, &appended))
            }
            ["admin", "events"] => {
                method(&req.method, Method::GET)
                    .map_err(|_| ApiError::MethodNotAllowed("GET, POST"))?;
                let (after, limit) = page_params(req.query.as_deref())?;
                let events = self.log.read(Seq(after), limit)?;
                let next_after = events.last().map(|e| e.seq.0).unwrap_or(after);
                Ok(http::json(
                    StatusCode::OK,
                    &EventPage {
                        events: events.iter().map(EventJson::from_event).collect(),
                        next_after,
                    },
                ))
            }
            ["admin", "events", seq] => {
                method(&req.method, Method::GET)?;
                let seq: u64 = seq.parse().map_err(|_| {
                    ApiError::BadRequest(format!("`{seq}` is not a sequence number"))
                })?;
                let ev = self.log.get(Seq(seq))?.ok_or(ApiError::NotFound)?;
                Ok(http::json(StatusCode::OK, &EventJson::from_event(&ev)))
            }
            _ => Err(ApiError::NotFound),
        }
    }

    /// The status document.
    pub fn status(&self) -> Result<Status, ApiError> {
        Ok(status_of(self.log.as_ref())?)
    }

    async fn append(&self, body: &[u8]) -> Result<Appended, ApiError> {
        let req: AppendRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid append request: {e}")))?;
        let source: Source = req
            .source
            .parse()
            .map_err(|e: crate::event::UnknownSource| ApiError::BadRequest(e.to_string()))?;
        if source.is_webhook() {
            return Err(ApiError::BadRequest(format!(
                "source `{source}` is reserved for signed webhooks; send the signed request to \
                 the webhook listener instead (or use a backfill-* source)"
            )));
        }
        if let Some(enc) = req.body_encoding.as_deref() {
            if enc != "utf8" && enc != "base64" {
                return Err(ApiError::BadRequest(format!(
                    "body_encoding `{enc}`: expected utf8 or base64"
                )));
            }
        }
        let body = api::decode_body(&req.body, req.body_encoding.as_deref())
            .map_err(|e| ApiError::BadRequest(format!("body is not valid base64: {e}")))?;
        let headers = req
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let verified = Verified::new(
            Micros::now(),
            source,
            req.route,
            headers,
            body,
            Verification::AdminToken,
        );
        let seq = self
            .log
            .append(verified)
            .await
            .map_err(ApiError::AppendFailed)?;
        Ok(Appended { seq: seq.0 })
    }
}

/// The status of a log with the cursors it stores. Used by the daemon and, with the daemon
/// stopped, by `hooklog-replay` on the data directory directly.
pub fn status_of(log: &dyn Log) -> Result<Status, crate::log::LogError> {
    let stats = log.stats()?;
    let consumers = log
        .cursors()?
        .into_iter()
        .map(|(name, cursor)| api::ConsumerStatus {
            name,
            cursor: cursor.0,
            lag: stats.last_seq.saturating_sub(cursor.0),
            state: "stored".into(),
            dead_letters: 0,
            last_error: None,
        })
        .collect();
    Ok(Status {
        log: stats,
        consumers,
    })
}

fn method(got: &Method, want: Method) -> Result<(), ApiError> {
    if *got == want {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(if want == Method::POST {
            "POST"
        } else {
            "GET"
        }))
    }
}

fn page_params(query: Option<&str>) -> Result<(u64, usize), ApiError> {
    let mut after = 0u64;
    let mut limit = DEFAULT_PAGE;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "after" => {
                after = v.parse().map_err(|_| {
                    ApiError::BadRequest(format!("after=`{v}` is not a sequence number"))
                })?
            }
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("limit=`{v}` is not a number")))?;
                if limit == 0 || limit > MAX_PAGE {
                    return Err(ApiError::BadRequest(format!(
                        "limit must be 1..={MAX_PAGE}"
                    )));
                }
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter `{other}`"))),
        }
    }
    Ok((after, limit))
}
