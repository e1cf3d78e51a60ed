//! Twilio: callbacks (form or JSON fields, typed by route) and backfilled REST resources.

use serde_json::Value;

use super::fields::{
    direction_word, header, json_object, outbound_status_kind, parse_time, part, route_path,
    status_part, str_i64, Fields,
};
use super::model::{
    Call, Data, Direction, Kind, Message, ParseError, Parsed, Recording, Transcription,
};
use crate::event::Event;
use crate::provider::Provider;

/// Call statuses after which nothing more happens to a call.
const TERMINAL_CALL_STATUSES: [&str; 5] = ["completed", "busy", "failed", "no-answer", "canceled"];

/// Most media a message can carry (Twilio allows 10; the bound only guards the scan).
const MAX_MEDIA: usize = 100;

fn is_terminal(status: &str) -> bool {
    TERMINAL_CALL_STATUSES.contains(&status)
}

/// What a route's callback is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Callback {
    /// `/sms`, `/sms/webhook`: an inbound message.
    Inbound,
    /// `/sms/status`: an outbound message status.
    SmsStatus,
    /// `/voice`, `/voice/webhook`: an inbound call asking for TwiML.
    Voice,
    /// `/voice/status`: call progress.
    VoiceStatus,
    /// `/voice/recording-complete`.
    Recording,
    /// `/voice/transcription`.
    Transcription,
}

/// The callback fields: decoded form fields, or a JSON object's scalar fields. The first
/// occurrence of a repeated name wins.
struct Form(Vec<(String, String)>);

impl Form {
    fn read(event: &Event) -> Result<Form, ParseError> {
        let json = match header(event, "content-type") {
            Some(ct) => ct.to_ascii_lowercase().contains("json"),
            None => event.body.trim_ascii_start().first() == Some(&b'{'),
        };
        if !json {
            return Ok(Form(
                form_urlencoded::parse(&event.body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            ));
        }
        let object = json_object(&event.body)?;
        Ok(Form(
            object
                .into_iter()
                .filter_map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k, text))
                })
                .collect(),
        ))
    }

    /// A field, possibly empty.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty field, trimmed.
    fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str) -> Option<String> {
        self.value(name).map(str::to_owned)
    }

    /// The first non-empty of several names (current, then legacy).
    fn first_of(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.value(n))
    }

    fn require(&self, names: &[&str]) -> Result<&str, ParseError> {
        self.first_of(names).ok_or_else(|| {
            ParseError::MissingField(names.first().copied().unwrap_or("").to_owned())
        })
    }

    /// A status, lower-cased.
    fn status(&self, names: &[&str]) -> Option<String> {
        self.first_of(names).map(str::to_ascii_lowercase)
    }
}

