//! The daily window in which silence counts, in its zone: `HH:MM` to `HH:MM` local time, and
//! the in-window time between two instants.
//!
//! # Time arithmetic
//!
//! In-window time is measured exactly, across DST changes: the interval is cut where the
//! zone's UTC offset changes (found by probing every 6 hours and bisecting to the second;
//! no zone changes its offset twice within 6 hours), and on each piece of constant offset
//! the local wall-clock time is a shift of UTC, so the overlap with the window is computed
//! by walking that piece's local calendar days. So a 23 h or 25 h day counts the real
//! elapsed time, a window boundary inside the spring-forward gap opens when the clock jumps
//! past it, and a window that covers the repeated fall-back hour counts that hour twice
//! (it did elapse twice).
//!
//! # Window
//!
//! `window_start`/`window_end` are `HH:MM` local times; `window_end` may be `24:00`. A
//! window across midnight (e.g. `20:00`–`02:00`) is supported: the window that opens on day
//! D closes on D+1. `00:00`–`24:00` counts all day. Equal start and end are rejected, being
//! ambiguous between "never" and "always".

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// Minutes in a day, and the largest accepted `HH:MM` (`24:00`, end of window only).
const DAY_MINS: u32 = 24 * 60;
/// Offset changes are searched by probing this often (then bisected).
const OFFSET_PROBE: TimeDelta = TimeDelta::hours(6);

/// The daily window in its zone, parsed.
#[derive(Clone, Debug)]
pub struct Window {
    pub tz: Tz,
    /// Minutes after local midnight the window opens (0..1440).
    open: u32,
    /// Minutes after the opening day's local midnight it closes (1..2880; over 1440
    /// when it crosses midnight).
    close: u32,
}

impl Window {
    /// Parses the window. Messages start with the `[staleness]` key at fault.
    pub fn new(timezone: &str, window_start: &str, window_end: &str) -> Result<Window, String> {
        let tz: Tz = timezone.trim().parse().map_err(|e| {
            format!(
                "timezone: `{}` is not an IANA zone such as America/Los_Angeles ({e})",
                timezone
            )
        })?;
        let open = parse_hhmm(window_start)
            .filter(|m| *m < DAY_MINS)
            .ok_or_else(|| {
                format!(
                    "window_start: `{}` is not a time HH:MM (00:00..23:59)",
                    window_start
                )
            })?;
        let end = parse_hhmm(window_end).ok_or_else(|| {
            format!(
                "window_end: `{}` is not a time HH:MM (00:00..24:00)",
                window_end
            )
        })?;
        if end == open {
            return Err(format!(
                "window_end: equal to window_start ({}); for a window all day use 00:00 and 24:00",
                window_start
            ));
        }
        let close = if end > open { end } else { end + DAY_MINS };
        Ok(Window { tz, open, close })
    }

    fn offset_at(&self, t: DateTime<Utc>) -> TimeDelta {
        let fixed = self.tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        TimeDelta::seconds(i64::from(fixed.local_minus_utc()))
    }

    /// The first instant in `(t, to]` whose UTC offset differs from `offset` (`t`'s), or
    /// `to` if none.
    fn next_offset_change(
        &self,
        t: DateTime<Utc>,
        to: DateTime<Utc>,
        offset: TimeDelta,
    ) -> DateTime<Utc> {
        let mut lo = t;
        loop {
            let hi = (lo + OFFSET_PROBE).min(to);
            if self.offset_at(hi) != offset {
                // Transitions fall on whole seconds: bisect on them. `lo` (rounded down)
                // has the old offset, `hi` (rounded up) the new one.
                let (mut a, mut b) = (lo.timestamp(), hi.timestamp());
                if DateTime::from_timestamp(b, 0).is_some_and(|x| x < hi) {
                    b += 1;
                }
                while b - a > 1 {
                    let mid = a + (b - a) / 2;
                    match DateTime::from_timestamp(mid, 0) {
                        Some(m) if self.offset_at(m) == offset => a = mid,
                        _ => b = mid,
                    }
                }
                return DateTime::from_timestamp(b, 0).map_or(hi, |x| x.min(to));
            }
            if hi >= to {
                return to;
            }
            lo = hi;
        }
    }

    /// Time in `[from, to)` whose local wall-clock time is inside the window.
    pub fn in_window(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> TimeDelta {
        let mut total = TimeDelta::zero();
        let mut t = from;
        while t < to {
            let offset = self.offset_at(t);
            let end = self.next_offset_change(t, to, offset);
            total += self.local_overlap(t.naive_utc() + offset, end.naive_utc() + offset);
            t = end;
        }
        total
    }

    /// Overlap of the local wall-clock interval `[x, y)`, on which the offset is constant,
    /// with the windows of the local days it touches.
    fn local_overlap(&self, x: NaiveDateTime, y: NaiveDateTime) -> TimeDelta {
        let mut total = TimeDelta::zero();
        // A window that opened the day before may still be open at `x`.
        let mut day: NaiveDate = x.date().pred_opt().unwrap_or(x.date());
        while day <= y.date() {
            let midnight = day.and_time(NaiveTime::MIN);
            let open = (midnight + TimeDelta::minutes(i64::from(self.open))).max(x);
            let close = (midnight + TimeDelta::minutes(i64::from(self.close))).min(y);
            if close > open {
                total += close - open;
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        total
    }
}

/// `HH:MM` (or `H:MM`) as minutes after midnight, up to `24:00`.
pub(super) fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let digits = |p: &str, max_len: usize| {
        (!p.is_empty() && p.len() <= max_len && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
    };
    let (h, m) = (digits(h, 2)?, digits(m, 2).filter(|_| m.len() == 2)?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}
