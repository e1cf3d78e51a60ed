//! The state of one outbound message: a pure fold of its records.
//!
//! ```text
//!             request
//!                │
//!                ▼        hold                 refuse
//!            pending ─────────► held ──(again)──────────► refused
//!                │  allow  ◄────┘ allow                       ▲
//!                ▼                                             │ last-moment check
//!        pending (approved) ──attempt──► sending ──result──► sent · failed · unknown · refused
//!                                           ▲                     │
//!                                           └──── redelivery ─────┘
//! ```
//!
//! Invariants:
//! - [`apply`] is deterministic and ignores a record at or below the last one applied, so
//!   re-projecting after a rewind, or twice, gives the same message.
//! - A decision counts only while the message waits for one (`pending` without a decision,
//!   or `held`): a second decision for a decided message (a race, a replay) changes nothing.
//! - A result ends the attempt it names; a result without a recorded attempt (the daemon
//!   stopped between the two) is still applied, so `unknown` is never lost.
//! - A `refused` result for a later attempt of a finished message is a re-send the sender
//!   refused at the last moment: a history step (`redelivery_refused`, with the reasons);
//!   the status stays that of the last attempt made.

use serde::{Deserialize, Serialize};

use super::records::{
    GateDecision, GateVerdict, MessageId, MessageRequest, SendAttempt, SendResult, SendStatus,
};
use crate::gates::Reason;
use crate::provider::SendProvider;

/// What the API reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for the gates, or cleared and waiting for the sender.
    Pending,
    /// Quiet hours: evaluated again at `hold_until`.
    Held,
    /// Not sent, with reasons.
    Refused,
    /// The provider is being called.
    Sending,
    /// The provider accepted it.
    Sent,
    /// Not sent: the provider refused it.
    Failed,
    /// May have gone out; an operator must check.
    Unknown,
}

impl Status {
    /// The spelling used in JSON and Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Held => "held",
            Status::Refused => "refused",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
        }
    }

    /// Whether nothing more happens to the message without an operator.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Refused | Status::Sent | Status::Failed | Status::Unknown
        )
    }
}

/// One step of a message's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The record.
    pub seq: u64,
    /// `requested`, `allowed`, `held`, `refused`, `attempt`, `redelivery`, `sent`, `failed`,
    /// `unknown`, `redelivery_refused` (a re-send refused by the gates at the last moment).
    pub event: String,
    /// When it happened (RFC 3339).
    pub at: String,
    /// Details (reasons, the provider's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Who did it, where the record says: the `requested` step names the token that asked
    /// (`agent:<name>` or `operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The projected state of one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// Where it stands.
    pub status: Status,
    /// Whether the gates cleared it (the sender's cue).
    pub approved: bool,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// The line as the caller gave it.
    pub from: String,
    /// The resolved line id, once decided.
    pub line_id: Option<String>,
    /// The sending number, once decided.
    pub from_number: Option<String>,
    /// The provider requested, or resolved once decided.
    pub provider: Option<SendProvider>,
    /// The recipient as given.
    pub to: String,
    /// The recipient in E.164, once decided.
    pub to_e164: Option<String>,
    /// The text.
    pub content: String,
    /// Why it is held or refused, or why it failed.
    pub reasons: Vec<Reason>,
    /// For `held`: when it is evaluated again (RFC 3339).
    pub hold_until: Option<String>,
    /// Gate evaluations so far.
    pub evaluations: u32,
    /// Send attempts so far.
    pub attempts: u32,
    /// The provider's message id, once sent.
    pub provider_id: Option<String>,
    /// The provider's error, if it failed.
    pub error: Option<String>,
    /// When it was requested (RFC 3339).
    pub requested_at: String,
    /// When its status last changed (RFC 3339).
    pub updated_at: String,
    /// Whose token asked (`agent:<name>` or `operator`); `None` on requests written before
    /// agent tokens existed, when the operator token was the only one.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// The request record.
    pub request_seq: u64,
    /// The last record applied.
    pub last_seq: u64,
    /// Every step, oldest first.
    pub history: Vec<Step>,
}

