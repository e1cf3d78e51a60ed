//! Test harness: the real server (`hooklog::run`) on ephemeral loopback ports with a
//! temporary data directory, and a small blocking HTTP client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hooklog::admin::api::{EventJson, EventPage, Status};
use hooklog::config::Config;
use hooklog::log::Log;
use hooklog::metrics::Metrics;
use hooklog::{Listeners, RunError};

/// The fixture configuration (keys, tokens, public URLs).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A config from the fixture TOML (or none) plus env-style overrides, with a fresh data dir
/// and ephemeral ports, on this run's log engine ([`crate::engine`]) unless `extra` chooses one.
pub fn config(file: Option<&Path>, data_dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut env = if crate::engine::chooses_engine(extra.iter().map(|(k, _)| k)) {
        Vec::new()
    } else {
        crate::engine::env_for(data_dir)
    };
    env.extend([
        (
            "HOOKLOG_DATA_DIR".to_owned(),
            data_dir.display().to_string(),
        ),
        ("HOOKLOG_SERVER_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "HOOKLOG_SERVER_ADMIN_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
    ]);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::load_from(file, env)
        .expect("test config is valid")
        .0
}

/// The fixture config with a fresh data dir.
pub fn fixture_config(data_dir: &Path) -> Config {
    config(Some(&fixtures_dir().join("hooklog.toml")), data_dir, &[])
}

/// A running server.
pub struct TestServer {
    /// The webhook listener.
    pub public: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The admin token.
    pub token: String,
    /// The data directory.
    pub data_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), RunError>>>,
    _tmp: Option<crate::engine::TestDir>,
}

impl TestServer {
    /// Starts the fixture configuration on a fresh data directory.
    pub fn start_fixtures() -> TestServer {
        let tmp = crate::engine::tempdir();
        let cfg = fixture_config(tmp.path());
        let mut s = TestServer::start(cfg, None);
        s._tmp = Some(tmp);
        s
    }

    /// Starts `config` (with the log its `[log] backend` names, or `log` if given).
    pub fn start(config: Config, log: Option<Arc<dyn Log>>) -> TestServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let data_dir = config.data_dir.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listeners = Listeners::bind(&config).await?;
                let public = listeners.public[0].local_addr().expect("bound");
                let admin = listeners.admin.local_addr().expect("bound");
                let shutdown = async move {
                    let _ = stop_rx.await;
                };
                addr_tx.send((public, admin)).expect("test waits");
                match log {
                    Some(log) => {
                        hooklog::run_with_log(config, listeners, log, Metrics::new(), shutdown)
                            .await
                    }
                    None => hooklog::run(config, listeners, shutdown).await,
                }
            })
        });
        let (public, admin) = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server started");
        let mut server = TestServer {
            public,
            admin,
            token: String::new(),
            data_dir: data_dir.clone(),
            stop: Some(stop_tx),
            thread: Some(thread),
            _tmp: None,
        };
        server.wait_ready();
        server.token = std::fs::read_to_string(data_dir.join("admin.token"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        server
    }

    fn wait_ready(&self) {
        for _ in 0..200 {
            if get(self.public, "/readyz").0 == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("server never became ready");
    }

    /// Stops the server gracefully and returns what `run` returned.
    pub fn stop(mut self) -> Result<(), RunError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().expect("server thread panicked"),
            None => Ok(()),
        }
    }

    /// An admin GET with the token.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        request(
            self.admin,
            "GET",
            path,
            &[("authorization", &format!("Bearer {}", self.token))],
            b"",
        )
        .into_status_body()
    }

    /// An admin request with the token and a JSON body.
    pub fn admin_send(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        request(
            self.admin,
            method,
            path,
            &[
                ("authorization", &format!("Bearer {}", self.token)),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .into_status_body()
    }

    /// Polls `GET path` until `done` holds for the JSON answer (10 s at most).
    pub fn admin_until(
        &self,
        path: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (code, body) = self.admin_get(path);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if code == 200 && done(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "GET {path} never got there; last answer {code}: {body}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /metrics` on the admin listener, with the operator token (the webhook listener
    /// does not serve it).
    pub fn metrics(&self) -> (u16, String) {
        metrics(self.admin, &self.token)
    }

    /// The log status through the admin API.
    pub fn status(&self) -> Status {
        let (code, body) = self.admin_get("/admin/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status JSON")
    }

    /// Every event in the log, through the admin API.
    pub fn events(&self) -> Vec<EventJson> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (code, body) = self.admin_get(&format!("/admin/events?after={after}&limit=1000"));
            assert_eq!(code, 200, "{body}");
            let page: EventPage = serde_json::from_str(&body).expect("page JSON");
            if page.events.is_empty() {
                return out;
            }
            after = page.next_after;
            out.extend(page.events);
        }
    }

    /// Sends a fixture, signed now, to the webhook listener.
    pub fn send_fixture(&self, f: &hooklog::fixture::Fixture) -> Response {
        self.send_fixture_at(f, now())
    }

    /// Sends a fixture signed at `unix_secs` (those it can re-sign: Quo's).
    pub fn send_fixture_at(&self, f: &hooklog::fixture::Fixture, unix_secs: i64) -> Response {
        let req = f.request_at(unix_secs).expect("fixture request");
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.send(&req.method, &req.path, &headers, &req.body)
    }

    /// Sends a request to the webhook listener.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(self.public, method, path, headers, body)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn into_status_body(self) -> (u16, String) {
        (self.status, self.body)
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(15))
        .build()
}

/// Sends one request and returns the answer whatever its status.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut req = agent().request(method, &format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = if method == "GET" || method == "HEAD" {
        req.call()
    } else {
        req.send_bytes(body)
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request {method} {path} failed: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| {
            resp.header(&n)
                .map(|v| (n.to_ascii_lowercase(), v.to_owned()))
        })
        .collect();
    let body = resp.into_string().unwrap_or_default();
    Response {
        status,
        headers,
        body,
    }
}

/// A GET returning status and body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = agent().get(&format!("http://{addr}{path}")).call();
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// `GET /metrics` on an admin listener with `token`; `(0, "")` when it does not answer.
pub fn metrics(admin: SocketAddr, token: &str) -> (u16, String) {
    let r = agent()
        .get(&format!("http://{admin}/metrics"))
        .set("authorization", &format!("Bearer {token}"))
        .call();
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}
