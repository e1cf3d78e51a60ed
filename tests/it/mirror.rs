//! `[[postgres.mirror]]` against the machine's real PostgreSQL: tables shaped like the Node
//! handlers' (in a schema of the test's own, next to the schema hooklog projects into) filled
//! from the projection, exactly once across duplicates, a `kill -9` and a rewind; a mapping that
//! does not fit its table stops the sink with a message that says why.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hooklog::consumers::postgres::MirrorConfig;

use crate::postgres::{
    accepted_fixtures, base_url, daemon_status, direct_sink, send_all, sms_event,
    spawn_daemon_with, synced, wait_until, Db, FakeDiscord,
};
use crate::util::{self, TestServer};

/// The Node handlers' tables, in a schema of their own next to the test's hooklog schema.
struct Node<'a> {
    db: &'a Db,
    schema: String,
}

const NODE_TABLES: &str = "
create table $N.omni_events (id bigserial primary key, source text, type text, event_id text, payload jsonb, received_at timestamptz);
create table $N.processed_webhook_events (event_id text primary key, processed_at timestamptz);
create table $N.openphone_messages (id text primary key, payload jsonb);
create table $N.openphone_calls (id text primary key, payload jsonb);
create table $N.twilio_sms (sid text primary key, payload jsonb);
create table $N.twilio_calls (sid text primary key, payload jsonb);
create table $N.message_refs (id text primary key, object_id varchar(64), event_type text, first_at timestamp, numbers jsonb);
";

