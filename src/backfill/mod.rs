//! Backfill: fetch what the providers' REST APIs hold for a date range and hand every
//! resource to a [`Sink`] (the CLI appends it to the log), so a gap in webhook delivery is
//! closed with the same facts the webhooks would have brought. Dedup then drops what had
//! already arrived (docs/guarantees.md#5-duplicates-are-kept-but-flagged): each resource becomes a record whose dedup key collides with
//! its webhook twin (the record convention is in the header of [`crate::parse`]).
//!
//! - [`quo`]: Quo (OpenPhone) `/v1`: phone numbers → conversations updated in the range →
//!   messages and calls per conversation → call summaries and transcripts.
//! - [`twilio`]: Twilio 2010-04-01 `Messages.json` and `Calls.json`.
//! - This module: the HTTP fetch loop both use ([`Client`]), the [`Sink`] trait, progress
//!   counters, and the [`Checkpoint`].
//! - The same clients list a workspace's or an account's phone numbers for
//!   `hooklog-replay lines import` ([`quo::phone_numbers`], [`twilio::incoming_phone_numbers`]).
//!
//! Everything here is blocking (ureq on the caller's thread): the CLI runs it on its main
//! thread, the tests against in-process fake servers.
//!
//! # Requests: rate, retries, errors
//!
//! Every attempt (first tries and retries alike) first takes a token from a [`Limiter`] keyed
//! by a fingerprint of the credential. [`BACKFILL_RATE`] is 9 per second with a burst of 1:
//! requests start at least 111 ms apart. Quo allows 10 requests/s per API key; at exactly
//! 10/s (100 ms apart) the variance of connection set-up puts an 11th request inside some
//! 1-second window as the server sees it (the tests measured it), so the backfill keeps a
//! 10 % margin. Twilio's REST limit is a concurrency limit, which one sequential client at
//! this rate stays far below.
//!
//! 429, 5xx and connection errors are retried (up to [`RetryPolicy::max_retries`] times) after
//! an exponential backoff with full jitter, a uniformly random delay in
//! `[0, min(cap, base × 2^attempt)]`; when the answer has a `Retry-After` (seconds or an HTTP
//! date) the delay is at least that. 401 and 403 are never retried: they become
//! [`FetchError::Denied`], which each provider module turns into an error that names the
//! configuration key to check. Any other 4xx is [`FetchError::Status`], with the provider's
//! `message`.
//!
//! # Checkpoint
//!
//! A run records its progress in a small JSON file (written to a temporary file, then
//! renamed over the old one) after every page whose resources have all been given to the sink.
//! An interrupted run started again with the same file resumes where it stopped; a finished
//! run deletes the file. The format (version 1):
//!
//! ```json
//! {
//!   "version": 1,
//!   "run": {"provider": "openphone", "api_base": "https://api.openphone.com",
//!           "since": "2026-03-01", "until": "2026-03-02", "lines": []},
//!   "done": ["conversations:PNa", "messages:CNb", "calls:CNb:USc"],
//!   "pages": {"messages:CNd": "<page token of the next page to fetch>"},
//!   "conversations": {"PNa": [{"id": "CNb", "phoneNumberId": "PNa", "participants": ["+1555…"]}]}
//! }
//! ```
//!
//! - `run`: the parameters the file belongs to; a run with other parameters refuses the file
//!   (delete it, or pass another one).
//! - `done`: the units of work finished. A unit is a paged listing: Quo
//!   `conversations:<PN id>`, `messages:<CN id>`, `calls:<CN id>:<US id>` (one per user of the
//!   line, since the calls endpoint lists one user's calls); Twilio `messages`, `calls`.
//! - `pages`: for a unit under way, the token (Quo `pageToken`, Twilio `next_page_uri`) of the
//!   next page to fetch: the pages before it have been delivered to the sink.
//! - `conversations`: Quo only: the conversations listed so far per phone number, which the
//!   later units iterate over.
//!
//! A page is recorded only after all its resources (and, for Quo calls, their summaries and
//! transcripts) were accepted by the sink, so a resumed run may deliver the last page again
//! but never skips one; the repeated records are marked duplicate by dedup.

pub mod quo;
pub mod twilio;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Micros, Seq, Source, Verification, Verified};
use crate::log::{Log, LogError};
use crate::retry::RetryPolicy;
use crate::send::limiter::{Limiter, Rate};

