//! The commands that change what a consumer does: `rewind`, `redrive`, `pause`, `resume`,
//! and the emergency stop `kill-switch`.
//!
//! Only the running daemon can carry them out: its consumer drivers own the cursors and the
//! dead-letter lists and apply changes between batches, and pauses and the kill switch are
//! records the daemon appends and projects. So these go to the admin API only; with the
//! daemon stopped (or `--direct`) they explain that and exit 1, never touching the data
//! directory.

use hooklog::admin::api::{RedriveRequest, RewindRequest};
use hooklog::consumers::{DeadLetter, RedriveReport, RewindReport};

use crate::backend::api::{refused_by_daemon, Api};
use crate::backend::{is_unreachable, Backend};
use crate::cli::{KillSwitchArgs, OnOff, PauseArgs, RedriveArgs, RewindArgs};
use crate::context::Context;
use crate::output::{count, one_line, Out};

/// Most failing records named on a redrive's text line.
const FAILURES_SHOWN: usize = 3;
/// Characters of each failure's error on that line.
const ERROR_CHARS: usize = 60;

/// Why a command needs the daemon, for the messages when it is not there.
struct Needs {
    /// `a rewind`.
    what: &'static str,
    /// `cursors are applied by the consumer drivers`.
    why: &'static str,
}

const REWIND: Needs = Needs {
    what: "a rewind",
    why: "cursors are applied by the consumer drivers",
};
const REDRIVE: Needs = Needs {
    what: "a redrive",
    why: "dead letters are run again by the consumer drivers",
};
const PAUSE: Needs = Needs {
    what: "pausing or resuming a consumer",
    why: "the daemon appends the pause to the log and its drivers obey it",
};
const KILL_SWITCH: Needs = Needs {
    what: "turning the kill switch on or off",
    why: "the daemon appends it to the log and applies it before it answers",
};

/// The admin API client, unless `--direct` rules it out.
fn daemon(ctx: &Context, needs: &Needs) -> anyhow::Result<Api> {
    if ctx.direct_only {
        anyhow::bail!(
            "{} needs the running daemon ({}); --direct only reads the data directory: drop \
             --direct",
            needs.what,
            needs.why
        );
    }
    Ok(ctx.api())
}

/// Turns "nothing listens" into the reason the daemon is needed, and a 400 (an unknown
/// consumer: the daemon lists the running ones) into a plain `cannot <doing>: <message>`.
fn explain(ctx: &Context, needs: &Needs, doing: &str, e: anyhow::Error) -> anyhow::Error {
    if is_unreachable(&e) {
        return anyhow::anyhow!(
            "{} needs the running daemon ({}), and nothing answers at {} (from {}): start \
             hooklog, then run this again",
            needs.what,
            needs.why,
            ctx.admin_url,
            ctx.admin_url_origin
        );
    }
    match refused_by_daemon(&e) {
        Some(r) if r.code == 400 => anyhow::anyhow!("cannot {doing}: {}", r.message),
        _ => e,
    }
}

/// Runs `rewind`.
pub fn rewind(ctx: &Context, args: &RewindArgs) -> anyhow::Result<()> {
    let api = daemon(ctx, &REWIND)?;
    let req = RewindRequest {
        to_seq: args.to_seq,
        since: args.since.clone(),
        dry_run: args.dry_run,
        redeliver: args.redeliver,
    };
    let doing = format!("rewind {}", one_line(&args.consumer, None));
    let report = api
        .rewind(&args.consumer, &req)
        .map_err(|e| explain(ctx, &REWIND, &doing, e))?;
    let mut out = Out::stdout();
    if ctx.json {
        out.line(&report.json)?;
    } else {
        out.line(&render_rewind(&report.value))?;
    }
    out.flush()
}

