//! Tests of `crate::alerts`.

use super::*;
use discord::scrub;
use throttle::{render, truncate, DISCORD_MAX_CONTENT};

use chrono::{DateTime, Utc};

use crate::config::secret::Secret;

fn t(hms: &str) -> DateTime<Utc> {
    format!("2026-05-04T{hms}Z").parse().unwrap()
}

fn alert(key: &str) -> Alert {
    Alert {
        key: key.into(),
        severity: Severity::Warning,
        title: format!("{key} happened"),
        reason: "3 records dead-lettered".into(),
        next_step: "hooklog-replay dead-letters".into(),
    }
}

fn gate(min_interval_secs: u64, max_per_hour: u32) -> Throttle {
    Throttle::new(&AlertsConfig {
        min_interval_secs,
        max_per_hour,
        ..AlertsConfig::default()
    })
}

fn sent(v: Admission) -> String {
    match v {
        Admission::Send(text) => text,
        other => panic!("expected Send, got {other:?}"),
    }
}

#[test]
fn repeats_within_the_interval_are_coalesced_and_reported_with_the_next_one_sent() {
    let mut g = gate(300, 30);
    let first = sent(g.admit(&alert("dead_letter:dedup"), t("14:05:00")));
    assert!(!first.contains("similar"));
    for s in ["14:06:00", "14:07:00", "14:08:00", "14:09:59"] {
        let v = g.admit(&alert("dead_letter:dedup"), t(s));
        assert_eq!(v, Admission::Coalesced, "{s}");
    }
    // Exactly min_interval after the last sent one: sent again, with the count.
    let next = sent(g.admit(&alert("dead_letter:dedup"), t("14:10:00")));
    assert!(next.contains("(+4 similar since 14:05 UTC)"), "{next}");
    // The count was consumed; the interval restarts from 14:10.
    assert_eq!(
        g.admit(&alert("dead_letter:dedup"), t("14:14:59")),
        Admission::Coalesced
    );
    let after = sent(g.admit(&alert("dead_letter:dedup"), t("14:15:00")));
    assert!(after.contains("(+1 similar since 14:10 UTC)"), "{after}");
}

#[test]
fn different_keys_do_not_coalesce_and_zero_interval_sends_everything() {
    let mut g = gate(300, 30);
    sent(g.admit(&alert("a"), t("10:00:00")));
    sent(g.admit(&alert("b"), t("10:00:01")));
    assert_eq!(g.admit(&alert("a"), t("10:00:02")), Admission::Coalesced);
    let mut g = gate(0, 30);
    for s in ["10:00:00", "10:00:00", "10:00:01"] {
        sent(g.admit(&alert("a"), t(s)));
    }
}

#[test]
fn the_hourly_cap_is_rolling_and_a_summary_follows_when_it_lifts() {
    let mut g = gate(300, 3);
    for (k, s) in [("a", "10:00:00"), ("b", "10:10:00"), ("c", "10:20:00")] {
        sent(g.admit(&alert(k), t(s)));
    }
    for (k, s) in [("d", "10:30:00"), ("e", "10:40:00"), ("f", "10:59:59")] {
        assert_eq!(g.admit(&alert(k), t(s)), Admission::RateLimited, "{k}");
    }
    assert_eq!(g.poll(t("10:59:59")), None);
    // 11:00:00: the 10:00 message left the window; the summary takes that slot.
    let summary = g.poll(t("11:00:00")).unwrap();
    assert!(
        summary.contains("3 alerts suppressed by the rate limit"),
        "{summary}"
    );
    assert!(summary.contains("Since 10:30 UTC"), "{summary}");
    assert_eq!(g.poll(t("11:00:00")), None, "one summary only");
    // The window is full again (10:10, 10:20, 11:00) until 11:10.
    assert_eq!(g.admit(&alert("g"), t("11:05:00")), Admission::RateLimited);
    // At 11:10 a slot frees: the next alert takes it and carries the count of g.
    let h = sent(g.admit(&alert("h"), t("11:10:00")));
    assert!(h.starts_with("⚠️ **WARNING** h happened"), "{h}");
    assert!(
        h.contains("(+1 alert suppressed by the rate limit since 11:05 UTC;"),
        "{h}"
    );
    assert_eq!(g.poll(t("11:10:00")), None, "the count was reported with h");
    assert_eq!(g.admit(&alert("i"), t("11:19:59")), Admission::RateLimited);
    assert!(g.poll(t("11:20:00")).is_some());
}

#[test]
fn a_coalesced_alert_does_not_use_the_cap() {
    let mut g = gate(300, 1);
    sent(g.admit(&alert("a"), t("10:00:00")));
    assert_eq!(g.admit(&alert("a"), t("10:01:00")), Admission::Coalesced);
    assert_eq!(g.admit(&alert("b"), t("10:02:00")), Admission::RateLimited);
    assert_eq!(g.capped, 1);
}

