//! Quo (OpenPhone) backfill over the `/v1` REST API (docs/reference/quo.md#rest-api, docs/reference/quo.md#backfill-recipe).
//!
//! The recipe:
//!
//! 1. `GET /v1/phone-numbers` (not paginated): the workspace's lines and their users. With
//!    `--line`, only the lines named (by `PN…` id or E.164 number); an unknown one is an
//!    error that lists the known lines.
//! 2. Per line, `GET /v1/conversations?phoneNumbers[]=PN…&updatedAfter=<since>`: every
//!    conversation with activity since the start of the range. No `updatedBefore`: a
//!    conversation with a message in the range and a later one was updated after the range.
//! 3. Per conversation, `GET /v1/messages` with its required parameters (`phoneNumberId`,
//!    `participants[]` = the conversation's participants, `maxResults`) and
//!    `createdAfter`/`createdBefore` = the range.
//! 4. Per 1:1 conversation (the calls endpoint takes **one** participant; group calls cannot
//!    be listed) and per user of the line, `GET /v1/calls` with an explicit `userId` (it
//!    defaults to the workspace owner, whose list misses the calls of the other users). A
//!    line with no users listed gets one request without `userId`.
//! 5. Per completed call, `GET /v1/call-summaries/{callId}` and
//!    `GET /v1/call-transcripts/{callId}`; 404 means there is none. Both are Business and
//!    Scale plan features: a 402 or a 403 on them (the key having worked for the lists) is
//!    taken as "not on this plan" and they are not asked for again in the run.
//!
//! A per-conversation listing (messages, calls) that the API refuses with 400 is skipped,
//! named in [`Progress::skipped`], and the run goes on: a rerun would fail there again, so
//! stopping would leave the rest of the gap open. Everything else that fails stops the run.
//!
//! Every list follows `nextPageToken` until it is `null`, whatever `totalItems` says (it is
//! inaccurate). `maxResults` is 100, the maximum. Each message, call, summary and transcript
//! goes to the sink as one record of source `backfill-openphone` with the route
//! `/v1/messages/{id}`, `/v1/calls/{id}`, `/v1/call-summaries/{callId}` or
//! `/v1/call-transcripts/{callId}` and the resource's JSON exactly as the API sent it (a
//! single fetch's `{"data": …}` wrapper removed). The host is configurable: `[openphone]
//! api_base`, `https://api.openphone.com` or `https://api.quo.com`.
//!
//! With `[openphone] workspace_messages = true`, step 3 is replaced by one walk of the
//! workspace-wide `GET /messages` of the dated 2026-03-30 API (`Quo-Api-Version` header, no
//! `/v1`; `limit` ≤ 50 and the `after` cursor from `nextCursor`, the conventions of that
//! version's "requests" page). Its filter names are not confirmed (docs/reference/quo.md#endpoints), so none is sent:
//! the list is newest first, items newer than the range are passed over and the walk stops
//! at the first page that reaches back before it. With `--line`, items of other lines are
//! dropped. Calls, summaries and transcripts still come from the per-conversation recipe.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    fingerprint, query, Checkpoint, CheckpointError, Client, Conversation, FetchError, Progress,
    Range, RunKey, Sink, SinkError,
};
use crate::event::Source;
use crate::retry::RetryPolicy;
use crate::send::limiter::Limiter;

/// Largest page the API gives.
const MAX_RESULTS: &str = "100";
/// Largest page of the dated API.
const WORKSPACE_LIMIT: &str = "50";
/// The dated API version of the workspace-wide message list.
const API_VERSION: &str = "2026-03-30";

