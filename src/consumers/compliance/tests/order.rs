//! The suppression list follows the time people wrote, not log order: older opt-ins, backfills,
//! late retries, per-line lifts, SalesMsg's trust, and a proptest over shuffled arrivals.

use super::*;
use proptest::prelude::*;

const N: &str = "+15555550123";

fn trusting(store: &MemState, events: &[Event]) -> Result<(), BatchError> {
    let mut dedup = Dedup::new(store, 72).unwrap();
    dedup.handle(events).now_or_never().unwrap()?;
    let mut c = Compliance::new(store, Alerter::disabled())
        .unwrap()
        .trusting_salesmsg_opt_in(true);
    c.handle(events).now_or_never().unwrap()
}

#[test]
fn a_stop_then_an_older_start_stays_suppressed_in_both_arrival_orders() {
    for via in [Via::Quo, Via::Twilio] {
        // Twilio's webhook carries no time: the STOP is received at 14:00, the START earlier.
        let stop = |seq| inbound(seq, t(14, 0), via, "stop", N, LINE_A, "STOP", t(14, 0));
        let start = |seq| inbound(seq, t(10, 30), via, "start", N, LINE_A, "START", t(10, 30));
        for events in [vec![stop(1), start(2)], vec![start(1), stop(2)]] {
            let store = MemState::default();
            project(&store, &events).unwrap();
            assert_eq!(answers(&store, N), [true; 3], "{via:?}");
            assert_eq!(state_of(&store, N).as_deref(), Some("opted_out"));
        }
    }
}

#[test]
fn an_opt_in_dated_later_than_it_arrived_counts_at_its_arrival() {
    // A START stamped 16:00 that arrived at 13:00 cannot beat a STOP written at 14:00.
    let store = MemState::default();
    project(
        &store,
        &[
            inbound(1, t(13, 0), Via::Quo, "start", N, LINE_A, "START", t(16, 0)),
            inbound(2, t(14, 0), Via::Quo, "stop", N, LINE_A, "STOP", t(14, 0)),
        ],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [true; 3]);
}

#[test]
fn a_late_retry_of_an_older_start_cannot_undo_a_later_stop() {
    // The retry arrives a day late with its original provider time. Dedup would skip it; it
    // is given new ids here so that the list itself is what refuses it.
    let store = MemState::default();
    project(
        &store,
        &[
            inbound(
                1,
                t(10, 31),
                Via::Quo,
                "start",
                N,
                LINE_A,
                "START",
                t(10, 30),
            ),
            inbound(2, t(14, 1), Via::Quo, "stop", N, LINE_A, "STOP", t(14, 0)),
            inbound(
                3,
                t(10, 30) + chrono::Duration::days(1),
                Via::Quo,
                "start-retry",
                N,
                LINE_A,
                "START",
                t(10, 30),
            ),
        ],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [true; 3]);
}

#[test]
fn a_backfilled_start_never_lifts_and_a_backfilled_stop_suppresses_at_its_time() {
    for via in [Via::QuoBackfill, Via::TwilioBackfill] {
        let store = MemState::default();
        // Newest first, as a backfill reads: a START at 15:00, then the STOP at 14:00.
        project(
            &store,
            &[
                inbound(1, t(18, 0), via, "start", N, LINE_A, "START", t(15, 0)),
                inbound(2, t(18, 0), via, "stop", N, LINE_A, "STOP", t(14, 0)),
            ],
        )
        .unwrap();
        assert_eq!(answers(&store, N), [true; 3], "{via:?}");
        let e = entry(&store, N).unwrap().unwrap();
        assert_eq!(
            e.event_at,
            Some(t(14, 0)),
            "the STOP counts at its provider time"
        );
        let ignored = e.facts.ignored_opt_in.as_ref().unwrap();
        assert!(ignored.reason.contains("backfilled"), "{ignored:?}");
        // A webhook START written after the backfilled STOP lifts it on its line.
        project(
            &store,
            &[inbound(
                3,
                t(16, 1),
                Via::Quo,
                "live",
                N,
                LINE_A,
                "START",
                t(16, 0),
            )],
        )
        .unwrap();
        assert_eq!(answers(&store, N), [false, true, true], "{via:?}");
        // A backfilled STOP older than that START does not undo it.
        project(
            &store,
            &[inbound(4, t(19, 0), via, "old", N, LINE_A, "STOP", t(9, 0))],
        )
        .unwrap();
        assert_eq!(answers(&store, N), [false, true, true], "{via:?}");
    }
}

#[test]
fn a_newer_start_lifts_only_the_line_it_was_sent_to_across_providers() {
    let store = MemState::default();
    project(
        &store,
        &[
            inbound(1, t(14, 0), Via::Quo, "stop", N, LINE_A, "STOP", t(14, 0)),
            // Re-subscribed through Twilio on line B.
            inbound(
                2,
                t(15, 0),
                Via::Twilio,
                "start",
                N,
                LINE_B,
                "START",
                t(15, 0),
            ),
        ],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [true, false, true]);
    // A new STOP on line A suppresses on B again.
    project(
        &store,
        &[inbound(
            3,
            t(16, 0),
            Via::Quo,
            "stop2",
            N,
            LINE_A,
            "stop",
            t(16, 0),
        )],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [true; 3]);
}

