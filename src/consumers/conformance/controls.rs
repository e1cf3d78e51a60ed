//! `controls` under the suite: the operator's stops (the kill switch and the pauses).

use super::{Crash, Mix, Snapshot, UnderTest, Up, World};
use crate::alerts::Alerter;
use crate::consumers::controls::{self, ControlsConsumer};
use crate::event::Seq;

struct UnderControls;

impl UnderTest for UnderControls {
    type C = ControlsConsumer;
    const NAME: &'static str = controls::NAME;
    const UPSTREAMS: &'static [Up] = &[];

    fn build(&self, w: &World) -> ControlsConsumer {
        ControlsConsumer::new(w.store().as_ref(), Alerter::disabled()).unwrap()
    }

    async fn project(&self, w: &World, snap: &mut Snapshot) {
        snap.trees(w.store().as_ref(), controls::NAME, &["stops"]);
    }

    fn crash(&self, mix: &Mix) -> Crash {
        Crash::AfterBatchWith(mix.seq("pause_dispatch"))
    }

    async fn missing_after(&self, w: &World, _bad: Seq) -> Vec<String> {
        let store = w.store();
        let mut missing = Vec::new();
        let off = w.mix.seq("kill_switch_off");
        match controls::stops::stored_kill_switch(store.as_ref()).unwrap() {
            Some(k) if !k.on && k.seq == off.0 => {}
            other => missing.push(format!("the kill switch is not off by {off}: {other:?}")),
        }
        let resumed = w.mix.seq("resume_dispatch");
        let pauses = controls::stops::stored_pauses(store.as_ref()).unwrap();
        if !pauses
            .iter()
            .any(|(n, p)| n == "dispatch" && !p.paused && p.seq == resumed.0)
        {
            missing.push(format!("dispatch is not resumed by {resumed}: {pauses:?}"));
        }
        missing
    }
}

properties!(UnderControls);
