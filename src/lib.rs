//! hooklog: the webhook backbone for Quo (formerly OpenPhone), Twilio and SalesMsg.
//!
//! # Layout
//!
//! One folder (or file) per component, in layers: a file imports only its own component and
//! the layers below; the one exception is [`config`] composing the sections that live in their
//! components (each section's own `config.rs`). `tests/it/architecture.rs` checks both, and
//! that no import loops. From the ground up:
//!
//! 1. Leaves: [`provider`] (the one `Provider`), [`phone`] (E.164), [`clock`] (the one
//!    `Clock`), [`retry`] (the one `RetryPolicy`), [`metrics`], [`state`] (consumer state),
//!    and `config`'s own leaves, [`config::secret`] and [`config::de`], which every section
//!    uses wherever it lives.
//! 2. The envelope and pure logic: [`event`] (what the log stores, versioned), [`provenance`]
//!    (who may write which record: the one table every consumer asks), [`signature`]
//!    (one pure module per webhook scheme), [`parse`] (typed events and dedup keys),
//!    [`gates`] (the outbound compliance gates).
//! 3. [`log`] (the `Log` trait, whose header lists what consumers rely on, and the sled and
//!    JetStream engines), [`config`] (defaults < file < `HOOKLOG_*`, validated), [`error`] (the
//!    one error → HTTP mapping), [`alerts`] (operator alerts, Discord), [`send`] (the provider
//!    send clients and their limits), [`http`] (listener plumbing).
//! 4. [`consumers`]: the `Consumer` trait, the one driver, and one folder per consumer (dedup,
//!    compliance, outbound, postgres, dispatch, sender, staleness, controls), each with its pure logic,
//!    its driver shell and the read model others use; [`backfill`] (gap recovery from the
//!    providers' REST APIs).
//! 5. Faces: [`edge`] (the public webhook listener), [`admin`] (the admin API and the
//!    agents' outbound API), [`fixture`] (signed request files for tests and smoke tests),
//!    [`doctor`] (`hooklog doctor`: the deployment's checks and the webhook drift audit).
//! 6. [`reload`]: SIGHUP and `POST /admin/reload` put a new configuration in force in the
//!    components above (each reads its reloadable settings from a [`live`] cell, a leaf).
//!    This file: [`run`], the daemon. It binds nothing itself (the caller passes bound
//!    listeners, so tests use `127.0.0.1:0`) and returns after a graceful shutdown.
//!
//! The design in prose, with the guarantees and the provider facts the code relies on, is in
//! `docs/` (start at `docs/architecture.md`).

/// mimalloc for every program that links hooklog (the daemon, `hooklog-replay`, tests and
/// benches, so that a benchmark measures the allocator the daemon runs with). Parsing and
/// decoding records is allocation-heavy: glibc's malloc and free took a quarter of a
/// consumer's time in a rewind.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod admin;
pub mod alerts;
pub mod backfill;
pub mod clock;
pub mod config;
pub mod consumers;
pub mod doctor;
pub mod edge;
pub mod error;
pub mod event;
pub mod fixture;
pub mod gates;
pub mod http;
pub mod live;
pub mod log;
pub mod metrics;
pub mod parse;
pub mod phone;
pub mod provenance;
pub mod provider;
pub mod reload;
pub mod retry;
pub mod send;
pub mod signature;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::log::sled::{SledLog, SledOptions};
use crate::log::Log;
use crate::metrics::Metrics;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data directory cannot be created or used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The log could not be opened or closed cleanly.
    #[error(transparent)]
    Log(#[from] log::LogError),
    /// The admin token could not be loaded or created.
    #[error(transparent)]
    Token(#[from] admin::TokenError),
    /// A signing key could not be decoded.
    #[error(transparent)]
    Keys(#[from] edge::verifier::VerifierError),
    /// A consumer could not be started.
    #[error("consumer: {0}")]
    Consumer(String),
    /// The log failed for good while running (a write error, e.g. a full disk below the
    /// reserve): the daemon stopped so that its service manager starts it again.
    #[error("stopped because the log failed; a restart reopens it: {0}")]
    LogFailed(String),
    /// A listener stopped serving while running (its socket became unusable, or its task
    /// panicked): the daemon stopped so that its service manager starts it again and the
    /// port is bound anew.
    #[error("stopped because the listener {listener} stopped serving; a restart binds it again: {reason}")]
    ListenerDown {
        /// The listener (`webhook <addr>` or `admin <addr>`).
        listener: String,
        /// Why it stopped.
        reason: String,
    },
}

impl From<state::StateError> for RunError {
    fn from(e: state::StateError) -> Self {
        RunError::Consumer(e.to_string())
    }
}

/// Bound sockets for [`run`].
pub struct Listeners {
    /// One per `server.listen` address; each serves every public route.
    pub public: Vec<TcpListener>,
    /// The admin API.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &Config) -> Result<Listeners, RunError> {
        let mut public = Vec::new();
        for addr in &config.server.listen {
            public.push(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| RunError::Bind {
                        addr: *addr,
                        source,
                    })?,
            );
        }
        let addr = config.server.admin_listen;
        let admin = TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        Ok(Listeners { public, admin })
    }
}