#[test]
fn a_salesmsg_start_lifts_only_when_salesmsg_is_trusted_and_its_stop_always_suppresses() {
    let events = [
        inbound(1, t(14, 0), Via::SalesMsg, "1", N, LINE_A, "STOP", t(14, 0)),
        inbound(
            2,
            t(15, 0),
            Via::SalesMsg,
            "2",
            N,
            LINE_A,
            "START",
            t(15, 0),
        ),
    ];
    let store = MemState::default();
    project(&store, &events).unwrap();
    assert_eq!(answers(&store, N), [true; 3]);
    let ignored = entry(&store, N)
        .unwrap()
        .unwrap()
        .facts
        .ignored_opt_in
        .unwrap();
    assert!(ignored.reason.contains("trust_opt_in"), "{ignored:?}");
    let store = MemState::default();
    trusting(&store, &events).unwrap();
    assert_eq!(answers(&store, N), [false, true, true]);
}

#[test]
fn a_persons_start_does_not_lift_an_operators_add_but_an_operators_lift_lifts_everything_before_it()
{
    let store = MemState::default();
    project(
        &store,
        &[
            change(1, t(12, 0), "add", N, None),
            inbound(2, t(13, 0), Via::Quo, "stop", N, LINE_B, "STOP", t(13, 0)),
            inbound(3, t(14, 0), Via::Quo, "start", N, LINE_A, "START", t(14, 0)),
        ],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [true; 3], "the operator's add holds");
    project(&store, &[change(4, t(15, 0), "remove", N, None)]).unwrap();
    assert_eq!(answers(&store, N), [false; 3]);
    // A STOP written before the lift but arriving after it stays lifted.
    project(
        &store,
        &[inbound(
            5,
            t(16, 0),
            Via::QuoBackfill,
            "old",
            N,
            LINE_A,
            "STOP",
            t(14, 30),
        )],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [false; 3]);
}

#[test]
fn a_twilio_21610_suppresses_everywhere_at_its_time_until_a_later_start_on_a_line() {
    let store = MemState::default();
    project(
        &store,
        &[
            inbound(
                1,
                t(9, 0),
                Via::Twilio,
                "start",
                N,
                LINE_A,
                "START",
                t(9, 0),
            ),
            change(2, t(12, 0), "add", N, Some("twilio")),
        ],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [true; 3]);
    project(
        &store,
        &[inbound(
            3,
            t(13, 0),
            Via::Twilio,
            "start2",
            N,
            LINE_A,
            "START",
            t(13, 0),
        )],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [false, true, true]);
}

#[test]
fn an_opt_in_in_a_group_message_lifts_nothing() {
    let store = MemState::default();
    let mut group = inbound(2, t(15, 0), Via::Quo, "g", N, LINE_A, "START", t(15, 0));
    group.body = String::from_utf8(group.body)
        .unwrap()
        .replace(
            &format!("[\"{LINE_A}\"]"),
            &format!("[\"{LINE_A}\",\"+15555550199\"]"),
        )
        .into_bytes();
    project(
        &store,
        &[
            inbound(1, t(14, 0), Via::Quo, "stop", N, LINE_A, "STOP", t(14, 0)),
            group,
        ],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [true; 3]);
    let e = entry(&store, N).unwrap().unwrap();
    assert!(e
        .facts
        .ignored_opt_in
        .unwrap()
        .reason
        .contains("not one E.164"));
}

