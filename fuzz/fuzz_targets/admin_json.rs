//! The JSON bodies the admin listener deserialises (`src/admin/`): input = one selector byte
//! (which request type), then the body. Each type is read as its route reads it; a body that
//! reads must write back to JSON that reads to the same value (so what an operator or agent
//! sends is what status, records and logs show), and then goes through the same pure checks
//! the route makes before it touches the log: source names, body encodings, RFC 3339 times,
//! E.164 numbers, provider names.
#![no_main]

use hooklog::admin::api::{
    decode_body, AppendRequest, KillSwitchRequest, LineNote, OptOutRequest, PauseRequest,
    RedriveRequest, RewindRequest,
};
use hooklog::admin::outbound::SendRequest;
use hooklog::event::Source;
use hooklog::phone::normalize_e164;
use hooklog::provider::SendProvider;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The body as `T`, after checking that it writes back to JSON that reads to the same value.
fn read<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(body).ok()?;
    let json = serde_json::to_value(&value).expect("a request type serialises");
    let again: T = serde_json::from_value(json.clone()).expect("what was written reads back");
    assert_eq!(serde_json::to_value(&again).expect("serialises"), json);
    Some(value)
}

/// A number the API accepted normalises to itself (the suppression list is keyed by it).
fn number(raw: &str) {
    if let Some(n) = normalize_e164(raw) {
        assert_eq!(normalize_e164(&n).as_deref(), Some(n.as_str()), "{raw:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 8 {
        0 => {
            if let Some(req) = read::<AppendRequest>(body) {
                let _ = req.source.parse::<Source>();
                let _ = decode_body(&req.body, req.body_encoding.as_deref());
            }
        }
        1 => {
            if let Some(req) = read::<RewindRequest>(body) {
                if let Some(since) = req.since.as_deref() {
                    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(since) {
                        let _ = at.timestamp_micros();
                    }
                }
            }
        }
        2 => {
            if let Some(req) = read::<KillSwitchRequest>(body) {
                let _ = req.reason.map(|r| r.trim().to_owned());
            }
        }
        3 => {
            let _ = read::<PauseRequest>(body);
        }
        4 => {
            let _ = read::<RedriveRequest>(body);
        }
        5 => {
            if let Some(req) = read::<OptOutRequest>(body) {
                number(&req.number);
            }
        }
        6 => {
            let _ = read::<LineNote>(body);
        }
        _ => {
            if let Some(req) = read::<SendRequest>(body) {
                if let Some(p) = req.provider.as_deref() {
                    let _ = p.trim().parse::<SendProvider>();
                }
                let _ = req.content.map(|c| c.chars().count());
                for n in [req.from, req.to].into_iter().flatten() {
                    number(n.trim());
                }
            }
        }
    }
});
