//! Fixture files: real-shaped, signed webhook requests with their expected verdict
//! (`fixtures/<provider>/<name>.json`, described in `fixtures/README.md`).
//!
//! Tests send every fixture to a real server; operators use the same files as smoke tests.
//! Quo signatures carry a timestamp checked against a ±300 s window, so those fixtures are
//! re-signed at send time with [`Fixture::request_at`]; Twilio and SalesMsg fixtures are sent
//! byte for byte as stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::edge::verify::{openphone_legacy, standard_webhooks, HmacKey, KeyError};

/// Why a fixture cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a fixture.
    #[error("{path}: not a fixture: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The fixture's signing key does not decode.
    #[error("signing key: {0}")]
    Key(#[from] KeyError),
    /// The fixture asks for something this loader does not know.
    #[error("{0}")]
    Unsupported(String),
}

/// One fixture file.
#[derive(Clone, Debug, Deserialize)]
pub struct Fixture {
    /// What the request is and why it is here.
    pub description: String,
    /// `openphone`, `twilio` or `salesmsg`.
    pub provider: String,
    /// HTTP method.
    pub method: String,
    /// Path and query exactly as sent.
    pub path: String,
    /// Header names (lower case) and values as sent.
    pub headers: BTreeMap<String, String>,
    /// The raw body.
    pub body: String,
    /// How the request was signed.
    pub signing: Signing,
    /// Re-sign at send time (schemes with a timestamp window).
    #[serde(default)]
    pub resign: bool,
    /// Seconds added to the current time when re-signing (negative: stale).
    #[serde(default)]
    pub timestamp_offset_secs: i64,
    /// `body`: alter the body after signing.
    #[serde(default)]
    pub tamper: Option<String>,
    /// The expected answer.
    pub expect: Expect,
}

/// How a fixture was signed.
#[derive(Clone, Debug, Deserialize)]
pub struct Signing {
    /// `openphone-legacy`, `standard-webhooks`, `twilio` or `salesmsg`.
    pub scheme: String,
    /// The secret, as it would be configured.
    pub key: String,
    /// The signed timestamp (Quo schemes).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// `webhook-id` (Standard Webhooks).
    #[serde(default)]
    pub webhook_id: Option<String>,
    /// The public base URL Twilio signed.
    #[serde(default)]
    pub public_url: Option<String>,
}

/// The expected verdict.
#[derive(Clone, Debug, Deserialize)]
pub struct Expect {
    /// HTTP status.
    pub status: u16,
    /// Whether the request must land in the log.
    pub logged: bool,
    /// Expected `Content-Type` of a success.
    #[serde(default)]
    pub content_type: Option<String>,
    /// A substring of the expected body.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The source the record must have.
    #[serde(default)]
    pub source: Option<String>,
}

/// A request ready to send.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Fixture {
    /// Reads one fixture.
    pub fn load(path: &Path) -> Result<Fixture, FixtureError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| FixtureError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Every `*.json` fixture under `dir` (recursively), sorted by path.
    pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Fixture)>, FixtureError> {
        let mut paths = Vec::new();
        collect_json(dir, &mut paths).map_err(|source| FixtureError::Read {
            path: dir.to_owned(),
            source,
        })?;
        paths.sort();
        paths
            .into_iter()
            .map(|p| Fixture::load(&p).map(|f| (p, f)))
            .collect()
    }

    /// The request to send at `now_unix_secs`: re-signed if the fixture asks for it, then
    /// tampered with if it asks for that.
    pub fn request_at(&self, now_unix_secs: i64) -> Result<Prepared, FixtureError> {
        let mut headers = self.headers.clone();
        let mut body = self.body.clone().into_bytes();
        if self.resign {
            let at = now_unix_secs + self.timestamp_offset_secs;
            let key = HmacKey::from_quo_secret(&self.signing.key)?;
            match self.signing.scheme.as_str() {
                "openphone-legacy" => {
                    let millis = self
                        .signing
                        .timestamp
                        .as_deref()
                        .is_none_or(|t| t.len() >= 12);
                    let ts = if millis {
                        (at * 1000).to_string()
                    } else {
                        at.to_string()
                    };
                    headers.insert(
                        "openphone-signature".into(),
                        openphone_legacy::sign(&key, &ts, &body),
                    );
                }
                "standard-webhooks" => {
                    let id = self.signing.webhook_id.clone().ok_or_else(|| {
                        FixtureError::Unsupported(
                            "standard-webhooks fixture without webhook_id".into(),
                        )
                    })?;
                    let ts = at.to_string();
                    headers.insert(
                        "webhook-signature".into(),
                        standard_webhooks::sign(&key, &id, &ts, &body),
                    );
                    headers.insert("webhook-id".into(), id);
                    headers.insert("webhook-timestamp".into(), ts);
                }
                other => {
                    return Err(FixtureError::Unsupported(format!(
                        "cannot re-sign scheme `{other}` (it has no timestamp)"
                    )))
                }
            }
        }
        match self.tamper.as_deref() {
            None => {}
            Some("body") => {
                if let Some(last) = body.last_mut() {
                    *last = if *last == b'}' { b']' } else { b'}' };
                }
            }
            Some(other) => return Err(FixtureError::Unsupported(format!("tamper `{other}`"))),
        }
        Ok(Prepared {
            method: self.method.clone(),
            path: self.path.clone(),
            headers: headers.into_iter().collect(),
            body,
        })
    }
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}
