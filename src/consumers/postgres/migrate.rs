//! Schema migrations: the numbered files of `schema/` (embedded at build time), applied in
//! order, each once, recorded in `<schema>.hooklog_schema_migrations` with a checksum.
//!
//! Everything runs in one transaction: a transaction-scoped advisory lock (per schema) makes
//! concurrent `migrate` runs wait for each other, the schema is created if missing, and
//! `SET LOCAL search_path` points the unqualified names of the files at the schema. Nothing
//! outlives the transaction, so this works through the Supabase transaction pooler too. An
//! applied migration whose file changed is an error, never re-applied: released migrations
//! are immutable.
//!
//! hooklog only touches objects it created. Before anything is applied, [`plan`] (the same
//! code under the lock) looks up every object the pending migrations would create
//! ([`objects`](super::objects), parsed from their SQL) in the target schema: one that is
//! already there was not created by hooklog (the migration that would create it never ran), so
//! it is a conflict, and the run is refused with every conflict named and nothing changed
//! ([`PgError::Conflicts`]). Without this, `create table if not exists` would silently skip a
//! table of the same name with other columns (the Node handlers' tables in `public`), and the
//! sink could not write. `hooklog migrate --check` prints the [`Plan`] in a read-only
//! transaction.

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::types::Type;

use super::config::quote_schema;
use super::error::{describe, PgError};
use super::objects::{objects, Object, ObjectKind};

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

/// A migration not applied yet, and what it would create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Its version.
    pub version: i32,
    /// Its file name.
    pub name: &'static str,
    /// The objects it creates, in file order.
    pub objects: Vec<Object>,
}

/// A migration recorded in `hooklog_schema_migrations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Its version.
    pub version: i32,
    /// Its file name, as recorded.
    pub name: String,
}

/// An object a pending migration would create that already exists in the schema: not
/// hooklog's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The pending migration's version.
    pub version: i32,
    /// Its file name.
    pub migration: &'static str,
    /// The object it would create.
    pub object: Object,
    /// What is there under that name: `table`, `index`, `view`, `sequence`, `column`, …
    pub existing: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} would create it; a {} of that name is already there)",
            self.object, self.migration, self.existing
        )
    }
}

/// An applied migration whose embedded file no longer has the recorded checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// Its version.
    pub version: i32,
    /// Its file name, as recorded.
    pub name: String,
    /// The checksum recorded when it was applied.
    pub applied: String,
    /// The checksum of the file in this binary.
    pub current: String,
}

/// What `migrate` would do to a schema, found without changing anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The schema.
    pub schema: String,
    /// The schema does not exist: it would be created.
    pub create_schema: bool,
    /// `hooklog_schema_migrations` does not exist: it would be created.
    pub create_migrations_table: bool,
    /// Migrations to apply, in order, with their objects.
    pub pending: Vec<Pending>,
    /// Migrations applied already (this binary's, unchanged).
    pub present: Vec<Applied>,
    /// Objects the pending migrations would create that are already there.
    pub conflicts: Vec<Conflict>,
    /// Applied migrations whose file changed.
    pub changed: Vec<Changed>,
    /// Applied migrations this binary does not know (a newer hooklog migrated the schema).
    pub unknown: Vec<Applied>,
}

impl Plan {
    /// Nothing to do: every migration of this binary is applied, unchanged.
    pub fn is_current(&self) -> bool {
        !self.create_schema
            && !self.create_migrations_table
            && self.pending.is_empty()
            && self.conflicts.is_empty()
            && self.changed.is_empty()
    }

    /// `migrate` would refuse: a conflict, or a changed migration.
    pub fn is_blocked(&self) -> bool {
        !self.conflicts.is_empty() || !self.changed.is_empty()
    }

    /// The error `migrate` refuses with, if it would.
    pub fn refusal(&self) -> Option<PgError> {
        if let Some(c) = self.changed.first() {
            return Some(PgError::MigrationChanged {
                version: c.version,
                name: c.name.clone(),
                applied: c.applied.clone(),
                current: c.current.clone(),
            });
        }
        (!self.conflicts.is_empty()).then(|| PgError::Conflicts {
            schema: self.schema.clone(),
            conflicts: self.conflicts.iter().map(ToString::to_string).collect(),
        })
    }

