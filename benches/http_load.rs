//! HTTP load benchmark against the real daemon (docs/architecture.md#performance-targets: ≥ 10 000 acknowledged webhooks/s
//! at saturation with 64 connections, p99 ack latency ≤ 10 ms at 2 000 req/s, resident memory
//! ≤ 150 MB). See `benches/README.md` for figures and how to read them.
//!
//! What it does:
//!
//! 1. Writes a configuration file with one Quo signing key into a fresh temporary directory
//!    (the data directory is inside it), and starts `hooklog --config <file> serve`: the
//!    binary cargo built for this bench (release, the bench profile), on loopback ports.
//! 2. For each target (`GET /healthz` as the baseline, then signed Quo webhooks on
//!    `POST /webhook/quo`), runs one phase per fixed rate and one at saturation, each over
//!    the same number of keep-alive HTTP/1.1 connections (64 by default).
//!    - Fixed rate (open loop): request *i* is due at `start + i / rate`; a connection takes
//!      the next due request, waits for its due time if it is early and sends it at once if
//!      it is late. Latency is measured **from the due time** to the end of the response, so
//!      a slow answer delays and is charged to the requests queued behind it (no coordinated
//!      omission). tokio's timer ticks every millisecond, so a connection wakes up to one
//!      tick before the due time; a request sent early is timed from its write instead. The
//!      time from the actual write is reported too ("service"), and how late the write was
//!      after its due time ("sent late": the client's own delays and waits for a free
//!      connection).
//!    - Saturation (closed loop): every connection sends its next request as soon as the
//!      previous answer is read.
//!      The first seconds of each phase (warm-up) are not counted.
//! 3. Every webhook is a 1.2 KB legacy Quo `message.received` envelope with a unique event
//!    id, signed with `openphone-signature` at the moment it is sent (the ±300 s window holds
//!    however long the run is). Only `200` answers count as acknowledged; the daemon answers
//!    them after the group commit's flush.
//! 4. While a phase runs, a sampler reads the daemon's `VmRSS` every 100 ms from `/proc`;
//!    after it, `VmHWM`, the CPU time of the daemon and of this client, the machine's idle
//!    share, the load average and the daemon's mean group-commit batch (from `/metrics`, on the
//!    admin listener).
//! 5. After SIGTERM, starts the daemon again on the data directory the run filled and reports
//!    its resident memory once idle (5 s after ready): a restart on a large log.
//!
//! The client is deliberately small (a hand-written HTTP/1.1 request writer and response
//! reader on tokio, one worker thread by default) so that it takes as little of the two cores
//! as possible from the daemon; its CPU share is printed with every row.
//!
//! Settings (environment): `HOOKLOG_LOAD_SECS` (measured seconds per phase, 10),
//! `HOOKLOG_LOAD_WARMUP_SECS` (2), `HOOKLOG_LOAD_RATES` (`500,2000,5000`; empty: saturation only), `HOOKLOG_LOAD_CONNS`
//! (64), `HOOKLOG_LOAD_CLIENT_THREADS` (1), `HOOKLOG_LOAD_TARGETS` (`healthz,quo`),
//! `HOOKLOG_LOAD_BIN` (another `hooklog` binary to measure), `HOOKLOG_LOAD_ENGINES`
//! (`sled,jetstream`: after the sled run, the webhook phases again on a daemon whose log is a
//! JetStream stream of its own on `HOOKLOG_LOAD_NATS_URL`, default `nats://127.0.0.1:4222`,
//! then both side by side), `HOOKLOG_LOAD_KEEP` (`1`: keep the
//! temporary directory and print its path, to restart a daemon on a large log). Every other `HOOKLOG_*` variable
//! is passed on to the daemon, where it overrides the configuration file as usual (for
//! experiments such as `HOOKLOG_LOG_CACHE_MB=16`).

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hooklog::signature::{quo_legacy, HmacKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Quo signing secret (base64; the test vector key of docs/reference/quo.md#test-vectors), as in
/// `verify_append.rs`.
const QUO_KEY: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";
/// Body size the targets of docs/architecture.md#performance-targets are stated for.
const BODY_BYTES: usize = 1200;
/// Width of the counter written into each body's event id.
const ID_DIGITS: usize = 20;
/// Linux reports process CPU time in `/proc` in units of USER_HZ, which is 100 on every
/// architecture Linux supports.
const USER_HZ: f64 = 100.0;
/// Granularity of tokio's timer.
const TIMER_TICK: Duration = Duration::from_millis(1);

fn main() {
    let settings = Settings::from_env();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut daemon = Daemon::start(&settings.bin, dir.path());
    eprintln!(
        "hooklog (pid {}) ready on {}; data dir in a fresh temporary directory; load average {}",
        daemon.child.id(),
        daemon.public,
        loadavg()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads)
        .enable_all()
        .build()
        .expect("the client runtime starts");
    let key = HmacKey::from_quo_secret(QUO_KEY).expect("the bench Quo key is base64");
    let template = Arc::new(QuoTemplate::new(daemon.public, key));

    let mut rows = Vec::new();
    let mut modes: Vec<Mode> = settings.rates.iter().map(|r| Mode::Rate(*r)).collect();
    modes.push(Mode::Saturate);
    for mode in modes {
        for target in &settings.targets {
            let row = runtime.block_on(run_phase(
                &settings,
                &daemon,
                *target,
                mode,
                template.clone(),
            ));
            eprintln!("{}", row.line());
            rows.push(row);
            // Let the consumers catch up on what the phase appended before the next one.
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    let hwm = proc_status_kb(daemon.child.id(), "VmHWM").unwrap_or(0);
    let stopped = daemon.stop();
    drop(daemon);
    let restarted = restart_memory(&settings.bin, dir.path());
    print_report(&settings, &rows, hwm, &format!("{stopped}.\n{restarted}"));
    if settings.jetstream {
        let js_rows = jetstream_phases(&settings, &runtime);
        print_engines(&rows, &js_rows, &settings.nats_url);
    }
    if std::env::var("HOOKLOG_LOAD_KEEP").is_ok_and(|v| v == "1") {
        eprintln!(
            "kept the data directory: {}",
            dir.keep().join("data").display()
        );
    }
}

/// The webhook phases again, on a daemon whose log is a JetStream stream of its own (deleted
/// afterwards) on `settings.nats_url`.
fn jetstream_phases(settings: &Settings, runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tag = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let stream = format!("HOOKLOG_BENCH_{tag}");
    let extra = format!(
        "\n[log]\nbackend = \"jetstream\"\n\n[log.jetstream]\nnats_url = \"{}\"\nstream = \"{stream}\"\n\
         subject = \"hooklog.bench.{tag}\"\n",
        settings.nats_url
    );
    let mut daemon = Daemon::start_with(&settings.bin, dir.path(), &extra);
    eprintln!(
        "hooklog on JetStream (stream {stream} on {}) ready on {}",
        settings.nats_url, daemon.public
    );
    let key = HmacKey::from_quo_secret(QUO_KEY).expect("the bench Quo key is base64");
    let template = Arc::new(QuoTemplate::new(daemon.public, key));
    let mut modes: Vec<Mode> = settings.rates.iter().map(|r| Mode::Rate(*r)).collect();
    modes.push(Mode::Saturate);
    let mut rows = Vec::new();
    for mode in modes {
        let row = runtime.block_on(run_phase(
            settings,
            &daemon,
            Target::Quo,
            mode,
            template.clone(),
        ));
        eprintln!("jetstream {}", row.line());
        rows.push(row);
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!("{}", daemon.stop());
    let url = settings.nats_url.clone();
    runtime.block_on(async move {
        if let Ok(client) = async_nats::connect(url).await {
            let _ = async_nats::jetstream::new(client)
                .delete_stream(stream)
                .await;
        }
    });
    rows
}

/// The webhook phases of both engines side by side.
fn print_engines(sled: &[Row], jetstream: &[Row], nats_url: &str) {
    let mut out = format!(
        "\n## Engines: signed Quo webhooks, sled vs JetStream (R1, file storage, {nats_url})\n\n\
         | offered | sled acked/s | sled p50 / p99 ms | JetStream acked/s | JetStream p50 / p99 ms | JetStream non-200 + errors |\n\
         |---|---|---|---|---|---|\n"
    );
    for j in jetstream {
        let Some(s) = sled
            .iter()
            .find(|s| s.target == Target::Quo && s.mode.name() == j.mode.name())
        else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} / {:.2} | {:.0} | {:.2} / {:.2} | {} |",
            j.mode.name(),
            s.per_sec(),
            s.latency.p50,
            s.latency.p99,
            j.per_sec(),
            j.latency.p50,
            j.latency.p99,
            j.other_status + j.errors
        );
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Healthz,
    Quo,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Healthz => "GET /healthz",
            Target::Quo => "POST /webhook/quo",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Rate(u64),
    Saturate,
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Rate(r) => format!("{r}/s"),
            Mode::Saturate => "saturation".into(),
        }
    }
}

struct Settings {
    secs: f64,
    warmup: f64,
    rates: Vec<u64>,
    conns: usize,
    client_threads: usize,
    targets: Vec<Target>,
    bin: PathBuf,
    /// Also measure the webhook phases with the JetStream engine (`HOOKLOG_LOAD_ENGINES`).
    jetstream: bool,
    nats_url: String,
}

impl Settings {
    fn from_env() -> Settings {
        fn var(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        }
        fn num<T: std::str::FromStr>(name: &str, default: T) -> T {
            match var(name) {
                None => default,
                Some(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}=`{v}` is not a number")),
            }
        }
        // Set but empty: saturation only.
        let rates = std::env::var("HOOKLOG_LOAD_RATES")
            .unwrap_or_else(|_| "500,2000,5000".into())
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("HOOKLOG_LOAD_RATES: `{s}` is not a rate"))
            })
            .collect();
        let targets = var("HOOKLOG_LOAD_TARGETS")
            .unwrap_or_else(|| "healthz,quo".into())
            .split(',')
            .map(|s| match s.trim() {
                "healthz" => Target::Healthz,
                "quo" => Target::Quo,
                other => panic!("HOOKLOG_LOAD_TARGETS: `{other}` is not healthz or quo"),
            })
            .collect();
        let settings = Settings {
            secs: num("HOOKLOG_LOAD_SECS", 10.0),
            warmup: num("HOOKLOG_LOAD_WARMUP_SECS", 2.0),
            rates,
            conns: num("HOOKLOG_LOAD_CONNS", 64),
            client_threads: num("HOOKLOG_LOAD_CLIENT_THREADS", 1),
            targets,
            bin: var("HOOKLOG_LOAD_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hooklog"))),
            jetstream: var("HOOKLOG_LOAD_ENGINES")
                .unwrap_or_else(|| "sled".into())
                .split(',')
                .any(|e| match e.trim() {
                    "sled" => false,
                    "jetstream" => true,
                    other => panic!("HOOKLOG_LOAD_ENGINES: `{other}` is not sled or jetstream"),
                }),
            nats_url: var("HOOKLOG_LOAD_NATS_URL")
                .unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
        };
        assert!(settings.secs > 0.0, "HOOKLOG_LOAD_SECS must be positive");
        assert!(settings.conns > 0, "HOOKLOG_LOAD_CONNS must be positive");
        assert!(
            settings.client_threads > 0,
            "HOOKLOG_LOAD_CLIENT_THREADS must be positive"
        );
        settings
    }
}

