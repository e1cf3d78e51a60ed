//! Staleness monitor: alert when inbound messages stop arriving.
//!
//! Inbound SMS stop arriving when the tunnel is down, the listener is unreachable or a
//! provider's webhook settings changed; nothing fails loudly then, so silence itself is the
//! signal. Outreach is quiet at night, so silence is counted only inside a daily window in
//! a configured zone (default 07:00–23:00 America/Los_Angeles): with the default 3 h, a
//! last message at 22:30 and the window reopening at 07:00 make the alert fire at 09:30
//! local time, not at 01:30.
//!
//! [`StalenessMonitor`] is a pure state machine; its owner calls
//! [`StalenessMonitor::observe_inbound`] for every inbound message and
//! [`StalenessMonitor::check`] every `check_interval_secs`, passing the time in. It emits
//! one [`StalenessEvent::Stale`] per silent episode and one [`StalenessEvent::Recovered`]
//! when a message arrives after it.
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
use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, Severity};
use crate::config::de::parsed;

/// Minutes in a day, and the largest accepted `HH:MM` (`24:00`, end of window only).
const DAY_MINS: u32 = 24 * 60;
/// Offset changes are searched by probing this often (then bisected).
const OFFSET_PROBE: TimeDelta = TimeDelta::hours(6);

/// `[staleness]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StalenessConfig {
    /// Whether to watch for silence at all.
    #[serde(deserialize_with = "parsed")]
    pub enabled: bool,
    /// Alert after this many minutes without an inbound message, counted inside the window.
    #[serde(deserialize_with = "parsed")]
    pub max_silence_mins: u64,
    /// Local time the daily window opens, `HH:MM`.
    pub window_start: String,
    /// Local time the daily window closes, `HH:MM` (`24:00` for midnight; earlier than
    /// `window_start` for a window across midnight).
    pub window_end: String,
    /// IANA zone of the window, e.g. `America/Los_Angeles`.
    pub timezone: String,
    /// How often the daemon calls [`StalenessMonitor::check`], in seconds.
    #[serde(deserialize_with = "parsed")]
    pub check_interval_secs: u64,
}

impl Default for StalenessConfig {
    fn default() -> Self {
        StalenessConfig {
            enabled: true,
            max_silence_mins: 180,
            window_start: "07:00".into(),
            window_end: "23:00".into(),
            timezone: "America/Los_Angeles".into(),
            check_interval_secs: 60,
        }
    }
}

impl StalenessConfig {
    /// Checks what serde cannot. Messages start with the key (without `staleness.`).
    pub fn validate(&self) -> Result<(), String> {
        Window::from_config(self)?;
        if self.max_silence_mins == 0 {
            return Err("max_silence_mins: must be at least 1".into());
        }
        if self.max_silence_mins > 7 * 24 * 60 {
            return Err(format!(
                "max_silence_mins: {} is more than a week (10080)",
                self.max_silence_mins
            ));
        }
        if !(1..=3600).contains(&self.check_interval_secs) {
            return Err(format!(
                "check_interval_secs: {} is outside 1..=3600",
                self.check_interval_secs
            ));
        }
        Ok(())
    }
}

/// What [`StalenessMonitor::check`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StalenessEvent {
    /// No inbound message for `max_silence_mins` of in-window time.
    Stale {
        /// The last inbound message (or when monitoring started, if none was seen).
        silent_since: DateTime<Utc>,
        /// In-window minutes of silence at the check.
        minutes: i64,
    },
    /// An inbound message arrived after a `Stale`.
    Recovered {
        /// The start of the silence that ended (as in the `Stale` event).
        silent_since: DateTime<Utc>,
        /// In-window minutes from `silent_since` to the message that ended it.
        silent_for_mins: i64,
    },
}

/// The daily window in its zone, parsed.
#[derive(Clone, Debug)]
struct Window {
    tz: Tz,
    /// Minutes after local midnight the window opens (0..1440).
    open: u32,
    /// Minutes after the opening day's local midnight it closes (1..2880; over 1440
    /// when it crosses midnight).
    close: u32,
}

