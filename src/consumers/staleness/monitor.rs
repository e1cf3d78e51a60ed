//! Staleness monitor: alert when inbound messages stop arriving.
//!
//! Inbound SMS stop arriving when the tunnel is down, the listener is unreachable or a
//! provider's webhook settings changed; nothing fails loudly then, so silence itself is the
//! signal. Outreach is quiet at night, so silence is counted only inside a daily window in
//! a configured zone (default 07:00–23:00 America/Los_Angeles): with the default 3 h, a
//! last message at 22:30 and the window reopening at 07:00 make the alert fire at 09:30
//! local time, not at 01:30.
//!
//! [`StalenessMonitor`] is a pure state machine; its owner calls
//! [`StalenessMonitor::observe_inbound`] for every inbound message and
//! [`StalenessMonitor::check`] every `check_interval_secs`, passing the time in. It emits
//! one [`StalenessEvent::Stale`] per silent episode and one [`StalenessEvent::Recovered`]
//! when a message arrives after it. The silence is counted in the daily [`Window`].

use chrono::{DateTime, TimeDelta, Utc};

use super::config::StalenessConfig;
use super::window::Window;
use crate::alerts::{Alert, Severity};

/// What [`StalenessMonitor::check`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StalenessEvent {
    /// No inbound message for `max_silence_mins` of in-window time.
    Stale {
        /// The last inbound message (or when monitoring started, if none was seen).
        silent_since: DateTime<Utc>,
        /// In-window minutes of silence at the check.
        minutes: i64,
    },
    /// An inbound message arrived after a `Stale`.
    Recovered {
        /// The start of the silence that ended (as in the `Stale` event).
        silent_since: DateTime<Utc>,
        /// In-window minutes from `silent_since` to the message that ended it.
        silent_for_mins: i64,
    },
}

/// Watches for silence. Pure: the caller passes the time in.
///
/// The daemon should seed it at start with the receipt time of the last inbound message in
/// the log (`observe_inbound`), then feed it every *live* inbound message event (webhook
/// receipts, not backfilled copies, whose receipt time says nothing about the webhooks).
/// With no message ever seen, silence is counted from the first `check`.
#[derive(Clone, Debug)]
pub struct StalenessMonitor {
    config: StalenessConfig,
    window: Window,
    max_silence: TimeDelta,
    /// The last inbound message, or the first check when none was seen yet.
    silent_since: Option<DateTime<Utc>>,
    /// `silent_since` is the first check, not a message.
    since_start: bool,
    /// A `Stale` was emitted for the current silence.
    stale: bool,
    /// A `Recovered` waiting for the next check.
    recovered: Option<StalenessEvent>,
}

