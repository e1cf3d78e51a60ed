//! Agent dispatch in the real server: a signed Quo message wakes the routed agent at a fake
//! gateway (`fake_server::FakeServer`) once, with the idempotency key and the bearer token; a
//! rewind re-dispatches nothing; a rewind with `redeliver` dispatches again with the same key.
//! And the real binary killed with SIGKILL while the gateway holds a call: the event is
//! dispatched again at restart, with the same key, and nothing else is.

use std::path::Path;
use std::time::{Duration, Instant};

use hooklog::fixture::Fixture;

use crate::fake_server::{answer, FakeServer};
use crate::util::{self, TestServer};

const TOKEN: &str = "gw-test-token-1";

/// The fixture configuration plus a `[dispatch]` section pointing at `gateway`.
fn config_with_dispatch(dir: &Path, gateway: &FakeServer) -> hooklog::config::Config {
    config_with_dispatch_and(dir, gateway, "")
}

/// [`config_with_dispatch`] with more `[dispatch]` keys (`extra`, TOML lines).
pub fn config_with_dispatch_and(
    dir: &Path,
    gateway: &FakeServer,
    extra: &str,
) -> hooklog::config::Config {
    let base = std::fs::read_to_string(util::fixtures_dir().join("hooklog.toml")).unwrap();
    let text = format!(
        "{base}\n[dispatch]\nurl = \"http://{}/v1/dispatch\"\ntoken = \"{TOKEN}\"\n{extra}\n\
         [[dispatch.routes]]\nkinds = [\"message.received\"]\nagent = \"acquisitions\"\n\n\
         [[dispatch.routes]]\nkinds = [\"call.ringing\", \"call.completed\"]\nagent = \"atlas\"\n",
        gateway.addr
    );
    let file = dir.join("hooklog.toml");
    std::fs::write(&file, text).unwrap();
    util::config(Some(&file), &dir.join("data"), &[])
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the dispatch consumer's cursor is at the end of the log.
fn dispatch_caught_up(s: &TestServer) {
    wait_for("dispatch caught up", Duration::from_secs(10), || {
        let st = s.status();
        st.consumers
            .iter()
            .any(|c| c.name == "dispatch" && c.cursor == st.log.last_seq)
    });
}

fn rewind(s: &TestServer, body: &str) -> serde_json::Value {
    let r = util::request(
        s.admin,
        "POST",
        "/admin/consumers/dispatch/rewind",
        &[
            ("authorization", &format!("Bearer {}", s.token)),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn an_inbound_message_wakes_its_agent_once_a_rewind_does_not_and_a_redelivery_does_again() {
    let gateway = FakeServer::start(answer(202, r#"{"ok":true}"#));
    let tmp = crate::engine::tempdir();
    let s = TestServer::start(config_with_dispatch(tmp.path(), &gateway), None);
    let f = Fixture::load(&util::fixtures_dir().join("openphone/legacy_message_received_v4.json"))
        .unwrap();

    let sent = Instant::now();
    assert_eq!(s.send_fixture(&f).status, 200);
    wait_for("the gateway is called", Duration::from_secs(5), || {
        !gateway.requests().is_empty()
    });
    assert!(sent.elapsed() < Duration::from_secs(5));
    dispatch_caught_up(&s);
    let requests = gateway.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/dispatch")
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let key = r.header("idempotency-key").unwrap().to_owned();
    assert!(key.starts_with("hooklog:1:openphone:"), "{key}");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["agent"], "acquisitions");
    assert_eq!(body["idempotency_key"], key.as_str());
    assert_eq!(body["kind"], "message.received");

    // The result is in the log (guarantee 3).
    let results: Vec<serde_json::Value> = s
        .events()
        .into_iter()
        .filter(|e| e.route == "/internal/dispatch/result")
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[0]["idempotency_key"], key.as_str());
    let last = s.status().log.last_seq;

    // A plain rewind replays the records but the ledger stops a second dispatch.
    let report = rewind(&s, r#"{"to_seq":0}"#);
    assert_eq!(report["to_cursor"], 0);
    dispatch_caught_up(&s);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(gateway.requests().len(), 1, "a rewind re-dispatched");
    assert_eq!(s.status().log.last_seq, last, "no new result either");

    // With redeliver: exactly one more POST, with the same key.
    let report = rewind(&s, r#"{"to_seq":0,"redeliver":true,"confirm":true}"#);
    assert_eq!(report["redeliver"], true);
    wait_for("the redelivery", Duration::from_secs(5), || {
        gateway.requests().len() >= 2
    });
    dispatch_caught_up(&s);
    std::thread::sleep(Duration::from_millis(500));
    let requests = gateway.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].header("idempotency-key"), Some(key.as_str()));
    let redelivered = s
        .events()
        .into_iter()
        .filter(|e| e.route == "/internal/dispatch/result")
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.body).unwrap())
        .filter(|r| r["redelivery"] == true)
        .count();
    assert_eq!(redelivered, 1);

    let (code, metrics) = s.metrics();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("hooklog_dispatch_latency_seconds_bucket{agent=\"acquisitions\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("hooklog_dispatch_latency_seconds_count{agent=\"acquisitions\"} 1"),
        "the redelivery is not a latency sample"
    );
    s.stop().unwrap();
}

/// Sends a signed Twilio SMS webhook for `sid` to the daemon; it must be acknowledged.
fn send_sms(daemon: &crate::crash::Daemon, sid: &str) {
    let (path, headers, body) = crate::edge::twilio_sms(sid);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = util::request(daemon.public, "POST", &path, &headers, &body);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The daemon, killed when dropped, so that a failed assertion does not leave it running.
struct Running(crate::crash::Daemon);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

/// The real binary on a data directory of its own, dispatching inbound messages to the agent
/// `acquisitions` at `gateway`; started again on the same directory and ports as needed.
struct GatewayDaemon {
    _tmp: crate::engine::TestDir,
    data: std::path::PathBuf,
    env: [(&'static str, String); 1],
    ports: (u16, u16),
}

impl GatewayDaemon {
    fn new(gateway: &FakeServer) -> GatewayDaemon {
        let tmp = crate::engine::tempdir();
        let file = tmp.path().join("hooklog.toml");
        std::fs::write(
            &file,
            format!(
                "[dispatch]\nurl = \"http://{}/v1/dispatch\"\ntoken = \"{TOKEN}\"\n\n\
                 [[dispatch.routes]]\nkinds = [\"message.received\"]\nagent = \"acquisitions\"\n",
                gateway.addr
            ),
        )
        .unwrap();
        GatewayDaemon {
            data: tmp.path().join("data"),
            env: [("HOOKLOG_CONFIG", file.display().to_string())],
            ports: (crate::crash::free_port(), crate::crash::free_port()),
            _tmp: tmp,
        }
    }

    fn start(&mut self) -> Running {
        Running(crate::crash::spawn_daemon_with(
            &self.data,
            &mut self.ports,
            &self.env,
        ))
    }
}

/// The idempotency key of every POST the gateway received, in order.
pub(crate) fn keys_seen(gateway: &FakeServer) -> Vec<String> {
    gateway
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect()
}

#[test]
fn killing_the_daemon_while_the_gateway_holds_a_call_dispatches_that_event_again_with_the_same_key_and_no_other(
) {
    use crate::fake_server::Reply;

    let gateway = FakeServer::start(answer(202, r#"{"ok":true}"#));
    let mut binary = GatewayDaemon::new(&gateway);
    let daemon = binary.start();

    // Two messages dispatched and answered before the crash.
    for (n, sid) in ["SMdisp0001", "SMdisp0002"].into_iter().enumerate() {
        send_sms(&daemon.0, sid);
        wait_for("the gateway is called", Duration::from_secs(10), || {
            gateway.requests().len() > n
        });
    }
    // No pause here: dispatch is serial, so once the third call is held the first two have
    // their ledger entries flushed, and the kill must not send them again. (Before the ledger
    // was flushed per dispatch, a kill soon after could resend them, seen under load.)
    // The third call is taken and never answered: the daemon is mid-call when it dies, before
    // the result record and the ledger entry.
    gateway.script([Reply::Stall(Duration::from_secs(30))]);
    send_sms(&daemon.0, "SMdisp0003");
    wait_for("the held call", Duration::from_secs(10), || {
        gateway.requests().len() == 3
    });
    drop(daemon); // SIGKILL
    let before = keys_seen(&gateway);
    let held = before[2].clone();
    assert!(held.contains(":msg:SMdisp0003:"), "{held}");

    // Restarted, with the gateway answering: the held event again, then a new one.
    let daemon = binary.start();
    wait_for("the redispatch", Duration::from_secs(20), || {
        gateway.requests().len() >= 4
    });
    send_sms(&daemon.0, "SMdisp0004");
    wait_for("the next message", Duration::from_secs(10), || {
        gateway.requests().len() >= 5
    });
    std::thread::sleep(Duration::from_secs(1));
    let keys = keys_seen(&gateway);
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert_eq!(keys[3], held, "the same key after the restart: {keys:?}");
    let requests = gateway.requests();
    assert_eq!(requests[3].body, requests[2].body, "the same request");
    // Every other event exactly once.
    for key in [&keys[0], &keys[1], &keys[4]] {
        assert_eq!(keys.iter().filter(|k| *k == key).count(), 1, "{keys:?}");
    }
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{keys:?}");
}

#[test]
fn a_dispatch_the_gateway_answered_is_not_sent_again_after_a_kill_9_right_after_it() {
    let gateway = FakeServer::start(answer(202, r#"{"ok":true}"#));
    let mut binary = GatewayDaemon::new(&gateway);
    let daemon = binary.start();
    send_sms(&daemon.0, "SMflush0001");
    // The outcome is counted right after the ledger entry is written: kill as soon as it
    // shows, long before sled's background flush (every 500 ms) would have saved the entry.
    let delivered =
        "hooklog_dispatch_results_total{agent=\"acquisitions\",outcome=\"delivered\"} 1";
    wait_for("the dispatch is recorded", Duration::from_secs(10), || {
        daemon.0.metrics().1.contains(delivered)
    });
    drop(daemon); // SIGKILL

    let daemon = binary.start();
    send_sms(&daemon.0, "SMflush0002");
    wait_for("the next message", Duration::from_secs(10), || {
        gateway.requests().len() >= 2
    });
    std::thread::sleep(Duration::from_secs(1));
    let keys = keys_seen(&gateway);
    assert_eq!(keys.len(), 2, "the first event was sent again: {keys:?}");
    assert!(keys[0].contains(":msg:SMflush0001:") && keys[1].contains(":msg:SMflush0002:"));
}
