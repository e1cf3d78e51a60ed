//! Quo (OpenPhone): webhook envelopes (legacy `data.object`, `2026-03-30`
//! `data.resource`/`data.context`) and backfilled REST resources.

use serde_json::{Map, Value};

use super::fields::{
    body_key, direction_word, header, json_object, media_urls, outbound_status_kind, parse_time,
    part, recipients, route_path, status_part, value_id, Fields,
};
use super::model::{
    Call, CallSummary, CallTranscript, Contact, Data, DialogueLine, Direction, Kind, Message,
    ParseError, Parsed,
};
use crate::event::Event;
use crate::provider::Provider;

/// A Quo webhook delivery.
pub(super) fn webhook(event: &Event) -> Result<Parsed, ParseError> {
    let root = json_object(&event.body)?;
    let type_name = root
        .get("type")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ParseError::MissingField("type".to_owned()))?;
    let kind = webhook_kind(type_name);

    let data = root.get("data").and_then(Value::as_object);
    let legacy = data
        .and_then(|d| d.get("object"))
        .and_then(Value::as_object);
    let resource = object_at(data, "resource");
    let dated =
        resource.is_some() || root.get("apiVersion").and_then(Value::as_str) == Some("2026-03-30");
    let fields = match legacy {
        Some(object) => Fields::new("data.object", Some(object)),
        None if dated => {
            Fields::new("data.resource", resource).with_context(object_at(data, "context"))
        }
        // Neither shape: a known type without its resource fails on the id, named legacy-style.
        None => Fields::new("data.object", None),
    };

    let (data, resource_id) = typed(&kind, fields, None)?;

    let mut keys = Vec::new();
    if let Some(id) = root.get("id").and_then(value_id) {
        keys.push(format!("openphone:evt:{}", part(&id)));
    } else if let Some(delivery) = header(event, "webhook-id") {
        keys.push(format!("openphone:delivery:{}", part(delivery)));
    }
    if let Some(id) = resource_id.filter(|_| once_per_resource(&kind)) {
        keys.push(twin_key(&kind, &id));
    }
    if keys.is_empty() {
        keys.push(body_key(event));
    }

    Ok(Parsed {
        kind,
        provider: Some(Provider::Quo),
        occurred_at: root
            .get("createdAt")
            .and_then(Value::as_str)
            .and_then(parse_time),
        dedup_keys: keys,
        data,
    })
}

/// The REST resources a backfill route can name.
#[derive(Clone, Copy)]
enum Resource {
    Message,
    Call,
    Summary,
    Transcript,
}

/// A backfilled Quo REST resource (convention in the module header of `parse`).
pub(super) fn backfill(event: &Event) -> Result<Parsed, ParseError> {
    let path = route_path(&event.route);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (resource, route_id) = match segments.as_slice() {
        ["v1", collection, rest @ ..] if rest.len() <= 1 => {
            let resource = match *collection {
                "messages" => Resource::Message,
                "calls" => Resource::Call,
                "call-summaries" => Resource::Summary,
                "call-transcripts" => Resource::Transcript,
                _ => {
                    return Ok(super::fields::unknown(
                        event,
                        Some(Provider::Quo),
                        path.to_owned(),
                    ))
                }
            };
            (resource, rest.first().copied())
        }
        _ => {
            return Ok(super::fields::unknown(
                event,
                Some(Provider::Quo),
                path.to_owned(),
            ))
        }
    };

    let root = json_object(&event.body)?;
    let id_key = match resource {
        Resource::Message | Resource::Call => "id",
        Resource::Summary | Resource::Transcript => "callId",
    };
    // A single fetch answers `{"data": {…}}`; a list item is the resource itself.
    let object = match root.get("data").and_then(Value::as_object) {
        Some(inner) if !root.contains_key(id_key) => inner,
        _ => &root,
    };
    // The id may be given by the route only.
    let mut with_id;
    let object = match (object.get(id_key).and_then(value_id), route_id) {
        (None, Some(id)) => {
            with_id = object.clone();
            with_id.insert(id_key.to_owned(), Value::String(id.to_owned()));
            &with_id
        }
        _ => object,
    };
    let fields = Fields::new("resource", Some(object));

    let status = fields.str("status").map(str::to_ascii_lowercase);
    let kind = match resource {
        Resource::Message => {
            let direction = fields.str("direction").and_then(direction_word);
            if direction == Some(Direction::Inbound)
                || (direction.is_none() && status.as_deref() == Some("received"))
            {
                Kind::MessageReceived
            } else {
                outbound_status_kind(status.as_deref())
            }
        }
        Resource::Call => {
            if status.as_deref() == Some("completed") || fields.get("completedAt").is_some() {
                Kind::CallCompleted
            } else {
                Kind::CallStatus
            }
        }
        Resource::Summary => completed_or(status.as_deref(), Kind::CallSummaryCompleted, "summary"),
        Resource::Transcript => completed_or(
            status.as_deref(),
            Kind::CallTranscriptCompleted,
            "transcript",
        ),
    };
    let data_kind = match resource {
        // `typed` picks the Data variant from the kind; an unknown summary status still has a
        // summary body.
        Resource::Summary => Kind::CallSummaryCompleted,
        Resource::Transcript => Kind::CallTranscriptCompleted,
        _ => kind.clone(),
    };
    let default_direction = match kind {
        Kind::MessageReceived => Direction::Inbound,
        _ => Direction::Outbound,
    };
    let (data, resource_id) = typed(&data_kind, fields, Some(default_direction))?;
    let id = resource_id.unwrap_or_default();

    let key = if once_per_resource(&kind) {
        twin_key(&kind, &id)
    } else {
        format!(
            "openphone:{}:{}:{}",
            part(kind.as_str()),
            part(&id),
            status_part(status.as_deref())
        )
    };

    let occurred_at = fields.time("createdAt");
    Ok(Parsed {
        kind,
        provider: Some(Provider::Quo),
        occurred_at,
        dedup_keys: vec![key],
        data,
    })
}

