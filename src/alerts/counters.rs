//! `hooklog_alerts_total{outcome}`: what became of each alert meant for Discord.

use prometheus::{IntCounterVec, Opts};

use crate::metrics::Metrics;

/// `hooklog_alerts_total{outcome}` values.
#[derive(Clone, Copy, Debug)]
pub(super) enum Outcome {
    Sent,
    Coalesced,
    RateLimited,
    Failed,
}

impl Outcome {
    pub(super) const ALL: [Outcome; 4] = [
        Outcome::Sent,
        Outcome::Coalesced,
        Outcome::RateLimited,
        Outcome::Failed,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Coalesced => "coalesced",
            Outcome::RateLimited => "rate_limited",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Clone, Default)]
pub(super) struct Counters(Option<IntCounterVec>);

impl Counters {
    pub(super) fn register(metrics: Option<&Metrics>) -> Counters {
        let Some(metrics) = metrics else {
            return Counters(None);
        };
        let vec = match IntCounterVec::new(
            Opts::new(
                "hooklog_alerts_total",
                "Operator alerts for Discord by outcome (sent, coalesced, rate_limited, failed)",
            ),
            &["outcome"],
        ) {
            Ok(vec) => vec,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create hooklog_alerts_total");
                return Counters(None);
            }
        };
        // Every outcome is exported from the start, so a rate() over it works before the
        // first failure.
        for outcome in Outcome::ALL {
            vec.with_label_values(&[outcome.as_str()]);
        }
        if let Err(e) = metrics.register(Box::new(vec.clone())) {
            // A second alerter on the same registry: its counts are not exported.
            tracing::warn!(error = %e, "hooklog_alerts_total not registered");
        }
        Counters(Some(vec))
    }

    pub(super) fn inc(&self, outcome: Outcome) {
        if let Some(vec) = &self.0 {
            vec.with_label_values(&[outcome.as_str()]).inc();
        }
    }
}
