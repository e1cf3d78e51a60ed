use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::oneshot;

use super::*;
use crate::config::secret::Secret;
use crate::config::Config;
use crate::edge::verifier::{IncomingRequest, WebhookRoute};
use crate::signature::{quo_legacy, standard_webhooks, twilio};

const QUO_KEY: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";
const QUO_KEY_2: &str = "c2Vjb25kLWtleS1mb3ItdGhlLXJvdGF0aW9uLXRlc3Q=";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const BASE: &str = "https://hooks.example.com";
const SALESMSG: &str = "salesmsg-secret-1";
const NOW: i64 = 1_760_000_000;
const FORM: &str = "application/x-www-form-urlencoded";

fn verifier() -> Verifier {
    let mut config = Config::default();
    config.openphone.signing_keys = vec![Secret::new(QUO_KEY), Secret::new(QUO_KEY_2)];
    config.twilio.auth_tokens = vec![Secret::new(TOKEN)];
    config.server.public_urls = vec![BASE.to_owned()];
    config.salesmsg.secrets = vec![Secret::new(SALESMSG)];
    Verifier::from_config(&config).unwrap()
}

fn quo_key() -> HmacKey {
    HmacKey::from_quo_secret(QUO_KEY).unwrap()
}

fn verify(
    v: &Verifier,
    path: &str,
    query: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Verified {
    let route = WebhookRoute::for_path(path).unwrap();
    let req = IncomingRequest {
        path: path.to_owned(),
        query: query.map(str::to_owned),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    v.verify(route, req, Micros(NOW * 1_000_000)).unwrap()
}

fn key(v: &Verifier, verified: &Verified) -> ReplayKey {
    ReplayKey::of_verified(verified, v).unwrap()
}

fn legacy(v: &Verifier, ts: &str, body: &[u8]) -> Verified {
    let sig = quo_legacy::sign(&quo_key(), ts, body);
    verify(
        v,
        "/webhook/quo",
        None,
        &[("openphone-signature", &sig)],
        body,
    )
}

fn standard(v: &Verifier, id: &str, ts: &str, body: &[u8]) -> Verified {
    let sig = standard_webhooks::sign(&quo_key(), id, ts, body);
    verify(
        v,
        "/webhook/quo",
        None,
        &[
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", &sig),
        ],
        body,
    )
}

fn twilio_form(v: &Verifier, path: &str, body: &[u8]) -> Verified {
    let sig = twilio::sign(
        &HmacKey::from_utf8(TOKEN),
        &format!("{BASE}{path}"),
        Some(FORM),
        body,
    );
    verify(
        v,
        path,
        None,
        &[("content-type", FORM), ("x-twilio-signature", &sig)],
        body,
    )
}

fn salesmsg(v: &Verifier, extra: &str, body: &[u8]) -> Verified {
    let query = format!("secret={SALESMSG}{extra}");
    verify(v, "/webhook/salesmsg", Some(&query), &[], body)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn standard_webhooks_keys_differ_when_the_id_the_timestamp_or_the_body_differs(
        id in "msg_[a-z0-9]{1,12}", dt in 1i64..200, body in prop::collection::vec(any::<u8>(), 0..64),
        other in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let v = verifier();
        let ts = NOW.to_string();
        let base = key(&v, &standard(&v, &id, &ts, &body));
        prop_assert_eq!(base, key(&v, &standard(&v, &id, &ts, &body)));
        prop_assert_ne!(base, key(&v, &standard(&v, &format!("{id}x"), &ts, &body)));
        prop_assert_ne!(base, key(&v, &standard(&v, &id, &(NOW - dt).to_string(), &body)));
        if other != body {
            prop_assert_ne!(base, key(&v, &standard(&v, &id, &ts, &other)));
        }
    }

    #[test]
    fn legacy_keys_differ_when_the_timestamp_or_the_body_differs(
        dt in 1i64..200, body in prop::collection::vec(any::<u8>(), 0..64),
        other in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let v = verifier();
        let ts = (NOW * 1000).to_string();
        let base = key(&v, &legacy(&v, &ts, &body));
        prop_assert_eq!(base, key(&v, &legacy(&v, &ts, &body)));
        prop_assert_ne!(base, key(&v, &legacy(&v, &((NOW - dt) * 1000).to_string(), &body)));
        if other != body {
            prop_assert_ne!(base, key(&v, &legacy(&v, &ts, &other)));
        }
    }

    #[test]
    fn twilio_and_salesmsg_keys_differ_when_the_route_or_the_body_differs(
        a in "[A-Za-z0-9]{1,16}", b in "[A-Za-z0-9]{1,16}",
    ) {
        let v = verifier();
        let body = format!("MessageSid=SM{a}&Body=hi");
        let other = format!("MessageSid=SM{b}&Body=hi");
        let t = key(&v, &twilio_form(&v, "/sms", body.as_bytes()));
        prop_assert_eq!(t, key(&v, &twilio_form(&v, "/sms", body.as_bytes())));
        prop_assert_ne!(t, key(&v, &twilio_form(&v, "/sms/status", body.as_bytes())));
        let s = key(&v, &salesmsg(&v, "", body.as_bytes()));
        prop_assert_eq!(s, key(&v, &salesmsg(&v, "", body.as_bytes())));
        prop_assert_ne!(s, key(&v, &salesmsg(&v, "&x=1", body.as_bytes())));
        if a != b {
            prop_assert_ne!(t, key(&v, &twilio_form(&v, "/sms", other.as_bytes())));
            prop_assert_ne!(s, key(&v, &salesmsg(&v, "", other.as_bytes())));
        }
    }
}

#[test]
fn the_key_of_a_verified_request_is_the_key_of_the_record_it_becomes() {
    let v = verifier();
    let body = br#"{"id":"EV1","type":"message.received"}"#;
    let ts = (NOW * 1000).to_string();
    let junk = format!(
        "hmac;1;{ts};{},{}",
        B64_JUNK,
        quo_legacy::sign(&quo_key(), &ts, body)
    );
    for verified in [
        legacy(&v, &ts, body),
        verify(
            &v,
            "/webhook/quo",
            None,
            &[("openphone-signature", &junk)],
            body,
        ),
        standard(&v, "msg_1", &NOW.to_string(), body),
        twilio_form(&v, "/voice", b"CallSid=CA1&From=%2B15555550123"),
        salesmsg(&v, "&a=b", body),
    ] {
        let k = key(&v, &verified);
        assert_eq!(
            ReplayKey::of_event(&verified.into_event(Seq(7)), &v),
            Some(k)
        );
    }
}

/// A valid base64 MAC (32 zero bytes) that no key made.
const B64_JUNK: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[test]
fn unsigned_variations_of_a_signed_request_have_its_key() {
    let v = verifier();
    let body = br#"{"id":"EV1","type":"message.received"}"#;
    // Standard Webhooks: a junk entry beside the real one, in either order.
    let id = "msg_1";
    let ts = NOW.to_string();
    let sig = standard_webhooks::sign(&quo_key(), id, &ts, body);
    let headers = |s: &str| {
        verify(
            &v,
            "/webhook/quo",
            None,
            &[
                ("webhook-id", id),
                ("webhook-timestamp", &ts),
                ("webhook-signature", s),
            ],
            body,
        )
    };
    let k = key(&v, &headers(&sig));
    assert_eq!(k, key(&v, &headers(&format!("v1,{B64_JUNK} {sig}"))));
    assert_eq!(k, key(&v, &headers(&format!("{sig} v2,zzz"))));
    // The route is not signed: the other Quo path, or an added query, is the same request.
    let other_path = verify(
        &v,
        "/webhook/openphone",
        Some("x=1"),
        &[
            ("webhook-id", id),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &sig),
        ],
        body,
    );
    assert_eq!(k, key(&v, &other_path));

    // Legacy: junk entries before and after, padding dropped.
    let ts_ms = (NOW * 1000).to_string();
    let real = quo_legacy::sign(&quo_key(), &ts_ms, body);
    let legacy_with = |h: &str| {
        verify(
            &v,
            "/webhook/quo",
            None,
            &[("openphone-signature", h)],
            body,
        )
    };
    let k = key(&v, &legacy_with(&real));
    assert_eq!(
        k,
        key(
            &v,
            &legacy_with(&format!("hmac;1;{ts_ms};{B64_JUNK},{real}"))
        )
    );
    assert_eq!(
        k,
        key(
            &v,
            &legacy_with(&format!("{real}, hmac;1;{ts_ms};{B64_JUNK}"))
        )
    );
    assert_eq!(k, key(&v, &legacy_with(real.trim_end_matches('='))));
    // Signed with the second configured key: found with that key.
    let second = quo_legacy::sign(&HmacKey::from_quo_secret(QUO_KEY_2).unwrap(), &ts_ms, body);
    let k2 = key(&v, &legacy_with(&second));
    assert_eq!(
        k2,
        key(
            &v,
            &legacy_with(&format!("hmac;1;{ts_ms};{B64_JUNK},{second}"))
        )
    );

    // Twilio: the form's parameters reordered and re-encoded still verify, and are the same.
    let t = twilio_form(&v, "/sms", b"MessageSid=SM1&Body=a+b");
    let sig = t.header_value("x-twilio-signature");
    let again = verify(
        &v,
        "/sms",
        None,
        &[
            ("content-type", FORM),
            (
                "x-twilio-signature",
                &format!(" {} ", sig.trim_end_matches('=')),
            ),
        ],
        b"Body=a%20b&MessageSid=SM1",
    );
    assert_eq!(key(&v, &t), key(&v, &again));
}

#[test]
fn only_webhook_records_have_keys() {
    let v = verifier();
    for (source, verification) in [
        (Source::BackfillQuo, Verification::AdminToken),
        (Source::BackfillTwilio, Verification::AdminToken),
        (Source::Outbound, Verification::AgentToken),
        (Source::Internal, Verification::Internal),
        // A webhook source with a verification the edge never gives it.
        (Source::Quo, Verification::AdminToken),
    ] {
        let e = Verified::new(
            Micros(0),
            source,
            "/x".into(),
            Vec::new(),
            b"{}".to_vec(),
            verification,
        );
        assert_eq!(ReplayKey::of_verified(&e, &v), None, "{source:?}");
    }
}

fn cache(entries: usize, window_secs: u64) -> Arc<ReplayCache> {
    let evicted = prometheus::IntCounter::new("evicted", "test").unwrap();
    Arc::new(ReplayCache::new(
        entries,
        Duration::from_secs(window_secs),
        evicted,
    ))
}

fn k(i: u64) -> ReplayKey {
    digest("test", &[&i.to_le_bytes()])
}

fn secs(s: i64) -> Micros {
    Micros(s * 1_000_000)
}

fn stored(c: &ReplayCache, key: u64, at: Micros) -> Option<Seq> {
    match c.step(&k(key), at) {
        Step::Stored(seq) => Some(seq),
        Step::Reserved => {
            c.settle(&k(key), None);
            None
        }
        Step::Pending => panic!("pending"),
    }
}

#[test]
fn a_full_cache_forgets_its_oldest_keys_first_and_counts_them() {
    let c = cache(SHARDS * 64, 3600);
    for i in 0..10_000u64 {
        c.remember(k(i), Seq(i + 1), Micros(secs(NOW).0 + i as i64), secs(NOW));
    }
    assert!(c.len() <= SHARDS * 64, "{} keys held", c.len());
    assert!(c.len() >= SHARDS * 64 * 3 / 4, "{} keys held", c.len());
    assert!(c.evicted.get() >= 10_000 - (SHARDS * 64) as u64);
    let now = secs(NOW + 1);
    // The newest are all remembered, the oldest all forgotten.
    for i in 9_900..10_000 {
        assert_eq!(stored(&c, i, now), Some(Seq(i + 1)), "key {i}");
    }
    for i in 0..100 {
        assert_eq!(stored(&c, i, now), None, "key {i}");
    }
}

#[test]
fn keys_that_expire_at_the_same_moment_are_evicted_an_eighth_at_a_time_not_all_at_once() {
    let c = cache(SHARDS * 64, 3600);
    for i in 0..10_000u64 {
        c.remember(k(i), Seq(i + 1), secs(NOW), secs(NOW));
    }
    assert!(c.len() >= SHARDS * 64 * 3 / 4, "{} keys held", c.len());
    assert!(c.len() <= SHARDS * 64, "{} keys held", c.len());
}

#[test]
fn a_key_is_remembered_for_the_window_of_event_time_and_no_longer() {
    let c = cache(100_000, 300);
    c.remember(k(1), Seq(5), secs(NOW), secs(NOW));
    assert_eq!(stored(&c, 1, secs(NOW + 299)), Some(Seq(5)));
    assert_eq!(stored(&c, 1, secs(NOW + 300)), None);
    // Already expired when remembered: not kept.
    c.remember(k(2), Seq(6), secs(NOW - 301), secs(NOW));
    assert_eq!(stored(&c, 2, secs(NOW)), None);
    // Expired keys are dropped from memory by the next sweep.
    for i in 10..100 {
        c.remember(k(i), Seq(i), secs(NOW), secs(NOW));
    }
    let later = secs(NOW + 1000);
    let fresh = SHARDS as u64 * 16;
    for i in 1000..1000 + fresh {
        c.remember(k(i), Seq(i), later, later);
    }
    assert_eq!(c.len() as u64, fresh, "only the fresh keys are held");
}

#[test]
fn a_key_is_pending_until_its_append_resolves_and_forgotten_if_it_failed() {
    let c = cache(1000, 300);
    let now = secs(NOW);
    assert!(matches!(c.step(&k(1), now), Step::Reserved));
    assert!(matches!(c.step(&k(1), now), Step::Pending));
    c.settle(&k(1), None);
    assert!(matches!(c.step(&k(1), now), Step::Reserved));
    c.settle(&k(1), Some(Seq(9)));
    assert!(matches!(c.step(&k(1), now), Step::Stored(Seq(9))));
    // A settle for a key that is no longer pending changes nothing.
    c.settle(&k(1), None);
    assert!(matches!(c.step(&k(1), now), Step::Stored(Seq(9))));
}

/// An append a [`Held`] log holds: the request and the sender of its ticket.
type HeldAppend = (Verified, oneshot::Sender<Result<Seq, LogError>>);

/// A log that holds every append until the test resolves it.
struct Held {
    inner: Arc<dyn Log>,
    waiting: Mutex<Vec<HeldAppend>>,
}

impl Held {
    fn new(dir: &std::path::Path) -> Arc<Held> {
        let inner = crate::log::sled::SledLog::open(
            dir,
            &crate::log::sled::SledOptions::default(),
            crate::metrics::Metrics::new(),
        )
        .unwrap();
        Arc::new(Held {
            inner: Arc::new(inner),
            waiting: Mutex::new(Vec::new()),
        })
    }

    fn held(&self) -> usize {
        self.waiting.lock().unwrap().len()
    }

    /// Resolves the held appends: stored, or failed.
    async fn resolve(&self, store: bool) {
        let held: Vec<_> = self.waiting.lock().unwrap().drain(..).collect();
        for (v, tx) in held {
            let r = if store {
                self.inner.append(v).await
            } else {
                Err(LogError::Storage("disk full".into()))
            };
            let _ = tx.send(r);
        }
    }
}

impl Log for Held {
    fn append(&self, event: Verified) -> AppendTicket {
        let (tx, ticket) = AppendTicket::channel();
        self.waiting.lock().unwrap().push((event, tx));
        ticket
    }
    fn read(&self, after: Seq, limit: usize) -> Result<Vec<Event>, LogError> {
        self.inner.read(after, limit)
    }
    fn get(&self, seq: Seq) -> Result<Option<Event>, LogError> {
        self.inner.get(seq)
    }
    fn stats(&self) -> Result<crate::log::LogStats, LogError> {
        self.inner.stats()
    }
    fn cursor(&self, consumer: &str) -> Result<Seq, LogError> {
        self.inner.cursor(consumer)
    }
    fn store_cursor(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        self.inner.store_cursor(consumer, seq)
    }
    fn cursors(&self) -> Result<Vec<(String, Seq)>, LogError> {
        self.inner.cursors()
    }
    fn watch_last_seq(&self) -> tokio::sync::watch::Receiver<Seq> {
        self.inner.watch_last_seq()
    }
    fn is_writable(&self) -> bool {
        true
    }
    fn close(&self) -> Result<(), LogError> {
        self.inner.close()
    }
    fn state(&self) -> Arc<dyn crate::state::StateStore> {
        self.inner.state()
    }
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..500 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{what}");
}

#[tokio::test]
async fn a_twin_waits_for_the_first_and_answers_as_its_replay_when_it_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let log = Held::new(dir.path());
    let v = Arc::new(verifier());
    let c = cache(1000, 3600);
    let request = legacy(&v, &(NOW * 1000).to_string(), b"{\"id\":\"EV1\"}");
    let first = tokio::spawn({
        let (c, v, log, r) = (c.clone(), v.clone(), log.clone(), request.clone());
        async move { c.append_once(&v, log.as_ref(), r).await.unwrap() }
    });
    until("the first append is held", || log.held() == 1).await;
    let twin = tokio::spawn({
        let (c, v, log, r) = (c.clone(), v.clone(), log.clone(), request.clone());
        async move { c.append_once(&v, log.as_ref(), r).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        log.held(),
        1,
        "the twin does not append while the first is pending"
    );
    assert!(!twin.is_finished());
    log.resolve(true).await;
    assert_eq!(first.await.unwrap(), Appended::New(Seq(1)));
    assert_eq!(twin.await.unwrap(), Appended::Replay(Seq(1)));
    assert_eq!(log.inner.stats().unwrap().count, 1);
    // Later copies are answered from the cache at once.
    assert_eq!(
        c.append_once(&v, log.as_ref(), request).await.unwrap(),
        Appended::Replay(Seq(1))
    );
}

#[tokio::test]
async fn a_twin_of_a_failed_append_appends_itself_and_a_retry_of_a_failed_one_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let log = Held::new(dir.path());
    let v = Arc::new(verifier());
    let c = cache(1000, 3600);
    let request = twilio_form(&v, "/sms", b"MessageSid=SM1&Body=hi");
    let first = tokio::spawn({
        let (c, v, log, r) = (c.clone(), v.clone(), log.clone(), request.clone());
        async move { c.append_once(&v, log.as_ref(), r).await }
    });
    until("the first append is held", || log.held() == 1).await;
    let twin = tokio::spawn({
        let (c, v, log, r) = (c.clone(), v.clone(), log.clone(), request.clone());
        async move { c.append_once(&v, log.as_ref(), r).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    log.resolve(false).await;
    assert!(matches!(first.await.unwrap(), Err(ReplayError::Append(_))));
    until("the twin appends itself", || log.held() == 1).await;
    log.resolve(true).await;
    assert_eq!(twin.await.unwrap(), Appended::New(Seq(1)));
    assert_eq!(log.inner.stats().unwrap().count, 1);
}

#[tokio::test]
async fn a_request_dropped_mid_append_still_settles_its_key_by_the_append_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let log = Held::new(dir.path());
    let v = Arc::new(verifier());
    let c = cache(1000, 3600);
    let request = salesmsg(&v, "", b"{\"id\":1}");
    let first = tokio::spawn({
        let (c, v, log, r) = (c.clone(), v.clone(), log.clone(), request.clone());
        async move { c.append_once(&v, log.as_ref(), r).await }
    });
    until("the first append is held", || log.held() == 1).await;
    first.abort();
    let _ = first.await;
    log.resolve(true).await;
    let mut answer = None;
    for _ in 0..100 {
        let got = c.append_once(&v, log.as_ref(), request.clone());
        match tokio::time::timeout(Duration::from_millis(20), got).await {
            Ok(r) => {
                answer = Some(r.unwrap());
                break;
            }
            Err(_) => continue,
        }
    }
    assert_eq!(answer, Some(Appended::Replay(Seq(1))));
    assert_eq!(log.held(), 0);
}

#[test]
fn a_rebuild_remembers_the_webhooks_of_the_window_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = crate::log::sled::SledLog::open(
        dir.path(),
        &crate::log::sled::SledOptions::default(),
        crate::metrics::Metrics::new(),
    )
    .unwrap();
    let v = verifier();
    let old = {
        let mut r = legacy(&v, &(NOW * 1000).to_string(), b"{\"id\":\"old\"}");
        r.received_at = secs(NOW - 4000);
        r
    };
    let new = [
        legacy(&v, &(NOW * 1000).to_string(), b"{\"id\":\"EV1\"}"),
        standard(&v, "msg_2", &NOW.to_string(), b"{}"),
        twilio_form(&v, "/sms", b"MessageSid=SM1"),
        salesmsg(&v, "", b"{}"),
    ];
    let backfill = Verified::new(
        secs(NOW),
        Source::BackfillQuo,
        "/admin/events".into(),
        Vec::new(),
        b"{}".to_vec(),
        Verification::AdminToken,
    );
    for r in std::iter::once(old.clone())
        .chain(new.iter().cloned())
        .chain([backfill])
    {
        log.append(r).wait_blocking().unwrap();
    }
    let c = cache(1000, 3600);
    let report = c.rebuild(&log, &v, secs(NOW + 10)).unwrap();
    assert_eq!(report.remembered, 4, "{report:?}");
    for (i, r) in new.iter().enumerate() {
        assert_eq!(
            c.step(&key(&v, r), secs(NOW + 10)).stored(),
            Some(Seq(i as u64 + 2))
        );
    }
    assert!(matches!(
        c.step(&key(&v, &old), secs(NOW + 10)),
        Step::Reserved
    ));

    // A cache smaller than the window's records reads only the newest (here the SalesMsg
    // webhook and the backfilled record, which has no key).
    let small = cache(2, 3600);
    small.rebuild(&log, &v, secs(NOW + 10)).unwrap();
    assert_eq!(small.len(), 1);
    assert_eq!(
        small.step(&key(&v, &new[3]), secs(NOW + 10)).stored(),
        Some(Seq(5))
    );
}

fn sled_log(dir: &std::path::Path) -> crate::log::sled::SledLog {
    crate::log::sled::SledLog::open(
        dir,
        &crate::log::sled::SledOptions::default(),
        crate::metrics::Metrics::new(),
    )
    .unwrap()
}

/// Distinct Standard Webhooks requests received at `at`.
fn webhooks(v: &Verifier, tag: &str, n: usize, at: Micros) -> Vec<Verified> {
    (0..n)
        .map(|i| {
            let mut r = standard(v, &format!("msg_{tag}_{i}"), &NOW.to_string(), b"{}");
            r.received_at = at;
            r
        })
        .collect()
}

fn append_all(log: &dyn Log, records: &[Verified]) -> Vec<Seq> {
    records
        .iter()
        .map(|r| log.append(r.clone()).wait_blocking().unwrap())
        .collect()
}

#[test]
fn a_snapshot_loaded_at_start_answers_as_the_cache_it_was_taken_from_without_reading_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = sled_log(dir.path());
    let v = verifier();
    // More than one chunk, so that chunking is exercised.
    let records = webhooks(&v, "a", SNAPSHOT_CHUNK + 10, secs(NOW));
    let seqs = append_all(&log, &records);
    let before = cache(100_000, 3600);
    before.rebuild(&log, &v, secs(NOW + 10)).unwrap();
    let saved = before.save_snapshot(&log).unwrap();
    assert_eq!(saved.entries, records.len() as u64);
    assert_eq!(saved.seq, seqs.last().unwrap().0);

    let after = cache(100_000, 3600);
    let r = after.restore(&log, &v, secs(NOW + 20)).unwrap();
    assert!(r.ignored.is_none(), "{:?}", r.ignored);
    assert_eq!(r.snapshot_seq, Some(saved.seq));
    assert_eq!(r.loaded, records.len() as u64);
    assert_eq!(r.rebuilt.read, 0, "nothing after the snapshot to read");
    for (rec, seq) in records.iter().zip(&seqs) {
        assert_eq!(
            after.step(&key(&v, rec), secs(NOW + 20)).stored(),
            Some(*seq)
        );
    }
    let fresh = webhooks(&v, "fresh", 1, secs(NOW + 20));
    assert!(matches!(
        after.step(&key(&v, &fresh[0]), secs(NOW + 20)),
        Step::Reserved
    ));
}

#[test]
fn entries_of_a_snapshot_that_expired_since_are_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let log = sled_log(dir.path());
    let v = verifier();
    let old = webhooks(&v, "old", 3, secs(NOW - 3000));
    let new = webhooks(&v, "new", 2, secs(NOW));
    append_all(&log, &old);
    let new_seqs = append_all(&log, &new);
    let c = cache(1000, 3600);
    c.rebuild(&log, &v, secs(NOW)).unwrap();
    assert_eq!(c.len(), 5);
    c.save_snapshot(&log).unwrap();

    // 700 s later the old ones (received 3000 s before NOW, window 3600 s) have expired.
    let later = secs(NOW + 700);
    let restored = cache(1000, 3600);
    let r = restored.restore(&log, &v, later).unwrap();
    assert!(r.ignored.is_none(), "{:?}", r.ignored);
    assert_eq!(r.loaded, 2);
    assert_eq!(restored.len(), 2);
    for rec in &old {
        assert!(matches!(
            restored.step(&key(&v, rec), later),
            Step::Reserved
        ));
    }
    for (rec, seq) in new.iter().zip(&new_seqs) {
        assert_eq!(restored.step(&key(&v, rec), later).stored(), Some(*seq));
    }
}

