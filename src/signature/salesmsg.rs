//! SalesMsg webhooks: a shared secret in the `secret` query parameter.
//!
//! There is no signature, so the secret itself authenticates the request. It is compared by
//! SHA-256 digest in constant time, which also hides its length, and it must never reach the
//! log: store [`redact_query`]'s output instead of the raw query. A repeated `secret` is
//! rejected rather than guessed at.

use super::{ct_eq, first_match, HmacKey, VerifyError};
use sha2::{Digest, Sha256};

const PARAM: &str = "secret";

/// Checks the percent-decoded `secret` parameter of the raw `query` (without `?`) against each
/// configured secret (UTF-8 bytes). Returns the index of the first matching secret.
pub fn verify(query: Option<&str>, secrets: &[HmacKey]) -> Result<usize, VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoKeys);
    }
    let mut presented = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == PARAM)
        .map(|(_, value)| value);
    let value = presented.next().ok_or(VerifyError::MissingHeader(PARAM))?;
    if presented.next().is_some() {
        return Err(VerifyError::MalformedHeader(PARAM));
    }
    // Digests have a fixed length, so the comparison says nothing about the secret's length.
    let digest = Sha256::digest(value.as_bytes());
    first_match(secrets.len(), |i| {
        let secret = &secrets[i];
        ct_eq(&Sha256::digest(secret.as_bytes()), &digest) & !secret.is_empty()
    })
    .ok_or(VerifyError::BadSignature)
}

/// Whether the raw `query` has a `secret` parameter at all (decoded as [`verify`] decodes it):
/// without one a request cannot verify, so the edge refuses it before reading its body.
pub fn presents_secret(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(name, _)| name == PARAM)
}

/// The raw query with the value of every `secret` parameter replaced by `REDACTED`; every
/// other byte, including the parameter's own name as sent (e.g. `%73ecret`), is kept.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let (raw_name, has_value) = match pair.split_once('=') {
                Some((name, _)) => (name, true),
                None => (pair, false),
            };
            // Decoded the same way `verify` decodes, so whatever it reads as the secret goes.
            let is_secret = form_urlencoded::parse(raw_name.as_bytes())
                .next()
                .is_some_and(|(name, _)| name == PARAM);
            if is_secret && has_value {
                format!("{raw_name}=REDACTED")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Vec<HmacKey> {
        vec![
            HmacKey::from_utf8("old secret"),
            HmacKey::from_utf8("s3cr3t/+&"),
        ]
    }

    #[test]
    fn right_secret_passes_with_its_index() {
        assert_eq!(
            verify(Some("a=1&secret=s3cr3t%2F%2B%26&b=2"), &secrets()),
            Ok(1)
        );
        assert_eq!(verify(Some("secret=old+secret"), &secrets()), Ok(0));
    }

    #[test]
    fn wrong_secret_fails() {
        for query in [
            "secret=s3cr3t",
            "secret=s3cr3t%2F%2B%26x",
            "secret=",
            "secret",
        ] {
            assert_eq!(
                verify(Some(query), &secrets()),
                Err(VerifyError::BadSignature),
                "{query}"
            );
        }
    }

    #[test]
    fn a_query_presents_a_secret_only_with_a_secret_parameter() {
        assert!(presents_secret(Some("a=1&secret=x")));
        assert!(presents_secret(Some("%73ecret=x")));
        assert!(presents_secret(Some("secret=")));
        assert!(!presents_secret(Some("a=1&secrets=x")));
        assert!(!presents_secret(Some("")));
        assert!(!presents_secret(None));
    }

    #[test]
    fn missing_secret_fails() {
        for query in [None, Some(""), Some("a=1&secrets=s3cr3t")] {
            assert_eq!(
                verify(query, &secrets()),
                Err(VerifyError::MissingHeader(PARAM))
            );
        }
    }

    #[test]
    fn repeated_secret_is_malformed() {
        let query = Some("secret=wrong&secret=old+secret");
        assert_eq!(
            verify(query, &secrets()),
            Err(VerifyError::MalformedHeader(PARAM))
        );
    }

    #[test]
    fn no_configured_secrets_is_no_keys() {
        assert_eq!(verify(Some("secret=x"), &[]), Err(VerifyError::NoKeys));
    }

    #[test]
    fn empty_configured_secret_never_matches() {
        let empty = [HmacKey::from_utf8("")];
        assert_eq!(
            verify(Some("secret="), &empty),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn redact_query_hides_only_the_secret_value() {
        let cases = [
            ("a=%41+b&secret=s3cr3t%2F&c", "a=%41+b&secret=REDACTED&c"),
            ("secret=x&secret=y", "secret=REDACTED&secret=REDACTED"),
            ("%73ecret=x&secrets=y", "%73ecret=REDACTED&secrets=y"),
            ("secret", "secret"),
            ("a=1&&b=2", "a=1&&b=2"),
            ("", ""),
        ];
        for (query, expected) in cases {
            assert_eq!(redact_query(query), expected, "{query}");
        }
    }

    #[test]
    fn redacted_query_no_longer_verifies() {
        let query = "a=1&secret=s3cr3t%2F%2B%26";
        let redacted = redact_query(query);
        assert!(!redacted.contains("s3cr3t"));
        assert_eq!(
            verify(Some(&redacted), &secrets()),
            Err(VerifyError::BadSignature)
        );
    }
}
