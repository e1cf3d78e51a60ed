//! Typed provider events: [`parse`] turns a raw log record into a [`Parsed`] event for the
//! consumers (dedup, compliance, and later the Postgres sync and dispatch), and gives each
//! event its dedup keys.
//!
//! The function is pure (no I/O, no clock): a replay parses every record to the same value, so
//! every projection built on it is reproducible (docs/architecture.md#the-rules-the-design-keeps).
//!
//! # Errors versus unknown events
//!
//! An event type this module does not know is **not** an error: it becomes
//! [`Kind::Unknown`] carrying the provider's type name (or the route, for route-typed
//! providers), with [`Data::Other`], and is passed on like any other event. A provider adding
//! an event type must never stall a consumer. [`ParseError`] is only for records that cannot
//! be read at all: a JSON route whose body is not a JSON object, a Quo envelope without
//! `type`, a known event whose resource has no id, a Twilio callback without its SID. The
//! consumer driver dead-letters those (the record itself stays in the log: it was authentic).
//!
//! # Inputs
//!
//! - **Quo webhooks** (`Source::Quo`). Legacy envelopes carry the resource in
//!   `data.object` (API `v4` shape: `text`, `to` as an array; app `v2`/`v3` shape: `body`, `to`
//!   as a string, comma-joined for groups). `2026-03-30` envelopes carry `data.resource` and
//!   `data.context`: every field is looked up in the resource first, then in the context
//!   (ids only in the resource). That field set is UNCONFIRMED (docs/reference/quo.md#the-2026-03-30-envelope), so the
//!   assumptions are: the resource has the same field names as the legacy `v4` object
//!   (`id`, `from`, `to`, `text`, `direction`, `status`, `createdAt`, `callId`, …); the
//!   context may hold `phoneNumberId`, `userId`, `conversationId`, `contactIds` and
//!   `senderIdentifier`. `senderIdentifier` is used as the sender only when the resource has
//!   no `from` and it looks like a phone number (it is a user id `US…` on outgoing messages).
//!   Every optional field may be missing: it becomes `None`/empty, never an error. Both `type`
//!   spellings `call.summary.completed`/`callSummary` and
//!   `call.transcript.completed`/`callTranscript` give the same [`Kind`].
//! - **Twilio webhooks** (`Source::Twilio`). The route's path (query ignored) says what the
//!   callback is; the fields come from the form body or, with `content-type: application/json`
//!   (or no content type and a body starting with `{`), from the JSON object's scalar fields.
//! - **SalesMsg webhooks** (`Source::SalesMsg`). The payload is undocumented; parsed leniently
//!   as `{"event"|"type": …, "data": {…}}`: `message.*` events become a [`Message`] with
//!   whatever fields exist, anything else is `Unknown(type)`.
//! - **Backfill** (`Source::BackfillQuo`, `Source::BackfillTwilio`). **Convention** (the
//!   backfill command produces exactly this): the body is ONE REST resource as JSON, as the
//!   provider returned it in a list page or a single fetch, and the route names it:
//!
//!   | Route | Body |
//!   |---|---|
//!   | `/v1/messages/{id}` | a Quo message (an item of `GET /v1/messages`) |
//!   | `/v1/calls/{id}` | a Quo call (an item of `GET /v1/calls`) |
//!   | `/v1/call-summaries/{callId}` | a Quo call summary |
//!   | `/v1/call-transcripts/{callId}` | a Quo call transcript |
//!   | `/2010-04-01/Messages/{sid}` | a Twilio message (an item of `Messages.json`) |
//!   | `/2010-04-01/Calls/{sid}` | a Twilio call (an item of `Calls.json`) |
//!
//!   Tolerated as well: a Quo single-fetch wrapper `{"data": {…}}`, an id missing from the body
//!   but present in the route, and the full Twilio path
//!   `/2010-04-01/Accounts/{AC}/Messages/{sid}.json`. Any other backfill route is
//!   `Unknown(<path>)`.
//! - **`Outbound` / `Internal`** records are `Unknown("outbound")` / `Unknown("internal")`
//!   with no provider (`None`: hooklog itself) until later issues define them.
//!
//! # Dedup keys
//!
//! The dedup consumer marks a record duplicate when ANY of its keys was seen before (within its
//! window). So every event gets (a) keys a provider **retry** shares with its original and
//! (b) keys a **backfilled** copy shares with its webhook twin, and no two genuinely different
//! events share a key. [`Parsed::dedup_keys`] is never empty. The rules:
//!
//! - **Quo webhooks**: `openphone:evt:<envelope id>` (the envelope id is the same in every
//!   retry, in both schemes; when a body has none, `openphone:delivery:<webhook-id header>`
//!   instead); plus the twin key `openphone:<kind>:<resource id>` for kinds that happen once
//!   per resource: `message.received`, `message.delivered`, `call.ringing`, `call.completed`,
//!   `call.recording.completed`, `call.summary.completed`, `call.transcript.completed`,
//!   `contact.deleted` (the resource id is `callId` for summaries and transcripts). Not for
//!   `contact.updated`: a contact updated twice is two events, so only the envelope key.
//! - **Quo backfill**: only the twin key (a resource has no envelope) when the resource maps to
//!   a once-per-resource kind; otherwise `openphone:<kind>:<id>:<status>` (e.g. an outgoing
//!   message still `sent`), which no webhook produces but a second backfill of the same
//!   resource in the same state does.
//! - **Twilio**: `twilio:idem:<I-Twilio-Idempotency-Token>` when the header is present (a retry
//!   carries the original token); plus, per callback:
//!   messages `twilio:msg:<MessageSid>:<status>` (inbound: status `received`); calls
//!   `twilio:call:<CallSid>:<CallStatus>:<SequenceNumber or "-">` and, on `/voice/status` with
//!   a terminal status (`completed`, `busy`, `failed`, `no-answer`, `canceled`), the twin key
//!   `twilio:call:<CallSid>:<status>`; recordings `twilio:rec:<RecordingSid>:<RecordingStatus>`;
//!   transcriptions `twilio:tr:<TranscriptionSid>:<TranscriptionStatus>`.
//! - **Twilio backfill**: `twilio:msg:<sid>:<status>` / `twilio:call:<sid>:<status>`, the
//!   twins of the webhook keys above (an inbound message resource has status `received`).
//! - **SalesMsg**: `salesmsg:evt:<id>` when the envelope has a top-level `id`, and for
//!   message events `salesmsg:<event>:<data.id>:<data.status or "-">` when the message has an
//!   id (the event name and status are part of the key, so a message's `received` and a later
//!   status event do not collide, unlike a bare `salesmsg:<id>`); else the body key. Other
//!   events never get an id key: a contact updated twice must not collide.
//! - **Anything else** (unknown routes, `Outbound`, `Internal`, payloads without usable ids):
//!   `body:<source>:<hex SHA-256 of route + "\n" + body>`, so an identical retry collides.
//!
//! Statuses in keys are lower-case. Keys are deterministic and never contain the raw body: an
//! id or status is copied into a key only if it is 1–128 characters of `[A-Za-z0-9._+@-]`;
//! anything else (very long, empty, or containing `:` or spaces) is replaced by `~` + its hex
//! SHA-256, so a component can never forge the `:` structure of a key.

