//! Tests of the staleness monitor and its window: episodes, recovery, restarts, DST, windows
//! across midnight.

use super::*;
use crate::consumers::staleness::window::parse_hhmm;
use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::America::Los_Angeles;

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A wall-clock time in Los Angeles (must exist and be unambiguous).
fn la(s: &str) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    Los_Angeles
        .from_local_datetime(&naive)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn monitor(start: &str, end: &str) -> StalenessMonitor {
    StalenessMonitor::new(StalenessConfig {
        window_start: start.into(),
        window_end: end.into(),
        ..StalenessConfig::default()
    })
    .unwrap()
}

/// Checks every minute in `[from, to]`, as the daemon would, and collects the events.
fn drive(
    m: &mut StalenessMonitor,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, StalenessEvent)> {
    let mut events = Vec::new();
    let mut t = from;
    while t <= to {
        if let Some(e) = m.check(t) {
            events.push((t, e));
        }
        t += TimeDelta::minutes(1);
    }
    events
}

fn stale(silent_since: DateTime<Utc>, minutes: i64) -> StalenessEvent {
    StalenessEvent::Stale {
        silent_since,
        minutes,
    }
}

#[test]
fn fires_once_after_three_hours_of_daytime_silence_and_recovers_once() {
    let mut m = monitor("07:00", "23:00");
    let last = la("2026-06-09 10:00");
    m.observe_inbound(last);
    let events = drive(&mut m, last, la("2026-06-09 15:00"));
    assert_eq!(events, vec![(la("2026-06-09 13:00"), stale(last, 180))]);
    assert!(m.is_stale());
    // Still silent: no second alert.
    assert!(drive(&mut m, la("2026-06-09 15:01"), la("2026-06-10 12:00")).is_empty());
    m.observe_inbound(la("2026-06-09 15:10"));
    assert_eq!(
        m.check(la("2026-06-09 15:11")),
        Some(StalenessEvent::Recovered {
            silent_since: last,
            silent_for_mins: 310
        })
    );
    assert!(!m.is_stale());
    assert_eq!(m.check(la("2026-06-09 15:12")), None, "one Recovered only");
    // A new episode can start from the new message.
    let events = drive(&mut m, la("2026-06-09 15:12"), la("2026-06-09 19:00"));
    assert_eq!(
        events,
        vec![(la("2026-06-09 18:10"), stale(la("2026-06-09 15:10"), 180))]
    );
}

#[test]
fn a_monitor_restored_as_alerted_stays_quiet_until_a_message_then_recovers_once() {
    let last = la("2026-06-09 10:00");
    // The first process: Stale at 13:00, then it stops.
    let mut first = monitor("07:00", "23:00");
    first.observe_inbound(last);
    assert_eq!(
        drive(&mut first, last, la("2026-06-09 14:00")),
        vec![(la("2026-06-09 13:00"), stale(last, 180))]
    );
    // The second process, primed from what the first stored.
    let mut m = monitor("07:00", "23:00");
    m.observe_inbound(last);
    m.restore_alerted(last);
    assert!(m.is_stale());
    assert!(drive(&mut m, la("2026-06-09 14:00"), la("2026-06-10 12:00")).is_empty());
    m.observe_inbound(la("2026-06-10 12:30"));
    assert_eq!(
        drive(&mut m, la("2026-06-10 12:31"), la("2026-06-10 13:00")),
        vec![(
            la("2026-06-10 12:31"),
            StalenessEvent::Recovered {
                silent_since: last,
                silent_for_mins: 13 * 60 + 5 * 60 + 30
            }
        )]
    );

    // Alerted with no message ever seen (the silence counted from a first check).
    let mut m = monitor("07:00", "23:00");
    m.restore_alerted(la("2026-06-09 08:00"));
    assert!(drive(&mut m, la("2026-06-09 14:00"), la("2026-06-09 20:00")).is_empty());

    // A message that ended the episode before the restart, whose Recovered the first
    // process did not emit: emitted at the first check, once.
    let mut m = monitor("07:00", "23:00");
    m.observe_inbound(la("2026-06-09 15:00"));
    m.restore_alerted(last);
    assert!(!m.is_stale());
    assert_eq!(
        drive(&mut m, la("2026-06-09 15:01"), la("2026-06-09 16:00")),
        vec![(
            la("2026-06-09 15:01"),
            StalenessEvent::Recovered {
                silent_since: last,
                silent_for_mins: 300
            }
        )]
    );
}

