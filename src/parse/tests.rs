//! Tests of [`parse`](super::parse): every accepted fixture, the dedup-key rules, malformed
//! records, and a property test that no input panics.

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::event::{Micros, Seq, Verification};
use crate::fixture::Fixture;
use crate::provider::Provider;
use fields::part;

fn ev(source: Source, route: &str, headers: &[(&str, &str)], body: &[u8]) -> Event {
    Event {
        seq: Seq(1),
        received_at: Micros(0),
        source,
        route: route.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.to_vec(),
        verification: Verification::Internal,
    }
}

fn json_ev(source: Source, route: &str, body: &Value) -> Event {
    ev(
        source,
        route,
        &[("content-type", "application/json")],
        &serde_json::to_vec(body).unwrap(),
    )
}

fn form_ev(route: &str, headers: &[(&str, &str)], fields: &[(&str, &str)]) -> Event {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    ev(Source::Twilio, route, &all, body.as_bytes())
}

fn fixture_event(f: &Fixture) -> Event {
    let source = match f.provider.as_str() {
        "openphone" => Source::Quo,
        "twilio" => Source::Twilio,
        "salesmsg" => Source::SalesMsg,
        other => panic!("unknown fixture provider {other}"),
    };
    Event {
        seq: Seq(1),
        received_at: Micros(0),
        source,
        route: f.path.clone(),
        headers: f
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: f.body.clone().into_bytes(),
        verification: Verification::Internal,
    }
}

fn fixture(name: &str) -> Fixture {
    Fixture::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{name}.json")))
        .unwrap()
}

fn parse_fixture(name: &str) -> Parsed {
    parse(&fixture_event(&fixture(name))).unwrap()
}

fn shared<'a>(a: &'a Parsed, b: &Parsed) -> Vec<&'a String> {
    a.dedup_keys
        .iter()
        .filter(|k| b.dedup_keys.contains(k))
        .collect()
}

/// What a fixture must parse to.
struct Expected {
    name: &'static str,
    kind: Kind,
    id: &'static str,
    from: Option<&'static str>,
    to: &'static [&'static str],
    text: Option<&'static str>,
}

const fn row(
    name: &'static str,
    kind: Kind,
    id: &'static str,
    from: Option<&'static str>,
    to: &'static [&'static str],
    text: Option<&'static str>,
) -> Expected {
    Expected {
        name,
        kind,
        id,
        from,
        to,
        text,
    }
}

const QUO_CALL: &str = "AC09d6edecac0a08d93cd70e6424fa7197";
const QUO_CALL_2026: &str = "ACf02617bb9db18ee6478436ea8c03c663";
const TWILIO_CALL: &str = "CAbf2ae9be61628d764828baeb69319fa4";

