//! Schema migrations: the numbered files of `schema/` (embedded at build time), applied in
//! order, each once, recorded in `<schema>.hooklog_schema_migrations` with a checksum.
//!
//! Everything runs in one transaction: a transaction-scoped advisory lock (per schema) makes
//! concurrent `migrate` runs wait for each other, the schema is created if missing, and
//! `SET LOCAL search_path` points the unqualified names of the files at the schema. Nothing
//! outlives the transaction, so this works through the Supabase transaction pooler too. An
//! applied migration whose file changed is an error, never re-applied: released migrations
//! are immutable.

use sha2::{Digest, Sha256};
use tokio_postgres::types::Type;

use super::config::quote_schema;
use super::error::{describe, PgError};

/// A migration file.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its number (the file's prefix).
    pub version: i32,
    /// The file name in `schema/`.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init.sql",
        sql: include_str!("../../../schema/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_outbound.sql",
        sql: include_str!("../../../schema/0002_outbound.sql"),
    },
];

impl Migration {
    /// Hex SHA-256 of the file.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Versions applied by this run.
    pub applied: Vec<i32>,
    /// Versions that were already there.
    pub present: Vec<i32>,
}

/// Applies the pending migrations to `schema`.
pub async fn migrate(client: &mut tokio_postgres::Client, schema: &str) -> Result<Report, PgError> {
    migrate_up_to(client, schema, i32::MAX).await
}

/// Applies the pending migrations up to version `last` (included) to `schema`: a database
/// can be held at an older version (a staged rollout, a test of an upgrade path).
pub async fn migrate_up_to(
    client: &mut tokio_postgres::Client,
    schema: &str,
    last: i32,
) -> Result<Report, PgError> {
    let q = quote_schema(schema)?;
    let tx = client.transaction().await?;
    tx.execute_typed(
        "select pg_advisory_xact_lock(hashtext($1))",
        &[(&format!("hooklog migrate {schema}"), Type::TEXT)],
    )
    .await?;
    tx.batch_execute(&format!(
        "create schema if not exists {q};
         create table if not exists {q}.hooklog_schema_migrations (
             version     integer primary key,
             name        text not null,
             checksum    text not null,
             applied_at  timestamptz not null default now()
         );"
    ))
    .await?;
    let rows = tx
        .query_typed(
            &format!("select version, name, checksum from {q}.hooklog_schema_migrations"),
            &[],
        )
        .await?;
    let mut done = std::collections::BTreeMap::new();
    for row in rows {
        let version: i32 = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        let checksum: String = row.try_get(2)?;
        done.insert(version, (name, checksum));
    }
    let mut report = Report::default();
    for m in MIGRATIONS.iter().filter(|m| m.version <= last) {
        let current = m.checksum();
        if let Some((name, applied)) = done.get(&m.version) {
            if *applied != current {
                return Err(PgError::MigrationChanged {
                    version: m.version,
                    name: name.clone(),
                    applied: applied.clone(),
                    current,
                });
            }
            report.present.push(m.version);
            continue;
        }
        tx.batch_execute(&format!("set local search_path to {q}"))
            .await?;
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| PgError::Db(format!("migration {}: {}", m.name, describe(&e))))?;
        tx.execute_typed(
            &format!(
                "insert into {q}.hooklog_schema_migrations (version, name, checksum) values ($1, $2, $3)"
            ),
            &[
                (&m.version, Type::INT4),
                (&m.name, Type::TEXT),
                (&current, Type::TEXT),
            ],
        )
        .await?;
        report.applied.push(m.version);
    }
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_named_after_their_number() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
            assert!(m.name.ends_with(".sql"));
        }
    }
}
