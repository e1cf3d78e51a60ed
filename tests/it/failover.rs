//! Two replicas of the real binary on one JetStream stream: both serve the edge, only the
//! holder of the consumers' lease runs consumers (`hooklog_consumers_leader 1` in the admin
//! listener's `/metrics`). The leader is killed with SIGKILL under webhook load while it sends
//! texts and wakes an agent; the standby takes the lease and its consumers catch up from the
//! log, losing and doubling nothing.
//!
//! Always on JetStream (a stream of the test's own on the machine's nats-server, deleted at
//! the end), whatever `HOOKLOG_TEST_ENGINE` says; the Postgres sink writes into a schema of
//! the test's own ([`crate::postgres::Db`]), dropped at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hooklog::admin::api::{EventPage, Status};

use crate::crash::{free_port, spawn_daemon_with, Daemon};
use crate::edge::twilio_sms;
use crate::fake_server::{answer, FakeServer, Reply};
use crate::jetstream_stream::Stream;
use crate::outbound::{admin_json, token_of, BODY, LINES};
use crate::postgres::{base_url, Db};
use crate::util;

/// The consumers' lease, as short as the configuration allows, so that a fail-over fits in
/// a test.
pub(crate) const LEASE_SECS: u64 = 3;

/// The consumers a replica with this configuration runs, each of which must catch up.
const CONSUMERS: [&str; 6] = [
    "compliance",
    "dedup",
    "dispatch",
    "outbound",
    "postgres",
    "sender",
];

const GATEWAY_TOKEN: &str = "gw-failover-token";

/// One `hooklog serve` with a data directory and ports of its own; killed when dropped, so
/// that a failed assertion leaves nothing running. (`trust_stops` starts replicas too.)
pub(crate) struct Replica {
    data: PathBuf,
    ports: (u16, u16),
    daemon: Option<Daemon>,
}

impl Replica {
    pub(crate) fn new(data: PathBuf) -> Replica {
        Replica {
            data,
            ports: (free_port(), free_port()),
            daemon: None,
        }
    }

    /// Starts the binary and waits until `/readyz` answers 200.
    pub(crate) fn start(&mut self, env: &[(String, String)]) {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.daemon = Some(spawn_daemon_with(&self.data, &mut self.ports, &env));
    }

    pub(crate) fn public(&self) -> SocketAddr {
        self.daemon.as_ref().expect("the replica runs").public
    }

