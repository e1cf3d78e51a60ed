//! Tests of `crate::consumers::compliance`.

use super::*;
use crate::consumers::dedup::Dedup;
use crate::consumers::testutil::{dump, event, from_fixture, quo_inbound, HOUR};
use crate::event::{Micros, Seq, Verification};
use crate::state::MemState;
use chrono::TimeZone;
use futures_util::FutureExt;

mod order;

fn project(store: &MemState, events: &[Event]) -> Result<(), BatchError> {
    project_alerting(store, events, &Alerter::disabled())
}

/// Lines (the numbers people write to).
const LINE_A: &str = "+15555550100";
const LINE_B: &str = "+15555550101";

/// 2026-12-01 `h:m` UTC.
fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// How an inbound message reached the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Quo,
    QuoBackfill,
    Twilio,
    TwilioBackfill,
    SalesMsg,
}

/// An inbound message `text` from `from` to `line`, written at `written` (the provider's
/// time, which a Twilio webhook does not carry) and received at `received`. `id` makes its
/// provider ids (so its dedup keys) unique.
#[allow(clippy::too_many_arguments)]
fn inbound(
    seq: u64,
    received: DateTime<Utc>,
    via: Via,
    id: &str,
    from: &str,
    line: &str,
    text: &str,
    written: DateTime<Utc>,
) -> Event {
    let w = written.to_rfc3339();
    let json = |source, route: String, body: serde_json::Value, verification| Event {
        seq: Seq(seq),
        received_at: Micros(micros(received)),
        source,
        route,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        verification,
    };
    match via {
        Via::Quo => json(
            Source::Quo,
            "/webhook/openphone".into(),
            serde_json::json!({
                "id": format!("EV{id}"), "object": "event", "apiVersion": "v4", "createdAt": w,
                "type": "message.received",
                "data": {"object": {"id": format!("AC{id}"), "object": "message", "from": from,
                    "to": [line], "direction": "incoming", "text": text, "status": "received",
                    "createdAt": w, "phoneNumberId": "PNline"}}
            }),
            Verification::QuoLegacy { key: 0 },
        ),
        Via::QuoBackfill => json(
            Source::BackfillQuo,
            format!("/v1/messages/AC{id}"),
            serde_json::json!({"id": format!("AC{id}"), "from": from, "to": [line],
                "direction": "incoming", "text": text, "status": "received", "createdAt": w}),
            Verification::AdminToken,
        ),
        Via::TwilioBackfill => json(
            Source::BackfillTwilio,
            format!("/2010-04-01/Messages/SM{id}.json"),
            serde_json::json!({"sid": format!("SM{id}"), "from": from, "to": line,
                "direction": "inbound", "body": text, "status": "received",
                "date_created": written.to_rfc2822()}),
            Verification::AdminToken,
        ),
        Via::SalesMsg => json(
            Source::SalesMsg,
            "/webhook/salesmsg".into(),
            serde_json::json!({"event": "message.received", "data": {"id": id,
                "direction": "inbound", "body": text, "from": from, "to": line,
                "status": "received", "created_at": w}}),
            Verification::SalesMsgSecret { secret: 0 },
        ),
        Via::Twilio => {
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("MessageSid", &format!("SM{id}"))
                .append_pair("From", from)
                .append_pair("To", line)
                .append_pair("Body", text)
                .append_pair("SmsStatus", "received")
                .finish();
            Event {
                seq: Seq(seq),
                received_at: Micros(micros(received)),
                source: Source::Twilio,
                route: "/sms".into(),
                headers: vec![(
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                )],
                body: body.into_bytes(),
                verification: Verification::Twilio { token: 0, url: 0 },
            }
        }
    }
}

/// An operator's (or, with `provider`, the sender's) change, appended at `at`.
fn change(
    seq: u64,
    at: DateTime<Utc>,
    action: &str,
    number: &str,
    provider: Option<&str>,
) -> Event {
    let body = serde_json::to_string(&OptOutChange {
        action: action.into(),
        number: number.into(),
        reason: Some("test".into()),
        provider: provider.map(str::to_owned),
        line: provider.map(|_| "tw-main".to_owned()),
    })
    .unwrap();
    let mut e = event(seq, micros(at), Source::Internal, ADMIN_ROUTE, &body);
    e.verification = if provider.is_some() {
        Verification::Internal
    } else {
        Verification::AdminToken
    };
    e
}

