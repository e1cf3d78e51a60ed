//! The hot path of docs/architecture.md#performance-targets: signature verification, and verify + durable append with group
//! commit, measured against the raw sled insert-then-flush ceiling in the same run.
//!
//! Groups (see `benches/README.md` for the figures and how to read them):
//!
//! - `verify/<scheme>`: [`Verifier::verify`] on a signed 1.2 KB request; one element = one
//!   request. Target ≤ 2 µs. `twilio_form_2urls` has two public URLs configured, the
//!   matching one second; `twilio_form_1url` is the same request with only that URL.
//! - `record/encode_4_schemes`: `Event::encode` of the four stored records, the per-event CPU
//!   work hooklog's single writer thread does besides sled's insert.
//! - `append/hooklog_verify_append/<N>`: N tokio producer tasks (2-worker runtime, like the
//!   edge) each looping `verify` → `Log::append(..).await`. The per-request path minus HTTP.
//! - `append/hooklog_append/<N>`: the same with requests verified up front (append only).
//! - `append/raw_sled_group_commit/<N>`: the same producer pattern against a minimal
//!   hand-rolled group commit straight on sled (crossbeam channel → one writer thread →
//!   insert the batch under big-endian keys → one `flush` → oneshot acks), writing the exact
//!   bytes hooklog writes. The ceiling hooklog's verify + append is compared with.
//! - `append/raw_sled_batch_flush/<K>`: one thread inserting K records then flushing once; the
//!   engine alone, with no cross-thread hand-off, for the batch sizes hooklog's writer reaches.
//! - `append/raw_sled_flush_each/<N>`: N threads each inserting one record and flushing: the
//!   naive design group commit replaces.
//!
//! Every append benchmark uses a fresh `tempfile::tempdir()` and the same sled options as the
//! daemon. At the end a summary prints events/s side by side, the ratio to the ceiling and
//! the mean batch size each writer achieved, read back from criterion's own estimates.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use crossbeam_channel::Receiver;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use hooklog::config::Config;
use hooklog::edge::verifier::{IncomingRequest, Verifier, WebhookRoute};
use hooklog::event::{Event, Micros, Seq, Verified};
use hooklog::log::sled::{SledLog, SledOptions, MAX_BATCH};
use hooklog::log::Log;
use hooklog::metrics::Metrics;
use hooklog::signature::{quo_legacy, standard_webhooks, twilio, HmacKey};

/// Body size the targets of docs/architecture.md#performance-targets are stated for.
const BODY_BYTES: usize = 1200;

/// Quo signing secret (base64; the test vector key of docs/reference/quo.md#test-vectors).
const QUO_KEY: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";
const TWILIO_TOKEN: &str = "1ad9454bf158ce5e00b723d06dbb2e93";
const SALESMSG_SECRET: &str = "sm_9f8e7d6c5b4a39281706f5e4d3c2b1a0";
/// Two public URLs, the one Twilio signs against second: every candidate URL variant of the
/// first is tried before the match, which is the realistic worst case after a tunnel move.
const PUBLIC_URLS: &str = "https://old-tunnel.example.net,https://hooks.example.com";
/// The base URL Twilio signs against; alone, it is the single-URL configuration of
/// `verify/twilio_form_1url`.
const SIGNED_BASE_URL: &str = "https://hooks.example.com";

/// Concurrent producers for the append benchmarks.
const PRODUCERS: [usize; 4] = [1, 16, 64, 256];
/// Threads for the naive insert + flush per record (the ref table's 1 / 16 / 64).
const FLUSH_EACH_THREADS: [usize; 3] = [1, 16, 64];
/// Batch sizes for the single-thread engine ceiling.
const BATCH_SIZES: [usize; 4] = [1, 16, 64, 256];

/// Events one criterion iteration appends across all producers: a multiple of the producer
/// count, large enough that start-up and tail of an iteration are a small part of it, small
/// enough that one iteration stays well under a second even without group commit.
fn events_per_iter(producers: usize) -> usize {
    (producers * 16).clamp(512, 4096)
}

