//! `optout`: the recipient is not suppressed on the line the request sends from.
//!
//! The list is hooklog's own, keyed by E.164 number across every line and both providers
//! (docs/reference/compliance.md#what-the-providers-do: OpenPhone blocks workspace-wide, Twilio per number, so neither
//! provider's block is enough). An opt-out suppresses on every line; a re-subscription lifts
//! it on the line it was sent to only, so the lookup takes the line: the `number` of the
//! request's `[[lines]]` entry, or `None` when the line is not configured (then any opt-out in
//! force refuses). This gate stays pure: the caller passes the lookup, in production
//! [`crate::consumers::compliance::is_suppressed`] over the state store. A lookup that fails
//! refuses the request (fail closed): not knowing is not consent.

use super::reason::{Reason, ReasonCode};

/// "Is this E.164 number suppressed for this line?" The error is a description of why it is
/// not known.
pub trait Suppressions {
    /// Whether `e164` may not be texted from `line` (the line's E.164 number; `None`: not
    /// known).
    fn is_suppressed(&self, e164: &str, line: Option<&str>) -> Result<bool, String>;
}

impl<F: Fn(&str, Option<&str>) -> Result<bool, String>> Suppressions for F {
    fn is_suppressed(&self, e164: &str, line: Option<&str>) -> Result<bool, String> {
        self(e164, line)
    }
}

/// Why the recipient may not be texted from `line`, if so. `to` is already E.164.
pub fn check(suppressions: &dyn Suppressions, to: &str, line: Option<&str>) -> Option<Reason> {
    match suppressions.is_suppressed(to, line) {
        Ok(false) => None,
        Ok(true) => Some(Reason::new(
            ReasonCode::RecipientOptedOut,
            format!(
                "{to} opted out and is suppressed on {}: an opt-out counts on every line and provider until the person re-subscribes to that line or an operator lifts it",
                line.map_or_else(|| "every line".to_owned(), |l| format!("line {l}"))
            ),
        )),
        Err(e) => Some(Reason::new(
            ReasonCode::SuppressionUnavailable,
            format!("cannot read the suppression list for {to}: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::compliance::is_suppressed;

    const LINE: Option<&str> = Some("+13055550001");

    #[test]
    fn a_recipient_not_on_the_list_passes() {
        let none = |_: &str, _: Option<&str>| Ok(false);
        assert_eq!(check(&none, "+13055550100", LINE), None);
    }

    #[test]
    fn a_recipient_who_opted_out_is_refused() {
        let listed = |n: &str, _: Option<&str>| Ok(n == "+13055550100");
        assert_eq!(
            check(&listed, "+13055550100", LINE).unwrap().code,
            ReasonCode::RecipientOptedOut
        );
        assert_eq!(check(&listed, "+13055550101", LINE), None);
    }

    #[test]
    fn the_lookup_is_asked_for_the_line_of_the_request() {
        // Re-subscribed on LINE only: refused from any other line and from an unknown one.
        let lifted_on_line = |_: &str, line: Option<&str>| Ok(line != LINE);
        assert_eq!(check(&lifted_on_line, "+13055550100", LINE), None);
        for other in [Some("+13055550002"), None] {
            assert_eq!(
                check(&lifted_on_line, "+13055550100", other).unwrap().code,
                ReasonCode::RecipientOptedOut
            );
        }
    }

    #[test]
    fn a_failed_lookup_refuses() {
        let broken = |_: &str, _: Option<&str>| Err("store closed".to_owned());
        assert_eq!(
            check(&broken, "+13055550100", LINE).unwrap().code,
            ReasonCode::SuppressionUnavailable
        );
    }

    #[test]
    fn the_real_list_has_no_entry_for_a_fresh_store() {
        let store = crate::state::MemState::default();
        let lookup =
            |n: &str, line: Option<&str>| is_suppressed(&store, n, line).map_err(|e| e.to_string());
        assert_eq!(check(&lookup, "+13055550100", LINE), None);
    }
}
