//! The checks of this machine: the configuration, the data directory, the log, and the
//! running daemon (its `/readyz` and, with the operator token, `/admin/status`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::report::{cut, Finding};
use crate::admin::api::Status as AdminStatus;
use crate::config::secret::Secret;
use crate::config::{Config, ConfigError};
use crate::log::{Log, LogBackend, LogError};
use crate::metrics::Metrics;

/// How the log can be read for the activity check.
pub(super) enum LogAccess {
    /// The daemon runs and its admin API takes the operator token.
    Admin(AdminApi),
    /// No daemon holds the log: opened directly (sled).
    Direct(Arc<dyn Log>),
    /// Neither; why.
    Unreadable(String),
}

/// The running daemon's admin API, with the operator token.
pub(super) struct AdminApi {
    pub(super) base: String,
    token: Secret,
    agent: ureq::Agent,
}

impl AdminApi {
    /// `GET base + path` decoded as JSON; the error says what failed, never the token.
    pub(super) fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let url = format!("{}{path}", self.base);
        match self
            .agent
            .get(&url)
            .set("Authorization", &format!("Bearer {}", self.token.expose()))
            .call()
        {
            Ok(resp) => resp
                .into_json::<T>()
                .map_err(|e| format!("{url}: unexpected answer: {e}")),
            Err(ureq::Error::Status(code, _)) => Err(format!("{url} answered {code}")),
            Err(ureq::Error::Transport(t)) => Err(format!("{url}: {}", t.kind())),
        }
    }
}

/// 1. The configuration, as `check-config` loads it. `None` when it did not load.
pub(super) fn configuration(
    loaded: Result<(Config, Option<PathBuf>), ConfigError>,
    out: &mut Vec<Finding>,
) -> Option<Config> {
    const CHECK: &str = "configuration";
    match loaded {
        Ok((config, file)) => {
            let from = match &file {
                Some(f) => format!("{} and the environment", f.display()),
                None => "the embedded defaults and the environment (no file)".to_owned(),
            };
            out.push(Finding::ok(
                CHECK,
                format!("loads and validates from {from}"),
            ));
            for w in config.warnings() {
                out.push(Finding::warn(
                    CHECK,
                    w,
                    "see docs/configuration.md for the key",
                ));
            }
            Some(config)
        }
        Err(e) => {
            out.push(Finding::fail(
                CHECK,
                format!("does not load: {e}"),
                "fix the key named above (`hooklog check-config` shows the same message)",
            ));
            None
        }
    }
}

/// 2. The data directory: there, writable, room above the reserve, private, whose.
pub(super) fn data_dir(config: &Config, out: &mut Vec<Finding>) {
    const CHECK: &str = "data directory";
    let dir = &config.data_dir;
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => {
            out.push(Finding::fail(
                CHECK,
                format!("{shown} is not a directory"),
                "point data_dir (HOOKLOG_DATA_DIR) at the daemon's directory",
            ));
            return;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out.push(Finding::warn(
                CHECK,
                format!("{shown} does not exist"),
                "the daemon creates it at its first start; if it has started before, data_dir \
                 (HOOKLOG_DATA_DIR) does not name its directory",
            ));
            return;
        }
        Err(e) => {
            out.push(Finding::fail(
                CHECK,
                format!("{shown}: {e}"),
                "run hooklog doctor as the daemon's user (the timer does)",
            ));
            return;
        }
    };
    // Writable: a probe file made and removed at once (the one file the doctor writes).
    let probe = dir.join(format!(".hooklog-doctor-probe-{}", std::process::id()));
    let mut probe_owner = None;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(f) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                probe_owner = f.metadata().ok().map(|m| m.uid());
            }
            drop(f);
            let _ = std::fs::remove_file(&probe);
            out.push(Finding::ok(
                CHECK,
                format!("{shown} exists and is writable"),
            ));
        }
        Err(e) => out.push(Finding::fail(
            CHECK,
            format!("{shown} is not writable: {e}"),
            "run hooklog doctor as the daemon's user; the daemon needs to write there (chown \
             the directory to that user)",
        )),
    }
    free_space(config, out);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            out.push(Finding::warn(
                CHECK,
                format!(
                    "{shown} has mode {mode:03o}: others than its owner can reach it, and it \
                     holds the admin token and every raw webhook"
                ),
                format!("chmod 700 {shown}"),
            ));
        }
        let token = crate::admin::token_path(dir);
        if let Ok(m) = std::fs::metadata(&token) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                out.push(Finding::warn(
                    CHECK,
                    format!(
                        "{} has mode {mode:03o}: the operator token is readable by others",
                        token.display()
                    ),
                    format!("chmod 600 {}", token.display()),
                ));
            }
        }
        let owner = meta.uid();
        match probe_owner {
            Some(me) if me != owner => out.push(Finding::warn(
                CHECK,
                format!("{shown} belongs to uid {owner}, the doctor runs as uid {me}"),
                "run hooklog doctor as the daemon's user (the timer does), so that it sees what \
                 the daemon sees",
            )),
            _ => out.push(Finding::ok(
                CHECK,
                format!("{shown} has mode {mode:03o}, owner uid {owner}"),
            )),
        }
    }
}

