//! Hostile input against the running server, over raw TCP: slow clients, absurd heads,
//! bodies that lie about their length, invalid UTF-8, huge forms, replays, timestamps at the
//! window's edges, HTTP/1.0, pipelining and a flood of bad signatures.
//!
//! The servers here run with 2 s header and body read timeouts and a 3 s idle timeout
//! (longer than the body timeout, as by default, so that a stalled body gets its 408), so "closed within 6 s" means
//! "closed by the timeout, not by the test giving up".

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hooklog::fixture::Fixture;
use hooklog::signature::{quo_legacy, standard_webhooks, twilio, HmacKey};

use crate::edge::{self, BASE, QUO_KEY, TOKEN};
use crate::util::{self, TestServer};

const TIMEOUTS: &[(&str, &str)] = &[
    ("HOOKLOG_SERVER_HEADER_READ_TIMEOUT_SECS", "2"),
    ("HOOKLOG_SERVER_BODY_READ_TIMEOUT_SECS", "2"),
    ("HOOKLOG_SERVER_IDLE_TIMEOUT_SECS", "3"),
];

/// Long enough for a 2 s timeout to fire on a busy machine; short of "never".
const CLOSED_WITHIN: Duration = Duration::from_secs(6);

fn server(dir: &std::path::Path) -> TestServer {
    edge::server_with(dir, TIMEOUTS)
}

fn connect(s: &TestServer) -> TcpStream {
    let c = TcpStream::connect(s.public).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Reads until the server closes the connection (EOF or reset) or `limit` passes. Returns
/// what was read and, if it closed, after how long.
fn read_until_closed(c: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let Some(left) = limit.checked_sub(start.elapsed()) else {
            return (String::from_utf8_lossy(&out).into_owned(), None);
        };
        c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match c.read(&mut buf) {
            Ok(0) => {
                return (
                    String::from_utf8_lossy(&out).into_owned(),
                    Some(start.elapsed()),
                )
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                return (
                    String::from_utf8_lossy(&out).into_owned(),
                    Some(start.elapsed()),
                )
            }
        }
    }
}

/// The status codes of every response in `text`, in order.
fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// A request as bytes: `head` is the request line, the headers follow, then the body.
fn raw(head: &str, headers: &[(String, String)], extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{head}\r\nHost: hooks.example.com\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(extra);
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A signed Twilio SMS webhook as bytes, with its declared length.
fn twilio_bytes(sid: &str, extra: &str) -> Vec<u8> {
    let (_, headers, body) = edge::twilio_sms(sid);
    raw(
        "POST /sms HTTP/1.1",
        &headers,
        &format!("Content-Length: {}\r\n{extra}", body.len()),
        &body,
    )
}

fn metric(s: &TestServer, line_start: &str) -> Option<u64> {
    let (_, m) = s.metrics();
    m.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[test]
fn slow_clients_are_disconnected_by_the_header_read_timeout_while_others_are_served() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());

    // Twenty connections that never send a byte.
    let mut idle: Vec<TcpStream> = (0..20).map(|_| connect(&s)).collect();
    // One that sends its head a byte every 200 ms (slow loris): it would take minutes.
    let mut loris = connect(&s);
    let mut writer = loris.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        if writer
            .write_all(b"POST /sms HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .is_err()
        {
            return;
        }
        for _ in 0..300 {
            std::thread::sleep(Duration::from_millis(200));
            if writer.write_all(b"a").is_err() {
                return;
            }
        }
    });
    // A keep-alive connection that is answered and then left idle.
    let mut kept = connect(&s);
    kept.write_all(&twilio_bytes("SMslow1", "")).unwrap();

    // Meanwhile an honest client is served at once.
    let started = Instant::now();
    let (path, headers, body) = edge::twilio_sms("SMslow2");
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(s.send("POST", &path, &h, &body).status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an honest client waited {:?} behind the slow ones",
        started.elapsed()
    );

    let (text, closed) = read_until_closed(&mut loris, CLOSED_WITHIN);
    assert_eq!(
        closed.map(|_| ()),
        Some(()),
        "the slow loris is still connected"
    );
    assert!(!text.contains("HTTP/1.1 2"), "{text}");
    trickle.join().unwrap();
    let (text, closed) = read_until_closed(&mut kept, CLOSED_WITHIN);
    assert_eq!(statuses(&text), vec![200], "{text}");
    assert!(
        closed.is_some(),
        "an idle keep-alive connection is kept forever"
    );
    for c in &mut idle {
        let (text, closed) = read_until_closed(c, CLOSED_WITHIN);
        assert!(closed.is_some(), "a silent connection is kept forever");
        assert!(text.is_empty() || statuses(&text) == vec![408], "{text}");
    }
    assert_eq!(
        s.events().len(),
        2,
        "only the two complete requests are logged"
    );
}

