//! Planning a batch: the rows of each record (dedup's verdict decides how much of it is
//! projected, the suppression list's changed entries join it), computed on a blocking thread
//! while the previous batch's transaction runs. No I/O: [`super::rows`] is pure, and the state
//! read here is local.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::TimeDelta;

use super::cells::Row;
use super::error::Failure;
use super::rows;
use crate::consumers::compliance;
use crate::consumers::dedup::{Verdict, Verdicts};
use crate::consumers::outbound::OutboundRecord;
use crate::consumers::Batch;
use crate::event::{Event, Seq, Source};
use crate::parse::{self, Data, Direction, Kind};
use crate::state::StateStore;

/// The rows of one record, kept apart so that a refused record can be found.
#[derive(Clone)]
pub(super) struct Planned {
    pub(super) seq: Seq,
    pub(super) rows: Vec<Row>,
    /// A record that changes an outbound message (request, decision, attempt, result): its
    /// row depends on the message's stored state, so it is folded in the transaction.
    pub(super) message: Option<OutboundRecord>,
}

/// What turns records into rows: owned, so it runs on a blocking thread while the previous
/// batch's transaction runs on the connection.
#[derive(Clone)]
pub(super) struct Planner {
    pub(super) verdicts: Verdicts,
    pub(super) store: Arc<dyn StateStore>,
    pub(super) dedup_ttl: TimeDelta,
}

impl Planner {
    /// Rows for each record of the batch.
    pub(super) fn plan(&self, batch: &Batch) -> Result<Vec<Planned>, Failure> {
        // One range scan for the batch's verdicts.
        let verdicts = self.verdicts.of_batch(batch.events())?;
        let mut planned = Vec::with_capacity(batch.events().len());
        let mut optouts_changed = false;
        for record in batch.records() {
            let event = record.event;
            let verdict = verdicts.get(event.seq).ok_or_else(|| {
                // The driver never passes dedup, so dedup was rewound under us: wait for it.
                Failure::Transient(format!("no dedup verdict yet for record {}", event.seq))
            })?;
            // Parsed once for every consumer (dedup, or the read-ahead, got there first).
            let parsed = record.parsed();
            // Compliance applies every operator change, duplicate bytes or not.
            if verdict == Verdict::Original || is_optout_change(event) {
                optouts_changed |= touches_optouts(event, parsed);
            }
            let mut rows = rows::project(event, parsed, verdict, self.dedup_ttl);
            let mut message = None;
            // Duplicates stay in omni_events only, like every other record.
            if verdict == Verdict::Original {
                match OutboundRecord::decode(event) {
                    None => {}
                    Some(Err(error)) => {
                        // Only hooklog writes these; the record stays in omni_events.
                        tracing::warn!(%error, "unreadable outbound record: only its omni_events row is written");
                    }
                    Some(Ok(OutboundRecord::Dispatch(d))) => {
                        rows.push(rows::dispatch_row(event.seq.0, &d));
                    }
                    Some(Ok(OutboundRecord::Line(l))) => {
                        rows.push(rows::line_row(event.seq.0, &l));
                    }
                    Some(Ok(record)) => message = Some(record),
                }
            }
            planned.push(Planned {
                seq: event.seq,
                rows,
                message,
            });
        }
        if optouts_changed {
            // The entries this batch's records set (a later record may have changed an entry
            // since: it is projected with that record, and the higher seq wins the row).
            let mut by_seq: HashMap<u64, &mut Planned> =
                planned.iter_mut().map(|p| (p.seq.0, p)).collect();
            for entry in compliance::list(self.store.as_ref())? {
                if let Some(p) = by_seq.get_mut(&entry.seq) {
                    p.rows.push(rows::optout_row(&entry));
                }
            }
        }
        Ok(planned)
    }
}

/// An operator's (or the sender's) change to the suppression list.
fn is_optout_change(event: &Event) -> bool {
    event.source == Source::Internal && event.route == compliance::ADMIN_ROUTE
}

/// Whether a record can change the suppression list (what the compliance consumer reads).
pub(super) fn touches_optouts(
    event: &Event,
    parsed: Result<&parse::Parsed, &parse::ParseError>,
) -> bool {
    if event.source == Source::Internal {
        return event.route == compliance::ADMIN_ROUTE;
    }
    matches!(parsed, Ok(p) if p.kind == Kind::MessageReceived
        && matches!(&p.data, Data::Message(m) if m.direction == Direction::Inbound))
}