mod quo;
mod salesmsg;
mod twilio;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::{Event, Source};
use crate::provider::Provider;

/// A typed provider event, with its dedup keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parsed {
    /// What happened.
    pub kind: Kind,
    /// Who reported it; `None` for the records hooklog writes itself (`outbound`, `internal`).
    /// Serialised as its wire spelling, or `hooklog`.
    #[serde(serialize_with = "provider_or_hooklog")]
    pub provider: Option<Provider>,
    /// The provider's own time for the event when the payload has one: the Quo envelope's
    /// `createdAt`, a backfilled resource's creation time, Twilio's `Timestamp` on call status
    /// callbacks, SalesMsg's `created_at`/`triggered_at`; `None` otherwise (the consumer falls
    /// back to the record's `received_at`).
    pub occurred_at: Option<DateTime<Utc>>,
    /// Dedup keys (see the module header); never empty.
    pub dedup_keys: Vec<String>,
    /// The typed resource.
    pub data: Data,
}

impl Parsed {
    /// The provider's wire spelling (`openphone`, `twilio`, `salesmsg`), or `hooklog` for the
    /// records hooklog writes itself: what keys, metrics and JSON name.
    pub fn provider_name(&self) -> &'static str {
        self.provider.map_or("hooklog", Provider::as_str)
    }
}

