//! The records of the outbound path, as they are stored in the log.
//!
//! Everything the outbound path learns from the clock or the outside world is one of these
//! records (guarantee 3): a replay reads them back and never asks the clock or a provider
//! again. Bodies are JSON (`content-type: application/json`); fields may be added, never
//! renamed.
//!
//! | route                         | source     | written by                   | body               |
//! |-------------------------------|------------|------------------------------|--------------------|
//! | [`REQUEST_ROUTE`]             | `outbound` | `POST /v1/messages` (a token)| [`MessageRequest`] |
//! | [`DECISION_ROUTE`]            | `outbound` | the `outbound` gate consumer | [`GateDecision`]   |
//! | [`ATTEMPT_ROUTE`]             | `outbound` | `sender`, before the call    | [`SendAttempt`]    |
//! | [`RESULT_ROUTE`]              | `outbound` | `sender`, after the call     | [`SendResult`]     |
//! | [`LINE_ROUTE`]                | `internal` | `sender`, the admin API      | [`LineChange`]     |
//! | [`DISPATCH_ROUTE`]            | `internal` | `dispatch`                   | [`DispatchResult`] |
//!
//! "Written by" is enforced: [`OutboundRecord::decode`] returns [`RecordError::Forged`] for a
//! record whose verification does not fit its route ([`crate::provenance`]), so every reader
//! that acts on these records refuses one that hooklog (or, for a request or a line unblock,
//! a token holder through its route) did not write.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::provider::SendProvider;

use crate::event::{Event, Micros, Source, Verification, Verified};
use crate::gates::Reason;
use crate::provenance::{self, Forged};

/// An agent's request to send a message (`POST /v1/messages`).
pub const REQUEST_ROUTE: &str = provenance::REQUEST_ROUTE;
/// The gates' decision on a request.
pub const DECISION_ROUTE: &str = provenance::DECISION_ROUTE;
/// A send attempt, appended (and flushed) before the provider is called.
pub const ATTEMPT_ROUTE: &str = provenance::ATTEMPT_ROUTE;
/// How a send attempt ended.
pub const RESULT_ROUTE: &str = provenance::RESULT_ROUTE;
/// A line blocked by a provider, or unblocked by an operator.
pub const LINE_ROUTE: &str = provenance::LINE_ROUTE;
/// The result of dispatching one event to one agent.
pub const DISPATCH_ROUTE: &str = provenance::DISPATCH_ROUTE;

/// A message id: `msg_` then 26 lowercase hex digits, time-ordered (13 digits of
/// microseconds since the epoch, 13 random).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub String);

impl MessageId {
    /// A new id for a request received at `at`.
    pub fn generate(at: Micros) -> MessageId {
        let random: u64 = rand::thread_rng().gen_range(0..(1u64 << 52));
        MessageId(format!(
            "msg_{:013x}{:013x}",
            (at.0.max(0) as u64) & ((1 << 52) - 1),
            random
        ))
    }

    /// Whether `s` has the shape of an id (the API refuses anything else with 404).
    pub fn is_valid(s: &str) -> bool {
        s.strip_prefix("msg_").is_some_and(|h| {
            h.len() == 26
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Body of a [`REQUEST_ROUTE`] record: what the agent asked for, as given. The line is
/// resolved by the gates, so a configuration change between request and decision is judged
/// by the configuration in force when the decision is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRequest {
    /// The message's id, assigned by the API.
    pub id: MessageId,
    /// The caller's idempotency key: a second request with the same key is the same message.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The line to send from: a `[[lines]]` id or the line's number.
    pub from: String,
    /// The provider the caller expects; `None`: the line's own. Never substituted.
    #[serde(default)]
    pub provider: Option<SendProvider>,
    /// The recipient, as given.
    pub to: String,
    /// The text.
    pub content: String,
    /// When the API accepted it (RFC 3339).
    pub requested_at: String,
    /// Whose token asked: `agent:<name>` or `operator`, written by the API from the token
    /// that authenticated the request, never from the caller's JSON. Absent on records
    /// written before agent tokens existed (the operator token was the only one then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// What the gates decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    /// Cleared by every gate: the sender sends it.
    Allow,
    /// Quiet hours only: evaluated again at `hold_until`.
    Hold,
    /// Not sent.
    Refuse,
}

/// Body of a [`DECISION_ROUTE`] record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDecision {
    /// The message.
    pub id: MessageId,
    /// The verdict.
    pub verdict: GateVerdict,
    /// Every reason (empty for `allow`).
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// For `hold`: when the request is evaluated again (RFC 3339).
    #[serde(default)]
    pub hold_until: Option<String>,
    /// The resolved line id, when `from` named a configured line.
    #[serde(default)]
    pub line_id: Option<String>,
    /// The line's number (the sender's `from`), when resolved.
    #[serde(default)]
    pub from_number: Option<String>,
    /// The provider the message goes through, when resolved.
    #[serde(default)]
    pub provider: Option<SendProvider>,
    /// The recipient in E.164, when it is a phone number.
    #[serde(default)]
    pub to: Option<String>,
    /// 1 for the first evaluation, 2 for the first re-evaluation after a hold, …
    pub evaluation: u32,
    /// When the gates ran (RFC 3339).
    pub decided_at: String,
}

/// Body of an [`ATTEMPT_ROUTE`] record: appended and flushed before the provider is called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAttempt {
    /// The message.
    pub id: MessageId,
    /// 1 for the first attempt; a redelivery is the next number.
    pub attempt: u32,
    /// The provider called.
    pub provider: SendProvider,
    /// The sending number.
    pub from: String,
    /// The recipient, E.164.
    pub to: String,
    /// Whether an operator asked for it (`rewind sender --redeliver`).
    #[serde(default)]
    pub redelivery: bool,
    /// When the call started (RFC 3339).
    pub at: String,
}

/// How a send attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    /// The provider accepted it.
    Sent,
    /// The provider refused it, or it was never sent; not retried.
    Failed,
    /// It may have gone out: no answer was read, or the daemon stopped between the attempt
    /// and its result. Never resent blindly.
    Unknown,
    /// A last-moment check before the call refused it (an opt-out or the kill switch since
    /// the decision, quiet hours after a wait): nothing was sent.
    Refused,
}

