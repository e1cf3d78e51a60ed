//! Start-up that waits instead of dying: the real binary started before what it needs is
//! there (a NATS server, Postgres, a data directory another process holds) keeps trying with
//! backoff, one warning per try, and comes up by itself once it is there; a SIGTERM during
//! the wait stops it with exit status 0.
//!
//! The NATS test is always on JetStream (a private `nats-server` started after the daemon);
//! the Postgres and data directory tests run on the run's engine.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::crash::free_port;
use crate::edge::{twilio_sms, BASE, TOKEN};
use crate::jetstream::PrivateNats;
use crate::jetstream_stream::Stream;
use crate::postgres::{pg_addr, url_via, Db, Proxy};

/// `hooklog serve` on ports of its own, started without waiting for it to be ready; its
/// stderr goes to a file the test reads. Killed when dropped.
struct Starting {
    child: Option<Child>,
    public: SocketAddr,
    stderr: PathBuf,
}

impl Starting {
    /// Starts the binary on `data_dir` with `env` (on this run's engine unless `env` chooses
    /// one); `stderr` is written to `<data_dir>.stderr`.
    fn spawn(data_dir: &Path, env: &[(&str, String)]) -> Starting {
        let engine = if crate::engine::chooses_engine(env.iter().map(|(k, _)| k)) {
            Vec::new()
        } else {
            crate::engine::env_for(data_dir)
        };
        let (public, admin) = (free_port(), free_port());
        let stderr = data_dir.with_extension("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_hooklog"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("HOOKLOG_DATA_DIR", data_dir)
            .env("HOOKLOG_SERVER_LISTEN", format!("127.0.0.1:{public}"))
            .env("HOOKLOG_SERVER_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN)
            .env("HOOKLOG_SERVER_PUBLIC_URLS", BASE)
            .envs(engine.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("the hooklog binary starts");
        Starting {
            child: Some(child),
            public: SocketAddr::from(([127, 0, 0, 1], public)),
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics (with its log) if the daemon exited.
    fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("{when}: the daemon exited with {status}:\n{}", self.log());
        }
    }

    /// `/readyz`'s status, 0 when nothing answers within a second (the listener is bound
    /// but not served while the log is not open).
    fn readyz(&self) -> u16 {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(1))
            .build();
        match agent.get(&format!("http://{}/readyz", self.public)).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(_) => 0,
        }
    }

    /// Waits until `/readyz` answers 200.
    fn wait_ready(&mut self, within: Duration) -> Duration {
        let start = Instant::now();
        while self.readyz() != 200 {
            self.assert_running("waiting for readiness");
            assert!(
                start.elapsed() < within,
                "not ready within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        start.elapsed()
    }

    /// Waits until the log shows `n` warnings that the log cannot be opened yet.
    fn wait_for_retries(&mut self, n: usize, within: Duration) {
        let start = Instant::now();
        while self.log().matches("cannot open the log yet").count() < n {
            self.assert_running("waiting for the retries");
            assert!(
                start.elapsed() < within,
                "fewer than {n} retries logged within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; the exit status and how long it took (panics after 20 s).
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let child = self.child.as_mut().unwrap();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no exit within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn send(addr: SocketAddr, sid: &str) -> u16 {
    let (path, headers, body) = twilio_sms(sid);
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    crate::util::request(addr, "POST", &path, &h, &body).status
}

#[test]
fn a_daemon_started_before_nats_comes_up_by_itself_once_nats_starts() {
    let store = crate::engine::tempdir();
    let port = free_port();
    let mut nats = PrivateNats::stopped(store.path(), port);
    let stream = Stream::on(&nats.url());
    let dir = crate::engine::tempdir();
    let data = dir.path().join("data");
    let mut daemon = Starting::spawn(
        &data,
        &[
            ("HOOKLOG_LOG_BACKEND", "jetstream".into()),
            ("HOOKLOG_LOG_JETSTREAM_NATS_URL", stream.url.clone()),
            ("HOOKLOG_LOG_JETSTREAM_STREAM", stream.name.clone()),
            ("HOOKLOG_LOG_JETSTREAM_SUBJECT", stream.subject.clone()),
        ],
    );

    // Tries at 0, 1 and 3 s: three warnings, each naming what failed and the next try.
    daemon.wait_for_retries(3, Duration::from_secs(20));
    let log = daemon.log();
    assert!(
        log.contains("cannot connect to NATS at nats://127.0.0.1:"),
        "{log}"
    );
    assert!(
        log.contains("retry_in_secs=1") && log.contains("retry_in_secs=2"),
        "{log}"
    );
    assert!(log.contains("next_try="), "{log}");
    assert_ne!(daemon.readyz(), 200, "ready without a log");

    nats.restart();
    let after = daemon.wait_ready(Duration::from_secs(40));
    eprintln!("ready {after:?} after NATS started");
    assert_eq!(send(daemon.public, "SMstart1"), 200);
    let (status, took) = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    eprintln!("stopped in {took:?}");
}

#[test]
fn a_daemon_started_before_postgres_serves_webhooks_and_fills_postgres_once_it_answers() {
    let db = Db::new();
    // A loopback port where nothing listens yet; the forwarder to Postgres takes it later.
    let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let url = url_via(Some(addr), "sslmode=disable");
    let dir = crate::engine::tempdir();
    let data = dir.path().join("data");
    let mut env: Vec<(&str, String)> = vec![
        ("HOOKLOG_CONSUMERS_BACKOFF_MAX_MS", "1000".into()),
        ("HOOKLOG_POSTGRES_TIMEOUT_SECS", "2".into()),
    ];
    let pg_env = db.env(&url);
    env.extend(pg_env.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let mut daemon = Starting::spawn(&data, &env);

    // The rest of the daemon runs while Postgres is down: webhooks are acknowledged.
    daemon.wait_ready(Duration::from_secs(20));
    let sids = ["SMpg1", "SMpg2", "SMpg3"];
    for sid in sids {
        assert_eq!(send(daemon.public, sid), 200);
    }
    std::thread::sleep(Duration::from_secs(2));
    daemon.assert_running("while Postgres is unreachable");
    assert_eq!(db.cursor(), 0, "nothing reached Postgres yet");

    let listener = TcpListener::bind(addr).expect("the reserved port is still free");
    let _proxy = Proxy::on(listener, pg_addr(), false);
    let start = Instant::now();
    while db.cursor() < 3 {
        daemon.assert_running("after Postgres came up");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the sink did not catch up within 30 s (cursor {}):\n{}",
            db.cursor(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("Postgres filled {:?} after it answered", start.elapsed());
    let stored = db.rows("select payload::text from $S.omni_events order by seq");
    for sid in sids {
        assert!(
            stored
                .iter()
                .any(|r| r[0].as_deref().is_some_and(|b| b.contains(sid))),
            "{sid} is not in omni_events: {stored:?}"
        );
    }
    let (status, _) = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

#[test]
fn a_busy_data_directory_is_waited_for_and_a_shutdown_during_the_wait_exits_0() {
    let dir = crate::engine::tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Another process's lock, as a daemon still stopping would hold it: this test process
    // opens the log the daemon would use.
    let holder = crate::engine::open_log(&data, &[]);

    let mut daemon = Starting::spawn(&data, &[]);
    daemon.wait_for_retries(2, Duration::from_secs(20));
    let log = daemon.log();
    assert!(log.contains("in use by another process"), "{log}");
    assert_ne!(daemon.readyz(), 200);
    let (status, took) = daemon.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "a stop during the wait: {}",
        daemon.log()
    );
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");

    let mut daemon = Starting::spawn(&data, &[]);
    daemon.wait_for_retries(1, Duration::from_secs(20));
    holder.close().unwrap();
    drop(holder);
    let after = daemon.wait_ready(Duration::from_secs(30));
    eprintln!("ready {after:?} after the lock was released");
    assert_eq!(send(daemon.public, "SMbusy1"), 200);
    let (status, _) = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}
