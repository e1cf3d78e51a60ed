//! The Postgres sink against the machine's real PostgreSQL (default
//! `postgres://postgres@127.0.0.1:5432/test`, or `$HOOKLOG_TEST_PG_URL`). Each test works in a
//! schema of its own, dropped at the end, so tests and runs never see each other's rows.
//!
//! Outages and a transaction pooler are simulated by TCP proxies the tests control
//! ([`Proxy`]); alerts go to a fake Discord ([`FakeDiscord`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooklog::fixture::Fixture;
use rand::Rng;

use crate::edge::{twilio_sms, BASE, TOKEN};
use crate::util::{self, TestServer};

pub(crate) fn base_url() -> String {
    std::env::var("HOOKLOG_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `base_url` with its host and port replaced (to go through a proxy) and query params added.
pub(crate) fn url_via(addr: Option<SocketAddr>, params: &str) -> String {
    let base = base_url();
    let (scheme_rest, query) = base.split_once('?').unwrap_or((&base, ""));
    let (scheme, rest) = scheme_rest.split_once("://").unwrap();
    let (user_host, db) = rest.split_once('/').unwrap();
    let user_host = match (addr, user_host.split_once('@')) {
        (Some(a), Some((user, _))) => format!("{user}@{a}"),
        (Some(a), None) => a.to_string(),
        (None, _) => user_host.to_owned(),
    };
    let q: Vec<&str> = [query, params]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let mut url = format!("{scheme}://{user_host}/{db}");
    if !q.is_empty() {
        url.push('?');
        url.push_str(&q.join("&"));
    }
    url
}

/// A schema of this test's own on the test database, with a client to inspect it.
pub(crate) struct Db {
    pub(crate) schema: String,
    pub(crate) rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Db {
    pub(crate) fn new() -> Db {
        static N: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "hl_it_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            rand::thread_rng().gen_range(0..1_000_000u32)
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let c =
                hooklog::consumers::postgres::connect(&base_url(), None, Duration::from_secs(10))
                    .await
                    .expect("the test database answers (is PostgreSQL running?)");
            c.client
        });
        Db { schema, rt, client }
    }

    /// Rows of a query, every value as text (simple protocol).
    pub(crate) fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let sql = sql.replace("$S", &format!("\"{}\"", self.schema));
        let msgs = self
            .rt
            .block_on(self.client.simple_query(&sql))
            .unwrap_or_else(|e| panic!("{sql}: {}", hooklog::consumers::postgres::describe(&e)));
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    }

    /// The schema's name.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// A runtime and a client of the test database, for calling the library directly.
    pub(crate) fn client(&self) -> (&tokio::runtime::Runtime, &tokio_postgres::Client) {
        (&self.rt, &self.client)
    }

    pub(crate) fn one(&self, sql: &str) -> Option<String> {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }

    pub(crate) fn count(&self, sql: &str) -> u64 {
        self.one(sql).unwrap().parse().unwrap()
    }

    pub(crate) fn exec(&self, sql: &str) {
        self.rows(sql);
    }

    /// The sink's committed cursor (0 before the row exists).
    pub(crate) fn cursor(&self) -> u64 {
        let exists = self.count(&format!(
            "select count(*) from information_schema.tables where table_schema = '{}' and table_name = 'hooklog_cursors'",
            self.schema
        ));
        if exists == 0 {
            return 0;
        }
        self.rows("select seq from $S.hooklog_cursors where name = 'postgres'")
            .first()
            .and_then(|r| r[0].as_ref())
            .map(|s| s.parse().unwrap())
            .unwrap_or(0)
    }

    /// One hash per projected table: every row's text, in a fixed order.
    fn hashes(&self) -> BTreeMap<String, String> {
        hooklog::consumers::postgres::tables::TABLES
            .iter()
            .map(|t| {
                let h = self.one(&format!(
                    "select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) from $S.{} x",
                    t.name
                ));
                (t.name.to_owned(), h.unwrap())
            })
            .collect()
    }

    /// Server env for a sink writing into this schema through `url`.
    pub(crate) fn env(&self, url: &str) -> Vec<(String, String)> {
        vec![
            ("HOOKLOG_POSTGRES_URL".into(), url.to_owned()),
            ("HOOKLOG_POSTGRES_SCHEMA".into(), self.schema.clone()),
        ]
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let sql = format!("drop schema if exists \"{}\" cascade", self.schema);
        let _ = self.rt.block_on(self.client.simple_query(&sql));
    }
}

pub(crate) fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn accepted_fixtures() -> Vec<(String, Fixture)> {
    Fixture::load_dir(&util::fixtures_dir())
        .unwrap()
        .into_iter()
        .filter(|(_, f)| f.expect.logged)
        .map(|(p, f)| {
            let name = p
                .strip_prefix(util::fixtures_dir())
                .unwrap()
                .display()
                .to_string();
            (name, f)
        })
        .collect()
}

fn fixture_server(db: &Db, url: &str, dir: &Path, extra: &[(&str, &str)]) -> TestServer {
    let mut env: Vec<(String, String)> = db.env(url);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cfg = util::config(Some(&util::fixtures_dir().join("hooklog.toml")), dir, &env);
    TestServer::start(cfg, None)
}

pub(crate) fn synced(s: &TestServer, db: &Db) {
    wait_until("the sink to catch up", 60, || {
        let last = s.status().log.last_seq;
        last > 0 && db.cursor() == last
    });
}

/// Sends every accepted fixture once; returns (name, seq) in order.
pub(crate) fn send_all(s: &TestServer) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (name, f) in accepted_fixtures() {
        assert_eq!(s.send_fixture(&f).status, 200, "{name}");
        out.push((name, s.status().log.last_seq));
    }
    out
}

