//! Tests of the row projection: what each fixture and record becomes, the merge ranks, the
//! outbound path's rows, and that nothing of a payload is lost or doubled.

use super::*;
use crate::event::{Micros, Seq, Verification};

fn event(seq: u64, source: Source, route: &str, ct: Option<&str>, body: &[u8]) -> Event {
    Event {
        seq: Seq(seq),
        received_at: Micros(1_776_000_000_000_000),
        source,
        route: route.into(),
        headers: ct
            .map(|c| vec![("content-type".to_owned(), c.to_owned())])
            .unwrap_or_default(),
        body: body.to_vec(),
        verification: Verification::Internal,
    }
}

fn value(doc: JsonDoc) -> Value {
    match doc {
        JsonDoc::Value(v) => v,
        JsonDoc::Raw(r) => serde_json::from_str(r.get()).unwrap(),
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

#[test]
fn a_form_body_becomes_an_object_and_a_repeated_field_an_array() {
    let e = event(1, Source::Twilio, "/sms", Some(FORM), b"A=1&B=x+y&A=2");
    assert_eq!(
        value(payload(&e)),
        serde_json::json!({"A": ["1", "2"], "B": "x y"})
    );
}

#[test]
fn a_json_body_is_sent_as_written() {
    let body = br#"{ "id": "EV1",  "n": 1.50 }"#;
    let e = event(
        1,
        Source::Quo,
        "/webhook/quo",
        Some("application/json"),
        body,
    );
    match payload(&e) {
        JsonDoc::Raw(r) => assert_eq!(r.get(), r#"{ "id": "EV1",  "n": 1.50 }"#),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bodies_jsonb_would_refuse_are_kept_as_base64() {
    for body in [
        &br#"{"text": "a\u0000b"}"#[..],
        br#"{"text": "\ud800 alone"}"#,
        b"\xff\xfe not utf-8",
        b"plain text",
    ] {
        let e = event(
            1,
            Source::SalesMsg,
            "/webhook/salesmsg",
            Some("application/json"),
            body,
        );
        let v = value(payload(&e));
        let b64 = v["body_base64"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            body
        );
    }
    // A valid surrogate pair is text like any other.
    let e = event(1, Source::SalesMsg, "/x", None, br#"{"t": "\ud83c\udfe0"}"#);
    assert_eq!(value(payload(&e))["t"], "🏠");
}

#[test]
fn statuses_rank_in_the_order_a_resource_lives_them() {
    let order = ["queued", "sending", "sent", "delivered", "read"];
    for pair in order.windows(2) {
        assert!(
            message_rank(Some(pair[0])) < message_rank(Some(pair[1])),
            "{pair:?}"
        );
    }
    assert!(message_rank(None) < message_rank(Some("accepted")));
    assert!(
        call_rank(Some("ringing"), &Kind::CallStatus)
            < call_rank(Some("in-progress"), &Kind::CallStatus)
    );
    assert!(
        call_rank(Some("in-progress"), &Kind::CallStatus)
            < call_rank(Some("no-answer"), &Kind::CallStatus)
    );
    assert_eq!(call_rank(None, &Kind::CallCompleted), 4);
}

#[test]
fn a_duplicate_and_an_unreadable_record_give_an_omni_events_row_only() {
    let ttl = TimeDelta::hours(72);
    let sms = event(
        7,
        Source::Twilio,
        "/sms",
        Some(FORM),
        b"MessageSid=SM1&SmsStatus=received&From=%2B15555550123&To=%2B15555550100&Body=hi",
    );
    let parsed = parse::parse(&sms);
    let original = project(&sms, parsed.as_ref(), Verdict::Original, ttl);
    let tables: Vec<&str> = original.iter().map(|r| r.table.name).collect();
    assert_eq!(
        tables,
        ["omni_events", "processed_webhook_events", "twilio_sms"]
    );
    let dup = project(&sms, parsed.as_ref(), Verdict::Duplicate { of: 3 }, ttl);
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0].get("duplicate_of"), Some(&Cell::Int8(Some(3))));
    assert_eq!(dup[0].get("duplicate"), Some(&Cell::Bool(Some(true))));

    let bad = event(
        8,
        Source::Quo,
        "/webhook/quo",
        Some("application/json"),
        b"[1]",
    );
    let rows = project(&bad, parse::parse(&bad).as_ref(), Verdict::Original, ttl);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("kind"), Some(&text(UNPARSED.to_owned())));
    assert_eq!(rows[0].get("provider"), Some(&text("openphone".to_owned())));
    assert!(matches!(
        rows[0].get("parse_error"),
        Some(Cell::Text(Some(_)))
    ));
    let key = format!(
        "body:unparsed:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"[1]"))
    );
    assert_eq!(rows[0].get("dedup_key"), Some(&text(key)));
}

#[test]
fn nul_characters_never_reach_a_text_column() {
    let sms = event(
        1,
        Source::Twilio,
        "/sms",
        Some(FORM),
        b"MessageSid=SM1&SmsStatus=received&From=%2B1555&To=%2B1556&Body=a%00b",
    );
    let rows = project(
        &sms,
        parse::parse(&sms).as_ref(),
        Verdict::Original,
        TimeDelta::hours(1),
    );
    let sms_row = rows.iter().find(|r| r.table.name == "twilio_sms").unwrap();
    assert_eq!(sms_row.get("body"), Some(&text("a\u{fffd}b".to_owned())));
    assert!(value(payload(&sms)).get("body_base64").is_some());
}

mod outbound_path {
    use super::*;
    use crate::consumers::outbound::{
        GateDecision, GateVerdict, MessageRequest, SendAttempt, SendResult, SendStatus, Status,
    };
    use crate::gates::{Reason, ReasonCode};
    use crate::provider::SendProvider;

    const ID: &str = "msg_0000000000001000000000000a";

    fn request() -> OutboundRecord {
        OutboundRecord::Request(MessageRequest {
            id: MessageId(ID.into()),
            idempotency_key: Some("k1".into()),
            from: "quo-main".into(),
            provider: None,
            to: "(212) 555-0100".into(),
            content: "a\0b".into(),
            requested_at: "2026-11-30T12:00:00Z".into(),
            requested_by: None,
        })
    }

    fn allow() -> OutboundRecord {
        OutboundRecord::Decision(GateDecision {
            id: MessageId(ID.into()),
            verdict: GateVerdict::Allow,
            reasons: vec![],
            hold_until: None,
            line_id: Some("quo-main".into()),
            from_number: Some("+12125550199".into()),
            provider: Some(SendProvider::Quo),
            to: Some("+12125550100".into()),
            evaluation: 1,
            decided_at: "2026-11-30T12:00:01Z".into(),
        })
    }

    fn attempt() -> OutboundRecord {
        OutboundRecord::Attempt(SendAttempt {
            id: MessageId(ID.into()),
            attempt: 1,
            provider: SendProvider::Quo,
            from: "+12125550199".into(),
            to: "+12125550100".into(),
            redelivery: false,
            at: "2026-11-30T12:00:02Z".into(),
        })
    }

    fn failed() -> OutboundRecord {
        OutboundRecord::Result(SendResult {
            id: MessageId(ID.into()),
            attempt: 1,
            status: SendStatus::Failed,
            outcome: "rejected".into(),
            provider_id: None,
            code: Some("21610".into()),
            error: Some("unsubscribed recipient".into()),
            reasons: vec![Reason::new(ReasonCode::RecipientOptedOut, "opted out")],
            tries: 1,
            at: "2026-11-30T12:00:03Z".into(),
        })
    }

    #[test]
    fn message_records_fold_into_the_stored_message_and_a_second_pass_changes_nothing() {
        let records = [request(), allow(), attempt(), failed()];
        let batch: Vec<(u64, &OutboundRecord)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64 + 5, r))
            .collect();
        let mut stored = HashMap::new();
        // In two batches, the second starting from the stored message.
        assert_eq!(fold_messages(&mut stored, &batch[..2]).len(), 1);
        let changed = fold_messages(&mut stored, &batch[2..]);
        assert_eq!(changed.into_iter().collect::<Vec<_>>(), [ID]);
        let m = &stored[ID];
        assert_eq!(m.status, Status::Failed);
        assert_eq!((m.request_seq, m.last_seq, m.history.len()), (5, 8, 4));
        // The same records again (a redrive, a rewind): nothing changes, nothing is written.
        let before = m.clone();
        assert!(fold_messages(&mut stored, &batch).is_empty());
        assert_eq!(stored[ID], before);
    }

    #[test]
    fn a_record_for_a_message_never_requested_is_skipped() {
        let records = [allow(), attempt()];
        let batch: Vec<(u64, &OutboundRecord)> = vec![(1, &records[0]), (2, &records[1])];
        let mut stored = HashMap::new();
        assert!(fold_messages(&mut stored, &batch).is_empty());
        assert!(stored.is_empty());
    }

    #[test]
    fn a_message_row_mirrors_the_message_and_carries_it_whole_in_state() {
        let records = [request(), allow(), attempt(), failed()];
        let batch: Vec<(u64, &OutboundRecord)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64 + 1, r))
            .collect();
        let mut stored = HashMap::new();
        fold_messages(&mut stored, &batch);
        let row = message_row(&stored[ID]);
        assert_eq!(row.get("status"), Some(&text("failed".to_owned())));
        assert_eq!(row.get("provider"), Some(&text("openphone".to_owned())));
        assert_eq!(
            row.get("to_number"),
            Some(&text("(212) 555-0100".to_owned()))
        );
        assert_eq!(row.get("to_e164"), Some(&text("+12125550100".to_owned())));
        assert_eq!(row.get("content"), Some(&text("a\u{fffd}b".to_owned())));
        assert_eq!(row.get("attempts"), Some(&Cell::Int4(Some(1))));
        assert_eq!(
            row.get("requested_at"),
            Some(&ts(rfc3339("2026-11-30T12:00:00Z")))
        );
        let Some(Cell::Json(Some(reasons))) = row.get("reasons") else {
            panic!("reasons")
        };
        assert_eq!(
            value(reasons.clone()),
            serde_json::json!([{"code": "recipient_opted_out", "message": "opted out"}])
        );
        let Some(Cell::Json(Some(state))) = row.get("state") else {
            panic!("state")
        };
        // The state folds on: it reads back as the message (NUL aside, which jsonb refuses).
        let back: Message = serde_json::from_value(value(state.clone())).unwrap();
        let mut expected = stored[ID].clone();
        expected.content = "a\u{fffd}b".into();
        assert_eq!(back, expected);
    }

    #[test]
    fn dispatch_results_and_line_changes_are_rows_keyed_on_their_record() {
        let d = DispatchResult {
            seq: 7,
            agent: "atlas".into(),
            idempotency_key: "hooklog:7:k".into(),
            kind: "call.completed".into(),
            outcome: "delivered".into(),
            status: Some(200),
            attempts: 2,
            latency_ms: 120,
            opted_out: false,
            redelivery: false,
            error: None,
            at: "2026-11-30T12:00:03Z".into(),
        };
        let row = dispatch_row(9, &d);
        assert_eq!(row.key(), "9");
        assert_eq!(row.get("event_seq"), Some(&int8(7)));
        assert_eq!(row.get("status"), Some(&Cell::Int4(Some(200))));
        let l = LineChange {
            line_id: "quo-main".into(),
            state: "blocked".into(),
            reason: "A2P".into(),
            at: "not a time".into(),
        };
        let row = line_row(11, &l);
        assert_eq!(row.key(), "quo-main");
        assert_eq!(row.get("seq"), Some(&int8(11)));
        assert_eq!(
            row.get("at"),
            Some(&ts(None)),
            "an unreadable stamp is null"
        );
    }
}
