//! Rewind throughput of the dedup and compliance consumers (docs/architecture.md#performance-targets: ≥ 100 000 events/s
//! together, a 1 M-event rewind ≤ 30 s).
//!
//! Setup writes N realistic records into a fresh sled log (Quo legacy and Standard Webhooks
//! inbound messages, Twilio inbound SMS and status callbacks, with provider retries so that
//! about one record in ten is a duplicate and a few are opt-outs). Each iteration is a rewind:
//! both consumers reset their state, then the log is read in batches of 512 and handed to
//! dedup then compliance, exactly as the driver does (minus the wake-ups between tasks).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::FutureExt;
use hooklog::alerts::Alerter;
use hooklog::config::Config;
use hooklog::consumers::compliance::Compliance;
use hooklog::consumers::dedup::Dedup;
use hooklog::consumers::driver::{spawn_on_thread, DriverConfig, DriverContext};
use hooklog::consumers::{Batch, Consumer, Registry};
use hooklog::edge::verifier::{IncomingRequest, Verifier, WebhookRoute};
use hooklog::event::{Micros, Seq};
use hooklog::log::sled::{SledLog, SledOptions};
use hooklog::log::Log;
use hooklog::metrics::Metrics;
use hooklog::signature::{quo_legacy, twilio, HmacKey};
use std::sync::Arc;

