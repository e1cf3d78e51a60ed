//! Quo legacy `openphone-signature`: input = header line, `\n`, body bytes.
#![no_main]

use hooklog::signature::{quo_legacy, HmacKey};
use libfuzzer_sys::fuzz_target;

/// Key A of `fixtures/hooklog.toml` and a `now` at its fixtures' timestamps.
const KEY_A: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";
const NOW: i64 = 1_776_182_531;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let header = String::from_utf8_lossy(header);
    let Ok(key) = HmacKey::from_quo_secret(KEY_A) else {
        return;
    };
    let empty = HmacKey::from_bytes(Vec::new());
    let keys = [key, empty];
    // The daemon's settings, then the extremes of the clock and the window.
    let _ = quo_legacy::verify(&header, body, &keys, NOW, 300);
    let _ = quo_legacy::verify(&header, body, &keys, i64::MIN, u64::MAX);
    let _ = quo_legacy::verify(&header, body, &keys, i64::MAX, 0);
    let _ = quo_legacy::verify(&header, body, &[], NOW, 300);
    // The key decoder sees configuration text, not requests, but is cheap to cover here.
    let _ = HmacKey::from_quo_secret(&header);
});
