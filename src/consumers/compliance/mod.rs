//! The compliance consumer, inbound half: the suppression list.
//!
//! Every inbound message (Quo, Twilio, SalesMsg; any line) is classified by
//! [`classifier::classify`]. An opt-out suppresses the sender's E.164 number across every
//! line and both providers from the moment it is projected; an exact START/UNSTOP/YES from a
//! suppressed number resubscribes it; HELP is recognised and logged. Ambiguous messages count
//! as opt-outs (compliance fails closed) and raise an alert so a human can review them.
//! Operators add and remove entries through the admin API, which appends `internal` events
//! (route [`ADMIN_ROUTE`]): the log stays the source of truth and a rebuild reproduces the list.
//! The `sender` appends the same kind of record ([`OptOutChange`], naming the provider and
//! line) when Twilio refuses a send with 21610.
//!
//! Records flagged duplicate by dedup (its upstream) are skipped. A record that cannot be
//! parsed is poison (dead-lettered).
//!
//! The component's files: this one (the consumer), [`suppression`] (the list as the other
//! components read it, its key layout and the records that change it) and [`classifier`] (what
//! an inbound message means for consent: pure).

pub mod classifier;
pub mod suppression;

use std::sync::Arc;

use crate::alerts::{Alert, Alerter, Severity};
use crate::consumers::dedup::{self, RangeVerdicts, Verdicts};
use crate::consumers::{Batch, BatchError, Consumer, Record};
use crate::event::{Event, Source};
use crate::parse::{Data, Direction, Kind};
use crate::phone::normalize_e164;
use crate::state::{KvTree, StateError, StateStore};

use classifier::{Confidence, Intent};
pub use suppression::{
    entry, is_suppressed, list, AdminChange, OptOutChange, OptOutEntry, ADMIN_ROUTE,
};

/// The consumer's name.
pub const NAME: &str = "compliance";

/// The compliance consumer.
pub struct Compliance {
    suppression: Arc<dyn KvTree>,
    verdicts: Verdicts,
    alerter: Alerter,
}

impl Compliance {
    /// Opens its trees in `store`.
    pub fn new(store: &dyn StateStore, alerter: Alerter) -> Result<Compliance, StateError> {
        Ok(Compliance {
            suppression: store.tree(NAME, suppression::TREE)?,
            verdicts: Verdicts::open(store)?,
            alerter,
        })
    }

    fn get(&self, number: &str) -> Result<Option<OptOutEntry>, StateError> {
        self.suppression
            .get(number.as_bytes())?
            .map(|v| suppression::decode(&v))
            .transpose()
    }

    fn put(&self, entry: &OptOutEntry) -> Result<(), StateError> {
        let json = crate::state::to_json(entry)?;
        self.suppression.insert(entry.number.as_bytes(), &json)
    }

    fn process(&self, record: Record<'_>, verdicts: &RangeVerdicts) -> Result<(), BatchError> {
        let event = record.event;
        if !verdicts.is_original(event.seq)? {
            return Ok(());
        }
        if event.source == Source::Internal && event.route == ADMIN_ROUTE {
            return self.admin_change(event);
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
        let line = msg.line_id.clone().or_else(|| msg.to.first().cloned());
        let evidence = |state: &str, how: &str, reason: String| OptOutEntry {
            number: number.clone(),
            state: state.to_owned(),
            seq: event.seq.0,
            provider: parsed.provider_name().to_owned(),
            line: line.clone(),
            text: text.clone(),
            at: event.received_at.to_rfc3339(),
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
                self.put(&evidence("opted_out", how, reason.to_owned()))?;
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
            Intent::OptIn { keyword } => {
                if self.get(&number)?.is_some_and(|e| e.is_suppressed()) {
                    self.put(&evidence(
                        "resubscribed",
                        "opt_in",
                        format!("keyword:{keyword}"),
                    ))?;
                    tracing::info!(seq = event.seq.0, number = %number, "resubscribed");
                }
            }
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
        let change: OptOutChange = serde_json::from_slice(&event.body)
            .map_err(|e| poison(format!("invalid opt-out change: {e}")))?;
        let number = normalize_e164(&change.number)
            .ok_or_else(|| poison(format!("`{}` is not a phone number", change.number)))?;
        let state = match change.action.as_str() {
            "add" => "opted_out",
            "remove" => "resubscribed",
            other => return Err(poison(format!("unknown action `{other}`"))),
        };
        let (provider, how) = match change.provider {
            Some(p) => (p, "provider"),
            None => ("admin".to_owned(), "admin"),
        };
        self.put(&OptOutEntry {
            number,
            state: state.to_owned(),
            seq: event.seq.0,
            reason: format!("{provider}:{}", change.action),
            provider,
            line: change.line,
            text: change.reason.unwrap_or_default(),
            at: event.received_at.to_rfc3339(),
            how: how.into(),
        })?;
        Ok(())
    }
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