fn provider_or_hooklog<S: Serializer>(p: &Option<Provider>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.map_or("hooklog", Provider::as_str))
}

/// What happened. Serialised as [`Kind::as_str`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An inbound message arrived.
    MessageReceived,
    /// An outbound message was delivered.
    MessageDelivered,
    /// An outbound message was handed to the carrier (`sent`).
    MessageSent,
    /// An outbound message failed (`failed`, `undelivered`).
    MessageFailed,
    /// Any other message status (`queued`, `sending`, `read`, …).
    MessageStatus,
    /// A call is ringing (Quo `call.ringing`, Twilio's inbound voice request).
    CallRinging,
    /// A call ended (completed, busy, failed, no answer, canceled).
    CallCompleted,
    /// A Quo call recording is ready.
    CallRecordingCompleted,
    /// Other call progress (Twilio `initiated`/`ringing`/`in-progress` status callbacks).
    CallStatus,
    /// A Quo AI call summary is ready.
    CallSummaryCompleted,
    /// A Quo call transcript is ready.
    CallTranscriptCompleted,
    /// A Quo contact was created or updated.
    ContactUpdated,
    /// A Quo contact was deleted.
    ContactDeleted,
    /// A Twilio recording status callback (the outcome is in [`Recording::status`]).
    RecordingCompleted,
    /// A Twilio transcription callback (the outcome is in [`Transcription::status`]).
    TranscriptionCompleted,
    /// A type this module does not know: the provider's type name, the route for
    /// route-typed providers, or `outbound`/`internal`.
    Unknown(String),
}

impl Kind {
    /// The canonical name (`message.received`, `call.summary.completed`, …); for
    /// [`Kind::Unknown`] the raw type.
    pub fn as_str(&self) -> &str {
        match self {
            Kind::MessageReceived => "message.received",
            Kind::MessageDelivered => "message.delivered",
            Kind::MessageSent => "message.sent",
            Kind::MessageFailed => "message.failed",
            Kind::MessageStatus => "message.status",
            Kind::CallRinging => "call.ringing",
            Kind::CallCompleted => "call.completed",
            Kind::CallRecordingCompleted => "call.recording.completed",
            Kind::CallStatus => "call.status",
            Kind::CallSummaryCompleted => "call.summary.completed",
            Kind::CallTranscriptCompleted => "call.transcript.completed",
            Kind::ContactUpdated => "contact.updated",
            Kind::ContactDeleted => "contact.deleted",
            Kind::RecordingCompleted => "recording.completed",
            Kind::TranscriptionCompleted => "transcription.completed",
            Kind::Unknown(name) => name,
        }
    }

