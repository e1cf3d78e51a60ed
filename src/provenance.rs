//! Who wrote a record, and whether that writer may write that kind of record
//! (docs/guarantees.md#who-may-write-which-record).
//!
//! A record's kind is its `(source, route)`; its writer is its [`Verification`]: how the
//! request that made it was authenticated. [`check`] is the one table that pairs them, pure
//! and total. Every consumer that acts on hooklog's own records (a gate decision, a send
//! attempt or result, a line change, a dispatch result, an opt-out edit, a message request)
//! asks it first, through [`crate::consumers::outbound::OutboundRecord::decode`] or its own
//! reader, and a record that does not fit is never acted on: the consumer dead-letters it,
//! and the dead letter's alert carries [`Forged`]'s message (seq, route, who may write it, how
//! it was verified).
//!
//! Invariants:
//! - Only the daemon itself ([`Verification::Internal`]) writes decisions, attempts, results
//!   and dispatch results; no token holder can, whatever the route or source they give.
//! - A message request comes through the outbound API with a token: the operator's
//!   ([`Verification::AdminToken`]) or an agent's ([`Verification::AgentToken`]).
//! - An opt-out edit and a line change come from the operator's routes or the daemon (the
//!   sender's Twilio 21610 opt-out and its provider blocks); an agent's token never.
//! - A webhook kind fits only its own provider's signature check.
//!
//! The table is what the records' routes mean *today*: a new kind of record hooklog writes
//! gets a [`Kind`] here (and a row in docs/guarantees.md) before a consumer acts on it.
//!
//! What it cannot see: a record written with the daemon's own verification by something that
//! can already write the log's storage (the data directory's files, publish rights on the
//! JetStream stream, `hooklog-replay import` of a file). Those are the operator's; the
//! network API is what this table guards.

use std::fmt;

use crate::event::{Event, Source, Verification};
use crate::provider::Provider;

/// `POST /v1/messages`: an agent's (or the operator's) request to send a message.
pub const REQUEST_ROUTE: &str = "/v1/messages";
/// The gates' decision on a request.
pub const DECISION_ROUTE: &str = "/internal/outbound/decision";
/// A send attempt, appended (and flushed) before the provider is called.
pub const ATTEMPT_ROUTE: &str = "/internal/outbound/attempt";
/// How a send attempt ended.
pub const RESULT_ROUTE: &str = "/internal/outbound/result";
/// A line blocked by a provider, or unblocked by an operator.
pub const LINE_ROUTE: &str = "/internal/lines";
/// The result of dispatching one event to one agent.
pub const DISPATCH_ROUTE: &str = "/internal/dispatch/result";
/// An operator's (or the sender's) change to the suppression list.
pub const OPTOUT_ROUTE: &str = "/internal/optouts";
/// An operator's control record (kill switch, consumer pause): written by
/// `POST /admin/kill-switch` and the pause and resume routes, obeyed by the `controls`
/// consumer, which refuses (stricter than this table) any record on this route that is not
/// source `internal` with the operator's token.
pub const CONTROL_ROUTE: &str = "/internal/control";

/// Who wrote a record, from how it was verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// A provider's signed webhook, checked at the edge.
    Provider(Provider),
    /// The holder of the operator (admin) token: the admin API, backfill, `hooklog-replay`.
    Operator,
    /// An agent, with one of the `[server.agent_tokens]`.
    Agent,
    /// The daemon itself.
    Daemon,
}

impl Writer {
    /// The writer a verification stands for.
    pub fn of(verification: Verification) -> Writer {
        match verification {
            Verification::QuoLegacy { .. } | Verification::QuoStandard { .. } => {
                Writer::Provider(Provider::Quo)
            }
            Verification::Twilio { .. } => Writer::Provider(Provider::Twilio),
            Verification::SalesMsgSecret { .. } => Writer::Provider(Provider::SalesMsg),
            Verification::AdminToken => Writer::Operator,
            Verification::AgentToken => Writer::Agent,
            Verification::Internal => Writer::Daemon,
        }
    }
}

impl fmt::Display for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Writer::Provider(p) => write!(f, "a signed {} webhook", p.as_str()),
            Writer::Operator => f.write_str("the operator token"),
            Writer::Agent => f.write_str("an agent token"),
            Writer::Daemon => f.write_str("hooklog itself"),
        }
    }
}