/// Free space of the data directory's file system against `log.min_free_mb`.
fn free_space(config: &Config, out: &mut Vec<Finding>) {
    const CHECK: &str = "data directory";
    let Ok(st) = nix::sys::statvfs::statvfs(&config.data_dir) else {
        out.push(Finding::warn(
            CHECK,
            "the file system's free space cannot be read (statvfs failed)",
            "check it by hand: df -h on the data directory",
        ));
        return;
    };
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let free = u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()));
    let free_mb = free / (1024 * 1024);
    let reserve = config.log.min_free_mb;
    let what = format!("{free_mb} MiB free; log.min_free_mb is {reserve}");
    if reserve > 0 && free_mb < reserve {
        out.push(Finding::fail(
            CHECK,
            format!("{what}: webhooks are answered 503 until space returns"),
            "free space on that file system now (ops/runbooks/disk-full.md)",
        ));
    } else if reserve > 0 && free_mb < reserve.saturating_mul(2) {
        out.push(Finding::warn(
            CHECK,
            format!("{what}: less than twice the reserve"),
            "free space or grow the file system before the reserve is reached \
             (ops/runbooks/disk-full.md)",
        ));
    } else {
        out.push(Finding::ok(CHECK, what));
    }
}

/// Whether the daemon answers, and how.
enum Daemon {
    Ready,
    NotReady(u16),
    Down(String),
}

/// 3. The log engine, and the running daemon. Returns how the activity check may read the log.
pub(super) fn log_and_daemon(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    timeout: Duration,
    out: &mut Vec<Finding>,
) -> LogAccess {
    let agent = super::services::agent(timeout);
    let public = config.server.listen.first().copied().map(reachable);
    let daemon = match public {
        None => Daemon::Down("server.listen is empty".into()),
        Some(addr) => match agent.get(&format!("http://{addr}/readyz")).call() {
            Ok(_) => Daemon::Ready,
            Err(ureq::Error::Status(code, _)) => Daemon::NotReady(code),
            Err(ureq::Error::Transport(t)) => Daemon::Down(format!("{addr}: {}", t.kind())),
        },
    };
    let running = !matches!(daemon, Daemon::Down(_));
    let direct = match config.log.backend {
        LogBackend::Sled => sled(config, running, out),
        LogBackend::Jetstream => {
            jetstream(config, runtime, timeout, running, out);
            None
        }
    };
    const CHECK: &str = "daemon";
    let listen = public.map(|a| a.to_string()).unwrap_or_default();
    match daemon {
        Daemon::Ready => out.push(Finding::ok(
            CHECK,
            format!("/readyz on {listen} answers ready"),
        )),
        Daemon::NotReady(code) => out.push(Finding::fail(
            CHECK,
            format!("/readyz on {listen} answers {code}: webhooks are refused"),
            "read why in the daemon's log: journalctl -u hooklog | tail",
        )),
        Daemon::Down(why) => out.push(Finding::warn(
            CHECK,
            format!("nothing answers /readyz ({why}): the daemon is not running here"),
            "start it: systemctl start hooklog (a stopped daemon loses Twilio webhooks for good)",
        )),
    }
    if !running {
        return match direct {
            Some(log) => LogAccess::Direct(log),
            None => {
                LogAccess::Unreadable("no daemon runs and the log cannot be opened directly".into())
            }
        };
    }
    if let Some(log) = direct {
        // The daemon runs, yet its log was not locked: it uses another data directory.
        let _ = log.close();
    }
    admin(config, agent, out)
}

/// The sled log: opened when its database exists and no daemon holds it.
fn sled(config: &Config, running: bool, out: &mut Vec<Finding>) -> Option<Arc<dyn Log>> {
    const CHECK: &str = "log";
    let dir = crate::log_dir(&config.data_dir);
    if !dir.join("conf").exists() && !dir.join("db").exists() {
        out.push(Finding::warn(
            CHECK,
            format!("no sled log in {} yet", dir.display()),
            "the daemon creates it at its first start; if it has run, data_dir does not name \
             its directory",
        ));
        return None;
    }
    match crate::log::sled::SledLog::open(&dir, &crate::sled_options(config), Metrics::new()) {
        Ok(log) => {
            let log: Arc<dyn Log> = Arc::new(log);
            match log.stats() {
                Ok(s) => out.push(Finding::ok(
                    CHECK,
                    format!(
                        "sled log {} opens: {} records (seq {}–{}), {} MiB",
                        dir.display(),
                        s.count,
                        s.first_seq,
                        s.last_seq,
                        s.bytes / (1024 * 1024)
                    ),
                )),
                Err(e) => out.push(Finding::fail(
                    CHECK,
                    format!("sled log {} opens but cannot be read: {e}", dir.display()),
                    "see ops/runbooks/restore.md",
                )),
            }
            if running {
                out.push(Finding::warn(
                    CHECK,
                    "a daemon answers /readyz, but it does not hold this data directory",
                    "data_dir (HOOKLOG_DATA_DIR) is not the running daemon's: run the doctor with \
                     the daemon's configuration",
                ));
            }
            Some(log)
        }
        Err(LogError::Locked(_)) => {
            let what = if running {
                "held by the running daemon (sled allows one process); asking it instead"
            } else {
                "held by another process, though nothing answers /readyz (a hooklog-replay \
                 command, or a daemon listening elsewhere)"
            };
            out.push(Finding::ok(
                CHECK,
                format!("sled log {}: {what}", dir.display()),
            ));
            None
        }
        Err(e) => {
            out.push(Finding::fail(
                CHECK,
                format!("sled log {} does not open: {e}", dir.display()),
                "see ops/runbooks/restore.md",
            ));
            None
        }
    }
}