/// Requests per second per credential: under Quo's 10/s with a margin, evenly spaced (burst
/// 1). See the module header.
pub const BACKFILL_RATE: Rate = Rate {
    per_second: 9,
    burst: 1,
};

/// Why a sink refused a resource (the CLI's append failed).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where fetched resources go, one REST resource at a time.
pub trait Sink {
    /// One resource: the record `source` (`backfill-openphone`, `backfill-twilio`), its route
    /// (`/v1/messages/{id}`, …) and the resource's JSON as the provider sent it.
    fn put(&mut self, source: Source, route: &str, body: &[u8]) -> Result<(), SinkError>;

    /// Called after every request and every resource with the counts so far.
    fn progress(&mut self, _progress: &Progress) {}
}

/// The sink of a request that stores nothing: the line import's listings of numbers
/// ([`quo::phone_numbers`], [`twilio::incoming_phone_numbers`]) and every read-only call of
/// `hooklog doctor` (the credential checks, the webhook lists) go through the same [`Client`]
/// (limiter, retries, errors), which gives a sink only its progress. A resource given anyway
/// is refused, so a caller that mixes the two up stops instead of dropping records.
#[derive(Debug, Default)]
pub struct NoRecords;

impl Sink for NoRecords {
    fn put(&mut self, _source: Source, route: &str, _body: &[u8]) -> Result<(), SinkError> {
        Err(format!("{route}: this listing stores no records").into())
    }
}

/// What a run has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// HTTP requests made (every attempt, retries included).
    pub requests: u64,
    /// Of those, retries after a 429, a 5xx or a connection error.
    pub retries: u64,
    /// Resources given to the sink.
    pub resources: u64,
    /// Units of work finished (see the checkpoint format).
    pub units_done: u64,
    /// Units of work known so far (grows as conversations are listed).
    pub units_total: u64,
    /// What is being fetched now, e.g. `messages of CN123`.
    pub stage: String,
    /// Resources by kind (`messages`, `calls`, `call-summaries`, …).
    pub by_kind: BTreeMap<String, u64>,
    /// Listings skipped because the API refused them (Quo: see [`quo`]), with the reason.
    pub skipped: Vec<String>,
}

/// The date range of a run: `since` (inclusive) to `until` (exclusive), whole UTC days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// First day fetched.
    pub since: NaiveDate,
    /// First day not fetched.
    pub until: NaiveDate,
}

impl Range {
    /// `since` ≤ day < `until`; refuses an empty range.
    pub fn new(since: NaiveDate, until: NaiveDate) -> Result<Range, String> {
        if until <= since {
            return Err(format!(
                "--until {until} must be after --since {since} (the range is since ≤ day < until)"
            ));
        }
        Ok(Range { since, until })
    }

    /// `since` at midnight UTC, RFC 3339.
    pub fn since_rfc3339(&self) -> String {
        format!("{}T00:00:00Z", self.since)
    }

    /// `until` at midnight UTC, RFC 3339.
    pub fn until_rfc3339(&self) -> String {
        format!("{}T00:00:00Z", self.until)
    }

    /// The last day fetched (`until` − 1 day), for APIs whose upper bound is an inclusive day.
    pub fn last_day(&self) -> NaiveDate {
        self.until.pred_opt().unwrap_or(self.until)
    }
}

/// The retries of one backfill request: 8 after the first try, 250 ms doubling to 30 s, and a
/// `Retry-After` honoured up to 5 minutes (a backfill can wait; a gap must not stay open).
pub const BACKFILL_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 8,
    base: Duration::from_millis(250),
    max: Duration::from_secs(30),
    max_retry_after: Duration::from_secs(300),
};

