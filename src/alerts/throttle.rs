//! The throttle between [`Alerter::raise`](super::Alerter::raise) and Discord: coalescing by
//! key and the global hourly cap, a pure state machine with the time passed in, and the texts
//! it renders (see the "throttle" section of [`super`]).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};

use super::alert::{Alert, Severity};
use super::config::AlertsConfig;

/// Discord rejects a `content` longer than this many characters.
pub(super) const DISCORD_MAX_CONTENT: usize = 2000;

/// Past this many coalescing entries, the ones equivalent to "never sent" are dropped.
pub(super) const MAX_IDLE_KEYS: usize = 1024;

/// What the throttle decided about one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Send this text to Discord.
    Send(String),
    /// Same key sent less than `min_interval` ago: counted.
    Coalesced,
    /// Over the hourly cap: dropped and counted for the summary.
    RateLimited,
}

/// Coalescing and the hourly cap: a pure state machine, time passed in.
#[derive(Debug)]
pub(super) struct Throttle {
    pub(super) min_interval: chrono::Duration,
    pub(super) max_per_hour: usize,
    pub(super) keys: HashMap<String, KeyState>,
    /// When each message of the last hour was let through, oldest first.
    pub(super) sent: VecDeque<DateTime<Utc>>,
    /// Alerts dropped by the cap since the last summary, and when the first was.
    pub(super) capped: u64,
    pub(super) capped_since: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub(super) struct KeyState {
    pub(super) last_sent: DateTime<Utc>,
    /// Alerts coalesced since `last_sent`.
    pub(super) similar: u64,
}

impl Throttle {
    pub(super) fn new(config: &AlertsConfig) -> Throttle {
        Throttle {
            min_interval: chrono::Duration::seconds(
                i64::try_from(config.min_interval_secs).unwrap_or(i64::MAX / 1000),
            ),
            max_per_hour: (config.max_per_hour as usize).max(1),
            keys: HashMap::new(),
            sent: VecDeque::new(),
            capped: 0,
            capped_since: None,
        }
    }

    /// Decides about `alert`. An alert let through while a rate-limit summary is due
    /// carries the summary itself (one message, one slot), so that under sustained
    /// pressure the freed slots go to real alerts rather than to summaries.
    pub(super) fn admit(&mut self, alert: &Alert, now: DateTime<Utc>) -> Admission {
        if let Some(k) = self.keys.get_mut(&alert.key) {
            if now - k.last_sent < self.min_interval {
                k.similar += 1;
                return Admission::Coalesced;
            }
        }
        if !self.has_room(now) {
            self.capped += 1;
            self.capped_since.get_or_insert(now);
            return Admission::RateLimited;
        }
        self.sent.push_back(now);
        let previous = self.keys.insert(
            alert.key.clone(),
            KeyState {
                last_sent: now,
                similar: 0,
            },
        );
        let similar = previous
            .filter(|p| p.similar > 0)
            .map(|p| (p.similar, p.last_sent));
        let suppressed = self.take_capped(now);
        if self.keys.len() > MAX_IDLE_KEYS {
            let interval = self.min_interval;
            self.keys
                .retain(|_, k| k.similar > 0 || now - k.last_sent < interval);
        }
        Admission::Send(render(alert, similar, suppressed))
    }

    /// The rate-limit summary on its own, if alerts were dropped and the cap has room
    /// again (called periodically, for when no new alert comes to carry it).
    pub(super) fn poll(&mut self, now: DateTime<Utc>) -> Option<String> {
        if self.capped == 0 || !self.has_room(now) {
            return None;
        }
        self.sent.push_back(now);
        let (n, since) = self.take_capped(now)?;
        Some(render_summary(n, since, self.max_per_hour))
    }

    pub(super) fn take_capped(&mut self, now: DateTime<Utc>) -> Option<(u64, DateTime<Utc>)> {
        let n = std::mem::take(&mut self.capped);
        let since = self.capped_since.take().unwrap_or(now);
        (n > 0).then_some((n, since))
    }

    pub(super) fn has_room(&mut self, now: DateTime<Utc>) -> bool {
        let hour_ago = now - chrono::Duration::hours(1);
        while self.sent.front().is_some_and(|t| *t <= hour_ago) {
            self.sent.pop_front();
        }
        self.sent.len() < self.max_per_hour
    }
}

/// `N alerts suppressed by the rate limit`
pub(super) fn suppressed_text(n: u64) -> String {
    let alerts = if n == 1 { "alert" } else { "alerts" };
    format!("{n} {alerts} suppressed by the rate limit")
}

/// The Discord text of an alert: label and title, reason, next step, then the coalesced
/// and rate-limited counts. At most [`DISCORD_MAX_CONTENT`] characters: the reason is cut
/// first.
pub(super) fn render(
    alert: &Alert,
    similar: Option<(u64, DateTime<Utc>)>,
    suppressed: Option<(u64, DateTime<Utc>)>,
) -> String {
    let head = format!("{} {}", alert.severity.badge(), alert.title);
    let mut tail = format!("Next: {}", alert.next_step);
    if let Some((n, since)) = similar {
        tail.push_str(&format!(
            "\n(+{n} similar since {} UTC)",
            since.format("%H:%M")
        ));
    }
    if let Some((n, since)) = suppressed {
        tail.push_str(&format!(
            "\n(+{} since {} UTC; each one is in the hooklog log)",
            suppressed_text(n),
            since.format("%H:%M")
        ));
    }
    let fixed = head.chars().count() + tail.chars().count() + 2;
    let reason = truncate(&alert.reason, DISCORD_MAX_CONTENT.saturating_sub(fixed));
    let text = if reason.is_empty() {
        format!("{head}\n{tail}")
    } else {
        format!("{head}\n{reason}\n{tail}")
    };
    truncate(&text, DISCORD_MAX_CONTENT)
}

pub(super) fn render_summary(n: u64, since: DateTime<Utc>, max_per_hour: usize) -> String {
    format!(
        "{} {}\n\
         Since {} UTC more alerts were raised than alerts.max_per_hour ({max_per_hour}) allows; \
         each one is in the hooklog log.\n\
         Next: read the hooklog log (`journalctl -u hooklog | grep ALERT`) and run `hooklog-replay status`",
        Severity::Warning.badge(),
        suppressed_text(n),
        since.format("%H:%M"),
    )
}

/// `s` cut to `max` characters, ending with "…" when cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}
