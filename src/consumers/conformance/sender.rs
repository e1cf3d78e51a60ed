//! `sender` under the suite: its effects ledger; its effects are the Quo and Twilio sends
//! (through the real HTTP clients) and the attempt, result and opt-out records it appends.

use std::sync::Arc;
use std::time::Duration;

use super::mix::{self, Forgery};
use super::{Crash, Mix, Snapshot, UnderTest, Up, World};
use crate::alerts::Alerter;
use crate::config::secret::Secret;
use crate::consumers::outbound::OutboundStore;
use crate::consumers::sender::{SendClients, Sender, SenderConfig, NAME};
use crate::event::Seq;
use crate::gates::ComplianceConfig;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::send::{quo, twilio, HttpOptions};

struct UnderSender;

impl UnderTest for UnderSender {
    type C = Sender;
    const NAME: &'static str = NAME;
    const UPSTREAMS: &'static [Up] = &[Up::Controls, Up::Dedup, Up::Compliance, Up::Outbound];
    const EFFECTS: bool = true;
    const DECIDED: bool = true;

    fn build(&self, w: &World) -> Sender {
        let clients = SendClients {
            openphone: Some(Arc::new(quo::Client::new(
                Secret::new("conformance-quo-key"),
                HttpOptions::new(w.api.base()),
            ))),
            twilio: Some(Arc::new(twilio::Client::new(
                "AC0123456789abcdef0123456789abcdef",
                Secret::new("conformance-twilio-token"),
                HttpOptions::new(w.api.base()),
            ))),
        };
        let config = SenderConfig {
            // One number sends twice: no need to wait the long code's second.
            twilio_per_second: 100,
            ..SenderConfig::default()
        };
        Sender::new(
            w.log.clone(),
            OutboundStore::open(w.store().as_ref()).unwrap(),
            ComplianceConfig::default(),
            mix::lines(),
            clients,
            &config,
            Arc::new(Alerter::disabled()),
            Metrics::new(),
        )
        .unwrap()
        .with_clock(mix::clock())
        .with_retry_policy(RetryPolicy {
            max_retries: 1,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
            ..RetryPolicy::default()
        })
    }

    async fn project(&self, w: &World, snap: &mut Snapshot) {
        snap.trees(w.store().as_ref(), NAME, &["ledger", "redeliver"]);
    }

    fn crash(&self, mix: &Mix) -> Crash {
        Crash::AfterBatchWith(mix.seq("r1_decision"))
    }

    async fn missing_after(&self, w: &World, _bad: Seq) -> Vec<String> {
        let calls = w.api.calls();
        // Allowed after the bad record: 1 through Quo, 5 (and 6, refused there) through Twilio.
        [1, 5, 6]
            .into_iter()
            .filter(|n| {
                let content = Mix::content(*n);
                let form: String = form_urlencoded::byte_serialize(content.as_bytes()).collect();
                !calls
                    .iter()
                    .any(|c| c.body.contains(&content) || c.body.contains(&form))
            })
            .map(|n| format!("allowed message {n} was not sent"))
            .collect()
    }
}

properties!(UnderSender);

#[tokio::test]
async fn a_forged_allow_is_never_acted_on() {
    super::a_forged_daemon_record_is_never_acted_on(UnderSender, Forgery::Allow).await;
}