#[test]
fn a_message_at_2230_then_silence_fires_at_0930_next_morning_not_during_the_night() {
    let mut m = monitor("07:00", "23:00");
    let last = la("2026-06-09 22:30");
    m.observe_inbound(last);
    assert_eq!(m.check(la("2026-06-10 01:30")), None);
    let events = drive(&mut m, last, la("2026-06-10 12:00"));
    assert_eq!(events, vec![(la("2026-06-10 09:30"), stale(last, 180))]);
}

#[test]
fn messages_in_between_restart_the_silence_and_old_ones_change_nothing() {
    let mut m = monitor("07:00", "23:00");
    m.observe_inbound(la("2026-06-09 08:00"));
    m.observe_inbound(la("2026-06-09 10:00"));
    m.observe_inbound(la("2026-06-09 09:00"));
    assert_eq!(m.check(la("2026-06-09 12:59")), None);
    assert_eq!(
        m.check(la("2026-06-09 13:00")),
        Some(stale(la("2026-06-09 10:00"), 180))
    );
    // An old event while stale is not a recovery.
    m.observe_inbound(la("2026-06-09 09:30"));
    assert_eq!(m.check(la("2026-06-09 13:01")), None);
    assert!(m.is_stale());
}

#[test]
fn with_no_message_ever_silence_counts_from_the_first_check() {
    let mut m = monitor("07:00", "23:00");
    assert_eq!(m.check(la("2026-06-09 08:00")), None);
    let events = drive(&mut m, la("2026-06-09 08:01"), la("2026-06-09 12:00"));
    assert_eq!(
        events,
        vec![(la("2026-06-09 11:00"), stale(la("2026-06-09 08:00"), 180))]
    );
    let alert = m.to_alert(&events[0].1);
    assert!(alert.reason.contains("since hooklog started watching"));
}

#[test]
fn spring_forward_2026_thresholds_land_on_the_right_utc_instants() {
    // Sat 2026-03-07 22:30 PST = 06:30Z. 30 min until 23:00 PST; the window reopens
    // Sun 07:00 PDT = 14:00Z; 2 h 30 more gives 09:30 PDT = 16:30Z (a 24 h day would
    // say 17:30Z).
    let mut m = monitor("07:00", "23:00");
    let last = utc("2026-03-08T06:30:00Z");
    assert_eq!(last, la("2026-03-07 22:30"));
    m.observe_inbound(last);
    let events = drive(&mut m, last, utc("2026-03-08T20:00:00Z"));
    assert_eq!(
        events,
        vec![(utc("2026-03-08T16:30:00Z"), stale(last, 180))]
    );

    // All-day window across the gap: 01:00 PST (09:00Z) + 3 real hours = 12:00Z,
    // which is 05:00 PDT on the wall clock.
    let mut m = monitor("00:00", "24:00");
    let last = utc("2026-03-08T09:00:00Z");
    m.observe_inbound(last);
    let events = drive(&mut m, last, utc("2026-03-08T14:00:00Z"));
    assert_eq!(
        events,
        vec![(utc("2026-03-08T12:00:00Z"), stale(last, 180))]
    );
}