impl Message {
    /// A message as requested at record `seq`.
    pub fn requested(seq: u64, r: &MessageRequest) -> Message {
        Message {
            id: r.id.clone(),
            status: Status::Pending,
            approved: false,
            idempotency_key: r.idempotency_key.clone(),
            from: r.from.clone(),
            line_id: None,
            from_number: None,
            provider: r.provider,
            to: r.to.clone(),
            to_e164: None,
            content: r.content.clone(),
            reasons: Vec::new(),
            hold_until: None,
            evaluations: 0,
            attempts: 0,
            provider_id: None,
            error: None,
            requested_at: r.requested_at.clone(),
            updated_at: r.requested_at.clone(),
            requested_by: r.requested_by.clone(),
            request_seq: seq,
            last_seq: seq,
            history: vec![Step {
                seq,
                event: "requested".into(),
                at: r.requested_at.clone(),
                detail: None,
                by: r.requested_by.clone(),
            }],
        }
    }

    /// Whether the gates still owe it a decision (new, or held).
    pub fn awaits_decision(&self) -> bool {
        match self.status {
            Status::Pending => !self.approved,
            Status::Held => true,
            _ => false,
        }
    }

    /// Whether the sender should send it: cleared and never attempted.
    pub fn awaits_send(&self) -> bool {
        self.approved && self.status == Status::Pending && self.attempts == 0
    }
}

