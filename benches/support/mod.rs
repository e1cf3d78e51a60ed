//! What several benches build the same way.

/// A legacy (v4) Quo `message.received` envelope with event id `event_id` and message `text`,
/// as Quo sends it (fields and order from `fixtures/`).
pub fn quo_message_received(event_id: &str, text: &str) -> String {
    serde_json::json!({
        "id": event_id,
        "object": "event",
        "apiVersion": "v4",
        "createdAt": "2025-06-02T16:55:52.557Z",
        "type": "message.received",
        "data": {"object": {
            "id": "AC24a8b8321c4f4b2e9d1a7c3e5f6a8b9c",
            "object": "message",
            "from": "+15555550123",
            "to": ["+15555550100"],
            "direction": "incoming",
            "text": text,
            "status": "received",
            "createdAt": "2025-06-02T16:55:52.420Z",
            "userId": "USu5AsEHuQ",
            "phoneNumberId": "PNtoDbDhuz",
            "contactIds": ["CT8f2a7c1e9b"],
        }},
    })
    .to_string()
}
