//! The real binary: killed with SIGKILL under load, stopped with SIGTERM.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::edge::{twilio_sms, BASE, TOKEN};
use crate::util;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) public: SocketAddr,
    pub(crate) admin: SocketAddr,
    data_dir: std::path::PathBuf,
}

impl Daemon {
    /// `GET /metrics` on the admin listener with the daemon's generated operator token.
    pub(crate) fn metrics(&self) -> (u16, String) {
        let token = std::fs::read_to_string(self.data_dir.join("admin.token")).unwrap_or_default();
        util::metrics(self.admin, token.trim())
    }
}

fn spawn_daemon(data_dir: &Path, ports: &mut (u16, u16)) -> Daemon {
    spawn_daemon_with(data_dir, ports, &[])
}

/// [`spawn_daemon`] with more environment (a configuration file, provider URLs), on this
/// run's log engine unless `extra` chooses one.
pub(crate) fn spawn_daemon_with(
    data_dir: &Path,
    ports: &mut (u16, u16),
    extra: &[(&str, String)],
) -> Daemon {
    spawn_daemon_after(data_dir, ports, extra, None)
}

/// [`spawn_daemon_with`], the binary started by `sh -c '<shell>; exec "$0" "$@"'` when
/// `shell` is given (e.g. `ulimit -n 64`): the same process, under the limits it set.
pub(crate) fn spawn_daemon_after(
    data_dir: &Path,
    ports: &mut (u16, u16),
    extra: &[(&str, String)],
    shell: Option<&str>,
) -> Daemon {
    let engine = if crate::engine::chooses_engine(extra.iter().map(|(k, _)| k)) {
        Vec::new()
    } else {
        crate::engine::env_for(data_dir)
    };
    // A port found free can be taken by another test before the daemon binds it; the daemon
    // then exits at once, and we try again on new ports.
    for _attempt in 0..5 {
        let (public, admin) = *ports;
        let binary = env!("CARGO_BIN_EXE_hooklog");
        let mut command = match shell {
            Some(shell) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{shell}; exec \"$0\" \"$@\""))
                    .arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
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
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the hooklog binary starts");
        let public = SocketAddr::from(([127, 0, 0, 1], public));
        let admin = SocketAddr::from(([127, 0, 0, 1], admin));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if util::get(public, "/readyz").0 == 200 {
                return Daemon {
                    child,
                    public,
                    admin,
                    data_dir: data_dir.to_owned(),
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                eprintln!("daemon exited with {status} before it was ready; retrying on new ports");
                *ports = (free_port(), free_port());
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon not ready in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("the daemon could not start on five pairs of ports");
}

/// Sends signed webhooks from `clients` threads until `stop`, recording every acknowledged id
/// (Twilio SIDs starting with `prefix`).
pub(crate) fn load(
    prefix: &'static str,
    addr: SocketAddr,
    round: usize,
    clients: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let stop = stop.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(5))
                    .build();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let sid = format!("{prefix}r{round}c{c}n{n}");
                    n += 1;
                    let (path, headers, body) = twilio_sms(&sid);
                    let mut req = agent.post(&format!("http://{addr}{path}"));
                    for (k, v) in &headers {
                        req = req.set(k, v);
                    }
                    match req.send_bytes(&body) {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(sid),
                        // Refused or cut off by the kill: not acknowledged, may or may not be
                        // stored (a retry would be flagged as a duplicate).
                        _ => {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            })
        })
        .collect()
}

/// The Twilio SIDs stored in the (stopped) daemon's log on `data_dir`, read through the
/// engine it ran on.
pub(crate) fn stored_sids(data_dir: &Path) -> Vec<String> {
    stored_sids_with(data_dir, &[])
}

/// [`stored_sids`] for a daemon started with `extra` (e.g. one that chose its engine).
pub(crate) fn stored_sids_with(data_dir: &Path, extra: &[(&str, &str)]) -> Vec<String> {
    let log = crate::engine::open_log(data_dir, extra);
    let mut out = Vec::new();
    let mut after = hooklog::event::Seq(0);
    loop {
        let page = log.read(after, 1000).expect("every record decodes");
        let Some(last) = page.last() else { break };
        after = last.seq;
        for ev in &page {
            let sid = form_urlencoded::parse(&ev.body)
                .find(|(k, _)| k == "MessageSid")
                .map(|(_, v)| v.into_owned())
                .expect("a MessageSid in every stored body");
            out.push(sid);
        }
    }
    log.close().unwrap();
    out
}

#[test]
fn acked_events_survive_kill_9() {
    let dir = crate::engine::tempdir();
    let mut ports = (free_port(), free_port());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut rng = rand::thread_rng();
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let mut daemon = spawn_daemon(dir.path(), &mut ports);
        let stop = Arc::new(AtomicBool::new(false));
        let clients = load("SM", daemon.public, round, 8, stop.clone(), acked.clone());
        let before = acked.lock().unwrap().len();
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
        daemon.child.kill().unwrap(); // SIGKILL: no shutdown code runs
        daemon.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let during = acked.lock().unwrap().len() - before;
        assert!(
            during > 0,
            "round {round}: no request was acknowledged before the kill"
        );
    }
    let acked = acked.lock().unwrap().clone();
    let stored = stored_sids(dir.path());
    let stored_set: BTreeSet<&String> = stored.iter().collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|sid| !stored_set.contains(sid))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        stored_set.len(),
        stored.len(),
        "each request was sent once, so none is stored twice"
    );
    eprintln!(
        "{ROUNDS} kills: {} acknowledged, {} stored, none lost",
        acked.len(),
        stored.len()
    );
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let dir = crate::engine::tempdir();
    let mut daemon = spawn_daemon(dir.path(), &mut (free_port(), free_port()));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients = load("SM", daemon.public, 0, 4, stop.clone(), acked.clone());
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(daemon.child.id() as i32), Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(status.success(), "exit status {status:?}");
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let stored: BTreeSet<String> = stored_sids(dir.path()).into_iter().collect();
    assert!(acked.iter().all(|sid| stored.contains(sid)));
}
