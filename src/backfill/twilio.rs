//! Twilio backfill over the 2010-04-01 REST API (docs/reference/twilio.md#backfill-2010-04-01).
//!
//! Two listings, each a unit of the checkpoint:
//!
//! - `messages`: `GET /2010-04-01/Accounts/{AC}/Messages.json?DateSent>=<since>&DateSent<=<last
//!   day>&PageSize=1000` (the filter names are literally `DateSent>` and `DateSent<`, sent as
//!   `DateSent%3E`/`DateSent%3C`; both bounds are inclusive whole UTC days, so the upper one
//!   is the day before `--until`);
//! - `calls`: `GET /2010-04-01/Accounts/{AC}/Calls.json?StartTime>=<since>&StartTime<=<last
//!   day>&PageSize=1000`.
//!
//! Each follows `next_page_uri` (relative, fetched from the API base) until it is null; the
//! checkpoint stores that URI as the page token. A `next_page_uri` is followed only when it is
//! the same listing's path under the API's own version path
//! (`/2010-04-01/Accounts/{AC}/Messages.json?…`, see [`check_next_page`]): the request carries
//! the account's credentials, so a page that points anywhere else (another host, another
//! path) is refused and the run stops ([`TwilioError::NextPageRefused`]). Authentication is HTTP Basic with the
//! account SID and the first of `[twilio] auth_tokens`. Each message or call goes to the
//! sink as one record of source `backfill-twilio`, route `/2010-04-01/Messages/{sid}` or
//! `/2010-04-01/Calls/{sid}`, body the item's JSON exactly as the API sent it.
//!
//! [`incoming_phone_numbers`] lists the account's numbers (`IncomingPhoneNumbers.json`, paged
//! and checked the same way) for `hooklog-replay lines import --from twilio` and for
//! `hooklog doctor`'s audit of each number's webhook URLs (the one listing of both).

use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    fingerprint, query, Checkpoint, CheckpointError, Client, FetchError, Progress, Range, RunKey,
    Sink, SinkError,
};
use crate::event::Source;
use crate::retry::RetryPolicy;
use crate::send::limiter::Limiter;

/// Why a Twilio backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// 401/403: the account SID or the auth token is wrong.
    #[error(
        "the Twilio credentials were refused ({status}): check [twilio] account_sid and \
         auth_tokens (the first token is used)"
    )]
    CredentialsRefused {
        /// 401 or 403.
        status: u16,
    },
    /// The account SID or the auth token is not configured.
    #[error("Twilio backfill needs [twilio] account_sid and auth_tokens")]
    NotConfigured,
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
    /// A `next_page_uri` (from the API, or from the checkpoint being resumed) is not a page
    /// of the listing under way: absolute, on another host, or outside
    /// `/2010-04-01/Accounts/<sid>/<Messages|Calls>.json`. It is never fetched (it would carry
    /// the account's credentials wherever it points); the run stops there, keeping what it
    /// fetched before.
    #[error(
        "refused to follow the {unit} listing's next_page_uri `{uri}`: {why}; the backfill \
         stopped there after {resources} resource(s) (those are stored and the checkpoint \
         keeps the last good page)"
    )]
    NextPageRefused {
        /// `messages` or `calls`.
        unit: String,
        /// The URI, cut to 200 characters and with control characters escaped.
        uri: String,
        /// What is wrong with it.
        why: String,
        /// Resources given to the sink by this run before it stopped.
        resources: u64,
    },
    /// The same refusal while listing the account's numbers (`lines import`): nothing is
    /// imported.
    #[error(
        "refused to follow the IncomingPhoneNumbers listing's next_page_uri `{uri}`: {why}; \
         nothing was imported"
    )]
    NumbersPageRefused {
        /// The URI, cut to 200 characters and with control characters escaped.
        uri: String,
        /// What is wrong with it.
        why: String,
    },
    /// The account's numbers did not end within [`MAX_NUMBER_PAGES`] pages (an API that
    /// keeps answering with a next page): the listing stops, nothing is returned.
    #[error(
        "the IncomingPhoneNumbers listing has more than {pages} pages: it never ends; \
         nothing was listed (check [twilio] api_base)"
    )]
    NumbersPagesUnending {
        /// The pages followed before stopping.
        pages: usize,
    },
}