/// A record that changes a message, with its position in the log.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// A gate decision.
    Decision(&'a GateDecision),
    /// A send attempt.
    Attempt(&'a SendAttempt),
    /// A send result.
    Result(&'a SendResult),
}

fn reasons_text(reasons: &[Reason]) -> Option<String> {
    if reasons.is_empty() {
        None
    } else {
        Some(
            reasons
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

/// Applies record `seq` to `msg`. Returns whether anything changed (see the invariants).
pub fn apply(msg: &mut Message, seq: u64, change: Change<'_>) -> bool {
    if seq <= msg.last_seq {
        return false;
    }
    let step = match change {
        Change::Decision(d) => {
            if !msg.awaits_decision() {
                return false;
            }
            msg.evaluations = msg.evaluations.max(d.evaluation);
            msg.line_id = d.line_id.clone().or(msg.line_id.take());
            msg.from_number = d.from_number.clone().or(msg.from_number.take());
            msg.provider = d.provider.or(msg.provider);
            msg.to_e164 = d.to.clone().or(msg.to_e164.take());
            msg.reasons = d.reasons.clone();
            msg.updated_at = d.decided_at.clone();
            let (event, status) = match d.verdict {
                GateVerdict::Allow => {
                    msg.approved = true;
                    msg.hold_until = None;
                    ("allowed", Status::Pending)
                }
                GateVerdict::Hold => {
                    msg.hold_until = d.hold_until.clone();
                    ("held", Status::Held)
                }
                GateVerdict::Refuse => {
                    msg.hold_until = None;
                    ("refused", Status::Refused)
                }
            };
            msg.status = status;
            Step {
                seq,
                event: event.into(),
                at: d.decided_at.clone(),
                detail: reasons_text(&d.reasons),
                by: None,
            }
        }
        Change::Attempt(a) => {
            let redelivery = a.redelivery && msg.status.is_final() && msg.approved;
            if !(msg.awaits_send() || redelivery) {
                return false;
            }
            msg.attempts = msg.attempts.max(a.attempt);
            msg.status = Status::Sending;
            msg.updated_at = a.at.clone();
            Step {
                seq,
                event: if a.redelivery {
                    "redelivery".into()
                } else {
                    "attempt".into()
                },
                at: a.at.clone(),
                detail: Some(format!(
                    "attempt {} via {} from {} to {}",
                    a.attempt,
                    a.provider.as_str(),
                    a.from,
                    a.to
                )),
                by: None,
            }
        }
        Change::Result(r) => {
            let ends_attempt = msg.status == Status::Sending && r.attempt == msg.attempts;
            // The daemon can stop between the ledger entry and the attempt record: the
            // result (`unknown`) then arrives for an attempt the log never saw.
            let orphan = msg.awaits_send() && r.attempt == msg.attempts + 1;
            // A re-send (redelivery) the sender refused at the last moment: no attempt was
            // made, so the message keeps the status of its last attempt; the refusal and
            // its reasons are a step of its history.
            let refused_resend = r.status == SendStatus::Refused
                && msg.approved
                && msg.status.is_final()
                && r.attempt > msg.attempts;
            if refused_resend {
                msg.attempts = r.attempt;
                msg.last_seq = seq;
                msg.history.push(Step {
                    seq,
                    event: "redelivery_refused".into(),
                    at: r.at.clone(),
                    detail: reasons_text(&r.reasons),
                    by: None,
                });
                return true;
            }
            if !(ends_attempt || orphan) {
                return false;
            }
            msg.attempts = msg.attempts.max(r.attempt);
            msg.status = match r.status {
                SendStatus::Sent => Status::Sent,
                SendStatus::Failed => Status::Failed,
                SendStatus::Unknown => Status::Unknown,
                SendStatus::Refused => Status::Refused,
            };
            if r.provider_id.is_some() {
                msg.provider_id = r.provider_id.clone();
            }
            msg.error = r.error.clone();
            if !r.reasons.is_empty() {
                msg.reasons = r.reasons.clone();
            }
            msg.updated_at = r.at.clone();
            Step {
                seq,
                event: r.status.as_str().into(),
                at: r.at.clone(),
                detail: r
                    .error
                    .clone()
                    .or_else(|| reasons_text(&r.reasons))
                    .or_else(|| r.provider_id.clone()),
                by: None,
            }
        }
    };
    msg.last_seq = seq;
    msg.history.push(step);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::ReasonCode;

    fn request() -> Message {
        Message::requested(
            10,
            &MessageRequest {
                id: MessageId("msg_00000000000010000000000001".into()),
                idempotency_key: None,
                from: "quo-main".into(),
                provider: None,
                to: "+12125550100".into(),
                content: "hi".into(),
                requested_at: "2026-11-30T12:00:00Z".into(),
                requested_by: None,
            },
        )
    }

    fn decision(verdict: GateVerdict, evaluation: u32) -> GateDecision {
        GateDecision {
            id: request().id,
            verdict,
            reasons: match verdict {
                GateVerdict::Allow => vec![],
                GateVerdict::Hold => vec![Reason::new(ReasonCode::QuietHours, "quiet")],
                GateVerdict::Refuse => vec![Reason::new(ReasonCode::RecipientOptedOut, "stop")],
            },
            hold_until: (verdict == GateVerdict::Hold).then(|| "2026-12-01T13:00:00Z".into()),
            line_id: Some("quo-main".into()),
            from_number: Some("+12125550199".into()),
            provider: Some(SendProvider::Quo),
            to: Some("+12125550100".into()),
            evaluation,
            decided_at: "2026-11-30T12:00:01Z".into(),
        }
    }

    fn attempt(n: u32, redelivery: bool) -> SendAttempt {
        SendAttempt {
            id: request().id,
            attempt: n,
            provider: SendProvider::Quo,
            from: "+12125550199".into(),
            to: "+12125550100".into(),
            redelivery,
            at: "2026-11-30T12:00:02Z".into(),
        }
    }

    fn result(n: u32, status: SendStatus) -> SendResult {
        SendResult {
            id: request().id,
            attempt: n,
            status,
            outcome: status.as_str().into(),
            provider_id: (status == SendStatus::Sent).then(|| "AC1".into()),
            code: None,
            error: None,
            reasons: vec![],
            tries: 1,
            at: "2026-11-30T12:00:03Z".into(),
        }
    }

    #[test]
    fn a_cleared_message_goes_pending_sending_sent() {
        let mut m = request();
        assert!(m.awaits_decision() && !m.awaits_send());
        assert!(apply(
            &mut m,
            11,
            Change::Decision(&decision(GateVerdict::Allow, 1))
        ));
        assert_eq!(m.status, Status::Pending);
        assert!(m.awaits_send() && !m.awaits_decision());
        assert!(apply(&mut m, 12, Change::Attempt(&attempt(1, false))));
        assert_eq!(m.status, Status::Sending);
        assert!(!m.awaits_send());
        assert!(apply(
            &mut m,
            13,
            Change::Result(&result(1, SendStatus::Sent))
        ));
        assert_eq!(m.status, Status::Sent);
        assert_eq!(m.provider_id.as_deref(), Some("AC1"));
        let steps: Vec<&str> = m.history.iter().map(|s| s.event.as_str()).collect();
        assert_eq!(steps, ["requested", "allowed", "attempt", "sent"]);
    }

    #[test]
    fn a_resend_refused_at_the_last_moment_is_a_step_and_keeps_the_status_of_the_last_attempt() {
        let mut m = request();
        apply(
            &mut m,
            11,
            Change::Decision(&decision(GateVerdict::Allow, 1)),
        );
        apply(&mut m, 12, Change::Attempt(&attempt(1, false)));
        apply(&mut m, 13, Change::Result(&result(1, SendStatus::Sent)));
        let mut refused = result(2, SendStatus::Refused);
        refused.provider_id = None;
        refused.reasons = vec![Reason::new(ReasonCode::RecipientCap24h, "the cap is 3")];
        assert!(apply(&mut m, 20, Change::Result(&refused)));
        assert_eq!((m.status, m.attempts), (Status::Sent, 2));
        assert_eq!(m.provider_id.as_deref(), Some("AC1"));
        let last = m.history.last().unwrap();
        assert_eq!(
            (last.event.as_str(), last.detail.as_deref()),
            ("redelivery_refused", Some("the cap is 3"))
        );
        // Applied once: the same record again changes nothing.
        assert!(!apply(&mut m, 20, Change::Result(&refused)));
        // The next re-send is still a redelivery of a finished message.
        assert!(apply(&mut m, 21, Change::Attempt(&attempt(3, true))));
        assert_eq!(m.status, Status::Sending);
    }

    #[test]
    fn replaying_records_already_applied_changes_nothing() {
        let mut m = request();
        apply(
            &mut m,
            11,
            Change::Decision(&decision(GateVerdict::Allow, 1)),
        );
        apply(&mut m, 12, Change::Attempt(&attempt(1, false)));
        let before = m.clone();
        assert!(!apply(
            &mut m,
            11,
            Change::Decision(&decision(GateVerdict::Allow, 1))
        ));
        assert!(!apply(&mut m, 12, Change::Attempt(&attempt(1, false))));
        assert_eq!(m, before);
    }

    #[test]
    fn a_second_decision_for_a_decided_message_is_ignored() {
        let mut m = request();
        apply(
            &mut m,
            11,
            Change::Decision(&decision(GateVerdict::Refuse, 1)),
        );
        assert!(!apply(
            &mut m,
            12,
            Change::Decision(&decision(GateVerdict::Allow, 1))
        ));
        assert_eq!(m.status, Status::Refused);
        assert!(!m.approved);
        assert!(!apply(&mut m, 13, Change::Attempt(&attempt(1, false))));
    }

    #[test]
    fn a_held_message_is_decided_again_and_can_then_be_sent() {
        let mut m = request();
        apply(
            &mut m,
            11,
            Change::Decision(&decision(GateVerdict::Hold, 1)),
        );
        assert_eq!(m.status, Status::Held);
        assert!(m.hold_until.is_some());
        assert!(m.awaits_decision());
        apply(
            &mut m,
            20,
            Change::Decision(&decision(GateVerdict::Allow, 2)),
        );
        assert_eq!(m.status, Status::Pending);
        assert_eq!(m.evaluations, 2);
        assert!(m.hold_until.is_none());
        assert!(m.awaits_send());
    }

    #[test]
    fn an_unknown_result_without_its_attempt_record_still_lands() {
        let mut m = request();
        apply(
            &mut m,
            11,
            Change::Decision(&decision(GateVerdict::Allow, 1)),
        );
        assert!(apply(
            &mut m,
            12,
            Change::Result(&result(1, SendStatus::Unknown))
        ));
        assert_eq!(m.status, Status::Unknown);
        assert!(!m.awaits_send(), "never sent again by itself");
    }

    #[test]
    fn only_a_redelivery_attempts_a_finished_message_again() {
        let mut m = request();
        apply(
            &mut m,
            11,
            Change::Decision(&decision(GateVerdict::Allow, 1)),
        );
        apply(&mut m, 12, Change::Attempt(&attempt(1, false)));
        apply(&mut m, 13, Change::Result(&result(1, SendStatus::Sent)));
        assert!(!apply(&mut m, 14, Change::Attempt(&attempt(2, false))));
        assert!(apply(&mut m, 15, Change::Attempt(&attempt(2, true))));
        assert_eq!(m.status, Status::Sending);
        assert!(!apply(
            &mut m,
            16,
            Change::Result(&result(1, SendStatus::Failed))
        ));
        assert!(apply(
            &mut m,
            17,
            Change::Result(&result(2, SendStatus::Sent))
        ));
        assert_eq!(m.attempts, 2);
    }
}
