//! The backfill fetchers against fake Quo and Twilio APIs (`fake_providers`): the recipe,
//! pagination to the end, per-participant calls with an explicit user, rate limit under a
//! 429 storm, retries of 5xx, refused credentials, and resuming from a checkpoint.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use hooklog::backfill::{quo, twilio, Checkpoint, Progress, Range, Sink, SinkError, BACKFILL_RATE};
use hooklog::event::Source;
use hooklog::send::limiter::Limiter;

use crate::fake_providers::{self, FakeApi, Fault, DAY, QUO_KEY};
use hooklog::retry::RetryPolicy;

/// Keeps what it is given; refuses everything after `fail_after` resources if set.
#[derive(Default)]
struct Collect {
    items: Vec<(Source, String, Vec<u8>)>,
    last: Progress,
}

impl Sink for Collect {
    fn put(&mut self, source: Source, route: &str, body: &[u8]) -> Result<(), SinkError> {
        self.items.push((source, route.to_owned(), body.to_vec()));
        Ok(())
    }
    fn progress(&mut self, p: &Progress) {
        self.last = p.clone();
    }
}

impl Collect {
    fn routes(&self) -> BTreeSet<String> {
        self.items.iter().map(|(_, r, _)| r.clone()).collect()
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
    }
}

fn day_range() -> Range {
    let since = NaiveDate::parse_from_str(DAY, "%Y-%m-%d").unwrap();
    Range::new(since, since.succ_opt().unwrap()).unwrap()
}

fn quo_opts(fake: &FakeApi, key: &str) -> quo::Options {
    quo::Options {
        api_base: fake.base(),
        api_key: key.into(),
        range: day_range(),
        lines: Vec::new(),
        retry: fast_retry(),
        workspace_messages: false,
    }
}

fn run_quo(
    opts: &quo::Options,
    checkpoint: &mut Checkpoint,
) -> (Collect, Result<Progress, quo::QuoError>) {
    let mut sink = Collect::default();
    let limiter = Arc::new(Limiter::new(BACKFILL_RATE));
    let result = quo::backfill(opts, limiter, checkpoint, &mut sink);
    (sink, result)
}

fn memory_checkpoint(opts: &quo::Options) -> Checkpoint {
    Checkpoint::open(None, opts.run_key()).unwrap()
}

fn expected_quo_routes() -> BTreeSet<String> {
    [
        "/v1/messages/ACm1",
        "/v1/messages/ACm2",
        "/v1/messages/ACm3",
        "/v1/messages/ACm4",
        "/v1/messages/ACm5",
        "/v1/messages/ACg1",
        "/v1/messages/ACg2",
        "/v1/messages/ACm6",
        "/v1/messages/ACm7",
        "/v1/calls/ACc1",
        "/v1/calls/ACc2",
        "/v1/calls/ACc3",
        "/v1/calls/ACc4",
        "/v1/call-summaries/ACc1",
        "/v1/call-transcripts/ACc1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// No 1-second window (half open) holds more than 10 request arrivals.
fn assert_at_most_10_per_second(fake: &FakeApi) {
    let times: Vec<_> = fake.seen().iter().map(|s| s.at).collect();
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 10,
            "{in_window} requests within 1 s from request {i}"
        );
    }
}

