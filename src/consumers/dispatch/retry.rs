//! One dispatch of one event to one agent: the breaker, the call, full-jitter exponential
//! backoff and the alerts, as [`dispatch_with_retries`].
//!
//! # Retries are safe here
//!
//! Every attempt at one event carries the same idempotency key, and the gateway drops a key
//! it has seen, so an uncertain attempt (timeout, reset, 5xx) is retried; this is the
//! opposite of [`crate::send`], where an SMS is never resent blindly. What stays the
//! caller's job (the consumer): the effects ledger that stops a rewind from
//! dispatching again unless `--redeliver` is given (docs/consumers.md#rewind-and-redeliver).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::alerts::{Alert, Severity};
use crate::retry::RetryPolicy;
use crate::send::AlertSink;

use super::breaker::{Breaker, Permit, Transition};
use super::client::{DispatchOutcome, Gateway};
use super::payload::DispatchRequest;

/// How hard [`dispatch_with_retries`] tries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchPolicy {
    /// Retries after the first try and their backoff (full jitter, doubling, capped).
    pub retry: RetryPolicy,
    /// No retry starts later than this after the first attempt; what is left is the
    /// consumer's (a later pass, then a dead letter after the configured age).
    pub max_elapsed: Duration,
}

impl Default for DispatchPolicy {
    /// 4 retries from 500 ms doubling, capped at 8 s, within 20 s: the sum of the waits
    /// stays under the 30 s receipt-to-dispatch target when the gateway recovers quickly.
    fn default() -> Self {
        DispatchPolicy {
            retry: RetryPolicy {
                max_retries: 4,
                base: Duration::from_millis(500),
                max: Duration::from_secs(8),
                ..RetryPolicy::default()
            },
            max_elapsed: Duration::from_secs(20),
        }
    }
}

/// One call made, for the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// When the call started.
    pub at: DateTime<Utc>,
    /// How it ended.
    pub outcome: DispatchOutcome,
}

/// What [`dispatch_with_retries`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchReport {
    /// The final outcome: `Delivered`, `Rejected`, `Retryable` (tries or time ran out) or
    /// `CircuitOpen` (the breaker refused the next call).
    pub outcome: DispatchOutcome,
    /// Every call made, in order; empty when the breaker refused the first.
    pub attempts: Vec<Attempt>,
}

/// Dispatches `request`: asks the breaker, calls, and retries `Retryable` answers with
/// full-jitter exponential backoff within `policy`. An open breaker ends the loop with
/// `CircuitOpen` without a call. Raises an alert when the breaker opens and when it closes
/// again (a reopen after a failed trial is the same story and only logged).
pub fn dispatch_with_retries(
    gateway: &dyn Gateway,
    breaker: &mut Breaker,
    request: &DispatchRequest,
    policy: &DispatchPolicy,
    alerts: &dyn AlertSink,
) -> DispatchReport {
    let started = Instant::now();
    let mut attempts = Vec::new();
    let mut rng = rand::thread_rng();
    loop {
        if let Permit::Refused { retry_in } = breaker.allow() {
            return DispatchReport {
                outcome: DispatchOutcome::CircuitOpen { retry_in },
                attempts,
            };
        }
        let at = Utc::now();
        let outcome = gateway.post(request);
        let healthy = !matches!(outcome, DispatchOutcome::Retryable { .. });
        if let Some(t) = breaker.record(healthy) {
            on_transition(breaker.name(), t, &outcome, alerts);
        }
        attempts.push(Attempt {
            at,
            outcome: outcome.clone(),
        });
        let retries_done = attempts.len() as u32 - 1;
        let reason = match &outcome {
            DispatchOutcome::Retryable { reason } => reason,
            _ => return DispatchReport { outcome, attempts },
        };
        if retries_done >= policy.retry.max_retries {
            return DispatchReport { outcome, attempts };
        }
        let wait = policy.retry.backoff(retries_done, rng.gen_range(0.0..=1.0));
        if started.elapsed() + wait > policy.max_elapsed {
            return DispatchReport { outcome, attempts };
        }
        tracing::info!(
            agent = %request.agent,
            key = %request.idempotency_key,
            retry = retries_done + 1,
            wait_ms = wait.as_millis() as u64,
            reason = %reason,
            "dispatch failed: backing off"
        );
        std::thread::sleep(wait);
    }
}

fn on_transition(name: &str, t: Transition, outcome: &DispatchOutcome, alerts: &dyn AlertSink) {
    let key = format!("dispatch:circuit:{name}");
    match t {
        Transition::Opened => alerts.raise(Alert {
            key,
            severity: Severity::Critical,
            title: format!("agent gateway {name} looks down: dispatch paused"),
            reason: format!(
                "consecutive failed dispatches opened the circuit breaker; last: {}",
                describe(outcome)
            ),
            next_step: "check the agent gateway; dispatch resumes by itself once a trial call \
                        succeeds after the cool-down"
                .to_owned(),
        }),
        Transition::Closed => alerts.raise(Alert {
            key,
            severity: Severity::Info,
            title: format!("agent gateway {name} is back: dispatch resumed"),
            reason: "a trial call after the cool-down succeeded; the circuit breaker closed"
                .to_owned(),
            next_step: "nothing; events held while it was down are dispatched next".to_owned(),
        }),
        Transition::Reopened => tracing::warn!(
            gateway = name,
            last = %describe(outcome),
            "agent gateway still down: circuit breaker reopened"
        ),
    }
}