#[test]
fn every_fixture_lands_in_the_right_tables_with_the_right_columns() {
    let db = Db::new();
    let dir = crate::engine::tempdir();
    // TLS as Supabase needs it: the local server has a certificate.
    let s = fixture_server(&db, &url_via(None, "sslmode=require"), dir.path(), &[]);
    let sent = send_all(&s);
    synced(&s, &db);
    let seq_of = |name: &str| -> u64 {
        sent.iter()
            .find(|(n, _)| n.ends_with(name))
            .unwrap_or_else(|| panic!("fixture {name}"))
            .1
    };

    // omni_events: every record once, with dedup's verdict.
    assert_eq!(
        db.count("select count(*) from $S.omni_events"),
        sent.len() as u64
    );
    assert_eq!(
        db.count("select count(distinct seq) from $S.omni_events"),
        sent.len() as u64
    );
    let verdicts: BTreeMap<u64, bool> = s
        .events()
        .into_iter()
        .map(|e| (e.seq, e.dedup.unwrap()["verdict"] == "duplicate"))
        .collect();
    for row in db.rows("select seq, duplicate, kind, parse_error from $S.omni_events order by seq")
    {
        let seq: u64 = row[0].as_ref().unwrap().parse().unwrap();
        assert_eq!(row[1].as_deref() == Some("t"), verdicts[&seq], "seq {seq}");
        assert_ne!(
            row[2].as_deref(),
            Some("unparsed"),
            "seq {seq}: {:?}",
            row[3]
        );
    }
    // The twin deliveries of one fact: the second summary, transcript and contact deletion.
    assert_eq!(
        db.count("select count(*) from $S.omni_events where duplicate"),
        3
    );
    let form = seq_of("twilio/sms_inbound.json");
    assert_eq!(
        db.one(&format!(
            "select payload->>'MessageSid' from $S.omni_events where seq = {form}"
        )),
        Some("SM485d0e8848222369e9f2e13c7b92ab65".into()),
        "form bodies become JSON objects"
    );
    let row = db.rows(&format!(
        "select source, kind, provider, resource_id, dedup_key, payload->>'type' from $S.omni_events where seq = {}",
        seq_of("openphone/legacy_message_received_v4.json")
    ));
    assert_eq!(row[0][0].as_deref(), Some("openphone"));
    assert_eq!(row[0][1].as_deref(), Some("message.received"));
    assert_eq!(
        row[0][3].as_deref(),
        Some("AC165e913969111f4e9211018fb2e56a9c")
    );
    assert!(row[0][4]
        .as_deref()
        .unwrap()
        .starts_with("openphone:evt:EV"));
    assert_eq!(row[0][5].as_deref(), Some("message.received"));

    // Dedup keys of every original.
    assert_eq!(
        db.count("select count(*) from $S.omni_events o where not duplicate and not exists (select 1 from $S.processed_webhook_events p where p.dedup_key = o.dedup_key and p.first_seq = o.seq)"),
        0
    );

    // Quo messages.
    assert_eq!(db.count("select count(*) from $S.openphone_messages"), 9);
    assert_eq!(
        db.rows("select direction, from_number, to_numbers, counterpart, body, status, status_rank from $S.openphone_messages where id = 'AC165e913969111f4e9211018fb2e56a9c'")[0],
        ["inbound", "+15555550123", "{+15555550100}", "+15555550123", "Is 3pm ok for the walkthrough?", "received", "5"]
            .map(|s| Some(s.to_owned()))
    );
    assert_eq!(
        db.rows("select direction, counterpart, body, status from $S.openphone_messages where id = 'ACc46d3ada5dbc6203e76397f7d3c34148'")[0],
        ["outbound", "+15555550147", "Sí, sigue disponible. ¿Quiere verla el jueves?", "delivered"]
            .map(|s| Some(s.to_owned()))
    );
    assert_eq!(
        db.one("select body from $S.openphone_messages where id = 'AC79d17647320fb0e0e4d49789352dba15'"),
        Some("¿Todavía está disponible? Me interesa la casa 🏡".into())
    );

    // Quo calls: ringing then completed, with the summary and the transcript attached.
    assert_eq!(db.count("select count(*) from $S.openphone_calls"), 3);
    let call = &db.rows("select status, duration_secs, counterpart, participants, summary is not null, transcript is not null, status_rank from $S.openphone_calls where id = 'AC09d6edecac0a08d93cd70e6424fa7197'")[0];
    assert_eq!(
        call,
        &[
            "completed",
            "16",
            "+15555550123",
            "{+15555550123}",
            "t",
            "t",
            "4"
        ]
        .map(|s| Some(s.to_owned()))
    );
    let call = &db.rows("select status, duration_secs, counterpart, summary[1], jsonb_array_length(transcript) > 0 from $S.openphone_calls where id = 'ACf02617bb9db18ee6478436ea8c03c663'")[0];
    assert_eq!(
        call,
        &[
            "completed",
            "89",
            "+15555550147",
            "Luis wants to list the house on Birch Ln in May.",
            "t"
        ]
        .map(|s| Some(s.to_owned()))
    );
    assert_eq!(
        db.rows("select from_number, to_number, counterpart, status from $S.openphone_calls where id = 'AC7c1897850af5d2d474a88861b7f6838f'")[0],
        ["+15555550188", "+15555550100", "+15555550188", "completed"].map(|s| Some(s.to_owned()))
    );
    assert_eq!(
        db.count("select count(*) from $S.openphone_call_summaries"),
        2
    );
    assert_eq!(
        db.one("select next_steps[1] from $S.openphone_call_summaries where call_id = 'ACf02617bb9db18ee6478436ea8c03c663'"),
        Some("Email Luis a CMA by Friday.".into())
    );
    assert_eq!(
        db.count("select count(*) from $S.openphone_call_transcripts"),
        2
    );
    assert_eq!(
        db.one("select duration_secs from $S.openphone_call_transcripts where call_id = 'AC09d6edecac0a08d93cd70e6424fa7197' and jsonb_array_length(dialogue) > 0"),
        Some("16".into())
    );

    // Quo contacts.
    assert_eq!(db.count("select count(*) from $S.openphone_contacts"), 3);
    assert_eq!(
        db.rows("select first_name, last_name, company, role, phone_numbers, deleted_at is null from $S.openphone_contacts where id = 'CT3f070a5b4970adc15a2af717'")[0],
        ["Dana", "Whitfield", "Maple & Oak Realty", "Listing agent", "{+15555550123}", "t"]
            .map(|s| Some(s.to_owned()))
    );
    assert_eq!(
        db.rows("select deleted_at is not null, first_name from $S.openphone_contacts where id = 'CT30179080c550ebc190860c05'")[0],
        ["t", "Mara"].map(|s| Some(s.to_owned()))
    );
    assert_eq!(
        db.one(
            "select first_name from $S.openphone_contacts where id = 'CT44e864358c56d19213c7985e'"
        ),
        Some("Luis".into())
    );

    // Twilio messages.
    assert_eq!(db.count("select count(*) from $S.twilio_sms"), 6);
    assert_eq!(
        db.rows("select direction, from_number, to_number, counterpart, body, status from $S.twilio_sms where sid = 'SM485d0e8848222369e9f2e13c7b92ab65'")[0],
        ["inbound", "+15555550123", "+15555550142", "+15555550123", "Hola! ¿Todavía está disponible? 2+2=4 & más 🏠 50% off?", "received"]
            .map(|s| Some(s.to_owned()))
    );
    assert_eq!(
        db.rows("select direction, counterpart, status from $S.twilio_sms where sid = 'SM083749ab1ca7bde57a26c7746622caf6'")[0],
        ["outbound", "+15555550123", "delivered"].map(|s| Some(s.to_owned()))
    );
    assert_eq!(
        db.one("select status from $S.twilio_sms where sid = 'SMd0da9cb07bf926e15102651492ac7d5b'"),
        Some("delivered".into()),
        "the JSON status callback"
    );
    assert_eq!(
        db.one("select status from $S.twilio_sms where sid = 'SM50649be862d2989a8c9ff50571cadfc3'"),
        Some("undelivered".into())
    );
    assert_eq!(
        db.one("select opt_out_type from $S.twilio_sms where sid = 'SM67d66fa48ab30bbf7eec656c00d1fb0e'"),
        Some("STOP".into())
    );
    assert_eq!(
        db.one("select cardinality(media) > 0 from $S.twilio_sms where sid = 'MM8f02b7fc2ba3b6230de6d3c839082142'"),
        Some("t".into())
    );

    // Twilio calls, with the recording and the transcription attached.
    assert_eq!(db.count("select count(*) from $S.twilio_calls"), 2);
    assert_eq!(
        db.rows("select status, duration_secs, counterpart, recording_sid, recording_status, recording_url is not null, transcription_sid, transcription_status from $S.twilio_calls where sid = 'CAbf2ae9be61628d764828baeb69319fa4'")[0],
        ["completed", "42", "+15555550123", "RE41a49ceffd65323ebbd3cdb37fad30cf", "completed", "t", "TR3d7d2ef4ec299c599530cb9396abd155", "completed"]
            .map(|s| Some(s.to_owned()))
    );
    assert_eq!(
        db.one(
            "select status from $S.twilio_calls where sid = 'CAa636d8ddad5bf9a9e6e99f4442d23f2f'"
        ),
        Some("ringing".into())
    );

    // SalesMsg.
    assert_eq!(
        db.rows("select event, message_id, direction, counterpart, body from $S.salesmsg_events")
            [0],
        [
            "message.received",
            "48213377",
            "inbound",
            "+15555550176",
            "Yes, I'm interested. Can you call me after 5?"
        ]
        .map(|s| Some(s.to_owned()))
    );

    // The suppression list.
    assert_eq!(
        db.rows("select number, state, provider, how, seq from $S.sms_optouts")[0],
        [
            "+15555550191".to_owned(),
            "opted_out".to_owned(),
            "twilio".to_owned(),
            "opt_out_type".to_owned(),
            seq_of("twilio/sms_inbound_stop.json").to_string()
        ]
        .map(Some)
    );
    assert_eq!(db.count("select count(*) from $S.sms_optouts"), 1);
    assert_eq!(
        db.one("select applied from (select string_agg(version::text, ',') as applied from $S.hooklog_schema_migrations) m"),
        Some("1,2".into()),
        "migrated at start-up"
    );
}

