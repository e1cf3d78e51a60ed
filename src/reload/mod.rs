//! Reload without restart: SIGHUP and `POST /admin/reload` read the configuration again
//! from the sources of the start (the same file, the process environment, every `*_file`
//! read again) and put it in force in the running daemon.
//!
//! # What is reloadable
//!
//! [`diff::RELOADABLE`] is the list; in short, every key that rotates: the webhook keys of
//! every provider (`openphone.signing_keys`, `twilio.auth_tokens`, `salesmsg.secrets`, with
//! `server.public_urls`), the admin and agent tokens, the providers' API credentials, the
//! dispatch token and routes, `[alerts]`, `[[lines]]` and `[compliance]`. Everything else
//! (listeners, the data directory, the log engine and its settings, Postgres but its mirror, the consumers'
//! pacing, `openphone.tolerance_secs`, which sizes the replay window) is read at start only:
//! a change is logged and answered as `restart_required` and waits for the next start. So
//! does starting or stopping a consumer (dispatch turned on, send credentials where the
//! sender did not run).
//!
//! # The atomicity rule
//!
//! A reload is all or nothing: the new configuration is loaded and validated exactly like
//! at start (`check-config`'s messages: file, line, key, never a value), then every
//! component's new state is built (the verifier decodes its keys, the tokens are checked
//! against each other, dispatch's routes are compiled) **before** anything is applied. Any
//! failure refuses the whole reload: the running configuration stays entirely, the answer is
//! the error, and a warning alert says why. Once built, each component's new state replaces
//! its old one in one store ([`crate::live::Live`]): a request or a batch sees the old
//! state or the new one, never a mix. Two reloads do not interleave.
//!
//! # Where each component reads its live settings
//!
//! | component | cell | read |
//! |---|---|---|
//! | edge | `Edge::verifier`, `Edge::voice_twiml` | per request |
//! | admin API | [`crate::admin::LiveSettings`] (tokens, line ids, kill switch) | per request |
//! | alerts | [`crate::alerts::Alerter::reconfigure`] (every clone) | per alert |
//! | outbound gates, sender | [`GateSettings`] (`[compliance]`, `[[lines]]`) | between batches |
//! | sender | [`SendClients`] (API keys, Twilio account) | between batches |
//! | dispatch | [`dispatch::Reloadable`] (settings, gateway client) | between batches |
//! | compliance | `salesmsg.trust_opt_in` | between batches |
//! | postgres | [`MirrorSetter`] (`[[postgres.mirror]]`) | between batches, checked against the database first |
//! | (none) | `[doctor]`: read by `hooklog doctor` only | at its next run |
//!
//! Counted in `hooklog_reloads_total{result="ok|refused"}`; logged as `config reloaded`
//! with the changed keys (never values).

pub mod diff;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::admin::api::Reloaded;
use crate::admin::{self, routes::Tokens};
use crate::alerts::{Alert, Alerter, Severity};
use crate::config::Config;
use crate::consumers::dispatch;
use crate::consumers::outbound::GateSettings;
use crate::consumers::postgres::MirrorSetter;
use crate::consumers::sender::SendClients;
use crate::edge::twiml;
use crate::edge::verifier::Verifier;
use crate::live::Live;
use crate::metrics::Metrics;

/// Where the configuration is read from again: the file of the start (none: the embedded
/// defaults), and the process environment as it is (its `*_file` names read anew).
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// The configuration file, as found at start.
    pub file: Option<PathBuf>,
}

impl Source {
    /// Loads and validates the configuration from this source.
    pub fn load(&self) -> Result<Config, crate::config::ConfigError> {
        Config::load_from(self.file.as_deref(), std::env::vars()).map(|(c, _)| c)
    }
}

/// The cells a reload replaces, one per component.
#[derive(Clone)]
pub struct Cells {
    /// The edge's verifier.
    pub verifier: Live<Verifier>,
    /// The edge's TwiML answer to voice routes.
    pub voice_twiml: Live<String>,
    /// The admin API's tokens, line ids and kill switch.
    pub admin: admin::LiveSettings,
    /// The outbound gates' and the sender's `[compliance]` and `[[lines]]`.
    pub gates: Live<GateSettings>,
    /// The sender's provider clients.
    pub send_clients: Live<SendClients>,
    /// Dispatch's settings and gateway client (`None` while dispatch is off).
    pub dispatch: Live<Option<dispatch::Reloadable>>,
    /// `[salesmsg] trust_opt_in` for the compliance consumer.
    pub trust_opt_in: Live<bool>,
    /// The Postgres sink's `[[postgres.mirror]]`.
    pub postgres_mirror: MirrorSetter,
}

/// `[compliance]` and `[[lines]]` as the gates read them.
pub fn gate_settings(config: &Config) -> GateSettings {
    GateSettings {
        compliance: config.compliance.clone(),
        lines: config.lines.clone(),
    }
}

/// Dispatch's settings and client for `config`, `None` when dispatch is off.
pub fn dispatch_of(config: &Config) -> Result<Option<dispatch::Reloadable>, String> {
    if !config.dispatch.enabled() {
        return Ok(None);
    }
    let settings =
        dispatch::Settings::from_config(&config.dispatch).map_err(|e| format!("dispatch.{e}"))?;
    let token = config
        .dispatch
        .token
        .clone()
        .ok_or_else(|| "dispatch.token: not set".to_owned())?;
    let client = dispatch::Client::new(token, &config.dispatch.gateway_options());
    Ok(Some(dispatch::Reloadable {
        settings,
        gateway: Arc::new(client),
    }))
}

