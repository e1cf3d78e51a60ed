//! `thread_context`: the first message a line sends a recipient identifies the sender and
//! says how to opt out.
//!
//! "First contact" is an input (has this line ever texted this number?), because the
//! durable outbound history is not this module's. On first contact the body must contain the
//! line's `business_name` (case-insensitive, spacing and punctuation ignored) and opt-out
//! wording such as "Reply STOP to opt out" (docs/reference/compliance.md#identification; WA requires
//! the sender to be identified). Later messages in a thread are not checked here.

use super::config::LineConfig;
use super::reason::{Reason, ReasonCode};

/// Phrases accepted as opt-out instructions, compared after [`squash`].
const OPT_OUT_PHRASES: &[&str] = &[
    "reply stop",
    "text stop",
    "send stop",
    "stop to opt out",
    "stop to unsubscribe",
    "stop to end",
    "stop to cancel",
];

/// Lower case, every run of non-alphanumerics one space (so `STOP.`, `"STOP"`, `opt-out`
/// compare as words).
fn squash(s: &str) -> String {
    let lower: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn contains_words(haystack: &str, needle: &str) -> bool {
    format!(" {haystack} ").contains(&format!(" {needle} "))
}

/// Why a first message is incomplete; nothing when it is not a first message.
pub fn check(line: &LineConfig, body: &str, first_contact: bool) -> Vec<Reason> {
    if !first_contact {
        return Vec::new();
    }
    let text = squash(body);
    let mut reasons = Vec::new();
    let name = squash(&line.business_name);
    if name.is_empty() || !contains_words(&text, &name) {
        reasons.push(Reason::new(
            ReasonCode::FirstContactMissingSender,
            format!(
                "a first message must name the sender, `{}`",
                line.business_name
            ),
        ));
    }
    if !OPT_OUT_PHRASES.iter().any(|p| contains_words(&text, p)) {
        reasons.push(Reason::new(
            ReasonCode::FirstContactMissingOptOut,
            "a first message must say how to opt out, e.g. \"Reply STOP to opt out\"",
        ));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::config::TenDlc;
    use crate::provider::SendProvider;

    fn line() -> LineConfig {
        LineConfig {
            id: "main".into(),
            number: "+13055550000".into(),
            provider: SendProvider::Twilio,
            ten_dlc: TenDlc::Approved,
            business_name: "Acme Homes".into(),
            phone_number_id: None,
        }
    }

    fn codes(body: &str, first: bool) -> Vec<ReasonCode> {
        check(&line(), body, first)
            .into_iter()
            .map(|r| r.code)
            .collect()
    }

    #[test]
    fn a_first_message_naming_the_business_with_stop_wording_passes() {
        assert!(codes("Hi, Sam from ACME homes here. Reply STOP to opt out.", true).is_empty());
        assert!(codes(
            "Acme Homes: quick question. Text \"STOP\" to unsubscribe",
            true
        )
        .is_empty());
    }

    #[test]
    fn a_first_message_without_opt_out_wording_is_refused() {
        assert_eq!(
            codes("Hi, Sam from Acme Homes here.", true),
            [ReasonCode::FirstContactMissingOptOut]
        );
        assert_eq!(
            codes("Acme Homes here, don't stop dreaming", true),
            [ReasonCode::FirstContactMissingOptOut]
        );
    }

    #[test]
    fn a_first_message_without_the_business_name_is_refused() {
        assert_eq!(
            codes("Hi, it's Sam. Reply STOP to opt out", true),
            [ReasonCode::FirstContactMissingSender]
        );
        assert_eq!(
            codes("Acme here. Reply STOP to opt out", true),
            [ReasonCode::FirstContactMissingSender]
        );
    }

    #[test]
    fn later_messages_in_a_thread_are_not_checked() {
        assert!(codes("Sounds good, 3pm works", false).is_empty());
    }
}
