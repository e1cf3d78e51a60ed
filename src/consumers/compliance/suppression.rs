//! The suppression list, as the compliance consumer keeps it and as every other component reads
//! it (the outbound gates, the sender's last-moment check, dispatch's `opted_out`, the Postgres
//! `sms_optouts` rows, the admin API): this file is its one reader, its pure model and its
//! record formats.
//!
//! Key layout (trees of consumer `compliance`):
//!
//! | tree          | key                  | value                       |
//! |---------------|----------------------|-----------------------------|
//! | `suppression` | E.164 number, UTF-8  | JSON `{number, facts}` ([`Facts`]); entries written before facts: the old [`OptOutEntry`] fields |
//!
//! Only the compliance consumer writes the tree; everyone else reads it through [`list`],
//! [`entry`] and [`is_suppressed`]. A number is looked up in its E.164 form
//! ([`crate::phone::normalize_e164`]), so `(555) 555-0123` and `+15555550123` are one entry.
//!
//! # The model: facts by the time people wrote, not log order
//!
//! An entry keeps, per number, only the latest fact of each kind ([`Facts`]): the latest
//! opt-out by the person (or reported by a provider: Twilio 21610), the latest operator add,
//! the latest operator lift, and per line the latest trusted opt-in. "Latest" is by **event
//! time** ([`Fact::event_at`]: the provider's time for the message, never later than when
//! hooklog received it), with a tie-break on the evidence itself, never on the log position:
//! so the facts, and every answer computed from them, are a function of the *set* of records,
//! whatever order they arrived in (a newest-first backfill, a retry a day late).
//!
//! "Suppressed on line L" ([`Facts::suppressing`]):
//! - an operator add suppresses on every line unless an operator lift is *later*;
//! - the person's opt-out suppresses on every line unless an operator lift is *later*, and on
//!   line L unless the person's opt-in to L is *later*;
//! - ties fail closed: an opt-out at the same time as an opt-in or a lift wins.
//!
//! A person's opt-in never lifts an operator's add (only an operator lifts what an operator
//! set). The line is the E.164 number the person wrote to (the inbound `to`): the `number` of a
//! `[[lines]]` entry. A reader that does not know the line asks with `None` and gets the
//! strictest answer (suppressed if any opt-out is in force, per-line lifts ignored).
//!
//! Entries written before this model (a state `opted_out`/`resubscribed` and the evidence of
//! the latest change in log order) still read (`decode`). They keep the answer they had;
//! a rewind of `compliance` recomputes them under these rules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Micros, Source, Verification, Verified};
use crate::phone::normalize_e164;
use crate::state::{for_each, StateError, StateStore};

/// The consumer that owns the list.
pub const CONSUMER: &str = "compliance";
/// The tree of the list.
pub(crate) const TREE: &str = "suppression";
/// Route of the `internal` events the admin API appends for manual list changes.
pub const ADMIN_ROUTE: &str = crate::provenance::OPTOUT_ROUTE;

/// `state` of an entry under which the number is suppressed on at least one line.
pub const OPTED_OUT: &str = "opted_out";
/// `state` of an entry under which the number is suppressed on no line.
pub const RESUBSCRIBED: &str = "resubscribed";

/// One record's contribution to an entry: when the person (or operator) wrote it, and the
/// evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// The event time that orders facts: the provider's time for the message
    /// (`Parsed::occurred_at`), capped at when hooklog received it so a clock ahead (or a
    /// forged date) cannot place a re-subscription after a later STOP; the receipt time when
    /// the payload has none (Twilio SMS webhooks) and for hooklog's own records.
    pub event_at: DateTime<Utc>,
    /// When hooklog received the record (RFC 3339).
    pub received_at: String,
    /// The record (evidence only: never used to order facts).
    pub seq: u64,
    /// The record's source (`openphone`, `backfill-twilio`, `internal`, …).
    pub source: String,
    /// `openphone`, `twilio`, `salesmsg`, or `admin`.
    pub provider: String,
    /// The line the message was sent to (E.164 when known; the line id a provider or the
    /// sender named otherwise).
    pub line: Option<String>,
    /// The message text (or the operator's reason).
    pub text: String,
    /// `keyword`, `phrase`, `ambiguous`, `opt_out_type`, `provider`, `admin`, `opt_in`,
    /// `opt_in_ignored`.
    pub how: String,
    /// The classifier's reason, or why an opt-in was only kept as evidence.
    pub reason: String,
}

