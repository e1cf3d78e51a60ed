//! `hooklog`: the daemon. Thin: parse arguments, load configuration, hand over to the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hooklog::config::Config;

#[derive(Parser)]
#[command(
    name = "hooklog",
    version,
    about = "Verified, durable webhook log for Quo, Twilio and SalesMsg"
)]
struct Cli {
    /// Configuration file (default: $HOOKLOG_CONFIG, else ./hooklog.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT (SIGHUP reloads the configuration).
    Serve,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// Apply the Postgres migrations of `schema/` to `postgres.url` (idempotent). Refused,
    /// changing nothing, when the schema holds a table or index a pending migration would
    /// create (hooklog never touches tables it did not create).
    Migrate {
        /// Change nothing: print what would be created, what is present, every conflict and
        /// any applied migration whose file changed. Exit 0 when nothing is to do or only
        /// creations are pending, 1 on a conflict or a changed migration, 2 when the check
        /// could not run (configuration, connection).
        #[arg(long)]
        check: bool,
        /// With --check: the plan as one JSON object.
        #[arg(long, requires = "check")]
        json: bool,
    },
    /// Check the deployment and audit the providers' webhook URLs; say what to fix.
    ///
    /// Exit code: 0 every check ok, 1 warnings, 2 failures (docs/operations.md#doctor).
    Doctor {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
        /// Send the webhook drift findings (warnings and failures) to Discord as one alert.
        #[arg(long)]
        alert: bool,
    },
}

/// `hooklog migrate --check` exits with this when the check itself could not run, so that 1
/// keeps meaning "migrate would refuse".
const CHECK_FAILED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    if let Command::Doctor { json, alert } = cli.command {
        // The doctor reports a configuration that does not load as one of its findings.
        return hooklog::doctor::main(
            cli.config.as_deref(),
            hooklog::doctor::Options { json, alert },
        );
    }
    let checking = matches!(cli.command, Command::Migrate { check: true, .. });
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hooklog: {e:#}");
            if checking {
                ExitCode::from(CHECK_FAILED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let (config, prov) = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::CheckConfig => {
            let source = match &prov.file {
                Some(f) => format!("# configuration from {} and the environment", f.display()),
                None => "# no configuration file: embedded defaults and the environment".to_owned(),
            };
            let warnings: String = config
                .warnings()
                .iter()
                .map(|w| format!("# warning: {w}\n"))
                .collect();
            let text = format!("{source}\n{}{warnings}# ok\n", config.to_redacted_toml());
            print(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { check, json } => {
            let url = config
                .postgres
                .url
                .clone()
                .context("postgres.url is not set (in the file, or HOOKLOG_POSTGRES_URL / HOOKLOG_POSTGRES_URL_FILE)")?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let pg = &config.postgres;
            let connect = || {
                hooklog::consumers::postgres::connect(
                    url.expose(),
                    pg.ca_file.as_deref(),
                    std::time::Duration::from_secs(pg.timeout_secs),
                )
            };
            if check {
                let plan = runtime.block_on(async {
                    let mut connected = connect().await?;
                    hooklog::consumers::postgres::migrate::plan(&mut connected.client, &pg.schema)
                        .await
                })?;
                let text = if json {
                    let mut text = serde_json::to_string_pretty(&plan)?;
                    text.push('\n');
                    text
                } else {
                    format!(
                        "hooklog migrate --check (nothing was changed)\n{}",
                        plan.to_text()
                    )
                };
                print(&text)?;
                return Ok(if plan.is_blocked() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            let report = runtime.block_on(async {
                let mut connected = connect().await?;
                hooklog::consumers::postgres::migrate::migrate(&mut connected.client, &pg.schema)
                    .await
            })?;
            let text = format!(
                "schema {}: applied {:?}, already present {:?}\n",
                pg.schema, report.applied, report.present
            );
            print(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        // Handled in main, before the configuration is loaded (a failure to load is a finding).
        Command::Doctor { .. } => Ok(ExitCode::SUCCESS),
        Command::Serve => {
            #[cfg(debug_assertions)]
            let config = debug_clock(config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async move {
                match &prov.file {
                    Some(f) => tracing::info!(file = %f.display(), "configuration loaded"),
                    None => {
                        tracing::info!("no configuration file: running on the embedded defaults")
                    }
                }
                for warning in config.warnings() {
                    tracing::warn!("{warning}");
                }
                // Before anything else: SIGHUP's default action would stop the daemon.
                let reloading = hooklog::Reloading {
                    source: hooklog::reload::Source {
                        file: prov.file.clone(),
                    },
                    requests: reload_signal()?,
                };
                let listeners = hooklog::Listeners::bind(&config).await?;
                hooklog::run_reloading(config, Some(reloading), listeners, shutdown_signal())
                    .await?;
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// Writes `text` to stdout. A closed pipe (`| head`) is the reader's choice, not an error.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Debug builds only (the crash tests run the real binary at a chosen hour, because quiet
/// hours make "send now" depend on it): `DEBUG_HOOKLOG_CLOCK_START=<RFC 3339>` starts the
/// outbound path's clock there. Release builds do not contain this.
#[cfg(debug_assertions)]
fn debug_clock(mut config: Config) -> anyhow::Result<Config> {
    if let Ok(start) = std::env::var("DEBUG_HOOKLOG_CLOCK_START") {
        let at = chrono::DateTime::parse_from_rfc3339(&start)
            .with_context(|| format!("DEBUG_HOOKLOG_CLOCK_START=`{start}` is not RFC 3339"))?;
        config.clock = hooklog::clock::Clock::starting_at(at.with_timezone(&chrono::Utc));
        tracing::warn!(start = %start, "debug build: the outbound clock is shifted");
    }
    Ok(config)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // ureq logs request URLs at debug level, and the Discord webhook URL is a secret.
        .add_directive("ureq=warn".parse().unwrap_or_default())
        // Server NOTICEs (e.g. "schema already exists" during migrations) are not news.
        .add_directive("tokio_postgres=warn".parse().unwrap_or_default());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// One message per SIGHUP: a request to reload the configuration ([`hooklog::reload`]).
/// Requests that arrive during a reload are kept (a few); a burst beyond them is one reload.
fn reload_signal() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    #[cfg(unix)]
    {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot watch SIGHUP (the reload signal)")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP received: reloading the configuration");
                // A full queue already holds a reload that will read the newest files.
                let _ = tx.try_send(());
            }
        });
    }
    #[cfg(not(unix))]
    drop(tx);
    Ok(rx)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the daemon");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received");
}
