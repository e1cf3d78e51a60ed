//! Retention: which records may be deleted, and the task that deletes them on a schedule. It
//! sits beside the driver because the bound is the consumers' business: their cursors and dead
//! letters hold it back, and dedup's verdicts of the deleted records go with them.
//!
//! The rule (docs/operations.md#retention): records older than the configured age **and** below every consumer's cursor may
//! be pruned; never below a cursor. The bound is the smallest of:
//! - the first record received at or after `now - retention` ([`Log::seq_at_or_after`]);
//! - every consumer's cursor: every cursor stored in the log, including those of consumers
//!   configured off in this run (a Postgres sink switched off waits at its cursor, maybe 0,
//!   and holds retention back until it runs again or an operator drops its cursor with
//!   `hooklog-replay drop-cursor`), and every consumer running here, at 0 if it has not
//!   stored a cursor yet;
//! - every consumer's oldest dead letter: a redrive re-reads the record, so it stays until
//!   the dead letter is redriven.
//!
//! Everything strictly below the bound is deleted; the record *at* a cursor is kept. The
//! engine also keeps the last record (see [`Log::prune_before`]). Afterwards dedup's verdicts
//! of the deleted records are dropped too: only duplicates have one, so they would grow
//! without bound, and no consumer reads a verdict below its cursor.
//!
//! What stays true after pruning: `stats().first_seq` is the first remaining record, and
//! status reports it. A rewind of a consumer that only replays (the Postgres sink, dispatch,
//! the sender, staleness) to a point before it starts at the first remaining record. A rewind
//! that would rebuild derived state (dedup, compliance, outbound) is refused once
//! `first_seq > 1`: the
//! rebuild would recompute the state without the deleted records (an opt-out older than the
//! retention would be forgotten), which is not the same state.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::consumers::Registry;
use crate::event::{Micros, Seq};
use crate::log::size::update_gauges;
use crate::log::{Log, LogError, PruneReport};
use crate::metrics::Metrics;
use crate::state::{StateError, StateStore};

/// Why a retention pass failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A consumer's state (dead letters, dedup verdicts) failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// What holds the bound where it is, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Records with a sequence below this may be deleted.
    pub before: Seq,
    /// What set it: `age`, `cursor:<name>` or `dead_letter:<name>`.
    pub held_by: String,
}

/// The retention bound for records received before `cutoff`, given the consumers running
/// here (`running`: their cursors count even if never stored).
pub fn bound(
    log: &dyn Log,
    store: &dyn StateStore,
    running: &[String],
    cutoff: Micros,
) -> Result<Bound, RetentionError> {
    let mut bound = Bound {
        before: log.seq_at_or_after(cutoff)?,
        held_by: "age".into(),
    };
    let mut names: BTreeSet<String> = running.iter().cloned().collect();
    for (name, _) in log.cursors()? {
        names.insert(name);
    }
    for name in &names {
        let cursor = log.cursor(name)?;
        if cursor < bound.before {
            bound = Bound {
                before: cursor,
                held_by: format!("cursor:{name}"),
            };
        }
        let letters = store.tree(name, "dead_letters")?;
        if let Some((k, _)) = letters.scan(&[], 1)?.into_iter().next() {
            if let Some(seq) = Seq::from_key(&k) {
                if seq < bound.before {
                    bound = Bound {
                        before: seq,
                        held_by: format!("dead_letter:{name}"),
                    };
                }
            }
        }
    }
    Ok(bound)
}

