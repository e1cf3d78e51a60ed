//! The Discord alerter against a fake Discord: a warp server on `127.0.0.1:0` that records
//! every POST and answers 204, or what a test scripts (429 with `retry_after`, 500, 404).
//! Time for coalescing and the hourly cap comes from an injected clock.

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hooklog::alerts::{Alert, Alerter, AlerterOptions, AlertsConfig, Severity};
use hooklog::clock::{Clock, ClockHand};
use hooklog::config::secret::Secret;
use hooklog::metrics::Metrics;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Filter;
use warp::Reply as _;

/// A scripted answer; without one the fake answers 204 like Discord.
#[derive(Clone, Debug)]
enum Reply {
    TooMany(f64),
    ServerError,
    /// A 404 whose body echoes the request path (which holds the webhook token).
    NotFound,
}

struct Post {
    body: Value,
    at: Instant,
}

struct FakeDiscord {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<Post>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl FakeDiscord {
    async fn start() -> FakeDiscord {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (p, s) = (posts.clone(), script.clone());
        let route = warp::post()
            .and(warp::path::full())
            .and(warp::body::json())
            .map(move |path: warp::path::FullPath, body: Value| {
                p.lock().unwrap().push(Post {
                    body,
                    at: Instant::now(),
                });
                match s.lock().unwrap().pop_front() {
                    Some(Reply::TooMany(secs)) => warp::reply::with_status(
                        warp::reply::json(&json!({
                            "message": "You are being rate limited.",
                            "retry_after": secs,
                            "global": false
                        })),
                        StatusCode::TOO_MANY_REQUESTS,
                    )
                    .into_response(),
                    Some(Reply::ServerError) => warp::reply::with_status(
                        "upstream error",
                        StatusCode::INTERNAL_SERVER_ERROR,
                    )
                    .into_response(),
                    Some(Reply::NotFound) => warp::reply::with_status(
                        warp::reply::json(&json!({
                            "message": format!("Unknown Webhook {}", path.as_str()),
                            "code": 10015
                        })),
                        StatusCode::NOT_FOUND,
                    )
                    .into_response(),
                    None => StatusCode::NO_CONTENT.into_response(),
                }
            });
        let (addr, server) = warp::serve(route).bind_ephemeral(([127, 0, 0, 1], 0));
        tokio::spawn(server);
        FakeDiscord {
            addr,
            posts,
            script,
        }
    }

    fn url(&self, token: &str) -> String {
        format!("http://{}/api/webhooks/1234/{token}", self.addr)
    }

    fn script(&self, replies: &[Reply]) {
        self.script.lock().unwrap().extend(replies.iter().cloned());
    }

