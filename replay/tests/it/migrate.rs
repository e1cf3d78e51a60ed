//! `export`, `import` and `fire` against real daemons: each test starts `hooklog::run`
//! in-process on `127.0.0.1:0` with its own data directory and webhook keys, and runs the
//! built `hooklog-replay` as a child process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{self, cli, jetstream_stream};

/// Keys that are NOT the fixtures' own: `fire` must sign with the configuration's keys.
const QUO_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TWILIO_TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const PUBLIC_URL: &str = "https://hooks.example.net";

/// A daemon's configuration. Its webhook listener is on a port chosen here, and its own
/// loopback URL is its second public URL: `fire` signs Twilio fixtures for the URL it sends
/// to, and the tests fire at the listener directly.
fn config_text(data_dir: &Path, admin_listen: &str, twilio_token: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!(
        "data_dir = {:?}\n[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin_listen = \"{admin_listen}\"\n\
         shutdown_grace_secs = 2\npublic_urls = [\"{PUBLIC_URL}\", \"http://127.0.0.1:{port}\"]\n\
         [openphone]\nsigning_keys = [\"{QUO_KEY}\"]\n\
         [twilio]\nauth_tokens = [\"{twilio_token}\"]\n",
        data_dir.to_str().unwrap()
    )
}

/// A daemon running on its own runtime.
struct Daemon {
    inner: support::InProcess,
    admin_url: String,
    webhook_url: String,
    config: PathBuf,
    data_dir: PathBuf,
}

impl Daemon {
    /// Starts a daemon with `config` (whose `data_dir` is `data_dir`).
    fn start(config: PathBuf, data_dir: PathBuf) -> Daemon {
        let inner = support::InProcess::start(&config);
        Daemon {
            admin_url: inner.admin_url.clone(),
            webhook_url: inner.webhook_url.clone(),
            inner,
            config,
            data_dir,
        }
    }

    fn token(&self) -> String {
        support::token(&self.data_dir)
    }

    fn get(&self, path: &str) -> Value {
        ureq::get(&format!("{}{path}", self.admin_url))
            .set("Authorization", &format!("Bearer {}", self.token()))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        ureq::post(&format!("{}{path}", self.admin_url))
            .set("Authorization", &format!("Bearer {}", self.token()))
            .send_json(body)
            .unwrap()
            .into_json()
            .unwrap()
    }

