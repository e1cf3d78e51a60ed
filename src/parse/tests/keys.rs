//! Dedup keys: a retry collides with its original, a backfilled copy with its webhook twin,
//! two different facts never; malformed records are parse errors; kinds round-trip.

use super::*;

#[test]
fn a_quo_retry_with_other_signature_headers_has_the_same_keys() {
    for name in [
        "openphone/legacy_message_received_v4",
        "openphone/standard_message_received",
        "openphone/legacy_contact_updated",
    ] {
        let f = fixture(name);
        let first = fixture_event(&f);
        let mut retry = first.clone();
        retry.seq = Seq(99);
        retry.received_at = Micros(3_600_000_000);
        retry.headers = vec![
            ("content-type".into(), "application/json".into()),
            (
                "openphone-signature".into(),
                "hmac;1;1776182999999;AAAA".into(),
            ),
            ("webhook-id".into(), "msg_other".into()),
            ("webhook-timestamp".into(), "1776999999".into()),
            ("webhook-signature".into(), "v1,BBBB".into()),
        ];
        let a = parse(&first).unwrap();
        let b = parse(&retry).unwrap();
        assert_eq!(a.dedup_keys, b.dedup_keys, "{name}");
        assert!(a.dedup_keys[0].starts_with("openphone:evt:EV"), "{name}");
    }
}

/// The resource of a Quo webhook fixture, as the REST API would return it.
fn quo_resource(name: &str) -> Value {
    let body: Value = serde_json::from_str(&fixture(name).body).unwrap();
    let data = &body["data"];
    if data["object"].is_object() {
        data["object"].clone()
    } else {
        data["resource"].clone()
    }
}

#[test]
fn a_backfilled_quo_resource_shares_only_the_twin_key_with_its_webhook() {
    for (name, route) in [
        (
            "openphone/legacy_message_received_v4",
            "/v1/messages/AC165e913969111f4e9211018fb2e56a9c",
        ),
        (
            "openphone/standard_message_received",
            "/v1/messages/AC336babd1ffc3abcf03fe4b1393a1ab56",
        ),
        (
            "openphone/legacy_message_delivered_app_v2",
            "/v1/messages/ACc46d3ada5dbc6203e76397f7d3c34148",
        ),
        (
            "openphone/legacy_call_completed_v4",
            "/v1/calls/AC09d6edecac0a08d93cd70e6424fa7197",
        ),
        (
            "openphone/standard_call_summary_completed",
            "/v1/call-summaries/ACf02617bb9db18ee6478436ea8c03c663",
        ),
        (
            "openphone/legacy_call_transcript_completed_type_calltranscript",
            "/v1/call-transcripts/AC09d6edecac0a08d93cd70e6424fa7197",
        ),
    ] {
        let webhook = parse_fixture(name);
        let backfill = parse(&json_ev(Source::BackfillQuo, route, &quo_resource(name))).unwrap();
        assert_eq!(backfill.kind, webhook.kind, "{name}");
        assert_eq!(identity(&backfill.data), identity(&webhook.data), "{name}");
        if name.contains("legacy") {
            // Same resource, same fields (the 2026 shape adds context fields to the webhook).
            assert_eq!(backfill.data, webhook.data, "{name}");
        }
        assert_eq!(
            backfill.dedup_keys.len(),
            1,
            "{name}: a resource has no envelope"
        );
        let twin = format!(
            "openphone:{}:{}",
            webhook.kind.as_str(),
            identity(&webhook.data).0
        );
        assert_eq!(shared(&backfill, &webhook), vec![&twin], "{name}");
    }
}

