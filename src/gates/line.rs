//! `line`: the request names a configured line, on the provider it was asked for, whose A2P
//! 10DLC registration is approved.
//!
//! Never a fallback: a request for an unknown, pending, rejected or mismatched line is
//! refused, not moved to another line or provider. Rotating numbers or providers around a
//! block is "snowshoeing", which carriers fine (docs/reference/compliance.md#a2p-10dlc-registration).

use super::config::{LineConfig, TenDlc};
use super::reason::{Reason, ReasonCode};
use crate::provider::SendProvider;

/// The line the request may use, or why it may not.
pub fn check<'a>(
    lines: &'a [LineConfig],
    line_id: &str,
    provider: SendProvider,
) -> Result<&'a LineConfig, Vec<Reason>> {
    let Some(line) = lines.iter().find(|l| l.id == line_id) else {
        return Err(vec![Reason::new(
            ReasonCode::LineUnknown,
            format!("no line `{line_id}` is configured in [[lines]]"),
        )]);
    };
    let mut reasons = Vec::new();
    if line.provider != provider {
        reasons.push(Reason::new(
            ReasonCode::LineProviderMismatch,
            format!(
                "line `{}` sends through {}, not {}; requests are never moved to another provider",
                line.id,
                line.provider.as_str(),
                provider.as_str()
            ),
        ));
    }
    match line.ten_dlc {
        TenDlc::Approved => {}
        TenDlc::Pending => reasons.push(Reason::new(
            ReasonCode::LineTenDlcPending,
            format!(
                "line `{}`: 10DLC registration is pending; nothing may be sent until it is approved",
                line.id
            ),
        )),
        TenDlc::Rejected => reasons.push(Reason::new(
            ReasonCode::LineTenDlcRejected,
            format!("line `{}`: 10DLC registration was rejected", line.id),
        )),
    }
    if reasons.is_empty() {
        Ok(line)
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, provider: SendProvider, ten_dlc: TenDlc) -> LineConfig {
        LineConfig {
            id: id.into(),
            number: "+13055550000".into(),
            provider,
            ten_dlc,
            business_name: "Acme Homes".into(),
            phone_number_id: None,
        }
    }

    fn codes(r: Result<&LineConfig, Vec<Reason>>) -> Vec<ReasonCode> {
        r.err().unwrap().into_iter().map(|r| r.code).collect()
    }

    #[test]
    fn an_approved_line_on_its_provider_is_allowed() {
        let lines = [line("main", SendProvider::Quo, TenDlc::Approved)];
        assert_eq!(check(&lines, "main", SendProvider::Quo).unwrap().id, "main");
    }

    #[test]
    fn a_line_whose_10dlc_is_pending_is_refused_even_if_another_line_is_approved() {
        let lines = [
            line("new", SendProvider::Twilio, TenDlc::Pending),
            line("old", SendProvider::Twilio, TenDlc::Approved),
        ];
        assert_eq!(
            codes(check(&lines, "new", SendProvider::Twilio)),
            [ReasonCode::LineTenDlcPending]
        );
    }

    #[test]
    fn a_rejected_line_is_refused() {
        let lines = [line("main", SendProvider::Twilio, TenDlc::Rejected)];
        assert_eq!(
            codes(check(&lines, "main", SendProvider::Twilio)),
            [ReasonCode::LineTenDlcRejected]
        );
    }

    #[test]
    fn an_unknown_line_is_refused() {
        let lines = [line("main", SendProvider::Twilio, TenDlc::Approved)];
        assert_eq!(
            codes(check(&lines, "other", SendProvider::Twilio)),
            [ReasonCode::LineUnknown]
        );
        assert_eq!(
            codes(check(&[], "main", SendProvider::Twilio)),
            [ReasonCode::LineUnknown]
        );
    }

    #[test]
    fn a_request_for_another_provider_is_refused_not_rerouted() {
        let lines = [line("main", SendProvider::Quo, TenDlc::Pending)];
        assert_eq!(
            codes(check(&lines, "main", SendProvider::Twilio)),
            [
                ReasonCode::LineProviderMismatch,
                ReasonCode::LineTenDlcPending
            ]
        );
    }
}
