//! `[log]` and `[log.jetstream]`: which engine holds the log and how it is tuned. The values are
//! checked with the rest of the configuration (`crate::config`), which names the failing key;
//! [`seed_urls`] is the one parser of `log.jetstream.nats_url`, used by that check and by the
//! engine when it connects, so a list the configuration accepts is the list it connects to.

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
    /// The seed URLs of the NATS servers, comma-separated (`nats://host:4222`,
    /// `tls://host:4222`; a bare `host:port` is `nats://`). Every seed is tried at start;
    /// once connected, the client also learns the cluster's other servers and reconnects
    /// to any of them. See [`seed_urls`].
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

/// Parses `log.jetstream.nats_url`: one or more NATS URLs separated by commas (blanks around
/// them ignored), each `nats://host[:port]`, `tls://host[:port]` or a bare `host[:port]`
/// (`nats://`; the port defaults to 4222). Refused, with the seed's position and why: an empty
/// entry, another scheme, no host, a path, query or fragment (meaningless to NATS, so most
/// likely a typo), and credentials in the URL: they would be printed wherever the URL is
/// (logs, status), so they go in `token`, `nkey_seed` or `creds_path`. The message never
/// repeats the user-info part.
pub fn seed_urls(list: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let seeds: Vec<&str> = list.split(',').map(str::trim).collect();
    let total = seeds.len();
    let mut out = Vec::with_capacity(total);
    for (i, seed) in seeds.into_iter().enumerate() {
        let which = if total == 1 {
            "the URL".to_owned()
        } else {
            format!("seed {} of {total}", i + 1)
        };
        let shown = without_userinfo(seed);
        let bad = |why: &str| {
            format!(
                "{which} (`{shown}`) {why}: write nats://host:port or tls://host:port, several \
                 separated by commas"
            )
        };
        if seed.is_empty() {
            return Err(bad("is empty"));
        }
        if seed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains a blank or a control character"));
        }
        if let Some((scheme, _)) = seed.split_once("://") {
            if scheme != "nats" && scheme != "tls" {
                return Err(bad(&format!("has the scheme `{scheme}`, not nats or tls")));
            }
        }
        let addr: async_nats::ServerAddr = seed
            .parse()
            .map_err(|e: std::io::Error| bad(&format!("is not a NATS URL ({e})")))?;
        if addr.has_user_pass() || addr.password().is_some() {
            return Err(bad(
                "carries credentials: set log.jetstream.token, nkey_seed or creds_path instead",
            ));
        }
        if addr.host().is_empty() {
            return Err(bad("has no host"));
        }
        let url = addr.clone().into_inner();
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("has a path, query or fragment"));
        }
        out.push(addr);
    }
    Ok(out)
}

/// `seed` with any `user:password@` removed, for messages.
fn without_userinfo(seed: &str) -> String {
    let (scheme, rest) = match seed.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), seed),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}…@{}", &rest[at + 1..]),
        None => seed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::seed_urls;

    #[test]
    fn a_comma_separated_list_gives_every_seed_in_order() {
        let seeds =
            seed_urls("nats://10.0.0.1:4222, tls://nats-2.example.com:4333 ,10.0.0.3").unwrap();
        let shown: Vec<(String, String, u16)> = seeds
            .iter()
            .map(|s| (s.scheme().to_owned(), s.host().to_owned(), s.port()))
            .collect();
        assert_eq!(
            shown,
            [
                ("nats".into(), "10.0.0.1".into(), 4222),
                ("tls".into(), "nats-2.example.com".into(), 4333),
                ("nats".into(), "10.0.0.3".into(), 4222),
            ]
        );
        assert_eq!(seed_urls("nats://127.0.0.1:4222").unwrap().len(), 1);
    }

    #[test]
    fn a_bad_seed_is_refused_naming_its_position_and_the_problem() {
        for (list, says) in [
            (
                "nats://a:4222,nats://b:notaport",
                "seed 2 of 2 (`nats://b:notaport`)",
            ),
            ("nats://a:4222,,nats://c:4222", "seed 2 of 3 (``) is empty"),
            (
                "http://a:4222",
                "the URL (`http://a:4222`) has the scheme `http`",
            ),
            ("ws://a:4222", "has the scheme `ws`"),
            ("nats://a:4222/path", "has a path, query or fragment"),
            ("nats://a:4222?x=1", "has a path, query or fragment"),
            ("nats://a b:4222", "contains a blank"),
            ("nats://", "the URL (`nats://`)"),
        ] {
            let err = seed_urls(list).unwrap_err();
            assert!(err.contains(says), "{list}: {err}");
            assert!(err.contains("nats://host:port"), "{err}");
        }
    }

    #[test]
    fn credentials_in_a_seed_are_refused_without_being_repeated() {
        for list in [
            "nats://a:4222,nats://alice:s3cr3tpw@b:4222",
            "nats://s3cr3tpw@b:4222",
        ] {
            let err = seed_urls(list).unwrap_err();
            assert!(err.contains("carries credentials"), "{err}");
            assert!(!err.contains("s3cr3tpw"), "{err}");
            assert!(err.contains("…@b:4222"), "{err}");
        }
    }
}