fn describe(outcome: &DispatchOutcome) -> String {
    match outcome {
        DispatchOutcome::Retryable { reason } => reason.clone(),
        other => other.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::dispatch::breaker::{self, BreakerConfig};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Answers from a script, then `Delivered`; counts calls.
    struct Scripted(RefCell<VecDeque<DispatchOutcome>>, RefCell<u32>);

    impl Gateway for Scripted {
        fn post(&self, _: &DispatchRequest) -> DispatchOutcome {
            *self.1.borrow_mut() += 1;
            self.0
                .borrow_mut()
                .pop_front()
                .unwrap_or(DispatchOutcome::Delivered { status: 200 })
        }
    }

    fn scripted(outcomes: Vec<DispatchOutcome>) -> Scripted {
        Scripted(RefCell::new(outcomes.into()), RefCell::new(0))
    }

    #[derive(Default)]
    struct Alerts(Mutex<Vec<Alert>>);

    impl AlertSink for Alerts {
        fn raise(&self, alert: Alert) {
            self.0.lock().unwrap().push(alert);
        }
    }

    fn down() -> DispatchOutcome {
        DispatchOutcome::Retryable {
            reason: "gateway answered 503".into(),
        }
    }

    fn fast(max_retries: u32) -> DispatchPolicy {
        DispatchPolicy {
            retry: RetryPolicy {
                max_retries,
                base: Duration::from_millis(1),
                max: Duration::from_millis(2),
                ..RetryPolicy::default()
            },
            max_elapsed: Duration::from_secs(5),
        }
    }

    fn request() -> DispatchRequest {
        DispatchRequest {
            url: "http://gw".into(),
            idempotency_key: "hooklog:1:k".into(),
            agent: "atlas".into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn retryable_answers_are_retried_until_delivered() {
        let gw = scripted(vec![down(), down()]);
        let mut b = Breaker::new("gw", BreakerConfig::default());
        let alerts = Alerts::default();
        let r = dispatch_with_retries(&gw, &mut b, &request(), &fast(4), &alerts);
        assert_eq!(r.outcome, DispatchOutcome::Delivered { status: 200 });
        assert_eq!(r.attempts.len(), 3);
        assert!(alerts.0.lock().unwrap().is_empty());
    }

    #[test]
    fn retries_stop_at_the_policy_limit() {
        let gw = scripted(vec![down(); 10]);
        let mut b = Breaker::new("gw", BreakerConfig::default());
        let r = dispatch_with_retries(&gw, &mut b, &request(), &fast(2), &Alerts::default());
        assert_eq!(r.outcome, down());
        assert_eq!(r.attempts.len(), 3);
    }

    #[test]
    fn retries_stop_when_the_next_wait_would_pass_the_age_limit() {
        let gw = scripted(vec![down(); 10]);
        let mut b = Breaker::new("gw", BreakerConfig::default());
        let policy = DispatchPolicy {
            retry: RetryPolicy {
                max_retries: 10,
                base: Duration::from_secs(60),
                max: Duration::from_secs(60),
                ..RetryPolicy::default()
            },
            max_elapsed: Duration::ZERO,
        };
        let r = dispatch_with_retries(&gw, &mut b, &request(), &policy, &Alerts::default());
        assert_eq!(r.attempts.len(), 1);
    }

    #[test]
    fn a_rejection_is_final_and_keeps_the_breaker_closed() {
        let rejected = DispatchOutcome::Rejected {
            status: 400,
            message: "bad".into(),
        };
        let gw = scripted(vec![rejected.clone()]);
        let mut b = Breaker::new("gw", BreakerConfig::default());
        let r = dispatch_with_retries(&gw, &mut b, &request(), &fast(4), &Alerts::default());
        assert_eq!(r.outcome, rejected);
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(b.state(), breaker::State::Closed { failures: 0 });
    }

    #[test]
    fn the_breaker_opening_alerts_once_and_then_refuses_without_calling() {
        let gw = scripted(vec![down(); 10]);
        let config = BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(60),
        };
        let mut b = Breaker::new("main", config);
        let alerts = Alerts::default();
        let r = dispatch_with_retries(&gw, &mut b, &request(), &fast(9), &alerts);
        assert!(matches!(r.outcome, DispatchOutcome::CircuitOpen { .. }));
        assert_eq!(r.attempts.len(), 3);
        assert_eq!(*gw.1.borrow(), 3);
        let r = dispatch_with_retries(&gw, &mut b, &request(), &fast(9), &alerts);
        assert!(r.attempts.is_empty());
        assert_eq!(*gw.1.borrow(), 3);
        let taken = alerts.0.lock().unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].key, "dispatch:circuit:main");
        assert_eq!(taken[0].severity, Severity::Critical);
    }
}
