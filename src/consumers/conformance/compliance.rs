//! `compliance` under the suite: the suppression list.

use super::mix::{Forgery, Unreadable};
use super::{Crash, Mix, Snapshot, UnderTest, Up, World};
use crate::alerts::Alerter;
use crate::consumers::compliance::{self, Compliance};
use crate::event::Seq;

struct UnderCompliance;

impl UnderTest for UnderCompliance {
    type C = Compliance;
    const NAME: &'static str = compliance::NAME;
    const UPSTREAMS: &'static [Up] = &[Up::Dedup];

    fn build(&self, w: &World) -> Compliance {
        Compliance::new(w.store().as_ref(), Alerter::disabled()).unwrap()
    }

    async fn project(&self, w: &World, snap: &mut Snapshot) {
        snap.trees(w.store().as_ref(), compliance::NAME, &["suppression"]);
    }

    fn crash(&self, mix: &Mix) -> Crash {
        Crash::AfterBatchWith(mix.seq("twilio_stop"))
    }

    async fn missing_after(&self, w: &World, _bad: Seq) -> Vec<String> {
        let store = w.store();
        let stop = w.mix.seq("late_stop");
        match compliance::entry(store.as_ref(), "+15555550178").unwrap() {
            Some(e) if e.is_suppressed() && e.seq == stop.0 => vec![],
            other => vec![format!("the STOP at {stop} is not on the list: {other:?}")],
        }
    }
}

properties!(UnderCompliance);

#[tokio::test]
async fn an_unreadable_outbound_record_is_parked_not_skipped() {
    super::an_unreadable_outbound_record_is_parked_not_skipped(
        UnderCompliance,
        Unreadable::OptOutChange,
    )
    .await;
}

#[tokio::test]
async fn a_forged_opt_out_lift_is_never_acted_on() {
    super::a_forged_daemon_record_is_never_acted_on(UnderCompliance, Forgery::OptOutLift).await;
}
