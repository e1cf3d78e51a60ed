//! The outbound compliance gates (docs/outbound.md#the-gates): every outbound request passes all of them or
//! is not sent.
//!
//! Pure units: no I/O, no clock, no state. The caller passes the request (with the time),
//! the configuration, a suppression lookup, the recent sends and whether the line has texted
//! the recipient before; [`evaluate`] returns a [`Decision`] whose reasons carry a
//! machine-readable [`ReasonCode`] and a sentence for a human. The outbound consumer runs
//! them and appends the decision; the sender runs some again at the last moment, and all of
//! them again for a re-send (an operator's redelivery), passing the message's own earlier
//! sends apart ([`Inputs::own_history`]).
//!
//! # Gate order
//!
//! Reasons are reported in the order of docs/reference/compliance.md#gate-order ("suppression → line registration →
//! hours → frequency caps → content and identification → duplicates"):
//!
//! 1. [`optout`]: the recipient is not suppressed for the request's line (an opt-out counts
//!    on every line and provider; a re-subscription lifts it on its own line only);
//! 2. [`line`](mod@line): the line is configured, on the requested provider, 10DLC approved (no
//!    fallback to another line or provider);
//! 3. [`quiet_hours`]: inside the window of every zone of the recipient's area code;
//! 4. [`blast_safety`]: kill switch, per-line cap, per-recipient cap, duplicate content;
//! 5. [`content`]: length, deny-list, link shorteners;
//! 6. [`thread_context`]: a first message names the business and says how to opt out.
//!
//! Every gate runs even after one refuses, so a refusal lists every problem at once.
//!
//! # Deciding (fail closed)
//!
//! - No reason: [`Decision::Allow`].
//! - Quiet hours is the only reason and its window opens no later than `max_hold_hours`
//!   after the request was *first* made: [`Decision::Hold`] until then. The caller evaluates
//!   the request again at that time (with the same `first_requested_at`), so repeated holds
//!   cannot add up to more than the maximum.
//! - Anything else, including a hold that would be too long: [`Decision::Refuse`] with all
//!   the reasons. A recipient that is not a phone number, an unknown area code, and a
//!   suppression list that cannot be read are refusals.

pub mod area_codes;
pub mod blast_safety;
pub mod config;
pub mod content;
pub mod line;
pub mod optout;
pub mod quiet_hours;
pub mod reason;
pub mod thread_context;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::phone::normalize_e164;
use crate::provider::SendProvider;

pub use blast_safety::Sent;
pub use config::{ComplianceConfig, LineConfig, TenDlc};
pub use optout::Suppressions;
pub use reason::{Gate, Reason, ReasonCode};

/// The outcome for one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Send it.
    Allow,
    /// Outside quiet hours only: evaluate it again at `until`.
    Hold {
        /// When every zone's window opens.
        until: DateTime<Utc>,
        /// The quiet-hours reason.
        reason: Reason,
    },
    /// Never send it (as it stands).
    Refuse {
        /// Every reason found, in gate order.
        reasons: Vec<Reason>,
    },
}

/// An outbound request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `[[lines]].id` of the line to send from.
    pub line_id: String,
    /// The provider the caller expects the line to use; never substituted.
    pub provider: SendProvider,
    /// The recipient (E.164, or a US number that normalises to it).
    pub to: String,
    /// The message body.
    pub body: String,
    /// When the request was first made (the maximum hold counts from here).
    pub first_requested_at: DateTime<Utc>,
    /// The time of this evaluation.
    pub now: DateTime<Utc>,
}

/// What the gates read besides the request.
pub struct Inputs<'a> {
    /// `[compliance]`.
    pub config: &'a ComplianceConfig,
    /// `[[lines]]`.
    pub lines: &'a [LineConfig],
    /// The suppression list.
    pub suppressions: &'a dyn Suppressions,
    /// Recent sends, at least the last 24 h, every line (for a re-send: of other messages).
    pub history: &'a [Sent],
    /// For a re-send of a message (an operator's redelivery): the earlier sends of this same
    /// message in the last 24 h. They count toward the caps, but a re-send is no duplicate of
    /// itself ([`blast_safety::check`]). Empty for a new request.
    pub own_history: &'a [Sent],
    /// Whether the request's line has ever texted the recipient (else this is a first
    /// contact).
    pub line_has_texted_recipient: bool,
    /// Why the provider blocked the request's line, if it did (a Quo A2P refusal recorded
    /// by the sender, until an operator unblocks the line).
    pub line_blocked: Option<&'a str>,
}

