//! What each provider answer and each last-moment check makes of a message: opt-outs, line
//! blocks, the kill switch, quiet hours, 429s, the limiter, missing credentials, 5xx.

use super::*;

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
async fn a_recipient_who_re_subscribed_on_one_line_is_sent_from_that_line_only() {
    let w = world();
    let (from_quo, mut events) = allowed(&w, QUO_LINE, TO).await;
    let (from_twilio, more) = allowed(&w, TWILIO_LINE, TO).await;
    events.extend(more);
    // After the decisions: STOP, then START, both to the Quo line's number.
    let quo_number = lines()[0].number.clone();
    let now = Micros::now().0;
    for (i, text) in [(1, "STOP"), (2, "START")] {
        let e = crate::consumers::testutil::quo_inbound_to(
            100 + i,
            now + i as i64 * 1_000_000,
            TO,
            &quo_number,
            text,
        );
        let v = Verified::new(
            e.received_at,
            e.source,
            e.route,
            e.headers,
            e.body,
            crate::event::Verification::QuoLegacy { key: 0 },
        );
        w.log.append(v).await.unwrap();
    }
    project_compliance(&w).await;
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    assert_eq!((w.quo.calls(), w.twilio.calls()), (1, 0));
    assert_eq!(results(&history(&w, &from_quo))[0].status, SendStatus::Sent);
    let r = &results(&history(&w, &from_twilio))[0];
    assert_eq!(
        (r.status, r.reasons[0].code),
        (SendStatus::Refused, ReasonCode::RecipientOptedOut)
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
async fn a_kill_switch_in_the_log_that_the_controls_projection_has_not_read_holds_every_call() {
    use crate::consumers::controls::{self, ControlAction, ControlRecord, ControlsConsumer};
    use crate::event::{Source, Verification};
    let w = world();
    let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
    // The operator turns the kill switch on after the decision; its projection lags.
    let record = ControlRecord {
        action: ControlAction::KillSwitch { on: true },
        reason: Some("wrong template".into()),
        at: "2026-11-30T17:00:02Z".into(),
        by: controls::OPERATOR.into(),
    };
    let on = w
        .log
        .append(Verified::new(
            Micros::now(),
            Source::Internal,
            controls::CONTROL_ROUTE.into(),
            vec![],
            serde_json::to_vec(&record).unwrap(),
            Verification::AdminToken,
        ))
        .await
        .unwrap();
    let mut s = sender(&w);
    s.wait_for_controls = true;
    let r = s.handle(&events).await;
    assert!(
        matches!(&r, Err(BatchError::Transient(e)) if e.contains("controls projection")),
        "held as a transient condition, not refused: {r:?}"
    );
    assert_eq!(
        w.twilio.calls(),
        0,
        "no call while the projection is behind"
    );
    assert!(results(&history(&w, &id)).is_empty(), "nothing decided yet");

    // The projection reads the record: the retried batch refuses the message, still no call.
    let mut c = ControlsConsumer::new(w.log.state().as_ref(), Alerter::disabled()).unwrap();
    c.handle(&[w.log.get(on).unwrap().unwrap()]).await.unwrap();
    w.log.store_cursor(controls::NAME, on).unwrap();
    s.handle(&events).await.unwrap();
    assert_eq!(w.twilio.calls(), 0);
    let r = &results(&history(&w, &id))[0];
    assert_eq!(
        (r.status, r.reasons[0].code),
        (SendStatus::Refused, ReasonCode::KillSwitch)
    );
    assert!(r.reasons[0].message.contains("wrong template"), "{r:?}");
}

#[tokio::test]
async fn a_pause_of_the_sender_in_the_log_stops_the_batch_before_the_next_call() {
    use crate::consumers::controls::{self, ControlAction, ControlRecord, ControlsConsumer};
    use crate::event::{Source, Verification};
    let w = world();
    let (id, events) = allowed(&w, TWILIO_LINE, TO).await;
    let record = ControlRecord {
        action: ControlAction::Pause {
            consumer: NAME.into(),
        },
        reason: None,
        at: "2026-11-30T17:00:02Z".into(),
        by: controls::OPERATOR.into(),
    };
    let pause = w
        .log
        .append(Verified::new(
            Micros::now(),
            Source::Internal,
            controls::CONTROL_ROUTE.into(),
            vec![],
            serde_json::to_vec(&record).unwrap(),
            Verification::AdminToken,
        ))
        .await
        .unwrap();
    let mut c = ControlsConsumer::new(w.log.state().as_ref(), Alerter::disabled()).unwrap();
    c.handle(&[w.log.get(pause).unwrap().unwrap()])
        .await
        .unwrap();
    let mut s = sender(&w);
    let r = s.handle(&events).await;
    assert!(
        matches!(&r, Err(BatchError::Transient(e)) if e.contains("paused")),
        "{r:?}"
    );
    assert_eq!(w.twilio.calls(), 0);
    assert!(results(&history(&w, &id)).is_empty());
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