/// Why a Quo backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum QuoError {
    /// 401/403 on a list: the API key is wrong or revoked.
    #[error("the Quo API key was refused ({status}): check [openphone] api_key")]
    KeyRefused {
        /// 401 or 403.
        status: u16,
    },
    /// No API key is configured.
    #[error("no Quo API key: set [openphone] api_key (or HOOKLOG_OPENPHONE_API_KEY)")]
    NoKey,
    /// A `--line` that is not one of the workspace's phone numbers.
    #[error("--line {line}: not a phone number of this workspace (it has: {known})")]
    UnknownLine {
        /// The line asked for.
        line: String,
        /// The workspace's lines, `PN… (+1…)`.
        known: String,
    },
    /// A request failed for good.
    #[error(transparent)]
    Fetch(FetchError),
    /// The sink refused a resource.
    #[error("cannot append {route}: {source}")]
    Sink {
        /// The resource's route.
        route: String,
        /// Why.
        source: SinkError,
    },
    /// The checkpoint cannot be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl From<FetchError> for QuoError {
    fn from(e: FetchError) -> QuoError {
        match e {
            FetchError::Denied { status, .. } => QuoError::KeyRefused { status },
            other => QuoError::Fetch(other),
        }
    }
}

/// What to fetch, and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// API base URL, without `/v1` (`https://api.openphone.com`).
    pub api_base: String,
    /// The API key, sent as `Authorization: <key>` (no `Bearer`).
    pub api_key: String,
    /// The days to fetch.
    pub range: Range,
    /// Only these lines (`PN…` ids or E.164 numbers); empty: every line.
    pub lines: Vec<String>,
    /// Retries of each request.
    pub retry: RetryPolicy,
    /// List messages with the workspace-wide `GET /messages` (2026-03-30) instead of per
    /// conversation (`[openphone] workspace_messages`).
    pub workspace_messages: bool,
}

impl Options {
    /// The parameters the checkpoint belongs to.
    pub fn run_key(&self) -> RunKey {
        let mut lines = self.lines.clone();
        lines.sort();
        lines.dedup();
        RunKey {
            provider: "openphone".into(),
            api_base: base(&self.api_base).to_owned(),
            since: self.range.since,
            until: self.range.until,
            lines,
        }
    }
}

fn base(api_base: &str) -> &str {
    api_base.trim_end_matches('/')
}

#[derive(Deserialize)]
struct PhoneNumbers {
    data: Vec<PhoneNumber>,
}

#[derive(Deserialize)]
struct PhoneNumber {
    id: String,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    users: Vec<User>,
}

/// A line of the workspace as `GET /v1/phone-numbers` lists it, unchecked: the caller
/// validates what it keeps (the answer is the provider's, not ours).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoLine {
    /// `PN…`.
    pub id: String,
    /// E.164, if given.
    pub number: Option<String>,
    /// The name the workspace gave the line, if any.
    pub name: Option<String>,
}

/// The workspace's lines: `GET /v1/phone-numbers` (not paginated) with the key's limiter and
/// the retries of `retry` (429, 5xx and connection errors; a refused key stops at once).
pub fn phone_numbers(
    api_base: &str,
    api_key: &str,
    retry: RetryPolicy,
    limiter: Arc<Limiter>,
) -> Result<Vec<QuoLine>, QuoError> {
    let key = api_key.trim();
    if key.is_empty() {
        return Err(QuoError::NoKey);
    }
    let mut client = Client::new(key.to_owned(), limiter, fingerprint(key), retry);
    let url = format!("{}/v1/phone-numbers", base(api_base));
    let numbers: PhoneNumbers = client.get_as(&url, &[], &mut super::NoRecords)?;
    Ok(numbers
        .data
        .into_iter()
        .map(|pn| QuoLine {
            id: pn.id,
            number: pn.number,
            name: pn.name,
        })
        .collect())
}

