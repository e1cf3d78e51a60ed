//! [`RetryPolicy`]: how hooklog retries a call to another service (a provider's REST API, the
//! agent gateway): a bounded number of retries, each after a full-jitter exponential backoff,
//! and never sooner than the service's `Retry-After` asked (up to a cap). Full jitter spreads
//! callers that failed together, so they do not come back together.
//!
//! What is retried is each caller's decision (a send is never retried once it may have left;
//! a dispatch is, under one idempotency key); this module only says how long to wait. A leaf:
//! it imports nothing of hooklog.

use std::time::Duration;

/// Retries after a failed try, and the waits between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub max_retries: u32,
    /// The first backoff's ceiling; doubled for each retry.
    pub base: Duration,
    /// No backoff is longer than this.
    pub max: Duration,
    /// The longest `Retry-After` honoured: a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// twilio-node's auto-retry, a little slower to start: 3 retries, 250 ms doubling, capped
    /// at 4 s; a `Retry-After` honoured up to 5 minutes.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(250),
            max: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry` (0 for the first retry) with full jitter: `jitter`, a
    /// uniform sample in `[0, 1]`, scales `min(max, base × 2^retry)`.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// [`Self::backoff`], and at least what the service asked for in `Retry-After` (cut to
    /// `max_retry_after`).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let backoff = self.backoff(retry, jitter);
        match retry_after {
            Some(after) => backoff.max(after.min(self.max_retry_after)),
            None => backoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_is_capped_by_base_doubling_and_max() {
        let p = RetryPolicy {
            max_retries: 3,
            base: ms(100),
            max: ms(300),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(0, 1.0), ms(100));
        assert_eq!(p.backoff(1, 1.0), ms(200));
        assert_eq!(p.backoff(2, 1.0), ms(300));
        assert_eq!(p.backoff(40, 1.0), ms(300));
        assert_eq!(p.backoff(1, 0.5), ms(100));
        assert_eq!(p.backoff(1, 0.0), Duration::ZERO);
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling_capped() {
        let p = RetryPolicy {
            max_retries: 8,
            base: ms(100),
            max: ms(1000),
            max_retry_after: Duration::from_secs(60),
        };
        assert_eq!(p.delay(0, None, 1.0), ms(100));
        assert_eq!(p.delay(1, None, 1.0), ms(200));
        assert_eq!(p.delay(3, None, 1.0), ms(800));
        assert_eq!(p.delay(4, None, 1.0), ms(1000));
        assert_eq!(p.delay(40, None, 1.0), ms(1000));
        assert_eq!(p.delay(3, None, 0.0), Duration::ZERO);
        assert_eq!(p.delay(3, None, 0.5), ms(400));
    }

    #[test]
    fn retry_after_is_a_lower_bound_on_the_delay_within_its_cap() {
        let p = RetryPolicy {
            max_retries: 8,
            base: ms(100),
            max: ms(1000),
            max_retry_after: Duration::from_secs(5),
        };
        assert_eq!(p.delay(0, Some(Duration::from_secs(2)), 0.3), ms(2000));
        assert_eq!(p.delay(0, Some(Duration::from_secs(90)), 0.3), ms(5000));
        assert_eq!(p.delay(4, Some(ms(10)), 1.0), ms(1000));
    }
}