#[test]
fn a_quo_day_is_fetched_whole_following_every_page_to_the_end_whatever_total_items_says() {
    let fake = FakeApi::start(fake_providers::quo_day());
    let opts = quo_opts(&fake, QUO_KEY);
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    let progress = result.unwrap();

    assert_eq!(sink.routes(), expected_quo_routes());
    assert_eq!(sink.items.len(), 15, "each resource exactly once");
    assert!(sink.items.iter().all(|(s, _, _)| *s == Source::BackfillQuo));
    // The body is the resource itself, as sent: the summary without its `data` wrapper.
    let summary = sink
        .items
        .iter()
        .find(|(_, r, _)| r == "/v1/call-summaries/ACc1")
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&summary.2).unwrap();
    assert_eq!(v["callId"], "ACc1");
    assert_eq!(progress.resources, 15);
    assert_eq!(progress.by_kind["messages"], 9);

    // CN1's five messages took three pages of two (totalItems said 1 every time).
    let seen = fake.seen();
    let cn1_pages: Vec<_> = seen
        .iter()
        .filter(|s| {
            s.path == "/v1/messages" && s.params_named("participants[]") == ["+15551110001"]
        })
        .collect();
    assert_eq!(cn1_pages.len(), 3);
    assert_eq!(cn1_pages[0].param("pageToken"), None);
    assert_eq!(cn1_pages[2].param("pageToken"), Some("tok4"));
    // Required parameters and the range on every message list.
    for s in seen.iter().filter(|s| s.path == "/v1/messages") {
        assert!(s.param("phoneNumberId").is_some() && s.param("maxResults") == Some("100"));
        assert_eq!(s.param("createdAfter"), Some("2026-03-02T00:00:00Z"));
        assert_eq!(s.param("createdBefore"), Some("2026-03-03T00:00:00Z"));
    }
    // The raw key, no Bearer.
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some(QUO_KEY)));
    assert_eq!(progress.requests, seen.len() as u64);
}

#[test]
fn the_workspace_wide_message_list_gives_the_same_day_and_stops_once_it_reaches_back_before_it() {
    let fake = FakeApi::start(fake_providers::quo_day());
    let opts = quo::Options {
        workspace_messages: true,
        ..quo_opts(&fake, QUO_KEY)
    };
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    let progress = result.unwrap();
    assert_eq!(sink.routes(), expected_quo_routes(), "the same resources");
    assert_eq!(progress.by_kind["messages"], 9);

    let seen = fake.seen();
    assert!(
        seen.iter().all(|s| s.path != "/v1/messages"),
        "no per-conversation message lists"
    );
    let walk: Vec<_> = seen.iter().filter(|s| s.path == "/messages").collect();
    assert!(
        walk.iter().all(|s| s.status == 200),
        "the version header was sent"
    );
    assert!(walk.iter().all(|s| s.param("limit") == Some("50")));
    // Pages of two, newest first: the fifth page holds the day's first message and the day
    // before's last, so the walk stops there and never asks for February.
    let cursors: Vec<Option<&str>> = walk.iter().map(|s| s.param("after")).collect();
    assert_eq!(
        cursors,
        [None, Some("cur2"), Some("cur4"), Some("cur6"), Some("cur8")]
    );

    // With --line, another line's messages are dropped.
    let fake = FakeApi::start(fake_providers::quo_day());
    let opts = quo::Options {
        workspace_messages: true,
        lines: vec!["PN2".into()],
        ..quo_opts(&fake, QUO_KEY)
    };
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    result.unwrap();
    let messages: Vec<String> = sink
        .routes()
        .into_iter()
        .filter(|r| r.starts_with("/v1/messages/"))
        .collect();
    assert_eq!(messages, ["/v1/messages/ACm6", "/v1/messages/ACm7"]);
}

#[test]
fn quo_calls_are_listed_one_participant_at_a_time_for_every_user_of_the_line() {
    let fake = FakeApi::start(fake_providers::quo_day());
    let opts = quo_opts(&fake, QUO_KEY);
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    result.unwrap();

    let calls: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1/calls")
        .collect();
    assert!(calls.iter().all(|s| s.status == 200));
    assert!(calls
        .iter()
        .all(|s| s.params_named("participants[]").len() == 1 && s.param("userId").is_some()));
    let users_asked: BTreeSet<_> = calls
        .iter()
        .filter(|s| s.param("phoneNumberId") == Some("PN1"))
        .map(|s| s.param("userId").unwrap().to_owned())
        .collect();
    assert_eq!(users_asked, BTreeSet::from(["US1".into(), "US2".into()]));
    // US2's call is only in US2's list: the default (owner) list would have missed it.
    assert!(sink.routes().contains("/v1/calls/ACc2"));
    // The group conversation's calls cannot be listed, and are not asked for.
    assert!(calls
        .iter()
        .all(|s| s.params_named("participants[]") != ["+15551110002"]));
}

