//! Tests of `crate::consumers::controls`: the projection of the stops (order, idempotence,
//! provenance).

use futures_util::FutureExt;
use proptest::prelude::*;

use super::stops::{stored_kill_switch, stored_pauses};
use super::*;
use crate::event::{Micros, Seq, Source, Verification};
use crate::state::MemState;

const T0: i64 = 1_776_000_000_000_000;

/// A control record at `seq` as the operator routes write it.
fn control(seq: u64, action: ControlAction, reason: Option<&str>) -> Event {
    let record = ControlRecord {
        action,
        reason: reason.map(str::to_owned),
        at: Micros(T0 + seq as i64).to_rfc3339(),
        by: OPERATOR.into(),
    };
    Event {
        seq: Seq(seq),
        received_at: Micros(T0 + seq as i64),
        source: Source::Internal,
        route: CONTROL_ROUTE.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&record).unwrap(),
        verification: Verification::AdminToken,
    }
}

fn kill(seq: u64, on: bool) -> Event {
    control(seq, ControlAction::KillSwitch { on }, Some("test"))
}

fn pause(seq: u64, consumer: &str, paused: bool) -> Event {
    let consumer = consumer.to_owned();
    let action = if paused {
        ControlAction::Pause { consumer }
    } else {
        ControlAction::Resume { consumer }
    };
    control(seq, action, None)
}

fn run(store: &MemState, events: &[Event]) -> Result<(), BatchError> {
    let mut c = ControlsConsumer::new(store, Alerter::disabled()).unwrap();
    c.handle(events).now_or_never().unwrap()
}

fn switch(store: &MemState) -> Option<(bool, u64)> {
    stored_kill_switch(store).unwrap().map(|k| (k.on, k.seq))
}

fn paused(store: &MemState) -> Vec<(String, bool, u64)> {
    stored_pauses(store)
        .unwrap()
        .into_iter()
        .map(|(n, p)| (n, p.paused, p.seq))
        .collect()
}

#[test]
fn the_kill_switch_follows_the_operator_records_in_log_order_with_who_when_and_why() {
    let store = MemState::default();
    assert_eq!(switch(&store), None, "never set: no record");
    run(&store, &[kill(1, true)]).unwrap();
    let k = stored_kill_switch(&store).unwrap().unwrap();
    assert_eq!(
        (k.on, k.by.as_str(), k.reason.as_deref(), k.seq),
        (true, OPERATOR, Some("test"), 1)
    );
    assert_eq!(k.at, Micros(T0 + 1).to_rfc3339());
    run(&store, &[kill(2, false)]).unwrap();
    assert_eq!(switch(&store), Some((false, 2)));
    run(&store, &[kill(3, true), kill(4, false), kill(5, true)]).unwrap();
    assert_eq!(switch(&store), Some((true, 5)), "the last record wins");
}

#[test]
fn a_record_handled_again_or_an_older_one_never_moves_a_stop_back() {
    let store = MemState::default();
    run(
        &store,
        &[kill(1, false), kill(7, true), pause(8, "sender", true)],
    )
    .unwrap();
    // A batch handled again after a crash, a rewind's replay, and an older record: no change.
    run(
        &store,
        &[kill(1, false), kill(7, true), pause(8, "sender", true)],
    )
    .unwrap();
    run(&store, &[kill(3, false), pause(4, "sender", false)]).unwrap();
    assert_eq!(switch(&store), Some((true, 7)));
    assert_eq!(paused(&store), [("sender".to_owned(), true, 8)]);
}

#[test]
fn pauses_are_kept_per_consumer() {
    let store = MemState::default();
    run(
        &store,
        &[
            pause(1, "sender", true),
            pause(2, "dispatch", true),
            pause(3, "sender", false),
        ],
    )
    .unwrap();
    assert_eq!(
        paused(&store),
        [
            ("dispatch".to_owned(), true, 2),
            ("sender".to_owned(), false, 3)
        ]
    );
}

#[test]
fn a_forged_control_record_is_dead_lettered_and_changes_nothing() {
    // Every way a record can claim the control route without coming from an operator route.
    let forgeries: Vec<(Source, Verification)> = vec![
        (Source::Internal, Verification::Internal),
        (Source::Outbound, Verification::AdminToken),
        (Source::BackfillQuo, Verification::AdminToken),
        (Source::BackfillTwilio, Verification::AdminToken),
        (Source::Quo, Verification::QuoStandard { key: 0 }),
        (Source::Twilio, Verification::Twilio { token: 0, url: 0 }),
        (Source::SalesMsg, Verification::SalesMsgSecret { secret: 0 }),
        (Source::Internal, Verification::SalesMsgSecret { secret: 0 }),
    ];
    for (source, verification) in forgeries {
        let store = MemState::default();
        run(&store, &[kill(1, true)]).unwrap();
        for forged in [kill(2, false), pause(2, "sender", true)] {
            let forged = Event {
                source,
                verification,
                ..forged
            };
            match run(&store, &[forged]) {
                Err(BatchError::Poison { seq, error }) => {
                    assert_eq!(seq, Seq(2));
                    assert!(
                        error.contains("not written by an operator route"),
                        "{error}"
                    );
                }
                other => panic!("{source:?}/{verification:?}: {other:?}"),
            }
        }
        assert_eq!(
            switch(&store),
            Some((true, 1)),
            "{source:?}/{verification:?}"
        );
        assert!(paused(&store).is_empty(), "{source:?}/{verification:?}");
    }
}