/// One row per accepted fixture, written from the fixture bodies.
#[rustfmt::skip]
fn expectations() -> Vec<Expected> {
    use Kind::*;
    vec![
        row("openphone/legacy_call_completed_app_v2_key_b_bare", CallCompleted, "AC7c1897850af5d2d474a88861b7f6838f", Some("+15555550188"), &["+15555550100"], None),
        row("openphone/legacy_call_completed_v4", CallCompleted, QUO_CALL, None, &[], None),
        row("openphone/legacy_call_ringing_v4", CallRinging, QUO_CALL, None, &[], None),
        row("openphone/legacy_call_summary_completed_type_callsummary", CallSummaryCompleted, QUO_CALL, None, &[], None),
        row("openphone/legacy_call_summary_completed_type_dotted", CallSummaryCompleted, QUO_CALL, None, &[], None),
        row("openphone/legacy_call_transcript_completed_type_calltranscript", CallTranscriptCompleted, QUO_CALL, None, &[], None),
        row("openphone/legacy_call_transcript_completed_type_dotted", CallTranscriptCompleted, QUO_CALL, None, &[], None),
        row("openphone/legacy_contact_deleted", ContactDeleted, "CT30179080c550ebc190860c05", None, &[], None),
        row("openphone/legacy_contact_updated", ContactUpdated, "CT3f070a5b4970adc15a2af717", None, &[], None),
        row("openphone/legacy_message_delivered_app_v2", MessageDelivered, "ACc46d3ada5dbc6203e76397f7d3c34148", Some("+15555550100"), &["+15555550147"], Some("Sí, sigue disponible. ¿Quiere verla el jueves?")),
        row("openphone/legacy_message_delivered_v4", MessageDelivered, "ACbc2e6e418177915ed5a49b6c53486dde", Some("+15555550100"), &["+15555550123"], Some("Yes, 3pm works. See you at 412 Alder St.")),
        row("openphone/legacy_message_received_app_v3_pretty", MessageReceived, "AC79d17647320fb0e0e4d49789352dba15", Some("+15555550147"), &["+15555550100"], Some("¿Todavía está disponible? Me interesa la casa 🏡")),
        row("openphone/legacy_message_received_ts_seconds", MessageReceived, "ACdae4f129c55fe1726f24e81b0a0e1d21", Some("+15555550188"), &["+15555550100"], Some("Can you send the rent roll for the duplex?")),
        row("openphone/legacy_message_received_v4", MessageReceived, "AC165e913969111f4e9211018fb2e56a9c", Some("+15555550123"), &["+15555550100"], Some("Is 3pm ok for the walkthrough?")),
        row("openphone/legacy_on_quo_route", MessageReceived, "AC83180ee8b1e31a347cdccbfc359bbd1d", Some("+15555550123"), &["+15555550100"], Some("Running 10 min late, sorry!")),
        row("openphone/standard_call_completed", CallCompleted, QUO_CALL_2026, None, &[], None),
        row("openphone/standard_call_ringing", CallRinging, QUO_CALL_2026, None, &[], None),
        row("openphone/standard_call_summary_completed", CallSummaryCompleted, QUO_CALL_2026, None, &[], None),
        row("openphone/standard_call_transcript_completed", CallTranscriptCompleted, QUO_CALL_2026, None, &[], None),
        row("openphone/standard_contact_deleted", ContactDeleted, "CT30179080c550ebc190860c05", None, &[], None),
        row("openphone/standard_contact_updated", ContactUpdated, "CT44e864358c56d19213c7985e", None, &[], None),
        row("openphone/standard_message_delivered", MessageDelivered, "AC8b3c8ad15e5c1c7774ee9d840a0c1d91", Some("+15555550100"), &["+15555550123"], Some("4pm is fine, see you then.")),
        row("openphone/standard_message_received", MessageReceived, "AC336babd1ffc3abcf03fe4b1393a1ab56", Some("+15555550123"), &["+15555550100"], Some("Can we push the walkthrough to 4pm?")),
        row("openphone/standard_on_openphone_route", MessageReceived, "AC670d70da8516661f2293804028d94077", Some("+15555550188"), &["+15555550100"], Some("Got the rent roll, thanks.")),
        row("twilio/sms_inbound", MessageReceived, "SM485d0e8848222369e9f2e13c7b92ab65", Some("+15555550123"), &["+15555550142"], Some("Hola! ¿Todavía está disponible? 2+2=4 & más 🏠 50% off?")),
        row("twilio/sms_inbound_stop", MessageReceived, "SM67d66fa48ab30bbf7eec656c00d1fb0e", Some("+15555550191"), &["+15555550142"], Some("STOP")),
        row("twilio/sms_status_delivered", MessageDelivered, "SM083749ab1ca7bde57a26c7746622caf6", Some("+15555550142"), &["+15555550123"], None),
        row("twilio/sms_status_json", MessageDelivered, "SMd0da9cb07bf926e15102651492ac7d5b", Some("+15555550142"), &["+15555550167"], None),
        row("twilio/sms_status_undelivered_query", MessageFailed, "SM50649be862d2989a8c9ff50571cadfc3", Some("+15555550142"), &["+15555550123"], None),
        row("twilio/sms_webhook_mms", MessageReceived, "MM8f02b7fc2ba3b6230de6d3c839082142", Some("+15555550167"), &["+15555550142"], Some("Here's the front of the house")),
        row("twilio/voice_inbound", CallRinging, TWILIO_CALL, Some("+15555550123"), &["+15555550142"], None),
        row("twilio/voice_recording_complete_port_443", RecordingCompleted, "RE41a49ceffd65323ebbd3cdb37fad30cf", None, &[], None),
        row("twilio/voice_status_completed_secondary_token", CallCompleted, TWILIO_CALL, Some("+15555550123"), &["+15555550142"], None),
        row("twilio/voice_transcription", TranscriptionCompleted, "TR3d7d2ef4ec299c599530cb9396abd155", None, &[], Some("Hi, this is Dana from \"Maple & Oak\" Realty. Call me back about the listing on 5th & Main, it's urgent.")),
        row("twilio/voice_webhook_inbound_old_url", CallRinging, "CAa636d8ddad5bf9a9e6e99f4442d23f2f", Some("+15555550167"), &["+15555550142"], None),
        row("salesmsg/message_received", MessageReceived, "48213377", Some("+15555550176"), &["+15555550150"], Some("Yes, I'm interested. Can you call me after 5?")),
    ]
}

