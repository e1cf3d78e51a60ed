//! Sending one attempt: the provider clients and their limiters, the blocking call with its
//! retries (`deliver`), the records an outcome calls for, and their appends before the ledger
//! entry is closed.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::{transient, LedgerState, OutboundOrOptOut, SendClients, Sender, SharedClient};
use crate::alerts::{Alert, Severity};
use crate::config::Config;
use crate::consumers::compliance::OptOutChange;
use crate::consumers::outbound::{
    LineChange, Message, MessageId, OutboundRecord, SendAttempt, SendResult, SendStatus,
};
use crate::consumers::BatchError;
use crate::event::{Micros, Verification, Verified};
use crate::gates::LineConfig;
use crate::provider::SendProvider;
use crate::retry::RetryPolicy;
use crate::send::{
    self, AlertSink, BuildError, HttpOptions, Limiter, OutboundMessage, Outcome, SendClient,
};

impl SendClients {
    /// The clients the configuration has credentials for: Quo with `openphone.api_key`,
    /// Twilio with `twilio.account_sid` and the first (primary) of `twilio.auth_tokens`.
    pub fn from_config(config: &Config) -> SendClients {
        let options = |base: &str| HttpOptions {
            connect_timeout: Duration::from_secs(config.sender.connect_timeout_secs),
            timeout: Duration::from_secs(config.sender.timeout_secs),
            ..HttpOptions::new(base)
        };
        let openphone = config.openphone.api_key.clone().map(|key| {
            Arc::new(send::quo::Client::new(
                key,
                options(&config.openphone.api_base),
            )) as SharedClient
        });
        let twilio = match (
            &config.twilio.account_sid,
            config.twilio.auth_tokens.first(),
        ) {
            (Some(sid), Some(token)) => Some(Arc::new(send::twilio::Client::new(
                sid.clone(),
                token.clone(),
                options(&config.twilio.api_base),
            )) as SharedClient),
            _ => None,
        };
        SendClients { openphone, twilio }
    }

    /// The providers that can send, in configuration spelling.
    pub fn providers(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.openphone.is_some() {
            out.push(SendProvider::Quo.as_str());
        }
        if self.twilio.is_some() {
            out.push(SendProvider::Twilio.as_str());
        }
        out
    }

    /// Whether no provider can send.
    pub fn is_empty(&self) -> bool {
        self.openphone.is_none() && self.twilio.is_none()
    }
}

/// The `from` the provider is sent for line `line_id`, whose number the decision gave as
/// `number`: the line's Quo `PN…` id when it has one and its configured number is still that
/// number (a line renumbered since the decision keeps the number the gates cleared), else the
/// number. The attempt record keeps the number either way: caps and opt-outs go by number.
pub(super) fn wire_from(lines: &[LineConfig], line_id: &str, number: &str) -> String {
    lines
        .iter()
        .find(|l| l.id == line_id && l.number == number)
        .map_or(number, LineConfig::sender_id)
        .to_owned()
}

/// What the blocking half of a send brings back.
pub(super) struct Delivery {
    outcome: Result<Outcome, BuildError>,
    tries: u32,
}

impl OutboundOrOptOut {
    pub(super) fn to_verified(&self) -> Verified {
        match self {
            OutboundOrOptOut::Outbound(r) => r.to_verified(Micros::now()),
            OutboundOrOptOut::OptOut(c) => c.to_verified_as(Micros::now(), Verification::Internal),
        }
    }
}

impl Sender {
    /// Appends `records` in order and waits until they are durable; returns their seqs.
    async fn append_all(&self, records: &[OutboundOrOptOut]) -> Result<Vec<u64>, BatchError> {
        let tickets: Vec<_> = records
            .iter()
            .map(|r| self.log.append(r.to_verified()))
            .collect();
        let mut seqs = Vec::with_capacity(tickets.len());
        for t in tickets {
            seqs.push(t.await.map_err(transient)?.0);
        }
        Ok(seqs)
    }

