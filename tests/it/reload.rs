//! Reload without restart, against the real binary: key rotation by SIGHUP while signed
//! webhooks flow, a refused reload that changes nothing, `POST /admin/reload` and its roles,
//! a key that needs a restart, and a token rotation.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooklog::signature::{quo_legacy, twilio, HmacKey};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::crash::free_port;
use crate::edge::{BASE, QUO_KEY};
use crate::util::{self, request};

const OPERATOR: &str = "operator-token-0123456789abcdef";
const TWILIO_OLD: &str = "0123456789abcdef0123456789abcdef";
const TWILIO_NEW: &str = "fedcba9876543210fedcba9876543210";
/// base64 of 32 bytes, a Quo legacy signing key like `QUO_KEY`.
const QUO_NEW: &str = "bmV3LXF1by1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM=";

/// What a test's configuration file says.
#[derive(Clone)]
struct Settings {
    public: u16,
    admin: u16,
    twilio: Vec<&'static str>,
    quo: Vec<&'static str>,
    agents: Vec<(&'static str, &'static str)>,
    /// Appended as is (a bad value, a syntax error).
    extra: String,
}

impl Settings {
    fn new() -> Settings {
        Settings {
            public: free_port(),
            admin: free_port(),
            twilio: vec![TWILIO_OLD],
            quo: vec![QUO_KEY],
            agents: Vec::new(),
            extra: String::new(),
        }
    }

    fn write(&self, path: &Path) {
        let list = |v: &[&str]| {
            v.iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = format!(
            "[server]\nlisten = [\"127.0.0.1:{}\"]\nadmin_listen = \"127.0.0.1:{}\"\n\
             public_urls = [\"{BASE}\"]\nadmin_token = \"{OPERATOR}\"\n\n\
             [openphone]\nsigning_keys = [{}]\n\n[twilio]\nauth_tokens = [{}]\n",
            self.public,
            self.admin,
            list(&self.quo),
            list(&self.twilio),
        );
        if !self.agents.is_empty() {
            text.push_str("\n[server.agent_tokens]\n");
            for (name, token) in &self.agents {
                text.push_str(&format!("{name} = \"{token}\"\n"));
            }
        }
        text.push_str(&self.extra);
        // Written whole and renamed, as an editor or a deploy tool does: a reload never
        // reads half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

/// The real daemon on a configuration file, its stderr kept.
struct Daemon {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts the daemon on `settings` written to `dir/hooklog.toml`. A port found free can be
    /// taken by another test before the daemon binds it: the daemon then exits at once, and
    /// it is started again on new ports (written into `settings`).
    fn start(dir: &Path, settings: &mut Settings) -> (Daemon, PathBuf) {
        let config = dir.join("hooklog.toml");
        let data_dir = dir.join("data");
        for _attempt in 0..5 {
            settings.write(&config);
            let mut child = Command::new(env!("CARGO_BIN_EXE_hooklog"))
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("RUST_LOG", "warn")
                .env("HOOKLOG_DATA_DIR", &data_dir)
                .envs(crate::engine::env_for(&data_dir))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the hooklog binary starts");
            let stderr = Arc::new(Mutex::new(String::new()));
            let pipe = child.stderr.take().unwrap();
            let keep = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    keep.lock().unwrap().push_str(&(line + "\n"));
                }
            });
            let public = SocketAddr::from(([127, 0, 0, 1], settings.public));
            let admin = SocketAddr::from(([127, 0, 0, 1], settings.admin));
            let deadline = Instant::now() + Duration::from_secs(20);
            let ready = loop {
                if util::get(public, "/readyz").0 == 200 {
                    break true;
                }
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                assert!(Instant::now() < deadline, "the daemon is not ready in time");
                std::thread::sleep(Duration::from_millis(20));
            };
            if ready {
                let daemon = Daemon {
                    child,
                    public,
                    admin,
                    stderr,
                };
                return (daemon, config);
            }
            eprintln!("the daemon exited before it was ready; trying again on new ports");
            settings.public = free_port();
            settings.admin = free_port();
        }
        panic!("the daemon could not start on five pairs of ports");
    }