#[test]
fn a_backfilled_quo_resource_in_a_transient_state_has_its_own_key() {
    let sent = json!({"id": "ACout", "from": "+15555550100", "to": ["+15555550123"],
        "text": "on my way", "direction": "outgoing", "status": "sent",
        "createdAt": "2026-04-14T16:03:02.880Z"});
    let p = parse(&json_ev(Source::BackfillQuo, "/v1/messages/ACout", &sent)).unwrap();
    assert_eq!(p.kind, Kind::MessageSent);
    assert_eq!(p.dedup_keys, vec!["openphone:message.sent:ACout:sent"]);
    assert!(p.occurred_at.is_some());

    // The single-fetch wrapper and a route-only id are tolerated.
    let wrapped = json!({"data": {"direction": "incoming", "text": "hi", "from": "+1555"}});
    let p = parse(&json_ev(Source::BackfillQuo, "/v1/messages/ACin", &wrapped)).unwrap();
    assert_eq!(p.kind, Kind::MessageReceived);
    assert_eq!(p.dedup_keys, vec!["openphone:message.received:ACin"]);

    let ringing = json!({"id": "ACc", "direction": "incoming", "status": "ringing",
        "completedAt": null});
    let p = parse(&json_ev(Source::BackfillQuo, "/v1/calls/ACc", &ringing)).unwrap();
    assert_eq!(p.kind, Kind::CallStatus);

    let pending = json!({"callId": "ACc", "status": "in-progress", "summary": []});
    let p = parse(&json_ev(
        Source::BackfillQuo,
        "/v1/call-summaries/ACc",
        &pending,
    ))
    .unwrap();
    assert_eq!(p.kind, Kind::Unknown("call.summary.in-progress".into()));
    assert!(matches!(p.data, Data::CallSummary(_)));
    assert_eq!(
        p.dedup_keys,
        vec!["openphone:call.summary.in-progress:ACc:in-progress"]
    );
}

/// A Twilio `Messages.json` item for the inbound `sms_inbound` fixture.
fn twilio_message_resource(status: &str, direction: &str) -> Value {
    json!({"account_sid": "ACe2250cadb2059f451a6f507d4c388012", "api_version": "2010-04-01",
        "body": "Hola!", "date_created": "Tue, 14 Apr 2026 20:03:00 +0000",
        "date_sent": "Tue, 14 Apr 2026 20:03:00 +0000", "date_updated": "Tue, 14 Apr 2026 20:03:01 +0000",
        "direction": direction, "error_code": null, "error_message": null,
        "from": "+15555550123", "messaging_service_sid": "MG927471329fe97b252d7575f32318f757",
        "num_media": "0", "num_segments": "1", "price": null,
        "sid": "SM485d0e8848222369e9f2e13c7b92ab65", "status": status, "to": "+15555550142",
        "uri": "/2010-04-01/Accounts/ACe2250cadb2059f451a6f507d4c388012/Messages/SM485d0e8848222369e9f2e13c7b92ab65.json"})
}

#[test]
fn a_backfilled_twilio_message_shares_the_received_key_with_the_inbound_sms_webhook() {
    let webhook = parse_fixture("twilio/sms_inbound");
    for route in [
        "/2010-04-01/Messages/SM485d0e8848222369e9f2e13c7b92ab65",
        "/2010-04-01/Accounts/ACe2250cadb2059f451a6f507d4c388012/Messages/SM485d0e8848222369e9f2e13c7b92ab65.json",
    ] {
        let resource = twilio_message_resource("received", "inbound");
        let backfill = parse(&json_ev(Source::BackfillTwilio, route, &resource)).unwrap();
        assert_eq!(backfill.kind, Kind::MessageReceived);
        assert_eq!(
            backfill.occurred_at.unwrap().to_rfc3339(),
            "2026-04-14T20:03:00+00:00"
        );
        assert_eq!(
            shared(&backfill, &webhook),
            vec!["twilio:msg:SM485d0e8848222369e9f2e13c7b92ab65:received"]
        );
    }
}

