//! Why a request is refused or held: the [`Gate`] that said so, a stable [`ReasonCode`] and the
//! words for the agent ([`Reason`]). Every gate returns these, the decision record stores them,
//! and `GET /v1/messages/{id}` shows them.

use serde::{Deserialize, Serialize};

/// The gate a reason comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// [`super::line`]
    Line,
    /// [`super::optout`]
    Optout,
    /// [`super::quiet_hours`]
    QuietHours,
    /// [`super::blast_safety`]
    BlastSafety,
    /// [`super::content`]
    Content,
    /// [`super::thread_context`]
    ThreadContext,
}

/// Why a request is not allowed now: stable codes for events, metrics and callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// No `[[lines]]` entry has the requested id.
    LineUnknown,
    /// The line sends through another provider than the one requested.
    LineProviderMismatch,
    /// The line's 10DLC registration is pending.
    LineTenDlcPending,
    /// The line's 10DLC registration was rejected.
    LineTenDlcRejected,
    /// The provider refused a send because the line's A2P registration is not approved
    /// (Quo's 400); blocked until an operator unblocks it.
    LineBlocked,
    /// The recipient is not a phone number.
    RecipientInvalid,
    /// The recipient is on the suppression list.
    RecipientOptedOut,
    /// The suppression list could not be read.
    SuppressionUnavailable,
    /// Outside the recipient's allowed hours (the only reason that can hold).
    QuietHours,
    /// Outside the allowed hours, and the window opens after the maximum hold.
    QuietHoursHoldTooLong,
    /// The recipient's area code is unknown, toll-free, non-geographic or not +1.
    AreaCodeUnknown,
    /// The kill switch is on.
    KillSwitch,
    /// The line reached its cap for the last 24 h.
    LineDailyCap,
    /// The recipient reached the cap for the last 24 h.
    #[serde(rename = "recipient_cap_24h")]
    RecipientCap24h,
    /// The recipient received the same content in the last 24 h.
    DuplicateContent,
    /// Another message already carries this request's idempotency key.
    DuplicateRequest,
    /// The body is empty.
    ContentEmpty,
    /// The body is longer than `max_length`.
    ContentTooLong,
    /// The body contains a deny-list term.
    ContentDeniedTerm,
    /// The body links to a URL shortener.
    ContentLinkShortener,
    /// A first message does not name the business.
    FirstContactMissingSender,
    /// A first message does not say how to opt out.
    FirstContactMissingOptOut,
}

impl ReasonCode {
    /// The gate the code belongs to.
    pub fn gate(self) -> Gate {
        use ReasonCode::*;
        match self {
            LineUnknown | LineProviderMismatch | LineTenDlcPending | LineTenDlcRejected
            | LineBlocked => Gate::Line,
            RecipientInvalid | RecipientOptedOut | SuppressionUnavailable => Gate::Optout,
            QuietHours | QuietHoursHoldTooLong | AreaCodeUnknown => Gate::QuietHours,
            KillSwitch | LineDailyCap | RecipientCap24h | DuplicateContent | DuplicateRequest => {
                Gate::BlastSafety
            }
            ContentEmpty | ContentTooLong | ContentDeniedTerm | ContentLinkShortener => {
                Gate::Content
            }
            FirstContactMissingSender | FirstContactMissingOptOut => Gate::ThreadContext,
        }
    }
}

/// One reason: a code and a sentence for a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The machine-readable code.
    pub code: ReasonCode,
    /// What is wrong, for an operator.
    pub message: String,
}

impl Reason {
    /// A reason.
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Reason {
        Reason {
            code,
            message: message.into(),
        }
    }

    /// The gate it comes from.
    pub fn gate(&self) -> Gate {
        self.code.gate()
    }
}
