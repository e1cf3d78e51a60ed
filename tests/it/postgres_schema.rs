//! hooklog's own schema beside the Node handlers' tables: `hooklog migrate` (and `--check`)
//! against the real PostgreSQL, and the expiry of `processed_webhook_events`.
//!
//! The Node handlers' tables live in `public` in production; here they are created in a schema
//! of the test's own ([`Db`]), so that tests never touch the shared `public`. "The default
//! schema" is a second fresh schema.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use hooklog::consumers::postgres::expire::{expire, Expired};
use hooklog::consumers::postgres::migrate::MIGRATIONS;

use crate::postgres::{base_url, Db};

/// The Node handlers' tables, as they are in `public` (other columns than hooklog's), with
/// a few rows each.
const NODE_TABLES: &str = "
    create table $S.omni_events (id bigserial primary key, source text, type text,
        event_id text, payload jsonb, received_at timestamptz default now());
    create table $S.processed_webhook_events (event_id text primary key, processed_at timestamptz);
    create table $S.openphone_messages (id text primary key, payload jsonb);
    create table $S.openphone_calls (id text primary key, payload jsonb);
    create table $S.twilio_sms (sid text primary key, payload jsonb);
    create table $S.twilio_calls (sid text primary key, payload jsonb);
    insert into $S.omni_events (source, type, event_id, payload, received_at) values
        ('openphone', 'message.received', 'EV1', '{\"a\": 1}', '2026-01-02T03:04:05Z'),
        ('twilio', 'sms', 'SM1', '{\"b\": 2}', '2026-01-02T03:04:06Z');
    insert into $S.processed_webhook_events values ('EV1', '2026-01-02T03:04:05Z');
    insert into $S.openphone_messages values ('AC1', '{\"body\": \"hi\"}');
    insert into $S.openphone_calls values ('CA1', '{\"status\": \"completed\"}');
    insert into $S.twilio_sms values ('SM1', '{\"Body\": \"STOP\"}');
    insert into $S.twilio_calls values ('CA2', '{\"CallStatus\": \"ringing\"}');
";

const NODE_NAMES: [&str; 6] = [
    "omni_events",
    "processed_webhook_events",
    "openphone_messages",
    "openphone_calls",
    "twilio_sms",
    "twilio_calls",
];

fn node_db() -> Db {
    let db = Db::new();
    db.exec("create schema $S");
    db.exec(NODE_TABLES);
    db
}

/// Everything of a schema that must not change: each relation with its kind, each column with
/// its type, default and nullability, and every row of the Node tables.
fn snapshot(db: &Db) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in db.rows(&format!(
        "select c.relname::text, c.relkind::text from pg_class c join pg_namespace n \
         on n.oid = c.relnamespace where n.nspname = '{}'",
        db.schema()
    )) {
        out.insert(
            format!("relation {}", r[0].clone().unwrap()),
            r[1].clone().unwrap(),
        );
    }
    for r in db.rows(&format!(
        "select table_name::text || '.' || column_name::text, \
         data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') \
         from information_schema.columns where table_schema = '{}'",
        db.schema()
    )) {
        out.insert(
            format!("column {}", r[0].clone().unwrap()),
            r[1].clone().unwrap(),
        );
    }
    for t in NODE_NAMES {
        let rows = db.one(&format!(
            "select coalesce(string_agg(x::text, '|' order by x::text), '') from $S.{t} x"
        ));
        out.insert(format!("rows {t}"), rows.unwrap());
    }
    out
}