#[test]
fn a_backfilled_twilio_outbound_message_and_call_share_their_twin_keys() {
    let status = parse_fixture("twilio/sms_status_delivered");
    let mut resource = twilio_message_resource("delivered", "outbound-api");
    resource["sid"] = json!("SM083749ab1ca7bde57a26c7746622caf6");
    let backfill = parse(&json_ev(
        Source::BackfillTwilio,
        "/2010-04-01/Messages/SM083749ab1ca7bde57a26c7746622caf6",
        &resource,
    ))
    .unwrap();
    assert_eq!(backfill.kind, Kind::MessageDelivered);
    assert_eq!(
        shared(&backfill, &status),
        vec!["twilio:msg:SM083749ab1ca7bde57a26c7746622caf6:delivered"]
    );

    let call_status = parse_fixture("twilio/voice_status_completed_secondary_token");
    let call = json!({"sid": TWILIO_CALL, "status": "completed", "direction": "inbound",
        "from": "+15555550123", "to": "+15555550142", "duration": "42",
        "start_time": "Tue, 14 Apr 2026 20:00:05 +0000", "end_time": "Tue, 14 Apr 2026 20:00:47 +0000",
        "date_created": "Tue, 14 Apr 2026 20:00:01 +0000"});
    let backfill = parse(&json_ev(
        Source::BackfillTwilio,
        &format!("/2010-04-01/Calls/{TWILIO_CALL}"),
        &call,
    ))
    .unwrap();
    assert_eq!(backfill.kind, Kind::CallCompleted);
    let Data::Call(c) = &backfill.data else {
        panic!("not a call")
    };
    assert_eq!(c.duration_secs, Some(42));
    assert_eq!(c.completed_at, call_status.occurred_at);
    assert_eq!(
        shared(&backfill, &call_status),
        vec![&format!("twilio:call:{TWILIO_CALL}:completed")]
    );

    // The inbound ringing request shares nothing with the completed call.
    assert!(shared(&parse_fixture("twilio/voice_inbound"), &call_status).is_empty());
}

#[test]
fn a_twilio_retry_with_the_same_idempotency_token_collides() {
    let f = fixture("twilio/sms_inbound");
    let first = fixture_event(&f);
    let mut retry = first.clone();
    retry.seq = Seq(2);
    retry.headers.retain(|(k, _)| k != "x-twilio-signature");
    let a = parse(&first).unwrap();
    let b = parse(&retry).unwrap();
    let token = "twilio:idem:3a450f79-96ff-e130-4092-67ce94393208".to_owned();
    assert!(a.dedup_keys.contains(&token));
    assert_eq!(a.dedup_keys, b.dedup_keys);

    // Two different status callbacks never share the token key, even for one call.
    let ringing = form_ev(
        "/voice/status",
        &[("i-twilio-idempotency-token", "tok-1")],
        &[
            ("CallSid", "CA1"),
            ("CallStatus", "ringing"),
            ("SequenceNumber", "1"),
        ],
    );
    let answered = form_ev(
        "/voice/status",
        &[("i-twilio-idempotency-token", "tok-2")],
        &[
            ("CallSid", "CA1"),
            ("CallStatus", "in-progress"),
            ("SequenceNumber", "2"),
        ],
    );
    let (r, a) = (parse(&ringing).unwrap(), parse(&answered).unwrap());
    assert_eq!(r.kind, Kind::CallStatus);
    assert_eq!(
        r.dedup_keys,
        vec!["twilio:idem:tok-1", "twilio:call:CA1:ringing:1"]
    );
    assert!(shared(&r, &a).is_empty());
}

#[test]
fn two_contact_updates_for_the_same_contact_share_no_key() {
    let f = fixture("openphone/legacy_contact_updated");
    let first = fixture_event(&f);
    let mut body: Value = serde_json::from_str(&f.body).unwrap();
    body["id"] = json!("EVsecondupdate");
    body["data"]["object"]["company"] = json!("Whitfield Homes");
    let second = json_ev(Source::Quo, "/webhook/openphone", &body);
    let (a, b) = (parse(&first).unwrap(), parse(&second).unwrap());
    assert_eq!(a.kind, Kind::ContactUpdated);
    assert_eq!(identity(&a.data).0, identity(&b.data).0);
    assert!(
        shared(&a, &b).is_empty(),
        "{:?} / {:?}",
        a.dedup_keys,
        b.dedup_keys
    );

    // A deletion, by contrast, happens once: its twin key is there.
    let deleted = parse_fixture("openphone/legacy_contact_deleted");
    assert!(deleted
        .dedup_keys
        .contains(&"openphone:contact.deleted:CT30179080c550ebc190860c05".to_owned()));
}

