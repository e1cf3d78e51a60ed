//! The last-moment checks (fail closed): just before calling a provider, the sender refuses a
//! message whose recipient is suppressed for its line (or whose list cannot be read), when
//! the kill switch is on (in the configuration, or by an operator's record in the log; or
//! when it cannot be read), when the line is blocked by a provider, gone from `[[lines]]`,
//! not approved or on another provider, or when the recipient's quiet hours are closed now.
//! An opt-out or a line block the sender itself has appended counts at once, before the
//! other consumers have projected it.
//!
//! Before those checks, `Sender::await_stops` holds the call (a transient condition: the
//! batch is retried, nothing is refused) until the `controls` projection has read the log up
//! to the end it had when the batch started, and while the sender is paused: a stop already
//! in the log is never missed because its projection lagged.
//!
//! A re-send (an operator's redelivery) passes, besides, every gate again as a new request
//! would now (`resend_reasons`: caps, identical content within 24 h, first-contact wording,
//! quiet hours, opt-out, line state, the configured kill switch), through the one evaluation
//! the outbound consumer decides with ([`crate::consumers::outbound::gating`]). Its own
//! earlier sends count toward the caps but do not make it a duplicate of itself; a
//! quiet-hours hold is a refusal (the sender does not hold).

use std::time::Duration;

use super::{Sender, NAME};
use crate::consumers::outbound::gating::{Gating, Sending};
use crate::consumers::outbound::Message;
use crate::consumers::{compliance, BatchError};
use crate::gates::{self, quiet_hours, Decision, Reason, ReasonCode};
use crate::state::StateError;

/// How long a call waits for the `controls` projection before the batch is retried.
const CONTROLS_WAIT: Duration = Duration::from_secs(2);

impl Sender {
    /// The stops before a call: the `controls` projection has read the log up to the end it
    /// had when the batch started (else the batch is retried: a kill switch appended before
    /// it could be missed), and the sender is not paused (else the rest of the batch waits
    /// for the resume, its driver pauses).
    pub(super) async fn await_stops(&self) -> Result<(), BatchError> {
        let transient = |e: String| BatchError::Transient(e);
        if self.wait_for_controls {
            let projected = self
                .controls
                .wait_until_projected(self.batch_end, CONTROLS_WAIT)
                .await
                .map_err(|e| transient(e.to_string()))?;
            if !projected {
                let at = self
                    .controls
                    .projected_through()
                    .map_or_else(|e| e.to_string(), |s| s.0.to_string());
                return Err(transient(format!(
                    "not sending: the controls projection has read the log up to {at}, behind the end of the log when this batch started ({}), so a kill switch could be missed; retried when it catches up",
                    self.batch_end
                )));
            }
        }
        if let Some(p) = self
            .controls
            .pause(NAME)
            .map_err(|e| transient(e.to_string()))?
            .filter(|p| p.paused)
        {
            return Err(transient(format!(
                "not sending: the sender was paused by {} at {} ({}; record {}); the rest of the batch waits for the resume",
                p.by,
                p.at,
                p.reason.as_deref().unwrap_or("no reason given"),
                p.seq
            )));
        }
        Ok(())
    }

