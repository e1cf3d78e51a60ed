//! The sink's own metrics: batch commit time, rows by table (and by mirror table), the cursor
//! committed in Postgres, failures by kind, and the expired dedup rows it deleted.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};

use crate::metrics::Metrics;

/// The sink's own metrics (the driver's `hooklog_consumer_lag{consumer="postgres"}` is its lag).
#[derive(Clone)]
pub struct SinkMetrics {
    /// 1 while a connection is up.
    pub connected: IntGauge,
    /// The cursor committed in Postgres.
    pub committed_seq: IntGauge,
    /// Seconds the sink has been failing (0 when healthy).
    pub failing_seconds: IntGauge,
    /// Time of one batch transaction.
    pub batch_seconds: Histogram,
    /// Rows upserted, by table.
    pub rows: IntCounterVec,
    /// `processed_webhook_events` rows deleted past their `expires_at`.
    pub expired_rows: IntCounter,
    /// Rows written into `[[postgres.mirror]]` tables, by target (`schema.table`).
    pub mirror_rows: IntCounterVec,
}

impl SinkMetrics {
    /// Creates the collectors and registers them with `metrics` (if not already there).
    pub fn new(metrics: &Metrics) -> SinkMetrics {
        // Fixed, valid names and labels: construction cannot fail.
        #[allow(clippy::expect_used)]
        let m = SinkMetrics {
            connected: IntGauge::new(
                "hooklog_postgres_connected",
                "1 while the Postgres sink has a connection",
            )
            .expect("valid metric"),
            committed_seq: IntGauge::new(
                "hooklog_postgres_committed_seq",
                "Cursor committed in Postgres with the projected rows",
            )
            .expect("valid metric"),
            failing_seconds: IntGauge::new(
                "hooklog_postgres_failing_seconds",
                "Seconds the Postgres sink has been failing (0 when healthy)",
            )
            .expect("valid metric"),
            batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hooklog_postgres_batch_seconds",
                    "Duration of one Postgres sink transaction",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )
            .expect("valid metric"),
            rows: IntCounterVec::new(
                Opts::new(
                    "hooklog_postgres_rows_total",
                    "Rows upserted by the Postgres sink, by table",
                ),
                &["table"],
            )
            .expect("valid metric"),
            expired_rows: IntCounter::new(
                "hooklog_postgres_expired_rows_total",
                "processed_webhook_events rows deleted by the Postgres sink past their expires_at",
            )
            .expect("valid metric"),
            mirror_rows: IntCounterVec::new(
                Opts::new(
                    "hooklog_postgres_mirror_rows_total",
                    "Rows written (updated or inserted) into postgres.mirror tables, by target table",
                ),
                &["table"],
            )
            .expect("valid metric"),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 7] = [
            Box::new(m.connected.clone()),
            Box::new(m.committed_seq.clone()),
            Box::new(m.failing_seconds.clone()),
            Box::new(m.batch_seconds.clone()),
            Box::new(m.rows.clone()),
            Box::new(m.expired_rows.clone()),
            Box::new(m.mirror_rows.clone()),
        ];
        for c in collectors {
            // Already registered: a second sink on the same registry (tests) shares them.
            let _ = metrics.register(c);
        }
        m
    }
}
