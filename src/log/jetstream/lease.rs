//! The consumers' lease on a JetStream stream: at most one hooklog replica runs consumers on a
//! stream at a time.
//!
//! Every replica on a stream serves the edge; each keeps its own consumer state, so two of them
//! running consumers would decide and send everything twice. The replica holding this lease
//! runs them; the others are standbys that try for it every [`super::leader::poll_interval`]
//! and take it once its holder has not renewed it for the lease time
//! ([`super::JetStreamLog::campaign`]). A holder renews it every third of the lease
//! time and stops when it loses it. The lease decides who *should* run the consumers; what
//! keeps a holder that does not know it lost the lease from writing is the fence on the
//! stream's leader subject ([`super`]).
//!
//! # Layout
//!
//! A key-value bucket `HOOKLOG_CONSUMER_LEASES` (file storage, history 1, no age limit, as many
//! replicas as the log's stream had when the bucket was made, so that on a cluster the lease
//! survives the loss of a server as the log does): key = the stream's name, value = the
//! holder's id (the replica id kept in its local state).
//! An entry the server stamped more than the lease time ago is expired: the bucket has no
//! `max_age` because nats-server 2.9 has no per-key age, and one bucket-wide age would tie
//! every stream to whichever lease time created the bucket.
//!
//! # Invariants
//!
//! - **Compare-and-set.** The lease is taken with `create` (only when no live entry exists) and
//!   renewed with `update` at the revision this holder last wrote: a renewal after anyone
//!   else's write fails, and the holder then knows it lost the lease (fencing by revision).
//! - **The same replica may take its own lease back at once** (a restart after `kill -9`
//!   finds its previous incarnation's entry, same id): waiting for expiry would keep a
//!   restarted daemon down for the whole lease time while Twilio retries for only ~15 s.
//! - **A lost lease stops the daemon** (through [`super::Log::failure`]): a holder that was
//!   paused past the lease time must not go on sending.

use std::time::Duration;

use async_nats::jetstream::{self, kv};

/// The bucket every hooklog lease lives in.
pub const BUCKET: &str = "HOOKLOG_CONSUMER_LEASES";

/// Why the lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another replica holds the lease and renewed it within the lease time.
    #[error("another hooklog ({holder}) runs the consumers of stream {stream}")]
    Held {
        /// The stream.
        stream: String,
        /// The holder's id.
        holder: String,
    },
    /// The entry changed since this holder's last write: someone else took the lease.
    #[error("the lease on stream {0} was taken by another hooklog")]
    Lost(String),
    /// NATS did not answer as expected.
    #[error("lease on stream {stream}: {message}")]
    Nats {
        /// The stream.
        stream: String,
        /// What failed.
        message: String,
    },
}

/// Now, in nanoseconds since the epoch, to compare with the server's stamps.
fn time_now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// A lease this process holds.
pub struct Lease {
    store: kv::Store,
    stream: String,
    holder: String,
    revision: u64,
    predecessor: Option<String>,
}

impl Lease {
    /// Takes the lease on `stream` for `holder`, or says who holds it. A missing bucket is
    /// made with `replicas` replicas (the log stream's).
    pub async fn acquire(
        js: &jetstream::Context,
        stream: &str,
        holder: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Lease, LeaseError> {
        let nats = |message: String| LeaseError::Nats {
            stream: stream.to_owned(),
            message,
        };
        let store = match js.get_key_value(BUCKET).await {
            Ok(store) => store,
            Err(_) => {
                // The bucket's stream, made the way a key-value bucket is (`KV_<bucket>` on
                // `$KV.<bucket>.>`, one message per key, rollups, direct gets).
                // `create_key_value` itself cannot read nats-server 2.9's answer.
                js.create_stream(jetstream::stream::Config {
                    name: format!("KV_{BUCKET}"),
                    subjects: vec![format!("$KV.{BUCKET}.>")],
                    max_messages_per_subject: 1,
                    storage: jetstream::stream::StorageType::File,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: jetstream::stream::DiscardPolicy::New,
                    num_replicas: replicas.max(1),
                    ..Default::default()
                })
                .await
                .map_err(|e| nats(format!("cannot create the bucket {BUCKET}: {e}")))?;
                js.get_key_value(BUCKET)
                    .await
                    .map_err(|e| nats(format!("cannot open the bucket {BUCKET}: {e}")))?
            }
        };
        let value = bytes::Bytes::from(holder.to_owned());
        let mut predecessor = None;
        let revision = match store.create(stream, value.clone()).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let entry = store
                    .entry(stream)
                    .await
                    .map_err(|e| nats(e.to_string()))?
                    .ok_or_else(|| nats("the entry vanished while being read; retry".into()))?;
                let current = String::from_utf8_lossy(&entry.value).into_owned();
                let age_ns = time_now_ns().saturating_sub(entry.created.unix_timestamp_nanos());
                let expired = age_ns > ttl.as_nanos() as i128;
                let released = entry.operation != kv::Operation::Put;
                if current != holder && !expired && !released {
                    return Err(LeaseError::Held {
                        stream: stream.to_owned(),
                        holder: current,
                    });
                }
                if current != holder && !released {
                    predecessor = Some(current);
                }
                store
                    .update(stream, value, entry.revision)
                    .await
                    .map_err(|_| LeaseError::Lost(stream.to_owned()))?
            }
            Err(e) => return Err(nats(e.to_string())),
        };
        Ok(Lease {
            store,
            stream: stream.to_owned(),
            holder: holder.to_owned(),
            revision,
            predecessor,
        })
    }

    /// The replica whose lease expired and was taken over by this one, which may be alive
    /// and unaware of it (paused): `None` when the entry was free (never taken, or released
    /// by a holder that stopped) or this replica's own (its previous process, which the data
    /// directory's lock says is gone).
    pub fn predecessor(&self) -> Option<&str> {
        self.predecessor.as_deref()
    }

    /// The entry's revision this holder wrote last.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Renews the lease; [`LeaseError::Lost`] when someone else wrote the entry since.
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        match self
            .store
            .update(
                &self.stream,
                bytes::Bytes::from(self.holder.clone()),
                self.revision,
            )
            .await
        {
            Ok(revision) => {
                self.revision = revision;
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(LeaseError::Lost(self.stream.clone()))
            }
            Err(e) => Err(LeaseError::Nats {
                stream: self.stream.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Gives the lease up, so that another replica can take it without waiting for expiry.
    pub async fn release(self) {
        let _ = self
            .store
            .delete_expect_revision(&self.stream, Some(self.revision))
            .await;
    }
}