#[test]
fn a_corrupt_or_foreign_snapshot_is_ignored_and_the_cache_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = sled_log(dir.path());
    let v = verifier();
    let records = webhooks(&v, "a", 20, secs(NOW));
    let seqs = append_all(&log, &records);
    let check = |what: &str, c: &ReplayCache, r: &Restored| {
        assert!(r.ignored.is_some(), "{what}: the snapshot was used");
        assert_eq!(r.snapshot_seq, None, "{what}");
        assert_eq!(r.rebuilt.read, 20, "{what}: {r:?}");
        for (rec, seq) in records.iter().zip(&seqs) {
            assert_eq!(
                c.step(&key(&v, rec), secs(NOW + 10)).stored(),
                Some(*seq),
                "{what}"
            );
        }
    };
    let tree = log.state().tree(SNAPSHOT_OWNER, SNAPSHOT_TREE).unwrap();
    let save = || {
        let c = cache(1000, 3600);
        c.rebuild(&log, &v, secs(NOW)).unwrap();
        c.save_snapshot(&log).unwrap();
    };

    // A chunk cut short.
    save();
    let chunk = tree.get(&chunk_key(0)).unwrap().unwrap();
    tree.insert(&chunk_key(0), &chunk[..chunk.len() - 7])
        .unwrap();
    let c = cache(1000, 3600);
    check(
        "short chunk",
        &c,
        &c.restore(&log, &v, secs(NOW + 10)).unwrap(),
    );

    // A sequence the log never had in a chunk: the whole snapshot is dropped, not half of it.
    save();
    let mut chunk = tree.get(&chunk_key(0)).unwrap().unwrap();
    let last = chunk.len();
    chunk[last - 8..].copy_from_slice(&u64::MAX.to_be_bytes());
    tree.insert(&chunk_key(0), &chunk).unwrap();
    let c = cache(1000, 3600);
    check("bad seq", &c, &c.restore(&log, &v, secs(NOW + 10)).unwrap());

    // A header of another format.
    save();
    let mut header = tree.get(HEADER_KEY).unwrap().unwrap();
    header[0] = 9;
    tree.insert(HEADER_KEY, &header).unwrap();
    let c = cache(1000, 3600);
    check("format", &c, &c.restore(&log, &v, secs(NOW + 10)).unwrap());

    // A missing chunk.
    save();
    tree.remove(&chunk_key(0)).unwrap();
    let c = cache(1000, 3600);
    check(
        "missing chunk",
        &c,
        &c.restore(&log, &v, secs(NOW + 10)).unwrap(),
    );

    // Taken with another window (the configuration changed).
    save();
    let c = cache(1000, 7200);
    check("window", &c, &c.restore(&log, &v, secs(NOW + 10)).unwrap());

    // Beyond the log's end: another log.
    save();
    let mut header = tree.get(HEADER_KEY).unwrap().unwrap();
    header[1..9].copy_from_slice(&1000u64.to_be_bytes());
    tree.insert(HEADER_KEY, &header).unwrap();
    let c = cache(1000, 3600);
    check("foreign", &c, &c.restore(&log, &v, secs(NOW + 10)).unwrap());
}