    fn admin(&self, method: &str, path: &str, token: &str) -> util::Response {
        let auth = format!("Bearer {token}");
        request(self.admin, method, path, &[("authorization", &auth)], b"")
    }

    fn reloads(&self, result: &str) -> u64 {
        let (_, text) = util::metrics(self.admin, OPERATOR);
        let line = format!("hooklog_reloads_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in /metrics"))
    }

    /// Sends SIGHUP and waits until the reload counted `result` once more.
    fn sighup(&self, result: &str) {
        let before = self.reloads(result);
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGHUP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.reloads(result) == before {
            assert!(
                Instant::now() < deadline,
                "SIGHUP: no {result} reload counted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bodies of every stored record, through the admin API.
    fn stored_bodies(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let r = self.admin(
                "GET",
                &format!("/admin/events?after={after}&limit=1000"),
                OPERATOR,
            );
            assert_eq!(r.status, 200, "{}", r.body);
            let page: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            let events = page["events"].as_array().unwrap();
            if events.is_empty() {
                return out;
            }
            for e in events {
                out.push(e["body"].as_str().unwrap_or_default().to_owned());
            }
            after = page["next_after"].as_u64().unwrap();
        }
    }

    fn stop(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let _ = self.child.wait();
    }
}

/// A Twilio SMS webhook for `sid`, signed with `token`.
fn twilio_sms(addr: SocketAddr, sid: &str, token: &str) -> u16 {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("MessageSid", sid)
        .append_pair("From", "+15555550123")
        .append_pair("To", "+15555550100")
        .append_pair("Body", "rotation")
        .finish()
        .into_bytes();
    let ct = "application/x-www-form-urlencoded";
    let sig = twilio::sign(
        &HmacKey::from_utf8(token),
        &format!("{BASE}/sms"),
        Some(ct),
        &body,
    );
    request(
        addr,
        "POST",
        "/sms",
        &[("content-type", ct), ("x-twilio-signature", &sig)],
        &body,
    )
    .status
}

/// A Quo webhook (legacy signature) for event `id`, signed with `key`.
fn quo_event(addr: SocketAddr, id: &str, key: &str) -> u16 {
    let body = format!(r#"{{"id":"{id}","type":"message.received","data":{{}}}}"#);
    let ts = (util::now() * 1000).to_string();
    let sig = quo_legacy::sign(
        &HmacKey::from_quo_secret(key).unwrap(),
        &ts,
        body.as_bytes(),
    );
    request(
        addr,
        "POST",
        "/webhook/openphone",
        &[("openphone-signature", &sig)],
        body.as_bytes(),
    )
    .status
}

#[test]
fn keys_rotate_by_sighup_while_signed_webhooks_flow_and_none_is_refused_or_lost() {
    let dir = crate::engine::tempdir();
    let mut settings = Settings::new();
    let (daemon, config) = Daemon::start(dir.path(), &mut settings);
    // Senders sign with the old keys until told otherwise, as the providers do until their
    // console is switched.
    let use_new = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<(String, u16)>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let public = daemon.public;
    let sender = {
        let (use_new, stop, acked, refused, sent) = (
            use_new.clone(),
            stop.clone(),
            acked.clone(),
            refused.clone(),
            sent.clone(),
        );
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let new = use_new.load(Ordering::Relaxed);
                let (tw, quo) = if new {
                    (TWILIO_NEW, QUO_NEW)
                } else {
                    (TWILIO_OLD, QUO_KEY)
                };
                let sid = format!("SMrot{n}");
                let ev = format!("EVrot{n}");
                n += 1;
                for (id, status) in [
                    (sid.clone(), twilio_sms(public, &sid, tw)),
                    (ev.clone(), quo_event(public, &ev, quo)),
                ] {
                    sent.fetch_add(1, Ordering::Relaxed);
                    if status == 200 {
                        acked.lock().unwrap().push(id);
                    } else {
                        refused.lock().unwrap().push((id, status));
                    }
                }
            }
        })
    };
    let flowing = |at_least: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let start = sent.load(Ordering::Relaxed);
        while sent.load(Ordering::Relaxed) < start + at_least {
            assert!(Instant::now() < deadline, "the webhooks stopped flowing");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    flowing(20);
    // Overlap: both keys of each provider.
    settings.twilio = vec![TWILIO_OLD, TWILIO_NEW];
    settings.quo = vec![QUO_KEY, QUO_NEW];
    settings.write(&config);
    daemon.sighup("ok");
    flowing(20);
    use_new.store(true, Ordering::Relaxed);
    flowing(20);
    // The old keys go.
    settings.twilio = vec![TWILIO_NEW];
    settings.quo = vec![QUO_NEW];
    settings.write(&config);
    daemon.sighup("ok");
    flowing(20);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();

    assert!(
        refused.lock().unwrap().is_empty(),
        "refused during the rotation: {:?}",
        refused.lock().unwrap()
    );
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 80, "only {} acknowledged", acked.len());
    // Every acknowledged webhook is in the log, each once.
    let bodies = daemon.stored_bodies();
    let stored: BTreeSet<String> = bodies
        .iter()
        .filter_map(|b| {
            form_urlencoded::parse(b.as_bytes())
                .find(|(k, _)| k == "MessageSid")
                .map(|(_, v)| v.into_owned())
                .or_else(|| {
                    serde_json::from_str::<serde_json::Value>(b)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_owned))
                })
        })
        .collect();
    assert_eq!(bodies.len(), acked.len(), "one record per acknowledgement");
    for id in &acked {
        assert!(
            stored.contains(id),
            "{id} was acknowledged but is not in the log"
        );
    }
    // After the last reload the old keys are refused (Twilio's answer to a bad signature is
    // 403, Quo's 401), and the new ones still pass.
    assert_eq!(quo_event(daemon.public, "EVold", QUO_KEY), 401);
    assert_eq!(twilio_sms(daemon.public, "SMold", TWILIO_OLD), 403);
    assert_eq!(quo_event(daemon.public, "EVnew", QUO_NEW), 200);
    assert_eq!(twilio_sms(daemon.public, "SMnew", TWILIO_NEW), 200);
    // The log says which keys changed, never their values.
    let log = daemon.stderr.lock().unwrap().clone();
    for secret in [TWILIO_OLD, TWILIO_NEW, QUO_KEY, QUO_NEW] {
        assert!(!log.contains(secret), "a key in the daemon's log");
    }
    daemon.stop();
}