#[test]
fn a_long_reason_is_cut_to_discords_limit_keeping_the_next_step() {
    let mut a = alert("big");
    a.reason = "é".repeat(5000);
    let text = render(&a, Some((7, t("09:00:00"))), None);
    assert_eq!(text.chars().count(), DISCORD_MAX_CONTENT);
    assert!(text.contains("é…\nNext: hooklog-replay dead-letters"));
    assert!(text.ends_with("(+7 similar since 09:00 UTC)"));
    let short = render(&alert("small"), None, None);
    assert_eq!(
        short,
        "⚠️ **WARNING** small happened\n3 records dead-lettered\nNext: hooklog-replay dead-letters"
    );
    assert_eq!(truncate("abc", 3), "abc");
    assert_eq!(truncate("abcd", 3), "ab…");
}

#[test]
fn config_accepts_numbers_or_strings_and_an_empty_url_is_unset() {
    let c: AlertsConfig = toml::from_str(
        "discord_webhook_url = \"https://discord.com/api/webhooks/1/tok\"\nmin_interval_secs = \"60\"\nmax_per_hour = 5\n",
    )
    .unwrap();
    assert_eq!(c.min_interval_secs, 60);
    assert_eq!(c.max_per_hour, 5);
    assert_eq!(c.timeout_secs, 10);
    assert!(c.validate().is_ok());
    let c: AlertsConfig = toml::from_str("discord_webhook_url = \"\"\n").unwrap();
    assert!(c.discord_webhook_url.is_none());
    assert!(toml::from_str::<AlertsConfig>("max_per_hr = 5\n").is_err());
    assert!(toml::from_str::<AlertsConfig>("max_per_hour = \"many\"\n").is_err());
}

#[test]
fn validate_rejects_bad_values_without_echoing_the_url() {
    let bad = AlertsConfig {
        discord_webhook_url: Some(Secret::new("discord.com/api/webhooks/1/sekrit-token")),
        ..AlertsConfig::default()
    };
    let err = bad.validate().unwrap_err();
    assert!(err.starts_with("discord_webhook_url"), "{err}");
    assert!(!err.contains("sekrit"), "{err}");
    let no_host = AlertsConfig {
        discord_webhook_url: Some(Secret::new("https:///x")),
        ..AlertsConfig::default()
    };
    assert!(no_host.validate().is_err());
    let plain = AlertsConfig {
        discord_webhook_url: Some(Secret::new(
            "http://discord.com/api/webhooks/1/sekrit-token",
        )),
        ..AlertsConfig::default()
    };
    let err = plain.validate().unwrap_err();
    assert!(
        err.starts_with("discord_webhook_url: must be https://") && !err.contains("sekrit"),
        "{err}"
    );
    let local = AlertsConfig {
        discord_webhook_url: Some(Secret::new("http://127.0.0.1:9/api/webhooks/1/t")),
        ..AlertsConfig::default()
    };
    assert!(local.validate().is_ok(), "a loopback fake stays allowed");
    let zero = AlertsConfig {
        max_per_hour: 0,
        ..AlertsConfig::default()
    };
    assert!(zero.validate().unwrap_err().starts_with("max_per_hour"));
    let slow = AlertsConfig {
        timeout_secs: 0,
        ..AlertsConfig::default()
    };
    assert!(slow.validate().unwrap_err().starts_with("timeout_secs"));
    assert!(AlertsConfig::default().validate().is_ok());
}

#[test]
fn scrub_removes_the_url_and_its_token_path() {
    let url = Secret::new("https://discord.com/api/webhooks/123/tok-en");
    let s = scrub(
        "Connection Failed: https://discord.com/api/webhooks/123/tok-en and /api/webhooks/123/tok-en",
        &url,
    );
    assert!(!s.contains("tok-en"), "{s}");
    assert!(s.contains("<webhook url>"));
}

#[test]
fn the_alerter_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Alerter>();
}

#[test]
fn outside_a_runtime_the_alerter_logs_only_and_raise_still_works() {
    let config = AlertsConfig {
        discord_webhook_url: Some(Secret::new("http://127.0.0.1:9/hook")),
        ..AlertsConfig::default()
    };
    let metrics = Metrics::new();
    let alerter = Alerter::new(&config, Some(&metrics));
    assert!(alerter.discord.get().is_none());
    alerter.raise(alert("x"));
    assert!(metrics
        .render()
        .contains("hooklog_alerts_total{outcome=\"sent\"} 0"));
    assert_eq!(
        format!("{alerter:?}"),
        "Alerter { discord: \"off (log only)\" }"
    );
}
