//! Quo (OpenPhone) legacy webhooks: the `openphone-signature` header.
//!
//! The header is `hmac;1;<timestamp>;<base64 HMAC-SHA256>`, possibly several such entries
//! joined by `,`. The MAC covers the timestamp text exactly as sent, `.`, and the raw body
//! bytes; the key is the base64-decoded signing secret (see [`HmacKey::from_quo_secret`]).
//! Quo sends milliseconds, but seconds are accepted too: the unit is inferred from the digit
//! count. Entries of another scheme or version are skipped (the `,` separator is reserved for
//! future ones); a `hmac;1` entry that does not parse rejects the whole header.

use super::{
    check_window, ct_eq, decode_mac, first_match, hmac_sha256, parse_digits, HmacKey, VerifyError,
    B64,
};
use base64::Engine as _;

const HEADER: &str = "openphone-signature";

/// Timestamps with at least this many digits are milliseconds. Twelve digits is 1973 in
/// milliseconds and the year 33658 in seconds, so real values of the two units never collide.
const MS_DIGITS: usize = 12;

/// Verifies an `openphone-signature` header value against `body`, accepting it if any fresh
/// entry matches any key. Returns the index of the first matching key.
pub fn verify(
    header: &str,
    body: &[u8],
    keys: &[HmacKey],
    now_unix_secs: i64,
    tolerance_secs: u64,
) -> Result<usize, VerifyError> {
    if keys.is_empty() {
        return Err(VerifyError::NoKeys);
    }
    let header = header.trim();
    if header.is_empty() {
        return Err(VerifyError::MissingHeader(HEADER));
    }
    let malformed = VerifyError::MalformedHeader(HEADER);

    let mut fresh = Vec::new();
    let mut window_error = None;
    for entry in header.split(',') {
        let fields: Vec<&str> = entry.trim().split(';').collect();
        let [scheme, version, ts, sig] = fields[..] else {
            return Err(malformed);
        };
        if scheme != "hmac" || version != "1" {
            continue;
        }
        let ts_ms = timestamp_ms(ts).ok_or(malformed.clone())?;
        let sig = decode_mac::<32>(sig).ok_or(malformed.clone())?;
        // A stale entry next to a fresh one is not an error: only fresh entries are candidates.
        match check_window(ts_ms, now_unix_secs, tolerance_secs) {
            Ok(()) => fresh.push((ts, sig)),
            Err(e) => {
                window_error.get_or_insert(e);
            }
        }
    }
    if fresh.is_empty() {
        return Err(window_error.unwrap_or(malformed));
    }

    first_match(keys.len(), |i| {
        let key = &keys[i];
        let mut hit = false;
        for (ts, sig) in &fresh {
            // `|=`, not `||`: every entry costs the same whatever the earlier ones gave.
            hit |= ct_eq(&hmac_sha256(key, &[ts.as_bytes(), b".", body]), sig);
        }
        hit & !key.is_empty()
    })
    .ok_or(VerifyError::BadSignature)
}

/// Builds the full header value `hmac;1;<timestamp>;<base64>` for `body` at `timestamp`
/// (milliseconds or seconds, signed as given).
pub fn sign(key: &HmacKey, timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(key, &[timestamp.as_bytes(), b".", body]);
    format!("hmac;1;{timestamp};{}", B64.encode(mac))
}

