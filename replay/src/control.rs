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
        confirm: args.yes,
        max_redeliver: args.max,
    };
    let doing = format!("rewind {}", one_line(&args.consumer, None));
    let report = match api.rewind(&args.consumer, &req) {
        Ok(report) => report,
        Err(e) => {
            // A redelivery not confirmed or over the limit: the report, then how to go on.
            if let Some((report, json)) = refused_redelivery(&e) {
                let mut out = Out::stdout();
                if ctx.json {
                    out.line(&json)?;
                } else {
                    out.line(&render_refused(&report))?;
                }
                out.flush()?;
                anyhow::bail!("{}", redelivery_next_step(&report, args));
            }
            return Err(explain(ctx, &REWIND, &doing, e));
        }
    };
    let mut out = Out::stdout();
    if ctx.json {
        out.line(&report.json)?;
    } else {
        out.line(&render_rewind(&report.value))?;
    }
    out.flush()
}

/// The report of a rewind with --redeliver the daemon refused (409: not confirmed, or over
/// the limit), and the answer's report as one line of JSON.
fn refused_redelivery(e: &anyhow::Error) -> Option<(RewindReport, String)> {
    let refused = refused_by_daemon(e).filter(|r| r.code == 409)?;
    let json = refused.report.clone()?;
    let report = serde_json::from_value(json.clone()).ok()?;
    Some((report, json.to_string()))
}

/// What to run next after a refused redelivery: the same command with --yes (and --max
/// when the count is over the limit), or a narrower range.
fn redelivery_next_step(r: &RewindReport, args: &RewindArgs) -> String {
    let Some(plan) = &r.redelivery else {
        return "the redelivery was refused; nothing was changed".to_owned();
    };
    let target = match (&args.since, args.to_seq) {
        (Some(since), _) => format!("--since {since}"),
        (None, Some(n)) => format!("--to-seq {n}"),
        (None, None) => format!("--to-seq {}", r.to_cursor),
    };
    let name = one_line(&r.consumer, None);
    let base = format!("hooklog-replay rewind {name} {target} --redeliver --yes");
    let counted = format!("{} {}", plan.effects, plan.unit);
    if plan.within_limit() {
        format!("nothing was changed; to perform these {counted} again, run: {base}")
    } else {
        let refused = if args.yes { "refused: " } else { "" };
        format!(
            "{refused}nothing was changed; {counted} is more than the limit of {} ({}): \
             narrow the range, or to perform them all again, run: {base} --max {}",
            plan.limit, plan.limit_from, plan.effects
        )
    }
}

/// `dedup: cursor 1234 → 0 (rebuild from the first record), 1234 records will be processed
/// again`, or what would happen; with a redelivery, what it performs again.
fn render_rewind(r: &RewindReport) -> String {
    let text = render_cursor(r);
    let Some(plan) = &r.redelivery else {
        return text;
    };
    let records = match (plan.first_seq, plan.last_seq) {
        (Some(first), Some(last)) => format!(
            " (records {first}..={last}; e.g. {})",
            plan.sample.join(", ")
        ),
        _ => String::new(),
    };
    let verb = if r.dry_run {
        "would perform"
    } else {
        "performs"
    };
    format!(
        "{text}\n{}: the redelivery {verb} {} {} again{records}; limit {} ({})",
        one_line(&r.consumer, None),
        plan.effects,
        plan.unit,
        plan.limit,
        plan.limit_from
    )
}

/// A redelivery the daemon refused: what it would have performed again.
fn render_refused(r: &RewindReport) -> String {
    let name = one_line(&r.consumer, None);
    let Some(plan) = &r.redelivery else {
        return format!("{name}: the redelivery was refused; nothing was changed");
    };
    let records = match (plan.first_seq, plan.last_seq) {
        (Some(first), Some(last)) => format!(
            " (records {first}..={last}; e.g. {})",
            plan.sample.join(", ")
        ),
        _ => String::new(),
    };
    format!(
        "{name}: a rewind to {} with --redeliver would perform {} {} again{records}; limit {} \
         ({}); nothing was changed",
        r.to_cursor, plan.effects, plan.unit, plan.limit, plan.limit_from
    )
}

fn render_cursor(r: &RewindReport) -> String {
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
            redelivery: None,
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

    fn refused(effects: u64, limit: u64) -> RewindReport {
        let mut r = report(false, false);
        r.consumer = "sender".into();
        r.from_cursor = 40_000;
        r.to_cursor = 0;
        r.redeliver = true;
        r.redelivery = Some(hooklog::consumers::RedeliveryPlan {
            unit: "sends".into(),
            effects,
            first_seq: Some(2),
            last_seq: Some(39_998),
            sample: vec!["msg_a".into(), "msg_b".into()],
            limit,
            limit_from: "[sender] max_redeliver".into(),
        });
        r
    }

    fn args(extra: &[&str]) -> RewindArgs {
        use clap::Parser;
        let mut argv = vec![
            "hooklog-replay",
            "rewind",
            "sender",
            "--to-seq",
            "0",
            "--redeliver",
        ];
        argv.extend(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Rewind(a) => a,
            _ => unreachable!("a rewind"),
        }
    }

    #[test]
    fn a_refused_redelivery_shows_the_count_and_the_command_that_goes_ahead() {
        let r = refused(10_000, 100);
        assert_eq!(
            render_refused(&r),
            "sender: a rewind to 0 with --redeliver would perform 10000 sends again (records \
             2..=39998; e.g. msg_a, msg_b); limit 100 ([sender] max_redeliver); nothing was \
             changed"
        );
        assert_eq!(
            redelivery_next_step(&r, &args(&[])),
            "nothing was changed; 10000 sends is more than the limit of 100 ([sender] \
             max_redeliver): narrow the range, or to perform them all again, run: \
             hooklog-replay rewind sender --to-seq 0 --redeliver --yes --max 10000"
        );
        assert!(redelivery_next_step(&r, &args(&["--yes"])).starts_with("refused: "));
        assert_eq!(
            redelivery_next_step(&refused(3, 100), &args(&[])),
            "nothing was changed; to perform these 3 sends again, run: hooklog-replay rewind \
             sender --to-seq 0 --redeliver --yes"
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
