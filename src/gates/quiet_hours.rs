//! `quiet_hours`: may the recipient be texted at this instant, in every place they may be?
//!
//! The recipient's candidate zones are every IANA zone of their area code
//! ([`super::area_codes`]); their state is the one the area code belongs to (an FL area code
//! is presumed to be in FL, docs/reference/compliance.md#quiet-hours-by-state). The window of each zone is the configured
//! window (08:00–21:00 by default, never wider: 47 CFR 64.1200(c)(1)) narrowed by the state's
//! rule from the table of docs/reference/compliance.md#quiet-hours-by-state, including days with no window at all (no
//! Sundays in AL, LA, MS, RI, UT). The request may go only if the instant is inside the window
//! of **every** zone, in that zone's local time: chrono-tz applies each zone's own DST rules,
//! so a DST change and the zones without DST (Arizona, Hawaii, Puerto Rico) need no special
//! case. Windows are half-open: 20:59 is inside a window ending at 21:00, 21:00 is not.
//!
//! When the window is shut, [`check`] also says when it next opens for every zone at once
//! (the earliest instant that is the start of some zone's window and inside all the others),
//! so the caller can hold the request until then.
//!
//! Not modelled: legal holidays (UT, LA, RI, MS forbid them; the table has no calendar) and
//! declared emergencies (LA). Invariant: [`check`] never says open at an instant outside any
//! candidate zone's window (a property test below).

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::area_codes::{self, LookupError};
use super::config::{ComplianceConfig, HhMm, UnknownAreaCode};

/// Allowed window per weekday, Monday first; `None` is a day without sending.
type Week = [Option<(HhMm, HhMm)>; 7];

const fn every_day(start: HhMm, end: HhMm) -> Week {
    [Some((start, end)); 7]
}

const fn no_sunday(start: HhMm, end: HhMm) -> Week {
    let w = Some((start, end));
    [w, w, w, w, w, w, None]
}

const H8: HhMm = HhMm::new(8, 0);
const H9: HhMm = HhMm::new(9, 0);
const H10: HhMm = HhMm::new(10, 0);
const H12: HhMm = HhMm::new(12, 0);
const H17: HhMm = HhMm::new(17, 0);
const H18: HhMm = HhMm::new(18, 0);
const H20: HhMm = HhMm::new(20, 0);
const H21: HhMm = HhMm::new(21, 0);

/// When nothing is known about the state (docs/reference/compliance.md#if-the-state-is-unknown).
const UNKNOWN_STATE: Week = [
    Some((H10, H18)),
    Some((H10, H18)),
    Some((H10, H18)),
    Some((H10, H18)),
    Some((H10, H18)),
    Some((H10, H17)),
    None,
];

/// The state rules of docs/reference/compliance.md#quiet-hours-by-state, and only those. States not listed follow the
/// federal window. Vendor-sourced (UNCONFIRMED) rows are applied too: stricter is safe.
fn state_rule(region: &str) -> Option<Week> {
    Some(match region {
        "US-FL" | "US-OK" | "US-MD" | "US-WA" | "US-MA" => every_day(H8, H20),
        "US-AL" | "US-MS" | "US-LA" => no_sunday(H8, H20),
        "US-TX" => {
            let w = Some((H9, H21));
            [w, w, w, w, w, w, Some((H12, H21))]
        }
        "US-UT" => no_sunday(H8, H21),
        "US-RI" => {
            let w = Some((H9, H18));
            [w, w, w, w, w, Some((H10, H17)), None]
        }
        "US-CT" | "US-NV" => every_day(H9, H20),
        "US-KY" => every_day(H10, H21),
        "US-MI" | "US-MN" | "US-NM" => every_day(H9, H21),
        "US-VA" => every_day(H8, H21),
        _ => return None,
    })
}

/// Zones assumed for an unknown area code under [`UnknownAreaCode::Strictest`]: the whole
/// US, east to west.
const ALL_US_ZONES: &[Tz] = &[
    chrono_tz::America::New_York,
    chrono_tz::America::Chicago,
    chrono_tz::America::Denver,
    chrono_tz::America::Phoenix,
    chrono_tz::America::Los_Angeles,
    chrono_tz::America::Anchorage,
    chrono_tz::Pacific::Honolulu,
];

/// The outcome for one recipient at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The region the rules were taken from (`US-FL`, …, or `unknown`).
    pub region: String,
    /// Every zone checked.
    pub zones: Vec<Tz>,
    /// Inside the window of every zone.
    pub open: bool,
    /// When shut: the next instant at which every zone is inside its window (within 8 days).
    pub opens_at: Option<DateTime<Utc>>,
}

