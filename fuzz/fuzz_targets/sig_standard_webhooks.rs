//! Standard Webhooks headers: input = `webhook-id` line, `webhook-timestamp` line,
//! `webhook-signature` line, body bytes.
#![no_main]

use hooklog::signature::{standard_webhooks, HmacKey};
use libfuzzer_sys::fuzz_target;

/// Key B of `fixtures/hooklog.toml` and a `now` at its fixtures' timestamps.
const KEY_B: &str = "whsec_vMhsnho1Vlhb5vA1kyzkYx3FrdCTCdw4PWH9WtZ7bDA=";
const NOW: i64 = 1_776_266_432;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let id = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let ts = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let sig = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let Ok(key) = HmacKey::from_quo_secret(KEY_B) else {
        return;
    };
    let keys = [HmacKey::from_bytes(Vec::new()), key];
    let _ = standard_webhooks::verify(&id, &ts, &sig, body, &keys, NOW, 300);
    let _ = standard_webhooks::verify(&id, &ts, &sig, body, &keys, i64::MIN, u64::MAX);
    let _ = standard_webhooks::verify(&id, &ts, &sig, body, &keys, i64::MAX, 0);
});
