//! `optout`: the recipient is not on the suppression list.
//!
//! The list is hooklog's own, keyed by E.164 number across every line and both providers
//! (docs/reference/compliance.md#what-the-providers-do: OpenPhone blocks workspace-wide, Twilio per number, so neither
//! provider's block is enough). This gate stays pure: the caller passes the lookup, in
//! production [`crate::consumers::compliance::is_suppressed`] over the state store. A lookup
//! that fails refuses the request (fail closed): not knowing is not consent.

use super::reason::{Reason, ReasonCode};

/// "Is this E.164 number suppressed?" The error is a description of why it is not known.
pub trait Suppressions {
    /// Whether `e164` is suppressed.
    fn is_suppressed(&self, e164: &str) -> Result<bool, String>;
}

impl<F: Fn(&str) -> Result<bool, String>> Suppressions for F {
    fn is_suppressed(&self, e164: &str) -> Result<bool, String> {
        self(e164)
    }
}

/// Why the recipient may not be texted, if so. `to` is already E.164.
pub fn check(suppressions: &dyn Suppressions, to: &str) -> Option<Reason> {
    match suppressions.is_suppressed(to) {
        Ok(false) => None,
        Ok(true) => Some(Reason::new(
            ReasonCode::RecipientOptedOut,
            format!("{to} opted out (on any line or provider); it is never texted again unless it re-subscribes"),
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

    #[test]
    fn a_recipient_not_on_the_list_passes() {
        let none = |_: &str| Ok(false);
        assert_eq!(check(&none, "+13055550100"), None);
    }

    #[test]
    fn a_recipient_who_opted_out_is_refused() {
        let listed = |n: &str| Ok(n == "+13055550100");
        assert_eq!(
            check(&listed, "+13055550100").unwrap().code,
            ReasonCode::RecipientOptedOut
        );
        assert_eq!(check(&listed, "+13055550101"), None);
    }

    #[test]
    fn a_failed_lookup_refuses() {
        let broken = |_: &str| Err("store closed".to_owned());
        assert_eq!(
            check(&broken, "+13055550100").unwrap().code,
            ReasonCode::SuppressionUnavailable
        );
    }

    #[test]
    fn the_real_list_has_no_entry_for_a_fresh_store() {
        let store = crate::state::MemState::default();
        let lookup = |n: &str| is_suppressed(&store, n).map_err(|e| e.to_string());
        assert_eq!(check(&lookup, "+13055550100"), None);
    }
}
