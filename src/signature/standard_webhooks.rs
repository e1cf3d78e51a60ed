//! Standard Webhooks (Svix-style) signatures, used by Quo's `2026-03-30` webhooks.
//!
//! Three headers: `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
//! space-separated list of `<version>,<base64>` entries. A `v1` entry is HMAC-SHA256 over
//! `{id}.{timestamp}.{raw body}`, keyed by the base64-decoded `whsec_` secret. Entries of
//! other versions are ignored so that new versions can be rolled out alongside `v1`; a `v1`
//! entry that is not a base64 SHA-256 digest rejects the header.

use super::{
    check_window, ct_eq, decode_mac, first_match, hmac_sha256, parse_digits, HmacKey, VerifyError,
    B64,
};
use base64::Engine as _;

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

/// Verifies the three Standard Webhooks headers against `body`, accepting the request if any
/// `v1` entry matches any key. Returns the index of the first matching key.
pub fn verify(
    webhook_id: &str,
    webhook_timestamp: &str,
    webhook_signature: &str,
    body: &[u8],
    keys: &[HmacKey],
    now_unix_secs: i64,
    tolerance_secs: u64,
) -> Result<usize, VerifyError> {
    if keys.is_empty() {
        return Err(VerifyError::NoKeys);
    }
    for (value, name) in [
        (webhook_id, ID),
        (webhook_timestamp, TIMESTAMP),
        (webhook_signature, SIGNATURE),
    ] {
        if value.is_empty() {
            return Err(VerifyError::MissingHeader(name));
        }
    }
    let ts_ms = parse_digits(webhook_timestamp)
        .and_then(|secs| secs.checked_mul(1000))
        .ok_or(VerifyError::MalformedHeader(TIMESTAMP))?;

    let mut signatures = Vec::new();
    for entry in webhook_signature.split(' ').filter(|e| !e.is_empty()) {
        let Some(("v1", sig)) = entry.split_once(',') else {
            continue;
        };
        signatures.push(decode_mac::<32>(sig).ok_or(VerifyError::MalformedHeader(SIGNATURE))?);
    }
    if signatures.is_empty() {
        return Err(VerifyError::MalformedHeader(SIGNATURE));
    }
    check_window(ts_ms, now_unix_secs, tolerance_secs)?;

    first_match(keys.len(), |i| {
        let key = &keys[i];
        let mac = hmac_sha256(
            key,
            &[
                webhook_id.as_bytes(),
                b".",
                webhook_timestamp.as_bytes(),
                b".",
                body,
            ],
        );
        let mut hit = false;
        for sig in &signatures {
            // `|=`, not `||`: every entry costs the same whatever the earlier ones gave.
            hit |= ct_eq(&mac, sig);
        }
        hit & !key.is_empty()
    })
    .ok_or(VerifyError::BadSignature)
}