impl<'a> Node<'a> {
    /// The schema with `ddl` run in it (`$N` is the schema).
    fn new(db: &'a Db, ddl: &str) -> Node<'a> {
        let node = Node {
            db,
            schema: format!("{}_node", db.schema),
        };
        node.exec(&format!("create schema $N; {ddl}"));
        node
    }

    fn sql(&self, sql: &str) -> String {
        sql.replace("$N", &format!("\"{}\"", self.schema))
    }

    fn exec(&self, sql: &str) {
        self.db.exec(&self.sql(sql));
    }

    fn count(&self, sql: &str) -> u64 {
        self.db.count(&self.sql(sql))
    }

    fn one(&self, sql: &str) -> Option<String> {
        self.db.one(&self.sql(sql))
    }

    fn set(&self, sql: &str) -> BTreeSet<String> {
        self.db
            .rows(&self.sql(sql))
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect()
    }

    /// Every row of every table but the serial id, hashed, per table.
    fn hashes(&self) -> Vec<(String, String)> {
        [
            ("omni_events", "source, type, event_id, payload, received_at"),
            ("processed_webhook_events", "*"),
            ("openphone_messages", "*"),
            ("openphone_calls", "*"),
            ("twilio_sms", "*"),
            ("twilio_calls", "*"),
            ("message_refs", "*"),
        ]
        .into_iter()
        .map(|(t, cols)| {
            let h = self.one(&format!(
                "select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) || ':' || count(*) \
                 from (select {cols} from $N.{t}) x"
            ));
            (t.to_owned(), h.unwrap())
        })
        .collect()
    }

    /// A mapping from hooklog's `from` into this schema's `table`.
    fn mapping(&self, table: &str, from: &str, key: &str, cols: &[(&str, &str)]) -> MirrorConfig {
        MirrorConfig {
            table: format!("{}.{table}", self.schema),
            from: from.into(),
            key: key.into(),
            columns: cols
                .iter()
                .map(|(c, f)| (c.to_string(), f.to_string()))
                .collect(),
        }
    }

    /// The mappings of the Node tables (and one with pointers and conversions).
    fn mappings(&self) -> Vec<MirrorConfig> {
        vec![
            self.mapping(
                "omni_events",
                "omni_events",
                "event_id",
                &[
                    ("event_id", "dedup_key"),
                    ("source", "source"),
                    ("type", "kind"),
                    ("payload", "payload"),
                    ("received_at", "received_at"),
                ],
            ),
            self.mapping(
                "processed_webhook_events",
                "processed_webhook_events",
                "event_id",
                &[("event_id", "dedup_key"), ("processed_at", "first_seen_at")],
            ),
            self.mapping(
                "openphone_messages",
                "openphone_messages",
                "id",
                &[("id", "id"), ("payload", "payload")],
            ),
            self.mapping(
                "openphone_calls",
                "openphone_calls",
                "id",
                &[("id", "id"), ("payload", "payload")],
            ),
            self.mapping(
                "twilio_sms",
                "twilio_sms",
                "sid",
                &[("sid", "sid"), ("payload", "payload")],
            ),
            self.mapping(
                "twilio_calls",
                "twilio_calls",
                "sid",
                &[("sid", "sid"), ("payload", "payload")],
            ),
            self.mapping(
                "message_refs",
                "openphone_messages",
                "id",
                &[
                    ("id", "id"),
                    ("object_id", "payload:/data/object/id"),
                    ("event_type", "payload:/type"),
                    ("first_at", "created_at"),
                    ("numbers", "to_numbers"),
                ],
            ),
        ]
    }

    /// Rows of the Node tables that differ from what the projection says they should be:
    /// (table, mismatches, rows). Each hooklog row must be exactly one Node row.
    fn mismatches(&self) -> Vec<(&'static str, u64, u64)> {
        let resource = |t: &str, key: &str| {
            format!(
                "select count(*) from $S.{t} h full join $N.{t} n on n.{key} = h.{key} \
                 left join $S.omni_events e on e.seq = h.last_seq \
                 where h.{key} is null or n.{key} is null or n.payload is distinct from e.payload"
            )
        };
        let checks: Vec<(&'static str, String)> = vec![
            (
                "omni_events",
                "select count(*) from (select * from $S.omni_events where not duplicate) h \
                 full join $N.omni_events n on n.event_id = h.dedup_key \
                 where h.seq is null or n.id is null or n.payload is distinct from h.payload \
                 or n.type is distinct from h.kind or n.source is distinct from h.source \
                 or n.received_at is distinct from h.received_at"
                    .into(),
            ),
            (
                "processed_webhook_events",
                "select count(*) from $S.processed_webhook_events h \
                 full join $N.processed_webhook_events n on n.event_id = h.dedup_key \
                 where h.dedup_key is null or n.event_id is null \
                 or n.processed_at is distinct from h.first_seen_at"
                    .into(),
            ),
            ("openphone_messages", resource("openphone_messages", "id")),
            ("openphone_calls", resource("openphone_calls", "id")),
            ("twilio_sms", resource("twilio_sms", "sid")),
            ("twilio_calls", resource("twilio_calls", "sid")),
            (
                "message_refs",
                "select count(*) from $S.openphone_messages h full join $N.message_refs n on n.id = h.id \
                 left join $S.omni_events e on e.seq = h.last_seq \
                 where h.id is null or n.id is null \
                 or n.object_id is distinct from e.payload #>> '{data,object,id}' \
                 or n.event_type is distinct from e.payload ->> 'type' \
                 or n.first_at is distinct from (h.created_at at time zone 'UTC') \
                 or n.numbers is distinct from to_jsonb(h.to_numbers)"
                    .into(),
            ),
        ];
        checks
            .into_iter()
            .map(|(t, sql)| {
                let rows = self.count(&format!("select count(*) from $N.{t}"));
                (t, self.count(&sql), rows)
            })
            .collect()
    }

    /// Every Node row is its hooklog row's, one each, and every table has rows.
    fn assert_exact(&self) {
        let m = self.mismatches();
        assert!(
            m.iter().all(|(_, bad, rows)| *bad == 0 && *rows > 0),
            "(table, mismatches, rows): {m:?}"
        );
        assert_eq!(
            self.count("select count(*) - count(distinct event_id) from $N.omni_events"),
            0,
            "one omni_events row per event"
        );
    }
}

impl Drop for Node<'_> {
    fn drop(&mut self) {
        self.exec("drop schema if exists $N cascade");
    }
}