    /// Appends the records that end an attempt, then closes the ledger entry.
    pub(super) async fn finish_attempt(
        &mut self,
        id: &MessageId,
        attempt: u32,
        provider: &str,
        records: Vec<OutboundOrOptOut>,
    ) -> Result<(), BatchError> {
        let seqs = match self.append_all(&records).await {
            Ok(seqs) => seqs,
            Err(e) => {
                self.unrecorded.insert(id.clone(), records);
                return Err(e);
            }
        };
        self.unrecorded.remove(id);
        let mut status = None;
        for (record, seq) in records.iter().zip(seqs) {
            match record {
                OutboundOrOptOut::Outbound(OutboundRecord::Line(l)) if l.state == "blocked" => {
                    self.blocked_here.insert(l.line_id.clone(), seq);
                }
                OutboundOrOptOut::OptOut(c) => {
                    if let Some(n) = crate::phone::normalize_e164(&c.number) {
                        self.opted_out_here.insert(n, seq);
                    }
                }
                OutboundOrOptOut::Outbound(OutboundRecord::Result(r)) => status = Some(r.status),
                _ => {}
            }
        }
        let window = self.ledger_entry(id)?.and_then(|e| e.window);
        self.put_ledger(id, attempt, LedgerState::Done, status, window)?;
        if let Some(status) = status {
            self.metrics
                .sends
                .with_label_values(&[provider, status.as_str()])
                .inc();
        }
        Ok(())
    }

    pub(super) fn result(
        &self,
        msg: &Message,
        attempt: u32,
        status: SendStatus,
        outcome: &str,
    ) -> SendResult {
        SendResult {
            id: msg.id.clone(),
            attempt,
            status,
            outcome: outcome.to_owned(),
            provider_id: None,
            code: None,
            error: None,
            reasons: Vec::new(),
            tries: 0,
            at: self.now_rfc3339(),
        }
    }

