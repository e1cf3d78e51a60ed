//! Command-line definitions. Global options may be given before or after the subcommand.
//!
//! No option reads an environment variable of its own: the library's configuration loader
//! treats every `HOOKLOG_*` variable as a configuration key and refuses unknown ones, so a
//! CLI-only variable with that prefix would break both binaries.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Gap-recovery CLI for hooklog: reads the log through the daemon's admin API, or the data
/// directory directly while the daemon is stopped.
#[derive(Debug, Parser)]
#[command(name = "hooklog-replay", version)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (default: $HOOKLOG_CONFIG, else ./hooklog.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print JSON instead of text (one object per line for streams).
    #[arg(long, global = true)]
    pub json: bool,

    /// Admin API base URL [default: http://<server.admin_listen>].
    #[arg(long, global = true, value_name = "URL")]
    pub admin_url: Option<String>,

    /// Admin bearer token [default: server.admin_token, else <data_dir>/admin.token]. Other
    /// local users can read it in the process list: prefer the token file.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Data directory, overriding `data_dir` from the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Read the data directory directly instead of asking the daemon (works only while the
    /// daemon is stopped: sled allows one process per database).
    #[arg(long, global = true)]
    pub direct: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log bounds and size, and each consumer's cursor, lag, state, dead letters and last
    /// error.
    Status,
    /// Print events after a sequence number, optionally following new ones.
    Tail(TailArgs),
    /// Print one event in full: metadata, headers and the decoded body.
    Show(ShowArgs),
    /// Make a consumer process records again (needs the running daemon).
    ///
    /// Consumers with derived state (dedup, compliance, outbound) are rebuilt from the first
    /// record whatever the target: their state is cleared and recomputed, which gives the same
    /// result; once retention has pruned the log (status shows first_seq > 1) such a rebuild
    /// is refused, as it would forget what the deleted records contributed. The others
    /// (postgres, dispatch, sender, staleness) move their cursor back to the target only
    /// (never forward), at most to just before the first record still stored; dispatch and
    /// the sender perform no effect again unless --redeliver is given. The daemon's consumer
    /// drivers apply cursors, so a rewind cannot be done on a stopped data directory. `--json`
    /// prints the daemon's report.
    #[command(group(ArgGroup::new("target").required(true).args(["to_seq", "since"])))]
    Rewind(RewindArgs),
    /// List records consumers could not process (dead letters), by consumer and sequence.
    ///
    /// Errors are cut to fit $COLUMNS (default 100) in the table; --json has them in full.
    /// Works with the daemon stopped too (reads the data directory).
    #[command(name = "dead-letters")]
    DeadLetters(DeadLettersArgs),
    /// Run dead letters through their consumer again (needs the running daemon).
    ///
    /// Records that now succeed leave the dead-letter list; the others stay, with their error
    /// and attempt count updated. Exits 0 either way: read the report.
    Redrive(RedriveArgs),
    /// List the suppression list: numbers that opted out (or resubscribed), with evidence.
    ///
    /// Works with the daemon stopped too (reads the data directory).
    Optouts,
    /// Pause a consumer (needs the running daemon).
    ///
    /// The pause is a record in the log: it holds across restarts and on the replica that
    /// takes over after a fail-over. The consumer finishes the batch in hand (the sender stops
    /// before its next call), then stops reading until `resume`; its lag grows meanwhile.
    /// `status` shows who paused it, when and why. `controls` cannot be paused.
    Pause(PauseArgs),
    /// Resume a paused consumer (needs the running daemon).
    Resume(PauseArgs),
    /// Turn the kill switch on (nothing is sent) or off (needs the running daemon).
    ///
    /// A record in the log, written through the admin API: it holds across restarts and
    /// fail-overs, on every replica. While it is on, new outbound requests are refused with
    /// `kill_switch` and the sender refuses every message at the last moment. `--reason` is
    /// required to turn it on; `status` shows who, when and why. `[compliance] kill_switch =
    /// true` in the configuration forces it on whatever the records say.
    #[command(name = "kill-switch")]
    KillSwitch(KillSwitchArgs),
    /// Fetch days from a provider's REST API and append every message and call to the log.
    ///
    /// Closes a gap in webhook delivery: each resource becomes a `backfill-*` record whose
    /// dedup key collides with its webhook twin, so what had arrived is marked duplicate and
    /// the rest flows through every consumer like a webhook. Appends through the admin API
    /// while the daemon runs, else into the data directory. Progress is checkpointed: the
    /// same command resumes an interrupted run. Quo: `[openphone]` api_key, api_base; Twilio:
    /// `[twilio]` account_sid, auth_tokens (the first), api_base.
    Backfill(BackfillArgs),
    /// Write the records received in a time range as JSON lines (a backup, a migration).
    ///
    /// One record per line, in sequence order, in the shape of `GET /admin/events` (seq,
    /// received_at, source, route, headers, body with body_encoding base64 when it is not
    /// UTF-8, verified), without the dedup verdict (a projection, recomputed on import).
    /// Reads through the admin API while the daemon runs, else the data directory. Progress
    /// and, when the records go to stdout, the summary go to stderr.
    Export(ExportArgs),
    /// Re-append an export into a stopped, empty data directory (a migration or a restore).
    ///
    /// Records keep their receipt time, headers, body and original verification; they are
    /// numbered from 1 in the file's order. Webhook records can only enter a running daemon
    /// through the signed edge, so import writes into the data directory directly and is
    /// refused while a daemon holds it. A log that holds exactly the file's first records (an
    /// import that stopped part-way: a full disk, NATS gone) is continued after them; any
    /// other non-empty log is refused (a second import of the same file appends nothing).
    /// The cursors of the consumers with
    /// irreversible effects (dispatch, sender) are set to the last imported record: a restore
    /// never dispatches or sends again; the others rebuild their projections when the daemon
    /// starts.
    Import(ImportArgs),
    /// Sign a fixture with the configured keys at the current time and send it (a deployment
    /// smoke test).
    ///
    /// Quo fixtures are signed with the first `[openphone]` signing_keys entry, Twilio with the
    /// first `[twilio]` auth_tokens entry over the URL the request is sent to (--url and the
    /// fixture's path: hooklog accepts it when --url is one of its server.public_urls),
    /// SalesMsg with the first `[salesmsg]` secrets entry. Prints the status and body; exits 0
    /// on 2xx, 1 otherwise.
    Fire(FireArgs),
    /// Forget a retired consumer's cursor so that it no longer holds retention back.
    ///
    /// Retention (`[log]` retention_days) never deletes a record at or above any stored cursor,
    /// including the cursor of a consumer configured off (a Postgres sink switched off stays
    /// where it stopped, maybe at 0). If that consumer is retired for good, drop its cursor;
    /// should it run again, it starts from the first record still stored. Works on a stopped
    /// data directory only (the daemon's drivers own the cursors while it runs).
    #[command(name = "drop-cursor")]
    DropCursor(ConsumerArg),
    /// Work on the configuration's `[[lines]]`: `lines import` fills them from a provider.
    Lines(LinesArgs),
}

