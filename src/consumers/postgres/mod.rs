//! The `postgres` consumer: the Supabase sync. It projects every record into the tables of
//! `schema/` (see [`rows`] for what goes where) over one real connection.
//!
//! The component's files:
//!
//! - this file: the consumer ([`PostgresSink`]), which drives the others;
//! - [`config`]: the `[postgres]` section;
//! - [`connect`](mod@connect): one `tokio-postgres` connection from a URL, with TLS when the URL asks for
//!   it (`sslmode=require` encrypts, `verify-ca`/`verify-full` or a `ca_file` also
//!   authenticate the server), and the connection task spawned on the caller's runtime.
//! - [`migrate`]: the numbered files of `schema/`, embedded in the binary, applied once each
//!   and recorded in `hooklog_schema_migrations`, refused when an object a pending one would
//!   create is already there (not hooklog's); [`objects`]: what each file creates, parsed from
//!   its SQL;
//! - [`rows`]: what each record becomes (pure: no I/O, no clock), [`tables`]: the upsert
//!   statements with the merge rule of each column, and [`cells`]: a row's values and a
//!   batch's parameters;
//! - `plan.rs`: the rows of a batch, planned on a blocking thread; `commit.rs`: one batch's
//!   transaction and how its failures are classified;
//! - [`expire`]: the deletion of the `processed_webhook_events` rows past their `expires_at`;
//! - [`mirror`]: `[[postgres.mirror]]`, the existing tables (the Node handlers') filled from the
//!   projection in the same transaction, checked against the database before the sink writes;
//! - [`error`]: [`PgError`], one enum for all of the above.
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
//!
//! # Exactly once
//!
//! A batch is one transaction: the upserts of every row of every record, then a fenced
//! update of this sink's row in `hooklog_cursors`:
//!
//! ```sql
//! update hooklog_cursors set seq = greatest(seq, $last)
//!  where name = 'postgres' and seq = $expected and epoch = $epoch
//! ```
//!
//! `$expected`/`$epoch` are what this process last read or wrote. If another writer moved
//! the row (a second daemon on the same database, a rewind it did not see), no row matches,
//! the transaction is rolled back, the cursor is read again and the batch retried from there.
//! So the rows of a record are committed exactly when the cursor passes it.
//!
//! The Postgres cursor is the truth for this sink. The driver asks for it before each batch
//! ([`Consumer::committed_cursor`]) and continues after it: a batch committed in Postgres whose
//! cursor save in the log was lost by a crash is not applied again, and a database restored
//! to an older state is filled again from where it stands. A rewind moves the Postgres cursor
//! first (and bumps `epoch`, which fences out any writer that planned a batch before it);
//! when Postgres is unreachable the rewind is refused rather than half done.
//!
//! # Pipelining
//!
//! [`Consumer::handle`] parses and builds the rows of a batch on a blocking thread, waits for
//! the previous batch's transaction, then sends this one (all its statements back to back)
//! and returns without waiting for its COMMIT: the driver reads the next batch from the log
//! while Postgres works, so client and server run in parallel (on two cores, about 1.4× the
//! throughput). The driver has already saved its cursor past the batch in flight; if that
//! transaction fails, the failure is reported at the next call, the connection is dropped, and
//! the cursor read again from Postgres takes the driver back to it. A batch at or below the
//! committed cursor (a redrive) is committed before `handle` returns, and on shutdown the
//! driver waits for the batch in flight ([`Consumer::finish`]).
//!
//! # Order independence, duplicates
//!
//! Upserts merge by rules that do not depend on arrival order ([`tables`]).
//! Records dedup flags as duplicates are written to `omni_events` only; this consumer waits
//! for dedup's verdicts (upstream `dedup`) and for the suppression list (upstream
//! `compliance`, whose entries changed by the batch's records go to `sms_optouts`).
//!
//! # The outbound path
//!
//! Records of the outbound path ([`OutboundRecord`](crate::consumers::outbound::OutboundRecord)) give rows besides their `omni_events`
//! one. A dispatch result is one `agent_dispatches` row keyed on its own seq (written once), a
//! line change upserts `outbound_lines` (the higher seq wins). A message's row is not a
//! function of one record but the fold [`crate::consumers::outbound::apply`] of all its records, so it is
//! computed in the batch's transaction: the stored messages the batch's records are about are
//! read (`state`, locked), the records applied in log order, and the messages that changed
//! upserted whole. `apply` ignores a record at or below a message's `last_seq` and a request
//! never replaces a stored message, so a batch applied again (a redrive, a rewind) writes
//! nothing new. A record for a message whose request was never projected is skipped with a
//! warning, as is an outbound record whose body cannot be read (its `omni_events` row stays).
//!
//! # Expiry
//!
//! Every `postgres.expire_interval_secs` (0: never) the sink deletes the
//! `processed_webhook_events` rows past their `expires_at` ([`expire`]): between two batches
//! (no transaction in flight on the connection, so each statement is its own transaction), or
//! while idle ([`Consumer::tick`]), a bounded number of small statements per pass. A failed
//! pass is logged and tried again at the next interval; it never fails a batch.
//!
//! # Failures
//!
//! A connection or server error fails the batch transiently: the driver backs off
//! (exponentially, with jitter) and the next attempt reconnects. Once the sink has been failing
//! for `postgres.alert_after_secs`, one critical alert is raised; one more says when it
//! recovers. A record Postgres refuses as data (SQLSTATE classes 22 and 23) is isolated by
//! re-running the batch record by record: the records before it are committed, the cursor
//! is moved past it, it is dead-lettered, and the driver goes on after it.

