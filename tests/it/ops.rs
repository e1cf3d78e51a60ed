//! Operating the daemon: where the configuration comes from and `check-config`, stopping it
//! (SIGINT, the grace period, readiness while shutting down), unblocking a line, and the
//! metrics that say what the consumers are doing. Against the real binary where the claim is
//! about the process (arguments, environment, working directory, signals), the real server
//! otherwise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::crash::{free_port, load, spawn_daemon_with, stored_sids, Daemon};
use crate::outbound::{outbound_config, BODY};
use crate::util::{request, TestServer};

/// Runs the real binary with `args` in `cwd`, with only `env` (and `PATH`) in its environment
/// (`RUST_LOG=warn` unless `env` sets it).
pub(crate) fn hooklog(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hooklog"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the hooklog binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A configuration file whose only setting, `data_dir`, says which file was read.
fn marked(path: &Path, mark: &str) {
    std::fs::write(path, format!("data_dir = \"/nonexistent/{mark}\"\n")).unwrap();
}

/// `check-config`'s answer: exit code, the file it names and the `data_dir` it shows.
fn which_config(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut all = vec!["check-config"];
    all.extend_from_slice(args);
    let out = hooklog(cwd, &all, env);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "check-config failed: {}{stdout}",
        text(&out.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default().to_owned();
    let data_dir = stdout
        .lines()
        .find(|l| l.starts_with("data_dir"))
        .unwrap_or_default()
        .to_owned();
    (out.status.code(), format!("{first} | {data_dir}"))
}

#[test]
fn the_config_file_is_the_flag_else_hooklog_config_else_hooklog_toml_in_the_working_directory() {
    let tmp = crate::engine::tempdir();
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let flag = tmp.path().join("flag.toml");
    let from_env = tmp.path().join("env.toml");
    marked(&flag, "from-flag");
    marked(&from_env, "from-env");
    let flag_s = flag.display().to_string();
    let env_s = from_env.display().to_string();

    // Nothing anywhere: the embedded defaults.
    let (_, seen) = which_config(&cwd, &[], &[]);
    assert!(
        seen.starts_with("# no configuration file"),
        "no file: {seen}"
    );

    marked(&cwd.join("hooklog.toml"), "from-cwd");
    let (_, seen) = which_config(&cwd, &[], &[]);
    assert!(
        seen.contains("configuration from hooklog.toml") && seen.contains("from-cwd"),
        "./hooklog.toml when nothing else is given: {seen}"
    );
    // An empty HOOKLOG_CONFIG is as good as unset.
    let (_, seen) = which_config(&cwd, &[], &[("HOOKLOG_CONFIG", "")]);
    assert!(seen.contains("from-cwd"), "empty HOOKLOG_CONFIG: {seen}");

    let (_, seen) = which_config(&cwd, &[], &[("HOOKLOG_CONFIG", &env_s)]);
    assert!(
        seen.contains(&env_s) && seen.contains("from-env"),
        "HOOKLOG_CONFIG wins over ./hooklog.toml: {seen}"
    );

    let (_, seen) = which_config(&cwd, &["--config", &flag_s], &[("HOOKLOG_CONFIG", &env_s)]);
    assert!(
        seen.contains(&flag_s) && seen.contains("from-flag"),
        "--config wins over HOOKLOG_CONFIG and ./hooklog.toml: {seen}"
    );

    // A file that was asked for and is missing is an error, never a silent fallback.
    let missing = tmp.path().join("missing.toml");
    let out = hooklog(
        &cwd,
        &["check-config", "--config", &missing.display().to_string()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.toml"),
        "{}",
        text(&out.stderr)
    );
    let out = hooklog(
        &cwd,
        &["check-config"],
        &[("HOOKLOG_CONFIG", &missing.display().to_string())],
    );
    assert_eq!(out.status.code(), Some(1), "a missing $HOOKLOG_CONFIG");
}

#[test]
fn check_config_exits_1_naming_the_bad_key_and_0_on_a_valid_config() {
    let tmp = crate::engine::tempdir();
    let file = tmp.path().join("hooklog.toml");
    let cases = [
        ("[server]\nmax_body_bytes = 0\n", "`server.max_body_bytes`"),
        (
            "[server]\nlisten = [\"not-an-address\"]\n",
            "`server.listen`",
        ),
        // An unknown key is an error too, not ignored.
        ("[server]\nshutdown_grace = 5\n", "`server.shutdown_grace`"),
    ];
    for (toml, key) in cases {
        std::fs::write(&file, toml).unwrap();
        let out = hooklog(tmp.path(), &["check-config"], &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{toml}: {stderr}");
        assert!(
            stderr.contains(key),
            "{toml}: the error names {key}: {stderr}"
        );
        assert!(
            !text(&out.stdout).contains("# ok"),
            "{toml}: nothing is printed as valid"
        );
    }
    // The environment is checked too, and named as the origin.
    std::fs::write(&file, "").unwrap();
    let out = hooklog(
        tmp.path(),
        &["check-config"],
        &[("HOOKLOG_OPENPHONE_TOLERANCE_SECS", "soon")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`openphone.tolerance_secs`")
            && stderr.contains("HOOKLOG_OPENPHONE_TOLERANCE_SECS"),
        "{stderr}"
    );

    std::fs::write(
        &file,
        "[server]\nmax_body_bytes = 65536\nshutdown_grace_secs = 5\n",
    )
    .unwrap();
    let out = hooklog(tmp.path(), &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.trim_end().ends_with("# ok"), "{stdout}");
    assert!(stdout.contains("max_body_bytes = 65536"), "{stdout}");
}

/// Waits up to `secs` for the daemon to exit.
fn exit_within(daemon: &mut Daemon, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(daemon: &Daemon, sig: Signal) {
    kill(Pid::from_raw(daemon.child.id() as i32), sig).unwrap();
}

#[test]
fn sigint_drains_in_flight_requests_and_exits_0() {
    let dir = crate::engine::tempdir();
    let mut daemon = spawn_daemon_with(dir.path(), &mut (free_port(), free_port()), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients = load("SM", daemon.public, 0, 4, stop.clone(), acked.clone());
    std::thread::sleep(Duration::from_millis(300));
    signal(&daemon, Signal::SIGINT);
    let status = exit_within(&mut daemon, 15);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let Some(status) = status else {
        let _ = daemon.child.kill();
        panic!("the daemon did not stop on SIGINT");
    };
    assert!(status.success(), "exit status {status:?}");
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let stored: std::collections::BTreeSet<String> = stored_sids(dir.path()).into_iter().collect();
    assert!(acked.iter().all(|sid| stored.contains(sid)));
}

/// The connection and read limits set high, so that only the shutdown can end a connection
/// the tests hold open.
const PATIENT: [(&str, &str); 3] = [
    ("HOOKLOG_SERVER_HEADER_READ_TIMEOUT_SECS", "60"),
    ("HOOKLOG_SERVER_BODY_READ_TIMEOUT_SECS", "60"),
    ("HOOKLOG_SERVER_IDLE_TIMEOUT_SECS", "60"),
];

fn patient(grace: &str) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&str, String)> = PATIENT.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.push(("HOOKLOG_SERVER_SHUTDOWN_GRACE_SECS", grace.to_owned()));
    env
}

/// Whether a new connection to `addr` is refused (the listener is closed).
fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
}

#[test]
fn a_request_still_open_after_the_grace_period_is_cut_off_and_the_daemon_exits_0() {
    let dir = crate::engine::tempdir();
    let mut daemon = spawn_daemon_with(dir.path(), &mut (free_port(), free_port()), &patient("1"));
    // A signed webhook whose body stops half-way: the handler waits for the rest.
    let (path, headers, body) = crate::edge::twilio_sms("SMheld");
    let mut conn = TcpStream::connect(daemon.public).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
        daemon.public,
        body.len()
    );
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    signal(&daemon, Signal::SIGTERM);
    let started = Instant::now();
    let Some(status) = exit_within(&mut daemon, 10) else {
        let _ = daemon.child.kill();
        panic!("the daemon waited for the held request beyond its 1 s grace period");
    };
    assert!(status.success(), "exit status {status:?}");
    eprintln!("stopped {:?} after SIGTERM", started.elapsed());
    // The held connection was closed, without an acknowledgement.
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    assert!(
        !text(&answer).starts_with("HTTP/1.1 200"),
        "the cut-off request was not acknowledged: {}",
        text(&answer)
    );
    assert!(
        !stored_sids(dir.path()).contains(&"SMheld".to_owned()),
        "half a body is not stored"
    );
}

/// Sends the head of `GET /readyz` but its final empty line, so that hyper has the connection
/// in progress (not idle) and answers it even after a graceful shutdown began.
fn half_readyz(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(format!("GET /readyz HTTP/1.1\r\nhost: {addr}\r\n").as_bytes())
        .unwrap();
    conn
}

/// Finishes [`half_readyz`] and returns the status line.
fn finish(mut conn: TcpStream) -> String {
    conn.write_all(b"\r\n").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = text(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn readyz_answers_503_once_shutdown_has_begun() {
    let dir = crate::engine::tempdir();
    let mut daemon = spawn_daemon_with(dir.path(), &mut (free_port(), free_port()), &patient("10"));
    // The same half-sent probe is answered 200 while running: the probe itself works.
    let running = half_readyz(daemon.public);
    std::thread::sleep(Duration::from_millis(100));
    assert!(finish(running).starts_with("HTTP/1.1 200"));

    let held = half_readyz(daemon.public);
    std::thread::sleep(Duration::from_millis(100));
    signal(&daemon, Signal::SIGTERM);
    // The listener closes as soon as the shutdown begins; the held connection keeps it
    // waiting (up to the grace period) until its request is complete.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !refused(daemon.public) {
        assert!(
            Instant::now() < deadline,
            "the listener still accepts after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = finish(held);
    assert!(
        status.starts_with("HTTP/1.1 503"),
        "readyz while shutting down: {status:?}"
    );
    let Some(exit) = exit_within(&mut daemon, 15) else {
        let _ = daemon.child.kill();
        panic!("the daemon did not stop");
    };
    assert!(exit.success(), "exit status {exit:?}");
}

/// `POST /v1/messages` with the token; the message id.
fn post_message(s: &TestServer, from: &str, to: &str, content: &str) -> String {
    let body = serde_json::json!({"from": from, "to": to, "content": content});
    let (code, text) = s.admin_send("POST", "/v1/messages", &body.to_string());
    assert_eq!(code, 202, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// The message once its status is one of `statuses`.
fn message_until(s: &TestServer, id: &str, statuses: &[&str]) -> serde_json::Value {
    s.admin_until(&format!("/v1/messages/{id}"), |m| {
        statuses.contains(&m["status"].as_str().unwrap_or(""))
    })
}

const SETTLED: [&str; 4] = ["sent", "failed", "unknown", "refused"];

#[test]
fn unblocking_a_line_the_provider_blocked_needs_the_token_and_lets_its_messages_through_again() {
    use crate::fake_server::{answer, FakeServer};

    // Quo refuses the first send for want of A2P registration, then accepts.
    let quo = FakeServer::start(answer(202, r#"{"data":{"id":"AC0001","status":"queued"}}"#));
    quo.script([answer(
        400,
        r#"{"message":"A2P registration is not approved for this number","code":"0400400"}"#,
    )]);
    let tmp = crate::engine::tempdir();
    let base = format!("http://{}", quo.addr);
    let env = [
        ("HOOKLOG_OPENPHONE_API_KEY", "quo-test-key"),
        ("HOOKLOG_OPENPHONE_API_BASE", base.as_str()),
    ];
    let s = TestServer::start(outbound_config(tmp.path(), "", &env), None);

    let first = post_message(&s, "quo-main", "+12125550100", BODY);
    let m = message_until(&s, &first, &SETTLED);
    assert_eq!(m["status"], "failed", "{m}");
    // The block is in the log before the next request, so the gates see it.
    s.admin_until("/admin/events?after=0&limit=1000", |v| {
        v["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["route"] == "/internal/lines"))
    });
    let second = post_message(&s, "quo-main", "+12125550101", &format!("{BODY}."));
    let m = message_until(&s, &second, &SETTLED);
    assert_eq!(m["status"], "refused", "{m}");
    assert_eq!(m["reasons"][0]["code"], "line_blocked", "{m}");
    assert_eq!(quo.requests().len(), 1, "a blocked line calls nobody");

    // Without the token, or with a wrong one: 401 and nothing appended.
    let before = s.status().log.last_seq;
    for auth in [None, Some("Bearer not-the-token".to_owned())] {
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let r = request(
            s.admin,
            "POST",
            "/admin/lines/quo-main/unblock",
            &headers,
            b"{}",
        );
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(
        s.status().log.last_seq,
        before,
        "a refused unblock appends nothing"
    );

    // A line that does not exist is refused, naming it, and nothing is appended.
    let (code, text) = s.admin_send("POST", "/admin/lines/quo-mian/unblock", "{}");
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("quo-mian"), "{text}");
    assert_eq!(
        s.status().log.last_seq,
        before,
        "an unknown line appends nothing"
    );

    let (code, text) = s.admin_send(
        "POST",
        "/admin/lines/quo-main/unblock",
        r#"{"reason":"A2P campaign approved"}"#,
    );
    assert_eq!(code, 202, "{text}");
    let third = post_message(&s, "quo-main", "+12125550102", &format!("{BODY}!"));
    let m = message_until(&s, &third, &SETTLED);
    assert_eq!(m["status"], "sent", "unblocked, the line sends again: {m}");
    assert_eq!(quo.requests().len(), 2);
}

/// The value of one sample of `GET /metrics` (`name{labels}`), 0 when absent.
fn metric(s: &TestServer, sample: &str) -> i64 {
    let (code, text) = s.metrics();
    assert_eq!(code, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().unwrap() as i64)
        .unwrap_or(0)
}

fn metric_until(s: &TestServer, sample: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = metric(s, sample);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sample} is {got}, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_outbound_decision_is_counted_under_its_verdict() {
    let tmp = crate::engine::tempdir();
    // Noon in New York: open there, 06:00 in Hawaii (808), a pending 10DLC line refused.
    let s = TestServer::start(outbound_config(tmp.path(), "", &[]), None);
    let allow = r#"hooklog_outbound_decisions_total{verdict="allow"}"#;
    let hold = r#"hooklog_outbound_decisions_total{verdict="hold"}"#;
    let refuse = r#"hooklog_outbound_decisions_total{verdict="refuse"}"#;
    let counts = |s: &TestServer| [metric(s, allow), metric(s, hold), metric(s, refuse)];
    assert_eq!(counts(&s), [0, 0, 0]);

    let id = post_message(&s, "quo-main", "+12125550100", BODY);
    s.admin_until(&format!("/v1/messages/{id}"), |m| {
        m["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|s| s["event"] == "allowed"))
    });
    metric_until(&s, allow, 1);

    let id = post_message(&s, "quo-main", "+18085550100", &format!("{BODY}."));
    message_until(&s, &id, &["held"]);
    metric_until(&s, hold, 1);

    let id = post_message(&s, "tw-pending", "+12125550101", &format!("{BODY}!"));
    message_until(&s, &id, &["refused"]);
    metric_until(&s, refuse, 1);
    assert_eq!(counts(&s), [1, 1, 1], "one count per decision");
}

#[test]
fn a_paused_consumers_lag_counts_the_records_it_has_not_handled_and_returns_to_0_on_resume() {
    let tmp = crate::engine::tempdir();
    let s = crate::edge::server_with(tmp.path(), &[]);
    let lag = r#"hooklog_consumer_lag{consumer="dedup"}"#;
    let send = |sid: &str| {
        let (path, headers, body) = crate::edge::twilio_sms(sid);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(s.send("POST", &path, &headers, &body).status, 200);
    };
    let dedup_cursor = || {
        let st = s.status();
        let c = st.consumers.iter().find(|c| c.name == "dedup").unwrap();
        (c.cursor, st.log.last_seq)
    };
    send("SMlag0");
    // Caught up first, so that the lag below is the pause's backlog and nothing else (an
    // absent gauge also reads 0).
    let deadline = Instant::now() + Duration::from_secs(10);
    while dedup_cursor().0 != dedup_cursor().1 {
        assert!(Instant::now() < deadline, "dedup never caught up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, text) = s.admin_send("POST", "/admin/consumers/dedup/pause", "");
    assert_eq!(code, 200, "{text}");
    for i in 1..=3 {
        send(&format!("SMlag{i}"));
    }
    let (cursor, last) = dedup_cursor();
    assert!(last >= cursor + 3, "paused, dedup handled nothing new");
    metric_until(&s, lag, (last - cursor) as i64);
    let (code, text) = s.admin_send("POST", "/admin/consumers/dedup/resume", "");
    assert_eq!(code, 200, "{text}");
    metric_until(&s, lag, 0);
    let st = s.status();
    assert!(
        st.consumers
            .iter()
            .any(|c| c.name == "dedup" && c.cursor == st.log.last_seq),
        "resumed, dedup handled every record"
    );
}
