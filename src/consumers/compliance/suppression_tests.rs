//! Tests of the pure suppression model (`Facts`) and of reading old entries.

use super::*;
use chrono::TimeZone;

const A: &str = "+15555550100";
const B: &str = "+15555550101";

/// 2026-12-01 at `h:m` UTC.
fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
}

fn fact(time: DateTime<Utc>, seq: u64, line: Option<&str>, text: &str) -> Fact {
    Fact {
        event_at: time,
        received_at: "2026-12-02T00:00:00.000000Z".into(),
        seq,
        source: "openphone".into(),
        provider: "openphone".into(),
        line: line.map(str::to_owned),
        text: text.into(),
        how: "keyword".into(),
        reason: "keyword:x".into(),
    }
}

fn facts(items: &[(FactKind, Fact)]) -> Facts {
    let mut f = Facts::default();
    for (kind, fact) in items {
        f.apply(*kind, fact.clone());
    }
    f
}

fn on(f: &Facts) -> [bool; 3] {
    [
        f.suppressed_on(Some(A)),
        f.suppressed_on(Some(B)),
        f.suppressed_on(None),
    ]
}

#[test]
fn an_opt_out_suppresses_on_every_line_and_an_unknown_one() {
    let f = facts(&[(FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP"))]);
    assert_eq!(on(&f), [true, true, true]);
}

#[test]
fn a_later_opt_in_lifts_on_its_own_line_only() {
    let f = facts(&[
        (FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP")),
        (FactKind::OptIn, fact(at(15, 0), 2, Some(A), "START")),
    ]);
    assert_eq!(on(&f), [false, true, true]);
    assert_eq!(f.lifted_on(), [A]);
    // The line is compared as E.164 whatever way the reader spells it.
    assert!(!f.suppressed_on(Some("(555) 555-0100")));
}

#[test]
fn an_older_opt_in_lifts_nothing_in_either_order() {
    let stop = (FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP"));
    let start = (FactKind::OptIn, fact(at(10, 30), 2, Some(A), "START"));
    for f in [facts(&[stop.clone(), start.clone()]), facts(&[start, stop])] {
        assert_eq!(on(&f), [true, true, true]);
        assert!(f.lifted_on().is_empty());
    }
}

#[test]
fn a_tie_between_an_opt_out_and_an_opt_in_or_a_lift_keeps_the_opt_out() {
    let f = facts(&[
        (FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP")),
        (FactKind::OptIn, fact(at(14, 0), 2, Some(A), "START")),
        (FactKind::OperatorLift, fact(at(14, 0), 3, None, "")),
    ]);
    assert_eq!(on(&f), [true, true, true]);
    let f = facts(&[
        (FactKind::OperatorAdd, fact(at(14, 0), 1, None, "by phone")),
        (FactKind::OperatorLift, fact(at(14, 0), 2, None, "")),
    ]);
    assert_eq!(on(&f), [true, true, true]);
}

#[test]
fn a_retry_of_an_opt_in_at_its_original_time_cannot_undo_a_later_stop() {
    // START at 10:00, STOP at 14:00, then START's retry a day later: same provider time.
    let start = fact(at(10, 0), 1, Some(A), "START");
    let mut retry = start.clone();
    retry.seq = 3;
    retry.received_at = "2026-12-02T10:00:00.000000Z".into();
    let f = facts(&[
        (FactKind::OptIn, start),
        (FactKind::OptOut, fact(at(14, 0), 2, Some(A), "STOP")),
        (FactKind::OptIn, retry),
    ]);
    assert_eq!(on(&f), [true, true, true]);
    assert_eq!(f.last_seq, 3);
}

#[test]
fn an_operator_lift_lifts_every_earlier_opt_out_on_every_line_but_not_a_later_one() {
    let lift = (FactKind::OperatorLift, fact(at(15, 0), 3, None, ""));
    let f = facts(&[
        (FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP")),
        (FactKind::OperatorAdd, fact(at(13, 0), 2, None, "asked")),
        lift.clone(),
    ]);
    assert_eq!(on(&f), [false, false, false]);
    let f = facts(&[
        lift,
        (FactKind::OptOut, fact(at(16, 0), 4, Some(B), "STOP")),
    ]);
    assert_eq!(on(&f), [true, true, true]);
}

#[test]
fn a_persons_opt_in_never_lifts_an_operators_add() {
    let f = facts(&[
        (
            FactKind::OperatorAdd,
            fact(at(14, 0), 1, None, "asked by phone"),
        ),
        (FactKind::OptIn, fact(at(15, 0), 2, Some(A), "START")),
    ]);
    assert_eq!(on(&f), [true, true, true]);
    assert!(f.lifted_on().is_empty());
}

#[test]
fn ignored_opt_ins_and_opt_ins_without_a_line_lift_nothing() {
    let mut no_line = fact(at(15, 0), 2, None, "START");
    no_line.how = "opt_in".into();
    let f = facts(&[
        (FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP")),
        (FactKind::IgnoredOptIn, fact(at(15, 0), 3, Some(A), "START")),
        (FactKind::OptIn, no_line),
    ]);
    assert_eq!(on(&f), [true, true, true]);
    assert!(f.opt_ins.is_empty());
    assert!(f.ignored_opt_in.is_some());
}

#[test]
fn facts_at_the_same_time_resolve_by_their_evidence_not_by_arrival() {
    let one = fact(at(14, 0), 1, Some(A), "STOP");
    let two = fact(at(14, 0), 2, Some(A), "UNSUBSCRIBE");
    let x = facts(&[
        (FactKind::OptOut, one.clone()),
        (FactKind::OptOut, two.clone()),
    ]);
    let y = facts(&[(FactKind::OptOut, two), (FactKind::OptOut, one)]);
    assert_eq!(
        x.opt_out.as_ref().map(|f| &f.text),
        y.opt_out.as_ref().map(|f| &f.text)
    );
}

#[test]
fn the_summary_names_what_suppresses_and_the_lines_lifted() {
    let f = facts(&[
        (FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP")),
        (FactKind::OptIn, fact(at(15, 0), 2, Some(A), "START")),
    ]);
    let e = OptOutEntry::of(A.into(), f);
    assert_eq!(
        (e.state.as_str(), e.text.as_str(), e.seq, e.event_at),
        (OPTED_OUT, "STOP", 2, Some(at(14, 0)))
    );
    assert_eq!(e.lifted_on, [A]);
    assert!(e.is_suppressed() && !e.is_suppressed_on(Some(A)) && e.is_suppressed_on(Some(B)));
    let lifted = facts(&[
        (FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP")),
        (FactKind::OperatorLift, fact(at(15, 0), 2, None, "")),
    ]);
    let e = OptOutEntry::of(A.into(), lifted);
    assert_eq!(
        (e.state.as_str(), e.event_at),
        (RESUBSCRIBED, Some(at(15, 0)))
    );
    assert!(e.facts.listed());
    let only_opt_in = facts(&[(FactKind::OptIn, fact(at(15, 0), 2, Some(A), "START"))]);
    assert!(!only_opt_in.listed());
}

#[test]
fn an_entry_reads_back_as_written_and_its_summary_is_recomputed() {
    let f = facts(&[(FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP"))]);
    let mut written = OptOutEntry::of(A.into(), f);
    let expected = written.clone();
    // A stale summary on disk does not matter: the facts decide.
    written.state = RESUBSCRIBED.into();
    let back = decode(&serde_json::to_vec(&written).unwrap()).unwrap();
    assert_eq!(back, expected);
}

#[test]
fn the_stored_form_is_the_number_and_its_facts_and_reads_back_as_the_whole_entry() {
    let f = facts(&[
        (FactKind::OptOut, fact(at(14, 0), 1, Some(A), "STOP")),
        (FactKind::OptIn, fact(at(15, 0), 2, Some(A), "START")),
    ]);
    let stored = encode_facts(A, &f).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["facts", "number"]);
    assert_eq!(decode(&stored).unwrap(), OptOutEntry::of(A.into(), f));
}

#[test]
fn entries_of_the_old_shape_keep_the_answer_they_gave() {
    let old = |state: &str, how: &str| {
        serde_json::json!({
            "number": A, "state": state, "seq": 7, "provider": "openphone", "line": "PNx",
            "text": "STOP", "at": "2026-04-14T16:02:11.557000Z", "how": how, "reason": "r"
        })
        .to_string()
    };
    let e = decode(old("opted_out", "keyword").as_bytes()).unwrap();
    assert!(e.is_suppressed() && e.is_suppressed_on(Some(A)));
    assert!(e.facts.opt_out.is_some());
    assert_eq!((e.seq, e.at.as_str()), (7, "2026-04-14T16:02:11.557000Z"));
    let e = decode(old("opted_out", "admin").as_bytes()).unwrap();
    assert!(e.facts.operator_add.is_some() && e.is_suppressed());
    for how in ["opt_in", "admin"] {
        let e = decode(old("resubscribed", how).as_bytes()).unwrap();
        assert!(!e.is_suppressed(), "{how}");
        assert_eq!(e.state, RESUBSCRIBED);
    }
    // A later opt-out still suppresses an old resubscribed entry.
    let mut f = decode(old("resubscribed", "admin").as_bytes())
        .unwrap()
        .facts;
    f.apply(FactKind::OptOut, fact(at(14, 0), 8, Some(A), "STOP"));
    assert!(f.suppressed_on(Some(A)));
}

#[test]
fn an_unreadable_entry_is_an_error_so_readers_fail_closed() {
    assert!(matches!(
        decode(br#"{"number": 1}"#),
        Err(StateError::Corrupt { .. })
    ));
    assert!(decode(b"not json").is_err());
}