pub mod cells;
mod commit;
pub mod config;
pub mod connect;
pub mod error;
pub mod expire;
pub mod metrics;
pub mod migrate;
pub mod mirror;
pub mod objects;
mod plan;
pub mod rows;
pub mod tables;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use tokio_postgres::types::Type;

use crate::alerts::{Alert, Alerter, Severity};
use crate::consumers::compliance;
use crate::consumers::dedup::{self, Verdicts};
use crate::consumers::{Batch, BatchError, Consumer, RewindMode};
use crate::event::Seq;
use crate::live::{Live, Watch};
use crate::metrics::Metrics;
use crate::state::StateStore;

use commit::{Commit, Sql};
pub use config::{quote_schema, PostgresConfig, NAME};
pub use connect::{connect, Connected};
use error::Failure;
pub use error::{describe, PgError};
pub use metrics::SinkMetrics;
pub use mirror::{MirrorConfig, MirrorProblem};
use plan::{Planned, Planner};

/// A live connection and what this process knows of the cursor row.
struct Conn {
    client: Arc<tokio_postgres::Client>,
    seq: i64,
    epoch: i64,
}

/// A transaction sent while the driver reads and plans the next batch.
struct InFlight {
    /// The cursor it sets when it commits.
    target: i64,
    task: tokio::task::JoinHandle<Result<i64, Failure>>,
}

/// Sets the sink's `[[postgres.mirror]]` while it runs (a configuration reload): one shared
/// cell ([`Live`]), cheap and non-blocking. A sink sharing it ([`PostgresSink::sharing_mirror`])
/// takes the new mappings before its next batch and checks them against the database before it
/// writes with them (a refusal stops the sink, as at start); a sink started later (a new
/// leader) starts on them.
#[derive(Clone, Debug)]
pub struct MirrorSetter(Live<Vec<MirrorConfig>>);

impl MirrorSetter {
    /// A cell holding `mirrors` (already validated with the configuration).
    pub fn new(mirrors: Vec<MirrorConfig>) -> MirrorSetter {
        MirrorSetter(Live::new(mirrors))
    }

    /// Replaces the mappings after the static checks (the message names the key, as
    /// `check-config` does); on an error the running mappings stay.
    pub fn set(&self, mirrors: Vec<MirrorConfig>) -> Result<(), String> {
        mirror::validate_config(&mirrors).map_err(|e| format!("postgres.{e}"))?;
        self.0.set(mirrors);
        Ok(())
    }

    /// The mappings now.
    pub fn get(&self) -> Arc<Vec<MirrorConfig>> {
        self.0.get()
    }
}

