//! The report: exit codes, the two renderings, and the alert `--alert` sends.

use super::*;
use crate::alerts::Severity;

fn report(findings: Vec<Finding>) -> Report {
    Report { findings }
}

#[test]
fn the_exit_code_is_the_worst_status_zero_one_or_two() {
    assert_eq!(report(vec![]).exit_code(), 0);
    assert_eq!(report(vec![Finding::ok("a", "x")]).exit_code(), 0);
    assert_eq!(
        report(vec![Finding::ok("a", "x"), Finding::warn("b", "y", "z")]).exit_code(),
        1
    );
    assert_eq!(
        report(vec![
            Finding::fail("c", "y", "z"),
            Finding::warn("b", "y", "z"),
            Finding::ok("a", "x")
        ])
        .exit_code(),
        2
    );
}

#[test]
fn the_table_aligns_check_and_status_and_puts_each_fix_under_its_line() {
    let r = report(vec![
        Finding::ok("log", "opens"),
        Finding::fail(
            "twilio webhooks",
            "+1555: voice_url points elsewhere",
            "set voice_url to X",
        ),
    ]);
    let t = r.to_table();
    let lines: Vec<&str> = t.lines().collect();
    // Columns: the check, padded to the longest; the status; the text. The fix sits under it.
    assert!(lines[0].starts_with("CHECK ") && lines[0].ends_with("STATUS WHAT / FIX"));
    let status_col = lines[0].find("STATUS").unwrap();
    let text_col = lines[0].find("WHAT").unwrap();
    assert!(lines[1].starts_with("log "));
    assert_eq!(lines[1].find("ok"), Some(status_col));
    assert_eq!(lines[1].find("opens"), Some(text_col));
    assert_eq!(lines[2].find("fail"), Some(status_col));
    assert_eq!(lines[2].find("+1555"), Some(text_col));
    assert_eq!(lines[3].find("fix: set voice_url to X"), Some(text_col));
    assert!(lines[3][..text_col].trim().is_empty());
    assert!(
        t.contains("1 ok, 0 warning(s), 1 failure(s); exit code 2"),
        "{t}"
    );
}

#[test]
fn the_json_has_every_finding_the_counts_and_the_exit_code() {
    let r = report(vec![Finding::warn("discord", "not set", "set it")]);
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["warn"], 1);
    assert_eq!(v["findings"][0]["status"], "warn");
    assert_eq!(v["findings"][0]["fix"], "set it");
}

#[test]
fn the_alert_carries_only_the_drift_findings_that_are_not_ok() {
    let r = report(vec![
        Finding::fail("discord", "gone", "recreate"),
        Finding::ok("twilio webhooks", "every number"),
        Finding::warn("quo activity", "PN1 quiet", "check"),
    ]);
    let a = r.drift_alert().unwrap();
    assert_eq!(a.severity, Severity::Warning);
    assert!(
        a.reason.contains("PN1 quiet") && !a.reason.contains("gone"),
        "{}",
        a.reason
    );
    let r = report(vec![Finding::fail(
        "twilio webhooks",
        "+1555 elsewhere",
        "set it",
    )]);
    assert_eq!(r.drift_alert().unwrap().severity, Severity::Critical);
    assert!(report(vec![Finding::ok("quo webhooks", "fine")])
        .drift_alert()
        .is_none());
}

#[test]
fn a_shown_url_keeps_neither_password_nor_query_and_escapes_control_characters() {
    assert_eq!(
        shown_url("https://user:s3cret@old.example.org:8443/sms?token=abc#rc=1"),
        "https://old.example.org:8443/sms?…"
    );
    assert_eq!(cut("a\nb", 10), "a\\nb");
    assert_eq!(cut("abcdef", 3), "abc…");
}