    /// Sends attempt `attempt` of `msg` (after the last-moment checks).
    pub(super) async fn send(
        &mut self,
        msg: &Message,
        attempt: u32,
        redelivery: bool,
        window: Option<u64>,
    ) -> Result<(), BatchError> {
        let provider_name = msg.provider.map_or("unknown", SendProvider::as_str);
        self.await_stops().await?;
        let mut reasons = self.last_moment_reasons(msg);
        if redelivery {
            for r in self.resend_reasons(msg)? {
                if !reasons.iter().any(|known| known.code == r.code) {
                    reasons.push(r);
                }
            }
        }
        if !reasons.is_empty() {
            tracing::info!(id = %msg.id, ?reasons, "refused at the last moment; not sent");
            let mut r = self.result(msg, attempt, SendStatus::Refused, "refused");
            r.reasons = reasons;
            self.finish_attempt(
                &msg.id,
                attempt,
                provider_name,
                vec![OutboundOrOptOut::Outbound(OutboundRecord::Result(r))],
            )
            .await?;
            if window.is_some() {
                // Refused inside a redelivery window: that was this window's one try, so a
                // batch handled again inside it neither refuses twice nor sends later.
                self.put_ledger(
                    &msg.id,
                    attempt,
                    LedgerState::Done,
                    Some(SendStatus::Refused),
                    window,
                )?;
            }
            return Ok(());
        }
        // The checks above guarantee a provider, a line and a recipient.
        let (Some(provider), Some(line_id), Some(to)) =
            (msg.provider, msg.line_id.clone(), msg.to_e164.clone())
        else {
            return Ok(());
        };
        let route = match provider {
            SendProvider::Quo => self.openphone.clone(),
            SendProvider::Twilio => self.twilio.clone(),
        };
        let (Some(route), Some(from)) = (route, msg.from_number.clone()) else {
            let why = if msg.from_number.is_none() {
                format!("line `{line_id}` has no number in the decision")
            } else {
                format!(
                    "{} is not configured for sending (no credentials); the message is not \
                     moved to another provider",
                    provider.as_str()
                )
            };
            self.alerts.raise(Alert {
                key: format!("send:not_configured:{}", provider.as_str()),
                severity: Severity::Critical,
                title: format!(
                    "message {} cannot be sent through {}",
                    msg.id,
                    provider.as_str()
                ),
                reason: why.clone(),
                next_step: format!(
                    "configure the {} API credentials, then `hooklog-replay rewind sender \
                     --redeliver` to send the failed messages",
                    provider.as_str()
                ),
            });
            let mut r = self.result(msg, attempt, SendStatus::Failed, "not_configured");
            r.error = Some(why);
            return self
                .finish_attempt(
                    &msg.id,
                    attempt,
                    provider_name,
                    vec![OutboundOrOptOut::Outbound(OutboundRecord::Result(r))],
                )
                .await;
        };

        // The guard: durable before the provider is called.
        self.put_ledger(&msg.id, attempt, LedgerState::Attempting, None, window)?;
        let attempt_record = SendAttempt {
            id: msg.id.clone(),
            attempt,
            provider,
            from: from.clone(),
            to: to.clone(),
            redelivery,
            at: self.now_rfc3339(),
        };
        let record = OutboundRecord::Attempt(attempt_record.clone());
        if let Err(e) = self.log.append(record.to_verified(Micros::now())).await {
            // Nothing was called: undo the guard so the retried batch sends normally.
            self.ledger.remove(msg.id.as_str().as_bytes())?;
            return Err(transient(e));
        }
        if redelivery {
            // The next re-send in this batch must count this one toward the caps, before the
            // outbound projection reads the attempt (it writes the same entry then).
            self.outbound.record_resend(msg, &attempt_record)?;
        }

        let outbound = OutboundMessage {
            from: wire_from(&self.lines, &line_id, &from),
            to: to.clone(),
            content: msg.content.clone(),
        };
        let (alerts, retry, connect_retries) =
            (self.alerts.clone(), self.retry, self.connect_retries);
        let delivery = tokio::task::spawn_blocking(move || {
            deliver(
                route.client.as_ref(),
                &route.limiter,
                &outbound,
                &retry,
                connect_retries,
                alerts.as_ref(),
            )
        })
        .await
        .unwrap_or_else(|e| Delivery {
            // The send thread panicked: the call may have been made.
            outcome: Ok(Outcome::Unknown {
                reason: format!("the send thread failed: {e}"),
            }),
            tries: 1,
        });
        let records = self.records_for(msg, attempt, provider, &line_id, &to, delivery);
        self.finish_attempt(&msg.id, attempt, provider_name, records)
            .await
    }

