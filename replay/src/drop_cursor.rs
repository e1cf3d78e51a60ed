//! `drop-cursor CONSUMER`: forget a retired consumer's cursor, so that retention no longer
//! waits for it. Opens the stopped data directory (refused while the daemon holds it: its
//! drivers own the cursors and would store this one again).

use anyhow::Context as _;
use hooklog::log::LogError;

use crate::cli::ConsumerArg;
use crate::context::Context;
use crate::output::Out;

/// Runs `drop-cursor`.
pub fn run(ctx: &Context, args: &ConsumerArg) -> anyhow::Result<()> {
    let dir = ctx.store().location();
    let log = ctx.store().open().map_err(|e| match e {
        LogError::Locked(detail) => anyhow::anyhow!(
            "cannot drop a cursor in {dir}: the data directory is in use, most likely by the \
             running daemon; stop it first ({detail})"
        ),
        other => anyhow::Error::new(other).context(format!("cannot open the log in {dir}")),
    })?;
    let at = log.cursor(&args.consumer)?;
    let dropped = log
        .drop_cursor(&args.consumer)
        .with_context(|| format!("cannot drop the cursor of {}", args.consumer))?;
    log.close()?;
    let mut out = Out::stdout();
    if ctx.json {
        out.line(
            &serde_json::json!({
                "consumer": args.consumer,
                "dropped": dropped,
                "cursor": at.0,
            })
            .to_string(),
        )?;
    } else if dropped {
        out.write(&format!(
            "dropped the cursor of {} (it was at {}); it no longer holds retention back\n",
            args.consumer, at.0
        ))?;
    } else {
        out.write(&format!(
            "{} has no stored cursor; nothing to do\n",
            args.consumer
        ))?;
    }
    out.flush()
}