/// The JetStream stream: there, as configured. Looked at, never created or changed.
fn jetstream(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    timeout: Duration,
    running: bool,
    out: &mut Vec<Finding>,
) {
    const CHECK: &str = "log";
    let o = crate::jetstream_options(config);
    let stream = o.stream.clone();
    let found = runtime.block_on(async {
        tokio::time::timeout(timeout, crate::log::jetstream::connect::inspect(&o)).await
    });
    match found {
        Err(_) => out.push(Finding::fail(
            CHECK,
            format!("JetStream: no answer within {} s", timeout.as_secs()),
            "check that NATS runs and log.jetstream.nats_url reaches it",
        )),
        Ok(Ok(r)) if r.mismatches.is_empty() => out.push(Finding::ok(
            CHECK,
            format!(
                "JetStream stream {stream}: {} records (last seq {}), {} replica(s), as configured",
                r.messages, r.last_seq, r.replicas
            ),
        )),
        Ok(Ok(r)) => {
            for m in r.mismatches {
                out.push(Finding::fail(
                    CHECK,
                    format!("JetStream stream {stream}: {m}"),
                    format!("change log.jetstream or the stream (nats stream edit {stream})"),
                ));
            }
        }
        Ok(Err(e @ LogError::Incompatible(_))) if !running => out.push(Finding::warn(
            CHECK,
            e.to_string(),
            "start the daemon once (it creates the stream), or check log.jetstream.stream",
        )),
        Ok(Err(e)) => out.push(Finding::fail(
            CHECK,
            e.to_string(),
            "check log.jetstream (nats_url, credentials, TLS) and that NATS runs",
        )),
    }
}

/// The admin API of the running daemon: `/admin/status` with the operator token.
fn admin(config: &Config, agent: ureq::Agent, out: &mut Vec<Finding>) -> LogAccess {
    const CHECK: &str = "daemon";
    let token = match &config.server.admin_token {
        Some(t) => Some(t.clone()),
        None => std::fs::read_to_string(crate::admin::token_path(&config.data_dir))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(Secret::new),
    };
    let Some(token) = token else {
        let why = "the operator token is not at hand (server.admin_token unset and the data \
                   directory's admin.token unreadable)";
        out.push(Finding::warn(
            CHECK,
            format!("{why}: the admin API was not asked"),
            "run hooklog doctor as the daemon's user, or set server.admin_token",
        ));
        return LogAccess::Unreadable(why.into());
    };
    let api = AdminApi {
        base: format!("http://{}", reachable(config.server.admin_listen)),
        token,
        agent,
    };
    match api.get::<AdminStatus>("/admin/status") {
        Ok(status) => {
            out.push(Finding::ok(
                CHECK,
                format!(
                    "admin API at {}: log seq {}–{}, {} consumer(s){}",
                    api.base,
                    status.log.first_seq,
                    status.log.last_seq,
                    status.consumers.len(),
                    status
                        .standby
                        .as_deref()
                        .map(|s| format!(", {}", cut(s, 80)))
                        .unwrap_or_default()
                ),
            ));
            for c in &status.consumers {
                if c.state == "failed" {
                    out.push(Finding::warn(
                        CHECK,
                        format!(
                            "consumer {} has failed: {}",
                            cut(&c.name, 40),
                            cut(c.last_error.as_deref().unwrap_or("no error recorded"), 200)
                        ),
                        "hooklog-replay status; see docs/operations.md for the consumer",
                    ));
                }
                if c.dead_letters > 0 {
                    out.push(Finding::warn(
                        CHECK,
                        format!(
                            "consumer {} holds {} dead letter(s)",
                            cut(&c.name, 40),
                            c.dead_letters
                        ),
                        "hooklog-replay dead-letters, then redrive what was fixed",
                    ));
                }
            }
            LogAccess::Admin(api)
        }
        Err(e) => {
            let refused = e.ends_with("401") || e.ends_with("403");
            out.push(Finding::warn(
                CHECK,
                format!("the admin API did not answer the status: {e}"),
                if refused {
                    "the operator token was refused: server.admin_token (or admin.token) is not \
                     the daemon's"
                } else {
                    "check server.admin_listen is the daemon's admin address"
                },
            ));
            LogAccess::Unreadable(format!("the admin API did not answer: {e}"))
        }
    }
}

/// A listen address one can connect to: an unspecified one (`0.0.0.0`, `::`) becomes loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}