    /// The plan in lines, for `hooklog migrate --check`.
    pub fn to_text(&self) -> String {
        let s = &self.schema;
        let mut out = String::new();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        line(format!(
            "schema {s}: {}",
            if self.create_schema {
                "missing, would be created"
            } else {
                "exists"
            }
        ));
        if self.create_migrations_table {
            line(format!("create table {s}.hooklog_schema_migrations"));
        }
        for a in &self.present {
            line(format!("present: migration {} ({})", a.version, a.name));
        }
        for a in &self.unknown {
            line(format!(
                "present: migration {} ({}), unknown to this hooklog (a newer version applied it)",
                a.version, a.name
            ));
        }
        for p in &self.pending {
            line(format!(
                "pending: migration {} ({}) would create:",
                p.version, p.name
            ));
            for o in &p.objects {
                line(format!("  {o}"));
            }
        }
        for c in &self.changed {
            line(format!(
                "changed: migration {} ({}) was applied with checksum {}, the file now has {}",
                c.version, c.name, c.applied, c.current
            ));
        }
        for c in &self.conflicts {
            line(format!("conflict: {c}"));
        }
        let verdict = if let Some(e) = self.refusal() {
            format!("refused: {e}")
        } else if self.is_current() {
            "current: nothing to do".to_owned()
        } else {
            "ok: `hooklog migrate` would create the above".to_owned()
        };
        line(verdict);
        out
    }
}

/// What `migrate` would do to `schema`, found in a read-only transaction: nothing is created,
/// not even the schema. Through the transaction pooler too (no named statement, no session
/// state).
pub async fn plan(client: &mut tokio_postgres::Client, schema: &str) -> Result<Plan, PgError> {
    let tx = client.build_transaction().read_only(true).start().await?;
    let plan = inspect(&tx, schema, i32::MAX).await?;
    tx.rollback().await?;
    Ok(plan)
}