    /// The kind with this canonical name; anything else is `Unknown(name)`. The inverse of
    /// [`Kind::as_str`] for every known kind (routing rules in the config use these names).
    pub fn from_name(name: &str) -> Kind {
        match name {
            "message.received" => Kind::MessageReceived,
            "message.delivered" => Kind::MessageDelivered,
            "message.sent" => Kind::MessageSent,
            "message.failed" => Kind::MessageFailed,
            "message.status" => Kind::MessageStatus,
            "call.ringing" => Kind::CallRinging,
            "call.completed" => Kind::CallCompleted,
            "call.recording.completed" => Kind::CallRecordingCompleted,
            "call.status" => Kind::CallStatus,
            "call.summary.completed" => Kind::CallSummaryCompleted,
            "call.transcript.completed" => Kind::CallTranscriptCompleted,
            "contact.updated" => Kind::ContactUpdated,
            "contact.deleted" => Kind::ContactDeleted,
            "recording.completed" => Kind::RecordingCompleted,
            "transcription.completed" => Kind::TranscriptionCompleted,
            other => Kind::Unknown(other.to_owned()),
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The typed resource of an event. Serialised with a `"type"` tag (`"message"`, `"call"`, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Data {
    /// A message (any provider).
    Message(Message),
    /// A call (Quo or Twilio).
    Call(Call),
    /// A Quo call summary.
    CallSummary(CallSummary),
    /// A Quo call transcript.
    CallTranscript(CallTranscript),
    /// A Quo contact.
    Contact(Contact),
    /// A Twilio recording.
    Recording(Recording),
    /// A Twilio transcription.
    Transcription(Transcription),
    /// Nothing typed (unknown kinds, hooklog's own records).
    Other,
}

/// Which way a message or call went, seen from our lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Towards us (Quo `incoming`, Twilio `inbound`).
    Inbound,
    /// From us (Quo `outgoing`, Twilio `outbound-api`/`outbound-reply`/`outbound-dial`).
    Outbound,
}

/// A message, inbound or outbound, as far as the payload tells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Quo `AC…`, Twilio `MessageSid` (`SM…`/`MM…`), SalesMsg's numeric id as text.
    pub id: String,
    /// Which way it went.
    pub direction: Direction,
    /// Sender (E.164 when the provider gives a number); empty when the payload names none.
    pub from: String,
    /// Recipients; a comma-joined group `to` (Quo app v2/v3) is split.
    pub to: Vec<String>,
    /// The text (Quo `text` or `body`, Twilio `Body`); `None` when absent.
    pub text: Option<String>,
    /// The provider's status as sent (`received`, `delivered`, `undelivered`, …).
    pub status: Option<String>,
    /// Quo `phoneNumberId` (`PN…`): the line.
    pub line_id: Option<String>,
    /// Quo `conversationId` (`CN…`), SalesMsg `conversation_id`.
    pub conversation_id: Option<String>,
    /// Quo `userId` (`US…`), SalesMsg `user_id`.
    pub user_id: Option<String>,
    /// When the provider created the message.
    pub created_at: Option<DateTime<Utc>>,
    /// Media URLs (Quo `media[].url`, Twilio `MediaUrl{N}`).
    pub media: Vec<String>,
    /// Twilio `OptOutType` (`STOP`, `START`, `HELP`), set only with Advanced Opt-Out.
    pub opt_out_type: Option<String>,
    /// Twilio `ErrorCode` / `error_code` (absent or `0` on success callbacks is kept as sent).
    pub error_code: Option<String>,
    /// Twilio `MessagingServiceSid` (`MG…`).
    pub messaging_service_sid: Option<String>,
    /// Quo `contactIds` (`CT…`).
    pub contact_ids: Vec<String>,
}

/// A call, as far as the payload tells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    /// Quo `AC…`, Twilio `CallSid` (`CA…`).
    pub id: String,
    /// Which way it went (`Inbound` when the payload does not say).
    pub direction: Direction,
    /// Caller (Twilio `From`, Quo app v2 `from`).
    pub from: Option<String>,
    /// Callee (Twilio `To`, Quo app v2 `to`).
    pub to: Option<String>,
    /// Quo v4 `participants`: the other parties' numbers.
    pub participants: Vec<String>,
    /// Provider status as sent (`ringing`, `completed`, `no-answer`, …).
    pub status: Option<String>,
    /// Duration in seconds (Quo `duration`, Twilio `CallDuration` / `duration`).
    pub duration_secs: Option<i64>,
    /// Quo `phoneNumberId`.
    pub line_id: Option<String>,
    /// Quo `userId`.
    pub user_id: Option<String>,
    /// Quo `conversationId`.
    pub conversation_id: Option<String>,
    /// Quo `createdAt`, Twilio resource `start_time` (else `date_created`).
    pub created_at: Option<DateTime<Utc>>,
    /// Quo `answeredAt` (null if missed).
    pub answered_at: Option<DateTime<Utc>>,
    /// Quo `completedAt`, Twilio `Timestamp` of a terminal status callback, resource `end_time`.
    pub completed_at: Option<DateTime<Utc>>,
    /// Quo v4 `answeredBy` (a user id).
    pub answered_by: Option<String>,
    /// Twilio `SequenceNumber` (orders status callbacks of one call).
    pub sequence_number: Option<u32>,
    /// Twilio `RecordingUrl`, Quo app v2 `media[0].url`.
    pub recording_url: Option<String>,
    /// Quo app v2 `voicemail.url`.
    pub voicemail_url: Option<String>,
}

/// A Quo AI call summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallSummary {
    /// The call (`AC…`).
    pub call_id: String,
    /// `completed` (Quo also has `absent`, `in-progress`, `failed` on the REST resource).
    pub status: Option<String>,
    /// Summary sentences.
    pub summary: Vec<String>,
    /// Suggested next steps.
    pub next_steps: Vec<String>,
}

