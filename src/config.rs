//! Configuration: embedded defaults < TOML file < `HOOKLOG_*` environment, then validation.
//!
//! Where the file comes from: `--config FILE`, else `$HOOKLOG_CONFIG`, else `./hooklog.toml`
//! if present, else none (the embedded defaults alone are a working daemon).
//!
//! Environment overrides are `HOOKLOG_<SECTION>_<KEY>` (`HOOKLOG_DATA_DIR` for the top-level
//! key), upper case; lists are comma-separated. Any key may instead be given as `<key>_file`
//! (in the file or the environment): the file's contents, without the trailing newline, are
//! the value. That is how secrets stay out of the file and the process environment.
//!
//! Invariants: unknown sections and keys are errors (a typo must not silently disable a
//! check); every error names the key and where its value came from; secrets are [`Secret`]s,
//! whose `Debug` and `Serialize` print `<redacted>`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Environment variable that names the config file.
pub const CONFIG_ENV: &str = "HOOKLOG_CONFIG";
const ENV_PREFIX: &str = "HOOKLOG_";
/// Environment variables with the prefix that are not configuration keys.
const ENV_NOT_KEYS: &[&str] = &[CONFIG_ENV];
/// Sections, longest first so `twilio.voice` wins over `twilio` when matching env names.
const SECTIONS: &[&str] = &[
    "log.jetstream",
    "twilio.voice",
    "compliance",
    "consumers",
    "openphone",
    "staleness",
    "postgres",
    "dispatch",
    "salesmsg",
    "sender",
    "alerts",
    "server",
    "twilio",
    "dedup",
    "log",
];

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A `HOOKLOG_*` variable does not name a known section and key.
    #[error("environment variable {var} does not name a configuration key (expected HOOKLOG_<SECTION>_<KEY> with a section of: data_dir, {sections})", sections = SECTIONS.join(", "))]
    UnknownEnv {
        /// The variable.
        var: String,
    },
    /// A `*_file` key names a file that cannot be read.
    #[error("`{key}` (from {origin}): cannot read {path}: {source}")]
    SecretFile {
        /// The key, e.g. `twilio.auth_tokens_file`.
        key: String,
        /// Where the key was set.
        origin: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key has an invalid value (or is unknown).
    #[error("`{key}` (from {origin}): {message}")]
    Invalid {
        /// The key path, e.g. `server.listen`.
        key: String,
        /// Where its value came from: the file, an environment variable, or the defaults.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

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
    pub openphone: OpenPhoneConfig,
    /// Twilio.
    pub twilio: TwilioConfig,
    /// SalesMsg.
    pub salesmsg: SalesMsgConfig,
    /// The dedup consumer.
    pub dedup: DedupConfig,
    /// The shared consumer driver.
    pub consumers: ConsumersConfig,
    /// Operator alerts (Discord).
    pub alerts: crate::alerts::AlertsConfig,
    /// The staleness monitor.
    pub staleness: crate::consumers::staleness::config::StalenessConfig,
    /// The Postgres (Supabase) sync.
    pub postgres: crate::consumers::postgres::PostgresConfig,
    /// Agent dispatch (the gateway, routes, retries).
    pub dispatch: crate::consumers::dispatch::DispatchConfig,
    /// The outbound compliance gates.
    pub compliance: crate::gates::ComplianceConfig,
    /// The sending lines (`[[lines]]`; file only, no environment override).
    pub lines: Vec<crate::gates::LineConfig>,
    /// The clock of the outbound path: the system clock, except in tests.
    #[serde(skip)]
    pub clock: crate::clock::Clock,
    /// The outbound sender.
    pub sender: crate::consumers::sender::SenderConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            log: LogConfig::default(),
            openphone: OpenPhoneConfig::default(),
            twilio: TwilioConfig::default(),
            salesmsg: SalesMsgConfig::default(),
            dedup: DedupConfig::default(),
            consumers: ConsumersConfig::default(),
            alerts: crate::alerts::AlertsConfig::default(),
            staleness: crate::consumers::staleness::config::StalenessConfig::default(),
            postgres: crate::consumers::postgres::PostgresConfig::default(),
            dispatch: crate::consumers::dispatch::DispatchConfig::default(),
            compliance: crate::gates::ComplianceConfig::default(),
            lines: Vec::new(),
            clock: crate::clock::Clock::system(),
            sender: crate::consumers::sender::SenderConfig::default(),
        }
    }
}

/// `[dedup]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// How long a key is remembered, in hours of event time. Quo retries for ~28 h.
    #[serde(deserialize_with = "de::parsed")]
    pub ttl_hours: u64,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig { ttl_hours: 72 }
    }
}