/// `dedup: cursor 1234 → 0 (rebuild from the first record), 1234 records will be processed
/// again`, or what would happen.
fn render_rewind(r: &RewindReport) -> String {
    let how = if r.rebuild {
        "rebuild from the first record"
    } else {
        "replay, state kept"
    };
    let how = if r.redeliver {
        format!("{how}, effects redelivered")
    } else {
        how.to_owned()
    };
    let records = count(r.replay, "record", "records");
    let name = one_line(&r.consumer, None);
    if r.dry_run {
        format!(
            "{name}: would move the cursor {} → {} ({how}), {records} would be processed again \
             (dry run: nothing changed)",
            r.from_cursor, r.to_cursor
        )
    } else {
        format!(
            "{name}: cursor {} → {} ({how}), {records} will be processed again",
            r.from_cursor, r.to_cursor
        )
    }
}

/// Runs `redrive`.
pub fn redrive(ctx: &Context, args: &RedriveArgs) -> anyhow::Result<()> {
    let mut api = daemon(ctx, &REDRIVE)?;
    let req = RedriveRequest {
        consumer: args.consumer.clone(),
        seq: args.seq,
    };
    let doing = match &args.consumer {
        Some(name) => format!("redrive {}", one_line(name, None)),
        None => "redrive".to_owned(),
    };
    let reports = api
        .redrive(&req)
        .map_err(|e| explain(ctx, &REDRIVE, &doing, e))?;
    let mut out = Out::stdout();
    if ctx.json {
        out.line(&reports.json)?;
        return out.flush();
    }
    if reports.value.is_empty() {
        out.line("no consumer is running")?;
    }
    for report in &reports.value {
        // The errors of the records that failed again, as the redrive left them.
        let letters: Vec<DeadLetter> = if report.failed.is_empty() {
            Vec::new()
        } else {
            api.dead_letters(Some(&report.consumer))?
                .into_iter()
                .map(|item| item.value)
                .collect()
        };
        out.line(&render_redrive(report, &letters, args.seq))?;
    }
    out.flush()
}

/// `dedup: 2 succeeded, 1 still failing (seq 17: <error>)`.
fn render_redrive(r: &RedriveReport, letters: &[DeadLetter], only: Option<u64>) -> String {
    let name = one_line(&r.consumer, None);
    if r.succeeded.is_empty() && r.failed.is_empty() {
        return match only {
            Some(seq) => format!("{name}: no dead letter for record {seq}"),
            None => format!("{name}: no dead letters"),
        };
    }
    let mut text = format!("{name}: {} succeeded", r.succeeded.len());
    if !r.failed.is_empty() {
        let details: Vec<String> = r
            .failed
            .iter()
            .take(FAILURES_SHOWN)
            .map(|seq| match letters.iter().find(|d| d.seq == *seq) {
                Some(d) => format!("seq {seq}: {}", one_line(&d.error, Some(ERROR_CHARS))),
                None => format!("seq {seq}"),
            })
            .collect();
        let more = r.failed.len().saturating_sub(FAILURES_SHOWN);
        let more = if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        };
        text.push_str(&format!(
            ", {} still failing ({}{more})",
            r.failed.len(),
            details.join("; ")
        ));
    }
    text
}

/// Runs `pause` (`paused`) or `resume`.
pub fn set_paused(ctx: &Context, args: &PauseArgs, paused: bool) -> anyhow::Result<()> {
    let api = daemon(ctx, &PAUSE)?;
    let name = one_line(&args.consumer, None);
    let doing = format!("{} {name}", if paused { "pause" } else { "resume" });
    let answer = api
        .set_paused(&args.consumer, paused, args.reason.as_deref())
        .map_err(|e| explain(ctx, &PAUSE, &doing, e))?;
    let mut out = Out::stdout();
    if ctx.json {
        out.line(&answer.json)?;
    } else if paused {
        out.line(&format!(
            "{name}: pausing (record {}{}; it finishes the batch in hand; the pause holds \
             across restarts and fail-overs; `hooklog-replay resume {name}` to go on)",
            answer.value.seq,
            pending(&answer.value)
        ))?;
    } else {
        out.line(&format!(
            "{name}: resumed (record {}{})",
            answer.value.seq,
            pending(&answer.value)
        ))?;
    }
    out.flush()
}

