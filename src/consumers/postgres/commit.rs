//! One batch's transaction: the statements (built once with the schema written in), the upserts
//! of every planned row, the stored outbound messages folded with the batch's records, the
//! `[[postgres.mirror]]` statements for the rows the batch touched (after the upserts, so they
//! read the rows as this batch leaves them), and the fenced cursor update; and how a failure is
//! classified (data, or transient).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::types::{ToSql, Type};

use super::cells::{self, Cell, Params, Row};
use super::config::NAME;
use super::error::{Failure, PgError};
use super::metrics::SinkMetrics;
use super::mirror;
use super::plan::Planned;
use super::rows;
use super::tables::{self, Table, Ty};
use crate::consumers::outbound::{Message, OutboundRecord};

/// Statements, built once with the schema written in.
pub(super) struct Sql {
    pub(super) upserts: Vec<(&'static Table, String)>,
    pub(super) init_cursor: String,
    pub(super) read_cursor: String,
    pub(super) load_messages: String,
    pub(super) advance: String,
    pub(super) rewind: String,
    pub(super) expire: String,
}

impl Sql {
    pub(super) fn new(q: &str) -> Sql {
        Sql {
            upserts: tables::TABLES
                .iter()
                .map(|t| (*t, t.upsert_sql(q)))
                .collect(),
            init_cursor: format!(
                "insert into {q}.hooklog_cursors (name, seq, epoch) values ($1, 0, 0) on conflict (name) do nothing"
            ),
            read_cursor: format!("select seq, epoch from {q}.hooklog_cursors where name = $1"),
            load_messages: format!(
                "select id, state::text from {q}.outbound_messages where id = any($1) for update"
            ),
            advance: format!(
                "update {q}.hooklog_cursors set seq = greatest(seq, $2), updated_at = now() \
                 where name = $1 and seq = $3 and epoch = $4"
            ),
            rewind: format!(
                "update {q}.hooklog_cursors set seq = $2, epoch = epoch + 1, updated_at = now() \
                 where name = $1 returning seq, epoch"
            ),
            expire: super::expire::statement(q),
        }
    }
}

/// One transaction: the rows of `planned`, then the fenced cursor update to at least `last`.
pub(super) struct Commit {
    pub(super) client: Arc<tokio_postgres::Client>,
    pub(super) sql: Arc<Sql>,
    pub(super) planned: Vec<Planned>,
    pub(super) last: i64,
    pub(super) expected: i64,
    pub(super) epoch: i64,
    pub(super) timeout: Duration,
    pub(super) metrics: SinkMetrics,
    /// The mirror's statements, checked against the database on this connection.
    pub(super) mirror: Arc<Vec<mirror::Statement>>,
}

/// The keys of the source rows a batch touched, as the mirror statement's `$1`.
enum Keys {
    Text(Vec<String>),
    Int8(Vec<i64>),
}

impl Keys {
    fn of(statement: &mirror::Statement, rows: &[&Row]) -> Keys {
        let name = statement.source_key.name;
        match statement.source_key.ty {
            Ty::Int8 => Keys::Int8(
                rows.iter()
                    .filter_map(|r| match r.get(name) {
                        Some(Cell::Int8(Some(n))) => Some(*n),
                        _ => None,
                    })
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            ),
            _ => Keys::Text(
                rows.iter()
                    .filter_map(|r| match r.get(name) {
                        Some(Cell::Text(Some(s))) => Some(s.clone()),
                        _ => None,
                    })
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            ),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Keys::Text(v) => v.is_empty(),
            Keys::Int8(v) => v.is_empty(),
        }
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Keys::Text(v) => v,
            Keys::Int8(v) => v,
        }
    }
}

impl Commit {
    /// Runs it; the cursor it committed, or why not. The connection is left outside any
    /// transaction (or is broken, which the caller sees on `is_closed`).
    pub(super) async fn run(self) -> Result<i64, Failure> {
        let started = Instant::now();
        let timeout = self.timeout;
        let client = self.client.clone();
        match tokio::time::timeout(timeout, self.transaction()).await {
            Err(_) => Err(Failure::Transient(
                PgError::Timeout(timeout.as_secs()).to_string(),
            )),
            Ok(Err(e)) => {
                // Leave the aborted transaction (harmless if none is open); if the connection
                // itself is gone this fails too, and the caller reconnects.
                let _ = client.batch_execute("rollback").await;
                Err(e)
            }
            Ok(Ok(seq)) => {
                self.metrics.committed_seq.set(seq);
                self.metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
                Ok(seq)
            }
        }
    }

