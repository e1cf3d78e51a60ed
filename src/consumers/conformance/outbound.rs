//! `outbound` under the suite: the message projection and its indexes; its effects are the
//! decision records it appends when idle.

use super::mix::{message_id, Forgery, Unreadable};
use super::{dump, outbound_consumer, render_value, Crash, Mix, Snapshot, UnderTest, Up, World};
use crate::consumers::outbound::{Outbound, NAME};
use crate::consumers::outbound::{OutboundStore, Status};
use crate::event::Seq;

struct UnderOutbound;

impl UnderTest for UnderOutbound {
    type C = Outbound;
    const NAME: &'static str = NAME;
    const UPSTREAMS: &'static [Up] = &[Up::Controls, Up::Dedup, Up::Compliance];
    const EFFECTS: bool = true;

    fn build(&self, w: &World) -> Outbound {
        outbound_consumer(w)
    }

    async fn project(&self, w: &World, snap: &mut Snapshot) {
        let store = w.store();
        snap.trees(
            store.as_ref(),
            NAME,
            &[
                "messages",
                "idempotency",
                "open",
                "contacted",
                "lines",
                "api_keys",
                "requested",
            ],
        );
        // Keyed by when the gates cleared the message (the clock) and its id: the time goes
        // into the value, so that two runs compare by message.
        for (_, k, v) in dump(store.as_ref(), NAME, &["sends"]) {
            let (at, id) = k.split_first_chunk::<8>().unwrap();
            let value = serde_json::json!({
                "at": u64::from_be_bytes(*at),
                "entry": serde_json::from_str::<serde_json::Value>(&render_value(&v)).unwrap(),
            });
            snap.put(
                format!("outbound/sends/{}", String::from_utf8_lossy(id)),
                value.to_string(),
            );
        }
    }

    fn crash(&self, _mix: &Mix) -> Crash {
        Crash::AfterTickThatAppends
    }

    async fn missing_after(&self, w: &World, _bad: Seq) -> Vec<String> {
        let store = OutboundStore::open(w.store().as_ref()).unwrap();
        let mut missing = Vec::new();
        for n in 1..=6 {
            let id = message_id(n);
            match store.message(&id).unwrap() {
                Some(m) if m.approved || m.status == Status::Refused => {}
                other => missing.push(format!("request {n} ({id}) was not decided: {other:?}")),
            }
        }
        missing
    }
}

properties!(UnderOutbound);

#[tokio::test]
async fn an_unreadable_outbound_record_is_parked_not_skipped() {
    super::an_unreadable_outbound_record_is_parked_not_skipped(UnderOutbound, Unreadable::Decision)
        .await;
}

#[tokio::test]
async fn a_forged_allow_is_never_acted_on() {
    super::a_forged_daemon_record_is_never_acted_on(UnderOutbound, Forgery::Allow).await;
}
