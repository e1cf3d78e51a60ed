//! `hooklog-replay` against a real daemon: each test starts `hooklog::run` in-process on
//! `127.0.0.1:0` with its own data directory, fills the log through `POST /admin/events`, and
//! runs the built binary as a child process.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, cli, jetstream_stream};

/// A daemon running on its own runtime, with its data directory in a tempdir.
struct Daemon {
    inner: support::InProcess,
    admin_url: String,
    config: PathBuf,
    data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// Starts a daemon; `server_extra` is appended to the `[server]` section.
    fn start_with(server_extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let config = dir.path().join("hooklog.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[server]\nlisten = [\"127.0.0.1:0\"]\n\
                 admin_listen = \"127.0.0.1:0\"\nshutdown_grace_secs = 2\n{server_extra}\n",
                data_dir.to_str().unwrap()
            ),
        )
        .unwrap();
        Daemon::launch(config, data_dir, Some(dir))
    }

    /// A new daemon on `old`'s data directory with its admin API at the same address (so a
    /// client of `old` finds it). Call after `old.stop()`.
    fn restart_on(old: &Daemon) -> Daemon {
        let addr = old.admin_url.trim_start_matches("http://");
        let text = std::fs::read_to_string(&old.config).unwrap().replace(
            "admin_listen = \"127.0.0.1:0\"",
            &format!("admin_listen = \"{addr}\""),
        );
        let config = old.config.with_file_name("restarted.toml");
        std::fs::write(&config, text).unwrap();
        Daemon::launch(config, old.data_dir.clone(), None)
    }

    fn launch(config: PathBuf, data_dir: PathBuf, dir: Option<tempfile::TempDir>) -> Daemon {
        let inner = support::InProcess::start(&config);
        Daemon {
            admin_url: inner.admin_url.clone(),
            inner,
            config,
            data_dir,
            _dir: dir,
        }
    }

    fn token(&self) -> String {
        support::token(&self.data_dir)
    }

    /// Appends through the admin API; returns the sequence.
    fn append(&self, headers: Value, body: &str) -> u64 {
        let resp = ureq::post(&format!("{}/admin/events", self.admin_url))
            .set("Authorization", &format!("Bearer {}", self.token()))
            .send_json(serde_json::json!({
                "source": "backfill-twilio",
                "route": "/test",
                "headers": headers,
                "body": body,
            }))
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: Value = resp.into_json().unwrap();
        v["seq"].as_u64().unwrap()
    }

    fn append_many(&self, n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| self.append(serde_json::json!({}), &format!("Body=hi+{i}")))
            .collect()
    }

    /// Resolves the shutdown future and waits for `run` to return.
    fn stop(&mut self) {
        self.inner.stop();
    }

    /// The CLI with this daemon's config and admin URL.
    fn cli(&self) -> Command {
        cli(&self.config, &self.admin_url)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    o
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// Waits for a child, killing it after `limit`.
fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the CLI did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_json_shows_the_last_seq_and_count() {
    let daemon = Daemon::start();
    daemon.append_many(3);
    let o = ok(daemon.run(&["status", "--json"]));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["log"]["first_seq"], 1);
    assert_eq!(v["log"]["last_seq"], 3);
    assert_eq!(v["log"]["count"], 3);
    assert!(v["consumers"].is_array());
}

#[test]
fn status_text_shows_the_bounds_and_a_readable_size() {
    let daemon = Daemon::start();
    daemon.append_many(2);
    let text = stdout(&ok(daemon.run(&["status"])));
    assert!(text.contains("last seq   2"), "{text}");
    assert!(text.contains("count      2"), "{text}");
    assert!(
        text.contains(" B\n") || text.contains("iB\n"),
        "size in human units: {text}"
    );
}

#[test]
fn tail_after_a_seq_returns_exactly_the_later_events_in_order() {
    let daemon = Daemon::start();
    daemon.append_many(5);
    let o = ok(daemon.run(&["tail", "--after", "1", "--json"]));
    let events = json_lines(&o);
    assert_eq!(seqs(&events), vec![2, 3, 4, 5]);
    assert_eq!(events[0]["body"], "Body=hi+1");
    assert_eq!(events[0]["source"], "backfill-twilio");
}

#[test]
fn tail_without_after_shows_the_last_ten_events() {
    let daemon = Daemon::start();
    daemon.append_many(12);
    let events = json_lines(&ok(daemon.run(&["tail", "--json"])));
    assert_eq!(seqs(&events), (3..=12).collect::<Vec<_>>());
}

