//! The log's own evidence of Quo delivery: the last webhook received per event type and per
//! Quo line (`phoneNumberId`) in the last `[doctor] window_days`, read from the running
//! daemon's admin API (`GET /admin/status`, `/admin/events/{seq}`, `/admin/events`) or, when
//! no daemon runs, from the log directly. Webhooks made in the Quo app may not be listed by
//! the API, so this is how such a webhook is judged.
//!
//! Bounded: the window's first record is found by bisection on receipt time (a few dozen
//! single reads), and at most [`MAX_WINDOW_RECORDS`] records, the newest, are read after it.
//! Only Quo webhook records (source `openphone`) count: a backfilled copy is not a delivery.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::facts::{quo_lines, Accounts, QuoLine, Seen};
use super::local::{AdminApi, LogAccess};
use super::report::{summarize, Finding, MAX_WINDOW_RECORDS};
use crate::admin::api::{EventJson, EventPage, Status as AdminStatus};
use crate::config::Config;
use crate::event::Seq;
use crate::log::Log;
use crate::provider::SendProvider;

/// One record, as much as the check needs.
struct Rec {
    seq: u64,
    received_at: DateTime<Utc>,
    source: String,
    body: Vec<u8>,
}

/// Reads records by sequence, from the admin API or the log.
trait Records {
    /// First and last sequence stored.
    fn bounds(&mut self) -> Result<(u64, u64), String>;
    /// The receipt time of one record (`None`: not readable).
    fn received_at(&mut self, seq: u64) -> Option<DateTime<Utc>>;
    /// Up to `limit` records after `after`.
    fn page(&mut self, after: u64, limit: usize) -> Result<Vec<Rec>, String>;
}

impl Records for Arc<dyn Log> {
    fn bounds(&mut self) -> Result<(u64, u64), String> {
        let s = self.stats().map_err(|e| e.to_string())?;
        Ok((s.first_seq, s.last_seq))
    }
    fn received_at(&mut self, seq: u64) -> Option<DateTime<Utc>> {
        self.get(Seq(seq))
            .ok()
            .flatten()
            .map(|e| e.received_at.to_datetime())
    }
    fn page(&mut self, after: u64, limit: usize) -> Result<Vec<Rec>, String> {
        Ok(self
            .read(Seq(after), limit)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| Rec {
                seq: e.seq.0,
                received_at: e.received_at.to_datetime(),
                source: e.source.as_str().to_owned(),
                body: e.body,
            })
            .collect())
    }
}

impl Records for &AdminApi {
    fn bounds(&mut self) -> Result<(u64, u64), String> {
        let s: AdminStatus = self.get("/admin/status")?;
        Ok((s.log.first_seq, s.log.last_seq))
    }
    fn received_at(&mut self, seq: u64) -> Option<DateTime<Utc>> {
        let e: EventJson = self.get(&format!("/admin/events/{seq}")).ok()?;
        rfc3339(&e.received_at)
    }
    fn page(&mut self, after: u64, limit: usize) -> Result<Vec<Rec>, String> {
        let p: EventPage = self.get(&format!("/admin/events?after={after}&limit={limit}"))?;
        Ok(p.events
            .into_iter()
            .filter_map(|e| {
                Some(Rec {
                    seq: e.seq,
                    received_at: rfc3339(&e.received_at)?,
                    body: e.body_bytes().ok()?,
                    source: e.source,
                })
            })
            .collect())
    }
}

fn rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Reads the window from where [`super::local::log_and_daemon`] found the log.
pub(super) fn read(config: &Config, access: &LogAccess) -> Seen {
    let since = Utc::now() - chrono::Duration::days(config.doctor.window_days as i64);
    let mut seen = Seen {
        from: Err(String::new()),
        by_type: BTreeMap::new(),
        by_line: BTreeMap::new(),
        records: 0,
        truncated: false,
    };
    let result = match access {
        LogAccess::Admin(api) => {
            let mut r = api;
            scan(&mut r, since, &mut seen)
                .map(|()| format!("the running daemon's admin API ({})", api.base))
        }
        LogAccess::Direct(log) => {
            let mut r = log.clone();
            let read = scan(&mut r, since, &mut seen).map(|()| "the log, read directly".to_owned());
            let _ = log.close();
            read
        }
        LogAccess::Unreadable(why) => Err(why.clone()),
    };
    seen.from = result;
    seen
}

fn scan(r: &mut impl Records, since: DateTime<Utc>, seen: &mut Seen) -> Result<(), String> {
    let (first, last) = r.bounds()?;
    if last == 0 {
        return Ok(());
    }
    // The first record received at or after `since`: bisection on receipt time (which follows
    // sequence order to within one batch). An unreadable record counts as inside the window.
    let (mut lo, mut hi) = (first.max(1), last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match r.received_at(mid) {
            Some(t) if t < since => lo = mid + 1,
            _ => hi = mid,
        }
    }
    let mut start = lo;
    if last + 1 - start > MAX_WINDOW_RECORDS {
        start = last + 1 - MAX_WINDOW_RECORDS;
        seen.truncated = true;
    }
    let mut after = start - 1;
    while after < last {
        let page = r.page(after, 1000)?;
        let Some(end) = page.last().map(|e| e.seq) else {
            break;
        };
        for rec in page {
            seen.records += 1;
            if rec.source != "openphone" || rec.received_at < since {
                continue;
            }
            let Some((kind, line)) = quo_kind_and_line(&rec.body) else {
                continue;
            };
            let t = rec.received_at;
            let slot = seen.by_type.entry(kind).or_insert(t);
            *slot = (*slot).max(t);
            if let Some(pn) = line {
                let slot = seen.by_line.entry(pn).or_insert(t);
                *slot = (*slot).max(t);
            }
        }
        if end <= after {
            break;
        }
        after = end;
    }
    Ok(())
}