/// Runs every gate on `req` and decides.
pub fn evaluate(req: &Request, inputs: &Inputs<'_>) -> Decision {
    let config = inputs.config;
    let mut refusals: Vec<Reason> = Vec::new();
    let mut hold: Option<(DateTime<Utc>, Reason)> = None;

    let to = normalize_e164(&req.to);
    match &to {
        None => refusals.push(Reason::new(
            ReasonCode::RecipientInvalid,
            format!("`{}` is not a phone number", req.to),
        )),
        Some(to) => {
            // The line's own number is what a re-subscription names; an unknown line gets the
            // strictest answer (and is refused by the line gate anyway).
            let line_number = inputs
                .lines
                .iter()
                .find(|l| l.id == req.line_id)
                .map(|l| l.number.as_str());
            refusals.extend(optout::check(inputs.suppressions, to, line_number))
        }
    }

    if let Some(why) = inputs.line_blocked {
        refusals.push(Reason::new(
            ReasonCode::LineBlocked,
            format!(
                "line `{}` is blocked: {why}; an operator unblocks it once the registration is approved",
                req.line_id
            ),
        ));
    }
    let line = match line::check(inputs.lines, &req.line_id, req.provider) {
        Ok(line) => Some(line),
        Err(reasons) => {
            refusals.extend(reasons);
            // The business name is still known for the first-contact check.
            inputs.lines.iter().find(|l| l.id == req.line_id)
        }
    };

    if let Some(to) = &to {
        match quiet_hours::check(config, to, req.now) {
            Err(e) => refusals.push(Reason::new(ReasonCode::AreaCodeUnknown, e.to_string())),
            Ok(c) if c.open => {}
            Ok(c) => {
                let zones: Vec<&str> = c.zones.iter().map(|z| z.name()).collect();
                let where_ = format!("{} ({})", c.region, zones.join(", "));
                let limit = req.first_requested_at + Duration::hours(config.max_hold_hours as i64);
                match c.opens_at {
                    Some(until) if until <= limit => {
                        hold = Some((
                            until,
                            Reason::new(
                                ReasonCode::QuietHours,
                                format!("outside the allowed hours in {where_}; held until {until}"),
                            ),
                        ));
                    }
                    opens => refusals.push(Reason::new(
                        ReasonCode::QuietHoursHoldTooLong,
                        format!(
                            "outside the allowed hours in {where_}; the window opens {}, more than {} h after the first request",
                            opens.map_or_else(|| "not within 8 days".to_owned(), |t| format!("at {t}")),
                            config.max_hold_hours
                        ),
                    )),
                }
            }
        }
        refusals.extend(blast_safety::check(
            config,
            inputs.history,
            inputs.own_history,
            &req.line_id,
            to,
            &req.body,
            req.now,
        ));
    } else if config.kill_switch {
        refusals.extend(blast_safety::check(
            config,
            &[],
            &[],
            &req.line_id,
            &req.to,
            &req.body,
            req.now,
        ));
    }

    refusals.extend(content::check(config, &req.body));
    if let Some(line) = line {
        refusals.extend(thread_context::check(
            line,
            &req.body,
            !inputs.line_has_texted_recipient,
        ));
    }

    match (refusals.is_empty(), hold) {
        (true, None) => Decision::Allow,
        (true, Some((until, reason))) => Decision::Hold { until, reason },
        (false, hold) => {
            let mut reasons = refusals;
            if let Some((_, reason)) = hold {
                reasons.push(reason);
            }
            reasons.sort_by_key(|r| gate_rank(r.gate()));
            Decision::Refuse { reasons }
        }
    }
}

