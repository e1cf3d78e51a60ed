//! One in-process HTTP server on `127.0.0.1:0` that answers like the three services the
//! effectful consumers call: the agent gateway (dispatch), Quo's `POST /v1/messages` and
//! Twilio's `POST /2010-04-01/Accounts/{sid}/Messages.json` (sender).
//!
//! The consumers use their real HTTP clients against it, so a call counted here is a call
//! the consumer really made over the wire. Every request is recorded; the answers are the
//! providers' success answers, except Twilio's 21610 refusal for [`TWILIO_UNSUBSCRIBED`],
//! which makes the sender append an opt-out record besides its result.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A recipient Twilio refuses with 21610 (unsubscribed at Twilio).
pub(super) const TWILIO_UNSUBSCRIBED: &str = "+12125550104";

/// One request the server received: what identifies an effect.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Call {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub body: String,
}

/// The server; stops accepting when dropped.
pub(super) struct FakeApi {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    stopped: Arc<AtomicBool>,
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (c, s) = (calls.clone(), stopped.clone());
        std::thread::Builder::new()
            .name("conformance-api".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        // One request per connection, answered in order: calls are counted
                        // in the order the consumer made them.
                        serve(stream, &c);
                    }
                }
            })
            .unwrap();
        FakeApi {
            addr,
            calls,
            stopped,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, calls: &Mutex<Vec<Call>>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let (mut len, mut idempotency_key) = (0usize, None);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => len = value.parse().unwrap_or(0),
                "idempotency-key" => idempotency_key = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let (status, answer) = {
        let mut calls = calls.lock().unwrap();
        let call = Call {
            path: path.clone(),
            idempotency_key,
            body,
        };
        let answer = answer(&call, &calls);
        calls.push(call);
        answer
    };
    let reason = if status < 300 { "OK" } else { "Bad Request" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// The provider's answer to `call`, given the calls before it.
fn answer(call: &Call, before: &[Call]) -> (u16, String) {
    let same_api = |c: &&Call| c.path == call.path;
    let n = before.iter().filter(same_api).count() + 1;
    if call.path == "/v1/messages" {
        return (
            202,
            format!(r#"{{"data":{{"id":"AC{n:032}","status":"queued"}}}}"#),
        );
    }
    if call.path.ends_with("/Messages.json") {
        let to = form_urlencoded::parse(call.body.as_bytes())
            .find(|(k, _)| k == "To")
            .map(|(_, v)| v.into_owned());
        if to.as_deref() == Some(TWILIO_UNSUBSCRIBED) {
            return (
                400,
                r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","status":400}"#
                    .into(),
            );
        }
        return (201, format!(r#"{{"sid":"SM{n:032}","status":"queued"}}"#));
    }
    // The agent gateway.
    (202, r#"{"accepted":true}"#.into())
}
