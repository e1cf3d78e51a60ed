//! Prometheus metrics, one registry per running instance.
//!
//! A registry per [`Metrics`] (not the process-global default) so that several servers can
//! run in one test process without sharing counters. Every collector hooklog exports is
//! declared here, so `/metrics` and the dashboards have one place to look.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The collectors of one hooklog instance.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Webhook and admin requests by route and outcome (`accepted`, `rejected`, `unavailable`, …).
    pub requests: IntCounterVec,
    /// Verification failures by provider and reason (`bad_signature`, `stale_timestamp`, …).
    pub verify_failures: IntCounterVec,
    /// Time from the start of an append to its durable acknowledgement, by source.
    pub append_latency: HistogramVec,
    /// Requests served by one group commit (one flush).
    pub batch_size: prometheus::Histogram,
    /// Failed group commits (each answers 503 to every request in it).
    pub append_failures: prometheus::IntCounter,
    /// Verified webhooks that repeat a stored one, by provider: answered as that one was and
    /// not stored again ([`crate::edge::replay`]).
    pub replays: IntCounterVec,
    /// Remembered webhooks the replay cache forgot before their window ended because it was
    /// full (`[server] replay_cache_entries`).
    pub replay_cache_evicted: prometheus::IntCounter,
    /// The last durable sequence number.
    pub last_seq: IntGauge,
    /// 1 while this process runs the consumers (always on sled; the holder of the consumers'
    /// lease on JetStream), 0 on a standby replica that only serves the edge.
    pub consumers_leader: IntGauge,
    /// Records stored in the log (updated by the retention task every interval).
    pub log_records: IntGauge,
    /// Bytes the log's engine uses on disk (updated by the retention task).
    pub log_bytes: IntGauge,
    /// The first sequence still stored (0 when empty; > 1 once retention has pruned).
    pub log_first_seq: IntGauge,
    /// Bytes of every file in the data directory (updated by the retention task).
    pub data_dir_bytes: IntGauge,
    /// Records deleted by retention.
    pub log_pruned: prometheus::IntCounter,
    /// Each consumer's cursor.
    pub consumer_cursor: IntGaugeVec,
    /// Records between each consumer's cursor and the end of the log.
    pub consumer_lag: IntGaugeVec,
    /// Records each consumer has processed.
    pub consumer_processed: IntCounterVec,
    /// Records in each consumer's dead-letter list.
    pub consumer_dead_letters: IntGaugeVec,
    /// Failed batches (transient errors, retried) and poison records, by consumer and kind.
    pub consumer_errors: IntCounterVec,
    /// Outbound gate decisions, by verdict (allow, hold, refuse).
    pub outbound_decisions: IntCounterVec,
    /// Outbound sends by provider and result status (`sent`, `failed`, `unknown`, `refused`).
    pub sends: IntCounterVec,
    /// Receipt of an event to its delivery to an agent (redeliveries excluded), by agent.
    pub dispatch_latency: HistogramVec,
    /// Dispatch results by agent and outcome (`delivered`, `rejected`, `dead_lettered`).
    pub dispatch_outcomes: IntCounterVec,
    /// Failed `accept` calls by listener (`webhook <addr>`, `admin <addr>`): each is retried
    /// unless the socket is gone (src/http/listener.rs).
    pub accept_errors: IntCounterVec,
    /// Connections open on each listener (at most `server.max_connections`).
    pub open_connections: IntGaugeVec,
    /// Configuration reloads (SIGHUP, `POST /admin/reload`) by result: `ok` (applied) or
    /// `refused` (invalid: nothing applied).
    pub reloads: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every collector.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Each collector below has a fixed, valid name and label set and is registered once in
        // a fresh registry, which are the only ways construction or registration can fail.
        #[allow(clippy::expect_used)]
        let m = {
            let requests = IntCounterVec::new(
                Opts::new(
                    "hooklog_requests_total",
                    "HTTP requests by route and outcome",
                ),
                &["route", "outcome"],
            )
            .expect("valid metric");
            let verify_failures = IntCounterVec::new(
                Opts::new(
                    "hooklog_verify_failures_total",
                    "Webhook verification failures by provider and reason",
                ),
                &["provider", "reason"],
            )
            .expect("valid metric");
            let append_latency = HistogramVec::new(
                HistogramOpts::new(
                    "hooklog_append_latency_seconds",
                    "Time from append request to durable acknowledgement",
                )
                .buckets(vec![
                    0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5,
                ]),
                &["source"],
            )
            .expect("valid metric");
            let batch_size = prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "hooklog_append_batch_size",
                    "Appends acknowledged by one group commit (one flush)",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ]),
            )
            .expect("valid metric");
            let append_failures = prometheus::IntCounter::new(
                "hooklog_append_failures_total",
                "Group commits that failed (every request in them got a 503)",
            )
            .expect("valid metric");
            let replays = IntCounterVec::new(
                Opts::new(
                    "hooklog_replays_total",
                    "Verified webhooks that repeat a stored one, answered without a new record",
                ),
                &["provider"],
            )
            .expect("valid metric");
            let replay_cache_evicted = prometheus::IntCounter::new(
                "hooklog_replay_cache_evicted_total",
                "Remembered webhooks forgotten before their window ended because the replay cache was full",
            )
            .expect("valid metric");
            let last_seq = IntGauge::new(
                "hooklog_log_last_seq",
                "Last durable sequence number in the log",
            )
            .expect("valid metric");
            let consumers_leader = IntGauge::new(
                "hooklog_consumers_leader",
                "1 while this process runs the consumers, 0 on a standby replica",
            )
            .expect("valid metric");
            let log_records = IntGauge::new(
                "hooklog_log_records",
                "Records stored in the log (refreshed every retention interval)",
            )
            .expect("valid metric");
            let log_bytes = IntGauge::new(
                "hooklog_log_bytes",
                "Bytes the log engine uses on disk (refreshed every retention interval)",
            )
            .expect("valid metric");
            let log_first_seq = IntGauge::new(
                "hooklog_log_first_seq",
                "First sequence still stored in the log (refreshed every retention interval)",
            )
            .expect("valid metric");
            let data_dir_bytes = IntGauge::new(
                "hooklog_data_dir_bytes",
                "Bytes of every file in the data directory (refreshed every retention interval)",
            )
            .expect("valid metric");
            let log_pruned = prometheus::IntCounter::new(
                "hooklog_log_pruned_total",
                "Records deleted by retention",
            )
            .expect("valid metric");
            let gauge = |name: &str, help: &str| {
                IntGaugeVec::new(Opts::new(name, help), &["consumer"]).expect("valid metric")
            };
            let consumer_cursor = gauge(
                "hooklog_consumer_cursor",
                "Last sequence each consumer has processed",
            );
            let consumer_lag = gauge(
                "hooklog_consumer_lag",
                "Records between a consumer's cursor and the end of the log",
            );
            let consumer_dead_letters = gauge(
                "hooklog_consumer_dead_letters",
                "Records in a consumer's dead-letter list",
            );
            let consumer_processed = IntCounterVec::new(
                Opts::new(
                    "hooklog_consumer_processed_total",
                    "Records processed by each consumer",
                ),
                &["consumer"],
            )
            .expect("valid metric");
            let consumer_errors = IntCounterVec::new(
                Opts::new(
                    "hooklog_consumer_errors_total",
                    "Consumer failures by kind (transient, poison)",
                ),
                &["consumer", "kind"],
            )
            .expect("valid metric");
            let outbound_decisions = IntCounterVec::new(
                Opts::new(
                    "hooklog_outbound_decisions_total",
                    "Outbound requests decided by the compliance gates, by verdict",
                ),
                &["verdict"],
            )
            .expect("valid metric");
            registry
                .register(Box::new(outbound_decisions.clone()))
                .expect("registered once");
            let sends = IntCounterVec::new(
                Opts::new(
                    "hooklog_sends_total",
                    "Outbound SMS send results by provider and status (sent, failed, unknown, refused)",
                ),
                &["provider", "status"],
            )
            .expect("valid metric");
            registry
                .register(Box::new(sends.clone()))
                .expect("registered once");
            let dispatch_latency = HistogramVec::new(
                HistogramOpts::new(
                    "hooklog_dispatch_latency_seconds",
                    "Time from receipt of an event to its delivery to an agent",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
                ]),
                &["agent"],
            )
            .expect("valid metric");
            let dispatch_outcomes = IntCounterVec::new(
                Opts::new(
                    "hooklog_dispatch_results_total",
                    "Dispatch results by agent and outcome",
                ),
                &["agent", "outcome"],
            )
            .expect("valid metric");
            let accept_errors = IntCounterVec::new(
                Opts::new(
                    "hooklog_accept_errors_total",
                    "Failed accepts of a connection, by listener (retried unless the socket is gone)",
                ),
                &["listener"],
            )
            .expect("valid metric");
            let open_connections = IntGaugeVec::new(
                Opts::new(
                    "hooklog_open_connections",
                    "Connections open on each listener (at most server.max_connections)",
                ),
                &["listener"],
            )
            .expect("valid metric");
            registry
                .register(Box::new(accept_errors.clone()))
                .expect("registered once");
            registry
                .register(Box::new(open_connections.clone()))
                .expect("registered once");
            registry
                .register(Box::new(dispatch_latency.clone()))
                .expect("registered once");
            registry
                .register(Box::new(dispatch_outcomes.clone()))
                .expect("registered once");
            for c in [&consumer_cursor, &consumer_lag, &consumer_dead_letters] {
                registry
                    .register(Box::new(c.clone()))
                    .expect("registered once");
            }
            registry
                .register(Box::new(consumer_processed.clone()))
                .expect("registered once");
            registry
                .register(Box::new(consumer_errors.clone()))
                .expect("registered once");
            registry
                .register(Box::new(requests.clone()))
                .expect("registered once");
            registry
                .register(Box::new(verify_failures.clone()))
                .expect("registered once");
            registry
                .register(Box::new(append_latency.clone()))
                .expect("registered once");
            registry
                .register(Box::new(batch_size.clone()))
                .expect("registered once");
            registry
                .register(Box::new(append_failures.clone()))
                .expect("registered once");
            registry
                .register(Box::new(last_seq.clone()))
                .expect("registered once");
            registry
                .register(Box::new(consumers_leader.clone()))
                .expect("registered once");
            for g in [&log_records, &log_bytes, &log_first_seq, &data_dir_bytes] {
                registry
                    .register(Box::new(g.clone()))
                    .expect("registered once");
            }
            registry
                .register(Box::new(log_pruned.clone()))
                .expect("registered once");
            registry
                .register(Box::new(replays.clone()))
                .expect("registered once");
            registry
                .register(Box::new(replay_cache_evicted.clone()))
                .expect("registered once");
            let reloads = IntCounterVec::new(
                Opts::new(
                    "hooklog_reloads_total",
                    "Configuration reloads by result (ok: applied, refused: invalid, nothing applied)",
                ),
                &["result"],
            )
            .expect("valid metric");
            for result in ["ok", "refused"] {
                // Both series exist from the start, so a first refusal is a change from 0.
                reloads.with_label_values(&[result]);
            }
            registry
                .register(Box::new(reloads.clone()))
                .expect("registered once");
            Metrics {
                registry,
                requests,
                verify_failures,
                append_latency,
                batch_size,
                append_failures,
                replays,
                replay_cache_evicted,
                last_seq,
                consumers_leader,
                log_records,
                log_bytes,
                log_first_seq,
                data_dir_bytes,
                log_pruned,
                consumer_cursor,
                consumer_lag,
                consumer_processed,
                consumer_dead_letters,
                consumer_errors,
                outbound_decisions,
                sends,
                dispatch_latency,
                dispatch_outcomes,
                accept_errors,
                open_connections,
                reloads,
            }
        };
        m
    }

    /// Registers an extra collector (gauges computed at scrape time by other modules).
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// The Prometheus text exposition of every collector.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Text encoding only fails on a writer error, and a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