    fn contents(&self) -> Vec<String> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.body["content"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct FakeClock(Clock, ClockHand);

impl FakeClock {
    fn new(at: &str) -> FakeClock {
        let (clock, hand) = Clock::manual(at.parse().unwrap());
        FakeClock(clock, hand)
    }
    fn advance(&self, secs: u64) {
        self.1.advance(Duration::from_secs(secs));
    }
    fn options(&self) -> AlerterOptions {
        AlerterOptions {
            clock: self.0.clone(),
            retry_backoff: Duration::from_millis(20),
        }
    }
}

fn config(url: &str) -> AlertsConfig {
    AlertsConfig {
        discord_webhook_url: Some(Secret::new(url)),
        ..AlertsConfig::default()
    }
}

fn alert(key: &str) -> Alert {
    Alert {
        key: key.into(),
        severity: Severity::Warning,
        title: format!("Records dead-lettered by {key}"),
        reason: "3 records could not be projected: unknown event type".into(),
        next_step: "hooklog-replay dead-letters".into(),
    }
}

/// `hooklog_alerts_total{outcome=…}` from the Prometheus text.
fn count(metrics: &Metrics, outcome: &str) -> u64 {
    let prefix = format!("hooklog_alerts_total{{outcome=\"{outcome}\"}} ");
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|n| n.parse().unwrap()))
        .unwrap_or_else(|| panic!("no {prefix} in metrics"))
}

/// Everything logged by this test binary (one global subscriber for all its tests, so
/// events from the sender task on other threads are caught too).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || W(w.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

const FLUSH: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_reaches_discord_with_its_title_reason_and_next_step() {
    logs();
    let discord = FakeDiscord::start().await;
    let metrics = Metrics::new();
    let alerter = Alerter::new(&config(&discord.url("tok")), Some(&metrics));
    alerter.raise(Alert {
        severity: Severity::Critical,
        ..alert("dead_letter:dedup")
    });
    assert!(alerter.flush(FLUSH).await);
    let posts = discord.posts.lock().unwrap();
    assert_eq!(posts.len(), 1);
    let body = &posts[0].body;
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    let content = body["content"].as_str().unwrap();
    assert!(content.contains("CRITICAL"), "{content}");
    assert!(content.contains("Records dead-lettered by dead_letter:dedup"));
    assert!(content.contains("3 records could not be projected: unknown event type"));
    assert!(content.contains("Next: hooklog-replay dead-letters"));
    assert_eq!(count(&metrics, "sent"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_alerts_with_one_key_inside_the_interval_send_one_and_the_next_says_plus_four() {
    logs();
    let discord = FakeDiscord::start().await;
    let metrics = Metrics::new();
    let clock = FakeClock::new("2026-05-04T14:05:00Z");
    let alerter = Alerter::with_options(
        &config(&discord.url("tok")),
        Some(&metrics),
        clock.options(),
    );
    for _ in 0..5 {
        alerter.raise(alert("dead_letter:dedup"));
        clock.advance(30);
    }
    assert!(alerter.flush(FLUSH).await);
    assert_eq!(discord.contents().len(), 1);
    assert_eq!(count(&metrics, "coalesced"), 4);
    clock.advance(300);
    alerter.raise(alert("dead_letter:dedup"));
    assert!(alerter.flush(FLUSH).await);
    let contents = discord.contents();
    assert_eq!(contents.len(), 2);
    assert!(
        contents[1].contains("(+4 similar since 14:05 UTC)"),
        "{}",
        contents[1]
    );
    assert!(!contents[0].contains("similar"));
    assert_eq!(count(&metrics, "sent"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_with_different_keys_are_sent_separately_in_order() {
    logs();
    let discord = FakeDiscord::start().await;
    let clock = FakeClock::new("2026-05-04T10:00:00Z");
    let alerter = Alerter::with_options(&config(&discord.url("tok")), None, clock.options());
    for key in ["dead_letter:dedup", "dead_letter:postgres", "sender:429"] {
        alerter.raise(alert(key));
    }
    assert!(alerter.flush(FLUSH).await);
    let contents = discord.contents();
    assert_eq!(contents.len(), 3);
    for (content, key) in
        contents
            .iter()
            .zip(["dead_letter:dedup", "dead_letter:postgres", "sender:429"])
    {
        assert!(
            content.contains(&format!("dead-lettered by {key}")),
            "{content}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_cap_holds_and_the_suppressed_count_follows_when_it_lifts() {
    logs();
    let discord = FakeDiscord::start().await;
    let metrics = Metrics::new();
    let clock = FakeClock::new("2026-05-04T10:00:00Z");
    let capped = AlertsConfig {
        max_per_hour: 3,
        ..config(&discord.url("tok"))
    };
    let alerter = Alerter::with_options(&capped, Some(&metrics), clock.options());
    for i in 0..8 {
        alerter.raise(alert(&format!("key{i}")));
        clock.advance(60);
    }
    assert!(alerter.flush(FLUSH).await);
    assert_eq!(discord.contents().len(), 3);
    assert_eq!(count(&metrics, "rate_limited"), 5);
    // Still inside the hour of the first message: nothing more goes out.
    clock.advance(60 * 50);
    alerter.raise(alert("key8"));
    assert!(alerter.flush(FLUSH).await);
    assert_eq!(discord.contents().len(), 3);
    // 10:00 + 1 h: the first slot is free again; the next alert carries the count.
    clock.advance(60 * 2);
    alerter.raise(alert("key9"));
    assert!(alerter.flush(FLUSH).await);
    let contents = discord.contents();
    assert_eq!(contents.len(), 4);
    assert!(
        contents[3].contains("dead-lettered by key9"),
        "{}",
        contents[3]
    );
    assert!(
        contents[3].contains("6 alerts suppressed by the rate limit since 10:03 UTC"),
        "{}",
        contents[3]
    );
    assert_eq!(count(&metrics, "sent"), 4);
    assert_eq!(count(&metrics, "rate_limited"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_retry_after_and_delivered() {
    logs();
    let discord = FakeDiscord::start().await;
    discord.script(&[Reply::TooMany(0.2)]);
    let metrics = Metrics::new();
    let alerter = Alerter::new(&config(&discord.url("tok")), Some(&metrics));
    alerter.raise(alert("dead_letter:dedup"));
    assert!(alerter.flush(FLUSH).await);
    let posts = discord.posts.lock().unwrap();
    assert_eq!(posts.len(), 2, "one 429, then the retry");
    let waited = posts[1].at - posts[0].at;
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert_eq!(posts[0].body, posts[1].body);
    assert_eq!(count(&metrics, "sent"), 1);
    assert_eq!(count(&metrics, "failed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_with_backoff_and_three_failures_give_up() {
    logs();
    let discord = FakeDiscord::start().await;
    let metrics = Metrics::new();
    let clock = FakeClock::new("2026-05-04T10:00:00Z");
    let alerter = Alerter::with_options(
        &config(&discord.url("tok")),
        Some(&metrics),
        clock.options(),
    );
    discord.script(&[Reply::ServerError]);
    alerter.raise(alert("a"));
    assert!(alerter.flush(FLUSH).await);
    assert_eq!(discord.contents().len(), 2);
    assert_eq!(count(&metrics, "sent"), 1);

    discord.script(&[Reply::ServerError, Reply::ServerError, Reply::ServerError]);
    alerter.raise(alert("b"));
    assert!(alerter.flush(FLUSH).await);
    let posts = discord.posts.lock().unwrap();
    assert_eq!(posts.len(), 5, "three tries for b, then it gives up");
    // Backoff 20 ms then 40 ms.
    assert!(posts[3].at - posts[2].at >= Duration::from_millis(20));
    assert!(posts[4].at - posts[3].at >= Duration::from_millis(40));
    assert_eq!(count(&metrics, "failed"), 1);
    assert_eq!(count(&metrics, "sent"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_discord_never_blocks_raise_and_is_counted_as_failed() {
    logs();
    // A port that was just free: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = Metrics::new();
    let clock = FakeClock::new("2026-05-04T10:00:00Z");
    let alerter = Alerter::with_options(
        &config(&format!("http://127.0.0.1:{port}/api/webhooks/1/tok")),
        Some(&metrics),
        clock.options(),
    );
    let started = Instant::now();
    for i in 0..5 {
        alerter.raise(alert(&format!("key{i}")));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(50), "raise took {took:?}");
    assert!(alerter.flush(FLUSH).await);
    assert_eq!(count(&metrics, "failed"), 5);
    assert_eq!(count(&metrics, "sent"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_url_and_token_never_appear_in_logs_or_debug() {
    let logs = logs();
    let token = "Zq9-webhook-token-never-logged";
    let discord = FakeDiscord::start().await;
    // A 404 that echoes the path, a 500 three times, and a refused connection.
    discord.script(&[
        Reply::NotFound,
        Reply::ServerError,
        Reply::ServerError,
        Reply::ServerError,
    ]);
    let clock = FakeClock::new("2026-05-04T10:00:00Z");
    let cfg = config(&discord.url(token));
    let alerter = Alerter::with_options(&cfg, None, clock.options());
    alerter.raise(alert("leak-check-404"));
    alerter.raise(alert("leak-check-500"));
    assert!(alerter.flush(FLUSH).await);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_cfg = config(&format!("http://127.0.0.1:{port}/api/webhooks/1/{token}"));
    let dead = Alerter::with_options(&dead_cfg, None, clock.options());
    dead.raise(alert("leak-check-refused"));
    assert!(dead.flush(FLUSH).await);

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    // The failures were logged (so the check below looked at something)...
    for key in ["leak-check-404", "leak-check-500", "leak-check-refused"] {
        assert!(text.contains(key), "no log line for {key}");
    }
    assert!(text.contains("HTTP 404 from Discord"), "{text}");
    assert!(text.contains("Connection Failed"), "{text}");
    // ...without the token.
    assert!(!text.contains(token), "the token is in the log:\n{text}");
    for debug in [
        format!("{cfg:?}"),
        format!("{alerter:?}"),
        format!("{dead_cfg:?}"),
    ] {
        assert!(!debug.contains(token), "{debug}");
    }
    let rendered = toml::to_string(&cfg).unwrap();
    assert!(!rendered.contains(token), "{rendered}");
}
