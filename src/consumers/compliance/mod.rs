//! The compliance consumer, inbound half: the suppression list.
//!
//! Every inbound message (Quo, Twilio, SalesMsg; any line) is classified by
//! [`classifier::classify`], and what it means for consent becomes a fact of the sender's
//! E.164 number, at the time the person wrote it ([`suppression`] has the model and how the
//! answers follow from the facts):
//! - an opt-out (any provider, a backfill included) suppresses the number on every line and
//!   both providers; ambiguous messages count as opt-outs (compliance fails closed) and raise
//!   an alert so a human can review them;
//! - an exact START/UNSTOP/YES lifts an opt-out written before it, on the line it was sent to
//!   only. It is kept as evidence only, lifting nothing, when it was backfilled (a history
//!   read back is not a person asking now), when it came through SalesMsg (whose URL secret is
//!   its only credential) unless `[salesmsg] trust_opt_in` is set, or when the line it was
//!   sent to is not one E.164 number;
//! - HELP is recognised and logged.
//!
//! Operators add and lift entries through the admin API, which appends `internal` events
//! (route [`ADMIN_ROUTE`]): the log stays the source of truth and a rebuild reproduces the list.
//! An operator's add is lifted only by an operator. The `sender` appends the same kind of
//! record ([`OptOutChange`], naming the provider and line) when Twilio refuses a send with
//! 21610: a person's opt-out as the provider reports it.
//!
//! Invariant: the list is a function of the set of records (and of `trust_opt_in`), not of
//! their order: each record only raises a per-kind maximum ([`suppression::Facts::apply`]).
//!
//! Inbound records flagged duplicate by dedup (its upstream) are skipped; operator and sender
//! changes ([`ADMIN_ROUTE`]) never are (identical bytes there are two acts, not a retry). A
//! record that cannot be parsed is poison (dead-lettered), and so is an opt-out edit that neither
//! the operator's route nor the daemon wrote ([`crate::provenance`]): it never changes the list.
//!
//! The component's files: this one (the consumer), [`suppression`] (the list as the other
//! components read it, its model, its key layout and the records that change it) and
//! [`classifier`] (what an inbound message means for consent: pure).

pub mod classifier;
pub mod suppression;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::alerts::{Alert, Alerter, Severity};
use crate::consumers::dedup::{self, RangeVerdicts, Verdicts};
use crate::consumers::{Batch, BatchError, Consumer, Record};
use crate::event::{Event, Micros, Source};
use crate::live::{Live, Watch};
use crate::parse::{Data, Direction, Kind, Message};
use crate::phone::normalize_e164;
use crate::state::{KvTree, StateError, StateStore};

use classifier::{Confidence, Intent};
pub use suppression::{
    entry, is_suppressed, list, Fact, FactKind, Facts, OptOutChange, OptOutEntry, ADMIN_ROUTE,
};

/// The consumer's name.
pub const NAME: &str = "compliance";

/// The compliance consumer.
pub struct Compliance {
    suppression: Arc<dyn KvTree>,
    verdicts: Verdicts,
    alerter: Alerter,
    /// `[salesmsg] trust_opt_in`: whether a SalesMsg START may lift an opt-out.
    trust_salesmsg_opt_in: bool,
    /// A reloaded `trust_opt_in`, taken between batches.
    reloads: Option<Watch<bool>>,
}

impl Compliance {
    /// Opens its trees in `store`.
    pub fn new(store: &dyn StateStore, alerter: Alerter) -> Result<Compliance, StateError> {
        Ok(Compliance {
            suppression: store.tree(NAME, suppression::TREE)?,
            verdicts: Verdicts::open(store)?,
            alerter,
            trust_salesmsg_opt_in: false,
            reloads: None,
        })
    }

    /// Takes `[salesmsg] trust_opt_in` from `live` between batches (a reload).
    pub fn reloading_from(mut self, live: &Live<bool>) -> Compliance {
        self.reloads = Some(live.watch());
        self.trust_salesmsg_opt_in = *live.get();
        self
    }

