//! Dedup's verdicts, as every downstream consumer reads them: whether a record is an original
//! or a duplicate of an earlier one. The dedup consumer writes them; compliance, the Postgres
//! sync, dispatch, outbound and staleness read them (through [`Verdicts`] and
//! [`RangeVerdicts`], one tree read per batch), and retention prunes them below the log's first
//! record ([`prune_verdicts_below`]).
//!
//! Only duplicates get a verdict entry: a record at or below `processed` without one is an
//! original; a record above `processed` has no verdict yet (a downstream consumer waits for
//! dedup, its upstream, so it never asks for one).
//!
//! Trees of consumer `dedup` read here:
//!
//! | tree       | key                         | value                                              |
//! |------------|-----------------------------|----------------------------------------------------|
//! | `verdicts` | seq `u64` BE                | `1` + original seq `u64` BE (duplicates only)      |
//! | `meta`     | `processed`                 | last seq handled, `u64` BE                         |

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::consumers::BatchError;
use crate::event::{Event, Seq};
use crate::state::{KvTree, StateError, StateStore};

/// The consumer that writes the verdicts.
pub const CONSUMER: &str = "dedup";
/// Key of the last record handled, in tree `meta`.
pub(super) const PROCESSED: &[u8] = b"processed";

/// A record's dedup verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// First time this fact was seen in the window.
    Original,
    /// The same fact as an earlier record.
    Duplicate {
        /// The earlier record.
        of: u64,
    },
}

impl Verdict {
    /// Whether downstream consumers should skip the record.
    pub fn is_duplicate(self) -> bool {
        matches!(self, Verdict::Duplicate { .. })
    }

    pub(super) fn encode(self) -> Vec<u8> {
        match self {
            Verdict::Original => vec![0],
            Verdict::Duplicate { of } => {
                let mut v = vec![1];
                v.extend_from_slice(&of.to_be_bytes());
                v
            }
        }
    }

    pub(super) fn decode(v: &[u8]) -> Result<Verdict, StateError> {
        match v {
            [0] => Ok(Verdict::Original),
            [1, rest @ ..] if rest.len() == 8 => Ok(Verdict::Duplicate {
                of: u64::from_be_bytes(rest.try_into().map_err(|_| corrupt("verdict"))?),
            }),
            _ => Err(corrupt("verdict")),
        }
    }
}

pub(super) fn corrupt(what: &str) -> StateError {
    StateError::Corrupt {
        tree: format!("dedup/{what}"),
        message: "unexpected value length".into(),
    }
}

/// The verdict recorded for `seq`, if dedup has processed it.
pub fn verdict(store: &dyn StateStore, seq: Seq) -> Result<Option<Verdict>, StateError> {
    Verdicts::open(store)?.get(seq)
}

/// Deletes the verdicts of records below `before` (retention pruned them from the log): only
/// duplicates have a verdict entry, so without this the tree grows with every duplicate
/// ever seen. Safe because retention never prunes at or above any consumer's cursor, and
/// consumers only read verdicts of records after their cursor. Returns how many went.
pub fn prune_verdicts_below(store: &dyn StateStore, before: Seq) -> Result<u64, StateError> {
    const PAGE: usize = 10_000;
    let verdicts = store.tree(CONSUMER, "verdicts")?;
    let mut removed = 0;
    loop {
        let page = verdicts.scan(&[], PAGE)?;
        let mut n = 0;
        for (k, _) in &page {
            if k.as_slice() >= before.to_key().as_slice() {
                return Ok(removed);
            }
            verdicts.remove(k)?;
            n += 1;
        }
        removed += n;
        if page.len() < PAGE {
            return Ok(removed);
        }
    }
}

/// Reads verdicts for downstream consumers (opened once).
#[derive(Clone)]
pub struct Verdicts {
    pub(super) verdicts: Arc<dyn KvTree>,
    pub(super) meta: Arc<dyn KvTree>,
}

impl Verdicts {
    /// Opens the verdict trees.
    pub fn open(store: &dyn StateStore) -> Result<Verdicts, StateError> {
        Ok(Verdicts {
            verdicts: store.tree(CONSUMER, "verdicts")?,
            meta: store.tree(CONSUMER, "meta")?,
        })
    }

    /// The verdict for `seq`, if dedup has processed it (one record; a consumer reads its
    /// batch with [`Self::range`]).
    pub fn get(&self, seq: Seq) -> Result<Option<Verdict>, StateError> {
        if seq > self.processed()? {
            return Ok(None);
        }
        match self.verdicts.get(&seq.to_key())? {
            Some(v) => Verdict::decode(&v).map(Some),
            None => Ok(Some(Verdict::Original)),
        }
    }

    /// The last record dedup has handled.
    pub fn processed(&self) -> Result<Seq, StateError> {
        match self.meta.get(PROCESSED)? {
            Some(v) => Seq::from_key(&v).ok_or_else(|| corrupt("meta")),
            None => Ok(Seq(0)),
        }
    }

    /// The verdicts of the records of a downstream consumer's batch: [`Self::range`] from
    /// its first to its last record.
    pub fn of_batch(&self, batch: &[Event]) -> Result<RangeVerdicts, StateError> {
        match (batch.first(), batch.last()) {
            (Some(first), Some(last)) => self.range(first.seq, last.seq),
            _ => Ok(RangeVerdicts {
                processed: Seq(0),
                duplicates: HashMap::new(),
            }),
        }
    }

    /// The verdicts of every record in `first..=last`, read with one range scan: one point
    /// read per record cost more than the rest of a downstream consumer's work.
    pub fn range(&self, first: Seq, last: Seq) -> Result<RangeVerdicts, StateError> {
        // `processed` first: dedup writes verdicts before it, so every record at or below
        // the value read has its verdict in place when the scan runs.
        let processed = self.processed()?;
        let mut duplicates = HashMap::new();
        crate::state::for_each(self.verdicts.as_ref(), &first.to_key(), |k, v| {
            let seq = Seq::from_key(k).ok_or_else(|| corrupt("verdicts"))?;
            if seq > last {
                return Ok(false);
            }
            if let Verdict::Duplicate { of } = Verdict::decode(v)? {
                duplicates.insert(seq, of);
            }
            Ok(true)
        })?;
        Ok(RangeVerdicts {
            processed,
            duplicates,
        })
    }
}

/// Verdicts of a range of records, from [`Verdicts::range`].
pub struct RangeVerdicts {
    processed: Seq,
    duplicates: HashMap<Seq, u64>,
}

impl RangeVerdicts {
    /// The verdict for `seq` (inside the range read), or `None` if dedup has not handled it.
    pub fn get(&self, seq: Seq) -> Option<Verdict> {
        if seq > self.processed {
            return None;
        }
        Some(match self.duplicates.get(&seq) {
            Some(&of) => Verdict::Duplicate { of },
            None => Verdict::Original,
        })
    }

    /// Whether a downstream consumer should handle `seq`: `true` for an original, `false`
    /// for a duplicate. The driver never lets a downstream consumer pass dedup, so a missing
    /// verdict means dedup was rewound under it: a transient error, to wait for dedup.
    pub fn is_original(&self, seq: Seq) -> Result<bool, BatchError> {
        match self.get(seq) {
            Some(v) => Ok(!v.is_duplicate()),
            None => Err(BatchError::Transient(format!(
                "no dedup verdict yet for record {seq}"
            ))),
        }
    }
}