fn timestamp_ms(ts: &str) -> Option<u64> {
    let value = parse_digits(ts)?;
    if ts.len() >= MS_DIGITS {
        Some(value)
    } else {
        value.checked_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";
    const TS: &str = "1639710054089";
    const NOW: i64 = 1_639_710_054;
    const BODY: &[u8] = br#"{"id":"EVtest","type":"message.received"}"#;
    const SIG: &str = "NWPaEferFtax3IayP/M+5uyhYu/Z+23k9FEsDAL4Mm0=";
    const TOLERANCE: u64 = 300;

    fn key() -> HmacKey {
        HmacKey::from_quo_secret(SECRET).unwrap()
    }

    fn header(ts: &str, sig: &str) -> String {
        format!("hmac;1;{ts};{sig}")
    }

    fn flipped(bytes: &[u8], i: usize) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[i] ^= 0x01;
        out
    }

    #[test]
    fn documented_vector_verifies() {
        assert_eq!(
            verify(&header(TS, SIG), BODY, &[key()], NOW, TOLERANCE),
            Ok(0)
        );
    }

    #[test]
    fn sign_reproduces_the_documented_vector() {
        assert_eq!(sign(&key(), TS, BODY), header(TS, SIG));
    }

    #[test]
    fn timestamp_in_seconds_verifies() {
        let signed = sign(&key(), "1639710054", BODY);
        assert_ne!(
            signed,
            header("1639710054", SIG),
            "the timestamp text is signed"
        );
        assert_eq!(verify(&signed, BODY, &[key()], NOW, TOLERANCE), Ok(0));
    }

    #[test]
    fn timestamps_just_inside_the_window_pass_and_just_outside_fail() {
        let now = 1_700_000_000_i64;
        let t = TOLERANCE as i64;
        let cases = [
            // milliseconds
            ((now - t) * 1000, Ok(0)),
            ((now - t) * 1000 - 1, Err(VerifyError::StaleTimestamp)),
            ((now + t) * 1000, Ok(0)),
            ((now + t) * 1000 + 1, Err(VerifyError::FutureTimestamp)),
            // seconds
            (now - t, Ok(0)),
            (now - t - 1, Err(VerifyError::StaleTimestamp)),
            (now + t, Ok(0)),
            (now + t + 1, Err(VerifyError::FutureTimestamp)),
        ];
        for (ts, expected) in cases {
            let signed = sign(&key(), &ts.to_string(), BODY);
            assert_eq!(
                verify(&signed, BODY, &[key()], now, TOLERANCE),
                expected,
                "ts {ts}"
            );
        }
    }

    #[test]
    fn every_flipped_body_byte_fails() {
        for i in 0..BODY.len() {
            let body = flipped(BODY, i);
            let got = verify(&header(TS, SIG), &body, &[key()], NOW, TOLERANCE);
            assert_eq!(got, Err(VerifyError::BadSignature), "byte {i}");
        }
    }

    #[test]
    fn every_flipped_signature_byte_fails() {
        let raw = B64.decode(SIG).unwrap();
        for i in 0..raw.len() {
            let sig = B64.encode(flipped(&raw, i));
            let got = verify(&header(TS, &sig), BODY, &[key()], NOW, TOLERANCE);
            assert_eq!(got, Err(VerifyError::BadSignature), "byte {i}");
        }
        for i in 0..SIG.len() {
            let sig = String::from_utf8(flipped(SIG.as_bytes(), i)).unwrap();
            let got = verify(&header(TS, &sig), BODY, &[key()], NOW, TOLERANCE);
            assert!(got.is_err(), "char {i} of {sig}");
        }
    }

    #[test]
    fn every_flipped_timestamp_byte_fails() {
        // An unlimited window, so that it is the signature, not freshness, that fails.
        for i in 0..TS.len() {
            let ts = String::from_utf8(flipped(TS.as_bytes(), i)).unwrap();
            let got = verify(&header(&ts, SIG), BODY, &[key()], NOW, u64::MAX);
            assert_eq!(got, Err(VerifyError::BadSignature), "ts {ts}");
        }
    }

    #[test]
    fn every_flipped_key_byte_fails() {
        let raw = key().as_bytes().to_vec();
        for i in 0..raw.len() {
            let other = HmacKey::from_bytes(flipped(&raw, i));
            let got = verify(&header(TS, SIG), BODY, &[other], NOW, TOLERANCE);
            assert_eq!(got, Err(VerifyError::BadSignature), "byte {i}");
        }
    }

    #[test]
    fn unknown_key_fails_and_rotated_second_key_passes() {
        let old = HmacKey::from_bytes(b"some older secret".to_vec());
        let h = header(TS, SIG);
        assert_eq!(
            verify(&h, BODY, std::slice::from_ref(&old), NOW, TOLERANCE),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(verify(&h, BODY, &[old, key()], NOW, TOLERANCE), Ok(1));
        assert_eq!(
            verify(&h, BODY, &[], NOW, TOLERANCE),
            Err(VerifyError::NoKeys)
        );
    }

    #[test]
    fn empty_key_never_matches() {
        let empty = HmacKey::from_bytes(Vec::new());
        let h = sign(&empty, TS, BODY);
        assert_eq!(
            verify(&h, BODY, &[empty], NOW, TOLERANCE),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn any_matching_entry_among_several_passes() {
        let wrong = B64.encode([0u8; 32]);
        let h = format!("hmac;1;{TS};{wrong}, hmac;2;{TS};xyz,{}", header(TS, SIG));
        assert_eq!(verify(&h, BODY, &[key()], NOW, TOLERANCE), Ok(0));
        let stale_then_fresh = format!("{},{}", header("1", SIG), header(TS, SIG));
        assert_eq!(
            verify(&stale_then_fresh, BODY, &[key()], NOW, TOLERANCE),
            Ok(0)
        );
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let malformed = Err(VerifyError::MalformedHeader(HEADER));
        for h in [
            format!("hmac;1;{TS}"),
            format!("hmac;1;{TS};{SIG};extra"),
            format!("hmac;2;{TS};{SIG}"),
            format!("HMAC;1;{TS};{SIG}"),
            header("-1639710054089", SIG),
            header("1639710054089 ", SIG),
            header("", SIG),
            header(TS, "not base64"),
            header(TS, &B64.encode([0u8; 20])),
        ] {
            assert_eq!(verify(&h, BODY, &[key()], NOW, TOLERANCE), malformed, "{h}");
        }
        assert_eq!(
            verify("  ", BODY, &[key()], NOW, TOLERANCE),
            Err(VerifyError::MissingHeader(HEADER))
        );
    }

    proptest! {
        #[test]
        fn signed_requests_verify_and_other_keys_fail(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            raw_key in proptest::collection::vec(any::<u8>(), 1..80),
            now in 1_000_000_000i64..4_000_000_000,
            offset in -300i64..=300,
            millis in any::<bool>(),
        ) {
            let ts = if millis { (now + offset) * 1000 } else { now + offset };
            let key = HmacKey::from_bytes(raw_key.clone());
            let signed = sign(&key, &ts.to_string(), &body);
            prop_assert_eq!(verify(&signed, &body, &[key], now, 300), Ok(0));
            let other = HmacKey::from_bytes(flipped(&raw_key, 0));
            prop_assert_eq!(verify(&signed, &body, &[other], now, 300), Err(VerifyError::BadSignature));
        }
    }
}
