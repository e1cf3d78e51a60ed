//! Expiry of `processed_webhook_events`: the rows past their `expires_at` are deleted in small
//! statements, each its own short transaction, never inside a batch's.
//!
//! `expires_at` comes from the log (the record's receipt plus the dedup TTL), so the row is a
//! function of the log like every other: a rewind that inserts an expired row again is fine,
//! the next pass deletes it again.
//!
//! One statement deletes at most [`ROWS_PER_STATEMENT`] rows, picked by `ctid` (a TID scan, no
//! index needed); a pass runs at most [`STATEMENTS_PER_PASS`] statements, so it holds the sink
//! up for a bounded time, and what is left waits for the next pass. Statements go through
//! `execute_typed` (the unnamed statement), so the transaction pooler is fine.

use std::time::Duration;

use tokio_postgres::types::Type;

use super::config::quote_schema;
use super::error::PgError;

/// Most rows one statement deletes.
pub const ROWS_PER_STATEMENT: i64 = 1000;

/// Most statements one pass runs.
pub const STATEMENTS_PER_PASS: u32 = 20;

/// What a pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Rows deleted.
    pub rows: u64,
    /// Statements run.
    pub statements: u32,
    /// The pass stopped at its bound: expired rows may be left for the next one.
    pub bounded: bool,
}

/// The delete statement for the schema quoted as `q`: `$1` is the most rows it deletes.
pub(super) fn statement(q: &str) -> String {
    format!(
        "delete from {q}.processed_webhook_events where ctid = any(array(\
         select ctid from {q}.processed_webhook_events where expires_at < now() limit $1))"
    )
}

/// One pass on `schema`: statements of at most `rows_per_statement` rows until one deletes
/// fewer, or `max_statements` ran; each statement within `timeout`.
pub async fn expire(
    client: &tokio_postgres::Client,
    schema: &str,
    rows_per_statement: i64,
    max_statements: u32,
    timeout: Duration,
) -> Result<Expired, PgError> {
    let sql = statement(&quote_schema(schema)?);
    expire_with(client, &sql, rows_per_statement, max_statements, timeout).await
}

/// [`expire`] with the statement already built.
pub(super) async fn expire_with(
    client: &tokio_postgres::Client,
    sql: &str,
    rows_per_statement: i64,
    max_statements: u32,
    timeout: Duration,
) -> Result<Expired, PgError> {
    let limit = rows_per_statement.max(1);
    let mut done = Expired::default();
    while done.statements < max_statements {
        // Outside any transaction: the statement is its own.
        let deleted =
            tokio::time::timeout(timeout, client.execute_typed(sql, &[(&limit, Type::INT8)]))
                .await
                .map_err(|_| PgError::Timeout(timeout.as_secs()))??;
        done.statements += 1;
        done.rows += deleted;
        if (deleted as i64) < limit {
            return Ok(done);
        }
    }
    done.bounded = true;
    Ok(done)
}