/// Builds one `webhook-signature` entry, `v1,<base64>`.
pub fn sign(key: &HmacKey, webhook_id: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(
        key,
        &[
            webhook_id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            body,
        ],
    );
    format!("v1,{}", B64.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";
    const MSG_ID: &str = "msg_test123";
    const TS: &str = "1760000000";
    const NOW: i64 = 1_760_000_000;
    const BODY: &[u8] = br#"{"id":"EVtest","type":"message.received"}"#;
    const SIG: &str = "v1,63iki0XShAi3qLwpd0SRKfz3t6/S5sMryRjvtp6Rh8s=";
    const TOLERANCE: u64 = 300;

    fn key() -> HmacKey {
        HmacKey::from_quo_secret(SECRET).unwrap()
    }

    fn check(
        id: &str,
        ts: &str,
        sig: &str,
        body: &[u8],
        keys: &[HmacKey],
    ) -> Result<usize, VerifyError> {
        verify(id, ts, sig, body, keys, NOW, TOLERANCE)
    }

    fn flipped(bytes: &[u8], i: usize) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[i] ^= 0x01;
        out
    }

    fn flipped_str(s: &str, i: usize) -> String {
        String::from_utf8(flipped(s.as_bytes(), i)).unwrap()
    }

    #[test]
    fn documented_vector_verifies() {
        assert_eq!(check(MSG_ID, TS, SIG, BODY, &[key()]), Ok(0));
    }

    #[test]
    fn sign_reproduces_the_documented_vector() {
        assert_eq!(sign(&key(), MSG_ID, TS, BODY), SIG);
    }

    #[test]
    fn timestamps_just_inside_the_window_pass_and_just_outside_fail() {
        let t = TOLERANCE as i64;
        let cases = [
            (NOW - t, Ok(0)),
            (NOW - t - 1, Err(VerifyError::StaleTimestamp)),
            (NOW + t, Ok(0)),
            (NOW + t + 1, Err(VerifyError::FutureTimestamp)),
        ];
        for (ts, expected) in cases {
            let ts = ts.to_string();
            let sig = sign(&key(), MSG_ID, &ts, BODY);
            assert_eq!(
                check(MSG_ID, &ts, &sig, BODY, &[key()]),
                expected,
                "ts {ts}"
            );
        }
    }

    #[test]
    fn every_flipped_body_byte_fails() {
        for i in 0..BODY.len() {
            let got = check(MSG_ID, TS, SIG, &flipped(BODY, i), &[key()]);
            assert_eq!(got, Err(VerifyError::BadSignature), "byte {i}");
        }
    }

    #[test]
    fn every_flipped_webhook_id_byte_fails() {
        for i in 0..MSG_ID.len() {
            let got = check(&flipped_str(MSG_ID, i), TS, SIG, BODY, &[key()]);
            assert_eq!(got, Err(VerifyError::BadSignature), "byte {i}");
        }
    }

    #[test]
    fn every_flipped_timestamp_byte_fails() {
        // An unlimited window, so that it is the signature, not freshness, that fails.
        for i in 0..TS.len() {
            let ts = flipped_str(TS, i);
            let got = verify(MSG_ID, &ts, SIG, BODY, &[key()], NOW, u64::MAX);
            assert_eq!(got, Err(VerifyError::BadSignature), "ts {ts}");
        }
    }

    #[test]
    fn every_flipped_signature_byte_fails() {
        let raw = B64.decode(&SIG[3..]).unwrap();
        for i in 0..raw.len() {
            let sig = format!("v1,{}", B64.encode(flipped(&raw, i)));
            assert_eq!(
                check(MSG_ID, TS, &sig, BODY, &[key()]),
                Err(VerifyError::BadSignature)
            );
        }
        // Every character, including the `v1,` prefix: a flip there makes the entry unknown.
        for i in 0..SIG.len() {
            let sig = flipped_str(SIG, i);
            assert!(check(MSG_ID, TS, &sig, BODY, &[key()]).is_err(), "{sig}");
        }
    }

    #[test]
    fn every_flipped_key_byte_fails() {
        let raw = key().as_bytes().to_vec();
        for i in 0..raw.len() {
            let other = HmacKey::from_bytes(flipped(&raw, i));
            assert_eq!(
                check(MSG_ID, TS, SIG, BODY, &[other]),
                Err(VerifyError::BadSignature)
            );
        }
    }

    #[test]
    fn unknown_key_fails_and_rotated_second_key_passes() {
        let old = HmacKey::from_bytes(b"some older secret".to_vec());
        assert_eq!(
            check(MSG_ID, TS, SIG, BODY, std::slice::from_ref(&old)),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(check(MSG_ID, TS, SIG, BODY, &[old, key()]), Ok(1));
        assert_eq!(check(MSG_ID, TS, SIG, BODY, &[]), Err(VerifyError::NoKeys));
    }

    #[test]
    fn any_v1_entry_may_match_and_other_versions_are_ignored() {
        let wrong = format!("v1,{}", B64.encode([7u8; 32]));
        let sig = format!("v2,whatever {wrong}  {SIG}");
        assert_eq!(check(MSG_ID, TS, &sig, BODY, &[key()]), Ok(0));
        let only_v2 = format!("v2,{}", &SIG[3..]);
        assert_eq!(
            check(MSG_ID, TS, &only_v2, BODY, &[key()]),
            Err(VerifyError::MalformedHeader(SIGNATURE))
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_rejected() {
        assert_eq!(
            check("", TS, SIG, BODY, &[key()]),
            Err(VerifyError::MissingHeader(ID))
        );
        assert_eq!(
            check(MSG_ID, "", SIG, BODY, &[key()]),
            Err(VerifyError::MissingHeader(TIMESTAMP))
        );
        assert_eq!(
            check(MSG_ID, TS, "", BODY, &[key()]),
            Err(VerifyError::MissingHeader(SIGNATURE))
        );
        for ts in ["+1760000000", "1760000000.0", "99999999999999999999"] {
            assert_eq!(
                check(MSG_ID, ts, SIG, BODY, &[key()]),
                Err(VerifyError::MalformedHeader(TIMESTAMP)),
                "{ts}"
            );
        }
        assert_eq!(
            check(MSG_ID, TS, "v1,not-base64", BODY, &[key()]),
            Err(VerifyError::MalformedHeader(SIGNATURE))
        );
    }

    proptest! {
        #[test]
        fn signed_requests_verify_and_other_keys_fail(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            raw_key in proptest::collection::vec(any::<u8>(), 1..80),
            id in "[a-zA-Z0-9_]{1,40}",
            now in 0i64..4_000_000_000,
            offset in -300i64..=300,
        ) {
            let ts = (now + offset).max(0).to_string();
            let key = HmacKey::from_bytes(raw_key.clone());
            let sig = sign(&key, &id, &ts, &body);
            prop_assert_eq!(verify(&id, &ts, &sig, &body, &[key], now, 300), Ok(0));
            let other = HmacKey::from_bytes(flipped(&raw_key, 0));
            prop_assert_eq!(
                verify(&id, &ts, &sig, &body, &[other], now, 300),
                Err(VerifyError::BadSignature)
            );
        }
    }
}
