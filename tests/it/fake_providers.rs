//! Fake Quo and Twilio REST APIs for the backfill tests, in-process on `127.0.0.1:0`.
//!
//! One server answers both APIs, from data a test puts in [`State`]:
//!
//! - Quo `/v1`: `GET /v1/phone-numbers`, `/v1/conversations` (`phoneNumbers[]`,
//!   `updatedAfter`), `/v1/messages` (required `phoneNumberId`, `participants[]`,
//!   `maxResults`; `createdAfter`/`createdBefore`), `/v1/calls` (the same, with **at most one**
//!   participant, and `userId` defaulting to the workspace owner), `/v1/call-summaries/{id}`,
//!   `/v1/call-transcripts/{id}` (`{"data": …}` or 404). Auth: `Authorization` must be the
//!   raw key (no `Bearer`). Lists are newest first, paged by `pageToken` with at most
//!   `page_cap` items a page, and `totalItems` is deliberately wrong (as the real one is).
//! - Twilio 2010-04-01: `Messages.json` (`DateSent>`, `DateSent<`) and `Calls.json`
//!   (`StartTime>`, `StartTime<`), whole-day inclusive bounds, `PageSize`, a relative
//!   `next_page_uri` with a `PageToken`; HTTP Basic auth.
//!
//! For `hooklog doctor`: Quo `GET /v1/webhooks` (`{"data": [...]}`, the legacy list) and the
//! dated `GET /webhooks` (the same shape; `Quo-Api-Version: 2026-03-30` required), Twilio
//! `GET /2010-04-01/Accounts/{Sid}.json` (the account, `status`) and
//! `IncomingPhoneNumbers.json` (paged like the other Twilio lists, `incoming_phone_numbers`).
//!
//! Faults: [`State::twilio_next_page_uri`] replaces every Twilio `next_page_uri`;
//! [`State::faults`] answers the next requests with a status (and an optional
//! `Retry-After`) before any real handling; [`State::fail_matching`] answers every request
//! whose path and query contain a string with a status, until removed. Every request is
//! recorded with its arrival time and the status it got.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub query: String,
    pub params: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub status: u16,
}