impl StalenessMonitor {
    /// A monitor for a configuration (validated here too).
    pub fn new(config: StalenessConfig) -> Result<Self, String> {
        config.validate()?;
        let window = Window::new(&config.timezone, &config.window_start, &config.window_end)?;
        let max_silence =
            TimeDelta::minutes(i64::try_from(config.max_silence_mins).unwrap_or(i64::MAX));
        Ok(StalenessMonitor {
            config,
            window,
            max_silence,
            silent_since: None,
            since_start: false,
            stale: false,
            recovered: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StalenessConfig {
        &self.config
    }

    /// Whether a `Stale` was emitted and no message has arrived since.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Restores, at start, that a previous process already emitted `Stale` for the silence
    /// that began at `silent_since`, so this silence raises no second `Stale`. Call it after
    /// priming with the last inbound message ([`StalenessMonitor::observe_inbound`]). When
    /// that message is newer than `silent_since`, it ended the episode before the restart
    /// without its `Recovered` being emitted: the next `check` emits it, once.
    pub fn restore_alerted(&mut self, silent_since: DateTime<Utc>) {
        match self.silent_since {
            Some(last) if last > silent_since && !self.since_start => {
                self.stale = false;
                self.recovered = Some(StalenessEvent::Recovered {
                    silent_since,
                    silent_for_mins: self.window.in_window(silent_since, last).num_minutes(),
                });
            }
            _ => {
                self.silent_since = Some(silent_since);
                self.since_start = false;
                self.stale = true;
            }
        }
    }

    /// Records an inbound message received at `at`. A message older than the last one seen
    /// changes nothing (except that it replaces the first-check baseline).
    pub fn observe_inbound(&mut self, at: DateTime<Utc>) {
        if let Some(since) = self.silent_since {
            // The first-check baseline is a placeholder: any message replaces it, unless an
            // alert was already raised from it (then only a newer message is news).
            let placeholder = self.since_start && !self.stale;
            if at <= since && !placeholder {
                return;
            }
            if self.stale {
                self.stale = false;
                self.recovered = Some(StalenessEvent::Recovered {
                    silent_since: since,
                    silent_for_mins: self.window.in_window(since, at).num_minutes(),
                });
            }
        }
        self.silent_since = Some(at);
        self.since_start = false;
    }

    /// What changed by `now`: `Recovered` once after a message ended a stale episode,
    /// `Stale` once when the in-window silence reaches `max_silence_mins`, else `None`.
    /// Always `None` when disabled.
    pub fn check(&mut self, now: DateTime<Utc>) -> Option<StalenessEvent> {
        if !self.config.enabled {
            return None;
        }
        if let Some(event) = self.recovered.take() {
            return Some(event);
        }
        let Some(since) = self.silent_since else {
            self.silent_since = Some(now);
            self.since_start = true;
            return None;
        };
        if self.stale {
            return None;
        }
        let silent = self.window.in_window(since, now);
        if silent < self.max_silence {
            return None;
        }
        self.stale = true;
        Some(StalenessEvent::Stale {
            silent_since: since,
            minutes: silent.num_minutes(),
        })
    }

    /// The operator alert for an event. Keys: `staleness` for `Stale`,
    /// `staleness:recovered` for `Recovered` (a separate key, so that a recovery soon after
    /// the alert is not coalesced away with it).
    pub fn to_alert(&self, event: &StalenessEvent) -> Alert {
        let c = &self.config;
        let window = format!("{}–{} {}", c.window_start, c.window_end, c.timezone);
        match *event {
            StalenessEvent::Stale {
                silent_since,
                minutes,
            } => {
                let last = if self.since_start && self.silent_since == Some(silent_since) {
                    format!(
                        "No inbound message since hooklog started watching at {}",
                        self.when(silent_since)
                    )
                } else {
                    format!(
                        "The last inbound message arrived at {}",
                        self.when(silent_since)
                    )
                };
                Alert {
                    key: "staleness".into(),
                    severity: Severity::Critical,
                    title: format!(
                        "No inbound messages for {} of the {window} window",
                        hours_mins(minutes)
                    ),
                    reason: format!(
                        "{last}. Webhooks are probably not reaching hooklog: the tunnel, the \
                         listener, or the provider's webhook settings."
                    ),
                    next_step: format!(
                        "check the tunnel and the provider webhook settings (Quo, Twilio); then {}",
                        self.backfill(silent_since)
                    ),
                }
            }
            StalenessEvent::Recovered {
                silent_since,
                silent_for_mins,
            } => Alert {
                key: "staleness:recovered".into(),
                severity: Severity::Info,
                title: "Inbound messages are arriving again".into(),
                reason: format!(
                    "After {} of silence in the {window} window, since {}.",
                    hours_mins(silent_for_mins),
                    self.when(silent_since)
                ),
                next_step: format!(
                    "recover what the webhooks missed: {}",
                    self.backfill(silent_since)
                ),
            },
        }
    }

    /// `2026-03-08 06:30 UTC (Sat 22:30 PST)`
    fn when(&self, t: DateTime<Utc>) -> String {
        format!(
            "{} ({})",
            t.format("%Y-%m-%d %H:%M UTC"),
            t.with_timezone(&self.window.tz).format("%a %H:%M %Z")
        )
    }

    /// The backfill commands for a silence that began at `since`. The date is the earlier
    /// of its UTC and local dates, so it is at or before `since` whichever zone the CLI
    /// reads it in.
    fn backfill(&self, since: DateTime<Utc>) -> String {
        let date = since
            .date_naive()
            .min(since.with_timezone(&self.window.tz).date_naive());
        format!(
            "`hooklog-replay backfill openphone --since {date}` and \
             `hooklog-replay backfill twilio --since {date}`"
        )
    }
}

/// `3 h 05 min`, `45 min`
fn hours_mins(minutes: i64) -> String {
    if minutes < 60 {
        format!("{minutes} min")
    } else {
        format!("{} h {:02} min", minutes / 60, minutes % 60)
    }
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
