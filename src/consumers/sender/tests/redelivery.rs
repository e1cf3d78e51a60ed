//! Redelivery with limits: what a window would send again (the plan, counted from the
//! ledger), and every re-send gated again at the last moment, counting toward the caps.

use super::*;
use crate::consumers::outbound::store::SentEntry;
use crate::gates::blast_safety::content_hash;

/// The outbound projection's note that `id` was cleared at noon (what blast safety counts).
fn cleared(w: &World, id: &MessageId, line: &str, to: &str, content: &str) {
    w.outbound
        .record_send(
            id,
            &SentEntry {
                line_id: line.into(),
                to: to.into(),
                content_hash: content_hash(content),
                at: noon_in_new_york(),
            },
        )
        .unwrap();
}

fn capped(cap: u32) -> ComplianceConfig {
    ComplianceConfig {
        recipient_cap_24h: cap,
        ..ComplianceConfig::default()
    }
}

fn codes(r: &SendResult) -> Vec<ReasonCode> {
    r.reasons.iter().map(|r| r.code).collect()
}

#[tokio::test]
async fn the_plan_counts_the_allowed_messages_in_range_that_were_attempted_and_nothing_else() {
    let w = world();
    let (a, mut events) = allowed(&w, QUO_LINE, TO).await;
    let (b, more) = allowed(&w, QUO_LINE, "+12125550101").await;
    events.extend(more);
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    project(&w);
    // A third message, allowed but never handled: a window sends it as a first send, not
    // again, so it is not counted.
    let (_c, more) = allowed(&w, QUO_LINE, "+12125550102").await;
    let last = more[1].seq;
    let plan = s.plan_redelivery(Seq(0), last).unwrap();
    assert_eq!(
        (
            plan.unit.as_str(),
            plan.effects,
            plan.first_seq,
            plan.last_seq
        ),
        ("sends", 2, Some(events[1].seq.0), Some(events[3].seq.0))
    );
    assert_eq!(plan.sample, [a.to_string(), b.to_string()]);
    // A narrower range counts only what is in it.
    let plan = s.plan_redelivery(events[1].seq, last).unwrap();
    assert_eq!(
        (plan.effects, plan.sample.clone()),
        (1, vec![b.to_string()])
    );
    // An attempt with no result is settled as unknown, never sent again: not counted.
    s.put_ledger(&b, 1, LedgerState::Attempting, None, None)
        .unwrap();
    assert_eq!(s.plan_redelivery(Seq(0), last).unwrap().effects, 1);
    // Counting changed nothing: no window, no call.
    assert_eq!(s.redelivery.current().unwrap(), None);
    assert_eq!(w.quo.calls(), 2);
}

#[tokio::test]
async fn a_resend_whose_recipient_cap_the_original_sends_reached_is_refused_with_that_reason_and_calls_nothing(
) {
    let w = world();
    let mut events = Vec::new();
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let content = format!("Acme: {text}. Reply STOP to opt out.");
        let (id, more) = allowed_saying(&w, QUO_LINE, TO, &content).await;
        cleared(&w, &id, QUO_LINE, TO, &content);
        ids.push(id);
        events.extend(more);
    }
    let mut s = sender_with(&w, capped(3), clients(&w));
    s.handle(&events).await.unwrap();
    project(&w);
    assert_eq!(
        w.quo.calls(),
        3,
        "the originals, each within the cap when decided"
    );

    // The window covers the first message and reaches past this batch: it stays open while
    // the batch is handled again.
    let through = Seq(events.last().unwrap().seq.0 + 100);
    s.redeliver(Seq(0), through).unwrap();
    s.handle(&events).await.unwrap();
    assert_eq!(
        w.quo.calls(),
        3,
        "the re-send was refused: no provider call"
    );
    let h = history(&w, &ids[0]);
    assert_eq!(attempts(&h).len(), 1, "no attempt for the refused re-send");
    let r = results(&h);
    assert_eq!(
        (r.len(), r[1].status, r[1].attempt),
        (2, SendStatus::Refused, 2)
    );
    assert_eq!(codes(&r[1]), [ReasonCode::RecipientCap24h]);
    // Handled again inside the window (a retried batch), even with the cap now higher: that
    // was the window's one try, nothing more is refused or sent.
    let mut again = sender_with(&w, capped(4), clients(&w));
    again.handle(&events).await.unwrap();
    assert_eq!(results(&history(&w, &ids[0])).len(), 2);
    assert_eq!(w.quo.calls(), 3);
}