#[test]
fn a_body_shorter_than_its_content_length_gets_408_and_the_connection_is_closed() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let (_, headers, body) = edge::twilio_sms("SMshort");

    let mut c = connect(&s);
    let lying = format!("Content-Length: {}\r\n", body.len() + 100);
    c.write_all(&raw("POST /sms HTTP/1.1", &headers, &lying, &body))
        .unwrap();
    let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert_eq!(statuses(&text), vec![408], "{text}");
    assert!(text.ends_with("\r\n\r\nrequest timeout\n"), "{text}");
    assert!(closed.is_some(), "the connection is held open");

    // A chunked body whose last chunk never comes.
    let mut c = connect(&s);
    let mut req = raw(
        "POST /sms HTTP/1.1",
        &headers,
        "Transfer-Encoding: chunked\r\n",
        b"",
    );
    req.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    req.extend_from_slice(&body);
    req.extend_from_slice(b"\r\n");
    c.write_all(&req).unwrap();
    let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert_eq!(statuses(&text), vec![408], "{text}");
    assert!(closed.is_some(), "the connection is held open");

    assert_eq!(s.status().log.count, 0, "nothing incomplete is logged");
    assert_eq!(
        metric(
            &s,
            r#"hooklog_requests_total{outcome="body_timeout",route="/sms"}"#
        ),
        Some(2)
    );
}

#[test]
fn a_body_longer_than_its_content_length_is_cut_at_the_declared_length() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let (_, headers, body) = edge::twilio_sms("SMlong");

    // Declared 10 bytes short: the signed body is cut, so it fails verification, and the
    // 10 leftover bytes are not a request.
    let mut c = connect(&s);
    let short = format!("Content-Length: {}\r\n", body.len() - 10);
    c.write_all(&raw("POST /sms HTTP/1.1", &headers, &short, &body))
        .unwrap();
    let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
    let codes = statuses(&text);
    assert_eq!(codes.first(), Some(&403), "{text}");
    assert!(codes[1..].iter().all(|c| *c == 400), "{text}");
    assert!(closed.is_some(), "the connection is held open");
    assert_eq!(s.status().log.count, 0);

    // Declared right, with garbage after it: exactly the declared body is acknowledged and
    // stored; the garbage gets 400.
    let mut c = connect(&s);
    let mut req = twilio_bytes("SMlong2", "");
    req.extend_from_slice(b"GARBAGE \xff\r\n\r\n");
    c.write_all(&req).unwrap();
    let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert_eq!(statuses(&text), vec![200, 400], "{text}");
    assert!(closed.is_some());
    let events = s.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].body_bytes().unwrap(),
        edge::twilio_sms("SMlong2").2
    );
}

