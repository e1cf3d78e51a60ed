//! `hooklog doctor`, the real binary, against fake Quo and Twilio APIs (documented shapes:
//! pagination, auth, 429s), a fake Discord, and (for the healthy deployment) the real daemon in
//! this process on a temporary data directory. Each kind of webhook drift is reported with the
//! URL to set, and the exit code says how bad the worst finding is.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;

use serde_json::{json, Value};

use crate::fake_providers::{quo_day, FakeApi, Fault, State, LINE_1, QUO_KEY};
use crate::fake_server::{answer, FakeServer};
use crate::util::{self, TestServer};

/// The public base URL of the deployment under test.
const PUBLIC: &str = "https://hooks.example.com";
/// The published test key A (fixtures/README.md): signs nothing real.
const QUO_SIGNING_KEY: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";
/// The Twilio line of the configuration.
const TWILIO_LINE: &str = "+15550000009";
/// The Discord webhook's token (the end of its URL): never printed.
const DISCORD_TOKEN: &str = "discord-token-that-must-stay-secret";

fn twilio_number(n: u32, number: &str, voice: &str, sms: &str, status: Option<&str>) -> Value {
    json!({
        "sid": format!("PN{n:032}"), "phone_number": number, "friendly_name": number,
        "voice_url": voice, "voice_method": "POST", "sms_url": sms, "sms_method": "POST",
        "status_callback": status, "status_callback_method": "POST",
    })
}

/// Every number pointing at hooklog, and Quo webhooks (one per list) with every event.
fn healthy() -> State {
    let mut st = quo_day();
    st.twilio_numbers = vec![
        twilio_number(
            1,
            TWILIO_LINE,
            &format!("{PUBLIC}/voice"),
            &format!("{PUBLIC}/sms"),
            Some(&format!("{PUBLIC}/voice/status")),
        ),
        // Connection overrides in the fragment, the host written in capitals: still approved.
        twilio_number(
            2,
            "+15550000010",
            &format!("{PUBLIC}/voice/webhook#rc=3&rt=5000"),
            "https://HOOKS.example.com/sms/webhook",
            Some(&format!("{PUBLIC}/voice/status")),
        ),
        twilio_number(
            3,
            "+15550000011",
            &format!("{PUBLIC}/voice"),
            &format!("{PUBLIC}/sms"),
            Some(&format!("{PUBLIC}/voice/status")),
        ),
    ];
    st.quo_webhooks_v1 = vec![json!({
        "id": "WHlegacy1", "userId": "US1", "orgId": "OR1", "label": "hooklog messages",
        "status": "enabled", "url": format!("{PUBLIC}/webhook/openphone"),
        "key": "legacy-signing-secret-never-printed", "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z", "deletedAt": null,
        "events": ["message.received", "message.delivered"], "resourceIds": [],
    })];
    st.quo_webhooks = vec![
        json!({
            "id": "WHdated1", "orgId": "OR1", "label": "hooklog calls", "status": "enabled",
            "url": format!("{PUBLIC}/webhook/quo"), "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z",
            "events": ["call.completed", "call.summary.completed", "call.transcript.completed"],
            "resourceIds": ["PN1", "PN2"], "apiVersion": "2026-03-30",
        }),
        // The Node handler's webhook, still there during the switch: not hooklog's, not audited.
        json!({
            "id": "WHnode", "status": "enabled", "url": "https://node-handler.example.org/quo?secret=x",
            "events": ["message.received"], "resourceIds": [], "apiVersion": "2026-03-30",
        }),
    ];
    st
}

/// A deployment: its configuration file, the fakes, and a data directory.
struct Deployment {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    file: PathBuf,
    api: FakeApi,
    discord: FakeServer,
}

