//! `export --since DATE [--until DATE] [--out FILE]`: the records received in a time range,
//! as JSON lines (one record per line, in sequence order).
//!
//! # Format
//!
//! Each line is one record in the shape of `GET /admin/events` (docs/api.md#get-adminevents): `seq`,
//! `received_at` (RFC 3339, microseconds), `source`, `route`, `headers`, `body` (UTF-8 text,
//! or base64 when `body_encoding` is `base64`), `body_encoding`, `verified` (the label of how
//! the request was authenticated when it was received). The dedup verdict is left out: it is
//! a projection, recomputed by whatever reads the records again. `import` reads this format.
//!
//! # Range
//!
//! Receipt times follow sequence order to within the concurrency of one group commit, so the
//! first record is found by a binary search on `received_at` (with [`SLACK`] of margin), and
//! reading stops at the first record received [`SLACK`] after `--until`; every record in
//! between is kept exactly when `since <= received_at < until`.
//!
//! # Where from, where to
//!
//! The daemon's admin API (`GET /admin/events` pages) while it runs, else the data directory
//! (as the read commands decide). Records go to stdout, or to `--out FILE`, written as
//! `FILE.partial` and renamed once complete (an interrupted export leaves no truncated file
//! under the name asked for). Progress goes to stderr at most once a second; the summary goes
//! to stdout with `--out`, else to stderr (one JSON object with `--json`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hooklog::admin::api::EventJson;
use serde_json::json;

use crate::backend::Backend;
use crate::cli::ExportArgs;
use crate::context::Context;
use crate::output::{count, Out};

/// Records asked for per page.
const PAGE: usize = 500;
/// Margin around the range when searching and stopping (see the module docs).
pub const SLACK: Duration = Duration::from_secs(60);

/// Runs `export`.
pub fn run(ctx: &Context, args: &ExportArgs) -> anyhow::Result<()> {
    let since = micros(&args.since)?;
    let until = args.until.as_deref().map(micros).transpose()?;
    if until.is_some_and(|u| u <= since) {
        anyhow::bail!("--until must be later than --since");
    }
    let slack = SLACK.as_micros() as i64;

    let (mut backend, status) = ctx.first(|b| b.status())?;
    let stats = status.status.log;
    let mut dest = Dest::open(args.out.as_deref())?;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut summary = Summary::default();

    let result = (|| -> anyhow::Result<()> {
        if stats.count == 0 {
            return Ok(());
        }
        let mut after = first_at_or_after(
            backend.as_mut(),
            since.saturating_sub(slack),
            stats.first_seq,
            stats.last_seq,
        )?
        .saturating_sub(1);
        'pages: loop {
            let page = backend.read(after, PAGE)?;
            let got = page.len();
            for mut ev in page {
                after = ev.seq;
                let at = micros(&ev.received_at)
                    .with_context(|| format!("record {} has no valid received_at", ev.seq))?;
                if until.is_some_and(|u| at >= u.saturating_add(slack)) {
                    break 'pages;
                }
                if at < since || until.is_some_and(|u| at >= u) {
                    continue;
                }
                ev.dedup = None;
                dest.line(&serde_json::to_string(&ev)?)?;
                summary.add(&ev);
            }
            if last_progress.elapsed() >= Duration::from_secs(1) {
                eprintln!(
                    "hooklog-replay export: {} written, at seq {after} of {}",
                    count(summary.records, "record", "records"),
                    stats.last_seq
                );
                last_progress = Instant::now();
            }
            if got < PAGE {
                break;
            }
        }
        Ok(())
    })();
    backend.release()?;
    if let Err(e) = result {
        dest.abandon();
        return Err(e);
    }
    let written_to = dest.finish()?;

    let doc = json!({
        "type": "summary",
        "records": summary.records,
        "first_seq": summary.first_seq,
        "last_seq": summary.last_seq,
        "by_source": summary.by_source,
        "since": args.since,
        "until": args.until,
        "from": backend.describe(),
        "out": written_to.as_ref().map(|p| p.display().to_string()),
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    let text = summary.text(&backend.describe(), written_to.as_deref());
    let line = if ctx.json { doc.to_string() } else { text };
    if written_to.is_some() {
        let mut out = Out::stdout();
        out.line(&line)?;
        out.flush()
    } else {
        eprintln!("{line}");
        Ok(())
    }
}

/// An RFC 3339 time (as `parse_since` gives it) in microseconds since the epoch.
fn micros(rfc3339: &str) -> anyhow::Result<i64> {
    Ok(chrono::DateTime::parse_from_rfc3339(rfc3339)
        .with_context(|| format!("`{rfc3339}` is not an RFC 3339 time"))?
        .timestamp_micros())
}

/// The sequence of the first record received at or after `at` (`last + 1` if none), by
/// binary search over `[first, last]`.
fn first_at_or_after(
    backend: &mut dyn Backend,
    at: i64,
    first: u64,
    last: u64,
) -> anyhow::Result<u64> {
    let (mut lo, mut hi) = (first, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match backend.get(mid)? {
            Some(ev) if micros(&ev.received_at)? < at => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Counts for the summary.
#[derive(Default)]
struct Summary {
    records: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    by_source: BTreeMap<String, u64>,
}

impl Summary {
    fn add(&mut self, ev: &EventJson) {
        self.records += 1;
        self.first_seq.get_or_insert(ev.seq);
        self.last_seq = Some(ev.seq);
        *self.by_source.entry(ev.source.clone()).or_default() += 1;
    }

    fn text(&self, from: &str, out: Option<&Path>) -> String {
        let to = out.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
        let mut s = format!(
            "exported {} to {to} from {from}",
            count(self.records, "record", "records")
        );
        if let (Some(a), Some(b)) = (self.first_seq, self.last_seq) {
            let sources: Vec<String> = self
                .by_source
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!(" (seq {a}-{b}; {})", sources.join(", ")));
        }
        s
    }
}

/// Where the lines go.
enum Dest {
    Stdout(Out),
    File {
        w: BufWriter<File>,
        partial: PathBuf,
        path: PathBuf,
    },
}

impl Dest {
    fn open(out: Option<&Path>) -> anyhow::Result<Dest> {
        let Some(path) = out else {
            return Ok(Dest::Stdout(Out::stdout()));
        };
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Ok(Dest::File {
            w: BufWriter::new(file),
            partial,
            path: path.to_owned(),
        })
    }

    fn line(&mut self, s: &str) -> anyhow::Result<()> {
        match self {
            Dest::Stdout(out) => out.line(s),
            Dest::File { w, partial, .. } => {
                writeln!(w, "{s}").with_context(|| format!("cannot write to {}", partial.display()))
            }
        }
    }

    /// Completes the output; the file written, if any.
    fn finish(self) -> anyhow::Result<Option<PathBuf>> {
        match self {
            Dest::Stdout(mut out) => out.flush().map(|()| None),
            Dest::File { w, partial, path } => {
                let file = w
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| format!("cannot write to {}", partial.display()))?;
                file.sync_all()
                    .with_context(|| format!("cannot write to {}", partial.display()))?;
                std::fs::rename(&partial, &path).with_context(|| {
                    format!("cannot rename {} to {}", partial.display(), path.display())
                })?;
                Ok(Some(path))
            }
        }
    }

    /// Drops a partial file after an error.
    fn abandon(self) {
        if let Dest::File { partial, .. } = self {
            let _ = std::fs::remove_file(partial);
        }
    }
}
