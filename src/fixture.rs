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

use crate::signature::{quo_legacy, standard_webhooks, HmacKey, KeyError};

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
                        quo_legacy::sign(&key, &ts, &body),
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
        tamper(&mut body, self.tamper.as_deref())?;
        Ok(Prepared {
            method: self.method.clone(),
            path: self.path.clone(),
            headers: headers.into_iter().collect(),
            body,
        })
    }
}

/// The configured secrets a fixture is signed with by [`Fixture::request_configured`]
/// (`hooklog-replay fire`): the first of each list, as the daemon would accept it.
#[derive(Clone, Default)]
pub struct SigningConfig {
    /// `[openphone] signing_keys`, first entry (bare base64 or `whsec_…`).
    pub quo_key: Option<String>,
    /// `[twilio] auth_tokens`, first entry.
    pub twilio_token: Option<String>,
    /// The public base URL Twilio signs against (one of `server.public_urls`).
    pub twilio_base_url: Option<String>,
    /// `[salesmsg] secrets`, first entry.
    pub salesmsg_secret: Option<String>,
}

impl std::fmt::Debug for SigningConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningConfig")
            .field("twilio_base_url", &self.twilio_base_url)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// The request signed at `now_unix_secs` with the *configured* secrets instead of the
    /// fixture's own (a deployment smoke test: does this deployment accept what its own keys
    /// sign?). Quo schemes are re-signed with `quo_key` (plus the fixture's
    /// `timestamp_offset_secs`), Twilio with `twilio_token` over `twilio_base_url` + path,
    /// SalesMsg gets `?secret=` replaced by `salesmsg_secret`. A fixture that asks for
    /// tampering is tampered with after signing, as in the tests.
    pub fn request_configured(
        &self,
        keys: &SigningConfig,
        now_unix_secs: i64,
    ) -> Result<Prepared, FixtureError> {
        let missing = |what: &str| FixtureError::Unsupported(format!("{what} is not configured"));
        let mut fixture = self.clone();
        fixture.tamper = None;
        let mut req = match self.signing.scheme.as_str() {
            "openphone-legacy" | "standard-webhooks" => {
                fixture.signing.key = keys
                    .quo_key
                    .clone()
                    .ok_or_else(|| missing("[openphone] signing_keys"))?;
                fixture.resign = true;
                fixture.request_at(now_unix_secs)?
            }
            "twilio" => {
                let token = keys
                    .twilio_token
                    .as_deref()
                    .ok_or_else(|| missing("[twilio] auth_tokens"))?;
                let base = keys
                    .twilio_base_url
                    .as_deref()
                    .ok_or_else(|| missing("server.public_urls"))?;
                let mut req = fixture.request_at(now_unix_secs)?;
                let url = format!("{}{}", base.trim_end_matches('/'), req.path);
                let content_type = req
                    .headers
                    .iter()
                    .find(|(k, _)| k == "content-type")
                    .map(|(_, v)| v.clone());
                let sig = crate::signature::twilio::sign(
                    &HmacKey::from_utf8(token),
                    &url,
                    content_type.as_deref(),
                    &req.body,
                );
                req.headers.retain(|(k, _)| k != "x-twilio-signature");
                req.headers.push(("x-twilio-signature".into(), sig));
                req
            }
            "salesmsg" => {
                let secret = keys
                    .salesmsg_secret
                    .as_deref()
                    .ok_or_else(|| missing("[salesmsg] secrets"))?;
                let mut req = fixture.request_at(now_unix_secs)?;
                req.path = with_secret(&req.path, secret);
                req
            }
            other => {
                return Err(FixtureError::Unsupported(format!(
                    "unknown signing scheme `{other}`"
                )))
            }
        };
        tamper(&mut req.body, self.tamper.as_deref())?;
        Ok(req)
    }
}

/// Alters a signed body as the fixture asks (`tamper: "body"`: its last byte changes).
fn tamper(body: &mut [u8], how: Option<&str>) -> Result<(), FixtureError> {
    match how {
        None => Ok(()),
        Some("body") => {
            if let Some(last) = body.last_mut() {
                *last = if *last == b'}' { b']' } else { b'}' };
            }
            Ok(())
        }
        Some(other) => Err(FixtureError::Unsupported(format!("tamper `{other}`"))),
    }
}

/// `path` with its `secret` query parameter set to `secret` (added if absent).
fn with_secret(path: &str, secret: &str) -> String {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut set = false;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "secret" {
            if !set {
                out.append_pair("secret", secret);
                set = true;
            }
        } else {
            out.append_pair(&k, &v);
        }
    }
    if !set {
        out.append_pair("secret", secret);
    }
    format!("{route}?{}", out.finish())
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

#[cfg(test)]
mod configured_tests {
    use super::*;

    fn fixture(rel: &str) -> Fixture {
        Fixture::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(rel),
        )
        .unwrap()
    }

    #[test]
    fn the_salesmsg_secret_is_replaced_in_place_or_added() {
        assert_eq!(
            with_secret("/s?a=1&secret=x&b=2", "new"),
            "/s?a=1&secret=new&b=2"
        );
        assert_eq!(with_secret("/s", "n w"), "/s?secret=n+w");
    }

    #[test]
    fn a_configured_twilio_token_signs_over_the_configured_public_url() {
        let f = fixture("twilio/sms_inbound.json");
        let keys = SigningConfig {
            twilio_token: Some("0123456789abcdef0123456789abcdef".into()),
            twilio_base_url: Some("https://other.example.org".into()),
            ..SigningConfig::default()
        };
        let req = f.request_configured(&keys, 0).unwrap();
        let sig = req
            .headers
            .iter()
            .find(|(k, _)| k == "x-twilio-signature")
            .unwrap();
        assert_ne!(Some(&sig.1), f.headers.get("x-twilio-signature"));
        let verify = |tokens: &[&str], base: &str| {
            let tokens: Vec<HmacKey> = tokens.iter().map(|t| HmacKey::from_utf8(t)).collect();
            crate::signature::twilio::verify(
                &crate::signature::twilio::TwilioRequest {
                    path_and_query: &req.path,
                    content_type: f.headers.get("content-type").map(String::as_str),
                    body: &req.body,
                    signature: &sig.1,
                },
                &tokens,
                &[base.to_owned()],
            )
        };
        assert_eq!(
            verify(
                &["0123456789abcdef0123456789abcdef"],
                "https://other.example.org"
            ),
            Ok((0, 0))
        );
        assert!(verify(
            &["1ad9454bf158ce5e00b723d06dbb2e93"],
            "https://other.example.org"
        )
        .is_err());
        assert!(verify(
            &["0123456789abcdef0123456789abcdef"],
            "https://hooks.example.com"
        )
        .is_err());
        assert!(f.request_configured(&SigningConfig::default(), 0).is_err());
    }
}