#[test]
fn fall_back_2026_thresholds_land_on_the_right_utc_instants() {
    // Sat 2026-10-31 22:30 PDT = Sun 05:30Z. 30 min until 23:00 PDT; the window reopens
    // Sun 07:00 PST = 15:00Z; 2 h 30 more gives 09:30 PST = 17:30Z.
    let mut m = monitor("07:00", "23:00");
    let last = utc("2026-11-01T05:30:00Z");
    assert_eq!(last, la("2026-10-31 22:30"));
    m.observe_inbound(last);
    let events = drive(&mut m, last, utc("2026-11-01T20:00:00Z"));
    assert_eq!(
        events,
        vec![(utc("2026-11-01T17:30:00Z"), stale(last, 180))]
    );

    // All-day window across the repeated hour: 00:30 PDT (07:30Z) + 3 real hours =
    // 10:30Z, which is 02:30 PST on the wall clock (not 03:30).
    let mut m = monitor("00:00", "24:00");
    let last = utc("2026-11-01T07:30:00Z");
    m.observe_inbound(last);
    let events = drive(&mut m, last, utc("2026-11-01T12:00:00Z"));
    assert_eq!(
        events,
        vec![(utc("2026-11-01T10:30:00Z"), stale(last, 180))]
    );
}

#[test]
fn dst_days_count_23_and_25_real_hours_and_boundaries_in_the_gap_or_fold_are_exact() {
    let all_day = monitor("00:00", "24:00").window;
    let day = |a: &str, b: &str| all_day.in_window(la(a), la(b));
    assert_eq!(
        day("2026-03-08 00:00", "2026-03-09 00:00"),
        TimeDelta::hours(23)
    );
    assert_eq!(
        day("2026-11-01 00:00", "2026-11-02 00:00"),
        TimeDelta::hours(25)
    );
    assert_eq!(
        day("2026-06-09 00:00", "2026-06-10 00:00"),
        TimeDelta::hours(24)
    );
    // 01:30–02:30: on spring-forward day only 01:30–02:00 PST exists (30 min); on
    // fall-back day 01:30–02:00 happens as PDT and again as PST, then 02:00–02:30 PST
    // (90 min).
    let night = monitor("01:30", "02:30").window;
    assert_eq!(
        night.in_window(la("2026-03-08 00:00"), la("2026-03-08 12:00")),
        TimeDelta::minutes(30)
    );
    assert_eq!(
        night.in_window(la("2026-11-01 00:00"), la("2026-11-01 12:00")),
        TimeDelta::minutes(90)
    );
    // A window opening inside the gap opens when the clock jumps to 03:00 PDT (10:00Z).
    let gap = monitor("02:30", "04:00").window;
    assert_eq!(
        gap.in_window(la("2026-03-08 00:00"), la("2026-03-08 12:00")),
        TimeDelta::hours(1)
    );
    assert_eq!(
        gap.in_window(utc("2026-03-08T09:00:00Z"), utc("2026-03-08T10:30:00Z")),
        TimeDelta::minutes(30)
    );
}

#[test]
fn a_window_across_midnight_counts_the_part_after_midnight_for_the_previous_day() {
    let mut m = monitor("20:00", "02:00");
    // 01:00 → 02:00 is 1 h; the window reopens at 20:00; 2 h more → 22:00.
    let last = la("2026-06-10 01:00");
    m.observe_inbound(last);
    let events = drive(&mut m, last, la("2026-06-11 03:00"));
    assert_eq!(events, vec![(la("2026-06-10 22:00"), stale(last, 180))]);
    // 23:00 → 02:00 next day is exactly 3 h.
    let mut m = monitor("20:00", "02:00");
    let last = la("2026-06-10 23:00");
    m.observe_inbound(last);
    let events = drive(&mut m, last, la("2026-06-11 12:00"));
    assert_eq!(events, vec![(la("2026-06-11 02:00"), stale(last, 180))]);
}

#[test]
fn a_long_silence_across_months_and_a_dst_change_is_measured_in_window_days() {
    let w = monitor("07:00", "23:00").window;
    // 2026-03-01 00:00 → 2026-04-01 00:00 local: 31 days × 16 h.
    assert_eq!(
        w.in_window(la("2026-03-01 00:00"), la("2026-04-01 00:00")),
        TimeDelta::hours(31 * 16)
    );
    assert_eq!(
        w.in_window(la("2026-04-01 00:00"), la("2026-03-01 00:00")),
        TimeDelta::zero()
    );
}