/// `completed` (the only status the webhook fires on) → the webhook's kind; any other status
/// of a summary/transcript resource → `Unknown("call.<what>.<status>")`.
fn completed_or(status: Option<&str>, completed: Kind, what: &str) -> Kind {
    match status {
        Some("completed") => completed,
        Some(other) => Kind::Unknown(format!("call.{what}.{other}")),
        None => Kind::Unknown(format!("call.{what}.unknown")),
    }
}

/// The envelope `type` → kind; both documented spellings of summaries and transcripts.
fn webhook_kind(type_name: &str) -> Kind {
    match type_name {
        "message.received" => Kind::MessageReceived,
        "message.delivered" => Kind::MessageDelivered,
        "call.ringing" => Kind::CallRinging,
        "call.completed" => Kind::CallCompleted,
        "call.recording.completed" => Kind::CallRecordingCompleted,
        "call.summary.completed" | "callSummary" => Kind::CallSummaryCompleted,
        "call.transcript.completed" | "callTranscript" => Kind::CallTranscriptCompleted,
        "contact.updated" => Kind::ContactUpdated,
        "contact.deleted" => Kind::ContactDeleted,
        other => Kind::Unknown(other.to_owned()),
    }
}

/// Kinds that happen once per resource, so a webhook and a backfilled copy share
/// `openphone:<kind>:<resource id>`. `contact.updated` is not one: it fires on every change.
fn once_per_resource(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::MessageReceived
            | Kind::MessageDelivered
            | Kind::CallRinging
            | Kind::CallCompleted
            | Kind::CallRecordingCompleted
            | Kind::CallSummaryCompleted
            | Kind::CallTranscriptCompleted
            | Kind::ContactDeleted
    )
}

fn twin_key(kind: &Kind, resource_id: &str) -> String {
    format!("openphone:{}:{}", kind.as_str(), part(resource_id))
}

fn object_at<'a>(
    data: Option<&'a Map<String, Value>>,
    key: &str,
) -> Option<&'a Map<String, Value>> {
    data.and_then(|d| d.get(key)).and_then(Value::as_object)
}

/// The typed resource for a kind, and the resource id the twin key uses. Unknown kinds are
/// `Data::Other` with no id. `default_direction` is used when the payload has no direction
/// (`None`: derive it from the kind).
fn typed(
    kind: &Kind,
    f: Fields<'_>,
    default_direction: Option<Direction>,
) -> Result<(Data, Option<String>), ParseError> {
    Ok(match kind {
        Kind::MessageReceived
        | Kind::MessageDelivered
        | Kind::MessageSent
        | Kind::MessageFailed
        | Kind::MessageStatus => {
            let default = default_direction.unwrap_or(match kind {
                Kind::MessageReceived => Direction::Inbound,
                _ => Direction::Outbound,
            });
            let m = message(f, default)?;
            let id = m.id.clone();
            (Data::Message(m), Some(id))
        }
        Kind::CallRinging
        | Kind::CallCompleted
        | Kind::CallRecordingCompleted
        | Kind::CallStatus => {
            let c = call(f)?;
            let id = c.id.clone();
            (Data::Call(c), Some(id))
        }
        Kind::CallSummaryCompleted => {
            let s = CallSummary {
                call_id: f.require_id("callId")?,
                status: f.string("status"),
                summary: f.strings("summary"),
                next_steps: f.strings("nextSteps"),
            };
            let id = s.call_id.clone();
            (Data::CallSummary(s), Some(id))
        }
        Kind::CallTranscriptCompleted => {
            let t = transcript(f)?;
            let id = t.call_id.clone();
            (Data::CallTranscript(t), Some(id))
        }
        Kind::ContactUpdated | Kind::ContactDeleted => {
            let c = contact(f)?;
            let id = c.id.clone();
            (Data::Contact(c), Some(id))
        }
        Kind::RecordingCompleted | Kind::TranscriptionCompleted | Kind::Unknown(_) => {
            (Data::Other, None)
        }
    })
}