/// `lines`.
#[derive(Debug, Args)]
pub struct LinesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LinesCommand,
}

/// The `lines` subcommands.
#[derive(Debug, Subcommand)]
pub enum LinesCommand {
    /// Print `[[lines]]` entries for the numbers a provider lists, or merge them into a
    /// configuration file.
    ///
    /// Reads Quo's `GET /v1/phone-numbers` (`[openphone]` api_key, api_base) or Twilio's
    /// `IncomingPhoneNumbers.json` (`[twilio]` account_sid, the first auth_tokens entry,
    /// api_base). Each entry has the number, the provider, Quo's `phone_number_id`, an id made
    /// from the provider's name for the line, `ten_dlc = "pending"` (nothing is sent until you
    /// approve the line) and a business name to check. With `--merge FILE` the file is edited
    /// in place, comments and layout kept: a line it already has (same number) keeps every
    /// setting and only gets a missing `phone_number_id`; a differing one and lines the
    /// provider no longer lists are reported, never changed or deleted. The old file is kept
    /// as FILE.bak.
    Import(LinesImportArgs),
}

/// `lines import`.
#[derive(Debug, Args)]
pub struct LinesImportArgs {
    /// The provider whose numbers are read.
    #[arg(long, value_enum, value_name = "PROVIDER")]
    pub from: LineProvider,