#[test]
fn a_delivered_status_and_a_received_event_for_the_same_message_share_no_key() {
    let received = form_ev(
        "/sms",
        &[],
        &[
            ("MessageSid", "SM1"),
            ("From", "+15555550123"),
            ("To", "+15555550142"),
            ("Body", "hi"),
        ],
    );
    let delivered = form_ev(
        "/sms/status",
        &[],
        &[("MessageSid", "SM1"), ("MessageStatus", "delivered")],
    );
    let (r, d) = (parse(&received).unwrap(), parse(&delivered).unwrap());
    assert_eq!(r.dedup_keys, vec!["twilio:msg:SM1:received"]);
    assert_eq!(d.dedup_keys, vec!["twilio:msg:SM1:delivered"]);
    assert!(shared(&r, &d).is_empty());

    let quo = |ty: &str, evt: &str| {
        json!({"id": evt, "type": ty, "createdAt": "2026-04-14T16:02:11.557Z",
               "data": {"object": {"id": "ACm", "direction": "incoming", "from": "+1555"}}})
    };
    let r = parse(&json_ev(
        Source::Quo,
        "/webhook/openphone",
        &quo("message.received", "EV1"),
    ))
    .unwrap();
    let d = parse(&json_ev(
        Source::Quo,
        "/webhook/openphone",
        &quo("message.delivered", "EV2"),
    ))
    .unwrap();
    assert!(shared(&r, &d).is_empty());
}

#[test]
fn an_unknown_quo_type_is_kept_as_unknown_with_a_body_independent_envelope_key() {
    let body = |emoji: &str| {
        json!({"id": "EVreact1", "object": "event", "apiVersion": "v4",
               "createdAt": "2026-04-14T16:02:11.557Z", "type": "message.reacted",
               "data": {"object": {"id": "ACr", "reaction": emoji}}})
    };
    let a = parse(&json_ev(Source::Quo, "/webhook/openphone", &body("👍"))).unwrap();
    let b = parse(&json_ev(Source::Quo, "/webhook/quo", &body("❤️"))).unwrap();
    assert_eq!(a.kind, Kind::Unknown("message.reacted".into()));
    assert_eq!(a.kind.as_str(), "message.reacted");
    assert_eq!(a.data, Data::Other);
    assert_eq!(a.dedup_keys, vec!["openphone:evt:EVreact1"]);
    assert_eq!(a.dedup_keys, b.dedup_keys);

    // Without an envelope id, the bytes are the key: an identical retry still collides.
    let bare = json!({"type": "message.reacted"});
    let c = parse(&json_ev(Source::Quo, "/webhook/openphone", &bare)).unwrap();
    let d = parse(&json_ev(Source::Quo, "/webhook/openphone", &bare)).unwrap();
    assert!(c.dedup_keys[0].starts_with("body:openphone:"));
    assert_eq!(c.dedup_keys, d.dedup_keys);
}

#[test]
fn malformed_records_are_parse_errors() {
    let not_json = ev(
        Source::Quo,
        "/webhook/openphone",
        &[],
        b"id=EV1&type=message.received",
    );
    assert!(matches!(parse(&not_json), Err(ParseError::NotJson(_))));

    let array = json_ev(Source::Quo, "/webhook/openphone", &json!([1, 2]));
    assert_eq!(parse(&array), Err(ParseError::NotAnObject));

    let no_type = json_ev(
        Source::Quo,
        "/webhook/openphone",
        &json!({"id": "EV1", "data": {}}),
    );
    assert_eq!(
        parse(&no_type),
        Err(ParseError::MissingField("type".into()))
    );

    let no_id = json_ev(
        Source::Quo,
        "/webhook/openphone",
        &json!({"id": "EV1", "type": "message.received", "data": {"object": {"text": "hi"}}}),
    );
    assert_eq!(
        parse(&no_id),
        Err(ParseError::MissingField("data.object.id".into()))
    );

    let no_data = json_ev(
        Source::Quo,
        "/webhook/openphone",
        &json!({"id": "EV1", "type": "call.completed"}),
    );
    assert_eq!(
        parse(&no_data),
        Err(ParseError::MissingField("data.object.id".into()))
    );
    let dated_no_id = json_ev(
        Source::Quo,
        "/webhook/quo",
        &json!({"id": "EV1", "apiVersion": "2026-03-30", "type": "call.completed",
                "data": {"context": {"id": "not the call"}}}),
    );
    assert_eq!(
        parse(&dated_no_id),
        Err(ParseError::MissingField("data.resource.id".into()))
    );

    let no_sid = form_ev("/sms", &[], &[("From", "+15555550123"), ("Body", "hi")]);
    assert_eq!(
        parse(&no_sid),
        Err(ParseError::MissingField("MessageSid".into()))
    );

    let no_call_sid = form_ev("/voice/status", &[], &[("CallStatus", "completed")]);
    assert_eq!(
        parse(&no_call_sid),
        Err(ParseError::MissingField("CallSid".into()))
    );

    let bad_twilio_json = ev(
        Source::Twilio,
        "/sms/status?bodySHA256=00",
        &[("content-type", "application/json")],
        b"{not json",
    );
    assert!(matches!(
        parse(&bad_twilio_json),
        Err(ParseError::NotJson(_))
    ));

    let backfill_without_sid = json_ev(
        Source::BackfillTwilio,
        "/2010-04-01/Calls",
        &json!({"status": "completed"}),
    );
    assert_eq!(
        parse(&backfill_without_sid),
        Err(ParseError::MissingField("sid".into()))
    );

    let salesmsg_without_event =
        json_ev(Source::SalesMsg, "/webhook/salesmsg", &json!({"data": {}}));
    assert_eq!(
        parse(&salesmsg_without_event),
        Err(ParseError::MissingField("event".into()))
    );
}

