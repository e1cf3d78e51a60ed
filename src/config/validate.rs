//! The checks serde cannot make: ranges, cross-key rules, and values that must decode (signing
//! secrets, URLs). Each section that lives in its component checks itself (`validate`); this
//! file checks the sections `config` owns and names the failing key with its origin.

use super::env::Provenance;
use super::error::ConfigError;
use super::Config;
use crate::log::config::LogBackend;

/// The largest `server.max_connections`: a file descriptor each, so more than this would need
/// an open-file limit above the usual 1 048 576 ceiling (`fs.nr_open`).
const MAX_CONNECTIONS: usize = 1_000_000;

impl Config {
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
        if !(1..=MAX_CONNECTIONS).contains(&self.server.max_connections) {
            return Err(bad(
                "server.max_connections",
                format!(
                    "{} is outside 1..={MAX_CONNECTIONS}; keep it below the open-file limit \
                     (LimitNOFILE) divided by the number of listeners",
                    self.server.max_connections
                ),
            ));
        }
        if !super::url::is_loopback_host(&self.server.admin_listen.ip().to_string())
            && !self.server.allow_remote_admin
        {
            return Err(bad(
                "server.admin_listen",
                "is not a loopback address: the admin API (the operator token reaches every \
                 route: opt-outs, sending, the kill switch) would be reachable from the network. \
                 Keep it on 127.0.0.1 or ::1 and reach it through SSH or a proxy, or, on a \
                 network you trust, set [server] allow_remote_admin = true \
                 (HOOKLOG_SERVER_ALLOW_REMOTE_ADMIN=true)"
                    .into(),
            ));
        }
        if !(1_000..=100_000_000).contains(&self.server.replay_cache_entries) {
            return Err(bad(
                "server.replay_cache_entries",
                format!(
                    "{} is outside 1000..=100000000",
                    self.server.replay_cache_entries
                ),
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
        for (name, token) in &self.server.agent_tokens {
            let key = format!("server.agent_tokens.{name}");
            let name_ok = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !name_ok {
                return Err(bad(
                    &key,
                    format!(
                        "`{name}` is not an agent name: use lower-case letters, digits, `_` and \
                         `-` (it is recorded as `agent:<name>` on what the agent asks for)"
                    ),
                ));
            }
            if token.expose().trim().len() < 16 {
                return Err(bad(
                    &key,
                    "the token must be at least 16 characters; generate one with `openssl rand \
                     -hex 32`"
                        .into(),
                ));
            }
            if self.server.admin_token.as_ref() == Some(token) {
                return Err(bad(
                    &key,
                    "this token is server.admin_token too: the operator token reaches every \
                     route, so give the agent a token of its own"
                        .into(),
                ));
            }
            if let Some((other, _)) = self
                .server
                .agent_tokens
                .iter()
                .find(|(other, t)| *other < name && *t == token)
            {
                return Err(bad(
                    &key,
                    format!(
                        "the same token as server.agent_tokens.{other}: give each agent a token \
                         of its own, so that what it asks for names it"
                    ),
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
            ("doctor", self.doctor.validate()),
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
            crate::log::config::seed_urls(&j.nats_url)
                .map_err(|m| bad("log.jetstream.nats_url", m))?;
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
        // A signed request older than the dedup window but inside the tolerance would be
        // accepted after its first copy's dedup key was forgotten: stored as new.
        let dedup_secs = self.dedup.ttl_hours.saturating_mul(3600);
        if self.openphone.tolerance_secs > dedup_secs {
            return Err(bad(
                "openphone.tolerance_secs",
                format!(
                    "{} s is longer than the dedup window ([dedup] ttl_hours = {}, {dedup_secs} \
                     s, from {}): a replay older than the window would be stored as new. Lower \
                     tolerance_secs or raise ttl_hours",
                    self.openphone.tolerance_secs,
                    self.dedup.ttl_hours,
                    prov.origin("dedup.ttl_hours")
                ),
            ));
        }
        for (i, key) in self.openphone.signing_keys.iter().enumerate() {
            crate::signature::HmacKey::from_quo_secret(key.expose()).map_err(|e| {
                // Signing secrets are base64, which has no comma: a comma is two keys on one line.
                let hint = if key.expose().contains(',') {
                    "; it contains a comma: give several keys one per line, not comma-separated"
                } else {
                    ""
                };
                bad(
                    "openphone.signing_keys",
                    format!(
                        "key #{} is not a base64 or whsec_ signing secret: {e}{hint}",
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
        // Twilio auth tokens are hexadecimal: a comma is two tokens written the way lists
        // were once split, which would now be one token that matches nothing.
        if self
            .twilio
            .auth_tokens
            .iter()
            .any(|t| t.expose().contains(','))
        {
            return Err(bad(
                "twilio.auth_tokens",
                "an auth token contains a comma: give several tokens one per line (in the \
                 environment, a newline between them; in auth_tokens_file, one per line), not \
                 comma-separated"
                    .into(),
            ));
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
            // The API key or auth token goes there with every call.
            super::url::check_outgoing(url).map_err(|m| bad(key, m))?;
        }
        Ok(())
    }

    /// What a valid configuration still deserves a warning for, one line each: the daemon logs
    /// them at start and `check-config` prints them. Never a value.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !super::url::is_loopback_host(&self.server.admin_listen.ip().to_string()) {
            out.push(format!(
                "server.admin_listen is {}, not loopback (server.allow_remote_admin = true): the \
                 admin API is reachable from the network; firewall the port and keep the \
                 operator token secret",
                self.server.admin_listen
            ));
        }
        if self
            .salesmsg
            .secrets
            .iter()
            .any(|s| s.expose().contains(','))
        {
            out.push(
                "salesmsg.secrets: a secret contains a comma; secret lists are split on newlines \
                 only, so it is one secret. If you meant several, give one per line"
                    .to_owned(),
            );
        }
        out
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