    pub(crate) fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.1))
    }

    /// An admin request with this replica's own token.
    pub(crate) fn admin_json(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        admin_json(self.admin(), &token_of(&self.data), method, path, body)
    }

    /// `hooklog_consumers_leader` on the admin listener's `/metrics`; `None` when the
    /// replica does not answer or does not show it.
    pub(crate) fn leader(&self) -> Option<u64> {
        let (code, metrics) = self.daemon.as_ref()?.metrics();
        if code != 200 {
            return None;
        }
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("hooklog_consumers_leader "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }

    /// SIGKILL: no shutdown code runs, the lease is not released.
    pub(crate) fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 30 s; the exit status, if any.
    pub(crate) fn stop(&mut self) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let mut d = self.daemon.take()?;
        let _ = kill(Pid::from_raw(d.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = d.child.kill();
        let _ = d.child.wait();
        None
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 50 ms until it gives a value; panics with its last reason after `within`.
pub(crate) fn poll<T>(what: &str, within: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return v,
            Err(why) => assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last: {why}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The configuration file both replicas share: the outbound lines and dispatch of inbound
/// messages to the agent `acquisitions` at `gateway`.
fn config_file(dir: &Path, gateway: &FakeServer) -> PathBuf {
    let file = dir.join("hooklog.toml");
    std::fs::write(
        &file,
        format!(
            "{LINES}\n[dispatch]\nurl = \"http://{}/v1/dispatch\"\ntoken = \"{GATEWAY_TOKEN}\"\n\n\
             [[dispatch.routes]]\nkinds = [\"message.received\"]\nagent = \"acquisitions\"\n",
            gateway.addr
        ),
    )
    .unwrap();
    file
}

/// The environment of both replicas: the same stream (with a short lease), Postgres schema,
/// fake Quo and configuration file. The engine is chosen here, so `spawn_daemon_with` adds
/// no engine of the run's own.
fn replica_env(stream: &Stream, config: &Path, db: &Db, quo: &FakeServer) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("HOOKLOG_CONFIG", config.display().to_string()),
        ("HOOKLOG_LOG_BACKEND", "jetstream".to_owned()),
        ("HOOKLOG_LOG_JETSTREAM_NATS_URL", stream.url.clone()),
        ("HOOKLOG_LOG_JETSTREAM_STREAM", stream.name.clone()),
        ("HOOKLOG_LOG_JETSTREAM_SUBJECT", stream.subject.clone()),
        ("HOOKLOG_LOG_JETSTREAM_LEASE_SECS", LEASE_SECS.to_string()),
        ("HOOKLOG_OPENPHONE_API_KEY", "quo-test-key".to_owned()),
        ("HOOKLOG_OPENPHONE_API_BASE", format!("http://{}", quo.addr)),
        // Noon in New York on a weekday (debug builds only): quiet hours allow sending.
        (
            "DEBUG_HOOKLOG_CLOCK_START",
            "2026-06-10T16:00:00Z".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(db.env(&base_url()));
    env
}

/// One webhook a load client sent: its MessageSid, the replica it went to (0 = A, 1 = B),
/// whether it was acknowledged (2xx), and when the answer (or the failure) came.
struct Sent {
    sid: String,
    to: usize,
    acked: bool,
    at: Instant,
}

/// `clients` threads sending signed Twilio SMS webhooks, each with a MessageSid of its own,
/// alternating between `targets`, until `stop`. A failed request is not retried: a retry
/// would be a second record, by design (dedup flags it).
fn load(
    targets: [SocketAddr; 2],
    clients: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
) -> Vec<JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(10))
                    .build();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let to = (c + n) % 2;
                    let sid = format!("SMfo{c}n{n}");
                    n += 1;
                    let (path, headers, body) = twilio_sms(&sid);
                    let mut req = agent.post(&format!("http://{}{path}", targets[to]));
                    for (k, v) in &headers {
                        req = req.set(k, v);
                    }
                    let acked =
                        matches!(req.send_bytes(&body), Ok(r) if (200..300).contains(&r.status()));
                    sent.lock().unwrap().push(Sent {
                        sid,
                        to,
                        acked,
                        at: Instant::now(),
                    });
                    if !acked {
                        // A dead replica refuses at once: do not spin.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            })
        })
        .collect()
}

/// A valid outbound request: one recipient and one text per `n`, so no cap or duplicate
/// rule of the gates applies.
fn text_request(n: u32) -> (String, String) {
    let content = format!("{BODY} [fo-{n}]");
    let body = serde_json::json!({
        "from": "quo-main", "to": format!("+1212555{:04}", 2000 + n),
        "content": content, "idempotencyKey": format!("fo-{n}"),
    });
    (content, body.to_string())
}

/// Every record in the log, through a replica's admin API.
pub(crate) fn events(r: &Replica) -> Vec<hooklog::admin::api::EventJson> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (code, v) = r.admin_json(
            "GET",
            &format!("/admin/events?after={after}&limit=1000"),
            "",
        );
        assert_eq!(code, 200, "{v}");
        let page: EventPage = serde_json::from_value(v).expect("page JSON");
        if page.events.is_empty() {
            return out;
        }
        after = page.next_after;
        out.extend(page.events);
    }
}

/// Ok when every consumer `r` runs has read the whole log (and the list names every one of
/// [`CONSUMERS`]) and the Postgres sink has committed it there; else what is missing.
fn caught_up(r: &Replica, db: &Db) -> Result<(), String> {
    let (code, v) = r.admin_json("GET", "/admin/status", "");
    if code != 200 {
        return Err(format!("status {code}: {v}"));
    }
    let status: Status = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let last = status.log.last_seq;
    let running: Vec<_> = status
        .consumers
        .iter()
        .filter(|c| c.state != "stored")
        .collect();
    let missing: Vec<&str> = CONSUMERS
        .into_iter()
        .filter(|n| !running.iter().any(|c| c.name == *n))
        .collect();
    let behind: Vec<String> = running
        .iter()
        .filter(|c| c.cursor != last)
        .map(|c| format!("{} at {} ({})", c.name, c.cursor, c.state))
        .collect();
    let committed = db.cursor();
    if missing.is_empty() && behind.is_empty() && committed == last {
        Ok(())
    } else {
        Err(format!(
            "log ends at {last}; not running: {missing:?}; behind: {behind:?}; \
             cursor committed in Postgres: {committed}"
        ))
    }
}

/// The MessageSid in a dispatch's idempotency key `hooklog:<seq>:twilio:msg:<sid>:received`.
fn sid_of_key(key: &str) -> &str {
    key.split(":msg:")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("not a Twilio message key: {key}"))
}

