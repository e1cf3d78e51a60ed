//! A circuit breaker for the agent gateway. It measures its cool-down on [`Clock::instant`], so
//! tests move time with a manual clock.
//!
//! Closed: calls go through; `failure_threshold` consecutive failures (default 5) open it.
//! Open: for `cool_down` (default 30 s) every call is refused without touching the network,
//! so a down gateway is not hammered and the consumer can back off as a whole. After the
//! cool-down the breaker is half-open: exactly one trial call goes through (others are
//! refused while it is out); its success closes the breaker, its failure reopens it for
//! another cool-down.
//!
//! Invariant (property-tested): while open and before the cool-down ends, [`Breaker::allow`]
//! never admits a call. A "failure" is a sign the gateway is down or unhealthy (a
//! `Retryable` outcome); a 4xx refusal proves it is up and counts as a success here.

use std::time::{Duration, Instant};

use crate::clock::Clock;

/// Thresholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long it stays open before a trial call.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Calls go through; `failures` consecutive failures so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Calls are refused until `until`.
    Open {
        /// End of the cool-down.
        until: Instant,
    },
    /// The cool-down is over; `trial_out` is true while the one trial call is in flight.
    HalfOpen {
        /// Whether the trial call has been admitted.
        trial_out: bool,
    },
}

/// The answer to [`Breaker::allow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Make the call, then report it with [`Breaker::record`].
    Allowed,
    /// Do not call; the breaker may admit a trial after `retry_in`.
    Refused {
        /// Time left in the cool-down (zero while a half-open trial is out).
        retry_in: Duration,
    },
}

/// A change worth telling the operator about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Closed → open: the gateway looks down.
    Opened,
    /// Half-open trial failed: open again for another cool-down.
    Reopened,
    /// Half-open trial succeeded: closed again.
    Closed,
}

/// The circuit breaker (one per gateway).
pub struct Breaker {
    name: String,
    config: BreakerConfig,
    clock: Clock,
    state: State,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("state", &self.state)
            .finish()
    }
}

impl Breaker {
    /// A closed breaker named `name` (used in alert keys) on the real clock.
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Breaker {
        Breaker::with_clock(name, config, Clock::system())
    }

