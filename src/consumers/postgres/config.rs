//! `[postgres]`: where the Supabase sync writes, and how hard it tries. Without `url` the
//! sink does not run (its cursor waits at 0 and catches up from the log once configured).
//!
//! Validation never prints the URL: it carries the password.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::connect;
use super::error::PgError;
use super::mirror::MirrorConfig;
use crate::config::secret::Secret;

/// The consumer's name: its cursor's in the log, its row's in `hooklog_cursors`, its section's.
pub const NAME: &str = "postgres";

/// `[postgres]`: the Supabase sync. Without `url` the sink does not run (its cursor waits at
/// 0 and catches up from the log once configured).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL, e.g. `postgres://postgres.<ref>:<password>@<pooler host>:6543/postgres`.
    /// A secret (it carries the password): prefer `url_file` or `HOOKLOG_POSTGRES_URL_FILE`.
    /// Without `sslmode`, a host off this machine gets `verify-full` (see
    /// [`connect`](mod@super::connect)).
    #[serde(deserialize_with = "crate::config::de::opt_parsed")]
    pub url: Option<Secret>,
    /// Most records per transaction.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub batch: usize,
    /// Apply pending migrations when the sink first connects (`hooklog migrate` does it by
    /// hand).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub migrate_on_start: bool,
    /// PEM file of the CA that signed the server's certificate (Supabase: `prod-ca-2021.crt`).
    /// With it, the server's certificate is verified against it (`sslmode=require` becomes
    /// `verify-ca`; `verify-full`, the default to a remote host, checks the name too).
    #[serde(deserialize_with = "crate::config::de::opt_parsed")]
    pub ca_file: Option<PathBuf>,
    /// Seconds the sink may keep failing before an alert is raised.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub alert_after_secs: u64,
    /// Schema of hooklog's own tables (created by the migrations if missing). `hooklog` by
    /// default: the Node handlers' tables in `public` have the same names and other columns,
    /// and the migrations refuse a schema holding tables they did not create. A deployment
    /// that ran with `public` before sets `schema = "public"` to keep its rows.
    pub schema: String,
    /// Seconds to wait for a connection, and for each batch's transaction.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub timeout_secs: u64,
    /// Seconds between two passes deleting the `processed_webhook_events` rows past their
    /// `expires_at` (in small statements, each its own transaction); 0: never.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub expire_interval_secs: u64,
    /// `[[postgres.mirror]]`: existing tables (the Node handlers') filled from hooklog's
    /// projection in the same transaction (see [`mirror`](mod@super::mirror)). File only.
    pub mirror: Vec<MirrorConfig>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            batch: 1000,
            migrate_on_start: true,
            ca_file: None,
            alert_after_secs: 300,
            schema: "hooklog".into(),
            timeout_secs: 30,
            expire_interval_secs: 300,
            mirror: Vec::new(),
        }
    }
}

impl PostgresConfig {
    /// Checks what serde cannot. Messages start with the bare key name and never contain the
    /// URL (it holds the password).
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.batch) {
            return Err(format!("batch: {} is outside 1..=10000", self.batch));
        }
        if !(1..=3600).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs: {} is outside 1..=3600",
                self.timeout_secs
            ));
        }
        if self.expire_interval_secs > 7 * 24 * 3600 {
            return Err(format!(
                "expire_interval_secs: {} is more than a week (604800); 0 turns expiry off",
                self.expire_interval_secs
            ));
        }
        if self.alert_after_secs == 0 {
            return Err("alert_after_secs: must be at least 1".into());
        }
        quote_schema(&self.schema).map_err(|e| format!("schema: {e}"))?;
        if let Some(url) = &self.url {
            connect::parse_url(url.expose()).map_err(|e| format!("url: {e}"))?;
        }
        super::mirror::validate_config(&self.mirror)?;
        if let Some(path) = &self.ca_file {
            std::fs::metadata(path)
                .map_err(|e| format!("ca_file: cannot read {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// The schema name as a quoted SQL identifier. Only plain lower-case names are accepted, so
/// the quoting is exact and no name can inject SQL.
pub fn quote_schema(schema: &str) -> Result<String, PgError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(format!("\"{schema}\""))
    } else {
        Err(PgError::Schema(schema.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_schema_names_are_accepted_and_they_are_quoted() {
        assert_eq!(quote_schema("public").unwrap(), "\"public\"");
        assert_eq!(quote_schema("_t1").unwrap(), "\"_t1\"");
        for bad in [
            "",
            "Public",
            "1abc",
            "a\"b",
            "a;drop",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(quote_schema(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_key_and_never_prints_the_url() {
        let c = PostgresConfig {
            batch: 0,
            ..PostgresConfig::default()
        };
        assert!(c.validate().unwrap_err().starts_with("batch:"));
        let c = PostgresConfig {
            url: Some(Secret::new("postgres://u:hunter2@h/db?sslmode=sometimes")),
            ..PostgresConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert!(e.starts_with("url:") && !e.contains("hunter2"), "{e}");
        let c = PostgresConfig {
            schema: "Bad".into(),
            ..PostgresConfig::default()
        };
        assert!(c.validate().unwrap_err().starts_with("schema:"));
        let c = PostgresConfig {
            expire_interval_secs: 604_801,
            ..PostgresConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("expire_interval_secs:"));
    }

    #[test]
    fn hooklog_writes_into_a_schema_of_its_own_by_default_and_expires_every_five_minutes() {
        let c = PostgresConfig::default();
        assert_eq!(c.schema, "hooklog");
        assert_eq!(c.expire_interval_secs, 300);
        assert!(c.validate().is_ok());
    }
}
