//! The webhook edge: verification before append, status codes, limits, metrics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use hooklog::event::{Seq, Verified};
use hooklog::log::{AppendTicket, Log, LogError, LogStats};
use hooklog::signature::{quo_legacy, standard_webhooks, twilio, HmacKey};
use tokio::sync::watch;

use crate::util::{self, TestServer};

pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";
pub const BASE: &str = "https://hooks.example.com";
pub const QUO_KEY: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";
const SALESMSG: &str = "salesmsg-secret-1";

/// A server with every provider configured by environment-style keys.
pub fn server_with(dir: &std::path::Path, extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![
        ("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN),
        ("HOOKLOG_SERVER_PUBLIC_URLS", BASE),
        ("HOOKLOG_OPENPHONE_SIGNING_KEYS", QUO_KEY),
        ("HOOKLOG_SALESMSG_SECRETS", SALESMSG),
    ];
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend_from_slice(extra);
    TestServer::start(util::config(None, dir, &env), None)
}

/// A signed Twilio SMS webhook for `sid`.
pub fn twilio_sms(sid: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("MessageSid", sid)
        .append_pair("AccountSid", "AC00000000000000000000000000000000")
        .append_pair("From", "+15555550123")
        .append_pair("To", "+15555550100")
        .append_pair("Body", "Is 3pm ok? ¿Sí?")
        .finish()
        .into_bytes();
    let ct = "application/x-www-form-urlencoded";
    let sig = twilio::sign(
        &HmacKey::from_utf8(TOKEN),
        &format!("{BASE}/sms"),
        Some(ct),
        &body,
    );
    (
        "/sms".to_owned(),
        vec![
            ("content-type".into(), ct.into()),
            ("x-twilio-signature".into(), sig),
        ],
        body,
    )
}

fn send_owned(
    s: &TestServer,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> util::Response {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    s.send("POST", path, &h, body)
}

#[test]
fn a_signed_twilio_message_is_logged_before_the_twiml_ack() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    let (path, headers, body) = twilio_sms("SM1");
    let r = send_owned(&s, &path, &headers, &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/xml"));
    assert_eq!(
        r.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#
    );
    let events = s.events();
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(
        (ev.seq, ev.source.as_str(), ev.route.as_str()),
        (1, "twilio", "/sms")
    );
    assert_eq!(
        ev.body_bytes().unwrap(),
        body,
        "the raw body is kept byte for byte"
    );
    assert_eq!(ev.headers.get("x-twilio-signature"), Some(&headers[1].1));
    assert_eq!(ev.verified, "x-twilio-signature (token 0, url 0)");
}

#[test]
fn a_stored_record_can_be_verified_again_from_what_it_kept() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    let (path, headers, body) = twilio_sms("SM2");
    assert_eq!(send_owned(&s, &path, &headers, &body).status, 200);
    let ts = util::now().to_string();
    let quo_body = br#"{"id":"EV1","type":"message.received"}"#;
    let key = HmacKey::from_quo_secret(QUO_KEY).unwrap();
    let sig = standard_webhooks::sign(&key, "msg_1", &ts, quo_body);
    let r = s.send(
        "POST",
        "/webhook/quo",
        &[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &sig),
        ],
        quo_body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let events = s.events();
    let tw = &events[0];
    let req = twilio::TwilioRequest {
        path_and_query: &tw.route,
        content_type: tw.headers.get("content-type").map(String::as_str),
        body: &tw.body_bytes().unwrap(),
        signature: &tw.headers["x-twilio-signature"],
    };
    assert_eq!(
        twilio::verify(&req, &[HmacKey::from_utf8(TOKEN)], &[BASE.to_owned()]),
        Ok((0, 0))
    );
    let q = &events[1];
    let at = chrono::DateTime::parse_from_rfc3339(&q.received_at)
        .unwrap()
        .timestamp();
    assert_eq!(
        standard_webhooks::verify(
            &q.headers["webhook-id"],
            &q.headers["webhook-timestamp"],
            &q.headers["webhook-signature"],
            &q.body_bytes().unwrap(),
            &[key],
            at,
            300
        ),
        Ok(0)
    );
}

#[test]
fn unauthentic_requests_never_reach_the_log() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    let (path, headers, body) = twilio_sms("SM3");
    assert_eq!(send_owned(&s, &path, &headers, &body).status, 200);
    let before = s.status().log;

    let key = HmacKey::from_quo_secret(QUO_KEY).unwrap();
    let other = HmacKey::from_quo_secret("b3RoZXIta2V5LW5vdC1jb25maWd1cmVkLTMyYnl0ZXM=").unwrap();
    let quo_body = br#"{"id":"EV2","type":"message.received"}"#;
    let now = util::now();
    type Attempt = (String, Vec<(String, String)>, Vec<u8>, u16);
    let mut attempts: Vec<Attempt> = Vec::new();
    // Twilio: wrong token, tampered body, no signature, signed for another host.
    let mut tampered = body.clone();
    tampered[0] ^= 0x20;
    let wrong = twilio::sign(
        &HmacKey::from_utf8("not-the-token"),
        &format!("{BASE}/sms"),
        Some("application/x-www-form-urlencoded"),
        &body,
    );
    let evil = twilio::sign(
        &HmacKey::from_utf8(TOKEN),
        "https://evil.example.com/sms",
        Some("application/x-www-form-urlencoded"),
        &body,
    );
    let ct = (
        "content-type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    );
    attempts.push((
        "/sms".into(),
        vec![ct.clone(), ("x-twilio-signature".into(), wrong)],
        body.clone(),
        403,
    ));
    attempts.push(("/sms".into(), headers.clone(), tampered, 403));
    attempts.push(("/sms".into(), vec![ct.clone()], body.clone(), 403));
    attempts.push((
        "/sms".into(),
        vec![ct, ("x-twilio-signature".into(), evil)],
        body.clone(),
        403,
    ));
    // Quo: unknown key, stale, future, tampered, missing header.
    let ms = |t: i64| (t * 1000).to_string();
    attempts.push((
        "/webhook/openphone".into(),
        vec![(
            "openphone-signature".into(),
            quo_legacy::sign(&other, &ms(now), quo_body),
        )],
        quo_body.to_vec(),
        401,
    ));
    attempts.push((
        "/webhook/openphone".into(),
        vec![(
            "openphone-signature".into(),
            quo_legacy::sign(&key, &ms(now - 301), quo_body),
        )],
        quo_body.to_vec(),
        401,
    ));
    attempts.push((
        "/webhook/openphone".into(),
        vec![(
            "openphone-signature".into(),
            quo_legacy::sign(&key, &ms(now + 400), quo_body),
        )],
        quo_body.to_vec(),
        401,
    ));
    attempts.push((
        "/webhook/openphone".into(),
        vec![(
            "openphone-signature".into(),
            quo_legacy::sign(&key, &ms(now), b"{}"),
        )],
        quo_body.to_vec(),
        401,
    ));
    attempts.push(("/webhook/quo".into(), vec![], quo_body.to_vec(), 401));
    let ts = now.to_string();
    attempts.push((
        "/webhook/quo".into(),
        vec![
            ("webhook-id".into(), "msg_9".into()),
            ("webhook-timestamp".into(), ts.clone()),
            (
                "webhook-signature".into(),
                standard_webhooks::sign(&key, "msg_8", &ts, quo_body),
            ),
        ],
        quo_body.to_vec(),
        401,
    ));
    // SalesMsg: wrong and missing secret.
    attempts.push((
        "/webhook/salesmsg?secret=nope-nope".into(),
        vec![],
        b"{}".to_vec(),
        401,
    ));
    attempts.push(("/webhook/salesmsg".into(), vec![], b"{}".to_vec(), 401));

    for (path, headers, body, expected) in &attempts {
        let r = send_owned(&s, path, headers, body);
        assert_eq!(r.status, *expected, "{path}: {}", r.body);
        // A fixed text: why it failed is for the log and the metrics, not for the sender.
        let fixed = if *expected == 403 {
            "forbidden\n"
        } else {
            "unauthorized\n"
        };
        assert_eq!(r.body, fixed, "{path}");
        assert_eq!(r.header("content-type"), Some("text/plain"));
    }
    assert_eq!(
        s.status().log,
        LogStats {
            bytes: s.status().log.bytes,
            ..before
        }
    );
    assert_eq!(
        s.events().len(),
        1,
        "only the authentic request is in the log"
    );
    let (_, metrics) = s.metrics();
    for (provider, reason, count) in [
        ("twilio", "bad_signature", 3),
        ("twilio", "missing_header", 1),
        ("openphone", "stale_timestamp", 1),
        ("openphone", "future_timestamp", 1),
        ("salesmsg", "bad_signature", 1),
    ] {
        let line = format!(
            r#"hooklog_verify_failures_total{{provider="{provider}",reason="{reason}"}} {count}"#
        );
        assert!(metrics.contains(&line), "missing {line} in:\n{metrics}");
    }
}

#[test]
fn a_rotated_second_key_is_accepted_for_every_provider() {
    let dir = crate::engine::tempdir();
    let new_quo = "whsec_bmV3LXF1by1rZXktYWZ0ZXItcm90YXRpb24tMzJi";
    let s = server_with(
        dir.path(),
        &[
            (
                "HOOKLOG_TWILIO_AUTH_TOKENS",
                "old-token-aaaaaaaaaaaaaaaaaaaaaaa\nnew-token-bbbbbbbbbbbbbbbbbbbbbbb",
            ),
            (
                "HOOKLOG_OPENPHONE_SIGNING_KEYS",
                &format!("{QUO_KEY}\n{new_quo}"),
            ),
            // One per line: a comma would be part of the secret.
            ("HOOKLOG_SALESMSG_SECRETS", "old-secret-1\nnew-secret-2"),
        ],
    );
    let body = b"MessageSid=SM9&Body=hi".to_vec();
    let ct = "application/x-www-form-urlencoded";
    let sig = twilio::sign(
        &HmacKey::from_utf8("new-token-bbbbbbbbbbbbbbbbbbbbbbb"),
        &format!("{BASE}/sms"),
        Some(ct),
        &body,
    );
    assert_eq!(
        s.send(
            "POST",
            "/sms",
            &[("content-type", ct), ("x-twilio-signature", &sig)],
            &body
        )
        .status,
        200
    );
    let key = HmacKey::from_quo_secret(new_quo).unwrap();
    let ts = (util::now() * 1000).to_string();
    let qb = br#"{"id":"EV3"}"#;
    let sig = quo_legacy::sign(&key, &ts, qb);
    let r = s.send(
        "POST",
        "/webhook/openphone",
        &[("openphone-signature", &sig)],
        qb,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.send("POST", "/webhook/salesmsg?secret=new-secret-2", &[], b"{}")
            .status,
        200
    );
    let verified: Vec<String> = s.events().into_iter().map(|e| e.verified).collect();
    assert_eq!(
        verified,
        vec![
            "x-twilio-signature (token 1, url 0)",
            "openphone-signature (key 1)",
            "salesmsg-secret (secret 1)"
        ]
    );
}

#[test]
fn the_salesmsg_secret_is_not_stored_in_the_log() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    let r = s.send(
        "POST",
        &format!("/webhook/salesmsg?account=7&secret={SALESMSG}"),
        &[("content-type", "application/json")],
        br#"{"event":"x"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let ev = &s.events()[0];
    assert_eq!(ev.route, "/webhook/salesmsg?account=7&secret=REDACTED");
    assert!(!serde_json::to_string(ev).unwrap().contains(SALESMSG));
}

#[test]
fn an_unconfigured_provider_answers_503_so_the_provider_retries() {
    let dir = crate::engine::tempdir();
    let s = TestServer::start(util::config(None, dir.path(), &[]), None);
    for path in ["/sms", "/voice", "/webhook/quo", "/webhook/salesmsg"] {
        let r = s.send("POST", path, &[], b"a=b");
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.header("retry-after"), Some("5"));
    }
    assert_eq!(s.status().log.count, 0);
}