#[test]
fn a_rewind_to_zero_leaves_every_table_identical() {
    let db = Db::new();
    let dir = crate::engine::tempdir();
    // Records of the outbound path first (no route writes them yet): messages, dispatch
    // results, line changes.
    outbound::logged(dir.path(), &outbound::sample());
    let s = fixture_server(
        &db,
        &base_url(),
        dir.path(),
        &[("HOOKLOG_POSTGRES_BATCH", "7")],
    );
    send_all(&s);
    // SendProvider retries, flagged duplicates.
    for (_, f) in accepted_fixtures()
        .iter()
        .filter(|(_, f)| f.provider == "openphone")
    {
        assert_eq!(s.send_fixture(f).status, 200);
    }
    synced(&s, &db);
    let last = s.status().log.last_seq;
    let before = db.hashes();
    assert!(
        before
            .values()
            .all(|h| h != "d41d8cd98f00b204e9800998ecf8427e"),
        "every table has rows: {before:?}"
    );

    // Damage the projection; the re-projection must restore it.
    db.exec("update $S.openphone_messages set body = 'tampered', status = 'sent', status_rank = 0");
    db.exec("delete from $S.twilio_calls");
    db.exec("update $S.omni_events set payload = '{}'");
    // A message row is rewritten only by records past its `last_seq`: deleted, it is
    // rebuilt from its request.
    db.exec("delete from $S.outbound_messages");
    db.exec("delete from $S.agent_dispatches");
    assert_ne!(db.hashes(), before);

    let r = util::request(
        s.admin,
        "POST",
        "/admin/consumers/postgres/rewind",
        &[("authorization", &format!("Bearer {}", s.token))],
        br#"{"to_seq": 0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let report: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (report["rebuild"].as_bool(), report["to_cursor"].as_u64()),
        (Some(false), Some(0))
    );
    assert_eq!(
        db.one("select epoch from $S.hooklog_cursors where name = 'postgres'"),
        Some("1".into()),
        "the rewind moved the Postgres cursor and fenced older writers"
    );
    wait_until("the re-projection", 60, || db.cursor() == last);
    assert_eq!(db.hashes(), before, "a rewind to 0 reproduces every table");
}

#[test]
fn status_updates_and_attachments_converge_whatever_the_arrival_order() {
    // The same events, delivered in opposite orders to two servers: every table ends equal
    // (apart from the seq columns that say which record set what, so compare the columns a
    // dashboard reads).
    let fixtures: BTreeMap<String, Fixture> = accepted_fixtures().into_iter().collect();
    let order = [
        "twilio/voice_inbound.json",
        "twilio/voice_status_completed_secondary_token.json",
        "twilio/voice_recording_complete_port_443.json",
        "twilio/voice_transcription.json",
        "openphone/legacy_call_ringing_v4.json",
        "openphone/legacy_call_completed_v4.json",
        "openphone/legacy_call_summary_completed_type_dotted.json",
        "openphone/legacy_call_transcript_completed_type_dotted.json",
        "openphone/legacy_contact_updated.json",
        "openphone/legacy_contact_deleted.json",
    ];
    let run = |names: Vec<&str>| {
        let db = Db::new();
        let dir = crate::engine::tempdir();
        let s = fixture_server(&db, &base_url(), dir.path(), &[]);
        for n in names {
            assert_eq!(s.send_fixture(&fixtures[n]).status, 200, "{n}");
        }
        synced(&s, &db);
        let calls = db.rows("select sid, status, duration_secs, recording_sid, recording_status, transcription_sid, transcription_text from $S.twilio_calls order by sid");
        let quo = db.rows("select id, status, duration_secs, participants, summary, transcript from $S.openphone_calls order by id");
        let contacts = db.rows("select id, first_name, company, deleted_at is not null from $S.openphone_contacts order by id");
        (calls, quo, contacts)
    };
    let forward = run(order.to_vec());
    let backward = run(order.iter().rev().copied().collect());
    assert_eq!(forward.0[0][1].as_deref(), Some("completed"));
    assert_eq!(forward.1[0][1].as_deref(), Some("completed"));
    assert!(forward.1[0][4].is_some() && forward.1[0][5].is_some());
    assert_eq!(forward, backward);
}

/// A TCP proxy the test can cut (every open connection dropped, new ones refused) and
/// restore. With `reject_named`, it reads the frontend protocol and kills any connection that
/// sends a Parse message naming a statement, as a transaction pooler would break it.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    named: Arc<AtomicU64>,
}

impl Proxy {
    fn start(target: SocketAddr, reject_named: bool) -> Proxy {
        Proxy::on(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            target,
            reject_named,
        )
    }

    /// A proxy accepting on `listener` (e.g. one bound to a port a daemon was already told).
    pub(crate) fn on(listener: TcpListener, target: SocketAddr, reject_named: bool) -> Proxy {
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let named = Arc::new(AtomicU64::new(0));
        let (u, o, nm) = (up.clone(), open.clone(), named.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !u.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                {
                    let mut o = o.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(Shutdown::Both);
                });
                let nm = nm.clone();
                std::thread::spawn(move || {
                    let (mut client, mut server) = (client, server);
                    if reject_named {
                        if frontend_copy(&mut client, &mut server).is_err() {
                            nm.fetch_add(1, Ordering::SeqCst);
                        }
                    } else {
                        let _ = std::io::copy(&mut client, &mut server);
                    }
                    let _ = server.shutdown(Shutdown::Both);
                    let _ = client.shutdown(Shutdown::Both);
                });
            }
        });
        Proxy {
            addr,
            up,
            open,
            named,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies frontend messages to the server; `Err` when a Parse names its statement.
fn frontend_copy(client: &mut TcpStream, server: &mut TcpStream) -> Result<(), ()> {
    let mut len = [0u8; 4];
    // The startup message: length, then the rest, no type byte.
    if client.read_exact(&mut len).is_err() {
        return Ok(());
    }
    let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
    if client.read_exact(&mut body).is_err() {
        return Ok(());
    }
    if server
        .write_all(&len)
        .and_then(|_| server.write_all(&body))
        .is_err()
    {
        return Ok(());
    }
    loop {
        let mut head = [0u8; 5];
        if client.read_exact(&mut head).is_err() {
            return Ok(());
        }
        let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; n.saturating_sub(4)];
        if client.read_exact(&mut body).is_err() {
            return Ok(());
        }
        if head[0] == b'P' && body.first() != Some(&0) {
            return Err(());
        }
        if server
            .write_all(&head)
            .and_then(|_| server.write_all(&body))
            .is_err()
        {
            return Ok(());
        }
    }
}

pub(crate) fn pg_addr() -> SocketAddr {
    let base = base_url();
    let rest = base.split_once("://").unwrap().1;
    let host = rest.split('/').next().unwrap();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    host.parse().unwrap()
}

/// A fake Discord webhook that records the content of every POST.
pub(crate) struct FakeDiscord {
    pub(crate) url: String,
    posts: Arc<Mutex<Vec<String>>>,
    _rt: std::thread::JoinHandle<()>,
}

impl FakeDiscord {
    pub(crate) fn start() -> FakeDiscord {
        use warp::Filter;
        let posts: Arc<Mutex<Vec<String>>> = Arc::default();
        let p = posts.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let route =
                    warp::post()
                        .and(warp::body::json())
                        .map(move |body: serde_json::Value| {
                            p.lock()
                                .unwrap()
                                .push(body["content"].as_str().unwrap_or_default().to_owned());
                            warp::reply::with_status("", warp::http::StatusCode::NO_CONTENT)
                        });
                let (addr, server) =
                    warp::serve(route).bind_ephemeral(SocketAddr::from(([127, 0, 0, 1], 0)));
                tx.send(addr).unwrap();
                server.await;
            });
        });
        let addr = rx.recv().unwrap();
        FakeDiscord {
            url: format!("http://{addr}/api/webhooks/1/test-token"),
            posts,
            _rt: handle,
        }
    }

    pub(crate) fn posts(&self) -> Vec<String> {
        self.posts.lock().unwrap().clone()
    }
}