impl Fact {
    /// No fact (the summary of an entry without one).
    fn none() -> Fact {
        Fact {
            event_at: DateTime::<Utc>::UNIX_EPOCH,
            received_at: String::new(),
            seq: 0,
            source: String::new(),
            provider: String::new(),
            line: None,
            text: String::new(),
            how: String::new(),
            reason: String::new(),
        }
    }

    /// The order of facts of one kind: event time first, then the evidence, so that two
    /// facts at the same time resolve the same way whichever arrived first. The seq and the
    /// receipt time are left out: they depend on arrival.
    fn rank(&self) -> impl Ord + '_ {
        (
            self.event_at,
            &self.provider,
            &self.line,
            &self.text,
            &self.how,
            &self.reason,
            &self.source,
        )
    }
}

/// What kind of fact a record contributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactKind {
    /// The person opted out (any provider, a backfill included), or a provider reported that
    /// they did (Twilio 21610).
    OptOut,
    /// An operator suppressed the number.
    OperatorAdd,
    /// An operator lifted every opt-out written before.
    OperatorLift,
    /// The person re-subscribed on [`Fact::line`] (which must be set), through a channel
    /// trusted to do so.
    OptIn,
    /// A re-subscription kept as evidence only (a backfill, an untrusted SalesMsg, an unknown
    /// line).
    IgnoredOptIn,
}

/// The latest fact of each kind for one number: everything the answers are computed from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The latest opt-out by the person or reported by a provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_out: Option<Fact>,
    /// The latest operator add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_add: Option<Fact>,
    /// The latest operator lift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_lift: Option<Fact>,
    /// The latest trusted opt-in, by line (E.164).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub opt_ins: BTreeMap<String, Fact>,
    /// The latest opt-in that lifts nothing (evidence for a human).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_opt_in: Option<Fact>,
    /// The highest seq of any record applied: a reader that appended a record itself (the
    /// sender's 21610 opt-out) knows from it whether the record is projected yet.
    #[serde(default)]
    pub last_seq: u64,
}

/// Keeps in `slot` the later of its fact and `fact` (the one already there on a full tie).
fn keep_latest(slot: &mut Option<Fact>, fact: Fact) {
    match slot {
        Some(old) if old.rank() >= fact.rank() => {}
        _ => *slot = Some(fact),
    }
}

impl Facts {
    /// Adds one record's fact. Commutative: the result does not depend on the order facts are
    /// applied in. An [`FactKind::OptIn`] without a line is kept as evidence only.
    pub fn apply(&mut self, kind: FactKind, fact: Fact) {
        self.last_seq = self.last_seq.max(fact.seq);
        match kind {
            FactKind::OptOut => keep_latest(&mut self.opt_out, fact),
            FactKind::OperatorAdd => keep_latest(&mut self.operator_add, fact),
            FactKind::OperatorLift => keep_latest(&mut self.operator_lift, fact),
            FactKind::OptIn => match fact.line.clone() {
                Some(line) => {
                    let mut slot = self.opt_ins.remove(&line);
                    keep_latest(&mut slot, fact);
                    if let Some(f) = slot {
                        self.opt_ins.insert(line, f);
                    }
                }
                None => keep_latest(&mut self.ignored_opt_in, fact),
            },
            FactKind::IgnoredOptIn => keep_latest(&mut self.ignored_opt_in, fact),
        }
    }

