//! What a doctor run yields: [`Finding`]s with their [`Status`], the [`Report`] that renders
//! them (table, JSON, the drift alert) and gives the exit code, and the helpers that make text
//! from provider answers fit to print ([`shown_url`], [`cut`]).

use std::fmt::Write as _;

use serde::Serialize;

use crate::alerts::{Alert, Severity};

/// The most pages of one Quo webhook list the doctor follows (the Twilio numbers are listed
/// with the line import's bound, [`crate::backfill::twilio::MAX_NUMBER_PAGES`]).
pub const MAX_PAGES: usize = 50;

/// The most log records the activity check reads (the newest of the window).
pub const MAX_WINDOW_RECORDS: u64 = 200_000;

/// How a finding came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Worth a look; hooklog works meanwhile, or the doctor could not tell.
    Warn,
    /// Broken: events are lost or refused, or a check could not run for a reason to fix.
    Fail,
}

impl Status {
    /// `ok`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check (`configuration`, `twilio webhooks`, …).
    pub check: String,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub what: String,
    /// What to do; empty when nothing is.
    pub fix: String,
}

impl Finding {
    /// A finding of any status.
    pub fn new(
        check: &str,
        status: Status,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check: check.to_owned(),
            status,
            what: what.into(),
            fix: fix.into(),
        }
    }

    /// An ok line.
    pub fn ok(check: &str, what: impl Into<String>) -> Finding {
        Finding::new(check, Status::Ok, what, "")
    }

    /// A warning.
    pub fn warn(check: &str, what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::new(check, Status::Warn, what, fix)
    }

    /// A failure.
    pub fn fail(check: &str, what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::new(check, Status::Fail, what, fix)
    }
}

/// The checks whose findings `--alert` sends: the webhook drift audit.
pub const DRIFT_CHECKS: &[&str] = &["twilio webhooks", "quo webhooks", "quo activity"];

/// Every finding of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// In the order the checks ran.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst status (ok when there is no finding).
    pub fn worst(&self) -> Status {
        self.findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// 0 when every finding is ok, 1 when the worst is a warning, 2 when one failed.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }
    }

    fn count(&self, status: Status) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }

    /// The aligned table: check and status in columns, the fix on its own line below.
    pub fn to_table(&self) -> String {
        let width = self
            .findings
            .iter()
            .map(|f| f.check.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = String::new();
        let _ = writeln!(out, "{:<width$}  {:<7}WHAT / FIX", "CHECK", "STATUS");
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{:<width$}  {:<7}{}",
                f.check,
                f.status.as_str(),
                f.what
            );
            if !f.fix.is_empty() {
                let _ = writeln!(out, "{:<width$}  {:<7}fix: {}", "", "", f.fix);
            }
        }
        let _ = writeln!(
            out,
            "\n{} ok, {} warning(s), {} failure(s); exit code {}",
            self.count(Status::Ok),
            self.count(Status::Warn),
            self.count(Status::Fail),
            self.exit_code()
        );
        out
    }

    /// `{"findings": […], "ok": n, "warn": n, "fail": n, "exit_code": n}`.
    pub fn to_json(&self) -> String {
        let value = serde_json::json!({
            "findings": self.findings,
            "ok": self.count(Status::Ok),
            "warn": self.count(Status::Warn),
            "fail": self.count(Status::Fail),
            "exit_code": self.exit_code(),
        });
        serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            + "\n"
    }

    /// The drift findings that are not ok, as one alert; `None` when there are none.
    pub fn drift_alert(&self) -> Option<Alert> {
        let drift: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.status != Status::Ok && DRIFT_CHECKS.contains(&f.check.as_str()))
            .collect();
        if drift.is_empty() {
            return None;
        }
        let failed = drift.iter().any(|f| f.status == Status::Fail);
        let mut reason = String::new();
        for f in &drift {
            let _ = write!(reason, "- {} ({}): {}", f.check, f.status.as_str(), f.what);
            if !f.fix.is_empty() {
                let _ = write!(reason, " → {}", f.fix);
            }
            reason.push('\n');
        }
        Some(Alert {
            key: "doctor:webhook_drift".into(),
            severity: if failed {
                Severity::Critical
            } else {
                Severity::Warning
            },
            title: format!(
                "webhook drift: {} finding(s) in the weekly audit",
                drift.len()
            ),
            reason: reason.trim_end().to_owned(),
            next_step: "run `hooklog doctor` on the hooklog host and apply each fix".into(),
        })
    }
}

/// A URL from a provider's answer, fit to print: scheme, host, port and path, without
/// user-info (a password), query (a token) or fragment, cut to 160 characters, control
/// characters escaped.
pub fn shown_url(raw: &str) -> String {
    let shown = match url::Url::parse(raw.trim()) {
        Ok(u) if u.host_str().is_some() => {
            let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
            if let Some(port) = u.port() {
                let _ = write!(s, ":{port}");
            }
            s.push_str(u.path());
            if u.query().is_some() {
                s.push_str("?…");
            }
            s
        }
        _ => raw.chars().take(80).collect(),
    };
    cut(&shown, 160)
}

/// `s` cut to `max` characters and escaped (control characters), for text from an answer.
pub fn cut(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().take(max) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// `a, b, c and 4 more`.
pub fn summarize(items: &[String], max: usize) -> String {
    let shown: Vec<&str> = items.iter().take(max).map(String::as_str).collect();
    let rest = items.len().saturating_sub(max);
    let mut s = shown.join(", ");
    if rest > 0 {
        let _ = write!(s, " and {rest} more");
    }
    s
}
