//! Signature verification, one module per scheme, each with a `sign` counterpart for tests
//! and tooling: [`quo_legacy`] (`openphone-signature`), [`standard_webhooks`] (Quo's
//! `webhook-*` headers), [`twilio`] (`X-Twilio-Signature`) and [`salesmsg`] (the URL secret).
//!
//! Near the ground floor: it imports nothing of hooklog but [`Provider`], so the edge's
//! [`crate::edge::verifier`] (which scheme and keys for which route), the one error → HTTP
//! mapping ([`Rejection`]), the configuration's checks of signing secrets and the fixture
//! tooling all build on it.
//!
//! Everything here is pure: no I/O, and no clock reads (callers pass `now`). Invariants shared
//! by every scheme: signatures are compared in constant time; every configured key is tried
//! before the index of the first match is returned, so response time does not reveal which
//! key (or whether an earlier key) matched; an empty key never verifies anything, because an
//! HMAC under an empty key is forgeable by anyone.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::provider::Provider;

pub mod quo_legacy;
pub mod salesmsg;
pub mod standard_webhooks;
pub mod twilio;

/// Standard alphabet, padded on output, padding optional on input: providers pad, but
/// operators paste secrets with the padding trimmed often enough to be worth tolerating.
pub(crate) const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Secret key material for one provider credential.
///
/// Deliberately not `PartialEq`: comparing keys with `==` would not be constant-time.
#[derive(Clone)]
pub struct HmacKey(Vec<u8>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacKey(<redacted, {} bytes>)", self.0.len())
    }
}

/// Why a webhook was not accepted: its provider has no keys configured, or it failed its
/// scheme's verification. The edge answers each with its status ([`crate::error::ApiError`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No keys are configured for the route's provider: answer 503 so the provider retries
    /// once an operator has configured them, rather than dropping events.
    #[error("{} is not configured", .0.as_str())]
    NotConfigured(Provider),
    /// The request failed verification.
    #[error("{provider} request failed verification: {1}", provider = .0.as_str())]
    Unverified(Provider, VerifyError),
}

/// Why a configured secret could not be turned into an [`HmacKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret (after any `whsec_` prefix) is not standard base64.
    #[error("signing secret is not valid base64")]
    InvalidBase64,
    /// The secret is empty, or decodes to no bytes.
    #[error("signing secret is empty")]
    Empty,
}

impl HmacKey {
    /// Raw key bytes, used as they are.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// A Quo signing secret: plain base64 (legacy webhooks) or `whsec_<base64>` (Standard
    /// Webhooks). The HMAC key is the decoded bytes, not the text.
    pub fn from_quo_secret(secret: &str) -> Result<Self, KeyError> {
        let secret = secret.trim();
        let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
        if b64.is_empty() {
            return Err(KeyError::Empty);
        }
        let bytes = B64.decode(b64).map_err(|_| KeyError::InvalidBase64)?;
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(bytes))
    }

    /// A secret used as its UTF-8 bytes without decoding: the Twilio Auth Token, the SalesMsg
    /// `secret` parameter.
    pub fn from_utf8(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }

    /// Number of key bytes (not secret; useful in diagnostics).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a key with no bytes, which `first_match` callers treat as never matching.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Why a request failed verification. Shared by all schemes so the edge maps them uniformly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header (or query parameter, for SalesMsg) is absent or empty; names it.
    #[error("missing {0}")]
    MissingHeader(&'static str),
    /// A header is present but not in the scheme's syntax; names it.
    #[error("malformed {0}")]
    MalformedHeader(&'static str),
    /// The request is well-formed but no configured key produced its signature.
    #[error("no configured key matches the signature")]
    BadSignature,
    /// The signed timestamp is older than the tolerance window allows.
    #[error("timestamp is older than the tolerance window")]
    StaleTimestamp,
    /// The signed timestamp is further in the future than the tolerance window allows.
    #[error("timestamp is newer than the tolerance window")]
    FutureTimestamp,
    /// A Twilio JSON request without `bodySHA256` in its query, so the body is unsigned.
    #[error("JSON request without bodySHA256")]
    MissingBodyHash,
    /// A Twilio JSON request whose body does not hash to its `bodySHA256`.
    #[error("body does not match bodySHA256")]
    BodyHashMismatch,
    /// Nothing is configured for this provider, so nothing can verify (a server-side fault).
    #[error("no keys configured")]
    NoKeys,
}

impl VerifyError {
    /// Stable snake_case label for metrics; do not rename, dashboards depend on it.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::MalformedHeader(_) => "malformed_header",
            Self::BadSignature => "bad_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::FutureTimestamp => "future_timestamp",
            Self::MissingBodyHash => "missing_body_hash",
            Self::BodyHashMismatch => "body_hash_mismatch",
            Self::NoKeys => "no_keys",
        }
    }
}