impl Deployment {
    fn new(state: State, twilio_token: &str, quo_key: &str) -> Deployment {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let api = FakeApi::start(state);
        let discord = FakeServer::start(answer(
            200,
            r#"{"type":1,"id":"123","name":"hooklog alerts","channel_id":"9","token":"x"}"#,
        ));
        let file = root.join("hooklog.toml");
        let base = api.base();
        let text = format!(
            r#"
[server]
public_urls = ["{PUBLIC}"]

[openphone]
api_key = "{quo_key}"
api_base = "{base}"
signing_keys = ["{QUO_SIGNING_KEY}"]

[twilio]
account_sid = "AC00000000000000000000000000000001"
auth_tokens = ["{twilio_token}"]
api_base = "{base}"

[alerts]
discord_webhook_url = "http://{discord}/api/webhooks/123/{DISCORD_TOKEN}"

[log]
backend = "sled"

[[lines]]
id = "quo-main"
number = "{LINE_1}"
provider = "openphone"
ten_dlc = "approved"
business_name = "Acme Homes"

[[lines]]
id = "twilio-main"
number = "{TWILIO_LINE}"
provider = "twilio"
ten_dlc = "approved"
business_name = "Acme Homes"
"#,
            discord = discord.addr,
        );
        std::fs::write(&file, text).unwrap();
        Deployment {
            _tmp: tmp,
            root,
            file,
            api,
            discord,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Starts the daemon on this deployment's configuration, in this process.
    fn start_daemon(&self) -> TestServer {
        let config = util::config(
            Some(&self.file),
            &self.data_dir(),
            &[("HOOKLOG_LOG_BACKEND", "sled")],
        );
        TestServer::start(config, None)
    }

    /// Runs `hooklog doctor` with `args`; `daemon`: the running daemon's addresses.
    fn doctor(&self, args: &[&str], daemon: Option<(SocketAddr, SocketAddr)>) -> Run {
        self.doctor_with(args, daemon, &[])
    }

    /// [`Deployment::doctor`] with more environment.
    fn doctor_with(
        &self,
        args: &[&str],
        daemon: Option<(SocketAddr, SocketAddr)>,
        more_env: &[(&str, &str)],
    ) -> Run {
        // Ports nobody listens on when no daemon runs: bound, then let go.
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (public, admin) = daemon.unwrap_or_else(|| (free(), free()));
        let out = crate::ops::hooklog(
            &self.root,
            &[&["doctor", "--config", self.file.to_str().unwrap()], args].concat(),
            &[
                ("HOOKLOG_DATA_DIR", self.data_dir().to_str().unwrap()),
                ("HOOKLOG_SERVER_LISTEN", &public.to_string()),
                ("HOOKLOG_SERVER_ADMIN_LISTEN", &admin.to_string()),
            ]
            .into_iter()
            .chain(more_env.iter().copied())
            .collect::<Vec<_>>(),
        );
        Run::from(out)
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "--json printed no JSON ({e}):\n{}{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The findings of `check` with `status`, as `what ⏎ fix` texts.
    fn findings(&self, check: &str, status: &str) -> Vec<(String, String)> {
        self.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == check && f["status"] == status)
            .map(|f| {
                (
                    f["what"].as_str().unwrap().to_owned(),
                    f["fix"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The one finding of `check` whose `what` contains `needle`.
    fn finding(&self, check: &str, status: &str, needle: &str) -> (String, String) {
        let all = self.findings(check, status);
        let hits: Vec<_> = all
            .iter()
            .filter(|(w, _)| w.contains(needle))
            .cloned()
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "one {status} finding of {check} containing {needle:?} expected in:\n{}",
            self.stdout
        );
        hits[0].clone()
    }
}

/// Posts a signed legacy Quo `message.received` on `line` to the daemon.
fn quo_webhook(server: &TestServer, pn: &str, id: &str) {
    let body = json!({
        "id": format!("EV{id}"), "object": "event", "apiVersion": "v4",
        "createdAt": chrono::Utc::now().to_rfc3339(), "type": "message.received",
        "data": {"object": {"id": format!("AC{id}"), "object": "message",
            "from": "+15551110001", "to": [LINE_1], "direction": "incoming", "text": "hello",
            "status": "received", "createdAt": chrono::Utc::now().to_rfc3339(),
            "userId": "US1", "phoneNumberId": pn}},
    })
    .to_string();
    let key = hooklog::signature::HmacKey::from_quo_secret(QUO_SIGNING_KEY).unwrap();
    let ts = (chrono::Utc::now().timestamp_millis()).to_string();
    let signature = hooklog::signature::quo_legacy::sign(&key, &ts, body.as_bytes());
    let r = util::request(
        server.public,
        "POST",
        "/webhook/openphone",
        &[
            ("content-type", "application/json"),
            ("openphone-signature", &signature),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_healthy_deployment_exits_0_with_every_finding_ok_and_json_that_parses() {
    let d = Deployment::new(healthy(), "twilio-test-token", QUO_KEY);
    // One 429 on the first call: retried (the answer is the documented throttle), not reported.
    d.api.with(|s| {
        s.faults.push_back(Fault {
            status: 429,
            retry_after: Some("0".into()),
        })
    });
    let server = d.start_daemon();
    quo_webhook(&server, "PN1", "1");
    let run = d.doctor(&["--json"], Some((server.public, server.admin)));
    let v = run.json();
    let not_ok: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] != "ok")
        .collect();
    assert!(
        not_ok.is_empty(),
        "findings not ok: {not_ok:#?}\n{}",
        run.stderr
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(v["exit_code"], 0);
    // The drift audit ran: three numbers on two pages, both Quo lists, the log through the daemon.
    run.finding(
        "twilio webhooks",
        "ok",
        "every incoming number (3) points at hooklog",
    );
    run.finding(
        "quo webhooks",
        "ok",
        "WHlegacy1, WHdated1 subscribe to every required event",
    );
    run.finding(
        "quo webhooks",
        "ok",
        "node-handler.example.org/quo?… (not hooklog",
    );
    run.finding("quo activity", "ok", "admin API");
    run.finding(
        "quo activity",
        "ok",
        "every Quo line (1) received a webhook",
    );
    let seen = d.api.seen();
    assert!(seen
        .iter()
        .any(|s| s.path.ends_with("/IncomingPhoneNumbers.json") && s.query.contains("PageToken")));
    assert!(seen.iter().any(|s| s.path == "/webhooks"));
    assert!(seen.iter().any(|s| s.status == 429));
    // The Discord check is a GET, which posts nothing; the legacy list's key is never shown.
    assert!(d
        .discord
        .requests()
        .iter()
        .all(|r| r.method == "GET" || !r.body.contains("drift")));
    assert!(!run.stdout.contains("legacy-signing-secret") && !run.stdout.contains(DISCORD_TOKEN));
    // The table is the default.
    let table = d.doctor(&[], Some((server.public, server.admin)));
    assert_eq!(table.code, Some(0), "{}", table.stdout);
    assert!(table.stdout.starts_with("CHECK"), "{}", table.stdout);
    assert!(table.stdout.contains("exit code 0"), "{}", table.stdout);
    server.stop().unwrap();
}

#[test]
fn a_quo_lines_phone_number_id_is_what_the_doctor_judges_and_one_quo_lists_for_another_number_is_warned(
) {
    let d = Deployment::new(healthy(), "twilio-test-token", QUO_KEY);
    let server = d.start_daemon();
    quo_webhook(&server, "PN1", "3");
    let text = std::fs::read_to_string(&d.file).unwrap();
    let with_id = |pn: &str| {
        let edited = text.replacen(
            "id = \"quo-main\"\n",
            &format!("id = \"quo-main\"\nphone_number_id = \"{pn}\"\n"),
            1,
        );
        assert_ne!(edited, text);
        std::fs::write(&d.file, edited).unwrap();
        d.doctor(&["--json"], Some((server.public, server.admin)))
    };

    // The id Quo lists for the line's number: used, nothing to say.
    let run = with_id("PN1");
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    run.finding(
        "quo activity",
        "ok",
        "every Quo line (1) received a webhook",
    );

    // Another line of the workspace: the sender would send from it. The line is judged by the
    // configured id (PN2 heard nothing), not by the number (PN1 did).
    let run = with_id("PN2");
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let (what, fix) = run.finding("quo activity", "warn", "phone_number_id PN2");
    assert!(
        what.contains(&format!("is not the id Quo lists for {LINE_1} (PN1)"))
            && what.contains("the sender would send from another line"),
        "{what}"
    );
    assert!(
        fix.starts_with("set lines[0].phone_number_id to PN1"),
        "{fix}"
    );
    let (what, _) = run.finding("quo activity", "warn", "received no webhook");
    assert!(what.contains(&format!("{LINE_1} (PN2)")), "{what}");

    // An id the workspace does not have: warned, and not judged.
    let run = with_id("PN9");
    let (what, _) = run.finding("quo activity", "warn", "phone_number_id PN9");
    assert!(
        what.contains("a line the workspace does not have"),
        "{what}"
    );
    assert!(
        run.findings("quo activity", "warn")
            .iter()
            .all(|(w, _)| !w.contains("received no webhook")),
        "{}",
        run.stdout
    );
    server.stop().unwrap();
}

/// The healthy state with each kind of Twilio drift on its own number.
fn twilio_drift() -> State {
    let mut st = healthy();
    st.twilio_numbers = vec![
        // Still on the Node handler.
        twilio_number(
            1,
            TWILIO_LINE,
            "https://node-handler.example.org/voice",
            &format!("{PUBLIC}/sms"),
            Some(&format!("{PUBLIC}/voice/status")),
        ),
        // No status callback.
        twilio_number(
            2,
            "+15550000010",
            &format!("{PUBLIC}/voice"),
            &format!("{PUBLIC}/sms"),
            None,
        ),
        // Plain http.
        twilio_number(
            3,
            "+15550000011",
            &format!("{PUBLIC}/voice"),
            "http://hooks.example.com/sms",
            Some(&format!("{PUBLIC}/voice/status")),
        ),
        // Another port.
        twilio_number(
            4,
            "+15550000012",
            &format!("{PUBLIC}/voice"),
            &format!("{PUBLIC}/sms"),
            Some("https://hooks.example.com:8443/voice/status"),
        ),
    ];
    st
}

#[test]
fn each_kind_of_twilio_drift_is_reported_with_its_number_and_the_url_to_set() {
    let d = Deployment::new(twilio_drift(), "twilio-test-token", QUO_KEY);
    let run = d.doctor(&["--json"], None);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let (what, fix) = run.finding("twilio webhooks", "fail", TWILIO_LINE);
    assert!(
        what.contains("voice_url https://node-handler.example.org/voice points elsewhere"),
        "{what}"
    );
    assert!(
        fix.starts_with("set voice_url (VoiceUrl) to https://hooks.example.com/voice ("),
        "{fix}"
    );
    assert!(
        fix.contains(&format!("IncomingPhoneNumbers/PN{:032}.json", 1)),
        "{fix}"
    );
    let (what, fix) = run.finding("twilio webhooks", "warn", "+15550000010");
    assert!(what.contains("status_callback is not set"), "{what}");
    assert!(
        fix.starts_with(
            "set status_callback (StatusCallback) to https://hooks.example.com/voice/status"
        ),
        "{fix}"
    );
    let (what, fix) = run.finding("twilio webhooks", "fail", "+15550000011");
    assert!(
        what.contains(
            "sms_url http://hooks.example.com/sms uses http:// where hooklog is https://"
        ),
        "{what}"
    );
    assert!(
        fix.starts_with("set sms_url (SmsUrl) to https://hooks.example.com/sms"),
        "{fix}"
    );
    let (what, fix) = run.finding("twilio webhooks", "fail", "+15550000012");
    assert!(
        what.contains("uses port 8443 where hooklog is on 443"),
        "{what}"
    );
    assert!(
        fix.starts_with(
            "set status_callback (StatusCallback) to https://hooks.example.com/voice/status"
        ),
        "{fix}"
    );
    run.finding(
        "twilio webhooks",
        "ok",
        "0 of 4 incoming number(s) point at hooklog",
    );
}

#[test]
fn a_missing_status_callback_alone_is_a_warning_and_exits_1_when_nothing_fails() {
    let mut st = healthy();
    st.twilio_numbers[2]["status_callback"] = Value::Null;
    let d = Deployment::new(st, "twilio-test-token", QUO_KEY);
    let server = d.start_daemon();
    quo_webhook(&server, "PN1", "2");
    let run = d.doctor(&["--json"], Some((server.public, server.admin)));
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let (what, _) = run.finding("twilio webhooks", "warn", "+15550000011");
    assert!(what.contains("status_callback is not set"), "{what}");
    server.stop().unwrap();
}

#[test]
fn a_twilio_line_missing_from_the_account_fails() {
    let mut st = healthy();
    st.twilio_numbers.remove(0);
    let d = Deployment::new(st, "twilio-test-token", QUO_KEY);
    let run = d.doctor(&["--json"], None);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let (what, _) = run.finding("twilio webhooks", "fail", "lines[1]");
    assert!(
        what.contains(TWILIO_LINE) && what.contains("not an incoming number"),
        "{what}"
    );
}

#[test]
fn a_quo_webhook_missing_an_event_type_fails_with_the_fix_and_a_drifted_url_is_named() {
    let mut st = healthy();
    st.quo_webhooks[0]["events"] = json!(["call.completed", "call.summary.completed"]);
    st.quo_webhooks_v1.push(json!({
        "id": "WHold", "status": "enabled", "url": "http://hooks.example.com/webhook/openphone/",
        "events": ["message.received"], "resourceIds": [], "deletedAt": null,
    }));
    let d = Deployment::new(st, "twilio-test-token", QUO_KEY);
    let run = d.doctor(&["--json"], None);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let (what, fix) = run.finding("quo webhooks", "fail", "call.transcript.completed");
    assert!(what.contains(&format!("{LINE_1} (PN1)")), "{what}");
    assert!(
        fix.contains("POST /webhooks (Quo-Api-Version: 2026-03-30)"),
        "{fix}"
    );
    assert!(
        fix.contains("https://hooks.example.com/webhook/openphone"),
        "{fix}"
    );
    let (what, fix) = run.finding("quo webhooks", "fail", "WHold");
    assert!(
        what.contains("uses http:// where hooklog is https://"),
        "{what}"
    );
    assert!(
        fix.starts_with("point it at https://hooks.example.com/webhook/openphone "),
        "{fix}"
    );
    // The audit says plainly what it cannot see.
    let all = run.stdout.clone();
    assert!(
        all.contains("webhooks created in the Quo app may not be visible to the API"),
        "{all}"
    );
}

#[test]
fn refused_credentials_fail_saying_where_to_rotate_them_and_a_throttled_api_warns() {
    let d = Deployment::new(healthy(), "wrong-token", "wrong-key");
    let run = d.doctor(&["--json"], None);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let (_, fix) = run.finding("twilio api", "fail", "refused (401)");
    assert!(
        fix.contains("rotate the auth token") && fix.contains("twilio.auth_tokens"),
        "{fix}"
    );
    let (_, fix) = run.finding("quo api", "fail", "refused (401)");
    assert!(
        fix.contains("rotate the key") && fix.contains("openphone.api_key"),
        "{fix}"
    );
    // The audits that need them say they were skipped.
    run.finding("twilio webhooks", "warn", "skipped");
    run.finding("quo webhooks", "warn", "skipped");
    assert!(!run.stdout.contains("wrong-token") && !run.stdout.contains("wrong-key"));

    // 429 on every try of the Quo call: a warning, not a failure of the key.
    let d = Deployment::new(healthy(), "twilio-test-token", QUO_KEY);
    d.api.with(|s| {
        for _ in 0..3 {
            s.faults.push_back(Fault {
                status: 429,
                retry_after: Some("0".into()),
            });
        }
    });
    let run = d.doctor(&["--json"], None);
    let (what, _) = run.finding("quo api", "warn", "did not answer usefully");
    assert!(what.contains("429"), "{what}");
}

#[test]
fn alert_posts_the_drift_findings_to_discord_as_one_message_without_secrets() {
    let d = Deployment::new(twilio_drift(), "twilio-test-token", QUO_KEY);
    let run = d.doctor(&["--alert"], None);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("--alert: the drift findings were handed to Discord"),
        "{}",
        run.stdout
    );
    let posts: Vec<_> = d
        .discord
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(posts[0].path, format!("/api/webhooks/123/{DISCORD_TOKEN}"));
    let content: Value = serde_json::from_str(&posts[0].body).unwrap();
    let text = content["content"].as_str().unwrap();
    assert!(text.contains("webhook drift"), "{text}");
    assert!(
        text.contains(TWILIO_LINE) && text.contains("https://hooks.example.com/voice"),
        "{text}"
    );
    assert!(
        !text.contains(DISCORD_TOKEN) && !text.contains("twilio-test-token"),
        "{text}"
    );
    assert!(!run.stdout.contains(DISCORD_TOKEN));
}

#[test]
fn a_configuration_that_does_not_load_fails_and_every_other_check_says_it_was_skipped() {
    let d = Deployment::new(healthy(), "twilio-test-token", QUO_KEY);
    let mut text = std::fs::read_to_string(&d.file).unwrap();
    text.push_str("\n[doctor]\nquiet_days = 0\n");
    std::fs::write(&d.file, text).unwrap();
    let run = d.doctor(&["--json"], None);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let (what, _) = run.finding("configuration", "fail", "doctor.quiet_days");
    assert!(what.contains("outside 1..=window_days"), "{what}");
    run.finding(
        "twilio webhooks",
        "warn",
        "skipped: the configuration did not load",
    );
    assert!(d.api.seen().is_empty(), "no provider was asked");
}

#[test]
fn postgres_migrations_not_applied_warn_once_applied_are_ok_and_a_conflict_or_an_unfit_mirror_fails(
) {
    let d = Deployment::new(healthy(), "twilio-test-token", QUO_KEY);
    let schema = format!("hl_it_doctor_{}_{}", std::process::id(), util::now());
    let url = crate::postgres::base_url();
    let env = [
        ("HOOKLOG_POSTGRES_URL", url.as_str()),
        ("HOOKLOG_POSTGRES_SCHEMA", schema.as_str()),
    ];
    let run = d.doctor_with(&["--json"], None, &env);
    let reachable = run.findings("postgres", "ok");
    assert!(
        reachable.iter().any(|(w, _)| w.starts_with("reachable")),
        "{}",
        run.stdout
    );
    let (_, fix) = run.finding("postgres", "warn", "has no hooklog migrations applied");
    assert!(fix.contains("hooklog migrate"), "{fix}");
    assert!(
        !run.stdout.contains(&url),
        "the URL (a secret) is never printed"
    );

    let migrated = crate::ops::hooklog(
        &d.root,
        &["migrate", "--config", d.file.to_str().unwrap()],
        &[
            &[("HOOKLOG_DATA_DIR", d.data_dir().to_str().unwrap())],
            &env[..],
        ]
        .concat(),
    );
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let run = d.doctor_with(&["--json"], None, &env);
    run.finding("postgres", "ok", "every migration applied");
    assert!(
        run.findings("postgres", "warn").is_empty(),
        "{}",
        run.stdout
    );

    // Another schema holding a table of the Node handlers' names: migrate would refuse.
    let theirs = format!("{schema}_node");
    sql(
        &url,
        &format!("create schema \"{theirs}\"; create table \"{theirs}\".omni_events (id text)"),
    );
    let env = [
        ("HOOKLOG_POSTGRES_URL", url.as_str()),
        ("HOOKLOG_POSTGRES_SCHEMA", theirs.as_str()),
    ];
    // And a mirror into that table that does not fit it (it has no `payload` column).
    let mut text = std::fs::read_to_string(&d.file).unwrap();
    text.push_str(&format!(
        "\n[[postgres.mirror]]\ntable = \"{theirs}.omni_events\"\nfrom = \"openphone_messages\"\n\
         key = \"id\"\n[postgres.mirror.columns]\nid = \"id\"\npayload = \"payload\"\n"
    ));
    std::fs::write(&d.file, text).unwrap();
    let run = d.doctor_with(&["--json"], None, &env);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let (what, fix) = run.finding("postgres", "fail", "would create it");
    assert!(
        what.contains("omni_events") && what.contains("already there"),
        "{what}"
    );
    assert!(fix.contains("postgres.schema"), "{fix}");
    let (what, fix) = run.finding("postgres", "fail", "postgres.mirror:");
    assert!(what.contains("payload"), "{what}");
    assert!(fix.contains("[[postgres.mirror]]"), "{fix}");
    sql(
        &url,
        &format!(
            "drop schema if exists \"{schema}\" cascade; drop schema if exists \"{theirs}\" cascade"
        ),
    );
}

/// Runs `statements` on the test database.
fn sql(url: &str, statements: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c =
            hooklog::consumers::postgres::connect(url, None, std::time::Duration::from_secs(10))
                .await
                .unwrap();
        c.client.batch_execute(statements).await.unwrap();
    });
}

#[test]
fn a_jetstream_stream_is_looked_up_and_never_created_and_a_mismatch_fails() {
    let d = Deployment::new(healthy(), "twilio-test-token", QUO_KEY);
    let stream = crate::jetstream_stream::Stream::on_machine();
    let env = [
        ("HOOKLOG_LOG_BACKEND", "jetstream"),
        ("HOOKLOG_LOG_JETSTREAM_NATS_URL", stream.url.as_str()),
        ("HOOKLOG_LOG_JETSTREAM_STREAM", stream.name.as_str()),
        ("HOOKLOG_LOG_JETSTREAM_SUBJECT", stream.subject.as_str()),
    ];
    let run = d.doctor_with(&["--json"], None, &env);
    let (what, _) = run.finding("log", "warn", "does not exist");
    assert!(what.contains(&stream.name), "{what}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let js = rt.block_on(async {
        async_nats::jetstream::new(async_nats::connect(stream.url.as_str()).await.unwrap())
    });
    assert!(
        rt.block_on(js.get_stream(&stream.name)).is_err(),
        "the doctor created the stream"
    );
    // A stream with an age limit would delete records no consumer has read.
    rt.block_on(js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.name.clone(),
        subjects: vec![stream.subject.clone(), format!("{}.leader", stream.subject)],
        max_age: std::time::Duration::from_secs(3600),
        duplicate_window: std::time::Duration::from_secs(120),
        ..Default::default()
    }))
    .unwrap();
    let run = d.doctor_with(&["--json"], None, &env);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let (_, fix) = run.finding("log", "fail", "age limits");
    assert!(
        fix.contains(&format!("nats stream edit {}", stream.name)),
        "{fix}"
    );
}