#[test]
fn a_429_storm_is_waited_out_honouring_retry_after_and_never_over_10_requests_a_second() {
    let fake = FakeApi::start(fake_providers::quo_day());
    fake.with(|st| {
        for retry_after in [Some("1"), None, Some("1"), None] {
            st.faults.push_back(Fault {
                status: 429,
                retry_after: retry_after.map(str::to_owned),
            });
        }
    });
    let opts = quo_opts(&fake, QUO_KEY);
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    let progress = result.unwrap();
    assert_eq!(sink.routes(), expected_quo_routes());
    assert_eq!(progress.retries, 4);

    let seen = fake.seen();
    assert_eq!(seen.iter().filter(|s| s.status == 429).count(), 4);
    // The 429s carrying Retry-After: 1 (the first and the third) were waited out.
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));
    assert!(seen[3].at.duration_since(seen[2].at) >= Duration::from_secs(1));
    assert_at_most_10_per_second(&fake);
}

#[test]
fn the_limiter_keeps_a_long_run_under_10_requests_a_second() {
    let mut state = fake_providers::quo_day();
    state.page_cap = 1; // one item per page: many requests
    let fake = FakeApi::start(state);
    let opts = quo_opts(&fake, QUO_KEY);
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    let progress = result.unwrap();
    assert_eq!(sink.routes(), expected_quo_routes());
    assert!(progress.requests > 20, "{} requests", progress.requests);
    assert_at_most_10_per_second(&fake);
}

#[test]
fn server_errors_are_retried_and_the_run_completes() {
    let fake = FakeApi::start(fake_providers::quo_day());
    fake.with(|st| {
        st.faults.extend([500, 502, 503].map(|status| Fault {
            status,
            retry_after: None,
        }))
    });
    let opts = quo_opts(&fake, QUO_KEY);
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    let progress = result.unwrap();
    assert_eq!(sink.routes(), expected_quo_routes());
    assert_eq!(progress.retries, 3);
}

#[test]
fn a_server_that_keeps_failing_is_given_up_after_the_retry_budget() {
    let fake = FakeApi::start(fake_providers::quo_day());
    fake.with(|st| st.fail_matching.push(("/v1/phone-numbers".into(), 503)));
    let opts = quo_opts(&fake, QUO_KEY);
    let (_, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            quo::QuoError::Fetch(hooklog::backfill::FetchError::GaveUp { attempts: 5, .. })
        ),
        "{err}"
    );
    assert_eq!(fake.seen().len(), 5);
}

#[test]
fn a_refused_quo_key_is_a_clear_error_without_retries() {
    let fake = FakeApi::start(fake_providers::quo_day());
    let opts = quo_opts(&fake, "wrong-key");
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the Quo API key was refused (401): check [openphone] api_key"
    );
    assert_eq!(fake.seen().len(), 1);
    assert!(sink.items.is_empty());
}

