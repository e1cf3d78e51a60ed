//! Sustained throughput of the Postgres sink into the local PostgreSQL (docs/architecture.md#performance-targets: ≥ 10 000
//! events/s).
//!
//! Each iteration projects 10 000 new records (fresh sequence numbers and ids, so every row
//! is an insert, as during a catch-up) in transactions of `postgres.batch` records (1000, the
//! default), exactly as the driver hands them to the consumer: verdicts read from dedup's
//! state, parse, rows, one upsert statement per table, the fenced cursor update, commit. The
//! mix is realistic and about 1.2 KB per body: a third Quo `message.received` (legacy v4),
//! a third Twilio inbound SMS (form), a third Twilio status callbacks of the SMS before them (so those
//! rows are updates), with one record in ten a provider retry (flagged duplicate: an
//! `omni_events` row only). Dedup runs on each iteration's records before the clock starts.
//!
//! The database is `$HOOKLOG_BENCH_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), in a fresh schema dropped at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hooklog::alerts::Alerter;
use hooklog::config::secret::Secret;
use hooklog::consumers::dedup::Dedup;
use hooklog::consumers::postgres::PostgresConfig;
use hooklog::consumers::postgres::PostgresSink;
use hooklog::consumers::Consumer;
use hooklog::event::{Event, Micros, Seq, Source, Verification};
use hooklog::metrics::Metrics;
use hooklog::state::MemState;

const PER_ITER: u64 = 10_000;
const BATCH: usize = 1000;

fn url() -> String {
    std::env::var("HOOKLOG_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn text(n: u64) -> String {
    let base = format!("Message {n}: is the house on Alder St still available? ");
    base.repeat(1000 / base.len() + 1)
}

fn quo(seq: u64, n: u64) -> Event {
    let body = serde_json::json!({
        "id": format!("EV{:032x}", n), "object": "event", "apiVersion": "v4",
        "createdAt": "2026-04-14T16:02:11.557Z", "type": "message.received",
        "data": {"object": {"id": format!("AC{:030x}", n), "object": "message",
            "from": format!("+1555{:07}", n % 5000), "to": ["+15555550100"], "direction": "incoming",
            "text": text(n), "status": "received", "createdAt": "2026-04-14T16:02:11.420Z",
            "userId": "USu5AsEHuQ", "phoneNumberId": "PNtoDbDhuz"}}
    })
    .to_string();
    event(
        seq,
        Source::Quo,
        "/webhook/openphone",
        "application/json",
        body,
    )
}

fn twilio(seq: u64, n: u64, status: Option<&str>) -> Event {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("ToCountry", "US")
        .append_pair("MessageSid", &format!("SM{:032x}", n))
        .append_pair("AccountSid", "ACe2250cadb2059f451a6f507d4c388012")
        .append_pair("From", &format!("+1555{:07}", n % 5000))
        .append_pair("To", "+15555550142")
        .append_pair("ApiVersion", "2010-04-01");
    let route = match status {
        Some(s) => {
            form.append_pair("MessageStatus", s);
            "/sms/status"
        }
        None => {
            form.append_pair("SmsStatus", "received")
                .append_pair("NumMedia", "0")
                .append_pair("Body", &text(n));
            "/sms"
        }
    };
    event(
        seq,
        Source::Twilio,
        route,
        "application/x-www-form-urlencoded",
        form.finish(),
    )
}

fn event(seq: u64, source: Source, route: &str, ct: &str, body: String) -> Event {
    Event {
        seq: Seq(seq),
        received_at: Micros(1_776_000_000_000_000 + seq as i64 * 1000),
        source,
        route: route.into(),
        headers: vec![("content-type".into(), ct.into())],
        body: body.into_bytes(),
        verification: Verification::Internal,
    }
}

/// Records `first..first + PER_ITER`.
fn records(first: u64) -> Vec<Event> {
    (first..first + PER_ITER)
        .map(|seq| {
            if seq % 10 == 9 {
                // A retry of the record before: same body, flagged duplicate.
                let mut e = records_one(seq - 1);
                e.seq = Seq(seq);
                return e;
            }
            records_one(seq)
        })
        .collect()
}

fn records_one(seq: u64) -> Event {
    match seq % 3 {
        0 => quo(seq, seq),
        1 => twilio(seq, seq, None),
        // A status callback of the SMS just before (an update of its row).
        _ => twilio(seq, seq.saturating_sub(1), Some("delivered")),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let schema = format!("hl_bench_{}", std::process::id());
    let store = Arc::new(MemState::default());
    let mut dedup = Dedup::new(store.as_ref(), 72).expect("dedup");
    let config = PostgresConfig {
        url: Some(Secret::new(url())),
        schema: schema.clone(),
        batch: BATCH,
        ..PostgresConfig::default()
    };
    let mut sink = PostgresSink::new(
        &config,
        72,
        store.clone(),
        Alerter::disabled(),
        &Metrics::new(),
    )
    .expect("sink");
    rt.block_on(sink.committed_cursor())
        .expect("the bench database answers (is PostgreSQL running?)");

    let mut next = 1u64;
    let mut group = c.benchmark_group("postgres");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(PER_ITER));
    group.bench_function("sink_10k_events_batch_1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let events = records(next);
                next += PER_ITER;
                rt.block_on(dedup.handle(&events)).expect("dedup");
                let started = Instant::now();
                for chunk in events.chunks(BATCH) {
                    rt.block_on(sink.handle(chunk)).expect("sink batch");
                }
                // The last transaction is still in flight: the clock stops when it committed.
                rt.block_on(sink.flush()).expect("sink commit");
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
    drop(sink);
    rt.block_on(async {
        if let Ok(c) =
            hooklog::consumers::postgres::connect(&url(), None, Duration::from_secs(10)).await
        {
            let _ = c
                .client
                .simple_query(&format!("drop schema if exists \"{schema}\" cascade"))
                .await;
        }
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