    /// Lets a SalesMsg opt-in lift an opt-out (`[salesmsg] trust_opt_in`; off by default,
    /// because SalesMsg's URL secret is its only credential). Changing it applies to the
    /// records projected from then on; a rewind of `compliance` applies it to the whole log.
    pub fn trusting_salesmsg_opt_in(mut self, trust: bool) -> Compliance {
        self.trust_salesmsg_opt_in = trust;
        self
    }

    fn put(&self, number: &str, facts: &Facts) -> Result<(), StateError> {
        let json = suppression::encode_facts(number, facts)?;
        self.suppression.insert(number.as_bytes(), &json)
    }

    fn apply(&self, number: &str, kind: FactKind, fact: Fact) -> Result<(), StateError> {
        let mut facts = match self.suppression.get(number.as_bytes())? {
            Some(v) => suppression::decode_facts(&v)?.1,
            None => Facts::default(),
        };
        facts.apply(kind, fact);
        self.put(number, &facts)
    }

    /// Why an opt-in through `source` may not lift an opt-out, if so.
    fn distrust(&self, source: Source, line: Option<&str>) -> Option<&'static str> {
        match source {
            Source::BackfillQuo | Source::BackfillTwilio => {
                Some("backfilled: a history read back never lifts an opt-out")
            }
            Source::SalesMsg if !self.trust_salesmsg_opt_in => {
                Some("SalesMsg is not trusted to opt a number in ([salesmsg] trust_opt_in)")
            }
            _ if line.is_none() => Some("the line it was sent to is not one E.164 number"),
            _ => None,
        }
    }

    fn process(&self, record: Record<'_>, verdicts: &RangeVerdicts) -> Result<(), BatchError> {
        let event = record.event;
        // An operator's change is an act of its own, never a provider's retry: two identical
        // DELETEs (or adds) a day apart have the same bytes, so dedup's body key calls the
        // second a duplicate, yet it must count at its own time (re-adding a number after a
        // lift must suppress it). Applying one twice is harmless: facts only keep maxima.
        if event.source == Source::Internal && event.route == ADMIN_ROUTE {
            return self.admin_change(event);
        }
        if !verdicts.is_original(event.seq)? {
            return Ok(());
        }
        let parsed = record.parsed().map_err(|e| BatchError::Poison {
            seq: event.seq,
            error: e.to_string(),
        })?;
        let Data::Message(msg) = &parsed.data else {
            return Ok(());
        };
        if parsed.kind != Kind::MessageReceived || msg.direction != Direction::Inbound {
            return Ok(());
        }
        let Some(number) = normalize_e164(&msg.from) else {
            tracing::warn!(seq = event.seq.0, from = %msg.from, "inbound message from a number that is not E.164; not classified");
            return Ok(());
        };
        let text = msg.text.clone().unwrap_or_default();
        let verdict = classifier::classify(&text, msg.opt_out_type.as_deref());
        let line = line_of(msg);
        let event_at = event_time(parsed.occurred_at.or(msg.created_at), event.received_at);
        let fact = |how: &str, reason: String| Fact {
            event_at,
            received_at: event.received_at.to_rfc3339(),
            seq: event.seq.0,
            source: event.source.as_str().to_owned(),
            provider: parsed.provider_name().to_owned(),
            line: line
                .clone()
                .or_else(|| msg.line_id.clone())
                .or_else(|| msg.to.first().cloned()),
            text: text.clone(),
            how: how.to_owned(),
            reason,
        };
        match verdict {
            Intent::OptOut { confidence, reason } => {
                let how = match (confidence, msg.opt_out_type.is_some()) {
                    (_, true) => "opt_out_type",
                    (Confidence::Keyword, _) => "keyword",
                    (Confidence::Phrase, _) => "phrase",
                    (Confidence::Ambiguous, _) => "ambiguous",
                };
                self.apply(&number, FactKind::OptOut, fact(how, reason.to_owned()))?;
                tracing::info!(seq = event.seq.0, number = %number, how, "opt-out recorded");
                if confidence == Confidence::Ambiguous {
                    self.alerter.raise(Alert {
                        key: "optout_review".into(),
                        severity: Severity::Warning,
                        title: format!("Ambiguous reply from {number} treated as an opt-out"),
                        reason: format!("record {}: \"{}\" ({reason})", event.seq, truncate(&text, 200)),
                        next_step: format!(
                            "review it; if it is not an opt-out, `curl -X DELETE …/admin/optouts/{number}` (the suppression stays until then)"
                        ),
                    });
                }
            }
            Intent::OptIn { keyword } => match self.distrust(event.source, line.as_deref()) {
                None => {
                    self.apply(
                        &number,
                        FactKind::OptIn,
                        fact("opt_in", format!("keyword:{keyword}")),
                    )?;
                    tracing::info!(seq = event.seq.0, number = %number, line = ?line, "opt-in recorded for its line");
                }
                Some(why) => {
                    self.apply(
                        &number,
                        FactKind::IgnoredOptIn,
                        fact("opt_in_ignored", format!("keyword:{keyword}; {why}")),
                    )?;
                    tracing::info!(seq = event.seq.0, number = %number, why, "opt-in kept as evidence only");
                }
            },
            Intent::Help => {
                tracing::info!(seq = event.seq.0, number = %number, "HELP received");
            }
            Intent::None => {}
        }
        Ok(())
    }

    fn admin_change(&self, event: &Event) -> Result<(), BatchError> {
        let poison = |error: String| BatchError::Poison {
            seq: event.seq,
            error,
        };
        // Only the operator's route and the sender write these: anything else (an agent's
        // token, a webhook's signature) never changes the list.
        crate::provenance::check(event)?;
        let change: OptOutChange = serde_json::from_slice(&event.body)
            .map_err(|e| poison(format!("invalid opt-out change: {e}")))?;
        let number = normalize_e164(&change.number)
            .ok_or_else(|| poison(format!("`{}` is not a phone number", change.number)))?;
        // A provider's report (Twilio 21610) is the person's opt-out as the provider saw it:
        // the person may lift it by re-subscribing, like one they sent us.
        let kind = match (change.action.as_str(), &change.provider) {
            ("add", None) => FactKind::OperatorAdd,
            ("add", Some(_)) => FactKind::OptOut,
            ("remove", _) => FactKind::OperatorLift,
            (other, _) => return Err(poison(format!("unknown action `{other}`"))),
        };
        let (provider, how) = match change.provider {
            Some(p) => (p, "provider"),
            None => ("admin".to_owned(), "admin"),
        };
        let fact = Fact {
            // hooklog's own record: its receipt is when it was written.
            event_at: event.received_at.to_datetime(),
            received_at: event.received_at.to_rfc3339(),
            seq: event.seq.0,
            source: event.source.as_str().to_owned(),
            reason: format!("{provider}:{}", change.action),
            provider,
            line: change.line,
            text: change.reason.unwrap_or_default(),
            how: how.into(),
        };
        self.apply(&number, kind, fact)?;
        Ok(())
    }
}

