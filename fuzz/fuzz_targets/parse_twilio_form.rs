//! Twilio form (and JSON) bodies through `hooklog::parse::parse`: input = the body bytes,
//! parsed on every Twilio callback route and as a backfilled REST resource.
#![no_main]

use hooklog::event::{Event, Micros, Seq, Source, Verification};
use libfuzzer_sys::fuzz_target;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn event(source: Source, route: &str, headers: &[(&str, &str)], body: &[u8]) -> Event {
    Event {
        seq: Seq(1),
        received_at: Micros(1_776_182_531_600_000),
        source,
        route: route.to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.to_vec(),
        verification: Verification::Internal,
    }
}

fuzz_target!(|data: &[u8]| {
    let token = (
        "i-twilio-idempotency-token",
        "3a450f79-96ff-e130-4092-67ce94393208",
    );
    let mut cases = Vec::new();
    for route in [
        "/sms",
        "/sms/status",
        "/voice/webhook",
        "/voice/status",
        "/voice/recording-complete",
        "/voice/transcription",
    ] {
        cases.push(event(Source::Twilio, route, &[FORM, token], data));
    }
    // No content type: the parser sniffs JSON from a leading `{`.
    cases.push(event(
        Source::Twilio,
        "/sms/status?bodySHA256=00",
        &[],
        data,
    ));
    cases.push(event(
        Source::BackfillTwilio,
        "/2010-04-01/Messages/SM1.json",
        &[],
        data,
    ));
    cases.push(event(
        Source::BackfillTwilio,
        "/2010-04-01/Accounts/AC1/Calls/CA1",
        &[],
        data,
    ));
    for e in &cases {
        let _ = hooklog::parse::parse(e);
    }
});
