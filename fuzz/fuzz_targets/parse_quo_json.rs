//! Quo (and SalesMsg) JSON payloads through `hooklog::parse::parse`: input = the body bytes,
//! parsed as a legacy and a Standard Webhooks delivery, as each backfill route and as SalesMsg.
#![no_main]

use hooklog::event::{Event, Micros, Seq, Source, Verification};
use libfuzzer_sys::fuzz_target;

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
    let json = ("content-type", "application/json");
    let cases = [
        event(Source::Quo, "/webhook/openphone", &[json], data),
        event(
            Source::Quo,
            "/webhook/quo",
            &[
                json,
                ("webhook-id", "msg_fuzz"),
                ("webhook-timestamp", "1776266432"),
            ],
            data,
        ),
        event(Source::BackfillQuo, "/v1/messages/AC1", &[], data),
        event(Source::BackfillQuo, "/v1/calls/AC1?x=1", &[], data),
        event(
            Source::BackfillQuo,
            "/v1/call-summaries/AC1",
            &[],
            data,
        ),
        event(Source::BackfillQuo, "/v1/call-transcripts", &[], data),
        event(
            Source::SalesMsg,
            "/webhook/salesmsg?secret=REDACTED",
            &[json],
            data,
        ),
    ];
    for e in &cases {
        let _ = hooklog::parse::parse(e);
    }
});