#[test]
fn an_unknown_line_is_refused_naming_the_known_ones() {
    let fake = FakeApi::start(fake_providers::quo_day());
    let mut opts = quo_opts(&fake, QUO_KEY);
    opts.lines = vec!["+15559999999".into()];
    let (_, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    let msg = result.unwrap_err().to_string();
    assert!(
        msg.contains("PN1 (+15550000001)") && msg.contains("PN2"),
        "{msg}"
    );
}

#[test]
fn a_line_filter_fetches_only_that_line_by_number_or_id() {
    let fake = FakeApi::start(fake_providers::quo_day());
    let mut opts = quo_opts(&fake, QUO_KEY);
    opts.lines = vec![fake_providers::LINE_2.into()];
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    result.unwrap();
    assert_eq!(
        sink.routes(),
        ["/v1/messages/ACm6", "/v1/messages/ACm7", "/v1/calls/ACc4"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    assert!(fake
        .seen()
        .iter()
        .all(|s| s.param("phoneNumberId").is_none_or(|p| p == "PN2")));
}

#[test]
fn an_interrupted_quo_run_resumes_from_its_checkpoint_and_fetches_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.json");
    let fake = FakeApi::start(fake_providers::quo_day());
    // CN1's third page of messages fails hard: the first two pages (4 messages) are in.
    fake.with(|st| st.fail_matching.push(("pageToken=tok4".into(), 500)));
    let opts = quo_opts(&fake, QUO_KEY);

    let mut cp = Checkpoint::open(Some(&path), opts.run_key()).unwrap();
    let (first, result) = run_quo(&opts, &mut cp);
    assert!(matches!(
        result,
        Err(quo::QuoError::Fetch(
            hooklog::backfill::FetchError::GaveUp { .. }
        ))
    ));
    assert_eq!(first.items.len(), 4);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(saved["pages"]["messages:CN1"], "tok4");
    assert!(saved["done"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("conversations:PN1")));

    let before = fake.seen().len();
    fake.with(|st| st.fail_matching.clear());
    let mut cp = Checkpoint::open(Some(&path), opts.run_key()).unwrap();
    assert!(cp.resumed());
    let (second, result) = run_quo(&opts, &mut cp);
    result.unwrap();
    cp.finish().unwrap();
    assert!(!path.exists(), "a finished run removes its checkpoint");

    let rerun = &fake.seen()[before..];
    // PN1's conversations are not listed again, CN1's first pages are not fetched again.
    assert!(!rerun
        .iter()
        .any(|s| s.path == "/v1/conversations" && s.param("phoneNumbers[]") == Some("PN1")));
    let cn1: Vec<_> = rerun
        .iter()
        .filter(|s| {
            s.path == "/v1/messages" && s.params_named("participants[]") == ["+15551110001"]
        })
        .collect();
    assert_eq!(cn1.len(), 1);
    assert_eq!(cn1[0].param("pageToken"), Some("tok4"));

    assert_eq!(second.items.len(), 11);
    let all: BTreeSet<String> = first.routes().union(&second.routes()).cloned().collect();
    assert_eq!(all, expected_quo_routes());
}

#[test]
fn a_call_summary_answered_with_something_that_is_not_json_stops_the_run_and_is_not_stored() {
    let mut state = fake_providers::quo_day();
    state.raw_answers.push((
        "/v1/call-summaries/ACc1".into(),
        "<html>502 Bad Gateway</html>".into(),
    ));
    let fake = FakeApi::start(state);
    let opts = quo_opts(&fake, QUO_KEY);
    let mut checkpoint = memory_checkpoint(&opts);
    let (sink, result) = run_quo(&opts, &mut checkpoint);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("/v1/call-summaries/ACc1"), "{err}");
    assert!(!sink.routes().contains("/v1/call-summaries/ACc1"));
    for (_, route, body) in &sink.items {
        assert!(
            serde_json::from_slice::<serde_json::Value>(body).is_ok(),
            "{route} is not JSON"
        );
    }
}

fn twilio_opts(fake: &FakeApi, token: &str) -> twilio::Options {
    let sid = fake.with(|st| st.twilio_sid.clone());
    twilio::Options {
        api_base: fake.base(),
        account_sid: sid,
        auth_token: token.into(),
        range: day_range(),
        page_size: 1000,
        retry: fast_retry(),
    }
}

fn run_twilio(
    opts: &twilio::Options,
    checkpoint: &mut Checkpoint,
) -> (Collect, Result<Progress, twilio::TwilioError>) {
    let mut sink = Collect::default();
    let limiter = Arc::new(Limiter::new(BACKFILL_RATE));
    let result = twilio::backfill(opts, limiter, checkpoint, &mut sink);
    (sink, result)
}

#[test]
fn a_twilio_day_is_fetched_by_date_filters_following_next_page_uri_to_the_end() {
    let fake = FakeApi::start(fake_providers::twilio_day());
    let opts = twilio_opts(&fake, "twilio-test-token");
    let mut cp = Checkpoint::open(None, opts.run_key()).unwrap();
    let (sink, result) = run_twilio(&opts, &mut cp);
    let progress = result.unwrap();

    let expected: BTreeSet<String> = (1..=5)
        .map(|n| format!("/2010-04-01/Messages/SM{n:032}"))
        .chain((1..=3).map(|n| format!("/2010-04-01/Calls/CA{n:032}")))
        .collect();
    assert_eq!(sink.routes(), expected);
    assert_eq!(sink.items.len(), 8);
    assert!(sink
        .items
        .iter()
        .all(|(s, _, _)| *s == Source::BackfillTwilio));
    assert_eq!(progress.by_kind["messages"], 5);

    let seen = fake.seen();
    let messages: Vec<_> = seen
        .iter()
        .filter(|s| s.path.ends_with("/Messages.json"))
        .collect();
    assert_eq!(messages.len(), 3, "5 messages in pages of 2");
    assert!(messages[0].query.contains("DateSent%3E=2026-03-02"));
    assert!(messages[0].query.contains("DateSent%3C=2026-03-02"));
    assert_eq!(messages[2].param("PageToken"), Some("PA4"));
    let calls: Vec<_> = seen
        .iter()
        .filter(|s| s.path.ends_with("/Calls.json"))
        .collect();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].query.contains("StartTime%3E=2026-03-02"));
    assert!(seen.iter().all(|s| s
        .authorization
        .as_deref()
        .unwrap_or_default()
        .starts_with("Basic ")));
}

