//! The providers: a read-only call with each credential, and the webhook drift audit (every
//! Twilio number's URLs, Quo's webhook lists) against the approved registry ([`super::urls`]).
//!
//! The requests go through the backfill's HTTP client ([`crate::backfill::Client`]: its rate
//! limit, its retries of 429 and 5xx, its refusal of 401/403), with fewer retries: a doctor run
//! reports a throttled API as a warning rather than waiting minutes. The Twilio numbers are
//! the line import's listing ([`backfill::twilio::incoming_phone_numbers`]); every request
//! gives its progress to [`NoRecords`] (none of them yields a record).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::facts::{quo_lines, Accounts, QuoNumber, Seen};
use super::report::{cut, shown_url, summarize, Finding, Status, MAX_PAGES};
use super::urls::{Field, Registry, Verdict};
use crate::backfill::twilio::TwilioError;
use crate::backfill::{self, Client, FetchError, NoRecords};
use crate::config::Config;
use crate::provider::SendProvider;
use crate::retry::RetryPolicy;
use crate::send::limiter::Limiter;

/// Two retries, quickly: a throttled or failing API is a warning, not a wait.
const DOCTOR_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 2,
    base: Duration::from_millis(200),
    max: Duration::from_secs(2),
    max_retry_after: Duration::from_secs(5),
};

/// The dated API version of Quo's `GET /webhooks`.
const QUO_API_VERSION: &str = "2026-03-30";

fn quo_client(config: &Config, limiter: &Arc<Limiter>) -> Option<(Client, String)> {
    let key = config
        .openphone
        .api_key
        .as_ref()?
        .expose()
        .trim()
        .to_owned();
    let base = config.openphone.api_base.trim_end_matches('/').to_owned();
    let fp = backfill::fingerprint(&key);
    Some((Client::new(key, limiter.clone(), fp, DOCTOR_RETRY), base))
}

fn twilio_client(config: &Config, limiter: &Arc<Limiter>) -> Option<(Client, String, String)> {
    let sid = config.twilio.account_sid.as_deref()?.trim().to_owned();
    let token = config
        .twilio
        .auth_tokens
        .first()?
        .expose()
        .trim()
        .to_owned();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
    let fp = backfill::fingerprint(&format!("{sid}:{token}"));
    let base = config.twilio.api_base.trim_end_matches('/').to_owned();
    Some((
        Client::new(format!("Basic {basic}"), limiter.clone(), fp, DOCTOR_RETRY),
        base,
        sid,
    ))
}

fn limiter() -> Arc<Limiter> {
    Arc::new(Limiter::new(backfill::BACKFILL_RATE))
}

/// Whether Quo is in use: signing keys, an API key, or a Quo line.
fn uses_quo(config: &Config) -> bool {
    !config.openphone.signing_keys.is_empty()
        || config.openphone.api_key.is_some()
        || config.lines.iter().any(|l| l.provider == SendProvider::Quo)
}

/// Whether Twilio is in use: auth tokens, an account, or a Twilio line.
fn uses_twilio(config: &Config) -> bool {
    !config.twilio.auth_tokens.is_empty()
        || config.twilio.account_sid.is_some()
        || config
            .lines
            .iter()
            .any(|l| l.provider == SendProvider::Twilio)
}

/// A failed request as a finding: refused credentials fail (with where to rotate them), a
/// throttled or failing API warns, anything else fails naming the key to check.
fn fetch_finding(check: &str, e: &FetchError, rotate: &str, base_key: &str) -> Finding {
    match e {
        FetchError::Denied { status, .. } => Finding::fail(
            check,
            format!("the credentials were refused ({status})"),
            rotate.to_owned(),
        ),
        FetchError::GaveUp { .. } => Finding::warn(
            check,
            format!(
                "the API did not answer usefully: {}",
                cut(&e.to_string(), 300)
            ),
            "rate-limited (429) or failing (5xx): run hooklog doctor again later",
        ),
        FetchError::Status { .. } | FetchError::Decode { .. } => Finding::fail(
            check,
            cut(&e.to_string(), 300),
            format!("check {base_key} (the API's base URL)"),
        ),
    }
}