/// `[consumers]`: the shared driver's pacing.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumersConfig {
    /// Most records per batch.
    #[serde(deserialize_with = "de::parsed")]
    pub batch_size: usize,
    /// First retry delay after a transient failure, in milliseconds (doubles, with jitter).
    #[serde(deserialize_with = "de::parsed")]
    pub backoff_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[serde(deserialize_with = "de::parsed")]
    pub backoff_max_ms: u64,
    /// Consecutive failures of one consumer before an alert.
    #[serde(deserialize_with = "de::parsed")]
    pub alert_after_failures: u32,
}

impl Default for ConsumersConfig {
    fn default() -> Self {
        ConsumersConfig {
            batch_size: 512,
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
            alert_after_failures: 5,
        }
    }
}

/// `[server]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public webhook listeners; each serves every route.
    #[serde(deserialize_with = "de::list")]
    pub listen: Vec<SocketAddr>,
    /// Admin API listener (keep it on loopback).
    #[serde(deserialize_with = "de::parsed")]
    pub admin_listen: SocketAddr,
    /// Public base URLs Twilio signs against (e.g. `https://hooks.example.com`).
    #[serde(deserialize_with = "de::list")]
    pub public_urls: Vec<String>,
    /// Largest accepted request body.
    #[serde(deserialize_with = "de::parsed")]
    pub max_body_bytes: u64,
    /// Admin bearer token; generated into `<data_dir>/admin.token` when absent.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub admin_token: Option<Secret>,
    /// Seconds to wait for in-flight requests on shutdown.
    #[serde(deserialize_with = "de::parsed")]
    pub shutdown_grace_secs: u64,
    /// Seconds a client has to send a whole request head (request line and headers), and
    /// the longest an idle keep-alive connection is kept; then the connection is closed.
    #[serde(deserialize_with = "de::parsed")]
    pub header_read_timeout_secs: u64,
    /// Seconds a client has, once its head is read, to send the whole body; then `408`.
    #[serde(deserialize_with = "de::parsed")]
    pub body_read_timeout_secs: u64,
    /// Seconds a connection may stay without a byte read or written (an idle keep-alive
    /// connection, a client that stops reading) before it is closed.
    #[serde(deserialize_with = "de::parsed")]
    pub idle_timeout_secs: u64,
    /// Largest request head (request line and headers) in bytes; larger gets `431`.
    #[serde(deserialize_with = "de::parsed")]
    pub max_header_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 18792))],
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 18800)),
            public_urls: Vec::new(),
            max_body_bytes: 1024 * 1024,
            admin_token: None,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            // Longer than the tunnel's own idle timeout for origin connections (cloudflared:
            // 90 s), so that the tunnel closes first and never sends a request on a
            // connection we are closing.
            idle_timeout_secs: 120,
            max_header_bytes: 32 * 1024,
        }
    }
}

/// `[log]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// sled page cache in MiB (sled's resident memory is a few times this).
    #[serde(deserialize_with = "de::parsed")]
    pub cache_mb: u64,
    /// Records older than this many days, and below every consumer's cursor, are deleted;
    /// 0 (the default) keeps everything.
    #[serde(deserialize_with = "de::parsed")]
    pub retention_days: u64,
    /// Seconds between retention passes (each also refreshes the log size gauges).
    #[serde(deserialize_with = "de::parsed")]
    pub prune_interval_secs: u64,
    /// Webhooks are answered 503 while the data directory's file system has less than this
    /// many MiB free, so that sled never meets a full disk (it cannot recover from a failed
    /// write without a restart); 0 turns the reserve off.
    #[serde(deserialize_with = "de::parsed")]
    pub min_free_mb: u64,
    /// Which engine holds the log: `sled` (embedded, the default) or `jetstream`.
    pub backend: LogBackend,
    /// `[log.jetstream]`: the stream, when `backend = "jetstream"`.
    pub jetstream: JetStreamConfig,
}

/// `[log] backend`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
    /// An embedded sled database in `data_dir/log`.
    #[default]
    Sled,
    /// A NATS JetStream stream (`[log.jetstream]`).
    Jetstream,
}