#[test]
fn a_head_over_max_header_bytes_gets_431_and_one_under_it_is_served() {
    let dir = crate::engine::tempdir();
    // Default limit: 32 KiB.
    let s = server(dir.path());
    let (_, headers, body) = edge::twilio_sms("SMbig");
    let cl = format!("Content-Length: {}\r\n", body.len());

    let pad = |n: usize| format!("X-Pad: {}\r\n{cl}", "a".repeat(n));
    let mut c = connect(&s);
    c.write_all(&raw("POST /sms HTTP/1.1", &headers, &pad(16 * 1024), &body))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).unwrap();
    assert_eq!(
        statuses(&String::from_utf8_lossy(&buf[..n])),
        vec![200],
        "a 16 KiB head is legal"
    );

    for size in [64 * 1024, 1024 * 1024] {
        let mut c = connect(&s);
        let req = raw("POST /sms HTTP/1.1", &headers, &pad(size), &body);
        let mut w = c.try_clone().unwrap();
        // The server stops reading early, so the write may fail: that is the point.
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&req);
        });
        let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
        assert_eq!(statuses(&text), vec![431], "{size}-byte header: {text}");
        assert!(closed.is_some());
        writer.join().unwrap();
    }
    assert_eq!(s.events().len(), 1);
}

#[test]
fn more_than_a_hundred_headers_get_431() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let (_, mut headers, body) = edge::twilio_sms("SMmany");
    headers.extend((0..150).map(|i| (format!("X-Pad-{i}"), "v".to_owned())));
    let mut c = connect(&s);
    let cl = format!("Content-Length: {}\r\n", body.len());
    c.write_all(&raw("POST /sms HTTP/1.1", &headers, &cl, &body))
        .unwrap();
    let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert_eq!(statuses(&text), vec![431], "{text}");
    assert!(closed.is_some());
    assert_eq!(s.status().log.count, 0);
}

#[test]
fn invalid_utf8_in_body_headers_and_path_is_answered_and_never_crashes_the_server() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let key = HmacKey::from_quo_secret(QUO_KEY).unwrap();
    let ts = (util::now() * 1000).to_string();

    // A signed body that is not UTF-8 is authentic: stored byte for byte and acknowledged.
    let body = b"{\"id\":\"EV\xff\xfe\",\"type\":\"message.received\"}".to_vec();
    let sig = quo_legacy::sign(&key, &ts, &body);
    let headers = vec![
        ("openphone-signature".to_owned(), sig),
        ("Content-Length".to_owned(), body.len().to_string()),
    ];
    let mut c = connect(&s);
    c.write_all(&raw(
        "POST /webhook/quo HTTP/1.1",
        &headers,
        "Connection: close\r\n",
        &body,
    ))
    .unwrap();
    let (text, _) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert_eq!(statuses(&text), vec![200], "{text}");
    let ev = &s.events()[0];
    assert_eq!(ev.body_encoding, "base64");
    assert_eq!(ev.body_bytes().unwrap(), body);

    // A signature header that is not UTF-8 counts as missing: 401.
    let mut c = connect(&s);
    let mut req = b"POST /webhook/quo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nopenphone-signature: hmac;1;\xff\xfe;abc\r\nContent-Length: 2\r\n\r\n{}".to_vec();
    c.write_all(&req).unwrap();
    let (text, _) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert_eq!(statuses(&text), vec![401], "{text}");
    assert!(text.ends_with("\r\n\r\nunauthorized\n"), "{text}");
    assert_eq!(
        metric(
            &s,
            r#"hooklog_verify_failures_total{provider="openphone",reason="missing_header"}"#
        ),
        Some(1)
    );

    // A Twilio form whose values are not UTF-8, raw or percent-encoded: verified on the
    // bytes as sent, stored as sent.
    let form = b"MessageSid=SMutf&Body=%FF%FE\xc3\x28&From=%2B15555550123".to_vec();
    let ct = "application/x-www-form-urlencoded";
    let sig = twilio::sign(
        &HmacKey::from_utf8(TOKEN),
        &format!("{BASE}/sms"),
        Some(ct),
        &form,
    );
    let headers = vec![
        ("Content-Type".to_owned(), ct.to_owned()),
        ("X-Twilio-Signature".to_owned(), sig),
        ("Content-Length".to_owned(), form.len().to_string()),
    ];
    let mut c = connect(&s);
    c.write_all(&raw(
        "POST /sms HTTP/1.1",
        &headers,
        "Connection: close\r\n",
        &form,
    ))
    .unwrap();
    let (text, _) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert_eq!(statuses(&text), vec![200], "{text}");
    assert_eq!(s.events()[1].body_bytes().unwrap(), form);

    // A path that is not UTF-8 is no route.
    req =
        b"POST /sms\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            .to_vec();
    let mut c = connect(&s);
    c.write_all(&req).unwrap();
    let (text, _) = read_until_closed(&mut c, CLOSED_WITHIN);
    let code = statuses(&text);
    assert!(code == vec![400] || code == vec![404], "{text}");

    assert_eq!(util::get(s.public, "/healthz").0, 200);
    assert_eq!(s.status().log.count, 2);
}