/// 6. A read-only call with each credential.
pub(super) fn credentials(config: &Config, out: &mut Vec<Finding>) -> Accounts {
    let mut accounts = Accounts::default();
    let limiter = limiter();
    const QUO: &str = "quo api";
    match quo_client(config, &limiter) {
        None if uses_quo(config) => out.push(Finding::warn(
            QUO,
            "openphone.api_key is not set: Quo's webhooks cannot be audited, nor backfilled",
            "set openphone.api_key_file (an API key from Quo: Settings → API)",
        )),
        None => out.push(Finding::ok(QUO, "Quo is not configured")),
        Some((mut client, base)) => {
            #[derive(Deserialize)]
            struct Numbers {
                #[serde(default)]
                data: Vec<QuoNumber>,
            }
            let url = format!("{base}/v1/phone-numbers");
            match client.get_as::<Numbers>(&url, &[], &mut NoRecords) {
                Ok(n) => {
                    out.push(Finding::ok(
                        QUO,
                        format!(
                            "the API key works: {} phone number(s) in the workspace",
                            n.data.len()
                        ),
                    ));
                    accounts.quo_numbers = Some(n.data);
                }
                Err(e) => out.push(fetch_finding(
                    QUO,
                    &e,
                    "rotate the key in Quo (Settings → API), then set openphone.api_key_file to \
                     the new one",
                    "openphone.api_base",
                )),
            }
        }
    }
    const TWILIO: &str = "twilio api";
    match twilio_client(config, &limiter) {
        None if uses_twilio(config) => out.push(Finding::warn(
            TWILIO,
            "twilio.account_sid or twilio.auth_tokens is not set: the numbers cannot be audited",
            "set twilio.account_sid and twilio.auth_tokens_file",
        )),
        None => out.push(Finding::ok(TWILIO, "Twilio is not configured")),
        Some((mut client, base, sid)) => {
            #[derive(Deserialize)]
            struct Account {
                #[serde(default)]
                status: Option<String>,
            }
            let account = form_urlencoded::byte_serialize(sid.as_bytes()).collect::<String>();
            let url = format!("{base}/2010-04-01/Accounts/{account}.json");
            match client.get_as::<Account>(&url, &[], &mut NoRecords) {
                Ok(a) => {
                    let status = a.status.unwrap_or_default();
                    if status.is_empty() || status == "active" {
                        out.push(Finding::ok(
                            TWILIO,
                            format!("the credentials work: account {} is active", cut(&sid, 40)),
                        ));
                        accounts.twilio_ok = true;
                    } else {
                        out.push(Finding::fail(
                            TWILIO,
                            format!("account {} is {}", cut(&sid, 40), cut(&status, 20)),
                            "reactivate the account in the Twilio console (Billing)",
                        ));
                    }
                }
                Err(e) => out.push(fetch_finding(
                    TWILIO,
                    &e,
                    "rotate the auth token in the Twilio console (Account → API keys & tokens), \
                     then put the new one first in twilio.auth_tokens_file \
                     (ops/runbooks/key-rotation.md)",
                    "twilio.api_base",
                )),
            }
        }
    }
    accounts
}