fn message(f: Fields<'_>, default_direction: Direction) -> Result<Message, ParseError> {
    let from = f
        .str("from")
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            // `senderIdentifier` (2026-03-30 context) is a user id on outgoing messages:
            // only a number can stand for the sender.
            f.str("senderIdentifier")
                .filter(|s| s.trim().starts_with('+'))
        })
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    Ok(Message {
        id: f.require_id("id")?,
        direction: f
            .str("direction")
            .and_then(direction_word)
            .unwrap_or(default_direction),
        from,
        to: recipients(f.get("to")),
        text: f
            .string("text")
            .or_else(|| f.string("body"))
            .or_else(|| f.string("content")),
        status: f.string("status"),
        line_id: f.id("phoneNumberId"),
        conversation_id: f.id("conversationId"),
        user_id: f.id("userId"),
        created_at: f.time("createdAt"),
        media: media_urls(f.get("media")),
        opt_out_type: None,
        error_code: None,
        messaging_service_sid: None,
        contact_ids: f.strings("contactIds"),
    })
}

fn call(f: Fields<'_>) -> Result<Call, ParseError> {
    let one = |key: &str| -> Option<String> {
        match f.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Array(items) => items.iter().find_map(Value::as_str).map(str::to_owned),
            _ => None,
        }
    };
    Ok(Call {
        id: f.require_id("id")?,
        direction: f
            .str("direction")
            .and_then(direction_word)
            .unwrap_or(Direction::Inbound),
        from: one("from"),
        to: one("to"),
        participants: f.strings("participants"),
        status: f.string("status"),
        duration_secs: f.i64("duration"),
        line_id: f.id("phoneNumberId"),
        user_id: f.id("userId"),
        conversation_id: f.id("conversationId"),
        created_at: f.time("createdAt"),
        answered_at: f.time("answeredAt"),
        completed_at: f.time("completedAt"),
        answered_by: f.id("answeredBy"),
        sequence_number: None,
        recording_url: media_urls(f.get("media")).into_iter().next(),
        voicemail_url: f
            .get("voicemail")
            .and_then(|v| v.get("url"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn transcript(f: Fields<'_>) -> Result<CallTranscript, ParseError> {
    let dialogue = match f.get("dialogue") {
        Some(Value::Array(lines)) => lines
            .iter()
            .filter_map(Value::as_object)
            .map(|line| {
                let l = Fields::new("dialogue", Some(line));
                DialogueLine {
                    content: l.string("content").unwrap_or_default(),
                    start: l.f64("start"),
                    end: l.f64("end"),
                    identifier: l.string("identifier"),
                    user_id: l.id("userId"),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(CallTranscript {
        call_id: f.require_id("callId")?,
        status: f.string("status"),
        duration_secs: f.i64("duration"),
        created_at: f.time("createdAt"),
        dialogue,
    })
}

fn contact(f: Fields<'_>) -> Result<Contact, ParseError> {
    let mut phone_numbers = Vec::new();
    let mut emails = Vec::new();
    if let Some(Value::Array(items)) = f.get("fields") {
        for item in items.iter().filter_map(Value::as_object) {
            let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default();
            let (kind, name) = (
                text("type").to_ascii_lowercase(),
                text("name").to_ascii_lowercase(),
            );
            let value = item.get("value");
            if kind == "phone-number"
                || kind == "phone"
                || (kind.is_empty() && name.contains("phone"))
            {
                phone_numbers.extend(values(value));
            } else if kind == "email" || (kind.is_empty() && name.contains("email")) {
                emails.extend(values(value));
            }
        }
    }
    phone_numbers.extend(values(f.get("phoneNumbers")));
    emails.extend(values(f.get("emails")));
    phone_numbers.dedup();
    emails.dedup();
    Ok(Contact {
        id: f.require_id("id")?,
        first_name: f.string("firstName"),
        last_name: f.string("lastName"),
        company: f.string("company"),
        role: f.string("role"),
        phone_numbers,
        emails,
        user_id: f.id("userId"),
        created_at: f.time("createdAt"),
        updated_at: f.time("updatedAt"),
    })
}

/// Strings out of a field value: a string, an array of strings, or of `{value}` objects.
fn values(v: Option<&Value>) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Object(o) => o
            .get("value")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_owned()),
        _ => None,
    };
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
        Some(other) => one(other).into_iter().collect(),
        None => Vec::new(),
    }
}