    /// The result (and any opt-out or line block) an outcome calls for; raises the alerts
    /// [`send::send_with_retries`] does not.
    fn records_for(
        &self,
        msg: &Message,
        attempt: u32,
        provider: SendProvider,
        line_id: &str,
        to: &str,
        delivery: Delivery,
    ) -> Vec<OutboundOrOptOut> {
        let mut extra = Vec::new();
        let tries = delivery.tries;
        let mut r = match delivery.outcome {
            Err(e) => {
                let mut r = self.result(msg, attempt, SendStatus::Failed, "invalid_request");
                r.error = Some(format!("the request could not be built: {e}"));
                r
            }
            Ok(Outcome::Sent { provider_id }) => {
                let mut r = self.result(msg, attempt, SendStatus::Sent, "sent");
                r.provider_id = Some(provider_id);
                r
            }
            Ok(Outcome::OptedOut) => {
                let mut r = self.result(msg, attempt, SendStatus::Failed, "opted_out");
                r.code = Some(send::twilio::CODE_OPTED_OUT.to_string());
                let why = format!(
                    "Twilio {}: {to} unsubscribed from this sender at Twilio (message {})",
                    send::twilio::CODE_OPTED_OUT,
                    msg.id
                );
                r.error = Some(format!("{why}; recorded as an opt-out"));
                extra.push(OutboundOrOptOut::OptOut(OptOutChange {
                    action: "add".into(),
                    number: to.to_owned(),
                    reason: Some(why),
                    provider: Some(provider.as_str().to_owned()),
                    line: Some(line_id.to_owned()),
                }));
                r
            }
            Ok(Outcome::LineBlocked { reason }) => {
                let mut r = self.result(msg, attempt, SendStatus::Failed, "line_blocked");
                r.error = Some(format!("the line is blocked from sending: {reason}"));
                extra.push(OutboundOrOptOut::Outbound(OutboundRecord::Line(
                    LineChange {
                        line_id: line_id.to_owned(),
                        state: "blocked".into(),
                        reason: format!("{} refused a send: {reason}", provider.as_str()),
                        at: self.now_rfc3339(),
                    },
                )));
                r
            }
            Ok(Outcome::RateLimited) => {
                let mut r = self.result(msg, attempt, SendStatus::Failed, "rate_limited");
                r.error = Some(format!("{tries} tries, each answered 429; not sent"));
                r
            }
            Ok(Outcome::Rejected {
                status,
                code,
                message,
            }) => {
                let mut r = self.result(msg, attempt, SendStatus::Failed, "rejected");
                r.code = code;
                r.error = Some(format!(
                    "{} answered {status}: {message}",
                    provider.as_str()
                ));
                r
            }
            Ok(Outcome::Transient { reason }) if reason.starts_with("not sent") => {
                self.alerts.raise(Alert {
                    key: format!("send:unreachable:{}", provider.as_str()),
                    severity: Severity::Warning,
                    title: format!("{} could not be reached to send", provider.as_str()),
                    reason: format!("{tries} tries: {reason}; message {} failed", msg.id),
                    next_step: "check the network and the provider's status page; \
                                `hooklog-replay rewind sender --redeliver` sends it again"
                        .into(),
                });
                let mut r = self.result(msg, attempt, SendStatus::Failed, "transient");
                r.error = Some(reason);
                r
            }
            Ok(Outcome::Transient { reason }) => {
                self.alerts.raise(Alert {
                    key: format!("send:unknown:{}:{line_id}", provider.as_str()),
                    severity: Severity::Warning,
                    title: format!("{} send from {line_id}: result unknown", provider.as_str()),
                    reason: format!(
                        "{reason}; message {} may or may not have gone out, so it is not resent",
                        msg.id
                    ),
                    next_step: "look the message up in the provider's message log before \
                                sending it again"
                        .into(),
                });
                let mut r = self.result(msg, attempt, SendStatus::Unknown, "transient");
                r.error = Some(reason);
                r
            }
            Ok(Outcome::Unknown { reason }) => {
                // `send_with_retries` has raised the alert.
                let mut r = self.result(msg, attempt, SendStatus::Unknown, "unknown");
                r.error = Some(reason);
                r
            }
        };
        r.tries = tries;
        let mut records = extra;
        records.push(OutboundOrOptOut::Outbound(OutboundRecord::Result(r)));
        records
    }
}

/// The blocking half of one attempt: [`send::send_with_retries`] (limiter, 429 backoff,
/// alerts), and up to `connect_retries` more rounds when no connection could be made (the
/// message certainly did not leave).
fn deliver(
    client: &dyn SendClient,
    limiter: &Limiter,
    message: &OutboundMessage,
    policy: &RetryPolicy,
    connect_retries: u32,
    alerts: &dyn AlertSink,
) -> Delivery {
    let mut tries = 0u32;
    let mut round = 0u32;
    loop {
        match send::send_with_retries(client, limiter, message, policy, alerts) {
            Err(e) => {
                return Delivery {
                    outcome: Err(e),
                    tries,
                }
            }
            Ok(report) => {
                tries += report.attempts.len() as u32;
                let not_sent = matches!(&report.outcome,
                    Outcome::Transient { reason } if reason.starts_with("not sent"));
                if not_sent && round < connect_retries {
                    let wait = policy.backoff(round, rand::thread_rng().gen_range(0.0..=1.0));
                    round += 1;
                    std::thread::sleep(wait);
                    continue;
                }
                return Delivery {
                    outcome: Ok(report.outcome),
                    tries,
                };
            }
        }
    }
}
