//! What one log record becomes in Postgres: pure functions from an [`Event`], its parse and
//! its dedup verdict to [`Row`]s (no I/O, no clock, so a rewind produces the same rows).
//!
//! - Every record gives one `omni_events` row, duplicates and unreadable records included.
//! - An original (not a duplicate) that parses also gives its dedup keys
//!   (`processed_webhook_events`) and its resource rows: Quo messages, calls (a summary or a
//!   transcript also attaches to its call's row), summaries, transcripts and contacts; Twilio
//!   messages and calls (recording and transcription callbacks attach to the call); SalesMsg
//!   events. A record of an unknown kind, or without the id its table is keyed on, gives the
//!   `omni_events` row only.
//! - Records of the outbound path give `agent_dispatches` ([`dispatch_row`]) and
//!   `outbound_lines` ([`line_row`]) rows; message records are folded into the stored
//!   message ([`fold_messages`], [`message_row`]) by the sink, in its transaction.
//! - Text never carries NUL (Postgres refuses it in `text` and `jsonb`): it is replaced by
//!   U+FFFD in columns, and a body holding one is stored base64 in `payload`.
//!
//! Status ranks order the states of a resource so that a late `sent` never overwrites a
//! `delivered` ([`message_rank`], [`call_rank`]).

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use std::collections::{BTreeSet, HashMap};

use super::cells::{int8, text, texts, ts, Cell, JsonDoc, Row};
use super::tables;
use crate::consumers::compliance::OptOutEntry;
use crate::consumers::dedup::Verdict;
use crate::consumers::outbound::{
    self, Change, DispatchResult, LineChange, Message, MessageId, OutboundRecord,
};
use crate::event::{Event, Source};
use crate::parse::{self, Data, Direction, Kind, Parsed};
use crate::provider::Provider;

/// The `kind` of a record that cannot be parsed.
pub const UNPARSED: &str = "unparsed";

/// Rank of a message status (higher = later in a message's life).
pub fn message_rank(status: Option<&str>) -> i16 {
    match status.map(str::to_ascii_lowercase).as_deref() {
        Some("accepted" | "scheduled") => 1,
        Some("queued") => 2,
        Some("sending" | "receiving") => 3,
        Some("sent") => 4,
        Some("received") => 5,
        Some("delivered" | "undelivered" | "failed" | "canceled") => 6,
        Some("read") => 7,
        _ => 0,
    }
}

/// Rank of a call status; without one, the event's kind decides.
pub fn call_rank(status: Option<&str>, kind: &Kind) -> i16 {
    match status.map(str::to_ascii_lowercase).as_deref() {
        Some("queued" | "initiated") => 1,
        Some("ringing") => 2,
        Some("in-progress" | "answered" | "active") => 3,
        Some(
            "completed" | "busy" | "failed" | "no-answer" | "canceled" | "missed" | "voicemail"
            | "abandoned",
        ) => 4,
        _ => match kind {
            Kind::CallRinging => 2,
            Kind::CallCompleted | Kind::CallRecordingCompleted => 4,
            _ => 0,
        },
    }
}

/// Rank of a Twilio recording or transcription status.
fn media_rank(status: Option<&str>) -> i16 {
    match status.map(str::to_ascii_lowercase).as_deref() {
        Some("in-progress" | "processing") => 1,
        Some("completed" | "absent" | "failed") => 2,
        _ => 0,
    }
}

