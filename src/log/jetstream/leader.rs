//! Who runs the consumers on a stream, and how the leader's writes are fenced: what the
//! campaign for the consumers' lease ([`super::JetStreamLog::campaign`]) calls, taking office
//! (the [`super::LEADER_ROUTE`] record that fences out a former holder), the fenced publishes
//! of the leader's records (`LeaderPublish`), and stepping down when the lease or the fence is
//! lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use tokio::sync::watch;

use super::shared::{js_err, LEADER_ROUTE, REPLICA_HEADER};
use crate::event::{Micros, Seq, Source, Verification, Verified};
use crate::log::LogError;

/// Where this process stands towards the leader subject.
#[derive(Debug)]
pub(super) enum Role {
    /// Opened by a tool or a test, with no election: every record goes to the main subject.
    Unelected,
    /// Campaigning, or deposed: the records only a leader writes are refused.
    Standby {
        /// The lease holder, when known.
        holder: Option<String>,
    },
    /// Holds the lease: the leader's records expect the leader subject to end at `last`.
    Leader {
        /// This replica's id.
        replica: String,
        /// The last sequence on the leader subject, written by this replica.
        last: u64,
    },
}

/// How often a standby looks at the lease: a fifth of its time, between 100 ms and 1 s, so
/// that a fail-over takes at most the lease time and one look more.
pub fn poll_interval(ttl: Duration) -> Duration {
    (ttl / 5).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Deposes this replica, which finds out it lost the lease (at a renewal, or at a write the
/// stream refused): the leader's records are refused from then on, and `reason` becomes the
/// log's failure, which stops the daemon (its service manager starts it again, a standby).
pub(super) fn depose(
    role: &mut Role,
    failed: &watch::Sender<Option<String>>,
    holder: Option<String>,
    reason: String,
) {
    *role = Role::Standby { holder };
    failed.send_replace(Some(reason));
}

/// Renews the lease every third of `ttl` until the log closes; a lost lease deposes this
/// replica (its leader's records are refused from then on) and sets the log's failure.
pub(super) async fn renew_until_closed(
    slot: Arc<tokio::sync::Mutex<Option<super::lease::Lease>>>,
    role: Arc<tokio::sync::Mutex<Role>>,
    failed: watch::Sender<Option<String>>,
    open: Arc<AtomicBool>,
    ttl: Duration,
) {
    let mut last_renewed = Instant::now();
    while open.load(Ordering::Acquire) {
        tokio::time::sleep(ttl / 3).await;
        let mut guard = slot.lock().await;
        let Some(lease) = guard.as_mut() else { return };
        match lease.renew().await {
            Ok(()) => last_renewed = Instant::now(),
            Err(super::lease::LeaseError::Lost(stream)) => {
                depose(
                    &mut *role.lock().await,
                    &failed,
                    None,
                    format!(
                        "the consumers' lease on JetStream stream {stream} was lost (another \
                         replica took it after this one did not renew it for \
                         log.jetstream.lease_secs)"
                    ),
                );
                return;
            }
            Err(e) => {
                // NATS unreachable: keep trying; once the lease time has passed the entry may
                // be taken, and the next renewal reports it lost.
                tracing::warn!(error = %e, since_renewed_secs = last_renewed.elapsed().as_secs(), "cannot renew the consumers' lease");
            }
        }
    }
}

/// The last message on `subject`: its sequence and headers; `None` when there is none.
pub(super) async fn last_on_subject(
    stream: &stream::Stream,
    subject: &str,
) -> Result<Option<(u64, async_nats::HeaderMap)>, LogError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(Some((m.sequence, m.headers))),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(js_err("read of the leader subject", e)),
    }
}

pub(super) fn header<'a>(headers: &'a async_nats::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.as_str())
}

pub(super) fn is_wrong_last_sequence(e: &async_nats::jetstream::context::PublishError) -> bool {
    e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence
}

/// A record for the leader subject, from `replica`, stored only if the subject's last record
/// is still `last` (0: none); `id` makes a retry of it a duplicate.
pub(super) fn leader_message(
    payload: bytes::Bytes,
    id: &str,
    last: u64,
    replica: &str,
) -> PublishMessage {
    PublishMessage::build()
        .payload(payload)
        .message_id(id)
        .expected_last_subject_sequence(last)
        .header(REPLICA_HEADER, replica)
}

/// Publishes `message` on `subject` and waits for the stream's acknowledgement.
pub(super) async fn publish_message(
    js: &jetstream::Context,
    subject: &str,
    message: PublishMessage,
) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
    js.send_publish(subject.to_owned(), message).await?.await
}