impl Seen {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn params_named(&self, key: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An injected answer.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<String>,
}

/// What the fake serves.
pub struct State {
    pub quo_key: String,
    pub owner: String,
    pub phone_numbers: Vec<Value>,
    pub conversations: Vec<Value>,
    pub messages: Vec<Value>,
    pub calls: Vec<Value>,
    pub summaries: HashMap<String, Value>,
    pub transcripts: HashMap<String, Value>,
    pub twilio_sid: String,
    pub twilio_token: String,
    pub twilio_messages: Vec<Value>,
    pub twilio_calls: Vec<Value>,
    /// `IncomingPhoneNumbers.json` items.
    pub twilio_numbers: Vec<Value>,
    /// Quo's legacy `GET /v1/webhooks` items.
    pub quo_webhooks_v1: Vec<Value>,
    /// Quo's dated `GET /webhooks` items.
    pub quo_webhooks: Vec<Value>,
    /// Items per page at most, whatever `maxResults`/`PageSize` asks.
    pub page_cap: usize,
    pub faults: VecDeque<Fault>,
    pub fail_matching: Vec<(String, u16)>,
    /// When set, every Twilio page that has a next page names this `next_page_uri` instead
    /// of its own (a hostile or broken API).
    pub twilio_next_page_uri: Option<String>,
    /// Requests whose target contains the first string get the second as their body, as is
    /// (not JSON, say), in place of the fake's own; the status stays the fake's.
    pub raw_answers: Vec<(String, String)>,
    pub seen: Vec<Seen>,
}

pub struct FakeApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl FakeApi {
    pub fn start(state: State) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(state));
        let s = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(stream, &s));
            }
        });
        FakeApi { addr, state }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let target = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut authorization = None;
    let mut api_version = None;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        match k.trim().to_ascii_lowercase().as_str() {
            "authorization" => authorization = Some(v.trim().to_owned()),
            "quo-api-version" => api_version = Some(v.trim().to_owned()),
            "content-length" => len = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let at = Instant::now();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (status, retry_after, body) = {
        let mut st = state.lock().unwrap();
        let (status, retry_after, answer) = match st.faults.pop_front() {
            Some(f) => (f.status, f.retry_after, json!({"message": "injected"})),
            None => match st
                .fail_matching
                .iter()
                .find(|(s, _)| target.contains(s.as_str()))
            {
                Some((_, code)) => (*code, None, json!({"message": "injected failure"})),
                None => {
                    let (s, v) = if path == "/messages" {
                        workspace_messages(
                            &st,
                            &params,
                            authorization.as_deref(),
                            api_version.as_deref(),
                        )
                    } else if path == "/webhooks" {
                        dated_webhooks(&st, authorization.as_deref(), api_version.as_deref())
                    } else {
                        route(&st, &path, &params, authorization.as_deref())
                    };
                    (s, None, v)
                }
            },
        };
        st.seen.push(Seen {
            at,
            path: path.clone(),
            query: query.clone(),
            params: params.clone(),
            authorization: authorization.clone(),
            status,
        });
        let raw = st
            .raw_answers
            .iter()
            .find(|(s, _)| target.contains(s.as_str()))
            .map(|(_, body)| body.clone());
        (
            status,
            retry_after,
            raw.unwrap_or_else(|| answer.to_string()),
        )
    };
    let extra = retry_after
        .map(|r| format!("Retry-After: {r}\r\n"))
        .unwrap_or_default();
    let reply = format!(
        "HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(reply.as_bytes());
}

fn bad(message: &str) -> (u16, Value) {
    (
        400,
        json!({"message": message, "code": "0100400", "status": 400}),
    )
}

fn route(st: &State, path: &str, params: &[(String, String)], auth: Option<&str>) -> (u16, Value) {
    if path.starts_with("/v1/") {
        if auth != Some(st.quo_key.as_str()) {
            return (401, json!({"message": "Unauthorized", "status": 401}));
        }
        return quo(st, path, params);
    }
    if let Some(rest) = path.strip_prefix("/2010-04-01/Accounts/") {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", st.twilio_sid, st.twilio_token))
        );
        if auth != Some(expected.as_str()) {
            return (401, json!({"code": 20003, "message": "Authenticate"}));
        }
        return twilio(st, rest, params);
    }
    (404, json!({"message": "no such route"}))
}

/// The 2026-03-30 workspace-wide `GET /messages`: every message of the workspace, newest
/// first, no filters used; cursor pagination with `limit` (1–50, default 10) and `after`
/// (the previous page's `nextCursor`); `Quo-Api-Version` is required (no default).
fn workspace_messages(
    st: &State,
    params: &[(String, String)],
    auth: Option<&str>,
    version: Option<&str>,
) -> (u16, Value) {
    if auth != Some(st.quo_key.as_str()) {
        return (401, json!({"message": "Unauthorized", "status": 401}));
    }
    if version != Some("2026-03-30") {
        return bad("Quo-Api-Version is required");
    }
    let limit: usize = match get(params, "limit").map(str::parse) {
        None => 10,
        Some(Ok(n)) if (1..=50).contains(&n) => n,
        _ => return bad("limit: 1 to 50"),
    };
    let mut items = st.messages.clone();
    items.sort_by_key(|v| std::cmp::Reverse(time(v, "createdAt")));
    let offset: usize = get(params, "after")
        .map(|t| t.trim_start_matches("cur").parse().unwrap())
        .unwrap_or(0);
    let end = (offset + limit.min(st.page_cap).max(1)).min(items.len());
    let next = (end < items.len()).then(|| format!("cur{end}"));
    (
        200,
        json!({"data": items[offset.min(end)..end], "nextCursor": next}),
    )
}

/// The 2026-03-30 `GET /webhooks`: every webhook of the workspace, `{"data": [...]}`;
/// `Quo-Api-Version` is required.
fn dated_webhooks(st: &State, auth: Option<&str>, version: Option<&str>) -> (u16, Value) {
    if auth != Some(st.quo_key.as_str()) {
        return (401, json!({"message": "Unauthorized", "status": 401}));
    }
    if version != Some("2026-03-30") {
        return bad("Quo-Api-Version is required");
    }
    (200, json!({"data": st.quo_webhooks}))
}