fn clean(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

fn t(s: Option<&str>) -> Cell {
    text(s.filter(|s| !s.is_empty()).map(clean))
}

fn ts_cell(t: Option<DateTime<Utc>>) -> Cell {
    ts(t)
}

fn list(items: &[String]) -> Cell {
    texts(items.iter().map(|s| clean(s)).collect())
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The body as JSON: the JSON itself (sent as text, never rebuilt), form fields as an object
/// (a repeated field becomes an array), else `{"body_base64": …}`. Also base64 when jsonb
/// would refuse the JSON (a `\u0000` escape); a surrogate escape is decoded here first, so
/// that an unpaired one is caught on this side.
pub fn payload(event: &Event) -> JsonDoc {
    let base64 = || {
        let mut m = Map::new();
        m.insert(
            "body_base64".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(&event.body)),
        );
        JsonDoc::Value(Value::Object(m))
    };
    if has_escape(&event.body, |a, b| a == b'0' && b == b'0') {
        return base64();
    }
    if let Ok(text) = String::from_utf8(event.body.clone()) {
        let surrogates = has_escape(text.as_bytes(), |a, b| {
            a.eq_ignore_ascii_case(&b'd')
                && matches!(b.to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
        });
        if !surrogates {
            if let Ok(raw) = serde_json::value::RawValue::from_string(text) {
                return JsonDoc::Raw(raw);
            }
        } else if let Ok(v) = serde_json::from_str::<Value>(&text) {
            return if has_nul(&v) {
                base64()
            } else {
                JsonDoc::Value(v)
            };
        }
    }
    if !is_form(event) {
        return base64();
    }
    let mut m = Map::new();
    for (k, v) in form_urlencoded::parse(&event.body) {
        let v = Value::String(v.into_owned());
        match m.get_mut(k.as_ref()) {
            Some(Value::Array(items)) => items.push(v),
            Some(first) => {
                let first = first.take();
                m.insert(k.into_owned(), Value::Array(vec![first, v]));
            }
            None => {
                m.insert(k.into_owned(), v);
            }
        }
    }
    let v = Value::Object(m);
    if has_nul(&v) {
        base64()
    } else {
        JsonDoc::Value(v)
    }
}

/// Whether `body` holds a `\u` escape whose first two hex digits satisfy `first_two`.
fn has_escape(body: &[u8], first_two: impl Fn(u8, u8) -> bool) -> bool {
    body.windows(4)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && first_two(w[2], w[3]))
}

fn is_form(event: &Event) -> bool {
    let declared = event
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase());
    let form = match declared {
        Some(ct) => ct.starts_with("application/x-www-form-urlencoded"),
        // Twilio callbacks are forms; its JSON bodies parse as JSON above.
        None => event.source == Source::Twilio,
    };
    form && std::str::from_utf8(&event.body).is_ok()
}

/// The dedup consumer's key for a record that does not parse (kept identical so that
/// `omni_events.dedup_key` names the same key dedup used).
fn unparsed_key(event: &Event) -> String {
    format!(
        "body:unparsed:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&event.body))
    )
}

fn resource_id(data: &Data) -> Option<&str> {
    match data {
        Data::Message(m) => Some(m.id.as_str()),
        Data::Call(c) => Some(c.id.as_str()),
        Data::CallSummary(s) => Some(s.call_id.as_str()),
        Data::CallTranscript(t) => Some(t.call_id.as_str()),
        Data::Contact(c) => Some(c.id.as_str()),
        Data::Recording(r) => r.call_sid.as_deref().or(Some(r.recording_sid.as_str())),
        Data::Transcription(t) => t
            .call_sid
            .as_deref()
            .or(t.recording_sid.as_deref())
            .or(Some(t.transcription_sid.as_str())),
        Data::Other => None,
    }
    .filter(|s| !s.is_empty())
}

