//! `tail [--after SEQ] [--follow] [--limit N]`: events after SEQ (default: the last 10), in
//! order, page by page; with `--follow`, then new ones as they are appended.
//!
//! Following polls every [`POLL`]: through the admin API, or the data directory when the
//! daemon is stopped. With the daemon stopped nothing appends, so after reading the data
//! directory to its end the loop *closes* it (the daemon must be able to start) and waits
//! for the daemon's API to answer, then carries on from the same sequence: no event is
//! skipped or printed twice across a daemon restart. With `--direct` it reopens the
//! directory at each poll instead. It stops at SIGINT/SIGTERM, when stdout is closed, or
//! after `--limit` events.

use std::time::Duration;

use hooklog::admin::api::EventJson;

use crate::backend::is_unreachable;
use crate::cli::TailArgs;
use crate::context::Context;
use crate::output::{one_line, Out};
use crate::signals::Stop;

/// Events asked for per request.
const PAGE: u64 = 500;
/// Events shown when `--after` is not given.
const DEFAULT_LAST: u64 = 10;
/// How often `--follow` asks for new events.
const POLL: Duration = Duration::from_millis(500);
/// Body characters in a text line.
const PREVIEW_CHARS: usize = 80;

/// Runs `tail`.
pub fn run(ctx: &Context, args: &TailArgs) -> anyhow::Result<()> {
    // Installed before anything is printed, so a signal after the first line is caught.
    let stop = args.follow.then(Stop::install);
    let mut out = Out::stdout();
    let mut remaining = args.limit;
    let want = |remaining: Option<u64>| remaining.map_or(PAGE, |r| r.min(PAGE)) as usize;

    let (mut backend, (mut after, first)) = ctx.first(|b| {
        let after = match args.after {
            Some(after) => after,
            None => b.status()?.status.log.last_seq.saturating_sub(DEFAULT_LAST),
        };
        Ok((after, b.read(after, want(remaining))?))
    })?;
    let mut page = Some(first);
    // Whether stderr already says we are waiting for the daemon (said once per outage).
    let mut waiting = false;

    loop {
        let asked = want(remaining);
        let events = match page.take() {
            Some(events) => events,
            None => match backend.read(after, asked) {
                Ok(events) => {
                    waiting = false;
                    events
                }
                // The daemon stopped (or is restarting) while we follow: keep asking.
                Err(e) if args.follow && is_unreachable(&e) => {
                    if !waiting {
                        eprintln!(
                            "hooklog-replay: daemon not reachable at {}; waiting for it \
                             (Ctrl-C to stop)",
                            ctx.admin_url
                        );
                        waiting = true;
                    }
                    Vec::new()
                }
                Err(e) => return Err(e),
            },
        };
        let got = events.len();
        for ev in &events {
            print(&mut out, ev, ctx.json)?;
            after = ev.seq;
        }
        out.flush()?;
        if let Some(r) = remaining.as_mut() {
            *r = r.saturating_sub(got as u64);
            if *r == 0 {
                break;
            }
        }
        if stop.as_ref().is_some_and(Stop::requested) {
            break;
        }
        if got == asked {
            continue; // a full page: more may be waiting right now
        }
        let Some(stop) = &stop else {
            break; // the end of the log, not following
        };
        backend.release()?;
        if backend.is_direct() && !ctx.direct_only {
            eprintln!(
                "hooklog-replay: reached the end of {}; new events arrive through the daemon: \
                 waiting for it at {} (Ctrl-C to stop)",
                backend.describe(),
                ctx.admin_url
            );
            backend = Box::new(ctx.api());
            waiting = true;
        }
        if stop.sleep(POLL) {
            break;
        }
    }
    backend.release()?;
    out.flush()
}

fn print(out: &mut Out, ev: &EventJson, json: bool) -> anyhow::Result<()> {
    if json {
        out.line(&serde_json::to_string(ev)?)
    } else {
        out.line(&text_line(ev))
    }
}

/// `seq  received_at  source  route  verified  <body preview>`.
fn text_line(ev: &EventJson) -> String {
    let preview = if ev.body_encoding == "base64" {
        match ev.body_bytes() {
            Ok(bytes) => format!("<{} bytes of binary>", bytes.len()),
            Err(_) => "<undecodable body>".to_owned(),
        }
    } else {
        one_line(&ev.body, Some(PREVIEW_CHARS))
    };
    format!(
        "{}  {}  {}  {}  {}  {}",
        ev.seq,
        ev.received_at,
        ev.source,
        one_line(&ev.route, None),
        ev.verified,
        preview
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_line_shows_metadata_and_a_one_line_preview() {
        let ev = EventJson {
            seq: 7,
            received_at: "2025-01-02T03:04:05.000006Z".into(),
            source: "twilio".into(),
            route: "/sms".into(),
            headers: Default::default(),
            body: format!("Body=hi\nthere{}", "x".repeat(100)),
            body_encoding: "utf8".into(),
            verified: "twilio-signature (token 1)".into(),
            dedup: None,
        };
        let line = text_line(&ev);
        assert!(line.starts_with(
            "7  2025-01-02T03:04:05.000006Z  twilio  /sms  twilio-signature (token 1)  \
             Body=hi\\nthere"
        ));
        assert!(line.ends_with('…'));
        assert!(!line.contains('\n'));
    }
}