/// Whether `number` is suppressed on line A, line B, and a line not known.
fn answers(store: &MemState, number: &str) -> [bool; 3] {
    [Some(LINE_A), Some(LINE_B), None].map(|l| is_suppressed(store, number, l).unwrap())
}

fn project_alerting(
    store: &MemState,
    events: &[Event],
    alerter: &Alerter,
) -> Result<(), BatchError> {
    let mut dedup = Dedup::new(store, 72).unwrap();
    dedup.handle(events).now_or_never().unwrap()?;
    let mut c = Compliance::new(store, alerter.clone()).unwrap();
    c.handle(events).now_or_never().unwrap()
}

fn state_of(store: &MemState, number: &str) -> Option<String> {
    list(store)
        .unwrap()
        .into_iter()
        .find(|e| e.number == number)
        .map(|e| e.state)
}

const T0: i64 = 1_776_000_000_000_000;

#[test]
fn a_twilio_stop_suppresses_the_sender_on_every_line_with_its_evidence() {
    let store = MemState::default();
    project(
        &store,
        &[from_fixture("twilio/sms_inbound_stop.json", 1, T0)],
    )
    .unwrap();
    let entries = list(&store).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert!(e.is_suppressed());
    assert_eq!(
        (e.seq, e.provider.as_str(), e.how.as_str()),
        (1, "twilio", "opt_out_type")
    );
    assert_eq!(e.text, "STOP");
    assert!(e.line.is_some());
    assert!(is_suppressed(&store, &e.number, None).unwrap());
}

#[test]
fn free_text_opt_outs_suppress_and_only_an_exact_start_resubscribes_its_line() {
    let store = MemState::default();
    let n = "+15555550177";
    let msg = |seq, h, text| {
        inbound(
            seq,
            t(h, 1),
            Via::Quo,
            &format!("{seq}"),
            n,
            LINE_A,
            text,
            t(h, 0),
        )
    };
    project(
        &store,
        &[
            msg(1, 10, "Is 3pm ok?"),
            msg(2, 11, "please stop texting me"),
            msg(3, 12, "yes please"),
        ],
    )
    .unwrap();
    assert_eq!(state_of(&store, n).as_deref(), Some("opted_out"));
    assert!(
        is_suppressed(&store, "(555) 555-0177", Some(LINE_A)).unwrap(),
        "numbers are normalised"
    );
    project(&store, &[msg(4, 13, "START")]).unwrap();
    assert_eq!(answers(&store, n), [false, true, true]);
    let e = entry(&store, n).unwrap().unwrap();
    assert_eq!(
        (e.state.as_str(), e.lifted_on.as_slice()),
        ("opted_out", [LINE_A.to_owned()].as_slice())
    );
}

#[test]
fn a_duplicate_is_skipped_so_a_retried_stop_does_not_undo_a_later_start() {
    let store = MemState::default();
    let n = "+15555550178";
    let stop = inbound(1, t(10, 1), Via::Quo, "s", n, LINE_A, "STOP", t(10, 0));
    let start = inbound(2, t(11, 1), Via::Quo, "t", n, LINE_A, "START", t(11, 0));
    let mut retried_stop = stop.clone();
    retried_stop.seq = Seq(3);
    retried_stop.received_at = Micros(micros(t(12, 0)));
    project(&store, &[stop, start, retried_stop]).unwrap();
    assert_eq!(answers(&store, n), [false, true, true]);
}

#[test]
fn an_ambiguous_reply_raises_one_review_alert_naming_the_number_the_record_and_the_text() {
    let store = MemState::default();
    let alerter = Alerter::disabled();
    let (vague, clear) = ("+15555550179", "+15555550180");
    let ambiguous = quo_inbound(1, T0, "EVv", "ACv", vague, "can you stop");
    let mut retried = ambiguous.clone();
    retried.seq = Seq(3);
    retried.received_at = Micros(T0 + HOUR);
    project_alerting(
        &store,
        &[
            ambiguous,
            quo_inbound(2, T0, "EVc", "ACc", clear, "STOP"),
            retried,
        ],
        &alerter,
    )
    .unwrap();
    assert_eq!(state_of(&store, vague).as_deref(), Some("opted_out"));
    assert_eq!(state_of(&store, clear).as_deref(), Some("opted_out"));
    // One alert: none for the clear STOP, none for the provider's retry (a duplicate).
    let alerts = alerter.raised();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.key, "optout_review");
    assert_eq!(a.severity, Severity::Warning);
    assert!(a.title.contains(vague), "{a:?}");
    assert!(
        a.reason
            .starts_with("record 1: \"can you stop\" (ambiguous:"),
        "{a:?}"
    );
    assert!(
        a.next_step.contains(&format!("/admin/optouts/{vague}")),
        "{a:?}"
    );
}