#[test]
fn wrong_methods_get_405_and_unknown_paths_404() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    let r = s.send("GET", "/sms", &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(s.send("PUT", "/webhook/quo", &[], b"{}").status, 405);
    assert_eq!(s.send("POST", "/healthz", &[], b"").status, 405);
    assert_eq!(s.send("POST", "/nope", &[], b"").status, 404);
    assert_eq!(s.send("GET", "/sms/", &[], b"").status, 404);
    assert_eq!(
        s.send("GET", "/admin/status", &[], b"").status,
        404,
        "admin routes are not on the public listener"
    );
}

#[test]
fn health_and_readiness_are_served_on_the_webhook_listener_and_metrics_on_the_admin_one() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    assert_eq!(util::get(s.public, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(util::get(s.public, "/readyz"), (200, "ready\n".to_owned()));
    let (path, headers, body) = twilio_sms("SM4");
    assert_eq!(send_owned(&s, &path, &headers, &body).status, 200);
    let (code, m) = s.metrics();
    assert_eq!(code, 200);
    for needle in [
        r#"hooklog_requests_total{outcome="accepted",route="/sms"} 1"#,
        r#"hooklog_append_latency_seconds_count{source="twilio"} 1"#,
        "hooklog_append_batch_size_count",
        "hooklog_log_last_seq 1",
    ] {
        assert!(m.contains(needle), "missing {needle} in:\n{m}");
    }
}

#[test]
fn oversized_bodies_get_413_without_being_read_whole() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[("HOOKLOG_SERVER_MAX_BODY_BYTES", "4096")]);
    let (_, headers, _) = twilio_sms("SM5");

    // A declared length over the limit is refused before any body byte is sent.
    let mut c = TcpStream::connect(s.public).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "POST /sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {}\r\nContent-Length: 100000000\r\n\r\n", headers[1].1).unwrap();
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // A chunked body is cut off as soon as it passes the limit, long before it ends.
    let mut c = TcpStream::connect(s.public).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "POST /sms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Twilio-Signature: {}\r\n\r\n", headers[1].1).unwrap();
    let chunk = vec![b'a'; 1024];
    let mut answered = None;
    for _ in 0..64 {
        if c.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || c.write_all(&chunk).is_err()
            || c.write_all(b"\r\n").is_err()
        {
            break;
        }
        c.set_nonblocking(true).unwrap();
        let r = c.read(&mut buf);
        c.set_nonblocking(false).unwrap();
        if let Ok(n) = r {
            if n > 0 {
                answered = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let answered = match answered {
        Some(a) => a,
        None => {
            let n = c.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
    };
    assert!(answered.starts_with("HTTP/1.1 413"), "{answered}");
    assert_eq!(s.status().log.count, 0);
}

/// A log whose every append fails, as a full or broken disk would make it.
struct BrokenLog {
    seq: watch::Sender<Seq>,
}

impl Log for BrokenLog {
    fn append(&self, _: Verified) -> AppendTicket {
        AppendTicket::failed(LogError::Storage(
            "No space left on device (os error 28)".into(),
        ))
    }
    fn read(&self, _: Seq, _: usize) -> Result<Vec<hooklog::event::Event>, LogError> {
        Ok(Vec::new())
    }
    fn get(&self, _: Seq) -> Result<Option<hooklog::event::Event>, LogError> {
        Ok(None)
    }
    fn stats(&self) -> Result<LogStats, LogError> {
        Ok(LogStats::default())
    }
    fn cursor(&self, _: &str) -> Result<Seq, LogError> {
        Ok(Seq(0))
    }
    fn store_cursor(&self, _: &str, _: Seq) -> Result<(), LogError> {
        Ok(())
    }
    fn cursors(&self) -> Result<Vec<(String, Seq)>, LogError> {
        Ok(Vec::new())
    }
    fn watch_last_seq(&self) -> watch::Receiver<Seq> {
        self.seq.subscribe()
    }
    fn is_writable(&self) -> bool {
        false
    }
    fn close(&self) -> Result<(), LogError> {
        Ok(())
    }
    fn state(&self) -> Arc<dyn hooklog::state::StateStore> {
        Arc::new(hooklog::state::MemState::default())
    }
}

#[test]
fn an_append_that_fails_answers_503_without_internal_detail_and_acknowledges_nothing() {
    let dir = crate::engine::tempdir();
    let cfg = util::config(
        None,
        dir.path(),
        &[
            ("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN),
            ("HOOKLOG_SERVER_PUBLIC_URLS", BASE),
        ],
    );
    let (seq, _) = watch::channel(Seq(0));
    let log: Arc<dyn Log> = Arc::new(BrokenLog { seq });
    let (tx, rx) = std::sync::mpsc::channel();
    // The broken log is never ready, so start without waiting for /readyz.
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listeners = hooklog::Listeners::bind(&cfg).await.unwrap();
            tx.send(listeners.public[0].local_addr().unwrap()).unwrap();
            let stop = tokio::time::sleep(Duration::from_secs(3));
            hooklog::run_with_log(cfg, listeners, log, hooklog::metrics::Metrics::new(), stop).await
        })
    });
    let addr = rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (path, headers, body) = twilio_sms("SM6");
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = util::request(addr, "POST", &path, &h, &body);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    // The internet is told to retry, not what failed (that is in the log).
    assert_eq!(r.body, "unavailable, retry\n");
    assert_eq!(
        util::get(addr, "/readyz"),
        (503, "not ready\n".to_owned()),
        "not ready while the log cannot write, and not saying why"
    );
    handle.join().unwrap().unwrap();
}