/// Events per iteration of `raw_sled_flush_each` (each costs a flush, so fewer).
fn flush_each_events_per_iter(threads: usize) -> usize {
    (threads * 8).max(64)
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let stats = RunStats::default();
    bench_verify(&mut c);
    bench_record(&mut c);
    bench_append(&mut c, &stats);
    c.final_summary();
    print_summary(started, &stats);
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// One signed request per scheme, as the edge would hand it to the verifier.
struct Signed {
    name: &'static str,
    route: WebhookRoute,
    req: IncomingRequest,
}

/// `n` characters of an ordinary message text (ASCII, nothing JSON would escape).
fn filler(n: usize) -> String {
    const TEXT: &str = "Hi, this is Sam following up about the property on Elm Street. We can do \
                        the walkthrough Thursday at 3pm or Friday morning, whichever works better \
                        for you. Let me know if the price we discussed still works on your end. ";
    TEXT.chars().cycle().take(n).collect()
}

/// Builds `make(filler(len))` with `len` chosen so the result is as close to `BODY_BYTES` as
/// the encoding allows without exceeding it.
fn padded(make: impl Fn(&str) -> String) -> Vec<u8> {
    let mut len = BODY_BYTES.saturating_sub(make("").len());
    while len > 0 && make(&filler(len)).len() > BODY_BYTES {
        len -= 1;
    }
    make(&filler(len)).into_bytes()
}

fn header(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

fn config(public_urls: &str) -> Config {
    let (config, _provenance) = Config::load_from(
        None,
        vec![
            ("HOOKLOG_OPENPHONE_SIGNING_KEYS".into(), QUO_KEY.into()),
            ("HOOKLOG_TWILIO_AUTH_TOKENS".into(), TWILIO_TOKEN.into()),
            ("HOOKLOG_SERVER_PUBLIC_URLS".into(), public_urls.into()),
            ("HOOKLOG_SALESMSG_SECRETS".into(), SALESMSG_SECRET.into()),
        ],
    )
    .expect("the bench configuration is valid");
    config
}

/// Requests signed for receipt at `now` (so the ±300 s window check passes).
fn signed_requests(now: Micros) -> Vec<Signed> {
    let quo_key = HmacKey::from_quo_secret(QUO_KEY).expect("the bench Quo key is base64");
    let ts_ms = (now.0 / 1000).to_string();
    let ts_secs = now.unix_secs().to_string();

    let legacy_body =
        padded(|text| support::quo_message_received("EVc67ec998b35c41d388af50799aeeba3e", text));
    let legacy_sig = quo_legacy::sign(&quo_key, &ts_ms, &legacy_body);

    let standard_body = padded(|text| {
        serde_json::json!({
            "id": "EV1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c",
            "apiVersion": "2026-03-30",
            "createdAt": "2026-03-30T16:55:52.557Z",
            "type": "message.received",
            "data": {
                "resource": {
                    "id": "AC24a8b8321c4f4b2e9d1a7c3e5f6a8b9c",
                    "from": "+15555550123",
                    "to": ["+15555550100"],
                    "direction": "incoming",
                    "text": text,
                    "status": "received",
                    "createdAt": "2026-03-30T16:55:52.420Z",
                },
                "context": {
                    "senderIdentifier": "+15555550123",
                    "phoneNumberId": "PNtoDbDhuz",
                    "userId": "USu5AsEHuQ",
                },
                "links": {"quo": "https://my.quo.com/inbox/PNtoDbDhuz/c/CN7d1e2f3a4b"},
            },
        })
        .to_string()
    });
    let webhook_id = "msg_2xJ9QmZk4t7RbVnW1cYp8sLdHfE";
    let standard_sig = standard_webhooks::sign(&quo_key, webhook_id, &ts_secs, &standard_body);

    let twilio_body = padded(|text| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("ToCountry", "US")
            .append_pair("ToState", "CA")
            .append_pair("SmsMessageSid", "SM485d0e8848222369e9f2e13c7b92ab65")
            .append_pair("NumMedia", "0")
            .append_pair("ToCity", "")
            .append_pair("FromZip", "94110")
            .append_pair("SmsSid", "SM485d0e8848222369e9f2e13c7b92ab65")
            .append_pair("FromState", "CA")
            .append_pair("SmsStatus", "received")
            .append_pair("FromCity", "SAN FRANCISCO")
            .append_pair("Body", text)
            .append_pair("FromCountry", "US")
            .append_pair("To", "+15555550142")
            .append_pair("MessagingServiceSid", "MG927471329fe97b252d7575f32318f757")
            .append_pair("ToZip", "")
            .append_pair("NumSegments", "6")
            .append_pair("MessageSid", "SM485d0e8848222369e9f2e13c7b92ab65")
            .append_pair("AccountSid", "ACe2250cadb2059f451a6f507d4c388012")
            .append_pair("From", "+15555550123")
            .append_pair("ApiVersion", "2010-04-01")
            .finish()
    });
    let form = "application/x-www-form-urlencoded";
    let twilio_sig = twilio::sign(
        &HmacKey::from_utf8(TWILIO_TOKEN),
        &format!("{SIGNED_BASE_URL}/sms"),
        Some(form),
        &twilio_body,
    );

    let salesmsg_body = padded(|text| {
        serde_json::json!({
            "event": "message.received",
            "timestamp": "2025-06-02T16:55:52Z",
            "data": {
                "id": 918273645,
                "conversation_id": 55123987,
                "team_id": 4411,
                "direction": "inbound",
                "status": "received",
                "body": text,
                "media": [],
                "contact": {
                    "id": 7712093,
                    "first_name": "Jordan",
                    "last_name": "Rivera",
                    "number": "+15555550123",
                },
                "number": "+15555550142",
                "created_at": "2025-06-02T16:55:52Z",
            },
        })
        .to_string()
    });

    let json = header("content-type", "application/json");
    vec![
        Signed {
            name: "quo_legacy",
            route: WebhookRoute::Quo,
            req: IncomingRequest {
                path: "/webhook/quo".into(),
                query: None,
                headers: vec![
                    json.clone(),
                    header("user-agent", "OpenPhone Webhooks"),
                    header("openphone-signature", legacy_sig),
                ],
                body: legacy_body,
            },
        },
        Signed {
            name: "quo_standard_webhooks",
            route: WebhookRoute::Quo,
            req: IncomingRequest {
                path: "/webhook/quo".into(),
                query: None,
                headers: vec![
                    json.clone(),
                    header("user-agent", "Svix-Webhooks/1.63.1"),
                    header("webhook-id", webhook_id),
                    header("webhook-timestamp", ts_secs),
                    header("webhook-signature", standard_sig),
                ],
                body: standard_body,
            },
        },
        Signed {
            name: "twilio_form_2urls",
            route: WebhookRoute::TwilioCallback,
            req: IncomingRequest {
                path: "/sms".into(),
                query: None,
                headers: vec![
                    header("content-type", form),
                    header("user-agent", "TwilioProxy/1.1"),
                    header("x-twilio-signature", twilio_sig),
                    header(
                        "i-twilio-idempotency-token",
                        "3a450f79-96ff-e130-4092-67ce94393208",
                    ),
                ],
                body: twilio_body,
            },
        },
        Signed {
            name: "salesmsg",
            route: WebhookRoute::SalesMsg,
            req: IncomingRequest {
                path: "/webhook/salesmsg".into(),
                query: Some(format!("secret={SALESMSG_SECRET}")),
                headers: vec![json, header("user-agent", "SalesMsg-Webhooks/2.0")],
                body: salesmsg_body,
            },
        },
    ]
}

// ---------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------

fn bench_verify(c: &mut Criterion) {
    let verifier = Verifier::from_config(&config(PUBLIC_URLS)).expect("the bench keys decode");
    // A fixed receipt time equal to the signing time: `verify` is pure, so the figures do
    // not depend on when a benchmark runs and the window check can never go stale.
    let now = Micros::now();
    let signed = signed_requests(now);
    for s in &signed {
        eprintln!(
            "request {}: body {} bytes, {} kept headers",
            s.name,
            s.req.body.len(),
            s.req.headers.len()
        );
    }

    let mut group = c.benchmark_group("verify");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for s in &signed {
        group.bench_function(s.name, |b| {
            b.iter_batched(
                || s.req.clone(),
                |req| {
                    verifier
                        .verify(s.route, black_box(req), now)
                        .expect("a correctly signed request verifies")
                },
                BatchSize::SmallInput,
            )
        });
    }
    // The same Twilio request with only the matching public URL configured: half the
    // candidate URLs, so the share of the HMACs in the figure above shows.
    let one_url = Verifier::from_config(&config(SIGNED_BASE_URL)).expect("the bench keys decode");
    let twilio = signed
        .iter()
        .find(|s| s.name == "twilio_form_2urls")
        .expect("the Twilio request is built");
    group.bench_function("twilio_form_1url", |b| {
        b.iter_batched(
            || twilio.req.clone(),
            |req| {
                one_url
                    .verify(twilio.route, black_box(req), now)
                    .expect("a correctly signed request verifies")
            },
            BatchSize::SmallInput,
        )
    });
    // The same two-URL configuration with the `Host` header a tunnel forwards: the verifier
    // tries the URL of that host first, which is the usual production case.
    let mut with_host = twilio.req.clone();
    with_host.headers.push(header(
        "host",
        SIGNED_BASE_URL.trim_start_matches("https://"),
    ));
    let two_urls = Verifier::from_config(&config(PUBLIC_URLS)).expect("the bench keys decode");
    group.bench_function("twilio_form_2urls_host", |b| {
        b.iter_batched(
            || with_host.clone(),
            |req| {
                two_urls
                    .verify(twilio.route, black_box(req), now)
                    .expect("a correctly signed request verifies")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// append
// ---------------------------------------------------------------------------------------

/// Mean batch size per benchmark id, gathered while benchmarks run (warm-up included).
#[derive(Default)]
struct RunStats {
    batches: std::sync::Mutex<Vec<(String, f64)>>,
}

impl RunStats {
    fn record(&self, id: String, events: f64, batches: f64) {
        if batches > 0.0 {
            self.batches
                .lock()
                .expect("stats lock is never poisoned")
                .push((id, events / batches));
        }
    }

    fn mean_batch(&self, id: &str) -> Option<f64> {
        self.batches
            .lock()
            .expect("stats lock is never poisoned")
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, b)| *b)
    }
}

fn runtime() -> Runtime {
    // The daemon's shape on this machine: two workers for the edge tasks, plus the writer
    // thread the log starts for itself.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

fn open_log(dir: &tempfile::TempDir, metrics: &Metrics) -> Arc<SledLog> {
    Arc::new(
        SledLog::open(dir.path(), &SledOptions::default(), metrics.clone())
            .expect("the log opens in a fresh temp dir"),
    )
}

fn open_raw(dir: &tempfile::TempDir) -> (sled::Db, sled::Tree) {
    let options = SledOptions::default();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(options.cache_capacity)
        .flush_every_ms(options.flush_every_ms)
        .open()
        .expect("sled opens in a fresh temp dir");
    let tree = db.open_tree("events").expect("sled opens a tree");
    (db, tree)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temp dir can be created")
}

/// The records hooklog stores for each signed request: appended to a scratch log and read
/// back, so the raw sled benchmarks write exactly the bytes (and sizes) hooklog writes.
fn stored_events(verifier: &Verifier, signed: &[Signed]) -> Vec<Event> {
    let dir = tempdir();
    let log = open_log(&dir, &Metrics::new());
    for s in signed {
        let v = verifier
            .verify(s.route, s.req.clone(), Micros::now())
            .expect("a correctly signed request verifies");
        log.append(v)
            .wait_blocking()
            .expect("scratch append succeeds");
    }
    let events = log
        .read(Seq(0), signed.len())
        .expect("scratch log reads back");
    log.close().expect("scratch log closes");
    events
}

/// `Event::encode`: the per-record CPU work hooklog's writer thread does on top of sled's
/// insert, serially, for every event of a batch.
fn bench_record(c: &mut Criterion) {
    let verifier = Verifier::from_config(&config(PUBLIC_URLS)).expect("the bench keys decode");
    let signed = signed_requests(Micros::now());
    let events = stored_events(&verifier, &signed);
    let mut group = c.benchmark_group("record");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("encode_4_schemes", |b| {
        b.iter(|| {
            for e in &events {
                black_box(black_box(e).encode());
            }
        })
    });
    group.finish();
}

fn bench_append(c: &mut Criterion, stats: &RunStats) {
    let rt = runtime();
    let verifier =
        Arc::new(Verifier::from_config(&config(PUBLIC_URLS)).expect("the bench keys decode"));
    let records: Arc<Vec<Vec<u8>>> = Arc::new(
        stored_events(&verifier, &signed_requests(Micros::now()))
            .iter()
            .map(Event::encode)
            .collect(),
    );
    for (r, s) in records.iter().zip(signed_requests(Micros::now())) {
        eprintln!("record {}: {} bytes in the log", s.name, r.len());
    }

    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    for &n in &PRODUCERS {
        let per_iter = events_per_iter(n);
        group.throughput(Throughput::Elements(per_iter as u64));
        // Signed now, per producer count: one benchmark lasts seconds, far inside the window.
        let signed: Arc<Vec<(WebhookRoute, IncomingRequest)>> = Arc::new(
            signed_requests(Micros::now())
                .into_iter()
                .map(|s| (s.route, s.req))
                .collect(),
        );

        // verify + append: the per-request path of the edge minus HTTP. Producers cycle
        // through the four schemes; each request is cloned as if just read off the wire.
        {
            let dir = tempdir();
            let metrics = Metrics::new();
            let log = open_log(&dir, &metrics);
            group.bench_function(BenchmarkId::new("hooklog_verify_append", n), |b| {
                b.iter_custom(|iters| {
                    let each = iters as usize * per_iter / n;
                    rt.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..n)
                            .map(|p| {
                                let (log, verifier, signed) =
                                    (log.clone(), verifier.clone(), signed.clone());
                                tokio::spawn(async move {
                                    for i in 0..each {
                                        let (route, req) = &signed[(p + i) % signed.len()];
                                        let verified = verifier
                                            .verify(*route, req.clone(), Micros::now())
                                            .expect("a correctly signed request verifies");
                                        log.append(verified).await.expect("append succeeds");
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("producer task completes");
                        }
                        start.elapsed()
                    })
                })
            });
            record_hooklog_batches(stats, format!("hooklog_verify_append/{n}"), &metrics);
            log.close().expect("log closes");
        }

        // append only: requests verified up front, each append clones a `Verified`.
        {
            let verified: Arc<Vec<Verified>> = Arc::new(
                signed
                    .iter()
                    .map(|(route, req)| {
                        verifier
                            .verify(*route, req.clone(), Micros::now())
                            .expect("a correctly signed request verifies")
                    })
                    .collect(),
            );
            let dir = tempdir();
            let metrics = Metrics::new();
            let log = open_log(&dir, &metrics);
            group.bench_function(BenchmarkId::new("hooklog_append", n), |b| {
                b.iter_custom(|iters| {
                    let each = iters as usize * per_iter / n;
                    rt.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..n)
                            .map(|p| {
                                let (log, verified) = (log.clone(), verified.clone());
                                tokio::spawn(async move {
                                    for i in 0..each {
                                        let v = verified[(p + i) % verified.len()].clone();
                                        log.append(v).await.expect("append succeeds");
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("producer task completes");
                        }
                        start.elapsed()
                    })
                })
            });
            record_hooklog_batches(stats, format!("hooklog_append/{n}"), &metrics);
            log.close().expect("log closes");
        }

        // The ceiling: the same producers, a minimal group commit straight on sled.
        {
            let dir = tempdir();
            let (db, tree) = open_raw(&dir);
            let (tx, rx) = crossbeam_channel::bounded::<RawAppend>(16 * 1024);
            let batches = Arc::new(AtomicU64::new(0));
            let writer = {
                let batches = batches.clone();
                std::thread::spawn(move || raw_group_commit_writer(db, tree, rx, batches))
            };
            let appended = Arc::new(AtomicU64::new(0));
            group.bench_function(BenchmarkId::new("raw_sled_group_commit", n), |b| {
                b.iter_custom(|iters| {
                    let each = iters as usize * per_iter / n;
                    appended.fetch_add((each * n) as u64, Ordering::Relaxed);
                    rt.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..n)
                            .map(|p| {
                                let (tx, records) = (tx.clone(), records.clone());
                                tokio::spawn(async move {
                                    for i in 0..each {
                                        let record = records[(p + i) % records.len()].clone();
                                        let (done, ack) = oneshot::channel();
                                        tx.try_send((record, done))
                                            .expect("the raw queue has room");
                                        ack.await.expect("raw append succeeds");
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("producer task completes");
                        }
                        start.elapsed()
                    })
                })
            });
            drop(tx);
            writer.join().expect("raw writer thread completes");
            stats.record(
                format!("raw_sled_group_commit/{n}"),
                appended.load(Ordering::Relaxed) as f64,
                batches.load(Ordering::Relaxed) as f64,
            );
        }
    }

    // The engine alone: one thread, K inserts, one flush.
    for &k in &BATCH_SIZES {
        group.throughput(Throughput::Elements(k as u64));
        let dir = tempdir();
        let (db, tree) = open_raw(&dir);
        let mut next = 1u64;
        group.bench_function(BenchmarkId::new("raw_sled_batch_flush", k), |b| {
            b.iter(|| {
                for _ in 0..k {
                    let record = records[next as usize % records.len()].clone();
                    tree.insert(next.to_be_bytes(), record)
                        .expect("raw insert succeeds");
                    next += 1;
                }
                db.flush().expect("raw flush succeeds")
            })
        });
    }

    // The naive design: every writer flushes its own record.
    for &n in &FLUSH_EACH_THREADS {
        let per_iter = flush_each_events_per_iter(n);
        group.throughput(Throughput::Elements(per_iter as u64));
        let dir = tempdir();
        let (db, tree) = open_raw(&dir);
        let next = AtomicU64::new(1);
        group.bench_function(BenchmarkId::new("raw_sled_flush_each", n), |b| {
            b.iter_custom(|iters| {
                let each = iters as usize * per_iter / n;
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for p in 0..n {
                        let (db, tree, next, records) = (&db, &tree, &next, &records);
                        scope.spawn(move || {
                            for i in 0..each {
                                let key = next.fetch_add(1, Ordering::Relaxed);
                                let record = records[(p + i) % records.len()].clone();
                                tree.insert(key.to_be_bytes(), record)
                                    .expect("raw insert succeeds");
                                db.flush().expect("raw flush succeeds");
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn record_hooklog_batches(stats: &RunStats, id: String, metrics: &Metrics) {
    stats.record(
        id,
        metrics.batch_size.get_sample_sum(),
        metrics.batch_size.get_sample_count() as f64,
    );
}

type RawAppend = (Vec<u8>, oneshot::Sender<u64>);

/// hooklog's writer loop with everything but sled and the hand-off taken out: block for one
/// request, drain up to [`MAX_BATCH`], insert under big-endian keys, flush once, ack all.
fn raw_group_commit_writer(
    db: sled::Db,
    tree: sled::Tree,
    rx: Receiver<RawAppend>,
    batches: Arc<AtomicU64>,
) {
    let mut next = 1u64;
    let mut batch: Vec<RawAppend> = Vec::with_capacity(MAX_BATCH);
    let mut acks = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        for (record, done) in batch.drain(..) {
            tree.insert(next.to_be_bytes(), record)
                .expect("raw insert succeeds");
            acks.push((next, done));
            next += 1;
        }
        db.flush().expect("raw flush succeeds");
        batches.fetch_add(1, Ordering::Relaxed);
        for (seq, done) in acks.drain(..) {
            let _ = done.send(seq);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------

/// Where criterion writes its estimates, resolved the way criterion 0.5 does, except that
/// instead of asking `cargo metadata` it takes the workspace target directory (this package
/// is the workspace root) when run by cargo, and `./target` when the binary is run by hand.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(target).join("criterion")
    } else if std::env::var_os("CARGO").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("criterion")
    } else {
        PathBuf::from("target").join("criterion")
    }
}

/// Criterion's typical time per iteration (slope if measured, else mean), in ns, for a
/// benchmark that ran in this process.
fn estimate_ns(
    group: &str,
    function: &str,
    param: Option<usize>,
    since: SystemTime,
) -> Option<f64> {
    let mut path = criterion_dir().join(group).join(function);
    if let Some(p) = param {
        path = path.join(p.to_string());
    }
    let path = path.join("new").join("estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    ["slope", "mean"]
        .iter()
        .find_map(|k| json.get(k)?.get("point_estimate")?.as_f64())
}

fn fmt_rate(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"))
}

fn print_summary(since: SystemTime, stats: &RunStats) {
    let rate = |function: &str, param: usize, events: usize| {
        estimate_ns("append", function, Some(param), since).map(|ns| events as f64 * 1e9 / ns)
    };
    let mut out = String::from("\n== summary (criterion estimates from this run) ==\n");
    out.push_str("verify, µs per event (target ≤ 2):\n");
    for name in [
        "quo_legacy",
        "quo_standard_webhooks",
        "twilio_form_2urls",
        "twilio_form_1url",
        "twilio_form_2urls_host",
        "salesmsg",
    ] {
        if let Some(ns) = estimate_ns("verify", name, None, since) {
            out.push_str(&format!("  {name:<24} {:.3}\n", ns / 1000.0));
        }
    }
    if let Some(ns) = estimate_ns("record", "encode_4_schemes", None, since) {
        out.push_str(&format!(
            "record encode, µs per event (writer thread): {:.3}\n",
            ns / 4000.0
        ));
    }
    out.push_str(
        "append, events/s (targets: verify+append ≥ 25000 and ≥ 0.75 × raw group commit):\n",
    );
    out.push_str(&format!(
        "  {:>4}  {:>14} {:>14} {:>14} {:>7}  {:>22}\n",
        "N", "verify+append", "append only", "raw group", "ratio", "mean batch h/raw"
    ));
    for &n in &PRODUCERS {
        let events = events_per_iter(n);
        let va = rate("hooklog_verify_append", n, events);
        let a = rate("hooklog_append", n, events);
        let raw = rate("raw_sled_group_commit", n, events);
        let ratio = match (va, raw) {
            (Some(va), Some(raw)) => format!("{:.2}", va / raw),
            _ => "-".to_owned(),
        };
        let batch = |id: String| {
            stats
                .mean_batch(&id)
                .map_or_else(|| "-".to_owned(), |b| format!("{b:.1}"))
        };
        out.push_str(&format!(
            "  {n:>4}  {:>14} {:>14} {:>14} {ratio:>7}  {:>10} / {:<10}\n",
            fmt_rate(va),
            fmt_rate(a),
            fmt_rate(raw),
            batch(format!("hooklog_verify_append/{n}")),
            batch(format!("raw_sled_group_commit/{n}")),
        ));
    }
    out.push_str("raw sled, one thread, K inserts + 1 flush, events/s:\n");
    for &k in &BATCH_SIZES {
        out.push_str(&format!(
            "  K={k:<4} {}\n",
            fmt_rate(rate("raw_sled_batch_flush", k, k))
        ));
    }
    out.push_str("raw sled, insert + flush per record, N threads, events/s:\n");
    for &n in &FLUSH_EACH_THREADS {
        let events = flush_each_events_per_iter(n);
        out.push_str(&format!(
            "  N={n:<4} {}\n",
            fmt_rate(rate("raw_sled_flush_each", n, events))
        ));
    }
    eprint!("{out}");
}
