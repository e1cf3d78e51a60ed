//! The wall clock the outbound path reads (gate decisions, holds, last-moment checks).
//!
//! Everything the clock decides is appended to the log as a record, so a replay never
//! reads it again (guarantee 3). The clock is a value rather than a call to `Utc::now()` so
//! that tests can run the real daemon at a chosen local time of the recipient: quiet hours
//! make "send now" depend on the hour, and between 11:00 and 12:00 UTC no US zone is inside
//! 08:00–21:00. Production uses [`Clock::system`]; only debug builds of the daemon accept an
//! offset from the environment (see `main.rs`).

use chrono::{DateTime, Duration, Utc};

/// The system clock, optionally shifted by a fixed offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    offset_secs: i64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { offset_secs: 0 }
    }

    /// The system clock shifted by `offset_secs` (tests).
    pub fn shifted(offset_secs: i64) -> Clock {
        Clock { offset_secs }
    }

    /// A clock that reads `at` now and then runs at the normal rate (tests).
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock::shifted((at - Utc::now()).num_seconds())
    }

    /// The offset from the system clock, in seconds.
    pub fn offset_secs(self) -> i64 {
        self.offset_secs
    }

    /// The current time.
    pub fn now(self) -> DateTime<Utc> {
        Utc::now() + Duration::seconds(self.offset_secs)
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
}