/// What a record is, from its source and route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A provider's webhook.
    Webhook(Provider),
    /// A provider's resource fetched by `hooklog-replay backfill`.
    Backfill(Provider),
    /// A request to send a message ([`REQUEST_ROUTE`]).
    MessageRequest,
    /// A gate decision ([`DECISION_ROUTE`]).
    Decision,
    /// A send attempt ([`ATTEMPT_ROUTE`]).
    Attempt,
    /// A send result ([`RESULT_ROUTE`]).
    Result,
    /// A dispatch result ([`DISPATCH_ROUTE`]).
    DispatchResult,
    /// A line blocked or unblocked ([`LINE_ROUTE`]).
    LineChange,
    /// A change to the suppression list ([`OPTOUT_ROUTE`]).
    OptOutEdit,
    /// An operator's control record ([`CONTROL_ROUTE`]).
    Control,
    /// Any other `outbound` or `internal` record (the JetStream leader's record, …): history
    /// that no consumer acts on.
    Other,
}

impl Kind {
    /// The kind of a record stored under `source` and `route`.
    pub fn of(source: Source, route: &str) -> Kind {
        match (source, route) {
            (Source::Quo, _) => Kind::Webhook(Provider::Quo),
            (Source::Twilio, _) => Kind::Webhook(Provider::Twilio),
            (Source::SalesMsg, _) => Kind::Webhook(Provider::SalesMsg),
            (Source::BackfillQuo, _) => Kind::Backfill(Provider::Quo),
            (Source::BackfillTwilio, _) => Kind::Backfill(Provider::Twilio),
            (Source::Outbound, REQUEST_ROUTE) => Kind::MessageRequest,
            (Source::Outbound, DECISION_ROUTE) => Kind::Decision,
            (Source::Outbound, ATTEMPT_ROUTE) => Kind::Attempt,
            (Source::Outbound, RESULT_ROUTE) => Kind::Result,
            (Source::Internal, DISPATCH_ROUTE) => Kind::DispatchResult,
            (Source::Internal, LINE_ROUTE) => Kind::LineChange,
            (Source::Internal, OPTOUT_ROUTE) => Kind::OptOutEdit,
            (Source::Internal, CONTROL_ROUTE) => Kind::Control,
            (Source::Outbound | Source::Internal, _) => Kind::Other,
        }
    }

    /// The one table: whether `writer` may write a record of this kind.
    pub fn may_be_written_by(self, writer: Writer) -> bool {
        match self {
            Kind::Webhook(p) => writer == Writer::Provider(p),
            Kind::Backfill(_) => writer == Writer::Operator,
            Kind::MessageRequest => matches!(writer, Writer::Operator | Writer::Agent),
            Kind::Decision | Kind::Attempt | Kind::Result | Kind::DispatchResult => {
                writer == Writer::Daemon
            }
            // The sender blocks a line a provider blocked; the operator unblocks it.
            Kind::LineChange => matches!(writer, Writer::Daemon | Writer::Operator),
            // The operator's `/admin/optouts`; the sender's record of a Twilio 21610.
            Kind::OptOutEdit => matches!(writer, Writer::Daemon | Writer::Operator),
            Kind::Control => writer == Writer::Operator,
            // Nobody acts on these; any authenticated writer may leave history.
            Kind::Other => true,
        }
    }

    /// Who may write it, for messages.
    pub fn writers(self) -> &'static str {
        match self {
            Kind::Webhook(Provider::Quo) => "a signed openphone webhook",
            Kind::Webhook(Provider::Twilio) => "a signed twilio webhook",
            Kind::Webhook(Provider::SalesMsg) => "a signed salesmsg webhook",
            Kind::Backfill(_) => "the operator token (backfill)",
            Kind::MessageRequest => "the outbound API with the operator token or an agent token",
            Kind::Decision | Kind::Attempt | Kind::Result | Kind::DispatchResult => {
                "hooklog itself"
            }
            Kind::LineChange | Kind::OptOutEdit => "hooklog itself or the operator token",
            Kind::Control => "the operator token",
            Kind::Other => "anyone authenticated",
        }
    }

    /// The kind in words.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Webhook(_) => "webhook",
            Kind::Backfill(_) => "backfilled resource",
            Kind::MessageRequest => "message request",
            Kind::Decision => "gate decision",
            Kind::Attempt => "send attempt",
            Kind::Result => "send result",
            Kind::DispatchResult => "dispatch result",
            Kind::LineChange => "line change",
            Kind::OptOutEdit => "opt-out edit",
            Kind::Control => "control record",
            Kind::Other => "record",
        }
    }
}

/// A record whose writer may not write its kind: never acted on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "forged record {seq} ({route}): a {} is written only by {}, but this one was verified as \
     `{verification}` ({writer}); not acted on. Find who wrote it with `hooklog-replay show {seq}`",
    kind.name(), kind.writers()
)]
pub struct Forged {
    /// The record.
    pub seq: u64,
    /// Its route.
    pub route: String,
    /// What it claims to be.
    pub kind: Kind,
    /// Who actually wrote it.
    pub writer: Writer,
    /// Its verification label.
    pub verification: String,
}