/// A Quo webhook body's event type (canonical: `callSummary` → `call.summary.completed`) and
/// line (`phoneNumberId` of the legacy `data.object`, or the dated `data.resource` or
/// `data.context`). `None` when it is not a JSON object with a type.
fn quo_kind_and_line(body: &[u8]) -> Option<(String, Option<String>)> {
    let root: Value = serde_json::from_slice(body).ok()?;
    let kind = root.get("type")?.as_str()?.trim();
    let kind = match kind {
        "callSummary" => "call.summary.completed",
        "callTranscript" => "call.transcript.completed",
        k if !k.is_empty() && k.len() <= 64 => k,
        _ => return None,
    };
    let data = root.get("data");
    let line = ["object", "resource", "context"]
        .iter()
        .filter_map(|k| data?.get(k)?.get("phoneNumberId")?.as_str())
        .map(str::trim)
        .find(|pn| !pn.is_empty() && pn.len() <= 64)
        .map(str::to_owned);
    Some((kind.to_owned(), line))
}

/// 7c. The verdict of the window: every Quo line heard from within `[doctor] quiet_days`.
pub(super) fn judge(config: &Config, accounts: &Accounts, seen: &Seen, out: &mut Vec<Finding>) {
    const CHECK: &str = "quo activity";
    let quo_used = !config.openphone.signing_keys.is_empty()
        || config.lines.iter().any(|l| l.provider == SendProvider::Quo);
    if !quo_used {
        return;
    }
    let window = config.doctor.window_days;
    let quiet = config.doctor.quiet_days;
    let now = Utc::now();
    let read = match &seen.from {
        Ok(from) => {
            let types: Vec<String> = seen
                .by_type
                .iter()
                .map(|(k, t)| format!("{k} {}", ago(now, *t)))
                .collect();
            out.push(Finding::ok(
                CHECK,
                format!(
                    "read {} record(s) of the last {window} day(s) from {from}{}; last Quo webhook by type: {}",
                    seen.records,
                    if seen.truncated {
                        format!(" (only the newest {MAX_WINDOW_RECORDS})")
                    } else {
                        String::new()
                    },
                    if types.is_empty() {
                        "none".to_owned()
                    } else {
                        types.join(", ")
                    }
                ),
            ));
            true
        }
        Err(why) => {
            out.push(Finding::warn(
                CHECK,
                format!("the log could not be read: {why}"),
                "run hooklog doctor as the daemon's user with the daemon running (it reads \
                 through the admin API with the operator token)",
            ));
            false
        }
    };
    let Some(numbers) = &accounts.quo_numbers else {
        if read {
            out.push(Finding::warn(
                CHECK,
                "the lines cannot be judged: their PN ids come from the Quo API, which did not \
                 answer (see quo api)",
                "fix the quo api line first",
            ));
        }
        return;
    };
    // The configured Quo lines (by phone_number_id, else by number), else every line of the
    // workspace. Their problems are reported here even when the log cannot be read: a wrong
    // phone_number_id misdirects the sender whatever the log says.
    let (lines, problems) = quo_lines(config, numbers);
    for (what, fix) in problems {
        out.push(Finding::warn(CHECK, what, fix));
    }
    if !read {
        return;
    }
    let quiet_since = now - chrono::Duration::days(quiet as i64);
    let mut silent = Vec::new();
    for QuoLine { pn, number } in &lines {
        match seen.by_line.get(pn) {
            Some(t) if *t >= quiet_since => {}
            Some(t) => silent.push(format!("{number} ({pn}) last {}", ago(now, *t))),
            None => silent.push(format!("{number} ({pn}) nothing in {window} day(s)")),
        }
    }
    if silent.is_empty() {
        out.push(Finding::ok(
            CHECK,
            format!(
                "every Quo line ({}) received a webhook in the last {quiet} day(s)",
                lines.len()
            ),
        ));
    } else {
        out.push(Finding::warn(
            CHECK,
            format!(
                "{} of {} Quo line(s) received no webhook in the last {quiet} day(s): {}",
                silent.len(),
                lines.len(),
                summarize(&silent, 8)
            ),
            "a quiet line may just be quiet; otherwise check that a Quo webhook to hooklog covers \
             it (quo webhooks above; Quo app: Settings → Integrations → Webhooks), then close the \
             gap with hooklog-replay backfill openphone --line PN…",
        ));
    }
}

/// `3h ago` / `2d ago`.
fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    match secs {
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::quo_kind_and_line;

    #[test]
    fn the_kind_and_line_of_legacy_and_dated_bodies_are_read_and_odd_spellings_mapped() {
        let legacy = br#"{"type":"message.received","data":{"object":{"phoneNumberId":"PN1"}}}"#;
        assert_eq!(
            quo_kind_and_line(legacy),
            Some(("message.received".into(), Some("PN1".into())))
        );
        let dated = br#"{"type":"call.completed","data":{"resource":{},"context":{"phoneNumberId":"PN2"}}}"#;
        assert_eq!(
            quo_kind_and_line(dated),
            Some(("call.completed".into(), Some("PN2".into())))
        );
        let summary = br#"{"type":"callSummary","data":{"object":{"callId":"AC1"}}}"#;
        assert_eq!(
            quo_kind_and_line(summary),
            Some(("call.summary.completed".into(), None))
        );
        assert_eq!(quo_kind_and_line(b"not json"), None);
        assert_eq!(quo_kind_and_line(br#"{"type":""}"#), None);
        assert_eq!(quo_kind_and_line(br#"{"type":7}"#), None);
    }
}