/// (id, from, to, text) of the typed data, for comparison with an [`Expected`] row.
fn identity(data: &Data) -> (String, Option<String>, Vec<String>, Option<String>) {
    match data {
        Data::Message(m) => (
            m.id.clone(),
            Some(m.from.clone()),
            m.to.clone(),
            m.text.clone(),
        ),
        Data::Call(c) => (
            c.id.clone(),
            c.from.clone(),
            c.to.clone().into_iter().collect(),
            None,
        ),
        Data::CallSummary(s) => (s.call_id.clone(), None, vec![], None),
        Data::CallTranscript(t) => (t.call_id.clone(), None, vec![], None),
        Data::Contact(c) => (c.id.clone(), None, vec![], None),
        Data::Recording(r) => (r.recording_sid.clone(), None, vec![], None),
        Data::Transcription(t) => (t.transcription_sid.clone(), None, vec![], t.text.clone()),
        Data::Other => (String::new(), None, vec![], None),
    }
}

#[test]
fn every_accepted_fixture_parses_to_its_expected_kind_ids_and_text() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let table = expectations();
    let mut seen = BTreeSet::new();
    for (path, f) in Fixture::load_dir(&dir).unwrap() {
        if !f.expect.logged {
            continue;
        }
        let rel = path.strip_prefix(&dir).unwrap().with_extension("");
        let name = rel.to_string_lossy().replace('\\', "/");
        let want = table
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no expectation for accepted fixture {name}: add a row"));
        seen.insert(want.name);

        let event = fixture_event(&f);
        let got = parse(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.kind, want.kind, "{name}");
        assert_eq!(got.provider_name(), f.provider, "{name}");
        let (id, from, to, text) = identity(&got.data);
        assert_eq!(id, want.id, "{name}: id");
        assert_eq!(from.as_deref(), want.from, "{name}: from");
        assert_eq!(to, want.to, "{name}: to");
        assert_eq!(text.as_deref(), want.text, "{name}: text");

        assert!(!got.dedup_keys.is_empty(), "{name}: no dedup key");
        for key in &got.dedup_keys {
            assert!(
                !key.contains(&f.body),
                "{name}: key {key} contains the body"
            );
            assert!(key.len() < 200, "{name}: key {key} is too long");
        }
        if f.provider == "openphone" {
            assert!(
                got.occurred_at.is_some(),
                "{name}: envelope createdAt not read"
            );
        }
        // Serialisable for the consumers that store or dispatch it.
        let as_json = serde_json::to_value(&got).unwrap();
        assert_eq!(as_json["kind"], want.kind.as_str(), "{name}");
    }
    let missing: Vec<_> = table
        .iter()
        .filter(|r| !seen.contains(r.name))
        .map(|r| r.name)
        .collect();
    assert!(
        missing.is_empty(),
        "rows without an accepted fixture: {missing:?}"
    );
}