/// The directory of the sled log inside a data directory.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

/// sled options from configuration.
pub fn sled_options(config: &Config) -> SledOptions {
    SledOptions {
        cache_capacity: config.log.cache_mb * 1024 * 1024,
        min_free_bytes: config.log.min_free_mb.saturating_mul(1024 * 1024),
        ..SledOptions::default()
    }
}

/// Creates the data directory (mode 0700: it holds the admin token and raw webhooks).
pub fn prepare_data_dir(dir: &Path) -> Result<(), RunError> {
    let err = |source| RunError::DataDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
    }
    Ok(())
}

/// Runs the daemon on the log `[log] backend` names until `shutdown` resolves.
///
/// The log is opened first, and a transient failure to open it ([`log::LogError::is_transient`]:
/// a data directory another process still holds, a NATS server or cluster that is not up yet)
/// is retried with backoff ([`START_RETRY_FIRST`] doubling to [`START_RETRY_MAX`]), one
/// warning per try saying what failed and when the next try is. Meanwhile the listeners are
/// bound but not served (a connection waits in the kernel's backlog, a health check times
/// out), and a `shutdown` returns `Ok` at once (after the try under way, if any). Any other
/// error (the configuration, a stream that does not match) is returned: it needs a person.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_reloading(config, None, listeners, shutdown).await
}

/// How a daemon reloads its configuration ([`reload`]): where from, and the requests to do
/// it (SIGHUP; `POST /admin/reload` calls the same reloader directly).
pub struct Reloading {
    /// The sources to read again.
    pub source: reload::Source,
    /// One message per request (the daemon's SIGHUP handler sends them).
    pub requests: tokio::sync::mpsc::Receiver<()>,
}

/// [`run`] with reloads: without `reloading`, `POST /admin/reload` answers 422 (nothing to
/// read again).
pub async fn run_reloading(
    config: Config,
    reloading: Option<Reloading>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    prepare_data_dir(&config.data_dir)?;
    let metrics = Metrics::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let Some(log) = open_daemon_log_waiting(&config, &metrics, shutdown.as_mut()).await? else {
        tracing::info!("stopped while waiting for the log; hooklog stopped");
        return Ok(());
    };
    run_on_log(config, reloading, listeners, log, metrics, shutdown).await
}

/// The first wait after a transient failure to open the log at start.
pub const START_RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between two tries to open the log at start.
pub const START_RETRY_MAX: Duration = Duration::from_secs(30);

