//! Tests of the dispatch consumer: routing, the effects ledger, redelivery, learning from the
//! log, dead letters and the breaker, against a scripted gateway.

use super::*;
use crate::consumers::compliance::Compliance;
use crate::consumers::dedup::Dedup;
use crate::consumers::testutil::{event, quo_inbound, HOUR};
use crate::event::Verified;
use crate::log::sled::{SledLog, SledOptions};
use crate::retry::RetryPolicy;
use std::collections::VecDeque;

/// Answers from a script, then `Delivered`; keeps every request.
#[derive(Default)]
struct FakeGateway {
    script: Mutex<VecDeque<DispatchOutcome>>,
    seen: Mutex<Vec<DispatchRequest>>,
    down: std::sync::atomic::AtomicBool,
}

impl Gateway for FakeGateway {
    fn post(&self, request: &DispatchRequest) -> DispatchOutcome {
        self.seen.lock().unwrap().push(request.clone());
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return DispatchOutcome::Retryable {
                reason: "gateway answered 503".into(),
            };
        }
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(DispatchOutcome::Delivered { status: 202 })
    }
}

impl FakeGateway {
    fn seen(&self) -> Vec<DispatchRequest> {
        self.seen.lock().unwrap().clone()
    }
    fn bodies(&self) -> Vec<serde_json::Value> {
        self.seen()
            .iter()
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect()
    }
    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    log: Arc<dyn Log>,
    gateway: Arc<FakeGateway>,
    dedup: Dedup,
    compliance: Compliance,
    dispatch: Dispatch,
}

fn harness() -> Harness {
    harness_with(vec![])
}

/// The harness with `extra` routes after `message.received` → acquisitions.
fn harness_with(extra: Vec<Route>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> =
        Arc::new(SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).unwrap());
    let store = log.state();
    let gateway = Arc::new(FakeGateway::default());
    let dispatch = Dispatch::new(
        settings(extra),
        gateway.clone(),
        log.clone(),
        Alerter::disabled(),
        Metrics::new(),
    )
    .unwrap();
    Harness {
        dedup: Dedup::new(store.as_ref(), 72).unwrap(),
        compliance: Compliance::new(store.as_ref(), Alerter::disabled()).unwrap(),
        _dir: dir,
        log,
        gateway,
        dispatch,
    }
}

/// `message.received` → acquisitions, then `extra`; fast retries, no age limit.
fn settings(extra: Vec<Route>) -> Settings {
    let mut routes = vec![Route {
        kinds: vec!["message.received".into()],
        provider: None,
        line: None,
        agent: "acquisitions".into(),
        url: None,
    }];
    routes.extend(extra);
    let routes = Routes::new(routes).unwrap();
    Settings {
        url: "http://gateway.test/dispatch".into(),
        routes,
        policy: DispatchPolicy {
            retry: RetryPolicy {
                max_retries: 1,
                base: Duration::from_millis(1),
                max: Duration::from_millis(2),
                ..RetryPolicy::default()
            },
            max_elapsed: Duration::from_secs(1),
        },
        breaker: BreakerConfig {
            failure_threshold: 1000,
            cool_down: Duration::from_secs(1),
        },
        dead_letter_after: Duration::from_secs(3600),
        max_event_age: None,
        max_redeliver: 1000,
    }
}

impl Harness {
    /// Dedup and compliance, then dispatch, over `events` (as the driver would order them).
    async fn run(&mut self, events: &[Event]) -> Result<(), BatchError> {
        self.dedup.handle(events).await?;
        self.compliance.handle(events).await?;
        self.dispatch.handle(events).await
    }

    /// The dispatch results appended to the log.
    fn results(&self) -> Vec<DispatchResult> {
        self.log
            .read(Seq(0), 1000)
            .unwrap()
            .iter()
            .filter_map(|e| match OutboundRecord::decode(e) {
                Some(Ok(OutboundRecord::Dispatch(r))) => Some(r),
                _ => None,
            })
            .collect()
    }
}

fn now() -> i64 {
    Micros::now().0
}

fn inbound(seq: u64, at: i64, from: &str, text: &str) -> Event {
    quo_inbound(
        seq,
        at,
        &format!("EV{seq}"),
        &format!("AC{seq}"),
        from,
        text,
    )
}

impl Harness {
    /// The `seq` of every body the gateway received, in order.
    fn bodies_seq(&self) -> Vec<u64> {
        self.gateway
            .bodies()
            .iter()
            .map(|b| b["seq"].as_u64().unwrap())
            .collect()
    }
}

