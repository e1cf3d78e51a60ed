//! SalesMsg: `{"event"|"type": …, "data": {…}}`, parsed leniently.
//!
//! SalesMsg's payloads are not documented (fixtures/README.md: the fixture body is a plausible
//! invention). Assumed: snake_case fields in `data` (`id`, `direction`, `status`, `body`,
//! `from`, `to`, `conversation_id`, `user_id`, `created_at`, `media`, `contact.number`), and
//! event names `message.<what>`. Message events become a [`Message`] with whatever fields
//! exist (an absent id is an empty `id` and the body key); every other event is
//! `Unknown(<event>)`.

use serde_json::Value;

use super::fields::{
    body_key, direction_word, json_object, media_urls, outbound_status_kind, part, recipients,
    status_part, value_id, Fields,
};
use super::model::{Data, Direction, Kind, Message, ParseError, Parsed};
use crate::event::Event;
use crate::provider::Provider;

/// A SalesMsg webhook.
pub(super) fn webhook(event: &Event) -> Result<Parsed, ParseError> {
    let root = json_object(&event.body)?;
    let type_name = ["event", "type"]
        .iter()
        .find_map(|k| root.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ParseError::MissingField("event".to_owned()))?;
    let f = Fields::new("data", root.get("data").and_then(Value::as_object));
    let occurred_at = f.time("created_at").or_else(|| {
        root.get("triggered_at")
            .and_then(Value::as_str)
            .and_then(super::fields::parse_time)
    });

    let mut keys = Vec::new();
    if let Some(id) = root.get("id").and_then(value_id) {
        keys.push(format!("salesmsg:evt:{}", part(&id)));
    }

    let (kind, data) = match message_kind(type_name) {
        Some(kind) => {
            let message = message(f, &kind);
            if !message.id.is_empty() {
                keys.push(format!(
                    "salesmsg:{}:{}:{}",
                    part(type_name),
                    part(&message.id),
                    status_part(message.status.as_deref())
                ));
            }
            (kind, Data::Message(message))
        }
        None => (Kind::Unknown(type_name.to_owned()), Data::Other),
    };
    if keys.is_empty() {
        keys.push(body_key(event));
    }

    Ok(Parsed {
        kind,
        provider: Some(Provider::SalesMsg),
        occurred_at,
        dedup_keys: keys,
        data,
    })
}

/// `message.<what>` (or `message_<what>`) → a message kind; anything else → `None`.
fn message_kind(type_name: &str) -> Option<Kind> {
    let t = type_name.to_ascii_lowercase();
    let what = t
        .strip_prefix("message.")
        .or_else(|| t.strip_prefix("message_"))?;
    Some(match what {
        "received" | "inbound" | "incoming" => Kind::MessageReceived,
        "outbound" | "outgoing" => Kind::MessageSent,
        other => outbound_status_kind(Some(other)),
    })
}

fn message(f: Fields<'_>, kind: &Kind) -> Message {
    let direction = f
        .str("direction")
        .and_then(direction_word)
        .unwrap_or(match kind {
            Kind::MessageReceived => Direction::Inbound,
            _ => Direction::Outbound,
        });
    let contact_number = f
        .get("contact")
        .and_then(|c| c.get("number"))
        .and_then(Value::as_str);
    let from = f
        .str("from")
        .filter(|s| !s.trim().is_empty())
        .or(match direction {
            Direction::Inbound => contact_number,
            Direction::Outbound => None,
        })
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mut to = recipients(f.get("to"));
    if to.is_empty() && direction == Direction::Outbound {
        to.extend(contact_number.map(str::to_owned));
    }
    Message {
        id: f.id("id").unwrap_or_default(),
        direction,
        from,
        to,
        text: f
            .string("body")
            .or_else(|| f.string("text"))
            .or_else(|| f.string("message")),
        status: f.string("status"),
        line_id: None,
        conversation_id: f.id("conversation_id"),
        user_id: f.id("user_id"),
        created_at: f.time("created_at"),
        media: media_urls(f.get("media")),
        opt_out_type: None,
        error_code: f.id("error_code"),
        messaging_service_sid: None,
        contact_ids: f
            .get("contact")
            .and_then(|c| c.get("id"))
            .and_then(value_id)
            .into_iter()
            .collect(),
    }
}
