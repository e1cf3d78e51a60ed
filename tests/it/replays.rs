//! No replay is stored: a signed request sent again (once or a thousand times, at once or
//! after a restart) is answered as the first was and makes no new record; a request whose
//! first try got 503 is stored on its retry; a provider's re-signed retry is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hooklog::signature::{quo_legacy, standard_webhooks, HmacKey};

use crate::edge::{server_with, twilio_sms, FillableLog, BASE, QUO_KEY, TOKEN};
use crate::util::{self, TestServer};

const SALESMSG: &str = "salesmsg-secret-1";

/// One signed request, ready to send as often as needed.
#[derive(Clone, Debug)]
struct Signed {
    provider: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Signed {
    fn send(&self, s: &TestServer) -> util::Response {
        let h: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        s.send("POST", &self.path, &h, &self.body)
    }
}

fn quo_key() -> HmacKey {
    HmacKey::from_quo_secret(QUO_KEY).unwrap()
}

/// A Quo `message.received` envelope (API v4 shape) with event id `id`.
fn quo_body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","object":"event","apiVersion":"v4","createdAt":"2026-04-14T16:02:11.557Z","type":"message.received","data":{{"object":{{"id":"AC{id}","object":"message","from":"+15555550123","to":["+15555550100"],"direction":"incoming","text":"Is 3pm ok?","status":"received","createdAt":"2026-04-14T16:02:11.420Z","userId":"USuxQO1ugI","phoneNumberId":"PNTVGxqnqT"}}}}}}"#
    )
    .into_bytes()
}

fn quo_legacy_request(id: &str, ts_ms: i64) -> Signed {
    let body = quo_body(id);
    let sig = quo_legacy::sign(&quo_key(), &ts_ms.to_string(), &body);
    Signed {
        provider: "openphone",
        path: "/webhook/quo".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("openphone-signature".into(), sig),
        ],
        body,
    }
}

fn standard_request(id: &str, msg_id: &str, ts: i64) -> Signed {
    let body = quo_body(id);
    let ts = ts.to_string();
    let sig = standard_webhooks::sign(&quo_key(), msg_id, &ts, &body);
    Signed {
        provider: "openphone",
        path: "/webhook/quo".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), msg_id.into()),
            ("webhook-timestamp".into(), ts),
            ("webhook-signature".into(), sig),
        ],
        body,
    }
}

fn twilio_request(sid: &str) -> Signed {
    let (path, headers, body) = twilio_sms(sid);
    Signed {
        provider: "twilio",
        path,
        headers,
        body,
    }
}