/// A server with the fixtures' keys whose sink writes into `db` and mirrors into `node`.
fn mirror_server(db: &Db, node: &Node, dir: &Path, extra: &[(&str, &str)]) -> TestServer {
    let mut env = db.env(&base_url());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut cfg = util::config(Some(&util::fixtures_dir().join("hooklog.toml")), dir, &env);
    cfg.postgres.mirror = node.mappings();
    TestServer::start(cfg, None)
}

/// Re-signed deliveries of the same events: stored, flagged duplicates by dedup. Signed one
/// second before `first_sent` (when the originals began to be signed, each at its own second):
/// a delivery signed in the same second as its original would be byte for byte the same
/// request, a replay the edge answers without storing.
fn resend_quo_fixtures(s: &TestServer, first_sent: i64) {
    for (name, f) in accepted_fixtures()
        .iter()
        .filter(|(_, f)| f.provider == "openphone")
    {
        assert_eq!(s.send_fixture_at(f, first_sent - 1).status, 200, "{name}");
    }
}

#[test]
fn the_mirror_fills_the_node_tables_one_row_per_event_and_resource_and_a_resent_webhook_adds_none()
{
    let db = Db::new();
    let node = Node::new(&db, NODE_TABLES);
    let dir = crate::engine::tempdir();
    let s = mirror_server(&db, &node, dir.path(), &[("HOOKLOG_POSTGRES_BATCH", "5")]);
    let first_sent = util::now();
    send_all(&s);
    synced(&s, &db);
    node.assert_exact();

    // A few values spelled out.
    assert_eq!(
        node.count(
            "select count(*) from $N.twilio_sms n join $S.twilio_sms h using (sid) \
             where sid = 'SM485d0e8848222369e9f2e13c7b92ab65' and n.payload->>'Body' = h.body \
             and n.payload->>'MessageSid' = sid"
        ),
        1,
        "the inbound SMS fixture is mirrored with its form body as JSON"
    );
    assert_eq!(
        node.one(
            "select type || ' ' || source from $N.omni_events where event_id = \
             (select dedup_key from $S.omni_events where payload->>'MessageSid' = \
              'SM485d0e8848222369e9f2e13c7b92ab65' order by seq limit 1)"
        ),
        Some("message.received twilio".into())
    );
    assert!(
        node.count("select count(*) from $N.message_refs where object_id = id") > 0,
        "the pointer reaches the legacy bodies' data.object.id"
    );
    assert_eq!(
        node.count(
            "select count(*) from $N.message_refs r join $S.openphone_messages h using (id) \
             where r.first_at is distinct from (h.created_at at time zone 'UTC')"
        ),
        0,
        "a timestamptz goes into a timestamp column as UTC"
    );
    let (_, metrics) = s.metrics();
    let twilio_sms_metric = format!(
        "hooklog_postgres_mirror_rows_total{{table=\"{}.twilio_sms\"}}",
        node.schema
    );
    assert!(metrics.contains(&twilio_sms_metric), "{metrics}");

    // Resent webhooks: duplicates in hooklog's log and omni_events, no new Node row.
    let before = node.hashes();
    let duplicates = db.count("select count(*) from $S.omni_events where duplicate");
    resend_quo_fixtures(&s, first_sent);
    synced(&s, &db);
    assert!(
        db.count("select count(*) from $S.omni_events where duplicate") > duplicates,
        "the resent webhooks were stored as duplicates"
    );
    assert_eq!(node.hashes(), before, "duplicates change no Node row");
    node.assert_exact();
}