/// Checks the recipient `to` (E.164) at `now`.
pub fn check(
    config: &ComplianceConfig,
    to: &str,
    now: DateTime<Utc>,
) -> Result<Check, LookupError> {
    let (region, zones, week) = match area_codes::lookup(to) {
        Ok(ac) => {
            let fed = every_day(config.quiet_start, config.quiet_end);
            let week = match state_rule(ac.region) {
                Some(state) => intersect(&fed, &state),
                None => fed,
            };
            (ac.region.to_owned(), ac.zones.clone(), week)
        }
        Err(e) => match config.unknown_area_code {
            UnknownAreaCode::Refuse => return Err(e),
            UnknownAreaCode::Strictest => {
                let fed = every_day(config.quiet_start, config.quiet_end);
                (
                    "unknown".to_owned(),
                    ALL_US_ZONES.to_vec(),
                    intersect(&fed, &UNKNOWN_STATE),
                )
            }
        },
    };
    let open = all_inside(&zones, &week, now);
    let opens_at = if open {
        None
    } else {
        next_open(&zones, &week, now)
    };
    Ok(Check {
        region,
        zones,
        open,
        opens_at,
    })
}

fn intersect(a: &Week, b: &Week) -> Week {
    let mut out = [None; 7];
    for (i, slot) in out.iter_mut().enumerate() {
        if let (Some((s1, e1)), Some((s2, e2))) = (a[i], b[i]) {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if s < e {
                *slot = Some((s, e));
            }
        }
    }
    out
}

fn inside(tz: Tz, week: &Week, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&tz);
    let day = local.weekday().num_days_from_monday() as usize;
    let minute = (local.hour() * 60 + local.minute()) as u16;
    week[day].is_some_and(|(s, e)| s.minutes() <= minute && minute < e.minutes())
}

fn all_inside(zones: &[Tz], week: &Week, at: DateTime<Utc>) -> bool {
    zones.iter().all(|&tz| inside(tz, week, at))
}