/// The Postgres sink.
pub struct PostgresSink {
    url: crate::config::secret::Secret,
    config: PostgresConfig,
    /// The schema, quoted.
    schema: String,
    sql: Arc<Sql>,
    conn: Option<Conn>,
    /// The mirror's statements, checked on the live connection; `None`: check before writing.
    mirror: Option<Arc<Vec<mirror::Statement>>>,
    mirror_setter: MirrorSetter,
    /// Tells when the setter's mappings changed.
    mirror_watch: Watch<Vec<MirrorConfig>>,
    /// The last refusal logged (each distinct one is logged once).
    mirror_refused: Option<String>,
    migrated: bool,
    planner: Planner,
    in_flight: Option<InFlight>,
    /// Batches up to this cursor run one transaction at a time, record by record on a data
    /// error: one of them was refused while in flight.
    careful_until: Option<i64>,
    alerter: Alerter,
    metrics: SinkMetrics,
    failing_since: Option<Instant>,
    alerted: bool,
    /// When the next expiry pass is due (never when expiry is off).
    expire_due: Option<Instant>,
}

impl PostgresSink {
    /// A sink for `config` (whose `url` must be set), reading verdicts and the suppression list
    /// from `store`.
    pub fn new(
        config: &PostgresConfig,
        dedup_ttl_hours: u64,
        store: Arc<dyn StateStore>,
        alerter: Alerter,
        metrics: &Metrics,
    ) -> Result<PostgresSink, PgError> {
        let url = config
            .url
            .clone()
            .ok_or_else(|| PgError::Url("not set".into()))?;
        let q = quote_schema(&config.schema)?;
        let verdicts = Verdicts::open(store.as_ref()).map_err(|e| PgError::Db(e.to_string()))?;
        let mirror_setter = MirrorSetter::new(config.mirror.clone());
        Ok(PostgresSink {
            url,
            config: config.clone(),
            sql: Arc::new(Sql::new(&q)),
            schema: q,
            conn: None,
            mirror: None,
            mirror_watch: mirror_setter.0.watch(),
            mirror_setter,
            mirror_refused: None,
            migrated: false,
            planner: Planner {
                verdicts,
                store,
                // The config allows at most a year; the cap only keeps the arithmetic in range.
                dedup_ttl: TimeDelta::hours(dedup_ttl_hours.min(24 * 365 * 100) as i64),
            },
            in_flight: None,
            careful_until: None,
            alerter,
            metrics: SinkMetrics::new(metrics),
            failing_since: None,
            alerted: false,
            // The first pass runs once connected.
            expire_due: (config.expire_interval_secs > 0).then(Instant::now),
        })
    }

    /// Sets `[[postgres.mirror]]` (see [`MirrorSetter`]): checked against the database before
    /// the next batch is written.
    pub fn set_mirror(&mut self, mirrors: Vec<MirrorConfig>) -> Result<(), String> {
        self.mirror_setter.set(mirrors)
    }

    /// A handle that sets this sink's mirror from elsewhere, after the sink moved into its
    /// driver.
    pub fn mirror_setter(&self) -> MirrorSetter {
        self.mirror_setter.clone()
    }

    /// The sink takes its mirror from `setter` (the daemon's, which a reload sets), starting
    /// with the mappings it holds now.
    pub fn sharing_mirror(mut self, setter: MirrorSetter) -> PostgresSink {
        self.config.mirror = setter.get().as_ref().clone();
        self.mirror_watch = setter.0.watch();
        self.mirror_setter = setter;
        self.mirror = None;
        self
    }

