//! SalesMsg `?secret=`: input = the raw query string (without `?`).
#![no_main]

use hooklog::signature::{salesmsg, HmacKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let secrets = [
        HmacKey::from_utf8("fx-salesmsg-64e4de133899add267a9de03"),
        HmacKey::from_bytes(Vec::new()),
    ];
    let verdict = salesmsg::verify(Some(&query), &secrets);
    let redacted = salesmsg::redact_query(&query);
    // The property behind "no secret reaches the log": what is stored never verifies.
    if verdict.is_ok() {
        assert!(salesmsg::verify(Some(&redacted), &secrets).is_err());
    }
});