/// The plan for migrations up to `last`, read in `tx`.
async fn inspect(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    last: i32,
) -> Result<Plan, PgError> {
    let q = quote_schema(schema)?;
    let schema_arg = schema.to_owned();
    let schema_exists: bool = tx
        .query_typed_one(
            "select exists (select 1 from pg_catalog.pg_namespace where nspname = $1)",
            &[(&schema_arg, Type::TEXT)],
        )
        .await?
        .try_get(0)?;
    let relations = relations_of(tx, schema, &[MIGRATIONS_TABLE.to_owned()]).await?;
    let has_table = relations
        .get(MIGRATIONS_TABLE)
        .is_some_and(|kind| kind == "table");
    let mut done = std::collections::BTreeMap::new();
    if has_table {
        let rows = tx
            .query_typed(
                &format!("select version, name, checksum from {q}.{MIGRATIONS_TABLE}"),
                &[],
            )
            .await?;
        for row in rows {
            let version: i32 = row.try_get(0)?;
            let name: String = row.try_get(1)?;
            let checksum: String = row.try_get(2)?;
            done.insert(version, (name, checksum));
        }
    }
    let mut plan = Plan {
        schema: schema.to_owned(),
        create_schema: !schema_exists,
        create_migrations_table: !has_table,
        pending: Vec::new(),
        present: Vec::new(),
        conflicts: Vec::new(),
        changed: Vec::new(),
        unknown: done
            .iter()
            .filter(|(v, _)| !MIGRATIONS.iter().any(|m| m.version == **v))
            .map(|(v, (name, _))| Applied {
                version: *v,
                name: name.clone(),
            })
            .collect(),
    };
    if let Some(kind) = relations.get(MIGRATIONS_TABLE).filter(|k| *k != "table") {
        // Not a table hooklog could have made: reading it would fail, creating it too.
        plan.conflicts.push(Conflict {
            version: 0,
            migration: "hooklog_schema_migrations",
            object: Object {
                kind: ObjectKind::Table,
                name: MIGRATIONS_TABLE.to_owned(),
                table: None,
            },
            existing: kind.clone(),
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version <= last) {
        let current = m.checksum();
        match done.get(&m.version) {
            Some((name, applied)) if *applied != current => plan.changed.push(Changed {
                version: m.version,
                name: name.clone(),
                applied: applied.clone(),
                current,
            }),
            Some((name, _)) => plan.present.push(Applied {
                version: m.version,
                name: name.clone(),
            }),
            None => plan.pending.push(Pending {
                version: m.version,
                name: m.name,
                objects: objects(m.sql)
                    .map_err(|e| PgError::Db(format!("migration {}: {e}", m.name)))?,
            }),
        }
    }
    if !schema_exists || plan.pending.is_empty() {
        return Ok(plan);
    }
    // Look up every object the pending migrations would create. A table a pending migration
    // creates is new, so only columns added to older (applied) tables are looked up.
    let created: Vec<String> = plan
        .pending
        .iter()
        .flat_map(|p| &p.objects)
        .filter(|o| o.kind != ObjectKind::Column)
        .map(|o| o.name.clone())
        .collect();
    let existing = relations_of(tx, schema, &created).await?;
    let altered: Vec<String> = plan
        .pending
        .iter()
        .flat_map(|p| &p.objects)
        .filter(|o| o.kind == ObjectKind::Column)
        .filter_map(|o| o.table.clone())
        .filter(|t| !created.contains(t))
        .collect();
    let columns = columns(tx, schema, &altered).await?;
    let mut conflicts = Vec::new();
    for p in &plan.pending {
        for o in &p.objects {
            let existing = match o.kind {
                ObjectKind::Table | ObjectKind::Index => existing.get(&o.name).cloned(),
                ObjectKind::Column => o
                    .table
                    .as_ref()
                    .filter(|t| columns.contains(&((*t).clone(), o.name.clone())))
                    .map(|_| "column".to_owned()),
            };
            if let Some(existing) = existing {
                conflicts.push(Conflict {
                    version: p.version,
                    migration: p.name,
                    object: o.clone(),
                    existing,
                });
            }
        }
    }
    plan.conflicts.extend(conflicts);
    Ok(plan)
}

/// The migrations' own table.
const MIGRATIONS_TABLE: &str = "hooklog_schema_migrations";

/// The relations among `names` in `schema`, by name, with their kind in words.
async fn relations_of(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    names: &[String],
) -> Result<std::collections::BTreeMap<String, String>, PgError> {
    let schema = schema.to_owned();
    let names = names.to_vec();
    let rows = tx
        .query_typed(
            "select c.relname::text, c.relkind::text from pg_catalog.pg_class c \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname::text = any($2)",
            &[(&schema, Type::TEXT), (&names, Type::TEXT_ARRAY)],
        )
        .await?;
    let mut out = std::collections::BTreeMap::new();
    for row in rows {
        let name: String = row.try_get(0)?;
        let kind: String = row.try_get(1)?;
        let words = match kind.as_str() {
            "r" | "p" => "table",
            "i" | "I" => "index",
            "v" => "view",
            "m" => "materialized view",
            "S" => "sequence",
            "f" => "foreign table",
            "c" => "composite type",
            _ => "relation",
        };
        out.insert(name, words.to_owned());
    }
    Ok(out)
}

/// The (table, column) pairs of `tables` in `schema`.
async fn columns(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    tables: &[String],
) -> Result<std::collections::BTreeSet<(String, String)>, PgError> {
    if tables.is_empty() {
        return Ok(Default::default());
    }
    let schema = schema.to_owned();
    let tables = tables.to_vec();
    let rows = tx
        .query_typed(
            "select table_name::text, column_name::text from information_schema.columns \
             where table_schema = $1 and table_name::text = any($2)",
            &[(&schema, Type::TEXT), (&tables, Type::TEXT_ARRAY)],
        )
        .await?;
    let mut out = std::collections::BTreeSet::new();
    for row in rows {
        out.insert((row.try_get(0)?, row.try_get(1)?));
    }
    Ok(out)
}

/// Applies the pending migrations to `schema`.
pub async fn migrate(client: &mut tokio_postgres::Client, schema: &str) -> Result<Report, PgError> {
    migrate_up_to(client, schema, i32::MAX).await
}

/// Applies the pending migrations up to version `last` (included) to `schema`: a database
/// can be held at an older version (a staged rollout, a test of an upgrade path). Refused,
/// with nothing changed, when the plan has a conflict or a changed migration.
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
    // Under the lock: another run may have applied some while this one waited.
    let plan = inspect(&tx, schema, last).await?;
    if let Some(refusal) = plan.refusal() {
        // Dropping the transaction rolls it back: nothing was changed.
        return Err(refusal);
    }
    tx.batch_execute(&format!(
        "create schema if not exists {q};
         create table if not exists {q}.{MIGRATIONS_TABLE} (
             version     integer primary key,
             name        text not null,
             checksum    text not null,
             applied_at  timestamptz not null default now()
         );"
    ))
    .await?;
    let mut report = Report {
        applied: Vec::new(),
        present: plan.present.iter().map(|a| a.version).collect(),
    };
    for p in &plan.pending {
        let Some(m) = MIGRATIONS.iter().find(|m| m.version == p.version) else {
            continue;
        };
        tx.batch_execute(&format!("set local search_path to {q}"))
            .await?;
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| PgError::Db(format!("migration {}: {}", m.name, describe(&e))))?;
        tx.execute_typed(
            &format!(
                "insert into {q}.{MIGRATIONS_TABLE} (version, name, checksum) values ($1, $2, $3)"
            ),
            &[
                (&m.version, Type::INT4),
                (&m.name, Type::TEXT),
                (&m.checksum(), Type::TEXT),
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
