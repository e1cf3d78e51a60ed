//! `dedup` under the suite: its verdicts, its claims journal and how far it has processed.

use super::{dump, render_key, Crash, Mix, Snapshot, UnderTest, Up, World};
use crate::consumers::dedup::{self, Dedup, Verdict};
use crate::event::Seq;

struct UnderDedup;

impl UnderTest for UnderDedup {
    type C = Dedup;
    const NAME: &'static str = dedup::NAME;
    const UPSTREAMS: &'static [Up] = &[];

    fn build(&self, w: &World) -> Dedup {
        Dedup::new(w.store().as_ref(), dedup::DEFAULT_TTL_HOURS).unwrap()
    }

    async fn project(&self, w: &World, snap: &mut Snapshot) {
        let store = w.store();
        snap.trees(store.as_ref(), dedup::NAME, &["verdicts", "meta"]);
        // A journal entry lists its batch's claims in a hash map's order: compared as a set
        // (format byte 1, then 32 bytes per claim: digest, first seq, expiry).
        for (_, k, v) in dump(store.as_ref(), dedup::NAME, &["claims"]) {
            let (&format, claims) = v.split_first().unwrap();
            assert_eq!(format, 1, "claims journal format");
            let mut claims: Vec<String> = claims.chunks(32).map(hex::encode).collect();
            claims.sort();
            snap.put(format!("dedup/claims/{}", render_key(&k)), claims.join(","));
        }
    }

    fn crash(&self, mix: &Mix) -> Crash {
        Crash::AfterBatchWith(mix.seq("twilio_stop"))
    }

    async fn missing_after(&self, w: &World, bad: Seq) -> Vec<String> {
        let store = w.store();
        let mut missing = Vec::new();
        for seq in bad.0 + 1..=w.last().0 {
            if dedup::verdict(store.as_ref(), Seq(seq)).unwrap().is_none() {
                missing.push(format!("record {seq} has no verdict"));
            }
        }
        let (again, first) = (w.mix.seq("twilio_redelivery"), w.mix.seq("twilio_sms"));
        let verdict = dedup::verdict(store.as_ref(), again).unwrap();
        if verdict != Some(Verdict::Duplicate { of: first.0 }) {
            missing.push(format!(
                "record {again}: {verdict:?}, not a duplicate of {first}"
            ));
        }
        missing
    }
}

properties!(UnderDedup);