#[tokio::test]
async fn a_resend_is_no_duplicate_of_itself_goes_out_once_and_counts_toward_the_cap_of_the_next() {
    let w = world();
    let first = "Acme: still selling 12 Elm St? Reply STOP to opt out.";
    let second = "Acme: a second question. Reply STOP to opt out.";
    let (a, mut events) = allowed_saying(&w, QUO_LINE, TO, first).await;
    cleared(&w, &a, QUO_LINE, TO, first);
    let (b, more) = allowed_saying(&w, QUO_LINE, TO, second).await;
    cleared(&w, &b, QUO_LINE, TO, second);
    events.extend(more);
    let mut s = sender_with(&w, capped(3), clients(&w));
    s.handle(&events).await.unwrap();
    project(&w);
    assert_eq!(w.quo.calls(), 2);

    // Both again: the first re-send is the 3rd message in 24 h (allowed, and not a
    // duplicate of its own original); the second would be the 4th.
    s.redeliver(Seq(0), events[3].seq).unwrap();
    s.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 3, "exactly one re-send went out");
    let ra = results(&history(&w, &a));
    assert_eq!((ra.len(), ra[1].status), (2, SendStatus::Sent));
    let rb = results(&history(&w, &b));
    assert_eq!((rb.len(), rb[1].status), (2, SendStatus::Refused));
    assert_eq!(codes(&rb[1]), [ReasonCode::RecipientCap24h]);
    // The re-send is in the history the caps read, as the projection keeps it.
    let since = noon_in_new_york() - chrono::Duration::hours(24);
    assert_eq!(w.outbound.sends_since(since).unwrap().len(), 3);
    // Handled again inside the window: nothing more.
    s.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 3);
}

#[tokio::test]
async fn a_resend_identical_to_another_message_or_without_first_contact_wording_is_refused() {
    let w = world();
    let same = "Acme: still selling? Reply STOP to opt out.";
    let (a, mut events) = allowed_saying(&w, QUO_LINE, TO, same).await;
    cleared(&w, &a, QUO_LINE, TO, same);
    let (b, more) = allowed_saying(&w, QUO_LINE, TO, same).await;
    cleared(&w, &b, QUO_LINE, TO, same);
    events.extend(more);
    // A first message to another recipient that lacks the opt-out wording (the gates of
    // the time let it through; they would not now): its own clearance made the recipient
    // a contact, which must not excuse it.
    let other = "+12125550103";
    let bare = "Acme here, quick question";
    let (c, more) = allowed_saying(&w, QUO_LINE, other, bare).await;
    cleared(&w, &c, QUO_LINE, other, bare);
    w.outbound
        .set_contacted(QUO_LINE, other, more[1].seq.0)
        .unwrap();
    events.extend(more);
    let mut s = sender(&w);
    s.handle(&events).await.unwrap();
    project(&w);
    assert_eq!(w.quo.calls(), 3);

    s.redeliver(Seq(0), events[5].seq).unwrap();
    s.handle(&events).await.unwrap();
    assert_eq!(w.quo.calls(), 3, "every re-send refused");
    for id in [&a, &b] {
        let r = results(&history(&w, id));
        assert_eq!(codes(&r[1]), [ReasonCode::DuplicateContent], "{id}");
    }
    let r = results(&history(&w, &c));
    assert_eq!(codes(&r[1]), [ReasonCode::FirstContactMissingOptOut]);
}
