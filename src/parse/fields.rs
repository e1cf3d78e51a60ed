//! What the provider modules share to read a payload: fields by name across the shapes one
//! provider sends ([`Fields`]), times, ids and phone lists, directions and statuses, and the dedup
//! key parts (bounded and hashed when not plain, see [`super`]).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::model::{Data, Direction, Kind, ParseError, Parsed};
use crate::event::Event;
use crate::provider::Provider;

/// An event of a type nobody knows yet: kept, passed on, deduplicated by its bytes.
pub(super) fn unknown(event: &Event, provider: Option<Provider>, name: String) -> Parsed {
    Parsed {
        kind: Kind::Unknown(name),
        provider,
        occurred_at: None,
        dedup_keys: vec![body_key(event)],
        data: Data::Other,
    }
}

// ---------------------------------------------------------------------------------------------
// Dedup key helpers

/// `body:<source>:<hex sha256(route + "\n" + body)>`: identical bytes on the same route collide.
pub(super) fn body_key(event: &Event) -> String {
    let mut h = Sha256::new();
    h.update(event.route.as_bytes());
    h.update(b"\n");
    h.update(&event.body);
    format!(
        "body:{}:{}",
        event.source.as_str(),
        hex::encode(h.finalize())
    )
}

/// Longest id or status copied into a key as is.
pub(super) const MAX_KEY_PART: usize = 128;

/// A key component: the value itself when it is short and made of id characters, else `~` +
/// its hex SHA-256 (so no payload text can add `:` separators or bloat a key).
pub(super) fn part(value: &str) -> String {
    let plain = !value.is_empty()
        && value.len() <= MAX_KEY_PART
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'@' | b'-'));
    if plain {
        value.to_owned()
    } else {
        format!("~{}", hex::encode(Sha256::digest(value.as_bytes())))
    }
}

/// A status as a key component: lower-case, `-` when unknown.
pub(super) fn status_part(status: Option<&str>) -> String {
    match status {
        Some(s) if !s.is_empty() => part(&s.to_ascii_lowercase()),
        _ => "-".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Request helpers

/// The path part of a route (the query and a trailing `/` removed).
pub(super) fn route_path(route: &str) -> &str {
    let path = route.split(['?', '#']).next().unwrap_or_default();
    match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    }
}

/// A header value by name, case-insensitively (the edge stores lower-case names, records
/// appended through the admin API may not).
pub(super) fn header<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The body as a JSON object.
pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError::NotAnObject),
        Err(e) => Err(ParseError::NotJson(e.to_string())),
    }
}

/// A provider timestamp: RFC 3339 (Quo, SalesMsg), RFC 2822 (Twilio), or a zone-less
/// `YYYY-MM-DD HH:MM:SS[.f]` read as UTC (Laravel-style). Anything else is `None`.
pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// A JSON number or numeric string as whole seconds (fractions rounded).
pub(super) fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(f64_to_i64)),
        Value::String(s) => str_i64(s),
        _ => None,
    }
}

pub(super) fn str_i64(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().and_then(f64_to_i64))
}

pub(super) fn f64_to_i64(f: f64) -> Option<i64> {
    // Bounds check first: `as` saturates, but a duration of 1e300 s is nonsense, not i64::MAX.
    (f.is_finite() && f.abs() < 9.0e15).then(|| f.round() as i64)
}

/// An id: a non-empty string, or an integer (SalesMsg ids are numbers).
pub(super) fn value_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Recipients: an array of strings, or one string, comma-joined for groups.
pub(super) fn recipients(v: Option<&Value>) -> Vec<String> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match v {
        Some(Value::String(s)) => split(s),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .flat_map(split)
            .collect(),
        _ => Vec::new(),
    }
}

/// Media URLs: an array of strings or of objects with `url`.
pub(super) fn media_urls(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("url").and_then(Value::as_str),
            _ => None,
        })
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Field lookup over the resource and (Quo `2026-03-30`) its context: the first non-null value
/// wins. Ids of the resource itself are read from the resource only ([`Fields::own_id`]).
#[derive(Clone, Copy)]
pub(super) struct Fields<'a> {
    /// Where the resource sits in the payload, for error messages (`data.object`, …).
    pub(super) path: &'a str,
    pub(super) resource: Option<&'a Map<String, Value>>,
    pub(super) context: Option<&'a Map<String, Value>>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(path: &'a str, resource: Option<&'a Map<String, Value>>) -> Self {
        Fields {
            path,
            resource,
            context: None,
        }
    }

    pub(super) fn with_context(mut self, context: Option<&'a Map<String, Value>>) -> Self {
        self.context = context;
        self
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        [self.resource, self.context]
            .into_iter()
            .flatten()
            .filter_map(|m| m.get(key))
            .find(|v| !v.is_null())
    }

    /// A string field (possibly empty).
    pub(super) fn str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }

    pub(super) fn string(&self, key: &str) -> Option<String> {
        self.str(key).map(str::to_owned)
    }

    /// A non-empty string or integer, as text.
    pub(super) fn id(&self, key: &str) -> Option<String> {
        self.get(key).and_then(value_id)
    }

    pub(super) fn i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(value_i64)
    }

    pub(super) fn f64(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(super) fn time(&self, key: &str) -> Option<DateTime<Utc>> {
        self.str(key).and_then(parse_time)
    }

    /// An array of strings (non-strings skipped).
    pub(super) fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The resource's own id (never taken from the context).
    pub(super) fn own_id(&self, key: &str) -> Option<String> {
        self.resource.and_then(|m| m.get(key)).and_then(value_id)
    }

    /// The resource's own id, or a [`ParseError::MissingField`] naming it.
    pub(super) fn require_id(&self, key: &str) -> Result<String, ParseError> {
        self.own_id(key)
            .ok_or_else(|| ParseError::MissingField(format!("{}.{key}", self.path)))
    }
}

/// Quo / SalesMsg direction words.
pub(super) fn direction_word(s: &str) -> Option<Direction> {
    match s.trim().to_ascii_lowercase().as_str() {
        "incoming" | "inbound" => Some(Direction::Inbound),
        "outgoing" | "outbound" => Some(Direction::Outbound),
        other if other.starts_with("outbound") => Some(Direction::Outbound),
        _ => None,
    }
}

/// The kind of an outbound message status (Twilio's vocabulary, which Quo's REST statuses
/// share): delivered, sent, failed|undelivered, else the generic status.
pub(super) fn outbound_status_kind(status: Option<&str>) -> Kind {
    match status.map(str::to_ascii_lowercase).as_deref() {
        Some("delivered") => Kind::MessageDelivered,
        Some("sent") => Kind::MessageSent,
        Some("failed" | "undelivered") => Kind::MessageFailed,
        _ => Kind::MessageStatus,
    }
}
