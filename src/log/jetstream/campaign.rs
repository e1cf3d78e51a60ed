//! The campaign for the consumers' lease: [`JetStreamLog::campaign`] runs in the background,
//! takes the lease when its holder stopped renewing it, takes office (fencing out a former
//! holder), renews it, and steps down when it is lost.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::leader::{last_on_subject, poll_interval, renew_until_closed, take_office, Role};
use super::lease::{Lease, LeaseError};
use super::shared::{js_err, on, raise};
use super::JetStreamLog;
use crate::event::Seq;
use crate::log::{Leadership, LogError};

impl JetStreamLog {
    /// Runs for the consumers' lease on the stream ([`super::lease`]), in the background: until
    /// it is taken this replica is a standby ([`Log::leadership`](crate::log::Log::leadership)), serving the edge and
    /// refusing the leader's records; the lease is tried again every [`poll_interval`] of
    /// `ttl` and taken once its holder has not renewed it for `ttl`. Once taken, the leader's
    /// record is written ([`LEADER_ROUTE`](super::LEADER_ROUTE)), the lease is renewed every third of `ttl` until
    /// `close`, and losing it (someone else wrote it) sets [`Log::failure`](crate::log::Log::failure), which stops the
    /// daemon: its service manager starts it again, as a standby.
    ///
    /// Returns after the first try (or a few acknowledgement timeouts), so that a replica that
    /// finds the lease free starts as the leader, with its consumers, and one that finds it
    /// held starts as a standby.
    pub fn campaign(&self, ttl: Duration) -> Result<(), LogError> {
        let replica = self.replica_id()?;
        let stream = self.stream.clone();
        let name = stream.cached_info().config.name.clone();
        let replicas = stream.cached_info().config.num_replicas;
        self.elected.store(true, Ordering::Release);
        self.leadership
            .send_replace(Leadership::Standby { holder: None });
        let js = self.js.clone();
        let role = self.role.clone();
        let slot = self.lease.clone();
        let (failed, open) = (self.failed.clone(), self.open.clone());
        let leadership = self.leadership.clone();
        let (last_seq, metrics) = (self.last_seq.clone(), self.metrics.clone());
        let leader_subject = self.leader_subject.clone();
        let instance = self.instance.clone();
        let (ack_timeout, poll) = (self.ack_timeout, poll_interval(ttl));
        on(&self.handle, {
            let role = role.clone();
            async move {
                *role.lock().await = Role::Standby { holder: None };
                Ok(())
            }
        })?;
        let (tried, first_try) = std::sync::mpsc::sync_channel::<()>(1);
        self.handle.spawn(async move {
            let mut warned_at: Option<Instant> = None;
            let lease = loop {
                if !open.load(Ordering::Acquire) {
                    return;
                }
                let attempt = async {
                    let lease = Lease::acquire(&js, &name, &replica, ttl, replicas)
                        .await
                        .map_err(|e| match e {
                            LeaseError::Held { holder, .. } => Ok(holder),
                            other => Err(other.to_string()),
                        })?;
                    // Only a predecessor that may still be running needs fencing out; after a
                    // release (its appends were drained first) or a restart of this replica,
                    // the leader subject's last record is simply where this one goes on.
                    let term = match lease.predecessor() {
                        Some(_) => take_office(
                            &js,
                            &stream,
                            &leader_subject,
                            &replica,
                            lease.revision(),
                            &format!("{instance}-leader-{}", lease.revision()),
                            ack_timeout,
                        )
                        .await
                        .map_err(|e| Err(e.to_string()))?,
                        None => last_on_subject(&stream, &leader_subject)
                            .await
                            .map_err(|e| Err(e.to_string()))?
                            .map_or(0, |(seq, _)| seq),
                    };
                    // The end of the log as it is now, not as last polled: every record of the
                    // predecessor is before it, and the consumers' learning pass must read
                    // them all before they act.
                    let end = stream
                        .get_info()
                        .await
                        .map_err(|e| Err(js_err("stream info", e).to_string()))?
                        .state
                        .last_sequence;
                    Ok::<_, Result<String, String>>((lease, term, end))
                };
                match attempt.await {
                    Ok((lease, term, end)) => {
                        *role.lock().await = Role::Leader {
                            replica: replica.clone(),
                            last: term,
                        };
                        raise(&last_seq, Seq(term.max(end)), &metrics);
                        leadership.send_replace(Leadership::Leader);
                        let _ = tried.try_send(());
                        tracing::info!(
                            stream = %name,
                            replica = %replica,
                            leader_subject_last = term,
                            lease_secs = ttl.as_secs(),
                            "took the consumers' lease: this replica runs the consumers"
                        );
                        break lease;
                    }
                    Err(Ok(holder)) => {
                        let standby = Leadership::Standby {
                            holder: Some(holder.clone()),
                        };
                        if *leadership.borrow() != standby {
                            tracing::info!(stream = %name, %holder, "standby: another replica runs the consumers");
                            leadership.send_replace(standby);
                        }
                        *role.lock().await = Role::Standby {
                            holder: Some(holder),
                        };
                    }
                    Err(Err(e)) => {
                        if warned_at.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                            tracing::warn!(stream = %name, error = %e, "cannot take or check the consumers' lease; retrying");
                            warned_at = Some(Instant::now());
                        }
                    }
                }
                let _ = tried.try_send(());
                tokio::time::sleep(poll).await;
            };
            *slot.lock().await = Some(lease);
            renew_until_closed(slot, role, failed, open, ttl).await;
        });
        let _ = first_try.recv_timeout(self.ack_timeout * 3);
        Ok(())
    }
}