/// A real log behind a switch: while `full`, every append fails as a full disk makes it
/// fail, and the log says it cannot write.
pub struct FillableLog {
    /// The log the appends go to while not full.
    pub inner: Arc<dyn Log>,
    /// The switch.
    pub full: Arc<std::sync::atomic::AtomicBool>,
}

impl Log for FillableLog {
    fn append(&self, event: Verified) -> AppendTicket {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            return AppendTicket::failed(LogError::Storage(
                "No space left on device (os error 28)".into(),
            ));
        }
        self.inner.append(event)
    }
    fn read(&self, after: Seq, limit: usize) -> Result<Vec<hooklog::event::Event>, LogError> {
        self.inner.read(after, limit)
    }
    fn get(&self, seq: Seq) -> Result<Option<hooklog::event::Event>, LogError> {
        self.inner.get(seq)
    }
    fn stats(&self) -> Result<LogStats, LogError> {
        self.inner.stats()
    }
    fn cursor(&self, consumer: &str) -> Result<Seq, LogError> {
        self.inner.cursor(consumer)
    }
    fn store_cursor(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        self.inner.store_cursor(consumer, seq)
    }
    fn cursors(&self) -> Result<Vec<(String, Seq)>, LogError> {
        self.inner.cursors()
    }
    fn watch_last_seq(&self) -> watch::Receiver<Seq> {
        self.inner.watch_last_seq()
    }
    fn is_writable(&self) -> bool {
        !self.full.load(std::sync::atomic::Ordering::SeqCst) && self.inner.is_writable()
    }
    fn close(&self) -> Result<(), LogError> {
        self.inner.close()
    }
    fn state(&self) -> Arc<dyn hooklog::state::StateStore> {
        self.inner.state()
    }
    fn failure(&self) -> watch::Receiver<Option<String>> {
        self.inner.failure()
    }
    fn leadership(&self) -> watch::Receiver<hooklog::log::Leadership> {
        self.inner.leadership()
    }
}