    /// Merge into this configuration file instead of printing the entries.
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,

    /// With --merge: print the change as a diff and the report, write nothing.
    #[arg(long, requires = "merge")]
    pub dry_run: bool,
}

/// The providers whose numbers `lines import` reads.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LineProvider {
    /// Quo (formerly OpenPhone).
    #[value(alias = "openphone")]
    Quo,
    /// Twilio.
    Twilio,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Records received at or after DATE: YYYY-MM-DD (midnight UTC) or RFC 3339.
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    pub since: String,

    /// Records received before DATE [default: no end].
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    pub until: Option<String>,

    /// Write to FILE (replaced once complete) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An export (JSON lines).
    pub file: PathBuf,

    /// Read and check the file and the target, append nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `fire`.
#[derive(Debug, Args)]
pub struct FireArgs {
    /// A fixture file (`fixtures/<provider>/<name>.json`).
    pub fixture: PathBuf,

    /// Base URL of the webhook listener (e.g. `https://hooks.example.com`); the fixture's path
    /// and query are appended. Twilio fixtures are signed for this URL.
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// Refused with an explanation (it once signed Twilio fixtures for another URL than the
    /// one they were sent to): kept so that old scripts fail with a message saying what to do.
    #[arg(long, value_name = "URL", hide = true)]
    pub public_url: Option<String>,
}

/// `backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The provider whose REST API is read.
    #[arg(value_enum)]
    pub provider: BackfillProvider,

    /// First day fetched (UTC).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
    pub since: chrono::NaiveDate,

    /// First day NOT fetched (UTC) [default: tomorrow, i.e. up to now].
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
    pub until: Option<chrono::NaiveDate>,

    /// Only these Quo lines, by id (PN…) or number (E.164); repeatable [default: every line].
    #[arg(long = "line", value_name = "PN", num_args = 1..)]
    pub lines: Vec<String>,

    /// Fetch and count, append nothing (no checkpoint is written).
    #[arg(long)]
    pub dry_run: bool,

    /// Where progress is kept [default: <data_dir>/backfill-PROVIDER-SINCE-UNTIL.json].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
}

/// The providers `backfill` can read.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BackfillProvider {
    /// Quo (formerly OpenPhone).
    Openphone,
    /// Twilio.
    Twilio,
}

/// A whole day, `YYYY-MM-DD`.
fn parse_day(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}

/// `tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Print events with a sequence number greater than SEQ [default: the last 10 events].
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,

    /// Keep polling for new events (every 500 ms) until interrupted or stdout is closed.
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// Stop after N events.
    #[arg(long, short = 'n', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The event's sequence number.
    pub seq: u64,
}

/// `rewind`. Exactly one of `--to-seq` and `--since` is required.
#[derive(Debug, Args)]
pub struct RewindArgs {
    /// The consumer (as listed by `status`).
    pub consumer: String,

    /// Process the records after sequence N again (0: all of them).
    #[arg(long, value_name = "N")]
    pub to_seq: Option<u64>,

    /// Process the records received at or after DATE again: YYYY-MM-DD (midnight UTC) or
    /// RFC 3339 (2026-01-01T12:00:00+02:00).
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    pub since: Option<String>,

    /// Report what would happen without changing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Perform irreversible effects again for the rewound records: `dispatch` dispatches
    /// them to the agents again, `sender` sends their messages again (each re-send passes
    /// every outbound gate again first: opt-out, line state, kill switch, quiet hours, caps,
    /// duplicates, first-contact wording). Without --yes it only reports how many sends or
    /// wake-ups it would perform and exits 1 with the command to confirm. Without it, a
    /// rewind of those consumers re-projects and never repeats an effect. Refused by other
    /// consumers.
    #[arg(long)]
    pub redeliver: bool,

    /// With --redeliver: go ahead, if the count is within the consumer's max_redeliver
    /// (`[sender]`: 100 messages, `[dispatch]`: 1000 wake-ups by default).
    #[arg(long, requires = "redeliver")]
    pub yes: bool,

    /// With --redeliver: the most sends (or wake-ups) this one rewind may perform, instead of
    /// the configured max_redeliver.
    #[arg(long, value_name = "N", requires = "redeliver")]
    pub max: Option<u64>,
}