impl From<FetchError> for TwilioError {
    fn from(e: FetchError) -> TwilioError {
        match e {
            FetchError::Denied { status, .. } => TwilioError::CredentialsRefused { status },
            other => TwilioError::Fetch(other),
        }
    }
}

/// What to fetch, and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// API base URL (`https://api.twilio.com`).
    pub api_base: String,
    /// `AC…`.
    pub account_sid: String,
    /// The auth token (or an API key secret with its SID as `account_sid`).
    pub auth_token: String,
    /// The days to fetch.
    pub range: Range,
    /// Items per page (at most 1000).
    pub page_size: u32,
    /// Retries of each request.
    pub retry: RetryPolicy,
}

impl Options {
    /// The parameters the checkpoint belongs to.
    pub fn run_key(&self) -> RunKey {
        RunKey {
            provider: "twilio".into(),
            api_base: self.api_base.trim_end_matches('/').to_owned(),
            since: self.range.since,
            until: self.range.until,
            lines: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    messages: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    calls: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

#[derive(Deserialize)]
struct Head {
    sid: String,
}

/// Fetches the messages, then the calls, of the range.
pub fn backfill(
    opts: &Options,
    limiter: Arc<Limiter>,
    checkpoint: &mut Checkpoint,
    sink: &mut dyn Sink,
) -> Result<Progress, TwilioError> {
    let sid = opts.account_sid.trim();
    let token = opts.auth_token.trim();
    if sid.is_empty() || token.is_empty() {
        return Err(TwilioError::NotConfigured);
    }
    let mut client = basic_client(sid, token, limiter, opts.retry);
    client.progress.units_done = checkpoint.done_count();
    client.progress.units_total = 2;
    let base = opts.api_base.trim_end_matches('/');
    let account = form_urlencoded::byte_serialize(sid.as_bytes()).collect::<String>();
    let (since, last) = (
        opts.range.since.to_string(),
        opts.range.last_day().to_string(),
    );
    let page_size = opts.page_size.clamp(1, 1000).to_string();

    for (unit, resource, lo, hi) in [
        ("messages", "Messages", "DateSent>", "DateSent<"),
        ("calls", "Calls", "StartTime>", "StartTime<"),
    ] {
        if checkpoint.is_done(unit) {
            continue;
        }
        client.progress.stage = unit.to_owned();
        sink.progress(&client.progress);
        let first = format!(
            "{base}/2010-04-01/Accounts/{account}/{resource}.json?{}",
            query(&[
                (lo, since.as_str()),
                (hi, last.as_str()),
                ("PageSize", page_size.as_str()),
            ])
        );
        let listing = format!("/2010-04-01/Accounts/{account}/{resource}.json");
        let refused = |uri: &str, why: String, resources: u64| TwilioError::NextPageRefused {
            unit: unit.to_owned(),
            uri: uri.chars().take(200).flat_map(char::escape_debug).collect(),
            why,
            resources,
        };
        let mut url = match checkpoint.next_page(unit) {
            Some(uri) => {
                check_next_page(uri, &listing)
                    .map_err(|why| refused(uri, why, client.progress.resources))?;
                format!("{base}{uri}")
            }
            None => first,
        };
        loop {
            let page: Page = client.get_as(&url, &[], sink)?;
            let items = match resource {
                "Messages" => page.messages,
                _ => page.calls,
            }
            .unwrap_or_default();
            for item in &items {
                let head: Head = super::decode(&url, item.get().as_bytes())?;
                let route = format!("/2010-04-01/{resource}/{}", head.sid);
                sink.put(Source::BackfillTwilio, &route, item.get().as_bytes())
                    .map_err(|source| TwilioError::Sink {
                        route: route.clone(),
                        source,
                    })?;
                client.count_resource(unit, sink);
            }
            let next = page.next_page_uri.filter(|u| !u.is_empty());
            if let Some(uri) = &next {
                // Before the checkpoint records it: a resumed run must not meet it either.
                check_next_page(uri, &listing)
                    .map_err(|why| refused(uri, why, client.progress.resources))?;
            }
            checkpoint.page_done(unit, next.as_deref())?;
            match next {
                Some(uri) => url = format!("{base}{uri}"),
                None => break,
            }
        }
        client.progress.units_done = checkpoint.done_count();
        sink.progress(&client.progress);
    }
    client.progress.stage = "done".into();
    sink.progress(&client.progress);
    Ok(client.progress)
}

/// A client that signs in with HTTP Basic `sid:token` (both already trimmed, not empty).
fn basic_client(sid: &str, token: &str, limiter: Arc<Limiter>, retry: RetryPolicy) -> Client {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
    Client::new(
        format!("Basic {basic}"),
        limiter,
        fingerprint(&format!("{sid}:{token}")),
        retry,
    )
}

/// A number of the account as `IncomingPhoneNumbers.json` lists it, unchecked: the caller
/// validates what it keeps. The line import reads the first three fields, the doctor's audit
/// the webhook URLs and methods.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct TwilioNumber {
    /// `PN…` (Twilio's resource id; the sender names a Twilio line by its number).
    pub sid: String,
    /// E.164, if given.
    #[serde(default)]
    pub phone_number: Option<String>,
    /// The account's name for it, if any.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// Where Twilio sends its calls (`VoiceUrl`), if set.
    #[serde(default)]
    pub voice_url: Option<String>,
    /// The method of `voice_url` (`POST` or `GET`).
    #[serde(default)]
    pub voice_method: Option<String>,
    /// Where Twilio sends its messages (`SmsUrl`), if set.
    #[serde(default)]
    pub sms_url: Option<String>,
    /// The method of `sms_url`.
    #[serde(default)]
    pub sms_method: Option<String>,
    /// Where Twilio reports how its calls end (`StatusCallback`), if set.
    #[serde(default)]
    pub status_callback: Option<String>,
}

#[derive(Deserialize)]
struct NumbersPage {
    #[serde(default)]
    incoming_phone_numbers: Vec<TwilioNumber>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// Most pages of numbers followed (a million numbers at 1000 a page): an API that keeps
/// answering with a next page stops the listing instead of running forever.
pub const MAX_NUMBER_PAGES: usize = 1000;

/// The account's numbers: `GET /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json`, pages
/// of at most `page_size` (≤ 1000) followed by `next_page_uri` under the same rule as the
/// backfill's ([`check_next_page`]: never off the listing), with the retries of `retry`.
pub fn incoming_phone_numbers(
    api_base: &str,
    account_sid: &str,
    auth_token: &str,
    page_size: u32,
    retry: RetryPolicy,
    limiter: Arc<Limiter>,
) -> Result<Vec<TwilioNumber>, TwilioError> {
    let (sid, token) = (account_sid.trim(), auth_token.trim());
    if sid.is_empty() || token.is_empty() {
        return Err(TwilioError::NotConfigured);
    }
    let mut client = basic_client(sid, token, limiter, retry);
    let base = api_base.trim_end_matches('/');
    let account = form_urlencoded::byte_serialize(sid.as_bytes()).collect::<String>();
    let listing = format!("/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json");
    let page_size = page_size.clamp(1, 1000).to_string();
    let mut url = format!(
        "{base}{listing}?{}",
        query(&[("PageSize", page_size.as_str())])
    );
    let mut numbers = Vec::new();
    for _ in 0..MAX_NUMBER_PAGES {
        let page: NumbersPage = client.get_as(&url, &[], &mut super::NoRecords)?;
        numbers.extend(page.incoming_phone_numbers);
        let Some(uri) = page.next_page_uri.filter(|u| !u.is_empty()) else {
            return Ok(numbers);
        };
        check_next_page(&uri, &listing).map_err(|why| TwilioError::NumbersPageRefused {
            uri: uri.chars().take(200).flat_map(char::escape_debug).collect(),
            why,
        })?;
        url = format!("{base}{uri}");
    }
    Err(TwilioError::NumbersPagesUnending {
        pages: MAX_NUMBER_PAGES,
    })
}

/// Whether `uri` may be fetched as the next page of `listing`
/// (`/2010-04-01/Accounts/{AC}/Messages.json`): it must be that path exactly, followed by
/// nothing or by a query. So no scheme or host (absolute and protocol-relative URIs are
/// refused), no other account, resource or API version, no `..` or encoded path tricks (the
/// path is compared byte for byte before the `?`), and no fragment, blank, control character
/// or backslash anywhere (which URL parsers disagree about). `Err` says what is wrong.
pub fn check_next_page(uri: &str, listing: &str) -> Result<(), String> {
    if uri.len() > 8192 {
        return Err("it is longer than 8192 bytes".into());
    }
    if let Some(c) = uri
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '\\' | '#'))
    {
        return Err(format!(
            "it contains {c:?}, which no page of the listing does"
        ));
    }
    if !uri.starts_with('/') || uri.starts_with("//") {
        return Err(format!(
            "it is not a path on the API host (only {listing}?… is followed)"
        ));
    }
    let path = uri.split_once('?').map_or(uri, |(path, _)| path);
    if path != listing {
        return Err(format!("its path is not {listing}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_next_page;

    const LISTING: &str = "/2010-04-01/Accounts/AC123/Messages.json";

    #[test]
    fn the_listings_own_next_pages_are_followed() {
        for uri in [
            "/2010-04-01/Accounts/AC123/Messages.json?PageSize=1000&Page=1&PageToken=PAabc",
            "/2010-04-01/Accounts/AC123/Messages.json",
            "/2010-04-01/Accounts/AC123/Messages.json?DateSent%3E=2026-03-02&PageToken=PA2",
        ] {
            assert_eq!(check_next_page(uri, LISTING), Ok(()), "{uri}");
        }
    }

    #[test]
    fn a_uri_that_leaves_the_listing_is_refused_saying_why() {
        for (uri, says) in [
            (
                "https://evil.example/2010-04-01/Accounts/AC123/Messages.json",
                "not a path",
            ),
            (
                "//evil.example/2010-04-01/Accounts/AC123/Messages.json",
                "not a path",
            ),
            (
                "http:/2010-04-01/Accounts/AC123/Messages.json",
                "not a path",
            ),
            (
                "@evil.example/2010-04-01/Accounts/AC123/Messages.json",
                "not a path",
            ),
            (
                "/2010-04-01/Accounts/AC999/Messages.json?Page=1",
                "its path is not",
            ),
            (
                "/2010-04-01/Accounts/AC123/Calls.json?Page=1",
                "its path is not",
            ),
            (
                "/2010-04-01/Accounts/AC123/Messages.json/../../../x",
                "its path is not",
            ),
            (
                "/2010-04-01/Accounts/AC123/Messages.json%2F..%2Fx",
                "its path is not",
            ),
            (
                "/2010-04-01/Accounts/AC123/Messages.jsonx?Page=1",
                "its path is not",
            ),
            ("/v1/messages?Page=1", "its path is not"),
            (
                "/2010-04-01/Accounts/AC123/Messages.json?x=1#frag",
                "contains '#'",
            ),
            (
                "/2010-04-01/Accounts/AC123/Messages.json?x=\\evil",
                "contains '\\\\'",
            ),
            (
                "/2010-04-01/Accounts/AC123/Messages.json?x=1\r\nHost: evil",
                "contains '\\r'",
            ),
            (
                "/2010-04-01/Accounts/AC123/Messages.json? x",
                "contains ' '",
            ),
        ] {
            let why = check_next_page(uri, LISTING).unwrap_err();
            assert!(why.contains(says), "{uri}: {why}");
        }
    }
}
