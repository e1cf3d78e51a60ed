//! The admin API (docs/api.md#admin-api): a separate, loopback-only listener, every request authorised by
//! `Authorization: Bearer <token>`.
//!
//! The operator token is `[server] admin_token`, or generated at first start into
//! `<data_dir>/admin.token` (mode 0600), where `hooklog-replay` reads it; it reaches every
//! route. Agents hold tokens of their own (`[server.agent_tokens]`), which reach only the
//! outbound API: [`routes`] lists every route with its role, and the router serves only what
//! that list holds. sled allows one process per database, so while the daemon runs this API is
//! how tools read and append.
//!
//! Invariants: `POST /admin/events` appends only operator-held sources (backfill): webhook
//! sources come through the signed edge, and `outbound` and `internal` records are the
//! daemon's own ([`crate::provenance`]); the records this API appends carry the caller's
//! verification (the operator's or an agent's token), never the daemon's.

pub mod api;
pub mod outbound;
pub mod routes;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;
use warp::http::{header, StatusCode};
use warp::reply::Response;

use crate::config::secret::Secret;
use crate::config::Config;
use crate::consumers::controls::{self, ControlAction, ControlRecord, Controls};
use crate::consumers::{self, compliance, Registry};
use crate::error::ApiError;
use crate::event::{Micros, Seq, Source, Verification, Verified};
use crate::http::{self, BodyStream, RawRequest};
use crate::live::Live;
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
/// How long a stop's route waits for the `controls` projection to apply its record.
const STOP_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// An agent token is the operator token.
    #[error(transparent)]
    Shared(#[from] routes::SharedToken),
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

/// Re-reads the configuration and applies it to the running daemon: what
/// `POST /admin/reload` calls (`crate::reload` implements it, and SIGHUP calls the same).
pub trait Reload: Send + Sync {
    /// Applies the configuration as the sources say now, or refuses all of it: the error
    /// says why (file, line, key; never a value).
    fn reload(&self) -> Result<api::Reloaded, String>;
}

/// The admin API's settings a reload replaces: each is swapped whole, so a request sees the
/// old tokens or the new ones, never a mix.
#[derive(Clone)]
pub struct LiveSettings {
    /// The operator and agent tokens.
    pub tokens: Live<routes::Tokens>,
    /// The ids of `[[lines]]` (what an unblock may name).
    pub lines: Live<Vec<String>>,
    /// `[compliance] kill_switch`.
    pub kill_switch: Live<bool>,
}

impl LiveSettings {
    /// Puts a reloaded configuration's tokens, lines and kill switch in force.
    pub fn set(
        &self,
        tokens: routes::Tokens,
        lines: &[crate::gates::LineConfig],
        kill_switch: bool,
    ) {
        self.tokens.set(tokens);
        self.lines.set(outbound::line_ids(lines));
        self.kill_switch.set(kill_switch);
    }
}

/// What the admin handlers share.
pub struct Admin {
    tokens: Live<routes::Tokens>,
    log: Arc<dyn Log>,
    metrics: Metrics,
    registry: Arc<Registry>,
    outbound: outbound::OutboundApi,
    controls: Controls,
    /// `[compliance] kill_switch`: on whatever the records say.
    kill_switch_in_config: Live<bool>,
    /// What `POST /admin/reload` calls; without one the route answers 422.
    reloader: Option<Arc<dyn Reload>>,
}

impl Admin {
    /// Builds the admin state; `lines` are the configured `[[lines]]`, `kill_switch` is
    /// `[compliance] kill_switch`.
    pub fn new(
        tokens: routes::Tokens,
        log: Arc<dyn Log>,
        metrics: Metrics,
        registry: Arc<Registry>,
        lines: &[crate::gates::LineConfig],
        kill_switch: bool,
    ) -> Result<Admin, crate::state::StateError> {
        Ok(Admin {
            outbound: outbound::OutboundApi::new(log.as_ref(), lines)?,
            controls: Controls::open(log.clone())?,
            kill_switch_in_config: Live::new(kill_switch),
            tokens: Live::new(tokens),
            log,
            metrics,
            registry,
            reloader: None,
        })
    }

    /// The cells a reload replaces the tokens, lines and kill switch in.
    pub fn live_settings(&self) -> LiveSettings {
        LiveSettings {
            tokens: self.tokens.clone(),
            lines: self.outbound.lines(),
            kill_switch: self.kill_switch_in_config.clone(),
        }
    }

    /// Serves `POST /admin/reload` with `reloader`.
    pub fn with_reloader(mut self, reloader: Arc<dyn Reload>) -> Admin {
        self.reloader = Some(reloader);
        self
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: RawRequest<BodyStream>) -> Response {
        let result = self.route(req).await;
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

    async fn route(&self, req: RawRequest<BodyStream>) -> Result<Response, ApiError> {
        use routes::{Found, Route};
        if !req.path.starts_with("/admin/")
            && !req.path.starts_with("/v1/")
            && req.path != "/metrics"
        {
            return Err(ApiError::NotFound);
        }
        let caller = self
            .tokens
            .get()
            .authenticate(req.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
            .ok_or(ApiError::Unauthorized)?;
        let forbidden = |caller: &routes::Caller| match caller {
            routes::Caller::Agent(name) => ApiError::Forbidden {
                agent: name.clone(),
                allowed: Route::for_agents(),
            },
            // The operator may call every route.
            routes::Caller::Operator => ApiError::NotFound,
        };
        let path = req.path.clone();
        let (route, params) = match routes::find(&req.method, &path) {
            Found::Route(route, params) => (route, params),
            Found::OtherMethod(same_path) => {
                if !same_path.iter().any(|r| caller.may_call(*r)) {
                    return Err(forbidden(&caller));
                }
                return Err(ApiError::MethodNotAllowed(routes::allow(&same_path)));
            }
            Found::Nothing => return Err(ApiError::NotFound),
        };
        if !caller.may_call(route) {
            return Err(forbidden(&caller));
        }
        if route.needs_consumers() {
            self.require_leader()?;
        }
        // The `{…}` segments, in the order of the route's pattern.
        let param = |i: usize| params.get(i).copied().unwrap_or_default();
        match route {
            Route::SendMessage => {
                let header_key = req
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = http::read_body(&req.headers, req.body, MAX_ADMIN_BODY).await?;
                let accepted = self
                    .outbound
                    .post(self.log.as_ref(), &caller, &body, header_key)
                    .await?;
                Ok(http::json(StatusCode::ACCEPTED, &accepted))
            }
            Route::GetMessage => {
                let view = self.outbound.get(self.log.as_ref(), param(0))?;
                Ok(http::json(StatusCode::OK, &view))
            }
            Route::UnblockLine => {
                let body = http::read_body(&req.headers, req.body, MAX_ADMIN_BODY).await?;
                let note: api::LineNote = parse_json_or_empty(&body)?;
                let seq = self
                    .outbound
                    .unblock(self.log.as_ref(), param(0), note.reason)
                    .await?;
                Ok(http::json(StatusCode::ACCEPTED, &Appended { seq }))
            }
            Route::Status => Ok(http::json(StatusCode::OK, &self.status()?)),
            Route::Metrics => Ok(http::reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            )),
            Route::SetKillSwitch => {
                let body = http::read_body(&req.headers, req.body, MAX_ADMIN_BODY).await?;
                let ask: api::KillSwitchRequest = serde_json::from_slice(&body).map_err(|e| {
                    ApiError::BadRequest(format!(
                        "invalid kill-switch request (expected {{\"on\": true|false, \"reason\": \"…\"}}): {e}"
                    ))
                })?;
                let reason = ask
                    .reason
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty());
                if ask.on && reason.is_none() {
                    return Err(ApiError::BadRequest(
                        "a reason is required to turn the kill switch on: it is shown in \
                         status and in the alert, for whoever turns it off"
                            .into(),
                    ));
                }
                let answer = self
                    .stop(ControlAction::KillSwitch { on: ask.on }, reason)
                    .await?;
                let code = if answer.applied {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                };
                Ok(http::json(code, &answer))
            }
            Route::KillSwitch => Ok(http::json(StatusCode::OK, &self.kill_switch()?)),
            Route::Reload => {
                let Some(reloader) = self.reloader.clone() else {
                    return Err(ApiError::ReloadRefused(
                        "this daemon was started without a configuration source to read again"
                            .into(),
                    ));
                };
                // Reading files and decoding keys blocks; off the async threads.
                let answer = tokio::task::spawn_blocking(move || reloader.reload())
                    .await
                    .map_err(|e| ApiError::ReloadRefused(format!("the reload task failed: {e}")))?
                    .map_err(ApiError::ReloadRefused)?;
                Ok(http::json(StatusCode::OK, &answer))
            }
            Route::AppendEvent => {
                let body = http::read_body(&req.headers, req.body, MAX_ADMIN_BODY).await?;
                let appended = self.append(&body).await?;
                Ok(http::json(StatusCode::CREATED, &appended))
            }
            Route::ListEvents => {
                let (after, limit) = page_params(req.query.as_deref())?;
                let events = self.log.read(Seq(after), limit)?;
                let next_after = events.last().map(|e| e.seq.0).unwrap_or(after);
                let events = events
                    .iter()
                    .map(|e| self.event_json(e))
                    .collect::<Result<_, _>>()?;
                Ok(http::json(
                    StatusCode::OK,
                    &EventPage { events, next_after },
                ))
            }
            Route::GetEvent => {
                let seq = param(0);
                let seq: u64 = seq.parse().map_err(|_| {
                    ApiError::BadRequest(format!("`{seq}` is not a sequence number"))
                })?;
                let ev = self.log.get(Seq(seq))?.ok_or(ApiError::NotFound)?;
                Ok(http::json(StatusCode::OK, &self.event_json(&ev)?))
            }
            Route::Rewind | Route::Pause | Route::Resume => {
                let body = http::read_body(&req.headers, req.body, MAX_ADMIN_BODY).await?;
                let action = match route {
                    Route::Rewind => "rewind",
                    Route::Pause => "pause",
                    _ => "resume",
                };
                self.consumer_action(param(0), action, &body).await
            }
            Route::DeadLetters => {
                let only = query_param(req.query.as_deref(), "consumer");
                let mut all = Vec::new();
                for name in self.registry.names() {
                    if only.as_deref().is_none_or(|o| o == name) {
                        all.extend(consumers::dead_letters(self.log.state().as_ref(), &name)?);
                    }
                }
                Ok(http::json(
                    StatusCode::OK,
                    &serde_json::json!({ "dead_letters": all }),
                ))
            }
            Route::Redrive => {
                let body = http::read_body(&req.headers, req.body, MAX_ADMIN_BODY).await?;
                let req: api::RedriveRequest = parse_json_or_empty(&body)?;
                let names = match &req.consumer {
                    Some(c) => vec![c.clone()],
                    None => self.registry.names(),
                };
                let mut reports = Vec::new();
                for name in names {
                    reports.push(
                        self.registry
                            .redrive(&name, req.seq.map(Seq))
                            .await
                            .map_err(control_err)?,
                    );
                }
                Ok(http::json(
                    StatusCode::OK,
                    &serde_json::json!({ "redriven": reports }),
                ))
            }
            Route::AddOptOut => {
                let body = http::read_body(&req.headers, req.body, MAX_ADMIN_BODY).await?;
                let add: api::OptOutRequest = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("invalid opt-out: {e}")))?;
                let seq = self.optout_change("add", &add.number, add.reason).await?;
                Ok(http::json(StatusCode::ACCEPTED, &Appended { seq }))
            }
            Route::ListOptOuts => {
                let list = compliance::list(self.log.state().as_ref())?;
                Ok(http::json(
                    StatusCode::OK,
                    &serde_json::json!({ "optouts": list }),
                ))
            }
            Route::RemoveOptOut => {
                let number = param(0);
                // A path segment: `%XX` is decoded but `+` is a plus sign, not a space.
                let number =
                    form_urlencoded::parse(format!("n={}", number.replace('+', "%2B")).as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                let seq = self.optout_change("remove", &number, None).await?;
                Ok(http::json(StatusCode::ACCEPTED, &Appended { seq }))
            }
        }
    }

    /// A standby's consumer state is not kept up to date (its consumers do not run), so the
    /// routes that read or change it are refused rather than answered from stale state.
    fn require_leader(&self) -> Result<(), ApiError> {
        match &*self.log.leadership().borrow() {
            crate::log::Leadership::Leader => Ok(()),
            crate::log::Leadership::Standby { holder } => Err(ApiError::NotLeader(
                holder
                    .as_deref()
                    .map_or("not known yet".to_owned(), |h| format!("replica {h}")),
            )),
        }
    }

    async fn consumer_action(
        &self,
        name: &str,
        action: &str,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        match action {
            "rewind" => {
                let req: api::RewindRequest = serde_json::from_slice(body)
                    .map_err(|e| ApiError::BadRequest(format!("invalid rewind request: {e}")))?;
                let to = match (req.to_seq, req.since.as_deref()) {
                    (Some(n), None) => Seq(n),
                    (None, Some(since)) => {
                        let at = chrono::DateTime::parse_from_rfc3339(since).map_err(|e| {
                            ApiError::BadRequest(format!("since=`{since}` is not RFC 3339: {e}"))
                        })?;
                        let seq = self
                            .log
                            .seq_at_or_after(crate::event::Micros(at.timestamp_micros()))?;
                        Seq(seq.0.saturating_sub(1))
                    }
                    _ => {
                        return Err(ApiError::BadRequest(
                            "give exactly one of `to_seq` and `since`".into(),
                        ))
                    }
                };
                if !req.redeliver && (req.confirm || req.max_redeliver.is_some()) {
                    return Err(ApiError::BadRequest(
                        "`confirm` and `max_redeliver` apply to a rewind with `\"redeliver\": true` only"
                            .into(),
                    ));
                }
                let redeliver = req.redeliver.then_some(consumers::Redeliver {
                    confirm: req.confirm,
                    max: req.max_redeliver,
                });
                let report = self
                    .registry
                    .rewind_with(name, to, req.dry_run, redeliver)
                    .await
                    .map_err(control_err)?;
                Ok(http::json(StatusCode::OK, &report))
            }
            "pause" | "resume" => {
                if name == controls::NAME {
                    return Err(ApiError::BadRequest(format!(
                        "`{name}` cannot be paused or resumed: it projects the kill switch and the pauses from the log, and a pause of it would freeze every stop (the sender waits for it before every call)"
                    )));
                }
                let known = self.registry.names().iter().any(|n| n == name)
                    || self.log.cursors()?.iter().any(|(n, _)| n == name);
                if !known {
                    return Err(ApiError::BadRequest(format!(
                        "no consumer named `{name}` (running: {})",
                        self.registry.names().join(", ")
                    )));
                }
                let ask: api::PauseRequest = parse_json_or_empty(body)?;
                let reason = ask
                    .reason
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty());
                let consumer = (*name).to_owned();
                let what = if action == "pause" {
                    ControlAction::Pause { consumer }
                } else {
                    ControlAction::Resume { consumer }
                };
                let answer = self.stop(what, reason).await?;
                Ok(http::json(StatusCode::OK, &answer))
            }
            _ => Err(ApiError::NotFound),
        }
    }

    /// Appends an operator's stop as a control record (source `internal`, admin token: the
    /// only writer the `controls` consumer obeys), then, on the replica that runs the
    /// consumers, waits (bounded) until the projection has applied it, so that when the
    /// answer says `applied` the stop is in force for every later send.
    async fn stop(
        &self,
        action: ControlAction,
        reason: Option<String>,
    ) -> Result<api::StopAnswer, ApiError> {
        let (label, consumer) = match &action {
            ControlAction::KillSwitch { on: true } => ("kill_switch_on", None),
            ControlAction::KillSwitch { on: false } => ("kill_switch_off", None),
            ControlAction::Pause { consumer } => ("pause", Some(consumer.clone())),
            ControlAction::Resume { consumer } => ("resume", Some(consumer.clone())),
        };
        let now = Micros::now();
        let record = ControlRecord {
            action,
            reason,
            at: now.to_rfc3339(),
            by: controls::OPERATOR.to_owned(),
        };
        let seq = self
            .log
            .append(record.to_verified(now))
            .await
            .map_err(ApiError::AppendFailed)?;
        tracing::warn!(seq = seq.0, action = label, consumer = ?consumer, "operator stop appended");
        let (applied, note) = if self.require_leader().is_err() {
            (
                false,
                Some(
                    "this replica is a standby: the record is in the log and the replica that runs the consumers applies it (and any replica that takes over later)"
                        .to_owned(),
                ),
            )
        } else if self
            .controls
            .wait_until_projected(seq, STOP_APPLY_WAIT)
            .await?
        {
            (true, None)
        } else {
            (
                false,
                Some(format!(
                    "the record is in the log but the controls consumer did not apply it within {} s; the sender does not call a provider until it has; see `hooklog-replay status`",
                    STOP_APPLY_WAIT.as_secs()
                )),
            )
        };
        Ok(api::StopAnswer {
            seq: seq.0,
            applied,
            consumer,
            action: label.to_owned(),
            note,
        })
    }

    /// The kill switch as this replica sees it: the configuration and the projected record.
    fn kill_switch(&self) -> Result<api::KillSwitchStatus, ApiError> {
        let record = self.controls.kill_switch()?;
        let in_config = *self.kill_switch_in_config.get();
        Ok(api::KillSwitchStatus {
            on: in_config || record.as_ref().is_some_and(|k| k.on),
            config: in_config,
            record,
        })
    }

    fn event_json(&self, ev: &crate::event::Event) -> Result<EventJson, ApiError> {
        let mut json = EventJson::from_event(ev);
        let verdict = consumers::dedup::verdict(self.log.state().as_ref(), ev.seq)?;
        json.dedup = verdict.and_then(|v| serde_json::to_value(v).ok());
        Ok(json)
    }

    /// Appends an operator's change to the suppression list; the compliance consumer applies it.
    async fn optout_change(
        &self,
        action: &str,
        number: &str,
        reason: Option<String>,
    ) -> Result<u64, ApiError> {
        let normalized = crate::phone::normalize_e164(number).ok_or_else(|| {
            ApiError::BadRequest(format!("`{number}` is not a phone number (E.164 expected)"))
        })?;
        // The operator's change: no provider, no line (the sender's 21610 record names both).
        let change = compliance::OptOutChange {
            action: action.to_owned(),
            number: normalized,
            reason,
            provider: None,
            line: None,
        };
        Ok(self
            .log
            .append(change.to_verified_as(Micros::now(), Verification::AdminToken))
            .await
            .map_err(ApiError::AppendFailed)?
            .0)
    }

    /// The status document: the log, and every consumer (running here or with a stored cursor).
    pub fn status(&self) -> Result<Status, ApiError> {
        let mut status = status_of(self.log.as_ref())?;
        status.kill_switch = self.kill_switch()?;
        if let Err(ApiError::NotLeader(holder)) = self.require_leader() {
            status.standby = Some(format!(
                "{holder} runs the consumers; the cursors shown are this replica's own, from \
                 when it last ran them"
            ));
        }
        let store = self.log.state();
        for info in self.registry.infos() {
            let dead = consumers::dead_letters(store.as_ref(), &info.name)?.len() as u64;
            let state = serde_json::to_value(info.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            match status.consumers.iter_mut().find(|c| c.name == info.name) {
                Some(c) => {
                    c.state = state;
                    c.dead_letters = dead;
                    c.last_error = info.last_error.clone();
                }
                None => status.consumers.push(api::ConsumerStatus {
                    name: info.name.clone(),
                    cursor: 0,
                    lag: status.log.last_seq,
                    state,
                    dead_letters: dead,
                    last_error: info.last_error.clone(),
                    pause: self.controls.pause(&info.name)?,
                }),
            }
        }
        status.consumers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(status)
    }

    async fn append(&self, body: &[u8]) -> Result<Appended, ApiError> {
        let req: AppendRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid append request: {e}")))?;
        let source: Source = req
            .source
            .parse()
            .map_err(|e: crate::event::UnknownSource| ApiError::BadRequest(e.to_string()))?;
        if req.route == controls::CONTROL_ROUTE {
            // The `controls` consumer obeys records with the admin token and source
            // `internal`, which is what this route writes too: it must never write one.
            return Err(ApiError::BadRequest(format!(
                "route `{}` is written only by POST /admin/kill-switch and POST /admin/consumers/{{name}}/pause|resume",
                controls::CONTROL_ROUTE
            )));
        }
        if source.is_webhook() {
            return Err(ApiError::BadRequest(format!(
                "source `{source}` is reserved for signed webhooks; send the signed request to \
                 the webhook listener instead (or use a backfill-* source)"
            )));
        }
        if !source.is_operator_held() {
            return Err(ApiError::BadRequest(format!(
                "source `{source}` is written only by hooklog itself (gate decisions, send \
                 attempts and results, dispatch results, opt-out and line changes): this route \
                 takes the operator's backfill sources, {}. Ask for a message with POST \
                 /v1/messages, change the suppression list with /admin/optouts, unblock a line \
                 with POST /admin/lines/{{id}}/unblock",
                Source::OPERATOR_HELD
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
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
///
/// The kill switch and the pauses are the ones projected into this log's state (the
/// configuration's `[compliance] kill_switch` is the caller's to add).
pub fn status_of(log: &dyn Log) -> Result<Status, crate::log::LogError> {
    let stats = log.stats()?;
    let store = log.state();
    let state_err = |e: crate::state::StateError| crate::log::LogError::Storage(e.to_string());
    let pauses: std::collections::BTreeMap<String, controls::Pause> =
        controls::stops::stored_pauses(store.as_ref())
            .map_err(state_err)?
            .into_iter()
            .collect();
    let consumers = log
        .cursors()?
        .into_iter()
        .map(|(name, cursor)| api::ConsumerStatus {
            pause: pauses.get(&name).cloned(),
            name,
            cursor: cursor.0,
            lag: stats.last_seq.saturating_sub(cursor.0),
            state: "stored".into(),
            dead_letters: 0,
            last_error: None,
        })
        .collect();
    let record = controls::stops::stored_kill_switch(store.as_ref()).map_err(state_err)?;
    Ok(Status {
        log: stats,
        consumers,
        standby: None,
        kill_switch: api::KillSwitchStatus {
            on: record.as_ref().is_some_and(|k| k.on),
            config: false,
            record,
        },
    })
}

fn control_err(e: consumers::ControlError) -> ApiError {
    match e {
        consumers::ControlError::Unknown(..) | consumers::ControlError::Refused(_) => {
            ApiError::BadRequest(e.to_string())
        }
        consumers::ControlError::Stopped(_) => ApiError::NotReady(e.to_string()),
        consumers::ControlError::Failed(_) => {
            ApiError::Log(crate::log::LogError::Storage(e.to_string()))
        }
        consumers::ControlError::Unconfirmed(ref report)
        | consumers::ControlError::OverLimit(ref report) => ApiError::RedeliveryRefused {
            kind: if matches!(e, consumers::ControlError::Unconfirmed(_)) {
                "redeliver_unconfirmed"
            } else {
                "redeliver_over_limit"
            },
            message: e.to_string(),
            report: serde_json::to_value(report).unwrap_or_default(),
        },
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn parse_json_or_empty<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid request: {e}")))
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