    /// Waits until every running consumer has processed the whole log.
    fn caught_up(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.get("/admin/status");
            let behind = s["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["state"] == "running")
                .any(|c| c["lag"].as_u64() != Some(0));
            if !behind {
                return s;
            }
            assert!(Instant::now() < deadline, "consumers did not catch up: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        self.inner.stop();
    }

    fn cli(&self) -> Command {
        cli(&self.config, &self.admin_url)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(rel)
        .to_str()
        .unwrap()
        .to_owned()
}

/// `fire FIXTURE --url <daemon> --json`, which must succeed; its JSON.
fn fire(d: &Daemon, rel: &str) -> Value {
    let o = ok(d
        .cli()
        .args(["fire", &fixture(rel), "--url", &d.webhook_url, "--json"])
        .output()
        .unwrap());
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The same Twilio delivery again, signed for the daemon's public URL (as Twilio signs what
/// reaches it through the tunnel) and sent to its listener: a retry that is not a byte-identical
/// replay of what `fire` sent (that one would be answered without a record), so it is stored
/// and dedup flags it.
fn retry_signed_for_the_public_url(d: &Daemon, rel: &str) {
    let fixture = hooklog::fixture::Fixture::load(Path::new(&fixture(rel))).unwrap();
    let keys = hooklog::fixture::SigningConfig {
        quo_key: None,
        twilio_token: Some(TWILIO_TOKEN.to_owned()),
        twilio_base_url: Some(PUBLIC_URL.to_owned()),
        salesmsg_secret: None,
    };
    let req = fixture
        .request_configured(&keys, chrono::Utc::now().timestamp())
        .unwrap();
    let mut r = ureq::request(&req.method, &format!("{}{}", d.webhook_url, req.path));
    for (k, v) in &req.headers {
        r = r.set(k, v);
    }
    let resp = r.send_bytes(&req.body).unwrap();
    assert_eq!(resp.status(), 200, "{rel} signed for {PUBLIC_URL}");
}

/// Every record with its dedup verdict, through the admin API.
fn records(d: &Daemon) -> Vec<Value> {
    d.get("/admin/events?after=0&limit=1000")["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// What a restore must reproduce: log bounds and count, and per consumer (but the effect
/// consumers, whose cursors import sets) cursor and dead letters.
fn projection_of_status(s: &Value) -> Value {
    let consumers: Vec<Value> = s["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] != "dispatch" && c["name"] != "sender")
        .map(|c| json!([c["name"], c["cursor"], c["dead_letters"], c["state"]]))
        .collect();
    json!({
        "first_seq": s["log"]["first_seq"],
        "last_seq": s["log"]["last_seq"],
        "count": s["log"]["count"],
        "consumers": consumers,
    })
}

/// Webhooks (one twice: a duplicate), an opt-out by STOP, a Quo message, a backfilled twin,
/// a binary body, an operator opt-out and a record of an unknown route: 8 records.
fn fill(a: &Daemon) {
    // Webhooks (one twice: a duplicate), an opt-out by STOP, a Quo message.
    fire(a, "twilio/sms_inbound.json");
    retry_signed_for_the_public_url(a, "twilio/sms_inbound.json");
    fire(a, "twilio/sms_inbound_stop.json");
    fire(a, "openphone/standard_message_received.json");
    // The backfilled twin of the inbound SMS (a duplicate of record 1), and a binary body.
    a.post(
        "/admin/events",
        json!({
            "source": "backfill-twilio",
            "route": "/2010-04-01/Messages/SM485d0e8848222369e9f2e13c7b92ab65",
            "body": json!({
                "sid": "SM485d0e8848222369e9f2e13c7b92ab65", "status": "received",
                "direction": "inbound", "from": "+15555550123", "to": "+15555550142",
                "body": "Hola", "date_created": "Tue, 14 Apr 2026 20:03:00 +0000",
            }).to_string(),
        }),
    );
    a.post(
        "/admin/events",
        json!({"source": "backfill-openphone", "route": "/v1/messages/AC1",
               "body": "//79/A==", "body_encoding": "base64"}),
    );
    // Internal (an operator opt-out) and outbound records.
    a.post(
        "/admin/optouts",
        json!({"number": "+15555550199", "reason": "asked by phone"}),
    );
    // A record of a route no parser knows (the admin API appends only backfill sources:
    // `outbound` and `internal` records are the daemon's own).
    a.post(
        "/admin/events",
        json!({"source": "backfill-openphone", "route": "/test/other", "body": "{}"}),
    );
}

#[test]
fn export_then_import_into_an_empty_data_dir_reproduces_the_records_and_projections() {
    let dir = tempfile::tempdir().unwrap();
    let data_a = dir.path().join("a");
    let config_a = dir.path().join("a.toml");
    std::fs::write(&config_a, config_text(&data_a, "127.0.0.1:0", TWILIO_TOKEN)).unwrap();
    let mut a = Daemon::start(config_a, data_a.clone());

    fill(&a);
    let status_a = a.caught_up();
    let names = projection_of_status(&status_a)["consumers"].to_string();
    assert!(
        names.contains("\"dedup\"") && names.contains("\"compliance\""),
        "{status_a}"
    );
    let records_a = records(&a);
    let optouts_a = a.get("/admin/optouts");
    assert_eq!(records_a.len(), 8, "{records_a:#?}");
    assert_eq!(
        records_a[1]["dedup"]["verdict"], "duplicate",
        "{records_a:#?}"
    );
    assert_eq!(
        records_a[4]["dedup"]["verdict"], "duplicate",
        "{records_a:#?}"
    );
    assert!(
        records_a.iter().any(|r| r["body_encoding"] == "base64"),
        "a binary body is part of the test"
    );
    assert_eq!(
        optouts_a["optouts"].as_array().unwrap().len(),
        2,
        "{optouts_a}"
    );

    // Export through the admin API, to a file.
    let file = dir.path().join("export.jsonl");
    let o = ok(a
        .cli()
        .args(["export", "--since", "2000-01-01", "--json", "--out"])
        .arg(&file)
        .output()
        .unwrap());
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["records"], 8, "{summary}");
    assert_eq!(summary["by_source"]["twilio"], 3, "{summary}");
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    assert!(lines.iter().all(|l| l.get("dedup").is_none()));
    // A range that ends before anything was received exports nothing.
    let o = ok(a
        .cli()
        .args(["export", "--since", "2000-01-01", "--until", "2000-01-02"])
        .output()
        .unwrap());
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("exported 0 records"),
        "{}",
        text(&o.stderr)
    );

    // So does a range that starts after everything.
    let o = ok(a
        .cli()
        .args(["export", "--since", "2999-01-01", "--json"])
        .output()
        .unwrap());
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    let summary: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(summary["records"], 0, "{summary}");

    // Import is refused while the daemon holds the data directory.
    let o = a.cli().args(["import"]).arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("in use") && text(&o.stderr).contains("stop the daemon"),
        "{}",
        text(&o.stderr)
    );
    a.stop();

    // With the daemon stopped, export reads the data directory: the same lines.
    let direct_file = dir.path().join("direct.jsonl");
    let o = ok(a
        .cli()
        .args(["export", "--since", "2000-01-01", "--out"])
        .arg(&direct_file)
        .output()
        .unwrap());
    assert!(
        text(&o.stdout).starts_with("exported 8 records"),
        "{}",
        text(&o.stdout)
    );
    assert!(text(&o.stderr).contains("directly"), "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&direct_file).unwrap(),
        std::fs::read_to_string(&file).unwrap()
    );

    // A file with a bad line appends nothing (and creates no log).
    let bad = dir.path().join("bad.jsonl");
    let first = std::fs::read_to_string(&file).unwrap();
    let first = first.lines().next().unwrap();
    std::fs::write(&bad, format!("{first}\n{{\"seq\": 2}}\n")).unwrap();
    let data_c = dir.path().join("c");
    let config_c = dir.path().join("c.toml");
    std::fs::write(&config_c, config_text(&data_c, "127.0.0.1:0", TWILIO_TOKEN)).unwrap();
    let o = cli(&config_c, "http://127.0.0.1:9")
        .args(["import"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("line 2"), "{}", text(&o.stderr));
    assert!(!hooklog::log_dir(&data_c).exists());

    // Import into an empty data directory, the daemon of that directory stopped.
    let data_b = dir.path().join("b");
    let config_b = dir.path().join("b.toml");
    std::fs::write(&config_b, config_text(&data_b, "127.0.0.1:0", TWILIO_TOKEN)).unwrap();
    let unreachable = "http://127.0.0.1:9";
    let dry = ok(cli(&config_b, unreachable)
        .args(["import", "--dry-run", "--json"])
        .arg(&file)
        .output()
        .unwrap());
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(
        (dry["records"].as_u64(), dry["appended"].as_u64()),
        (Some(8), Some(0))
    );
    // An import that stopped part-way (a full disk, a kill) is continued by the same command.
    import_in_two_goes(&config_b, &file);
    let whole = std::fs::read_to_string(&file).unwrap();
    // A second import of the same file appends nothing.
    let imported = import(&config_b, &file);
    assert_eq!(
        (&imported["already_stored"], &imported["appended"]),
        (&json!(8), &json!(0)),
        "{imported}"
    );
    // A log that is not the start of the file is refused, naming the first difference.
    let other = dir.path().join("other.jsonl");
    let changed: Vec<String> = whole
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if i == 2 {
                v["received_at"] = json!("2001-01-01T00:00:00Z");
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&other, changed.join("\n") + "\n").unwrap();
    let o = cli(&config_b, unreachable)
        .args(["import"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("not empty (8 records, seq 1-8)") && err.contains("seq 3 differs from line 3"),
        "{err}"
    );

    // The daemon on the restored directory rebuilds the same projections.
    let b = Daemon::start(config_b, data_b);
    let status_b = b.caught_up();
    assert_eq!(
        projection_of_status(&status_b),
        projection_of_status(&status_a)
    );
    assert_eq!(
        records(&b),
        records_a,
        "same records, verdicts, times and labels"
    );
    assert_eq!(b.get("/admin/optouts"), optouts_a);
    for c in status_b["consumers"].as_array().unwrap() {
        if c["name"] == "dispatch" || c["name"] == "sender" {
            assert_eq!(c["cursor"], 8, "{c}: effects are not repeated");
        }
    }
}

#[test]
fn fire_signs_a_fixture_with_the_configured_keys_and_exits_by_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("hooklog.toml");
    std::fs::write(&config, config_text(&data, "127.0.0.1:0", TWILIO_TOKEN)).unwrap();
    let d = Daemon::start(config, data);

    let v = fire(&d, "twilio/sms_inbound.json");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["ok"], true);
    assert!(v["body"].as_str().unwrap().contains("<Response"), "{v}");
    let v = fire(&d, "openphone/standard_message_received.json");
    assert_eq!(
        v["status"].as_u64().map(|s| (200..300).contains(&s)),
        Some(true),
        "{v}"
    );
    let events = records(&d);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["source"], "twilio");
    // Signed for the URL it was sent to: the daemon's second public URL, its own address.
    assert_eq!(events[0]["verified"], "x-twilio-signature (token 0, url 1)");
    assert_eq!(events[1]["source"], "openphone");

    // The text form: method, URL, status, then the body.
    let o = ok(d
        .cli()
        .args([
            "fire",
            &fixture("twilio/sms_status_delivered.json"),
            "--url",
        ])
        .arg(&d.webhook_url)
        .output()
        .unwrap());
    let out = text(&o.stdout);
    assert!(
        out.starts_with(&format!("POST {}/", d.webhook_url)),
        "{out}"
    );
    assert!(out.lines().next().unwrap().ends_with(": 200"), "{out}");

    // A CLI configured with another token signs what this daemon refuses: exit 1.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        config_text(
            &dir.path().join("x"),
            "127.0.0.1:0",
            "ffffffffffffffffffffffffffffffff",
        ),
    )
    .unwrap();
    let o = cli(&other, &d.admin_url)
        .args([
            "fire",
            &fixture("twilio/sms_inbound.json"),
            "--json",
            "--url",
        ])
        .arg(&d.webhook_url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["status"].as_u64().unwrap() >= 400, "{v}");
    assert!(text(&o.stderr).contains("answered"), "{}", text(&o.stderr));
    assert_eq!(records(&d).len(), 3, "the refused request is not logged");
}

/// One request a [`capture`] server received: its path and headers (names lower-cased) and
/// body.
struct Captured {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A one-shot HTTP server on `127.0.0.1:0` that answers `200` to the first request and hands
/// it over; its base URL.
fn capture() -> (String, std::sync::mpsc::Receiver<Captured>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let path = line.split_whitespace().nth(1).unwrap().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
        tx.send(Captured {
            path,
            headers,
            body,
        })
        .unwrap();
    });
    (base, rx)
}

