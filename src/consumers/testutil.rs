//! Test helpers: events built from the fixtures and by hand.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::event::{Event, Micros, Seq, Source, Verification};
use crate::fixture::Fixture;

/// Hours in microseconds.
pub const HOUR: i64 = 3_600_000_000;

/// The record a fixture would become at `seq`, received at `at`.
pub fn from_fixture(name: &str, seq: u64, at: i64) -> Event {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let f = Fixture::load(&path).unwrap();
    let source = match f.provider.as_str() {
        "openphone" => Source::OpenPhone,
        "twilio" => Source::Twilio,
        _ => Source::SalesMsg,
    };
    Event {
        seq: Seq(seq),
        received_at: Micros(at),
        source,
        route: f.path.clone(),
        headers: f.headers.into_iter().collect(),
        body: f.body.into_bytes(),
        verification: Verification::Internal,
    }
}

/// A record with an explicit source, route and body.
pub fn event(seq: u64, at: i64, source: Source, route: &str, body: &str) -> Event {
    Event {
        seq: Seq(seq),
        received_at: Micros(at),
        source,
        route: route.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
        verification: Verification::Internal,
    }
}

/// A Quo legacy inbound message from `from` saying `text`.
pub fn quo_inbound(
    seq: u64,
    at: i64,
    envelope: &str,
    message: &str,
    from: &str,
    text: &str,
) -> Event {
    let body = serde_json::json!({
        "id": envelope, "object": "event", "apiVersion": "v4", "createdAt": "2026-04-14T16:02:11.557Z",
        "type": "message.received",
        "data": {"object": {"id": message, "object": "message", "from": from, "to": ["+15555550100"],
            "direction": "incoming", "text": text, "status": "received",
            "createdAt": "2026-04-14T16:02:11.420Z", "phoneNumberId": "PNtoDbDhuz"}}
    });
    event(
        seq,
        at,
        Source::OpenPhone,
        "/webhook/openphone",
        &body.to_string(),
    )
}

/// Every entry of every tree of `consumer` in `store`, for whole-state comparisons.
pub fn dump(
    store: &dyn crate::state::StateStore,
    consumer: &str,
    trees: &[&str],
) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for name in trees {
        let tree = store.tree(consumer, name).unwrap();
        crate::state::for_each(tree.as_ref(), &[], |k, v| {
            out.push(((*name).to_owned(), k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
    }
    out
}