#[test]
fn fixture_details_beyond_ids_are_read() {
    let Data::Message(stop) = parse_fixture("twilio/sms_inbound_stop").data else {
        panic!("not a message")
    };
    assert_eq!(stop.opt_out_type.as_deref(), Some("STOP"));
    assert_eq!(
        stop.messaging_service_sid.as_deref(),
        Some("MG927471329fe97b252d7575f32318f757")
    );
    assert_eq!(stop.direction, Direction::Inbound);

    let Data::Message(mms) = parse_fixture("twilio/sms_webhook_mms").data else {
        panic!("not a message")
    };
    assert_eq!(mms.media.len(), 1);
    assert!(mms.media[0].contains("/Media/ME"));

    let Data::Message(undelivered) = parse_fixture("twilio/sms_status_undelivered_query").data
    else {
        panic!("not a message")
    };
    assert_eq!(undelivered.error_code.as_deref(), Some("30007"));
    assert_eq!(undelivered.status.as_deref(), Some("undelivered"));
    assert_eq!(undelivered.direction, Direction::Outbound);

    let status = parse_fixture("twilio/voice_status_completed_secondary_token");
    let Data::Call(call) = &status.data else {
        panic!("not a call")
    };
    assert_eq!(call.duration_secs, Some(42));
    assert_eq!(call.sequence_number, Some(0));
    assert_eq!(
        status.occurred_at.unwrap().to_rfc3339(),
        "2026-04-14T20:00:47+00:00"
    );
    assert_eq!(call.completed_at, status.occurred_at);

    let Data::Recording(rec) = parse_fixture("twilio/voice_recording_complete_port_443").data
    else {
        panic!("not a recording")
    };
    assert_eq!(rec.call_sid.as_deref(), Some(TWILIO_CALL));
    assert_eq!(rec.duration_secs, Some(31));
    assert_eq!(rec.status.as_deref(), Some("completed"));

    let Data::Call(v2) = parse_fixture("openphone/legacy_call_completed_app_v2_key_b_bare").data
    else {
        panic!("not a call")
    };
    assert!(v2.recording_url.unwrap().ends_with(".mp3"));
    assert!(v2.voicemail_url.unwrap().contains("/voicemails/"));
    assert_eq!(v2.answered_at, None);

    let Data::Call(v4) = parse_fixture("openphone/legacy_call_completed_v4").data else {
        panic!("not a call")
    };
    assert_eq!(v4.participants, vec!["+15555550123"]);
    assert_eq!(v4.duration_secs, Some(16));
    assert_eq!(v4.line_id.as_deref(), Some("PNTVGxqnqT"));

    let Data::CallTranscript(t) =
        parse_fixture("openphone/standard_call_transcript_completed").data
    else {
        panic!("not a transcript")
    };
    assert_eq!(t.dialogue.len(), 2);
    assert_eq!(t.dialogue[1].user_id.as_deref(), Some("USvhXCvfK7"));
    assert_eq!(t.dialogue[0].start, Some(0.3));
    assert_eq!(t.duration_secs, Some(89));

    let Data::CallSummary(s) = parse_fixture("openphone/standard_call_summary_completed").data
    else {
        panic!("not a summary")
    };
    assert_eq!(s.summary.len(), 2);
    assert_eq!(s.next_steps, vec!["Email Luis a CMA by Friday."]);

    let Data::Contact(c) = parse_fixture("openphone/legacy_contact_updated").data else {
        panic!("not a contact")
    };
    assert_eq!(c.phone_numbers, vec!["+15555550123"]);
    assert_eq!(c.first_name.as_deref(), Some("Dana"));
    assert_eq!(c.company.as_deref(), Some("Maple & Oak Realty"));
}