#[test]
fn fire_signs_a_twilio_fixture_for_the_url_it_sends_to_never_for_another() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hooklog.toml");
    // A configuration whose only public URL is not where the request goes.
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[server]\npublic_urls = [\"{PUBLIC_URL}\"]\n\
             [twilio]\nauth_tokens = [\"{TWILIO_TOKEN}\"]\n",
            dir.path().join("data").to_str().unwrap()
        ),
    )
    .unwrap();
    let (target, received) = capture();
    let o = ok(cli(&config, "http://127.0.0.1:9")
        .args([
            "fire",
            &fixture("twilio/sms_inbound.json"),
            "--url",
            &target,
        ])
        .output()
        .unwrap());
    let req = received.recv_timeout(Duration::from_secs(10)).unwrap();
    let signature = req
        .headers
        .iter()
        .find(|(k, _)| k == "x-twilio-signature")
        .map(|(_, v)| v.clone())
        .unwrap();
    let key = hooklog::signature::HmacKey::from_utf8(TWILIO_TOKEN);
    let sign = |base: &str| {
        hooklog::signature::twilio::sign(
            &key,
            &format!("{base}{}", req.path),
            Some("application/x-www-form-urlencoded"),
            &req.body,
        )
    };
    assert_eq!(
        signature,
        sign(&target),
        "signed for the URL it was sent to"
    );
    assert_ne!(
        signature,
        sign(PUBLIC_URL),
        "not for the configured public URL"
    );
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: {target} is not one of server.public_urls"
        )),
        "{stderr}"
    );

    // The flag that signed for another URL is refused, saying what to do, and sends nothing.
    let o = cli(&config, "http://127.0.0.1:9")
        .args([
            "fire",
            &fixture("twilio/sms_inbound.json"),
            "--url",
            &target,
        ])
        .args(["--public-url", PUBLIC_URL])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("--public-url") && stderr.contains(&format!("--url {PUBLIC_URL}")),
        "{stderr}"
    );
}

