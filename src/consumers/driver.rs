//! The one driver every consumer runs under: it reads batches after the cursor, never passes
//! an upstream's cursor, saves the cursor after the effect, retries transient failures with
//! backoff and full jitter, dead-letters poison records, and carries out the operator's
//! controls (rewind, redrive) between batches. Before every batch it reads whether its
//! consumer is paused from the projection the registry names ([`Registry::read_pauses_from`]:
//! pauses are records in the log), after waiting once at start for that projection to have
//! read the log as it was then. The invariants it keeps are the ones listed in [`super`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};

use super::dead_letters::{dead_letters, decode_dead_letter, DeadLetter, DEAD_LETTERS};
use super::registry::{
    ConsumerInfo, Control, ControlError, Entry, Redeliver, RedriveReport, Registry, RewindReport,
    RunState,
};
use super::{Batch, BatchError, Consumer, RewindMode};
use crate::alerts::{Alert, Alerter, Severity};
use crate::event::{Micros, Seq};
use crate::log::{Log, LogError};
use crate::metrics::Metrics;
use crate::state::{self, StateError, StateStore};

/// How the driver paces itself.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Most records per batch.
    pub batch_size: usize,
    /// First retry delay after a transient failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Consecutive transient failures before an alert.
    pub alert_after_failures: u32,
    /// Longest wait between checks for new records (wake-ups normally come sooner).
    pub idle_poll: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            batch_size: 512,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            alert_after_failures: 5,
            idle_poll: Duration::from_millis(500),
        }
    }
}

/// What every driver shares.
#[derive(Clone)]
pub struct DriverContext {
    /// The log.
    pub log: Arc<dyn Log>,
    /// Consumer state.
    pub store: Arc<dyn StateStore>,
    /// Status and control.
    pub registry: Arc<Registry>,
    /// Metrics.
    pub metrics: Metrics,
    /// Operator alerts.
    pub alerter: Alerter,
    /// Pacing.
    pub config: DriverConfig,
}

/// Exponential backoff with full jitter: a random delay in `[0, min(max, base·2^n)]`.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20));
    let cap = exp.min(max);
    let millis = cap.as_millis().max(1) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
}

/// Runs `consumer` under the driver on a thread of its own (with a single-threaded runtime),
/// until `shutdown` turns true. The returned receiver resolves when the thread has finished.
///
/// Why a thread: consumers are CPU-heavy during a catch-up or a rewind. On the edge's runtime
/// they would take worker time from webhook acknowledgements, and tokio keeps a task woken by
/// another on the same worker, so an upstream and its downstream would never run in parallel.
pub fn spawn_on_thread<C: Consumer>(
    consumer: C,
    ctx: DriverContext,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<oneshot::Receiver<()>> {
    let name = consumer.name();
    // A consumer started on its thread is one this replica runs: readiness requires it.
    ctx.registry.expect(name);
    let driver = spawn_driver(consumer, ctx, shutdown);
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("consumer-{name}"))
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(driver),
                Err(e) => tracing::error!(consumer = name, error = %e, "cannot start the consumer's runtime"),
            }
            let _ = done.send(());
        })?;
    Ok(finished)
}

