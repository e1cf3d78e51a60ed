//! Tokens with roles and "only hooklog writes hooklog's own records", against the real server
//! (on the run's engine: sled, or JetStream in the second pass):
//!
//! - an agent token sends a message and reads it back (the history names the agent, whatever
//!   the caller's JSON says), and gets 403 on every operator route of the route table; the
//!   operator token reaches every route; any other token is 401;
//! - `POST /admin/events` refuses the daemon's own sources, and a backfill record that names a
//!   daemon route is logged but never acted on;
//! - records that claim to be a decision, an attempt, a result, a dispatch result, an opt-out
//!   edit or a line unblock, written straight into the stopped daemon's log with a writer that
//!   may not write them, are never acted on: no send, no state change, a dead letter for
//!   each consumer that would have acted, and a critical alert naming each.

use std::path::Path;
use std::time::Duration;

use hooklog::admin::routes::{Role, Route};
use hooklog::consumers::compliance::OptOutChange;
use hooklog::consumers::outbound::{
    DispatchResult, GateDecision, GateVerdict, LineChange, MessageId, MessageRequest,
    OutboundRecord, SendAttempt, SendResult, SendStatus,
};
use hooklog::event::{Micros, Verification};
use hooklog::provider::SendProvider;
use serde_json::{json, Value};

use crate::fake_server::{answer, FakeServer};
use crate::outbound::{outbound_config, BODY};
use crate::util::{request, TestServer};

const AGENT_TOKEN: &str = "agent-acquisitions-0123456789abcdef";
const AGENTS: &str =
    "[server.agent_tokens]\nacquisitions = \"agent-acquisitions-0123456789abcdef\"\n";
/// The recipient who opted out.
const OPTED_OUT: &str = "+12125550100";