#[test]
fn operator_changes_arrive_as_log_events() {
    let store = MemState::default();
    let add = event(
        1,
        T0,
        Source::Internal,
        ADMIN_ROUTE,
        r#"{"action":"add","number":"5555550190","reason":"asked by phone"}"#,
    );
    project(&store, &[add]).unwrap();
    let e = &list(&store).unwrap()[0];
    assert_eq!(
        (e.number.as_str(), e.state.as_str(), e.how.as_str()),
        ("+15555550190", "opted_out", "admin")
    );
    let remove = event(
        2,
        T0 + 1,
        Source::Internal,
        ADMIN_ROUTE,
        r#"{"action":"remove","number":"+15555550190"}"#,
    );
    project(&store, &[remove]).unwrap();
    assert_eq!(
        state_of(&store, "+15555550190").as_deref(),
        Some("resubscribed")
    );
    assert_eq!(answers(&store, "+15555550190"), [false; 3]);
}

#[test]
fn an_opt_out_reported_by_a_provider_keeps_the_provider_and_line_as_evidence() {
    let store = MemState::default();
    let change = OptOutChange {
        action: "add".into(),
        number: "+15555550191".into(),
        reason: Some("Twilio 21610: unsubscribed recipient".into()),
        provider: Some("twilio".into()),
        line: Some("tw-main".into()),
    };
    let body = serde_json::to_string(&change).unwrap();
    project(
        &store,
        &[event(1, T0, Source::Internal, ADMIN_ROUTE, &body)],
    )
    .unwrap();
    let e = entry(&store, "+15555550191").unwrap().unwrap();
    assert!(e.is_suppressed());
    assert_eq!(
        (e.provider.as_str(), e.line.as_deref(), e.how.as_str()),
        ("twilio", Some("tw-main"), "provider")
    );
    assert!(e.text.contains("21610"), "{}", e.text);
    // What the admin API writes has neither field and still reads as an operator's change.
    let admin = r#"{"action":"add","number":"+15555550192","reason":null}"#.to_owned();
    project(
        &store,
        &[event(2, T0 + 1, Source::Internal, ADMIN_ROUTE, &admin)],
    )
    .unwrap();
    let e = entry(&store, "+15555550192").unwrap().unwrap();
    assert_eq!((e.provider.as_str(), e.line.as_deref()), ("admin", None));
}

#[test]
fn a_poison_record_is_reported_after_the_records_before_it_are_applied() {
    let store = MemState::default();
    let events = vec![
        quo_inbound(1, T0, "EV1", "AC1", "+15555550181", "STOP"),
        event(2, T0 + 1, Source::Quo, "/webhook/openphone", "{not json"),
        quo_inbound(3, T0 + 2, "EV3", "AC3", "+15555550182", "STOP"),
    ];
    let err = project(&store, &events).unwrap_err();
    assert!(
        matches!(err, BatchError::Poison { seq: Seq(2), .. }),
        "{err:?}"
    );
    assert_eq!(
        state_of(&store, "+15555550181").as_deref(),
        Some("opted_out")
    );
    assert_eq!(
        state_of(&store, "+15555550182"),
        None,
        "nothing after the poison record yet"
    );
}

#[test]
fn a_rebuild_from_zero_gives_the_same_suppression_list() {
    let store = MemState::default();
    let texts = [
        "STOP",
        "hello",
        "remove me",
        "START",
        "not interested",
        "stop by tomorrow?",
        "Unsubscribe",
        "yes",
    ];
    let events: Vec<Event> = (1..=200u64)
        .map(|s| {
            let n = format!("+1555555{:04}", s % 17);
            quo_inbound(
                s,
                T0 + s as i64 * 1000,
                &format!("EV{s}"),
                &format!("AC{s}"),
                &n,
                texts[s as usize % texts.len()],
            )
        })
        .collect();
    project(&store, &events).unwrap();
    let before = dump(&store, NAME, &["suppression"]);
    assert!(!before.is_empty());
    let mut c = Compliance::new(&store, Alerter::disabled()).unwrap();
    c.reset().unwrap();
    c.handle(&events).now_or_never().unwrap().unwrap();
    assert_eq!(dump(&store, NAME, &["suppression"]), before);
}
