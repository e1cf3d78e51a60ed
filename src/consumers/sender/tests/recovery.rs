//! What a restart, a failing log or a fail-over leaves: an interrupted attempt ends unknown
//! and is never called again, a refused append calls nothing, and the learning pass knows
//! what another replica sent.

use super::*;

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
            provider: SendProvider::Twilio,
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
            Some(0) => {
                crate::log::AppendTicket::failed(crate::log::LogError::Storage("disk full".into()))
            }
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
    .without_controls_consumer()
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
    .without_controls_consumer()
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
            provider: SendProvider::Quo,
            from: "+12125550199".into(),
            to: TO.into(),
            redelivery: n > 1,
            at: "2026-11-30T17:00:02Z".into(),
        })
    };
    let msg = w.outbound.message(&id).unwrap().unwrap();
    let result =
        |n, status: SendStatus| OutboundRecord::Result(s.result(&msg, n, status, status.as_str()));
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