#[test]
fn refused_twilio_credentials_are_a_clear_error_without_retries() {
    let fake = FakeApi::start(fake_providers::twilio_day());
    let opts = twilio_opts(&fake, "wrong-token");
    let mut cp = Checkpoint::open(None, opts.run_key()).unwrap();
    let (_, result) = run_twilio(&opts, &mut cp);
    let err = result.unwrap_err();
    assert!(matches!(
        err,
        twilio::TwilioError::CredentialsRefused { status: 401 }
    ));
    assert!(err
        .to_string()
        .contains("check [twilio] account_sid and auth_tokens"));
    assert_eq!(fake.seen().len(), 1);
}

#[test]
fn an_interrupted_twilio_run_resumes_at_the_next_page_uri() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    let fake = FakeApi::start(fake_providers::twilio_day());
    fake.with(|st| st.fail_matching.push(("PageToken=PA2".into(), 503)));
    let opts = twilio_opts(&fake, "twilio-test-token");
    let mut cp = Checkpoint::open(Some(&path), opts.run_key()).unwrap();
    let (first, result) = run_twilio(&opts, &mut cp);
    assert!(result.is_err());
    assert_eq!(first.items.len(), 2);

    let before = fake.seen().len();
    fake.with(|st| st.fail_matching.clear());
    let mut cp = Checkpoint::open(Some(&path), opts.run_key()).unwrap();
    let (second, result) = run_twilio(&opts, &mut cp);
    result.unwrap();
    assert_eq!(second.items.len(), 6);
    let rerun = &fake.seen()[before..];
    assert_eq!(rerun[0].param("PageToken"), Some("PA2"));
    assert_eq!(first.routes().union(&second.routes()).count(), 8);
}