/// [`open_daemon_log`], tried again while it fails transiently; `None` if `shutdown`
/// resolved first (a log opened meanwhile is closed again).
async fn open_daemon_log_waiting<S: Future<Output = ()>>(
    config: &Config,
    metrics: &Metrics,
    mut shutdown: std::pin::Pin<&mut S>,
) -> Result<Option<Arc<dyn Log>>, RunError> {
    let mut delay = START_RETRY_FIRST;
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let (c, m) = (config.clone(), metrics.clone());
        let mut opening = tokio::task::spawn_blocking(move || open_daemon_log(&c, m));
        let stopping = tokio::select! {
            opened = &mut opening => Some(opened),
            _ = shutdown.as_mut() => None,
        };
        let Some(opened) = stopping else {
            // The try under way cannot be cancelled (it blocks a thread); it is bounded by
            // the connection timeouts. What it opened is closed again.
            tracing::info!("shutdown signal received while opening the log");
            if let Ok(Ok(log)) = opening.await {
                let _ = tokio::task::spawn_blocking(move || log.close()).await;
            }
            return Ok(None);
        };
        let error = match opened
            .map_err(|e| log::LogError::Storage(format!("log open task failed: {e}")))?
        {
            Ok(log) => {
                if attempt > 1 {
                    tracing::info!(attempt, "the log is open");
                }
                return Ok(Some(log));
            }
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e.into()),
        };
        let next_try = chrono::Utc::now()
            + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::zero());
        tracing::warn!(
            attempt,
            error = %error,
            retry_in_secs = delay.as_secs(),
            next_try = %next_try.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "cannot open the log yet; trying again (webhooks are not served until it opens)"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.as_mut() => {
                tracing::info!("shutdown signal received while waiting for the log");
                return Ok(None);
            }
        }
        delay = (delay * 2).min(START_RETRY_MAX);
    }
}

/// [`open_log`] for the daemon: on JetStream it also runs for the consumers' lease on the
/// stream ([`log::jetstream::lease`]): the replica that holds it runs the consumers, the others serve the
/// edge as standbys ([`log::Log::leadership`]).
pub fn open_daemon_log(config: &Config, metrics: Metrics) -> Result<Arc<dyn Log>, log::LogError> {
    open_engine(config, metrics, true)
}

/// Opens the engine `[log] backend` names (blocking: call it off the async threads).
pub fn open_log(config: &Config, metrics: Metrics) -> Result<Arc<dyn Log>, log::LogError> {
    open_engine(config, metrics, false)
}

fn open_engine(
    config: &Config,
    metrics: Metrics,
    consumers: bool,
) -> Result<Arc<dyn Log>, log::LogError> {
    Ok(match config.log.backend {
        log::LogBackend::Sled => Arc::new(SledLog::open(
            &log_dir(&config.data_dir),
            &sled_options(config),
            metrics,
        )?),
        log::LogBackend::Jetstream => {
            let log = log::jetstream::JetStreamLog::open(
                &jetstream_options(config),
                &state_dir(&config.data_dir),
                metrics,
            )?;
            if consumers {
                log.campaign(Duration::from_secs(config.log.jetstream.lease_secs))?;
            }
            Arc::new(log)
        }
    })
}

/// The local state database of the JetStream engine inside a data directory.
pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state")
}

/// JetStream options from configuration.
pub fn jetstream_options(config: &Config) -> log::jetstream::JetStreamOptions {
    use log::jetstream::Credentials;
    let j = &config.log.jetstream;
    let credentials = if let Some(path) = &j.creds_path {
        Credentials::File(path.clone())
    } else if let Some(token) = &j.token {
        Credentials::Token(token.expose().to_owned())
    } else if let Some(seed) = &j.nkey_seed {
        Credentials::NKey(seed.expose().to_owned())
    } else {
        Credentials::None
    };
    log::jetstream::JetStreamOptions {
        url: j.nats_url.clone(),
        stream: j.stream.clone(),
        subject: j.subject.clone(),
        replicas: j.replicas,
        duplicate_window: Duration::from_secs(j.duplicate_window_secs),
        ack_timeout: Duration::from_millis(j.ack_timeout_ms),
        credentials,
        tls_ca: j.tls_ca_path.clone(),
        tls_client: j.tls_cert_path.clone().zip(j.tls_key_path.clone()),
        tls_required: j.tls_required,
        state_cache_capacity: config.log.cache_mb * 1024 * 1024,
    }
}

/// Runs the daemon on a given log (tests use this to inject a failing one).
pub async fn run_with_log(
    config: Config,
    listeners: Listeners,
    log: Arc<dyn Log>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_on_log(config, None, listeners, log, metrics, shutdown).await
}

