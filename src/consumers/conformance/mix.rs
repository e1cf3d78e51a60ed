//! The realistic mixed log every consumer is run over: inbound Quo, Twilio and SalesMsg
//! messages (a STOP, a START, free text), calls, status callbacks, a contact update, an
//! operator's opt-out, the operator's stops (the kill switch turned on and off, a consumer
//! paused and resumed), every kind of duplicate (a provider retry, a backfilled copy, a
//! redelivered request), a dispatch result and a whole message's outbound records written
//! before this process started (a fail-over), new outbound requests for the gates, and two
//! inbound messages at the end (what every property checks was processed after a bad
//! record).
//!
//! Records are named, so that adapters and properties refer to them by role rather than by
//! position: the position of each depends on the [`Options`].

use chrono::{DateTime, TimeZone, Utc};

use crate::provider::SendProvider;

use crate::clock::Clock;
use crate::consumers::compliance::ADMIN_ROUTE;
use crate::consumers::controls::{ControlAction, ControlRecord, CONTROL_ROUTE, OPERATOR};
use crate::consumers::outbound::records::DECISION_ROUTE;
use crate::consumers::outbound::{
    DispatchResult, GateDecision, GateVerdict, LineChange, MessageId, MessageRequest,
    OutboundRecord, SendAttempt, SendResult, SendStatus,
};
use crate::consumers::testutil::{event, from_fixture, quo_inbound};
use crate::event::{Event, Micros, Seq, Source, Verification};
use crate::gates::{LineConfig, Reason, ReasonCode, TenDlc};

use super::fake::TWILIO_UNSUBSCRIBED;

/// What to put in the log besides the common records.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Options {
    /// Each new request is followed by the gates' decision, as the outbound consumer would
    /// have appended it (the sender's input: it acts on decisions, and the outbound
    /// consumer, its upstream, then has nothing to decide).
    pub decided: bool,
    /// A record in a format this build does not know, early in the log (`future_record`).
    pub future_record: bool,
    /// An outbound-path record whose body this build cannot read (`unreadable`), before the
    /// new requests.
    pub unreadable: Option<Unreadable>,
    /// A record only hooklog or the operator's routes write, written by someone else
    /// (`forged`), before the new requests.
    pub forged: Option<Forgery>,
    /// With `forged`: the same record under a backfill source instead, which no consumer
    /// acts on (the log a forged record must leave the projections as).
    pub forged_as_history: bool,
}

/// A record that claims a writer it does not have ([`crate::provenance`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum Forgery {
    /// An `allow` by the operator's token for a request the gates refuse (`forged_request`,
    /// from the line whose 10DLC is pending), followed, with `decided`, by the gates'
    /// refusal.
    Allow,
    /// An agent's lift of the opt-out of the number that sent STOP.
    OptOutLift,
}

/// An outbound-path record in a shape this build does not know (a newer hooklog wrote it).
#[derive(Clone, Copy, Debug)]
pub(super) enum Unreadable {
    /// A gate decision (`/internal/outbound/decision`).
    Decision,
    /// An opt-out change (`/internal/optouts`), the record the sender appends on Twilio 21610.
    OptOutChange,
}

/// The log, before it is appended.
pub(super) struct Mix {
    /// The records, in order; each one's `seq` is its position.
    pub events: Vec<Event>,
    names: Vec<(&'static str, Seq)>,
}

/// 11:00 UTC on Wednesday 10 June 2026: the first record's receipt.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 10, 11, 0, 0).unwrap()
}

/// Receipt time `minutes` after [`t0`], in µs.
fn at(minutes: i64) -> i64 {
    (t0() + chrono::Duration::minutes(minutes)).timestamp_micros()
}

fn rfc3339(micros: i64) -> String {
    Micros(micros).to_rfc3339()
}

/// The outbound path's clock: noon in New York that day, after every record of the mix, so
/// that the gates and the sender's last-moment checks find the recipients' hours open.
pub(super) fn clock() -> Clock {
    Clock::starting_at(Utc.with_ymd_and_hms(2026, 6, 10, 16, 0, 0).unwrap())
}