fn keys(h: &Harness) -> Vec<String> {
    h.gateway
        .seen()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect()
}

#[tokio::test]
async fn an_inbound_message_is_dispatched_once_to_its_routed_agent_with_the_idempotency_key() {
    let mut h = harness();
    let e = inbound(1, now(), "+15555550101", "is the house still for sale?");
    h.run(std::slice::from_ref(&e)).await.unwrap();

    let seen = h.gateway.seen();
    assert_eq!(seen.len(), 1);
    let dedup_key = crate::parse::parse(&e).unwrap().dedup_keys[0].clone();
    assert_eq!(seen[0].idempotency_key, format!("hooklog:1:{dedup_key}"));
    assert_eq!(seen[0].agent, "acquisitions");
    assert_eq!(seen[0].url, "http://gateway.test/dispatch");
    let body = &h.gateway.bodies()[0];
    assert_eq!(body["kind"], "message.received");
    assert_eq!(body["line"], "+15555550100");
    assert_eq!(body["opted_out"], false);

    let results = h.results();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(
        (
            r.seq,
            r.agent.as_str(),
            r.outcome.as_str(),
            r.status,
            r.redelivery
        ),
        (1, "acquisitions", "delivered", Some(202), false)
    );
    assert_eq!(r.idempotency_key, seen[0].idempotency_key);
    let entry = h
        .dispatch
        .ledger_entry(Seq(1), "acquisitions")
        .unwrap()
        .unwrap();
    assert_eq!((entry.outcome.as_str(), entry.window), ("delivered", None));
    let latency = h
        .dispatch
        .metrics
        .dispatch_latency
        .with_label_values(&["acquisitions"]);
    assert_eq!(latency.get_sample_count(), 1);
    assert!(h
        .dispatch
        .metrics
        .render()
        .contains("hooklog_dispatch_latency_seconds_bucket"));
}

#[tokio::test]
async fn duplicates_unrouted_kinds_unparseable_and_hooklogs_own_records_are_not_dispatched() {
    let mut h = harness();
    let t = now();
    let original = inbound(1, t, "+15555550102", "hello");
    let mut retry = original.clone();
    retry.seq = Seq(2);
    let own = event(
        3,
        t,
        Source::Internal,
        crate::consumers::outbound::records::DISPATCH_ROUTE,
        r#"{"seq":1}"#,
    );
    let garbage = event(4, t, Source::Quo, "/webhook/openphone", "{not json");
    let delivered = serde_json::json!({
        "id": "EVd", "object": "event", "apiVersion": "v4", "createdAt": "2026-04-14T16:02:11.557Z",
        "type": "message.delivered",
        "data": {"object": {"id": "ACd", "object": "message", "from": "+15555550100",
            "to": ["+15555550102"], "direction": "outgoing", "text": "hi", "status": "delivered",
            "createdAt": "2026-04-14T16:02:11.420Z", "phoneNumberId": "PNtoDbDhuz"}}
    });
    let unrouted = event(
        5,
        t,
        Source::Quo,
        "/webhook/openphone",
        &delivered.to_string(),
    );
    let events = [original, retry, own, garbage.clone(), unrouted];
    // Compliance dead-letters the unparseable record; dispatch alone is run over all.
    h.dedup.handle(&events).await.unwrap();
    h.dispatch.handle(&events).await.unwrap();
    assert_eq!(keys(&h).len(), 1, "{:?}", keys(&h));
    assert!(keys(&h)[0].starts_with("hooklog:1:"));
    assert_eq!(h.results().len(), 1);
}

#[tokio::test]
async fn a_rewind_to_zero_dispatches_nothing_again() {
    let mut h = harness();
    let t = now();
    let events: Vec<Event> = (1..=3)
        .map(|s| inbound(s, t + s as i64, &format!("+1555555020{s}"), "hi"))
        .collect();
    h.run(&events).await.unwrap();
    assert_eq!(keys(&h).len(), 3);
    // The driver's rewind of a Replay consumer: the same records again.
    h.dispatch.handle(&events).await.unwrap();
    h.dispatch.handle(&events[1..]).await.unwrap();
    assert_eq!(keys(&h).len(), 3, "nothing re-dispatched");
    assert_eq!(h.results().len(), 3);
}