/// 7a. Every incoming number of the Twilio account: its voice URL, SMS URL and status
/// callback in the registry, its methods POST; every configured Twilio line on the account.
pub(super) fn twilio_drift(config: &Config, accounts: &Accounts, out: &mut Vec<Finding>) {
    const CHECK: &str = "twilio webhooks";
    if !accounts.twilio_ok {
        if uses_twilio(config) {
            out.push(Finding::warn(
                CHECK,
                "skipped: the Twilio credentials did not work (see twilio api)",
                "fix the twilio api line first",
            ));
        }
        return;
    }
    let registry = Registry::new(&config.server.public_urls, &config.doctor.approved_urls);
    if !registry.has_public_url() {
        out.push(Finding::fail(
            CHECK,
            "server.public_urls is empty: no URL can be approved (and Twilio signatures cannot be \
             verified)",
            "set server.public_urls to the public base URL, e.g. https://hooks.example.com",
        ));
    }
    let (Some(sid), Some(token)) = (
        config.twilio.account_sid.as_deref(),
        config.twilio.auth_tokens.first(),
    ) else {
        return;
    };
    let sid = sid.trim();
    let account = form_urlencoded::byte_serialize(sid.as_bytes()).collect::<String>();
    // The line import's listing (pages of 1000, `next_page_uri` followed only on the
    // listing's own path), with the doctor's quick retries.
    let numbers = match backfill::twilio::incoming_phone_numbers(
        &config.twilio.api_base,
        sid,
        token.expose(),
        1000,
        DOCTOR_RETRY,
        limiter(),
    ) {
        Ok(numbers) => numbers,
        Err(e) => {
            out.push(listing_finding(CHECK, &e));
            return;
        }
    };
    let mut good = 0usize;
    for n in &numbers {
        let number = n.phone_number.as_deref().unwrap_or_default();
        let who = format!("{} ({})", cut(number, 20), cut(&n.sid, 40));
        let path = format!(
            "Twilio console → Phone Numbers → {}, or POST \
             /2010-04-01/Accounts/{account}/IncomingPhoneNumbers/{}.json",
            cut(number, 20),
            cut(&n.sid, 40)
        );
        let mut clean = true;
        for (field, key, param, value) in [
            (
                Field::TwilioVoice,
                "voice_url",
                "VoiceUrl",
                n.voice_url.as_deref(),
            ),
            (Field::TwilioSms, "sms_url", "SmsUrl", n.sms_url.as_deref()),
            (
                Field::TwilioStatus,
                "status_callback",
                "StatusCallback",
                n.status_callback.as_deref(),
            ),
        ] {
            match registry.check(value, field) {
                Verdict::Approved => {}
                Verdict::Missing { expected } => {
                    clean = false;
                    let fix = expected
                        .map(|e| format!("set {key} ({param}) to {e} ({path})"))
                        .unwrap_or_else(|| "set server.public_urls first".into());
                    // Without a status callback hooklog never hears how calls end; without a
                    // voice or SMS URL the number sends hooklog nothing at all.
                    out.push(Finding::new(
                        CHECK,
                        if field == Field::TwilioStatus {
                            Status::Warn
                        } else {
                            Status::Fail
                        },
                        format!("{who}: {key} is not set"),
                        fix,
                    ));
                }
                Verdict::Drift { problem, expected } => {
                    clean = false;
                    let fix = expected
                        .map(|e| format!("set {key} ({param}) to {e} ({path})"))
                        .unwrap_or_else(|| "set server.public_urls first".into());
                    out.push(Finding::fail(
                        CHECK,
                        format!(
                            "{who}: {key} {} {}",
                            shown_url(value.unwrap_or_default()),
                            problem.describe()
                        ),
                        fix,
                    ));
                }
            }
        }
        for (key, param, method, url) in [
            ("voice_method", "VoiceMethod", &n.voice_method, &n.voice_url),
            ("sms_method", "SmsMethod", &n.sms_method, &n.sms_url),
        ] {
            let set = url.as_deref().is_some_and(|u| !u.trim().is_empty());
            if let Some(m) = method
                .as_deref()
                .filter(|m| set && !m.eq_ignore_ascii_case("POST"))
            {
                clean = false;
                out.push(Finding::fail(
                    CHECK,
                    format!(
                        "{who}: {key} is {} (hooklog's routes take POST only)",
                        cut(m, 10)
                    ),
                    format!("set {key} ({param}) to POST ({path})"),
                ));
            }
        }
        if clean {
            good += 1;
        }
    }
    let on_account: BTreeSet<&str> = numbers
        .iter()
        .filter_map(|n| n.phone_number.as_deref())
        .collect();
    for (i, line) in config.lines.iter().enumerate() {
        if line.provider == SendProvider::Twilio && !on_account.contains(line.number.as_str()) {
            out.push(Finding::fail(
                CHECK,
                format!(
                    "lines[{i}] ({}, {}) is not an incoming number of account {}",
                    line.id,
                    line.number,
                    cut(sid, 40)
                ),
                "fix lines[].number, or twilio.account_sid if the number is on another account",
            ));
        }
    }
    if good == numbers.len() {
        out.push(Finding::ok(
            CHECK,
            format!("every incoming number ({good}) points at hooklog"),
        ));
    } else {
        out.push(Finding::ok(
            CHECK,
            format!(
                "{good} of {} incoming number(s) point at hooklog",
                numbers.len()
            ),
        ));
    }
}

