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

mod keys;
mod properties;