/// Why a request failed for good.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// 401 or 403: the credential was refused. Never retried.
    #[error("{url} answered {status}: the credentials were refused")]
    Denied {
        /// 401 or 403.
        status: u16,
        /// The URL asked for.
        url: String,
    },
    /// Another client error (400, 404, …): the request itself is wrong.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The URL asked for.
        url: String,
        /// The provider's `message`, or the start of the body.
        message: String,
    },
    /// 429, 5xx or connection errors on every attempt.
    #[error("{url}: gave up after {attempts} attempts; the last: {last}")]
    GaveUp {
        /// The URL asked for.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The answer was not the JSON expected.
    #[error("{url}: unexpected answer: {detail}")]
    Decode {
        /// The URL asked for.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

/// A blocking JSON client for one credential: limiter, retries, counters.
pub struct Client {
    agent: ureq::Agent,
    limiter: Arc<Limiter>,
    limiter_key: String,
    authorization: String,
    retry: RetryPolicy,
    /// Counters, reported to the sink.
    pub progress: Progress,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("limiter_key", &self.limiter_key)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client sending `Authorization: <authorization>` on every request, counting against
    /// `limiter_key` (a fingerprint, never the secret).
    pub fn new(
        authorization: String,
        limiter: Arc<Limiter>,
        limiter_key: String,
        retry: RetryPolicy,
    ) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("hooklog-backfill/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent,
            limiter,
            limiter_key,
            authorization,
            retry,
            progress: Progress::default(),
        }
    }

    /// `GET url`: the body bytes; `Ok(None)` for a 404 when `missing_ok`.
    pub fn get(
        &mut self,
        url: &str,
        extra_headers: &[(&str, &str)],
        missing_ok: bool,
        sink: &mut dyn Sink,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let mut attempt = 0u32;
        loop {
            self.limiter.acquire(&self.limiter_key);
            self.progress.requests += 1;
            if attempt > 0 {
                self.progress.retries += 1;
            }
            sink.progress(&self.progress);
            let mut req = self
                .agent
                .get(url)
                .set("Authorization", &self.authorization)
                .set("Accept", "application/json");
            for (k, v) in extra_headers {
                req = req.set(k, v);
            }
            let (failure, retry_after) = match req.call() {
                Ok(resp) => {
                    let mut body = Vec::new();
                    match resp.into_reader().take(MAX_BODY).read_to_end(&mut body) {
                        Ok(_) => return Ok(Some(body)),
                        Err(e) => (format!("reading the answer: {e}"), None),
                    }
                }
                Err(ureq::Error::Status(status @ (401 | 403), _)) => {
                    return Err(FetchError::Denied {
                        status,
                        url: url.to_owned(),
                    });
                }
                Err(ureq::Error::Status(404, _)) if missing_ok => return Ok(None),
                Err(ureq::Error::Status(status, resp)) if status == 429 || status >= 500 => {
                    let retry_after = resp.header("retry-after").and_then(parse_retry_after);
                    (format!("HTTP {status}"), retry_after)
                }
                Err(ureq::Error::Status(status, resp)) => {
                    let body = resp.into_string().unwrap_or_default();
                    return Err(FetchError::Status {
                        status,
                        url: url.to_owned(),
                        message: error_message(&body),
                    });
                }
                Err(ureq::Error::Transport(t)) => (t.to_string(), None),
            };
            if attempt >= self.retry.max_retries {
                return Err(FetchError::GaveUp {
                    url: url.to_owned(),
                    attempts: attempt + 1,
                    last: failure,
                });
            }
            let unit: f64 = rand::thread_rng().gen_range(0.0..=1.0);
            std::thread::sleep(self.retry.delay(attempt, retry_after, unit));
            attempt += 1;
        }
    }

    /// `GET url` decoded as `T`.
    pub fn get_as<T: serde::de::DeserializeOwned>(
        &mut self,
        url: &str,
        extra_headers: &[(&str, &str)],
        sink: &mut dyn Sink,
    ) -> Result<T, FetchError> {
        let body = self
            .get(url, extra_headers, false, sink)?
            .unwrap_or_default();
        decode(url, &body)
    }

    /// One resource was given to the sink.
    pub fn count_resource(&mut self, kind: &str, sink: &mut dyn Sink) {
        self.progress.resources += 1;
        *self.progress.by_kind.entry(kind.to_owned()).or_default() += 1;
        sink.progress(&self.progress);
    }
}

/// Largest answer read (a page of 1000 Twilio messages is a few MB).
const MAX_BODY: u64 = 256 << 20;

/// `body` decoded as `T`, or [`FetchError::Decode`].
pub fn decode<T: serde::de::DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, FetchError> {
    serde_json::from_slice(body).map_err(|e| FetchError::Decode {
        url: url.to_owned(),
        detail: e.to_string(),
    })
}

/// `Retry-After`: delay-seconds, or an HTTP date (RFC 2822 form).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The `message` of a provider's JSON error body, else the start of the body.
fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            return m.to_owned();
        }
    }
    let mut s: String = body.chars().take(200).collect();
    if s.is_empty() {
        s.push_str("(empty body)");
    }
    s
}

