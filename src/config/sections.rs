//! The sections `config` owns because several components read them: `[server]`, the
//! providers' credentials (`[openphone]`, `[twilio]`, `[salesmsg]`), `[dedup]` and
//! `[consumers]`. A section that one component reads lives in that component (`[postgres]`,
//! `[dispatch]`, `[sender]`, `[staleness]`, `[alerts]`, `[compliance]`, `[[lines]]`, `[log]`)
//! and [`super::Config`] composes it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::de;
use super::secret::Secret;

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
    /// Admin API listener. Loopback unless `allow_remote_admin`.
    #[serde(deserialize_with = "de::parsed")]
    pub admin_listen: SocketAddr,
    /// Lets `admin_listen` be a non-loopback address (a warning is logged at start). Off: the
    /// admin API (the operator token's every route) is never reachable from the network by a
    /// typo.
    #[serde(deserialize_with = "de::parsed")]
    pub allow_remote_admin: bool,
    /// Public base URLs Twilio signs against (e.g. `https://hooks.example.com`).
    #[serde(deserialize_with = "de::list")]
    pub public_urls: Vec<String>,
    /// Largest accepted request body.
    #[serde(deserialize_with = "de::parsed")]
    pub max_body_bytes: u64,
    /// Admin bearer token; generated into `<data_dir>/admin.token` when absent.
    #[serde(deserialize_with = "de::opt_parsed")]
    pub admin_token: Option<Secret>,
    /// `[server.agent_tokens]`: agent name → its token (`name = "…"` or
    /// `name_file = "…"`). An agent token reaches only the outbound API
    /// (docs/api.md#roles); the name is recorded on what it asks for.
    pub agent_tokens: BTreeMap<String, Secret>,
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
    /// Connections open at once on each listener; past it, new connections wait in the
    /// kernel's backlog until one closes (src/http/listener.rs).
    #[serde(deserialize_with = "de::parsed")]
    pub max_connections: usize,
    /// How many stored webhooks the edge remembers to answer their replays without storing
    /// them again (the oldest are forgotten first).
    #[serde(deserialize_with = "de::parsed")]
    pub replay_cache_entries: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 18792))],
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 18800)),
            allow_remote_admin: false,
            public_urls: Vec::new(),
            max_body_bytes: 1024 * 1024,
            admin_token: None,
            agent_tokens: BTreeMap::new(),
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            // Longer than the tunnel's own idle timeout for origin connections (cloudflared:
            // 90 s), so that the tunnel closes first and never sends a request on a
            // connection we are closing.
            idle_timeout_secs: 120,
            max_header_bytes: 32 * 1024,
            // Each connection is one file descriptor: 4096 on the webhook listener and 4096 on
            // the admin one stay far below the unit's LimitNOFILE=65536 (the log and NATS need
            // a few dozen more), so the cap, not EMFILE, is what a flood meets. It is still
            // far above what the tunnel and the providers open (tens), and bounds the memory of
            // held connections (hyper's buffers: up to ~max_header_bytes each, 128 MiB at most
            // with the default 32 KiB).
            max_connections: 4096,
            // About 100 bytes each, ~95 MB once full (docs/configuration.md); a million covers
            // a dedup window (72 h) of ~4 webhooks/s.
            replay_cache_entries: 500_000,
        }
    }
}

/// `[openphone]` (Quo)
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuoConfig {
    /// Webhook signing secrets: base64 (legacy) or `whsec_…` (Standard Webhooks); any may match.
    /// As one string: one per line.
    #[serde(deserialize_with = "de::lines")]
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

impl Default for QuoConfig {
    fn default() -> Self {
        QuoConfig {
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
    /// Auth tokens (primary first); any may match. As one string: one per line.
    #[serde(deserialize_with = "de::lines")]
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
    /// Shared secrets accepted in `?secret=`; any may match. As one string: one per line (a
    /// comma is part of a secret).
    #[serde(deserialize_with = "de::lines")]
    pub secrets: Vec<Secret>,
    /// Whether an inbound SalesMsg START/UNSTOP/YES may lift an opt-out (on the line it was
    /// sent to). Off by default: the URL secret is SalesMsg's only credential, so whoever
    /// holds it could otherwise re-subscribe anyone. A SalesMsg opt-out always counts.
    #[serde(deserialize_with = "de::parsed")]
    pub trust_opt_in: bool,
}