fn get<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn all<'a>(params: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    params
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn time(v: &Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[key].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn param_time(params: &[(String, String)], key: &str) -> Option<DateTime<Utc>> {
    get(params, key).map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

/// A Quo page: at most `min(maxResults, page_cap)` items from `pageToken`'s offset.
fn quo_page(st: &State, mut items: Vec<Value>, params: &[(String, String)], key: &str) -> Value {
    items.sort_by_key(|v| std::cmp::Reverse(time(v, key)));
    let max: usize = get(params, "maxResults").unwrap().parse().unwrap();
    let size = max.min(st.page_cap).max(1);
    let offset: usize = get(params, "pageToken")
        .map(|t| t.trim_start_matches("tok").parse().unwrap())
        .unwrap_or(0);
    let end = (offset + size).min(items.len());
    let next = (end < items.len()).then(|| format!("tok{end}"));
    // Deliberately inaccurate, like the real one.
    json!({"data": items[offset.min(end)..end], "totalItems": 1, "nextPageToken": next})
}

fn quo(st: &State, path: &str, params: &[(String, String)]) -> (u16, Value) {
    let after =
        |v: &Value, key: &str, p: &str| param_time(params, p).is_none_or(|t| time(v, key) >= t);
    let before =
        |v: &Value, key: &str, p: &str| param_time(params, p).is_none_or(|t| time(v, key) < t);
    match path {
        "/v1/phone-numbers" => (200, json!({"data": st.phone_numbers})),
        "/v1/webhooks" => (200, json!({"data": st.quo_webhooks_v1})),
        "/v1/conversations" => {
            let Some(_) = get(params, "maxResults") else {
                return bad("maxResults is required");
            };
            let pns = all(params, "phoneNumbers[]");
            let items = st
                .conversations
                .iter()
                .filter(|c| pns.is_empty() || pns.contains(&c["phoneNumberId"].as_str().unwrap()))
                .filter(|c| after(c, "updatedAt", "updatedAfter"))
                .cloned()
                .collect();
            (200, quo_page(st, items, params, "updatedAt"))
        }
        "/v1/messages" | "/v1/calls" => {
            let (Some(pn), Some(_)) = (get(params, "phoneNumberId"), get(params, "maxResults"))
            else {
                return bad("phoneNumberId and maxResults are required");
            };
            let mut wanted = all(params, "participants[]");
            if wanted.is_empty() {
                return bad("participants is required");
            }
            let calls = path == "/v1/calls";
            if calls && wanted.len() > 1 {
                return bad("participants: at most 1 item");
            }
            wanted.sort();
            let owner = st.owner.clone();
            let user = get(params, "userId").unwrap_or(&owner);
            let list = if calls { &st.calls } else { &st.messages };
            let items = list
                .iter()
                .filter(|m| m["phoneNumberId"] == pn)
                .filter(|m| {
                    let mut others = others(st, m);
                    others.sort();
                    others == wanted
                })
                .filter(|m| !calls || m["userId"] == user)
                .filter(|m| after(m, "createdAt", "createdAfter"))
                .filter(|m| before(m, "createdAt", "createdBefore"))
                .cloned()
                .collect();
            (200, quo_page(st, items, params, "createdAt"))
        }
        _ => {
            let single = |map: &HashMap<String, Value>, id: &str| match map.get(id) {
                Some(v) => (200, json!({"data": v})),
                None => (404, json!({"message": "Not found"})),
            };
            if let Some(id) = path.strip_prefix("/v1/call-summaries/") {
                single(&st.summaries, id)
            } else if let Some(id) = path.strip_prefix("/v1/call-transcripts/") {
                single(&st.transcripts, id)
            } else {
                (404, json!({"message": "no such route"}))
            }
        }
    }
}

/// The parties of a message or call other than the line.
fn others<'a>(st: &'a State, m: &'a Value) -> Vec<&'a str> {
    if let Some(p) = m.get("participants").and_then(Value::as_array) {
        return p.iter().filter_map(Value::as_str).collect();
    }
    let line = st
        .phone_numbers
        .iter()
        .find(|pn| pn["id"] == m["phoneNumberId"])
        .and_then(|pn| pn["number"].as_str())
        .unwrap_or_default();
    let mut out: Vec<&str> = m["to"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    out.push(m["from"].as_str().unwrap());
    out.retain(|n| *n != line);
    out.sort();
    out.dedup();
    out
}

fn twilio(st: &State, rest: &str, params: &[(String, String)]) -> (u16, Value) {
    if rest == format!("{}.json", st.twilio_sid) {
        return (
            200,
            json!({"sid": st.twilio_sid, "status": "active", "friendly_name": "test account"}),
        );
    }
    let Some((account, file)) = rest.split_once('/') else {
        return (404, json!({"message": "no such route"}));
    };
    if account != st.twilio_sid {
        return (404, json!({"message": "no such account"}));
    }
    if file == "IncomingPhoneNumbers.json" {
        return twilio_numbers(st, account, params);
    }
    let (list, key, lo, hi, field) = match file {
        "Messages.json" => (
            &st.twilio_messages,
            "messages",
            "DateSent>",
            "DateSent<",
            "date_sent",
        ),
        "Calls.json" => (
            &st.twilio_calls,
            "calls",
            "StartTime>",
            "StartTime<",
            "start_time",
        ),
        _ => return (404, json!({"message": "no such route"})),
    };
    let day = |v: &Value| {
        DateTime::parse_from_rfc2822(v[field].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
            .date_naive()
    };
    let bound = |k: &str| get(params, k).map(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap());
    let (from, to) = (bound(lo), bound(hi));
    let mut items: Vec<Value> = list
        .iter()
        .filter(|v| from.is_none_or(|d| day(v) >= d) && to.is_none_or(|d| day(v) <= d))
        .cloned()
        .collect();
    items.sort_by_key(|v| {
        std::cmp::Reverse(DateTime::parse_from_rfc2822(v[field].as_str().unwrap()).unwrap())
    });
    let size: usize = get(params, "PageSize")
        .map(|s| s.parse().unwrap())
        .unwrap_or(50)
        .min(st.page_cap)
        .max(1);
    let offset: usize = get(params, "PageToken")
        .map(|t| t.trim_start_matches("PA").parse().unwrap())
        .unwrap_or(0);
    let end = (offset + size).min(items.len());
    let next = (end < items.len()).then(|| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            if k != "PageToken" && k != "Page" {
                q.append_pair(k, v);
            }
        }
        q.append_pair("Page", &(end / size).to_string());
        q.append_pair("PageToken", &format!("PA{end}"));
        st.twilio_next_page_uri
            .clone()
            .unwrap_or_else(|| format!("/2010-04-01/Accounts/{account}/{file}?{}", q.finish()))
    });
    (
        200,
        json!({
            key: items[offset.min(end)..end],
            "page": offset / size,
            "page_size": size,
            "next_page_uri": next,
        }),
    )
}

/// `IncomingPhoneNumbers.json`: `PageSize` (capped by `page_cap`), a relative
/// `next_page_uri` with a `PageToken`, null on the last page.
fn twilio_numbers(st: &State, account: &str, params: &[(String, String)]) -> (u16, Value) {
    let size: usize = get(params, "PageSize")
        .map(|s| s.parse().unwrap())
        .unwrap_or(50)
        .min(st.page_cap)
        .max(1);
    let offset: usize = get(params, "PageToken")
        .map(|t| t.trim_start_matches("PN").parse().unwrap())
        .unwrap_or(0);
    let items = &st.twilio_numbers;
    let end = (offset + size).min(items.len());
    let next = (end < items.len()).then(|| {
        format!(
            "/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json?PageSize={size}&Page={}&PageToken=PN{end}",
            end / size
        )
    });
    (
        200,
        json!({
            "incoming_phone_numbers": items[offset.min(end)..end],
            "page": offset / size,
            "page_size": size,
            "next_page_uri": next,
        }),
    )
}

// ---------------------------------------------------------------------------------------
// A day of activity (2026-03-02), in both APIs.

pub const DAY: &str = "2026-03-02";
pub const QUO_KEY: &str = "quo-test-key";
pub const LINE_1: &str = "+15550000001";
pub const LINE_2: &str = "+15550000002";

fn at(hh_mm: &str) -> String {
    format!("{DAY}T{hh_mm}:00.000Z")
}

fn quo_message(id: &str, line: (&str, &str), other: &str, incoming: bool, t: &str) -> Value {
    let (from, to) = if incoming {
        (other, line.1)
    } else {
        (line.1, other)
    };
    json!({
        "id": id, "object": "message", "from": from, "to": [to],
        "text": format!("text of {id}"),
        "direction": if incoming { "incoming" } else { "outgoing" },
        "status": if incoming { "received" } else { "delivered" },
        "createdAt": t, "updatedAt": t, "userId": "US1", "phoneNumberId": line.0,
    })
}

fn quo_call(id: &str, line: &str, other: &str, user: &str, status: &str, t: &str) -> Value {
    json!({
        "id": id, "object": "call", "direction": "incoming", "status": status,
        "participants": [other], "createdAt": t, "answeredAt": null, "completedAt": t,
        "duration": 30, "userId": user, "phoneNumberId": line,
    })
}

/// The Quo resources of [`DAY`] (and some outside it), with pages of at most 2 items:
/// - line PN1 (+15550000001, users US1 the owner and US2): a 1:1 conversation CN1 with 5
///   messages in the day (3 pages) and 1 the day before, 3 calls (US1 completed with a
///   summary and a transcript, US2 completed without, US1 no-answer); a group conversation
///   CN2 with 2 messages; CN3 last updated before the day.
/// - line PN2 (+15550000002, user US1): CN4 with 2 messages and 1 completed call.
///
/// In range: 9 messages, 4 calls, 1 summary, 1 transcript = 15 resources.
pub fn quo_day() -> State {
    let l1 = ("PN1", LINE_1);
    let l2 = ("PN2", LINE_2);
    let (a, b, c, d, e) = (
        "+15551110001",
        "+15551110002",
        "+15551110003",
        "+15551110004",
        "+15551110005",
    );
    let conv = |id: &str, pn: &str, parts: &[&str], updated: &str| {
        json!({"id": id, "phoneNumberId": pn, "participants": parts, "updatedAt": updated,
               "lastActivityAt": updated})
    };
    let mut summaries = HashMap::new();
    summaries.insert(
        "ACc1".to_owned(),
        json!({"callId": "ACc1", "status": "completed", "summary": ["asked for a quote"],
               "nextSteps": ["send quote"]}),
    );
    let mut transcripts = HashMap::new();
    transcripts.insert(
        "ACc1".to_owned(),
        json!({"callId": "ACc1", "createdAt": at("10:05"), "duration": 30, "status": "completed",
               "dialogue": [{"content": "hello", "start": 0, "end": 1, "identifier": a}]}),
    );
    State {
        quo_key: QUO_KEY.into(),
        owner: "US1".into(),
        phone_numbers: vec![
            json!({"id": "PN1", "number": LINE_1, "name": "Main", "users": [{"id": "US1"}, {"id": "US2"}]}),
            json!({"id": "PN2", "number": LINE_2, "name": "Second", "users": [{"id": "US1"}]}),
        ],
        conversations: vec![
            conv("CN1", "PN1", &[a], &at("18:00")),
            conv("CN2", "PN1", &[b, c], &at("12:00")),
            conv("CN3", "PN1", &[d], "2026-02-20T10:00:00.000Z"),
            conv("CN4", "PN2", &[e], &at("15:00")),
        ],
        messages: vec![
            quo_message("ACm1", l1, a, true, &at("09:00")),
            quo_message("ACm2", l1, a, false, &at("09:05")),
            quo_message("ACm3", l1, a, true, &at("11:00")),
            quo_message("ACm4", l1, a, true, &at("14:00")),
            quo_message("ACm5", l1, a, false, &at("18:00")),
            quo_message("ACm0", l1, a, true, "2026-03-01T23:00:00.000Z"),
            json!({"id": "ACg1", "object": "message", "from": b, "to": [LINE_1, c],
                   "text": "group hello", "direction": "incoming", "status": "received",
                   "createdAt": at("12:00"), "updatedAt": at("12:00"), "userId": "US1",
                   "phoneNumberId": "PN1"}),
            json!({"id": "ACg2", "object": "message", "from": LINE_1, "to": [b, c],
                   "text": "group reply", "direction": "outgoing", "status": "delivered",
                   "createdAt": at("12:01"), "updatedAt": at("12:01"), "userId": "US1",
                   "phoneNumberId": "PN1"}),
            quo_message("ACm6", l2, e, true, &at("15:00")),
            quo_message("ACm7", l2, e, false, &at("15:01")),
            quo_message("ACd1", l1, d, true, "2026-02-20T10:00:00.000Z"),
        ],
        calls: vec![
            quo_call("ACc1", "PN1", a, "US1", "completed", &at("10:00")),
            quo_call("ACc2", "PN1", a, "US2", "completed", &at("13:00")),
            quo_call("ACc3", "PN1", a, "US1", "no-answer", &at("16:00")),
            quo_call("ACc4", "PN2", e, "US1", "completed", &at("15:30")),
        ],
        summaries,
        transcripts,
        twilio_sid: "AC00000000000000000000000000000001".into(),
        twilio_token: "twilio-test-token".into(),
        twilio_messages: Vec::new(),
        twilio_calls: Vec::new(),
        twilio_numbers: Vec::new(),
        quo_webhooks_v1: Vec::new(),
        quo_webhooks: Vec::new(),
        page_cap: 2,
        faults: VecDeque::new(),
        fail_matching: Vec::new(),
        twilio_next_page_uri: None,
        raw_answers: Vec::new(),
        seen: Vec::new(),
    }
}

/// The Twilio resources of [`DAY`]: 5 messages in the day, 1 the day before and 1 the day
/// after; 3 calls in the day and 1 the day after. Pages of at most 2 items.
pub fn twilio_day() -> State {
    let mut st = quo_day();
    let sid = st.twilio_sid.clone();
    let msg = |n: u32, date: &str, inbound: bool| {
        json!({
            "sid": format!("SM{n:032}"), "account_sid": sid, "from": "+15551110001",
            "to": "+15550000009", "body": format!("twilio {n}"),
            "status": if inbound { "received" } else { "delivered" },
            "direction": if inbound { "inbound" } else { "outbound-api" },
            "date_created": date, "date_sent": date, "date_updated": date,
            "num_segments": "1", "num_media": "0",
        })
    };
    let call = |n: u32, date: &str| {
        json!({
            "sid": format!("CA{n:032}"), "account_sid": sid, "from": "+15551110001",
            "to": "+15550000009", "status": "completed", "direction": "inbound",
            "start_time": date, "end_time": date, "date_created": date, "duration": "12",
        })
    };
    st.twilio_messages = vec![
        msg(1, "Mon, 02 Mar 2026 08:00:00 +0000", true),
        msg(2, "Mon, 02 Mar 2026 09:00:00 +0000", false),
        msg(3, "Mon, 02 Mar 2026 10:00:00 +0000", true),
        msg(4, "Mon, 02 Mar 2026 11:00:00 +0000", true),
        msg(5, "Mon, 02 Mar 2026 23:59:00 +0000", false),
        msg(6, "Sun, 01 Mar 2026 23:00:00 +0000", true),
        msg(7, "Tue, 03 Mar 2026 00:30:00 +0000", true),
    ];
    st.twilio_calls = vec![
        call(1, "Mon, 02 Mar 2026 08:30:00 +0000"),
        call(2, "Mon, 02 Mar 2026 12:30:00 +0000"),
        call(3, "Mon, 02 Mar 2026 20:30:00 +0000"),
        call(4, "Tue, 03 Mar 2026 08:30:00 +0000"),
    ];
    st
}
