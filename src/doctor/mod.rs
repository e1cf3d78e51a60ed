//! `hooklog doctor`: checks a deployment and says, line by line, what is wrong and what to do.
//!
//! Every check yields [`Finding`]s `{check, status, what, fix}`; the command prints them as an
//! aligned table (or JSON with `--json`) and exits 0 when every finding is ok, 1 when the
//! worst is a warning, 2 when one failed ([`Report::exit_code`]). The checks, in order:
//!
//! 1. **configuration** (`local.rs`): loads and validates as `check-config` does; when it
//!    cannot, every other check is skipped with a line saying so.
//! 2. **data directory**, **log** and **daemon** (`local.rs`): the directory exists, takes a
//!    probe file, has free space above `log.min_free_mb` (a warning below twice it), is
//!    private to its owner; the log opens (sled) or is held by a running daemon, the JetStream
//!    stream exists as configured; the running daemon answers `/readyz` and, with the
//!    operator token, `/admin/status`.
//! 3. **postgres**, **gateway**, **discord** (`services.rs`): reachable, TLS, migrations current
//!    (`migrate --check`'s read-only plan), the `[[postgres.mirror]]` mappings fitting their
//!    tables ([`crate::consumers::postgres::mirror::validate`]);
//!    the gateway answers a `GET` of its base (no token, nothing dispatched); Discord's webhook
//!    answers a `GET` (which returns the webhook and posts nothing).
//! 4. **quo api**, **twilio api**, and the drift audit (`providers.rs`): a read-only call with
//!    each credential; every Twilio number's voice URL, SMS URL and status callback against
//!    the approved registry ([`urls`]); Quo's webhook lists (legacy `/v1/webhooks` and dated
//!    `/webhooks`) against hooklog's URL and the event types it needs; and, since webhooks made
//!    in the Quo app may not be listed by the API, the log's own evidence (`activity.rs`): the
//!    last webhook of each type and of each Quo line in the last `[doctor] window_days`.
//!
//! With `--alert` the drift findings that are not ok go to Discord as one alert through the
//! [`crate::alerts`] sender (throttled and redacted like every alert).
//!
//! # Invariants
//!
//! - **Nothing is changed.** No log record is written (sled is opened only when its database
//!   exists and no daemon holds it; the JetStream stream is looked up, never created), no
//!   migration applied, no webhook created or edited, no message posted except `--alert`'s.
//!   The one file written is the data directory's probe, removed at once.
//! - **No secret is printed.** Findings name configuration keys, never their values; URLs from
//!   provider answers are shown without user-info or query ([`shown_url`]); the Discord
//!   webhook's URL is never shown.
//! - **Provider answers are hostile input.** Every list is decoded into the few fields used,
//!   paging is bounded ([`MAX_PAGES`] for Quo's webhook lists; the Twilio numbers are listed by
//!   [`crate::backfill::twilio::incoming_phone_numbers`], the line import's listing, with its
//!   own bound) and follows only the listing's own path, and text taken from an answer is cut
//!   and escaped before it is printed.
//! - **One listing of each kind.** The Twilio numbers come from the backfill's listing and the
//!   doctor's requests give their progress to [`crate::backfill::NoRecords`]; the Quo lines to
//!   judge are resolved once (`facts::quo_lines`: `phone_number_id` first, else the number)
//!   for both Quo checks.

mod activity;
pub mod config;
mod facts;
mod local;
mod providers;
pub mod report;
mod services;
pub mod urls;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::alerts::Alerter;
use crate::config::Config;
pub use report::{
    cut, shown_url, Finding, Report, Status, DRIFT_CHECKS, MAX_PAGES, MAX_WINDOW_RECORDS,
};

/// What the command line asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Print JSON.
    pub json: bool,
    /// Send the drift findings to Discord.
    pub alert: bool,
}

/// Why the doctor itself could not run (not a finding: the report could not be made).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The async runtime the network checks use could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The whole command: load, check, print, alert; returns the exit code (3 when the doctor
/// itself could not run).
pub fn main(config_file: Option<&Path>, options: Options) -> ExitCode {
    let loaded = Config::load(config_file).map(|(config, prov)| (config, prov.file));
    match run(loaded, options) {
        Ok(report) => {
            let text = if options.json {
                report.to_json()
            } else {
                report.to_table()
            };
            print(&text);
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("hooklog doctor: {e}");
            ExitCode::from(3)
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is the reader's choice.
fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Every check, on the configuration as loaded (or the loader's error).
pub fn run(
    loaded: Result<(Config, Option<std::path::PathBuf>), crate::config::ConfigError>,
    options: Options,
) -> Result<Report, DoctorError> {
    let mut report = Report::default();
    let config = match local::configuration(loaded, &mut report.findings) {
        Some(c) => c,
        None => {
            for check in [
                "data directory",
                "log",
                "daemon",
                "postgres",
                "gateway",
                "discord",
                "quo api",
                "twilio api",
                "twilio webhooks",
                "quo webhooks",
                "quo activity",
            ] {
                report.findings.push(Finding::warn(
                    check,
                    "skipped: the configuration did not load",
                    "fix the configuration first (see above), then run hooklog doctor again",
                ));
            }
            return Ok(report);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DoctorError::Runtime)?;
    let timeout = Duration::from_secs(config.doctor.timeout_secs);

    local::data_dir(&config, &mut report.findings);
    let daemon = local::log_and_daemon(&config, &runtime, timeout, &mut report.findings);
    services::postgres(&config, &runtime, &mut report.findings);
    services::gateway(&config, timeout, &mut report.findings);
    services::discord(&config, timeout, &mut report.findings);
    let accounts = providers::credentials(&config, &mut report.findings);
    providers::twilio_drift(&config, &accounts, &mut report.findings);
    let seen = activity::read(&config, &daemon);
    providers::quo_drift(&config, &accounts, &seen, &mut report.findings);
    activity::judge(&config, &accounts, &seen, &mut report.findings);

    if options.alert {
        let finding = send_alert(&config, &report, &runtime);
        report.findings.push(finding);
    }
    Ok(report)
}

/// `--alert`: the drift findings as one alert, through the alerts sender.
fn send_alert(config: &Config, report: &Report, runtime: &tokio::runtime::Runtime) -> Finding {
    const CHECK: &str = "alert";
    if config.alerts.discord_webhook_url.is_none() {
        return Finding::warn(
            CHECK,
            "--alert: no Discord webhook is configured, nothing was sent",
            "set alerts.discord_webhook_url (or HOOKLOG_ALERTS_DISCORD_WEBHOOK_URL_FILE)",
        );
    }
    let Some(alert) = report.drift_alert() else {
        return Finding::ok(CHECK, "--alert: no drift to report, nothing was sent");
    };
    let wait = Duration::from_secs(config.alerts.timeout_secs.saturating_mul(4).max(5));
    let delivered = runtime.block_on(async {
        let alerter = Alerter::new(&config.alerts, None);
        alerter.raise(alert);
        alerter.flush(wait).await
    });
    if delivered {
        Finding::ok(
            CHECK,
            "--alert: the drift findings were handed to Discord (one message)",
        )
    } else {
        Finding::warn(
            CHECK,
            "--alert: the Discord message was not delivered in time (the reason is in the log above)",
            "check the discord line of this report and alerts.discord_webhook_url",
        )
    }
}

#[cfg(test)]
mod tests;