fn gate_rank(gate: Gate) -> u8 {
    match gate {
        Gate::Optout => 0,
        Gate::Line => 1,
        Gate::QuietHours => 2,
        Gate::BlastSafety => 3,
        Gate::Content => 4,
        Gate::ThreadContext => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDateTime, TimeZone};
    use chrono_tz::America::New_York;

    const TO: &str = "+12125550100"; // New York, federal window
    const BODY: &str = "Hi, Sam from Acme Homes. Still own 12 Elm St? Reply STOP to opt out";

    fn ny(local: &str) -> DateTime<Utc> {
        let n = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
        New_York
            .from_local_datetime(&n)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn lines() -> Vec<LineConfig> {
        vec![
            LineConfig {
                id: "quo-main".into(),
                number: "+13055550000".into(),
                provider: SendProvider::Quo,
                ten_dlc: TenDlc::Approved,
                business_name: "Acme Homes".into(),
                phone_number_id: None,
            },
            LineConfig {
                id: "twilio-2".into(),
                number: "+13055550001".into(),
                provider: SendProvider::Twilio,
                ten_dlc: TenDlc::Approved,
                business_name: "Acme Homes".into(),
                phone_number_id: None,
            },
            LineConfig {
                id: "twilio-new".into(),
                number: "+13055550002".into(),
                provider: SendProvider::Twilio,
                ten_dlc: TenDlc::Pending,
                business_name: "Acme Homes".into(),
                phone_number_id: None,
            },
        ]
    }

    fn request(line: &str, provider: SendProvider, at: DateTime<Utc>) -> Request {
        Request {
            line_id: line.into(),
            provider,
            to: TO.into(),
            body: BODY.into(),
            first_requested_at: at,
            now: at,
        }
    }

    fn run(
        req: &Request,
        suppressed: &[&str],
        history: &[Sent],
        config: &ComplianceConfig,
    ) -> Decision {
        let listed: Vec<String> = suppressed.iter().map(|s| s.to_string()).collect();
        let lookup = move |n: &str, _: Option<&str>| Ok(listed.iter().any(|s| s == n));
        let lines = lines();
        evaluate(
            req,
            &Inputs {
                config,
                lines: &lines,
                suppressions: &lookup,
                history,
                own_history: &[],
                line_has_texted_recipient: false,
                line_blocked: None,
            },
        )
    }

    fn codes(d: &Decision) -> Vec<ReasonCode> {
        match d {
            Decision::Refuse { reasons } => reasons.iter().map(|r| r.code).collect(),
            Decision::Hold { reason, .. } => vec![reason.code],
            Decision::Allow => Vec::new(),
        }
    }

    #[test]
    fn a_compliant_first_message_at_noon_is_allowed() {
        let d = run(
            &request("quo-main", SendProvider::Quo, ny("2026-06-10 12:00")),
            &[],
            &[],
            &ComplianceConfig::default(),
        );
        assert_eq!(d, Decision::Allow);
    }

    #[test]
    fn twenty_fifty_nine_is_allowed_and_twenty_one_hundred_is_held_until_eight() {
        let c = ComplianceConfig::default();
        let d = run(
            &request("quo-main", SendProvider::Quo, ny("2026-06-10 20:59")),
            &[],
            &[],
            &c,
        );
        assert_eq!(d, Decision::Allow);
        let d = run(
            &request("quo-main", SendProvider::Quo, ny("2026-06-10 21:00")),
            &[],
            &[],
            &c,
        );
        match d {
            Decision::Hold { until, reason } => {
                assert_eq!(until, ny("2026-06-11 08:00"));
                assert_eq!(reason.code, ReasonCode::QuietHours);
            }
            other => panic!("expected a hold, got {other:?}"),
        }
    }

    #[test]
    fn a_held_request_evaluated_again_when_the_window_opens_is_allowed() {
        let first = ny("2026-06-10 21:30");
        let Decision::Hold { until, .. } = run(
            &request("quo-main", SendProvider::Quo, first),
            &[],
            &[],
            &ComplianceConfig::default(),
        ) else {
            panic!("expected a hold");
        };
        let mut again = request("quo-main", SendProvider::Quo, until);
        again.first_requested_at = first;
        assert_eq!(
            run(&again, &[], &[], &ComplianceConfig::default()),
            Decision::Allow
        );
        again.now = until - Duration::minutes(1);
        assert!(matches!(
            run(&again, &[], &[], &ComplianceConfig::default()),
            Decision::Hold { .. }
        ));
    }

    #[test]
    fn a_hold_longer_than_the_maximum_is_a_refusal_counted_from_the_first_request() {
        let c = ComplianceConfig {
            max_hold_hours: 10,
            ..ComplianceConfig::default()
        };
        // 21:00 → 08:00 is 11 h.
        let d = run(
            &request("quo-main", SendProvider::Quo, ny("2026-06-10 21:00")),
            &[],
            &[],
            &c,
        );
        assert_eq!(codes(&d), [ReasonCode::QuietHoursHoldTooLong]);
        // Re-evaluated at 23:00, first requested at 05:00: 08:00 tomorrow is 27 h after that.
        let mut req = request("quo-main", SendProvider::Quo, ny("2026-06-10 23:00"));
        req.first_requested_at = ny("2026-06-10 05:00");
        let d = run(&req, &[], &[], &ComplianceConfig::default());
        assert_eq!(codes(&d), [ReasonCode::QuietHoursHoldTooLong]);
    }

    #[test]
    fn a_recipient_opted_out_through_another_line_and_provider_is_refused() {
        // The suppression list is per number: a STOP sent to the Quo line blocks Twilio too.
        let d = run(
            &request("twilio-2", SendProvider::Twilio, ny("2026-06-10 12:00")),
            &[TO],
            &[],
            &ComplianceConfig::default(),
        );
        assert_eq!(codes(&d), [ReasonCode::RecipientOptedOut]);
    }

    #[test]
    fn the_suppression_lookup_is_asked_for_the_number_of_the_requested_line() {
        // Re-subscribed on the Quo line's number only.
        let lifted_on_quo = |_: &str, line: Option<&str>| Ok(line != Some("+13055550000"));
        let lines = lines();
        let decide = |line: &str, provider| {
            evaluate(
                &request(line, provider, ny("2026-06-10 12:00")),
                &Inputs {
                    config: &ComplianceConfig::default(),
                    lines: &lines,
                    suppressions: &lifted_on_quo,
                    history: &[],
                    own_history: &[],
                    line_has_texted_recipient: true,
                    line_blocked: None,
                },
            )
        };
        assert_eq!(decide("quo-main", SendProvider::Quo), Decision::Allow);
        assert_eq!(
            codes(&decide("twilio-2", SendProvider::Twilio)),
            [ReasonCode::RecipientOptedOut]
        );
        // A line that is not configured is asked as unknown (the strictest answer).
        assert!(
            codes(&decide("nowhere", SendProvider::Quo)).contains(&ReasonCode::RecipientOptedOut)
        );
    }

    #[test]
    fn a_pending_line_is_refused_and_not_replaced_by_an_approved_one() {
        let d = run(
            &request("twilio-new", SendProvider::Twilio, ny("2026-06-10 12:00")),
            &[],
            &[],
            &ComplianceConfig::default(),
        );
        assert_eq!(codes(&d), [ReasonCode::LineTenDlcPending]);
    }

    #[test]
    fn quiet_hours_with_another_problem_is_a_refusal_listing_both_in_gate_order() {
        let d = run(
            &request("twilio-new", SendProvider::Twilio, ny("2026-06-10 22:00")),
            &[TO],
            &[],
            &ComplianceConfig::default(),
        );
        assert_eq!(
            codes(&d),
            [
                ReasonCode::RecipientOptedOut,
                ReasonCode::LineTenDlcPending,
                ReasonCode::QuietHours
            ]
        );
    }

    #[test]
    fn the_fourth_message_in_24_hours_is_refused() {
        let now = ny("2026-06-10 12:00");
        let history: Vec<Sent> = (1..=3)
            .map(|i| Sent {
                line_id: "twilio-2".into(),
                to: TO.into(),
                content_hash: blast_safety::content_hash(&format!("message {i}")),
                at: now - Duration::hours(i),
            })
            .collect();
        let d = run(
            &request("quo-main", SendProvider::Quo, now),
            &[],
            &history,
            &ComplianceConfig::default(),
        );
        assert_eq!(codes(&d), [ReasonCode::RecipientCap24h]);
        let d = run(
            &request("quo-main", SendProvider::Quo, now),
            &[],
            &history[..2],
            &ComplianceConfig::default(),
        );
        assert_eq!(d, Decision::Allow);
    }

    #[test]
    fn the_kill_switch_refuses_even_a_perfect_request() {
        let c = ComplianceConfig {
            kill_switch: true,
            ..ComplianceConfig::default()
        };
        let d = run(
            &request("quo-main", SendProvider::Quo, ny("2026-06-10 12:00")),
            &[],
            &[],
            &c,
        );
        assert_eq!(codes(&d), [ReasonCode::KillSwitch]);
        let mut bad = request("quo-main", SendProvider::Quo, ny("2026-06-10 12:00"));
        bad.to = "nobody".into();
        assert_eq!(
            codes(&run(&bad, &[], &[], &c)),
            [ReasonCode::RecipientInvalid, ReasonCode::KillSwitch]
        );
    }

    #[test]
    fn content_and_first_contact_problems_are_refused_together() {
        let c = ComplianceConfig {
            deny_list: vec!["Jane Doe".into()],
            ..ComplianceConfig::default()
        };
        let mut req = request("quo-main", SendProvider::Quo, ny("2026-06-10 12:00"));
        req.body = "Jane Doe here, see bit.ly/offer".into();
        assert_eq!(
            codes(&run(&req, &[], &[], &c)),
            [
                ReasonCode::ContentDeniedTerm,
                ReasonCode::ContentLinkShortener,
                ReasonCode::FirstContactMissingSender,
                ReasonCode::FirstContactMissingOptOut,
            ]
        );
    }

    #[test]
    fn a_toll_free_recipient_is_refused_for_its_unknown_area_code() {
        let mut req = request("quo-main", SendProvider::Quo, ny("2026-06-10 12:00"));
        req.to = "+18885550100".into();
        assert_eq!(
            codes(&run(&req, &[], &[], &ComplianceConfig::default())),
            [ReasonCode::AreaCodeUnknown]
        );
    }

    #[test]
    fn a_failed_suppression_lookup_refuses() {
        let lines = lines();
        let broken = |_: &str, _: Option<&str>| Err("store unavailable".to_owned());
        let d = evaluate(
            &request("quo-main", SendProvider::Quo, ny("2026-06-10 12:00")),
            &Inputs {
                config: &ComplianceConfig::default(),
                lines: &lines,
                suppressions: &broken,
                history: &[],
                own_history: &[],
                line_has_texted_recipient: true,
                line_blocked: None,
            },
        );
        assert_eq!(codes(&d), [ReasonCode::SuppressionUnavailable]);
    }

    #[test]
    fn a_line_the_provider_blocked_is_refused_even_when_configured_approved() {
        let lines = lines();
        let nobody = |_: &str, _: Option<&str>| Ok(false);
        let d = evaluate(
            &request("quo-main", SendProvider::Quo, ny("2026-06-10 12:00")),
            &Inputs {
                config: &ComplianceConfig::default(),
                lines: &lines,
                suppressions: &nobody,
                history: &[],
                own_history: &[],
                line_has_texted_recipient: true,
                line_blocked: Some("Quo: A2P registration not approved"),
            },
        );
        assert_eq!(codes(&d), [ReasonCode::LineBlocked]);
    }

    #[test]
    fn decisions_serialise_with_snake_case_codes() {
        let d = Decision::Refuse {
            reasons: vec![Reason::new(ReasonCode::RecipientCap24h, "x")],
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"decision":"refuse","reasons":[{"code":"recipient_cap_24h","message":"x"}]}"#
        );
    }
}