    /// Checks the mirror against the database `client` is connected to. A refusal is logged
    /// (once per distinct refusal) and fails the attempt: nothing is written until it is fixed.
    async fn check_mirror(
        &mut self,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<Vec<mirror::Statement>>, Failure> {
        if self.config.mirror.is_empty() {
            self.mirror_refused = None;
            return Ok(Arc::default());
        }
        match mirror::prepare(client, &self.schema, &self.config.mirror).await {
            Ok(statements) => {
                if self.mirror_refused.take().is_some() {
                    tracing::info!("postgres.mirror accepted: the sink writes again");
                }
                let targets: Vec<&str> = statements.iter().map(|s| s.target.as_str()).collect();
                tracing::info!(?targets, "postgres.mirror checked against the database");
                Ok(Arc::new(statements))
            }
            Err(e @ mirror::MirrorError::Db(_)) => Err(Failure::Transient(e.to_string())),
            Err(e) => {
                let message = e.to_string();
                if self.mirror_refused.as_deref() != Some(message.as_str()) {
                    tracing::error!(error = %message, "postgres sink stopped: the mirror does not fit its tables");
                    self.mirror_refused = Some(message.clone());
                }
                Err(Failure::Transient(message))
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs)
    }

    /// The live connection, connecting (and migrating, once) if there is none, with the
    /// mirror checked on it.
    async fn conn(&mut self) -> Result<&mut Conn, Failure> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.drop_conn();
        }
        if let Some(mirrors) = self.mirror_watch.changed() {
            tracing::info!(
                mappings = mirrors.len(),
                "postgres.mirror set: checking it before the next batch"
            );
            self.config.mirror = mirrors.as_ref().clone();
            self.mirror = None;
        }
        if let (Some(c), None) = (&self.conn, &self.mirror) {
            let client = c.client.clone();
            match self.check_mirror(&client).await {
                Ok(statements) => self.mirror = Some(statements),
                Err(f) => {
                    self.drop_conn();
                    return Err(f);
                }
            }
        }
        if self.conn.is_none() {
            let mut connected = connect(
                self.url.expose(),
                self.config.ca_file.as_deref(),
                self.timeout(),
            )
            .await?;
            // Before anything is written (migrations included): a refused mirror stops the
            // sink here, and every new connection checks the tables again.
            self.mirror = Some(self.check_mirror(&connected.client).await?);
            if self.config.migrate_on_start && !self.migrated {
                let report = migrate::migrate(&mut connected.client, &self.config.schema).await?;
                if !report.applied.is_empty() {
                    tracing::info!(applied = ?report.applied, schema = %self.config.schema, "postgres migrations applied");
                }
                self.migrated = true;
            }
            let client = connected.client;
            client
                .execute_typed(&self.sql.init_cursor, &[(&NAME, Type::TEXT)])
                .await?;
            let row = client
                .query_typed_one(&self.sql.read_cursor, &[(&NAME, Type::TEXT)])
                .await?;
            let (seq, epoch): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            tracing::info!(
                tls = connected.tls,
                schema = %self.config.schema,
                committed = seq,
                "postgres sink connected"
            );
            self.metrics.connected.set(1);
            self.metrics.committed_seq.set(seq);
            self.conn = Some(Conn {
                client: Arc::new(client),
                seq,
                epoch,
            });
        }
        match self.conn.as_mut() {
            Some(c) => Ok(c),
            // Set just above.
            None => Err(Failure::Transient("no connection".into())),
        }
    }

    fn drop_conn(&mut self) {
        self.mirror = None;
        if self.conn.take().is_some() {
            self.metrics.connected.set(0);
        }
    }

