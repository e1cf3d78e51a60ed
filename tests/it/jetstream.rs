//! The daemon on the JetStream engine: the real server (`run()`) against a real nats-server,
//! either the machine's (`nats://127.0.0.1:4222`, or `HOOKLOG_TEST_NATS_URL`) or, where the
//! test restarts NATS, a private `nats-server` process with its own store directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::crash::free_port;
use crate::edge::{twilio_sms, BASE, TOKEN};
use crate::util::{self, TestServer};

use crate::jetstream_stream::{machine_nats, Stream};

fn env(stream: &Stream) -> Vec<(&'static str, String)> {
    vec![
        ("HOOKLOG_LOG_BACKEND", "jetstream".into()),
        ("HOOKLOG_LOG_JETSTREAM_NATS_URL", stream.url.clone()),
        ("HOOKLOG_LOG_JETSTREAM_STREAM", stream.name.clone()),
        ("HOOKLOG_LOG_JETSTREAM_SUBJECT", stream.subject.clone()),
        ("HOOKLOG_LOG_JETSTREAM_ACK_TIMEOUT_MS", "500".into()),
        ("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN.into()),
        ("HOOKLOG_SERVER_PUBLIC_URLS", BASE.into()),
    ]
}

fn start(data: &Path, stream: &Stream) -> TestServer {
    let env = env(stream);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start(util::config(None, data, &pairs), None)
}

fn send(addr: SocketAddr, sid: &str) -> u16 {
    let (path, headers, body) = twilio_sms(sid);
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    util::request(addr, "POST", &path, &h, &body).status
}

fn sids(s: &TestServer) -> Vec<String> {
    s.events()
        .iter()
        .map(|e| {
            form_urlencoded::parse(e.body.as_bytes())
                .find(|(k, _)| k == "MessageSid")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect()
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn on_jetstream_webhooks_are_acknowledged_deduplicated_and_kept_across_a_restart() {
    let stream = Stream::on(&machine_nats());
    let dir = crate::engine::tempdir();
    let s = start(dir.path(), &stream);
    assert_eq!(send(s.public, "SMj1"), 200);
    assert_eq!(send(s.public, "SMj2"), 200);
    // The same message again, signed anew (a byte-identical copy would be a replay, not
    // stored): dedup marks it.
    let (path, mut headers, mut body) = twilio_sms("SMj1");
    body.extend_from_slice(b"&NumSegments=1");
    let sig = hooklog::signature::twilio::sign(
        &hooklog::signature::HmacKey::from_utf8(TOKEN),
        &format!("{BASE}{path}"),
        Some("application/x-www-form-urlencoded"),
        &body,
    );
    headers.retain(|(k, _)| k != "x-twilio-signature");
    headers.push(("x-twilio-signature".into(), sig));
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        util::request(s.public, "POST", &path, &h, &body).status,
        200
    );
    wait_until("dedup caught up", 10, || {
        s.status()
            .consumers
            .iter()
            .any(|c| c.name == "dedup" && c.cursor == 3)
    });
    let events = s.events();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3],
        "the stream's sequences are the records' sequences"
    );
    assert_eq!(
        events[2].dedup,
        Some(serde_json::json!({"verdict": "duplicate", "of": 1}))
    );
    drop(s);

    let s = start(dir.path(), &stream);
    assert_eq!(sids(&s), ["SMj1", "SMj2", "SMj1"]);
    assert_eq!(send(s.public, "SMj3"), 200);
    assert_eq!(s.events().last().map(|e| e.seq), Some(4));
    let status = s.status();
    assert_eq!((status.log.first_seq, status.log.last_seq), (1, 4));
}

/// A nats-server of the test's own, so that it can be killed and started again (`startup`
/// starts one after the daemon).
pub(crate) struct PrivateNats {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
}

impl PrivateNats {
    pub(crate) fn start(store: &Path) -> PrivateNats {
        let mut n = PrivateNats::stopped(store, free_port());
        n.restart();
        n
    }

    /// A server on `port` with its store in `store`, not started yet ([`Self::restart`]).
    pub(crate) fn stopped(store: &Path, port: u16) -> PrivateNats {
        PrivateNats {
            child: None,
            port,
            store: store.to_owned(),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub(crate) fn restart(&mut self) {
        let child = Command::new(
            std::env::var("HOOKLOG_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into()),
        )
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(&self.store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts (it is on PATH on this machine kind)");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_until("nats-server listening", 10, || {
            std::net::TcpStream::connect(addr).is_ok()
        });
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn while_nats_is_down_webhooks_get_503_never_2xx_and_service_resumes_when_it_returns() {
    let store = crate::engine::tempdir();
    let mut nats = PrivateNats::start(store.path());
    let stream = Stream::on(&nats.url());
    let dir = crate::engine::tempdir();
    let s = start(dir.path(), &stream);

    let mut acked = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("SMn{n}")
    };
    for _ in 0..20 {
        let sid = next();
        assert_eq!(send(s.public, &sid), 200);
        acked.push(sid);
    }

    nats.kill();
    let outage = Instant::now();
    let mut refused = 0;
    while outage.elapsed() < Duration::from_secs(3) {
        let sid = next();
        match send(s.public, &sid) {
            200 => acked.push(sid), // must then be stored: checked below
            503 => refused += 1,
            other => panic!("{other} while NATS was down"),
        }
    }
    assert!(refused > 0, "no request was refused while NATS was down");
    assert_eq!(util::get(s.public, "/readyz").0, 503);

    nats.restart();
    let back = Instant::now();
    let mut served_again = false;
    while back.elapsed() < Duration::from_secs(30) {
        let sid = next();
        if send(s.public, &sid) == 200 {
            acked.push(sid);
            served_again = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served_again, "appends never recovered after NATS came back");
    for _ in 0..10 {
        let sid = next();
        assert_eq!(send(s.public, &sid), 200);
        acked.push(sid);
    }
    wait_until("ready again", 10, || {
        util::get(s.public, "/readyz").0 == 200
    });

    let stored = sids(&s);
    let missing: Vec<&String> = acked.iter().filter(|a| !stored.contains(a)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    let mut unique = stored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), stored.len(), "no record stored twice");
    eprintln!(
        "{} acknowledged, {refused} refused during a 3 s outage, {} stored",
        acked.len(),
        stored.len()
    );
}
