//! The gates over the outbound read model: [`Gating::evaluate`] builds [`gates::Inputs`] for
//! one message from the outbound store (recent sends, contacts, line blocks) and the
//! suppression list, and runs [`gates::evaluate`]. Both callers use this one function: the
//! `outbound` consumer to decide a request, and the sender at the last moment before a
//! re-send (an operator's redelivery), so a re-send passes exactly the gates a new request
//! passes, as they stand now.
//!
//! A re-send ([`Sending::Again`]) is the message itself once more, so two inputs leave it
//! out where it would otherwise count against itself:
//! - its own earlier sends (its clearance, its earlier re-sends) are passed apart
//!   ([`gates::Inputs::own_history`]): they count toward the caps, not as duplicates;
//! - "has the line texted the recipient" asks about contacts before the message's own
//!   `allow` decision, so it cannot excuse itself from the first-contact wording.

use chrono::{DateTime, Duration, Utc};

use super::message::Message;
use super::store::OutboundStore;
use crate::consumers::compliance;
use crate::gates::{self, ComplianceConfig, Decision, Inputs, LineConfig};
use crate::provider::SendProvider;
use crate::state::{StateError, StateStore};

/// Whether the message is evaluated for the first time or sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sending {
    /// A request waiting for its decision (or held).
    New,
    /// An allowed message sent again by a redelivery.
    Again,
}

/// What the gates read, borrowed from their owner.
pub struct Gating<'a> {
    /// The outbound read model.
    pub store: &'a OutboundStore,
    /// The state store (the suppression list).
    pub state: &'a dyn StateStore,
    /// `[compliance]`, with the kill switch as the log has it.
    pub config: &'a ComplianceConfig,
    /// `[[lines]]`.
    pub lines: &'a [LineConfig],
}

/// The gates' decision and what it was made for.
#[derive(Debug)]
pub struct Gated<'a> {
    /// The decision.
    pub decision: Decision,
    /// The line the request's `from` names, if configured.
    pub line: Option<&'a LineConfig>,
    /// The provider: requested, or the line's.
    pub provider: SendProvider,
    /// The recipient in E.164, if it is a number.
    pub to: Option<String>,
}

/// The line a request's `from` names: a line id, or a line's number.
pub fn resolve_line<'a>(lines: &'a [LineConfig], from: &str) -> Option<&'a LineConfig> {
    let number = crate::phone::normalize_e164(from);
    lines.iter().find(|l| l.id == from).or_else(|| {
        number
            .as_deref()
            .and_then(|n| lines.iter().find(|l| l.number == n))
    })
}

/// A time the outbound records write (RFC 3339), in UTC; `None` if unreadable.
pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl<'a> Gating<'a> {
    /// Runs every gate on `msg` at `now`.
    pub fn evaluate(
        &self,
        msg: &Message,
        now: DateTime<Utc>,
        sending: Sending,
    ) -> Result<Gated<'a>, StateError> {
        let line = resolve_line(self.lines, &msg.from);
        let line_id = line.map_or_else(|| msg.from.clone(), |l| l.id.clone());
        let provider = msg
            .provider
            .or(line.map(|l| l.provider))
            .unwrap_or(SendProvider::Quo);
        let to = crate::phone::normalize_e164(&msg.to);
        let first_requested_at = parse_time(&msg.requested_at).unwrap_or(now);
        let own = (sending == Sending::Again).then_some(&msg.id);
        let (history, own_history) = self
            .store
            .sends_since_apart(now - Duration::hours(24), own)?;
        let contacted = match (&to, sending) {
            (None, _) => false,
            (Some(to), Sending::New) => self.store.contacted(&line_id, to)?,
            (Some(to), Sending::Again) => {
                // Before the message's own clearance (none known: not before it).
                let allowed = msg
                    .history
                    .iter()
                    .find(|s| s.event == "allowed")
                    .map_or(0, |s| s.seq);
                self.store
                    .contacted_at(&line_id, to)?
                    .is_some_and(|first| first < allowed)
            }
        };
        let blocked = self.store.line(&line_id)?;
        let state = self.state;
        // The gates pass the request's line number (a re-subscription lifts on its line only).
        let suppressions = move |n: &str, line: Option<&str>| {
            compliance::is_suppressed(state, n, line).map_err(|e| e.to_string())
        };
        let request = gates::Request {
            line_id: line_id.clone(),
            provider,
            to: msg.to.clone(),
            body: msg.content.clone(),
            first_requested_at,
            now,
        };
        let decision = gates::evaluate(
            &request,
            &Inputs {
                config: self.config,
                lines: self.lines,
                suppressions: &suppressions,
                history: &history,
                own_history: &own_history,
                line_has_texted_recipient: contacted,
                line_blocked: blocked.as_ref().and_then(|b| b.blocked()),
            },
        );
        Ok(Gated {
            decision,
            line,
            provider,
            to,
        })
    }
}
