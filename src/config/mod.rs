//! Configuration: embedded defaults < TOML file < `HOOKLOG_*` environment, then validation.
//!
//! Where the file comes from: `--config FILE`, else `$HOOKLOG_CONFIG`, else `./hooklog.toml`
//! if present, else none (the embedded defaults alone are a working daemon).
//!
//! Environment overrides are `HOOKLOG_<SECTION>_<KEY>` (`HOOKLOG_DATA_DIR` for the top-level
//! key), upper case; lists are comma-separated, except lists of secrets, which are split on
//! newlines only (a comma may be part of a secret). Any key may instead be given as
//! `<key>_file` (in the file or the environment): the file's contents, without the trailing
//! newline, are the value. That is how secrets stay out of the file and the process
//! environment.
//!
//! Invariants: unknown sections and keys are errors (a typo must not silently disable a
//! check); every error names the key and where its value came from, and never repeats a value
//! (`message.rs`: a TOML syntax error by file, line, column and key); secrets are
//! [`secret::Secret`]s, whose `Debug` and `Serialize` print `<redacted>`.

//!
//! # Files
//!
//! This file: [`Config`], the composition of every section, and how it is loaded.
//! [`env`](mod@env): environment overrides, `*_file` indirection and [`Provenance`]; [`secret`]:
//! [`secret::Secret`]; [`de`]: the serde helpers every section uses; [`sections`]: the sections
//! several components read; `validate.rs`: the checks serde cannot make; [`url`]: the check of
//! outgoing URLs (https unless loopback); `message.rs`: errors told without their values;
//! [`error`]: [`ConfigError`]. Sections, secrets and helpers import nothing back from here.

pub mod de;
pub mod env;
pub mod error;
mod message;
pub mod secret;
pub mod sections;
pub mod url;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

// The sections that live in the component they configure. These imports are the only ones
// from `config` to a higher layer, and each names the section's own file, which imports
// nothing back but `config::{de, secret, url}`.
use crate::alerts::config::AlertsConfig;
use crate::consumers::dispatch::config::DispatchConfig;
use crate::consumers::postgres::config::PostgresConfig;
use crate::consumers::sender::config::SenderConfig;
use crate::consumers::staleness::config::StalenessConfig;
use crate::doctor::config::DoctorConfig;
use crate::gates::config::{ComplianceConfig, LineConfig};
use crate::log::config::LogConfig;

use crate::clock::Clock;

use env::{env_key, record_origins, resolve_files, table_at, ENV_NOT_KEYS, ENV_PREFIX};
pub use env::{Provenance, CONFIG_ENV};
pub use error::ConfigError;
pub use sections::{
    ConsumersConfig, DedupConfig, QuoConfig, SalesMsgConfig, ServerConfig, TwilioConfig,
    VoiceConfig,
};

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the log, cursors and the generated admin token live.
    pub data_dir: PathBuf,
    /// Listeners and limits.
    pub server: ServerConfig,
    /// The embedded log.
    pub log: LogConfig,
    /// Quo (OpenPhone).
    pub openphone: QuoConfig,
    /// Twilio.
    pub twilio: TwilioConfig,
    /// SalesMsg.
    pub salesmsg: SalesMsgConfig,
    /// The dedup consumer.
    pub dedup: DedupConfig,
    /// The shared consumer driver.
    pub consumers: ConsumersConfig,
    /// Operator alerts (Discord).
    pub alerts: AlertsConfig,
    /// The staleness monitor.
    pub staleness: StalenessConfig,
    /// The Postgres (Supabase) sync.
    pub postgres: PostgresConfig,
    /// Agent dispatch (the gateway, routes, retries).
    pub dispatch: DispatchConfig,
    /// The outbound compliance gates.
    pub compliance: ComplianceConfig,
    /// The sending lines (`[[lines]]`; file only, no environment override).
    pub lines: Vec<LineConfig>,
    /// The clock of the outbound path: the system clock, except in tests.
    #[serde(skip)]
    pub clock: Clock,
    /// The outbound sender.
    pub sender: SenderConfig,
    /// `hooklog doctor`: the approved webhook URLs and the drift audit's thresholds.
    pub doctor: DoctorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            log: LogConfig::default(),
            openphone: QuoConfig::default(),
            twilio: TwilioConfig::default(),
            salesmsg: SalesMsgConfig::default(),
            dedup: DedupConfig::default(),
            consumers: ConsumersConfig::default(),
            alerts: AlertsConfig::default(),
            staleness: StalenessConfig::default(),
            postgres: PostgresConfig::default(),
            dispatch: DispatchConfig::default(),
            compliance: ComplianceConfig::default(),
            lines: Vec::new(),
            clock: Clock::system(),
            sender: SenderConfig::default(),
            doctor: DoctorConfig::default(),
        }
    }
}