#[test]
fn a_twilio_next_page_uri_off_the_listing_is_refused_never_fetched_and_the_first_page_is_kept() {
    let hostile = [
        "https://evil.example/2010-04-01/Accounts/ACx/Messages.json?PageToken=PA2",
        "//evil.example/2010-04-01/Accounts/ACx/Messages.json?PageToken=PA2",
        "/2010-04-01/Accounts/ACsomeoneelse/Messages.json?PageToken=PA2",
        "/2010-04-01/Accounts/{sid}/Messages.json/../../../../v1/phone-numbers",
        "/v1/phone-numbers?PageToken=PA2",
    ];
    for template in hostile {
        let fake = FakeApi::start(fake_providers::twilio_day());
        let sid = fake.with(|st| st.twilio_sid.clone());
        let uri = template.replace("{sid}", &sid);
        fake.with(|st| st.twilio_next_page_uri = Some(uri.clone()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let opts = twilio_opts(&fake, "twilio-test-token");
        let mut cp = Checkpoint::open(Some(&path), opts.run_key()).unwrap();
        let (sink, result) = run_twilio(&opts, &mut cp);

        let err = result.unwrap_err();
        assert!(
            matches!(&err, twilio::TwilioError::NextPageRefused { unit, resources: 2, .. } if unit == "messages"),
            "{uri}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("refused to follow the messages listing's next_page_uri"),
            "{text}"
        );
        assert!(text.contains("after 2 resource(s)"), "{text}");
        // The first page's two messages were delivered; nothing else was asked of any host.
        assert_eq!(sink.items.len(), 2, "{uri}");
        let seen = fake.seen();
        assert_eq!(
            seen.len(),
            1,
            "{uri}: only the first page was fetched: {seen:?}"
        );
        assert!(seen[0]
            .path
            .ends_with(&format!("/Accounts/{sid}/Messages.json")));

        // The checkpoint kept the listing's start (no page token): the refused URI is not in
        // it, and a run resumed from it meets the same refusal, not the hostile host.
        let saved = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            !saved.contains("evil") && !saved.contains("phone-numbers"),
            "{saved}"
        );
    }
}

#[test]
fn a_checkpoint_whose_next_page_uri_leaves_the_listing_is_refused_before_any_request() {
    let fake = FakeApi::start(fake_providers::twilio_day());
    let opts = twilio_opts(&fake, "twilio-test-token");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    // A checkpoint left by a run stopped after the first page, then edited to point away.
    fake.with(|st| st.fail_matching.push(("PageToken=PA2".into(), 503)));
    let mut cp = Checkpoint::open(Some(&path), opts.run_key()).unwrap();
    let (_, result) = run_twilio(&opts, &mut cp);
    assert!(result.is_err());
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(saved.contains("PageToken=PA2"), "{saved}");
    std::fs::write(
        &path,
        saved.replace(
            "/2010-04-01/Accounts/",
            "https://evil.example/2010-04-01/Accounts/",
        ),
    )
    .unwrap();
    fake.with(|st| st.fail_matching.clear());
    let before = fake.seen().len();

    let mut cp = Checkpoint::open(Some(&path), opts.run_key()).unwrap();
    let (sink, result) = run_twilio(&opts, &mut cp);
    let err = result.unwrap_err();
    assert!(
        matches!(
            &err,
            twilio::TwilioError::NextPageRefused { resources: 0, .. }
        ),
        "{err:?}"
    );
    assert!(sink.items.is_empty());
    assert_eq!(fake.seen().len(), before, "nothing was fetched");
}

#[test]
fn a_conversation_listing_the_api_refuses_is_skipped_and_named_and_the_rest_is_fetched() {
    let fake = FakeApi::start(fake_providers::quo_day());
    // The group conversation CN2's messages (participants +15551110002, +15551110003).
    fake.with(|st| {
        st.fail_matching
            .push(("participants[]=%2B15551110002".into(), 400))
    });
    let opts = quo_opts(&fake, QUO_KEY);
    let (sink, result) = run_quo(&opts, &mut memory_checkpoint(&opts));
    let progress = result.unwrap();
    let mut expected = expected_quo_routes();
    expected.remove("/v1/messages/ACg1");
    expected.remove("/v1/messages/ACg2");
    assert_eq!(sink.routes(), expected);
    assert_eq!(progress.skipped.len(), 1);
    assert!(progress.skipped[0].starts_with("messages:CN2: the API answered 400"));
}