/// Why the account's numbers could not be listed, as the audit's finding.
///
/// The shared listing returns every number or an error, never the pages read before it
/// stopped: a refused `next_page_uri` or a listing that never ends is a warning that no number
/// was judged (the audit never judges part of an account, so a line on an unread page is
/// never reported missing).
fn listing_finding(check: &str, e: &TwilioError) -> Finding {
    match e {
        TwilioError::CredentialsRefused { status } => Finding::fail(
            check,
            format!("the credentials were refused ({status})"),
            "see the twilio api line",
        ),
        TwilioError::Fetch(e) => {
            fetch_finding(check, e, "see the twilio api line", "twilio.api_base")
        }
        TwilioError::NumbersPageRefused { why, .. } => Finding::warn(
            check,
            format!(
                "refused to follow the IncomingPhoneNumbers listing's next_page_uri: {}; no \
                 number was judged",
                cut(why, 200)
            ),
            "run hooklog doctor again later; if it stays, check twilio.api_base (the API \
             answered a page outside the listing)",
        ),
        TwilioError::NumbersPagesUnending { pages } => Finding::warn(
            check,
            format!("the account's numbers did not end within {pages} pages: no number was judged"),
            "check twilio.api_base (an API that keeps answering a next page)",
        ),
        TwilioError::NotConfigured => Finding::warn(
            check,
            "twilio.account_sid or twilio.auth_tokens is empty: the numbers cannot be audited",
            "set twilio.account_sid and twilio.auth_tokens_file",
        ),
        // Not answers of the listing (it stores nothing and keeps no checkpoint).
        TwilioError::Sink { .. }
        | TwilioError::Checkpoint(_)
        | TwilioError::NextPageRefused { .. } => Finding::fail(
            check,
            cut(&e.to_string(), 300),
            "report this: the numbers listing failed in a way it should not",
        ),
    }
}

/// One Quo webhook of either list: only the fields the audit reads (never `key`, the signing
/// secret the legacy list returns).
#[derive(Deserialize)]
struct QuoWebhook {
    #[serde(default)]
    id: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default, rename = "resourceIds")]
    resource_ids: Vec<String>,
    #[serde(default, rename = "deletedAt")]
    deleted_at: Option<String>,
}