/// Every row of one record.
pub fn project(
    event: &Event,
    parsed: Result<&Parsed, &parse::ParseError>,
    verdict: Verdict,
    dedup_ttl: TimeDelta,
) -> Vec<Row> {
    let seq = event.seq.0 as i64;
    let received = event.received_at.to_datetime();
    let (provider, kind, keys, occurred, resource, error) = match parsed {
        Ok(p) => (
            p.provider,
            p.kind.as_str().to_owned(),
            p.dedup_keys.clone(),
            p.occurred_at,
            resource_id(&p.data),
            None,
        ),
        Err(e) => (
            event.source.provider(),
            UNPARSED.to_owned(),
            vec![unparsed_key(event)],
            None,
            None,
            Some(e.to_string()),
        ),
    };
    let duplicate_of = match verdict {
        Verdict::Duplicate { of } => Some(of as i64),
        Verdict::Original => None,
    };
    let mut rows = vec![Row::new(&tables::OMNI_EVENTS)
        .set("seq", int8(seq))
        .set("source", text(event.source.as_str().to_owned()))
        .set("route", text(clean(&event.route)))
        .set("provider", text(parse::provider_name(provider).to_owned()))
        .set("kind", text(clean(&kind)))
        .set("resource_id", t(resource))
        .set("dedup_key", text(keys.first().cloned().unwrap_or_default()))
        .set("dedup_keys", Cell::TextArray(Some(keys.clone())))
        .set("duplicate", Cell::Bool(Some(duplicate_of.is_some())))
        .set("duplicate_of", int8(duplicate_of))
        .set("occurred_at", ts_cell(occurred))
        .set("received_at", ts_cell(Some(received)))
        .set("payload", Cell::Json(Some(payload(event))))
        .set("parse_error", text(error.map(|e| clean(&e))))];
    // Duplicates are recorded in omni_events only (guarantee 5).
    let Ok(parsed) = parsed else { return rows };
    if duplicate_of.is_some() {
        return rows;
    }
    let expires = received.checked_add_signed(dedup_ttl).unwrap_or(received);
    for key in &keys {
        rows.push(
            Row::new(&tables::PROCESSED_WEBHOOK_EVENTS)
                .set("dedup_key", text(key.clone()))
                .set("first_seq", int8(seq))
                .set("first_seen_at", ts_cell(Some(received)))
                .set("expires_at", ts_cell(Some(expires))),
        );
    }
    resources(event, parsed, seq, received, &mut rows);
    rows
}

/// The other party: the sender of something inbound, the first recipient of something
/// outbound.
fn counterpart<'a>(
    direction: Direction,
    from: Option<&'a str>,
    to: Option<&'a str>,
) -> Option<&'a str> {
    match direction {
        Direction::Inbound => from,
        Direction::Outbound => to,
    }
    .filter(|s| !s.is_empty())
}