/// Registers `consumer` and returns the future that drives it until `shutdown` turns true.
pub fn spawn_driver<C: Consumer>(
    consumer: C,
    ctx: DriverContext,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send {
    let (tx, rx) = mpsc::channel(16);
    // The pause as projected so far, so that status shows it from the start; the driver reads
    // it again once the projection has caught up, and before every batch.
    let paused = ctx.registry.pause_source().is_some_and(|source| {
        source.projected_by != consumer.name() && (source.paused)(consumer.name()).unwrap_or(false)
    });
    let info = Arc::new(Mutex::new(ConsumerInfo {
        name: consumer.name().to_owned(),
        upstreams: consumer
            .upstreams()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        state: if paused {
            RunState::Paused
        } else {
            RunState::Running
        },
        last_error: None,
    }));
    ctx.registry.lock().insert(
        consumer.name().to_owned(),
        Entry {
            info: info.clone(),
            control: tx,
        },
    );
    let ended = Ended {
        name: consumer.name(),
        info: info.clone(),
        shutdown: shutdown.clone(),
        alerter: ctx.alerter.clone(),
    };
    Driver {
        consumer,
        ctx,
        info,
        control: rx,
        shutdown,
        paused,
        failures: 0,
        _ended: ended,
    }
    .run()
}

/// Dropped with its driver, however the driver ends: a driver that ends before shutdown (its
/// consumer panicked, or its runtime could not start) is marked stopped, so that status and
/// `/readyz` say so ([`Registry::not_running`]), and a critical alert is raised.
struct Ended {
    name: &'static str,
    info: Arc<Mutex<ConsumerInfo>>,
    shutdown: watch::Receiver<bool>,
    alerter: Alerter,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        let why = if std::thread::panicking() {
            "its task panicked"
        } else if info.state != RunState::Stopped {
            "its task ended"
        } else {
            return;
        };
        info.state = RunState::Stopped;
        if *self.shutdown.borrow() {
            return;
        }
        info.last_error = Some(why.to_owned());
        drop(info);
        let name = self.name;
        tracing::error!(
            consumer = name,
            why,
            "consumer stopped while the daemon runs: /readyz says not ready"
        );
        self.alerter.raise(Alert {
            key: format!("consumer_stopped_{name}"),
            severity: Severity::Critical,
            title: format!("Consumer {name} stopped"),
            reason: format!(
                "{why}; its cursor stays where it was and nothing after it is processed by it \
                 (or by the consumers downstream of it). /readyz answers 503."
            ),
            next_step: "read the log lines before this one (the panic's message), then restart \
                        hooklog: the consumer resumes from its cursor"
                .into(),
        });
    }
}

struct Driver<C: Consumer> {
    consumer: C,
    ctx: DriverContext,
    info: Arc<Mutex<ConsumerInfo>>,
    control: mpsc::Receiver<Control>,
    shutdown: watch::Receiver<bool>,
    paused: bool,
    failures: u32,
    /// Marks the consumer stopped when the driver is dropped (a panic unwinds through it).
    _ended: Ended,
}

enum Step {
    Continue,
    Wait,
}

impl<C: Consumer> Driver<C> {
    fn set_info(&self, state: RunState, error: Option<Option<String>>) {
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        info.state = state;
        if let Some(e) = error {
            info.last_error = e;
        }
    }

