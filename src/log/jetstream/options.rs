//! How to reach the stream: the options the engine opens with (from `[log.jetstream]`) and
//! the credentials it authenticates with.

use std::path::PathBuf;
use std::time::Duration;

/// How to reach the server.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// No authentication.
    #[default]
    None,
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes it.
    File(PathBuf),
    /// A token.
    Token(String),
    /// An NKey seed (`SU…`).
    NKey(String),
}

/// Options for opening the JetStream log.
#[derive(Clone, Debug)]
pub struct JetStreamOptions {
    /// Seed URLs, comma-separated (`nats://host:4222`, `tls://…`), as
    /// [`crate::log::config::seed_urls`] parses them.
    pub url: String,
    /// Stream name.
    pub stream: String,
    /// The subject records are published on (the stream binds exactly this one).
    pub subject: String,
    /// Replicas of the stream (1, or 3 on a cluster).
    pub replicas: usize,
    /// The stream's duplicate window: a publish retried within it is stored once.
    pub duplicate_window: Duration,
    /// How long an append waits for the stream's acknowledgement before answering 503.
    pub ack_timeout: Duration,
    /// Authentication.
    pub credentials: Credentials,
    /// A CA certificate to trust (PEM).
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// sled page cache of the local state database, in bytes.
    pub state_cache_capacity: u64,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        JetStreamOptions {
            url: "nats://127.0.0.1:4222".into(),
            stream: "HOOKLOG".into(),
            subject: "hooklog.events".into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            ack_timeout: Duration::from_secs(2),
            credentials: Credentials::None,
            tls_ca: None,
            tls_client: None,
            tls_required: false,
            state_cache_capacity: 16 * 1024 * 1024,
        }
    }
}
