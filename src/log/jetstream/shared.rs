//! What the engine's files share: the subjects and headers of the stream's layout, how errors
//! of NATS and of the local state database become [`LogError`]s, running a future on the
//! engine's runtime from any thread ([`on`]), and publishing a new last sequence ([`raise`]).

use std::time::Duration;

use tokio::sync::watch;

use crate::event::Seq;
use crate::log::LogError;
use crate::metrics::Metrics;

/// How often the last stored sequence is read from the stream, so that appends made by
/// another process (another replica, `hooklog-replay`) wake the consumers here.
pub const LAST_SEQ_POLL: Duration = Duration::from_millis(200);

/// Direct reads in flight at once for one [`Log::read`](crate::log::Log::read).
pub(super) const READ_CONCURRENCY: usize = 64;

/// Publishes of one [`Log::restore_events`](crate::log::Log::restore_events) whose acknowledgement is not awaited yet.
pub(super) const RESTORE_IN_FLIGHT: usize = 256;

/// The route of the record a replica writes when it becomes the consumers' leader (body: JSON
/// `{"replica", "lease_revision"}`): the fence that makes its predecessor's later writes fail,
/// and a trace in the log of who ran the consumers from when.
pub const LEADER_ROUTE: &str = "/internal/leader";

/// The header naming the replica that published a record on the leader subject.
pub(super) const REPLICA_HEADER: &str = "Hooklog-Replica";

/// The subject of the records only the consumers' leader writes, beside `subject`.
pub fn leader_subject(subject: &str) -> String {
    format!("{subject}.leader")
}

pub(super) fn js_err(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Storage(format!("JetStream {what}: {e}"))
}

pub(super) fn sled_err(e: sled::Error) -> LogError {
    LogError::Storage(format!("local state database: {e}"))
}

/// Runs `fut` on the engine's runtime and waits for it on this thread (any thread).
pub(super) fn on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    fut: impl std::future::Future<Output = Result<T, LogError>> + Send + 'static,
) -> Result<T, LogError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(LogError::Storage("the JetStream runtime stopped".into())))
}

/// Moves the last known sequence forward (never back: acknowledgements arrive out of order).
pub(super) fn raise(last_seq: &watch::Sender<Seq>, seq: Seq, metrics: &Metrics) {
    last_seq.send_if_modified(|last| {
        if seq > *last {
            *last = seq;
            metrics.last_seq.set(seq.0 as i64);
            true
        } else {
            false
        }
    });
}
