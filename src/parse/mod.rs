//! Typed provider events: [`parse`] turns a raw log record into a [`Parsed`] event for the
//! consumers (dedup, compliance, outbound, the Postgres sync, dispatch, staleness), and gives each
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

mod fields;
mod model;
mod quo;
mod salesmsg;
mod twilio;

use crate::event::{Event, Source};
use fields::unknown;

pub use model::provider_name;
pub use model::{
    Call, CallSummary, CallTranscript, Contact, Data, DialogueLine, Direction, Kind, Message,
    ParseError, Parsed, Recording, Transcription,
};

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

#[cfg(test)]
mod tests;
