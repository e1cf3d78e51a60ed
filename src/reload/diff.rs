//! Which keys differ between two configurations, and which of them a reload may apply.
//!
//! Pure: two [`Config`]s in, key names out (`section.key`, `lines`, `data_dir`; a key's
//! sub-table or list counts as the key, e.g. `twilio.voice`, `server.agent_tokens`,
//! `dispatch.routes`). Never a value: a changed secret is seen through a digest of it
//! ([`crate::config::secret::fingerprinted`]), and only its key is reported.
//!
//! A key is reloadable when it is in [`RELOADABLE`]; every other key, including any key added
//! to the configuration later and not listed there, is read only at start and needs a restart.
//! That is the safe default: a new key is never reported as applied when it was not.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::config::secret::fingerprinted;
use crate::config::Config;

/// The keys a reload applies to the running daemon (a key, or a whole section ending in
/// `.`), with who reads the new value (`crate::reload` tells how).
pub const RELOADABLE: &[&str] = &[
    // The edge's verifier: webhook keys, and the URLs Twilio signs.
    "openphone.signing_keys",
    "twilio.auth_tokens",
    "salesmsg.secrets",
    "server.public_urls",
    // The TwiML answer to voice routes.
    "twilio.voice",
    // The admin API's tokens.
    "server.admin_token",
    "server.agent_tokens",
    // The sender's provider clients (and hooklog-replay's backfill, which reads the
    // configuration at each run).
    "openphone.api_key",
    "openphone.api_base",
    "openphone.workspace_messages",
    "twilio.account_sid",
    "twilio.api_base",
    "sender.timeout_secs",
    "sender.connect_timeout_secs",
    // The compliance consumer.
    "salesmsg.trust_opt_in",
    // The Postgres sink's mirror (checked against the database before its next batch).
    "postgres.mirror",
    // The outbound gates, the sender's last-moment checks, the admin API's lines and kill
    // switch.
    "compliance.",
    "lines",
    // Operator alerts.
    "alerts.",
    // Agent dispatch (the circuit breaker's settings excepted: it keeps its state).
    "dispatch.url",
    "dispatch.token",
    "dispatch.routes",
    "dispatch.timeout_secs",
    "dispatch.connect_timeout_secs",
    "dispatch.dead_letter_after_secs",
    "dispatch.max_event_age_secs",
    "dispatch.max_retries",
    "dispatch.retry_base_ms",
    "dispatch.retry_max_ms",
    "dispatch.retry_max_elapsed_secs",
    "dispatch.max_redeliver",
    // `hooklog doctor`'s section: the daemon never reads it, so there is nothing to restart
    // for (the next doctor run reads the new value).
    "doctor.",
];

/// Whether a reload applies `key` ([`RELOADABLE`]).
pub fn is_reloadable(key: &str) -> bool {
    RELOADABLE.iter().any(|r| match r.strip_suffix('.') {
        Some(section) => key
            .strip_prefix(section)
            .is_some_and(|k| k.starts_with('.')),
        None => key == *r,
    })
}

/// The keys whose values differ between `old` and `new`, sorted.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    // Serialization of a derived Serialize into a Value does not fail; an empty tree (which
    // would hide every change) is what a failure would give, so each side is checked.
    let (old, new) = fingerprinted(|| (serde_json::to_value(old), serde_json::to_value(new)));
    let (Ok(old), Ok(new)) = (old, new) else {
        return vec!["(the configuration could not be compared)".into()];
    };
    let mut out = BTreeSet::new();
    walk("", &old, &new, 0, &mut out);
    out.into_iter().collect()
}

/// Compares `old` and `new` at `path`, descending through tables down to `section.key`.
fn walk(path: &str, old: &Value, new: &Value, depth: usize, out: &mut BTreeSet<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) if depth < 2 => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(
                    &at,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    depth + 1,
                    out,
                );
            }
        }
        _ if old != new => {
            out.insert(path.to_owned());
        }
        _ => {}
    }
}

/// What a reload would do: the keys it applies, and the keys that changed but wait for a
/// restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Reloadable keys whose value differs from the one in force.
    pub changed: Vec<String>,
    /// Keys read only at start whose value differs from the one the daemon started with
    /// (reported at every reload until a restart applies them).
    pub restart_required: Vec<String>,
}

/// The plan for `new`, given the configuration the daemon `started` with and the one
/// `applied` by the last reload (or the start).
pub fn plan(started: &Config, applied: &Config, new: &Config) -> Plan {
    let mut restart: BTreeSet<String> = changed_keys(started, new)
        .into_iter()
        .filter(|k| !is_reloadable(k))
        .collect();
    // A consumer that did not run at start cannot be started by a reload, nor stopped.
    if started.dispatch.enabled() != new.dispatch.enabled() {
        restart.insert("dispatch.url".into());
    }
    if sender_credentials(started) != sender_credentials(new) {
        let keys = [
            (
                sender_credentials(started).0,
                sender_credentials(new).0,
                "openphone.api_key",
            ),
            (
                sender_credentials(started).1,
                sender_credentials(new).1,
                "twilio.account_sid",
            ),
        ];
        // Only when the sender itself starts or stops: a second provider joins a running
        // sender without a restart.
        let ran = sender_runs(started);
        if ran != sender_runs(new) {
            for (was, is, key) in keys {
                if was != is {
                    restart.insert(key.into());
                }
            }
        }
    }
    // What waits for a restart is not applied, though its key is reloadable otherwise.
    let changed = changed_keys(applied, new)
        .into_iter()
        .filter(|k| is_reloadable(k) && !restart.contains(k))
        .collect();
    Plan {
        changed,
        restart_required: restart.into_iter().collect(),
    }
}