/// What a daemon shows of its projections once caught up: status (bounds, cursors, dead
/// letters), every record with its dedup verdict, and the opt-out list.
fn projections(d: &Daemon) -> (Value, Vec<Value>, Value) {
    let status = d.caught_up();
    for c in status["consumers"].as_array().unwrap() {
        if c["name"] == "dispatch" || c["name"] == "sender" {
            assert_eq!(c["cursor"], 8, "{c}: effects are not repeated");
        }
    }
    (
        projection_of_status(&status),
        records(d),
        d.get("/admin/optouts"),
    )
}

/// Imports the first five records of the 8-record export `file` (an import that stopped
/// part-way), then the whole file, which continues after them; the second summary.
fn import_in_two_goes(config: &Path, file: &Path) -> Value {
    let whole = std::fs::read_to_string(file).unwrap();
    let head = file.with_extension("head.jsonl");
    std::fs::write(
        &head,
        whole.lines().take(5).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let part = import(config, &head);
    assert_eq!(
        (&part["appended"], &part["first_seq"], &part["last_seq"]),
        (&json!(5), &json!(1), &json!(5)),
        "{part}"
    );
    let imported = import(config, file);
    assert_eq!(
        (
            &imported["already_stored"],
            &imported["appended"],
            &imported["first_seq"],
            &imported["last_seq"]
        ),
        (&json!(5), &json!(3), &json!(6), &json!(8)),
        "{imported}"
    );
    imported
}

/// `import FILE --json` with the daemon of `config` stopped; its summary.
fn import(config: &Path, file: &Path) -> Value {
    let o = ok(cli(config, "http://127.0.0.1:9")
        .args(["import", "--json"])
        .arg(file)
        .output()
        .unwrap());
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn an_export_from_sled_imported_into_jetstream_and_back_reproduces_the_projections() {
    let dir = tempfile::tempdir().unwrap();
    let data_a = dir.path().join("sled-a");
    let config_a = dir.path().join("sled-a.toml");
    std::fs::write(&config_a, config_text(&data_a, "127.0.0.1:0", TWILIO_TOKEN)).unwrap();
    let mut a = Daemon::start(config_a, data_a);
    fill(&a);
    let (status_a, records_a, optouts_a) = projections(&a);
    assert_eq!(records_a.len(), 8, "{records_a:#?}");
    assert_eq!(records_a[1]["dedup"]["verdict"], "duplicate");
    assert_eq!(records_a[4]["dedup"]["verdict"], "duplicate");
    assert_eq!(optouts_a["optouts"].as_array().unwrap().len(), 2);
    let from_sled = dir.path().join("from-sled.jsonl");
    ok(a.cli()
        .args(["export", "--since", "2000-01-01", "--out"])
        .arg(&from_sled)
        .output()
        .unwrap());
    a.stop();

    // Into an empty stream, with a fresh data directory for the local state.
    let stream = jetstream_stream::Stream::on_machine();
    let data_j = dir.path().join("jetstream");
    let config_j = dir.path().join("jetstream.toml");
    std::fs::write(
        &config_j,
        format!(
            "{}{}",
            config_text(&data_j, "127.0.0.1:0", TWILIO_TOKEN),
            stream.toml()
        ),
    )
    .unwrap();
    // In two goes, as when the first stopped part-way (NATS gone): the second continues.
    let imported = import_in_two_goes(&config_j, &from_sled);
    assert_eq!(imported["stream"], stream.name.as_str(), "{imported}");
    // A second import of the same file appends nothing.
    let again = import(&config_j, &from_sled);
    assert_eq!(
        (&again["already_stored"], &again["appended"]),
        (&json!(8), &json!(0)),
        "{again}"
    );

    let mut j = Daemon::start(config_j.clone(), data_j);
    let (status_j, records_j, optouts_j) = projections(&j);
    assert_eq!(status_j, status_a);
    assert_eq!(
        records_j, records_a,
        "same records, verdicts, times and labels"
    );
    assert_eq!(optouts_j, optouts_a);
    // The running daemon holds data_dir/state: import is refused, naming the engine.
    let o = j.cli().args(["import"]).arg(&from_sled).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("in use") && err.contains("stop the daemon") && err.contains("JetStream"),
        "{err}"
    );
    let from_js = dir.path().join("from-jetstream.jsonl");
    ok(j.cli()
        .args(["export", "--since", "2000-01-01", "--out"])
        .arg(&from_js)
        .output()
        .unwrap());
    j.stop();
    assert_eq!(
        std::fs::read_to_string(&from_js).unwrap(),
        std::fs::read_to_string(&from_sled).unwrap(),
        "the JetStream log exports the very lines it was imported from"
    );

    // And back into a fresh sled data directory.
    let data_b = dir.path().join("sled-b");
    let config_b = dir.path().join("sled-b.toml");
    std::fs::write(&config_b, config_text(&data_b, "127.0.0.1:0", TWILIO_TOKEN)).unwrap();
    assert_eq!(import(&config_b, &from_js)["last_seq"], 8);
    let b = Daemon::start(config_b, data_b);
    let (status_b, records_b, optouts_b) = projections(&b);
    assert_eq!(status_b, status_a);
    assert_eq!(records_b, records_a);
    assert_eq!(optouts_b, optouts_a);
}

#[test]
fn an_imported_record_whose_label_does_not_fit_its_kind_is_restored_as_history_and_never_acted_on()
{
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("hooklog.toml");
    std::fs::write(&config, config_text(&data, "127.0.0.1:0", TWILIO_TOKEN)).unwrap();
    const NUMBER: &str = "+15555550199";
    let line = |seq: u64, source: &str, route: &str, body: Value, verified: &str| {
        json!({"seq": seq, "received_at": "2026-12-01T12:00:00.000000Z", "source": source,
               "route": route, "headers": {"content-type": "application/json"},
               "body": body.to_string(), "body_encoding": "utf8", "verified": verified})
        .to_string()
    };
    let id = "msg_0000000000001000000000000a";
    let file = dir.path().join("crafted.jsonl");
    std::fs::write(
        &file,
        [
            // The operator's opt-out, then a removal that says an agent wrote it.
            line(1, "internal", "/internal/optouts", json!({"action": "add", "number": NUMBER}), "admin-token"),
            line(2, "internal", "/internal/optouts", json!({"action": "remove", "number": NUMBER}), "agent-token"),
            // A request, and an `allow` that says the operator's token wrote it.
            line(3, "outbound", "/v1/messages", json!({"id": id, "from": "quo-main", "to": NUMBER, "content": "hi", "requested_at": "2026-12-01T12:00:00Z"}), "admin-token"),
            line(4, "outbound", "/internal/outbound/decision", json!({"id": id, "verdict": "allow", "evaluation": 1, "decided_at": "2026-12-01T12:00:01Z"}), "admin-token"),
        ]
        .join("\n"),
    )
    .unwrap();

    let summary = import(&config, &file);
    assert_eq!(summary["records"], 4, "{summary}");
    assert_eq!(summary["never_acted_on"], json!([2, 4]), "{summary}");
    assert_eq!(summary["written_by_hooklog"], 0, "{summary}");

    let d = Daemon::start(config, data);
    d.caught_up();
    let optouts = d.get("/admin/optouts");
    let entry = optouts["optouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["number"] == NUMBER)
        .cloned()
        .unwrap_or_default();
    assert_eq!(entry["state"], "opted_out", "still suppressed: {optouts}");
    let letters = d.get("/admin/dead-letters")["dead_letters"].clone();
    let mut got: Vec<(String, u64)> = letters
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["consumer"].as_str().unwrap().to_owned(),
                l["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [("compliance".to_owned(), 2), ("outbound".to_owned(), 4)],
        "{letters}"
    );
    // The message waits for (or got) the gates' own decision, never the imported one.
    let m = d.get(&format!("/v1/messages/{id}"));
    assert_ne!(m["status"], "sent", "{m}");
    assert!(
        !m["history"].to_string().contains("\"seq\":4"),
        "the forged allow is not in its history: {m}"
    );
}
