//! `blast_safety`: the kill switch, the per-line cap, the per-recipient cap, and no identical
//! content to the same recipient.
//!
//! Pure over the recent sends the caller passes in ([`Sent`]: line, recipient, content hash,
//! time); keeping that history durable is the sender's job. Every window is a rolling 24 h
//! ending at the evaluation time, so a burst cannot straddle midnight to get two days'
//! budget. The recipient cap and the duplicate check count every line and provider: the FL,
//! OK and MD limits (≤ 3 per 24 h) are per person, not per sending number, and varying
//! wording or numbers to get around a filter is what carriers punish (docs/reference/compliance.md#blast-safety-and-duplicates).
//! A request that would be the (cap + 1)-th in the window is refused.
//!
//! A re-send of a message (an operator's redelivery) is evaluated again with its own
//! earlier sends passed apart (`own`): they count toward the caps like any send, since the
//! re-send is one more message to the person and on the line, but never make it a duplicate
//! of itself.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::config::ComplianceConfig;
use super::reason::{Reason, ReasonCode};

/// SHA-256 of a body after [`normalize_body`].
pub type ContentHash = [u8; 32];

/// One message already sent (or accepted for sending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The line it went out on.
    pub line_id: String,
    /// The recipient, E.164.
    pub to: String,
    /// [`content_hash`] of its body.
    pub content_hash: ContentHash,
    /// When.
    pub at: DateTime<Utc>,
}