    async fn run(mut self) {
        let name = self.consumer.name();
        let mut last_seq = self.ctx.log.watch_last_seq();
        let registry = self.ctx.registry.clone();
        tracing::info!(consumer = name, "consumer started");
        self.wait_for_pauses().await;
        if self.consumer.has_effects() {
            self.learning_pass().await;
        }
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            self.read_pause();
            let step = if self.paused {
                // A paused consumer handles nothing, but the log goes on growing: its lag
                // must show the backlog the pause builds, not the value from before it.
                match self.ctx.log.cursor(name) {
                    Ok(cursor) => {
                        let last = self.ctx.log.watch_last_seq().borrow().0;
                        self.report_position(cursor.0, last);
                    }
                    Err(e) => {
                        tracing::warn!(consumer = name, error = %e, "cannot read the cursor of a paused consumer")
                    }
                }
                Step::Wait
            } else {
                match self.step().await {
                    Ok(step) => step,
                    Err(e) => {
                        self.transient_failure(e.to_string()).await;
                        Step::Continue
                    }
                }
            };
            if let (Step::Wait, false) = (&step, self.paused) {
                if let Err(e) = self.consumer.tick().await {
                    self.transient_failure(e.to_string()).await;
                }
            }
            if let Step::Wait = step {
                let wake = registry.wake.notified();
                tokio::select! {
                    _ = last_seq.changed() => {}
                    _ = wake => {}
                    cmd = self.control.recv() => match cmd {
                        Some(cmd) => self.apply(cmd).await,
                        None => break,
                    },
                    _ = self.shutdown.changed() => {}
                    _ = tokio::time::sleep(self.ctx.config.idle_poll) => {}
                }
            }
            while let Ok(cmd) = self.control.try_recv() {
                self.apply(cmd).await;
            }
        }
        if let Err(e) = self.consumer.finish().await {
            tracing::warn!(consumer = name, error = %e, "the last batch did not complete; it is handled again at the next start");
        }
        if !*self.shutdown.borrow() {
            // Only a closed control channel ends the loop before shutdown.
            self.set_info(
                RunState::Stopped,
                Some(Some("its control channel closed".into())),
            );
            tracing::error!(consumer = name, "consumer stopped while the daemon runs");
            return;
        }
        self.set_info(RunState::Stopped, None);
        tracing::info!(consumer = name, "consumer stopped");
    }

    /// Before the first batch: waits until the consumer that projects the pauses has read the
    /// log up to its end as of now (the new leader after a fail-over catches up from its own
    /// local state here), so that a pause already in the log holds from the first batch. Not
    /// for that consumer itself, nor when no projection is named; returns early on shutdown.
    async fn wait_for_pauses(&mut self) {
        let name = self.consumer.name();
        let Some(source) = self.ctx.registry.pause_source() else {
            return;
        };
        if source.projected_by == name {
            return;
        }
        let log = self.ctx.log.clone();
        let end = log.watch_last_seq().borrow().0;
        let registry = self.ctx.registry.clone();
        let mut told = false;
        while !*self.shutdown.borrow() {
            match log.cursor(source.projected_by) {
                Ok(seq) if seq.0 >= end => break,
                Ok(seq) if !told => {
                    told = true;
                    tracing::info!(
                        consumer = name,
                        projection = source.projected_by,
                        at = seq.0,
                        end,
                        "waiting for the pauses in the log to be projected before the first batch"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "cannot read the cursor of the pauses' projection")
                }
            }
            let wake = registry.wake.notified();
            tokio::select! {
                _ = wake => {}
                _ = self.shutdown.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        self.read_pause();
    }

    /// Running, or paused.
    fn idle_state(&self) -> RunState {
        if self.paused {
            RunState::Paused
        } else {
            RunState::Running
        }
    }

    /// Reads whether the consumer is paused from the projection; keeps what it knew when the
    /// projection cannot be read.
    fn read_pause(&mut self) {
        let name = self.consumer.name();
        let Some(source) = self.ctx.registry.pause_source() else {
            return;
        };
        if source.projected_by == name {
            return;
        }
        match (source.paused)(name) {
            Ok(paused) if paused != self.paused => {
                self.paused = paused;
                tracing::info!(consumer = name, paused, "pause state changed");
                self.set_info(self.idle_state(), None);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "cannot read the pause state; keeping it as it was")
            }
        }
    }

    /// The learning pass of a consumer with effects: hands it, in batches, the records from
    /// where it would start up to the end of the log as it is now, so that its ledger knows
    /// what was done before (by another replica, or by this process before it stopped)
    /// although it is kept in local state. Moves no cursor; transient errors are retried with
    /// the usual backoff; returns early on shutdown.
    async fn learning_pass(&mut self) {
        let name = self.consumer.name();
        let log = self.ctx.log.clone();
        let end = log.watch_last_seq().borrow().0;
        let started = std::time::Instant::now();
        let (mut after, mut scanned) = (None, 0u64);
        while !*self.shutdown.borrow() {
            let next: Result<Option<(Seq, usize)>, StepError> = async {
                let from = match after {
                    Some(seq) => seq,
                    None => match self.consumer.committed_cursor().await? {
                        Some(seq) => seq,
                        None => log.cursor(name)?,
                    },
                };
                if from.0 >= end {
                    return Ok(None);
                }
                let want = (end - from.0).min(self.ctx.config.batch_size as u64) as usize;
                let batch = match self.ctx.registry.batches.read(&log, from, want) {
                    Ok(batch) => batch,
                    // Learn from the records before it; the record itself shows no effect
                    // (the first batch dead-letters it).
                    Err(LogError::Corrupt { seq, .. }) if seq.0 > from.0 + 1 => {
                        Arc::new(Batch::new(log.read(from, (seq.0 - from.0 - 1) as usize)?))
                    }
                    Err(LogError::Corrupt { seq, .. }) => return Ok(Some((seq, 1))),
                    Err(e) => return Err(e.into()),
                };
                let batch = if batch.events().iter().any(|e| e.seq.0 > end) {
                    let events = batch.events().iter().filter(|e| e.seq.0 <= end);
                    Arc::new(Batch::new(events.cloned().collect()))
                } else {
                    batch
                };
                let Some(last) = batch.events().last().map(|e| e.seq) else {
                    return Ok(None);
                };
                self.consumer.learn_effects(&batch).await?;
                Ok(Some((last, batch.events().len())))
            }
            .await;
            match next {
                Ok(Some((last, records))) => {
                    after = Some(last);
                    scanned += records as u64;
                    self.failures = 0;
                }
                Ok(None) => {
                    if scanned > 0 {
                        tracing::info!(
                            consumer = name,
                            records = scanned,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "learned from the log the effects already performed"
                        );
                    }
                    self.set_info(self.idle_state(), Some(None));
                    return;
                }
                Err(e) => self.transient_failure(e.to_string()).await,
            }
        }
    }

    /// Sets the cursor and lag gauges: `lag` is what lies between the cursor and `last`.
    fn report_position(&self, cursor: u64, last: u64) {
        let name = self.consumer.name();
        let metrics = &self.ctx.metrics;
        metrics
            .consumer_cursor
            .with_label_values(&[name])
            .set(cursor as i64);
        metrics
            .consumer_lag
            .with_label_values(&[name])
            .set(last.saturating_sub(cursor) as i64);
    }

    /// Handles one batch if there is one.
    async fn step(&mut self) -> Result<Step, StepError> {
        let name = self.consumer.name();
        let log = self.ctx.log.clone();
        let mut cursor = log.cursor(name)?;
        // The writer publishes the last durable sequence; no need to ask the engine.
        let last = log.watch_last_seq().borrow().0;
        if let Some(committed) = self.consumer.committed_cursor().await? {
            if committed != cursor {
                if committed.0 > last {
                    return Err(StepError(format!(
                        "the cursor {name} committed with its effects ({committed}) is past the end of the log ({last}): \
                         they were made from another log; rewind {name} to re-project this one"
                    )));
                }
                tracing::info!(
                    consumer = name,
                    log_cursor = cursor.0,
                    committed = committed.0,
                    "continuing from the cursor committed with the consumer's effects"
                );
                log.store_cursor(name, committed)?;
                cursor = committed;
            }
        }
        let mut limit = last;
        for up in self.consumer.upstreams() {
            limit = limit.min(log.cursor(up)?.0);
        }
        self.report_position(cursor.0, last);
        if cursor.0 >= limit {
            return Ok(Step::Wait);
        }
        let want = (limit - cursor.0).min(self.ctx.config.batch_size as u64) as usize;
        let batch = match self.ctx.registry.batches.read(&log, cursor, want) {
            Ok(b) => b,
            Err(LogError::Corrupt { seq, source }) => {
                // Never skipped silently: the undecodable record is dead-lettered and alerted.
                self.dead_letter(seq, format!("the record cannot be decoded: {source}"))?;
                self.consumer.move_committed_cursor(seq).await?;
                log.store_cursor(name, seq)?;
                return Ok(Step::Continue);
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = batch.events().last().map(|e| e.seq) else {
            return Ok(Step::Wait);
        };
        match self.consumer.handle_batch(&batch).await {
            Ok(()) => {
                log.store_cursor(name, last)?;
                self.ctx
                    .metrics
                    .consumer_processed
                    .with_label_values(&[name])
                    .inc_by(batch.events().len() as u64);
                if self.failures > 0 {
                    tracing::info!(
                        consumer = name,
                        "recovered after {} failed attempts",
                        self.failures
                    );
                }
                self.failures = 0;
                self.set_info(RunState::Running, Some(None));
            }
            Err(BatchError::Transient(e)) => self.transient_failure(e).await,
            Err(e @ BatchError::Poison { .. }) | Err(e @ BatchError::Forged(_)) => {
                let seq = e.record().unwrap_or(last);
                let done = batch.events().iter().filter(|e| e.seq < seq).count() as u64;
                self.ctx
                    .metrics
                    .consumer_processed
                    .with_label_values(&[name])
                    .inc_by(done);
                self.dead_letter_for(&e, seq)?;
                log.store_cursor(name, seq)?;
            }
        }
        self.ctx.registry.wake.notify_waiters();
        Ok(Step::Continue)
    }

    /// Dead-letters `seq` for `e` (poison or forged).
    fn dead_letter_for(&mut self, e: &BatchError, seq: Seq) -> Result<(), StateError> {
        match e {
            BatchError::Forged(forged) => {
                let name = self.consumer.name();
                self.dead_letter_quietly(seq, forged.to_string())?;
                // Its own key per record: one forged record must not hide the next behind
                // the dead-letter alert's coalescing.
                self.ctx.alerter.raise(Alert {
                    key: format!("forged:{name}:{seq}"),
                    severity: Severity::Critical,
                    title: format!("{name}: forged record {seq} refused, never acted on"),
                    reason: forged.to_string(),
                    next_step: format!(
                        "find who could write it (`hooklog-replay show {seq}`: a leaked token, \
                         an import, write access to the log's storage) and rotate what it used; \
                         the record stays a dead letter of {name}"
                    ),
                });
                Ok(())
            }
            BatchError::Poison { error, .. } | BatchError::Transient(error) => {
                self.dead_letter(seq, error.clone())
            }
        }
    }

    fn dead_letter(&mut self, seq: Seq, error: String) -> Result<(), StateError> {
        let name = self.consumer.name();
        self.dead_letter_quietly(seq, error.clone())?;
        self.ctx.alerter.raise(Alert {
            key: format!("dead_letter:{name}"),
            severity: Severity::Warning,
            title: format!("{name}: record {seq} dead-lettered"),
            reason: error,
            next_step: format!(
                "inspect with `hooklog-replay show {seq}` and `hooklog-replay dead-letters`; after a fix, `hooklog-replay redrive {name}`"
            ),
        });
        Ok(())
    }

    /// Stores the dead letter, counts it and logs it; the caller raises the alert.
    fn dead_letter_quietly(&mut self, seq: Seq, error: String) -> Result<(), StateError> {
        let name = self.consumer.name();
        let tree = self.ctx.store.tree(name, DEAD_LETTERS)?;
        let attempts = match tree.get(&seq.to_key())? {
            Some(v) => decode_dead_letter(&v)?.attempts + 1,
            None => 1,
        };
        let dl = DeadLetter {
            consumer: name.to_owned(),
            seq: seq.0,
            error: error.clone(),
            at: Micros::now().to_rfc3339(),
            attempts,
        };
        let json = state::to_json(&dl)?;
        tree.insert(&seq.to_key(), &json)?;
        self.ctx
            .metrics
            .consumer_errors
            .with_label_values(&[name, "poison"])
            .inc();
        self.ctx
            .metrics
            .consumer_dead_letters
            .with_label_values(&[name])
            .set(tree.len()? as i64);
        self.set_info(
            RunState::Running,
            Some(Some(format!("record {seq} dead-lettered: {error}"))),
        );
        tracing::error!(consumer = name, seq = seq.0, %error, "record dead-lettered");
        Ok(())
    }

    async fn transient_failure(&mut self, error: String) {
        let name = self.consumer.name();
        self.failures += 1;
        self.ctx
            .metrics
            .consumer_errors
            .with_label_values(&[name, "transient"])
            .inc();
        self.set_info(RunState::Retrying, Some(Some(error.clone())));
        tracing::warn!(consumer = name, attempt = self.failures, %error, "batch failed; backing off");
        if self.failures == self.ctx.config.alert_after_failures {
            self.ctx.alerter.raise(Alert {
                key: format!("consumer_failing:{name}"),
                severity: Severity::Critical,
                title: format!("{name} keeps failing"),
                reason: format!("{} consecutive failures; last: {error}", self.failures),
                next_step: format!("check `hooklog-replay status` and the daemon log for {name}"),
            });
        }
        let delay = backoff(
            self.ctx.config.backoff_base,
            self.ctx.config.backoff_max,
            self.failures - 1,
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.changed() => {}
        }
    }

    async fn apply(&mut self, cmd: Control) {
        match cmd {
            Control::Rewind {
                to,
                dry_run,
                redeliver,
                reply,
            } => {
                let registry = self.ctx.registry.clone();
                let _retention = registry.retention.lock().await;
                let name = self.consumer.name();
                let pruned_before = self
                    .ctx
                    .log
                    .stats()
                    .map(|s| s.first_seq)
                    .unwrap_or_default();
                let r = if redeliver.is_some() && !self.consumer.has_effects() {
                    Err(ControlError::Refused(format!(
                        "{name} has no irreversible effects to redeliver; rewind it without --redeliver"
                    )))
                } else if self.consumer.rewind_mode() == RewindMode::Rebuild && pruned_before > 1 {
                    // A rebuild clears the state and recomputes it from the first record; once
                    // retention has deleted records, what they contributed (an opt-out, a dedup
                    // claim) would be lost, not recomputed.
                    Err(ControlError::Refused(format!(
                        "{name} rebuilds its state from the first record, and retention has deleted every record before {pruned_before}: a rebuild would lose what they contributed (opt-outs, dedup claims), so it is refused"
                    )))
                } else {
                    self.rewind(to, dry_run, redeliver).await
                };
                let _ = reply.send(r);
            }
            Control::Redrive { seq, reply } => {
                let r = self.redrive(seq).await.map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
        }
    }

    /// A rewind. With `redeliver`, the consumer first counts what it would perform again
    /// (its ledger, the range streamed from the log); unless that is a dry run, the rewind
    /// goes ahead only when the operator confirmed and the count is within the limit, else
    /// it is refused with the report and nothing changes.
    async fn rewind(
        &mut self,
        to: Seq,
        dry_run: bool,
        redeliver: Option<Redeliver>,
    ) -> Result<RewindReport, ControlError> {
        let failed = |e: StepError| ControlError::Failed(e.to_string());
        let name = self.consumer.name();
        let log = self.ctx.log.clone();
        let from = log.cursor(name).map_err(|e| failed(e.into()))?;
        let stats = log.stats().map_err(|e| failed(e.into()))?;
        let rebuild = self.consumer.rewind_mode() == RewindMode::Rebuild;
        let target = if rebuild {
            Seq(stats.first_seq.saturating_sub(1))
        } else {
            to.min(from)
        };
        let redelivery = match redeliver {
            Some(ask) => {
                let mut plan = self
                    .consumer
                    .plan_redelivery(target, from)
                    .map_err(|e| failed(e.into()))?;
                let (configured, key) = self.consumer.max_redeliver();
                (plan.limit, plan.limit_from) = match ask.max {
                    Some(max) => (max, "this request".to_owned()),
                    None => (configured, key.to_owned()),
                };
                Some(plan)
            }
            None => None,
        };
        let report = RewindReport {
            consumer: name.to_owned(),
            from_cursor: from.0,
            to_cursor: target.0,
            replay: stats.last_seq.saturating_sub(target.0),
            rebuild,
            redeliver: redeliver.is_some(),
            redelivery,
            dry_run,
        };
        if dry_run {
            return Ok(report);
        }
        match (redeliver, &report.redelivery) {
            (Some(ask), Some(_)) if !ask.confirm => {
                return Err(ControlError::Unconfirmed(Box::new(report)));
            }
            (Some(_), Some(plan)) if !plan.within_limit() => {
                tracing::warn!(
                    consumer = name,
                    effects = plan.effects,
                    limit = plan.limit,
                    "a confirmed redelivery over the limit was refused"
                );
                return Err(ControlError::OverLimit(Box::new(report)));
            }
            _ => {}
        }
        self.apply_rewind(target, from, rebuild, redeliver.is_some())
            .await
            .map_err(failed)?;
        Ok(report)
    }

    /// Carries out a rewind from `from` to `target` that has been checked.
    async fn apply_rewind(
        &mut self,
        target: Seq,
        from: Seq,
        rebuild: bool,
        redeliver: bool,
    ) -> Result<(), StepError> {
        let name = self.consumer.name();
        let log = self.ctx.log.clone();
        if redeliver {
            self.consumer
                .redeliver(target, from)
                .map_err(|e| StepError(e.to_string()))?;
        }
        if rebuild {
            self.consumer
                .reset()
                .map_err(|e| StepError(e.to_string()))?;
        }
        self.consumer.move_committed_cursor(target).await?;
        log.store_cursor(name, target)?;
        tracing::info!(
            consumer = name,
            from = from.0,
            to = target.0,
            rebuild,
            redeliver,
            "rewound"
        );
        self.ctx.registry.wake.notify_waiters();
        Ok(())
    }

    async fn redrive(&mut self, only: Option<Seq>) -> Result<RedriveReport, StepError> {
        let name = self.consumer.name();
        let tree = self.ctx.store.tree(name, DEAD_LETTERS)?;
        let letters = dead_letters(self.ctx.store.as_ref(), name)?;
        let mut report = RedriveReport {
            consumer: name.to_owned(),
            ..RedriveReport::default()
        };
        for dl in letters
            .into_iter()
            .filter(|d| only.is_none_or(|s| s.0 == d.seq))
        {
            let seq = Seq(dl.seq);
            let outcome = match self.ctx.log.get(seq) {
                Ok(Some(event)) => self.consumer.handle(std::slice::from_ref(&event)).await,
                Ok(None) => Err(BatchError::Poison {
                    seq,
                    error: "the record is no longer in the log".into(),
                }),
                Err(e) => Err(BatchError::Poison {
                    seq,
                    error: e.to_string(),
                }),
            };
            match outcome {
                Ok(()) => {
                    tree.remove(&seq.to_key())?;
                    report.succeeded.push(seq.0);
                }
                Err(e) => {
                    self.dead_letter_for(&e, seq)?;
                    report.failed.push(seq.0);
                }
            }
        }
        self.ctx
            .metrics
            .consumer_dead_letters
            .with_label_values(&[name])
            .set(tree.len()? as i64);
        Ok(report)
    }
}

/// A failure of the driver's own bookkeeping (log or state access): retried like a
/// transient batch failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StepError(String);

impl From<LogError> for StepError {
    fn from(e: LogError) -> Self {
        StepError(e.to_string())
    }
}

impl From<StateError> for StepError {
    fn from(e: StateError) -> Self {
        StepError(e.to_string())
    }
}

impl From<BatchError> for StepError {
    fn from(e: BatchError) -> Self {
        StepError(e.to_string())
    }
}