#[test]
fn two_replicas_share_a_stream_and_a_sigkilled_leader_loses_and_doubles_nothing() {
    // Declared first, dropped last: after the replicas are dead.
    let stream = Stream::on_machine();
    let db = Db::new();
    let gateway = FakeServer::start(answer(202, r#"{"ok":true}"#));
    // Quo answers each send after 200 ms, so that a send may be in flight at the kill.
    let quo = FakeServer::start(Reply::Late(
        Duration::from_millis(200),
        202,
        r#"{"data":{"id":"AC0001","status":"queued"}}"#.to_owned(),
    ));
    let tmp = crate::engine::tempdir();
    let config = config_file(tmp.path(), &gateway);
    let env = replica_env(&stream, &config, &db, &quo);
    let mut a = Replica::new(tmp.path().join("a"));
    let mut b = Replica::new(tmp.path().join("b"));

    // 1. A takes the lease; B serves the edge as a standby.
    a.start(&env);
    poll("A leads", Duration::from_secs(30), || match a.leader() {
        Some(1) => Ok(()),
        other => Err(format!("A's hooklog_consumers_leader: {other:?}")),
    });
    b.start(&env);
    assert_eq!(
        util::get(b.public(), "/readyz").0,
        200,
        "a standby is ready"
    );
    let b_metric = poll("B shows the metric", Duration::from_secs(10), || {
        b.leader()
            .ok_or_else(|| "no hooklog_consumers_leader".to_owned())
    });
    assert_eq!(b_metric, 0, "B is a standby while A holds the lease");
    assert_eq!(a.leader(), Some(1), "A still leads");
    let (code, v) = b.admin_json("POST", "/v1/messages", &text_request(999).1);
    assert_eq!(code, 503, "a standby takes no outbound request: {v}");

    // 2. and 3. Webhooks to both replicas, and texts requested through A.
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let load_started = Instant::now();
    let clients = load([a.public(), b.public()], 4, stop.clone(), sent.clone());
    let mut texts: BTreeMap<String, String> = BTreeMap::new(); // id → content
    for n in 0..10 {
        let (content, body) = text_request(n);
        let (code, v) = a.admin_json("POST", "/v1/messages", &body);
        assert_eq!(code, 202, "{v}");
        texts.insert(v["id"].as_str().unwrap().to_owned(), content);
        std::thread::sleep(Duration::from_millis(50));
    }

    // 4. Kill the leader mid-load and mid-send.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(load_started.elapsed()));
    let quo_calls_before_kill = quo.requests().len();
    a.kill();
    let killed = Instant::now();
    let took = poll("B takes the lease", Duration::from_secs(60), || {
        match b.leader() {
            Some(1) => Ok(killed.elapsed()),
            other => Err(format!("B's hooklog_consumers_leader: {other:?}")),
        }
    });
    eprintln!(
        "fail-over: B leads {:.2} s after A was killed (lease {LEASE_SECS} s); \
         Quo had been called {quo_calls_before_kill} times of {}",
        took.as_secs_f64(),
        texts.len()
    );
    assert!(
        took <= Duration::from_secs(LEASE_SECS + 3),
        "B took the lease only {took:?} after the kill"
    );

    // 5. More load, then wait for B's consumers to read the whole log.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let acked: BTreeSet<&str> = sent
        .iter()
        .filter(|s| s.acked)
        .map(|s| s.sid.as_str())
        .collect();
    let acked_by = |to: usize, from: Instant, until: Instant| {
        sent.iter()
            .filter(|s| s.acked && s.to == to && s.at > from && s.at < until)
            .count()
    };
    assert!(
        acked_by(0, load_started, killed) > 0,
        "A acknowledged webhooks before the kill"
    );
    assert!(
        acked_by(1, load_started, killed) > 0,
        "B acknowledged webhooks as a standby"
    );
    assert!(
        acked_by(1, killed, killed + took) > 0,
        "B acknowledged webhooks while nobody held the lease"
    );
    let statuses: BTreeMap<&str, String> = texts
        .keys()
        .map(|id| {
            let status = poll(
                &format!("{id} is decided and sent"),
                Duration::from_secs(60),
                || {
                    let (code, m) = b.admin_json("GET", &format!("/v1/messages/{id}"), "");
                    match m["status"].as_str() {
                        Some(s @ ("sent" | "unknown" | "failed" | "refused")) => Ok(s.to_owned()),
                        _ => Err(format!("{code}: {m}")),
                    }
                },
            );
            (id.as_str(), status)
        })
        .collect();
    poll("B's consumers caught up", Duration::from_secs(120), || {
        caught_up(&b, &db)
    });

    // 6a. Every acknowledged webhook is in the log once; none is there twice.
    let events = events(&b);
    let last = events.last().map_or(0, |e| e.seq);
    let mut in_log: BTreeMap<String, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.route == "/sms") {
        let sid = form_urlencoded::parse(e.body.as_bytes())
            .find(|(k, _)| k == "MessageSid")
            .map(|(_, v)| v.into_owned())
            .expect("a MessageSid in every stored SMS");
        *in_log.entry(sid).or_default() += 1;
    }
    let lost: Vec<&&str> = acked.iter().filter(|s| !in_log.contains_key(**s)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged webhooks not in the log, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let twice: Vec<_> = in_log.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    let sids_sent: BTreeSet<&str> = sent.iter().map(|s| s.sid.as_str()).collect();
    assert!(
        in_log.keys().all(|s| sids_sent.contains(s.as_str())),
        "only what was sent is stored"
    );

    // 6b. Postgres: every record once, every stored message once.
    assert_eq!(db.count("select count(*) from $S.omni_events"), last);
    assert_eq!(
        db.one("select min(seq)::text || '-' || max(seq)::text from $S.omni_events"),
        Some(format!("1-{last}")),
        "every record of the log, once"
    );
    let rows: BTreeSet<String> = db
        .rows("select sid from $S.twilio_sms")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(
        rows,
        in_log.keys().cloned().collect::<BTreeSet<String>>(),
        "one twilio_sms row per stored message"
    );
    assert_eq!(
        db.count("select count(*) from $S.twilio_sms where first_seq <> last_seq"),
        0,
        "no message was projected from two records"
    );
    assert_eq!(
        db.count(
            "select count(*) from (select payload->>'MessageSid' from $S.omni_events \
             where route = '/sms' group by 1 having count(*) > 1) twice"
        ),
        0
    );

    // 6c. Dispatch: every acknowledged message woke the agent, under one key; only the call
    // in flight at the kill may have been made twice (dispatch is serial).
    let keys = crate::dispatch::keys_seen(&gateway);
    let mut keys_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut calls_of: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &keys {
        keys_of.entry(sid_of_key(k)).or_default().insert(k);
        *calls_of.entry(k).or_default() += 1;
    }
    let undispatched: Vec<&&str> = acked
        .iter()
        .filter(|s| !keys_of.contains_key(**s))
        .collect();
    assert!(
        undispatched.is_empty(),
        "{} acknowledged messages never dispatched, e.g. {:?}",
        undispatched.len(),
        &undispatched[..undispatched.len().min(5)]
    );
    let two_keys: Vec<_> = keys_of.iter().filter(|(_, k)| k.len() > 1).collect();
    assert!(
        two_keys.is_empty(),
        "dispatched under two keys: {two_keys:?}"
    );
    let repeated: Vec<_> = calls_of.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "{} webhooks sent, {} acknowledged, {} stored; {} dispatches, {} keys seen more than \
         once: {:?}",
        sent.len(),
        acked.len(),
        in_log.len(),
        keys.len(),
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    );
    assert!(
        repeated.len() <= 1,
        "only the call in flight at the kill may repeat; {} keys did",
        repeated.len()
    );
    for (key, _) in &repeated {
        let first = gateway
            .requests()
            .into_iter()
            .find(|r| r.header("idempotency-key") == Some(**key))
            .unwrap();
        assert!(
            first.at < killed,
            "{key} repeated, but was first called after the kill"
        );
    }

    // 6d. Sends: each text at most once; sent means Quo has it, once.
    let mut quo_calls: BTreeMap<String, usize> = BTreeMap::new();
    for r in quo.requests() {
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        *quo_calls
            .entry(v["content"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for (id, content) in &texts {
        let n = quo_calls.get(content).copied().unwrap_or(0);
        match statuses[id.as_str()].as_str() {
            "sent" => assert_eq!(n, 1, "{id} is sent: exactly one call"),
            "unknown" => assert!(n <= 1, "{id} is unknown: at most one call, got {n}"),
            other => panic!("{id} ended {other}: every text here passes the gates"),
        }
    }
    assert!(
        quo_calls.values().all(|&n| n == 1),
        "no text was sent twice: {quo_calls:?}"
    );
    eprintln!("texts: {statuses:?}");

    // 7. A restarted on its data directory is a standby while B holds the lease.
    a.start(&env);
    let a_metric = poll("A shows the metric", Duration::from_secs(10), || {
        a.leader()
            .ok_or_else(|| "no hooklog_consumers_leader".to_owned())
    });
    assert_eq!(a_metric, 0, "the restarted A is a standby");
    let (code, v) = a.admin_json("POST", "/v1/messages", &text_request(998).1);
    assert_eq!(code, 503, "a standby takes no outbound request: {v}");
    // For longer than a lease: B keeps renewing it, A does not take it.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(LEASE_SECS + 1) {
        assert_eq!((a.leader(), b.leader()), (Some(0), Some(1)));
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("stopped: A {:?}, B {:?}", a.stop(), b.stop());
    drop((a, b, tmp, db, stream));
}