/// Records in the log: 100 000, or `HOOKLOG_BENCH_EVENTS` (e.g. 1 000 000 to time the
/// 1 M-event rewind of docs/architecture.md#performance-targets directly; the benchmark names keep saying 100k).
fn events() -> u64 {
    std::env::var("HOOKLOG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(100_000)
}
const BATCH: usize = 512;

fn quo(n: u64, text: &str) -> String {
    serde_json::json!({
        "id": format!("EV{:032x}", n), "object": "event", "apiVersion": "v4",
        "createdAt": "2026-04-14T16:02:11.557Z", "type": "message.received",
        "data": {"object": {"id": format!("AC{:030x}", n), "object": "message",
            "from": format!("+1555{:07}", n % 5000), "to": ["+15555550100"], "direction": "incoming",
            "text": text, "status": "received", "createdAt": "2026-04-14T16:02:11.420Z",
            "userId": "USu5AsEHuQ", "phoneNumberId": "PNtoDbDhuz"}}
    })
    .to_string()
}

fn twilio(n: u64, body: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("ToCountry", "US")
        .append_pair("SmsMessageSid", &format!("SM{:032x}", n))
        .append_pair("NumMedia", "0")
        .append_pair("SmsSid", &format!("SM{:032x}", n))
        .append_pair("SmsStatus", "received")
        .append_pair("Body", body)
        .append_pair("To", "+15555550142")
        .append_pair("MessageSid", &format!("SM{:032x}", n))
        .append_pair("AccountSid", "ACe2250cadb2059f451a6f507d4c388012")
        .append_pair("From", &format!("+1555{:07}", n % 5000))
        .append_pair("ApiVersion", "2010-04-01")
        .finish()
}

/// Appends the records through the real verifier (only verified requests can be appended).
fn fill(log: &SledLog) {
    const QUO_KEY: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";
    const TOKEN: &str = "1ad9454bf158ce5e00b723d06dbb2e93";
    let (config, _) = Config::load_from(
        None,
        vec![
            (
                "HOOKLOG_OPENPHONE_SIGNING_KEYS".to_owned(),
                QUO_KEY.to_owned(),
            ),
            ("HOOKLOG_TWILIO_AUTH_TOKENS".to_owned(), TOKEN.to_owned()),
            (
                "HOOKLOG_SERVER_PUBLIC_URLS".to_owned(),
                "https://hooks.example.com".to_owned(),
            ),
        ],
    )
    .expect("bench config");
    let verifier = Verifier::from_config(&config).expect("keys");
    let quo_key = HmacKey::from_quo_secret(QUO_KEY).expect("key");
    let token = HmacKey::from_utf8(TOKEN);
    let texts = [
        "Is 3pm ok for the walkthrough?",
        "What's your best offer on the house?",
        "STOP",
        "call me tomorrow",
        "please remove me from your list",
        "yes",
    ];
    let mut tickets = Vec::new();
    for n in 0..events() {
        // One record in ten is a provider retry of the one before it.
        let id = if n % 10 == 9 { n - 1 } else { n };
        let text = texts[(id % 97 % texts.len() as u64) as usize];
        let now = Micros::now();
        let (route, req) = if id % 2 == 0 {
            let body = quo(id, text).into_bytes();
            let ts = (now.unix_secs() * 1000).to_string();
            let sig = quo_legacy::sign(&quo_key, &ts, &body);
            (
                WebhookRoute::Quo,
                IncomingRequest {
                    path: "/webhook/openphone".into(),
                    query: None,
                    headers: vec![("openphone-signature".into(), sig)],
                    body,
                },
            )
        } else {
            let body = twilio(id, text).into_bytes();
            let ct = "application/x-www-form-urlencoded";
            let sig = twilio::sign(&token, "https://hooks.example.com/sms", Some(ct), &body);
            (
                WebhookRoute::TwilioCallback,
                IncomingRequest {
                    path: "/sms".into(),
                    query: None,
                    headers: vec![
                        ("content-type".into(), ct.into()),
                        ("x-twilio-signature".into(), sig),
                    ],
                    body,
                },
            )
        };
        let verified = verifier
            .verify(route, req, now)
            .expect("signed requests verify");
        tickets.push(log.append(verified));
        if tickets.len() >= 4096 {
            for t in tickets.drain(..) {
                t.wait_blocking().expect("append");
            }
        }
    }
    for t in tickets {
        t.wait_blocking().expect("append");
    }
}

fn rewind(log: &dyn Log, dedup: &mut Dedup, compliance: &mut Compliance) -> u64 {
    dedup.reset().expect("reset");
    compliance.reset().expect("reset");
    let mut after = Seq(0);
    let mut n = 0;
    loop {
        let batch = log.read(after, BATCH).expect("read");
        let Some(last) = batch.last() else { return n };
        after = last.seq;
        n += batch.len() as u64;
        // One batch for both, as the drivers share it: compliance reuses dedup's parses.
        let batch = Arc::new(Batch::new(batch));
        dedup
            .handle_batch(&batch)
            .now_or_never()
            .expect("no await")
            .expect("dedup");
        compliance
            .handle_batch(&batch)
            .now_or_never()
            .expect("no await")
            .expect("compliance");
    }
}

/// One consumer rebuilt from the first record on this thread, parsing every record itself.
fn rebuild_alone(log: &dyn Log, consumer: &mut impl Consumer) {
    consumer.reset().expect("reset");
    let mut after = Seq(0);
    loop {
        let batch = Arc::new(Batch::new(log.read(after, BATCH).expect("read")));
        let Some(last) = batch.events().last().map(|e| e.seq) else {
            return;
        };
        consumer
            .handle_batch(&batch)
            .now_or_never()
            .expect("no await")
            .expect("handle");
        after = last;
    }
}

/// The real thing: both consumers under the shared driver, each on its own thread as in the
/// daemon (they run concurrently, compliance behind dedup), timed from the rewind until both
/// cursors reach the end of the log.
fn rewind_with_drivers(rt: &tokio::runtime::Runtime, ctx: &DriverContext) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for name in ["dedup", "compliance"] {
            ctx.registry
                .rewind(name, Seq(0), false, false)
                .await
                .expect("rewind");
        }
        loop {
            let done = ["dedup", "compliance"]
                .iter()
                .all(|n| ctx.log.cursor(n).expect("cursor").0 >= events());
            if done {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = SledLog::open(dir.path(), &SledOptions::default(), Metrics::new()).expect("open");
    fill(&log);
    let log: Arc<dyn Log> = Arc::new(log);
    let store = log.state();
    let mut group = c.benchmark_group("rewind");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(events()));

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
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let dedup = Dedup::new(store.as_ref(), 72).expect("dedup");
    let compliance = Compliance::new(store.as_ref(), Alerter::disabled()).expect("compliance");
    let threads = vec![
        spawn_on_thread(dedup, ctx.clone(), stop_rx.clone()).expect("thread"),
        spawn_on_thread(compliance, ctx.clone(), stop_rx.clone()).expect("thread"),
    ];
    group.bench_function("drivers_dedup_and_compliance_100k", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rewind_with_drivers(&rt, &ctx)).sum())
    });
    stop.send(true).expect("stop");
    rt.block_on(async {
        for t in threads {
            t.await.expect("driver");
        }
    });

    // The same work on one thread, one consumer after the other: the CPU cost per record.
    let mut dedup = Dedup::new(store.as_ref(), 72).expect("dedup");
    let mut compliance = Compliance::new(store.as_ref(), Alerter::disabled()).expect("compliance");
    group.bench_function("sequential_dedup_and_compliance_100k", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                assert_eq!(rewind(log.as_ref(), &mut dedup, &mut compliance), events());
            }
            start.elapsed()
        })
    });
    // Each consumer alone, on one thread.
    group.bench_function("sequential_dedup_only_100k", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rebuild_alone(log.as_ref(), &mut dedup);
            }
            start.elapsed()
        })
    });
    // Compliance reads dedup's verdicts: make sure they are all there even when a filter
    // runs this benchmark alone.
    rebuild_alone(log.as_ref(), &mut dedup);
    group.bench_function("sequential_compliance_only_100k", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rebuild_alone(log.as_ref(), &mut compliance);
            }
            start.elapsed()
        })
    });
    group.finish();

    // What a record costs before any state is touched.
    let sample = log.read(Seq(0), 1000).expect("read");
    let mut micro = c.benchmark_group("per_record");
    micro.throughput(Throughput::Elements(sample.len() as u64));
    micro.bench_function("parse", |b| {
        b.iter(|| {
            sample
                .iter()
                .filter(|e| hooklog::parse::parse(e).is_ok())
                .count()
        })
    });
    let texts: Vec<String> = sample
        .iter()
        .filter_map(|e| match hooklog::parse::parse(e).ok()?.data {
            hooklog::parse::Data::Message(m) => m.text,
            _ => None,
        })
        .collect();
    micro.throughput(Throughput::Elements(texts.len() as u64));
    micro.bench_function("classify", |b| {
        b.iter(|| {
            texts
                .iter()
                .filter(|t| {
                    hooklog::consumers::compliance::classifier::classify(t, None).is_opt_out()
                })
                .count()
        })
    });
    micro.finish();
    log.close().expect("close");
}

criterion_group!(benches, bench);
criterion_main!(benches);