#[tokio::test]
async fn an_event_older_than_the_maximum_age_is_projected_but_wakes_no_agent_unless_redelivered() {
    let mut h = harness();
    h.dispatch.settings.max_event_age = Some(Duration::from_secs(3600));
    let hour = 3_600_000_000;
    // The provider's own times (`createdAt`) say when it happened, as in a backfill.
    let happened_at = |seq, at: i64, from: &str, text: &str| {
        let mut e = inbound(seq, at, from, text);
        let when = Micros(at)
            .to_datetime()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        let body = String::from_utf8(e.body).unwrap();
        e.body = body.replace("2026-04-14T16:02:11", &when).into_bytes();
        e
    };
    let old = happened_at(1, now() - 2 * hour, "+15555550401", "is it still for sale?");
    let fresh = happened_at(2, now(), "+15555550402", "call me");
    // Received just now by backfill, but the message is two hours old.
    let mut backfilled = happened_at(3, now() - 2 * hour, "+15555550403", "hello?");
    let envelope: serde_json::Value = serde_json::from_slice(&backfilled.body).unwrap();
    backfilled.body = serde_json::to_vec(&envelope["data"]["object"]).unwrap();
    backfilled.source = Source::BackfillQuo;
    backfilled.route = "/v1/messages/AC3".into();
    backfilled.received_at = Micros::now();
    h.run(&[old.clone(), fresh.clone(), backfilled])
        .await
        .unwrap();
    let seqs: Vec<u64> = h.bodies_seq();
    assert_eq!(seqs, vec![2], "only the fresh event woke the agent");
    let entry = h
        .dispatch
        .ledger_entry(Seq(3), "acquisitions")
        .unwrap()
        .unwrap();
    assert_eq!(entry.outcome, SKIPPED_STALE, "aged by the provider's time");
    let entry = h
        .dispatch
        .ledger_entry(Seq(1), "acquisitions")
        .unwrap()
        .unwrap();
    assert_eq!(entry.outcome, SKIPPED_STALE);
    assert!(
        h.results().iter().all(|r| r.seq != 1),
        "nothing was sent, so no result record"
    );
    // A rewind does not revisit the decision; an operator's redelivery does.
    h.dispatch
        .handle(&[old.clone(), fresh.clone()])
        .await
        .unwrap();
    assert_eq!(h.bodies_seq(), vec![2]);
    h.dispatch.redeliver(Seq(0), Seq(1)).unwrap();
    h.dispatch.handle(std::slice::from_ref(&old)).await.unwrap();
    assert_eq!(h.bodies_seq(), vec![2, 1]);
}

#[tokio::test]
async fn a_redelivery_window_redispatches_exactly_the_window_once_with_the_same_keys() {
    let mut h = harness();
    let t = now();
    let events: Vec<Event> = (1..=5)
        .map(|s| inbound(s, t + s as i64, &format!("+1555555030{s}"), "hi"))
        .collect();
    h.run(&events).await.unwrap();
    let first = keys(&h);
    assert_eq!(first.len(), 5);

    // rewind --to-seq 1 --redeliver with the cursor at 4: the window is (1, 4].
    h.dispatch.redeliver(Seq(1), Seq(4)).unwrap();
    // A first batch inside the window, then the same batch again (a transient retry).
    h.dispatch.handle(&events[..3]).await.unwrap();
    h.dispatch.handle(&events[..3]).await.unwrap();
    assert_eq!(keys(&h)[5..], first[1..3], "2 and 3 again, once");
    assert!(h.dispatch.window().unwrap().is_some(), "4 is still to come");
    h.dispatch.handle(&events[3..]).await.unwrap();
    assert_eq!(keys(&h)[5..], first[1..4], "then 4; 5 is past the window");
    assert!(
        h.dispatch.window().unwrap().is_none(),
        "the cursor passed the window"
    );

    // The window is gone: another plain replay sends nothing.
    h.dispatch.handle(&events).await.unwrap();
    assert_eq!(keys(&h).len(), 8);
    let redelivered: Vec<u64> = h
        .results()
        .iter()
        .filter(|r| r.redelivery)
        .map(|r| r.seq)
        .collect();
    assert_eq!(redelivered, vec![2, 3, 4]);
    // Not counted as latency: the redelivery's "latency" is the operator's delay.
    assert_eq!(
        h.dispatch
            .metrics
            .dispatch_latency
            .with_label_values(&["acquisitions"])
            .get_sample_count(),
        5
    );
}