#[test]
fn an_invalid_reload_changes_nothing_and_says_why() {
    let dir = crate::engine::tempdir();
    let mut settings = Settings::new();
    let (daemon, config) = Daemon::start(dir.path(), &mut settings);
    // A syntax error, with the new key in the same file: none of it is applied.
    settings.twilio = vec![TWILIO_NEW];
    settings.extra = "\n[alerts]\nmax_per_hour = = 3\n".into();
    settings.write(&config);
    daemon.sighup("refused");
    let r = daemon.admin("POST", "/admin/reload", OPERATOR);
    assert_eq!(r.status, 422, "{}", r.body);
    let answer: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(answer["error"], "reload_refused");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("not valid TOML") && message.contains("alerts.max_per_hour"),
        "{message}"
    );
    assert!(message.contains("line 14"), "{message}");
    // A value that parses but is not valid: refused the same way, by key.
    settings.extra = "\n[alerts]\nmax_per_hour = 0\n".into();
    settings.write(&config);
    let r = daemon.admin("POST", "/admin/reload", OPERATOR);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("max_per_hour"), "{}", r.body);
    for secret in [TWILIO_OLD, TWILIO_NEW, QUO_KEY, OPERATOR] {
        assert!(
            !r.body.contains(secret),
            "a secret in the answer: {}",
            r.body
        );
    }
    // The running configuration stays entirely: the old key works, the new one does not.
    assert_eq!(twilio_sms(daemon.public, "SMstill", TWILIO_OLD), 200);
    assert_eq!(twilio_sms(daemon.public, "SMnotyet", TWILIO_NEW), 403);
    assert_eq!(quo_event(daemon.public, "EVstill", QUO_KEY), 200);
    assert_eq!(util::get(daemon.public, "/readyz").0, 200);
    assert_eq!(daemon.reloads("refused"), 3);
    assert_eq!(daemon.reloads("ok"), 0);
    // The warning alert says why.
    let log = daemon.stderr.lock().unwrap().clone();
    let alert = log
        .lines()
        .find(|l| l.contains("config_reload_refused") && l.contains("not valid TOML"))
        .unwrap_or_else(|| panic!("no reload alert in:\n{log}"));
    assert!(alert.contains("WARN"), "{alert}");
    assert!(!log.contains(TWILIO_NEW), "a key in the daemon's log");
    daemon.stop();
}

