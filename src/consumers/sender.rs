//! The `sender` consumer: sends the outbound messages the gates allowed, through the Quo or
//! Twilio REST API, and records every attempt and result in the log (DESIGN §5, §7;
//! guarantees 3, 4 and 6).
//!
//! It follows `outbound` (its upstream), so the message projection has seen every decision
//! the sender reads. For each `allow` decision it reads the message
//! ([`OutboundStore::message`]) and consults its **effects ledger**; when a send is due it
//! runs the last-moment checks again and then:
//!
//! ```text
//! ledger: attempting(n) ──► append SendAttempt (durable) ──► provider call(s) ──► append
//! SendResult (+ an opt-out or a line block) ──► ledger: done
//! ```
//!
//! # At most once
//!
//! An SMS cannot be taken back, so the ledger, not the cursor, decides whether to call the
//! provider. The ledger entry `attempting(n)` is written before the attempt record is
//! appended, and the append's flush (the state trees live in the same sled database as the
//! log) makes both durable **before** the provider is called. A rewind re-reads decisions
//! whose ledger entry is `done` and skips them; only an operator's `rewind sender
//! --redeliver` ([`Consumer::redeliver`]) sends them again, as a new attempt with
//! `redelivery: true`, still after the last-moment checks, and once per window
//! ([`super::redelivery`]: the ledger entry keeps the window's generation, so a batch handled
//! again inside the window sends nothing more). Nothing retries a call whose
//! outcome may be that the message went out: a read timeout, a 5xx and a crash end as
//! `unknown` for an operator to check in the provider's console.
//!
//! # Crash table
//!
//! | the daemon stopped …                                   | after the restart                                           |
//! |--------------------------------------------------------|-------------------------------------------------------------|
//! | before the ledger entry                                | nothing was called: the decision is handled as new          |
//! | after `attempting(n)`, before the attempt was flushed  | the entry may be lost (then as above) or kept (then below)  |
//! | after the attempt record, before the result            | `attempting(n)` with no result: an `unknown` result (`crashed`) and a critical alert; **never called again** |
//! | after the result, before `done`                        | the learning pass reads the result: `done`, nothing is appended, no alert |
//! | after `done`, before the cursor was saved              | the batch is handled again; `done` skips the message        |
//! | with its state lost, or on another replica (fail-over) | the learning pass rebuilds the entries from the attempt and result records: as the rows above |
//!
//! # Learning from the log
//!
//! The ledger lives in local state, but every attempt and result is a record in the log. At
//! start, before the first batch, the driver hands the sender the records from its cursor to
//! the end of the log ([`Consumer::learn_effects`]): an attempt with no newer ledger entry
//! becomes `attempting(n)`, a result `done` (never the other way round for one attempt,
//! never an older attempt over a newer one). This is what keeps a fail-over at most once:
//! the replica that takes the consumers' lease has a ledger that knows nothing of what the
//! previous holder sent, and cursors that may be stale or at 0. With the pass, a message the
//! previous holder sent is skipped as `done`, and one it was sending when it died (attempt,
//! no result) ends as `unknown` with a critical alert, never called again. The pass also
//! makes a restart independent of the ledger entry surviving: an entry lost with the local
//! state is learned again from the log.
//!
//! When the log refuses an append (disk full), the batch fails and is retried: a refused
//! attempt record undoes its ledger entry (nothing was called), and the records of a call
//! that did happen are kept in memory and appended by the retry instead of an `unknown`.
//!
//! # Last-moment checks (fail closed)
//!
//! Between the decision and the call, time passes (a queue, a retry of the batch, a
//! redelivery). Just before calling, the sender refuses (result `refused` with reasons, no
//! call) when the recipient is suppressed (or the list cannot be read), the kill switch is
//! on, the line is blocked by a provider, gone from `[[lines]]`, not approved or on another
//! provider, or the recipient's quiet hours are closed now (or the area code is unknown). An
//! opt-out or a line block the sender itself has appended counts at once, before the
//! compliance and outbound consumers have projected it.
//!
//! # Outcomes
//!
//! | provider outcome ([`Outcome`]) | result | also |
//! |---|---|---|
//! | `Sent` | `sent` with the provider's id | |
//! | `OptedOut` (Twilio 21610) | `failed` | an opt-out record for the recipient (compliance suppresses it) |
//! | `LineBlocked` (Quo A2P 400) | `failed` | a `blocked` line record (the gates refuse the line from then on); critical alert |
//! | `RateLimited` after the retries | `failed` | alert |
//! | `Rejected` (other 4xx), a request that cannot be built | `failed` | |
//! | `Transient`, "not sent" (no connection) | retried a few times within the attempt, then `failed` | alert |
//! | `Transient`, a 5xx | `unknown` (the provider may have accepted it) | alert |
//! | `Unknown` | `unknown` | alert |
//! | provider not configured | `failed` (never another provider) | alert |
//!
//! # Key layout (trees of consumer `sender`)
//!
//! | tree        | key           | value                                                   |
//! |-------------|---------------|---------------------------------------------------------|
//! | `ledger`    | message id    | JSON [`LedgerEntry`] `{attempt, state, status, at, window}` |
//! | `redeliver` | `redeliver`   | JSON [`RedeliveryWindow`] `{after, through, generation}` ([`super::redelivery`]) |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::compliance::{self, OptOutChange, ADMIN_ROUTE};
use super::redelivery::{Redelivery, RedeliveryWindow};
use super::{Batch, BatchError, Consumer, RewindMode};
use crate::alerts::{Alert, Severity};
use crate::clock::Clock;
use crate::config::Config;
use crate::consumers::outbound::{
    GateDecision, LineChange, Message, MessageId, OutboundRecord, OutboundStore, SendAttempt,
    SendResult, SendStatus, Verdict,
};
use crate::event::{Micros, Seq, Source, Verification, Verified};
use crate::gates::{self, quiet_hours, ComplianceConfig, LineConfig, Provider, Reason, ReasonCode};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::send::{
    self, AlertSink, BuildError, HttpOptions, Limiter, OutboundMessage, Outcome, Rate, RetryPolicy,
    SendClient,
};
use crate::state::{KvTree, StateError, StateStore};

/// The consumer's name.
pub const NAME: &str = "sender";

/// `[sender]`: the outbound sender. It runs when enabled and at least one provider's send
/// credentials are configured (`openphone.api_key`; `twilio.account_sid` and an auth token).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderConfig {
    /// Send approved messages (off: the cursor waits, nothing is sent).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub enabled: bool,
    /// Quo requests per second per API key (Quo allows 10).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub quo_per_second: u32,
    /// Twilio messages per second per sending number (1 for a long code).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub twilio_per_second: u32,
    /// Retries of a 429 answer (the provider did not process the request).
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub max_retries: u32,
    /// Longest wait for a whole call, in seconds; past it the result is `unknown`.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub timeout_secs: u64,
    /// Longest wait for the connection, in seconds; failing it sends nothing.
    #[serde(deserialize_with = "crate::config::de::parsed")]
    pub connect_timeout_secs: u64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            enabled: true,
            quo_per_second: 10,
            twilio_per_second: 1,
            max_retries: 3,
            timeout_secs: 15,
            connect_timeout_secs: 5,
        }
    }
}

impl SenderConfig {
    /// Checks what serde cannot. Messages start with the bare key name.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10).contains(&self.quo_per_second) {
            return Err(format!(
                "quo_per_second: {} is outside 1..=10 (Quo allows 10 requests/s per key)",
                self.quo_per_second
            ));
        }
        if !(1..=100).contains(&self.twilio_per_second) {
            return Err(format!(
                "twilio_per_second: {} is outside 1..=100",
                self.twilio_per_second
            ));
        }
        if self.max_retries > 10 {
            return Err(format!(
                "max_retries: {} is outside 0..=10",
                self.max_retries
            ));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs: {} is outside 1..=300",
                self.timeout_secs
            ));
        }
        if self.connect_timeout_secs == 0 || self.connect_timeout_secs > self.timeout_secs {
            return Err(format!(
                "connect_timeout_secs: {} is outside 1..=timeout_secs ({})",
                self.connect_timeout_secs, self.timeout_secs
            ));
        }
        Ok(())
    }
}