/// Lower case, whitespace collapsed: two bodies that differ only so are the same message to
/// the recipient and to carrier filters.
pub fn normalize_body(body: &str) -> String {
    body.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The hash [`Sent::content_hash`] holds.
pub fn content_hash(body: &str) -> ContentHash {
    Sha256::digest(normalize_body(body).as_bytes()).into()
}

/// Every blast-safety problem of sending `body` to `to` on `line_id` at `now`. `history`
/// holds the recent sends of other messages, `own` the earlier sends of this same message
/// (empty for a new request): both count toward the caps, only `history` for duplicates.
pub fn check(
    config: &ComplianceConfig,
    history: &[Sent],
    own: &[Sent],
    line_id: &str,
    to: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if config.kill_switch {
        reasons.push(Reason::new(
            ReasonCode::KillSwitch,
            "the kill switch is on (compliance.kill_switch, or an operator's POST /admin/kill-switch): it stops every outbound message",
        ));
    }
    let since = now - Duration::hours(24);
    // Future-dated records count too: a clock step back must not reopen the budget.
    let recent = || history.iter().chain(own).filter(|s| s.at > since);
    let on_line = recent().filter(|s| s.line_id == line_id).count();
    if on_line >= config.line_daily_cap as usize {
        reasons.push(Reason::new(
            ReasonCode::LineDailyCap,
            format!(
                "line `{line_id}` sent {on_line} messages in the last 24 h; the cap is {}",
                config.line_daily_cap
            ),
        ));
    }
    let to_recipient = recent().filter(|s| s.to == to).count();
    if to_recipient >= config.recipient_cap_24h as usize {
        reasons.push(Reason::new(
            ReasonCode::RecipientCap24h,
            format!(
                "{to} received {to_recipient} messages in the last 24 h (all lines); the cap is {}",
                config.recipient_cap_24h
            ),
        ));
    }
    let hash = content_hash(body);
    let others = || history.iter().filter(|s| s.at > since);
    if others().any(|s| s.to == to && s.content_hash == hash) {
        reasons.push(Reason::new(
            ReasonCode::DuplicateContent,
            format!("{to} already received this message in the last 24 h"),
        ));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: &str = "+13055550100";

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_781_000_000, 0).unwrap_or_default() + Duration::hours(hours)
    }

    fn sent(line: &str, to: &str, body: &str, at: DateTime<Utc>) -> Sent {
        Sent {
            line_id: line.into(),
            to: to.into(),
            content_hash: content_hash(body),
            at,
        }
    }

    fn codes(
        c: &ComplianceConfig,
        h: &[Sent],
        line: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Vec<ReasonCode> {
        check(c, h, &[], line, TO, body, now)
            .into_iter()
            .map(|r| r.code)
            .collect()
    }

    #[test]
    fn the_fourth_message_to_one_recipient_in_24_hours_is_refused_across_lines() {
        let c = ComplianceConfig::default();
        let history = [
            sent("a", TO, "one", t(0)),
            sent("b", TO, "two", t(5)),
            sent("c", TO, "three", t(10)),
        ];
        assert!(
            codes(&c, &history[..2], "a", "third", t(12)).is_empty(),
            "the 3rd is allowed"
        );
        assert_eq!(
            codes(&c, &history, "a", "four", t(12)),
            [ReasonCode::RecipientCap24h]
        );
        // 24 h after the first send it has left the window.
        assert!(codes(&c, &history, "a", "four", t(24)).is_empty());
        assert_eq!(
            codes(&c, &history, "a", "four", t(24) - Duration::seconds(1)),
            [ReasonCode::RecipientCap24h]
        );
    }

    #[test]
    fn identical_content_to_the_same_recipient_is_refused_whatever_the_case_or_spacing() {
        let c = ComplianceConfig::default();
        let history = [sent("a", TO, "Hi Sam, still selling?", t(0))];
        assert_eq!(
            codes(&c, &history, "b", "hi  SAM, still\nselling?", t(3)),
            [ReasonCode::DuplicateContent]
        );
        assert!(codes(&c, &history, "b", "Hi Sam, still selling? ", t(25)).is_empty());
        // The same text to someone else is not a duplicate.
        let other = [sent("a", "+13055550199", "Hi Sam, still selling?", t(0))];
        assert!(codes(&c, &other, "a", "Hi Sam, still selling?", t(1)).is_empty());
    }

    #[test]
    fn a_line_over_its_daily_cap_is_refused_and_other_lines_are_not() {
        let c = ComplianceConfig {
            line_daily_cap: 2,
            ..ComplianceConfig::default()
        };
        let history = [
            sent("a", "+13055550001", "x", t(0)),
            sent("a", "+13055550002", "x", t(1)),
        ];
        assert_eq!(
            codes(&c, &history, "a", "y", t(2)),
            [ReasonCode::LineDailyCap]
        );
        assert!(codes(&c, &history, "b", "y", t(2)).is_empty());
        assert!(codes(&c, &history[1..], "a", "y", t(2)).is_empty());
    }

    #[test]
    fn a_resend_counts_its_own_earlier_sends_toward_the_caps_but_is_no_duplicate_of_itself() {
        let c = ComplianceConfig {
            recipient_cap_24h: 2,
            ..ComplianceConfig::default()
        };
        let codes = |history: &[Sent], own: &[Sent]| -> Vec<ReasonCode> {
            check(&c, history, own, "a", TO, "Hi Sam", t(3))
                .into_iter()
                .map(|r| r.code)
                .collect()
        };
        let original = [sent("a", TO, "Hi Sam", t(0))];
        // The same send as someone else's message is a duplicate; as its own, it is not.
        assert_eq!(codes(&original, &[]), [ReasonCode::DuplicateContent]);
        assert!(codes(&[], &original).is_empty());
        // Its own send counts toward the cap: with one more message the cap is reached.
        let other = [sent("b", TO, "something else", t(1))];
        assert_eq!(codes(&other, &original), [ReasonCode::RecipientCap24h]);
        assert!(codes(&other, &[]).is_empty());
        // And toward the line's cap.
        let line = ComplianceConfig {
            line_daily_cap: 1,
            ..ComplianceConfig::default()
        };
        assert_eq!(
            check(&line, &[], &original, "a", TO, "Hi Sam", t(3))
                .into_iter()
                .map(|r| r.code)
                .collect::<Vec<_>>(),
            [ReasonCode::LineDailyCap]
        );
    }

    #[test]
    fn the_kill_switch_refuses_everything() {
        let c = ComplianceConfig {
            kill_switch: true,
            ..ComplianceConfig::default()
        };
        assert_eq!(codes(&c, &[], "a", "hello", t(0)), [ReasonCode::KillSwitch]);
    }
}