pub(crate) fn send_sms(s: &TestServer, sid: &str) -> u16 {
    let (path, headers, body) = twilio_sms(sid);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    s.send("POST", &path, &headers, &body).status
}

pub(crate) fn sms_server(db: &Db, url: &str, dir: &Path, extra: &[(&str, &str)]) -> TestServer {
    let mut env = db.env(url);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::edge::server_with(dir, &env)
}

#[test]
fn a_postgres_outage_stalls_the_sink_raises_an_alert_and_it_catches_up_with_nothing_lost() {
    let db = Db::new();
    let proxy = Proxy::start(pg_addr(), false);
    let discord = FakeDiscord::start();
    let dir = crate::engine::tempdir();
    let s = sms_server(
        &db,
        &url_via(Some(proxy.addr), "sslmode=disable"),
        dir.path(),
        &[
            ("HOOKLOG_ALERTS_DISCORD_WEBHOOK_URL", &discord.url),
            ("HOOKLOG_POSTGRES_ALERT_AFTER_SECS", "1"),
            ("HOOKLOG_POSTGRES_TIMEOUT_SECS", "5"),
            ("HOOKLOG_CONSUMERS_BACKOFF_BASE_MS", "20"),
            ("HOOKLOG_CONSUMERS_BACKOFF_MAX_MS", "300"),
        ],
    );
    for i in 0..20 {
        assert_eq!(send_sms(&s, &format!("SMbefore{i}")), 200);
    }
    synced(&s, &db);
    let before = db.cursor();

    proxy.cut();
    for i in 0..50 {
        assert_eq!(
            send_sms(&s, &format!("SMduring{i}")),
            200,
            "the edge keeps accepting webhooks"
        );
    }
    wait_until("the outage alert", 30, || {
        discord
            .posts()
            .iter()
            .any(|p| p.contains("Postgres sink failing"))
    });
    let st = s.status();
    let sink = st.consumers.iter().find(|c| c.name == "postgres").unwrap();
    assert_eq!(db.cursor(), before, "nothing committed while cut off");
    assert!(sink.lag >= 50, "status shows the lag: {sink:?}");
    assert!(sink.last_error.is_some(), "{sink:?}");
    let (_, metrics) = s.metrics();
    assert!(
        metrics.contains("hooklog_postgres_connected 0"),
        "metrics show the sink down"
    );

    proxy.restore();
    synced(&s, &db);
    let sids: BTreeSet<String> = db
        .rows("select sid from $S.twilio_sms")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    for i in 0..20 {
        assert!(sids.contains(&format!("SMbefore{i}")));
    }
    for i in 0..50 {
        assert!(sids.contains(&format!("SMduring{i}")), "SMduring{i} lost");
    }
    assert_eq!(sids.len(), 70);
    assert_eq!(db.count("select count(*) from $S.omni_events"), 70);
    wait_until("the recovery notice", 30, || {
        discord
            .posts()
            .iter()
            .any(|p| p.contains("Postgres sink recovered"))
    });
}

#[test]
fn the_sink_sends_no_named_prepared_statements_so_a_transaction_pooler_works() {
    let db = Db::new();
    let proxy = Proxy::start(pg_addr(), true);
    let url = url_via(Some(proxy.addr), "sslmode=disable");

    // The proxy does catch named statements: tokio-postgres' `query` with a &str prepares one.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = hooklog::consumers::postgres::connect(&url, None, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(c.client.query("select 1", &[]).await.is_err());
    });
    assert_eq!(proxy.named.load(Ordering::SeqCst), 1);

    let dir = crate::engine::tempdir();
    let s = fixture_server(&db, &url, dir.path(), &[]);
    send_all(&s);
    synced(&s, &db);
    assert!(db.count("select count(*) from $S.twilio_sms") > 0);
    assert_eq!(
        proxy.named.load(Ordering::SeqCst),
        1,
        "migrations, cursor reads and batches used unnamed statements only"
    );
}

#[test]
fn sslmode_require_encrypts_and_the_verify_modes_check_the_certificate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect = |url: String, ca: Option<&Path>| {
        rt.block_on(hooklog::consumers::postgres::connect(
            &url,
            ca,
            Duration::from_secs(10),
        ))
    };
    assert!(connect(url_via(None, "sslmode=require"), None).unwrap().tls);
    assert!(!connect(url_via(None, "sslmode=disable"), None).unwrap().tls);

    // The server's own certificate (self-signed, for `localhost`) as the CA.
    let db = Db::new();
    let cert = db.one("show ssl_cert_file").unwrap();
    let ca = Path::new(&cert);
    let pg = pg_addr();
    assert!(
        connect(url_via(Some(pg), "sslmode=verify-ca"), Some(ca))
            .unwrap()
            .tls
    );
    let localhost = url_via(None, "sslmode=verify-full").replace(&pg.ip().to_string(), "localhost");
    assert!(connect(localhost, Some(ca)).unwrap().tls);
    let err = connect(url_via(Some(pg), "sslmode=verify-full"), Some(ca))
        .err()
        .expect("the certificate does not name 127.0.0.1");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // Without the CA, the chain is checked against the system's roots: a self-signed
    // certificate passes only if the system trusts it (Debian's ssl-cert package links its
    // snakeoil certificate, which a local server may use, into the system store).
    use rustls::pki_types::pem::PemObject;
    let server_cert = rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap();
    let system_trusts_it = rustls_native_certs::load_native_certs()
        .certs
        .contains(&server_cert);
    assert_eq!(
        connect(url_via(Some(pg), "sslmode=verify-ca"), None).is_ok(),
        system_trusts_it,
        "verify-ca without a CA file follows the system's roots"
    );
}

// ---------------------------------------------------------------------------------------------
// kill -9 of the real binary while the sink is writing

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) public: SocketAddr,
    pub(crate) admin: SocketAddr,
}

fn spawn_daemon(dir: &Path, db: &Db) -> Daemon {
    spawn_daemon_with(dir, db, &[])
}

