//! What the outbound-client tests share: a fake HTTP server (a std `TcpListener` on
//! `127.0.0.1:0`) that records every request (arrival time, method, path, headers, body) and
//! answers what a test scripts, or a default; and an alert sink that keeps what it is given.
//! Every answer closes the connection, so each attempt is one fresh request.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooklog::alerts::Alert;
use hooklog::send::AlertSink;

/// What the fake says to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status and a JSON body.
    Answer(u16, String),
    /// Read the request, then say nothing for this long and close (a hung server).
    Stall(Duration),
    /// Read the request, wait this long, then answer a status and a JSON body (a slow server;
    /// the request is recorded when it arrives, so a caller killed meanwhile was still heard).
    Late(Duration, u16, String),
}

/// `Reply::Answer` from a `&str`.
pub fn answer(status: u16, body: &str) -> Reply {
    Reply::Answer(status, body.to_owned())
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Request {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct FakeServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl FakeServer {
    /// A fake on a fresh port that answers `default` unless a scripted reply is queued.
    pub fn start(default: Reply) -> FakeServer {
        FakeServer::on(TcpListener::bind("127.0.0.1:0").unwrap(), default)
    }

    /// The same on a given listener (to bring a "down" server back on its old port).
    pub fn on(listener: TcpListener, default: Reply) -> FakeServer {
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (r, s) = (requests.clone(), script.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (r, s, default) = (r.clone(), s.clone(), default.clone());
                std::thread::spawn(move || serve(stream, &r, &s, default));
            }
        });
        FakeServer {
            addr,
            requests,
            script,
        }
    }

    /// Replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    requests: &Mutex<Vec<Request>>,
    script: &Mutex<VecDeque<Reply>>,
    default: Reply,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
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
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    requests.lock().unwrap().push(Request {
        at: Instant::now(),
        method,
        path,
        headers,
        body: String::from_utf8(body).unwrap(),
    });
    let reply = script.lock().unwrap().pop_front().unwrap_or(default);
    let mut stream = stream;
    match reply {
        Reply::Answer(status, body) => write_answer(&mut stream, status, &body),
        Reply::Late(d, status, body) => {
            std::thread::sleep(d);
            write_answer(&mut stream, status, &body);
        }
        Reply::Stall(d) => std::thread::sleep(d),
    }
}

fn write_answer(stream: &mut TcpStream, status: u16, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
}

/// Keeps every alert raised.
#[derive(Default)]
pub struct Alerts(Mutex<Vec<Alert>>);

impl AlertSink for Alerts {
    fn raise(&self, alert: Alert) {
        self.0.lock().unwrap().push(alert);
    }
}

impl Alerts {
    pub fn taken(&self) -> Vec<Alert> {
        self.0.lock().unwrap().clone()
    }
}