#[test]
fn the_records_before_a_forged_one_in_a_batch_are_applied_and_those_after_it_are_not_yet() {
    let store = MemState::default();
    let forged = Event {
        verification: Verification::Internal,
        ..kill(2, false)
    };
    let r = run(&store, &[kill(1, true), forged, pause(3, "sender", true)]);
    assert!(
        matches!(r, Err(BatchError::Poison { seq: Seq(2), .. })),
        "{r:?}"
    );
    assert_eq!(switch(&store), Some((true, 1)));
    // The driver dead-letters 2 and hands the rest over again.
    run(&store, &[pause(3, "sender", true)]).unwrap();
    assert_eq!(paused(&store), [("sender".to_owned(), true, 3)]);
}

#[test]
fn a_pause_of_the_controls_consumer_itself_is_poison() {
    let store = MemState::default();
    let r = run(&store, &[pause(1, NAME, true)]);
    assert!(
        matches!(r, Err(BatchError::Poison { seq: Seq(1), .. })),
        "{r:?}"
    );
    assert!(paused(&store).is_empty());
}

#[test]
fn an_unreadable_control_record_is_poison() {
    let store = MemState::default();
    let bad = Event {
        body: br#"{"action":"self_destruct","at":"x","by":"operator"}"#.to_vec(),
        ..kill(1, true)
    };
    let r = run(&store, &[bad]);
    assert!(
        matches!(r, Err(BatchError::Poison { seq: Seq(1), .. })),
        "{r:?}"
    );
    assert_eq!(switch(&store), None);
}

#[test]
fn records_on_other_routes_are_skipped_unread() {
    let store = MemState::default();
    let other = |seq: u64, route: &str| Event {
        route: route.into(),
        body: b"not json at all".to_vec(),
        ..kill(seq, true)
    };
    run(
        &store,
        &[
            other(1, "/internal/optouts"),
            other(2, "/sms"),
            other(3, "/internal/Control"),
        ],
    )
    .unwrap();
    assert_eq!(switch(&store), None);
}

/// One control record of the property test: the kill switch, or a pause of one of two
/// consumers.
fn action() -> impl Strategy<Value = (u8, bool)> {
    (0u8..3, any::<bool>())
}

proptest! {
    /// Whatever order the records are handled in, in whatever batches, with any of them
    /// handled again (a crash before the cursor save, a rewind): each stop is the one its
    /// newest record set.
    #[test]
    fn each_stop_is_its_newest_record_whatever_the_order_and_repeats(
        actions in prop::collection::vec(action(), 1..12),
        order in prop::collection::vec(any::<prop::sample::Index>(), 1..40),
        batch in 1usize..5,
    ) {
        let records: Vec<Event> = actions
            .iter()
            .enumerate()
            .map(|(i, (what, on))| {
                let seq = i as u64 + 1;
                match what {
                    0 => kill(seq, *on),
                    1 => pause(seq, "sender", *on),
                    _ => pause(seq, "dispatch", *on),
                }
            })
            .collect();
        // Every record at least once (in log order, as a first pass would), then any of them
        // again in any order.
        let mut handled: Vec<Event> = records.clone();
        handled.extend(order.iter().map(|i| records[i.index(records.len())].clone()));
        let store = MemState::default();
        for chunk in handled.chunks(batch) {
            run(&store, chunk).unwrap();
        }
        let newest = |what: u8| {
            actions
                .iter()
                .enumerate()
                .rfind(|(_, (w, _))| *w == what)
                .map(|(i, (_, on))| (*on, i as u64 + 1))
        };
        prop_assert_eq!(switch(&store), newest(0));
        let mut expected: Vec<(String, bool, u64)> = Vec::new();
        if let Some((on, seq)) = newest(2) {
            expected.push(("dispatch".to_owned(), on, seq));
        }
        if let Some((on, seq)) = newest(1) {
            expected.push(("sender".to_owned(), on, seq));
        }
        prop_assert_eq!(paused(&store), expected);
    }

    /// Handled in a shuffled order (another replica's stale state catching up, then the
    /// rest), the result is the same as in log order.
    #[test]
    fn a_shuffled_arrival_gives_the_same_stops_as_log_order(
        actions in prop::collection::vec(action(), 1..12),
        seed in any::<u64>(),
    ) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let records: Vec<Event> = actions
            .iter()
            .enumerate()
            .map(|(i, (what, on))| {
                let seq = i as u64 + 1;
                match what {
                    0 => kill(seq, *on),
                    1 => pause(seq, "sender", *on),
                    _ => pause(seq, "dispatch", *on),
                }
            })
            .collect();
        let in_order = MemState::default();
        run(&in_order, &records).unwrap();
        let mut shuffled = records.clone();
        shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let store = MemState::default();
        for r in &shuffled {
            run(&store, std::slice::from_ref(r)).unwrap();
        }
        prop_assert_eq!(switch(&store), switch(&in_order));
        prop_assert_eq!(paused(&store), paused(&in_order));
    }
}
