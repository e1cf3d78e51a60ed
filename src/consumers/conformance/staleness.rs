//! `staleness` under the suite: the latest live inbound time it keeps for the monitor.

use std::sync::{Arc, Mutex};

use super::{Crash, Mix, Snapshot, UnderTest, Up, World};
use crate::consumers::staleness::{self, Staleness};
use crate::consumers::staleness::{StalenessConfig, StalenessMonitor};
use crate::event::Seq;

struct UnderStaleness;

impl UnderTest for UnderStaleness {
    type C = Staleness;
    const NAME: &'static str = staleness::NAME;
    const UPSTREAMS: &'static [Up] = &[Up::Dedup];

    fn build(&self, w: &World) -> Staleness {
        let monitor = StalenessMonitor::new(StalenessConfig::default()).unwrap();
        Staleness::new(w.store().as_ref(), Arc::new(Mutex::new(monitor))).unwrap()
    }

    async fn project(&self, w: &World, snap: &mut Snapshot) {
        snap.trees(w.store().as_ref(), staleness::NAME, &["meta"]);
    }

    fn crash(&self, mix: &Mix) -> Crash {
        Crash::AfterBatchWith(mix.seq("twilio_stop"))
    }

    async fn missing_after(&self, w: &World, _bad: Seq) -> Vec<String> {
        let last = w.mix.event("last_inbound");
        let meta = w.store().tree(staleness::NAME, "meta").unwrap();
        let stored = meta.get(b"last_inbound").unwrap();
        if stored.as_deref() == Some(&last.received_at.0.to_be_bytes()[..]) {
            vec![]
        } else {
            vec![format!(
                "the last inbound message ({}) is not the latest inbound time: {stored:?}",
                last.seq
            )]
        }
    }
}

properties!(UnderStaleness);