/// `hooklog migrate [args]` on `schema`: (exit code, stdout, stderr).
fn hooklog_migrate(schema: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hooklog"))
        .arg("migrate")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOOKLOG_POSTGRES_URL", base_url())
        .env("HOOKLOG_POSTGRES_SCHEMA", schema)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn schema_exists(db: &Db, schema: &str) -> bool {
    db.count(&format!(
        "select count(*) from pg_namespace where nspname = '{schema}'"
    )) == 1
}

fn table_exists(db: &Db, table: &str) -> bool {
    db.count(&format!(
        "select count(*) from information_schema.tables where table_schema = '{}' and table_name = '{table}'",
        db.schema()
    )) == 1
}

#[test]
fn migrating_into_the_default_schema_beside_the_node_handlers_tables_changes_nothing_of_theirs() {
    let node = node_db();
    let ours = Db::new();
    let before = snapshot(&node);
    let (code, out, err) = hooklog_migrate(ours.schema(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied [1, 2]"), "{out}");
    assert_eq!(snapshot(&node), before, "the Node handlers' schema changed");
    for t in hooklog::consumers::postgres::tables::TABLES {
        assert!(table_exists(&ours, t.name), "{}", t.name);
    }
    // hooklog's processed_webhook_events is its own, with its own columns.
    assert_eq!(
        ours.count(&format!(
            "select count(*) from information_schema.columns where table_schema = '{}' \
             and table_name = 'processed_webhook_events' and column_name = 'expires_at'",
            ours.schema()
        )),
        1
    );
    assert_eq!(
        node.count("select count(*) from $S.processed_webhook_events"),
        1
    );
}

#[test]
fn migrate_check_on_the_node_handlers_schema_lists_each_conflict_changes_nothing_and_exits_1() {
    let node = node_db();
    let before = snapshot(&node);
    let (code, out, err) = hooklog_migrate(node.schema(), &["--check"]);
    assert_eq!(code, 1, "{out}{err}");
    for t in NODE_NAMES {
        assert!(
            out.contains(&format!(
                "conflict: table {t} (0001_init.sql would create it; a table of that name is already there)"
            )),
            "{t}: {out}"
        );
    }
    assert_eq!(out.matches("conflict: ").count(), 6, "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(
        out.contains("hooklog never touches tables it did not create"),
        "{out}"
    );
    assert!(
        out.contains("pending: migration 1 (0001_init.sql) would create:"),
        "{out}"
    );
    assert!(out.contains("  table openphone_contacts\n"), "{out}");

    let (code, json, err) = hooklog_migrate(node.schema(), &["--check", "--json"]);
    assert_eq!(code, 1, "{json}{err}");
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut conflicts: Vec<&str> = plan["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["object"]["name"].as_str().unwrap())
        .collect();
    conflicts.sort();
    let mut expected = NODE_NAMES.to_vec();
    expected.sort();
    assert_eq!(conflicts, expected);
    assert_eq!(plan["create_schema"], false);
    assert_eq!(plan["create_migrations_table"], true);
    assert_eq!(plan["pending"].as_array().unwrap().len(), MIGRATIONS.len());

    assert_eq!(snapshot(&node), before, "--check changed the schema");
    assert!(!table_exists(&node, "hooklog_schema_migrations"));
    assert!(!table_exists(&node, "openphone_contacts"));
}

#[test]
fn hooklog_migrate_on_the_node_handlers_schema_refuses_naming_each_table_and_changes_nothing() {
    let node = node_db();
    let before = snapshot(&node);
    let (code, out, err) = hooklog_migrate(node.schema(), &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "postgres.schema `{}` already holds 6 object(s)",
            node.schema()
        )),
        "{err}"
    );
    for t in NODE_NAMES {
        assert!(
            err.contains(&format!("table {t} (0001_init.sql")),
            "{t}: {err}"
        );
    }
    assert!(
        err.contains("hooklog never touches tables it did not create, so nothing was changed"),
        "{err}"
    );
    assert!(
        err.contains("`hooklog`") && err.contains("[[postgres.mirror]]"),
        "{err}"
    );
    assert_eq!(
        snapshot(&node),
        before,
        "a refused migrate changed the schema"
    );
    assert!(!table_exists(&node, "hooklog_schema_migrations"));
    assert!(!table_exists(&node, "sms_optouts"));
}

#[test]
fn migrate_check_on_an_empty_schema_lists_the_creations_and_exits_0_without_creating_the_schema() {
    let db = Db::new();
    let (code, out, err) = hooklog_migrate(db.schema(), &["--check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "schema {}: missing, would be created",
            db.schema()
        )),
        "{out}"
    );
    assert!(out.contains("create table"), "{out}");
    for m in MIGRATIONS {
        assert!(
            out.contains(&format!(
                "pending: migration {} ({}) would create:",
                m.version, m.name
            )),
            "{out}"
        );
    }
    for t in hooklog::consumers::postgres::tables::TABLES {
        assert!(
            out.contains(&format!("  table {}\n", t.name)),
            "{}: {out}",
            t.name
        );
    }
    assert!(
        out.contains("  index omni_events_received_at on omni_events\n"),
        "{out}"
    );
    assert!(!out.contains("conflict"), "{out}");
    assert!(
        out.ends_with("ok: `hooklog migrate` would create the above\n"),
        "{out}"
    );
    assert!(
        !schema_exists(&db, db.schema()),
        "--check created the schema"
    );

    // Once migrated, nothing is left to do.
    let (code, _, err) = hooklog_migrate(db.schema(), &[]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = hooklog_migrate(db.schema(), &["--check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("present: migration 2 (0002_outbound.sql)"),
        "{out}"
    );
    assert!(out.ends_with("current: nothing to do\n"), "{out}");

    // A migration whose file changed since it was applied: exit 1, named.
    db.exec("update $S.hooklog_schema_migrations set checksum = 'edited' where version = 2");
    let (code, out, _) = hooklog_migrate(db.schema(), &["--check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("changed: migration 2 (0002_outbound.sql) was applied with checksum edited"),
        "{out}"
    );
}

#[test]
fn migrate_check_exits_2_when_it_cannot_check() {
    let (code, out, err) = Command::new(env!("CARGO_BIN_EXE_hooklog"))
        .args(["migrate", "--check"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Nothing listens on port 1.
        .env(
            "HOOKLOG_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:1/test?sslmode=disable",
        )
        .env("HOOKLOG_POSTGRES_TIMEOUT_SECS", "2")
        .current_dir(std::env::temp_dir())
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("postgres"), "{err}");
}

/// Inserts `n` rows into `processed_webhook_events`, expiring `offset` from now.
fn dedup_rows(db: &Db, prefix: &str, n: u32, offset: &str) {
    db.exec(&format!(
        "insert into $S.processed_webhook_events (dedup_key, first_seq, first_seen_at, expires_at) \
         select '{prefix}' || g, g, now() - interval '3 days', now() + interval '{offset}' \
         from generate_series(1, {n}) g"
    ));
}

#[test]
fn expired_dedup_rows_are_deleted_in_small_statements_and_the_others_stay() {
    let db = Db::new();
    let (code, _, err) = hooklog_migrate(db.schema(), &[]);
    assert_eq!(code, 0, "{err}");
    dedup_rows(&db, "old", 2500, "-1 hour");
    dedup_rows(&db, "new", 10, "1 hour");
    let (rt, client) = db.client();
    let timeout = Duration::from_secs(30);
    let pass = |max: u32| {
        rt.block_on(expire(client, db.schema(), 1000, max, timeout))
            .unwrap()
    };
    assert_eq!(
        pass(20),
        Expired {
            rows: 2500,
            statements: 3,
            bounded: false
        }
    );
    assert_eq!(
        db.count("select count(*) from $S.processed_webhook_events"),
        10
    );
    assert_eq!(
        db.count("select count(*) from $S.processed_webhook_events where dedup_key like 'new%'"),
        10,
        "rows not yet expired stay"
    );
    // A pass does a bounded amount of work; the next goes on.
    dedup_rows(&db, "again", 2500, "-1 minute");
    assert_eq!(
        pass(2),
        Expired {
            rows: 2000,
            statements: 2,
            bounded: true
        }
    );
    assert_eq!(
        pass(2),
        Expired {
            rows: 500,
            statements: 1,
            bounded: false
        }
    );
    assert_eq!(pass(2).rows, 0);
    assert_eq!(
        db.count("select count(*) from $S.processed_webhook_events"),
        10
    );
}

#[test]
fn the_sink_deletes_expired_dedup_rows_on_its_own_and_counts_them() {
    let db = Db::new();
    let dir = crate::engine::tempdir();
    let mut env = db.env(&base_url());
    env.push(("HOOKLOG_POSTGRES_EXPIRE_INTERVAL_SECS".into(), "1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = crate::edge::server_with(dir.path(), &env);
    let (path, headers, body) = crate::edge::twilio_sms("SMexpiry1");
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(s.send("POST", &path, &headers, &body).status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.cursor() < 1 {
        assert!(Instant::now() < deadline, "the sink never committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The webhook's own row expires after the dedup TTL: it stays.
    assert_eq!(
        db.count("select count(*) from $S.processed_webhook_events where expires_at > now()"),
        1
    );
    dedup_rows(&db, "expired", 5, "-1 second");
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.count("select count(*) from $S.processed_webhook_events") != 1 {
        assert!(
            Instant::now() < deadline,
            "the expired rows were never deleted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        db.count(
            "select count(*) from $S.processed_webhook_events where dedup_key like 'expired%'"
        ),
        0
    );
    let (code, metrics) = s.metrics();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("hooklog_postgres_expired_rows_total 5\n"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("expired"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.stop().unwrap();
}