    /// A closed breaker reading the time from `clock`.
    pub fn with_clock(name: impl Into<String>, config: BreakerConfig, clock: Clock) -> Breaker {
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            ..config
        };
        Breaker {
            name: name.into(),
            config,
            clock,
            state: State::Closed { failures: 0 },
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current state (an open breaker whose cool-down has passed still reads `Open`
    /// until the next [`Breaker::allow`]).
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a call may be made now. Admitting the half-open trial marks it in flight.
    pub fn allow(&mut self) -> Permit {
        let now = self.clock.instant();
        match self.state {
            State::Closed { .. } => Permit::Allowed,
            State::Open { until } if now < until => Permit::Refused {
                retry_in: until - now,
            },
            State::Open { .. } | State::HalfOpen { trial_out: false } => {
                self.state = State::HalfOpen { trial_out: true };
                Permit::Allowed
            }
            State::HalfOpen { trial_out: true } => Permit::Refused {
                retry_in: Duration::ZERO,
            },
        }
    }

    /// Reports how an admitted call went: `healthy` is false for a sign the gateway is down.
    pub fn record(&mut self, healthy: bool) -> Option<Transition> {
        let now = self.clock.instant();
        let open = State::Open {
            until: now + self.config.cool_down,
        };
        match (self.state, healthy) {
            (State::Closed { .. }, true) => {
                self.state = State::Closed { failures: 0 };
                None
            }
            (State::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    self.state = open;
                    Some(Transition::Opened)
                } else {
                    self.state = State::Closed { failures };
                    None
                }
            }
            (State::HalfOpen { .. }, true) => {
                self.state = State::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            (State::HalfOpen { .. }, false) => {
                self.state = open;
                Some(Transition::Reopened)
            }
            // A call admitted before the breaker opened (another caller's) finished late:
            // the open state stands until its cool-down ends.
            (State::Open { .. }, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ClockHand;
    use chrono::Utc;
    use proptest::prelude::*;

    /// A breaker on a clock that moves only when its hand advances it.
    fn breaker(threshold: u32, cool_down_ms: u64) -> (Breaker, ClockHand) {
        let (clock, offset) = Clock::manual(Utc::now());
        let config = BreakerConfig {
            failure_threshold: threshold,
            cool_down: Duration::from_millis(cool_down_ms),
        };
        (Breaker::with_clock("gw", config, clock), offset)
    }

    #[test]
    fn the_defaults_are_five_failures_and_thirty_seconds() {
        let c = BreakerConfig::default();
        assert_eq!(c.failure_threshold, 5);
        assert_eq!(c.cool_down, Duration::from_secs(30));
    }

    #[test]
    fn consecutive_failures_open_it_and_a_success_resets_the_count() {
        let (mut b, _) = breaker(3, 1000);
        for _ in 0..2 {
            assert_eq!(b.allow(), Permit::Allowed);
            assert_eq!(b.record(false), None);
        }
        assert_eq!(b.record(true), None);
        assert_eq!(b.state(), State::Closed { failures: 0 });
        for _ in 0..2 {
            assert_eq!(b.record(false), None);
        }
        assert_eq!(b.record(false), Some(Transition::Opened));
        assert!(matches!(b.state(), State::Open { .. }));
    }

    #[test]
    fn an_open_breaker_refuses_until_the_cool_down_then_admits_one_trial() {
        let (mut b, clock) = breaker(1, 1000);
        assert_eq!(b.record(false), Some(Transition::Opened));
        assert_eq!(
            b.allow(),
            Permit::Refused {
                retry_in: Duration::from_millis(1000)
            }
        );
        clock.advance(Duration::from_millis(999));
        assert_eq!(
            b.allow(),
            Permit::Refused {
                retry_in: Duration::from_millis(1)
            }
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(b.allow(), Permit::Allowed);
        assert_eq!(b.state(), State::HalfOpen { trial_out: true });
        assert_eq!(
            b.allow(),
            Permit::Refused {
                retry_in: Duration::ZERO
            }
        );
        assert_eq!(b.record(true), Some(Transition::Closed));
        assert_eq!(b.allow(), Permit::Allowed);
    }

    #[test]
    fn a_failed_trial_reopens_for_a_full_cool_down() {
        let (mut b, clock) = breaker(2, 500);
        b.record(false);
        assert_eq!(b.record(false), Some(Transition::Opened));
        clock.advance(Duration::from_millis(600));
        assert_eq!(b.allow(), Permit::Allowed);
        assert_eq!(b.record(false), Some(Transition::Reopened));
        assert_eq!(
            b.allow(),
            Permit::Refused {
                retry_in: Duration::from_millis(500)
            }
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Advance(u64),
        Call(bool),
        LateResult(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..400).prop_map(Op::Advance),
            any::<bool>().prop_map(Op::Call),
            any::<bool>().prop_map(Op::LateResult),
        ]
    }

    proptest! {
        #[test]
        fn the_breaker_never_admits_a_call_while_open(
            threshold in 1u32..6,
            cool_down in 1u64..1000,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let (mut b, offset) = breaker(threshold, cool_down);
            let clock = b.clock.clone();
            for op in ops {
                match op {
                    Op::Advance(ms) => offset.advance(Duration::from_millis(ms)),
                    Op::Call(healthy) => {
                        let before = b.state();
                        let t = clock.instant();
                        let permit = b.allow();
                        match before {
                            State::Open { until } if t < until => {
                                prop_assert!(matches!(permit, Permit::Refused { .. }), "admitted in {:?}", before);
                            }
                            State::HalfOpen { trial_out: true } => {
                                prop_assert!(matches!(permit, Permit::Refused { .. }), "admitted in {:?}", before);
                            }
                            _ => prop_assert_eq!(permit, Permit::Allowed),
                        }
                        if permit == Permit::Allowed {
                            b.record(healthy);
                        }
                    }
                    // A result for a call admitted earlier: may arrive in any state.
                    Op::LateResult(healthy) => { b.record(healthy); }
                }
                if let State::Closed { failures } = b.state() {
                    prop_assert!(failures < threshold);
                }
            }
        }
    }
}
