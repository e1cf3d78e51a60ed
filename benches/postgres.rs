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
//! `sink_10k_events_batch_1000_mirrored` is the same sink with `[[postgres.mirror]]` filling
//! three tables shaped like the Node handlers' (`omni_events` keyed on a text `event_id` without a
//! unique constraint, `openphone_messages` and `twilio_sms` keyed on their ids, each with a `jsonb`
//! payload), in the same run as the baseline, so the ratio between the two is the mirror's cost.
//!
//! The database is `$HOOKLOG_BENCH_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), in fresh schemas dropped at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hooklog::alerts::Alerter;
use hooklog::config::secret::Secret;
use hooklog::consumers::dedup::Dedup;
use hooklog::consumers::postgres::mirror::MirrorConfig;
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

/// The Node handlers' tables, in `schema` (created here: the mirror never creates a table).
const NODE_TABLES: &str = "
    create table omni_events (id bigserial primary key, source text, type text, event_id text,
        payload jsonb, received_at timestamptz);
    create index on omni_events (event_id);
    create table openphone_messages (id text primary key, payload jsonb);
    create table twilio_sms (sid text primary key, payload jsonb);";

fn mirrors(schema: &str) -> Vec<MirrorConfig> {
    let map = |table: &str, from: &str, key: &str, columns: &[(&str, &str)]| MirrorConfig {
        table: format!("{schema}.{table}"),
        from: from.into(),
        key: key.into(),
        columns: columns
            .iter()
            .map(|(c, f)| (c.to_string(), f.to_string()))
            .collect(),
    };
    vec![
        map(
            "omni_events",
            "omni_events",
            "event_id",
            &[
                ("event_id", "dedup_key"),
                ("source", "source"),
                ("type", "kind"),
                ("payload", "payload"),
                ("received_at", "received_at"),
            ],
        ),
        map(
            "openphone_messages",
            "openphone_messages",
            "id",
            &[("id", "id"), ("payload", "payload")],
        ),
        map(
            "twilio_sms",
            "twilio_sms",
            "sid",
            &[("sid", "sid"), ("payload", "payload")],
        ),
    ]
}

fn sink(schema: &str, mirror: Vec<MirrorConfig>, store: &Arc<MemState>) -> PostgresSink {
    let config = PostgresConfig {
        url: Some(Secret::new(url())),
        schema: schema.to_owned(),
        batch: BATCH,
        mirror,
        ..PostgresConfig::default()
    };
    PostgresSink::new(
        &config,
        72,
        store.clone(),
        Alerter::disabled(),
        &Metrics::new(),
    )
    .expect("sink")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pid = std::process::id();
    let (schema, mirrored, node) = (
        format!("hl_bench_{pid}"),
        format!("hl_bench_{pid}_m"),
        format!("hl_bench_{pid}_node"),
    );
    let drop_all = || {
        rt.block_on(async {
            if let Ok(c) =
                hooklog::consumers::postgres::connect(&url(), None, Duration::from_secs(10)).await
            {
                for s in [&schema, &mirrored, &node] {
                    let _ = c
                        .client
                        .simple_query(&format!("drop schema if exists \"{s}\" cascade"))
                        .await;
                }
            }
        })
    };
    rt.block_on(async {
        let c = hooklog::consumers::postgres::connect(&url(), None, Duration::from_secs(10))
            .await
            .expect("the bench database answers (is PostgreSQL running?)");
        c.client
            .batch_execute(&format!(
                "create schema \"{node}\"; set search_path to \"{node}\"; {NODE_TABLES}"
            ))
            .await
            .expect("the Node-shaped tables");
    });
    let store = Arc::new(MemState::default());
    let mut dedup = Dedup::new(store.as_ref(), 72).expect("dedup");
    let mut sinks = [
        (
            "sink_10k_events_batch_1000",
            sink(&schema, Vec::new(), &store),
        ),
        (
            "sink_10k_events_batch_1000_mirrored",
            sink(&mirrored, mirrors(&node), &store),
        ),
    ];
    for (_, sink) in &mut sinks {
        rt.block_on(sink.committed_cursor())
            .expect("the bench database answers (is PostgreSQL running?)");
    }

    // Both sinks take fresh records from one counter (dedup's verdicts are per record).
    let mut next = 1u64;
    let mut group = c.benchmark_group("postgres");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(PER_ITER));
    for (name, sink) in &mut sinks {
        group.bench_function(*name, |b| {
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
    }
    group.finish();
    drop(sinks);
    drop_all();
}

criterion_group!(benches, bench);
criterion_main!(benches);