#[test]
fn a_full_disk_answers_503_acknowledges_nothing_and_service_resumes_when_space_returns() {
    let dir = crate::engine::tempdir();
    // The log is sled under a fake full disk, whatever the run's engine: say so in the
    // configuration too.
    let cfg = util::config(
        None,
        dir.path(),
        &[
            ("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN),
            ("HOOKLOG_SERVER_PUBLIC_URLS", BASE),
            ("HOOKLOG_LOG_BACKEND", "sled"),
        ],
    );
    let sled = hooklog::log::sled::SledLog::open(
        &hooklog::log_dir(dir.path()),
        &hooklog::log::sled::SledOptions::default(),
        hooklog::metrics::Metrics::new(),
    )
    .unwrap();
    let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log: Arc<dyn Log> = Arc::new(FillableLog {
        inner: Arc::new(sled),
        full: full.clone(),
    });
    let s = TestServer::start(cfg, Some(log));
    let send = |sid: &str| {
        let (path, headers, body) = twilio_sms(sid);
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        s.send("POST", &path, &h, &body)
    };
    let stored = || -> Vec<String> {
        s.events()
            .iter()
            .map(|e| {
                let body = e.body.clone();
                form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "MessageSid")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            })
            .collect()
    };

    assert_eq!(send("SMa1").status, 200);
    full.store(true, std::sync::atomic::Ordering::SeqCst);
    for sid in ["SMb1", "SMb2"] {
        let r = send(sid);
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.header("retry-after"), Some("5"));
    }
    assert_eq!(
        util::get(s.public, "/readyz").0,
        503,
        "not ready while full"
    );
    assert_eq!(stored(), ["SMa1"], "nothing refused was stored");

    // Space returns: new webhooks and the providers' retries of the refused ones land.
    full.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(util::get(s.public, "/readyz").0, 200);
    for sid in ["SMc1", "SMb1", "SMb2"] {
        assert_eq!(send(sid).status, 200);
    }
    assert_eq!(stored(), ["SMa1", "SMc1", "SMb1", "SMb2"]);
}

