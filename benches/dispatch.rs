//! Receipt-to-dispatch latency (docs/architecture.md#performance-targets: p99 under 30 s) and dispatch throughput, live.
//!
//! The daemon's pipeline minus HTTP: dedup, compliance and dispatch each under the shared
//! driver on a thread of its own, over a fresh sled log. Each iteration appends a burst of
//! inbound Quo messages (group commit, as a webhook burst would) and waits until dispatch
//! has delivered every one to an in-process gateway that answers after `GATEWAY_MS`
//! (a typical agent gateway's time to accept). The gateway measures each event's latency
//! from its `received_at` (the moment hooklog received it) to the moment the POST reached
//! it; the percentiles are printed after the criterion figures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hooklog::alerts::Alerter;
use hooklog::config::Config;
use hooklog::consumers::compliance::Compliance;
use hooklog::consumers::dedup::Dedup;
use hooklog::consumers::dispatch::{
    BreakerConfig, DispatchOutcome, DispatchPolicy, DispatchRequest, Gateway, Route, Routes,
};
use hooklog::consumers::dispatch::{Dispatch, Settings};
use hooklog::consumers::driver::{spawn_on_thread, DriverConfig, DriverContext};
use hooklog::consumers::Registry;
use hooklog::edge::verifier::{IncomingRequest, Verifier, WebhookRoute};
use hooklog::event::Micros;
use hooklog::log::sled::{SledLog, SledOptions};
use hooklog::log::Log;
use hooklog::metrics::Metrics;
use hooklog::signature::{quo_legacy, HmacKey};

/// Events per burst.
const BURST: u64 = 500;
/// How long the fake gateway takes to accept a POST.
const GATEWAY_MS: u64 = 2;

/// Accepts every POST after `GATEWAY_MS` and keeps each event's receipt-to-arrival latency.
#[derive(Default)]
struct Gw {
    latencies: Mutex<Vec<Duration>>,
}

impl Gateway for Gw {
    fn post(&self, request: &DispatchRequest) -> DispatchOutcome {
        let body: serde_json::Value = serde_json::from_str(&request.body).expect("JSON body");
        let received = chrono::DateTime::parse_from_rfc3339(
            body["received_at"].as_str().expect("received_at"),
        )
        .expect("RFC 3339");
        let latency = chrono::Utc::now().signed_duration_since(received);
        self.latencies
            .lock()
            .expect("lock")
            .push(latency.to_std().unwrap_or_default());
        std::thread::sleep(Duration::from_millis(GATEWAY_MS));
        DispatchOutcome::Delivered { status: 202 }
    }
}

fn quo(n: u64) -> Vec<u8> {
    serde_json::json!({
        "id": format!("EV{:032x}", n), "object": "event", "apiVersion": "v4",
        "createdAt": "2026-04-14T16:02:11.557Z", "type": "message.received",
        "data": {"object": {"id": format!("AC{:030x}", n), "object": "message",
            "from": format!("+1555{:07}", n % 5000), "to": ["+15555550100"], "direction": "incoming",
            "text": "is the house on Elm St still for sale?", "status": "received",
            "createdAt": "2026-04-14T16:02:11.420Z", "phoneNumberId": "PNtoDbDhuz"}}
    })
    .to_string()
    .into_bytes()
}

const QUO_KEY: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";

/// The verifier (only verified requests can be appended) and the key to sign with.
fn signer() -> (Verifier, HmacKey) {
    let (config, _) = Config::load_from(
        None,
        vec![(
            "HOOKLOG_OPENPHONE_SIGNING_KEYS".to_owned(),
            QUO_KEY.to_owned(),
        )],
    )
    .expect("bench config");
    (
        Verifier::from_config(&config).expect("keys"),
        HmacKey::from_quo_secret(QUO_KEY).expect("key"),
    )
}

/// Appends one burst at once (signed and verified as the edge would) and waits until
/// dispatch has handled all of it.
fn burst(
    rt: &tokio::runtime::Runtime,
    log: &Arc<dyn Log>,
    (verifier, key): &(Verifier, HmacKey),
    first: u64,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let appends = (first..first + BURST).map(|n| {
            let now = Micros::now();
            let body = quo(n);
            let ts = (now.unix_secs() * 1000).to_string();
            let sig = quo_legacy::sign(key, &ts, &body);
            let req = IncomingRequest {
                path: "/webhook/openphone".into(),
                query: None,
                headers: vec![("openphone-signature".into(), sig)],
                body,
            };
            let verified = verifier
                .verify(WebhookRoute::Quo, req, now)
                .expect("signed requests verify");
            log.append(verified)
        });
        let seqs: Vec<u64> = futures_util::future::join_all(appends)
            .await
            .into_iter()
            .map(|r| r.expect("append").0)
            .collect();
        let last = seqs.iter().copied().max().expect("a burst");
        while log.cursor("dispatch").expect("cursor").0 < last {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        start.elapsed()
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn Log> =
        Arc::new(SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).expect("open"));
    let store = log.state();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ctx = DriverContext {
        log: log.clone(),
        store: store.clone(),
        registry: Arc::new(Registry::default()),
        metrics: Metrics::new(),
        alerter: Alerter::disabled(),
        config: DriverConfig::default(),
    };
    let gateway = Arc::new(Gw::default());
    let settings = Settings {
        url: "http://gateway.bench/dispatch".into(),
        routes: Routes::new(vec![Route {
            kinds: vec!["message.received".into()],
            provider: None,
            line: None,
            agent: "acquisitions".into(),
            url: None,
        }])
        .expect("routes"),
        policy: DispatchPolicy::default(),
        breaker: BreakerConfig::default(),
        dead_letter_after: Duration::from_secs(3600),
        max_event_age: None,
        max_redeliver: 1000,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let dedup = Dedup::new(store.as_ref(), 72).expect("dedup");
    let compliance = Compliance::new(store.as_ref(), Alerter::disabled()).expect("compliance");
    let dispatch = Dispatch::new(
        settings,
        gateway.clone(),
        log.clone(),
        Alerter::disabled(),
        Metrics::new(),
    )
    .expect("dispatch");
    let threads = vec![
        spawn_on_thread(dedup, ctx.clone(), stop_rx.clone()).expect("thread"),
        spawn_on_thread(compliance, ctx.clone(), stop_rx.clone()).expect("thread"),
        spawn_on_thread(dispatch, ctx.clone(), stop_rx.clone()).expect("thread"),
    ];

    let mut group = c.benchmark_group("dispatch");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(BURST));
    let signer = signer();
    let mut next = 0;
    group.bench_function("burst_of_500_to_a_2ms_gateway", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let d = burst(&rt, &log, &signer, next);
                    next += BURST;
                    d
                })
                .sum()
        })
    });
    group.finish();
    stop.send(true).expect("stop");
    rt.block_on(async {
        for t in threads {
            t.await.expect("driver");
        }
    });

    let mut all = gateway.latencies.lock().expect("lock").clone();
    all.sort();
    if !all.is_empty() {
        println!(
            "receipt→dispatch latency over {} events in bursts of {BURST}: p50 {:?}, p99 {:?}, max {:?}",
            all.len(),
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            all[all.len() - 1]
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
