//! Property tests: nothing panics, whatever the record.

use super::*;

const ROUTES: &[&str] = &[
    "/webhook/openphone",
    "/webhook/quo",
    "/webhook/salesmsg?secret=x",
    "/sms",
    "/sms/webhook",
    "/sms/status?attempt=1",
    "/voice",
    "/voice/webhook",
    "/voice/status",
    "/voice/recording-complete",
    "/voice/transcription",
    "/v1/messages/AC1",
    "/v1/calls/AC1",
    "/v1/call-summaries/AC1",
    "/v1/call-transcripts/AC1",
    "/v1/messages",
    "/2010-04-01/Messages/SM1",
    "/2010-04-01/Calls/CA1",
    "/2010-04-01/Accounts/AC1/Calls/CA1.json",
    "/2010-04-01/Messages",
    "",
    "?",
    "/",
];

const NAMES: &[&str] = &[
    "id",
    "type",
    "event",
    "data",
    "object",
    "resource",
    "context",
    "from",
    "to",
    "text",
    "body",
    "direction",
    "status",
    "createdAt",
    "callId",
    "media",
    "url",
    "dialogue",
    "duration",
    "fields",
    "value",
    "senderIdentifier",
    "participants",
    "voicemail",
    "sid",
    "date_created",
    "start_time",
    "created_at",
    "contact",
    "number",
    "phoneNumbers",
    "summary",
];

const TYPES: &[&str] = &[
    "message.received",
    "message.delivered",
    "call.ringing",
    "call.completed",
    "call.recording.completed",
    "callSummary",
    "call.summary.completed",
    "callTranscript",
    "call.transcript.completed",
    "contact.updated",
    "contact.deleted",
    "message.reacted",
    "message.sent",
    "message_inbound",
    "",
];

const FORM_FIELDS: &[&str] = &[
    "MessageSid",
    "SmsSid",
    "SmsMessageSid",
    "MessageStatus",
    "SmsStatus",
    "Body",
    "From",
    "To",
    "NumMedia",
    "MediaUrl0",
    "MediaUrl9",
    "CallSid",
    "CallStatus",
    "SequenceNumber",
    "Timestamp",
    "CallDuration",
    "RecordingSid",
    "RecordingStatus",
    "RecordingDuration",
    "TranscriptionSid",
    "TranscriptionStatus",
    "Direction",
    "ErrorCode",
    "OptOutType",
];

fn any_source() -> impl Strategy<Value = Source> {
    prop::sample::select(Source::ALL.to_vec())
}

fn any_route() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(ROUTES).prop_map(str::to_owned),
        ".{0,40}",
    ]
}

fn any_content_type() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::sample::select(vec![
        vec![],
        vec![("content-type".to_owned(), "application/json".to_owned())],
        vec![(
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        )],
        vec![
            ("content-type".to_owned(), "text/plain".to_owned()),
            ("i-twilio-idempotency-token".to_owned(), "t:1 x".to_owned()),
            ("webhook-id".to_owned(), "msg_1".to_owned()),
        ],
    ])
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "+15555550123, +15555550100",
            "completed",
            "incoming",
            "outbound-api",
            "received",
            "2026-04-14T16:02:11.420Z",
            "Tue, 14 Apr 2026 20:00:47 +0000",
            "2026-04-15 21:04:17",
            "1e308",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(NAMES), inner, 0..8).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

fn check(event: &Event) -> Result<(), TestCaseError> {
    if let Ok(p) = parse(event) {
        prop_assert!(!p.dedup_keys.is_empty());
        prop_assert!(p.dedup_keys.iter().all(|k| k.len() < 300));
        prop_assert_eq!(parse(event).ok(), Some(p));
    }
    Ok(())
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(
        source in any_source(),
        route in any_route(),
        headers in any_content_type(),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let event = Event { seq: Seq(1), received_at: Micros(0), source, route, headers, body, verification: Verification::Internal };
        check(&event)?;
    }

    #[test]
    fn parse_never_panics_on_arbitrary_json_in_envelope_positions(
        source in any_source(),
        route in any_route(),
        headers in any_content_type(),
        ty in prop::sample::select(TYPES),
        id in any_json(),
        resource in any_json(),
        context in any_json(),
        shape in 0u8..4,
    ) {
        let body = match shape {
            0 => json!({"id": id, "type": ty, "createdAt": context, "data": {"object": resource}}),
            1 => json!({"id": id, "type": ty, "data": {"resource": resource, "context": context}}),
            2 => json!({"event": ty, "id": id, "data": resource, "triggered_at": context}),
            _ => resource,
        };
        let event = Event { seq: Seq(1), received_at: Micros(0), source, route, headers, body: serde_json::to_vec(&body).unwrap(), verification: Verification::Internal };
        check(&event)?;
    }

    #[test]
    fn parse_never_panics_on_arbitrary_twilio_forms(
        route in any_route(),
        fields in prop::collection::vec((prop::sample::select(FORM_FIELDS), ".{0,20}"), 0..12),
    ) {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let event = Event { seq: Seq(1), received_at: Micros(0), source: Source::Twilio, route, headers: vec![], body: body.into_bytes(), verification: Verification::Internal };
        check(&event)?;
    }
}
