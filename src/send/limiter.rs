//! A token bucket per key: the providers' send rates (Quo 10 requests/s per API key,
//! Twilio 1 message/s per sending number).
//!
//! One [`Limiter`] holds one [`Rate`] and a bucket per key (an API key's fingerprint, a
//! sending number); the sender keeps one limiter per provider. The keys are the few lines
//! and API keys of the configuration, so buckets are never evicted.
//!
//! # Invariant
//!
//! Over any window of length `T`, at most `burst + per_second × T` grants are made for one
//! key. The arithmetic is integer nanoseconds so that this holds exactly: a token costs
//! `ceil(1 s / per_second)` ns of credit (rounded up, never faster than the rate), a bucket
//! holds at most `burst` tokens' worth, and credit accrues one ns per ns elapsed. In a
//! window, the credit spent is at most the credit held at its start (≤ burst tokens) plus
//! what accrued during it (≤ `T`), hence the bound. A proptest checks it.
//!
//! [`Limiter::try_acquire`] is pure in time: the caller passes `now`, so tests drive a fake
//! clock. [`Limiter::acquire`] is the blocking helper the sender (a blocking thread) uses.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Nanoseconds in a second.
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// How fast one key may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Sustained grants per second (at least 1).
    pub per_second: u32,
    /// Grants that may be made at once after an idle spell (at least 1).
    pub burst: u32,
}

impl Rate {
    /// Quo: 10 requests/s per API key (docs/reference/quo.md#rest-api), burst 10.
    pub const QUO: Rate = Rate {
        per_second: 10,
        burst: 10,
    };
    /// Twilio: 1 message/s per long-code number, burst 1: a burst would only queue at
    /// Twilio and risk carrier filtering.
    pub const TWILIO: Rate = Rate {
        per_second: 1,
        burst: 1,
    };

    /// The credit one grant costs, in ns: rounded up so the limiter is never faster than
    /// `per_second`.
    fn cost(self) -> u64 {
        NANOS_PER_SEC.div_ceil(u64::from(self.per_second.max(1)))
    }

    fn capacity(self) -> u64 {
        self.cost() * u64::from(self.burst.max(1))
    }
}

/// One key's bucket: `credit` ns of credit as of `at`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    credit: u64,
    at: Instant,
}

/// Token buckets keyed by string, all with the same [`Rate`]. `Send + Sync`; the lock is
/// held for a few arithmetic operations, never while waiting.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// A limiter where every key starts with a full bucket.
    pub fn new(rate: Rate) -> Limiter {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The rate of every key.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes a token for `key` at `now`, or says how long until one is available. A `now`
    /// earlier than the previous call's (threads racing) counts as no time elapsed.
    pub fn try_acquire(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let cost = self.rate.cost();
        let capacity = self.rate.capacity();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            credit: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at);
        let elapsed = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let credit = bucket.credit.saturating_add(elapsed).min(capacity);
        if now > bucket.at {
            bucket.at = now;
        }
        bucket.credit = credit;
        if credit >= cost {
            bucket.credit = credit - cost;
            Ok(())
        } else {
            Err(Duration::from_nanos(cost - credit))
        }
    }

    /// Blocks the calling thread until a token for `key` is taken. For blocking threads
    /// only (the ureq send path), never on an async task.
    pub fn acquire(&self, key: &str) {
        while let Err(wait) = self.try_acquire(key, Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_fresh_key_gets_its_whole_burst_at_once_then_waits_one_interval() {
        let limiter = Limiter::new(Rate::QUO);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(limiter.try_acquire("k", t0), Ok(()));
        }
        assert_eq!(limiter.try_acquire("k", t0), Err(ms(100)));
        assert_eq!(limiter.try_acquire("k", t0 + ms(40)), Err(ms(60)));
        assert_eq!(limiter.try_acquire("k", t0 + ms(100)), Ok(()));
    }

    #[test]
    fn keys_have_separate_buckets() {
        let limiter = Limiter::new(Rate::TWILIO);
        let t0 = Instant::now();
        assert_eq!(limiter.try_acquire("+15550001111", t0), Ok(()));
        assert_eq!(limiter.try_acquire("+15550002222", t0), Ok(()));
        assert_eq!(
            limiter.try_acquire("+15550001111", t0 + ms(500)),
            Err(ms(500))
        );
        assert_eq!(limiter.try_acquire("+15550001111", t0 + ms(1000)), Ok(()));
    }

    #[test]
    fn an_idle_key_refills_only_up_to_its_burst() {
        let limiter = Limiter::new(Rate {
            per_second: 10,
            burst: 3,
        });
        let t0 = Instant::now();
        assert_eq!(limiter.try_acquire("k", t0), Ok(()));
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.try_acquire("k", later), Ok(()));
        }
        assert!(limiter.try_acquire("k", later).is_err());
    }

    #[test]
    fn a_clock_going_backwards_grants_nothing_extra() {
        let limiter = Limiter::new(Rate::TWILIO);
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(limiter.try_acquire("k", t0), Ok(()));
        assert!(limiter.try_acquire("k", t0 - ms(500)).is_err());
        assert_eq!(limiter.try_acquire("k", t0 + ms(999)), Err(ms(1)));
    }

    #[test]
    fn a_rate_that_does_not_divide_a_second_rounds_the_interval_up() {
        let rate = Rate {
            per_second: 3,
            burst: 1,
        };
        assert_eq!(rate.cost(), 333_333_334);
    }

    #[test]
    fn blocking_acquire_waits_for_the_next_token() {
        let limiter = Limiter::new(Rate {
            per_second: 20,
            burst: 1,
        });
        let start = Instant::now();
        limiter.acquire("k");
        limiter.acquire("k");
        limiter.acquire("k");
        assert!(start.elapsed() >= ms(95), "{:?}", start.elapsed());
    }

    proptest! {
        /// Over any sequence of attempts (including many at the same instant), the grants in
        /// any window of length T never exceed burst + rate × T.
        #[test]
        fn grants_in_any_window_never_exceed_burst_plus_rate_times_length(
            per_second in 1u32..50,
            burst in 1u32..20,
            gaps_us in proptest::collection::vec(
                prop_oneof![Just(0u64), 0u64..5_000, 0u64..2_000_000],
                1..300,
            ),
        ) {
            let rate = Rate { per_second, burst };
            let limiter = Limiter::new(rate);
            let t0 = Instant::now();
            let mut offset_ns = 0u64;
            let mut granted = Vec::new();
            for gap in gaps_us {
                offset_ns += gap * 1_000;
                if limiter.try_acquire("k", t0 + Duration::from_nanos(offset_ns)).is_ok() {
                    granted.push(offset_ns);
                }
            }
            // The tightest window holding grants i..=j spans exactly granted[j] - granted[i].
            for i in 0..granted.len() {
                for j in i..granted.len() {
                    let count = (j - i + 1) as u64;
                    let span_ns = granted[j] - granted[i];
                    let over = count.saturating_sub(u64::from(burst));
                    prop_assert!(
                        over as u128 * NANOS_PER_SEC as u128
                            <= u128::from(per_second) * u128::from(span_ns),
                        "{count} grants in {span_ns} ns at {per_second}/s burst {burst}"
                    );
                }
            }
        }
    }
}