/// A provider client shared with the blocking send thread.
pub type SharedClient = Arc<dyn SendClient + Send + Sync>;

/// The send clients by provider; a provider without one cannot send (fail closed: its
/// messages fail, they never go through the other provider).
#[derive(Clone, Default)]
pub struct SendClients {
    /// Quo (OpenPhone).
    pub openphone: Option<SharedClient>,
    /// Twilio.
    pub twilio: Option<SharedClient>,
}

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
            out.push(Provider::Openphone.as_str());
        }
        if self.twilio.is_some() {
            out.push(Provider::Twilio.as_str());
        }
        out
    }

    /// Whether no provider can send.
    pub fn is_empty(&self) -> bool {
        self.openphone.is_none() && self.twilio.is_none()
    }
}

/// Where a message stands in the effects ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerState {
    /// The attempt is recorded and the provider may have been called; no result yet.
    Attempting,
    /// The attempt has its result (or was refused before any call).
    Done,
}

/// One message's entry in the effects ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The latest attempt's number (1 for the first).
    pub attempt: u32,
    /// Where it stands.
    pub state: LedgerState,
    /// The result, once done.
    #[serde(default)]
    pub status: Option<SendStatus>,
    /// When the entry was written (RFC 3339).
    pub at: String,
    /// The generation of the redelivery window the attempt was made in, if any: a batch
    /// handled again inside the same window does not send again.
    #[serde(default)]
    pub window: Option<u64>,
}

/// How a provider is reached: its client and its limiter.
#[derive(Clone)]
struct Route {
    client: SharedClient,
    limiter: Arc<Limiter>,
}

/// What the blocking half of a send brings back.
struct Delivery {
    outcome: Result<Outcome, BuildError>,
    tries: u32,
}

/// The sender consumer.
pub struct Sender {
    log: Arc<dyn Log>,
    state: Arc<dyn StateStore>,
    outbound: OutboundStore,
    ledger: Arc<dyn KvTree>,
    redelivery: Redelivery,
    window: Option<RedeliveryWindow>,
    compliance: ComplianceConfig,
    lines: Vec<LineConfig>,
    openphone: Option<Route>,
    twilio: Option<Route>,
    alerts: Arc<dyn AlertSink + Send + Sync>,
    metrics: Metrics,
    retry: RetryPolicy,
    connect_retries: u32,
    clock: Clock,
    /// Line blocks this sender appended, by line id, with the record's seq: they count until
    /// the outbound projection has a change at least as new.
    blocked_here: HashMap<String, u64>,
    /// Opt-outs this sender appended, by number, with the record's seq: they count until
    /// the compliance projection has an entry at least as new.
    opted_out_here: HashMap<String, u64>,
    /// Records of a finished call that could not be appended (the log failed): appended
    /// when the batch is retried, instead of declaring the attempt unknown.
    unrecorded: HashMap<MessageId, Vec<OutboundOrOptOut>>,
}

/// A record the sender appends after a call.
#[derive(Clone, Debug)]
enum OutboundOrOptOut {
    Outbound(OutboundRecord),
    OptOut(OptOutChange),
}

impl OutboundOrOptOut {
    fn to_verified(&self) -> Verified {
        match self {
            OutboundOrOptOut::Outbound(r) => r.to_verified(Micros::now()),
            OutboundOrOptOut::OptOut(c) => Verified::new(
                Micros::now(),
                Source::Internal,
                ADMIN_ROUTE.to_owned(),
                vec![("content-type".into(), "application/json".into())],
                // A struct of strings: serde_json cannot fail on it.
                serde_json::to_vec(c).unwrap_or_default(),
                Verification::Internal,
            ),
        }
    }
}

fn transient(e: impl std::fmt::Display) -> BatchError {
    BatchError::Transient(e.to_string())
}