#[derive(Deserialize)]
struct QuoWebhooks {
    #[serde(default)]
    data: Vec<QuoWebhook>,
    #[serde(default, rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// The text every Quo webhook finding that depends on the lists carries.
const APP_NOTE: &str = "webhooks created in the Quo app may not be visible to the API; the quo \
                        activity lines judge from the log";

/// 7b. Quo's webhooks (the legacy and the dated list): hooklog's URL among them, enabled,
/// subscribed to every `[doctor] quo_events` type for every Quo line.
pub(super) fn quo_drift(config: &Config, accounts: &Accounts, seen: &Seen, out: &mut Vec<Finding>) {
    const CHECK: &str = "quo webhooks";
    if accounts.quo_numbers.is_none() {
        if uses_quo(config) {
            out.push(Finding::warn(
                CHECK,
                format!(
                    "skipped: the Quo API key is missing or did not work (see quo api); {APP_NOTE}"
                ),
                "fix the quo api line first",
            ));
        }
        return;
    }
    let limiter = limiter();
    let Some((mut client, base)) = quo_client(config, &limiter) else {
        return;
    };
    let registry = Registry::new(&config.server.public_urls, &config.doctor.approved_urls);
    let mut hooks: Vec<(String, QuoWebhook)> = Vec::new();
    let mut listed = 0usize;
    for (list, url, headers) in [
        ("/v1/webhooks", format!("{base}/v1/webhooks"), Vec::new()),
        (
            "/webhooks",
            format!("{base}/webhooks"),
            vec![("Quo-Api-Version", QUO_API_VERSION)],
        ),
    ] {
        let mut next = url.clone();
        for page in 0.. {
            if page == MAX_PAGES {
                break;
            }
            match client.get_as::<QuoWebhooks>(&next, &headers, &mut NoRecords) {
                Ok(got) => {
                    hooks.extend(got.data.into_iter().map(|w| (list.to_owned(), w)));
                    match got.next_cursor.filter(|c| !c.is_empty()) {
                        Some(c) => {
                            next = format!("{url}?{}", backfill::query(&[("after", c.as_str())]))
                        }
                        None => {
                            listed += 1;
                            break;
                        }
                    }
                }
                Err(e) => {
                    out.push(Finding::warn(
                        CHECK,
                        format!("GET {list} did not answer the list: {}", cut(&e.to_string(), 200)),
                        "if the key was refused, see quo api; otherwise run hooklog doctor again later",
                    ));
                    break;
                }
            }
        }
    }
    if listed > 0 {
        out.push(Finding::ok(
            CHECK,
            format!(
                "the API lists {} webhook(s) (/v1/webhooks and /webhooks); {APP_NOTE}",
                hooks.len()
            ),
        ));
    }
    // The lines whose coverage counts: the configured Quo lines (by phone_number_id, else by
    // number), else every workspace line. Their problems are the quo activity check's to report.
    let numbers = accounts.quo_numbers.as_deref().unwrap_or_default();
    let (lines, _) = quo_lines(config, numbers);

    let mut ours: Vec<&QuoWebhook> = Vec::new();
    for (list, w) in &hooks {
        if w.deleted_at.as_deref().is_some_and(|d| !d.is_empty()) {
            continue;
        }
        let id = cut(&w.id, 40);
        match registry.check(Some(&w.url), Field::Quo) {
            Verdict::Approved => {
                let status = w.status.as_deref().unwrap_or("enabled");
                if status == "enabled" {
                    ours.push(w);
                } else {
                    out.push(Finding::fail(
                        CHECK,
                        format!("webhook {id} ({list}) to {} is {}", shown_url(&w.url), cut(status, 20)),
                        format!("enable webhook {id} in the Quo app (Settings → Integrations → Webhooks)"),
                    ));
                }
            }
            Verdict::Drift {
                problem: super::urls::Problem::Host,
                ..
            } => out.push(Finding::ok(
                CHECK,
                format!(
                    "webhook {id} ({list}) delivers to {} (not hooklog; not audited)",
                    shown_url(&w.url)
                ),
            )),
            Verdict::Drift { problem, expected } => out.push(quo_url_drift(
                &id,
                list,
                &w.url,
                &problem.describe(),
                expected,
            )),
            Verdict::Missing { expected } => {
                out.push(quo_url_drift(&id, list, &w.url, "has no URL", expected))
            }
        }
    }
    let expected = registry
        .approved(Field::Quo)
        .into_iter()
        .next()
        .unwrap_or_else(|| "https://<server.public_urls>/webhook/quo".into());
    let create = |events: &str| {
        format!(
            "subscribe hooklog's webhook to {events}: edit it in the Quo app (Settings → \
             Integrations → Webhooks), or create one with POST /webhooks (Quo-Api-Version: \
             {QUO_API_VERSION}) for {expected} and add its key to openphone.signing_keys"
        )
    };
    if ours.is_empty() && listed > 0 {
        out.push(Finding::warn(
            CHECK,
            format!("no enabled webhook the API lists points at hooklog ({expected}); {APP_NOTE}"),
            create(&config.doctor.quo_events.join(", ")),
        ));
        return;
    }
    if ours.is_empty() {
        return;
    }
    let window = config.doctor.window_days;
    let mut missing_any = false;
    for event in &config.doctor.quo_events {
        // The lines no enabled hooklog webhook covers for this event: a webhook without
        // resourceIds covers every line.
        let covers = |w: &&QuoWebhook, pn: Option<&str>| {
            w.events.iter().any(|e| e == event)
                && (w.resource_ids.is_empty()
                    || pn.is_some_and(|pn| w.resource_ids.iter().any(|r| r == pn)))
        };
        let uncovered: Vec<String> = if lines.is_empty() {
            if ours.iter().any(|w| covers(w, None)) {
                Vec::new()
            } else {
                vec!["the workspace".into()]
            }
        } else {
            lines
                .iter()
                .filter(|l| !ours.iter().any(|w| covers(w, Some(&l.pn))))
                .map(|l| format!("{} ({})", l.number, cut(&l.pn, 40)))
                .collect()
        };
        if uncovered.is_empty() {
            continue;
        }
        missing_any = true;
        let whom = summarize(&uncovered, 6);
        match seen.by_type.get(event.as_str()) {
            Some(last) => out.push(Finding::warn(
                CHECK,
                format!(
                    "{event} is in no listed hooklog webhook for {whom}, yet the log received one \
                     at {} (a webhook made in the Quo app, probably)",
                    last.format("%Y-%m-%d %H:%M UTC")
                ),
                "keep that webhook; to make it visible to this audit, recreate it with the API",
            )),
            None => out.push(Finding::fail(
                CHECK,
                format!(
                    "{event} is in no listed hooklog webhook for {whom}, and the log has none in \
                     the last {window} day(s)"
                ),
                create(event),
            )),
        }
    }
    if !missing_any {
        let ids: Vec<String> = ours.iter().map(|w| cut(&w.id, 40)).collect();
        out.push(Finding::ok(
            CHECK,
            format!(
                "hooklog's webhook(s) {} subscribe to every required event ({})",
                ids.join(", "),
                config.doctor.quo_events.join(", ")
            ),
        ));
    }
}

/// A Quo webhook that points near hooklog but not at an approved URL.
fn quo_url_drift(
    id: &str,
    list: &str,
    url: &str,
    problem: &str,
    expected: Option<String>,
) -> Finding {
    Finding::fail(
        "quo webhooks",
        format!("webhook {id} ({list}) to {} {problem}", shown_url(url)),
        format!(
            "point it at {} (Quo app: Settings → Integrations → Webhooks; or create a new one \
             with that URL, add its key to openphone.signing_keys, and delete this one)",
            expected.unwrap_or_else(|| "server.public_urls + /webhook/quo".into())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_or_unending_numbers_listing_warns_that_no_number_was_judged_and_refused_credentials_fail(
    ) {
        for e in [
            TwilioError::NumbersPageRefused {
                uri: "https://evil.example/x".into(),
                why: "it is not a path on the API host".into(),
            },
            TwilioError::NumbersPagesUnending { pages: 1000 },
        ] {
            let f = listing_finding("twilio webhooks", &e);
            assert_eq!(f.status, Status::Warn, "{e}");
            assert!(f.what.contains("no number was judged"), "{}", f.what);
            assert!(!f.what.contains("evil.example"), "the URI is not printed");
        }
        let f = listing_finding(
            "twilio webhooks",
            &TwilioError::CredentialsRefused { status: 401 },
        );
        assert_eq!(f.status, Status::Fail);
        assert!(f.what.contains("refused (401)"), "{}", f.what);
    }
}