/// `[log.jetstream]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JetStreamConfig {
    /// Server URLs, comma-separated (`nats://host:4222`, `tls://host:4222`).
    pub nats_url: String,
    /// Stream name (created if missing, checked if present).
    pub stream: String,
    /// The one subject the stream binds and hooklog publishes on.
    pub subject: String,
    /// Stream replicas: 1, or 3 on a three-node cluster.
    #[serde(deserialize_with = "de::parsed")]
    pub replicas: usize,
    /// The stream's duplicate window: a publish retried within it is stored once.
    #[serde(deserialize_with = "de::parsed")]
    pub duplicate_window_secs: u64,
    /// How long an append waits for the stream's acknowledgement (retrying with the same
    /// message id) before the webhook is answered 503.
    #[serde(deserialize_with = "de::parsed")]
    pub ack_timeout_ms: u64,
    /// A `.creds` file (JWT + NKey seed) to authenticate with.
    pub creds_path: Option<PathBuf>,
    /// A token to authenticate with (or `token_file`).
    #[serde(deserialize_with = "de::opt_parsed")]
    pub token: Option<Secret>,
    /// An NKey seed (`SU…`) to authenticate with (or `nkey_seed_file`).
    #[serde(deserialize_with = "de::opt_parsed")]
    pub nkey_seed: Option<Secret>,
    /// A CA certificate (PEM) to trust for TLS.
    pub tls_ca_path: Option<PathBuf>,
    /// A client certificate (PEM), with `tls_key_path`, for servers that verify clients.
    pub tls_cert_path: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub tls_key_path: Option<PathBuf>,
    /// Refuse to connect without TLS.
    #[serde(deserialize_with = "de::parsed")]
    pub tls_required: bool,
    /// The consumers' lease on the stream: a standby replica takes over the consumers once
    /// the holder has not renewed it (every third of it) for this long: the fail-over time.
    #[serde(deserialize_with = "de::parsed")]
    pub lease_secs: u64,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            nats_url: "nats://127.0.0.1:4222".into(),
            stream: "HOOKLOG".into(),
            subject: "hooklog.events".into(),
            replicas: 1,
            duplicate_window_secs: 120,
            ack_timeout_ms: 2000,
            creds_path: None,
            token: None,
            nkey_seed: None,
            tls_ca_path: None,
            tls_cert_path: None,
            tls_key_path: None,
            tls_required: false,
            lease_secs: 15,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            cache_mb: 32,
            retention_days: 0,
            prune_interval_secs: 3600,
            min_free_mb: 64,
            backend: LogBackend::Sled,
            jetstream: JetStreamConfig::default(),
        }
    }
}

/// `[openphone]` (Quo)
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenPhoneConfig {
    /// Webhook signing secrets: base64 (legacy) or `whsec_…` (Standard Webhooks); any may match.
    #[serde(deserialize_with = "de::list")]
    pub signing_keys: Vec<Secret>,
    /// REST API key (backfill, sending).
    #[serde(deserialize_with = "de::opt_parsed")]
    pub api_key: Option<Secret>,
    /// REST API base URL.
    pub api_base: String,
    /// Allowed clock difference for signed timestamps, in seconds.
    #[serde(deserialize_with = "de::parsed")]
    pub tolerance_secs: u64,
    /// Backfill lists messages with the workspace-wide `GET /messages` of the dated
    /// 2026-03-30 API (one walk for every line) instead of per conversation.
    #[serde(deserialize_with = "de::parsed")]
    pub workspace_messages: bool,
}

impl Default for OpenPhoneConfig {
    fn default() -> Self {
        OpenPhoneConfig {
            signing_keys: Vec::new(),
            api_key: None,
            api_base: "https://api.openphone.com".into(),
            tolerance_secs: 300,
            workspace_messages: false,
        }
    }
}

/// `[twilio]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    /// Auth tokens (primary first); any may match.
    #[serde(deserialize_with = "de::list")]
    pub auth_tokens: Vec<Secret>,
    /// Account SID (REST API).
    #[serde(deserialize_with = "de::opt_parsed")]
    pub account_sid: Option<String>,
    /// REST API base URL.
    pub api_base: String,
    /// The TwiML answer for voice routes.
    pub voice: VoiceConfig,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            auth_tokens: Vec::new(),
            account_sid: None,
            api_base: "https://api.twilio.com".into(),
            voice: VoiceConfig::default(),
        }
    }
}

/// `[twilio.voice]`: what a caller hears. With nothing set the call is hung up.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// Text to `<Say>` first.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub say: Option<String>,
    /// `<Say voice=…>`.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub say_voice: Option<String>,
    /// `<Say language=…>`.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub say_language: Option<String>,
    /// E.164 number to `<Dial>` after the greeting.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub dial: Option<String>,
    /// `<Dial timeout=…>` in seconds.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub dial_timeout_secs: Option<u32>,
    /// `<Dial callerId=…>`.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub dial_caller_id: Option<String>,
    /// URL that receives `<Gather>` input; when set (and no `dial`), the greeting is gathered.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub gather_action: Option<String>,
    /// `<Gather numDigits=…>`.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub gather_num_digits: Option<u32>,
    /// `<Gather input=…>` (`dtmf`, `speech` or `dtmf speech`).
    #[serde(deserialize_with = "de::opt_parsed")]
    pub gather_input: Option<String>,
}

/// `[salesmsg]`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesMsgConfig {
    /// Shared secrets accepted in `?secret=`; any may match.
    #[serde(deserialize_with = "de::list")]
    pub secrets: Vec<Secret>,
}

/// Where the configuration came from, for messages and `check-config`.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// The file, if one was read.
    pub file: Option<PathBuf>,
    /// key path → origin (`file …` or `env HOOKLOG_…`).
    origins: BTreeMap<String, String>,
}