/// The line an inbound message was sent to: its one E.164 recipient. A group message (several
/// recipients) or one with no number names no line, so an opt-in in it lifts nothing.
fn line_of(msg: &Message) -> Option<String> {
    let mut numbers: Vec<String> = msg.to.iter().filter_map(|t| normalize_e164(t)).collect();
    numbers.dedup();
    match numbers.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// When a message was written, for ordering facts: the provider's time, but never after
/// hooklog received it (a provider clock ahead, or a forged date, must not place an opt-in
/// after a later STOP); the receipt time when the payload has none.
fn event_time(provider_time: Option<DateTime<Utc>>, received_at: Micros) -> DateTime<Utc> {
    let received = received_at.to_datetime();
    provider_time.map_or(received, |t| t.min(received))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

impl Consumer for Compliance {
    fn name(&self) -> &'static str {
        NAME
    }

    fn upstreams(&self) -> &'static [&'static str] {
        &[dedup::NAME]
    }

    fn reset(&mut self) -> Result<(), BatchError> {
        self.suppression.clear()?;
        Ok(())
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        if let Some(trust) = self.reloads.as_mut().and_then(Watch::changed) {
            self.trust_salesmsg_opt_in = *trust;
        }
        let verdicts = self.verdicts.of_batch(batch.events())?;
        for record in batch.records() {
            // On a poison record the earlier ones are applied; the driver records that one.
            self.process(record, &verdicts)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