    /// Tracks how long the sink has been failing; alerts once past the threshold and once on
    /// recovery.
    fn observe<T>(&mut self, result: &Result<T, BatchError>) {
        match result {
            Err(BatchError::Transient(error)) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                let secs = since.elapsed().as_secs();
                self.metrics.failing_seconds.set(secs as i64);
                if !self.alerted && secs >= self.config.alert_after_secs {
                    self.alerted = true;
                    self.alerter.raise(Alert {
                        key: "postgres_sink_failing".into(),
                        severity: Severity::Critical,
                        title: format!("Postgres sink failing for {secs} s"),
                        reason: format!("last error: {error}"),
                        next_step: "check the database and postgres.url; webhooks are still \
                                    accepted and the sink catches up by itself once Postgres \
                                    answers (`hooklog-replay status` shows its lag)"
                            .into(),
                    });
                }
            }
            _ => {
                if let Some(since) = self.failing_since.take() {
                    self.metrics.failing_seconds.set(0);
                    if std::mem::take(&mut self.alerted) {
                        self.alerter.raise(Alert {
                            key: "postgres_sink_recovered".into(),
                            severity: Severity::Info,
                            title: "Postgres sink recovered".into(),
                            reason: format!(
                                "it had been failing for {} s; it now catches up",
                                since.elapsed().as_secs()
                            ),
                            next_step: "none".into(),
                        });
                    }
                }
            }
        }
    }

    /// Waits for the transaction in flight, if any, and takes in its outcome. A failure drops
    /// the connection, so the next one reads the committed cursor again and the driver goes
    /// back to it; a data error also makes the batches up to it run carefully.
    async fn settle(&mut self) -> Result<(), BatchError> {
        let Some(flight) = self.in_flight.take() else {
            return Ok(());
        };
        let outcome = match flight.task.await {
            Ok(r) => r,
            Err(e) => Err(Failure::Transient(format!(
                "the transaction task failed: {e}"
            ))),
        };
        match outcome {
            Ok(seq) => {
                if let Some(c) = self.conn.as_mut() {
                    c.seq = seq;
                }
                Ok(())
            }
            Err(f) => {
                self.drop_conn();
                let error = match f {
                    Failure::Transient(e) => e,
                    Failure::Data(e) => {
                        self.careful_until = Some(flight.target);
                        format!("{e}; running the batch again record by record")
                    }
                };
                Err(BatchError::Transient(error))
            }
        }
    }

    /// A transaction for `planned` on the live connection (connecting if needed).
    async fn commit_of(&mut self, planned: Vec<Planned>, last: Seq) -> Result<Commit, Failure> {
        let conn = self.conn().await?;
        let (client, expected, epoch) = (conn.client.clone(), conn.seq, conn.epoch);
        let Some(mirror) = self.mirror.clone() else {
            // `conn` checks the mirror before it returns a connection.
            return Err(Failure::Transient("the mirror is not checked yet".into()));
        };
        Ok(Commit {
            mirror,
            client,
            sql: self.sql.clone(),
            planned,
            last: last.0 as i64,
            expected,
            epoch,
            timeout: self.timeout(),
            metrics: self.metrics.clone(),
        })
    }

    /// Commits now (not in flight); the connection's cursor follows.
    async fn commit_now(&mut self, planned: Vec<Planned>, last: Seq) -> Result<(), Failure> {
        let commit = self.commit_of(planned, last).await?;
        match commit.run().await {
            Ok(seq) => {
                if let Some(c) = self.conn.as_mut() {
                    c.seq = seq;
                }
                Ok(())
            }
            Err(f) => {
                if matches!(f, Failure::Transient(_)) {
                    self.drop_conn();
                }
                Err(f)
            }
        }
    }

    async fn try_handle(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        let events = batch.events();
        let (Some(first), Some(last)) =
            (events.first().map(|e| e.seq), events.last().map(|e| e.seq))
        else {
            return Ok(());
        };
        // Build the rows on a blocking thread: meanwhile the runtime sends the previous
        // batch's transaction, and the server works on it.
        let planner = self.planner.clone();
        let shared = batch.clone();
        let planned = tokio::task::spawn_blocking(move || planner.plan(&shared))
            .await
            .map_err(|e| BatchError::Transient(format!("the planning task failed: {e}")))?
            .map_err(transient)?;
        self.settle().await?;
        let committed = self.conn().await.map_err(transient)?.seq;
        // Between two batches: nothing is in flight on the connection.
        self.expire_if_due().await;
        // A batch at or below the committed cursor is a redrive: its outcome is wanted now. A
        // batch that overlaps one refused in flight is run carefully (record by record on a
        // data error), whatever its length now.
        let careful = last.0 as i64 <= committed
            || self
                .careful_until
                .is_some_and(|until| first.0 as i64 <= until);
        if !careful {
            self.careful_until = None;
            let commit = self.commit_of(planned, last).await.map_err(transient)?;
            self.in_flight = Some(InFlight {
                target: commit.expected.max(commit.last),
                task: tokio::spawn(commit.run()),
            });
            return Ok(());
        }
        match self.commit_now(planned.clone(), last).await {
            Ok(()) => Ok(()),
            Err(Failure::Transient(e)) => Err(BatchError::Transient(e)),
            Err(Failure::Data(error)) => {
                tracing::warn!(%error, "postgres refused a batch as data; isolating the record");
                for p in planned {
                    let seq = p.seq;
                    match self.commit_now(vec![p], seq).await {
                        Ok(()) => {}
                        Err(Failure::Transient(e)) => return Err(BatchError::Transient(e)),
                        Err(Failure::Data(error)) => {
                            // Pass the record in Postgres too, so that the committed cursor
                            // and the driver's agree; it stays in the dead-letter list.
                            self.commit_now(Vec::new(), seq).await.map_err(transient)?;
                            return Err(BatchError::Poison { seq, error });
                        }
                    }
                }
                // Every record went in alone: the batch's refusal did not come from one record.
                Ok(())
            }
        }
    }

    async fn try_move(&mut self, to: Seq) -> Result<(), BatchError> {
        self.settle().await?;
        let to_i = to.0 as i64;
        let current = self.conn().await.map_err(transient)?.seq;
        if to_i > current {
            // Forward past an undecodable record: the same fenced move as a batch.
            return self.commit_now(Vec::new(), to).await.map_err(transient);
        }
        if to_i == current {
            return Ok(());
        }
        let sql = self.sql.clone();
        let conn = self.conn().await.map_err(transient)?;
        let row = conn
            .client
            .query_typed_one(&sql.rewind, &[(&NAME, Type::TEXT), (&to_i, Type::INT8)])
            .await
            .map_err(|e| BatchError::Transient(format!("postgres: {}", describe(&e))))?;
        conn.seq = row
            .try_get(0)
            .map_err(|e| BatchError::Transient(describe(&e)))?;
        conn.epoch = row
            .try_get(1)
            .map_err(|e| BatchError::Transient(describe(&e)))?;
        let seq = conn.seq;
        self.metrics.committed_seq.set(seq);
        tracing::info!(to = to.0, "postgres cursor rewound");
        Ok(())
    }

    /// Waits for the transaction in flight and reports its outcome (for benches and tests;
    /// the driver learns it from the next call).
    pub async fn flush(&mut self) -> Result<(), BatchError> {
        let result = self.settle().await;
        self.observe(&result);
        result
    }

    async fn try_committed(&mut self) -> Result<Option<Seq>, BatchError> {
        if let Some(flight) = &self.in_flight {
            if !flight.task.is_finished() {
                // It commits this cursor or fails; a failure is seen at the next call and
                // the driver then goes back to the cursor read again.
                return Ok(Some(Seq(flight.target.max(0) as u64)));
            }
        }
        self.settle().await?;
        let conn = self.conn().await.map_err(transient)?;
        Ok(Some(Seq(conn.seq.max(0) as u64)))
    }
}