/// [`spawn_daemon`] with more environment (e.g. `HOOKLOG_CONFIG`).
pub(crate) fn spawn_daemon_with(dir: &Path, db: &Db, extra: &[(&str, &str)]) -> Daemon {
    for _attempt in 0..5 {
        let (public, admin) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hooklog"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("HOOKLOG_DATA_DIR", dir)
            .env("HOOKLOG_SERVER_LISTEN", format!("127.0.0.1:{public}"))
            .env("HOOKLOG_SERVER_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN)
            .env("HOOKLOG_SERVER_PUBLIC_URLS", BASE)
            .env("HOOKLOG_POSTGRES_BATCH", "40")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in db.env(&base_url()) {
            cmd.env(k, v);
        }
        cmd.envs(crate::engine::env_for(dir));
        cmd.envs(extra.iter().copied());
        let mut child = cmd.spawn().expect("the hooklog binary starts");
        let public = SocketAddr::from(([127, 0, 0, 1], public));
        let admin = SocketAddr::from(([127, 0, 0, 1], admin));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if util::get(public, "/readyz").0 == 200 {
                return Daemon {
                    child,
                    public,
                    admin,
                };
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "daemon not ready in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("the daemon could not start on five pairs of ports");
}

pub(crate) fn daemon_status(d: &Daemon, dir: &Path) -> hooklog::admin::api::Status {
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let r = util::request(
        d.admin,
        "GET",
        "/admin/status",
        &[("authorization", &format!("Bearer {}", token.trim()))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn killing_the_daemon_mid_batch_loses_and_doubles_nothing() {
    let db = Db::new();
    let dir = crate::engine::tempdir();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut rng = rand::thread_rng();
    let mut commits_seen_at_kill = Vec::new();
    for round in 0..4 {
        let mut daemon = spawn_daemon(dir.path(), &db);
        let stop = Arc::new(AtomicBool::new(false));
        let clients =
            crate::crash::load("SMk", daemon.public, round, 6, stop.clone(), acked.clone());
        // Let the sink commit a few batches, then kill while it is writing.
        std::thread::sleep(Duration::from_millis(rng.gen_range(400..1200)));
        commits_seen_at_kill.push(db.cursor());
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
    }
    assert!(
        commits_seen_at_kill.iter().any(|&c| c > 0),
        "the sink committed before the kills: {commits_seen_at_kill:?}"
    );
    // A last start, without load: the sink finishes from its committed cursor.
    let mut daemon = spawn_daemon(dir.path(), &db);
    let last = daemon_status(&daemon, dir.path()).log.last_seq;
    wait_until("the sink to finish after the kills", 120, || {
        db.cursor() == last
    });
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    assert_eq!(db.count("select count(*) from $S.omni_events"), last);
    assert_eq!(
        db.one("select min(seq)::text || '-' || max(seq)::text from $S.omni_events"),
        Some(format!("1-{last}")),
        "every record of the log, once"
    );
    let stored: Vec<String> = db
        .rows("select sid from $S.twilio_sms")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    let stored_set: BTreeSet<&String> = stored.iter().collect();
    let acked = acked.lock().unwrap().clone();
    let lost: Vec<&String> = acked.iter().filter(|s| !stored_set.contains(s)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events missing, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Each message was sent once: one record each, so one row and one omni_events row each.
    assert_eq!(
        db.count("select count(*) from $S.omni_events where not duplicate"),
        stored.len() as u64
    );
    assert_eq!(
        db.count("select count(*) from $S.twilio_sms where first_seq <> last_seq"),
        0,
        "no message was projected from two records"
    );
    eprintln!(
        "4 kills: {} acknowledged, {last} records, {} rows, commits at kill {commits_seen_at_kill:?}",
        acked.len(),
        stored.len()
    );
}

/// Sets the log's own cursor of the sink while the daemon is stopped.
fn set_log_cursor(dir: &Path, seq: u64) {
    let log = crate::engine::open_log(dir, &[]);
    log.store_cursor("postgres", hooklog::event::Seq(seq))
        .unwrap();
    log.close().unwrap();
}

fn processed_by_sink(s: &TestServer) -> u64 {
    let (_, metrics) = s.metrics();
    metrics
        .lines()
        .find(|l| l.starts_with("hooklog_consumer_processed_total{consumer=\"postgres\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn the_cursor_committed_in_postgres_wins_over_the_one_in_the_log() {
    let db = Db::new();
    let dir = crate::engine::tempdir();
    let start = || sms_server(&db, &base_url(), dir.path(), &[]);
    let s = start();
    for i in 0..30 {
        assert_eq!(send_sms(&s, &format!("SMc{i}")), 200);
    }
    synced(&s, &db);
    s.stop().unwrap();

    // A crash lost the log's cursor save after Postgres committed: nothing is applied twice.
    set_log_cursor(dir.path(), 10);
    db.exec("update $S.twilio_sms set body = 'kept' where sid = 'SMc20'");
    let s = start();
    synced(&s, &db);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        processed_by_sink(&s),
        0,
        "records 11..30 were not handled again"
    );
    assert_eq!(
        db.one("select body from $S.twilio_sms where sid = 'SMc20'"),
        Some("kept".into())
    );
    s.stop().unwrap();

    // The database went back in time (restored from a backup): the sink fills it again from
    // where it stands, although the log's cursor says everything was done.
    db.exec("delete from $S.omni_events where seq > 25");
    db.exec("delete from $S.twilio_sms where first_seq > 25");
    db.exec("update $S.hooklog_cursors set seq = 25 where name = 'postgres'");
    let s = start();
    synced(&s, &db);
    assert_eq!(db.count("select count(*) from $S.omni_events"), 30);
    assert_eq!(db.count("select count(*) from $S.twilio_sms"), 30);
    assert_eq!(processed_by_sink(&s), 5);
}

// ---------------------------------------------------------------------------------------------
// The sink driven directly, without a server

pub(crate) fn sms_event(seq: u64, sid: &str, body: &str) -> hooklog::event::Event {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("MessageSid", sid)
        .append_pair("SmsStatus", "received")
        .append_pair("From", "+15555550123")
        .append_pair("To", "+15555550100")
        .append_pair("Body", body)
        .finish();
    hooklog::event::Event {
        seq: hooklog::event::Seq(seq),
        received_at: hooklog::event::Micros(1_776_000_000_000_000 + seq as i64),
        source: hooklog::event::Source::Twilio,
        route: "/sms".into(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: form.into_bytes(),
        verification: hooklog::event::Verification::Internal,
    }
}

/// A sink on `db`'s schema with dedup verdicts for `events` already in its state store.
pub(crate) fn direct_sink(
    db: &Db,
    events: &[hooklog::event::Event],
) -> hooklog::consumers::postgres::PostgresSink {
    use hooklog::consumers::Consumer;
    let store = Arc::new(hooklog::state::MemState::default());
    let mut dedup = hooklog::consumers::dedup::Dedup::new(store.as_ref(), 72).unwrap();
    db.rt.block_on(dedup.handle(events)).unwrap();
    let config = hooklog::consumers::postgres::PostgresConfig {
        url: Some(hooklog::config::secret::Secret::new(base_url())),
        schema: db.schema.clone(),
        ..hooklog::consumers::postgres::PostgresConfig::default()
    };
    hooklog::consumers::postgres::PostgresSink::new(
        &config,
        72,
        store,
        hooklog::alerts::Alerter::disabled(),
        &hooklog::metrics::Metrics::new(),
    )
    .unwrap()
}

#[test]
fn a_writer_fenced_out_by_another_commits_nothing_and_resumes_from_the_stored_cursor() {
    use hooklog::consumers::{BatchError, Consumer};
    let db = Db::new();
    let events: Vec<_> = (1..=10)
        .map(|s| sms_event(s, &format!("SMf{s}"), "hi"))
        .collect();
    let mut sink = direct_sink(&db, &events);
    db.rt.block_on(sink.handle(&events[..5])).unwrap();
    db.rt.block_on(sink.flush()).unwrap();
    assert_eq!(db.cursor(), 5);

    // Another writer (or a rewind this process did not make) moves the cursor row.
    db.exec("update $S.hooklog_cursors set epoch = epoch + 1");
    // The batch is sent while the driver moves on; its failure shows when it is settled.
    db.rt.block_on(sink.handle(&events[5..])).unwrap();
    let err = db.rt.block_on(sink.flush()).unwrap_err();
    assert!(
        matches!(&err, BatchError::Transient(m) if m.contains("moved under this writer")),
        "{err}"
    );
    assert_eq!(
        db.count("select count(*) from $S.omni_events"),
        5,
        "the fenced batch was rolled back"
    );
    assert_eq!(db.cursor(), 5);

    // The driver then goes back to the cursor read again, and hands the batch again.
    assert_eq!(
        db.rt.block_on(sink.committed_cursor()).unwrap(),
        Some(hooklog::event::Seq(5))
    );
    db.rt.block_on(sink.handle(&events[5..])).unwrap();
    db.rt.block_on(sink.flush()).unwrap();
    assert_eq!(db.count("select count(*) from $S.omni_events"), 10);
    assert_eq!(db.cursor(), 10);
}

#[test]
fn a_record_postgres_refuses_is_isolated_and_the_records_before_it_are_committed() {
    use hooklog::consumers::{BatchError, Consumer};
    let db = Db::new();
    let events: Vec<_> = (1..=6)
        .map(|s| {
            sms_event(
                s,
                &format!("SMp{s}"),
                if s == 4 { "poison" } else { "fine" },
            )
        })
        .collect();
    let mut sink = direct_sink(&db, &events);
    // Migrate, then add a rule the fourth record breaks (an operator's CHECK constraint).
    assert_eq!(
        db.rt.block_on(sink.committed_cursor()).unwrap(),
        Some(hooklog::event::Seq(0))
    );
    db.exec("alter table $S.twilio_sms add constraint no_poison check (body <> 'poison')");

    // Sent in flight: the refusal shows when it is settled; the driver then goes back to the
    // committed cursor and hands the batch again, now run record by record.
    db.rt.block_on(sink.handle(&events)).unwrap();
    let err = db.rt.block_on(sink.flush()).unwrap_err();
    assert!(err.to_string().contains("record by record"), "{err}");
    assert_eq!(
        db.rt.block_on(sink.committed_cursor()).unwrap(),
        Some(hooklog::event::Seq(0))
    );
    let err = db.rt.block_on(sink.handle(&events)).unwrap_err();
    match err {
        BatchError::Poison { seq, error } => {
            assert_eq!(seq.0, 4);
            assert!(error.contains("no_poison"), "{error}");
        }
        other => panic!("expected poison, got {other}"),
    }
    assert_eq!(
        db.rows("select seq from $S.omni_events order by seq"),
        [1, 2, 3].map(|s| vec![Some(s.to_string())])
    );
    assert_eq!(db.cursor(), 4, "the cursor passes the refused record");
    // The driver continues after it.
    db.rt.block_on(sink.handle(&events[4..])).unwrap();
    db.rt.block_on(sink.flush()).unwrap();
    assert_eq!(db.count("select count(*) from $S.twilio_sms"), 5);
    assert_eq!(db.cursor(), 6);
}

#[test]
fn under_the_driver_a_refused_record_is_dead_lettered_and_the_sink_goes_on() {
    let db = Db::new();
    let dir = crate::engine::tempdir();
    let s = sms_server(&db, &base_url(), dir.path(), &[]);
    assert_eq!(send_sms(&s, "SMd0"), 200);
    synced(&s, &db);
    db.exec("alter table $S.twilio_sms add constraint no_poison check (sid <> 'SMd3')");
    for i in 1..=6 {
        assert_eq!(send_sms(&s, &format!("SMd{i}")), 200);
    }
    synced(&s, &db);
    let (code, body) = s.admin_get("/admin/dead-letters");
    assert_eq!(code, 200);
    let dl: serde_json::Value = serde_json::from_str(&body).unwrap();
    let letters = dl["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{body}");
    assert_eq!(letters[0]["consumer"], "postgres");
    assert_eq!(letters[0]["seq"], 4);
    assert!(letters[0]["error"].as_str().unwrap().contains("no_poison"));
    assert_eq!(db.count("select count(*) from $S.twilio_sms"), 6);
    assert_eq!(db.count("select count(*) from $S.omni_events"), 6);

    // Once the rule is lifted, a redrive projects it.
    db.exec("alter table $S.twilio_sms drop constraint no_poison");
    let r = util::request(
        s.admin,
        "POST",
        "/admin/dead-letters/redrive",
        &[("authorization", &format!("Bearer {}", s.token))],
        br#"{"consumer": "postgres"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("the redriven record", 20, || {
        db.count("select count(*) from $S.twilio_sms") == 7
    });
    assert_eq!(db.count("select count(*) from $S.omni_events"), 7);
}

#[test]
fn hooklog_migrate_applies_the_schema_once_and_records_it() {
    let db = Db::new();
    let migrate = |url: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hooklog"));
        cmd.arg("migrate")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOOKLOG_POSTGRES_SCHEMA", &db.schema)
            .current_dir(std::env::temp_dir());
        if let Some(u) = url {
            cmd.env("HOOKLOG_POSTGRES_URL", u);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = migrate(None);
    assert!(!ok && err.contains("postgres.url is not set"), "{err}");
    let (ok, out, err) = migrate(Some(&base_url()));
    assert!(ok, "{err}");
    assert!(out.contains("applied [1, 2]"), "{out}");
    let (ok, out, _) = migrate(Some(&base_url()));
    assert!(
        ok && out.contains("applied [], already present [1, 2]"),
        "{out}"
    );
    for t in hooklog::consumers::postgres::tables::TABLES {
        assert_eq!(
            db.count(&format!(
                "select count(*) from information_schema.tables where table_schema = '{}' and table_name = '{}'",
                db.schema, t.name
            )),
            1,
            "{}",
            t.name
        );
    }
    assert_eq!(
        db.one("select checksum from $S.hooklog_schema_migrations where version = 1"),
        Some(hooklog::consumers::postgres::migrate::MIGRATIONS[0].checksum())
    );
    // A released migration that was edited is refused, never applied again.
    db.exec("update $S.hooklog_schema_migrations set checksum = 'edited' where version = 1");
    let (ok, _, err) = migrate(Some(&base_url()));
    assert!(!ok && err.contains("migrations are never edited"), "{err}");
}

#[test]
fn a_graceful_stop_commits_the_batch_in_flight() {
    let db = Db::new();
    let dir = crate::engine::tempdir();
    let s = sms_server(
        &db,
        &base_url(),
        dir.path(),
        &[("HOOKLOG_POSTGRES_BATCH", "5")],
    );
    assert_eq!(send_sms(&s, "SMg"), 200);
    synced(&s, &db);

    // Another session holds the cursor row: the sink's transactions wait at their fence.
    let locker = db
        .rt
        .block_on(hooklog::consumers::postgres::connect(
            &base_url(),
            None,
            Duration::from_secs(10),
        ))
        .unwrap();
    let lock = format!(
        "begin; select seq from \"{}\".hooklog_cursors where name = 'postgres' for update",
        db.schema
    );
    db.rt.block_on(locker.client.batch_execute(&lock)).unwrap();
    for i in 0..20 {
        assert_eq!(send_sms(&s, &format!("SMg{i}")), 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    let stopping = std::thread::spawn(move || s.stop());
    std::thread::sleep(Duration::from_millis(500));
    db.rt
        .block_on(locker.client.batch_execute("commit"))
        .unwrap();
    stopping.join().unwrap().unwrap();

    // Everything the driver counted as handed over is committed in Postgres.
    let log = crate::engine::open_log(dir.path(), &[]);
    let handed = log.cursor("postgres").unwrap().0;
    log.close().unwrap();
    assert!(handed > 1, "the sink got past the first record: {handed}");
    assert_eq!(
        db.cursor(),
        handed,
        "the batch in flight was committed before the stop"
    );
}

// ---------------------------------------------------------------------------------------------
// The outbound path

mod outbound {
    use std::path::Path;
    use std::time::Duration;

    use hooklog::consumers::outbound::{
        self, Change, DispatchResult, GateDecision, GateVerdict, LineChange, Message, MessageId,
        MessageRequest, OutboundRecord, SendAttempt, SendResult, SendStatus,
    };
    use hooklog::consumers::Consumer;
    use hooklog::event::{Event, Micros, Seq};
    use hooklog::gates::{Reason, ReasonCode};
    use hooklog::provider::SendProvider;

    use super::{direct_sink, Db};

    /// The records appended to a real log in a fresh directory, read back as the sink gets them.
    pub(super) fn logged(dir: &Path, records: &[OutboundRecord]) -> Vec<Event> {
        let log = crate::engine::open_log(dir, &[]);
        for (i, r) in records.iter().enumerate() {
            log.append(r.to_verified(Micros(1_776_000_000_000_000 + i as i64)))
                .wait_blocking()
                .unwrap();
        }
        let events = log.read(Seq(0), records.len() + 1).unwrap();
        log.close().unwrap();
        assert_eq!(events.len(), records.len());
        events
    }

    fn id(n: u8) -> MessageId {
        MessageId(format!("msg_00000000000010000000000{n:03x}"))
    }

    fn request(n: u8) -> OutboundRecord {
        OutboundRecord::Request(MessageRequest {
            id: id(n),
            idempotency_key: Some(format!("key-{n}")),
            from: "quo-main".into(),
            provider: None,
            to: "(212) 555-0100".into(),
            content: format!("hello {n}"),
            requested_at: "2026-11-30T12:00:00Z".into(),
            requested_by: None,
        })
    }

    fn decision(n: u8, verdict: GateVerdict, evaluation: u32, at: &str) -> OutboundRecord {
        OutboundRecord::Decision(GateDecision {
            id: id(n),
            verdict,
            reasons: match verdict {
                GateVerdict::Allow => vec![],
                GateVerdict::Hold => vec![Reason::new(ReasonCode::QuietHours, "quiet hours")],
                GateVerdict::Refuse => vec![
                    Reason::new(ReasonCode::RecipientOptedOut, "the recipient opted out"),
                    Reason::new(ReasonCode::QuietHours, "quiet hours"),
                ],
            },
            hold_until: (verdict == GateVerdict::Hold).then(|| "2026-12-01T16:00:00Z".into()),
            line_id: Some("quo-main".into()),
            from_number: Some("+12125550199".into()),
            provider: Some(SendProvider::Quo),
            to: Some("+12125550100".into()),
            evaluation,
            decided_at: at.into(),
        })
    }

    fn attempt(n: u8) -> OutboundRecord {
        OutboundRecord::Attempt(SendAttempt {
            id: id(n),
            attempt: 1,
            provider: SendProvider::Quo,
            from: "+12125550199".into(),
            to: "+12125550100".into(),
            redelivery: false,
            at: "2026-12-01T16:00:02Z".into(),
        })
    }

    fn result(n: u8, status: SendStatus) -> OutboundRecord {
        OutboundRecord::Result(SendResult {
            id: id(n),
            attempt: 1,
            status,
            outcome: status.as_str().into(),
            provider_id: (status == SendStatus::Sent).then(|| "AC123".into()),
            code: None,
            error: (status == SendStatus::Unknown).then(|| "no answer within 10 s".into()),
            reasons: vec![],
            tries: 1,
            at: "2026-12-01T16:00:03Z".into(),
        })
    }

    /// What `outbound::apply` makes of message `n`'s records, folded here in log order.
    fn folded(events: &[Event], n: u8) -> Message {
        let mut message: Option<Message> = None;
        for e in events {
            match OutboundRecord::decode(e).unwrap().unwrap() {
                OutboundRecord::Request(r) if r.id == id(n) => {
                    message = Some(Message::requested(e.seq.0, &r));
                }
                record => {
                    let m = message.as_mut();
                    let change = match &record {
                        OutboundRecord::Decision(d) if d.id == id(n) => Change::Decision(d),
                        OutboundRecord::Attempt(a) if a.id == id(n) => Change::Attempt(a),
                        OutboundRecord::Result(r) if r.id == id(n) => Change::Result(r),
                        _ => continue,
                    };
                    outbound::apply(m.unwrap(), e.seq.0, change);
                }
            }
        }
        message.unwrap()
    }

    /// The stored message `n` (its `state`), and its whole row as text.
    fn stored(db: &Db, n: u8) -> (Message, String) {
        let state = db
            .one(&format!(
                "select state::text from $S.outbound_messages where id = '{}'",
                id(n)
            ))
            .unwrap();
        let row = db
            .one(&format!(
                "select x::text from $S.outbound_messages x where id = '{}'",
                id(n)
            ))
            .unwrap();
        (serde_json::from_str(&state).unwrap(), row)
    }

    fn apply(db: &Db, sink: &mut hooklog::consumers::postgres::PostgresSink, events: &[Event]) {
        db.rt.block_on(sink.handle(events)).unwrap();
        db.rt.block_on(sink.flush()).unwrap();
    }

    #[test]
    fn a_sent_message_is_one_row_equal_to_the_fold_that_a_replay_or_a_rewind_leaves_identical() {
        let db = Db::new();
        let dir = crate::engine::tempdir();
        let at = "2026-11-30T12:00:01Z";
        let events = logged(
            dir.path(),
            &[
                request(1),
                decision(1, GateVerdict::Allow, 1, at),
                attempt(1),
                result(1, SendStatus::Sent),
            ],
        );
        let mut sink = direct_sink(&db, &events);
        // In two batches: the second folds onto the message the first stored.
        apply(&db, &mut sink, &events[..2]);
        assert_eq!(
            db.rows("select status, approved::text, attempts::text from $S.outbound_messages"),
            [[
                Some("pending".into()),
                Some("true".into()),
                Some("0".into())
            ]]
        );
        apply(&db, &mut sink, &events[2..]);
        assert_eq!(db.cursor(), 4);
        assert_eq!(db.count("select count(*) from $S.outbound_messages"), 1);
        let (message, row) = stored(&db, 1);
        assert_eq!(message, folded(&events, 1));
        assert_eq!(
            db.rows(
                "select status, provider_message_id, jsonb_array_length(history)::text, \
                 attempts::text, evaluations::text, request_seq::text, last_seq::text, \
                 provider, from_line, line_id, from_number, to_number, to_e164, content, \
                 idempotency_key, (requested_at = '2026-11-30T12:00:00Z')::text, \
                 (updated_at = '2026-12-01T16:00:03Z')::text, reasons::text \
                 from $S.outbound_messages"
            ),
            [[
                "sent",
                "AC123",
                "4",
                "1",
                "1",
                "1",
                "4",
                "openphone",
                "quo-main",
                "quo-main",
                "+12125550199",
                "(212) 555-0100",
                "+12125550100",
                "hello 1",
                "key-1",
                "true",
                "true",
                "[]"
            ]
            .map(|s| Some(s.to_owned()))]
        );
        assert_eq!(
            db.rows(
                "select s->>'event' from $S.outbound_messages, jsonb_array_elements(history) s"
            ),
            ["requested", "allowed", "attempt", "sent"].map(|s| vec![Some(s.to_owned())])
        );
        let hashes = db.hashes();

        // The same batch again (a redrive: at or below the committed cursor).
        apply(&db, &mut sink, &events);
        assert_eq!(stored(&db, 1).1, row);
        // A rewind to 0, replayed record by record.
        db.rt.block_on(sink.move_committed_cursor(Seq(0))).unwrap();
        assert_eq!(db.cursor(), 0);
        for e in &events {
            apply(&db, &mut sink, std::slice::from_ref(e));
        }
        assert_eq!(db.cursor(), 4);
        assert_eq!(stored(&db, 1).1, row);
        assert_eq!(db.hashes(), hashes, "every table as it was");
    }

    #[test]
    fn a_held_message_allowed_later_can_end_unknown_and_a_refused_one_keeps_its_reasons() {
        let db = Db::new();
        let dir = crate::engine::tempdir();
        let events = logged(
            dir.path(),
            &[
                request(1),
                decision(1, GateVerdict::Hold, 1, "2026-11-30T23:30:00Z"),
                request(2),
                decision(2, GateVerdict::Refuse, 1, "2026-11-30T23:30:01Z"),
                // A late second decision for the refused message changes nothing.
                decision(2, GateVerdict::Allow, 2, "2026-11-30T23:30:02Z"),
                decision(1, GateVerdict::Allow, 2, "2026-12-01T16:00:00Z"),
                attempt(1),
                result(1, SendStatus::Unknown),
            ],
        );
        let mut sink = direct_sink(&db, &events);
        apply(&db, &mut sink, &events[..2]);
        assert_eq!(
            db.rows(
                "select status, hold_until = '2026-12-01T16:00:00Z', reasons->0->>'code' \
                 from $S.outbound_messages"
            ),
            [[
                Some("held".into()),
                Some("t".into()),
                Some("quiet_hours".into())
            ]]
        );
        apply(&db, &mut sink, &events[2..5]);
        apply(&db, &mut sink, &events[5..]);

        let (held, _) = stored(&db, 1);
        assert_eq!(held, folded(&events, 1));
        assert_eq!(
            db.rows(&format!(
                "select status, evaluations::text, attempts::text, hold_until is null, error, \
                 provider_message_id is null from $S.outbound_messages where id = '{}'",
                id(1)
            )),
            [[
                Some("unknown".into()),
                Some("2".into()),
                Some("1".into()),
                Some("t".into()),
                Some("no answer within 10 s".into()),
                Some("t".into())
            ]]
        );
        assert_eq!(
            db.rows(&format!(
                "select s->>'event' from $S.outbound_messages, jsonb_array_elements(history) s \
                 where id = '{}'",
                id(1)
            )),
            ["requested", "held", "allowed", "attempt", "unknown"]
                .map(|s| vec![Some(s.to_owned())])
        );

        let (refused, _) = stored(&db, 2);
        assert_eq!(refused, folded(&events, 2));
        assert_eq!(
            db.rows(&format!(
                "select status, approved::text, last_seq::text, jsonb_array_length(history)::text \
                 from $S.outbound_messages where id = '{}'",
                id(2)
            )),
            [[
                Some("refused".into()),
                Some("false".into()),
                Some("4".into()),
                Some("2".into())
            ]]
        );
        let reasons: serde_json::Value = serde_json::from_str(
            &db.one(&format!(
                "select reasons::text from $S.outbound_messages where id = '{}'",
                id(2)
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            reasons,
            serde_json::json!([
                {"code": "recipient_opted_out", "message": "the recipient opted out"},
                {"code": "quiet_hours", "message": "quiet hours"}
            ])
        );
        assert_eq!(
            db.count(
                "select count(*) from $S.outbound_messages where status = 'refused' \
                 and reasons @> '[{\"code\": \"recipient_opted_out\"}]'"
            ),
            1
        );
    }

    /// A bit of everything: a sent message, a held then refused one, dispatch results, a
    /// line blocked and unblocked.
    pub(super) fn sample() -> Vec<OutboundRecord> {
        vec![
            request(1),
            request(2),
            decision(1, GateVerdict::Allow, 1, "2026-11-30T12:00:01Z"),
            decision(2, GateVerdict::Hold, 1, "2026-11-30T23:30:00Z"),
            dispatched(1, "acquisitions", "delivered"),
            attempt(1),
            line("blocked", "A2P campaign suspended"),
            result(1, SendStatus::Sent),
            decision(2, GateVerdict::Refuse, 2, "2026-12-01T16:00:00Z"),
            line("unblocked", "campaign approved again"),
            dispatched(2, "atlas", "dead_lettered"),
        ]
    }

    fn dispatched(event_seq: u64, agent: &str, outcome: &str) -> OutboundRecord {
        OutboundRecord::Dispatch(DispatchResult {
            seq: event_seq,
            agent: agent.into(),
            idempotency_key: format!("hooklog:{event_seq}:k"),
            kind: "message.received".into(),
            outcome: outcome.into(),
            status: (outcome == "delivered").then_some(202),
            attempts: 2,
            latency_ms: 850,
            opted_out: false,
            redelivery: false,
            error: (outcome != "delivered").then(|| "gateway said 400".into()),
            at: "2026-11-30T12:00:03Z".into(),
        })
    }

    fn line(state: &str, reason: &str) -> OutboundRecord {
        OutboundRecord::Line(LineChange {
            line_id: "quo-main".into(),
            state: state.into(),
            reason: reason.into(),
            at: "2026-11-30T12:00:04Z".into(),
        })
    }

    #[test]
    fn dispatch_results_land_in_agent_dispatches_once_even_when_the_batch_is_applied_twice() {
        let db = Db::new();
        let dir = crate::engine::tempdir();
        let events = logged(
            dir.path(),
            &[
                dispatched(7, "acquisitions", "delivered"),
                line("blocked", "A2P campaign suspended"),
                dispatched(7, "atlas", "rejected"),
                line("unblocked", "campaign approved again"),
            ],
        );
        let mut sink = direct_sink(&db, &events);
        let expected = [
            [
                "1",
                "7",
                "acquisitions",
                "delivered",
                "202",
                "2",
                "850",
                "hooklog:7:k",
            ]
            .map(Some),
            ["3", "7", "atlas", "rejected", "", "2", "850", "hooklog:7:k"].map(Some),
        ]
        .map(|r| {
            r.map(|c| c.filter(|s| !s.is_empty()).map(str::to_owned))
                .to_vec()
        })
        .to_vec();
        let query = "select seq::text, event_seq::text, agent, outcome, status::text, \
                     attempts::text, latency_ms::text, idempotency_key \
                     from $S.agent_dispatches order by seq";
        apply(&db, &mut sink, &events);
        assert_eq!(db.rows(query), expected);
        // Applied again: once as a redrive, once after a rewind.
        apply(&db, &mut sink, &events);
        db.rt.block_on(sink.move_committed_cursor(Seq(0))).unwrap();
        apply(&db, &mut sink, &events);
        assert_eq!(db.cursor(), 4);
        assert_eq!(db.rows(query), expected);
        assert_eq!(
            db.count("select count(*) from $S.agent_dispatches where event_seq = 7 and agent = 'atlas' and error = 'gateway said 400'"),
            1
        );
        // The line's latest change wins, whatever is replayed.
        assert_eq!(
            db.rows("select line_id, state, reason, seq::text from $S.outbound_lines"),
            [
                ["quo-main", "unblocked", "campaign approved again", "4"]
                    .map(|s| Some(s.to_owned()))
            ]
        );
        db.rt.block_on(sink.move_committed_cursor(Seq(1))).unwrap();
        apply(&db, &mut sink, &events[1..2]);
        assert_eq!(
            db.one("select state from $S.outbound_lines"),
            Some("unblocked".into())
        );
    }

    #[test]
    fn migration_0002_applies_on_a_database_migrated_with_0001_only_and_twice_is_a_no_op() {
        use hooklog::consumers::postgres::migrate::{migrate, migrate_up_to, Report, MIGRATIONS};
        let db = Db::new();
        let mut client = db
            .rt
            .block_on(hooklog::consumers::postgres::connect(
                &super::base_url(),
                None,
                Duration::from_secs(10),
            ))
            .unwrap()
            .client;
        let tables = |db: &Db| {
            db.rows(&format!(
                "select table_name from information_schema.tables where table_schema = '{}' \
                 and table_name in ('outbound_messages', 'agent_dispatches', 'outbound_lines') \
                 order by 1",
                db.schema
            ))
            .len()
        };
        let report = db
            .rt
            .block_on(migrate_up_to(&mut client, &db.schema, 1))
            .unwrap();
        assert_eq!(
            report,
            Report {
                applied: vec![1],
                present: vec![]
            }
        );
        assert_eq!(tables(&db), 0);
        db.exec("insert into $S.hooklog_cursors (name, seq, epoch) values ('postgres', 42, 3)");

        let report = db.rt.block_on(migrate(&mut client, &db.schema)).unwrap();
        assert_eq!(
            report,
            Report {
                applied: vec![2],
                present: vec![1]
            }
        );
        assert_eq!(tables(&db), 3);
        assert_eq!(
            db.one("select seq::text || '/' || epoch::text from $S.hooklog_cursors"),
            Some("42/3".into()),
            "0001's rows are untouched"
        );
        assert_eq!(
            db.one("select checksum from $S.hooklog_schema_migrations where version = 2"),
            Some(MIGRATIONS[1].checksum())
        );
        let indexes = db.rows(&format!(
            "select indexname from pg_indexes where schemaname = '{}' and tablename in \
             ('outbound_messages', 'agent_dispatches') order by 1",
            db.schema
        ));
        assert_eq!(
            indexes,
            [
                "agent_dispatches_event",
                "agent_dispatches_pkey",
                "outbound_messages_idempotency_key",
                "outbound_messages_pkey",
                "outbound_messages_status",
                "outbound_messages_to"
            ]
            .map(|s| vec![Some(s.to_owned())])
        );

        // Twice: nothing to do; and the file itself runs again without error.
        let report = db.rt.block_on(migrate(&mut client, &db.schema)).unwrap();
        assert_eq!(
            report,
            Report {
                applied: vec![],
                present: vec![1, 2]
            }
        );
        db.exec(&format!(
            "begin; set local search_path to \"{}\"; {} commit;",
            db.schema, MIGRATIONS[1].sql
        ));
        assert_eq!(tables(&db), 3);
    }
}
