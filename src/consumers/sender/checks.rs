//! The last-moment checks (fail closed): just before calling a provider, the sender refuses a
//! message whose recipient is suppressed for its line (or whose list cannot be read), when the kill switch is
//! on, when the line is blocked by a provider, gone from `[[lines]]`, not approved or on another
//! provider, or when the recipient's quiet hours are closed now. An opt-out or a line block the
//! sender itself has appended counts at once, before the other consumers have projected it.

use super::Sender;
use crate::consumers::compliance;
use crate::consumers::outbound::Message;
use crate::gates::{self, quiet_hours, Reason, ReasonCode};

impl Sender {
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
                "the kill switch is on: nothing is sent",
            ));
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
}