#[test]
fn thousands_of_twilio_form_fields_are_verified_quickly_and_a_tampered_one_is_refused() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("MessageSid", "SMform");
    for i in 0..50_000 {
        form.append_pair(&format!("F{i}"), &i.to_string());
    }
    let form = form.finish().into_bytes();
    assert!(form.len() < 1024 * 1024, "stays under the body limit");
    let ct = "application/x-www-form-urlencoded";
    let sig = twilio::sign(
        &HmacKey::from_utf8(TOKEN),
        &format!("{BASE}/sms"),
        Some(ct),
        &form,
    );
    let h = [("content-type", ct), ("x-twilio-signature", sig.as_str())];

    let started = Instant::now();
    let r = s.send("POST", "/sms", &h, &form);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let mut tampered = form.clone();
    let at = tampered.len() - 1;
    tampered[at] = if tampered[at] == b'1' { b'2' } else { b'1' };
    let started = Instant::now();
    assert_eq!(s.send("POST", "/sms", &h, &tampered).status, 403);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(s.events().len(), 1);
    assert_eq!(s.events()[0].body_bytes().unwrap(), form);
}

#[test]
fn a_replayed_signed_quo_request_is_answered_as_the_first_and_not_stored_again() {
    let dir = crate::engine::tempdir();
    let cfg = util::config(
        Some(&util::fixtures_dir().join("hooklog.toml")),
        dir.path(),
        TIMEOUTS,
    );
    let s = TestServer::start(cfg, None);
    for name in [
        "legacy_message_received_v4.json",
        "standard_message_received.json",
    ] {
        let f = Fixture::load(&util::fixtures_dir().join("openphone").join(name)).unwrap();
        let req = f.request_at(util::now()).unwrap();
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // The same bytes twice, as an attacker's replay sends them (a provider's retry is
        // signed anew: replays::a_providers_re_signed_retry_is_stored_and_marked_a_duplicate_by_dedup).
        let first = s.send(&req.method, &req.path, &headers, &req.body);
        assert_eq!(first.status, 200, "{name}: {}", first.body);
        let again = s.send(&req.method, &req.path, &headers, &req.body);
        assert_eq!(again.status, 200, "{name}: {}", again.body);
        assert_eq!(again.body, first.body, "{name}: answered as the first");
    }
    let events = s.admin_until("/admin/events?after=0&limit=10", |v| {
        v["events"]
            .as_array()
            .is_some_and(|e| e.len() == 2 && e.iter().all(|e| !e["dedup"].is_null()))
    });
    for e in events["events"].as_array().unwrap() {
        assert_eq!(e["dedup"]["verdict"], "original", "{e}");
    }
}