async fn run_on_log(
    config: Config,
    reloading: Option<Reloading>,
    listeners: Listeners,
    log: Arc<dyn Log>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    prepare_data_dir(&config.data_dir)?;
    let token = admin::load_or_create_token(&config)?;
    // Before anything starts: a generated operator token may equal an agent's.
    let tokens = admin::routes::Tokens::new(token, &config.server.agent_tokens)
        .map_err(admin::TokenError::from)?;
    let verifier = edge::verifier::Verifier::from_config(&config)?;
    for provider in provider::Provider::ALL {
        if !verifier.is_configured(provider) {
            tracing::warn!(
                provider = provider.as_str(),
                "no keys configured: its webhooks are answered 503 until configured"
            );
        }
    }
    let alerter = alerts::Alerter::new(&config.alerts, Some(&metrics));
    // The consumers' reloadable settings: what they start with, and what a reload replaces.
    let live = ConsumerCells {
        gates: live::Live::new(reload::gate_settings(&config)),
        send_clients: live::Live::new(consumers::sender::SendClients::from_config(&config)),
        dispatch: live::Live::new(
            reload::dispatch_of(&config).map_err(|e| RunError::Consumer(e.to_string()))?,
        ),
        trust_opt_in: live::Live::new(config.salesmsg.trust_opt_in),
        postgres_mirror: consumers::postgres::MirrorSetter::new(config.postgres.mirror.clone()),
    };
    let registry = Arc::new(consumers::Registry::default());
    let (consumers_stop, consumers_rx) = watch::channel(false);
    let (retention_stop, retention_rx) = watch::channel(false);
    // The consumers and retention run on the leader only: at once on sled (one process per
    // log), and on JetStream once this replica holds the consumers' lease ([`log::jetstream::lease`]).
    // A standby serves the edge meanwhile.
    let start_leading = || -> Result<Leading, RunError> {
        let tasks = start_consumers(
            &config,
            &live,
            &log,
            &metrics,
            &alerter,
            &registry,
            consumers_rx.clone(),
        )?;
        // Retention (and the log size gauges): started after the consumers registered, so a
        // consumer that has not stored a cursor yet already holds it back.
        let retention = tokio::spawn(
            consumers::retention::RetentionTask {
                retention_days: config.log.retention_days,
                interval: Duration::from_secs(config.log.prune_interval_secs),
                data_dir: config.data_dir.clone(),
            }
            .run(
                log.clone(),
                registry.clone(),
                metrics.clone(),
                retention_rx.clone(),
            ),
        );
        metrics.consumers_leader.set(1);
        Ok(Leading { tasks, retention })
    };
    let mut leadership = log.leadership();
    let mut leading = None;
    if *leadership.borrow_and_update() == log::Leadership::Leader {
        leading = Some(start_leading()?);
    } else {
        metrics.consumers_leader.set(0);
        tracing::info!(
            "standby: another replica runs the consumers; this one serves the edge and takes \
             over when that replica's lease expires"
        );
    }

    let ready = Arc::new(AtomicBool::new(false));
    let replays = Arc::new(edge::replay::ReplayCache::new(
        config.server.replay_cache_entries,
        edge::replay::ReplayCache::window_for(
            config.openphone.tolerance_secs,
            config.dedup.ttl_hours,
        ),
        metrics.replay_cache_evicted.clone(),
    ));
    let edge = Arc::new(
        edge::Edge::new(
            verifier,
            log.clone(),
            metrics.clone(),
            config.server.max_body_bytes,
            &config.twilio.voice,
            ready.clone(),
            replays,
        )
        .with_consumers(registry.clone()),
    );
    // Before the listeners: a replay of what the log already holds must not be stored again.
    // From the snapshot of the last stop and the log after it, or from the log's tail.
    let rebuilding = edge.clone();
    let rebuilt = tokio::task::spawn_blocking(move || {
        edge::replay::rebuild_logged(
            &rebuilding.replays,
            rebuilding.log.as_ref(),
            &rebuilding.verifier.get(),
        )
    })
    .await;
    if let Err(e) = rebuilt {
        tracing::warn!(error = %e, "the replay cache was not rebuilt from the log");
    }
    let mut admin = admin::Admin::new(
        tokens,
        log.clone(),
        metrics.clone(),
        registry.clone(),
        &config.lines,
        config.compliance.kill_switch,
    )?;
    let (reloader, mut reload_requests) = match reloading {
        Some(Reloading { source, requests }) => {
            let cells = reload::Cells {
                verifier: edge.verifier.clone(),
                voice_twiml: edge.voice_twiml.clone(),
                admin: admin.live_settings(),
                gates: live.gates.clone(),
                send_clients: live.send_clients.clone(),
                dispatch: live.dispatch.clone(),
                trust_opt_in: live.trust_opt_in.clone(),
                postgres_mirror: live.postgres_mirror.clone(),
            };
            let reloader = Arc::new(reload::Reloader::new(
                source,
                config.clone(),
                cells,
                alerter.clone(),
                metrics.clone(),
            ));
            admin = admin.with_reloader(reloader.clone());
            (Some(reloader), Some(requests))
        }
        None => (None, None),
    };
    let admin = Arc::new(admin);

    let limits = http::Limits::from_config(&config.server);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Servers::new(ready.clone());
    // Ready before the listeners start: their sockets are bound (connections wait in the
    // backlog), and a listener that ends clears it for good, so a listener that ends at once
    // cannot be overwritten by a later `true`.
    ready.store(true, Ordering::Release);
    for listener in listeners.public {
        let name = listener_name("webhook", &listener);
        let edge = edge.clone();
        let filter = http::raw(
            move |req| edge.clone().handle(req),
            limits.body_read_timeout,
        );
        let server = http::serve(
            filter,
            listener,
            &name,
            limits,
            &metrics,
            stopped(stop_rx.clone()),
        );
        tracing::info!(listener = %name, "webhook listener up");
        servers.spawn(name, server);
    }
    {
        let name = listener_name("admin", &listeners.admin);
        let filter = http::raw(
            move |req| admin.clone().handle(req),
            limits.body_read_timeout,
        );
        let server = http::serve(
            filter,
            listeners.admin,
            &name,
            limits,
            &metrics,
            stopped(stop_rx.clone()),
        );
        tracing::info!(listener = %name, "admin listener up");
        servers.spawn(name, server);
    }
    tracing::info!(data_dir = %config.data_dir.display(), "hooklog is ready");

    tokio::pin!(shutdown);
    // False once the engine has dropped its side of the watch: nothing can elect us any more.
    let mut electable = true;
    let failure = loop {
        tokio::select! {
            _ = &mut shutdown => break None,
            failure = log_failure(log.failure()) => break Some(Failure::Log(failure)),
            (listener, reason) = servers.ended() => break Some(Failure::Listener { listener, reason }),
            Some(()) = next_request(&mut reload_requests) => {
                if let Some(reloader) = reloader.clone() {
                    // Logged, counted and alerted by the reloader; the answer is for the admin route.
                    let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                }
            }
            changed = leadership.changed(), if leading.is_none() && electable => {
                if changed.is_err() {
                    electable = false;
                } else if *leadership.borrow_and_update() == log::Leadership::Leader {
                    tracing::info!("this replica now holds the consumers' lease: starting the consumers");
                    leading = Some(start_leading()?);
                }
            }
        }
    };
    ready.store(false, Ordering::Release);
    if let Some(Failure::Log(failure)) = &failure {
        tracing::error!(
            error = %failure,
            "the log failed and refuses every append until it is reopened; stopping so the \
             service manager restarts hooklog (webhooks get 503 meanwhile, and are retried)"
        );
        alerter.raise(alerts::Alert {
            key: "log_failed".into(),
            severity: alerts::Severity::Critical,
            title: "hooklog's log failed: stopping for a restart".into(),
            reason: format!(
                "{failure}. The log refuses this process's writes until it is reopened (sled \
                 after a failed write; JetStream after another replica took the consumers' \
                 lease), so hooklog is stopping; its webhooks get 503 meanwhile (other \
                 replicas on the same stream keep answering)."
            ),
            next_step: "systemd's Restart=on-failure starts hooklog again (on JetStream as a \
                        standby if another replica leads). If the disk is full, free space \
                        first: hooklog answers 503 below log.min_free_mb free and resumes by \
                        itself above it."
                .into(),
        });
    }
    if let Some(Failure::Listener { listener, reason }) = &failure {
        tracing::error!(
            listener = %listener,
            error = %reason,
            "a listener stopped serving; stopping so the service manager restarts hooklog \
             (its port refuses connections meanwhile)"
        );
        alerter.raise(alerts::Alert {
            key: "listener_down".into(),
            severity: alerts::Severity::Critical,
            title: format!("hooklog's listener {listener} stopped: stopping for a restart"),
            reason: format!(
                "{reason}. The listener no longer accepts connections, so hooklog is stopping \
                 rather than looking healthy with a dead port; the providers' requests are \
                 refused until it is back, and they retry."
            ),
            next_step: "systemd's Restart=on-failure starts hooklog again and it binds the \
                        port anew. If it keeps stopping, read the log lines before this one \
                        (the listener's last accept error)."
                .into(),
        });
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let drained = tokio::time::timeout(grace, servers.drain()).await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "connections still open after the grace period; closing them"
        );
        servers.abort_all();
    }
    if let Some(Leading {
        tasks: mut consumer_tasks,
        retention,
    }) = leading
    {
        // A retention pass in progress is waited for (up to the grace period).
        let _ = retention_stop.send(true);
        if tokio::time::timeout(grace, retention).await.is_err() {
            tracing::warn!("a retention pass is still running after the grace period");
        }
        // Consumers finish the batch in hand and save their cursors.
        let _ = consumers_stop.send(true);
        if tokio::time::timeout(grace, async {
            while consumer_tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("consumers still busy after the grace period; stopping them");
            consumer_tasks.abort_all();
        }
    }
    // After the drain, so that no key settles after it: the next start loads this instead
    // of reading the window's records. Also after a failure, which may still leave the log
    // readable (a failed save is only a slower next start).
    let saving = edge.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || {
        edge::replay::save_logged(&saving.replays, saving.log.as_ref())
    })
    .await
    {
        tracing::warn!(error = %e, "the replay cache was not saved");
    }
    alerter.flush(Duration::from_secs(5)).await;
    // Everything acknowledged is already flushed; this commits any append still queued
    // (its request was cut off) and stops the writer.
    let closing = log.clone();
    let closed = tokio::task::spawn_blocking(move || closing.close())
        .await
        .map_err(|e| log::LogError::Storage(format!("log close task failed: {e}")))?;
    match failure {
        // Closing a failed log fails too; the first error is the one worth reporting.
        Some(Failure::Log(failure)) => return Err(RunError::LogFailed(failure)),
        Some(Failure::Listener { listener, reason }) => {
            closed?;
            return Err(RunError::ListenerDown { listener, reason });
        }
        None => {}
    }
    closed?;
    tracing::info!("hooklog stopped");
    Ok(())
}

