//! The admin API client (docs/api.md#admin-api), every request with `Authorization: Bearer <token>`.
//!
//! Reads (the [`Backend`] trait): `GET /admin/status`, `GET /admin/events?after=&limit=`,
//! `GET /admin/events/{seq}`, `GET /admin/dead-letters[?consumer=]`, `GET /admin/optouts`.
//! Changes, which only the running daemon can make (inherent methods): `POST
//! /admin/consumers/{name}/rewind|pause|resume`, `POST /admin/dead-letters/redrive`.
//!
//! Failures are told apart because each calls for a different reaction: connection refused
//! is [`Unreachable`] (the caller may fall back to the data directory, or explain that the
//! daemon is needed); 401 names where the token came from; any other status is [`Refused`],
//! with the server's JSON `message`.

use std::io::ErrorKind;
use std::time::Duration;

use anyhow::Context as _;
use hooklog::admin::api::{
    EventJson, EventPage, RedriveRequest, RewindRequest, Status, StopAnswer,
};
use hooklog::consumers::compliance::OptOutEntry;
use hooklog::consumers::{DeadLetter, RedriveReport, RewindReport};
use serde_json::Value;

use super::{Backend, Item, StatusReply, Unreachable};

/// The admin token and where it was found. `Debug` does not print the token.
#[derive(Clone)]
pub enum Token {
    /// A token, with a description of its origin for error messages.
    Found {
        /// The token.
        value: String,
        /// `--token`, `server.admin_token (from …)`, or the token file's path.
        origin: String,
    },
    /// No token could be found; requests go without one and a 401 explains this reason.
    Missing {
        /// Why: what was looked at.
        reason: String,
    },
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Found { origin, .. } => f
                .debug_struct("Found")
                .field("value", &"<redacted>")
                .field("origin", origin)
                .finish(),
            Token::Missing { reason } => f.debug_struct("Missing").field("reason", reason).finish(),
        }
    }
}

/// The admin API answered with an error status other than 401.
#[derive(Debug, thiserror::Error)]
#[error("the admin API answered {method} {path} with {code} {text}: {message}")]
pub struct Refused {
    /// `GET`, `POST`.
    pub method: &'static str,
    /// The path asked for.
    pub path: String,
    /// The HTTP status.
    pub code: u16,
    /// Its reason phrase.
    pub text: String,
    /// The server's `message`, or `(no message)`.
    pub message: String,
    /// The server's `error` kind (`bad_request`, `redeliver_unconfirmed`, …), if it gave one.
    pub kind: Option<String>,
    /// The report a refused `rewind … --redeliver` carries (`report`), if any.
    pub report: Option<Value>,
}

/// The [`Refused`] error in `e`'s chain, if any.
pub fn refused_by_daemon(e: &anyhow::Error) -> Option<&Refused> {
    e.chain().find_map(|c| c.downcast_ref::<Refused>())
}

/// Connecting to a loopback listener is immediate; a slow connect means a firewall or a
/// wrong address, which waiting longer will not fix.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A page of events is read from sled in milliseconds; this only bounds a hung daemon.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one daemon's admin API.
pub struct Api {
    base: String,
    base_origin: String,
    token: Token,
    agent: ureq::Agent,
}

impl Api {
    /// A client for `base` (e.g. `http://127.0.0.1:18800`); `base_origin` says where the URL
    /// came from, for messages.
    pub fn new(base: &str, base_origin: &str, token: Token) -> Api {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(READ_TIMEOUT)
            .user_agent(concat!("hooklog-replay/", env!("CARGO_PKG_VERSION")))
            .build();
        Api {
            base: base.to_owned(),
            base_origin: base_origin.to_owned(),
            token,
            agent,
        }
    }

    /// `GET path`; `Ok(None)` for a 404 when `missing_ok`.
    fn call(&self, path: &str, missing_ok: bool) -> anyhow::Result<Option<ureq::Response>> {
        self.send("GET", path, None, missing_ok)
    }