/// The `[[lines]]` of the outbound path.
pub(super) fn lines() -> Vec<LineConfig> {
    let line = |id: &str, number: &str, provider, ten_dlc| LineConfig {
        id: id.into(),
        number: number.into(),
        provider,
        ten_dlc,
        business_name: "Acme Homes".into(),
        phone_number_id: None,
    };
    vec![
        line(
            "quo-main",
            "+12125550199",
            SendProvider::Quo,
            TenDlc::Approved,
        ),
        line(
            "tw-main",
            "+12125550198",
            SendProvider::Twilio,
            TenDlc::Approved,
        ),
        line(
            "tw-pending",
            "+13125550199",
            SendProvider::Twilio,
            TenDlc::Pending,
        ),
    ]
}

fn line(id: &str) -> LineConfig {
    lines().into_iter().find(|l| l.id == id).unwrap()
}

/// A first message as the gates want it: it names the business and says how to opt out.
fn text(street: u32) -> String {
    format!("Hi, Sam from Acme Homes here. Still own {street} Elm St? Reply STOP to opt out")
}

/// A record of the outbound path as the log stores it.
fn outbound(record: &OutboundRecord, micros: i64, verification: Verification) -> Event {
    record
        .to_verified_as(Micros(micros), verification)
        .into_event(Seq(0))
}

#[derive(Default)]
struct Builder {
    events: Vec<Event>,
    names: Vec<(&'static str, Seq)>,
}

impl Builder {
    fn push(&mut self, name: &'static str, mut event: Event) -> Seq {
        let seq = Seq(self.events.len() as u64 + 1);
        event.seq = seq;
        self.events.push(event);
        self.names.push((name, seq));
        seq
    }

    fn get(&self, name: &str) -> &Event {
        let (_, seq) = self.names.iter().find(|(n, _)| *n == name).unwrap();
        &self.events[seq.0 as usize - 1]
    }

