//! Command-line definitions. Global options may be given before or after the subcommand.
//!
//! No option reads an environment variable of its own: the library's configuration loader
//! treats every `HOOKLOG_*` variable as a configuration key and refuses unknown ones, so a
//! CLI-only variable with that prefix would break both binaries.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Log bounds and size, and each consumer's cursor, lag, state and dead letters.
    Status,
    /// Print events after a sequence number, optionally following new ones.
    Tail(TailArgs),
    /// Print one event in full: metadata, headers and the decoded body.
    Show(ShowArgs),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
