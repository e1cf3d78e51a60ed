//! `hooklog-replay`: the gap-recovery CLI. Thin: parse arguments, build the [`Context`], run
//! one subcommand, turn the outcome into an exit code.
//!
//! # Layout
//!
//! - [`cli`]: the clap definitions (global options and one `Args` struct per subcommand).
//! - [`context`]: configuration, admin URL, token, and the choice of [`backend`]: the
//!   daemon's admin API, or the data directory directly when the daemon is stopped.
//! - [`backend`]: the small [`backend::Backend`] trait and its two implementations.
//! - One module per read command: [`status`], [`tail`], [`show`], [`dead_letters`],
//!   [`optouts`]; and [`control`] for the commands only the running daemon can carry out
//!   (`rewind`, `redrive`, `pause`, `resume`); [`backfill`] fetches from the providers' REST
//!   APIs and appends (through the admin API, or directly when the daemon is stopped);
//!   [`export`] and [`import`] copy the log out as JSON lines and into a stopped, empty data
//!   directory; [`fire`] signs a fixture with the configured keys and sends it; [`lines`]
//!   makes `[[lines]]` entries from a provider's numbers and merges them into a
//!   configuration file.
//! - [`output`] (stdout that ends quietly when the reader goes away, tables, previews),
//!   [`signals`] (SIGINT/SIGTERM while following).
//!
//! Exit codes: 0 ok (also when stdout is closed under us: `tail -f | head` is not an error),
//! 1 error, 2 usage (clap).

mod backend;
mod backfill;
mod cli;
mod context;
mod control;
mod dead_letters;
mod drop_cursor;
mod export;
mod fire;
mod import;
mod lines;
mod optouts;
mod output;
mod show;
mod signals;
mod status;
mod store;
mod tail;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use context::Context;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hooklog-replay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context::load(&cli.global)?;
    match &cli.command {
        Command::Status => status::run(&ctx),
        Command::Tail(args) => tail::run(&ctx, args),
        Command::Show(args) => show::run(&ctx, args),
        Command::Rewind(args) => control::rewind(&ctx, args),
        Command::DeadLetters(args) => dead_letters::run(&ctx, args),
        Command::Redrive(args) => control::redrive(&ctx, args),
        Command::Optouts => optouts::run(&ctx),
        Command::Pause(args) => control::set_paused(&ctx, args, true),
        Command::Resume(args) => control::set_paused(&ctx, args, false),
        Command::KillSwitch(args) => control::kill_switch(&ctx, args),
        Command::Backfill(args) => backfill::run(&ctx, args),
        Command::Export(args) => export::run(&ctx, args),
        Command::Import(args) => import::run(&ctx, args),
        Command::Fire(args) => fire::run(&ctx, args),
        Command::DropCursor(args) => drop_cursor::run(&ctx, args),
        Command::Lines(args) => lines::run(&ctx, args),
    }
}
