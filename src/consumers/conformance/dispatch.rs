//! `dispatch` under the suite: its effects ledger; its effects are the agent gateway's POSTs
//! (through the real HTTP client) and the result records it appends.

use std::sync::Arc;
use std::time::Duration;

use super::{Crash, Mix, Snapshot, UnderTest, Up, World};
use crate::alerts::Alerter;
use crate::config::secret::Secret;
use crate::consumers::dispatch::{
    BreakerConfig, Client, DispatchPolicy, GatewayOptions, Route, Routes,
};
use crate::consumers::dispatch::{Dispatch, Settings, NAME};
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;

struct UnderDispatch;

fn route(kind: &str, agent: &str) -> Route {
    Route {
        kinds: vec![kind.into()],
        provider: None,
        line: None,
        agent: agent.into(),
        url: None,
    }
}

impl UnderTest for UnderDispatch {
    type C = Dispatch;
    const NAME: &'static str = NAME;
    const UPSTREAMS: &'static [Up] = &[Up::Dedup, Up::Compliance];
    const EFFECTS: bool = true;

    fn build(&self, w: &World) -> Dispatch {
        let settings = Settings {
            url: format!("{}/dispatch", w.api.base()),
            routes: Routes::new(vec![
                route("message.received", "acquisitions"),
                route("call.completed", "dispositions"),
            ])
            .unwrap(),
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
        };
        let gateway = Client::new(Secret::new("conformance"), &GatewayOptions::default());
        Dispatch::new(
            settings,
            Arc::new(gateway),
            w.log.clone(),
            Alerter::disabled(),
            Metrics::new(),
        )
        .unwrap()
    }

    async fn project(&self, w: &World, snap: &mut Snapshot) {
        snap.trees(w.store().as_ref(), NAME, &["ledger", "ledger_meta"]);
    }

    fn crash(&self, mix: &Mix) -> Crash {
        // The first record it dispatches (the one before was dispatched by another replica).
        Crash::AfterBatchWith(mix.seq("twilio_sms"))
    }

    async fn missing_after(&self, w: &World, _bad: Seq) -> Vec<String> {
        let posted: Vec<u64> = w
            .api
            .calls()
            .iter()
            .filter_map(|c| serde_json::from_str::<serde_json::Value>(&c.body).ok())
            .filter_map(|b| b["seq"].as_u64())
            .collect();
        ["twilio_sms", "quo_call", "last_inbound"]
            .iter()
            .map(|name| w.mix.seq(name))
            .filter(|seq| !posted.contains(&seq.0))
            .map(|seq| format!("record {seq} was not dispatched (posted: {posted:?})"))
            .collect()
    }
}

properties!(UnderDispatch);
