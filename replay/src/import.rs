//! `import FILE [--dry-run]`: re-append an `export` into a stopped, empty data directory (a
//! migration to a new machine, or a restore from a backup).
//!
//! # Why directly into the data directory, and only while the daemon is stopped
//!
//! Guarantee 2 says only authentic requests enter the log. Through the network that means the
//! signed edge (webhook sources `openphone`, `twilio`, `salesmsg`) or the admin token (every
//! other source; `POST /admin/events` refuses webhook sources). An export's webhook records
//! cannot go through either again: their signatures are bound to a time window and a public
//! URL, and re-labelling them as admin appends would lose what they are. They were verified
//! when first received; the import keeps their original `received_at`, headers, body and
//! verification (the library's [`hooklog::log::restore`]), and writes them where only someone
//! who can already write the database files can: the data directory, opened by this process.
//! A running daemon holds the directory (sled allows one process), so the import is refused
//! then, with a message saying so.
//!
//! # What a second import does
//!
//! Nothing: the import is refused unless the log is empty (no record), so the same file
//! imported twice into one directory appends nothing the second time. Records are numbered
//! from 1 in the file's order: an export of a whole log gets its original sequence numbers
//! back, so dedup's `duplicate of SEQ` verdicts match too.
//!
//! # Effects are not repeated
//!
//! The consumers with irreversible effects (dispatch to the agents, the sender) keep their
//! effects ledgers outside the log, and a restored directory has none: their cursors are set
//! to the last imported record, so starting the daemon never dispatches or sends anything
//! again. (Records the original had not dispatched or sent yet are therefore not dispatched
//! or sent either; `rewind … --redeliver` does that deliberately.) Every other consumer
//! (dedup, compliance, outbound, staleness, postgres) starts from 0 and rebuilds its
//! projection from the imported records when the daemon starts (the Postgres sink keeps its
//! cursor in Postgres itself: after restoring a partial export against a database that holds
//! the original's projection, rewind it to 0).
//!
//! # Checks before anything is written
//!
//! The whole file is read once and checked first: every line must be a record (known source,
//! a verification label this build reads back, an RFC 3339 `received_at`, a body that decodes)
//! and sequences must increase. A file with any bad line appends nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hooklog::admin::api::EventJson;
use hooklog::event::{Event, Micros, Seq, Source, Verification};
use hooklog::log::sled::SledLog;
use hooklog::log::{Log, LogError};
use hooklog::metrics::Metrics;
use serde_json::json;

use crate::cli::ImportArgs;
use crate::context::Context;
use crate::output::{count, Out};

/// Records appended per call to the library (progress is reported between chunks).
const CHUNK: usize = 5000;

/// The consumers whose cursors are put at the end of an import (see the module docs).
const EFFECT_CONSUMERS: [&str; 2] = [
    hooklog::consumers::dispatch::NAME,
    hooklog::consumers::sender::NAME,
];