fn salesmsg_request(id: &str) -> Signed {
    Signed {
        provider: "salesmsg",
        path: format!("/webhook/salesmsg?secret={SALESMSG}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(r#"{{"event":"message.received","data":{{"id":"{id}"}}}}"#).into_bytes(),
    }
}

/// One request of each kind, signed now.
fn one_of_each(tag: &str) -> Vec<Signed> {
    let now = util::now();
    vec![
        quo_legacy_request(&format!("EVlegacy{tag}"), now * 1000),
        standard_request(&format!("EVstd{tag}"), &format!("msg_{tag}"), now),
        twilio_request(&format!("SM{tag}")),
        salesmsg_request(&format!("sm-{tag}")),
    ]
}

fn server(dir: &std::path::Path) -> TestServer {
    server_with(dir, &[("HOOKLOG_SALESMSG_SECRETS", SALESMSG)])
}

/// How many stored records have this body.
fn records_of(s: &TestServer, r: &Signed) -> usize {
    let body = String::from_utf8(r.body.clone()).unwrap();
    s.events().iter().filter(|e| e.body == body).count()
}

/// The metrics text: from the admin listener with the operator token where it is served
/// there, else from the webhook listener.
fn metrics(s: &TestServer) -> String {
    let (code, body) = s.admin_get("/metrics");
    if code == 200 {
        return body;
    }
    let (code, body) = util::get(s.public, "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

fn replays_counted(s: &TestServer, provider: &str) -> u64 {
    let prefix = format!("hooklog_replays_total{{provider=\"{provider}\"}} ");
    metrics(s)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

/// Sends `r` `times` times from 8 threads at once and checks that every answer is the
/// first one.
fn flood(s: &Arc<TestServer>, r: &Signed, times: usize) {
    let first = r.send(s);
    assert_eq!(first.status, 200, "{}: {}", r.provider, first.body);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (s, r) = (s.clone(), r.clone());
            std::thread::spawn(move || {
                (0..times)
                    .filter(|i| i % 8 == t)
                    .map(|_| {
                        let a = r.send(&s);
                        (
                            a.status,
                            a.header("content-type").map(str::to_owned),
                            a.body,
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for (status, ct, body) in t.join().unwrap() {
            assert_eq!(status, 200, "{}: {body}", r.provider);
            assert_eq!(ct.as_deref(), first.header("content-type"));
            assert_eq!(
                body, first.body,
                "{}: a replay is answered as the first",
                r.provider
            );
        }
    }
}

#[test]
fn the_same_signed_request_sent_a_thousand_times_is_stored_once_for_every_provider() {
    let dir = crate::engine::tempdir();
    let s = Arc::new(server(dir.path()));
    let requests = one_of_each("1k");
    for r in &requests {
        flood(&s, r, 999);
    }
    for r in &requests {
        assert_eq!(records_of(&s, r), 1, "{}: one record", r.provider);
    }
    assert_eq!(s.status().log.count, 4);
    assert_eq!(replays_counted(&s, "openphone"), 2 * 999);
    assert_eq!(replays_counted(&s, "twilio"), 999);
    assert_eq!(replays_counted(&s, "salesmsg"), 999);
}

#[test]
fn a_replay_after_a_restart_on_the_same_data_directory_is_not_stored() {
    let dir = crate::engine::tempdir();
    let requests = one_of_each("restart");
    let first_answers: Vec<String> = {
        let s = server(dir.path());
        let answers = requests.iter().map(|r| r.send(&s).body).collect();
        s.stop().unwrap();
        answers
    };
    let s = server(dir.path());
    for (r, first) in requests.iter().zip(&first_answers) {
        for _ in 0..3 {
            let a = r.send(&s);
            assert_eq!(a.status, 200, "{}: {}", r.provider, a.body);
            assert_eq!(
                &a.body, first,
                "{}: answered as before the restart",
                r.provider
            );
        }
        assert_eq!(records_of(&s, r), 1, "{}: one record", r.provider);
    }
    assert_eq!(replays_counted(&s, "openphone"), 6);
    assert_eq!(replays_counted(&s, "twilio"), 3);
    assert_eq!(replays_counted(&s, "salesmsg"), 3);
}

/// The log sequence the replay cache's snapshot covers (`None` without one), read with the
/// daemon stopped.
fn snapshot_seq(dir: &std::path::Path) -> Option<u64> {
    let cfg = util::config(
        None,
        dir,
        &[
            ("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN),
            ("HOOKLOG_SERVER_PUBLIC_URLS", BASE),
            ("HOOKLOG_OPENPHONE_SIGNING_KEYS", QUO_KEY),
            ("HOOKLOG_SALESMSG_SECRETS", SALESMSG),
        ],
    );
    let log = hooklog::open_daemon_log(&cfg, hooklog::metrics::Metrics::new()).unwrap();
    let header = log
        .state()
        .tree("edge", "replay")
        .unwrap()
        .get(b"h")
        .unwrap();
    log.close().unwrap();
    header.map(|h| u64::from_be_bytes(h[1..9].try_into().unwrap()))
}

/// Sends each request three times and checks that each is answered as `first` and stored
/// once.
fn replays_answered_as_before(s: &TestServer, requests: &[Signed], first: &[String], when: &str) {
    for (r, first) in requests.iter().zip(first) {
        for _ in 0..3 {
            let a = r.send(s);
            assert_eq!(a.status, 200, "{when}, {}: {}", r.provider, a.body);
            assert_eq!(&a.body, first, "{when}, {}: answered as before", r.provider);
        }
        assert_eq!(records_of(s, r), 1, "{when}, {}: one record", r.provider);
    }
}

#[test]
fn replays_of_webhooks_stored_before_and_after_a_graceful_restart_are_not_stored() {
    let dir = crate::engine::tempdir();
    let before = one_of_each("snap-before");
    let before_answers: Vec<String> = {
        let s = server(dir.path());
        let answers = before.iter().map(|r| r.send(&s).body).collect();
        s.stop().unwrap();
        answers
    };
    // The graceful stop saved the cache, covering the four records.
    assert_eq!(snapshot_seq(dir.path()), Some(4));

    let after = one_of_each("snap-after");
    let after_answers: Vec<String> = {
        let s = server(dir.path());
        replays_answered_as_before(&s, &before, &before_answers, "first restart");
        let answers: Vec<String> = after
            .iter()
            .map(|r| {
                let a = r.send(&s);
                assert_eq!(a.status, 200, "{}: {}", r.provider, a.body);
                a.body
            })
            .collect();
        replays_answered_as_before(&s, &after, &answers, "first restart");
        s.stop().unwrap();
        answers
    };
    assert_eq!(snapshot_seq(dir.path()), Some(8));

    let s = server(dir.path());
    replays_answered_as_before(&s, &before, &before_answers, "second restart");
    replays_answered_as_before(&s, &after, &after_answers, "second restart");
    assert_eq!(
        s.events().len(),
        8,
        "nothing but the eight webhooks was stored"
    );
}

#[test]
fn a_request_whose_first_try_got_503_is_stored_on_its_retry() {
    let dir = crate::engine::tempdir();
    let cfg = util::config(
        None,
        dir.path(),
        &[
            ("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN),
            ("HOOKLOG_SERVER_PUBLIC_URLS", BASE),
            ("HOOKLOG_OPENPHONE_SIGNING_KEYS", QUO_KEY),
            ("HOOKLOG_SALESMSG_SECRETS", SALESMSG),
        ],
    );
    // The run's engine behind a switch that fails every append while it is on.
    let inner = hooklog::open_daemon_log(&cfg, hooklog::metrics::Metrics::new()).unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let log: Arc<dyn hooklog::log::Log> = Arc::new(FillableLog {
        inner,
        full: full.clone(),
    });
    let s = TestServer::start(cfg, Some(log));
    let requests = one_of_each("503");
    full.store(true, Ordering::SeqCst);
    for r in &requests {
        let a = r.send(&s);
        assert_eq!(a.status, 503, "{}: {}", r.provider, a.body);
    }
    full.store(false, Ordering::SeqCst);
    for r in &requests {
        let a = r.send(&s);
        assert_eq!(a.status, 200, "{}: {}", r.provider, a.body);
        assert_eq!(records_of(&s, r), 1, "{}: stored on its retry", r.provider);
        assert_eq!(r.send(&s).body, a.body, "{}: then remembered", r.provider);
        assert_eq!(records_of(&s, r), 1, "{}", r.provider);
    }
    assert_eq!(s.status().log.count, 4);
}

#[test]
fn a_providers_re_signed_retry_is_stored_and_marked_a_duplicate_by_dedup() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let now = util::now();
    // Quo retries the same event: the same body, a new timestamp (Standard Webhooks: the
    // same webhook-id), so a new signature.
    let pairs = [
        (
            standard_request("EVretry1", "msg_retry1", now - 60),
            standard_request("EVretry1", "msg_retry1", now),
        ),
        (
            quo_legacy_request("EVretry2", (now - 60) * 1000),
            quo_legacy_request("EVretry2", now * 1000),
        ),
    ];
    for (first, retry) in &pairs {
        assert_eq!(first.send(&s).status, 200);
        assert_eq!(retry.send(&s).status, 200);
        assert_eq!(records_of(&s, first), 2, "the retry is stored");
    }
    let events = s.admin_until("/admin/events?after=0&limit=10", |v| {
        v["events"].as_array().is_some_and(|e| {
            e.len() == 4
                && e.iter()
                    .all(|e| e.get("dedup").is_some_and(|d| !d.is_null()))
        })
    });
    let verdicts: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["dedup"]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["original", "duplicate", "original", "duplicate"]);
    assert_eq!(replays_counted(&s, "openphone"), 0);
}
