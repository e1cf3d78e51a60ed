//! The inbound opt-out classifier: input = Twilio's `OptOutType` line (empty = none), `\n`, the
//! message body (lossy UTF-8). Besides "no panic": the normalised form is a fixed point of
//! `normalize` (its documented idempotence: the stored evidence and the keyword match rely on
//! it), Twilio's `OptOutType=STOP` always wins (rule 1), and every verdict serialises (the
//! gate stores it as evidence).
#![no_main]

use hooklog::consumers::compliance::classifier::{classify, normalize, Confidence, Intent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (kind, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let kind = String::from_utf8_lossy(kind);
    let text = String::from_utf8_lossy(body);
    let opt_out_type = (!kind.is_empty()).then_some(kind.as_ref());

    let intent = classify(&text, opt_out_type);
    serde_json::to_string(&intent).expect("a verdict serialises");
    if let Intent::OptIn { keyword } = intent {
        assert!(["start", "unstop", "yes"].contains(&keyword), "{keyword}");
    }
    assert_eq!(classify(&text, opt_out_type), intent, "classify is pure");

    let once = normalize(&text);
    assert_eq!(
        normalize(&once),
        once,
        "normalize is idempotent on {text:?}"
    );

    assert_eq!(
        classify(&text, Some("STOP")),
        Intent::OptOut {
            confidence: Confidence::Keyword,
            reason: "opt_out_type:stop",
        }
    );
});