    /// `POST path` with a JSON body; the answer as JSON.
    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .send("POST", path, Some(body), false)?
            .with_context(|| format!("the admin API has no {path}"))?;
        resp.into_json()
            .with_context(|| format!("cannot decode the answer to POST {path}"))
    }

    /// `GET path`; the answer as JSON.
    fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .call(path, false)?
            .with_context(|| format!("the admin API has no {path}"))?;
        // `into_json` reads without ureq's 10 MB cap on `into_string`.
        resp.into_json()
            .with_context(|| format!("cannot decode the answer to GET {path}"))
    }

    /// One request; `Ok(None)` for a 404 when `missing_ok`.
    fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
        missing_ok: bool,
    ) -> anyhow::Result<Option<ureq::Response>> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.request(method, &url);
        if let Token::Found { value, .. } = &self.token {
            req = req.set("Authorization", &format!("Bearer {value}"));
        }
        let result = match body {
            Some(body) => req.send_json(body),
            None => req.call(),
        };
        match result {
            Ok(resp) => Ok(Some(resp)),
            Err(ureq::Error::Status(404, _)) if missing_ok => Ok(None),
            Err(ureq::Error::Status(401, _)) => Err(self.unauthorised()),
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.status_text().to_owned();
                let body: Option<Value> = resp
                    .into_string()
                    .ok()
                    .and_then(|body| serde_json::from_str(&body).ok());
                let field = |name: &str| {
                    body.as_ref()
                        .and_then(|b| b.get(name))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                Err(Refused {
                    method,
                    path: path.to_owned(),
                    code,
                    text,
                    message: field("message").unwrap_or_else(|| "(no message)".to_owned()),
                    kind: field("error"),
                    report: body.as_ref().and_then(|b| b.get("report")).cloned(),
                }
                .into())
            }
            Err(ureq::Error::Transport(t)) if refused(&t) => Err(Unreachable {
                url: self.base.clone(),
                detail: t.to_string(),
            }
            .into()),
            Err(ureq::Error::Transport(t)) => Err(anyhow::anyhow!(
                "cannot reach the admin API at {} (from {}): {t}",
                self.base,
                self.base_origin
            )),
        }
    }

    /// `POST /admin/consumers/{name}/rewind`: the report, and the answer as one line of JSON.
    pub fn rewind(&self, name: &str, req: &RewindRequest) -> anyhow::Result<Item<RewindReport>> {
        let path = format!("/admin/consumers/{}/rewind", path_segment(name));
        let answer = self.post(&path, &serde_json::to_value(req)?)?;
        Item::from_json(answer)
            .with_context(|| format!("the answer to POST {path} is not a rewind report"))
    }

    /// `POST /admin/dead-letters/redrive`: one report per consumer, and the whole answer as
    /// one line of JSON.
    pub fn redrive(&self, req: &RedriveRequest) -> anyhow::Result<Item<Vec<RedriveReport>>> {
        let path = "/admin/dead-letters/redrive";
        let answer = self.post(path, &serde_json::to_value(req)?)?;
        let json = answer.to_string();
        let reports = answer
            .get("redriven")
            .cloned()
            .map(serde_json::from_value)
            .transpose()?
            .with_context(|| format!("the answer to POST {path} has no `redriven` list"))?;
        Ok(Item {
            value: reports,
            json,
        })
    }

    /// `POST /admin/consumers/{name}/pause` or `…/resume`.
    pub fn set_paused(
        &self,
        name: &str,
        paused: bool,
        reason: Option<&str>,
    ) -> anyhow::Result<Item<StopAnswer>> {
        let action = if paused { "pause" } else { "resume" };
        let path = format!("/admin/consumers/{}/{action}", path_segment(name));
        self.stop(&path, &serde_json::json!({ "reason": reason }))
    }

    /// `POST /admin/kill-switch`.
    pub fn kill_switch(&self, on: bool, reason: Option<&str>) -> anyhow::Result<Item<StopAnswer>> {
        self.stop(
            "/admin/kill-switch",
            &serde_json::json!({ "on": on, "reason": reason }),
        )
    }

    fn stop(&self, path: &str, body: &Value) -> anyhow::Result<Item<StopAnswer>> {
        let answer = self.post(path, body)?;
        Ok(Item {
            json: answer.to_string(),
            value: serde_json::from_value(answer)
                .with_context(|| format!("cannot decode the answer to POST {path}"))?,
        })
    }

    fn unauthorised(&self) -> anyhow::Error {
        match &self.token {
            Token::Found { origin, .. } => anyhow::anyhow!(
                "the admin API at {} refused the token from {origin} (401 Unauthorized): it is \
                 not the daemon's token; check the daemon's server.admin_token or \
                 <data_dir>/admin.token, or pass --token",
                self.base
            ),
            Token::Missing { reason } => anyhow::anyhow!(
                "the admin API at {} needs a token (401 Unauthorized) and none was found: \
                 {reason}",
                self.base
            ),
        }
    }
}

