//! Test helpers: events built from the fixtures and by hand, and another replica's view of
//! a shared log.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::driver::{spawn_driver, DriverConfig, DriverContext};
use super::{Consumer, Registry};
use crate::alerts::Alerter;

use crate::event::{Event, Micros, Seq, Source, Verification, Verified};
use crate::fixture::Fixture;
use crate::log::sled::{SledLog, SledOptions};
use crate::log::{AppendTicket, Log, LogError, LogStats};
use crate::metrics::Metrics;
use crate::state::StateStore;

/// Hours in microseconds.
pub const HOUR: i64 = 3_600_000_000;

/// The record a fixture would become at `seq`, received at `at`.
pub fn from_fixture(name: &str, seq: u64, at: i64) -> Event {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let f = Fixture::load(&path).unwrap();
    let source = match f.provider.as_str() {
        "openphone" => Source::Quo,
        "twilio" => Source::Twilio,
        _ => Source::SalesMsg,
    };
    Event {
        seq: Seq(seq),
        received_at: Micros(at),
        source,
        route: f.path.clone(),
        headers: f.headers.into_iter().collect(),
        body: f.body.into_bytes(),
        verification: Verification::Internal,
    }
}

/// A record with an explicit source, route and body.
pub fn event(seq: u64, at: i64, source: Source, route: &str, body: &str) -> Event {
    Event {
        seq: Seq(seq),
        received_at: Micros(at),
        source,
        route: route.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
        verification: Verification::Internal,
    }
}

/// A Quo legacy inbound message from `from` saying `text`.
pub fn quo_inbound(
    seq: u64,
    at: i64,
    envelope: &str,
    message: &str,
    from: &str,
    text: &str,
) -> Event {
    let body = serde_json::json!({
        "id": envelope, "object": "event", "apiVersion": "v4", "createdAt": "2026-04-14T16:02:11.557Z",
        "type": "message.received",
        "data": {"object": {"id": message, "object": "message", "from": from, "to": ["+15555550100"],
            "direction": "incoming", "text": text, "status": "received",
            "createdAt": "2026-04-14T16:02:11.420Z", "phoneNumberId": "PNtoDbDhuz"}}
    });
    event(
        seq,
        at,
        Source::Quo,
        "/webhook/openphone",
        &body.to_string(),
    )
}

/// A Quo legacy inbound message from `from` to line `line` saying `text`, written (its
/// `createdAt`) when it was received, `at`.
pub fn quo_inbound_to(seq: u64, at: i64, from: &str, line: &str, text: &str) -> Event {
    let written = Micros(at).to_rfc3339();
    let body = serde_json::json!({
        "id": format!("EV{seq}"), "object": "event", "apiVersion": "v4", "createdAt": written,
        "type": "message.received",
        "data": {"object": {"id": format!("AC{seq}"), "object": "message", "from": from,
            "to": [line], "direction": "incoming", "text": text, "status": "received",
            "createdAt": written, "phoneNumberId": "PNtoDbDhuz"}}
    });
    event(
        seq,
        at,
        Source::Quo,
        "/webhook/openphone",
        &body.to_string(),
    )
}

/// Every entry of every tree of `consumer` in `store`, for whole-state comparisons.
pub fn dump(
    store: &dyn crate::state::StateStore,
    consumer: &str,
    trees: &[&str],
) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for name in trees {
        let tree = store.tree(consumer, name).unwrap();
        crate::state::for_each(tree.as_ref(), &[], |k, v| {
            out.push(((*name).to_owned(), k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
    }
    out
}

/// Another replica's view of a shared log, as two hooklogs see one JetStream stream: the
/// same records, but cursors and state of their own (ledgers, projections, dead letters),
/// as the replica that takes the consumers' lease after a fail-over has them.
pub struct OtherReplica {
    shared: Arc<dyn Log>,
    /// A log of its own, used only for its cursors and state store.
    own: SledLog,
    _dir: tempfile::TempDir,
}

impl OtherReplica {
    /// A replica on `shared`, with empty cursors and state.
    pub fn on(shared: &Arc<dyn Log>) -> Arc<OtherReplica> {
        let dir = tempfile::tempdir().unwrap();
        let own = SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap();
        Arc::new(OtherReplica {
            shared: shared.clone(),
            own,
            _dir: dir,
        })
    }
}

impl Log for OtherReplica {
    fn append(&self, event: Verified) -> AppendTicket {
        self.shared.append(event)
    }
    fn read(&self, after: Seq, limit: usize) -> Result<Vec<Event>, LogError> {
        self.shared.read(after, limit)
    }
    fn get(&self, seq: Seq) -> Result<Option<Event>, LogError> {
        self.shared.get(seq)
    }
    fn stats(&self) -> Result<LogStats, LogError> {
        self.shared.stats()
    }
    fn cursor(&self, consumer: &str) -> Result<Seq, LogError> {
        self.own.cursor(consumer)
    }
    fn store_cursor(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        self.own.store_cursor(consumer, seq)
    }
    fn cursors(&self) -> Result<Vec<(String, Seq)>, LogError> {
        self.own.cursors()
    }
    fn watch_last_seq(&self) -> tokio::sync::watch::Receiver<Seq> {
        self.shared.watch_last_seq()
    }
    fn is_writable(&self) -> bool {
        self.shared.is_writable()
    }
    /// Closes the replica's own part; the shared log stays open for the other.
    fn close(&self) -> Result<(), LogError> {
        self.own.close()
    }
    fn state(&self) -> Arc<dyn StateStore> {
        self.own.state()
    }
}

/// A driver context on `log` for tests: batches of 2, retries within milliseconds, an alert
/// after `alert_after_failures` failures in a row, and no alert sink.
pub fn fast_context(log: &Arc<dyn Log>, alert_after_failures: u32) -> DriverContext {
    DriverContext {
        log: log.clone(),
        store: log.state(),
        registry: Arc::new(Registry::default()),
        metrics: Metrics::new(),
        alerter: Alerter::disabled(),
        config: DriverConfig {
            batch_size: 2,
            backoff_base: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
            alert_after_failures,
            idle_poll: Duration::from_millis(20),
        },
    }
}

/// Runs `consumer` under the driver on `log` (small batches, fast retries), as the daemon
/// starts it, until its cursor reaches `through`; then stops it and waits for the end.
pub async fn drive_until<C: Consumer>(log: &Arc<dyn Log>, consumer: C, through: Seq) {
    let name = consumer.name();
    let ctx = fast_context(log, 5);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(spawn_driver(consumer, ctx, rx));
    for _ in 0..500 {
        if log.cursor(name).unwrap() >= through {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        log.cursor(name).unwrap(),
        through,
        "{name} caught up in 5 s"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}