fn call(s: &TestServer, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let r = request(
        s.admin,
        method,
        path,
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    (r.status, serde_json::from_str(&r.body).unwrap_or_default())
}

/// A path for `route` whose `{…}` segments name nothing that exists (the operator's calls
/// then change nothing: 400 or 404).
fn path_of(route: Route) -> String {
    route
        .pattern()
        .replace("{id}", "msg_00000000000000000000000000")
        .replace("{seq}", "999999")
        .replace("{name}", "no-such-consumer")
        .replace("{number}", "not-a-number")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Every consumer has read the whole log, twice in a row 200 ms apart (the log stops growing).
fn settled(s: &TestServer) {
    let mut before = None;
    wait_for("the consumers to settle", || {
        let st = s.status();
        let done = st
            .consumers
            .iter()
            .all(|c| c.cursor == st.log.last_seq && c.state == "running");
        let now = (done, st.log.last_seq);
        let settled = done && before == Some(now);
        before = Some(now);
        std::thread::sleep(Duration::from_millis(200));
        settled
    });
}

#[test]
fn an_agent_token_sends_and_reads_its_message_and_gets_403_on_every_operator_route_in_the_table() {
    let tmp = crate::engine::tempdir();
    let s = TestServer::start(outbound_config(tmp.path(), AGENTS, &[]), None);

    // The agent asks; its JSON claims to be the operator, which is ignored.
    let (code, v) = call(
        &s,
        AGENT_TOKEN,
        "POST",
        "/v1/messages",
        &json!({"from": "quo-main", "to": "+12125550111", "content": BODY,
                "requestedBy": "operator", "requested_by": "agent:someone-else"})
        .to_string(),
    );
    assert_eq!(code, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (code, m) = call(&s, AGENT_TOKEN, "GET", &format!("/v1/messages/{id}"), "");
    assert_eq!(code, 200, "{m}");
    assert_eq!(m["requested_by"], "agent:acquisitions", "{m}");
    assert_eq!(m["history"][0]["event"], "requested");
    assert_eq!(m["history"][0]["by"], "agent:acquisitions", "{m}");
    let logged = s
        .events()
        .into_iter()
        .find(|e| e.route == "/v1/messages")
        .unwrap();
    assert_eq!(logged.verified, "agent-token");
    assert!(!logged.body.contains("someone-else") && logged.body.contains("agent:acquisitions"));

    // The operator's own request says so.
    let (code, v) = s.admin_send(
        "POST",
        "/v1/messages",
        &json!({"from": "quo-main", "to": "+12125550112", "content": BODY}).to_string(),
    );
    assert_eq!(code, 202, "{v}");
    let v: Value = serde_json::from_str(&v).unwrap();
    let (_, m) = s.admin_get(&format!("/v1/messages/{}", v["id"].as_str().unwrap()));
    let m: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m["requested_by"], "operator", "{m}");

    // Every operator route of the table: 403 for the agent, saying what it may use.
    settled(&s);
    let before = s.status().log.last_seq;
    let operator_routes: Vec<Route> = Route::ALL
        .into_iter()
        .filter(|r| r.role() == Role::Operator)
        .collect();
    assert!(operator_routes.len() >= 13, "{operator_routes:?}");
    for route in &operator_routes {
        let (code, v) = call(
            &s,
            AGENT_TOKEN,
            route.method().as_str(),
            &path_of(*route),
            "{}",
        );
        assert_eq!(code, 403, "{}: {v}", route.describe());
        assert_eq!(v["error"], "forbidden");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("agent token `acquisitions`")
                && message.contains("POST /v1/messages")
                && message.contains("GET /v1/messages/{id}"),
            "{message}"
        );
    }
    // Another method on an operator path is 403 too (not a hint that the path exists).
    assert_eq!(call(&s, AGENT_TOKEN, "DELETE", "/admin/events", "").0, 403);
    assert_eq!(
        s.status().log.last_seq,
        before,
        "nothing an agent was refused was appended"
    );

    // The operator token reaches every route (these ask for nothing that exists); a token
    // that is nobody's is 401 everywhere, agent routes included.
    for route in Route::ALL {
        let (code, v) = call(&s, &s.token, route.method().as_str(), &path_of(route), "{}");
        assert!(
            ![401, 403].contains(&code),
            "{} answered {code} to the operator: {v}",
            route.describe()
        );
        for token in [
            "not-a-token-0123456789abcdef",
            &AGENT_TOKEN[..AGENT_TOKEN.len() - 1],
        ] {
            let (code, _) = call(&s, token, route.method().as_str(), &path_of(route), "{}");
            assert_eq!(code, 401, "{} with a wrong token", route.describe());
        }
    }
    let r = request(s.admin, "GET", &format!("/v1/messages/{id}"), &[], b"");
    assert_eq!(r.status, 401, "no token");
}

#[test]
fn the_admin_api_appends_none_of_the_daemons_own_sources() {
    let tmp = crate::engine::tempdir();
    let s = TestServer::start(outbound_config(tmp.path(), "", &[]), None);
    let id = MessageId::generate(Micros::now());
    let forged: [(&str, &str, Value); 6] = [
        (
            "outbound",
            "/internal/outbound/decision",
            json!({"id": id, "verdict": "allow", "evaluation": 1, "decided_at": "2026-06-10T16:00:00Z"}),
        ),
        (
            "outbound",
            "/internal/outbound/attempt",
            json!({"id": id, "attempt": 1, "provider": "openphone", "from": "+12125550199", "to": OPTED_OUT, "at": "2026-06-10T16:00:00Z"}),
        ),
        (
            "outbound",
            "/internal/outbound/result",
            json!({"id": id, "attempt": 1, "status": "sent", "outcome": "sent", "tries": 1, "at": "2026-06-10T16:00:00Z"}),
        ),
        (
            "internal",
            "/internal/optouts",
            json!({"action": "remove", "number": OPTED_OUT}),
        ),
        (
            "internal",
            "/internal/lines",
            json!({"line_id": "quo-main", "state": "unblocked", "reason": "r", "at": "2026-06-10T16:00:00Z"}),
        ),
        (
            "internal",
            "/internal/dispatch/result",
            json!({"seq": 1, "agent": "a", "idempotency_key": "k", "kind": "message.received", "outcome": "delivered", "attempts": 1, "latency_ms": 1, "opted_out": false, "at": "2026-06-10T16:00:00Z"}),
        ),
    ];
    for (source, route, body) in &forged {
        let (code, v) = s.admin_send(
            "POST",
            "/admin/events",
            &json!({"source": source, "route": route, "body": body.to_string()}).to_string(),
        );
        assert_eq!(code, 400, "{source} {route}: {v}");
        assert!(
            v.contains("backfill-openphone, backfill-twilio")
                && v.contains("only by hooklog itself"),
            "{v}"
        );
    }
    assert_eq!(s.status().log.count, 0, "nothing was appended");
}

#[test]
fn a_backfill_record_that_names_a_daemon_route_is_logged_and_never_acted_on() {
    let quo = FakeServer::start(answer(202, r#"{"data":{"id":"AC0001","status":"queued"}}"#));
    let tmp = crate::engine::tempdir();
    let base = format!("http://{}", quo.addr);
    let env = [
        ("HOOKLOG_OPENPHONE_API_KEY", "quo-test-key"),
        ("HOOKLOG_OPENPHONE_API_BASE", base.as_str()),
    ];
    let s = TestServer::start(outbound_config(tmp.path(), "", &env), None);
    let (code, _) = s.admin_send(
        "POST",
        "/admin/optouts",
        &json!({"number": OPTED_OUT}).to_string(),
    );
    assert_eq!(code, 202);
    settled(&s);
    let (code, v) = s.admin_send(
        "POST",
        "/v1/messages",
        &json!({"from": "quo-main", "to": OPTED_OUT, "content": BODY}).to_string(),
    );
    assert_eq!(code, 202, "{v}");
    let v: Value = serde_json::from_str(&v).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    settled(&s);

    // An allow, a sent result and an opt-out removal, each under a backfill source.
    for (route, body) in [
        (
            "/internal/outbound/decision",
            json!({"id": id, "verdict": "allow", "line_id": "quo-main", "from_number": "+12125550199", "provider": "openphone", "to": OPTED_OUT, "evaluation": 1, "decided_at": "2026-06-10T16:00:00Z"}),
        ),
        (
            "/internal/optouts",
            json!({"action": "remove", "number": OPTED_OUT}),
        ),
    ] {
        let (code, v) = s.admin_send(
            "POST",
            "/admin/events",
            &json!({"source": "backfill-openphone", "route": route, "body": body.to_string()})
                .to_string(),
        );
        assert_eq!(code, 201, "{v}");
    }
    settled(&s);
    let (_, m) = s.admin_get(&format!("/v1/messages/{id}"));
    let m: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m["status"], "refused", "{m}");
    assert_eq!(m["history"].as_array().unwrap().len(), 2, "{m}");
    let (_, list) = s.admin_get("/admin/optouts");
    assert!(list.contains(r#""state":"opted_out""#), "{list}");
    assert!(quo.requests().is_empty(), "nothing was sent");
}

/// Appends `records` to the stopped daemon's log on `data_dir` with the library, as anything
/// that can open the log's storage can; returns their sequences.
fn write_into_the_log(data_dir: &Path, records: &[(hooklog::event::Verified, &str)]) -> Vec<u64> {
    let log = crate::engine::open_log(data_dir, &[]);
    let mut seqs = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (v, _) in records {
        seqs.push(rt.block_on(log.append(v.clone())).unwrap().0);
    }
    log.close().unwrap();
    seqs
}

#[test]
fn forged_records_written_straight_into_the_log_are_dead_lettered_alerted_and_never_acted_on() {
    let quo = FakeServer::start(answer(202, r#"{"data":{"id":"AC0001","status":"queued"}}"#));
    let discord = FakeServer::start(answer(204, ""));
    let tmp = crate::engine::tempdir();
    let base = format!("http://{}", quo.addr);
    let hook = format!("http://{}/api/webhooks/1/t", discord.addr);
    let env = [
        ("HOOKLOG_OPENPHONE_API_KEY", "quo-test-key"),
        ("HOOKLOG_OPENPHONE_API_BASE", base.as_str()),
        ("HOOKLOG_ALERTS_DISCORD_WEBHOOK_URL", hook.as_str()),
        ("HOOKLOG_ALERTS_MIN_INTERVAL_SECS", "1"),
    ];
    let config = outbound_config(tmp.path(), AGENTS, &env);
    let data_dir = config.data_dir.clone();
    let s = TestServer::start(config.clone(), None);
    let (code, _) = s.admin_send(
        "POST",
        "/admin/optouts",
        &json!({"number": OPTED_OUT}).to_string(),
    );
    assert_eq!(code, 202);
    settled(&s);
    s.stop().unwrap();

    // Written while the daemon is stopped: a request that is still waiting for the gates,
    // then every record that would get it sent, each by a writer that may not write it.
    let now = Micros::now();
    let at = now.to_rfc3339();
    let id = MessageId::generate(now);
    let request = OutboundRecord::Request(MessageRequest {
        id: id.clone(),
        idempotency_key: None,
        from: "quo-main".into(),
        provider: None,
        to: OPTED_OUT.into(),
        content: BODY.into(),
        requested_at: at.clone(),
        requested_by: Some("operator".into()),
    });
    // Each forged record differs from the others: dedup would skip a byte-identical copy
    // before any consumer looked at it, and the test would prove less.
    let allow = |evaluation: u32| {
        OutboundRecord::Decision(GateDecision {
            id: id.clone(),
            verdict: GateVerdict::Allow,
            reasons: vec![],
            hold_until: None,
            line_id: Some("quo-main".into()),
            from_number: Some("+12125550199".into()),
            provider: Some(SendProvider::Quo),
            to: Some(OPTED_OUT.into()),
            evaluation,
            decided_at: at.clone(),
        })
    };
    let attempt = OutboundRecord::Attempt(SendAttempt {
        id: id.clone(),
        attempt: 1,
        provider: SendProvider::Quo,
        from: "+12125550199".into(),
        to: OPTED_OUT.into(),
        redelivery: false,
        at: at.clone(),
    });
    let result = OutboundRecord::Result(SendResult {
        id: id.clone(),
        attempt: 1,
        status: SendStatus::Sent,
        outcome: "sent".into(),
        provider_id: Some("AC-forged".into()),
        code: None,
        error: None,
        reasons: vec![],
        tries: 1,
        at: at.clone(),
    });
    let dispatched = OutboundRecord::Dispatch(DispatchResult {
        seq: 1,
        agent: "acquisitions".into(),
        idempotency_key: "hooklog:1:k".into(),
        kind: "message.received".into(),
        outcome: "delivered".into(),
        status: Some(200),
        attempts: 1,
        latency_ms: 1,
        opted_out: false,
        redelivery: false,
        error: None,
        at: at.clone(),
    });
    let line = |state: &str| {
        OutboundRecord::Line(LineChange {
            line_id: "tw-main".into(),
            state: state.into(),
            reason: format!("{state} in the test"),
            at: at.clone(),
        })
    };
    let remove = |reason: &str| OptOutChange {
        action: "remove".into(),
        number: OPTED_OUT.into(),
        reason: Some(reason.into()),
        provider: None,
        line: None,
    };
    let quo_signature = Verification::QuoStandard { key: 0 };
    let records = [
        // Forged: an agent's opt-out removal, before the request it would let through.
        (
            remove("agent").to_verified_as(now, Verification::AgentToken),
            "compliance",
        ),
        (
            remove("webhook").to_verified_as(now, quo_signature),
            "compliance",
        ),
        // Legitimate: the request (the operator's) and a provider block of tw-main (hooklog's).
        (request.to_verified(now), ""),
        (line("blocked").to_verified(now), ""),
        // Forged: allows by the operator's token, an agent's and a webhook's signature; an
        // attempt and a `sent` result; a dispatch result; an agent's unblock of tw-main.
        (
            allow(1).to_verified_as(now, Verification::AdminToken),
            "outbound sender",
        ),
        (
            allow(2).to_verified_as(now, Verification::AgentToken),
            "outbound sender",
        ),
        (
            allow(3).to_verified_as(now, quo_signature),
            "outbound sender",
        ),
        (
            attempt.to_verified_as(now, Verification::AdminToken),
            "outbound sender",
        ),
        (
            result.to_verified_as(now, Verification::AdminToken),
            "outbound sender",
        ),
        (
            dispatched.to_verified_as(now, Verification::AdminToken),
            "outbound",
        ),
        (
            line("unblocked").to_verified_as(now, Verification::AgentToken),
            "outbound",
        ),
    ];
    let seqs = write_into_the_log(&data_dir, &records);

    let s = TestServer::start(config, None);
    settled(&s);
    // The request was decided by the gates themselves: refused, the number is opted out.
    let (_, m) = s.admin_get(&format!("/v1/messages/{id}"));
    let m: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m["status"], "refused", "{m}");
    assert_eq!(m["reasons"][0]["code"], "recipient_opted_out", "{m}");
    let steps: Vec<&str> = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["requested", "refused"], "{m}");
    let (_, list) = s.admin_get("/admin/optouts");
    assert!(
        list.contains(OPTED_OUT) && list.contains(r#""state":"opted_out""#),
        "still suppressed: {list}"
    );
    // tw-main stays blocked: a request on it is refused for that.
    let (code, v) = s.admin_send(
        "POST",
        "/v1/messages",
        &json!({"from": "tw-main", "to": "+12125550113", "content": BODY}).to_string(),
    );
    assert_eq!(code, 202, "{v}");
    let v: Value = serde_json::from_str(&v).unwrap();
    let tw = s.admin_until(
        &format!("/v1/messages/{}", v["id"].as_str().unwrap()),
        |m| m["status"] != "pending",
    );
    assert_eq!(tw["status"], "refused", "{tw}");
    assert!(
        tw["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "line_blocked"),
        "{tw}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(quo.requests().is_empty(), "nothing was sent");

    // Each forged record is a dead letter of every consumer that would have acted on it.
    let (_, letters) = s.admin_get("/admin/dead-letters");
    let letters: Value = serde_json::from_str(&letters).unwrap();
    let mut got: Vec<(String, u64)> = letters["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["consumer"].as_str().unwrap().to_owned(),
                d["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, u64)> = records
        .iter()
        .zip(&seqs)
        .flat_map(|((_, by), seq)| by.split_whitespace().map(|c| (c.to_owned(), *seq)))
        .collect();
    want.sort();
    assert_eq!(got, want, "{letters}");
    for d in letters["dead_letters"].as_array().unwrap() {
        let error = d["error"].as_str().unwrap();
        assert!(error.starts_with("forged record"), "{error}");
    }

    // And a critical alert names each: the record, its route, who may write it, how it was
    // verified.
    wait_for("an alert for every forged record", || {
        let posts: Vec<String> = discord.requests().into_iter().map(|r| r.body).collect();
        want.iter().all(|(consumer, seq)| {
            posts.iter().any(|p| {
                p.contains(&format!("{consumer}: forged record {seq} refused"))
                    && p.contains("verified as")
            })
        })
    });
    let posts: Vec<String> = discord.requests().into_iter().map(|r| r.body).collect();
    let allow_seq = seqs[4];
    let alert = posts
        .iter()
        .find(|p| p.contains(&format!("sender: forged record {allow_seq} refused")))
        .unwrap();
    assert!(
        alert.contains("/internal/outbound/decision")
            && alert.contains("hooklog itself")
            && alert.contains("`admin-token`"),
        "{alert}"
    );
}