#[test]
fn a_start_from_a_number_never_suppressed_is_kept_for_an_older_stop_but_not_listed() {
    let store = MemState::default();
    project(
        &store,
        &[inbound(
            1,
            t(15, 0),
            Via::Quo,
            "start",
            N,
            LINE_A,
            "YES",
            t(15, 0),
        )],
    )
    .unwrap();
    assert!(list(&store).unwrap().is_empty());
    assert_eq!(answers(&store, N), [false; 3]);
    // The STOP written before it arrives later (a backfill): the START still lifts line A.
    project(
        &store,
        &[inbound(
            2,
            t(18, 0),
            Via::TwilioBackfill,
            "stop",
            N,
            LINE_A,
            "STOP",
            t(14, 0),
        )],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [false, true, true]);
    assert_eq!(list(&store).unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Arrival order does not matter

/// One generated record: what, through which channel, on which line, written when (minutes
/// after 08:00), received how much later.
#[derive(Clone, Debug)]
enum Gen {
    Inbound {
        via: Via,
        stop: bool,
        line: bool,
        written: u32,
        delay: u32,
    },
    Operator {
        add: bool,
        at: u32,
    },
    Twilio21610 {
        at: u32,
    },
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![
        Just(Via::Quo),
        Just(Via::QuoBackfill),
        Just(Via::Twilio),
        Just(Via::TwilioBackfill),
        Just(Via::SalesMsg),
    ]
}

fn generated() -> impl Strategy<Value = Gen> {
    // Minutes in steps of 30 over a few hours, so that ties are common.
    let minute = (0u32..8).prop_map(|m| m * 30);
    prop_oneof![
        4 => (via(), any::<bool>(), any::<bool>(), minute.clone(), 0u32..3).prop_map(
            |(via, stop, line, written, delay)| Gen::Inbound { via, stop, line, written, delay: delay * 30 }
        ),
        2 => (any::<bool>(), minute.clone()).prop_map(|(add, at)| Gen::Operator { add, at }),
        1 => minute.prop_map(|at| Gen::Twilio21610 { at }),
    ]
}

fn minutes(m: u32) -> DateTime<Utc> {
    t(8, 0) + chrono::Duration::minutes(i64::from(m))
}

/// Record `i` of the set (its ids fixed by `i`), at log position `seq`.
fn record(i: usize, g: &Gen, number: &str, seq: u64) -> Event {
    match g {
        Gen::Inbound {
            via,
            stop,
            line,
            written,
            delay,
        } => inbound(
            seq,
            minutes(written + delay),
            *via,
            &format!("r{i}"),
            number,
            if *line { LINE_A } else { LINE_B },
            if *stop { "STOP" } else { "START" },
            minutes(*written),
        ),
        Gen::Operator { add, at } => change(
            seq,
            minutes(*at),
            if *add { "add" } else { "remove" },
            number,
            None,
        ),
        Gen::Twilio21610 { at } => change(seq, minutes(*at), "add", number, Some("twilio")),
    }
}

/// Every answer the readers can ask, with the listing.
fn every_answer(store: &MemState) -> Vec<(String, [bool; 3], String, Vec<String>)> {
    ["+15555550123", "+15555550124"]
        .iter()
        .map(|n| {
            let e = entry(store, n).unwrap();
            (
                n.to_string(),
                answers(store, n),
                e.as_ref().map(|e| e.state.clone()).unwrap_or_default(),
                e.map(|e| e.lifted_on).unwrap_or_default(),
            )
        })
        .collect()
}

/// Projects `events` through dedup and compliance in batches cut at `cuts`.
fn project_in_batches(store: &MemState, events: &[Event], cuts: &[usize], trust: bool) {
    let mut dedup = Dedup::new(store, 72).unwrap();
    let mut c = Compliance::new(store, Alerter::disabled())
        .unwrap()
        .trusting_salesmsg_opt_in(trust);
    let mut at = 0;
    let mut cut = cuts.iter().cycle();
    while at < events.len() {
        let end = (at + cut.next().copied().unwrap_or(1)).min(events.len());
        dedup
            .handle(&events[at..end])
            .now_or_never()
            .unwrap()
            .unwrap();
        c.handle(&events[at..end]).now_or_never().unwrap().unwrap();
        at = end;
    }
}

proptest! {
    #[test]
    fn any_arrival_order_of_the_same_records_gives_the_same_answers_and_a_rewind_the_same_list(
        set in proptest::collection::vec((generated(), any::<bool>()), 1..16),
        order in any::<u64>(),
        cuts in proptest::collection::vec(1usize..5, 1..6),
        trust in any::<bool>(),
    ) {
        let numbers = ["+15555550123", "+15555550124"];
        let logged = |perm: &[usize]| -> Vec<Event> {
            perm.iter()
                .enumerate()
                .map(|(pos, &i)| {
                    let (g, second) = &set[i];
                    record(i, g, numbers[usize::from(*second)], pos as u64 + 1)
                })
                .collect()
        };
        let in_order: Vec<usize> = (0..set.len()).collect();
        let mut shuffled = in_order.clone();
        // A Fisher–Yates shuffle driven by the generated seed.
        let mut seed = order;
        for i in (1..shuffled.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (seed >> 33) as usize % (i + 1));
        }

        let first = MemState::default();
        project_in_batches(&first, &logged(&in_order), &[usize::MAX], trust);
        let live = MemState::default();
        let events = logged(&shuffled);
        project_in_batches(&live, &events, &cuts, trust);
        prop_assert_eq!(every_answer(&first), every_answer(&live));

        // A rewind: the same log, the state cleared, rebuilt in one pass.
        let projected = dump(&live, NAME, &["suppression"]);
        let mut c = Compliance::new(&live, Alerter::disabled())
            .unwrap()
            .trusting_salesmsg_opt_in(trust);
        c.reset().unwrap();
        c.handle(&events).now_or_never().unwrap().unwrap();
        prop_assert_eq!(dump(&live, NAME, &["suppression"]), projected);
    }
}

#[test]
fn an_operator_repeating_the_same_change_after_a_lift_suppresses_again() {
    // The two adds are the same bytes, so dedup calls the second a duplicate: it must count.
    let store = MemState::default();
    project(
        &store,
        &[
            change(1, t(10, 0), "add", N, None),
            change(2, t(11, 0), "remove", N, None),
            change(3, t(12, 0), "add", N, None),
        ],
    )
    .unwrap();
    assert_eq!(answers(&store, N), [true; 3]);
}
