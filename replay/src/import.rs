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
//! then, with a message saying so. On the JetStream engine (`[log] backend = "jetstream"`) the
//! records go into the configured stream and the cursors into the local state database
//! `data_dir/state`, whose lock is the one a running daemon holds.
//!
//! # What a second import does
//!
//! Records are numbered from 1 in the file's order: an export of a whole log gets its original
//! sequence numbers back, so dedup's `duplicate of SEQ` verdicts match too. The log must be
//! empty, or hold exactly the file's first `k` records (sequences 1..=k, each equal to its
//! line of the file): that is an import that stopped part-way (a full disk, NATS unreachable,
//! the process killed), and running the same command again continues after record `k`. So
//! the same file imported twice appends nothing the second time, and any other content is
//! refused. On JetStream the stream must also never have held a record it no longer holds (a
//! purged stream goes on counting from its last sequence), and the local state must hold no
//! cursor past the stream's end (another log's); each record is published expecting the one
//! before it as the stream's last, so the numbering is the file's order.
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
//! # Whose records
//!
//! Records keep the export's verification labels, so an imported record that says `internal`
//! counts as hooklog's own ([`hooklog::provenance`]): an export is as trusted as the data
//! directory, and only exports an operator made should be imported. What import cannot do is
//! make anything send or dispatch again (the cursors above); the projections are rebuilt from
//! what it wrote. The summary counts the records that say hooklog wrote them
//! (`written_by_hooklog`) and lists those whose label does not fit their kind
//! (`never_acted_on`: restored as history, dead-lettered by the consumers), and the import
//! says so on stderr.
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hooklog::admin::api::EventJson;
use hooklog::event::{Event, Micros, Seq, Source, Verification};
use hooklog::log::{Log, LogError};
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
    let store = ctx.store();
    let dir = store.location();

    // A dry run opens nothing that does not exist yet (opening creates the database, and for
    // JetStream the stream): it checks the target only where a daemon already ran.
    let log = if store.holds_files() || !args.dry_run {
        let log = open_target(ctx)?;
        match stored_part_of(log.as_ref(), file, checked.records, &dir) {
            Ok(k) => Some((log, k)),
            Err(e) => {
                let _ = log.close();
                return Err(e);
            }
        }
    } else {
        None
    };
    let already = log.as_ref().map_or(0, |(_, k)| *k);
    if let Some(first) = checked.forged.first() {
        eprintln!(
            "hooklog-replay import: {} in {} were written by someone who may not write them \
             (the first: {first}); they are restored as they are, and every consumer that \
             would act on them dead-letters them instead, with an alert",
            count(checked.forged.len() as u64, "record", "records"),
            file.display()
        );
    }
    if already > 0 {
        eprintln!(
            "hooklog-replay import: {dir} already holds the first {} of {}: continuing after \
             seq {already}",
            count(already, "record", "records"),
            file.display()
        );
    }

    let mut appended: Vec<Seq> = Vec::new();
    if let (Some((log, _)), false) = (&log, args.dry_run) {
        let result = append_all(log, file, checked.records, already as usize);
        let result = result.and_then(|seqs| {
            let last = seqs.last().copied().unwrap_or(Seq(already));
            if last.0 > 0 {
                for name in EFFECT_CONSUMERS {
                    log.store_cursor(name, last)?;
                }
            }
            Ok(seqs)
        });
        let closed = log.close();
        appended = result.with_context(|| {
            format!(
                "import into {dir} failed; what was appended stays, and running the same \
                 command again continues after it"
            )
        })?;
        closed.with_context(|| format!("cannot close the log in {dir}"))?;
    } else if let Some((log, _)) = &log {
        log.close()?;
    }

    let last = appended
        .last()
        .map(|s| s.0)
        .or((already > 0).then_some(already));
    let mut doc = json!({
        "type": "summary",
        "file": file.display().to_string(),
        "dir": dir,
        "dry_run": args.dry_run,
        "records": checked.records,
        "appended": appended.len(),
        "already_stored": already,
        "first_seq": appended.first().map(|s| s.0),
        "last_seq": last,
        "original_first_seq": checked.first_seq,
        "original_last_seq": checked.last_seq,
        "by_source": checked.by_source,
        "written_by_hooklog": checked.by_hooklog,
        "never_acted_on": checked.forged.iter().map(|f| f.seq).collect::<Vec<_>>(),
        "effects_cursors": last.map(|l| {
            EFFECT_CONSUMERS
                .iter()
                .map(|n| ((*n).to_owned(), l))
                .collect::<BTreeMap<_, _>>()
        }),
    });
    if let (Some(stream), Some(doc)) = (store.stream(), doc.as_object_mut()) {
        doc.insert("stream".into(), json!(stream));
    }
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
                "dry run: {what} in {} are valid ({}); {}",
                file.display(),
                sources.join(", "),
                if already as usize == checked.records {
                    format!("all of them are already in {dir}: nothing would be appended")
                } else if already > 0 {
                    format!(
                        "{dir} holds the first {already}: the rest would be appended as seq \
                         {}-{}",
                        already + 1,
                        checked.records
                    )
                } else {
                    format!(
                        "they would be appended to the empty log in {dir} as seq 1-{}",
                        checked.records
                    )
                }
            ))?;
        } else if appended.is_empty() && already > 0 {
            out.line(&format!(
                "nothing to import: {dir} already holds all {what} of {} (seq 1-{already})",
                file.display()
            ))?;
        } else {
            out.line(&format!(
                "imported {what} from {} into {} ({}){}",
                file.display(),
                dir,
                sources.join(", "),
                match last {
                    Some(l) => format!(
                        "; seq {}-{l}; dispatch and sender start after {l} (nothing is \
                         dispatched or sent again); start the daemon to rebuild the other \
                         projections",
                        already + 1
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
    /// Records that say hooklog itself wrote them (`internal`): restored as its own.
    by_hooklog: u64,
    /// Records whose writer may not write their kind ([`hooklog::provenance`]): restored,
    /// and dead-lettered by every consumer that would act on them.
    forged: Vec<hooklog::provenance::Forged>,
}

/// Reads the whole file once and checks every line (see the module docs).
fn check_file(path: &Path) -> anyhow::Result<Checked> {
    let mut checked = Checked {
        records: 0,
        first_seq: None,
        last_seq: None,
        by_source: BTreeMap::new(),
        by_hooklog: 0,
        forged: Vec::new(),
    };
    for_each_record(path, |_, ev| {
        checked.records += 1;
        if ev.verification == Verification::Internal {
            checked.by_hooklog += 1;
        }
        if let Err(forged) = hooklog::provenance::check(&ev) {
            checked.forged.push(forged);
        }
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

/// Opens the data directory's log (the engine the configuration names). On JetStream it also
/// refuses a stream that was purged and local state that belongs to another log.
fn open_target(ctx: &Context) -> anyhow::Result<Arc<dyn Log>> {
    let store = ctx.store();
    let dir = store.location();
    let log = store.open().map_err(|e| match e {
        LogError::Locked(detail) => anyhow::anyhow!(
            "cannot import into {dir}: the data directory is in use, most likely by the \
             running daemon. import writes into a stopped data directory (webhook records \
             can only enter a running daemon through the signed edge): stop the daemon, \
             or import into another directory with --data-dir ({detail})"
        ),
        other => anyhow::Error::new(other).context(format!("cannot open the log in {dir}")),
    })?;
    let refusal = match store.stream() {
        None => None,
        Some(stream) => jetstream_refusal(log.as_ref(), stream, &store.dir())?,
    };
    if let Some(refusal) = refusal {
        let _ = log.close();
        return Err(refusal);
    }
    Ok(log)
}

/// How many of the file's records the log already holds: 0 for an empty log, `k` for a log
/// that is exactly the file's first `k` records (an import that stopped part-way); any other
/// content is refused.
fn stored_part_of(log: &dyn Log, file: &Path, total: usize, dir: &str) -> anyhow::Result<u64> {
    let stats = log.stats()?;
    if stats.count == 0 {
        return Ok(0);
    }
    let refuse = |why: String| {
        anyhow::anyhow!(
            "cannot import into {dir}: its log is not empty ({}, seq {}-{}) and {why}. import \
             restores into an empty log, or continues an import of this same file that \
             stopped part-way (so importing the same file twice appends nothing the second \
             time): use a new data directory (--data-dir){}",
            count(stats.count, "record", "records"),
            stats.first_seq,
            stats.last_seq,
            if dir.contains("JetStream") {
                " or a new stream (log.jetstream.stream)"
            } else {
                ""
            }
        )
    };
    let k = stats.last_seq;
    if stats.first_seq != 1 || stats.count != k {
        return Err(refuse(
            "its records are not numbered from 1 without a gap".into(),
        ));
    }
    if k > total as u64 {
        return Err(refuse(format!(
            "holds more records than {} has ({total})",
            file.display()
        )));
    }
    let mut stored = Vec::new();
    let mut i: u64 = 0;
    let mut differs: Option<String> = None;
    for_each_record(file, |line, ev| {
        if i >= k || differs.is_some() {
            return Ok(());
        }
        if stored.is_empty() {
            stored = log.read(Seq(i), 1000)?;
            stored.reverse();
        }
        i += 1;
        let Some(have) = stored.pop() else {
            anyhow::bail!("the log ended at seq {} before seq {k}", i - 1);
        };
        if (Event {
            seq: have.seq,
            ..ev
        }) != have
        {
            differs = Some(format!(
                "is not the start of {}: seq {i} differs from line {line}",
                file.display()
            ));
        }
        Ok(())
    })?;
    match differs {
        Some(why) => Err(refuse(why)),
        None => Ok(k),
    }
}

/// Why a JetStream log cannot take an import: the stream held records it no longer holds (a
/// purged stream keeps counting, so the import would not be numbered from 1), or the local
/// state database holds cursors past the stream's end (another log's: its consumers would
/// skip the imported records, and their state would describe records that are not there).
fn jetstream_refusal(
    log: &dyn Log,
    stream: &str,
    state_dir: &Path,
) -> anyhow::Result<Option<anyhow::Error>> {
    let stats = log.stats()?;
    let start_over = format!(
        "import restores into an empty stream only (so importing the same file twice appends \
         nothing the second time): name a new stream in log.jetstream.stream, or delete this \
         one if nothing in it is needed (`nats stream rm {stream}`)"
    );
    if stats.last_seq > 0 && (stats.count == 0 || stats.first_seq > 1) {
        return Ok(Some(anyhow::anyhow!(
            "cannot import into JetStream stream {stream}: the stream held records up to seq {} \
             (since purged), so imported records would be numbered from {} instead of 1. \
             {start_over}",
            stats.last_seq,
            stats.last_seq + 1
        )));
    }
    let cursors: Vec<String> = log
        .cursors()?
        .into_iter()
        .filter(|(_, seq)| seq.0 > stats.last_seq)
        .map(|(name, seq)| format!("{name} at {seq}"))
        .collect();
    if !cursors.is_empty() {
        return Ok(Some(anyhow::anyhow!(
            "cannot import into JetStream stream {stream}: the local state in {} holds the \
             cursors of another log ({}), so the consumers would skip the imported records. \
             Import with a new data directory (--data-dir)",
            state_dir.display(),
            cursors.join(", ")
        )));
    }
    Ok(None)
}

/// Appends the records of the file after the first `skip`, in chunks, with progress on stderr
/// at most once a second.
fn append_all(
    log: &Arc<dyn Log>,
    path: &Path,
    total: usize,
    skip: usize,
) -> anyhow::Result<Vec<Seq>> {
    let mut seqs = Vec::with_capacity(total);
    let mut chunk = Vec::with_capacity(CHUNK.min(total));
    let mut last_progress = Instant::now();
    let mut flush = |chunk: &mut Vec<Event>, seqs: &mut Vec<Seq>| -> anyhow::Result<()> {
        seqs.extend(hooklog::log::restore(log.as_ref(), std::mem::take(chunk))?);
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "hooklog-replay import: {} of {total} in the log",
                skip + seqs.len()
            );
            last_progress = Instant::now();
        }
        Ok(())
    };
    let mut n = 0;
    for_each_record(path, |_, ev| {
        n += 1;
        if n <= skip {
            return Ok(());
        }
        chunk.push(ev);
        if chunk.len() >= CHUNK {
            flush(&mut chunk, &mut seqs)?;
        }
        Ok(())
    })?;
    flush(&mut chunk, &mut seqs)?;
    Ok(seqs)
}
