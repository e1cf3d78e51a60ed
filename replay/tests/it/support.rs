//! What the CLI tests share: the real daemon (`hooklog::run`) in-process on `127.0.0.1:0`
//! with a configuration file of the test's, and the CLI as a child process whose
//! environment holds no `HOOKLOG_*` variable of the test runner's. Also two helpers of
//! hooklog's own integration tests, the same files: the fake Quo and Twilio APIs and a
//! JetStream stream of a test's own.

// Another crate's test modules: an ordinary `mod` cannot reach them. This crate uses a part of
// each.
#[path = "../../../tests/it/fake_providers.rs"]
#[allow(dead_code)]
pub mod fake_providers;
#[path = "../../../tests/it/jetstream_stream.rs"]
#[allow(dead_code)]
pub mod jetstream_stream;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon running on its own runtime until stopped (or dropped).
pub struct InProcess {
    runtime: tokio::runtime::Runtime,
    task: Option<tokio::task::JoinHandle<Result<(), hooklog::RunError>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// `http://` + the admin listener.
    pub admin_url: String,
    /// `http://` + the first webhook listener.
    pub webhook_url: String,
}

impl InProcess {
    /// Starts the daemon with the configuration file `config` and waits until its admin
    /// API answers.
    pub fn start(config: &Path) -> InProcess {
        let (cfg, _) = hooklog::config::Config::load_from(Some(config), Vec::new()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listeners = runtime.block_on(hooklog::Listeners::bind(&cfg)).unwrap();
        let admin_url = format!("http://{}", listeners.admin.local_addr().unwrap());
        let webhook_url = format!("http://{}", listeners.public[0].local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(hooklog::run(cfg, listeners, async move {
            let _ = stopped.await;
        }));
        let daemon = InProcess {
            runtime,
            task: Some(task),
            stop: Some(stop),
            admin_url,
            webhook_url,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ureq::get(&format!("{}/admin/status", daemon.admin_url)).call() {
                Err(ureq::Error::Status(401, _)) | Ok(_) => return daemon,
                Err(e) => {
                    assert!(Instant::now() < deadline, "the daemon did not come up: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Stops it gracefully and checks that `run` returned `Ok`.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            self.runtime.block_on(task).unwrap().unwrap();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        }
    }
}

/// The admin token the daemon generated in `data_dir`.
pub fn token(data_dir: &Path) -> String {
    std::fs::read_to_string(hooklog::admin::token_path(data_dir))
        .unwrap()
        .trim()
        .to_owned()
}

/// `hooklog-replay --config CONFIG --admin-url URL`, ready for more arguments.
pub fn cli(config: &Path, admin_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hooklog-replay"));
    // The config loader reads every HOOKLOG_* variable; keep the child's environment clean.
    for (k, _) in std::env::vars() {
        if k.starts_with("HOOKLOG_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--config")
        .arg(config)
        .arg("--admin-url")
        .arg(admin_url)
        .stdin(Stdio::null());
    cmd
}