/// Writes this replica's [`LEADER_ROUTE`] record on the leader subject, expecting the subject's
/// last record to be the one just read: a write by the former leader in between makes it
/// read and try again, so that everything the former leader wrote is before it. Its sequence.
pub(super) async fn take_office(
    js: &jetstream::Context,
    stream: &stream::Stream,
    leader_subject: &str,
    replica: &str,
    revision: u64,
    msg_id: &str,
    ack_timeout: Duration,
) -> Result<u64, LogError> {
    let body = serde_json::json!({ "replica": replica, "lease_revision": revision }).to_string();
    let record: bytes::Bytes = Verified::new(
        Micros::now(),
        Source::Internal,
        LEADER_ROUTE.to_owned(),
        vec![("content-type".into(), "application/json".into())],
        body.into_bytes(),
        Verification::Internal,
    )
    .into_event(Seq(0))
    .encode()
    .into();
    let deadline = Instant::now() + ack_timeout * 5;
    loop {
        let last = last_on_subject(stream, leader_subject)
            .await?
            .map_or(0, |(seq, _)| seq);
        let message = leader_message(record.clone(), msg_id, last, replica);
        match publish_message(js, leader_subject, message).await {
            Ok(ack) => return Ok(ack.sequence),
            Err(e) if Instant::now() < deadline => {
                if !is_wrong_last_sequence(&e) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => return Err(js_err("leader record not acknowledged", e)),
        }
    }
}

/// What the leader's publish needs.
pub(super) struct LeaderPublish {
    pub(super) js: jetstream::Context,
    pub(super) stream: stream::Stream,
    pub(super) subject: String,
    pub(super) role: Arc<tokio::sync::Mutex<Role>>,
    pub(super) failed: watch::Sender<Option<String>>,
    /// This process's `Nats-Msg-Id` prefix: what tells its own records from those of another
    /// process with the same replica id (a data directory copied to a second machine).
    pub(super) instance: String,
}

impl LeaderPublish {
    /// Publishes one of the leader's records ([`Verification::Internal`]) with `Nats-Msg-Id`
    /// `id`, expecting the leader subject to end at this replica's last record. Its sequence,
    /// or [`LogError::NotLeader`] on a standby and on a leader another replica has deposed.
    pub(super) async fn publish(
        &self,
        payload: bytes::Bytes,
        id: &str,
        deadline: Instant,
    ) -> Result<u64, LogError> {
        let mut role = self.role.lock().await;
        let (replica, last) = match &mut *role {
            Role::Leader { replica, last } => (replica.clone(), last),
            Role::Standby { holder } => {
                return Err(LogError::NotLeader(match holder {
                    Some(h) => format!("replica {h} holds the consumers' lease"),
                    None => "this replica does not hold the consumers' lease".into(),
                }))
            }
            Role::Unelected => {
                return Err(LogError::NotLeader("no election was held".into()));
            }
        };
        // At most a few reconciliations: each one learns something that settles the next try.
        let mut reconciled = 0;
        loop {
            let message = leader_message(payload.clone(), id, *last, &replica);
            match publish_message(&self.js, &self.subject, message).await {
                Ok(ack) => {
                    *last = ack.sequence;
                    return Ok(ack.sequence);
                }
                Err(e) if is_wrong_last_sequence(&e) && reconciled < 3 => {
                    reconciled += 1;
                    match last_on_subject(&self.stream, &self.subject).await? {
                        // This very record, stored by a try whose acknowledgement was lost.
                        Some((seq, h)) if header(&h, "Nats-Msg-Id") == Some(id) => {
                            *last = seq;
                            return Ok(seq);
                        }
                        // Another record of this process's, answered with an error but stored.
                        Some((seq, h))
                            if header(&h, "Nats-Msg-Id").is_some_and(|m| {
                                m.strip_prefix(self.instance.as_str())
                                    .is_some_and(|rest| rest.starts_with('-'))
                            }) =>
                        {
                            *last = seq;
                        }
                        Some((_, h)) => {
                            let other = header(&h, REPLICA_HEADER).unwrap_or("?").to_owned();
                            let why = format!(
                                "replica {other} became the consumers' leader after this one; \
                                 its records are refused from now on"
                            );
                            depose(
                                &mut role,
                                &self.failed,
                                Some(other),
                                format!("the consumers' lease was lost: {why}"),
                            );
                            return Err(LogError::NotLeader(why));
                        }
                        // Retention purged the subject: only records older than the retention
                        // period, which no newer leader's can be (a leader writes one first).
                        None => *last = 0,
                    }
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(js_err("publish not acknowledged", e)),
            }
        }
    }
}