#[derive(Deserialize)]
struct User {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversationItem {
    id: String,
    #[serde(default)]
    phone_number_id: Option<String>,
    #[serde(default)]
    participants: Vec<String>,
}

/// The few fields read from a message or call; the record keeps the raw JSON.
#[derive(Deserialize)]
struct Head {
    id: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CursorPage<T> {
    data: Vec<T>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// What the workspace-wide walk reads from each message.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkspaceHead {
    id: String,
    created_at: String,
    #[serde(default)]
    phone_number_id: Option<String>,
}

#[derive(Deserialize)]
struct Single {
    data: Box<RawValue>,
}

/// Runs the recipe, giving every resource to `sink` and recording progress in `checkpoint`.
/// `limiter` is shared by every client of the same key (use [`super::BACKFILL_RATE`]).
pub fn backfill(
    opts: &Options,
    limiter: Arc<Limiter>,
    checkpoint: &mut Checkpoint,
    sink: &mut dyn Sink,
) -> Result<Progress, QuoError> {
    if opts.api_key.trim().is_empty() {
        return Err(QuoError::NoKey);
    }
    let mut run = Run {
        base: base(&opts.api_base).to_owned(),
        range: opts.range,
        client: Client::new(
            opts.api_key.trim().to_owned(),
            limiter,
            fingerprint(opts.api_key.trim()),
            opts.retry,
        ),
        checkpoint,
        sink,
        summaries: true,
        seen_calls: HashSet::new(),
    };
    // Units finished by an earlier run count as known and done; `pages` adds the others.
    run.client.progress.units_done = run.checkpoint.done_count();
    run.client.progress.units_total = run.checkpoint.done_count();

    run.stage("phone numbers".into());
    let url = format!("{}/v1/phone-numbers", run.base);
    let numbers: PhoneNumbers = run.client.get_as(&url, &[], run.sink)?;
    let numbers = select_lines(numbers.data, &opts.lines)?;
    if opts.workspace_messages {
        let lines: Vec<&str> = numbers.iter().map(|pn| pn.id.as_str()).collect();
        run.workspace_messages(&lines, !opts.lines.is_empty())?;
    }

    for pn in &numbers {
        run.conversations(pn)?;
        let users: Vec<Option<&str>> = if pn.users.is_empty() {
            vec![None]
        } else {
            pn.users.iter().map(|u| Some(u.id.as_str())).collect()
        };
        let conversations = run.checkpoint.conversations(&pn.id).to_vec();
        for conv in &conversations {
            if !opts.workspace_messages {
                run.messages(conv)?;
            }
            // The calls endpoint takes one participant: group calls cannot be listed.
            if let [participant] = conv.participants.as_slice() {
                for user in &users {
                    run.calls(conv, participant, *user)?;
                }
            }
        }
    }
    run.stage("done".into());
    Ok(run.client.progress.clone())
}

/// The lines asked for (all when `wanted` is empty), by `PN…` id or number.
fn select_lines(all: Vec<PhoneNumber>, wanted: &[String]) -> Result<Vec<PhoneNumber>, QuoError> {
    if wanted.is_empty() {
        return Ok(all);
    }
    for line in wanted {
        if !all
            .iter()
            .any(|pn| pn.id == *line || pn.number.as_deref() == Some(line.as_str()))
        {
            let known = all
                .iter()
                .map(|pn| format!("{} ({})", pn.id, pn.number.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(QuoError::UnknownLine {
                line: line.clone(),
                known,
            });
        }
    }
    Ok(all
        .into_iter()
        .filter(|pn| {
            wanted
                .iter()
                .any(|w| *w == pn.id || pn.number.as_deref() == Some(w.as_str()))
        })
        .collect())
}

struct Run<'a> {
    base: String,
    range: Range,
    client: Client,
    checkpoint: &'a mut Checkpoint,
    sink: &'a mut dyn Sink,
    /// Whether summaries and transcripts are still asked for (not on every plan).
    summaries: bool,
    /// Calls given to the sink in this run (two users' lists may share a call).
    seen_calls: HashSet<String>,
}

impl Run<'_> {
    fn stage(&mut self, stage: String) {
        self.client.progress.stage = stage;
        self.sink.progress(&self.client.progress);
    }

    fn put(&mut self, kind: &str, route: String, body: &[u8]) -> Result<(), QuoError> {
        self.sink
            .put(Source::BackfillQuo, &route, body)
            .map_err(|source| QuoError::Sink { route, source })?;
        self.client.count_resource(kind, self.sink);
        Ok(())
    }

    fn unit_done(&mut self) {
        self.client.progress.units_done = self.checkpoint.done_count();
        self.sink.progress(&self.client.progress);
    }

    /// Pages of `unit`: `fetch(run, page token)` handles one page and returns the next token.
    fn pages(
        &mut self,
        unit: &str,
        mut fetch: impl FnMut(&mut Self, Option<String>) -> Result<Option<String>, QuoError>,
    ) -> Result<(), QuoError> {
        if self.checkpoint.is_done(unit) {
            return Ok(());
        }
        self.client.progress.units_total += 1;
        let mut token = self.checkpoint.next_page(unit).map(str::to_owned);
        // Per-conversation listings the API refuses as a bad request (a participant it does
        // not take, say) are skipped and reported: rerunning would only fail there again.
        let skippable = !unit.starts_with("conversations:");
        loop {
            let next = match fetch(self, token) {
                Ok(next) => next,
                Err(QuoError::Fetch(FetchError::Status {
                    status: 400,
                    message,
                    ..
                })) if skippable => {
                    self.client
                        .progress
                        .skipped
                        .push(format!("{unit}: the API answered 400: {message}"));
                    None
                }
                Err(e) => return Err(e),
            };
            self.checkpoint.page_done(unit, next.as_deref())?;
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        self.unit_done();
        Ok(())
    }

    fn conversations(&mut self, pn: &PhoneNumber) -> Result<(), QuoError> {
        let unit = format!("conversations:{}", pn.id);
        self.stage(format!("conversations of {}", pn.id));
        let since = self.range.since_rfc3339();
        self.pages(&unit, |run, token| {
            let mut params = vec![
                ("phoneNumbers[]", pn.id.as_str()),
                ("updatedAfter", since.as_str()),
                ("maxResults", MAX_RESULTS),
            ];
            if let Some(t) = &token {
                params.push(("pageToken", t));
            }
            let url = format!("{}/v1/conversations?{}", run.base, query(&params));
            let page: Page<ConversationItem> = run.client.get_as(&url, &[], run.sink)?;
            let list = page
                .data
                .into_iter()
                .map(|c| Conversation {
                    id: c.id,
                    phone_number_id: c.phone_number_id.unwrap_or_else(|| pn.id.clone()),
                    participants: c.participants,
                })
                .collect();
            run.checkpoint.add_conversations(&pn.id, list);
            Ok(page.next_page_token)
        })
    }

    fn messages(&mut self, conv: &Conversation) -> Result<(), QuoError> {
        let unit = format!("messages:{}", conv.id);
        self.stage(format!("messages of {}", conv.id));
        let (after, before) = (self.range.since_rfc3339(), self.range.until_rfc3339());
        self.pages(&unit, |run, token| {
            let mut params = vec![("phoneNumberId", conv.phone_number_id.as_str())];
            for p in &conv.participants {
                params.push(("participants[]", p));
            }
            params.extend([
                ("createdAfter", after.as_str()),
                ("createdBefore", before.as_str()),
                ("maxResults", MAX_RESULTS),
            ]);
            if let Some(t) = &token {
                params.push(("pageToken", t));
            }
            let url = format!("{}/v1/messages?{}", run.base, query(&params));
            let page: Page<Box<RawValue>> = run.client.get_as(&url, &[], run.sink)?;
            for item in &page.data {
                let head: Head = super::decode(&url, item.get().as_bytes())?;
                run.put(
                    "messages",
                    format!("/v1/messages/{}", head.id),
                    item.get().as_bytes(),
                )?;
            }
            Ok(page.next_page_token)
        })
    }

    /// The workspace-wide walk (see the module header). `only` restricts it to `lines`.
    fn workspace_messages(&mut self, lines: &[&str], only: bool) -> Result<(), QuoError> {
        self.stage("workspace messages".into());
        let (since, until) = (self.range.since_rfc3339(), self.range.until_rfc3339());
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        let (since, until) = (parse(&since), parse(&until));
        self.pages("workspace-messages", |run, cursor| {
            let mut params = vec![("limit", WORKSPACE_LIMIT)];
            if let Some(c) = &cursor {
                params.push(("after", c));
            }
            let url = format!("{}/messages?{}", run.base, query(&params));
            let page: CursorPage<Box<RawValue>> =
                run.client
                    .get_as(&url, &[("Quo-Api-Version", API_VERSION)], run.sink)?;
            let mut reached_before = false;
            for item in &page.data {
                let head: WorkspaceHead = super::decode(&url, item.get().as_bytes())?;
                let at = parse(&head.created_at);
                if at.is_some_and(|at| since.is_some_and(|s| at < s)) {
                    reached_before = true;
                    continue;
                }
                if at.is_some_and(|at| until.is_some_and(|u| at >= u)) {
                    continue;
                }
                if only
                    && !head
                        .phone_number_id
                        .as_deref()
                        .is_some_and(|pn| lines.contains(&pn))
                {
                    continue;
                }
                run.put(
                    "messages",
                    format!("/v1/messages/{}", head.id),
                    item.get().as_bytes(),
                )?;
            }
            // Newest first: once a page reaches back before the range, no later page is in it.
            Ok(if reached_before {
                None
            } else {
                page.next_cursor
            })
        })
    }

    fn calls(
        &mut self,
        conv: &Conversation,
        participant: &str,
        user: Option<&str>,
    ) -> Result<(), QuoError> {
        let unit = format!("calls:{}:{}", conv.id, user.unwrap_or("-"));
        self.stage(format!(
            "calls of {} (user {})",
            conv.id,
            user.unwrap_or("default")
        ));
        let (after, before) = (self.range.since_rfc3339(), self.range.until_rfc3339());
        self.pages(&unit, |run, token| {
            let mut params = vec![
                ("phoneNumberId", conv.phone_number_id.as_str()),
                ("participants[]", participant),
            ];
            if let Some(u) = user {
                params.push(("userId", u));
            }
            params.extend([
                ("createdAfter", after.as_str()),
                ("createdBefore", before.as_str()),
                ("maxResults", MAX_RESULTS),
            ]);
            if let Some(t) = &token {
                params.push(("pageToken", t));
            }
            let url = format!("{}/v1/calls?{}", run.base, query(&params));
            let page: Page<Box<RawValue>> = run.client.get_as(&url, &[], run.sink)?;
            for item in &page.data {
                let head: Head = super::decode(&url, item.get().as_bytes())?;
                if !run.seen_calls.insert(head.id.clone()) {
                    continue;
                }
                run.put(
                    "calls",
                    format!("/v1/calls/{}", head.id),
                    item.get().as_bytes(),
                )?;
                if head.status.as_deref() == Some("completed") {
                    run.call_extra("call-summaries", &head.id)?;
                    run.call_extra("call-transcripts", &head.id)?;
                }
            }
            Ok(page.next_page_token)
        })
    }

    /// A call's summary or transcript (`what` is the path segment), if there is one.
    fn call_extra(&mut self, what: &str, call_id: &str) -> Result<(), QuoError> {
        if !self.summaries {
            return Ok(());
        }
        let url = format!(
            "{}/v1/{what}/{}",
            self.base,
            form_urlencoded::byte_serialize(call_id.as_bytes()).collect::<String>()
        );
        let body = match self.client.get(&url, &[], true, self.sink) {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(()),
            Err(FetchError::Denied { status: 403, .. })
            | Err(FetchError::Status { status: 402, .. }) => {
                self.summaries = false;
                self.stage("call summaries and transcripts: not on this plan".into());
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        // A single fetch answers `{"data": {…}}`; keep the resource itself. Any other answer
        // is kept as sent only if it is JSON: a record's body is the resource's JSON, and a
        // 200 that is not (a proxy's HTML page) stops the run like a list that is not.
        let resource = match serde_json::from_slice::<Single>(&body) {
            Ok(single) => single.data.get().as_bytes().to_vec(),
            Err(_) => {
                super::decode::<serde::de::IgnoredAny>(&url, &body)?;
                body
            }
        };
        self.put(what, format!("/v1/{what}/{call_id}"), &resource)
    }
}