/// Runs `import`.
pub fn run(ctx: &Context, args: &ImportArgs) -> anyhow::Result<()> {
    let file = &args.file;
    let checked = check_file(file)?;
    let dir = ctx.log_dir();

    let exists = std::fs::read_dir(&dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    let log = if exists || !args.dry_run {
        Some(open_empty(ctx)?)
    } else {
        None
    };

    let mut appended: Vec<Seq> = Vec::new();
    if let (Some(log), false) = (&log, args.dry_run) {
        let result = append_all(log, file, checked.records);
        let result = result.and_then(|seqs| {
            if let Some(last) = seqs.last() {
                for name in EFFECT_CONSUMERS {
                    log.store_cursor(name, *last)?;
                }
            }
            Ok(seqs)
        });
        let closed = log.close();
        appended = result.with_context(|| format!("import into {} failed", dir.display()))?;
        closed.with_context(|| format!("cannot close the log in {}", dir.display()))?;
    } else if let Some(log) = &log {
        log.close()?;
    }

    let last = appended.last().map(|s| s.0);
    let doc = json!({
        "type": "summary",
        "file": file.display().to_string(),
        "dir": dir.display().to_string(),
        "dry_run": args.dry_run,
        "records": checked.records,
        "appended": appended.len(),
        "first_seq": appended.first().map(|s| s.0),
        "last_seq": last,
        "original_first_seq": checked.first_seq,
        "original_last_seq": checked.last_seq,
        "by_source": checked.by_source,
        "effects_cursors": last.map(|l| {
            EFFECT_CONSUMERS
                .iter()
                .map(|n| ((*n).to_owned(), l))
                .collect::<BTreeMap<_, _>>()
        }),
    });
    let mut out = Out::stdout();
    if ctx.json {
        out.line(&doc.to_string())?;
    } else {
        let sources: Vec<String> = checked
            .by_source
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let what = count(checked.records as u64, "record", "records");
        if args.dry_run {
            out.line(&format!(
                "dry run: {what} in {} are valid ({}); they would be appended to the empty \
                 log in {} as seq 1-{}",
                file.display(),
                sources.join(", "),
                dir.display(),
                checked.records
            ))?;
        } else {
            out.line(&format!(
                "imported {what} from {} into {} ({}){}",
                file.display(),
                dir.display(),
                sources.join(", "),
                match last {
                    Some(l) => format!(
                        "; seq 1-{l}; dispatch and sender start after {l} (nothing is \
                         dispatched or sent again); start the daemon to rebuild the other \
                         projections"
                    ),
                    None => String::new(),
                }
            ))?;
        }
    }
    out.flush()
}

/// What the check of the file found.
struct Checked {
    records: usize,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    by_source: BTreeMap<String, u64>,
}

/// Reads the whole file once and checks every line (see the module docs).
fn check_file(path: &Path) -> anyhow::Result<Checked> {
    let mut checked = Checked {
        records: 0,
        first_seq: None,
        last_seq: None,
        by_source: BTreeMap::new(),
    };
    for_each_record(path, |_, ev| {
        checked.records += 1;
        checked.first_seq.get_or_insert(ev.seq.0);
        checked.last_seq = Some(ev.seq.0);
        *checked
            .by_source
            .entry(ev.source.as_str().to_owned())
            .or_default() += 1;
        Ok(())
    })?;
    Ok(checked)
}

/// Calls `f` with each record of the export, in order, with its line number.
fn for_each_record(
    path: &Path,
    mut f: impl FnMut(usize, Event) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let reader = BufReader::new(
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut previous: Option<u64> = None;
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let ev = record(&line).with_context(|| format!("{} line {n}", path.display()))?;
        if previous.is_some_and(|p| ev.seq.0 <= p) {
            anyhow::bail!(
                "{} line {n}: seq {} after seq {}: an export lists records in increasing \
                 sequence order",
                path.display(),
                ev.seq,
                previous.unwrap_or_default()
            );
        }
        previous = Some(ev.seq.0);
        f(n, ev)?;
    }
    Ok(())
}

/// One line of an export as a record (its `seq` is the original one).
fn record(line: &str) -> anyhow::Result<Event> {
    let ev: EventJson = serde_json::from_str(line).context("not an exported record")?;
    let received_at = chrono::DateTime::parse_from_rfc3339(&ev.received_at)
        .with_context(|| format!("received_at `{}` is not RFC 3339", ev.received_at))?
        .timestamp_micros();
    let source: Source = ev.source.parse()?;
    let verification = Verification::from_label(&ev.verified)
        .with_context(|| format!("unknown verification `{}`", ev.verified))?;
    if ev.body_encoding != "utf8" && ev.body_encoding != "base64" {
        anyhow::bail!(
            "body_encoding `{}`: expected utf8 or base64",
            ev.body_encoding
        );
    }
    let body = ev.body_bytes().context("the body is not valid base64")?;
    Ok(Event {
        seq: Seq(ev.seq),
        received_at: Micros(received_at),
        source,
        route: ev.route,
        headers: ev.headers.into_iter().collect(),
        body,
        verification,
    })
}

/// Opens the data directory's log and checks that it holds no record.
fn open_empty(ctx: &Context) -> anyhow::Result<SledLog> {
    let dir = ctx.log_dir();
    let log =
        SledLog::open(&dir, &hooklog::sled_options(&ctx.config), Metrics::new()).map_err(|e| {
            match e {
                LogError::Locked(detail) => anyhow::anyhow!(
                    "cannot import into {}: the data directory is in use, most likely by the \
                 running daemon. import writes into a stopped data directory (webhook records \
                 can only enter a running daemon through the signed edge): stop the daemon, \
                 or import into another directory with --data-dir ({detail})",
                    dir.display()
                ),
                other => anyhow::Error::new(other)
                    .context(format!("cannot open the log in {}", dir.display())),
            }
        })?;
    let stats = log.stats()?;
    if stats.count > 0 {
        let _ = log.close();
        anyhow::bail!(
            "cannot import into {}: its log is not empty ({}, seq {}-{}). import restores into \
             an empty log only (so importing the same file twice appends nothing the second \
             time): use a new data directory (--data-dir)",
            dir.display(),
            count(stats.count, "record", "records"),
            stats.first_seq,
            stats.last_seq
        );
    }
    Ok(log)
}

/// Appends every record of the file, in chunks, with progress on stderr at most once a second.
fn append_all(log: &SledLog, path: &Path, total: usize) -> anyhow::Result<Vec<Seq>> {
    let mut seqs = Vec::with_capacity(total);
    let mut chunk = Vec::with_capacity(CHUNK.min(total));
    let mut last_progress = Instant::now();
    let mut flush = |chunk: &mut Vec<Event>, seqs: &mut Vec<Seq>| -> anyhow::Result<()> {
        seqs.extend(hooklog::log::restore(log, std::mem::take(chunk))?);
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!("hooklog-replay import: {} of {total} appended", seqs.len());
            last_progress = Instant::now();
        }
        Ok(())
    };
    for_each_record(path, |_, ev| {
        chunk.push(ev);
        if chunk.len() >= CHUNK {
            flush(&mut chunk, &mut seqs)?;
        }
        Ok(())
    })?;
    flush(&mut chunk, &mut seqs)?;
    Ok(seqs)
}