/// Re-reads and applies the configuration; one per daemon, shared by SIGHUP and the admin
/// route.
pub struct Reloader {
    source: Source,
    /// The configuration the daemon started with: what the keys read at start only run on.
    started: Config,
    /// The configuration last applied; held for the whole reload, so reloads do not
    /// interleave.
    applied: Mutex<Config>,
    cells: Cells,
    alerter: Alerter,
    metrics: Metrics,
}

impl Reloader {
    /// A reloader for a daemon started on `started` (read from `source`).
    pub fn new(
        source: Source,
        started: Config,
        cells: Cells,
        alerter: Alerter,
        metrics: Metrics,
    ) -> Reloader {
        Reloader {
            source,
            applied: Mutex::new(started.clone()),
            started,
            cells,
            alerter,
            metrics,
        }
    }

    /// Reads the configuration again and applies it, or refuses all of it (logged, counted,
    /// alerted). Blocking (files): call it off the async threads.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        match self.prepare(&applied) {
            Ok((new, built, plan)) => {
                self.apply(&plan, built, &new);
                *applied = new;
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(
                    changed = ?plan.changed,
                    restart_required = ?plan.restart_required,
                    "config reloaded"
                );
                if !plan.restart_required.is_empty() {
                    tracing::warn!(
                        keys = ?plan.restart_required,
                        "these keys changed but are read only at start: kept for the next start"
                    );
                }
                Ok(Reloaded {
                    reloaded: true,
                    changed: plan.changed,
                    restart_required: plan.restart_required,
                })
            }
            Err(error) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                self.alerter.raise(Alert {
                    key: "config_reload_refused".into(),
                    severity: Severity::Warning,
                    title: "hooklog refused a configuration reload: the running one stays".into(),
                    reason: error.clone(),
                    next_step: "fix the configuration (`hooklog check-config` shows the same \
                                message), then reload again (systemctl reload hooklog)"
                        .into(),
                });
                Err(error)
            }
        }
    }

    /// Loads the new configuration and builds every component's new state; nothing is
    /// applied yet.
    fn prepare(&self, applied: &Config) -> Result<(Config, Built, diff::Plan), String> {
        let mut new = self.source.load().map_err(|e| e.to_string())?;
        // Not configuration: the clock of the start (a test's, in debug builds) stays.
        new.clock = self.started.clock.clone();
        let verifier = Verifier::from_config(&new).map_err(|e| e.to_string())?;
        // The generated token lives in the data directory the daemon runs on.
        let token = admin::load_or_create_token(&Config {
            data_dir: self.started.data_dir.clone(),
            ..new.clone()
        })
        .map_err(|e| e.to_string())?;
        let tokens = Tokens::new(token, &new.server.agent_tokens).map_err(|e| e.to_string())?;
        let dispatch = dispatch_of(&new)?;
        let plan = diff::plan(&self.started, applied, &new);
        Ok((
            new,
            Built {
                verifier,
                tokens,
                dispatch,
            },
            plan,
        ))
    }

    /// Puts the built state of each component whose keys changed in force.
    fn apply(&self, plan: &diff::Plan, built: Built, new: &Config) {
        let touched = |keys: &[&str]| {
            plan.changed.iter().any(|c| {
                keys.iter().any(|k| match k.strip_suffix('.') {
                    Some(section) => c.strip_prefix(section).is_some_and(|r| r.starts_with('.')),
                    None => c == k,
                })
            })
        };
        if touched(&[
            "openphone.signing_keys",
            "twilio.auth_tokens",
            "salesmsg.secrets",
            "server.public_urls",
        ]) {
            self.cells.verifier.set(built.verifier);
        }
        if touched(&["twilio.voice"]) {
            self.cells.voice_twiml.set(twiml::voice(&new.twilio.voice));
        }
        if touched(&[
            "server.admin_token",
            "server.agent_tokens",
            "lines",
            "compliance.kill_switch",
        ]) {
            self.cells
                .admin
                .set(built.tokens, &new.lines, new.compliance.kill_switch);
        }
        if touched(&["alerts."]) {
            self.alerter.reconfigure(&new.alerts);
        }
        if touched(&["compliance.", "lines"]) {
            self.cells.gates.set(gate_settings(new));
        }
        if touched(&[
            "openphone.api_key",
            "openphone.api_base",
            "twilio.account_sid",
            "twilio.auth_tokens",
            "twilio.api_base",
            "sender.timeout_secs",
            "sender.connect_timeout_secs",
        ]) {
            self.cells.send_clients.set(SendClients::from_config(new));
        }
        if touched(&["dispatch."]) {
            self.cells.dispatch.set(built.dispatch);
        }
        if touched(&["salesmsg.trust_opt_in"]) {
            self.cells.trust_opt_in.set(new.salesmsg.trust_opt_in);
        }
        if touched(&["postgres.mirror"]) {
            // Validated with the configuration above: the same static checks.
            if let Err(error) = self.cells.postgres_mirror.set(new.postgres.mirror.clone()) {
                tracing::warn!(%error, "postgres.mirror not applied");
            }
        }
    }
}

impl admin::Reload for Reloader {
    fn reload(&self) -> Result<Reloaded, String> {
        Reloader::reload(self)
    }
}

/// The state built from a new configuration before any of it is applied.
struct Built {
    verifier: Verifier,
    tokens: Tokens,
    dispatch: Option<dispatch::Reloadable>,
}