#[test]
fn records_after_the_snapshots_sequence_come_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = sled_log(dir.path());
    let v = verifier();
    let first = webhooks(&v, "first", 5, secs(NOW));
    let first_seqs = append_all(&log, &first);
    let c = cache(1000, 3600);
    c.rebuild(&log, &v, secs(NOW)).unwrap();
    let saved = c.save_snapshot(&log).unwrap();
    // Stored after the snapshot (another process, or this one after a crash).
    let second = webhooks(&v, "second", 3, secs(NOW + 5));
    let second_seqs = append_all(&log, &second);

    let restored = cache(1000, 3600);
    let r = restored.restore(&log, &v, secs(NOW + 10)).unwrap();
    assert_eq!(r.snapshot_seq, Some(saved.seq));
    assert_eq!(r.loaded, 5);
    assert_eq!(
        r.rebuilt.read, 3,
        "only the records after the snapshot: {r:?}"
    );
    for (rec, seq) in first
        .iter()
        .zip(&first_seqs)
        .chain(second.iter().zip(&second_seqs))
    {
        assert_eq!(
            restored.step(&key(&v, rec), secs(NOW + 10)).stored(),
            Some(*seq)
        );
    }
}

#[test]
fn a_snapshot_holds_no_pending_key_and_a_second_one_replaces_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = sled_log(dir.path());
    let v = verifier();
    let records = webhooks(&v, "a", 3, secs(NOW));
    append_all(&log, &records);
    let c = cache(1000, 3600);
    c.rebuild(&log, &v, secs(NOW)).unwrap();
    assert!(matches!(c.step(&k(1), secs(NOW)), Step::Reserved));
    assert_eq!(c.save_snapshot(&log).unwrap().entries, 3);
    let small = cache(1000, 3600);
    assert_eq!(small.save_snapshot(&log).unwrap().entries, 0);
    let tree = log.state().tree(SNAPSHOT_OWNER, SNAPSHOT_TREE).unwrap();
    assert_eq!(
        tree.len().unwrap(),
        1,
        "the header only: old chunks are gone"
    );
}

impl Step {
    fn stored(self) -> Option<Seq> {
        match self {
            Step::Stored(seq) => Some(seq),
            _ => None,
        }
    }
}

impl Verified {
    fn header_value(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    }
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The memory figure of docs/configuration.md (`replay_cache_entries`): run alone, as
/// `cargo test --release --lib edge::replay::tests::memory -- --ignored --nocapture`.
#[test]
#[ignore = "measures the process's memory: run alone"]
fn memory_of_a_full_cache_of_a_million_entries() {
    let entries = 1_000_000;
    let c = cache(entries, 3600);
    let before = rss_kb();
    for i in 0..entries as u64 {
        c.remember(k(i), Seq(i + 1), secs(NOW), secs(NOW));
    }
    let after = rss_kb();
    let per_entry = (after - before) * 1024 / entries as u64;
    println!(
        "{} keys held; resident memory {} kB more, {per_entry} bytes per entry",
        c.len(),
        after - before
    );
    assert!(c.len() > entries * 7 / 8);
    assert!(per_entry < 100, "{per_entry} bytes per entry");
}