#[tokio::test]
async fn an_opted_out_sender_is_dispatched_with_opted_out_true() {
    let mut h = harness();
    let t = now();
    let events = vec![
        inbound(1, t, "+15555550401", "STOP"),
        inbound(2, t + 1, "+15555550401", "who is this anyway"),
        inbound(3, t + 2, "+15555550402", "sounds good"),
    ];
    h.run(&events).await.unwrap();
    let flags: Vec<(u64, bool)> = h
        .gateway
        .bodies()
        .iter()
        .map(|b| {
            (
                b["seq"].as_u64().unwrap(),
                b["opted_out"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(flags, vec![(1, true), (2, true), (3, false)]);
    assert!(h.results().iter().find(|r| r.seq == 2).unwrap().opted_out);
}

#[tokio::test]
async fn opted_out_is_per_line_after_a_re_subscription_on_one_line() {
    use crate::consumers::testutil::quo_inbound_to;
    let mut h = harness();
    let t = now();
    let (n, a, b) = ("+15555550403", "+15555550100", "+15555550101");
    let events = vec![
        quo_inbound_to(1, t, n, a, "STOP"),
        quo_inbound_to(2, t + 1_000_000, n, a, "START"),
        quo_inbound_to(3, t + 2_000_000, n, a, "on line A"),
        quo_inbound_to(4, t + 3_000_000, n, b, "on line B"),
    ];
    h.run(&events).await.unwrap();
    let flags: Vec<(u64, bool)> = h
        .gateway
        .bodies()
        .iter()
        .map(|b| {
            (
                b["seq"].as_u64().unwrap(),
                b["opted_out"].as_bool().unwrap(),
            )
        })
        .collect();
    // The list is read as it stands when the event is dispatched (compliance ran over the
    // whole batch first): the START lifted line A only, so an agent may reply on A, not on B.
    assert_eq!(flags, vec![(1, false), (2, false), (3, false), (4, true)]);
}

#[tokio::test]
async fn a_call_is_routed_by_its_quo_line_id_and_flags_a_suppressed_caller() {
    let mut h = harness_with(vec![Route {
        kinds: vec!["call.ringing".into()],
        provider: Some(crate::provider::Provider::Quo),
        line: Some("PNTVGxqnqT".into()),
        agent: "atlas".into(),
        url: Some("http://atlas.test/hook".into()),
    }]);
    let t = now();
    let suppress = event(
        1,
        t,
        Source::Internal,
        compliance::ADMIN_ROUTE,
        r#"{"action":"add","number":"+15555550123","reason":"asked by phone"}"#,
    );
    let call =
        crate::consumers::testutil::from_fixture("openphone/legacy_call_ringing_v4.json", 2, t + 1);
    h.run(&[suppress, call]).await.unwrap();
    let seen = h.gateway.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].agent.as_str(), seen[0].url.as_str()),
        ("atlas", "http://atlas.test/hook")
    );
    let body = &h.gateway.bodies()[0];
    assert_eq!(body["line"], "PNTVGxqnqT");
    assert_eq!(body["opted_out"], true, "the caller is suppressed");
}

#[tokio::test]
async fn a_down_gateway_is_transient_then_a_dead_letter_once_the_event_is_older_than_the_age() {
    let mut h = harness();
    h.gateway.set_down(true);
    let fresh = inbound(1, now(), "+15555550501", "hi");
    let err = h.run(std::slice::from_ref(&fresh)).await.unwrap_err();
    assert!(matches!(err, BatchError::Transient(_)), "{err:?}");
    assert_eq!(h.gateway.seen().len(), 2, "one call and one retry");
    assert!(h.results().is_empty());
    assert!(h
        .dispatch
        .ledger_entry(Seq(1), "acquisitions")
        .unwrap()
        .is_none());

    // The gateway recovers: the retried batch delivers it.
    h.gateway.set_down(false);
    h.dispatch
        .handle(std::slice::from_ref(&fresh))
        .await
        .unwrap();
    assert_eq!(h.results()[0].outcome, "delivered");

    // Down again, and record 3 was received two hours ago: record 2 is delivered first
    // (the gateway recovers for it), record 3 is dead-lettered.
    let fresh2 = inbound(2, now(), "+15555550502", "hi");
    let old = inbound(3, now() - 2 * HOUR, "+15555550503", "hi");
    h.dedup
        .handle(&[fresh2.clone(), old.clone()])
        .await
        .unwrap();
    h.compliance
        .handle(&[fresh2.clone(), old.clone()])
        .await
        .unwrap();
    h.dispatch
        .handle(std::slice::from_ref(&fresh2))
        .await
        .unwrap();
    h.gateway.set_down(true);
    let calls = h.gateway.seen().len();
    let err = h
        .dispatch
        .handle(&[fresh2.clone(), old.clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, BatchError::Poison { seq: Seq(3), .. }),
        "{err:?}"
    );
    assert_eq!(
        h.gateway.seen().len(),
        calls + 2,
        "record 2 was not sent again"
    );
    let last = h.results().pop().unwrap();
    assert_eq!((last.seq, last.outcome.as_str()), (3, "dead_lettered"));
    assert!(last.error.unwrap().contains("503"));

    // Handled again without its dead letter (the process stopped before the driver
    // stored it): poison again, without a call.
    let calls = h.gateway.seen().len();
    let err = h
        .dispatch
        .handle(std::slice::from_ref(&old))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BatchError::Poison { seq: Seq(3), .. }),
        "{err:?}"
    );
    assert_eq!(h.gateway.seen().len(), calls);

    // A redrive of the dead letter once the gateway is back delivers it.
    h.dispatch
        .dead_letters
        .insert(&Seq(3).to_key(), b"{}")
        .unwrap();
    h.gateway.set_down(false);
    h.dispatch.handle(std::slice::from_ref(&old)).await.unwrap();
    assert_eq!(h.results().pop().unwrap().outcome, "delivered");
}

