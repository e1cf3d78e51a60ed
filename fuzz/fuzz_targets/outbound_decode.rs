//! The readers of hooklog's own records (the outbound path, operator stops, opt-out changes):
//! input = records separated by 0x1E (a byte JSON never holds unescaped), each a placement
//! byte (source and route), a verification byte, then the body. Each record goes through
//! `provenance::check`, `OutboundRecord::decode`, `controls::stops::forged` and the controls and
//! compliance body types. A record that decodes must sit where its kind is stored and
//! re-encode to a record that decodes to the same value; the records of one message then
//! fold into its state with `outbound::apply`, which must be deterministic and ignore a
//! record at or below the last one applied (message.rs invariants).
#![no_main]

use hooklog::consumers::compliance::OptOutChange;
use hooklog::consumers::controls::{stops, ControlRecord};
use hooklog::consumers::outbound::{apply, Change, Message, OutboundRecord};
use hooklog::event::{Event, Micros, Seq, Source, Verification};
use hooklog::provenance;
use libfuzzer_sys::fuzz_target;

/// Where hooklog stores its own records (and one webhook placement, which none may read as
/// its own).
const PLACEMENTS: [(Source, &str); 10] = [
    (Source::Outbound, provenance::REQUEST_ROUTE),
    (Source::Outbound, provenance::DECISION_ROUTE),
    (Source::Outbound, provenance::ATTEMPT_ROUTE),
    (Source::Outbound, provenance::RESULT_ROUTE),
    (Source::Internal, provenance::LINE_ROUTE),
    (Source::Internal, provenance::DISPATCH_ROUTE),
    (Source::Internal, provenance::OPTOUT_ROUTE),
    (Source::Internal, provenance::CONTROL_ROUTE),
    (Source::Outbound, provenance::LINE_ROUTE),
    (Source::Quo, provenance::REQUEST_ROUTE),
];

const VERIFICATIONS: [Verification; 7] = [
    Verification::Internal,
    Verification::AdminToken,
    Verification::AgentToken,
    Verification::QuoLegacy { key: 0 },
    Verification::QuoStandard { key: 1 },
    Verification::Twilio { token: 0, url: 1 },
    Verification::SalesMsgSecret { secret: 0 },
];

/// The fixtures' clock, in microseconds.
const AT: i64 = 1_776_182_531_600_000;

fn event(seq: u64, source: Source, route: &str, verification: Verification, body: &[u8]) -> Event {
    Event {
        seq: Seq(seq),
        received_at: Micros(AT + seq as i64),
        source,
        route: route.to_owned(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec(),
        verification,
    }
}

/// Folds `records` into the message the first request names, as the projection does.
fn fold(records: &[(u64, OutboundRecord)]) -> Option<Message> {
    let (first, request) = records.iter().find_map(|(seq, r)| match r {
        OutboundRecord::Request(q) => Some((*seq, q)),
        _ => None,
    })?;
    let mut msg = Message::requested(first, request);
    for (seq, record) in records {
        let change = match record {
            OutboundRecord::Decision(d) if d.id == request.id => Change::Decision(d),
            OutboundRecord::Attempt(a) if a.id == request.id => Change::Attempt(a),
            OutboundRecord::Result(r) if r.id == request.id => Change::Result(r),
            _ => continue,
        };
        let before = msg.clone();
        if !apply(&mut msg, *seq, change) {
            assert_eq!(msg, before, "apply said nothing changed");
        }
        // The same record again is at or below the last one applied.
        let after = msg.clone();
        assert!(
            !apply(&mut msg, *seq, change) && msg == after,
            "a record applied twice"
        );
    }
    Some(msg)
}

fuzz_target!(|data: &[u8]| {
    let mut decoded = Vec::new();
    for (i, chunk) in data.split(|&b| b == 0x1E).enumerate().take(64) {
        let [placement, verification, body @ ..] = chunk else {
            continue;
        };
        let (source, route) = PLACEMENTS[usize::from(*placement) % PLACEMENTS.len()];
        let verification = VERIFICATIONS[usize::from(*verification) % VERIFICATIONS.len()];
        let seq = i as u64 + 1;
        let ev = event(seq, source, route, verification, body);

        let _ = provenance::check(&ev);
        if route == provenance::CONTROL_ROUTE {
            let _ = stops::forged(&ev);
            let _ = serde_json::from_slice::<ControlRecord>(body);
        }
        if route == provenance::OPTOUT_ROUTE {
            let _ = serde_json::from_slice::<OptOutChange>(body);
        }
        let Some(Ok(record)) = OutboundRecord::decode(&ev) else {
            continue;
        };
        assert_eq!(record.placement(), (source, route));
        let again = record.to_verified_as(ev.received_at, verification);
        let again = event(seq, again.source(), route, verification, again.body());
        match OutboundRecord::decode(&again) {
            Some(Ok(r)) => assert_eq!(r, record, "a re-encoded record decodes to itself"),
            other => panic!("a re-encoded record does not decode: {other:?}"),
        }
        decoded.push((seq, record));
    }
    let first = fold(&decoded);
    assert_eq!(fold(&decoded), first, "the fold is deterministic");
});