#[test]
fn twilio_legacy_sid_names_and_json_bodies_are_read_like_forms() {
    let legacy = form_ev(
        "/sms/webhook/",
        &[],
        &[("SmsSid", "SMold"), ("Body", ""), ("From", "+1")],
    );
    let p = parse(&legacy).unwrap();
    assert_eq!(identity(&p.data).0, "SMold");
    assert_eq!(identity(&p.data).3.as_deref(), Some(""));

    let json_status = json_ev(
        Source::Twilio,
        "/sms/status?bodySHA256=ab",
        &json!({"MessageSid": "SMj", "MessageStatus": "Sent", "ErrorCode": 0}),
    );
    let p = parse(&json_status).unwrap();
    assert_eq!(p.kind, Kind::MessageSent);
    assert_eq!(p.dedup_keys, vec!["twilio:msg:SMj:sent"]);
    let Data::Message(m) = p.data else {
        panic!("not a message")
    };
    assert_eq!(m.error_code.as_deref(), Some("0"));

    let queued = form_ev(
        "/sms/status",
        &[],
        &[("MessageSid", "SMq"), ("SmsStatus", "queued")],
    );
    assert_eq!(parse(&queued).unwrap().kind, Kind::MessageStatus);
    let failed = form_ev(
        "/sms/status",
        &[],
        &[("MessageSid", "SMf"), ("MessageStatus", "failed")],
    );
    assert_eq!(parse(&failed).unwrap().kind, Kind::MessageFailed);
}

#[test]
fn twilio_recording_and_transcription_keys_carry_their_sid_and_status() {
    let rec = parse_fixture("twilio/voice_recording_complete_port_443");
    assert_eq!(
        rec.dedup_keys,
        vec!["twilio:rec:RE41a49ceffd65323ebbd3cdb37fad30cf:completed"]
    );
    let tr = parse_fixture("twilio/voice_transcription");
    assert_eq!(
        tr.dedup_keys,
        vec!["twilio:tr:TR3d7d2ef4ec299c599530cb9396abd155:completed"]
    );
    let status = parse_fixture("twilio/voice_status_completed_secondary_token");
    assert_eq!(
        status.dedup_keys,
        vec![
            "twilio:idem:9df59282-08eb-66b8-0eb8-0034d96c133b".to_owned(),
            format!("twilio:call:{TWILIO_CALL}:completed:0"),
            format!("twilio:call:{TWILIO_CALL}:completed"),
        ]
    );
    let ringing = parse_fixture("twilio/voice_inbound");
    assert_eq!(
        ringing.dedup_keys,
        vec![
            "twilio:idem:2101661a-58d7-7c7e-2189-0adc78b94ef3".to_owned(),
            format!("twilio:call:{TWILIO_CALL}:ringing:-"),
        ]
    );
}