/// The `message` of the admin API's error body `{"error": …, "message": …}`.
/// `key`'s list in a JSON answer, each entry decoded.
fn list_of<T: serde::de::DeserializeOwned>(
    mut answer: Value,
    key: &str,
    path: &str,
) -> anyhow::Result<Vec<Item<T>>> {
    let Some(Value::Array(entries)) = answer.get_mut(key).map(Value::take) else {
        anyhow::bail!("the answer to GET {path} has no `{key}` list");
    };
    entries
        .into_iter()
        .map(|v| {
            Item::from_json(v)
                .with_context(|| format!("an entry of `{key}` in the answer to GET {path}"))
        })
        .collect()
}

/// A consumer name as one path segment: anything but unreserved characters percent-encoded
/// (the daemon matches names as they are; a real name never needs encoding).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Connection refused: nothing listens at the address.
fn refused(t: &ureq::Transport) -> bool {
    let mut source = std::error::Error::source(t);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == ErrorKind::ConnectionRefused;
        }
        source = e.source();
    }
    false
}

impl Backend for Api {
    fn describe(&self) -> String {
        format!("the admin API at {}", self.base)
    }

    fn is_direct(&self) -> bool {
        false
    }

    fn status(&mut self) -> anyhow::Result<StatusReply> {
        let resp = self
            .call("/admin/status", false)?
            .context("the admin API has no status")?;
        let body = resp
            .into_string()
            .context("cannot read the status from the admin API")?;
        let status: Status = serde_json::from_str(&body)
            .context("the admin API's status is not the expected JSON")?;
        // The daemon answers one line already; re-encode only if that ever changes.
        let json = if body.trim().contains('\n') {
            let v: serde_json::Value = serde_json::from_str(&body)?;
            v.to_string()
        } else {
            body.trim().to_owned()
        };
        Ok(StatusReply { status, json })
    }

    fn read(&mut self, after: u64, limit: usize) -> anyhow::Result<Vec<EventJson>> {
        let path = format!("/admin/events?after={after}&limit={limit}");
        let resp = self
            .call(&path, false)?
            .context("the admin API has no events")?;
        // `into_json` reads without ureq's 10 MB cap on `into_string`: a page of large
        // bodies may exceed it.
        let page: EventPage = resp
            .into_json()
            .with_context(|| format!("cannot decode the answer to GET {path}"))?;
        Ok(page.events)
    }

    fn get(&mut self, seq: u64) -> anyhow::Result<Option<EventJson>> {
        let path = format!("/admin/events/{seq}");
        match self.call(&path, true)? {
            None => Ok(None),
            Some(resp) => {
                Ok(Some(resp.into_json().with_context(|| {
                    format!("cannot decode the answer to GET {path}")
                })?))
            }
        }
    }

    fn dead_letters(&mut self, consumer: Option<&str>) -> anyhow::Result<Vec<Item<DeadLetter>>> {
        let path = match consumer {
            Some(name) => format!(
                "/admin/dead-letters?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("consumer", name)
                    .finish()
            ),
            None => "/admin/dead-letters".to_owned(),
        };
        list_of(self.get_json(&path)?, "dead_letters", &path)
    }

    fn optouts(&mut self) -> anyhow::Result<Vec<Item<OptOutEntry>>> {
        let path = "/admin/optouts";
        list_of(self.get_json(path)?, "optouts", path)
    }

    fn release(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_name_stays_one_path_segment() {
        assert_eq!(path_segment("dedup"), "dedup");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