#[tokio::test]
async fn a_rejected_event_is_recorded_and_not_retried() {
    let mut h = harness();
    h.gateway
        .script
        .lock()
        .unwrap()
        .push_back(DispatchOutcome::Rejected {
            status: 422,
            message: "unknown agent".into(),
        });
    let e = inbound(1, now(), "+15555550601", "hi");
    h.run(std::slice::from_ref(&e)).await.unwrap();
    h.dispatch.handle(std::slice::from_ref(&e)).await.unwrap();
    assert_eq!(h.gateway.seen().len(), 1, "no retry, no second pass");
    let r = &h.results()[0];
    assert_eq!(
        (r.outcome.as_str(), r.status, r.error.as_deref()),
        ("rejected", Some(422), Some("unknown agent"))
    );
    assert_eq!(
        h.dispatch
            .ledger_entry(Seq(1), "acquisitions")
            .unwrap()
            .unwrap()
            .outcome,
        "rejected"
    );
}

#[tokio::test]
async fn after_a_fail_over_a_fresh_dispatch_calls_the_gateway_only_for_the_events_without_a_result()
{
    // The shared log: four inbound messages.
    let h = harness();
    let t = now();
    for s in 1..=4 {
        let e = inbound(s, t + s as i64, &format!("+1555555070{s}"), "hi");
        let v = Verified::new(
            e.received_at,
            e.source,
            e.route,
            e.headers,
            e.body,
            e.verification,
        );
        h.log.append(v).await.unwrap();
    }
    let events = h.log.read(Seq(0), 100).unwrap();

    // Another replica, with state of its own, dispatched the first two before it died.
    let replica: Arc<dyn Log> = crate::consumers::testutil::OtherReplica::on(&h.log);
    let store = replica.state();
    let theirs = Arc::new(FakeGateway::default());
    let mut dispatch = Dispatch::new(
        settings(vec![]),
        theirs.clone(),
        replica.clone(),
        Alerter::disabled(),
        Metrics::new(),
    )
    .unwrap();
    Dedup::new(store.as_ref(), 72)
        .unwrap()
        .handle(&events)
        .await
        .unwrap();
    Compliance::new(store.as_ref(), Alerter::disabled())
        .unwrap()
        .handle(&events)
        .await
        .unwrap();
    dispatch.handle(&events[..2]).await.unwrap();
    assert_eq!(theirs.seen().len(), 2);
    let their_results = h.results();
    assert_eq!(their_results.len(), 2);

    // This replica takes over: its dedup and compliance have read the whole log, its
    // dispatch starts from 0 with an empty ledger.
    let Harness {
        _dir,
        log,
        gateway,
        mut dedup,
        mut compliance,
        dispatch,
    } = h;
    let all = log.read(Seq(0), 100).unwrap();
    let last = all.last().unwrap().seq;
    dedup.handle(&all).await.unwrap();
    compliance.handle(&all).await.unwrap();
    log.store_cursor(dedup::NAME, last).unwrap();
    log.store_cursor(compliance::NAME, last).unwrap();
    crate::consumers::testutil::drive_until(&log, dispatch, last).await;

    let seqs: Vec<u64> = gateway
        .bodies()
        .iter()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        vec![3, 4],
        "1 and 2 were dispatched by the other replica"
    );
    let ours = Dispatch::new(
        settings(vec![]),
        gateway.clone(),
        log.clone(),
        Alerter::disabled(),
        Metrics::new(),
    )
    .unwrap();
    for r in &their_results {
        let entry = ours.ledger_entry(Seq(r.seq), &r.agent).unwrap().unwrap();
        assert_eq!(
            (entry.outcome.as_str(), entry.idempotency_key.as_str()),
            ("delivered", r.idempotency_key.as_str()),
            "learned from the other replica's result"
        );
    }
}