    /// A request and, with `decided`, the decision the gates would make on it.
    fn request(
        &mut self,
        names: (&'static str, &'static str),
        minutes: i64,
        request: MessageRequest,
        decided: Option<(GateVerdict, Vec<Reason>, &str)>,
    ) {
        let r = OutboundRecord::Request(request.clone());
        self.push(names.0, outbound(&r, at(minutes), Verification::AdminToken));
        if let Some((verdict, reasons, line_id)) = decided {
            let line = line(line_id);
            let d = OutboundRecord::Decision(GateDecision {
                id: request.id.clone(),
                verdict,
                reasons,
                hold_until: None,
                line_id: Some(line.id.clone()),
                from_number: Some(line.number.clone()),
                provider: Some(line.provider),
                to: crate::phone::normalize_e164(&request.to),
                evaluation: 1,
                decided_at: rfc3339(at(minutes) + 1_000_000),
            });
            self.push(
                names.1,
                outbound(&d, at(minutes) + 1_000_000, Verification::Internal),
            );
        }
    }
}

/// The id of the `n`th outbound message, time-ordered like the API's.
pub(super) fn message_id(n: u64) -> MessageId {
    MessageId(format!("msg_{:013x}{:013x}", at(0) as u64, n))
}

fn request(n: u64, from: &str, to: &str, key: Option<&str>, street: u32) -> MessageRequest {
    MessageRequest {
        id: message_id(n),
        idempotency_key: key.map(str::to_owned),
        from: from.into(),
        provider: None,
        to: to.into(),
        content: text(street),
        requested_at: rfc3339(at(180 + 5 * n as i64)),
        requested_by: None,
    }
}

impl Mix {
    pub fn build(o: Options) -> Mix {
        let mut b = Builder::default();

        // Inbound traffic, with a provider retry of the first message (same envelope, new
        // signature header).
        let quo = from_fixture("openphone/legacy_message_received_v4.json", 0, at(0));
        b.push("quo_message", quo.clone());
        let mut retry = quo;
        retry.received_at = Micros(at(5));
        retry.headers = vec![("openphone-signature".into(), "hmac;1;1;x".into())];
        b.push("quo_retry", retry);
        if o.future_record {
            // Encoded as format 1 here; the world rewrites its format byte once appended.
            b.push(
                "future_record",
                quo_inbound(0, at(6), "EVfuture", "ACfuture", "+15555550185", "hello?"),
            );
        }
        b.push(
            "twilio_sms",
            from_fixture("twilio/sms_inbound.json", 0, at(60)),
        );
        b.push(
            "twilio_stop",
            from_fixture("twilio/sms_inbound_stop.json", 0, at(70)),
        );
        b.push(
            "quo_stop",
            quo_inbound(0, at(80), "EVstop", "ACstop", "+15555550177", "STOP"),
        );
        b.push(
            "quo_start",
            quo_inbound(0, at(90), "EVstart", "ACstart", "+15555550177", "START"),
        );
        b.push(
            "salesmsg",
            from_fixture("salesmsg/message_received.json", 0, at(100)),
        );
        b.push(
            "quo_call",
            from_fixture("openphone/legacy_call_completed_v4.json", 0, at(110)),
        );
        b.push(
            "twilio_voice",
            from_fixture("twilio/voice_inbound.json", 0, at(120)),
        );
        // The first message again, fetched by a backfill from Quo's REST API.
        let resource = serde_json::json!({
            "id": "AC165e913969111f4e9211018fb2e56a9c", "from": "+15555550123", "to": ["+15555550100"],
            "direction": "incoming", "text": "Is 3pm ok for the walkthrough?", "status": "received",
            "createdAt": "2026-04-14T16:02:11.420Z", "phoneNumberId": "PNtoDbDhuz"
        });
        b.push(
            "backfill_copy",
            event(
                0,
                at(130),
                Source::BackfillQuo,
                "/v1/messages/AC165e913969111f4e9211018fb2e56a9c",
                &resource.to_string(),
            ),
        );
        b.push(
            "twilio_status",
            from_fixture("twilio/sms_status_delivered.json", 0, at(140)),
        );
        b.push(
            "contact_updated",
            from_fixture("openphone/legacy_contact_updated.json", 0, at(150)),
        );
        let mut admin = event(
            0,
            at(160),
            Source::Internal,
            ADMIN_ROUTE,
            r#"{"action":"add","number":"5555550190","reason":"asked by phone"}"#,
        );
        admin.verification = Verification::AdminToken;
        b.push("admin_optout", admin);
        // The operator's stops, each lifted again before the new requests below.
        let stops = [
            (
                "kill_switch_on",
                ControlAction::KillSwitch { on: true },
                161,
            ),
            (
                "pause_dispatch",
                ControlAction::Pause {
                    consumer: "dispatch".into(),
                },
                162,
            ),
            (
                "resume_dispatch",
                ControlAction::Resume {
                    consumer: "dispatch".into(),
                },
                163,
            ),
            (
                "kill_switch_off",
                ControlAction::KillSwitch { on: false },
                164,
            ),
        ];
        for (name, action, minutes) in stops {
            let record = ControlRecord {
                action,
                reason: Some("conformance".into()),
                at: rfc3339(at(minutes)),
                by: OPERATOR.into(),
            };
            let mut stop = event(
                0,
                at(minutes),
                Source::Internal,
                CONTROL_ROUTE,
                &serde_json::to_string(&record).unwrap(),
            );
            stop.verification = Verification::AdminToken;
            b.push(name, stop);
        }
        // The same Twilio request delivered twice (the edge's crash before its answer).
        let mut again = b.get("twilio_sms").clone();
        again.received_at = Micros(at(170));
        b.push("twilio_redelivery", again);

        // What another replica did before this process took over: it dispatched the first
        // message, and sent message 0 (request, decision, attempt, result).
        let first = b.get("quo_message").clone();
        let dedup_key = crate::parse::parse(&first).unwrap().dedup_keys[0].clone();
        let dispatched = OutboundRecord::Dispatch(DispatchResult {
            seq: first.seq.0,
            agent: "acquisitions".into(),
            idempotency_key: format!("hooklog:{}:{dedup_key}", first.seq.0),
            kind: "message.received".into(),
            outcome: "delivered".into(),
            status: Some(202),
            attempts: 1,
            latency_ms: 850,
            opted_out: false,
            redelivery: false,
            error: None,
            at: rfc3339(at(1)),
        });
        b.push(
            "dispatch_result",
            outbound(&dispatched, at(175), Verification::Internal),
        );
        let m0 = request(0, "quo-main", "+12125550101", None, 7);
        b.request(
            ("m0_request", "m0_decision"),
            180,
            m0.clone(),
            Some((GateVerdict::Allow, vec![], "quo-main")),
        );
        let attempt = OutboundRecord::Attempt(SendAttempt {
            id: m0.id.clone(),
            attempt: 1,
            provider: SendProvider::Quo,
            from: "+12125550199".into(),
            to: "+12125550101".into(),
            redelivery: false,
            at: rfc3339(at(182)),
        });
        b.push(
            "m0_attempt",
            outbound(&attempt, at(182), Verification::Internal),
        );
        let result = OutboundRecord::Result(SendResult {
            id: m0.id.clone(),
            attempt: 1,
            status: SendStatus::Sent,
            outcome: "sent".into(),
            provider_id: Some("ACm0".into()),
            code: None,
            error: None,
            reasons: vec![],
            tries: 1,
            at: rfc3339(at(183)),
        });
        b.push(
            "m0_result",
            outbound(&result, at(183), Verification::Internal),
        );
        let unblocked = OutboundRecord::Line(LineChange {
            line_id: "tw-main".into(),
            state: "unblocked".into(),
            reason: "operator: the registration was renewed".into(),
            at: rfc3339(at(185)),
        });
        b.push(
            "line_change",
            outbound(&unblocked, at(185), Verification::AdminToken),
        );

        match o.unreadable {
            None => {}
            Some(Unreadable::Decision) => {
                let body = format!(
                    r#"{{"schema":2,"message":"{}","outcome":{{"verdict":"allow"}}}}"#,
                    message_id(1)
                );
                b.push(
                    "unreadable",
                    event(0, at(186), Source::Outbound, DECISION_ROUTE, &body),
                );
            }
            Some(Unreadable::OptOutChange) => {
                let mut change = event(
                    0,
                    at(186),
                    Source::Internal,
                    ADMIN_ROUTE,
                    r#"{"schema":2,"suppress":{"e164":"+15555550192"}}"#,
                );
                change.verification = Verification::Internal;
                b.push("unreadable", change);
            }
        }

        if let Some(kind) = o.forged {
            let as_history = |mut e: Event| {
                if o.forged_as_history {
                    e.source = Source::BackfillQuo;
                    e.verification = Verification::AdminToken;
                }
                e
            };
            match kind {
                Forgery::Allow => {
                    let mut r = request(90, "tw-pending", "+12125550109", None, 90);
                    r.requested_at = rfc3339(at(186));
                    let allow = OutboundRecord::Decision(GateDecision {
                        id: r.id.clone(),
                        verdict: GateVerdict::Allow,
                        reasons: vec![],
                        hold_until: None,
                        line_id: Some("tw-pending".into()),
                        from_number: Some(line("tw-pending").number.clone()),
                        provider: Some(line("tw-pending").provider),
                        to: Some("+12125550109".into()),
                        evaluation: 1,
                        decided_at: rfc3339(at(186)),
                    });
                    let request_record = OutboundRecord::Request(r.clone());
                    b.push(
                        "forged_request",
                        outbound(&request_record, at(186), Verification::AdminToken),
                    );
                    b.push(
                        "forged",
                        as_history(outbound(&allow, at(186) + 1, Verification::AdminToken)),
                    );
                    if o.decided {
                        let refuse = OutboundRecord::Decision(GateDecision {
                            id: r.id.clone(),
                            verdict: GateVerdict::Refuse,
                            reasons: vec![Reason::new(ReasonCode::LineTenDlcPending, "gate")],
                            ..match allow {
                                OutboundRecord::Decision(d) => d,
                                _ => unreachable!("built above as a decision"),
                            }
                        });
                        b.push(
                            "forged_request_decision",
                            outbound(&refuse, at(186) + 2, Verification::Internal),
                        );
                    }
                }
                Forgery::OptOutLift => {
                    let mut lift = event(
                        0,
                        at(186),
                        Source::Internal,
                        ADMIN_ROUTE,
                        r#"{"action":"remove","number":"+15555550191"}"#,
                    );
                    lift.verification = Verification::AgentToken;
                    b.push("forged", as_history(lift));
                }
            }
        }

        // New requests. With `decided`, each is followed by the decision the gates make at
        // noon in New York: the line's 10DLC, the suppression list, the idempotency key.
        let decided = |verdict, codes: &[ReasonCode], line: &'static str| {
            o.decided.then(|| {
                let reasons = codes.iter().map(|c| Reason::new(*c, "gate")).collect();
                (verdict, reasons, line)
            })
        };
        let stop_sender = "+15555550191"; // the Twilio STOP above
        b.request(
            ("r1_request", "r1_decision"),
            190,
            request(1, "quo-main", "+12125550100", Some("k-1"), 12),
            decided(GateVerdict::Allow, &[], "quo-main"),
        );
        b.request(
            ("r2_request", "r2_decision"),
            195,
            request(2, "tw-pending", "+12125550102", None, 14),
            decided(
                GateVerdict::Refuse,
                &[ReasonCode::LineTenDlcPending],
                "tw-pending",
            ),
        );
        b.request(
            ("r3_request", "r3_decision"),
            200,
            request(3, "quo-main", stop_sender, None, 16),
            decided(
                GateVerdict::Refuse,
                &[ReasonCode::RecipientOptedOut],
                "quo-main",
            ),
        );
        b.request(
            ("r4_request", "r4_decision"),
            205,
            request(4, "quo-main", "+12125550100", Some("k-1"), 18),
            decided(
                GateVerdict::Refuse,
                &[ReasonCode::DuplicateRequest],
                "quo-main",
            ),
        );
        b.request(
            ("r5_request", "r5_decision"),
            210,
            request(5, "tw-main", "+12125550103", None, 20),
            decided(GateVerdict::Allow, &[], "tw-main"),
        );
        b.request(
            ("r6_request", "r6_decision"),
            215,
            request(6, "tw-main", TWILIO_UNSUBSCRIBED, None, 22),
            decided(GateVerdict::Allow, &[], "tw-main"),
        );

        // Inbound traffic after everything else.
        b.push(
            "late_stop",
            quo_inbound(0, at(250), "EVlate", "AClate", "+15555550178", "STOP"),
        );
        b.push(
            "last_inbound",
            quo_inbound(
                0,
                at(260),
                "EVlast",
                "AClast",
                "+15555550179",
                "Is the offer on 12 Elm St still open?",
            ),
        );
        Mix {
            events: b.events,
            names: b.names,
        }
    }

    /// The record named `name`.
    pub fn seq(&self, name: &str) -> Seq {
        self.names
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("no record named {name} in this mix"))
    }

    /// The record named `name`, as appended.
    pub fn event(&self, name: &str) -> &Event {
        &self.events[self.seq(name).0 as usize - 1]
    }

    /// The last record of the mix (the consumers may append more).
    pub fn last(&self) -> Seq {
        Seq(self.events.len() as u64)
    }

    /// The content of message `n`'s request.
    pub fn content(n: u64) -> String {
        let street = [7, 12, 14, 16, 18, 20, 22][n as usize];
        text(street)
    }
}
