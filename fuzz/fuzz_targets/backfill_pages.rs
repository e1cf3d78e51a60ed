//! The backfill recipes and their page parsers (`src/backfill/quo.rs`, `twilio.rs`), run whole
//! against an in-process fake API on loopback: input = a mode byte (bit 0: Twilio, else Quo;
//! bit 1: Quo's workspace-wide message walk), then the bodies of the API's answers, separated
//! by 0x1E, served in order to whatever the recipe asks (200, JSON); once they run out every
//! request is answered 404, which ends any run. Besides "no panic": every resource given to
//! the sink has the provider's backfill source, a route of its kind, and a JSON body.
//!
//! The fake API is the only server the recipe may reach. Twilio's `next_page_uri` is appended
//! to the API base; an input whose answers hold a top-level string that does not start with
//! `/` is skipped, so no mutation can point the client at another host.
#![no_main]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use chrono::NaiveDate;
use hooklog::backfill::{quo, twilio, Checkpoint, Range, Sink, SinkError};
use hooklog::event::Source;
use hooklog::retry::RetryPolicy;
use hooklog::send::limiter::{Limiter, Rate};
use libfuzzer_sys::fuzz_target;

/// The answers of the current input, in order.
type Answers = Arc<Mutex<VecDeque<Vec<u8>>>>;

struct FakeApi {
    addr: SocketAddr,
    answers: Answers,
}

fn api() -> &'static FakeApi {
    static API: OnceLock<FakeApi> = OnceLock::new();
    API.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback can be bound");
        let addr = listener
            .local_addr()
            .expect("a bound socket has an address");
        let answers = Answers::default();
        let queue = answers.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let queue = queue.clone();
                std::thread::spawn(move || serve(conn, &queue));
            }
        });
        FakeApi { addr, answers }
    })
}

/// HTTP/1.1 with keep-alive: GET requests (no body), one answer each from the queue.
fn serve(conn: TcpStream, queue: &Answers) {
    // One write per answer, sent at once: otherwise Nagle's algorithm and the client's delayed
    // ACK hold each answer back for 40 ms.
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        // The request line and headers, up to the empty line.
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" && !first => break,
                Ok(_) => first = false,
            }
        }
        let next = queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        let (status, body) = match next {
            Some(body) => ("200 OK", body),
            None => ("404 Not Found", b"{\"message\":\"not found\"}".to_vec()),
        };
        let mut answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        if out.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Checks every resource as it arrives.
struct Check {
    source: Source,
    prefixes: &'static [&'static str],
}

impl Sink for Check {
    fn put(&mut self, source: Source, route: &str, body: &[u8]) -> Result<(), SinkError> {
        assert_eq!(source, self.source);
        assert!(
            self.prefixes.iter().any(|p| route.starts_with(p)),
            "unexpected route {route}"
        );
        serde_json::from_slice::<serde::de::IgnoredAny>(body).expect("a resource is JSON");
        Ok(())
    }
}

/// Whether every top-level string of the answer starts with `/` (see the module header).
fn stays_on_the_api(answer: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(answer) else {
        return false;
    };
    let relative = |v: &serde_json::Value| v.as_str().is_none_or(|s| s.starts_with('/'));
    match &value {
        serde_json::Value::Object(map) => map.values().all(relative),
        serde_json::Value::Array(items) => items.iter().all(relative),
        other => relative(other),
    }
}

fn range() -> Range {
    let day = |d| NaiveDate::from_ymd_opt(2026, 4, d).expect("a valid date");
    Range::new(day(14), day(16)).expect("a non-empty range")
}

fn no_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 0,
        base: Duration::from_millis(1),
        max: Duration::from_millis(1),
        max_retry_after: Duration::from_millis(1),
    }
}

fn unlimited() -> Arc<Limiter> {
    Arc::new(Limiter::new(Rate {
        per_second: u32::MAX,
        burst: u32::MAX,
    }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let twilio_mode = mode & 1 == 1;
    let answers: VecDeque<Vec<u8>> = rest.split(|&b| b == 0x1E).map(<[u8]>::to_vec).collect();
    if answers.len() > 64 || (twilio_mode && !answers.iter().all(|a| stays_on_the_api(a))) {
        return;
    }
    let api = api();
    *api.answers.lock().unwrap_or_else(PoisonError::into_inner) = answers;
    let base = format!("http://{}", api.addr);
    if twilio_mode {
        let opts = twilio::Options {
            api_base: base,
            account_sid: "AC00000000000000000000000000000001".into(),
            auth_token: "fuzz-token".into(),
            range: range(),
            page_size: 2,
            retry: no_retries(),
        };
        let mut checkpoint = Checkpoint::open(None, opts.run_key()).expect("in memory");
        let mut sink = Check {
            source: Source::BackfillTwilio,
            prefixes: &["/2010-04-01/Messages/", "/2010-04-01/Calls/"],
        };
        let _ = twilio::backfill(&opts, unlimited(), &mut checkpoint, &mut sink);
    } else {
        let opts = quo::Options {
            api_base: base,
            api_key: "fuzz-key".into(),
            range: range(),
            lines: Vec::new(),
            retry: no_retries(),
            workspace_messages: mode & 2 == 2,
        };
        let mut checkpoint = Checkpoint::open(None, opts.run_key()).expect("in memory");
        let mut sink = Check {
            source: Source::BackfillQuo,
            prefixes: &[
                "/v1/messages/",
                "/v1/calls/",
                "/v1/call-summaries/",
                "/v1/call-transcripts/",
            ],
        };
        let _ = quo::backfill(&opts, unlimited(), &mut checkpoint, &mut sink);
    }
    // Leftovers are dropped: the next input starts from its own answers.
    api.answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
});
