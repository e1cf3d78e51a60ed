//! The admin API client (DESIGN §6): `GET /admin/status`, `GET /admin/events?after=&limit=`,
//! `GET /admin/events/{seq}`, each with `Authorization: Bearer <token>`.
//!
//! Failures are told apart because each calls for a different reaction: connection refused
//! is [`Unreachable`] (the caller may fall back to the data directory); 401 names where the
//! token came from; any other status shows the server's JSON `message`.

use std::io::ErrorKind;
use std::time::Duration;

use anyhow::Context as _;
use hooklog::admin::api::{EventJson, EventPage, Status};

use super::{Backend, StatusReply, Unreachable};
use crate::context::Token;

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
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        if let Token::Found { value, .. } = &self.token {
            req = req.set("Authorization", &format!("Bearer {value}"));
        }
        match req.call() {
            Ok(resp) => Ok(Some(resp)),
            Err(ureq::Error::Status(404, _)) if missing_ok => Ok(None),
            Err(ureq::Error::Status(401, _)) => Err(self.unauthorised()),
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.status_text().to_owned();
                let message = resp
                    .into_string()
                    .ok()
                    .and_then(|body| server_message(&body))
                    .unwrap_or_else(|| "(no message)".to_owned());
                Err(anyhow::anyhow!(
                    "the admin API answered GET {path} with {code} {text}: {message}"
                ))
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
fn server_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("message")?.as_str().map(str::to_owned)
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

    fn release(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