#[test]
fn validate_names_the_key_for_bad_times_zones_and_limits() {
    let bad = |f: fn(&mut StalenessConfig)| {
        let mut c = StalenessConfig::default();
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert!(bad(|c| c.window_start = "7am".into()).starts_with("window_start"));
    assert!(bad(|c| c.window_start = "24:00".into()).starts_with("window_start"));
    assert!(bad(|c| c.window_end = "24:30".into()).starts_with("window_end"));
    assert!(bad(|c| c.window_end = "23:0".into()).starts_with("window_end"));
    assert!(bad(|c| c.window_end = "07:00".into()).contains("00:00 and 24:00"));
    assert!(bad(|c| c.timezone = "America/Los_Angles".into()).starts_with("timezone"));
    assert!(bad(|c| c.max_silence_mins = 0).starts_with("max_silence_mins"));
    assert!(bad(|c| c.check_interval_secs = 0).starts_with("check_interval_secs"));
    assert!(StalenessConfig::default().validate().is_ok());
    assert!(StalenessMonitor::new(StalenessConfig {
        window_start: "x".into(),
        ..StalenessConfig::default()
    })
    .is_err());
    assert_eq!(parse_hhmm("7:05"), Some(425));
    assert_eq!(parse_hhmm(" 24:00 "), Some(1440));
    assert_eq!(parse_hhmm("-1:00"), None);
}

#[test]
fn config_takes_numbers_or_strings_as_from_the_environment() {
    let c: StalenessConfig = toml::from_str(
        "enabled = \"false\"\nmax_silence_mins = \"120\"\ncheck_interval_secs = 30\ntimezone = \"America/New_York\"\n",
    )
    .unwrap();
    assert!(!c.enabled);
    assert_eq!(c.max_silence_mins, 120);
    assert_eq!(c.check_interval_secs, 30);
    assert_eq!(c.window_start, "07:00");
    assert!(toml::from_str::<StalenessConfig>("max_silence = 5\n").is_err());
    let mut m = StalenessMonitor::new(c).unwrap();
    m.observe_inbound(utc("2026-06-09T00:00:00Z"));
    assert_eq!(m.check(utc("2026-06-20T00:00:00Z")), None, "disabled");
}

#[test]
fn alerts_name_the_silence_the_window_and_the_backfill_date() {
    let mut m = monitor("07:00", "23:00");
    let last = la("2026-03-07 22:30");
    m.observe_inbound(last);
    let ev = m.check(utc("2026-03-08T16:30:00Z")).unwrap();
    let a = m.to_alert(&ev);
    assert_eq!(a.key, "staleness");
    assert_eq!(a.severity, Severity::Critical);
    assert!(a.title.contains("3 h 00 min"), "{}", a.title);
    assert!(a.title.contains("07:00–23:00 America/Los_Angeles"));
    assert!(
        a.reason.contains("2026-03-08 06:30 UTC (Sat 22:30 PST)"),
        "{}",
        a.reason
    );
    // The local date (03-07) is earlier than the UTC date (03-08).
    assert!(a
        .next_step
        .contains("hooklog-replay backfill openphone --since 2026-03-07"));
    assert!(a.next_step.contains("check the tunnel"));
    m.observe_inbound(utc("2026-03-08T17:00:00Z"));
    let ev = m.check(utc("2026-03-08T17:01:00Z")).unwrap();
    let r = m.to_alert(&ev);
    assert_eq!(r.key, "staleness:recovered");
    assert_eq!(r.severity, Severity::Info);
    assert!(r.reason.contains("3 h 30 min"), "{}", r.reason);
    assert!(r.next_step.contains("--since 2026-03-07"));
}