fn direction(d: Direction) -> Cell {
    text(
        match d {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
        .to_owned(),
    )
}

fn seqs(row: Row, seq: i64) -> Row {
    row.set("first_seq", int8(seq)).set("last_seq", int8(seq))
}

fn resources(event: &Event, p: &Parsed, seq: i64, received: DateTime<Utc>, rows: &mut Vec<Row>) {
    match (&p.data, p.provider) {
        (Data::Message(m), Some(Provider::Quo)) if !m.id.is_empty() => {
            let first_to = m.to.first().map(String::as_str);
            rows.push(seqs(
                Row::new(&tables::OPENPHONE_MESSAGES)
                    .set("id", text(clean(&m.id)))
                    .set("direction", direction(m.direction))
                    .set("from_number", t(Some(&m.from)))
                    .set("to_numbers", list(&m.to))
                    .set(
                        "counterpart",
                        t(counterpart(m.direction, Some(&m.from), first_to)),
                    )
                    .set("body", t(m.text.as_deref()))
                    .set("status", t(m.status.as_deref()))
                    .set("line_id", t(m.line_id.as_deref()))
                    .set("conversation_id", t(m.conversation_id.as_deref()))
                    .set("user_id", t(m.user_id.as_deref()))
                    .set("contact_ids", list(&m.contact_ids))
                    .set("media", list(&m.media))
                    .set("created_at", ts_cell(m.created_at))
                    .set(
                        "status_rank",
                        Cell::Int2(Some(message_rank(m.status.as_deref()))),
                    )
                    .set("status_seq", int8(seq)),
                seq,
            ));
        }
        (Data::Message(m), Some(Provider::Twilio)) if !m.id.is_empty() => {
            let first_to = m.to.first().map(String::as_str);
            rows.push(seqs(
                Row::new(&tables::TWILIO_SMS)
                    .set("sid", text(clean(&m.id)))
                    .set("direction", direction(m.direction))
                    .set("from_number", t(Some(&m.from)))
                    .set("to_number", t(first_to))
                    .set(
                        "counterpart",
                        t(counterpart(m.direction, Some(&m.from), first_to)),
                    )
                    .set("body", t(m.text.as_deref()))
                    .set("status", t(m.status.as_deref()))
                    .set("error_code", t(m.error_code.as_deref()))
                    .set(
                        "messaging_service_sid",
                        t(m.messaging_service_sid.as_deref()),
                    )
                    .set("media", list(&m.media))
                    .set("opt_out_type", t(m.opt_out_type.as_deref()))
                    .set(
                        "created_at",
                        ts_cell(Some(m.created_at.unwrap_or(received))),
                    )
                    .set(
                        "status_rank",
                        Cell::Int2(Some(message_rank(m.status.as_deref()))),
                    )
                    .set("status_seq", int8(seq)),
                seq,
            ));
        }
        (Data::Message(m), Some(Provider::SalesMsg)) => {
            rows.push(salesmsg(event, p, Some(m), seq, received))
        }
        (Data::Other, Some(Provider::SalesMsg)) => {
            rows.push(salesmsg(event, p, None, seq, received))
        }
        (Data::Call(c), Some(Provider::Quo)) if !c.id.is_empty() => {
            let other = c.participants.first().map(String::as_str);
            rows.push(seqs(
                Row::new(&tables::OPENPHONE_CALLS)
                    .set("id", text(clean(&c.id)))
                    .set("direction", direction(c.direction))
                    .set("from_number", t(c.from.as_deref()))
                    .set("to_number", t(c.to.as_deref()))
                    .set("participants", list(&c.participants))
                    .set(
                        "counterpart",
                        t(counterpart(c.direction, c.from.as_deref(), c.to.as_deref()).or(other)),
                    )
                    .set("status", t(c.status.as_deref()))
                    .set("duration_secs", int8(c.duration_secs))
                    .set("line_id", t(c.line_id.as_deref()))
                    .set("user_id", t(c.user_id.as_deref()))
                    .set("conversation_id", t(c.conversation_id.as_deref()))
                    .set("created_at", ts_cell(c.created_at))
                    .set("answered_at", ts_cell(c.answered_at))
                    .set("completed_at", ts_cell(c.completed_at))
                    .set("answered_by", t(c.answered_by.as_deref()))
                    .set("recording_url", t(c.recording_url.as_deref()))
                    .set("voicemail_url", t(c.voicemail_url.as_deref()))
                    .set(
                        "status_rank",
                        Cell::Int2(Some(call_rank(c.status.as_deref(), &p.kind))),
                    )
                    .set("status_seq", int8(seq)),
                seq,
            ));
        }
        (Data::Call(c), Some(Provider::Twilio)) if !c.id.is_empty() => {
            let mut row = Row::new(&tables::TWILIO_CALLS)
                .set("sid", text(clean(&c.id)))
                .set("direction", direction(c.direction))
                .set("from_number", t(c.from.as_deref()))
                .set("to_number", t(c.to.as_deref()))
                .set(
                    "counterpart",
                    t(counterpart(c.direction, c.from.as_deref(), c.to.as_deref())),
                )
                .set("status", t(c.status.as_deref()))
                .set("duration_secs", int8(c.duration_secs))
                .set(
                    "created_at",
                    ts_cell(Some(c.created_at.unwrap_or(received))),
                )
                .set("completed_at", ts_cell(c.completed_at))
                .set(
                    "status_rank",
                    Cell::Int2(Some(call_rank(c.status.as_deref(), &p.kind))),
                )
                .set("sequence_number", int8(c.sequence_number.map(i64::from)))
                .set("status_seq", int8(seq));
            if let Some(url) = c.recording_url.as_deref().filter(|u| !u.is_empty()) {
                // A status callback of a recorded call names the recording: lowest rank, so
                // the recording callback's own fields win.
                row = row
                    .set("recording_url", text(clean(url)))
                    .set("recording_rank", Cell::Int2(Some(0)))
                    .set("recording_seq", int8(seq));
            }
            rows.push(seqs(row, seq));
        }
        (Data::Recording(r), Some(Provider::Twilio)) => {
            if let Some(call) = r.call_sid.as_deref().filter(|s| !s.is_empty()) {
                rows.push(seqs(
                    Row::new(&tables::TWILIO_CALLS)
                        .set("sid", text(clean(call)))
                        .set("recording_sid", t(Some(&r.recording_sid)))
                        .set("recording_status", t(r.status.as_deref()))
                        .set("recording_url", t(r.url.as_deref()))
                        .set("recording_duration_secs", int8(r.duration_secs))
                        .set(
                            "recording_rank",
                            Cell::Int2(Some(media_rank(r.status.as_deref()))),
                        )
                        .set("recording_seq", int8(seq)),
                    seq,
                ));
            }
        }
        (Data::Transcription(x), Some(Provider::Twilio)) => {
            if let Some(call) = x.call_sid.as_deref().filter(|s| !s.is_empty()) {
                rows.push(seqs(
                    Row::new(&tables::TWILIO_CALLS)
                        .set("sid", text(clean(call)))
                        .set("transcription_sid", t(Some(&x.transcription_sid)))
                        .set("transcription_status", t(x.status.as_deref()))
                        .set("transcription_text", t(x.text.as_deref()))
                        .set(
                            "transcription_rank",
                            Cell::Int2(Some(media_rank(x.status.as_deref()))),
                        )
                        .set("transcription_seq", int8(seq)),
                    seq,
                ));
            }
        }
        (Data::CallSummary(s), _) if !s.call_id.is_empty() => {
            rows.push(seqs(
                Row::new(&tables::OPENPHONE_CALL_SUMMARIES)
                    .set("call_id", text(clean(&s.call_id)))
                    .set("status", t(s.status.as_deref()))
                    .set("summary", list(&s.summary))
                    .set("next_steps", list(&s.next_steps))
                    .set("status_seq", int8(seq)),
                seq,
            ));
            rows.push(seqs(
                Row::new(&tables::OPENPHONE_CALLS)
                    .set("id", text(clean(&s.call_id)))
                    .set("summary", list(&s.summary))
                    .set("next_steps", list(&s.next_steps))
                    .set("summary_seq", int8(seq)),
                seq,
            ));
        }
        (Data::CallTranscript(x), _) if !x.call_id.is_empty() => {
            let dialogue = clean_json(serde_json::to_value(&x.dialogue).unwrap_or(Value::Null));
            rows.push(seqs(
                Row::new(&tables::OPENPHONE_CALL_TRANSCRIPTS)
                    .set("call_id", text(clean(&x.call_id)))
                    .set("status", t(x.status.as_deref()))
                    .set("duration_secs", int8(x.duration_secs))
                    .set("created_at", ts_cell(x.created_at))
                    .set(
                        "dialogue",
                        Cell::Json(Some(JsonDoc::Value(dialogue.clone()))),
                    )
                    .set("status_seq", int8(seq)),
                seq,
            ));
            rows.push(seqs(
                Row::new(&tables::OPENPHONE_CALLS)
                    .set("id", text(clean(&x.call_id)))
                    .set("transcript", Cell::Json(Some(JsonDoc::Value(dialogue))))
                    .set("transcript_seq", int8(seq)),
                seq,
            ));
        }
        (Data::Contact(c), _) if !c.id.is_empty() => {
            let deleted = p.kind == Kind::ContactDeleted;
            // A deletion carries the contact too; it ranks below any update that has an
            // `updatedAt`, so it fills a contact never seen updated without hiding a newer one.
            let row = Row::new(&tables::OPENPHONE_CONTACTS)
                .set("id", text(clean(&c.id)))
                .set("first_name", t(c.first_name.as_deref()))
                .set("last_name", t(c.last_name.as_deref()))
                .set("company", t(c.company.as_deref()))
                .set("role", t(c.role.as_deref()))
                .set("phone_numbers", list(&c.phone_numbers))
                .set("emails", list(&c.emails))
                .set("user_id", t(c.user_id.as_deref()))
                .set("created_at", ts_cell(c.created_at))
                .set("updated_at", ts_cell(c.updated_at))
                .set(
                    "version_at",
                    ts_cell(if deleted { None } else { c.updated_at }),
                )
                .set("version_seq", int8(seq))
                .set("deleted_at", ts_cell(deleted.then_some(received)));
            rows.push(seqs(row, seq));
        }
        _ => {}
    }
}

fn salesmsg(
    event: &Event,
    p: &Parsed,
    m: Option<&parse::Message>,
    seq: i64,
    received: DateTime<Utc>,
) -> Row {
    let name = serde_json::from_slice::<Value>(&event.body)
        .ok()
        .and_then(|v| {
            ["event", "type"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_owned))
        })
        .unwrap_or_else(|| p.kind.as_str().to_owned());
    let row = Row::new(&tables::SALESMSG_EVENTS)
        .set(
            "event_key",
            text(p.dedup_keys.first().cloned().unwrap_or_default()),
        )
        .set("seq", int8(seq))
        .set("event", text(clean(&name)))
        .set("kind", text(clean(p.kind.as_str())))
        .set("received_at", ts_cell(Some(received)));
    let Some(m) = m else { return row };
    let first_to = m.to.first().map(String::as_str);
    row.set("message_id", t(Some(&m.id)))
        .set("direction", direction(m.direction))
        .set("from_number", t(Some(&m.from)))
        .set("to_numbers", list(&m.to))
        .set(
            "counterpart",
            t(counterpart(m.direction, Some(&m.from), first_to)),
        )
        .set("body", t(m.text.as_deref()))
        .set("status", t(m.status.as_deref()))
        .set("conversation_id", t(m.conversation_id.as_deref()))
        .set("user_id", t(m.user_id.as_deref()))
        .set("created_at", ts_cell(m.created_at))
}