/// One retention pass: computes the bound for `now - retention_days` and prunes below it,
/// then drops dedup's verdicts of the deleted records. Counts what it deleted in `metrics`.
pub fn prune_once(
    log: &dyn Log,
    store: &dyn StateStore,
    running: &[String],
    retention_days: u64,
    now: Micros,
    metrics: &Metrics,
) -> Result<(Bound, PruneReport), RetentionError> {
    let age = i64::try_from(retention_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(DAY_MICROS);
    let cutoff = Micros(now.0.saturating_sub(age));
    let bound = bound(log, store, running, cutoff)?;
    let report = log.prune_before(bound.before)?;
    metrics.log_pruned.inc_by(report.pruned);
    if report.first_seq > 0 {
        crate::consumers::dedup::verdicts::prune_verdicts_below(store, Seq(report.first_seq))?;
    }
    Ok((bound, report))
}

/// The retention task's settings.
#[derive(Clone, Debug)]
pub struct RetentionTask {
    /// Records older than this many days may go; 0 keeps everything (the gauges are still
    /// updated).
    pub retention_days: u64,
    /// Time between passes.
    pub interval: Duration,
    /// The data directory, measured for `hooklog_data_dir_bytes`.
    pub data_dir: PathBuf,
}

impl RetentionTask {
    /// Runs a pass (and a gauge update) every interval, the first at once, until `stop` turns
    /// true. A failed pass is logged and tried again at the next interval.
    pub async fn run(
        self,
        log: Arc<dyn Log>,
        registry: Arc<Registry>,
        metrics: Metrics,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let (log2, registry2, metrics2, task) =
                (log.clone(), registry.clone(), metrics.clone(), self.clone());
            let pass =
                tokio::task::spawn_blocking(move || task.pass(&*log2, &registry2, &metrics2));
            match pass.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "retention pass failed; trying again later")
                }
                Err(e) => tracing::warn!(error = %e, "retention pass panicked"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    fn pass(
        &self,
        log: &dyn Log,
        registry: &Registry,
        metrics: &Metrics,
    ) -> Result<(), RetentionError> {
        if self.retention_days > 0 {
            // No rewind moves a cursor back while the bound is chosen and the records deleted.
            let _guard = registry.retention_guard_blocking();
            let store = log.state();
            let (bound, report) = prune_once(
                log,
                store.as_ref(),
                &registry.names(),
                self.retention_days,
                Micros::now(),
                metrics,
            )?;
            if report.pruned > 0 {
                tracing::info!(
                    pruned = report.pruned,
                    first_seq = report.first_seq,
                    held_by = %bound.held_by,
                    "retention: pruned old records"
                );
            } else {
                tracing::debug!(held_by = %bound.held_by, "retention: nothing to prune");
            }
        }
        update_gauges(log, &self.data_dir, metrics)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Source, Verification, Verified};
    use crate::log::sled::{SledLog, SledOptions};
    use std::path::Path;

    /// Record `i` (seq `i`) was received on day `i`.
    fn at_day(day: i64) -> Verified {
        Verified::new(
            Micros(day * DAY_MICROS),
            Source::Twilio,
            "/sms".into(),
            vec![("x-twilio-signature".into(), format!("sig{day}"))],
            format!("Body=day+{day}").into_bytes(),
            Verification::Twilio { token: 0, url: 0 },
        )
    }

    /// A log of `n` records, record `i` received on day `i`.
    fn log_of(dir: &Path, n: i64) -> SledLog {
        let log = SledLog::open(dir, &SledOptions::default(), Metrics::new()).unwrap();
        let tickets: Vec<_> = (1..=n).map(|d| log.append(at_day(d))).collect();
        for t in tickets {
            t.wait_blocking().unwrap();
        }
        log
    }

    struct Case {
        name: &'static str,
        cursors: &'static [(&'static str, u64)],
        running: &'static [&'static str],
        dead_letters: &'static [(&'static str, u64)],
        retention_days: u64,
        want_first: u64,
    }

    /// Ten records, received on days 1..=10; now is day 11, so `retention_days = 5` makes
    /// records 1..=5 old enough (received before day 6).
    #[test]
    fn only_records_older_than_the_age_and_below_every_cursor_are_pruned() {
        let cases = [
            Case {
                name: "no consumers: age alone",
                cursors: &[],
                running: &[],
                dead_letters: &[],
                retention_days: 5,
                want_first: 6,
            },
            Case {
                name: "cursors ahead: age bounds",
                cursors: &[("dedup", 10), ("compliance", 9)],
                running: &["dedup", "compliance"],
                dead_letters: &[],
                retention_days: 5,
                want_first: 6,
            },
            Case {
                name: "a lagging consumer holds retention back",
                cursors: &[("dedup", 10), ("compliance", 3)],
                running: &["dedup", "compliance"],
                dead_letters: &[],
                retention_days: 5,
                want_first: 3,
            },
            Case {
                name: "an off consumer's stored cursor at 0 holds everything",
                cursors: &[("dedup", 10), ("postgres", 0)],
                running: &["dedup"],
                dead_letters: &[],
                retention_days: 5,
                want_first: 1,
            },
            Case {
                name: "an off consumer's stored cursor counts",
                cursors: &[("dedup", 10), ("postgres", 4)],
                running: &["dedup"],
                dead_letters: &[],
                retention_days: 5,
                want_first: 4,
            },
            Case {
                name: "a running consumer without a cursor holds everything",
                cursors: &[("dedup", 10)],
                running: &["dedup", "sender"],
                dead_letters: &[],
                retention_days: 5,
                want_first: 1,
            },
            Case {
                name: "a dead letter holds its record",
                cursors: &[("dedup", 10)],
                running: &["dedup"],
                dead_letters: &[("dedup", 2)],
                retention_days: 5,
                want_first: 2,
            },
            Case {
                name: "nothing old enough",
                cursors: &[("dedup", 10)],
                running: &["dedup"],
                dead_letters: &[],
                retention_days: 30,
                want_first: 1,
            },
            Case {
                name: "everything old: the last record stays",
                cursors: &[("dedup", 10)],
                running: &["dedup"],
                dead_letters: &[],
                retention_days: 0,
                want_first: 10,
            },
            Case {
                name: "the record at the cursor stays",
                cursors: &[("dedup", 7)],
                running: &["dedup"],
                dead_letters: &[],
                retention_days: 1,
                want_first: 7,
            },
        ];
        for case in cases {
            let dir = tempfile::tempdir().unwrap();
            let log = log_of(dir.path(), 10);
            for (name, seq) in case.cursors {
                log.store_cursor(name, Seq(*seq)).unwrap();
            }
            let store = log.state();
            for (name, seq) in case.dead_letters {
                store
                    .tree(name, "dead_letters")
                    .unwrap()
                    .insert(&Seq(*seq).to_key(), b"{}")
                    .unwrap();
            }
            let running: Vec<String> = case.running.iter().map(|s| s.to_string()).collect();
            let metrics = Metrics::new();
            let now = Micros(11 * DAY_MICROS);
            let (bound, report) = prune_once(
                &log,
                store.as_ref(),
                &running,
                case.retention_days,
                now,
                &metrics,
            )
            .unwrap();
            let stats = log.stats().unwrap();
            assert_eq!(stats.first_seq, case.want_first, "{}: {bound:?}", case.name);
            assert_eq!(report.first_seq, case.want_first, "{}", case.name);
            assert_eq!(report.pruned, case.want_first - 1, "{}", case.name);
            assert_eq!(
                (stats.last_seq, stats.count),
                (10, 11 - case.want_first),
                "{}",
                case.name
            );
            assert_eq!(
                metrics.log_pruned.get(),
                case.want_first - 1,
                "{}",
                case.name
            );
            // What remains is readable from the start, and nothing below it is.
            let rest: Vec<u64> = log
                .read(Seq(0), 100)
                .unwrap()
                .iter()
                .map(|e| e.seq.0)
                .collect();
            assert_eq!(
                rest,
                (case.want_first..=10).collect::<Vec<_>>(),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn dropping_a_retired_consumers_cursor_releases_retention() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 10);
        log.store_cursor("dedup", Seq(10)).unwrap();
        log.store_cursor("postgres", Seq(0)).unwrap();
        let store = log.state();
        let now = Micros(11 * DAY_MICROS);
        let metrics = Metrics::new();
        let running = vec!["dedup".to_string()];
        let (bound, report) = prune_once(&log, store.as_ref(), &running, 5, now, &metrics).unwrap();
        assert_eq!(
            (report.pruned, bound.held_by.as_str()),
            (0, "cursor:postgres")
        );
        assert!(log.drop_cursor("postgres").unwrap());
        assert!(!log.drop_cursor("postgres").unwrap());
        let (bound, report) = prune_once(&log, store.as_ref(), &running, 5, now, &metrics).unwrap();
        assert_eq!(
            (report.pruned, report.first_seq, bound.held_by.as_str()),
            (5, 6, "age")
        );
    }

    #[test]
    fn dedup_verdicts_of_pruned_records_are_dropped_too() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 10);
        log.store_cursor("dedup", Seq(10)).unwrap();
        let store = log.state();
        let verdicts = store
            .tree(crate::consumers::dedup::NAME, "verdicts")
            .unwrap();
        for seq in [2u64, 5, 6, 9] {
            verdicts.insert(&Seq(seq).to_key(), b"x").unwrap();
        }
        let (_, report) = prune_once(
            &log,
            store.as_ref(),
            &[],
            5,
            Micros(11 * DAY_MICROS),
            &Metrics::new(),
        )
        .unwrap();
        assert_eq!(report.first_seq, 6);
        let left: Vec<u64> = verdicts
            .scan(&[], 100)
            .unwrap()
            .iter()
            .map(|(k, _)| Seq::from_key(k).unwrap().0)
            .collect();
        assert_eq!(left, vec![6, 9]);
    }

    #[test]
    fn the_gauges_report_records_bytes_and_first_seq_after_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(&dir.path().join("log"), 10);
        log.store_cursor("dedup", Seq(10)).unwrap();
        let metrics = Metrics::new();
        prune_once(
            &log,
            log.state().as_ref(),
            &[],
            5,
            Micros(11 * DAY_MICROS),
            &metrics,
        )
        .unwrap();
        update_gauges(&log, dir.path(), &metrics).unwrap();
        assert_eq!(metrics.log_records.get(), 5);
        assert_eq!(metrics.log_first_seq.get(), 6);
        assert!(metrics.log_bytes.get() > 0);
        assert!(metrics.data_dir_bytes.get() > 0);
        let text = metrics.render();
        for name in [
            "hooklog_log_records 5",
            "hooklog_log_first_seq 6",
            "hooklog_log_pruned_total 5",
            "hooklog_data_dir_bytes",
            "hooklog_log_bytes",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]

        /// Whatever the ages and cursors, nothing at or above a cursor or younger than the
        /// age is deleted, everything below the bound is, and the last record stays.
        #[test]
        fn pruning_never_passes_a_cursor_or_the_age(
            n in 1i64..40,
            cursors in proptest::collection::vec(0u64..45, 0..4),
            days in 0u64..45,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let log = log_of(dir.path(), n);
            let cursors: Vec<u64> = cursors.into_iter().map(|c| c.min(n as u64)).collect();
            for (i, c) in cursors.iter().enumerate() {
                log.store_cursor(&format!("c{i}"), Seq(*c)).unwrap();
            }
            let now = Micros(41 * DAY_MICROS);
            let cutoff_day = 41 - days as i64;
            prune_once(&log, log.state().as_ref(), &[], days, now, &Metrics::new()).unwrap();
            let first = log.stats().unwrap().first_seq;
            // Record d (day d) is old iff d < cutoff_day.
            let age_bound = (cutoff_day.clamp(1, n + 1)) as u64;
            let want = cursors.iter().copied().fold(age_bound, u64::min).min(n as u64).max(1);
            proptest::prop_assert_eq!(first, want);
            let last = log.stats().unwrap().last_seq;
            proptest::prop_assert_eq!(last, n as u64);
        }
    }
}