#[tokio::test]
async fn learning_keeps_the_ledger_entries_this_process_wrote() {
    let mut h = harness();
    let ours = LedgerEntry {
        outcome: DELIVERED.into(),
        at: "2026-11-30T17:00:00Z".into(),
        idempotency_key: "hooklog:1:ours".into(),
        window: Some(3),
    };
    h.dispatch
        .ledger
        .insert(
            &ledger_key(Seq(1), "acquisitions"),
            &to_json(&ours).unwrap(),
        )
        .unwrap();
    let result = |seq: u64, outcome: &str| DispatchResult {
        seq,
        agent: "acquisitions".into(),
        idempotency_key: format!("hooklog:{seq}:theirs"),
        kind: "message.received".into(),
        outcome: outcome.into(),
        status: None,
        attempts: 1,
        latency_ms: 0,
        opted_out: false,
        redelivery: false,
        error: None,
        at: "2026-11-30T17:00:01Z".into(),
    };
    for r in [result(1, DEAD_LETTERED), result(2, REJECTED)] {
        h.log
            .append(OutboundRecord::Dispatch(r).to_verified(Micros::now()))
            .await
            .unwrap();
    }
    let batch = Arc::new(Batch::new(h.log.read(Seq(0), 100).unwrap()));
    h.dispatch.learn_effects(&batch).await.unwrap();
    h.dispatch.learn_effects(&batch).await.unwrap();
    let entry = |seq| h.dispatch.ledger_entry(Seq(seq), "acquisitions").unwrap();
    assert_eq!(entry(1), Some(ours), "kept, with its window");
    let learned = entry(2).unwrap();
    assert_eq!(
        (
            learned.outcome.as_str(),
            learned.idempotency_key.as_str(),
            learned.window
        ),
        (REJECTED, "hooklog:2:theirs", None)
    );
    assert!(h.gateway.seen().is_empty(), "learning calls nothing");
}

#[tokio::test]
async fn the_plan_counts_every_wake_up_a_window_would_perform_and_changes_nothing() {
    let mut h = harness_with(vec![Route {
        kinds: vec!["message.received".into()],
        provider: None,
        line: None,
        agent: "closer".into(),
        url: None,
    }]);
    let t = now();
    let mut sent = Vec::new();
    for s in 1..=3 {
        sent.push(inbound(s, t + s as i64, &format!("+1555555080{s}"), "hi"));
    }
    // The third arrives twice (a provider retry): dedup marks the copy, no one is woken.
    sent.push(sent[2].clone());
    for e in sent {
        let v = Verified::new(
            e.received_at,
            e.source,
            e.route,
            e.headers,
            e.body,
            e.verification,
        );
        h.log.append(v).await.unwrap();
    }
    let events = h.log.read(Seq(0), 100).unwrap();
    h.run(&events).await.unwrap();
    assert_eq!(h.gateway.seen().len(), 6, "3 events × 2 agents");

    let plan = h.dispatch.plan_redelivery(Seq(0), Seq(4)).unwrap();
    assert_eq!(
        (
            plan.unit.as_str(),
            plan.effects,
            plan.first_seq,
            plan.last_seq
        ),
        ("wake-ups", 6, Some(1), Some(3))
    );
    assert_eq!(plan.sample[..2], ["1:acquisitions", "1:closer"]);
    let plan = h.dispatch.plan_redelivery(Seq(2), Seq(4)).unwrap();
    assert_eq!(plan.effects, 2);
    assert_eq!(
        h.dispatch.max_redeliver(),
        (1000, "[dispatch] max_redeliver")
    );
    // Counting performed nothing and opened no window.
    assert_eq!(h.gateway.seen().len(), 6);
    assert!(h.dispatch.window().unwrap().is_none());
}