impl Sender {
    /// A sender over `log` (and its state store), reading messages from `outbound`, checking
    /// `compliance` and `lines` at the last moment, sending through `clients` at the rates
    /// of `config`, alerting through `alerts`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        log: Arc<dyn Log>,
        outbound: OutboundStore,
        compliance: ComplianceConfig,
        lines: Vec<LineConfig>,
        clients: SendClients,
        config: &SenderConfig,
        alerts: Arc<dyn AlertSink + Send + Sync>,
        metrics: Metrics,
    ) -> Result<Sender, StateError> {
        let state = log.state();
        let ledger = state.tree(NAME, "ledger")?;
        let redelivery = Redelivery::new(state.tree(NAME, "redeliver")?);
        let window = redelivery.current()?;
        let route = |client: Option<SharedClient>, rate: Rate| {
            client.map(|client| Route {
                client,
                limiter: Arc::new(Limiter::new(rate)),
            })
        };
        Ok(Sender {
            log,
            state,
            outbound,
            ledger,
            redelivery,
            window,
            compliance,
            lines,
            openphone: route(
                clients.openphone,
                Rate {
                    per_second: config.quo_per_second,
                    burst: config.quo_per_second,
                },
            ),
            twilio: route(
                clients.twilio,
                Rate {
                    per_second: config.twilio_per_second,
                    burst: 1,
                },
            ),
            alerts,
            metrics,
            retry: RetryPolicy {
                max_retries: config.max_retries,
                ..RetryPolicy::default()
            },
            connect_retries: 3,
            clock: Clock::system(),
            blocked_here: HashMap::new(),
            opted_out_here: HashMap::new(),
            unrecorded: HashMap::new(),
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Sender {
        self.clock = clock;
        self
    }

    /// Replaces the 429 backoff policy; its backoff also paces the retries of a call that
    /// could not connect (tests use a fast one).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Sender {
        self.retry = retry;
        self
    }

    /// A message's ledger entry.
    pub fn ledger_entry(&self, id: &MessageId) -> Result<Option<LedgerEntry>, StateError> {
        self.ledger
            .get(id.as_str().as_bytes())?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                    tree: "sender/ledger".into(),
                    message: e.to_string(),
                })
            })
            .transpose()
    }

    fn put_ledger(
        &self,
        id: &MessageId,
        attempt: u32,
        state: LedgerState,
        status: Option<SendStatus>,
        window: Option<u64>,
    ) -> Result<(), StateError> {
        let entry = LedgerEntry {
            attempt,
            state,
            status,
            at: self.clock.now().to_rfc3339(),
            window,
        };
        self.ledger
            .insert(id.as_str().as_bytes(), &crate::state::to_json(&entry)?)
    }

    fn now_rfc3339(&self) -> String {
        self.clock.now().to_rfc3339()
    }

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
    async fn finish_attempt(
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

    /// Handles one `allow` decision at `seq`.
    async fn on_allow(&mut self, seq: Seq, decision: &GateDecision) -> Result<(), BatchError> {
        let id = &decision.id;
        let entry = self.ledger_entry(id)?;
        if let Some(e) = entry
            .as_ref()
            .filter(|e| e.state == LedgerState::Attempting)
        {
            return self.settle_interrupted(id, e.attempt).await;
        }
        let Some(msg) = self.outbound.message(id)? else {
            tracing::warn!(seq = seq.0, id = %id, "allow decision for a message the projection does not know; not sent");
            return Ok(());
        };
        if !msg.approved {
            return Ok(());
        }
        let done_before = entry.is_some() || msg.attempts > 0;
        let window = self
            .window
            .filter(|w| w.contains(seq))
            .map(|w| w.generation);
        if done_before {
            let sent_in_this_window =
                window.is_some() && entry.as_ref().and_then(|e| e.window) == window;
            if window.is_none() || sent_in_this_window {
                return Ok(());
            }
        }
        let attempt = msg.attempts.max(entry.map_or(0, |e| e.attempt)) + 1;
        self.send(&msg, attempt, done_before, window).await
    }

    /// The ledger says `attempting(n)`: the process stopped (or the log failed) between the
    /// attempt and its result. Never calls the provider.
    async fn settle_interrupted(&mut self, id: &MessageId, attempt: u32) -> Result<(), BatchError> {
        let msg = self.outbound.message(id)?;
        let provider = msg
            .as_ref()
            .and_then(|m| m.provider)
            .map_or("unknown", Provider::as_str);
        if let Some(records) = self.unrecorded.get(id).cloned() {
            return self.finish_attempt(id, attempt, provider, records).await;
        }
        if let Some(m) = msg {
            if m.attempts >= attempt && m.status.is_final() {
                // The result was recorded; only the ledger's `done` was lost.
                let status = match m.status {
                    crate::consumers::outbound::Status::Sent => Some(SendStatus::Sent),
                    crate::consumers::outbound::Status::Failed => Some(SendStatus::Failed),
                    crate::consumers::outbound::Status::Refused => Some(SendStatus::Refused),
                    _ => Some(SendStatus::Unknown),
                };
                let window = self.ledger_entry(id)?.and_then(|e| e.window);
                self.put_ledger(id, attempt, LedgerState::Done, status, window)?;
                return Ok(());
            }
        }
        let error = format!(
            "hooklog stopped after attempt {attempt} was recorded and before its result: the \
             provider may or may not have accepted the message"
        );
        self.alerts.raise(Alert {
            key: format!("send:crashed:{id}"),
            severity: Severity::Critical,
            title: format!("message {id} may or may not have been sent"),
            reason: error.clone(),
            next_step: "check the provider's message log for it before resending; it is \
                        marked unknown and is not sent again by itself"
                .into(),
        });
        let result = SendResult {
            id: id.clone(),
            attempt,
            status: SendStatus::Unknown,
            outcome: "crashed".into(),
            provider_id: None,
            code: None,
            error: Some(error),
            reasons: Vec::new(),
            tries: 0,
            at: self.now_rfc3339(),
        };
        self.finish_attempt(
            id,
            attempt,
            provider,
            vec![OutboundOrOptOut::Outbound(OutboundRecord::Result(result))],
        )
        .await
    }

    /// Why the message may not go now, if anything (fail closed).
    fn last_moment_reasons(&self, msg: &Message) -> Vec<Reason> {
        let mut reasons = Vec::new();
        let Some(to) = msg.to_e164.as_deref() else {
            return vec![Reason::new(
                ReasonCode::RecipientInvalid,
                "the decision named no E.164 recipient",
            )];
        };
        let here = crate::phone::normalize_e164(to).and_then(|n| self.opted_out_here.get(&n));
        match compliance::entry(self.state.as_ref(), to) {
            Ok(e) => {
                let projected = e.as_ref().map_or(0, |e| e.seq);
                let suppressed = e.as_ref().is_some_and(|e| e.is_suppressed());
                if suppressed || here.is_some_and(|&s| s > projected) {
                    reasons.push(Reason::new(
                        ReasonCode::RecipientOptedOut,
                        format!("{to} opted out after the decision"),
                    ));
                }
            }
            Err(e) => reasons.push(Reason::new(
                ReasonCode::SuppressionUnavailable,
                format!("the suppression list cannot be read: {e}"),
            )),
        }
        if self.compliance.kill_switch {
            reasons.push(Reason::new(
                ReasonCode::KillSwitch,
                "the kill switch is on: nothing is sent",
            ));
        }
        match (msg.line_id.as_deref(), msg.provider) {
            (Some(line_id), Some(provider)) => {
                if let Err(r) = gates::line::check(&self.lines, line_id, provider) {
                    reasons.extend(r);
                }
                match self.outbound.line(line_id) {
                    Ok(state) => {
                        let projected = state.as_ref().map_or(0, |s| s.seq);
                        let here = self.blocked_here.get(line_id).copied();
                        if let Some(why) = state.as_ref().and_then(|s| s.blocked()) {
                            reasons.push(Reason::new(
                                ReasonCode::LineBlocked,
                                format!("line `{line_id}` is blocked: {why}"),
                            ));
                        } else if here.is_some_and(|s| s > projected) {
                            reasons.push(Reason::new(
                                ReasonCode::LineBlocked,
                                format!("line `{line_id}` was blocked by the provider"),
                            ));
                        }
                    }
                    Err(e) => reasons.push(Reason::new(
                        ReasonCode::LineBlocked,
                        format!("the state of line `{line_id}` cannot be read: {e}"),
                    )),
                }
            }
            _ => reasons.push(Reason::new(
                ReasonCode::LineUnknown,
                "the decision resolved no line or provider",
            )),
        }
        match quiet_hours::check(&self.compliance, to, self.clock.now()) {
            Ok(c) if c.open => {}
            Ok(c) => reasons.push(Reason::new(
                ReasonCode::QuietHours,
                format!(
                    "outside the allowed hours for {to} ({}) now{}",
                    c.region,
                    c.opens_at
                        .map(|t| format!("; the window opens at {}", t.to_rfc3339()))
                        .unwrap_or_default()
                ),
            )),
            Err(e) => reasons.push(Reason::new(
                ReasonCode::AreaCodeUnknown,
                format!("the local time of {to} is unknown: {e}"),
            )),
        }
        reasons
    }

    fn result(&self, msg: &Message, attempt: u32, status: SendStatus, outcome: &str) -> SendResult {
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
    async fn send(
        &mut self,
        msg: &Message,
        attempt: u32,
        redelivery: bool,
        window: Option<u64>,
    ) -> Result<(), BatchError> {
        let provider_name = msg.provider.map_or("unknown", Provider::as_str);
        let reasons = self.last_moment_reasons(msg);
        if !reasons.is_empty() {
            tracing::info!(id = %msg.id, ?reasons, "refused at the last moment; not sent");
            let mut r = self.result(msg, attempt, SendStatus::Refused, "refused");
            r.reasons = reasons;
            return self
                .finish_attempt(
                    &msg.id,
                    attempt,
                    provider_name,
                    vec![OutboundOrOptOut::Outbound(OutboundRecord::Result(r))],
                )
                .await;
        }
        // The checks above guarantee a provider, a line and a recipient.
        let (Some(provider), Some(line_id), Some(to)) =
            (msg.provider, msg.line_id.clone(), msg.to_e164.clone())
        else {
            return Ok(());
        };
        let route = match provider {
            Provider::Openphone => self.openphone.clone(),
            Provider::Twilio => self.twilio.clone(),
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
        let record = OutboundRecord::Attempt(SendAttempt {
            id: msg.id.clone(),
            attempt,
            provider,
            from: from.clone(),
            to: to.clone(),
            redelivery,
            at: self.now_rfc3339(),
        });
        if let Err(e) = self.log.append(record.to_verified(Micros::now())).await {
            // Nothing was called: undo the guard so the retried batch sends normally.
            self.ledger.remove(msg.id.as_str().as_bytes())?;
            return Err(transient(e));
        }

        let outbound = OutboundMessage {
            from,
            to: to.clone(),
            content: msg.content.clone(),
        };
        let (alerts, retry, connect_retries) = (
            self.alerts.clone(),
            self.retry.clone(),
            self.connect_retries,
        );
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
        provider: Provider,
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

impl Consumer for Sender {
    fn name(&self) -> &'static str {
        NAME
    }

    fn upstreams(&self) -> &'static [&'static str] {
        &[crate::consumers::outbound::store::CONSUMER]
    }

    fn rewind_mode(&self) -> RewindMode {
        RewindMode::Replay
    }

    /// The ledger is never cleared: it is what keeps a rewind from sending again.
    fn reset(&mut self) -> Result<(), BatchError> {
        Ok(())
    }

    fn has_effects(&self) -> bool {
        true
    }

    fn redeliver(&mut self, after: Seq, through: Seq) -> Result<(), BatchError> {
        if let Some(w) = self.redelivery.open(after, through)? {
            self.window = Some(w);
            tracing::info!(
                after = w.after,
                through = w.through,
                "sender: allowed messages in the window will be sent again"
            );
        }
        Ok(())
    }

    /// The attempts and results in `batch`, noted in the ledger: an attempt with no result
    /// becomes `attempting(n)` (the allow decision then ends it as `unknown`, without a
    /// call), a result `done`. Never behind what the ledger already has: an older attempt
    /// number, or `attempting` over `done` for the same attempt, is ignored.
    async fn learn_effects(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        for event in batch.events() {
            let (id, attempt, state, status) = match OutboundRecord::decode(event) {
                Some(Ok(OutboundRecord::Attempt(a))) => {
                    (a.id, a.attempt, LedgerState::Attempting, None)
                }
                Some(Ok(OutboundRecord::Result(r))) => {
                    (r.id, r.attempt, LedgerState::Done, Some(r.status))
                }
                // An unreadable record shows nothing; the outbound consumer dead-letters it.
                _ => continue,
            };
            let known = self.ledger_entry(&id)?;
            let newer = match &known {
                None => true,
                Some(e) => {
                    e.attempt < attempt
                        || (e.attempt == attempt
                            && e.state == LedgerState::Attempting
                            && state == LedgerState::Done)
                }
            };
            if newer {
                // The same attempt keeps its redelivery window, as `finish_attempt` does: a
                // batch handled again inside the window must not send again.
                let window = known
                    .filter(|e| e.attempt == attempt)
                    .and_then(|e| e.window);
                self.put_ledger(&id, attempt, state, status, window)?;
            }
        }
        // Durable now: once the cursor has passed these records, a restart does not learn
        // them again.
        self.ledger.flush()?;
        Ok(())
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        for event in batch.events() {
            let decision = match OutboundRecord::decode(event) {
                Some(Ok(OutboundRecord::Decision(d))) => d,
                Some(Err(e)) => {
                    // The outbound consumer dead-letters it; nothing is sent for it.
                    tracing::warn!(seq = event.seq.0, error = %e, "unreadable outbound record; nothing sent for it");
                    continue;
                }
                _ => continue,
            };
            if decision.verdict == Verdict::Allow {
                self.on_allow(event.seq, &decision).await?;
            }
        }
        if self
            .redelivery
            .finish(self.window, batch.events(), self.log.as_ref(), NAME)?
            .is_some()
        {
            self.window = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Instant;

    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::alerts::Alerter;
    use crate::consumers::compliance::Compliance;
    use crate::consumers::dedup::Dedup;
    use crate::consumers::outbound::records::{ATTEMPT_ROUTE, LINE_ROUTE};
    use crate::consumers::outbound::{apply, Change, MessageRequest};
    use crate::event::Event;
    use crate::gates::TenDlc;
    use crate::log::sled::{SledLog, SledOptions};

    /// A provider that answers from a script (then `default`) and notes every call, with
    /// the route of the log's last record at the moment of the call.
    struct Fake {
        provider: &'static str,
        script: Mutex<VecDeque<Outcome>>,
        default: Mutex<Outcome>,
        calls: Mutex<Vec<(Instant, OutboundMessage, String)>>,
        log: Arc<dyn Log>,
    }

    impl Fake {
        fn new(provider: &'static str, log: Arc<dyn Log>) -> Arc<Fake> {
            Arc::new(Fake {
                provider,
                script: Mutex::new(VecDeque::new()),
                default: Mutex::new(Outcome::Sent {
                    provider_id: "AC1".into(),
                }),
                calls: Mutex::new(Vec::new()),
                log,
            })
        }
        fn answer(&self, outcomes: impl IntoIterator<Item = Outcome>) {
            self.script.lock().unwrap().extend(outcomes);
        }
        fn always(&self, outcome: Outcome) {
            *self.default.lock().unwrap() = outcome;
        }
        fn calls(&self) -> usize {
            self.calls.lock().unwrap().len()
        }
    }

    impl SendClient for Fake {
        fn provider(&self) -> &'static str {
            self.provider
        }
        fn limiter_key(&self, message: &OutboundMessage) -> String {
            format!("{}:from:{}", self.provider, message.from)
        }
        fn send(&self, message: &OutboundMessage) -> Result<Outcome, BuildError> {
            let last = self.log.stats().unwrap().last_seq;
            let route = self.log.get(Seq(last)).unwrap().unwrap().route;
            self.calls
                .lock()
                .unwrap()
                .push((Instant::now(), message.clone(), route));
            let scripted = self.script.lock().unwrap().pop_front();
            Ok(scripted.unwrap_or_else(|| self.default.lock().unwrap().clone()))
        }
    }

    #[derive(Default)]
    struct Alerts(Mutex<Vec<Alert>>);

    impl AlertSink for Alerts {
        fn raise(&self, alert: Alert) {
            self.0.lock().unwrap().push(alert);
        }
    }

    impl Alerts {
        fn taken(&self) -> Vec<Alert> {
            self.0.lock().unwrap().clone()
        }
    }

    struct World {
        _dir: tempfile::TempDir,
        log: Arc<dyn Log>,
        outbound: OutboundStore,
        quo: Arc<Fake>,
        twilio: Arc<Fake>,
        alerts: Arc<Alerts>,
        metrics: Metrics,
    }

    /// A New York recipient.
    const TO: &str = "+12125550100";
    const QUO_LINE: &str = "quo-main";
    const TWILIO_LINE: &str = "tw-main";

    /// Monday 30 November 2026, 12:00 in New York.
    fn noon_in_new_york() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 0).unwrap()
    }

    fn lines() -> Vec<LineConfig> {
        let line = |id: &str, number: &str, provider| LineConfig {
            id: id.into(),
            number: number.into(),
            provider,
            ten_dlc: TenDlc::Approved,
            business_name: "Acme".into(),
        };
        vec![
            line(QUO_LINE, "+12125550199", Provider::Openphone),
            line(TWILIO_LINE, "+12125550198", Provider::Twilio),
        ]
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> =
            Arc::new(SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap());
        let outbound = OutboundStore::open(log.state().as_ref()).unwrap();
        World {
            quo: Fake::new("openphone", log.clone()),
            twilio: Fake::new("twilio", log.clone()),
            _dir: dir,
            log,
            outbound,
            alerts: Arc::new(Alerts::default()),
            metrics: Metrics::new(),
        }
    }

    fn clients(w: &World) -> SendClients {
        SendClients {
            openphone: Some(w.quo.clone()),
            twilio: Some(w.twilio.clone()),
        }
    }

    fn sender_with(w: &World, compliance: ComplianceConfig, clients: SendClients) -> Sender {
        Sender::new(
            w.log.clone(),
            w.outbound.clone(),
            compliance,
            lines(),
            clients,
            &SenderConfig::default(),
            w.alerts.clone(),
            w.metrics.clone(),
        )
        .unwrap()
        .with_clock(Clock::starting_at(noon_in_new_york()))
        .with_retry_policy(RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        })
    }

    fn sender(w: &World) -> Sender {
        sender_with(w, ComplianceConfig::default(), clients(w))
    }

    async fn append(w: &World, record: OutboundRecord) -> u64 {
        w.log
            .append(record.to_verified(Micros::now()))
            .await
            .unwrap()
            .0
    }

    /// A request from `line` to `to` and its `allow` decision, appended and projected as the
    /// outbound consumer would. Returns the id and the two records.
    async fn allowed(w: &World, line: &str, to: &str) -> (MessageId, Vec<Event>) {
        let (provider, number) = match line {
            QUO_LINE => (Provider::Openphone, "+12125550199"),
            _ => (Provider::Twilio, "+12125550198"),
        };
        let request = MessageRequest {
            id: MessageId::generate(Micros::now()),
            idempotency_key: None,
            from: line.into(),
            provider: None,
            to: to.into(),
            content: "Hi, this is Acme. Reply STOP to opt out.".into(),
            requested_at: "2026-11-30T17:00:00Z".into(),
        };
        let rseq = append(w, OutboundRecord::Request(request.clone())).await;
        let decision = GateDecision {
            id: request.id.clone(),
            verdict: Verdict::Allow,
            reasons: vec![],
            hold_until: None,
            line_id: Some(line.into()),
            from_number: Some(number.into()),
            provider: Some(provider),
            to: Some(to.into()),
            evaluation: 1,
            decided_at: "2026-11-30T17:00:01Z".into(),
        };
        let dseq = append(w, OutboundRecord::Decision(decision.clone())).await;
        let mut m = Message::requested(rseq, &request);
        assert!(apply(&mut m, dseq, Change::Decision(&decision)));
        w.outbound.put_message(&m).unwrap();
        let events = vec![
            w.log.get(Seq(rseq)).unwrap().unwrap(),
            w.log.get(Seq(dseq)).unwrap().unwrap(),
        ];
        (request.id, events)
    }

    /// Projects every attempt and result in the log into the messages, as `outbound` does.
    fn project(w: &World) {
        for e in w.log.read(Seq(0), 10_000).unwrap() {
            let Some(Ok(r)) = OutboundRecord::decode(&e) else {
                continue;
            };
            let (id, change) = match &r {
                OutboundRecord::Attempt(a) => (a.id.clone(), Change::Attempt(a)),
                OutboundRecord::Result(r) => (r.id.clone(), Change::Result(r)),
                OutboundRecord::Line(l) => {
                    w.outbound.put_line(e.seq.0, l).unwrap();
                    continue;
                }
                _ => continue,
            };
            let mut m = w.outbound.message(&id).unwrap().unwrap();
            apply(&mut m, e.seq.0, change);
            w.outbound.put_message(&m).unwrap();
        }
    }

    /// Runs dedup and compliance over the whole log, as the daemon would.
    async fn project_compliance(w: &World) {
        let store = w.log.state();
        let events = w.log.read(Seq(0), 10_000).unwrap();
        let first = Seq(w.log.cursor(compliance::NAME).unwrap().0);
        let events: Vec<Event> = events.into_iter().filter(|e| e.seq > first).collect();
        let mut dedup = Dedup::new(store.as_ref(), 72).unwrap();
        dedup.handle(&events).await.unwrap();
        let mut c = Compliance::new(store.as_ref(), Alerter::disabled()).unwrap();
        c.handle(&events).await.unwrap();
        if let Some(last) = events.last() {
            w.log.store_cursor(compliance::NAME, last.seq).unwrap();
        }
    }

    /// Every attempt and result for `id`, in log order, with its seq.
    fn history(w: &World, id: &MessageId) -> Vec<(u64, OutboundRecord)> {
        w.log
            .read(Seq(0), 10_000)
            .unwrap()
            .into_iter()
            .filter_map(|e| match OutboundRecord::decode(&e) {
                Some(Ok(r)) => {
                    let of = match &r {
                        OutboundRecord::Attempt(a) => Some(&a.id),
                        OutboundRecord::Result(x) => Some(&x.id),
                        _ => None,
                    };
                    (of == Some(id)).then_some((e.seq.0, r))
                }
                _ => None,
            })
            .collect()
    }

    fn attempts(h: &[(u64, OutboundRecord)]) -> Vec<SendAttempt> {
        h.iter()
            .filter_map(|(_, r)| match r {
                OutboundRecord::Attempt(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    fn results(h: &[(u64, OutboundRecord)]) -> Vec<SendResult> {
        h.iter()
            .filter_map(|(_, r)| match r {
                OutboundRecord::Result(x) => Some(x.clone()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn an_allowed_message_is_sent_once_with_its_attempt_durable_before_the_call_and_its_result_after(
    ) {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();

        assert_eq!(w.quo.calls(), 1);
        assert_eq!(w.twilio.calls(), 0, "never another provider");
        let (_, sent, route_at_call) = w.quo.calls.lock().unwrap()[0].clone();
        assert_eq!((sent.from.as_str(), sent.to.as_str()), ("+12125550199", TO));
        assert_eq!(
            route_at_call, ATTEMPT_ROUTE,
            "the attempt was in the log first"
        );
        let h = history(&w, &id);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(matches!(&h[0].1, OutboundRecord::Attempt(a) if a.attempt == 1 && !a.redelivery));
        assert!(h[0].0 < h[1].0);
        let r = &results(&h)[0];
        assert_eq!(
            (r.attempt, r.status, r.provider_id.as_deref(), r.tries),
            (1, SendStatus::Sent, Some("AC1"), 1)
        );
        let entry = s.ledger_entry(&id).unwrap().unwrap();
        assert_eq!(
            (entry.attempt, entry.state, entry.status),
            (1, LedgerState::Done, Some(SendStatus::Sent))
        );
        assert_eq!(
            w.metrics
                .sends
                .with_label_values(&["openphone", "sent"])
                .get(),
            1
        );
        project(&w);
        assert_eq!(
            w.outbound.message(&id).unwrap().unwrap().status,
            crate::consumers::outbound::Status::Sent
        );
    }

    #[tokio::test]
    async fn handling_the_same_batch_again_or_after_a_restart_sends_nothing() {
        let w = world();
        let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        // The message projection is deliberately not updated: the ledger alone must hold.
        s.handle(&events).await.unwrap();
        let mut restarted = sender(&w);
        restarted.handle(&events).await.unwrap();
        assert_eq!(w.twilio.calls(), 1);
        assert_eq!(history(&w, &id).len(), 2);
    }

    #[tokio::test]
    async fn a_redelivery_window_sends_again_as_the_next_attempt_and_closes_behind_the_cursor() {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        project(&w);
        s.redeliver(Seq(0), events[1].seq).unwrap();
        // The window is durable: a restart between the rewind and the replay keeps it.
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 2);
        let h = history(&w, &id);
        let a = attempts(&h);
        assert_eq!(
            a.iter()
                .map(|a| (a.attempt, a.redelivery))
                .collect::<Vec<_>>(),
            vec![(1, false), (2, true)]
        );
        assert_eq!(results(&h)[1].attempt, 2);
        // The cursor passed the window's end: it is closed.
        s.handle(&events).await.unwrap();
        let mut restarted = sender(&w);
        restarted.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 2);
    }

    #[tokio::test]
    async fn a_batch_handled_twice_inside_one_redelivery_window_sends_once_more_not_twice() {
        let w = world();
        let (_id, events) = allowed(&w, QUO_LINE, TO).await;
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        project(&w);
        // The window reaches past this batch: it stays open while the batch is retried (a
        // transient failure later in it, a restart before the cursor moved).
        s.redeliver(Seq(0), Seq(events[1].seq.0 + 100)).unwrap();
        s.handle(&events).await.unwrap();
        project(&w);
        s.handle(&events).await.unwrap();
        let mut restarted = sender(&w);
        restarted.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 2, "the first send and one redelivery");
        // A second --redeliver is a new window: one more.
        restarted
            .redeliver(Seq(0), Seq(events[1].seq.0 + 100))
            .unwrap();
        restarted.handle(&events).await.unwrap();
        restarted.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 3);
    }

    #[tokio::test]
    async fn an_attempt_without_a_result_becomes_unknown_with_a_critical_alert_and_no_call() {
        let w = world();
        let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
        let s = sender(&w);
        // The daemon died after the ledger entry and the attempt record, during the call.
        s.put_ledger(&id, 1, LedgerState::Attempting, None, None)
            .unwrap();
        append(
            &w,
            OutboundRecord::Attempt(SendAttempt {
                id: id.clone(),
                attempt: 1,
                provider: Provider::Twilio,
                from: "+12125550198".into(),
                to: TO.into(),
                redelivery: false,
                at: "2026-11-30T17:00:02Z".into(),
            }),
        )
        .await;
        project(&w);
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        assert_eq!(w.twilio.calls(), 0, "never called again");
        let r = results(&history(&w, &id));
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].attempt, r[0].status, r[0].outcome.as_str()),
            (1, SendStatus::Unknown, "crashed")
        );
        let alerts = w.alerts.taken();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].severity, Severity::Critical);
        assert!(alerts[0].title.contains(id.as_str()), "{:?}", alerts[0]);
        assert_eq!(
            s.ledger_entry(&id).unwrap().unwrap().state,
            LedgerState::Done
        );
        project(&w);
        assert_eq!(
            w.outbound.message(&id).unwrap().unwrap().status,
            crate::consumers::outbound::Status::Unknown
        );
        // And it stays that way.
        s.handle(&events).await.unwrap();
        assert_eq!((w.twilio.calls(), results(&history(&w, &id)).len()), (0, 1));
    }

    #[tokio::test]
    async fn a_result_recorded_before_the_crash_closes_the_ledger_without_a_second_result() {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        project(&w);
        // The daemon stopped after the result was flushed, before the ledger said `done`.
        s.put_ledger(&id, 1, LedgerState::Attempting, None, None)
            .unwrap();
        let mut restarted = sender(&w);
        restarted.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 1);
        assert_eq!(results(&history(&w, &id)).len(), 1, "no redundant result");
        assert!(w.alerts.taken().is_empty(), "nothing to check: it was sent");
        let entry = restarted.ledger_entry(&id).unwrap().unwrap();
        assert_eq!(
            (entry.state, entry.status),
            (LedgerState::Done, Some(SendStatus::Sent))
        );
    }

    /// The log, refusing every append once `allowed` reaches 0 (a full disk).
    struct Flaky {
        inner: Arc<dyn Log>,
        allowed: Mutex<Option<usize>>,
    }

    impl Flaky {
        fn allow(&self, n: Option<usize>) {
            *self.allowed.lock().unwrap() = n;
        }
    }

    impl Log for Flaky {
        fn append(&self, event: Verified) -> crate::log::AppendTicket {
            let mut allowed = self.allowed.lock().unwrap();
            match *allowed {
                Some(0) => crate::log::AppendTicket::failed(crate::log::LogError::Storage(
                    "disk full".into(),
                )),
                Some(n) => {
                    *allowed = Some(n - 1);
                    self.inner.append(event)
                }
                None => self.inner.append(event),
            }
        }
        fn read(&self, after: Seq, limit: usize) -> Result<Vec<Event>, crate::log::LogError> {
            self.inner.read(after, limit)
        }
        fn get(&self, seq: Seq) -> Result<Option<Event>, crate::log::LogError> {
            self.inner.get(seq)
        }
        fn stats(&self) -> Result<crate::log::LogStats, crate::log::LogError> {
            self.inner.stats()
        }
        fn cursor(&self, consumer: &str) -> Result<Seq, crate::log::LogError> {
            self.inner.cursor(consumer)
        }
        fn store_cursor(&self, consumer: &str, seq: Seq) -> Result<(), crate::log::LogError> {
            self.inner.store_cursor(consumer, seq)
        }
        fn cursors(&self) -> Result<Vec<(String, Seq)>, crate::log::LogError> {
            self.inner.cursors()
        }
        fn watch_last_seq(&self) -> tokio::sync::watch::Receiver<Seq> {
            self.inner.watch_last_seq()
        }
        fn is_writable(&self) -> bool {
            self.inner.is_writable()
        }
        fn close(&self) -> Result<(), crate::log::LogError> {
            self.inner.close()
        }
        fn state(&self) -> Arc<dyn StateStore> {
            self.inner.state()
        }
    }

    fn flaky_sender(w: &World) -> (Sender, Arc<Flaky>) {
        let flaky = Arc::new(Flaky {
            inner: w.log.clone(),
            allowed: Mutex::new(None),
        });
        let s = Sender::new(
            flaky.clone(),
            w.outbound.clone(),
            ComplianceConfig::default(),
            lines(),
            clients(w),
            &SenderConfig::default(),
            w.alerts.clone(),
            w.metrics.clone(),
        )
        .unwrap()
        .with_clock(Clock::starting_at(noon_in_new_york()));
        (s, flaky)
    }

    #[tokio::test]
    async fn an_attempt_the_log_refused_calls_nothing_and_the_retried_batch_sends_once() {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let (mut s, flaky) = flaky_sender(&w);
        flaky.allow(Some(0));
        let err = s.handle(&events).await.unwrap_err();
        assert!(matches!(err, BatchError::Transient(_)), "{err:?}");
        assert_eq!(w.quo.calls(), 0, "never called without its attempt record");
        assert_eq!(s.ledger_entry(&id).unwrap(), None, "the guard was undone");
        flaky.allow(None);
        s.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 1);
        let r = results(&history(&w, &id));
        assert_eq!((r.len(), r[0].status), (1, SendStatus::Sent));
    }

    #[tokio::test]
    async fn a_result_the_log_refused_is_appended_by_the_retry_without_a_second_call() {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let (mut s, flaky) = flaky_sender(&w);
        // The attempt record goes in; the result does not.
        flaky.allow(Some(1));
        assert!(s.handle(&events).await.is_err());
        assert_eq!(w.quo.calls(), 1);
        assert!(results(&history(&w, &id)).is_empty());
        assert_eq!(
            s.ledger_entry(&id).unwrap().unwrap().state,
            LedgerState::Attempting
        );
        flaky.allow(None);
        s.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 1, "never called twice");
        let r = results(&history(&w, &id));
        assert_eq!(
            (r.len(), r[0].status, r[0].provider_id.as_deref()),
            (1, SendStatus::Sent, Some("AC1")),
            "the real result, not `unknown`"
        );
        assert!(w.alerts.taken().is_empty());
    }

    /// Another hooklog on the same log with state of its own (a replica on a shared
    /// JetStream stream), its message projection at the allow decision of `id`, as `w`'s is.
    /// Its appends go through a [`Flaky`], to stop it between an attempt and its result.
    fn other_replica(w: &World, id: &MessageId) -> (Sender, Arc<Flaky>) {
        let replica: Arc<dyn Log> = crate::consumers::testutil::OtherReplica::on(&w.log);
        let outbound = OutboundStore::open(replica.state().as_ref()).unwrap();
        outbound
            .put_message(&w.outbound.message(id).unwrap().unwrap())
            .unwrap();
        let flaky = Arc::new(Flaky {
            inner: replica,
            allowed: Mutex::new(None),
        });
        let s = Sender::new(
            flaky.clone(),
            outbound,
            ComplianceConfig::default(),
            lines(),
            clients(w),
            &SenderConfig::default(),
            Arc::new(Alerts::default()),
            Metrics::new(),
        )
        .unwrap()
        .with_clock(Clock::starting_at(noon_in_new_york()));
        (s, flaky)
    }

    /// Runs `s` under the driver, as the daemon starts it (the learning pass, then
    /// batches), from a cursor at `from` with the outbound projection at `through`, until its
    /// cursor reaches `through`.
    async fn run_from(w: &World, s: Sender, from: Seq, through: Seq) {
        w.log.store_cursor(NAME, from).unwrap();
        w.log
            .store_cursor(crate::consumers::outbound::store::CONSUMER, through)
            .unwrap();
        crate::consumers::testutil::drive_until(&w.log, s, through).await;
    }

    #[tokio::test]
    async fn a_message_another_replica_sent_before_the_fail_over_is_not_sent_again_and_the_ledger_says_done(
    ) {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let (mut other, _) = other_replica(&w, &id);
        other.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 1);

        // This replica takes over with its own, empty ledger; its message projection is at
        // the decision (it has not read the attempt and the result yet).
        run_from(&w, sender(&w), Seq(0), events[1].seq).await;
        assert_eq!(w.quo.calls(), 1, "not sent again");
        assert_eq!(history(&w, &id).len(), 2, "nothing appended");
        assert!(w.alerts.taken().is_empty());
        let entry = sender(&w).ledger_entry(&id).unwrap().unwrap();
        assert_eq!(
            (entry.attempt, entry.state, entry.status),
            (1, LedgerState::Done, Some(SendStatus::Sent))
        );
    }

    #[tokio::test]
    async fn a_message_another_replica_was_sending_when_it_died_ends_unknown_with_a_critical_alert_and_no_call(
    ) {
        let w = world();
        let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
        let (mut other, flaky) = other_replica(&w, &id);
        // Its attempt record goes in and the provider is called; it dies before the result.
        flaky.allow(Some(1));
        assert!(other.handle(&events).await.is_err());
        assert_eq!(w.twilio.calls(), 1);
        assert_eq!(attempts(&history(&w, &id)).len(), 1);
        assert!(results(&history(&w, &id)).is_empty());

        run_from(&w, sender(&w), Seq(0), events[1].seq).await;
        assert_eq!(w.twilio.calls(), 1, "never called again");
        let r = results(&history(&w, &id));
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].attempt, r[0].status, r[0].outcome.as_str()),
            (1, SendStatus::Unknown, "crashed")
        );
        let alerts = w.alerts.taken();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(
            (alerts[0].severity, alerts[0].key.as_str()),
            (Severity::Critical, format!("send:crashed:{id}").as_str())
        );
        let entry = sender(&w).ledger_entry(&id).unwrap().unwrap();
        assert_eq!(
            (entry.state, entry.status),
            (LedgerState::Done, Some(SendStatus::Unknown))
        );

        // Started again from a stale cursor: nothing more is called, appended or alerted.
        run_from(&w, sender(&w), Seq(0), events[1].seq).await;
        assert_eq!(w.twilio.calls(), 1);
        assert_eq!(results(&history(&w, &id)).len(), 1);
        assert_eq!(w.alerts.taken().len(), 1);
    }

    #[tokio::test]
    async fn a_message_another_replica_only_allowed_before_the_fail_over_is_sent_once() {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        run_from(&w, sender(&w), Seq(0), events[1].seq).await;
        assert_eq!(w.quo.calls(), 1);
        let h = history(&w, &id);
        assert_eq!(
            (attempts(&h).len(), results(&h)[0].status),
            (1, SendStatus::Sent)
        );
        // Started again from a stale cursor (a fail-over back): not sent twice.
        run_from(&w, sender(&w), Seq(0), events[1].seq).await;
        assert_eq!(w.quo.calls(), 1);
        assert_eq!(history(&w, &id).len(), 2);
    }

    #[tokio::test]
    async fn learning_never_moves_the_ledger_back_and_keeps_the_window_of_the_same_attempt() {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let mut s = sender(&w);
        // Attempt 2, a redelivery in window 7, was under way when the process stopped.
        s.put_ledger(&id, 2, LedgerState::Attempting, None, Some(7))
            .unwrap();
        let attempt = |n| {
            OutboundRecord::Attempt(SendAttempt {
                id: id.clone(),
                attempt: n,
                provider: Provider::Openphone,
                from: "+12125550199".into(),
                to: TO.into(),
                redelivery: n > 1,
                at: "2026-11-30T17:00:02Z".into(),
            })
        };
        let msg = w.outbound.message(&id).unwrap().unwrap();
        let result = |n, status: SendStatus| {
            OutboundRecord::Result(s.result(&msg, n, status, status.as_str()))
        };
        let records = [
            attempt(1),
            result(1, SendStatus::Sent),
            attempt(2),
            result(2, SendStatus::Failed),
        ];
        for r in records {
            append(&w, r).await;
        }
        let learn = |after: Seq| Arc::new(Batch::new(w.log.read(after, 100).unwrap()));
        let entry = |s: &Sender| {
            let e = s.ledger_entry(&id).unwrap().unwrap();
            (e.attempt, e.state, e.status, e.window)
        };
        s.learn_effects(&learn(events[1].seq)).await.unwrap();
        let done = (2, LedgerState::Done, Some(SendStatus::Failed), Some(7));
        assert_eq!(
            entry(&s),
            done,
            "attempt 1 is older; attempt 2 keeps its window"
        );
        s.learn_effects(&learn(events[1].seq)).await.unwrap();
        assert_eq!(entry(&s), done, "learning again changes nothing");
        let up_to_attempt_2 = Arc::new(Batch::new(w.log.read(events[1].seq, 3).unwrap()));
        s.learn_effects(&up_to_attempt_2).await.unwrap();
        assert_eq!(entry(&s), done, "an attempt never reopens its result");
        let seq = append(&w, attempt(3)).await;
        s.learn_effects(&learn(Seq(seq - 1))).await.unwrap();
        assert_eq!(
            entry(&s),
            (3, LedgerState::Attempting, None, None),
            "a newer attempt"
        );
        assert_eq!(w.quo.calls(), 0, "learning calls nothing");
    }

    #[tokio::test]
    async fn twilio_21610_fails_the_message_and_appends_an_opt_out_that_compliance_projects() {
        let w = world();
        w.twilio.always(Outcome::OptedOut);
        let (first, mut events) = allowed(&w, TWILIO_LINE, TO).await;
        let (second, more) = allowed(&w, QUO_LINE, TO).await;
        events.extend(more);
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();

        let r = &results(&history(&w, &first))[0];
        assert_eq!(
            (r.status, r.outcome.as_str(), r.code.as_deref()),
            (SendStatus::Failed, "opted_out", Some("21610"))
        );
        // The second message, on another line and provider, is refused before any call.
        let r = &results(&history(&w, &second))[0];
        assert_eq!(r.status, SendStatus::Refused);
        assert_eq!(r.reasons[0].code, ReasonCode::RecipientOptedOut);
        assert_eq!((w.twilio.calls(), w.quo.calls()), (1, 0));

        project_compliance(&w).await;
        let e = compliance::entry(w.log.state().as_ref(), TO)
            .unwrap()
            .unwrap();
        assert!(e.is_suppressed());
        assert_eq!(
            (e.provider.as_str(), e.line.as_deref()),
            ("twilio", Some(TWILIO_LINE))
        );
        assert!(e.text.contains("21610"), "{}", e.text);
    }

    #[tokio::test]
    async fn a_quo_a2p_refusal_blocks_the_line_and_later_messages_from_it_are_refused() {
        let w = world();
        w.quo.always(Outcome::LineBlocked {
            reason: "A2P registration not approved".into(),
        });
        let (first, mut events) = allowed(&w, QUO_LINE, TO).await;
        let (second, more) = allowed(&w, QUO_LINE, "+12125550101").await;
        events.extend(more);
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();

        assert_eq!(w.quo.calls(), 1);
        let r = &results(&history(&w, &first))[0];
        assert_eq!(
            (r.status, r.outcome.as_str()),
            (SendStatus::Failed, "line_blocked")
        );
        let r = &results(&history(&w, &second))[0];
        assert_eq!(
            (r.status, r.reasons[0].code),
            (SendStatus::Refused, ReasonCode::LineBlocked)
        );
        let blocks: Vec<LineChange> = w
            .log
            .read(Seq(0), 1000)
            .unwrap()
            .iter()
            .filter(|e| e.route == LINE_ROUTE)
            .filter_map(|e| match OutboundRecord::decode(e) {
                Some(Ok(OutboundRecord::Line(l))) => Some(l),
                _ => None,
            })
            .collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            (blocks[0].line_id.as_str(), blocks[0].state.as_str()),
            (QUO_LINE, "blocked")
        );

        // Once projected, the block holds for a sender that never saw it happen.
        project(&w);
        assert!(w
            .outbound
            .line(QUO_LINE)
            .unwrap()
            .unwrap()
            .blocked()
            .is_some());
        let (third, events) = allowed(&w, QUO_LINE, TO).await;
        let mut restarted = sender(&w);
        restarted.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 1);
        assert_eq!(results(&history(&w, &third))[0].status, SendStatus::Refused);
    }

    #[tokio::test]
    async fn a_recipient_who_opted_out_after_the_decision_is_refused_without_a_call() {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let stop = OptOutChange {
            action: "add".into(),
            number: TO.into(),
            reason: Some("replied STOP".into()),
            provider: None,
            line: None,
        };
        w.log
            .append(OutboundOrOptOut::OptOut(stop).to_verified())
            .await
            .unwrap();
        project_compliance(&w).await;
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 0);
        let r = &results(&history(&w, &id))[0];
        assert_eq!(
            (r.status, r.tries, r.reasons[0].code),
            (SendStatus::Refused, 0, ReasonCode::RecipientOptedOut)
        );
        assert!(
            attempts(&history(&w, &id)).is_empty(),
            "no attempt was made"
        );
        assert_eq!(
            w.metrics
                .sends
                .with_label_values(&["openphone", "refused"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn the_kill_switch_refuses_at_the_last_moment_without_a_call() {
        let w = world();
        let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
        let config = ComplianceConfig {
            kill_switch: true,
            ..ComplianceConfig::default()
        };
        let mut s = sender_with(&w, config, clients(&w));
        s.handle(&events).await.unwrap();
        assert_eq!(w.twilio.calls(), 0);
        let r = &results(&history(&w, &id))[0];
        assert_eq!(
            (r.status, r.reasons[0].code),
            (SendStatus::Refused, ReasonCode::KillSwitch)
        );
    }

    #[tokio::test]
    async fn quiet_hours_closed_at_the_last_moment_refuse_without_a_call() {
        let w = world();
        let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
        // 03:00 in New York.
        let night = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
        let mut s = sender(&w).with_clock(Clock::starting_at(night));
        s.handle(&events).await.unwrap();
        assert_eq!(w.twilio.calls(), 0);
        let r = &results(&history(&w, &id))[0];
        assert_eq!(
            (r.status, r.reasons[0].code),
            (SendStatus::Refused, ReasonCode::QuietHours)
        );
    }

    #[tokio::test]
    async fn three_429s_after_the_first_try_give_up_as_failed_with_an_alert() {
        let w = world();
        w.twilio.always(Outcome::RateLimited);
        let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
        let mut s = sender_with(&w, ComplianceConfig::default(), clients(&w));
        // Twilio's limiter would space four tries a second apart; the 429 path is what
        // is under test, so give this number a fresh, generous bucket.
        s.twilio.as_mut().unwrap().limiter = Arc::new(Limiter::new(Rate {
            per_second: 100,
            burst: 10,
        }));
        s.handle(&events).await.unwrap();
        assert_eq!(w.twilio.calls(), 4);
        let h = history(&w, &id);
        assert_eq!(attempts(&h).len(), 1, "one attempt, four tries");
        let r = &results(&h)[0];
        assert_eq!(
            (r.status, r.outcome.as_str(), r.tries),
            (SendStatus::Failed, "rate_limited", 4)
        );
        let alerts = w.alerts.taken();
        assert_eq!(alerts.len(), 1);
        assert!(
            alerts[0].key.starts_with("send:rate_limited:twilio"),
            "{:?}",
            alerts[0]
        );
    }

    #[tokio::test]
    async fn the_limiter_keeps_twilio_to_one_message_a_second_per_number() {
        let w = world();
        let mut events = Vec::new();
        for i in 0..4 {
            let (_, e) = allowed(&w, TWILIO_LINE, &format!("+1212555011{i}")).await;
            events.extend(e);
        }
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        let calls = w.twilio.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 4);
        for pair in calls.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                gap >= Duration::from_millis(950),
                "sends {gap:?} apart from one number"
            );
        }
    }

    #[tokio::test]
    async fn a_provider_without_credentials_fails_closed_and_never_uses_the_other() {
        let w = world();
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let only_twilio = SendClients {
            openphone: None,
            twilio: Some(w.twilio.clone()),
        };
        let mut s = sender_with(&w, ComplianceConfig::default(), only_twilio);
        s.handle(&events).await.unwrap();
        assert_eq!((w.quo.calls(), w.twilio.calls()), (0, 0));
        let r = &results(&history(&w, &id))[0];
        assert_eq!(
            (r.status, r.outcome.as_str()),
            (SendStatus::Failed, "not_configured")
        );
        assert!(r.error.as_deref().unwrap().contains("openphone"));
        assert_eq!(w.alerts.taken().len(), 1);
    }

    #[tokio::test]
    async fn a_call_that_never_connected_is_tried_again_within_the_same_attempt() {
        let w = world();
        w.quo.answer([
            Outcome::Transient {
                reason: "not sent: Connection Failed".into(),
            },
            Outcome::Sent {
                provider_id: "AC9".into(),
            },
        ]);
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        let h = history(&w, &id);
        assert_eq!(attempts(&h).len(), 1);
        let r = &results(&h)[0];
        assert_eq!(
            (r.status, r.provider_id.as_deref(), r.tries),
            (SendStatus::Sent, Some("AC9"), 2)
        );
    }

    #[tokio::test]
    async fn a_5xx_is_unknown_with_an_alert_and_is_never_retried() {
        let w = world();
        w.quo.always(Outcome::Transient {
            reason: "Quo answered 503".into(),
        });
        let (id, events) = allowed(&w, QUO_LINE, TO).await;
        let mut s = sender(&w);
        s.handle(&events).await.unwrap();
        assert_eq!(w.quo.calls(), 1);
        let r = &results(&history(&w, &id))[0];
        assert_eq!(r.status, SendStatus::Unknown);
        assert_eq!(w.alerts.taken().len(), 1);
    }

    #[test]
    fn sender_config_defaults_validate_and_bad_values_name_their_key() {
        let c = SenderConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(
            (
                c.enabled,
                c.quo_per_second,
                c.twilio_per_second,
                c.max_retries
            ),
            (true, 10, 1, 3)
        );
        let bad = [
            SenderConfig {
                quo_per_second: 11,
                ..SenderConfig::default()
            },
            SenderConfig {
                twilio_per_second: 0,
                ..SenderConfig::default()
            },
            SenderConfig {
                connect_timeout_secs: 30,
                ..SenderConfig::default()
            },
        ];
        for (c, key) in bad.iter().zip([
            "quo_per_second",
            "twilio_per_second",
            "connect_timeout_secs",
        ]) {
            assert!(c.validate().unwrap_err().starts_with(key));
        }
        let env = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        let (c, _) = Config::load_from(None, env("HOOKLOG_SENDER_TWILIO_PER_SECOND", "2")).unwrap();
        assert_eq!(c.sender.twilio_per_second, 2);
        let err = Config::load_from(None, env("HOOKLOG_SENDER_QUO_PER_SECOND", "50"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sender.quo_per_second"), "{err}");
        assert!(SendClients::from_config(&c).is_empty(), "no credentials");
    }
}
