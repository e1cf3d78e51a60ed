//! `postgres` under the suite: every projected table's rows and the cursor it commits with
//! them, in a schema of its own on the machine's PostgreSQL (default
//! `postgres://postgres@127.0.0.1:5432/test`, or `$HOOKLOG_TEST_PG_URL`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;

use super::mix::message_id;
use super::{Crash, Mix, Snapshot, UnderTest, Up, World};
use crate::alerts::Alerter;
use crate::config::secret::Secret;
use crate::consumers::postgres::{connect, describe, tables, PostgresConfig};
use crate::consumers::postgres::{PostgresSink, NAME};
use crate::event::Seq;
use crate::metrics::Metrics;

fn url() -> String {
    std::env::var("HOOKLOG_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of one world's own, with a client to read it; dropped with the world.
pub(super) struct Schema {
    name: String,
    client: tokio_postgres::Client,
}

impl Schema {
    pub async fn create() -> Schema {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "hl_conf_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            rand::thread_rng().gen_range(0..1_000_000u32)
        );
        let client = connect(&url(), None, Duration::from_secs(10))
            .await
            .expect("the test database answers (is PostgreSQL running?)")
            .client;
        Schema { name, client }
    }

    /// Rows of `sql` (`$S` is the schema), every value as text.
    async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let sql = sql.replace("$S", &format!("\"{}\"", self.name));
        let messages = self
            .client
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    }

    /// The cursor the sink committed (0 before it created its row).
    async fn committed(&self) -> u64 {
        let exists = self
            .rows(&format!(
                "select 1 from information_schema.tables where table_schema = '{}' and table_name = 'hooklog_cursors'",
                self.name
            ))
            .await;
        if exists.is_empty() {
            return 0;
        }
        self.rows("select seq from $S.hooklog_cursors where name = 'postgres'")
            .await
            .first()
            .and_then(|r| r[0].as_ref())
            .map_or(0, |s| s.parse().unwrap())
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Inside the test's runtime, which cannot be blocked on: a thread with its own.
        let sql = format!("drop schema if exists \"{}\" cascade", self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(c) = connect(&url(), None, Duration::from_secs(10)).await {
                    let _ = c.client.simple_query(&sql).await;
                }
            });
        })
        .join();
    }
}

struct UnderPostgres;

fn schema(w: &World) -> &Schema {
    w.pg.as_ref().unwrap()
}

impl UnderTest for UnderPostgres {
    type C = PostgresSink;
    const NAME: &'static str = NAME;
    const UPSTREAMS: &'static [Up] = &[Up::Dedup, Up::Compliance];
    const POSTGRES: bool = true;
    // The sink folds a message's records into its row: give it decisions to fold.
    const DECIDED: bool = true;

    fn build(&self, w: &World) -> PostgresSink {
        let config = PostgresConfig {
            url: Some(Secret::new(url())),
            schema: schema(w).name.clone(),
            // The suite compares projections as functions of the log; expiry deletes by the
            // wall clock (the mix's records are months old), so it is off here and tested
            // on its own (`postgres_schema::*expired*`).
            expire_interval_secs: 0,
            ..PostgresConfig::default()
        };
        PostgresSink::new(
            &config,
            crate::consumers::dedup::DEFAULT_TTL_HOURS,
            w.store(),
            Alerter::disabled(),
            &Metrics::new(),
        )
        .unwrap()
    }

    /// Every row of every projected table, counted (a duplicate row would count 2), and the
    /// committed cursor (not its epoch, which a rewind bumps on purpose).
    async fn project(&self, w: &World, snap: &mut Snapshot) {
        let s = schema(w);
        for table in tables::TABLES {
            let rows = s
                .rows(&format!("select x::text from $S.{} x", table.name))
                .await;
            let mut counted = std::collections::BTreeMap::<String, usize>::new();
            for row in rows {
                *counted
                    .entry(row[0].clone().unwrap_or_default())
                    .or_default() += 1;
            }
            for (row, n) in counted {
                snap.put(format!("pg/{}/{row}", table.name), n.to_string());
            }
        }
        snap.put(
            "pg/hooklog_cursors/postgres",
            s.committed().await.to_string(),
        );
    }

    fn crash(&self, mix: &Mix) -> Crash {
        Crash::AfterBatchWith(mix.seq("twilio_stop"))
    }

    async fn missing_after(&self, w: &World, bad: Seq) -> Vec<String> {
        let s = schema(w);
        let mut missing = Vec::new();
        let rows = s
            .rows(&format!(
                "select seq from $S.omni_events where seq > {}",
                bad.0
            ))
            .await;
        let after = w.last().0 - bad.0;
        if rows.len() as u64 != after {
            missing.push(format!(
                "{} omni_events rows after {bad}, for {after} records",
                rows.len()
            ));
        }
        let approved = s
            .rows(&format!(
                "select 1 from $S.outbound_messages where id = '{}' and approved",
                message_id(1)
            ))
            .await;
        if approved.is_empty() {
            missing.push("request 1 is not approved in outbound_messages".into());
        }
        missing
    }

    async fn caught_up(&self, w: &World) -> bool {
        schema(w).committed().await == w.last().0
    }
}

properties!(UnderPostgres);