/// The record's kind if its writer may write it, else [`Forged`].
pub fn check(event: &Event) -> Result<Kind, Forged> {
    let kind = Kind::of(event.source, &event.route);
    let writer = Writer::of(event.verification);
    if kind.may_be_written_by(writer) {
        Ok(kind)
    } else {
        Err(Forged {
            seq: event.seq.0,
            route: event.route.clone(),
            kind,
            writer,
            verification: event.verification.label(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Micros, Seq};

    fn record(source: Source, route: &str, verification: Verification) -> Event {
        Event {
            seq: Seq(7),
            received_at: Micros(0),
            source,
            route: route.into(),
            headers: vec![],
            body: b"{}".to_vec(),
            verification,
        }
    }

    const EVERY_VERIFICATION: [Verification; 7] = [
        Verification::QuoLegacy { key: 0 },
        Verification::QuoStandard { key: 1 },
        Verification::Twilio { token: 0, url: 0 },
        Verification::SalesMsgSecret { secret: 0 },
        Verification::AdminToken,
        Verification::AgentToken,
        Verification::Internal,
    ];

    /// Which verifications may write `(source, route)`.
    fn fitting(source: Source, route: &str) -> Vec<Verification> {
        EVERY_VERIFICATION
            .into_iter()
            .filter(|v| check(&record(source, route, *v)).is_ok())
            .collect()
    }

    #[test]
    fn only_hooklog_itself_writes_decisions_attempts_results_and_dispatch_results() {
        for (source, route) in [
            (Source::Outbound, DECISION_ROUTE),
            (Source::Outbound, ATTEMPT_ROUTE),
            (Source::Outbound, RESULT_ROUTE),
            (Source::Internal, DISPATCH_ROUTE),
        ] {
            assert_eq!(
                fitting(source, route),
                vec![Verification::Internal],
                "{route}"
            );
        }
    }

    #[test]
    fn a_message_request_comes_through_the_api_with_a_token_and_never_from_the_daemon() {
        assert_eq!(
            fitting(Source::Outbound, REQUEST_ROUTE),
            vec![Verification::AdminToken, Verification::AgentToken]
        );
    }

    #[test]
    fn opt_out_edits_and_line_changes_come_from_the_operator_or_the_daemon_never_an_agent() {
        for route in [OPTOUT_ROUTE, LINE_ROUTE] {
            assert_eq!(
                fitting(Source::Internal, route),
                vec![Verification::AdminToken, Verification::Internal],
                "{route}"
            );
        }
        assert_eq!(
            fitting(Source::Internal, CONTROL_ROUTE),
            vec![Verification::AdminToken]
        );
    }

    #[test]
    fn a_webhook_fits_only_its_own_providers_signature_and_a_backfill_the_operator() {
        assert_eq!(
            fitting(Source::Quo, "/webhook/openphone"),
            vec![
                Verification::QuoLegacy { key: 0 },
                Verification::QuoStandard { key: 1 }
            ]
        );
        assert_eq!(
            fitting(Source::Twilio, "/webhook/twilio"),
            vec![Verification::Twilio { token: 0, url: 0 }]
        );
        assert_eq!(
            fitting(Source::SalesMsg, "/webhook/salesmsg"),
            vec![Verification::SalesMsgSecret { secret: 0 }]
        );
        for source in [Source::BackfillQuo, Source::BackfillTwilio] {
            assert_eq!(
                fitting(source, DECISION_ROUTE),
                vec![Verification::AdminToken],
                "a backfill is a backfill whatever route it names"
            );
        }
    }

    #[test]
    fn a_route_under_the_wrong_source_is_not_the_record_it_names() {
        // Hooklog's own records are recognised only under their own source: the same route
        // under another source is some other kind, and nobody acts on it as a decision.
        assert_eq!(
            Kind::of(Source::Internal, DECISION_ROUTE),
            Kind::Other,
            "a decision is stored under `outbound`"
        );
        assert_eq!(Kind::of(Source::Outbound, OPTOUT_ROUTE), Kind::Other);
    }

    #[test]
    fn a_refusal_names_the_record_its_route_who_may_write_it_and_how_it_was_verified() {
        let e = check(&record(
            Source::Outbound,
            DECISION_ROUTE,
            Verification::AdminToken,
        ))
        .unwrap_err();
        let text = e.to_string();
        for part in [
            "record 7",
            DECISION_ROUTE,
            "gate decision",
            "hooklog itself",
            "`admin-token`",
            "the operator token",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }
}