impl SendStatus {
    /// The spelling used in JSON and Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Sent => "sent",
            SendStatus::Failed => "failed",
            SendStatus::Unknown => "unknown",
            SendStatus::Refused => "refused",
        }
    }
}

/// Body of a [`RESULT_ROUTE`] record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResult {
    /// The message.
    pub id: MessageId,
    /// The attempt this ends.
    pub attempt: u32,
    /// How it ended.
    pub status: SendStatus,
    /// The classifier's outcome (`sent`, `rate_limited`, `opted_out`, `line_blocked`,
    /// `rejected`, `transient`, `unknown`, `crashed`, `refused`).
    pub outcome: String,
    /// The provider's message id, when sent.
    #[serde(default)]
    pub provider_id: Option<String>,
    /// The provider's error code, if any.
    #[serde(default)]
    pub code: Option<String>,
    /// What happened, for an operator.
    #[serde(default)]
    pub error: Option<String>,
    /// For a last-moment refusal: the reasons.
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// Calls made (429 retries included).
    pub tries: u32,
    /// When it ended (RFC 3339).
    pub at: String,
}

/// Body of a [`LINE_ROUTE`] record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineChange {
    /// The `[[lines]]` id.
    pub line_id: String,
    /// `blocked` or `unblocked`.
    pub state: String,
    /// Why (the provider's message, or the operator's note).
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

/// Body of a [`DISPATCH_ROUTE`] record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchResult {
    /// The dispatched event.
    pub seq: u64,
    /// The agent.
    pub agent: String,
    /// The key sent to the gateway (`hooklog:<seq>:<dedup_key>`).
    pub idempotency_key: String,
    /// The event's kind (`message.received`, …).
    pub kind: String,
    /// `delivered`, `rejected` (the gateway refused it for good) or `dead_lettered` (it
    /// could not be delivered within the configured age).
    pub outcome: String,
    /// The gateway's HTTP status, if it answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// Calls made.
    pub attempts: u32,
    /// From receipt of the event to this result, in milliseconds.
    pub latency_ms: i64,
    /// Whether the contact had opted out (the agent was told not to reply).
    pub opted_out: bool,
    /// Whether an operator asked for it (`rewind dispatch --redeliver`).
    #[serde(default)]
    pub redelivery: bool,
    /// What went wrong, if anything.
    #[serde(default)]
    pub error: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// One record of the outbound path, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundRecord {
    /// [`REQUEST_ROUTE`]
    Request(MessageRequest),
    /// [`DECISION_ROUTE`]
    Decision(GateDecision),
    /// [`ATTEMPT_ROUTE`]
    Attempt(SendAttempt),
    /// [`RESULT_ROUTE`]
    Result(SendResult),
    /// [`LINE_ROUTE`]
    Line(LineChange),
    /// [`DISPATCH_ROUTE`]
    Dispatch(DispatchResult),
}