#[test]
fn the_reload_route_is_the_operators_and_a_listener_change_waits_for_a_restart() {
    let dir = crate::engine::tempdir();
    let mut settings = Settings::new();
    settings.agents = vec![("dispo", "agent-token-dispo-0123456789")];
    let (daemon, config) = Daemon::start(dir.path(), &mut settings);
    let r = daemon.admin("POST", "/admin/reload", "agent-token-dispo-0123456789");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        daemon
            .admin("POST", "/admin/reload", "nobody-0123456789")
            .status,
        401
    );
    assert_eq!(daemon.admin("GET", "/admin/reload", OPERATOR).status, 405);
    assert_eq!(daemon.reloads("ok"), 0, "a refused caller reloads nothing");

    settings.public = free_port();
    settings.quo = vec![QUO_KEY, QUO_NEW];
    settings.write(&config);
    let r = daemon.admin("POST", "/admin/reload", OPERATOR);
    assert_eq!(r.status, 200, "{}", r.body);
    let answer: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(answer["reloaded"], true);
    assert_eq!(
        answer["changed"],
        serde_json::json!(["openphone.signing_keys"])
    );
    assert_eq!(
        answer["restart_required"],
        serde_json::json!(["server.listen"])
    );
    // Applied: the new Quo key; not applied: the listener stays where it was.
    assert_eq!(quo_event(daemon.public, "EVnewkey", QUO_NEW), 200);
    assert_eq!(util::get(daemon.public, "/readyz").0, 200);
    let new_public = SocketAddr::from(([127, 0, 0, 1], settings.public));
    assert!(
        std::net::TcpStream::connect_timeout(&new_public, Duration::from_millis(200)).is_err(),
        "the new address is not listened on before a restart"
    );
    // Reading the same file again applies nothing new, and the listener still waits.
    let again: serde_json::Value =
        serde_json::from_str(&daemon.admin("POST", "/admin/reload", OPERATOR).body).unwrap();
    assert_eq!(again["changed"], serde_json::json!([]));
    assert_eq!(
        again["restart_required"],
        serde_json::json!(["server.listen"])
    );
    let log = daemon.stderr.lock().unwrap().clone();
    assert!(
        log.contains("read only at start") && log.contains("server.listen"),
        "{log}"
    );
    daemon.stop();
}

#[test]
fn a_rotated_agent_token_stops_working_and_its_successor_works_after_a_reload() {
    let dir = crate::engine::tempdir();
    let mut settings = Settings::new();
    let old = "agent-token-old-0123456789abcdef";
    let new = "agent-token-new-0123456789abcdef";
    settings.agents = vec![("dispo", old)];
    let (daemon, config) = Daemon::start(dir.path(), &mut settings);
    let message = "/v1/messages/nonexistent";
    assert_eq!(daemon.admin("GET", message, old).status, 404);
    assert_eq!(daemon.admin("GET", message, new).status, 401);
    settings.agents = vec![("dispo", new)];
    settings.write(&config);
    let r = daemon.admin("POST", "/admin/reload", OPERATOR);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("server.agent_tokens"), "{}", r.body);
    assert!(!r.body.contains(new) && !r.body.contains(old), "{}", r.body);
    assert_eq!(daemon.admin("GET", message, old).status, 401);
    assert_eq!(daemon.admin("GET", message, new).status, 404);
    // The agent's token still reaches only the agents' routes.
    assert_eq!(daemon.admin("GET", "/admin/status", new).status, 403);
    assert_eq!(daemon.admin("GET", "/admin/status", OPERATOR).status, 200);
    daemon.stop();
}