/// Runs `kill-switch on|off`.
pub fn kill_switch(ctx: &Context, args: &KillSwitchArgs) -> anyhow::Result<()> {
    let on = args.state == OnOff::On;
    let reason = args
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if on && reason.is_none() {
        anyhow::bail!(
            "turning the kill switch on needs --reason \"…\": it is shown by `status` and in \
             the alert, for whoever turns it off"
        );
    }
    let api = daemon(ctx, &KILL_SWITCH)?;
    let doing = format!("turn the kill switch {}", if on { "on" } else { "off" });
    let answer = api
        .kill_switch(on, reason)
        .map_err(|e| explain(ctx, &KILL_SWITCH, &doing, e))?;
    let mut out = Out::stdout();
    if ctx.json {
        out.line(&answer.json)?;
    } else if on {
        out.line(&format!(
            "kill switch ON (record {}{}): nothing is sent; new requests are refused with \
             kill_switch; `hooklog-replay kill-switch off` to send again",
            answer.value.seq,
            pending(&answer.value)
        ))?;
    } else {
        out.line(&format!(
            "kill switch off (record {}{}){}",
            answer.value.seq,
            pending(&answer.value),
            "; `[compliance] kill_switch = true` in the configuration, if set, still holds \
             sending off (see `hooklog-replay status`)"
        ))?;
    }
    out.flush()
}

/// `, not applied yet: …` when the daemon answered before its projection applied the record.
fn pending(a: &hooklog::admin::api::StopAnswer) -> String {
    if a.applied {
        ", in force".to_owned()
    } else {
        format!(
            ", not in force yet: {}",
            a.note.as_deref().unwrap_or("the daemon will apply it")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rebuild: bool, dry_run: bool) -> RewindReport {
        RewindReport {
            consumer: "dedup".into(),
            from_cursor: 1234,
            to_cursor: 0,
            replay: 1234,
            rebuild,
            redeliver: false,
            dry_run,
        }
    }

    #[test]
    fn a_rewind_report_says_where_the_cursor_goes_and_how_much_is_processed_again() {
        assert_eq!(
            render_rewind(&report(true, false)),
            "dedup: cursor 1234 → 0 (rebuild from the first record), 1234 records will be \
             processed again"
        );
        assert_eq!(
            render_rewind(&report(true, true)),
            "dedup: would move the cursor 1234 → 0 (rebuild from the first record), 1234 \
             records would be processed again (dry run: nothing changed)"
        );
        let mut one = report(false, false);
        one.replay = 1;
        assert!(
            render_rewind(&one).ends_with("(replay, state kept), 1 record will be processed again")
        );
    }

    fn letter(seq: u64, error: &str) -> DeadLetter {
        DeadLetter {
            consumer: "dedup".into(),
            seq,
            error: error.into(),
            at: "2025-01-02T03:04:05Z".into(),
            attempts: 2,
        }
    }

    #[test]
    fn a_redrive_report_names_what_still_fails_and_why() {
        let r = RedriveReport {
            consumer: "dedup".into(),
            succeeded: vec![3, 4],
            failed: vec![17],
        };
        assert_eq!(
            render_redrive(&r, &[letter(17, "bad\nbody")], None),
            "dedup: 2 succeeded, 1 still failing (seq 17: bad\\nbody)"
        );
        let r = RedriveReport {
            consumer: "dedup".into(),
            succeeded: vec![],
            failed: vec![1, 2, 3, 4, 5],
        };
        let text = render_redrive(&r, &[letter(1, &"x".repeat(100))], None);
        assert!(
            text.starts_with("dedup: 0 succeeded, 5 still failing (seq 1: xxx"),
            "{text}"
        );
        assert!(text.ends_with("…; seq 2; seq 3; and 2 more)"), "{text}");
    }

    #[test]
    fn a_redrive_with_nothing_to_do_says_so() {
        let r = RedriveReport {
            consumer: "compliance".into(),
            ..RedriveReport::default()
        };
        assert_eq!(render_redrive(&r, &[], None), "compliance: no dead letters");
        assert_eq!(
            render_redrive(&r, &[], Some(9)),
            "compliance: no dead letter for record 9"
        );
    }
}
