//! `[log]` and `[log.jetstream]`: which engine holds the log and how it is tuned. The values are
//! checked with the rest of the configuration (`crate::config`), which names the failing key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::de;
use crate::config::secret::Secret;

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