#[test]
fn voice_routes_answer_with_the_configured_twiml() {
    let dir = crate::engine::tempdir();
    let s = server_with(
        dir.path(),
        &[
            ("HOOKLOG_TWILIO_VOICE_SAY", "Hi & welcome"),
            ("HOOKLOG_TWILIO_VOICE_DIAL", "+15555550100"),
        ],
    );
    let body = b"CallSid=CA1&From=%2B15555550123&To=%2B15555550100&CallStatus=ringing".to_vec();
    let ct = "application/x-www-form-urlencoded";
    for path in ["/voice", "/voice/webhook"] {
        let sig = twilio::sign(
            &HmacKey::from_utf8(TOKEN),
            &format!("{BASE}{path}"),
            Some(ct),
            &body,
        );
        let r = s.send(
            "POST",
            path,
            &[("content-type", ct), ("x-twilio-signature", &sig)],
            &body,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/xml"));
        assert_eq!(
            r.body,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi &amp; welcome</Say><Dial><Number>+15555550100</Number></Dial></Response>"#
        );
    }
}

#[test]
fn concurrent_webhooks_get_distinct_contiguous_sequences() {
    let dir = crate::engine::tempdir();
    let s = Arc::new(server_with(dir.path(), &[]));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let (path, headers, body) = twilio_sms(&format!("SM{t}x{i}"));
                    assert_eq!(send_owned(&s, &path, &headers, &body).status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seqs: Vec<u64> = s.events().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
}
