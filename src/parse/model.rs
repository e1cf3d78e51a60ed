//! What a parsed record is: [`Parsed`] (its kind, provider, event time, dedup keys) and the typed
//! resources it carries ([`Data`]). The consumers read these; the provider modules build them.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

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
        provider_name(self.provider)
    }
}

/// The name of a record's provider as keys, metrics, JSON and Postgres write it: the wire
/// spelling, or `hooklog` for the records hooklog writes itself (`None`).
pub fn provider_name(provider: Option<Provider>) -> &'static str {
    provider.map_or("hooklog", Provider::as_str)
}

fn provider_or_hooklog<S: Serializer>(p: &Option<Provider>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(provider_name(*p))
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