#[test]
fn the_2026_shape_takes_line_and_user_from_the_context_and_never_a_user_id_as_sender() {
    let Data::Message(m) = parse_fixture("openphone/standard_message_delivered").data else {
        panic!("not a message")
    };
    // context.senderIdentifier is the user id USvhXCvfK7 here: the sender is resource.from.
    assert_eq!(m.from, "+15555550100");
    assert_eq!(m.line_id.as_deref(), Some("PNTVGxqnqT"));
    assert_eq!(m.user_id.as_deref(), Some("USvhXCvfK7"));
    assert_eq!(
        m.conversation_id.as_deref(),
        Some("CN78e44df0dcc378d7268ac3c96e81ea7d")
    );
    assert_eq!(m.contact_ids, vec!["CT3f070a5b4970adc15a2af717"]);

    // Without resource.from, a number in senderIdentifier stands in; a user id does not.
    let body = |sender: &str| {
        json!({"id": "EV1", "apiVersion": "2026-03-30", "type": "message.received",
               "data": {"resource": {"id": "AC1", "text": "hi", "direction": "incoming"},
                        "context": {"senderIdentifier": sender, "phoneNumberId": "PN1"}}})
    };
    let by_number = parse(&json_ev(Source::Quo, "/webhook/quo", &body("+15555550999"))).unwrap();
    let Data::Message(m) = by_number.data else {
        panic!("not a message")
    };
    assert_eq!(m.from, "+15555550999");
    assert_eq!(m.text.as_deref(), Some("hi"));
    assert_eq!(m.line_id.as_deref(), Some("PN1"));
    assert!(m.to.is_empty());
    assert_eq!(m.created_at, None);

    let by_user = parse(&json_ev(Source::Quo, "/webhook/quo", &body("US123"))).unwrap();
    let Data::Message(m) = by_user.data else {
        panic!("not a message")
    };
    assert_eq!(m.from, "");
}

#[test]
fn v4_and_v3_message_shapes_give_the_same_message_fields() {
    let common = json!({"id": "ACsame", "object": "message", "from": "+15555550123",
        "direction": "incoming", "status": "received", "createdAt": "2026-04-14T16:02:11.420Z",
        "userId": "USu", "phoneNumberId": "PNp"});
    let with = |extra: Value| {
        let mut object = common.clone();
        object
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"id": "EVx", "object": "event", "apiVersion": "v4",
               "createdAt": "2026-04-14T16:02:11.557Z", "type": "message.received",
               "data": {"object": object}})
    };
    let v4 = with(json!({"text": "Is 3pm ok?", "to": ["+15555550100"]}));
    let v3 = with(json!({"body": "Is 3pm ok?", "to": "+15555550100"}));
    let a = parse(&json_ev(Source::Quo, "/webhook/openphone", &v4)).unwrap();
    let b = parse(&json_ev(Source::Quo, "/webhook/openphone", &v3)).unwrap();
    assert_eq!(a.data, b.data);
    assert_eq!(a.dedup_keys, b.dedup_keys);

    // A group message: the app shapes comma-join the recipients.
    let group = with(json!({"body": "hi all", "to": "+15555550100, +15555550101 ,+15555550102"}));
    let g = parse(&json_ev(Source::Quo, "/webhook/openphone", &group)).unwrap();
    let Data::Message(m) = g.data else {
        panic!("not a message")
    };
    assert_eq!(m.to, vec!["+15555550100", "+15555550101", "+15555550102"]);
}

#[test]
fn both_summary_and_transcript_type_spellings_give_the_same_kind_and_twin_key() {
    for (short, dotted, kind) in [
        (
            "openphone/legacy_call_summary_completed_type_callsummary",
            "openphone/legacy_call_summary_completed_type_dotted",
            Kind::CallSummaryCompleted,
        ),
        (
            "openphone/legacy_call_transcript_completed_type_calltranscript",
            "openphone/legacy_call_transcript_completed_type_dotted",
            Kind::CallTranscriptCompleted,
        ),
    ] {
        let a = parse_fixture(short);
        let b = parse_fixture(dotted);
        assert_eq!(a.kind, kind);
        assert_eq!(b.kind, kind);
        let twin = format!("openphone:{}:{QUO_CALL}", kind.as_str());
        assert_eq!(shared(&a, &b), vec![&twin]);
    }
}

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

// ---------------------------------------------------------------------------------------------
// Property tests: nothing panics, whatever the record.

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