    /// The fact that suppresses the number on `line` (an E.164 line number; `None`: a line
    /// not known, so no per-line lift applies), if any: the later of the operator's add and
    /// the person's opt-out that are still in force there.
    pub fn suppressing(&self, line: Option<&str>) -> Option<&Fact> {
        let lift = self.operator_lift.as_ref().map(|f| f.event_at);
        // Ties fail closed: an opt-out at the very time of a lift stays.
        let not_lifted = |f: &&Fact| lift.is_none_or(|l| f.event_at >= l);
        let operator = self.operator_add.as_ref().filter(not_lifted);
        let opt_in = line
            .and_then(normalize_e164)
            .and_then(|l| self.opt_ins.get(&l))
            .map(|f| f.event_at);
        let person = self
            .opt_out
            .as_ref()
            .filter(not_lifted)
            .filter(|f| opt_in.is_none_or(|i| f.event_at >= i));
        match (operator, person) {
            (Some(a), Some(b)) => Some(if a.rank() >= b.rank() { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Whether the number may not be texted from `line` (see [`Facts::suppressing`]).
    pub fn suppressed_on(&self, line: Option<&str>) -> bool {
        self.suppressing(line).is_some()
    }

    /// The lines on which a re-subscription lifted an opt-out still in force elsewhere.
    pub fn lifted_on(&self) -> Vec<String> {
        if !self.suppressed_on(None) {
            return Vec::new();
        }
        self.opt_ins
            .keys()
            .filter(|l| !self.suppressed_on(Some(l)))
            .cloned()
            .collect()
    }

    /// Whether the number belongs on the list an operator sees: someone opted it out, or an
    /// operator acted on it. An entry with only opt-ins is evidence kept for an older opt-out
    /// that may still arrive (a backfill), not a listing.
    pub fn listed(&self) -> bool {
        self.opt_out.is_some() || self.operator_add.is_some() || self.operator_lift.is_some()
    }

    /// The fact an entry's summary shows: what suppresses it, else what lifted it.
    fn summary(&self) -> Option<&Fact> {
        if let Some(f) = self.suppressing(None) {
            return Some(f);
        }
        let lifted = self
            .opt_ins
            .values()
            .chain(&self.operator_lift)
            .max_by(|a, b| a.rank().cmp(&b.rank()));
        lifted
            .or(self.ignored_opt_in.as_ref())
            .or(self.opt_out.as_ref())
            .or(self.operator_add.as_ref())
    }
}

/// One number on the suppression list: its [`Facts`] and a summary of them. The summary's
/// fields are those of the list before per-line lifts (scripts read them) and are recomputed
/// from the facts whenever an entry is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOutEntry {
    /// E.164.
    pub number: String,
    /// [`OPTED_OUT`] (suppressed on at least one line: every line not in `lifted_on`) or
    /// [`RESUBSCRIBED`] (on none).
    pub state: String,
    /// The highest seq of the records that built the entry.
    pub seq: u64,
    /// The summarised fact's provider: `openphone`, `twilio`, `salesmsg`, or `admin`.
    pub provider: String,
    /// The summarised fact's line, if known.
    pub line: Option<String>,
    /// The summarised fact's text (or the operator's reason).
    pub text: String,
    /// When the summarised fact's record was received (RFC 3339).
    pub at: String,
    /// The summarised fact's `how`.
    pub how: String,
    /// The summarised fact's reason.
    pub reason: String,
    /// When the summarised fact was written (its event time).
    #[serde(default)]
    pub event_at: Option<DateTime<Utc>>,
    /// The lines (E.164) on which the person re-subscribed after the opt-out in force: the
    /// number may be texted from these lines only.
    #[serde(default)]
    pub lifted_on: Vec<String>,
    /// What the answers are computed from.
    #[serde(default)]
    pub facts: Facts,
}

impl OptOutEntry {
    /// The entry of `number` (E.164) for `facts`, with its summary.
    pub fn of(number: String, facts: Facts) -> OptOutEntry {
        let state = if facts.suppressed_on(None) {
            OPTED_OUT
        } else {
            RESUBSCRIBED
        };
        let summary = facts.summary().cloned();
        let (f, event_at) = match summary {
            Some(f) => {
                let t = f.event_at;
                (f, Some(t))
            }
            None => (Fact::none(), None),
        };
        OptOutEntry {
            number,
            state: state.to_owned(),
            seq: facts.last_seq,
            provider: f.provider,
            line: f.line,
            text: f.text,
            at: f.received_at,
            how: f.how,
            reason: f.reason,
            event_at,
            lifted_on: facts.lifted_on(),
            facts,
        }
    }

    /// Whether the number must not be messaged from a line that is not known (the strictest
    /// answer: suppressed on at least one line).
    pub fn is_suppressed(&self) -> bool {
        self.facts.suppressed_on(None)
    }

    /// Whether the number must not be messaged from `line` (its E.164 number; `None` when
    /// not known).
    pub fn is_suppressed_on(&self, line: Option<&str>) -> bool {
        self.facts.suppressed_on(line)
    }
}

/// The body of an [`ADMIN_ROUTE`] record: an operator's change (`POST`/`DELETE
/// /admin/optouts`: action, number, reason), or one hooklog itself appended, which also says
/// where it came from: the `sender` appends one when Twilio refuses a send with 21610 (the
/// recipient unsubscribed at Twilio), so the evidence names the provider and the line rather
/// than an operator. Both extra fields are absent from an operator's change (and from every
/// record the admin API wrote before they existed), so those read as the operator's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OptOutChange {
    /// `add` (suppress) or `remove` (lift).
    pub action: String,
    /// The number.
    pub number: String,
    /// Why (kept as evidence).
    #[serde(default)]
    pub reason: Option<String>,
    /// The provider that reported the opt-out (`twilio`); absent: an operator (`admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The line the refused message was sent from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
}

impl OptOutChange {
    /// The record ready to append, authenticated as `verification`: the sender's own
    /// ([`Verification::Internal`]) or the operator's ([`Verification::AdminToken`]); any
    /// other is appended but never applied ([`crate::provenance`]).
    pub fn to_verified_as(&self, at: Micros, verification: Verification) -> Verified {
        Verified::new(
            at,
            Source::Internal,
            ADMIN_ROUTE.to_owned(),
            vec![("content-type".into(), "application/json".into())],
            // A struct of strings: serde_json cannot fail on it.
            serde_json::to_vec(self).unwrap_or_default(),
            verification,
        )
    }
}

/// The suppression list: every number someone opted out or an operator acted on
/// ([`Facts::listed`]), suppressed or resubscribed, by number.
pub fn list(store: &dyn StateStore) -> Result<Vec<OptOutEntry>, StateError> {
    let tree = store.tree(CONSUMER, TREE)?;
    let mut out = Vec::new();
    for_each(tree.as_ref(), &[], |_, v| {
        let e = decode(v)?;
        if e.facts.listed() {
            out.push(e);
        }
        Ok(true)
    })?;
    Ok(out)
}

/// Whether `number` may not be texted from `line` (the line's E.164 number; `None` when the
/// line is not known: suppressed if any opt-out is in force). A number that is not a phone
/// number has no entry.
pub fn is_suppressed(
    store: &dyn StateStore,
    number: &str,
    line: Option<&str>,
) -> Result<bool, StateError> {
    Ok(entry(store, number)?.is_some_and(|e| e.is_suppressed_on(line)))
}

/// The entry for `number` (suppressed, resubscribed, or only opt-ins kept as evidence), if
/// any.
pub fn entry(store: &dyn StateStore, number: &str) -> Result<Option<OptOutEntry>, StateError> {
    let Some(n) = normalize_e164(number) else {
        return Ok(None);
    };
    let tree = store.tree(CONSUMER, TREE)?;
    tree.get(n.as_bytes())?.map(|v| decode(&v)).transpose()
}

/// An entry as written before facts (one state, the evidence of the latest change in log
/// order).
#[derive(Deserialize)]
struct LegacyEntry {
    number: String,
    state: String,
    seq: u64,
    provider: String,
    line: Option<String>,
    text: String,
    at: String,
    how: String,
    reason: String,
}

impl LegacyEntry {
    /// The facts that give the answer the entry gave: `opted_out` is an opt-out on every line
    /// (an operator's when `how` is `admin`) at its receipt time, the only time it kept;
    /// `resubscribed` was lifted everywhere, so it is an operator lift, or an opt-in that
    /// (with no opt-out left to compare) lifts nothing because nothing is in force.
    fn into_facts(self) -> Facts {
        let event_at = DateTime::parse_from_rfc3339(&self.at)
            .map(|t| t.with_timezone(&Utc))
            // Written by the consumer with `to_rfc3339`; an unreadable time on an opt-out
            // must still suppress, and the epoch loses to nothing but an opt-out.
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let kind = match (self.state.as_str(), self.how.as_str()) {
            (OPTED_OUT, "admin") => FactKind::OperatorAdd,
            (OPTED_OUT, _) => FactKind::OptOut,
            (_, "admin") => FactKind::OperatorLift,
            _ => FactKind::IgnoredOptIn,
        };
        let mut facts = Facts::default();
        facts.apply(
            kind,
            Fact {
                event_at,
                received_at: self.at,
                seq: self.seq,
                source: "legacy".to_owned(),
                provider: self.provider,
                line: self.line,
                text: self.text,
                how: self.how,
                reason: self.reason,
            },
        );
        facts
    }
}

/// Reads a stored entry, of either shape, and recomputes its summary from its facts. A
/// stored value that is neither is corrupt: every reader fails closed on it.
pub(crate) fn decode(v: &[u8]) -> Result<OptOutEntry, StateError> {
    let (number, facts) = decode_facts(v)?;
    Ok(OptOutEntry::of(number, facts))
}

/// The number and facts of a stored entry, without the summary [`OptOutEntry::of`] derives
/// from them: what the consumer needs to add a fact. The current shape is read straight into
/// its facts (the summary fields beside them are skipped, never built); only an entry without
/// `facts` is read as the shape written before them. A rewind reads one entry per opt-out,
/// so this is on its hot path: going through a `serde_json::Value` first cost a third of its
/// throughput (benches/README.md, issue 16).
/// The stored form of an entry: the number and its facts. The summary an [`OptOutEntry`]
/// shows is derived from them on read ([`OptOutEntry::of`]), so it is neither written twice
/// nor able to disagree with them.
pub(crate) fn encode_facts(number: &str, facts: &Facts) -> Result<Vec<u8>, StateError> {
    #[derive(Serialize)]
    struct Stored<'a> {
        number: &'a str,
        facts: &'a Facts,
    }
    crate::state::to_json(&Stored { number, facts })
}

pub(crate) fn decode_facts(v: &[u8]) -> Result<(String, Facts), StateError> {
    let corrupt = |e: serde_json::Error| StateError::Corrupt {
        tree: "compliance/suppression".into(),
        message: e.to_string(),
    };
    /// The fields of the current shape the facts are rebuilt from.
    #[derive(Deserialize)]
    struct Current {
        number: String,
        facts: Facts,
    }
    match serde_json::from_slice::<Current>(v) {
        Ok(c) => Ok((c.number, c.facts)),
        // No `facts`: the shape written before them (any other error is corruption, and is
        // reported as the current shape's, unless the bytes do read as the old shape).
        Err(current) => match serde_json::from_slice::<LegacyEntry>(v) {
            Ok(old) => Ok((old.number.clone(), old.into_facts())),
            Err(_) => Err(corrupt(current)),
        },
    }
}

#[cfg(test)]
#[path = "suppression_tests.rs"]
mod tests;