/// The next reload request, pending forever without a channel (or once it closed).
async fn next_request(requests: &mut Option<tokio::sync::mpsc::Receiver<()>>) -> Option<()> {
    match requests {
        Some(rx) => match rx.recv().await {
            Some(()) => Some(()),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The consumers' reloadable settings ([`reload`]).
struct ConsumerCells {
    gates: live::Live<consumers::outbound::GateSettings>,
    send_clients: live::Live<consumers::sender::SendClients>,
    dispatch: live::Live<Option<consumers::dispatch::Reloadable>>,
    trust_opt_in: live::Live<bool>,
    postgres_mirror: consumers::postgres::MirrorSetter,
}

/// Why the daemon stops on its own.
enum Failure {
    /// The log failed for good.
    Log(String),
    /// A listener stopped serving.
    Listener { listener: String, reason: String },
}

/// `webhook 127.0.0.1:18792`: a listener's name in logs, alerts and its `listener` label.
fn listener_name(kind: &str, listener: &TcpListener) -> String {
    match listener.local_addr() {
        Ok(addr) => format!("{kind} {addr}"),
        Err(_) => kind.to_owned(),
    }
}

/// The listener tasks. Any of them ending before the shutdown is a failure the daemon stops
/// for: hyper's server returns only on shutdown or on an accept error that retrying cannot fix
/// ([`http::ServeError`]), and a panic ends the task too.
struct Servers {
    tasks: tokio::task::JoinSet<Result<(), http::ServeError>>,
    names: std::collections::HashMap<tokio::task::Id, String>,
    ready: Arc<AtomicBool>,
}

/// Clears readiness when its listener task ends, however it ends (a panic unwinds through it),
/// so `/readyz` stops saying ready before the main loop has even seen the end.
struct NotReadyWhenDropped(Arc<AtomicBool>);

impl Drop for NotReadyWhenDropped {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Servers {
    fn new(ready: Arc<AtomicBool>) -> Servers {
        Servers {
            tasks: tokio::task::JoinSet::new(),
            names: std::collections::HashMap::new(),
            ready,
        }
    }

    fn spawn(
        &mut self,
        name: String,
        server: impl Future<Output = Result<(), http::ServeError>> + Send + 'static,
    ) {
        let guard = NotReadyWhenDropped(self.ready.clone());
        let task = self.tasks.spawn(async move {
            let _guard = guard;
            server.await
        });
        self.names.insert(task.id(), name);
    }

    /// The first listener task to end: its name and why. Pending while none has ended.
    async fn ended(&mut self) -> (String, String) {
        let Some(ended) = self.tasks.join_next_with_id().await else {
            // No listener at all (never the case: the admin listener is always there).
            return std::future::pending().await;
        };
        let name = |id| self.names.get(&id).cloned().unwrap_or_default();
        match ended {
            Ok((id, Ok(()))) => (
                name(id),
                "its server returned without being asked to stop".to_owned(),
            ),
            Ok((id, Err(e))) => (name(id), e.to_string()),
            Err(e) if e.is_panic() => (name(e.id()), "its task panicked".to_owned()),
            Err(e) => (name(e.id()), format!("its task was cancelled: {e}")),
        }
    }

    /// Waits for every listener to finish its in-flight requests.
    async fn drain(&mut self) {
        while let Some(ended) = self.tasks.join_next().await {
            if let Ok(Err(e)) = ended {
                tracing::warn!(error = %e, "a listener failed while draining");
            }
        }
    }

    fn abort_all(&mut self) {
        self.tasks.abort_all();
    }
}

/// What runs on the replica that runs the consumers.
struct Leading {
    tasks: tokio::task::JoinSet<()>,
    retention: tokio::task::JoinHandle<()>,
}

/// Resolves with the reason once the log reports that it failed for good; never resolves for
/// an engine that cannot fail that way.
async fn log_failure(mut rx: watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(failure) = rx.borrow_and_update().clone() {
            return failure;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Starts the consumers of this stage: the operator's stops (controls), dedup, compliance
/// (inbound), the Postgres sync (when
/// `postgres.url` is set), the outbound gates, the sender (when enabled and a provider has
/// send credentials), agent dispatch (when `dispatch.url` is set), and the staleness monitor.
fn start_consumers(
    config: &Config,
    live: &ConsumerCells,
    log: &Arc<dyn Log>,
    metrics: &Metrics,
    alerter: &alerts::Alerter,
    registry: &Arc<consumers::Registry>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinSet<()>, RunError> {
    let store = log.state();
    let ctx = consumers::driver::DriverContext {
        log: log.clone(),
        store: store.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        alerter: alerter.clone(),
        config: consumers::driver::DriverConfig {
            batch_size: config.consumers.batch_size,
            backoff_base: Duration::from_millis(config.consumers.backoff_base_ms),
            backoff_max: Duration::from_millis(config.consumers.backoff_max_ms),
            alert_after_failures: config.consumers.alert_after_failures,
            ..consumers::driver::DriverConfig::default()
        },
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut threads = Vec::new();
    // The operator's stops first: every other driver reads its pause from this projection,
    // and waits at start until it has read the log as it was then.
    let controls = consumers::controls::ControlsConsumer::new(store.as_ref(), alerter.clone())?;
    let view = consumers::controls::Controls::open(log.clone())?;
    registry.read_pauses_from(consumers::registry::PauseSource {
        projected_by: consumers::controls::NAME,
        paused: Arc::new(move |name: &str| {
            view.pause(name)
                .map(|p| p.is_some_and(|p| p.paused))
                .map_err(|e| e.to_string())
        }),
    });
    threads.push(consumers::driver::spawn_on_thread(
        controls,
        ctx.clone(),
        stop.clone(),
    ));
    let dedup = consumers::dedup::Dedup::new(store.as_ref(), config.dedup.ttl_hours)?;
    threads.push(consumers::driver::spawn_on_thread(
        dedup,
        ctx.clone(),
        stop.clone(),
    ));
    let compliance = consumers::compliance::Compliance::new(store.as_ref(), alerter.clone())?
        .trusting_salesmsg_opt_in(config.salesmsg.trust_opt_in)
        .reloading_from(&live.trust_opt_in);
    threads.push(consumers::driver::spawn_on_thread(
        compliance,
        ctx.clone(),
        stop.clone(),
    ));
    let outbound = consumers::outbound::Outbound::new(
        log.clone(),
        config.compliance.clone(),
        config.lines.clone(),
        config.clock.clone(),
        alerter.clone(),
        metrics.clone(),
    )?
    .reloading_from(&live.gates);
    threads.push(consumers::driver::spawn_on_thread(
        outbound,
        ctx.clone(),
        stop.clone(),
    ));

    if config.postgres.url.is_some() {
        let sink = consumers::postgres::PostgresSink::new(
            &config.postgres,
            config.dedup.ttl_hours,
            store.clone(),
            alerter.clone(),
            metrics,
        )
        .map_err(|e| RunError::Consumer(format!("postgres: {e}")))?
        // As a reload left it (the sink takes later ones between batches).
        .sharing_mirror(live.postgres_mirror.clone());
        let mut sink_ctx = ctx.clone();
        sink_ctx.config.batch_size = config.postgres.batch;
        threads.push(consumers::driver::spawn_on_thread(
            sink,
            sink_ctx,
            stop.clone(),
        ));
    } else {
        tracing::info!("no postgres.url: the Postgres sync is off (its cursor waits)");
    }

    // As a reload left them (the sender takes later ones between batches).
    let clients = (*live.send_clients.get()).clone();
    if !config.sender.enabled {
        tracing::info!("sender.enabled = false: the sender is off (its cursor waits)");
    } else if clients.is_empty() {
        tracing::info!(
            "no send credentials (openphone.api_key, or twilio.account_sid with an auth token): \
             the sender is off (its cursor waits)"
        );
    } else {
        tracing::info!(providers = ?clients.providers(), "the sender can send through these providers");
        let sender = consumers::sender::Sender::new(
            log.clone(),
            consumers::outbound::OutboundStore::open(store.as_ref())?,
            config.compliance.clone(),
            config.lines.clone(),
            clients,
            &config.sender,
            Arc::new(alerter.clone()),
            metrics.clone(),
        )?
        .with_clock(config.clock.clone())
        .reloading_from(&live.gates, &live.send_clients);
        threads.push(consumers::driver::spawn_on_thread(
            sender,
            ctx.clone(),
            stop.clone(),
        ));
    }

    if let Some(dispatch) = live.dispatch.get().as_ref() {
        let consumer = consumers::dispatch::Dispatch::new(
            dispatch.settings.clone(),
            dispatch.gateway.clone(),
            log.clone(),
            alerter.clone(),
            metrics.clone(),
        )?
        .reloading_from(&live.dispatch);
        threads.push(consumers::driver::spawn_on_thread(
            consumer,
            ctx.clone(),
            stop.clone(),
        ));
    } else {
        tracing::info!("no dispatch.url: dispatch off (its cursor waits)");
    }

    let monitor = consumers::staleness::StalenessMonitor::new(config.staleness.clone())
        .map_err(|e| RunError::Consumer(format!("staleness: {e}")))?;
    let monitor = Arc::new(std::sync::Mutex::new(monitor));
    let feeder = consumers::staleness::Staleness::new(store.as_ref(), monitor.clone())?;
    if !feeder.restored() {
        // No stored latest inbound time (a new data directory, or one from a version that
        // kept none): replay the last two days of the log into the monitor, once.
        let since = event::Micros(event::Micros::now().0 - 48 * 3_600_000_000);
        let start = log.seq_at_or_after(since)?;
        log.store_cursor(
            consumers::staleness::NAME,
            event::Seq(start.0.saturating_sub(1)),
        )?;
    }
    let staleness_meta = feeder.meta();
    threads.push(consumers::driver::spawn_on_thread(
        feeder,
        ctx,
        stop.clone(),
    ));
    for finished in threads {
        let finished = finished
            .map_err(|e| RunError::Consumer(format!("cannot start a consumer thread: {e}")))?;
        tasks.spawn(async move {
            let _ = finished.await;
        });
    }
    if config.staleness.enabled {
        tasks.spawn(consumers::staleness::run_timer(
            monitor,
            staleness_meta,
            alerter.clone(),
            Duration::from_secs(config.staleness.check_interval_secs),
            stop,
        ));
    }
    Ok(tasks)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