#[test]
fn quo_timestamps_in_ms_and_s_are_accepted_inside_the_window_and_refused_outside() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let key = HmacKey::from_quo_secret(QUO_KEY).unwrap();
    // Default tolerance: 300 s. 3 s of margin covers the clock ticking during the test.
    let now = util::now();
    let mut accepted = 0;
    for (offset, want) in [(-297, 200), (297, 200), (-303, 401), (303, 401)] {
        let t = now + offset;
        let body = format!(r#"{{"id":"EVts{offset}","type":"message.received"}}"#);
        for ts in [(t * 1000).to_string(), t.to_string()] {
            let sig = quo_legacy::sign(&key, &ts, body.as_bytes());
            let r = s.send(
                "POST",
                "/webhook/quo",
                &[("openphone-signature", &sig)],
                body.as_bytes(),
            );
            assert_eq!(r.status, want, "legacy ts {ts} (now {now}): {}", r.body);
            accepted += usize::from(want == 200);
        }
        let ts = t.to_string();
        let id = format!("msg_{offset}");
        let sig = standard_webhooks::sign(&key, &id, &ts, body.as_bytes());
        let r = s.send(
            "POST",
            "/webhook/quo",
            &[
                ("webhook-id", &id),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &sig),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, want, "standard ts {ts} (now {now}): {}", r.body);
        accepted += usize::from(want == 200);
    }
    assert_eq!(s.events().len(), accepted);
    for reason in ["stale_timestamp", "future_timestamp"] {
        let line =
            format!(r#"hooklog_verify_failures_total{{provider="openphone",reason="{reason}"}}"#);
        assert_eq!(metric(&s, &line), Some(3), "{reason}");
    }
}

#[test]
fn http_1_0_requests_are_answered_and_the_connection_is_closed() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let (_, headers, body) = edge::twilio_sms("SMold");
    let mut c = connect(&s);
    let cl = format!("Content-Length: {}\r\n", body.len());
    c.write_all(&raw("POST /sms HTTP/1.0", &headers, &cl, &body))
        .unwrap();
    let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.ends_with("<Response/>"), "{text}");
    let closed = closed.expect("an HTTP/1.0 connection is closed after its answer");
    assert!(
        closed < Duration::from_secs(2),
        "closed after {closed:?}: by the timeout?"
    );

    let mut c = connect(&s);
    c.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert!(
        text.starts_with("HTTP/1.0 200") && text.ends_with("ok\n"),
        "{text}"
    );
    assert!(closed.is_some_and(|t| t < Duration::from_secs(2)));
    assert_eq!(s.events().len(), 1);
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let mut all = Vec::new();
    for sid in ["SMp1", "SMp2", "SMp3"] {
        all.extend(twilio_bytes(sid, ""));
    }
    let (_, mut headers, body) = edge::twilio_sms("SMp4");
    headers[1].1 = "bm90LWEtc2lnbmF0dXJl".into();
    all.extend(raw(
        "POST /sms HTTP/1.1",
        &headers,
        &format!("Content-Length: {}\r\n", body.len()),
        &body,
    ));
    all.extend(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut c = connect(&s);
    c.write_all(&all).unwrap();
    let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
    assert_eq!(statuses(&text), vec![200, 200, 200, 403, 200], "{text}");
    assert!(closed.is_some());
    let sids: Vec<String> = s
        .events()
        .iter()
        .map(|e| {
            let body = e.body_bytes().unwrap();
            form_urlencoded::parse(&body)
                .find(|(k, _)| k == "MessageSid")
                .unwrap()
                .1
                .into_owned()
        })
        .collect();
    assert_eq!(sids, ["SMp1", "SMp2", "SMp3"]);
}