#[test]
fn tail_reads_past_one_page_and_stops_at_the_limit() {
    let daemon = Daemon::start();
    // 600 > the CLI's page of 500.
    let body = r#"[{"x":1}]"#;
    for _ in 0..600 {
        daemon.append(
            serde_json::json!({"content-type": "application/json"}),
            body,
        );
    }
    let all = json_lines(&ok(daemon.run(&["tail", "--after", "0", "--json"])));
    assert_eq!(seqs(&all), (1..=600).collect::<Vec<_>>());
    let some = json_lines(&ok(
        daemon.run(&["tail", "--after", "0", "--limit", "502", "--json"])
    ));
    assert_eq!(seqs(&some), (1..=502).collect::<Vec<_>>());
}

#[test]
fn tail_text_prints_one_line_per_event_with_a_preview() {
    let daemon = Daemon::start();
    daemon.append(serde_json::json!({}), "Body=line+one\nline two");
    let text = stdout(&ok(daemon.run(&["tail", "--after", "0"])));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].starts_with("1  "), "{text}");
    assert!(
        lines[0].contains("  backfill-twilio  /test  admin-token  Body=line+one\\nline two"),
        "{text}"
    );
}

#[test]
fn show_json_round_trips_the_body() {
    let daemon = Daemon::start();
    daemon.append_many(1);
    let body = "{\"z\":1,\"a\":[\"x\\ny\"]}\n";
    let seq = daemon.append(
        serde_json::json!({"Content-Type": "application/json"}),
        body,
    );
    let o = ok(daemon.run(&["show", &seq.to_string(), "--json"]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["seq"], seq);
    assert_eq!(v["body"], body);
    assert_eq!(v["body_encoding"], "utf8");
    assert_eq!(v["headers"]["content-type"], "application/json");
}

#[test]
fn show_pretty_prints_json_and_decodes_form_fields() {
    let daemon = Daemon::start();
    let json = daemon.append(
        serde_json::json!({"content-type": "application/json"}),
        r#"{"type":"message.received","data":{"id":1}}"#,
    );
    let form = daemon.append(
        serde_json::json!({"content-type": "application/x-www-form-urlencoded"}),
        "Body=hi+there&From=%2B15551234567",
    );
    let text = stdout(&ok(daemon.run(&["show", &json.to_string()])));
    assert!(text.contains("content-type: application/json"), "{text}");
    assert!(
        text.contains("{\n  \"type\": \"message.received\",\n  \"data\": {\n    \"id\": 1\n  }\n}"),
        "{text}"
    );
    let text = stdout(&ok(daemon.run(&["show", &form.to_string()])));
    assert!(
        text.contains("form fields\nBody = hi there\nFrom = +15551234567\n"),
        "{text}"
    );
}

#[test]
fn show_of_a_missing_seq_exits_1_and_names_the_bounds() {
    let daemon = Daemon::start();
    daemon.append_many(3);
    let o = daemon.run(&["show", "99"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "hooklog-replay: no event 99 (log holds 1..=3)"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn a_usage_error_exits_2() {
    let o = Command::new(env!("CARGO_BIN_EXE_hooklog-replay"))
        .args(["show", "not-a-number"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_token_is_read_from_the_data_dir_when_not_configured() {
    let daemon = Daemon::start();
    daemon.append_many(1);
    assert!(hooklog::admin::token_path(&daemon.data_dir).exists());
    let o = ok(daemon.run(&["status", "--json"]));
    assert!(stderr(&o).is_empty(), "no fallback: {}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["log"]["last_seq"], 1);
}

#[test]
fn the_configured_token_is_used_and_no_token_file_is_needed() {
    let daemon = Daemon::start_with("admin_token = \"configured-token-0123456789\"");
    assert!(!hooklog::admin::token_path(&daemon.data_dir).exists());
    let o = ok(daemon.run(&["status", "--json"]));
    assert!(stderr(&o).is_empty(), "no fallback: {}", stderr(&o));
}

#[test]
fn a_wrong_token_gives_a_clear_401_error() {
    let daemon = Daemon::start();
    let o = daemon.run(&["--token", "not-the-token-at-all", "status"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.starts_with("hooklog-replay: "), "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("refused the token from --token"), "{err}");
    assert!(!err.contains("reading"), "a 401 must not fall back: {err}");
}

#[test]
fn a_missing_token_file_is_named_in_the_401_error() {
    let daemon = Daemon::start();
    let elsewhere = tempfile::tempdir().unwrap();
    let o = daemon.run(&["--data-dir", elsewhere.path().to_str().unwrap(), "status"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("admin.token does not exist"), "{err}");
}

#[test]
fn after_shutdown_status_and_tail_read_the_data_directory_directly() {
    let mut daemon = Daemon::start();
    daemon.append_many(4);
    let live = json_lines(&ok(daemon.run(&["tail", "--after", "0", "--json"])));
    let live_status: Value =
        serde_json::from_str(stdout(&ok(daemon.run(&["status", "--json"]))).trim()).unwrap();
    daemon.stop();

    let o = ok(daemon.run(&["status", "--json"]));
    let note = format!(
        "hooklog-replay: daemon not reachable at {}; reading {} directly\n",
        daemon.admin_url,
        hooklog::log_dir(&daemon.data_dir).display()
    );
    assert_eq!(stderr(&o), note);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["log"]["last_seq"], live_status["log"]["last_seq"]);
    assert_eq!(v["log"]["count"], 4);

    let o = ok(daemon.run(&["tail", "--after", "0", "--json"]));
    assert_eq!(stderr(&o), note);
    assert_eq!(json_lines(&o), live);

    let o = ok(daemon.run(&["show", "2", "--json"]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v, live[1]);

    // --direct skips the API: no note.
    let o = ok(daemon.run(&["--direct", "tail", "--after", "2", "--json"]));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert_eq!(seqs(&json_lines(&o)), vec![3, 4]);
}

#[test]
fn on_jetstream_a_stopped_daemons_log_is_read_by_status_and_tail_and_rewind_needs_the_daemon() {
    let stream = jetstream_stream::Stream::on_machine();
    let mut daemon = Daemon::start_with(&stream.toml());
    daemon.append_many(4);
    // Rewind goes through the running daemon's admin API on either engine.
    ok(daemon.run(&["rewind", "dedup", "--to-seq", "0"]));
    wait_for_dedup(&daemon, 4);
    let live = json_lines(&ok(daemon.run(&["tail", "--after", "0", "--json"])));
    assert!(live.iter().all(|e| !e["dedup"].is_null()), "{live:?}");
    daemon.stop();

    let o = ok(daemon.run(&["status", "--json"]));
    let note = format!(
        "hooklog-replay: daemon not reachable at {}; reading JetStream stream {} at {} (local \
         state {}) directly\n",
        daemon.admin_url,
        stream.name,
        stream.url,
        hooklog::state_dir(&daemon.data_dir).display()
    );
    assert_eq!(stderr(&o), note);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (
            &v["log"]["first_seq"],
            &v["log"]["last_seq"],
            &v["log"]["count"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(4),
            &serde_json::json!(4)
        )
    );
    let dedup = v["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "dedup")
        .unwrap();
    assert_eq!(
        dedup["cursor"], 4,
        "the cursor stored in data_dir/state: {v}"
    );

    // The same records, with the verdicts dedup stored in data_dir/state.
    let o = ok(daemon.run(&["tail", "--after", "0", "--json"]));
    assert_eq!(json_lines(&o), live);
    let o = ok(daemon.run(&["--direct", "tail", "--after", "2", "--json"]));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert_eq!(seqs(&json_lines(&o)), vec![3, 4]);

    let o = daemon.run(&["rewind", "dedup", "--to-seq", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("needs the running daemon"),
        "{}",
        stderr(&o)
    );

    // A running daemon holds data_dir/state: reading directly is refused, naming the engine.
    let _again = Daemon::restart_on(&daemon);
    let err = status_failing_at_an_unreachable_api(&daemon.config);
    assert!(
        err.contains("the daemon seems to be running")
            && err.contains(&format!("JetStream stream {}", stream.name)),
        "{err}"
    );
}

/// `status` pointed at an admin API nobody listens on, with the daemon of `config` running:
/// it exits 1; its stderr.
fn status_failing_at_an_unreachable_api(config: &std::path::Path) -> String {
    let o = cli(config, "http://127.0.0.1:1")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    stderr(&o)
}

/// Waits until dedup's cursor reaches `seq` (through the admin API).
fn wait_for_dedup(daemon: &Daemon, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value =
            serde_json::from_str(stdout(&ok(daemon.run(&["status", "--json"]))).trim()).unwrap();
        let at = v["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "dedup")
            .and_then(|c| c["cursor"].as_u64());
        if at == Some(seq) {
            return;
        }
        assert!(Instant::now() < deadline, "dedup did not reach {seq}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn direct_reading_while_the_daemon_runs_is_refused_with_a_hint() {
    let daemon = Daemon::start();
    daemon.append_many(1);
    let o = daemon.run(&["--direct", "status"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("drop --direct"), "{err}");

    // The daemon holds the directory but the API is at another address.
    let err = status_failing_at_an_unreachable_api(&daemon.config);
    assert!(
        err.contains("the daemon seems to be running") && err.contains("--admin-url"),
        "{err}"
    );
}

#[test]
fn reading_a_directory_without_a_log_does_not_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("hooklog.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.to_str().unwrap()),
    )
    .unwrap();
    let o = cli(&config, "http://127.0.0.1:1")
        .args(["status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("there is no hooklog log in"),
        "{}",
        stderr(&o)
    );
    assert!(!data.exists());
}

#[test]
fn tail_follow_picks_up_events_appended_while_it_runs() {
    let daemon = Daemon::start();
    let last = *daemon.append_many(2).last().unwrap();
    let mut child = daemon
        .cli()
        .args(["tail", "--follow", "--limit", "3", "--json", "--after"])
        .arg(last.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it reach the end of the log and start polling before anything new arrives.
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it must wait for new events"
    );
    let new = daemon.append_many(3);
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let o = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", stderr(&o));
    assert_eq!(seqs(&json_lines(&o)), new);
}

#[test]
fn tail_follow_exits_quietly_when_stdout_is_closed() {
    let daemon = Daemon::start();
    daemon.append_many(1);
    let mut child = daemon
        .cli()
        .args(["tail", "--follow", "--after", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("1  "), "{first}");
    drop(reader);
    daemon.append_many(1);
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let o = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "quietly: {}", stderr(&o));
}

#[cfg(unix)]
#[test]
fn tail_follow_stops_cleanly_on_sigterm() {
    let daemon = Daemon::start();
    daemon.append_many(1);
    let mut child = daemon
        .cli()
        .args(["tail", "--follow", "--after", "0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn tail_follow_carries_on_across_a_daemon_restart() {
    let mut daemon = Daemon::start();
    daemon.append_many(2);
    daemon.stop();
    // Following the stopped daemon's directory: reads it, lets go of it, waits for the API.
    let mut child = cli(&daemon.config, &daemon.admin_url)
        .args(["tail", "--follow", "--after", "0", "--limit", "3", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it says it has let go of the directory and waits for the daemon.
    let mut notes = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("waiting for it at") {
        let mut line = String::new();
        assert!(notes.read_line(&mut line).unwrap() > 0, "stderr: {said}");
        said.push_str(&line);
    }
    assert!(
        said.starts_with("hooklog-replay: daemon not reachable at "),
        "{said}"
    );
    // The daemon can start on the same data directory while the follower waits.
    let restarted = Daemon::restart_on(&daemon);
    let third = restarted.append(serde_json::json!({}), "Body=after+restart");
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let o = child.wait_with_output().unwrap();
    assert!(status.success(), "{said}");
    assert_eq!(third, 3);
    assert_eq!(seqs(&json_lines(&o)), vec![1, 2, 3]);
}

// ---------------------------------------------------------------------------------------------
// Consumers: rewind, dead letters, redrive, opt-outs, pause/resume. The daemon runs dedup,
// compliance and staleness; an operator's opt-out goes through `POST /admin/optouts`, and a
// backfilled Twilio message whose body is not JSON is poison for compliance.

/// The number the opt-out tests suppress.
const NUMBER: &str = "+15555550123";

/// What compliance says of [`Daemon::append_poison`]'s record.
const POISON_ERROR: &str = "body is not JSON";

impl Daemon {
    /// An operator's opt-out of [`NUMBER`], through the operator's route; returns the sequence.
    fn add_optout(&self) -> u64 {
        let resp = ureq::post(&format!("{}/admin/optouts", self.admin_url))
            .set("Authorization", &format!("Bearer {}", self.token()))
            .send_json(serde_json::json!({"number": NUMBER, "reason": "test"}))
            .unwrap();
        assert_eq!(resp.status(), 202);
        let v: Value = resp.into_json().unwrap();
        v["seq"].as_u64().unwrap()
    }

    /// A record compliance cannot process: a backfilled Twilio message that is not JSON.
    fn append_poison(&self) -> u64 {
        let resp = ureq::post(&format!("{}/admin/events", self.admin_url))
            .set("Authorization", &format!("Bearer {}", self.token()))
            .send_json(serde_json::json!({
                "source": "backfill-twilio",
                "route": "/2010-04-01/Messages/SMpoison",
                "headers": {"content-type": "application/json"},
                "body": "explode",
            }))
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: Value = resp.into_json().unwrap();
        v["seq"].as_u64().unwrap()
    }

    /// `status --json`, decoded.
    fn status(&self) -> Value {
        serde_json::from_str(stdout(&ok(self.run(&["status", "--json"]))).trim()).unwrap()
    }

    /// Polls `status --json` until `name`'s cursor reaches the log's last sequence (≤ 10 s);
    /// returns that status.
    fn caught_up(&self, name: &str) -> Value {
        let mut last = Value::Null;
        let done = poll(|| {
            last = self.status();
            consumer(&last, name)["cursor"] == last["log"]["last_seq"]
        });
        assert!(done, "{name} did not catch up: {last}");
        last
    }
}

/// Calls `f` every 50 ms until it is true or 10 s have passed; whether it became true.
fn poll(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One consumer's entry in a status document.
fn consumer<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no consumer {name} in {status}"))
}

#[test]
fn an_operator_opt_out_is_listed_by_optouts_once_compliance_has_caught_up() {
    let daemon = Daemon::start();
    daemon.append_many(2);
    let seq = daemon.add_optout();
    daemon.caught_up("compliance");

    let entries = json_lines(&ok(daemon.run(&["optouts", "--json"])));
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["number"], NUMBER);
    assert_eq!(e["state"], "opted_out");
    assert_eq!(e["how"], "admin");
    assert_eq!(e["provider"], "admin");
    assert_eq!(e["seq"], seq);
    assert_eq!(e["text"], "test");

    let text = stdout(&ok(daemon.run(&["optouts"])));
    assert!(
        text.starts_with("number        state      how    seq"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{NUMBER}  opted_out  admin  {seq}    admin     ")),
        "{text}"
    );
    assert!(text.ends_with("\n1 suppressed, 0 resubscribed\n"), "{text}");
}

#[test]
fn optouts_says_so_when_the_list_is_empty() {
    let daemon = Daemon::start();
    assert_eq!(stdout(&ok(daemon.run(&["optouts"]))), "no opt-outs\n");
    assert!(stdout(&ok(daemon.run(&["optouts", "--json"]))).is_empty());
}

#[test]
fn a_record_compliance_cannot_process_is_listed_as_its_dead_letter() {
    let daemon = Daemon::start();
    let seq = daemon.append_poison();
    let status = daemon.caught_up("compliance");
    assert_eq!(consumer(&status, "compliance")["dead_letters"], 1);

    let letters = json_lines(&ok(daemon.run(&["dead-letters", "--json"])));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["consumer"], "compliance");
    assert_eq!(letters[0]["seq"], seq);
    assert_eq!(letters[0]["attempts"], 1);
    assert!(
        letters[0]["error"].as_str().unwrap().contains(POISON_ERROR),
        "{letters:?}"
    );
    let only = json_lines(&ok(daemon.run(&[
        "dead-letters",
        "--consumer",
        "compliance",
        "--json",
    ])));
    assert_eq!(only, letters);
    assert!(json_lines(&ok(daemon.run(&[
        "dead-letters",
        "--consumer",
        "dedup",
        "--json"
    ])))
    .is_empty());

    let text = stdout(&ok(daemon.run(&["dead-letters"])));
    assert!(
        text.starts_with("consumer    seq  attempts  at  "),
        "a table: {text}"
    );
    assert!(
        text.contains(&format!("\ncompliance  {seq}    1         ")),
        "{text}"
    );
    assert!(text.contains(POISON_ERROR), "{text}");
    assert!(text.contains("1 dead letter: "), "{text}");
    assert_eq!(
        stdout(&ok(daemon.run(&["dead-letters", "--consumer", "dedup"]))),
        "no dead letters\n"
    );
}

#[test]
fn status_text_shows_each_consumers_state_dead_letters_and_last_error() {
    let daemon = Daemon::start();
    let seq = daemon.append_poison();
    daemon.caught_up("compliance");
    let text = stdout(&ok(daemon.run(&["status"])));
    assert!(
        text.contains("consumer    cursor  lag  state    dead letters  last error\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "compliance  {seq}       0    running  1             record {seq} dead-lettered: "
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\ndedup       {seq}       0    running  0             -\n"
        )),
        "{text}"
    );
    assert!(text.contains("\nstaleness "), "{text}");
}

#[test]
fn dead_letters_of_an_unknown_consumer_is_an_error_not_an_empty_list() {
    let daemon = Daemon::start();
    let o = daemon.run(&["dead-letters", "--consumer", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "hooklog-replay: no consumer named `nope` (known: compliance, controls, dedup, outbound, staleness)"
    );
}

#[test]
fn redrive_of_a_record_that_is_still_bad_reports_it_failing_and_counts_the_attempt() {
    let daemon = Daemon::start();
    let seq = daemon.append_poison();
    daemon.caught_up("compliance");

    let o = ok(daemon.run(&["redrive", "--consumer", "compliance", "--json"]));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "one line: {}", stdout(&o));
    assert_eq!(
        lines[0],
        serde_json::json!({"redriven": [
            {"consumer": "compliance", "succeeded": [], "failed": [seq]}
        ]})
    );
    let letters = json_lines(&ok(daemon.run(&["dead-letters", "--json"])));
    assert_eq!(letters.len(), 1, "still a dead letter: {letters:?}");
    assert_eq!(letters[0]["attempts"], 2);

    // The text form names the failing record and its error.
    let text = stdout(&ok(daemon.run(&["redrive", "--consumer", "compliance"])));
    assert!(
        text.starts_with(&format!(
            "compliance: 0 succeeded, 1 still failing (seq {seq}: {POISON_ERROR}"
        )),
        "{text}"
    );
    let text = stdout(&ok(daemon.run(&[
        "redrive",
        "--consumer",
        "compliance",
        "--seq",
        "999",
    ])));
    assert_eq!(text, "compliance: no dead letter for record 999\n");
    let letters = json_lines(&ok(daemon.run(&["dead-letters", "--json"])));
    assert_eq!(letters[0]["attempts"], 3);

    // Without --consumer, every running consumer reports.
    let text = stdout(&ok(daemon.run(&["redrive"])));
    assert!(
        text.contains("\ndedup: no dead letters\n") && text.contains("\nstaleness: no dead"),
        "{text}"
    );
}

#[test]
fn redrive_of_an_unknown_consumer_exits_1_naming_the_running_ones() {
    let daemon = Daemon::start();
    let o = daemon.run(&["redrive", "--consumer", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "hooklog-replay: cannot redrive nope: no consumer named `nope` (running: compliance, \
         controls, dedup, outbound, staleness)"
    );
}

#[test]
fn rewind_dry_run_reports_a_rebuild_and_changes_nothing() {
    let daemon = Daemon::start();
    daemon.append_many(3);
    daemon.caught_up("dedup");

    let o = ok(daemon.run(&["rewind", "dedup", "--to-seq", "0", "--dry-run", "--json"]));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "one line: {}", stdout(&o));
    assert_eq!(
        lines[0],
        serde_json::json!({"consumer": "dedup", "from_cursor": 3, "to_cursor": 0,
            "replay": 3, "rebuild": true, "redeliver": false, "dry_run": true})
    );
    let text = stdout(&ok(daemon.run(&[
        "rewind",
        "dedup",
        "--to-seq",
        "0",
        "--dry-run",
    ])));
    assert_eq!(
        text,
        "dedup: would move the cursor 3 → 0 (rebuild from the first record), 3 records would \
         be processed again (dry run: nothing changed)\n"
    );
    let status = daemon.status();
    assert_eq!(consumer(&status, "dedup")["cursor"], 3, "{status}");
    assert_eq!(consumer(&status, "dedup")["lag"], 0, "{status}");
}

#[test]
fn rewind_to_zero_moves_the_cursor_and_dedup_catches_up_again() {
    let daemon = Daemon::start();
    daemon.append_many(3);
    daemon.caught_up("dedup");
    let text = stdout(&ok(daemon.run(&["rewind", "dedup", "--to-seq", "0"])));
    assert_eq!(
        text,
        "dedup: cursor 3 → 0 (rebuild from the first record), 3 records will be processed \
         again\n"
    );
    let status = daemon.caught_up("dedup");
    assert_eq!(consumer(&status, "dedup")["cursor"], 3);
    // The rebuilt verdicts are there again.
    let events = json_lines(&ok(daemon.run(&["tail", "--after", "0", "--json"])));
    assert!(
        events
            .iter()
            .all(|e| e["dedup"] == serde_json::json!({"verdict": "original"})),
        "{events:?}"
    );
}

#[test]
fn a_rewind_while_paused_holds_the_cursor_until_resumed() {
    let daemon = Daemon::start();
    daemon.append_many(3);
    daemon.caught_up("dedup");
    let text = stdout(&ok(daemon.run(&["pause", "dedup"])));
    assert!(text.starts_with("dedup: pausing ("), "{text}");
    let mut status = Value::Null;
    assert!(
        poll(|| {
            status = daemon.status();
            consumer(&status, "dedup")["state"] == "paused"
        }),
        "{status}"
    );
    let report = json_lines(&ok(
        daemon.run(&["rewind", "dedup", "--to-seq", "0", "--json"])
    ));
    assert_eq!(report[0]["to_cursor"], 0);
    assert_eq!(report[0]["dry_run"], false);
    std::thread::sleep(Duration::from_millis(600));
    let status = daemon.status();
    let dedup = consumer(&status, "dedup");
    assert_eq!(dedup["cursor"], 0, "paused: {status}");
    // The three records and the pause's own record.
    assert_eq!(dedup["lag"], 4, "{status}");
    assert_eq!(dedup["state"], "paused", "{status}");
    assert!(
        stdout(&ok(daemon.run(&["status"]))).contains("\ndedup       0       4    paused "),
        "the text status shows the state"
    );

    let text = stdout(&ok(daemon.run(&["resume", "dedup"])));
    assert!(text.starts_with("dedup: resumed (record "), "{text}");
    assert!(text.ends_with(", in force)\n"), "{text}");
    let status = daemon.caught_up("dedup");
    assert_eq!(consumer(&status, "dedup")["state"], "running", "{status}");
}

#[test]
fn the_kill_switch_is_turned_on_with_a_reason_shown_by_status_and_turned_off() {
    let daemon = Daemon::start();
    let o = daemon.run(&["kill-switch", "on"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("needs --reason"), "{}", stderr(&o));
    let text = stdout(&ok(daemon.run(&[
        "kill-switch",
        "on",
        "--reason",
        "wrong template in the spring campaign",
    ])));
    assert!(text.starts_with("kill switch ON (record "), "{text}");
    assert!(text.contains(", in force): nothing is sent"), "{text}");
    let status = daemon.status();
    assert_eq!(status["kill_switch"]["on"], true, "{status}");
    assert_eq!(
        status["kill_switch"]["record"]["by"], "operator",
        "{status}"
    );
    let text = stdout(&ok(daemon.run(&["status"])));
    assert!(
        text.contains("kill switch: ON, turned on by operator at "),
        "{text}"
    );
    assert!(
        text.contains("): wrong template in the spring campaign\n"),
        "{text}"
    );
    let text = stdout(&ok(daemon.run(&["kill-switch", "off"])));
    assert!(text.starts_with("kill switch off (record "), "{text}");
    assert_eq!(daemon.status()["kill_switch"]["on"], false);
    let o = daemon.run(&["pause", "controls"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot be paused"), "{}", stderr(&o));
}

#[test]
fn pausing_an_unknown_consumer_exits_1_naming_the_running_ones() {
    let daemon = Daemon::start();
    let o = daemon.run(&["pause", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot pause nope: no consumer named `nope` (running: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn rewind_of_an_unknown_consumer_exits_1_naming_the_running_ones() {
    let daemon = Daemon::start();
    let o = daemon.run(&["rewind", "nope", "--to-seq", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "hooklog-replay: cannot rewind nope: no consumer named `nope` (running: compliance, \
         controls, dedup, outbound, staleness)"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn rewind_without_exactly_one_of_to_seq_and_since_is_a_usage_error() {
    for args in [
        &["rewind", "dedup"][..],
        &["rewind", "dedup", "--to-seq", "0", "--since", "2026-01-01"],
        &["rewind", "dedup", "--since", "2026-13-01"],
        &["rewind", "dedup", "--since", "last week"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_hooklog-replay"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn rewind_since_a_date_is_accepted() {
    let daemon = Daemon::start();
    daemon.append_many(2);
    daemon.caught_up("dedup");
    for since in ["2026-01-01", "2026-01-01T00:00:00+02:00"] {
        let o = ok(daemon.run(&["rewind", "dedup", "--since", since, "--dry-run", "--json"]));
        let report = &json_lines(&o)[0];
        assert_eq!(report["rebuild"], true, "{report}");
        assert_eq!(report["to_cursor"], 0, "{report}");
    }
    // --redeliver reaches the daemon, which refuses it for a consumer without effects.
    let o = daemon.run(&[
        "rewind",
        "staleness",
        "--since",
        "2026-01-01",
        "--dry-run",
        "--redeliver",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("staleness has no irreversible effects to redeliver"),
        "{}",
        stderr(&o)
    );
    let o = ok(daemon.run(&["rewind", "staleness", "--since", "2026-01-01", "--dry-run"]));
    assert!(
        stdout(&o).starts_with("staleness: would move the cursor "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn with_the_daemon_stopped_rewind_redrive_and_pause_explain_that_they_need_it() {
    let mut daemon = Daemon::start();
    daemon.append_many(1);
    // The cursor checked at the end must have been stored before the stop.
    daemon.caught_up("dedup");
    daemon.stop();
    for (args, what) in [
        (
            &["rewind", "dedup", "--to-seq", "0"][..],
            "a rewind needs the running daemon (cursors are applied by the consumer drivers)",
        ),
        (&["redrive"][..], "a redrive needs the running daemon"),
        (
            &["pause", "dedup"][..],
            "pausing or resuming a consumer needs the running daemon",
        ),
    ] {
        let o = daemon.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(err.starts_with(&format!("hooklog-replay: {what}")), "{err}");
        assert!(err.contains("start hooklog"), "{err}");
        assert!(
            !err.contains("reading"),
            "no fallback to the data directory: {err}"
        );
    }
    let o = daemon.run(&["--direct", "rewind", "dedup", "--to-seq", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("drop --direct"), "{}", stderr(&o));
    // Nothing was changed: the stored cursor is where the daemon left it.
    let o = ok(daemon.run(&["status", "--json"]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(consumer(&v, "dedup")["cursor"], 1, "{v}");
}

#[test]
fn after_shutdown_dead_letters_and_optouts_read_the_data_directory_directly() {
    let mut daemon = Daemon::start();
    daemon.add_optout();
    let poison = daemon.append_poison();
    daemon.caught_up("compliance");
    let live_letters = stdout(&ok(daemon.run(&["dead-letters", "--json"])));
    let live_optouts = stdout(&ok(daemon.run(&["optouts", "--json"])));
    assert_eq!(live_letters.lines().count(), 1, "{live_letters}");
    assert_eq!(live_optouts.lines().count(), 1, "{live_optouts}");
    daemon.stop();

    let note = format!(
        "hooklog-replay: daemon not reachable at {}; reading {} directly\n",
        daemon.admin_url,
        hooklog::log_dir(&daemon.data_dir).display()
    );
    let o = ok(daemon.run(&["dead-letters", "--json"]));
    assert_eq!(stderr(&o), note);
    assert_eq!(stdout(&o), live_letters);
    let o = ok(daemon.run(&["optouts", "--json"]));
    assert_eq!(stderr(&o), note);
    assert_eq!(stdout(&o), live_optouts);

    let o = ok(daemon.run(&["--direct", "dead-letters", "--consumer", "compliance"]));
    assert!(
        stdout(&o).contains(&format!("\ncompliance  {poison}    1  ")),
        "{}",
        stdout(&o)
    );
    let o = ok(daemon.run(&["--direct", "optouts"]));
    assert!(stdout(&o).contains(NUMBER), "{}", stdout(&o));
    // The stopped status knows the stored dead letters too.
    let o = ok(daemon.run(&["--direct", "status", "--json"]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(consumer(&v, "compliance")["dead_letters"], 1, "{v}");
    assert_eq!(consumer(&v, "compliance")["state"], "stored", "{v}");
}

/// A schema of the local PostgreSQL for one test, dropped at the end.
struct PgSchema {
    url: String,
    name: String,
}

impl PgSchema {
    fn new() -> PgSchema {
        PgSchema {
            url: std::env::var("HOOKLOG_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
            name: format!("hl_replay_{}_{}", std::process::id(), line!()),
        }
    }

    fn config(&self) -> String {
        format!(
            "\n[postgres]\nurl = {:?}\nschema = {:?}\nbatch = 2\n",
            self.url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(c) =
                hooklog::consumers::postgres::connect(&self.url, None, Duration::from_secs(10))
                    .await
            {
                let sql = format!("drop schema if exists \"{}\" cascade", self.name);
                let _ = c.client.simple_query(&sql).await;
            }
        });
    }
}

#[test]
fn rewind_postgres_since_a_date_moves_the_sink_back_and_it_projects_again() {
    let pg = PgSchema::new();
    let daemon = Daemon::start_with(&pg.config());
    daemon.append_many(5);
    let before = daemon.caught_up("postgres");
    assert_eq!(consumer(&before, "postgres")["cursor"], 5);

    let o = ok(daemon.run(&["rewind", "postgres", "--since", "2000-01-01", "--json"]));
    let report: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["consumer"], "postgres");
    assert_eq!(report["rebuild"], false, "{report}");
    assert_eq!(
        (report["from_cursor"].as_u64(), report["to_cursor"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(report["replay"], 5);
    let after = daemon.caught_up("postgres");
    assert_eq!(consumer(&after, "postgres")["lag"], 0);
    assert!(
        consumer(&after, "postgres")["last_error"].is_null(),
        "{after}"
    );
}

#[test]
fn rewind_with_redeliver_prints_the_report_and_exits_1_without_yes_and_goes_ahead_with_it() {
    // A sender (Quo credentials, one line) with nothing sent yet.
    let daemon = Daemon::start_with(
        "\n[openphone]\napi_key = \"quo-key\"\napi_base = \"http://127.0.0.1:9\"\n\n\
         [[lines]]\nid = \"quo-main\"\nnumber = \"+12125550199\"\nprovider = \"openphone\"\n\
         ten_dlc = \"approved\"\nbusiness_name = \"Acme\"\n",
    );
    daemon.append_many(2);
    daemon.caught_up("sender");
    let o = daemon.run(&["rewind", "sender", "--to-seq", "0", "--redeliver"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(
            "sender: a rewind to 0 with --redeliver would perform 0 sends again; limit 100 \
             ([sender] max_redeliver); nothing was changed"
        ),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("run: hooklog-replay rewind sender --to-seq 0 --redeliver --yes"),
        "{}",
        stderr(&o)
    );
    let o = daemon.run(&["rewind", "sender", "--to-seq", "0", "--redeliver", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let report = &json_lines(&o)[0];
    assert_eq!(report["redelivery"]["effects"], 0, "{report}");
    assert_eq!(report["redelivery"]["unit"], "sends", "{report}");

    let o = ok(daemon.run(&["rewind", "sender", "--to-seq", "0", "--redeliver", "--yes"]));
    assert!(
        stdout(&o).contains("sender: the redelivery performs 0 sends again"),
        "{}",
        stdout(&o)
    );
    // --yes and --max belong to --redeliver.
    for args in [
        &["rewind", "sender", "--to-seq", "0", "--yes"][..],
        &["rewind", "sender", "--to-seq", "0", "--max", "5"],
    ] {
        let o = daemon.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}