    /// The `outbound_messages` rows of the batch's message records: the stored messages they
    /// are about (read in this transaction, locked), with the records folded in.
    pub(super) async fn messages(&self) -> Result<Vec<Row>, Failure> {
        let records: Vec<(u64, &OutboundRecord)> = self
            .planned
            .iter()
            .filter_map(|p| p.message.as_ref().map(|m| (p.seq.0, m)))
            .collect();
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = records
            .iter()
            .filter_map(|(_, r)| rows::message_id(r))
            .map(|id| id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let stored = self
            .client
            .query_typed(&self.sql.load_messages, &[(&ids, Type::TEXT_ARRAY)])
            .await?;
        let mut messages = HashMap::with_capacity(stored.len());
        for row in stored {
            let id: String = row.try_get(0)?;
            let state: String = row.try_get(1)?;
            let message: Message = serde_json::from_str(&state).map_err(|e| {
                // Someone edited the row: isolate the record rather than overwrite it.
                Failure::Data(format!(
                    "outbound_messages.state of {id} cannot be read: {e}"
                ))
            })?;
            messages.insert(id, message);
        }
        let changed = rows::fold_messages(&mut messages, &records);
        Ok(changed
            .iter()
            .filter_map(|id| messages.get(id))
            .map(rows::message_row)
            .collect())
    }

    pub(super) async fn transaction(&self) -> Result<i64, Failure> {
        let client = &self.client;
        client.batch_execute("begin").await?;
        let messages = self.messages().await?;
        let mut by_table: HashMap<&'static str, Vec<&Row>> = HashMap::new();
        for row in self.planned.iter().flat_map(|p| &p.rows).chain(&messages) {
            by_table.entry(row.table.name).or_default().push(row);
        }
        let mut statements: Vec<(&str, Vec<(Params, Type)>)> = Vec::new();
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for (table, upsert) in &self.sql.upserts {
            let Some(rows) = by_table.get(table.name) else {
                continue;
            };
            counts.push((table.name, rows.len()));
            for round in cells::rounds(rows) {
                statements.push((upsert.as_str(), Params::columns(table, &round)));
            }
        }
        let refs: Vec<(&str, Vec<Param>)> = statements
            .iter()
            .map(|(upsert, params)| {
                (
                    *upsert,
                    params
                        .iter()
                        .map(|(p, t)| (p.as_sql(), t.clone()))
                        .collect(),
                )
            })
            .collect();
        let mirrors: Vec<(&mirror::Statement, Keys)> = self
            .mirror
            .iter()
            .filter_map(|m| {
                let keys = Keys::of(m, by_table.get(m.from.name)?);
                (!keys.is_empty()).then_some((m, keys))
            })
            .collect();
        let mirror_refs: Vec<(&str, Vec<Param>)> = mirrors
            .iter()
            .map(|(m, keys)| {
                let values = std::iter::once(keys.as_sql())
                    .chain(m.pointers.iter().map(|p| p as &(dyn ToSql + Sync)));
                (m.sql.as_str(), values.zip(m.types()).collect())
            })
            .collect();
        let fence: [Param; 4] = [
            (&NAME, Type::TEXT),
            (&self.last, Type::INT8),
            (&self.expected, Type::INT8),
            (&self.epoch, Type::INT8),
        ];
        // Sent back to back (tokio-postgres pipelines requests issued together); the server
        // runs them in order, and the first error aborts the transaction.
        let upserts = futures_util::future::try_join_all(
            refs.iter().map(|(q, p)| client.execute_typed(q, p)),
        );
        let mirrored = futures_util::future::try_join_all(
            mirror_refs
                .iter()
                .map(|(q, p)| client.query_typed_one(q, p)),
        );
        let fenced = client.execute_typed(&self.sql.advance, &fence);
        let (_, mirrored, moved) =
            futures_util::future::try_join3(upserts, mirrored, fenced).await?;
        if moved == 0 {
            client.batch_execute("rollback").await?;
            // Someone else moved the cursor; the caller reads it again before retrying.
            return Err(Failure::Transient(format!(
                "the cursor row `{NAME}` moved under this writer (expected seq {}, epoch {}): another hooklog writes to this database, or it was rewound; retrying from the stored cursor",
                self.expected, self.epoch
            )));
        }
        client.batch_execute("commit").await?;
        for (table, n) in counts {
            self.metrics
                .rows
                .with_label_values(&[table])
                .inc_by(n as u64);
        }
        for ((m, _), row) in mirrors.iter().zip(&mirrored) {
            // count(*) + count(*): a bigint, never null.
            let n: i64 = row.try_get(0).unwrap_or(0);
            self.metrics
                .mirror_rows
                .with_label_values(&[&m.target])
                .inc_by(n.max(0) as u64);
        }
        Ok(self.expected.max(self.last))
    }
}

/// A statement parameter with its declared type (unnamed statements carry the types).
pub(super) type Param<'a> = (&'a (dyn ToSql + Sync), Type);