/// `--since`: a date (midnight UTC) or an RFC 3339 time, sent to the daemon as RFC 3339.
fn parse_since(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Ok(day) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(format!("{day}T00:00:00Z"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|_| s.to_owned())
        .map_err(|e| {
            format!("expected YYYY-MM-DD (midnight UTC) or RFC 3339 (2026-01-01T12:00:00Z): {e}")
        })
}

/// `dead-letters`.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// Only this consumer's.
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
}

/// `redrive`.
#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// Only this consumer's dead letters [default: every consumer's].
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,

    /// Only the dead letter of this record [default: all of them].
    #[arg(long, value_name = "N")]
    pub seq: Option<u64>,
}

/// `drop-cursor`.
#[derive(Debug, Args)]
pub struct ConsumerArg {
    /// The consumer (as listed by `status`).
    pub consumer: String,
}

/// `pause`, `resume`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The consumer (as listed by `status`).
    pub consumer: String,
    /// Why (shown by `status`).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `kill-switch on|off`.
#[derive(Debug, Args)]
pub struct KillSwitchArgs {
    /// `on` (nothing is sent) or `off`.
    pub state: OnOff,
    /// Why (required with `on`; shown by `status` and in the alert).
    #[arg(long)]
    pub reason: Option<String>,
}

/// The two positions of the kill switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Nothing is sent.
    On,
    /// Sending as usual.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn since_takes_a_date_as_midnight_utc_or_an_rfc3339_time() {
        assert_eq!(
            parse_since("2026-01-01").as_deref(),
            Ok("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_since("2026-01-01T12:30:00+02:00").as_deref(),
            Ok("2026-01-01T12:30:00+02:00")
        );
        assert!(parse_since("2026-13-01").is_err());
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn backfill_takes_a_provider_days_and_several_lines() {
        let cli = Cli::try_parse_from([
            "r",
            "backfill",
            "openphone",
            "--since",
            "2026-03-02",
            "--line",
            "PN1",
            "PN2",
        ])
        .map_err(|e| e.to_string());
        let Ok(Cli {
            command: Command::Backfill(args),
            ..
        }) = cli
        else {
            panic!("{cli:?}");
        };
        assert_eq!(args.lines, ["PN1", "PN2"]);
        assert_eq!(args.since.to_string(), "2026-03-02");
        assert!(Cli::try_parse_from(["r", "backfill", "openphone"]).is_err());
        assert!(
            Cli::try_parse_from(["r", "backfill", "salesmsg", "--since", "2026-03-02"]).is_err()
        );
        assert!(Cli::try_parse_from(["r", "backfill", "twilio", "--since", "March"]).is_err());
    }

    #[test]
    fn lines_import_takes_a_provider_a_file_and_a_dry_run_only_with_the_file() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map_err(|e| e.to_string());
        let Ok(Cli {
            command:
                Command::Lines(LinesArgs {
                    command: LinesCommand::Import(args),
                }),
            ..
        }) = parse(&[
            "r",
            "lines",
            "import",
            "--from",
            "openphone",
            "--merge",
            "h.toml",
        ])
        else {
            panic!("not parsed");
        };
        assert!(matches!(args.from, LineProvider::Quo));
        assert_eq!(args.merge.as_deref(), Some(std::path::Path::new("h.toml")));
        assert!(parse(&["r", "lines", "import", "--from", "twilio"]).is_ok());
        assert!(parse(&["r", "lines", "import"]).is_err());
        assert!(parse(&["r", "lines", "import", "--from", "salesmsg"]).is_err());
        assert!(parse(&["r", "lines", "import", "--from", "quo", "--dry-run"]).is_err());
    }

    #[test]
    fn rewind_needs_exactly_one_target() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|_| ());
        assert!(parse(&["r", "rewind", "dedup", "--to-seq", "0"]).is_ok());
        assert!(parse(&["r", "rewind", "dedup", "--since", "2026-01-01"]).is_ok());
        assert!(parse(&["r", "rewind", "dedup"]).is_err());
        assert!(parse(&[
            "r",
            "rewind",
            "dedup",
            "--to-seq",
            "0",
            "--since",
            "2026-01-01"
        ])
        .is_err());
    }
}