/// Whether Quo and Twilio have send credentials (what makes the sender start).
fn sender_credentials(c: &Config) -> (bool, bool) {
    (
        c.openphone.api_key.is_some(),
        c.twilio.account_sid.is_some() && !c.twilio.auth_tokens.is_empty(),
    )
}

/// Whether the daemon runs the sender with this configuration.
fn sender_runs(c: &Config) -> bool {
    let (quo, twilio) = sender_credentials(c);
    c.sender.enabled && (quo || twilio)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret::Secret;

    fn config(toml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooklog.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load_from(Some(&path), Vec::<(String, String)>::new())
            .unwrap()
            .0
    }

    #[test]
    fn a_changed_secret_is_one_changed_key_and_its_value_is_nowhere_in_the_answer() {
        let old = config(
            "[openphone]\nsigning_keys = [\"R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=\"]\n",
        );
        let mut new = old.clone();
        new.openphone
            .signing_keys
            .push(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        new.server
            .agent_tokens
            .insert("dispo".into(), Secret::new("d".repeat(32)));
        let keys = changed_keys(&old, &new);
        assert_eq!(keys, ["openphone.signing_keys", "server.agent_tokens"]);
        let all = format!("{keys:?}");
        assert!(!all.contains("whsec_") && !all.contains("ddd"), "{all}");
        assert!(changed_keys(&old, &old.clone()).is_empty());
    }

    #[test]
    fn a_secret_replaced_by_another_of_the_same_length_is_seen() {
        let urls = "[server]\npublic_urls = [\"https://hooks.example.com\"]\n";
        let old = config(&format!(
            "{urls}[twilio]\nauth_tokens = [\"0123456789abcdef0123456789abcdef\"]\n"
        ));
        let new = config(&format!(
            "{urls}[twilio]\nauth_tokens = [\"fedcba9876543210fedcba9876543210\"]\n"
        ));
        assert_eq!(changed_keys(&old, &new), ["twilio.auth_tokens"]);
        // Outside the comparison, secrets still serialize redacted.
        assert!(new.to_redacted_toml().contains("<redacted>"));
        assert!(!new.to_redacted_toml().contains("fedcba"));
    }

    #[test]
    fn keys_read_only_at_start_need_a_restart_and_are_not_reported_as_applied() {
        let started = Config::default();
        let mut new = started.clone();
        new.server.listen = vec!["127.0.0.1:1".parse().unwrap()];
        new.log.retention_days += 1;
        new.data_dir = "/elsewhere".into();
        new.compliance.kill_switch = true;
        new.alerts.max_per_hour = 7;
        new.twilio.voice.say = Some("hello".into());
        let p = plan(&started, &started, &new);
        assert_eq!(
            p.changed,
            [
                "alerts.max_per_hour",
                "compliance.kill_switch",
                "twilio.voice"
            ]
        );
        assert_eq!(
            p.restart_required,
            ["data_dir", "log.retention_days", "server.listen"]
        );
    }

    #[test]
    fn a_restart_key_is_reported_until_a_restart_but_an_applied_key_only_once() {
        let started = Config::default();
        let mut first = started.clone();
        first.server.listen = vec!["127.0.0.1:1".parse().unwrap()];
        first.compliance.line_daily_cap += 1;
        let p = plan(&started, &started, &first);
        assert_eq!(p.changed, ["compliance.line_daily_cap"]);
        assert_eq!(p.restart_required, ["server.listen"]);
        // The same file read again: nothing new to apply, the listener still waits.
        let again = plan(&started, &first, &first.clone());
        assert!(again.changed.is_empty());
        assert_eq!(again.restart_required, ["server.listen"]);
        // Put back as it was at start: nothing waits any more.
        let mut back = first.clone();
        back.server.listen = started.server.listen.clone();
        assert!(plan(&started, &first, &back).restart_required.is_empty());
    }

    #[test]
    fn starting_or_stopping_a_consumer_needs_a_restart() {
        let started = Config::default();
        let mut new = started.clone();
        new.dispatch.url = Some("https://gateway.example.com/hooks".into());
        new.openphone.api_key = Some(Secret::new("key"));
        let p = plan(&started, &started, &new);
        assert!(p.changed.is_empty(), "not applied: {p:?}");
        assert_eq!(p.restart_required, ["dispatch.url", "openphone.api_key"]);
        // A sender that runs takes a second provider's credentials without a restart.
        let mut running = started.clone();
        running.openphone.api_key = Some(Secret::new("key"));
        let mut more = running.clone();
        more.twilio.account_sid = Some("AC0".into());
        more.twilio.auth_tokens = vec![Secret::new("t".repeat(32))];
        let p = plan(&running, &running, &more);
        assert!(p.restart_required.is_empty(), "{p:?}");
    }

    #[test]
    fn a_section_prefix_covers_its_keys_only() {
        assert!(is_reloadable("compliance.deny_list"));
        assert!(is_reloadable("alerts.discord_webhook_url"));
        assert!(!is_reloadable("compliancex.y"));
        assert!(!is_reloadable("compliance"));
        assert!(is_reloadable("lines"));
        assert!(!is_reloadable("dispatch.failure_threshold"));
        assert!(!is_reloadable("postgres.url"));
        assert!(is_reloadable("postgres.mirror"));
        assert!(!is_reloadable("openphone.tolerance_secs"));
        assert!(!is_reloadable("some.key_added_later"));
    }
}