/// A Quo call transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallTranscript {
    /// The call (`AC…`).
    pub call_id: String,
    /// `completed` normally.
    pub status: Option<String>,
    /// Call duration in seconds.
    pub duration_secs: Option<i64>,
    /// When the transcript was created.
    pub created_at: Option<DateTime<Utc>>,
    /// The lines, in order.
    pub dialogue: Vec<DialogueLine>,
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DialogueLine {
    /// What was said.
    pub content: String,
    /// Start, seconds from the call start.
    pub start: Option<f64>,
    /// End, seconds from the call start.
    pub end: Option<f64>,
    /// The speaker's number.
    pub identifier: Option<String>,
    /// The speaker's user id when it is one of ours.
    pub user_id: Option<String>,
}

/// A Quo contact. The field set is UNCONFIRMED (docs/reference/quo.md#legacy-envelope): everything but the id is
/// optional.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    /// `CT…`.
    pub id: String,
    /// `firstName`.
    pub first_name: Option<String>,
    /// `lastName`.
    pub last_name: Option<String>,
    /// `company`.
    pub company: Option<String>,
    /// `role`.
    pub role: Option<String>,
    /// Values of `fields[]` entries of type `phone-number` (or named like "phone"), plus a
    /// `phoneNumbers` array if the payload has one.
    pub phone_numbers: Vec<String>,
    /// Values of `fields[]` entries of type `email`, plus an `emails` array if present.
    pub emails: Vec<String>,
    /// Owner (`userId`).
    pub user_id: Option<String>,
    /// `createdAt`.
    pub created_at: Option<DateTime<Utc>>,
    /// `updatedAt`.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A Twilio recording status callback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recording {
    /// `RecordingSid` (`RE…`).
    pub recording_sid: String,
    /// `CallSid`.
    pub call_sid: Option<String>,
    /// `RecordingStatus`: `completed`, `absent`, `failed`, `in-progress`.
    pub status: Option<String>,
    /// `RecordingUrl` (append `.mp3` or `.wav` to fetch).
    pub url: Option<String>,
    /// `RecordingDuration`.
    pub duration_secs: Option<i64>,
}

/// A Twilio transcription callback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcription {
    /// `TranscriptionSid` (`TR…`).
    pub transcription_sid: String,
    /// `RecordingSid`.
    pub recording_sid: Option<String>,
    /// `CallSid`.
    pub call_sid: Option<String>,
    /// `TranscriptionStatus`: `completed` or `failed`.
    pub status: Option<String>,
    /// `TranscriptionText`.
    pub text: Option<String>,
}

/// Why a record cannot be read at all. The consumer driver dead-letters such records; an
/// unknown event type is not an error (it is [`Kind::Unknown`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A JSON route (Quo, SalesMsg, backfill, Twilio with `application/json`) whose body is not
    /// valid JSON (or not UTF-8).
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON, but not an object.
    #[error("body is JSON but not an object")]
    NotAnObject,
    /// A field the event cannot be used without (Quo `type`, a resource id, Twilio
    /// `MessageSid`/`CallSid`/`RecordingSid`/`TranscriptionSid`, SalesMsg `event`) is absent,
    /// null, empty or not a string/number. The field is named by its path in the payload.
    #[error("missing required field `{0}`")]
    MissingField(String),
}

/// Parses one log record. Pure: the same record always gives the same result.
pub fn parse(event: &Event) -> Result<Parsed, ParseError> {
    match event.source {
        Source::Quo => quo::webhook(event),
        Source::BackfillQuo => quo::backfill(event),
        Source::Twilio => twilio::webhook(event),
        Source::BackfillTwilio => twilio::backfill(event),
        Source::SalesMsg => salesmsg::webhook(event),
        Source::Outbound => Ok(unknown(event, None, "outbound".to_owned())),
        Source::Internal => Ok(unknown(event, None, "internal".to_owned())),
    }
}