#[test]
fn a_flood_of_bad_signatures_is_rejected_cheaply_counted_and_never_logged() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let (path, headers, body) = edge::twilio_sms("SMflood");
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(s.send("POST", &path, &h, &body).status, 200);
    let before = s.status().log;

    let wrong = HmacKey::from_quo_secret("b3RoZXIta2V5LW5vdC1jb25maWd1cmVkLTMyYnl0ZXM=").unwrap();
    const THREADS: usize = 4;
    const EACH: usize = 250;
    let started = Instant::now();
    let addr = s.public;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let wrong = wrong.clone();
            std::thread::spawn(move || {
                // One keep-alive connection per thread, requests pipelined 50 at a time.
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut codes = Vec::new();
                for batch in 0..EACH / 50 {
                    let mut bytes = Vec::new();
                    for i in 0..50 {
                        let body = format!(r#"{{"id":"EVflood{t}x{batch}x{i}"}}"#);
                        let ts = (util::now() * 1000).to_string();
                        let sig = quo_legacy::sign(&wrong, &ts, body.as_bytes());
                        let headers = vec![
                            ("openphone-signature".to_owned(), sig),
                            ("Content-Length".to_owned(), body.len().to_string()),
                        ];
                        bytes.extend(raw(
                            "POST /webhook/quo HTTP/1.1",
                            &headers,
                            "",
                            body.as_bytes(),
                        ));
                    }
                    c.write_all(&bytes).unwrap();
                    let mut text = String::new();
                    let mut buf = [0u8; 64 * 1024];
                    while statuses(&text).len() < 50 {
                        let n = c.read(&mut buf).unwrap();
                        assert!(n > 0, "closed mid-flood");
                        text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                    codes.extend(statuses(&text));
                }
                codes
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in threads {
        codes.extend(t.join().unwrap());
    }
    let elapsed = started.elapsed();
    assert_eq!(codes.len(), THREADS * EACH);
    assert!(codes.iter().all(|c| *c == 401), "{codes:?}");
    // Cheap: a reject is a parse and an HMAC; 1000 of them in a debug build on a shared
    // machine take well under a second. 10 s means something is badly wrong (a sleep, a
    // lock held across I/O, an append).
    assert!(
        elapsed < Duration::from_secs(10),
        "1000 rejects took {elapsed:?}"
    );

    let after = s.status().log;
    assert_eq!(
        (after.count, after.last_seq),
        (before.count, before.last_seq)
    );
    assert_eq!(s.events().len(), 1, "the log did not grow");
    assert_eq!(
        metric(
            &s,
            r#"hooklog_verify_failures_total{provider="openphone",reason="bad_signature"}"#
        ),
        Some((THREADS * EACH) as u64)
    );
    assert_eq!(
        metric(
            &s,
            r#"hooklog_requests_total{outcome="bad_signature",route="/webhook/quo"}"#
        ),
        Some((THREADS * EACH) as u64)
    );
    assert_eq!(util::get(s.public, "/healthz").0, 200);
}

#[test]
fn a_client_that_stops_reading_its_answers_is_disconnected_by_the_idle_timeout() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    // The admin listener's `/metrics` is the largest answer either listener gives, and both
    // are served by the same loop with the same limits.
    let (_, metrics) = s.metrics();
    // Enough pipelined answers to fill both socket buffers many times over, so the server's
    // writes block for good while the client reads nothing.
    let count = (64 * 1024 * 1024 / metrics.len().max(1)).max(3000);
    let mut c = TcpStream::connect(s.admin).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = c.try_clone().unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        s.token
    );
    let writer = std::thread::spawn(move || {
        for _ in 0..count {
            if w.write_all(request.as_bytes()).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(6));
    // Whatever was sent before the server gave up, and then the end of the connection.
    let (text, closed) = read_until_closed(&mut c, Duration::from_secs(20));
    assert!(
        closed.is_some(),
        "the server still holds a blocked connection"
    );
    assert!(
        statuses(&text).len() < count,
        "every answer was delivered: the writes never blocked"
    );
    writer.join().unwrap();
    assert_eq!(util::get(s.public, "/healthz").0, 200);
}

#[test]
fn http_2_with_prior_knowledge_is_refused_so_the_http_1_limits_cannot_be_bypassed() {
    let dir = crate::engine::tempdir();
    let s = server(dir.path());
    let mut c = connect(&s);
    // The HTTP/2 connection preface and an empty SETTINGS frame.
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let (text, closed) = read_until_closed(&mut c, CLOSED_WITHIN);
    // An HTTP/2 server answers with its own SETTINGS frame (binary, type 4), not a status line.
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
        "{:?}",
        text.as_bytes()
    );
    assert!(closed.is_some(), "the connection is held open");
    assert_eq!(util::get(s.public, "/healthz").0, 200);
}