impl Window {
    fn from_config(c: &StalenessConfig) -> Result<Window, String> {
        let tz: Tz = c.timezone.trim().parse().map_err(|e| {
            format!(
                "timezone: `{}` is not an IANA zone such as America/Los_Angeles ({e})",
                c.timezone
            )
        })?;
        let open = parse_hhmm(&c.window_start)
            .filter(|m| *m < DAY_MINS)
            .ok_or_else(|| {
                format!(
                    "window_start: `{}` is not a time HH:MM (00:00..23:59)",
                    c.window_start
                )
            })?;
        let end = parse_hhmm(&c.window_end).ok_or_else(|| {
            format!(
                "window_end: `{}` is not a time HH:MM (00:00..24:00)",
                c.window_end
            )
        })?;
        if end == open {
            return Err(format!(
                "window_end: equal to window_start ({}); for a window all day use 00:00 and 24:00",
                c.window_start
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
    fn in_window(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> TimeDelta {
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
fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let digits = |p: &str, max_len: usize| {
        (!p.is_empty() && p.len() <= max_len && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
    };
    let (h, m) = (digits(h, 2)?, digits(m, 2).filter(|_| m.len() == 2)?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

/// Watches for silence. Pure: the caller passes the time in.
///
/// The daemon should seed it at start with the receipt time of the last inbound message in
/// the log (`observe_inbound`), then feed it every *live* inbound message event (webhook
/// receipts, not backfilled copies, whose receipt time says nothing about the webhooks).
/// With no message ever seen, silence is counted from the first `check`.
#[derive(Clone, Debug)]
pub struct StalenessMonitor {
    config: StalenessConfig,
    window: Window,
    max_silence: TimeDelta,
    /// The last inbound message, or the first check when none was seen yet.
    silent_since: Option<DateTime<Utc>>,
    /// `silent_since` is the first check, not a message.
    since_start: bool,
    /// A `Stale` was emitted for the current silence.
    stale: bool,
    /// A `Recovered` waiting for the next check.
    recovered: Option<StalenessEvent>,
}

impl StalenessMonitor {
    /// A monitor for a configuration (validated here too).
    pub fn new(config: StalenessConfig) -> Result<Self, String> {
        config.validate()?;
        let window = Window::from_config(&config)?;
        let max_silence =
            TimeDelta::minutes(i64::try_from(config.max_silence_mins).unwrap_or(i64::MAX));
        Ok(StalenessMonitor {
            config,
            window,
            max_silence,
            silent_since: None,
            since_start: false,
            stale: false,
            recovered: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StalenessConfig {
        &self.config
    }

    /// Whether a `Stale` was emitted and no message has arrived since.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Restores, at start, that a previous process already emitted `Stale` for the silence
    /// that began at `silent_since`, so this silence raises no second `Stale`. Call it after
    /// priming with the last inbound message ([`StalenessMonitor::observe_inbound`]). When
    /// that message is newer than `silent_since`, it ended the episode before the restart
    /// without its `Recovered` being emitted: the next `check` emits it, once.
    pub fn restore_alerted(&mut self, silent_since: DateTime<Utc>) {
        match self.silent_since {
            Some(last) if last > silent_since && !self.since_start => {
                self.stale = false;
                self.recovered = Some(StalenessEvent::Recovered {
                    silent_since,
                    silent_for_mins: self.window.in_window(silent_since, last).num_minutes(),
                });
            }
            _ => {
                self.silent_since = Some(silent_since);
                self.since_start = false;
                self.stale = true;
            }
        }
    }

    /// Records an inbound message received at `at`. A message older than the last one seen
    /// changes nothing (except that it replaces the first-check baseline).
    pub fn observe_inbound(&mut self, at: DateTime<Utc>) {
        if let Some(since) = self.silent_since {
            // The first-check baseline is a placeholder: any message replaces it, unless an
            // alert was already raised from it (then only a newer message is news).
            let placeholder = self.since_start && !self.stale;
            if at <= since && !placeholder {
                return;
            }
            if self.stale {
                self.stale = false;
                self.recovered = Some(StalenessEvent::Recovered {
                    silent_since: since,
                    silent_for_mins: self.window.in_window(since, at).num_minutes(),
                });
            }
        }
        self.silent_since = Some(at);
        self.since_start = false;
    }

    /// What changed by `now`: `Recovered` once after a message ended a stale episode,
    /// `Stale` once when the in-window silence reaches `max_silence_mins`, else `None`.
    /// Always `None` when disabled.
    pub fn check(&mut self, now: DateTime<Utc>) -> Option<StalenessEvent> {
        if !self.config.enabled {
            return None;
        }
        if let Some(event) = self.recovered.take() {
            return Some(event);
        }
        let Some(since) = self.silent_since else {
            self.silent_since = Some(now);
            self.since_start = true;
            return None;
        };
        if self.stale {
            return None;
        }
        let silent = self.window.in_window(since, now);
        if silent < self.max_silence {
            return None;
        }
        self.stale = true;
        Some(StalenessEvent::Stale {
            silent_since: since,
            minutes: silent.num_minutes(),
        })
    }

    /// The operator alert for an event. Keys: `staleness` for `Stale`,
    /// `staleness:recovered` for `Recovered` (a separate key, so that a recovery soon after
    /// the alert is not coalesced away with it).
    pub fn to_alert(&self, event: &StalenessEvent) -> Alert {
        let c = &self.config;
        let window = format!("{}–{} {}", c.window_start, c.window_end, c.timezone);
        match *event {
            StalenessEvent::Stale {
                silent_since,
                minutes,
            } => {
                let last = if self.since_start && self.silent_since == Some(silent_since) {
                    format!(
                        "No inbound message since hooklog started watching at {}",
                        self.when(silent_since)
                    )
                } else {
                    format!(
                        "The last inbound message arrived at {}",
                        self.when(silent_since)
                    )
                };
                Alert {
                    key: "staleness".into(),
                    severity: Severity::Critical,
                    title: format!(
                        "No inbound messages for {} of the {window} window",
                        hours_mins(minutes)
                    ),
                    reason: format!(
                        "{last}. Webhooks are probably not reaching hooklog: the tunnel, the \
                         listener, or the provider's webhook settings."
                    ),
                    next_step: format!(
                        "check the tunnel and the provider webhook settings (Quo, Twilio); then {}",
                        self.backfill(silent_since)
                    ),
                }
            }
            StalenessEvent::Recovered {
                silent_since,
                silent_for_mins,
            } => Alert {
                key: "staleness:recovered".into(),
                severity: Severity::Info,
                title: "Inbound messages are arriving again".into(),
                reason: format!(
                    "After {} of silence in the {window} window, since {}.",
                    hours_mins(silent_for_mins),
                    self.when(silent_since)
                ),
                next_step: format!(
                    "recover what the webhooks missed: {}",
                    self.backfill(silent_since)
                ),
            },
        }
    }

    /// `2026-03-08 06:30 UTC (Sat 22:30 PST)`
    fn when(&self, t: DateTime<Utc>) -> String {
        format!(
            "{} ({})",
            t.format("%Y-%m-%d %H:%M UTC"),
            t.with_timezone(&self.window.tz).format("%a %H:%M %Z")
        )
    }

    /// The backfill commands for a silence that began at `since`. The date is the earlier
    /// of its UTC and local dates, so it is at or before `since` whichever zone the CLI
    /// reads it in.
    fn backfill(&self, since: DateTime<Utc>) -> String {
        let date = since
            .date_naive()
            .min(since.with_timezone(&self.window.tz).date_naive());
        format!(
            "`hooklog-replay backfill openphone --since {date}` and \
             `hooklog-replay backfill twilio --since {date}`"
        )
    }
}

/// `3 h 05 min`, `45 min`
fn hours_mins(minutes: i64) -> String {
    if minutes < 60 {
        format!("{minutes} min")
    } else {
        format!("{} h {:02} min", minutes / 60, minutes % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