fn clean_json(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(clean(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(clean_json).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (clean(&k), clean_json(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The `sms_optouts` row of a suppression-list entry.
pub fn optout_row(e: &OptOutEntry) -> Row {
    let at = DateTime::parse_from_rfc3339(&e.at)
        .map(|t| t.with_timezone(&Utc))
        // Entries are written by the compliance consumer with `to_rfc3339`; the epoch only
        // stands in for an entry that was corrupted on disk.
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    Row::new(&tables::SMS_OPTOUTS)
        .set("number", text(clean(&e.number)))
        .set("state", text(clean(&e.state)))
        .set("seq", int8(e.seq as i64))
        .set("provider", text(clean(&e.provider)))
        .set("line", text(e.line.as_deref().map(clean)))
        .set("text", text(clean(&e.text)))
        .set("at", ts_cell(Some(at)))
        .set("how", text(clean(&e.how)))
        .set("reason", text(clean(&e.reason)))
}

// ---------------------------------------------------------------------------------------------
// The outbound path

/// An RFC 3339 stamp of a record (written by hooklog); `None` if it cannot be read.
fn rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn json_of<T: serde::Serialize>(v: &T) -> Cell {
    // Plain structs of strings, numbers and enums: serialising them cannot fail.
    let v = serde_json::to_value(v).unwrap_or(Value::Null);
    Cell::Json(Some(JsonDoc::Value(clean_json(v))))
}

fn int4(n: u32) -> Cell {
    Cell::Int4(Some(i32::try_from(n).unwrap_or(i32::MAX)))
}

/// The `agent_dispatches` row of dispatch result record `seq`.
pub fn dispatch_row(seq: u64, d: &DispatchResult) -> Row {
    Row::new(&tables::AGENT_DISPATCHES)
        .set("seq", int8(seq as i64))
        .set("event_seq", int8(d.seq as i64))
        .set("agent", text(clean(&d.agent)))
        .set("idempotency_key", text(clean(&d.idempotency_key)))
        .set("kind", text(clean(&d.kind)))
        .set("outcome", text(clean(&d.outcome)))
        .set("status", Cell::Int4(d.status.map(i32::from)))
        .set("attempts", int4(d.attempts))
        .set("latency_ms", int8(d.latency_ms))
        .set("opted_out", Cell::Bool(Some(d.opted_out)))
        .set("redelivery", Cell::Bool(Some(d.redelivery)))
        .set("error", text(d.error.as_deref().map(clean)))
        .set("at", ts_cell(rfc3339(&d.at)))
}

/// The `outbound_lines` row of line change record `seq`.
pub fn line_row(seq: u64, l: &LineChange) -> Row {
    Row::new(&tables::OUTBOUND_LINES)
        .set("line_id", text(clean(&l.line_id)))
        .set("state", text(clean(&l.state)))
        .set("reason", text(clean(&l.reason)))
        .set("at", ts_cell(rfc3339(&l.at)))
        .set("seq", int8(seq as i64))
}

/// The `outbound_messages` row of a message: its columns, and the message itself in `state`.
/// Text is cleaned of NUL like every column; the fold never reads the fields that could
/// hold one (content, the numbers as given), so the state read back folds the same.
pub fn message_row(m: &Message) -> Row {
    let opt = |s: &Option<String>| text(s.as_deref().map(clean));
    Row::new(&tables::OUTBOUND_MESSAGES)
        .set("id", text(clean(m.id.as_str())))
        .set("idempotency_key", opt(&m.idempotency_key))
        .set("from_line", text(clean(&m.from)))
        .set("line_id", opt(&m.line_id))
        .set("from_number", opt(&m.from_number))
        .set("provider", text(m.provider.map(|p| p.as_str().to_owned())))
        .set("to_number", text(clean(&m.to)))
        .set("to_e164", opt(&m.to_e164))
        .set("content", text(clean(&m.content)))
        .set("status", text(m.status.as_str().to_owned()))
        .set("approved", Cell::Bool(Some(m.approved)))
        .set("reasons", json_of(&m.reasons))
        .set(
            "hold_until",
            ts_cell(m.hold_until.as_deref().and_then(rfc3339)),
        )
        .set("evaluations", int4(m.evaluations))
        .set("attempts", int4(m.attempts))
        .set("provider_message_id", opt(&m.provider_id))
        .set("error", opt(&m.error))
        .set("requested_at", ts_cell(rfc3339(&m.requested_at)))
        .set("updated_at", ts_cell(rfc3339(&m.updated_at)))
        .set("request_seq", int8(m.request_seq as i64))
        .set("last_seq", int8(m.last_seq as i64))
        .set("history", json_of(&m.history))
        .set("state", json_of(m))
}

/// The id of the message a record of the outbound path is about (`None` for line changes
/// and dispatch results).
pub fn message_id(record: &OutboundRecord) -> Option<&MessageId> {
    match record {
        OutboundRecord::Request(r) => Some(&r.id),
        OutboundRecord::Decision(d) => Some(&d.id),
        OutboundRecord::Attempt(a) => Some(&a.id),
        OutboundRecord::Result(r) => Some(&r.id),
        OutboundRecord::Line(_) | OutboundRecord::Dispatch(_) => None,
    }
}

/// Applies message records (`(seq, record)`, in log order) to `messages` (the stored ones
/// the records are about, by id) with [`outbound::apply`]. A request creates its message
/// unless it is already there; a record at or below a message's `last_seq` changes nothing,
/// so a batch applied again (a replay, a rewind) leaves every message as it was. A record for
/// a message never requested is skipped with a warning. Returns the ids of the messages that
/// changed, in order.
pub fn fold_messages(
    messages: &mut HashMap<String, Message>,
    records: &[(u64, &OutboundRecord)],
) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    for &(seq, record) in records {
        let Some(id) = message_id(record) else {
            continue;
        };
        let change = match record {
            OutboundRecord::Request(r) => {
                if !messages.contains_key(id.as_str()) {
                    messages.insert(id.0.clone(), Message::requested(seq, r));
                    changed.insert(id.0.clone());
                }
                continue;
            }
            OutboundRecord::Decision(d) => Change::Decision(d),
            OutboundRecord::Attempt(a) => Change::Attempt(a),
            OutboundRecord::Result(r) => Change::Result(r),
            OutboundRecord::Line(_) | OutboundRecord::Dispatch(_) => continue,
        };
        let Some(message) = messages.get_mut(id.as_str()) else {
            tracing::warn!(seq, id = %id, "outbound record for a message whose request was never projected; skipped");
            continue;
        };
        if outbound::apply(message, seq, change) {
            changed.insert(id.0.clone());
        }
    }
    changed
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;
