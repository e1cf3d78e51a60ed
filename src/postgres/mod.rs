//! The Postgres (Supabase) side of the sync: configuration, connections, migrations, and the
//! pure projection of log records into table rows. The consumer that drives them is
//! [`crate::consumers::postgres`].
//!
//! - [`connect`]: one `tokio-postgres` connection from a URL, with TLS when the URL asks for
//!   it (`sslmode=require` encrypts, `verify-ca`/`verify-full` or a `ca_file` also
//!   authenticate the server), and the connection task spawned on the caller's runtime.
//! - [`migrate`]: the numbered files of `schema/`, embedded in the binary, applied once each
//!   and recorded in `hooklog_schema_migrations`.
//! - [`rows`]: what each record becomes (pure: no I/O, no clock), and [`tables`]: the upsert
//!   statements with the merge rule of each column.
//!
//! # Statement mode
//!
//! Supabase's transaction pooler (port 6543) hands each transaction to any server connection,
//! so a named prepared statement made in one transaction may not exist in the next. hooklog
//! therefore never prepares a named statement: control statements (`BEGIN`, `COMMIT`,
//! migrations) go through the simple query protocol, and statements with parameters through
//! `query_typed`/`execute_typed`, which send Parse/Bind/Execute for the *unnamed* statement
//! with the parameter types given by the caller, in one round trip. (`Client::query` with a
//! `&str` would prepare a named statement `s<N>` first.) Session state (`SET`, advisory
//! locks, temporary tables) is never relied on either: the schema is written into every
//! statement, and migrations take a transaction-scoped advisory lock.

pub mod connect;
pub mod migrate;
pub mod rows;
pub mod tables;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Secret;

pub use connect::{connect, Connected};

/// Why talking to Postgres failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// `postgres.url` is not a connection string tokio-postgres understands, or asks for
    /// something hooklog does not support.
    #[error("postgres.url: {0}")]
    Url(String),
    /// The CA file cannot be read or holds no certificate.
    #[error("postgres.ca_file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// TLS could not be set up (a rustls configuration error).
    #[error("TLS: {0}")]
    Tls(String),
    /// Connecting, or a statement, failed. The message includes the SQLSTATE when the server
    /// sent one.
    #[error("postgres: {0}")]
    Db(String),
    /// A statement did not finish in time (the connection is dropped).
    #[error("postgres: no answer within {0} s")]
    Timeout(u64),
    /// An applied migration's file changed since it was applied.
    #[error("migration {version} ({name}) was applied with checksum {applied}, but the file now has {current}: migrations are never edited once released; add a new one")]
    MigrationChanged {
        /// The version.
        version: i32,
        /// Its file name.
        name: String,
        /// Checksum recorded when it was applied.
        applied: String,
        /// Checksum of the embedded file.
        current: String,
    },
    /// The configured schema name cannot be used.
    #[error("postgres.schema `{0}`: use lower-case letters, digits and `_`, starting with a letter or `_`, at most 63 characters")]
    Schema(String),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Db(describe(&e))
    }
}

/// A tokio-postgres error in one line, with the server's SQLSTATE and detail when present.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// `[postgres]`: the Supabase sync. Without `url` the sink does not run (its cursor waits at
/// 0 and catches up from the log once configured).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL, e.g. `postgres://postgres.<ref>:<password>@<pooler host>:6543/postgres?sslmode=require`.
    /// A secret (it carries the password): prefer `url_file` or `HOOKLOG_POSTGRES_URL_FILE`.
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
    /// With it, the server's certificate is verified (`sslmode=require` becomes `verify-ca`).
    #[serde(deserialize_with = "crate::config::de::opt_parsed")]
    pub ca_file: Option<PathBuf>,
    /// Seconds the sink may keep failing before an alert is raised.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub alert_after_secs: u64,
    /// Schema of the tables (created by the migrations if missing).
    pub schema: String,
    /// Seconds to wait for a connection, and for each batch's transaction.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub timeout_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            batch: 1000,
            migrate_on_start: true,
            ca_file: None,
            alert_after_secs: 300,
            schema: "public".into(),
            timeout_secs: 30,
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
        if self.alert_after_secs == 0 {
            return Err("alert_after_secs: must be at least 1".into());
        }
        quote_schema(&self.schema).map_err(|e| format!("schema: {e}"))?;
        if let Some(url) = &self.url {
            connect::parse_url(url.expose()).map_err(|e| format!("url: {e}"))?;
        }
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
    }
}