impl Provenance {
    /// Where the value of `key` (e.g. `server.listen`) came from.
    pub fn origin(&self, key: &str) -> String {
        self.origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| "the defaults".to_owned())
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
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            root = text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
            let origin = format!("file {}", path.display());
            record_origins(&root, "", &origin, &mut prov.origins);
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
        let de = serde_path_to_error::Deserializer::new(toml::Value::Table(root), &mut track);
        let config = Config::deserialize(de).map_err(|e| {
            let key = track.path().to_string();
            // toml appends "in `key`" on a second line; the key is already named.
            let message = e.to_string().lines().next().unwrap_or_default().to_owned();
            ConfigError::Invalid {
                origin: prov.origin(&key),
                key,
                message,
            }
        })?;
        config.validate(&prov)?;
        Ok((config, prov))
    }

    /// Checks what serde cannot: cross-key rules and values that must decode.
    pub fn validate(&self, prov: &Provenance) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            origin: prov.origin(key),
            message,
        };
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty".into()));
        }
        if self.server.listen.is_empty() {
            return Err(bad(
                "server.listen",
                "at least one address is required".into(),
            ));
        }
        if self.server.max_body_bytes == 0 || self.server.max_body_bytes > 64 * 1024 * 1024 {
            return Err(bad(
                "server.max_body_bytes",
                format!("{} is outside 1..=67108864", self.server.max_body_bytes),
            ));
        }
        for (key, secs) in [
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            (
                "server.body_read_timeout_secs",
                self.server.body_read_timeout_secs,
            ),
            ("server.idle_timeout_secs", self.server.idle_timeout_secs),
        ] {
            if secs == 0 || secs > 3600 {
                return Err(bad(key, format!("{secs} is outside 1..=3600")));
            }
        }
        // hyper refuses (panics on) a read buffer under 8 KiB.
        if !(8192..=1024 * 1024).contains(&self.server.max_header_bytes) {
            return Err(bad(
                "server.max_header_bytes",
                format!("{} is outside 8192..=1048576", self.server.max_header_bytes),
            ));
        }
        for url in &self.server.public_urls {
            validate_public_url(url).map_err(|m| bad("server.public_urls", m))?;
        }
        if let Some(t) = &self.server.admin_token {
            if t.expose().len() < 16 {
                return Err(bad(
                    "server.admin_token",
                    "must be at least 16 characters (or leave it unset to generate one)".into(),
                ));
            }
        }
        if !(1..=24 * 365).contains(&self.dedup.ttl_hours) {
            return Err(bad(
                "dedup.ttl_hours",
                format!("{} is outside 1..=8760", self.dedup.ttl_hours),
            ));
        }
        if !(1..=100_000).contains(&self.consumers.batch_size) {
            return Err(bad(
                "consumers.batch_size",
                format!("{} is outside 1..=100000", self.consumers.batch_size),
            ));
        }
        if self.consumers.backoff_base_ms == 0
            || self.consumers.backoff_max_ms < self.consumers.backoff_base_ms
        {
            return Err(bad(
                "consumers.backoff_max_ms",
                "backoff_base_ms must be ≥ 1 and backoff_max_ms ≥ backoff_base_ms".into(),
            ));
        }
        for (section, result) in [
            ("alerts", self.alerts.validate()),
            ("staleness", self.staleness.validate()),
            ("postgres", self.postgres.validate()),
            ("dispatch", self.dispatch.validate()),
            ("compliance", self.compliance.validate()),
            ("sender", self.sender.validate()),
        ] {
            if let Err(message) = result {
                // The sections' messages start with the bare key name.
                let key = message.split(':').next().unwrap_or_default().trim();
                return Err(bad(&format!("{section}.{key}"), message));
            }
        }
        if let Err((key, message)) = crate::gates::config::validate_lines(&self.lines) {
            // Origins are recorded per table, and `lines` is an array of them.
            return Err(ConfigError::Invalid {
                key,
                origin: prov.origin("lines"),
                message,
            });
        }
        if self.log.cache_mb == 0 {
            return Err(bad("log.cache_mb", "must be at least 1".into()));
        }
        if self.log.retention_days > 36_500 {
            return Err(bad(
                "log.retention_days",
                format!("{} is outside 0..=36500", self.log.retention_days),
            ));
        }
        if !(1..=86_400 * 7).contains(&self.log.prune_interval_secs) {
            return Err(bad(
                "log.prune_interval_secs",
                format!("{} is outside 1..=604800", self.log.prune_interval_secs),
            ));
        }
        if self.log.backend == LogBackend::Jetstream {
            let j = &self.log.jetstream;
            if j.nats_url.trim().is_empty() {
                return Err(bad("log.jetstream.nats_url", "must not be empty".into()));
            }
            let name_ok = !j.stream.is_empty()
                && j.stream
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                return Err(bad(
                    "log.jetstream.stream",
                    format!(
                        "`{}` is not a stream name (letters, digits, - and _)",
                        j.stream
                    ),
                ));
            }
            let subject_ok = !j.subject.is_empty()
                && !j.subject.contains(['*', '>', ' '])
                && j.subject.split('.').all(|t| !t.is_empty());
            if !subject_ok {
                return Err(bad(
                    "log.jetstream.subject",
                    format!("`{}` is not one literal subject (no wildcards)", j.subject),
                ));
            }
            if !matches!(j.replicas, 1..=5) {
                return Err(bad(
                    "log.jetstream.replicas",
                    format!("{} is outside 1..=5", j.replicas),
                ));
            }
            if !(1..=86_400).contains(&j.duplicate_window_secs) {
                return Err(bad(
                    "log.jetstream.duplicate_window_secs",
                    format!("{} is outside 1..=86400", j.duplicate_window_secs),
                ));
            }
            if !(100..=60_000).contains(&j.ack_timeout_ms) {
                return Err(bad(
                    "log.jetstream.ack_timeout_ms",
                    format!("{} is outside 100..=60000", j.ack_timeout_ms),
                ));
            }
            let auth = [
                j.creds_path.is_some(),
                j.token.is_some(),
                j.nkey_seed.is_some(),
            ];
            if auth.iter().filter(|x| **x).count() > 1 {
                return Err(bad(
                    "log.jetstream.creds_path",
                    "set at most one of creds_path, token and nkey_seed".into(),
                ));
            }
            if !(3..=600).contains(&j.lease_secs) {
                return Err(bad(
                    "log.jetstream.lease_secs",
                    format!("{} is outside 3..=600", j.lease_secs),
                ));
            }
            if j.tls_cert_path.is_some() != j.tls_key_path.is_some() {
                return Err(bad(
                    "log.jetstream.tls_cert_path",
                    "tls_cert_path and tls_key_path go together".into(),
                ));
            }
        }
        if !(1..=86_400).contains(&self.openphone.tolerance_secs) {
            return Err(bad(
                "openphone.tolerance_secs",
                format!("{} is outside 1..=86400", self.openphone.tolerance_secs),
            ));
        }
        for (i, key) in self.openphone.signing_keys.iter().enumerate() {
            crate::edge::verify::HmacKey::from_quo_secret(key.expose()).map_err(|e| {
                bad(
                    "openphone.signing_keys",
                    format!(
                        "key #{} is not a base64 or whsec_ signing secret: {e}",
                        i + 1
                    ),
                )
            })?;
        }
        if self
            .twilio
            .auth_tokens
            .iter()
            .any(|t| t.expose().is_empty())
        {
            return Err(bad("twilio.auth_tokens", "an auth token is empty".into()));
        }
        if !self.twilio.auth_tokens.is_empty() && self.server.public_urls.is_empty() {
            return Err(bad(
                "server.public_urls",
                format!(
                    "required when twilio.auth_tokens is set (from {}): Twilio signs the public \
                     URL it calls, which this process cannot see behind a tunnel",
                    prov.origin("twilio.auth_tokens")
                ),
            ));
        }
        if self.salesmsg.secrets.iter().any(|s| s.expose().len() < 8) {
            return Err(bad(
                "salesmsg.secrets",
                "a secret is shorter than 8 characters".into(),
            ));
        }
        for (key, url) in [
            ("openphone.api_base", &self.openphone.api_base),
            ("twilio.api_base", &self.twilio.api_base),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(key, format!("`{url}` is not an http(s) URL")));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn validate_public_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` must start with https:// or http://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if host.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "`{url}`: write the host in lower case, as Twilio signs it"
        ));
    }
    if url.contains('?') || url.contains('#') {
        return Err(format!("`{url}`: a base URL has no query or fragment"));
    }
    Ok(())
}

fn record_origins(
    table: &toml::Table,
    prefix: &str,
    origin: &str,
    out: &mut BTreeMap<String, String>,
) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let toml::Value::Table(t) = v {
            record_origins(t, &path, origin, out);
        }
        out.insert(path, origin.to_owned());
    }
}

/// `HOOKLOG_TWILIO_VOICE_SAY` → (`Some("twilio.voice")`, `say`).
fn env_key(var: &str) -> Result<(Option<&'static str>, String), ConfigError> {
    let rest = var[ENV_PREFIX.len()..].to_ascii_lowercase();
    if rest == "data_dir" || rest == "data_dir_file" {
        return Ok((None, rest));
    }
    for section in SECTIONS {
        let prefix = format!("{}_", section.replace('.', "_"));
        if let Some(key) = rest.strip_prefix(&prefix) {
            if !key.is_empty() {
                return Ok((Some(section), key.to_owned()));
            }
        }
    }
    Err(ConfigError::UnknownEnv {
        var: var.to_owned(),
    })
}

fn table_at<'a>(root: &'a mut toml::Table, path: &str) -> Result<&'a mut toml::Table, String> {
    let mut table = root;
    for part in path.split('.') {
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a section"))?;
    }
    Ok(table)
}

/// Replaces every `<key>_file` by `<key>` = the file's contents.
fn resolve_files(
    table: &mut toml::Table,
    prefix: &str,
    prov: &mut Provenance,
) -> Result<(), ConfigError> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for k in keys {
        let path_key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let Some(toml::Value::Table(sub)) = table.get_mut(&k) {
            resolve_files(sub, &path_key, prov)?;
            continue;
        }
        let Some(stem) = k.strip_suffix("_file") else {
            continue;
        };
        let stem = stem.to_owned();
        let origin = prov.origin(&path_key);
        let Some(toml::Value::String(file)) = table.remove(&k) else {
            return Err(ConfigError::Invalid {
                key: path_key,
                origin,
                message: "must be a file path (a string)".into(),
            });
        };
        let stem_key = if prefix.is_empty() {
            stem.clone()
        } else {
            format!("{prefix}.{stem}")
        };
        if table.contains_key(&stem) {
            return Err(ConfigError::Invalid {
                key: stem_key.clone(),
                origin: prov.origin(&stem_key),
                message: format!("set both `{stem_key}` and `{path_key}`; keep one"),
            });
        }
        let contents =
            std::fs::read_to_string(&file).map_err(|source| ConfigError::SecretFile {
                key: path_key.clone(),
                origin: origin.clone(),
                path: PathBuf::from(&file),
                source,
            })?;
        let value = contents.trim_end_matches(['\n', '\r']).to_owned();
        table.insert(stem, toml::Value::String(value));
        prov.origins
            .insert(stem_key, format!("{origin} (via {path_key})"));
    }
    Ok(())
}

/// Deserializers that accept a value's natural TOML type or a string (from the environment
/// or a `*_file`), so the type information stays on the struct fields.
pub(crate) mod de {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StrOr<T> {
        Str(String),
        Value(T),
    }

    fn parse<T: FromStr, E: serde::de::Error>(s: &str) -> Result<T, E>
    where
        T::Err: fmt::Display,
    {
        s.trim()
            .parse::<T>()
            .map_err(|e| E::custom(format!("`{s}`: {e}")))
    }

    /// A value, or a string that parses to it.
    pub(crate) fn parsed<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr + Deserialize<'de>,
        T::Err: fmt::Display,
    {
        match StrOr::<T>::deserialize(d)? {
            StrOr::Str(s) => parse(&s),
            StrOr::Value(v) => Ok(v),
        }
    }

    /// Like [`parsed`], for optional keys; an empty string means unset.
    pub(crate) fn opt_parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr + Deserialize<'de>,
        T::Err: fmt::Display,
    {
        match StrOr::<T>::deserialize(d)? {
            StrOr::Str(s) if s.trim().is_empty() => Ok(None),
            StrOr::Str(s) => parse(&s).map(Some),
            StrOr::Value(v) => Ok(Some(v)),
        }
    }

    /// A list, or one string with items separated by commas or newlines.
    pub(crate) fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr,
        T::Err: fmt::Display,
    {
        match StrOr::<Vec<String>>::deserialize(d)? {
            StrOr::Str(s) => s
                .split([',', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(parse)
                .collect(),
            StrOr::Value(items) => items.iter().map(|s| parse(s)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    const QUO_KEY: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";

    #[test]
    fn no_file_and_no_environment_gives_the_embedded_default() {
        let (c, _) = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.server.listen, vec!["127.0.0.1:18792".parse().unwrap()]);
        assert_eq!(c.server.admin_listen, "127.0.0.1:18800".parse().unwrap());
        assert_eq!(c.server.max_body_bytes, 1 << 20);
        assert_eq!(c.openphone.tolerance_secs, 300);
        assert!(c.twilio.auth_tokens.is_empty());
    }

    #[test]
    fn environment_overrides_the_file_and_splits_lists() {
        let f = file(&format!(
            "data_dir = \"/srv/a\"\n[server]\nlisten = [\"127.0.0.1:1\"]\npublic_urls = [\"https://a.example\"]\n[openphone]\nsigning_keys = [\"{QUO_KEY}\"]\n"
        ));
        let (c, prov) = Config::load_from(
            Some(f.path()),
            env(&[
                ("HOOKLOG_DATA_DIR", "/srv/b"),
                ("HOOKLOG_SERVER_LISTEN", "127.0.0.1:18792, 127.0.0.1:18797"),
                ("HOOKLOG_TWILIO_AUTH_TOKENS", "tok1,tok2"),
                ("HOOKLOG_OPENPHONE_TOLERANCE_SECS", "60"),
                ("HOOKLOG_TWILIO_VOICE_SAY", "Hello"),
                ("HOOKLOG_CONFIG", "ignored"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/b"));
        assert_eq!(c.server.listen.len(), 2);
        assert_eq!(
            c.twilio.auth_tokens,
            vec![Secret::new("tok1"), Secret::new("tok2")]
        );
        assert_eq!(c.openphone.tolerance_secs, 60);
        assert_eq!(c.openphone.signing_keys.len(), 1);
        assert_eq!(c.twilio.voice.say.as_deref(), Some("Hello"));
        assert_eq!(prov.origin("server.listen"), "env HOOKLOG_SERVER_LISTEN");
        assert!(prov.origin("server.public_urls").starts_with("file "));
    }

    #[test]
    fn a_secret_file_supplies_the_value_and_its_key_is_named_on_error() {
        let secret = file("tok-from-file\n");
        let (c, _) = Config::load_from(
            None,
            env(&[
                (
                    "HOOKLOG_TWILIO_AUTH_TOKENS_FILE",
                    secret.path().to_str().unwrap(),
                ),
                ("HOOKLOG_SERVER_PUBLIC_URLS", "https://hooks.example.com"),
            ]),
        )
        .unwrap();
        assert_eq!(c.twilio.auth_tokens, vec![Secret::new("tok-from-file")]);

        let err = Config::load_from(
            None,
            env(&[("HOOKLOG_SALESMSG_SECRETS_FILE", "/nonexistent/secret")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("salesmsg.secrets_file"), "{err}");
        assert!(err.contains("HOOKLOG_SALESMSG_SECRETS_FILE"), "{err}");
    }

    #[test]
    fn dispatch_routes_come_from_the_file_and_url_token_and_timeout_from_the_environment() {
        let cfg = file(
            "[dispatch]\nurl = \"http://gw.example/file\"\n\
             [[dispatch.routes]]\nkinds = [\"message.received\"]\nagent = \"acquisitions\"\n\
             [[dispatch.routes]]\nkinds = [\"call.ringing\", \"call.completed\"]\nprovider = \"quo\"\n\
             line = \"+15550001111\"\nagent = \"atlas\"\nurl = \"https://atlas.example/hook\"\n",
        );
        let token = file("gw-token-from-file\n");
        let (c, _) = Config::load_from(
            Some(cfg.path()),
            env(&[
                ("HOOKLOG_DISPATCH_URL", "http://gw.example/env"),
                (
                    "HOOKLOG_DISPATCH_TOKEN_FILE",
                    token.path().to_str().unwrap(),
                ),
                ("HOOKLOG_DISPATCH_TIMEOUT_SECS", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(c.dispatch.url.as_deref(), Some("http://gw.example/env"));
        assert_eq!(c.dispatch.token, Some(Secret::new("gw-token-from-file")));
        assert_eq!(
            (c.dispatch.timeout_secs, c.dispatch.dead_letter_after_secs),
            (7, 3600)
        );
        assert_eq!(c.dispatch.routes.len(), 2);
        assert_eq!(c.dispatch.routes[1].agent, "atlas");
        assert!(!c.to_redacted_toml().contains("gw-token-from-file"));

        let err = Config::load_from(Some(cfg.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dispatch.token"), "no token with a url: {err}");
        let err = Config::load_from(
            None,
            env(&[
                ("HOOKLOG_DISPATCH_URL", "http://gw.example/env"),
                ("HOOKLOG_DISPATCH_TOKEN", "tok-123456"),
                ("HOOKLOG_DISPATCH_TIMEOUT_SECS", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("dispatch.timeout_secs") && err.contains("HOOKLOG_DISPATCH_TIMEOUT_SECS"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_bad_key_and_its_origin() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("HOOKLOG_SERVER_LISTEN", "not-an-addr")], "server.listen"),
            (
                &[("HOOKLOG_OPENPHONE_TOLERANCE_SECS", "soon")],
                "openphone.tolerance_secs",
            ),
            (
                &[("HOOKLOG_OPENPHONE_TOLERANCE_SECS", "0")],
                "openphone.tolerance_secs",
            ),
            (
                &[("HOOKLOG_OPENPHONE_SIGNING_KEYS", "not base64!")],
                "openphone.signing_keys",
            ),
            (
                &[("HOOKLOG_TWILIO_AUTH_TOKENS", "abc")],
                "twilio.auth_tokens",
            ),
            (
                &[("HOOKLOG_SERVER_PUBLIC_URLS", "https://Hooks.Example.com")],
                "server.public_urls",
            ),
            (
                &[("HOOKLOG_SERVER_MAX_BODY_BYTES", "0")],
                "server.max_body_bytes",
            ),
            (
                &[("HOOKLOG_SERVER_ADMIN_TOKEN", "short")],
                "server.admin_token",
            ),
            (
                &[("HOOKLOG_SERVER_HEADER_READ_TIMEOUT_SECS", "0")],
                "server.header_read_timeout_secs",
            ),
            (
                &[("HOOKLOG_SERVER_BODY_READ_TIMEOUT_SECS", "0")],
                "server.body_read_timeout_secs",
            ),
            (
                &[("HOOKLOG_SERVER_MAX_HEADER_BYTES", "4096")],
                "server.max_header_bytes",
            ),
        ];
        for (vars, key) in cases {
            let err = Config::load_from(None, env(vars)).unwrap_err().to_string();
            assert!(err.contains(key), "expected `{key}` in: {err}");
            assert!(err.contains(vars[0].0), "expected the env var in: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_sections_are_errors_not_ignored() {
        let f = file("[server]\nlisten_addr = \"127.0.0.1:1\"\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_addr"), "{err}");
        let f = file("[postgress]\nurl = \"x\"\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgress"), "{err}");
        let err = Config::load_from(None, env(&[("HOOKLOG_NOPE_X", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HOOKLOG_NOPE_X"), "{err}");
    }

    #[test]
    fn invalid_toml_names_the_file_and_line() {
        let f = file("[server\nlisten = 1\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not valid TOML") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_or_rendered_config() {
        let (c, _) = Config::load_from(
            None,
            env(&[
                ("HOOKLOG_TWILIO_AUTH_TOKENS", "supersecret-token-1"),
                ("HOOKLOG_SERVER_PUBLIC_URLS", "https://hooks.example.com"),
                ("HOOKLOG_SALESMSG_SECRETS", "salesmsg-secret-2"),
                ("HOOKLOG_OPENPHONE_SIGNING_KEYS", QUO_KEY),
                ("HOOKLOG_SERVER_ADMIN_TOKEN", "admin-token-abcdefgh"),
            ]),
        )
        .unwrap();
        let debug = format!("{c:?}");
        let rendered = c.to_redacted_toml();
        for secret in [
            "supersecret-token-1",
            "salesmsg-secret-2",
            QUO_KEY,
            "admin-token-abcdefgh",
        ] {
            assert!(!debug.contains(secret), "{secret} in Debug");
            assert!(!rendered.contains(secret), "{secret} in rendered config");
        }
        assert!(rendered.contains("<redacted>"));
    }

    #[test]
    fn the_postgres_url_comes_from_a_file_and_never_shows_and_bad_keys_are_named() {
        let url = file("postgres://u:pw-secret-9@db.example.com:6543/postgres?sslmode=require\n");
        let (c, _) = Config::load_from(
            None,
            env(&[
                ("HOOKLOG_POSTGRES_URL_FILE", url.path().to_str().unwrap()),
                ("HOOKLOG_POSTGRES_BATCH", "250"),
                ("HOOKLOG_POSTGRES_SCHEMA", "hooklog"),
                ("HOOKLOG_POSTGRES_MIGRATE_ON_START", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.postgres.url.as_ref().unwrap().expose(),
            "postgres://u:pw-secret-9@db.example.com:6543/postgres?sslmode=require"
        );
        assert_eq!(
            (
                c.postgres.batch,
                c.postgres.schema.as_str(),
                c.postgres.migrate_on_start
            ),
            (250, "hooklog", false)
        );
        assert!(!c.to_redacted_toml().contains("pw-secret-9"));
        assert!(!format!("{c:?}").contains("pw-secret-9"));

        let (c, _) = Config::load_from(None, env(&[])).unwrap();
        assert!(c.postgres.url.is_none(), "no sync unless configured");
        for (var, value, key) in [
            ("HOOKLOG_POSTGRES_SCHEMA", "Bad-Name", "postgres.schema"),
            ("HOOKLOG_POSTGRES_BATCH", "0", "postgres.batch"),
            (
                "HOOKLOG_POSTGRES_URL",
                "postgres://h/db?sslmode=sometimes",
                "postgres.url",
            ),
        ] {
            let err = Config::load_from(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains(var), "{err}");
        }
    }

    #[test]
    fn setting_a_key_and_its_file_twice_is_an_error() {
        let secret = file("x");
        let err = Config::load_from(
            None,
            env(&[
                ("HOOKLOG_SALESMSG_SECRETS", "abcdefghij"),
                (
                    "HOOKLOG_SALESMSG_SECRETS_FILE",
                    secret.path().to_str().unwrap(),
                ),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("keep one"), "{err}");
    }

    #[test]
    fn retention_keys_default_to_keep_forever_and_are_validated() {
        let (c, _) = Config::load_from(None, env(&[])).unwrap();
        assert_eq!((c.log.retention_days, c.log.prune_interval_secs), (0, 3600));
        let f = file("[log]\nretention_days = 30\nprune_interval_secs = 600\n");
        let (c, _) =
            Config::load_from(Some(f.path()), env(&[("HOOKLOG_LOG_RETENTION_DAYS", "14")]))
                .unwrap();
        assert_eq!((c.log.retention_days, c.log.prune_interval_secs), (14, 600));
        let err = Config::load_from(None, env(&[("HOOKLOG_LOG_PRUNE_INTERVAL_SECS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.prune_interval_secs"), "{err}");
        let err = Config::load_from(None, env(&[("HOOKLOG_LOG_RETENTION_DAYS", "99999")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.retention_days"), "{err}");
    }
}
