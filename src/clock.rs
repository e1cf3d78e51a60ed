//! The one clock hooklog reads where time decides something: the outbound path (gate
//! decisions, holds, last-moment checks), the alerts' coalescing and hourly cap, and the
//! dispatch breaker's open interval.
//!
//! Everything the outbound path's clock decides is appended to the log as a record, so a
//! replay never reads it again (guarantee 3). The clock is a value rather than a call to
//! `Utc::now()` so that tests can run the real daemon at a chosen local time of the recipient:
//! quiet hours make "send now" depend on the hour, and between 11:00 and 12:00 UTC no US zone
//! is inside 08:00–21:00. Production uses [`Clock::system`]; only debug builds of the daemon
//! accept an offset from the environment (see `main.rs`).
//!
//! Two readings: [`Clock::now`], the wall-clock time (what a decision or an alert names), and
//! [`Clock::instant`], monotonic time (what an interval is measured with, so a wall-clock
//! step cannot shorten or stretch it). A [manual](Clock::manual) clock moves only when its
//! [`ClockHand`] advances it, both readings together: tests of coalescing, caps and breakers
//! then run in no time and never race the real clock.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// The system clock (optionally shifted), or a manual one for tests.
#[derive(Clone, Default)]
pub struct Clock {
    source: Reading,
}

#[derive(Clone)]
enum Reading {
    System { offset_secs: i64 },
    Manual(Arc<Manual>),
}

impl Default for Reading {
    fn default() -> Self {
        Reading::System { offset_secs: 0 }
    }
}

/// A manual clock's state: where it started, and how far its hand has moved it.
struct Manual {
    wall: DateTime<Utc>,
    instant: Instant,
    elapsed: Mutex<Duration>,
}

impl Manual {
    fn elapsed(&self) -> Duration {
        // Only `advance` writes it, with a plain addition: a panic cannot leave it torn.
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Moves a [manual](Clock::manual) clock, and every copy of it, forward.
#[derive(Clone)]
pub struct ClockHand(Arc<Manual>);

impl ClockHand {
    /// Moves the clock forward by `by`: both its wall-clock time and its monotonic time.
    pub fn advance(&self, by: Duration) {
        let mut elapsed = self.0.elapsed.lock().unwrap_or_else(|p| p.into_inner());
        *elapsed += by;
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::shifted(0)
    }

    /// The system clock shifted by `offset_secs` (tests).
    pub fn shifted(offset_secs: i64) -> Clock {
        Clock {
            source: Reading::System { offset_secs },
        }
    }

    /// A clock that reads `at` now and then runs at the normal rate (tests).
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock::shifted((at - Utc::now()).num_seconds())
    }

    /// A clock that reads `at` and moves only when its hand advances it (tests).
    pub fn manual(at: DateTime<Utc>) -> (Clock, ClockHand) {
        let manual = Arc::new(Manual {
            wall: at,
            instant: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        });
        let clock = Clock {
            source: Reading::Manual(manual.clone()),
        };
        (clock, ClockHand(manual))
    }

    /// The offset from the system clock, in seconds (0 for a manual clock).
    pub fn offset_secs(&self) -> i64 {
        match &self.source {
            Reading::System { offset_secs } => *offset_secs,
            Reading::Manual(_) => 0,
        }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.source {
            Reading::System { offset_secs } => Utc::now() + chrono::Duration::seconds(*offset_secs),
            Reading::Manual(m) => {
                // A test clock is advanced by seconds or hours, never by 292 000 years.
                m.wall + chrono::Duration::from_std(m.elapsed()).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// The current monotonic time: the system's for a system clock (an offset shifts only the
    /// wall-clock time), the start plus what the hand added for a manual one.
    pub fn instant(&self) -> Instant {
        match &self.source {
            Reading::System { .. } => Instant::now(),
            Reading::Manual(m) => m.instant + m.elapsed(),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Reading::System { offset_secs: 0 } => f.write_str("Clock::system"),
            Reading::System { offset_secs } => write!(f, "Clock::shifted({offset_secs})"),
            Reading::Manual(m) => write!(f, "Clock::manual({}, +{:?})", m.wall, m.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_shifted_clock_starts_where_asked_and_keeps_running() {
        let at = Utc.with_ymd_and_hms(2026, 6, 10, 16, 0, 0).unwrap();
        let c = Clock::starting_at(at);
        let d = (c.now() - at).num_seconds();
        assert!((0..=2).contains(&d), "{d}");
        assert!((Clock::system().now() - Utc::now()).num_seconds().abs() <= 1);
    }

    #[test]
    fn a_manual_clock_moves_only_when_its_hand_advances_it_and_every_copy_sees_it() {
        let at = Utc.with_ymd_and_hms(2026, 6, 10, 16, 0, 0).unwrap();
        let (clock, hand) = Clock::manual(at);
        let copy = clock.clone();
        let start = clock.instant();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), at);
        assert_eq!(clock.instant(), start);
        hand.advance(Duration::from_secs(90));
        assert_eq!(copy.now(), at + chrono::Duration::seconds(90));
        assert_eq!(copy.instant() - start, Duration::from_secs(90));
    }
}