#[test]
fn a_rewind_rewrites_the_mirrored_rows_in_place_and_brings_back_a_deleted_one() {
    let db = Db::new();
    let node = Node::new(&db, NODE_TABLES);
    let dir = crate::engine::tempdir();
    let s = mirror_server(&db, &node, dir.path(), &[("HOOKLOG_POSTGRES_BATCH", "7")]);
    let first_sent = util::now();
    send_all(&s);
    resend_quo_fixtures(&s, first_sent);
    synced(&s, &db);
    let last = s.status().log.last_seq;
    let before = node.hashes();
    let ids = node.set("select id::text from $N.omni_events");

    // Hand edits: a deleted message, a tampered SMS, a deleted event.
    node.exec(
        "delete from $N.openphone_messages where id = (select min(id) from $N.openphone_messages)",
    );
    node.exec("update $N.twilio_sms set payload = '{}'");
    node.exec("delete from $N.omni_events where id = (select min(id) from $N.omni_events)");
    assert_ne!(node.hashes(), before);

    let r = util::request(
        s.admin,
        "POST",
        "/admin/consumers/postgres/rewind",
        &[("authorization", &format!("Bearer {}", s.token))],
        br#"{"to_seq": 0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("the re-projection", 60, || db.cursor() == last);
    assert_eq!(
        node.hashes(),
        before,
        "every Node row as it was, none doubled"
    );
    node.assert_exact();
    // Rows rewritten in place keep their serial id; only the deleted one got a new one.
    let after = node.set("select id::text from $N.omni_events");
    assert_eq!(ids.difference(&after).count(), 1, "{ids:?} → {after:?}");
    assert_eq!(after.difference(&ids).count(), 1);
}

/// The mirror config of the kill test, as a file the real binary reads.
fn write_config(dir: &Path, mirrors: &[MirrorConfig]) -> std::path::PathBuf {
    #[derive(serde::Serialize)]
    struct Postgres<'a> {
        mirror: &'a [MirrorConfig],
    }
    #[derive(serde::Serialize)]
    struct File<'a> {
        postgres: Postgres<'a>,
    }
    let path = dir.join("mirror.toml");
    let text = toml::to_string(&File {
        postgres: Postgres { mirror: mirrors },
    })
    .unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn killing_the_daemon_mid_batch_mirrors_every_acknowledged_sms_exactly_once() {
    let db = Db::new();
    let node = Node::new(&db, NODE_TABLES);
    let dir = crate::engine::tempdir();
    let conf_dir = crate::engine::tempdir();
    let config = write_config(conf_dir.path(), &node.mappings());
    let config = config.display().to_string();
    let env = [("HOOKLOG_CONFIG", config.as_str())];
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut commits_at_kill = Vec::new();
    for round in 0..3 {
        let mut daemon = spawn_daemon_with(dir.path(), &db, &env);
        let stop = Arc::new(AtomicBool::new(false));
        let clients =
            crate::crash::load("SMm", daemon.public, round, 4, stop.clone(), acked.clone());
        std::thread::sleep(Duration::from_millis(600 + 300 * round as u64));
        commits_at_kill.push(db.cursor());
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
    }
    assert!(
        commits_at_kill.iter().any(|&c| c > 0),
        "the sink committed before the kills: {commits_at_kill:?}"
    );
    let mut daemon = spawn_daemon_with(dir.path(), &db, &env);
    let last = daemon_status(&daemon, dir.path()).log.last_seq;
    wait_until("the sink to finish after the kills", 120, || {
        db.cursor() == last
    });
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    let mirrored = node.set("select sid from $N.twilio_sms");
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let lost: Vec<&String> = acked.difference(&mirrored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged, not mirrored: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let m = node.mismatches();
    for (table, bad, _) in &m {
        assert_eq!(*bad, 0, "{table}: {m:?}");
    }
    assert_eq!(
        node.count("select count(*) from $N.omni_events"),
        db.count("select count(*) from $S.omni_events where not duplicate"),
        "one Node event per original record"
    );
    assert_eq!(
        node.count("select count(*) - count(distinct event_id) from $N.omni_events"),
        0,
        "no event mirrored twice"
    );
    eprintln!(
        "3 kills: {} acknowledged, {last} records, {} mirrored SMS, commits at kill {commits_at_kill:?}",
        acked.len(),
        mirrored.len()
    );
}

#[test]
fn a_mapping_that_does_not_fit_stops_the_sink_says_why_and_it_resumes_once_the_table_is_fixed() {
    let db = Db::new();
    // The payload column is text, and `received` is missing.
    let node = Node::new(
        &db,
        "create table $N.twilio_sms (sid text primary key, payload text);",
    );
    let discord = FakeDiscord::start();
    let dir = crate::engine::tempdir();
    let conf_dir = crate::engine::tempdir();
    let config = write_config(
        conf_dir.path(),
        &[node.mapping(
            "twilio_sms",
            "twilio_sms",
            "sid",
            &[
                ("sid", "sid"),
                ("payload", "payload"),
                ("received", "created_at"),
            ],
        )],
    );
    let config = config.display().to_string();
    let mut daemon = spawn_daemon_with(
        dir.path(),
        &db,
        &[
            ("HOOKLOG_CONFIG", config.as_str()),
            ("HOOKLOG_ALERTS_DISCORD_WEBHOOK_URL", &discord.url),
            ("HOOKLOG_POSTGRES_ALERT_AFTER_SECS", "1"),
            ("HOOKLOG_CONSUMERS_BACKOFF_BASE_MS", "20"),
            ("HOOKLOG_CONSUMERS_BACKOFF_MAX_MS", "300"),
        ],
    );
    for i in 0..5 {
        let (path, headers, body) = crate::edge::twilio_sms(&format!("SMfit{i}"));
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = util::request(daemon.public, "POST", &path, &headers, &body);
        assert_eq!(r.status, 200, "the edge accepts webhooks whatever the sink");
    }
    let table = format!("{}.twilio_sms", node.schema);
    wait_until("the alert", 30, || {
        discord
            .posts()
            .iter()
            .any(|p| p.contains("Postgres sink failing"))
    });
    let alert = discord
        .posts()
        .into_iter()
        .find(|p| p.contains("Postgres sink failing"))
        .unwrap();
    for part in [
        "postgres.mirror refused",
        &format!("{table}.payload: its type text cannot hold the field's type jsonb"),
        &format!("{table}.received: no such column"),
    ] {
        assert!(alert.contains(part), "{part}: {alert}");
    }
    let status = daemon_status(&daemon, dir.path());
    let sink = status
        .consumers
        .iter()
        .find(|c| c.name == "postgres")
        .unwrap();
    let error = sink.last_error.clone().unwrap_or_default();
    assert!(error.contains("postgres.mirror refused"), "{sink:?}");
    assert_eq!(db.cursor(), 0, "nothing written, not even hooklog's tables");
    assert_eq!(node.count("select count(*) from $N.twilio_sms"), 0);

    // Fixed in the database: the next attempt checks again and the sink catches up.
    node.exec(
        "alter table $N.twilio_sms alter column payload type jsonb using payload::jsonb; \
         alter table $N.twilio_sms add column received timestamptz",
    );
    let last = daemon_status(&daemon, dir.path()).log.last_seq;
    wait_until("the sink to resume", 60, || db.cursor() == last);
    assert_eq!(
        node.set("select sid from $N.twilio_sms"),
        (0..5).map(|i| format!("SMfit{i}")).collect()
    );
    assert_eq!(
        node.count(
            "select count(*) from $N.twilio_sms n join $S.twilio_sms h using (sid) \
             where n.received = h.created_at and n.payload->>'MessageSid' = n.sid"
        ),
        5
    );
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}

#[test]
fn a_mirror_set_at_runtime_is_checked_before_the_next_batch_and_fills_rows_from_then_on() {
    use hooklog::consumers::{BatchError, Consumer};
    let db = Db::new();
    let node = Node::new(&db, "");
    let events: Vec<_> = (1..=9)
        .map(|s| sms_event(s, &format!("SMset{s}"), "hi"))
        .collect();
    let mut sink = direct_sink(&db, &events);
    db.rt.block_on(sink.handle(&events[..3])).unwrap();
    db.rt.block_on(sink.flush()).unwrap();

    // Statically invalid: refused at once, the running mirror (none) stays.
    let bad = node.mapping("twilio_sms", "twilio_smz", "sid", &[("sid", "sid")]);
    let e = sink.set_mirror(vec![bad]).unwrap_err();
    assert!(e.starts_with("postgres.mirror[0].from:"), "{e}");
    // Valid, but the table does not exist yet: the next batch is refused, nothing written.
    let good = node.mapping(
        "twilio_sms",
        "twilio_sms",
        "sid",
        &[("sid", "sid"), ("payload", "payload")],
    );
    sink.set_mirror(vec![good]).unwrap();
    let err = db.rt.block_on(sink.handle(&events[3..6])).unwrap_err();
    assert!(
        matches!(&err, BatchError::Transient(m) if m.contains("no such table")),
        "{err}"
    );
    assert_eq!(db.cursor(), 3);

    node.exec("create table $N.twilio_sms (sid text primary key, payload jsonb)");
    db.rt.block_on(sink.handle(&events[3..6])).unwrap();
    db.rt.block_on(sink.handle(&events[6..])).unwrap();
    db.rt.block_on(sink.flush()).unwrap();
    assert_eq!(db.cursor(), 9);
    // Records before the mirror was set are filled by a rewind, not by setting it.
    assert_eq!(
        node.set("select sid from $N.twilio_sms"),
        (4..=9).map(|s| format!("SMset{s}")).collect()
    );
}

/// `hooklog_reloads_total{result="ok"}` of a daemon.
fn reloads_ok(daemon: &crate::postgres::Daemon, dir: &Path) -> u64 {
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let (_, text) = util::metrics(daemon.admin, token.trim());
    text.lines()
        .find_map(|l| l.strip_prefix("hooklog_reloads_total{result=\"ok\"} "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn sms(daemon: &crate::postgres::Daemon, sid: &str) {
    let (path, headers, body) = crate::edge::twilio_sms(sid);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = util::request(daemon.public, "POST", &path, &headers, &body);
    assert_eq!(r.status, 200, "{sid}");
}

#[test]
fn a_mirror_added_by_sighup_fills_its_table_from_the_next_batch_without_a_restart() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let db = Db::new();
    let node = Node::new(
        &db,
        "create table $N.twilio_sms (sid text primary key, payload jsonb);",
    );
    let dir = crate::engine::tempdir();
    let conf_dir = crate::engine::tempdir();
    let config = write_config(conf_dir.path(), &[]);
    let config_env = config.display().to_string();
    let mut daemon = spawn_daemon_with(dir.path(), &db, &[("HOOKLOG_CONFIG", &config_env)]);
    for i in 0..3 {
        sms(&daemon, &format!("SMbefore{i}"));
    }
    let last = daemon_status(&daemon, dir.path()).log.last_seq;
    wait_until("the sink", 60, || db.cursor() == last);
    assert_eq!(node.count("select count(*) from $N.twilio_sms"), 0);

    write_config(
        conf_dir.path(),
        &[node.mapping(
            "twilio_sms",
            "twilio_sms",
            "sid",
            &[("sid", "sid"), ("payload", "payload")],
        )],
    );
    let before = reloads_ok(&daemon, dir.path());
    kill(Pid::from_raw(daemon.child.id() as i32), Signal::SIGHUP).unwrap();
    wait_until("the reload", 10, || {
        reloads_ok(&daemon, dir.path()) > before
    });
    for i in 0..3 {
        sms(&daemon, &format!("SMafter{i}"));
    }
    let last = daemon_status(&daemon, dir.path()).log.last_seq;
    wait_until("the sink", 60, || db.cursor() == last);
    assert_eq!(
        node.set("select sid from $N.twilio_sms"),
        (0..3).map(|i| format!("SMafter{i}")).collect(),
        "the records after the reload, in the same transactions"
    );
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}