// ---------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------

struct Daemon {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
}

/// The operator token the bench's daemons are configured with (`/metrics` is on the admin
/// listener, behind it).
const ADMIN_TOKEN: &str = "bench-operator-token-0123456789";

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Daemon {
    fn start(bin: &Path, dir: &Path) -> Daemon {
        Daemon::start_with(bin, dir, "")
    }

    /// [`Daemon::start`] with more TOML after the bench's own (another log engine).
    fn start_with(bin: &Path, dir: &Path, extra_toml: &str) -> Daemon {
        // A port found free can be taken before the daemon binds it: try a few pairs.
        for _attempt in 0..5 {
            let public = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config = dir.join("hooklog.toml");
            let text = format!(
                "data_dir = {data:?}\n\n[server]\nlisten = [\"{public}\"]\nadmin_listen = \"{admin}\"\n\
                 admin_token = \"{ADMIN_TOKEN}\"\n\n\
                 [openphone]\nsigning_keys = [\"{QUO_KEY}\"]\n{extra_toml}",
                data = dir.join("data").display().to_string(),
            );
            std::fs::write(&config, text).expect("the configuration file is written");
            let mut child =
                Command::new(bin)
                    .arg("--config")
                    .arg(&config)
                    .arg("serve")
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("RUST_LOG", "warn")
                    // Configuration overrides for experiments (e.g. HOOKLOG_LOG_CACHE_MB=16).
                    .envs(std::env::vars().filter(|(k, _)| {
                        k.starts_with("HOOKLOG_") && !k.starts_with("HOOKLOG_LOAD_")
                    }))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if blocking_get(public, "/readyz") == Some(200) {
                    return Daemon {
                        child,
                        public,
                        admin,
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("hooklog exited with {status} before it was ready; new ports");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("hooklog not ready within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("hooklog could not start on five pairs of ports");
    }

    /// SIGTERM, then wait for a clean exit (the log is closed); a description of the outcome.
    fn stop(&mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let started = Instant::now();
        if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
            return format!("cannot send SIGTERM: {e}");
        }
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return format!(
                        "hooklog stopped on SIGTERM in {:.1} s: {status}",
                        started.elapsed().as_secs_f64()
                    )
                }
                Ok(None) if started.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return "hooklog did not stop within 30 s of SIGTERM; killed".into();
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A panic mid-run must not leave the daemon running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One GET on a fresh connection; the status, or `None` if the daemon is not answering.
fn blocking_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let (status, _) = blocking_get_body(addr, path, "")?;
    Some(status)
}

/// The daemon's `/metrics` (on its admin listener, with the operator token).
fn metrics(daemon: &Daemon) -> Option<String> {
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    let (_, body) = blocking_get_body(daemon.admin, "/metrics", &auth)?;
    Some(body)
}

/// A GET with `headers` (complete lines) on a fresh connection: status and body.
fn blocking_get_body(addr: SocketAddr, path: &str, headers: &str) -> Option<(u16, String)> {
    let mut s = StdStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Sum and count of the daemon's `hooklog_append_batch_size` histogram.
fn batch_metric(daemon: &Daemon) -> Option<(f64, f64)> {
    let body = metrics(daemon)?;
    let value = |name: &str| -> Option<f64> {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    Some((
        value("hooklog_append_batch_size_sum")?,
        value("hooklog_append_batch_size_count")?,
    ))
}

// ---------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// A `kB` field of `/proc/<pid>/status`.
/// Starts the daemon again on the data directory the run filled and reports its memory once
/// it is idle: what an operator sees after a restart on a large log.
fn restart_memory(bin: &Path, dir: &Path) -> String {
    let started = Instant::now();
    let mut daemon = Daemon::start(bin, dir);
    let ready = started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let pid = daemon.child.id();
    let (rss, hwm) = (
        proc_status_kb(pid, "VmRSS").unwrap_or(0),
        proc_status_kb(pid, "VmHWM").unwrap_or(0),
    );
    let records = metrics(&daemon)
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("hooklog_log_last_seq "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let bytes = dir_bytes(&dir.join("data"));
    let stopped = daemon.stop();
    format!(
        "Restarted on the same data directory ({records:.0} records, {:.0} MB on disk): ready in \
         {:.1} s; 5 s later resident memory {:.1} MB, peak (VmHWM) {:.1} MB. {stopped}",
        bytes as f64 / 1e6,
        ready.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    )
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// User + system CPU seconds of a process (`self` or a pid).
fn cpu_secs(pid: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may contain spaces; fields after it are plain numbers.
    let Some((_, rest)) = text.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    (ticks(14).unwrap_or(0.0) + ticks(15).unwrap_or(0.0)) / USER_HZ
}

/// (idle, total) jiffies of the whole machine.
fn machine_jiffies() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (idle, v.iter().sum())
}

/// Samples a process's `VmRSS` until stopped; the largest value seen, in kB.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max_kb: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max_kb = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max_kb.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = proc_status_kb(pid, "VmRSS") {
                    m.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler {
            stop,
            max_kb,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max_kb.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// A 1.2 KB Quo `message.received` body with a fixed-width counter in its event id, and the
/// request head; [`QuoTemplate::request`] fills in the counter and signs at send time.
struct QuoTemplate {
    key: HmacKey,
    host: String,
    body: Vec<u8>,
    id_at: usize,
}

impl QuoTemplate {
    fn new(addr: SocketAddr, key: HmacKey) -> QuoTemplate {
        let placeholder = "0".repeat(ID_DIGITS);
        let make = |text: &str| support::quo_message_received(&format!("EV{placeholder}"), text);
        const TEXT: &str = "Hi, this is Sam following up about the property on Elm Street. We \
                            can do the walkthrough Thursday at 3pm or Friday morning, whichever \
                            works better for you. ";
        let fixed = make("").len();
        let text: String = TEXT
            .chars()
            .cycle()
            .take(BODY_BYTES.saturating_sub(fixed))
            .collect();
        let body = make(&text).into_bytes();
        let marker = format!("\"EV{placeholder}\"");
        let id_at = body
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
            .expect("the event id is in the body")
            + 3;
        QuoTemplate {
            key,
            host: addr.to_string(),
            body,
            id_at,
        }
    }

    /// The whole request (head and body) for event number `n`, signed now.
    fn request(&self, n: u64, out: &mut Vec<u8>) {
        let mut body = self.body.clone();
        let digits = format!("{n:0width$}", width = ID_DIGITS);
        body[self.id_at..self.id_at + ID_DIGITS].copy_from_slice(digits.as_bytes());
        let ts = unix_ms().to_string();
        let sig = quo_legacy::sign(&self.key, &ts, &body);
        out.clear();
        let _ = write!(
            out,
            "POST /webhook/quo HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             User-Agent: OpenPhone Webhooks\r\nopenphone-signature: {sig}\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        out.extend_from_slice(&body);
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// One keep-alive HTTP/1.1 connection: write a request, read one response.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; 16 * 1024],
            filled: 0,
        })
    }

    /// Sends `req` and reads the answer; its status and whether the server keeps the
    /// connection open.
    async fn roundtrip(&mut self, req: &[u8]) -> std::io::Result<(u16, bool)> {
        self.stream.write_all(req).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf[..self.filled], b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(bad)?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut length = None;
        let mut keep_alive = true;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(bad)?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked responses are not supported by this client"));
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                keep_alive = false;
            }
        }
        let total = head_end + length.ok_or_else(|| bad("no content-length"))?;
        while self.filled < total {
            self.fill().await?;
        }
        self.buf.copy_within(total..self.filled, 0);
        self.filled -= total;
        Ok((status, keep_alive))
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        self.filled += n;
        Ok(())
    }
}

fn bad(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What one phase shares between its connections.
struct Plan {
    target: Target,
    mode: Mode,
    addr: SocketAddr,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    next: AtomicU64,
    ids: Arc<AtomicU64>,
    template: Arc<QuoTemplate>,
}

#[derive(Default)]
struct ConnStats {
    /// From the due time (fixed rate) or the write (saturation) to the response, in µs.
    latency_us: Vec<u32>,
    /// From the write to the response, in µs.
    service_us: Vec<u32>,
    /// How late the write was after the due time (fixed rate; 0 when early), in µs: the
    /// client's own delay plus waiting for a free connection.
    late_us: Vec<u32>,
    acked: u64,
    other_status: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn connection(plan: Arc<Plan>) -> ConnStats {
    let mut stats = ConnStats::default();
    let mut conn: Option<Conn> = None;
    let mut req = Vec::with_capacity(2048);
    loop {
        let due = match plan.mode {
            Mode::Rate(rate) => {
                let i = plan.next.fetch_add(1, Ordering::Relaxed);
                let due = plan.start + Duration::from_nanos(i * 1_000_000_000 / rate);
                if due >= plan.end {
                    break;
                }
                // tokio's timer fires on the first millisecond tick after the deadline: aim
                // one tick early, so the request goes out within a millisecond before its due
                // time instead of up to a millisecond after it.
                let wake = due.checked_sub(TIMER_TICK).unwrap_or(due);
                if wake > Instant::now() {
                    tokio::time::sleep_until(wake.into()).await;
                }
                due
            }
            Mode::Saturate => {
                let now = Instant::now();
                if now >= plan.end {
                    break;
                }
                now
            }
        };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(plan.addr).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    stats.errors += 1;
                    stats.first_error.get_or_insert_with(|| e.to_string());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match plan.target {
            Target::Healthz => {
                req.clear();
                let _ = write!(
                    req,
                    "GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n",
                    plan.template.host
                );
            }
            Target::Quo => plan
                .template
                .request(plan.ids.fetch_add(1, Ordering::Relaxed), &mut req),
        }
        let sent = Instant::now();
        let result = c.roundtrip(&req).await;
        let done = Instant::now();
        let counted = due >= plan.measure_from;
        // A request sent early is timed from its write; one sent late from its due time.
        let due = due.min(sent);
        match result {
            Ok((status, keep_alive)) => {
                if counted {
                    if status == 200 {
                        stats.acked += 1;
                    } else {
                        stats.other_status += 1;
                    }
                    stats
                        .latency_us
                        .push(micros(done.saturating_duration_since(due)));
                    stats
                        .service_us
                        .push(micros(done.saturating_duration_since(sent)));
                    stats
                        .late_us
                        .push(micros(sent.saturating_duration_since(due)));
                }
                if !keep_alive {
                    conn = None;
                }
            }
            Err(e) => {
                if counted {
                    stats.errors += 1;
                    stats.first_error.get_or_insert_with(|| e.to_string());
                }
                conn = None;
            }
        }
    }
    stats
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

// ---------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------

struct Row {
    target: Target,
    mode: Mode,
    secs: f64,
    acked: u64,
    other_status: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Percentiles,
    service: Percentiles,
    late: Percentiles,
    server_cpu: f64,
    client_cpu: f64,
    idle: f64,
    rss_max_kb: u64,
    hwm_kb: u64,
    mean_batch: Option<f64>,
    load_before: String,
    load_after: String,
}

#[derive(Default)]
struct Percentiles {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut us: Vec<u32>) -> Percentiles {
        if us.is_empty() {
            return Percentiles::default();
        }
        us.sort_unstable();
        let at = |q: f64| {
            let i = ((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1;
            us[i] as f64 / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }
}

impl Row {
    fn per_sec(&self) -> f64 {
        self.acked as f64 / self.secs
    }

    fn line(&self) -> String {
        format!(
            "{} {}: {:.0} acked/s, {} other, {} errors; ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}; \
             service p50 {:.2} p99 {:.2}; sent late p99 {:.2} max {:.2}; cpu hooklog {:.0} % client {:.0} % idle {:.0} %; \
             RSS max {:.1} MB; batch {}; load {} -> {}{}",
            self.target.name(),
            self.mode.name(),
            self.per_sec(),
            self.other_status,
            self.errors,
            self.latency.p50,
            self.latency.p99,
            self.latency.p999,
            self.latency.max,
            self.service.p50,
            self.service.p99,
            self.late.p99,
            self.late.max,
            self.server_cpu,
            self.client_cpu,
            self.idle,
            self.rss_max_kb as f64 / 1024.0,
            self.mean_batch
                .map(|b| format!("{b:.1}"))
                .unwrap_or_else(|| "-".into()),
            self.load_before,
            self.load_after,
            self.first_error
                .as_ref()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        )
    }
}

async fn run_phase(
    settings: &Settings,
    daemon: &Daemon,
    target: Target,
    mode: Mode,
    template: Arc<QuoTemplate>,
) -> Row {
    static IDS: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();
    let ids = IDS.get_or_init(|| Arc::new(AtomicU64::new(1))).clone();
    let pid = daemon.child.id();
    let load_before = loadavg();
    let batch_before = batch_metric(daemon);

    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(settings.warmup);
    let end = measure_from + Duration::from_secs_f64(settings.secs);
    let plan = Arc::new(Plan {
        target,
        mode,
        addr: daemon.public,
        start,
        measure_from,
        end,
        next: AtomicU64::new(0),
        ids,
        template,
    });
    let tasks: Vec<_> = (0..settings.conns)
        .map(|_| tokio::spawn(connection(plan.clone())))
        .collect();

    // CPU, idle and memory over the measured part only.
    tokio::time::sleep_until(measure_from.into()).await;
    let sampler = RssSampler::start(pid);
    let cpu0 = (cpu_secs(&pid.to_string()), cpu_secs("self"));
    let jiffies0 = machine_jiffies();
    let wall0 = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let wall = wall0.elapsed().as_secs_f64();
    let cpu1 = (cpu_secs(&pid.to_string()), cpu_secs("self"));
    let jiffies1 = machine_jiffies();
    let rss_max_kb = sampler.finish();

    let mut all = ConnStats::default();
    for t in tasks {
        let s = t.await.expect("a connection task does not panic");
        all.latency_us.extend(s.latency_us);
        all.service_us.extend(s.service_us);
        all.late_us.extend(s.late_us);
        all.acked += s.acked;
        all.other_status += s.other_status;
        all.errors += s.errors;
        if all.first_error.is_none() {
            all.first_error = s.first_error;
        }
    }
    let stats = all;
    let batch_after = batch_metric(daemon);
    let mean_batch = match (batch_before, batch_after) {
        (Some((s0, n0)), Some((s1, n1))) if n1 > n0 => Some((s1 - s0) / (n1 - n0)),
        _ => None,
    };
    let idle = {
        let (i, t) = (jiffies1.0 - jiffies0.0, jiffies1.1 - jiffies0.1);
        if t == 0 {
            0.0
        } else {
            100.0 * i as f64 / t as f64
        }
    };
    Row {
        target,
        mode,
        secs: settings.secs,
        acked: stats.acked,
        other_status: stats.other_status,
        errors: stats.errors,
        first_error: stats.first_error,
        latency: Percentiles::of(stats.latency_us),
        service: Percentiles::of(stats.service_us),
        late: Percentiles::of(stats.late_us),
        server_cpu: 100.0 * (cpu1.0 - cpu0.0) / wall,
        client_cpu: 100.0 * (cpu1.1 - cpu0.1) / wall,
        idle,
        rss_max_kb,
        hwm_kb: proc_status_kb(pid, "VmHWM").unwrap_or(0),
        mean_batch,
        load_before,
        load_after: loadavg(),
    }
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

fn print_report(settings: &Settings, rows: &[Row], hwm_kb: u64, stopped: &str) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## http_load: {} s measured per phase after {} s warm-up, {} keep-alive connections, \
         {} client thread(s)\n",
        settings.secs, settings.warmup, settings.conns, settings.client_threads
    );
    let _ = writeln!(
        out,
        "| target | offered | acked/s | non-200 | errors | p50 ms | p99 ms | p99.9 ms | max ms \
         | service p50 / p99 ms | sent late p99 / max ms | hooklog CPU % | client CPU % | machine idle % | RSS max MB \
         | VmHWM MB | mean batch | load avg before → after |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} \
             | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} → {} |",
            r.target.name(),
            r.mode.name(),
            r.per_sec(),
            r.other_status,
            r.errors,
            r.latency.p50,
            r.latency.p99,
            r.latency.p999,
            r.latency.max,
            r.service.p50,
            r.service.p99,
            r.late.p99,
            r.late.max,
            r.server_cpu,
            r.client_cpu,
            r.idle,
            r.rss_max_kb as f64 / 1024.0,
            r.hwm_kb as f64 / 1024.0,
            r.mean_batch
                .map(|b| format!("{b:.1}"))
                .unwrap_or_else(|| "–".into()),
            r.load_before,
            r.load_after,
        );
    }
    let sat = |t: Target| {
        rows.iter()
            .find(|r| r.target == t && matches!(r.mode, Mode::Saturate))
    };
    if let (Some(h), Some(q)) = (sat(Target::Healthz), sat(Target::Quo)) {
        if h.per_sec() > 0.0 {
            let _ = writeln!(
                out,
                "\nAt saturation: webhooks {:.0}/s vs /healthz {:.0}/s: ratio {:.2} (verify + \
                 durable append cost {:.0} µs of wall time per request on top of HTTP at 64 \
                 connections).",
                q.per_sec(),
                h.per_sec(),
                q.per_sec() / h.per_sec(),
                1e6 / q.per_sec().max(1.0) - 1e6 / h.per_sec()
            );
        }
    }
    for r in rows.iter().filter(|r| r.target == Target::Quo) {
        if let Mode::Rate(rate) = r.mode {
            if let Some(h) = rows.iter().find(|h| {
                h.target == Target::Healthz && matches!(h.mode, Mode::Rate(x) if x == rate)
            }) {
                let _ = writeln!(
                    out,
                    "At {rate}/s: webhook p99 {:.2} ms vs /healthz p99 {:.2} ms.",
                    r.latency.p99, h.latency.p99
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\nhooklog peak resident memory over the whole run (VmHWM): {:.1} MB. {stopped}",
        hwm_kb as f64 / 1024.0
    );
    let _ = writeln!(out, "Load average at the end: {}.", loadavg());
    print!("{out}");
    let _ = std::io::stdout().flush();
}