/// A record of the outbound path that must not be acted on.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The body is not the record's JSON.
    #[error("record {seq} ({route}) is not a valid outbound record: {source}")]
    Invalid {
        /// The record.
        seq: u64,
        /// Its route.
        route: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Its writer may not write a record of its kind ([`crate::provenance`]).
    #[error(transparent)]
    Forged(#[from] Forged),
}

impl RecordError {
    /// The record.
    pub fn seq(&self) -> u64 {
        match self {
            RecordError::Invalid { seq, .. } => *seq,
            RecordError::Forged(f) => f.seq,
        }
    }
}

impl OutboundRecord {
    /// The source and route a record of this kind is stored with.
    pub fn placement(&self) -> (Source, &'static str) {
        match self {
            OutboundRecord::Request(_) => (Source::Outbound, REQUEST_ROUTE),
            OutboundRecord::Decision(_) => (Source::Outbound, DECISION_ROUTE),
            OutboundRecord::Attempt(_) => (Source::Outbound, ATTEMPT_ROUTE),
            OutboundRecord::Result(_) => (Source::Outbound, RESULT_ROUTE),
            OutboundRecord::Line(_) => (Source::Internal, LINE_ROUTE),
            OutboundRecord::Dispatch(_) => (Source::Internal, DISPATCH_ROUTE),
        }
    }

    /// Reads `event` if it is a record of the outbound path: `None` for any other event,
    /// [`RecordError::Forged`] for one whose writer may not write it (checked before the
    /// body is read: a forged record is never acted on, however well formed).
    pub fn decode(event: &Event) -> Option<Result<OutboundRecord, RecordError>> {
        fn parse<T: serde::de::DeserializeOwned>(
            event: &Event,
            wrap: fn(T) -> OutboundRecord,
        ) -> Result<OutboundRecord, RecordError> {
            serde_json::from_slice(&event.body)
                .map(wrap)
                .map_err(|source| RecordError::Invalid {
                    seq: event.seq.0,
                    route: event.route.clone(),
                    source,
                })
        }
        type Reader = fn(&Event) -> Result<OutboundRecord, RecordError>;
        let read: Reader = match (event.source, event.route.as_str()) {
            (Source::Outbound, REQUEST_ROUTE) => |e| parse(e, OutboundRecord::Request),
            (Source::Outbound, DECISION_ROUTE) => |e| parse(e, OutboundRecord::Decision),
            (Source::Outbound, ATTEMPT_ROUTE) => |e| parse(e, OutboundRecord::Attempt),
            (Source::Outbound, RESULT_ROUTE) => |e| parse(e, OutboundRecord::Result),
            (Source::Internal, LINE_ROUTE) => |e| parse(e, OutboundRecord::Line),
            (Source::Internal, DISPATCH_ROUTE) => |e| parse(e, OutboundRecord::Dispatch),
            _ => return None,
        };
        if let Err(forged) = provenance::check(event) {
            return Some(Err(forged.into()));
        }
        Some(read(event))
    }

    /// The record ready to append. A request comes from a holder of the admin token; the
    /// rest are written by hooklog itself.
    pub fn to_verified(&self, at: Micros) -> Verified {
        let verification = match self {
            OutboundRecord::Request(_) => Verification::AdminToken,
            _ => Verification::Internal,
        };
        self.to_verified_as(at, verification)
    }

    /// The record ready to append, authenticated as `verification` (an operator's line
    /// change comes with the admin token).
    pub fn to_verified_as(&self, at: Micros, verification: Verification) -> Verified {
        let (source, route) = self.placement();
        let body = match self {
            OutboundRecord::Request(b) => serde_json::to_vec(b),
            OutboundRecord::Decision(b) => serde_json::to_vec(b),
            OutboundRecord::Attempt(b) => serde_json::to_vec(b),
            OutboundRecord::Result(b) => serde_json::to_vec(b),
            OutboundRecord::Line(b) => serde_json::to_vec(b),
            OutboundRecord::Dispatch(b) => serde_json::to_vec(b),
        }
        // Plain structs of strings, numbers and enums: serde_json cannot fail on them.
        .unwrap_or_default();
        Verified::new(
            at,
            source,
            route.to_owned(),
            vec![("content-type".into(), "application/json".into())],
            body,
            verification,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Seq;
    use crate::gates::ReasonCode;

    fn stored(record: &OutboundRecord, seq: u64) -> Event {
        let v = record.to_verified(Micros(1_700_000_000_000_000));
        Event {
            seq: Seq(seq),
            received_at: Micros(1_700_000_000_000_000),
            source: v.source(),
            route: record.placement().1.to_owned(),
            headers: vec![],
            body: v.body().to_vec(),
            verification: v.verification,
        }
    }

    #[test]
    fn every_record_kind_round_trips_through_the_log_encoding() {
        let id = MessageId::generate(Micros::now());
        let records = [
            OutboundRecord::Request(MessageRequest {
                id: id.clone(),
                idempotency_key: Some("k1".into()),
                from: "quo-main".into(),
                provider: Some(SendProvider::Quo),
                to: "+12125550100".into(),
                content: "hi".into(),
                requested_at: "2026-11-30T12:00:00Z".into(),
                requested_by: None,
            }),
            OutboundRecord::Decision(GateDecision {
                id: id.clone(),
                verdict: GateVerdict::Refuse,
                reasons: vec![Reason::new(ReasonCode::RecipientOptedOut, "opted out")],
                hold_until: None,
                line_id: Some("quo-main".into()),
                from_number: Some("+12125550199".into()),
                provider: Some(SendProvider::Quo),
                to: Some("+12125550100".into()),
                evaluation: 1,
                decided_at: "2026-11-30T12:00:01Z".into(),
            }),
            OutboundRecord::Attempt(SendAttempt {
                id: id.clone(),
                attempt: 1,
                provider: SendProvider::Twilio,
                from: "+12125550199".into(),
                to: "+12125550100".into(),
                redelivery: false,
                at: "2026-11-30T12:00:02Z".into(),
            }),
            OutboundRecord::Result(SendResult {
                id: id.clone(),
                attempt: 1,
                status: SendStatus::Sent,
                outcome: "sent".into(),
                provider_id: Some("SM1".into()),
                code: None,
                error: None,
                reasons: vec![],
                tries: 2,
                at: "2026-11-30T12:00:03Z".into(),
            }),
            OutboundRecord::Line(LineChange {
                line_id: "quo-main".into(),
                state: "blocked".into(),
                reason: "A2P".into(),
                at: "2026-11-30T12:00:03Z".into(),
            }),
            OutboundRecord::Dispatch(DispatchResult {
                seq: 7,
                agent: "atlas".into(),
                idempotency_key: "hooklog:7:k".into(),
                kind: "call.completed".into(),
                outcome: "delivered".into(),
                status: Some(200),
                attempts: 1,
                latency_ms: 120,
                opted_out: false,
                redelivery: false,
                error: None,
                at: "2026-11-30T12:00:03Z".into(),
            }),
        ];
        for (i, r) in records.iter().enumerate() {
            let back = OutboundRecord::decode(&stored(r, i as u64 + 1))
                .unwrap()
                .unwrap();
            assert_eq!(&back, r);
        }
    }

    #[test]
    fn other_events_are_not_outbound_records_and_a_bad_body_is_an_error() {
        let mut ev = stored(
            &OutboundRecord::Line(LineChange {
                line_id: "l".into(),
                state: "blocked".into(),
                reason: "r".into(),
                at: "t".into(),
            }),
            3,
        );
        ev.body = b"{not json".to_vec();
        let err = OutboundRecord::decode(&ev).unwrap().unwrap_err();
        assert_eq!(err.seq(), 3);
        ev.route = "/internal/optouts".into();
        assert!(OutboundRecord::decode(&ev).is_none());
        ev.source = Source::Quo;
        ev.route = REQUEST_ROUTE.into();
        assert!(
            OutboundRecord::decode(&ev).is_none(),
            "only hooklog writes these"
        );
    }

    #[test]
    fn a_record_whose_writer_may_not_write_it_is_forged_however_well_formed_its_body() {
        let decision = OutboundRecord::Decision(GateDecision {
            id: MessageId::generate(Micros::now()),
            verdict: GateVerdict::Allow,
            reasons: vec![],
            hold_until: None,
            line_id: Some("quo-main".into()),
            from_number: Some("+12125550199".into()),
            provider: Some(SendProvider::Quo),
            to: Some("+12125550100".into()),
            evaluation: 1,
            decided_at: "2026-11-30T12:00:01Z".into(),
        });
        let mut ev = stored(&decision, 9);
        assert!(matches!(OutboundRecord::decode(&ev), Some(Ok(_))));
        for forger in [
            Verification::AdminToken,
            Verification::AgentToken,
            Verification::QuoStandard { key: 0 },
        ] {
            ev.verification = forger;
            match OutboundRecord::decode(&ev) {
                Some(Err(RecordError::Forged(f))) => {
                    assert_eq!((f.seq, f.route.as_str()), (9, DECISION_ROUTE))
                }
                other => panic!("{forger:?}: {other:?}"),
            }
        }
        // Checked before the body: a forged record with a broken body is still forged.
        ev.body = b"{not json".to_vec();
        assert!(matches!(
            OutboundRecord::decode(&ev),
            Some(Err(RecordError::Forged(_)))
        ));
    }

    #[test]
    fn message_ids_are_well_formed_distinct_and_time_ordered() {
        let a = MessageId::generate(Micros(1_000));
        let b = MessageId::generate(Micros(2_000));
        assert!(MessageId::is_valid(a.as_str()), "{a}");
        assert!(a < b);
        assert_ne!(
            MessageId::generate(Micros(5)),
            MessageId::generate(Micros(5))
        );
        assert!(!MessageId::is_valid("msg_xyz"));
        assert!(!MessageId::is_valid("../etc/passwd"));
    }
}
