//! What can go wrong talking to Postgres: one error enum for the URL, TLS, the connection, the
//! statements and the migrations, and [`describe`], which puts a server error in one line with
//! its SQLSTATE and detail; and `Failure`, the sink's classification of a failed batch (data
//! Postgres refused, or anything worth retrying).

use std::path::PathBuf;

use crate::state::StateError;

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
    /// Objects the pending migrations would create are already in the schema: they are not
    /// hooklog's (the migration that would create them never ran). Nothing was changed.
    #[error("postgres.schema `{schema}` already holds {} object(s) that hooklog's pending migrations would create: {}. hooklog never touches tables it did not create, so nothing was changed. Set `[postgres] schema` to hooklog's own schema (the default `hooklog`) or another schema without these names; to fill existing tables, map them with `[[postgres.mirror]]`.", conflicts.len(), conflicts.join("; "))]
    Conflicts {
        /// The schema.
        schema: String,
        /// Each conflicting object, with the migration that would create it.
        conflicts: Vec<String>,
    },
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

/// Why one attempt failed, classified once.
pub(crate) enum Failure {
    /// Postgres refused the data (SQLSTATE 22xxx, 23xxx): isolate the record.
    Data(String),
    /// Anything else: retry later, on a new connection if this one is gone.
    Transient(String),
}

impl From<PgError> for Failure {
    fn from(e: PgError) -> Self {
        Failure::Transient(e.to_string())
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        let data = e
            .as_db_error()
            .is_some_and(|db| matches!(&db.code().code()[..2], "22" | "23"));
        if data {
            Failure::Data(describe(&e))
        } else {
            Failure::Transient(format!("postgres: {}", describe(&e)))
        }
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        Failure::Transient(e.to_string())
    }
}