    /// Why the message may not go now, if anything (fail closed).
    pub(super) fn last_moment_reasons(&self, msg: &Message) -> Vec<Reason> {
        let mut reasons = Vec::new();
        let Some(to) = msg.to_e164.as_deref() else {
            return vec![Reason::new(
                ReasonCode::RecipientInvalid,
                "the decision named no E.164 recipient",
            )];
        };
        let here = crate::phone::normalize_e164(to).and_then(|n| self.opted_out_here.get(&n));
        // Asked for the number of the line it goes from (a re-subscription lifts on its line
        // only); a line gone from `[[lines]]` gets the strictest answer.
        let line_number = msg
            .line_id
            .as_deref()
            .and_then(|id| self.lines.iter().find(|l| l.id == id))
            .map(|l| l.number.as_str());
        match compliance::entry(self.state.as_ref(), to) {
            Ok(e) => {
                let projected = e.as_ref().map_or(0, |e| e.seq);
                let suppressed = e.as_ref().is_some_and(|e| e.is_suppressed_on(line_number));
                if suppressed || here.is_some_and(|&s| s > projected) {
                    reasons.push(Reason::new(
                        ReasonCode::RecipientOptedOut,
                        format!("{to} opted out after the decision"),
                    ));
                }
            }
            Err(e) => reasons.push(Reason::new(
                ReasonCode::SuppressionUnavailable,
                format!("the suppression list cannot be read: {e}"),
            )),
        }
        if self.compliance.kill_switch {
            reasons.push(Reason::new(
                ReasonCode::KillSwitch,
                "the kill switch is on (compliance.kill_switch): nothing is sent",
            ));
        } else {
            match self.controls.kill_switch() {
                Ok(Some(k)) if k.on => reasons.push(Reason::new(
                    ReasonCode::KillSwitch,
                    format!(
                        "the kill switch is on (turned on by {} at {}: {}; record {}): nothing is sent",
                        k.by,
                        k.at,
                        k.reason.as_deref().unwrap_or("no reason given"),
                        k.seq
                    ),
                )),
                Ok(_) => {}
                Err(e) => reasons.push(Reason::new(
                    ReasonCode::KillSwitch,
                    format!("the kill switch cannot be read: {e}"),
                )),
            }
        }
        match (msg.line_id.as_deref(), msg.provider) {
            (Some(line_id), Some(provider)) => {
                if let Err(r) = gates::line::check(&self.lines, line_id, provider) {
                    reasons.extend(r);
                }
                match self.outbound.line(line_id) {
                    Ok(state) => {
                        let projected = state.as_ref().map_or(0, |s| s.seq);
                        let here = self.blocked_here.get(line_id).copied();
                        if let Some(why) = state.as_ref().and_then(|s| s.blocked()) {
                            reasons.push(Reason::new(
                                ReasonCode::LineBlocked,
                                format!("line `{line_id}` is blocked: {why}"),
                            ));
                        } else if here.is_some_and(|s| s > projected) {
                            reasons.push(Reason::new(
                                ReasonCode::LineBlocked,
                                format!("line `{line_id}` was blocked by the provider"),
                            ));
                        }
                    }
                    Err(e) => reasons.push(Reason::new(
                        ReasonCode::LineBlocked,
                        format!("the state of line `{line_id}` cannot be read: {e}"),
                    )),
                }
            }
            _ => reasons.push(Reason::new(
                ReasonCode::LineUnknown,
                "the decision resolved no line or provider",
            )),
        }
        match quiet_hours::check(&self.compliance, to, self.clock.now()) {
            Ok(c) if c.open => {}
            Ok(c) => reasons.push(Reason::new(
                ReasonCode::QuietHours,
                format!(
                    "outside the allowed hours for {to} ({}) now{}",
                    c.region,
                    c.opens_at
                        .map(|t| format!("; the window opens at {}", t.to_rfc3339()))
                        .unwrap_or_default()
                ),
            )),
            Err(e) => reasons.push(Reason::new(
                ReasonCode::AreaCodeUnknown,
                format!("the local time of {to} is unknown: {e}"),
            )),
        }
        reasons
    }

    /// Why a re-send of `msg` may not go now by the full gate set, as it stands now.
    pub(super) fn resend_reasons(&self, msg: &Message) -> Result<Vec<Reason>, StateError> {
        let gated = Gating {
            store: &self.outbound,
            state: self.state.as_ref(),
            config: &self.compliance,
            lines: &self.lines,
        }
        .evaluate(msg, self.clock.now(), Sending::Again)?;
        Ok(match gated.decision {
            Decision::Allow => Vec::new(),
            Decision::Hold { reason, .. } => vec![reason],
            Decision::Refuse { reasons } => reasons,
        })
    }
}
