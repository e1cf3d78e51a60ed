//! Log lines that cannot flood the journal: at most one line per key per period, each saying
//! how many it stands for.
//!
//! A hostile client decides how often the edge rejects a request, and a full file table decides
//! how often an accept fails; either can happen thousands of times a second. The counters
//! (`hooklog_verify_failures_total`, `hooklog_accept_errors_total`) stay exact; only the lines
//! are sampled.
//!
//! Invariants: keys come from a fixed set (provider × reason, a listener's failure kind), so
//! the map never grows past that set; a key's first event is always written; every event is
//! either written or counted in the `suppressed` of the key's next written line.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Admits at most one log line per key per period.
#[derive(Debug)]
pub struct Sampler<K> {
    period: Duration,
    slots: Mutex<HashMap<K, Slot>>,
}

#[derive(Debug)]
struct Slot {
    /// When the key's last line was written.
    written: Instant,
    /// Events of the key since that line, not written.
    suppressed: u64,
}

impl<K: Hash + Eq> Sampler<K> {
    /// A sampler writing at most one line per key every `period`.
    pub fn new(period: Duration) -> Sampler<K> {
        Sampler {
            period,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Records one event of `key` at `now`: `Some(n)` when a line is to be written now, `n`
    /// being the events of that key left unwritten since its last line; `None` when this one
    /// is to stay quiet (it is counted in the next line's `n`).
    pub fn admit(&self, key: K, now: Instant) -> Option<u64> {
        // A panic while holding this lock cannot leave a slot half-updated (each update is
        // one assignment), so a poisoned lock is used as it is.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get_mut(&key) {
            None => {
                slots.insert(
                    key,
                    Slot {
                        written: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
            Some(slot) if now.saturating_duration_since(slot.written) >= self.period => {
                let suppressed = slot.suppressed;
                slot.written = now;
                slot.suppressed = 0;
                Some(suppressed)
            }
            Some(slot) => {
                slot.suppressed += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_of_a_key_is_written_and_the_rest_of_its_second_are_counted() {
        let s = Sampler::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(s.admit("a", t0), Some(0));
        for i in 1..=999 {
            assert_eq!(s.admit("a", t0 + Duration::from_millis(i)), None);
        }
        // Another key has its own budget.
        assert_eq!(s.admit("b", t0 + Duration::from_millis(10)), Some(0));
        assert_eq!(s.admit("a", t0 + Duration::from_millis(1000)), Some(999));
        assert_eq!(s.admit("a", t0 + Duration::from_millis(1500)), None);
        assert_eq!(s.admit("a", t0 + Duration::from_millis(2000)), Some(1));
    }

    #[test]
    fn a_clock_that_goes_backwards_only_keeps_the_key_quiet() {
        let s = Sampler::new(Duration::from_secs(1));
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(s.admit(1, t0), Some(0));
        assert_eq!(s.admit(1, t0 - Duration::from_secs(5)), None);
        assert_eq!(s.admit(1, t0 + Duration::from_secs(1)), Some(1));
    }

    #[test]
    fn every_event_is_either_written_or_counted_in_the_next_line() {
        let s = Sampler::new(Duration::from_millis(100));
        let t0 = Instant::now();
        let mut accounted = 0;
        let events = 10_000u64;
        for i in 0..events {
            if let Some(n) = s.admit((), t0 + Duration::from_micros(i * 37)) {
                accounted += n + 1;
            }
        }
        // The events after the last written line are still waiting for the next one.
        let pending = {
            let slots = s.slots.lock().unwrap();
            slots[&()].suppressed
        };
        assert_eq!(accounted + pending, events);
    }
}