impl PostgresSink {
    fn expire_is_due(&self) -> bool {
        self.expire_due.is_some_and(|due| Instant::now() >= due)
    }

    /// Runs an expiry pass if one is due, on the live connection, which must have no
    /// transaction in flight. A failure is logged, never returned: the rows wait for the next
    /// pass, the batches go on (a broken connection is seen by the next batch).
    async fn expire_if_due(&mut self) {
        if !self.expire_is_due() || self.in_flight.is_some() {
            return;
        }
        let Some(conn) = self.conn.as_ref().filter(|c| !c.client.is_closed()) else {
            // Not connected: the pass waits for a connection (the next batch makes one).
            return;
        };
        let client = conn.client.clone();
        let interval = Duration::from_secs(self.config.expire_interval_secs);
        self.expire_due = Some(Instant::now() + interval);
        match expire::expire_with(
            &client,
            &self.sql.expire,
            expire::ROWS_PER_STATEMENT,
            expire::STATEMENTS_PER_PASS,
            self.timeout(),
        )
        .await
        {
            Ok(done) => {
                self.metrics.expired_rows.inc_by(done.rows);
                if done.rows > 0 {
                    tracing::info!(
                        rows = done.rows,
                        statements = done.statements,
                        more_left = done.bounded,
                        "expired processed_webhook_events rows deleted"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, "expired processed_webhook_events rows not deleted; trying again at the next pass");
            }
        }
    }
}

fn transient(f: Failure) -> BatchError {
    match f {
        Failure::Transient(e) | Failure::Data(e) => BatchError::Transient(e),
    }
}

impl Consumer for PostgresSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn upstreams(&self) -> &'static [&'static str] {
        &[dedup::NAME, compliance::NAME]
    }

    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Replay
    }

    fn reset(&mut self) -> Result<(), BatchError> {
        // Replay mode: the driver never clears this sink; rows are overwritten in place.
        Ok(())
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        let result = self.try_handle(batch).await;
        self.observe(&result);
        result
    }

    async fn committed_cursor(&mut self) -> Result<Option<Seq>, BatchError> {
        let result = self.try_committed().await;
        self.observe(&result);
        result
    }

    async fn finish(&mut self) -> Result<(), BatchError> {
        self.settle().await
    }

    async fn tick(&mut self) -> Result<(), BatchError> {
        if !self.expire_is_due() {
            return Ok(());
        }
        // Idle: the batch in flight (if any) commits first, so the deletes are not in it.
        let settled = self.settle().await;
        self.observe(&settled);
        settled?;
        self.expire_if_due().await;
        Ok(())
    }

    async fn move_committed_cursor(&mut self, to: Seq) -> Result<(), BatchError> {
        let result = self.try_move(to).await;
        self.observe(&result);
        result
    }
}