/// A Twilio webhook.
pub(super) fn webhook(event: &Event) -> Result<Parsed, ParseError> {
    let path = route_path(&event.route);
    let callback = match path {
        "/sms" | "/sms/webhook" => Callback::Inbound,
        "/sms/status" => Callback::SmsStatus,
        "/voice" | "/voice/webhook" => Callback::Voice,
        "/voice/status" => Callback::VoiceStatus,
        "/voice/recording-complete" => Callback::Recording,
        "/voice/transcription" => Callback::Transcription,
        _ => {
            return Ok(super::fields::unknown(
                event,
                Some(Provider::Twilio),
                path.to_owned(),
            ))
        }
    };
    let form = Form::read(event)?;

    let mut keys = Vec::new();
    if let Some(token) = header(event, "i-twilio-idempotency-token") {
        keys.push(format!("twilio:idem:{}", part(token)));
    }
    let mut occurred_at = None;

    let (kind, data) = match callback {
        Callback::Inbound | Callback::SmsStatus => {
            let sid = form
                .require(&["MessageSid", "SmsMessageSid", "SmsSid"])?
                .to_owned();
            let inbound = callback == Callback::Inbound;
            let status = if inbound {
                form.status(&["SmsStatus", "MessageStatus"])
            } else {
                form.status(&["MessageStatus", "SmsStatus"])
            };
            let kind = if inbound {
                Kind::MessageReceived
            } else {
                outbound_status_kind(status.as_deref())
            };
            // An inbound message has exactly one state, `received`, whatever the form says:
            // that is the state its backfilled twin has too.
            let key_status = if inbound {
                "received".to_owned()
            } else {
                status_part(status.as_deref())
            };
            keys.push(format!("twilio:msg:{}:{key_status}", part(&sid)));
            let message = Message {
                id: sid,
                direction: if inbound {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                from: form.string("From").unwrap_or_default(),
                to: form.string("To").into_iter().collect(),
                text: form.get("Body").map(str::to_owned),
                status,
                line_id: None,
                conversation_id: None,
                user_id: None,
                created_at: None,
                media: media(&form),
                opt_out_type: form.string("OptOutType"),
                error_code: form.string("ErrorCode"),
                messaging_service_sid: form.string("MessagingServiceSid"),
                contact_ids: Vec::new(),
            };
            (kind, Data::Message(message))
        }
        Callback::Voice | Callback::VoiceStatus => {
            let sid = form.require(&["CallSid"])?.to_owned();
            let status = form.status(&["CallStatus"]);
            let sequence_number = form
                .value("SequenceNumber")
                .and_then(|s| s.parse::<u32>().ok());
            let terminal = status.as_deref().is_some_and(is_terminal);
            keys.push(format!(
                "twilio:call:{}:{}:{}",
                part(&sid),
                status_part(status.as_deref()),
                sequence_number.map_or_else(|| "-".to_owned(), |n| n.to_string())
            ));
            let kind = match callback {
                Callback::Voice => Kind::CallRinging,
                _ if terminal => Kind::CallCompleted,
                _ => Kind::CallStatus,
            };
            if callback == Callback::VoiceStatus {
                occurred_at = form.value("Timestamp").and_then(parse_time);
                if terminal {
                    keys.push(format!(
                        "twilio:call:{}:{}",
                        part(&sid),
                        status_part(status.as_deref())
                    ));
                }
            }
            let call = Call {
                id: sid,
                direction: form
                    .value("Direction")
                    .and_then(direction_word)
                    .unwrap_or(Direction::Inbound),
                from: form.string("From"),
                to: form.string("To"),
                participants: Vec::new(),
                status,
                duration_secs: form.value("CallDuration").and_then(str_i64),
                line_id: None,
                user_id: None,
                conversation_id: None,
                created_at: None,
                answered_at: None,
                completed_at: if terminal { occurred_at } else { None },
                answered_by: None,
                sequence_number,
                recording_url: form.string("RecordingUrl"),
                voicemail_url: None,
            };
            (kind, Data::Call(call))
        }
        Callback::Recording => {
            let sid = form.require(&["RecordingSid"])?.to_owned();
            let status = form.status(&["RecordingStatus"]);
            keys.push(format!(
                "twilio:rec:{}:{}",
                part(&sid),
                status_part(status.as_deref())
            ));
            let recording = Recording {
                recording_sid: sid,
                call_sid: form.string("CallSid"),
                status,
                url: form.string("RecordingUrl"),
                duration_secs: form.value("RecordingDuration").and_then(str_i64),
            };
            (Kind::RecordingCompleted, Data::Recording(recording))
        }
        Callback::Transcription => {
            let sid = form.require(&["TranscriptionSid"])?.to_owned();
            let status = form.status(&["TranscriptionStatus"]);
            keys.push(format!(
                "twilio:tr:{}:{}",
                part(&sid),
                status_part(status.as_deref())
            ));
            let transcription = Transcription {
                transcription_sid: sid,
                recording_sid: form.string("RecordingSid"),
                call_sid: form.string("CallSid"),
                status,
                text: form.get("TranscriptionText").map(str::to_owned),
            };
            (
                Kind::TranscriptionCompleted,
                Data::Transcription(transcription),
            )
        }
    };

    Ok(Parsed {
        kind,
        provider: Some(Provider::Twilio),
        occurred_at,
        dedup_keys: keys,
        data,
    })
}

/// `MediaUrl{N}` for N below `NumMedia` (and at least the first ten, in case `NumMedia` is
/// missing).
fn media(form: &Form) -> Vec<String> {
    let declared = form
        .value("NumMedia")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    (0..declared.clamp(10, MAX_MEDIA))
        .filter_map(|i| form.string(&format!("MediaUrl{i}")))
        .collect()
}

/// A backfilled Twilio REST resource: `/2010-04-01/Messages/{sid}` or
/// `/2010-04-01/Calls/{sid}` (also with `Accounts/{AC}/` and a `.json` suffix).
pub(super) fn backfill(event: &Event) -> Result<Parsed, ParseError> {
    let path = route_path(&event.route);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (resource, route_sid) = match segments.as_slice() {
        ["2010-04-01", r @ ("Messages" | "Calls"), rest @ ..] if rest.len() <= 1 => {
            (*r, rest.first().copied())
        }
        ["2010-04-01", "Accounts", _, r @ ("Messages" | "Calls"), sid] => (*r, Some(*sid)),
        _ => {
            return Ok(super::fields::unknown(
                event,
                Some(Provider::Twilio),
                path.to_owned(),
            ))
        }
    };
    let route_sid = route_sid
        .map(|s| s.trim_end_matches(".json"))
        .filter(|s| !s.is_empty());

    let root = json_object(&event.body)?;
    let f = Fields::new("resource", Some(&root));
    let sid = f
        .own_id("sid")
        .or_else(|| route_sid.map(str::to_owned))
        .ok_or_else(|| ParseError::MissingField("sid".to_owned()))?;
    let status = f.str("status").map(str::to_ascii_lowercase);
    let created_at = f.time("date_created");

    if resource == "Messages" {
        let direction = match f.str("direction").and_then(direction_word) {
            Some(d) => d,
            None if matches!(status.as_deref(), Some("received" | "receiving")) => {
                Direction::Inbound
            }
            None => Direction::Outbound,
        };
        let kind = match direction {
            Direction::Inbound if status.as_deref() == Some("received") => Kind::MessageReceived,
            Direction::Inbound => Kind::MessageStatus,
            Direction::Outbound => outbound_status_kind(status.as_deref()),
        };
        let key = format!(
            "twilio:msg:{}:{}",
            part(&sid),
            status_part(status.as_deref())
        );
        let message = Message {
            id: sid,
            direction,
            from: f.string("from").unwrap_or_default(),
            to: f
                .string("to")
                .filter(|t| !t.is_empty())
                .into_iter()
                .collect(),
            text: f.string("body"),
            status,
            line_id: None,
            conversation_id: None,
            user_id: None,
            created_at,
            media: Vec::new(),
            opt_out_type: None,
            error_code: f.id("error_code"),
            messaging_service_sid: f.id("messaging_service_sid"),
            contact_ids: Vec::new(),
        };
        return Ok(Parsed {
            kind,
            provider: Some(Provider::Twilio),
            occurred_at: created_at,
            dedup_keys: vec![key],
            data: Data::Message(message),
        });
    }

    let terminal = status.as_deref().is_some_and(is_terminal);
    let kind = if terminal {
        Kind::CallCompleted
    } else {
        Kind::CallStatus
    };
    let key = format!(
        "twilio:call:{}:{}",
        part(&sid),
        status_part(status.as_deref())
    );
    let start = f.time("start_time");
    let call = Call {
        id: sid,
        direction: f
            .str("direction")
            .and_then(direction_word)
            .unwrap_or(Direction::Inbound),
        from: f.string("from").filter(|s| !s.is_empty()),
        to: f.string("to").filter(|s| !s.is_empty()),
        participants: Vec::new(),
        status,
        duration_secs: f.i64("duration"),
        line_id: None,
        user_id: None,
        conversation_id: None,
        created_at: start.or(created_at),
        answered_at: None,
        completed_at: f.time("end_time"),
        answered_by: None,
        sequence_number: None,
        recording_url: None,
        voicemail_url: None,
    };
    Ok(Parsed {
        kind,
        provider: Some(Provider::Twilio),
        occurred_at: start.or(created_at),
        dedup_keys: vec![key],
        data: Data::Call(call),
    })
}