#[test]
fn salesmsg_message_keys_name_the_event_and_unknown_events_pass_through() {
    let p = parse_fixture("salesmsg/message_received");
    assert_eq!(
        p.dedup_keys,
        vec!["salesmsg:message.received:48213377:received"]
    );
    assert_eq!(
        p.occurred_at.unwrap().to_rfc3339(),
        "2026-04-15T21:04:17+00:00"
    );
    let Data::Message(m) = &p.data else {
        panic!("not a message")
    };
    assert_eq!(m.conversation_id.as_deref(), Some("9917254"));
    assert_eq!(m.contact_ids, vec!["5561829"]);

    let other = json!({"type": "contact.tagged", "data": {"id": 7}});
    let q = parse(&json_ev(
        Source::SalesMsg,
        "/webhook/salesmsg?secret=REDACTED",
        &other,
    ))
    .unwrap();
    assert_eq!(q.kind, Kind::Unknown("contact.tagged".into()));
    assert!(q.dedup_keys[0].starts_with("body:salesmsg:"));

    let delivered =
        json!({"event": "message.delivered", "data": {"id": 48213377, "status": "delivered"}});
    let d = parse(&json_ev(Source::SalesMsg, "/webhook/salesmsg", &delivered)).unwrap();
    assert_eq!(d.kind, Kind::MessageDelivered);
    assert!(shared(&p, &d).is_empty());
}

#[test]
fn unknown_routes_and_hooklog_records_are_unknown_with_a_body_key() {
    let a = ev(Source::Twilio, "/voice/other", &[], b"CallSid=CA1");
    let p = parse(&a).unwrap();
    assert_eq!(p.kind, Kind::Unknown("/voice/other".into()));
    assert_eq!(p.provider, Some(Provider::Twilio));
    assert_eq!(p.data, Data::Other);

    let out = ev(Source::Outbound, "/v1/messages", &[], b"{\"to\":\"+1\"}");
    let p = parse(&out).unwrap();
    assert_eq!(p.kind, Kind::Unknown("outbound".into()));
    assert_eq!(p.provider, None);
    assert_eq!(p.provider_name(), "hooklog");
    let internal = parse(&ev(Source::Internal, "/optout", &[], b"x")).unwrap();
    assert_eq!(internal.kind.as_str(), "internal");

    // The same bytes on another route or from another source are another event.
    let other_route = parse(&ev(Source::Outbound, "/v1/other", &[], b"{\"to\":\"+1\"}")).unwrap();
    assert_ne!(p.dedup_keys, other_route.dedup_keys);
    assert_eq!(p.dedup_keys, parse(&out).unwrap().dedup_keys);

    let backfill = json_ev(
        Source::BackfillQuo,
        "/v1/contacts/CT1",
        &json!({"id": "CT1"}),
    );
    assert_eq!(
        parse(&backfill).unwrap().kind,
        Kind::Unknown("/v1/contacts/CT1".into())
    );
}

#[test]
fn key_components_that_are_not_plain_ids_are_hashed() {
    assert_eq!(part("SM123-abc_.+@"), "SM123-abc_.+@");
    let colon = part("EV1:twilio:idem");
    assert!(colon.starts_with('~') && !colon.contains(':'));
    assert_eq!(colon.len(), 65);
    assert!(part(&"a".repeat(129)).starts_with('~'));
    assert!(part("").starts_with('~'));

    let weird = json!({"id": "EV x:y", "type": "contact.updated",
        "data": {"object": {"id": "CT1"}}});
    let p = parse(&json_ev(Source::Quo, "/webhook/openphone", &weird)).unwrap();
    assert_eq!(p.dedup_keys.len(), 1);
    assert_eq!(p.dedup_keys[0].matches(':').count(), 2);
}

#[test]
fn kind_names_round_trip() {
    use Kind::*;
    for kind in [
        MessageReceived,
        MessageDelivered,
        MessageSent,
        MessageFailed,
        MessageStatus,
        CallRinging,
        CallCompleted,
        CallRecordingCompleted,
        CallStatus,
        CallSummaryCompleted,
        CallTranscriptCompleted,
        ContactUpdated,
        ContactDeleted,
        RecordingCompleted,
        TranscriptionCompleted,
        Unknown("message.reacted".into()),
    ] {
        assert_eq!(Kind::from_name(kind.as_str()), kind);
        assert_eq!(serde_json::to_value(&kind).unwrap(), json!(kind.as_str()));
    }
}