/// The earliest instant after `now` inside every zone's window. The allowed set is an
/// intersection of half-open intervals, so it starts where some zone's window starts: only
/// those instants need testing.
fn next_open(zones: &[Tz], week: &Week, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut candidates = Vec::new();
    for &tz in zones {
        let today = now.with_timezone(&tz).date_naive();
        for offset in 0..=8 {
            let date = today + Duration::days(offset);
            let day = date.weekday().num_days_from_monday() as usize;
            let Some((start, _)) = week[day] else {
                continue;
            };
            let Some(time) = chrono::NaiveTime::from_hms_opt(
                u32::from(start.minutes() / 60),
                u32::from(start.minutes() % 60),
                0,
            ) else {
                continue;
            };
            // A start inside a DST gap does not exist locally; skipping it only delays.
            if let Some(at) = tz
                .from_local_datetime(&NaiveDateTime::new(date, time))
                .earliest()
            {
                let at = at.with_timezone(&Utc);
                if at > now {
                    candidates.push(at);
                }
            }
        }
    }
    candidates.sort();
    candidates
        .into_iter()
        .find(|&at| all_inside(zones, week, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> ComplianceConfig {
        ComplianceConfig::default()
    }

    /// `local` in zone `tz` as UTC.
    fn at(tz: Tz, local: &str) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    use chrono_tz::America::{Chicago, Denver, Los_Angeles, New_York, Phoenix};

    // 2026-06-10 is a Wednesday; 2026-06-14 a Sunday.
    const NY_NUMBER: &str = "+12125550100"; // 212 New York, federal window
    const FL_NUMBER: &str = "+13055550100"; // 305 Miami, 8am–8pm
    const TX_NUMBER: &str = "+12145550100"; // 214 Dallas, 9am–9pm, Sunday noon
    const SPLIT_FL: &str = "+18505550100"; // 850 Florida panhandle: Eastern and Central

    #[test]
    fn twenty_fifty_nine_local_is_inside_and_twenty_one_hundred_is_shut() {
        let c = check(&cfg(), NY_NUMBER, at(New_York, "2026-06-10 20:59")).unwrap();
        assert!(c.open);
        let c = check(&cfg(), NY_NUMBER, at(New_York, "2026-06-10 21:00")).unwrap();
        assert!(!c.open);
        assert_eq!(c.opens_at, Some(at(New_York, "2026-06-11 08:00")));
    }

    #[test]
    fn seven_fifty_nine_is_shut_and_eight_opens() {
        let c = check(&cfg(), NY_NUMBER, at(New_York, "2026-06-10 07:59")).unwrap();
        assert!(!c.open);
        assert_eq!(c.opens_at, Some(at(New_York, "2026-06-10 08:00")));
        assert!(
            check(&cfg(), NY_NUMBER, at(New_York, "2026-06-10 08:00"))
                .unwrap()
                .open
        );
    }

    #[test]
    fn a_multi_zone_area_code_is_shut_while_one_zone_is_outside() {
        // 08:30 Eastern is 07:30 Central: the panhandle's Central exchanges are still asleep.
        let c = check(&cfg(), SPLIT_FL, at(New_York, "2026-06-10 08:30")).unwrap();
        assert_eq!(c.zones.len(), 2);
        assert!(!c.open);
        assert_eq!(c.opens_at, Some(at(Chicago, "2026-06-10 08:00")));
        // 19:30 Eastern is inside FL's 8pm limit in both zones; 20:00 Eastern is not.
        assert!(
            check(&cfg(), SPLIT_FL, at(New_York, "2026-06-10 19:59"))
                .unwrap()
                .open
        );
        assert!(
            !check(&cfg(), SPLIT_FL, at(New_York, "2026-06-10 20:00"))
                .unwrap()
                .open
        );
    }

    #[test]
    fn arizona_numbers_respect_both_phoenix_and_navajo_nation_time() {
        // In summer Denver (MDT) is an hour ahead of Phoenix (MST): 20:30 Phoenix is 21:30 MDT.
        let c = check(&cfg(), "+16025550100", at(Phoenix, "2026-06-10 20:30")).unwrap();
        assert!(!c.open);
        assert!(c.zones.contains(&Denver));
    }

    #[test]
    fn a_stricter_state_shuts_at_eight_pm() {
        let c = check(&cfg(), FL_NUMBER, at(New_York, "2026-06-10 19:59")).unwrap();
        assert!(c.open);
        let c = check(&cfg(), FL_NUMBER, at(New_York, "2026-06-10 20:00")).unwrap();
        assert_eq!(c.region, "US-FL");
        assert!(!c.open);
        // The same instant is fine for a New York number.
        assert!(
            check(&cfg(), NY_NUMBER, at(New_York, "2026-06-10 20:00"))
                .unwrap()
                .open
        );
    }

    #[test]
    fn texas_waits_until_noon_on_sunday() {
        let c = check(&cfg(), TX_NUMBER, at(Chicago, "2026-06-14 11:59")).unwrap();
        assert!(!c.open);
        assert_eq!(c.opens_at, Some(at(Chicago, "2026-06-14 12:00")));
        assert!(
            check(&cfg(), TX_NUMBER, at(Chicago, "2026-06-10 09:00"))
                .unwrap()
                .open
        );
        assert!(
            !check(&cfg(), TX_NUMBER, at(Chicago, "2026-06-10 08:59"))
                .unwrap()
                .open
        );
    }

    #[test]
    fn a_no_sunday_state_holds_until_monday_morning() {
        // 205 Alabama, Sunday 10:00 Central → Monday 08:00 Central.
        let c = check(&cfg(), "+12055550100", at(Chicago, "2026-06-14 10:00")).unwrap();
        assert!(!c.open);
        assert_eq!(c.opens_at, Some(at(Chicago, "2026-06-15 08:00")));
    }

    #[test]
    fn the_window_follows_local_time_across_a_dst_change() {
        // US DST ends Sunday 2026-11-01. 20:30 Eastern on Saturday (EDT) is 00:30 UTC; on
        // Monday (EST) 20:30 is 01:30 UTC. Both are inside, and 21:00 local is shut on both.
        for day in ["2026-10-31", "2026-11-02"] {
            let open = at(New_York, &format!("{day} 20:30"));
            let shut = at(New_York, &format!("{day} 21:00"));
            assert!(check(&cfg(), NY_NUMBER, open).unwrap().open, "{day}");
            assert!(!check(&cfg(), NY_NUMBER, shut).unwrap().open, "{day}");
        }
        // 01:30 UTC is 21:30 EDT on Saturday night but 20:30 EST on Monday night: a fixed
        // offset would get one of them wrong.
        let sat = DateTime::parse_from_rfc3339("2026-11-01T01:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mon = DateTime::parse_from_rfc3339("2026-11-03T01:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(!check(&cfg(), NY_NUMBER, sat).unwrap().open);
        assert!(check(&cfg(), NY_NUMBER, mon).unwrap().open);
        // Held on the change day itself: 22:00 Saturday EDT → Sunday 08:00 EST.
        let c = check(&cfg(), NY_NUMBER, at(New_York, "2026-10-31 22:00")).unwrap();
        assert_eq!(c.opens_at, Some(at(New_York, "2026-11-01 08:00")));
        assert_eq!(c.opens_at.unwrap().hour(), 13); // 08:00 EST = 13:00 UTC (not 12:00)
    }

    #[test]
    fn an_unknown_area_code_is_refused_unless_the_strictest_rule_is_configured() {
        let now = at(New_York, "2026-06-10 12:00");
        assert_eq!(
            check(&cfg(), "+18005550100", now),
            Err(LookupError::Unknown(800))
        );
        let strict = ComplianceConfig {
            unknown_area_code: UnknownAreaCode::Strictest,
            ..cfg()
        };
        // Noon Eastern is 06:00 in Hawaii: shut until 10:00 Hawaii (16:00 Eastern).
        let c = check(&strict, "+18005550100", now).unwrap();
        assert!(!c.open);
        assert_eq!(
            c.opens_at,
            Some(at(chrono_tz::Pacific::Honolulu, "2026-06-10 10:00"))
        );
        assert!(c.zones.contains(&Los_Angeles));
    }

    #[test]
    fn a_narrower_configured_window_applies() {
        let c = ComplianceConfig {
            quiet_start: HhMm::new(9, 30),
            quiet_end: HhMm::new(17, 0),
            ..cfg()
        };
        assert!(
            !check(&c, NY_NUMBER, at(New_York, "2026-06-10 09:29"))
                .unwrap()
                .open
        );
        assert!(
            check(&c, NY_NUMBER, at(New_York, "2026-06-10 16:59"))
                .unwrap()
                .open
        );
        assert!(
            !check(&c, NY_NUMBER, at(New_York, "2026-06-10 17:00"))
                .unwrap()
                .open
        );
    }

    /// An independent reading of "inside": the local wall-clock time compared as a
    /// `NaiveTime`, against both the federal window and the state's window for that day.
    fn in_own_window(tz: Tz, region: &str, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&tz).naive_local();
        let day = local.weekday().num_days_from_monday() as usize;
        let clock =
            |m: HhMm| chrono::NaiveTime::from_hms_opt(u32::from(m.0 / 60), u32::from(m.0 % 60), 0);
        let within = |(s, e): (HhMm, HhMm)| {
            let time = local.time();
            clock(s).is_some_and(|s| time >= s)
                && (e.0 == 24 * 60 || clock(e).is_some_and(|e| time < e))
        };
        let federal = within((H8, H21));
        let state = state_rule(region).is_none_or(|week| week[day].is_some_and(within));
        federal && state
    }

    const NPAS: &[u16] = &[212, 305, 850, 208, 605, 701, 907, 214, 401, 480, 775, 205];

    fn agrees_with_the_independent_reading(
        npa: u16,
        now: DateTime<Utc>,
    ) -> Result<(), TestCaseError> {
        let to = format!("+1{npa}5550100");
        let c = check(&cfg(), &to, now).unwrap();
        let every = c.zones.iter().all(|&tz| in_own_window(tz, &c.region, now));
        prop_assert_eq!(c.open, every);
        if let Some(next) = c.opens_at {
            prop_assert!(next > now);
            prop_assert!(c.zones.iter().all(|&tz| in_own_window(tz, &c.region, next)));
            // Nothing earlier on the minute grid was open.
            let before = next - Duration::minutes(1);
            if before > now {
                prop_assert!(!check(&cfg(), &to, before).unwrap().open);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn open_is_never_said_outside_any_zones_window(
            npa in prop::sample::select(NPAS),
            secs in 1_767_225_600i64..1_830_297_600, // 2026..2028
        ) {
            agrees_with_the_independent_reading(npa, DateTime::from_timestamp(secs, 0).unwrap())?;
        }

        #[test]
        fn open_is_never_said_outside_any_zones_window_at_the_edges(
            npa in prop::sample::select(NPAS),
            day in 0i64..800,
            minute in prop::sample::select(&[479u32, 480, 539, 540, 719, 720, 1019, 1020, 1079, 1080, 1199, 1200, 1259, 1260][..]),
        ) {
            // A minute next to a window edge, in the local time of the area code's first zone.
            let tz = area_codes::lookup(&format!("+1{npa}5550100")).unwrap().zones[0];
            let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Duration::days(day);
            let naive = date.and_hms_opt(minute / 60, minute % 60, 0).unwrap();
            if let Some(local) = tz.from_local_datetime(&naive).earliest() {
                agrees_with_the_independent_reading(npa, local.with_timezone(&Utc))?;
            }
        }
    }
}
