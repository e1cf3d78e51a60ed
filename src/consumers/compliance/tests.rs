//! Tests of `crate::consumers::compliance`.

use super::*;
use crate::consumers::dedup::Dedup;
use crate::consumers::testutil::{dump, event, from_fixture, quo_inbound, HOUR};
use crate::event::{Micros, Seq};
use crate::state::MemState;
use futures_util::FutureExt;

fn project(store: &MemState, events: &[Event]) -> Result<(), BatchError> {
    project_alerting(store, events, &Alerter::disabled())
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
    assert!(is_suppressed(&store, &e.number).unwrap());
}

#[test]
fn free_text_opt_outs_suppress_and_only_an_exact_start_resubscribes() {
    let store = MemState::default();
    let n = "+15555550177";
    let events = vec![
        quo_inbound(1, T0, "EV1", "AC1", n, "Is 3pm ok?"),
        quo_inbound(2, T0 + HOUR, "EV2", "AC2", n, "please stop texting me"),
        quo_inbound(3, T0 + 2 * HOUR, "EV3", "AC3", n, "yes please"),
    ];
    project(&store, &events).unwrap();
    assert_eq!(state_of(&store, n).as_deref(), Some("opted_out"));
    assert!(
        is_suppressed(&store, "(555) 555-0177").unwrap(),
        "numbers are normalised"
    );
    project(
        &store,
        &[quo_inbound(4, T0 + 3 * HOUR, "EV4", "AC4", n, "START")],
    )
    .unwrap();
    assert_eq!(state_of(&store, n).as_deref(), Some("resubscribed"));
    assert!(!is_suppressed(&store, n).unwrap());
}

#[test]
fn a_duplicate_is_skipped_so_a_retried_stop_does_not_undo_a_later_start() {
    let store = MemState::default();
    let n = "+15555550178";
    let stop = quo_inbound(1, T0, "EVs", "ACs", n, "STOP");
    let start = quo_inbound(2, T0 + HOUR, "EVt", "ACt", n, "START");
    let mut retried_stop = stop.clone();
    retried_stop.seq = Seq(3);
    retried_stop.received_at = Micros(T0 + 2 * HOUR);
    project(&store, &[stop, start, retried_stop]).unwrap();
    assert_eq!(state_of(&store, n).as_deref(), Some("resubscribed"));
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
    let admin = serde_json::to_string(&AdminChange {
        action: "add".into(),
        number: "+15555550192".into(),
        reason: None,
    })
    .unwrap();
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