/// A fingerprint of a credential, for limiter keys: never the secret itself.
pub fn fingerprint(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(secret.as_bytes())[..6])
}

/// A query string: keys and values percent-encoded, except `[` and `]` in keys (Quo's
/// array parameters are sent as `participants[]=…`, as the public clients do).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        let key: String = form_urlencoded::byte_serialize(k.as_bytes()).collect();
        out.push_str(&key.replace("%5B", "[").replace("%5D", "]"));
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(v.as_bytes()));
    }
    out
}

/// Why the checkpoint file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a checkpoint of this format.
    #[error("checkpoint {path} cannot be read: {detail}; delete it to start over")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The file belongs to a run with other parameters.
    #[error(
        "checkpoint {path} belongs to another run ({found}); delete it to start over, or pass \
         --checkpoint with another file"
    )]
    OtherRun {
        /// The file.
        path: PathBuf,
        /// The other run's parameters.
        found: String,
    },
}

/// The parameters a checkpoint belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunKey {
    /// `openphone` or `twilio`.
    pub provider: String,
    /// The API base URL.
    pub api_base: String,
    /// First day.
    pub since: NaiveDate,
    /// First day not fetched.
    pub until: NaiveDate,
    /// `--line` filters (Quo), sorted.
    pub lines: Vec<String>,
}

impl std::fmt::Display for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {}, {} to {}",
            self.provider, self.api_base, self.since, self.until
        )?;
        if !self.lines.is_empty() {
            write!(f, ", lines {}", self.lines.join(" "))?;
        }
        Ok(())
    }
}

/// A conversation as the checkpoint keeps it (Quo).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// `CN…`.
    pub id: String,
    /// `PN…`.
    pub phone_number_id: String,
    /// The other parties, E.164.
    pub participants: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    run: RunKey,
    #[serde(default)]
    done: BTreeSet<String>,
    #[serde(default)]
    pages: BTreeMap<String, String>,
    #[serde(default)]
    conversations: BTreeMap<String, Vec<Conversation>>,
}

const CHECKPOINT_VERSION: u32 = 1;

/// A run's progress, kept in a file (or only in memory: a dry run leaves no file).
#[derive(Debug)]
pub struct Checkpoint {
    path: Option<PathBuf>,
    state: CheckpointFile,
    resumed: bool,
}