/// Constant-time equality. Only the lengths may leak, and they are public (digest sizes).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Index of the first candidate in `0..candidates` for which `is_match` holds, found without
/// stopping early or branching on results, so the work done is the same whichever matched.
pub(crate) fn first_match(
    candidates: usize,
    mut is_match: impl FnMut(usize) -> bool,
) -> Option<usize> {
    let mut found = subtle::Choice::from(0);
    let mut index = 0u64;
    for i in 0..candidates {
        let hit = subtle::Choice::from(u8::from(is_match(i)));
        index.conditional_assign(&(i as u64), hit & !found);
        found |= hit;
    }
    // `index < candidates`, which is a usize, so the conversion back cannot truncate.
    bool::from(found).then_some(index as usize)
}

pub(crate) fn hmac_sha256(key: &HmacKey, parts: &[&[u8]]) -> [u8; 32] {
    // HMAC is defined for keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
pub(crate) fn hmac_sha1(key: &HmacKey, parts: &[&[u8]]) -> [u8; 20] {
    use sha1::Sha1;
    // HMAC is defined for keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Decodes a base64 signature that must be exactly `N` bytes (the digest size).
pub(crate) fn decode_mac<const N: usize>(text: &str) -> Option<[u8; N]> {
    B64.decode(text).ok()?.try_into().ok()
}

/// Parses an all-digits timestamp; signs, spaces and empty strings are rejected because the
/// signed text must be exactly what was parsed.
pub(crate) fn parse_digits(ts: &str) -> Option<u64> {
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ts.parse().ok()
}

/// Checks `ts_ms` against `now ± tolerance`, inclusive at both edges. i128 so that no input
/// (including a tolerance of `u64::MAX`) can overflow.
pub(crate) fn check_window(
    ts_ms: u64,
    now_unix_secs: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let diff = i128::from(ts_ms) - i128::from(now_unix_secs) * 1000;
    let tolerance = i128::from(tolerance_secs) * 1000;
    if diff < -tolerance {
        Err(VerifyError::StaleTimestamp)
    } else if diff > tolerance {
        Err(VerifyError::FutureTimestamp)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quo_secret_decodes_with_or_without_prefix_and_padding() {
        let plain =
            HmacKey::from_quo_secret("R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=").unwrap();
        let prefixed =
            HmacKey::from_quo_secret("whsec_R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg").unwrap();
        assert_eq!(plain.as_bytes(), b"GfK3j4lXA5ZrRu64ofat50srGzoIHHUX");
        assert_eq!(plain.as_bytes(), prefixed.as_bytes());
    }

    #[test]
    fn bad_quo_secrets_are_rejected() {
        assert_eq!(HmacKey::from_quo_secret("").unwrap_err(), KeyError::Empty);
        assert_eq!(
            HmacKey::from_quo_secret("whsec_").unwrap_err(),
            KeyError::Empty
        );
        assert_eq!(
            HmacKey::from_quo_secret("not base64!").unwrap_err(),
            KeyError::InvalidBase64
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let key = HmacKey::from_utf8("hunter2");
        assert_eq!(format!("{key:?}"), "HmacKey(<redacted, 7 bytes>)");
    }

    #[test]
    fn first_match_returns_the_first_of_several_matches() {
        let mut visited = 0;
        let hit = first_match(5, |i| {
            visited += 1;
            i == 1 || i == 3
        });
        assert_eq!(hit, Some(1));
        assert_eq!(visited, 5, "every candidate is tried");
        assert_eq!(first_match(3, |_| false), None);
        assert_eq!(first_match(0, |_| true), None);
    }

    #[test]
    fn ct_eq_requires_equal_length_and_content() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn reasons_are_stable_snake_case() {
        let all = [
            VerifyError::MissingHeader("x"),
            VerifyError::MalformedHeader("x"),
            VerifyError::BadSignature,
            VerifyError::StaleTimestamp,
            VerifyError::FutureTimestamp,
            VerifyError::MissingBodyHash,
            VerifyError::BodyHashMismatch,
            VerifyError::NoKeys,
        ];
        let reasons: Vec<_> = all.iter().map(VerifyError::reason).collect();
        assert_eq!(
            reasons,
            [
                "missing_header",
                "malformed_header",
                "bad_signature",
                "stale_timestamp",
                "future_timestamp",
                "missing_body_hash",
                "body_hash_mismatch",
                "no_keys"
            ]
        );
    }
}