impl Config {
    /// Finds the config file the way both binaries do: the explicit path, else
    /// `$HOOKLOG_CONFIG`, else `./hooklog.toml` if it exists.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = explicit {
            return Some(p.to_owned());
        }
        if let Ok(p) = std::env::var(CONFIG_ENV) {
            if !p.is_empty() {
                return Some(PathBuf::from(p));
            }
        }
        let local = PathBuf::from("hooklog.toml");
        local.exists().then_some(local)
    }

    /// Loads from the process: [`Config::locate`] plus the process environment.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Provenance), ConfigError> {
        let file = Config::locate(explicit);
        Config::load_from(file.as_deref(), std::env::vars())
    }

    /// Loads from an optional file and the given environment (testable without touching the
    /// process environment).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Provenance), ConfigError> {
        let mut prov = Provenance {
            file: file.map(Path::to_owned),
            origins: BTreeMap::new(),
        };
        let mut root = toml::Table::new();
        // The file's text, to give the line of a bad value that came from it.
        let mut file_text: Option<(String, String)> = None;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            root = text
                .parse::<toml::Table>()
                .map_err(|e| message::syntax_error(path, &text, &e))?;
            let origin = format!("file {}", path.display());
            record_origins(&root, "", &origin, &mut prov.origins);
            file_text = Some((origin, text));
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_NOT_KEYS.contains(&k.as_str()))
            .collect();
        env.sort();
        for (var, value) in env {
            let (section, key) = env_key(&var)?;
            let table = match section {
                None => &mut root,
                Some(path) => {
                    table_at(&mut root, path).map_err(|message| ConfigError::Invalid {
                        key: path.to_owned(),
                        origin: format!("env {var}"),
                        message,
                    })?
                }
            };
            table.insert(key.clone(), toml::Value::String(value));
            let full = match section {
                None => key,
                Some(s) => format!("{s}.{key}"),
            };
            prov.origins.insert(full, format!("env {var}"));
        }
        resolve_files(&mut root, "", &mut prov)?;

        let mut track = serde_path_to_error::Track::new();
        // Kept to recognise the value in an error message (the deserializer consumes `root`).
        let values = root.clone();
        let de = serde_path_to_error::Deserializer::new(toml::Value::Table(root), &mut track);
        // "file F" becomes "file F, line L, column C" when the key is found in it.
        let at_line = |key: &str, origin: String| match &file_text {
            Some((file_origin, text)) if *file_origin == origin => {
                match message::locate(text, key) {
                    Some((line, column)) => format!("{origin}, line {line}, column {column}"),
                    None => origin,
                }
            }
            _ => origin,
        };
        let config = Config::deserialize(de).map_err(|e| {
            let key = track.path().to_string();
            let message = message::value_message(&e.to_string(), &message::leaves(&values, &key));
            ConfigError::Invalid {
                origin: at_line(&key, prov.origin(&key)),
                key,
                message,
            }
        })?;
        config.validate(&prov).map_err(|e| match e {
            // A section's check may quote the value; it may be a secret.
            ConfigError::Invalid {
                key,
                origin,
                message,
            } => ConfigError::Invalid {
                message: message::scrub(&message, &message::leaves(&values, &key)),
                origin: at_line(&key, origin),
                key,
            },
            other => other,
        })?;
        Ok((config, prov))
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