/// An event of a type nobody knows yet: kept, passed on, deduplicated by its bytes.
fn unknown(event: &Event, provider: Option<Provider>, name: String) -> Parsed {
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
fn body_key(event: &Event) -> String {
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
const MAX_KEY_PART: usize = 128;

/// A key component: the value itself when it is short and made of id characters, else `~` +
/// its hex SHA-256 (so no payload text can add `:` separators or bloat a key).
fn part(value: &str) -> String {
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
fn status_part(status: Option<&str>) -> String {
    match status {
        Some(s) if !s.is_empty() => part(&s.to_ascii_lowercase()),
        _ => "-".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Request helpers

/// The path part of a route (the query and a trailing `/` removed).
fn route_path(route: &str) -> &str {
    let path = route.split(['?', '#']).next().unwrap_or_default();
    match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    }
}

/// A header value by name, case-insensitively (the edge stores lower-case names, records
/// appended through the admin API may not).
fn header<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The body as a JSON object.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError::NotAnObject),
        Err(e) => Err(ParseError::NotJson(e.to_string())),
    }
}

/// A provider timestamp: RFC 3339 (Quo, SalesMsg), RFC 2822 (Twilio), or a zone-less
/// `YYYY-MM-DD HH:MM:SS[.f]` read as UTC (Laravel-style). Anything else is `None`.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
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
fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(f64_to_i64)),
        Value::String(s) => str_i64(s),
        _ => None,
    }
}

fn str_i64(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().and_then(f64_to_i64))
}

fn f64_to_i64(f: f64) -> Option<i64> {
    // Bounds check first: `as` saturates, but a duration of 1e300 s is nonsense, not i64::MAX.
    (f.is_finite() && f.abs() < 9.0e15).then(|| f.round() as i64)
}

/// An id: a non-empty string, or an integer (SalesMsg ids are numbers).
fn value_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Recipients: an array of strings, or one string, comma-joined for groups.
fn recipients(v: Option<&Value>) -> Vec<String> {
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
fn media_urls(v: Option<&Value>) -> Vec<String> {
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
struct Fields<'a> {
    /// Where the resource sits in the payload, for error messages (`data.object`, …).
    path: &'a str,
    resource: Option<&'a Map<String, Value>>,
    context: Option<&'a Map<String, Value>>,
}

impl<'a> Fields<'a> {
    fn new(path: &'a str, resource: Option<&'a Map<String, Value>>) -> Self {
        Fields {
            path,
            resource,
            context: None,
        }
    }

    fn with_context(mut self, context: Option<&'a Map<String, Value>>) -> Self {
        self.context = context;
        self
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        [self.resource, self.context]
            .into_iter()
            .flatten()
            .filter_map(|m| m.get(key))
            .find(|v| !v.is_null())
    }

    /// A string field (possibly empty).
    fn str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }

    fn string(&self, key: &str) -> Option<String> {
        self.str(key).map(str::to_owned)
    }

    /// A non-empty string or integer, as text.
    fn id(&self, key: &str) -> Option<String> {
        self.get(key).and_then(value_id)
    }

    fn i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(value_i64)
    }

    fn f64(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn time(&self, key: &str) -> Option<DateTime<Utc>> {
        self.str(key).and_then(parse_time)
    }

    /// An array of strings (non-strings skipped).
    fn strings(&self, key: &str) -> Vec<String> {
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
    fn own_id(&self, key: &str) -> Option<String> {
        self.resource.and_then(|m| m.get(key)).and_then(value_id)
    }

    /// The resource's own id, or a [`ParseError::MissingField`] naming it.
    fn require_id(&self, key: &str) -> Result<String, ParseError> {
        self.own_id(key)
            .ok_or_else(|| ParseError::MissingField(format!("{}.{key}", self.path)))
    }
}

/// Quo / SalesMsg direction words.
fn direction_word(s: &str) -> Option<Direction> {
    match s.trim().to_ascii_lowercase().as_str() {
        "incoming" | "inbound" => Some(Direction::Inbound),
        "outgoing" | "outbound" => Some(Direction::Outbound),
        other if other.starts_with("outbound") => Some(Direction::Outbound),
        _ => None,
    }
}

/// The kind of an outbound message status (Twilio's vocabulary, which Quo's REST statuses
/// share): delivered, sent, failed|undelivered, else the generic status.
fn outbound_status_kind(status: Option<&str>) -> Kind {
    match status.map(str::to_ascii_lowercase).as_deref() {
        Some("delivered") => Kind::MessageDelivered,
        Some("sent") => Kind::MessageSent,
        Some("failed" | "undelivered") => Kind::MessageFailed,
        _ => Kind::MessageStatus,
    }
}

#[cfg(test)]
mod tests;