impl Checkpoint {
    /// Loads `path` if it exists (refusing one of another run), else starts afresh and writes
    /// it; saves to `path` as the run goes. `None`: in memory only.
    pub fn open(path: Option<&Path>, run: RunKey) -> Result<Checkpoint, CheckpointError> {
        let fresh = CheckpointFile {
            version: CHECKPOINT_VERSION,
            run: run.clone(),
            done: BTreeSet::new(),
            pages: BTreeMap::new(),
            conversations: BTreeMap::new(),
        };
        let Some(path) = path else {
            return Ok(Checkpoint {
                path: None,
                state: fresh,
                resumed: false,
            });
        };
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let cp = Checkpoint {
                    path: Some(path.to_owned()),
                    state: fresh,
                    resumed: false,
                };
                // Written at once, so an unwritable place is found before any fetch.
                cp.save()?;
                return Ok(cp);
            }
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let state: CheckpointFile =
            serde_json::from_slice(&text).map_err(|e| CheckpointError::Invalid {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
        if state.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Invalid {
                path: path.to_owned(),
                detail: format!("format version {} (expected 1)", state.version),
            });
        }
        if state.run != run {
            return Err(CheckpointError::OtherRun {
                path: path.to_owned(),
                found: state.run.to_string(),
            });
        }
        Ok(Checkpoint {
            path: Some(path.to_owned()),
            state,
            resumed: true,
        })
    }

    /// Whether this continues an earlier, interrupted run.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether `unit` is finished.
    pub fn is_done(&self, unit: &str) -> bool {
        self.state.done.contains(unit)
    }

    /// Whether nothing has been recorded yet (no unit finished or under way).
    pub fn is_empty(&self) -> bool {
        self.state.done.is_empty()
            && self.state.pages.is_empty()
            && self.state.conversations.is_empty()
    }

    /// Units finished.
    pub fn done_count(&self) -> u64 {
        self.state.done.len() as u64
    }

    /// The token of the next page of `unit`, if it is under way.
    pub fn next_page(&self, unit: &str) -> Option<&str> {
        self.state.pages.get(unit).map(String::as_str)
    }

    /// The page before `next` was delivered: records `next` (or the unit's end) and saves.
    pub fn page_done(&mut self, unit: &str, next: Option<&str>) -> Result<(), CheckpointError> {
        match next {
            Some(token) => {
                self.state.pages.insert(unit.to_owned(), token.to_owned());
            }
            None => {
                self.state.pages.remove(unit);
                self.state.done.insert(unit.to_owned());
            }
        }
        self.save()
    }

    /// The conversations of a phone number listed so far.
    pub fn conversations(&self, phone_number_id: &str) -> &[Conversation] {
        self.state
            .conversations
            .get(phone_number_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Adds listed conversations (saved with the next [`Checkpoint::page_done`]).
    pub fn add_conversations(&mut self, phone_number_id: &str, list: Vec<Conversation>) {
        let known = self
            .state
            .conversations
            .entry(phone_number_id.to_owned())
            .or_default();
        for c in list {
            if !known.iter().any(|k| k.id == c.id) {
                known.push(c);
            }
        }
    }

    /// The run is complete: the file is removed (a later run starts afresh).
    pub fn finish(self) -> Result<(), CheckpointError> {
        if let Some(path) = &self.path {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CheckpointError::Io {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<(), CheckpointError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(&self.state).map_err(|e| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            ))
        })?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Appends one backfilled resource straight into a log (the daemon is stopped and the CLI
/// opened the data directory). The record is the same as one appended through
/// `POST /admin/events`: verification `admin-token` (whoever can open the data directory
/// holds at least the admin token's power). Waits until the record is durable.
pub fn append_direct(
    log: &dyn Log,
    source: Source,
    route: &str,
    body: &[u8],
) -> Result<Seq, LogError> {
    let verified = Verified::new(
        Micros::now(),
        source,
        route.to_owned(),
        Vec::new(),
        body.to_vec(),
        Verification::AdminToken,
    );
    log.append(verified).wait_blocking()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn array_keys_keep_their_brackets_and_everything_else_is_encoded() {
        assert_eq!(
            query(&[
                ("participants[]", "+15550001111"),
                ("DateSent>", "2026-03-01")
            ]),
            "participants[]=%2B15550001111&DateSent%3E=2026-03-01"
        );
    }

    #[test]
    fn a_range_is_since_inclusive_until_exclusive_and_never_empty() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default();
        let r = Range::new(d("2026-03-01"), d("2026-03-02")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.last_day(), d("2026-03-01"));
        assert_eq!(r.until_rfc3339(), "2026-03-02T00:00:00Z");
        assert!(Range::new(d("2026-03-01"), d("2026-03-01")).is_err());
    }

    #[test]
    fn a_checkpoint_of_another_run_is_refused_and_a_finished_one_is_removed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cp.json");
        let run = |since: &str| RunKey {
            provider: "twilio".into(),
            api_base: "http://x".into(),
            since: NaiveDate::parse_from_str(since, "%Y-%m-%d").unwrap_or_default(),
            until: NaiveDate::from_ymd_opt(2026, 4, 1).unwrap_or_default(),
            lines: vec![],
        };
        let mut cp =
            Checkpoint::open(Some(&path), run("2026-03-01")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!cp.resumed());
        cp.page_done("messages", Some("/next"))
            .unwrap_or_else(|e| panic!("{e}"));
        let cp = Checkpoint::open(Some(&path), run("2026-03-01")).unwrap_or_else(|e| panic!("{e}"));
        assert!(cp.resumed());
        assert_eq!(cp.next_page("messages"), Some("/next"));
        assert!(matches!(
            Checkpoint::open(Some(&path), run("2026-02-01")),
            Err(CheckpointError::OtherRun { .. })
        ));
        cp.finish().unwrap_or_else(|e| panic!("{e}"));
        assert!(!path.exists());
    }
}
