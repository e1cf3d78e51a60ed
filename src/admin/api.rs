//! The JSON shapes of the admin API (docs/api.md#admin-routes), shared by the daemon and `hooklog-replay`.
//! Fields may be added, never renamed: scripts depend on them.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::consumers::controls::{KillSwitch, Pause};
use crate::event::Event;
use crate::log::LogStats;

/// `GET /admin/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// Log bounds and size.
    pub log: LogStats,
    /// One entry per consumer.
    pub consumers: Vec<ConsumerStatus>,
    /// On a JetStream replica that does not run the consumers: who does (`standby of replica
    /// …`). Absent where this process runs them, and when read from a data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<String>,
    /// The kill switch: on or off, and the operator's latest record about it.
    #[serde(default)]
    pub kill_switch: KillSwitchStatus,
}

/// The kill switch in [`Status`] (and the answer of `GET /admin/kill-switch`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillSwitchStatus {
    /// Nothing is sent: the configuration or the latest record turned it on.
    pub on: bool,
    /// `[compliance] kill_switch = true`: on whatever the records say.
    pub config: bool,
    /// The latest operator record about it (who, when, why, its seq), on or off; absent when
    /// none was ever written.
    #[serde(default)]
    pub record: Option<KillSwitch>,
}

/// `POST /admin/kill-switch` request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KillSwitchRequest {
    /// Turn it on (nothing is sent) or off.
    pub on: bool,
    /// Why; required to turn it on.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /admin/consumers/{name}/pause|resume` request (optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PauseRequest {
    /// Why (shown in status).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to `POST /admin/reload` (and what SIGHUP logs): the keys whose new values are
/// in force, and the keys that changed but wait for a restart. Keys only, never values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// Always true: a refused reload is an error answer instead.
    pub reloaded: bool,
    /// The keys (`section.key`, or `lines`) whose new values were applied.
    pub changed: Vec<String>,
    /// The keys that changed but are read only at start: kept for the next start.
    pub restart_required: Vec<String>,
}

/// The answer to a stop (`POST /admin/kill-switch`, `…/pause`, `…/resume`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StopAnswer {
    /// The control record's sequence.
    pub seq: u64,
    /// Whether the stop is in force here (the `controls` projection has applied it). False on
    /// a standby replica (the leader applies it) or when the projection did not get there in
    /// time (it will: the record is in the log).
    pub applied: bool,
    /// The consumer paused or resumed (`pause`, `resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// `kill_switch_on`, `kill_switch_off`, `pause` or `resume`.
    pub action: String,
    /// What to expect when `applied` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A consumer's state in [`Status`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsumerStatus {
    /// Consumer name.
    pub name: String,
    /// Last fully processed sequence.
    pub cursor: u64,
    /// Events behind the end of the log.
    pub lag: u64,
    /// `running`, `paused`, `idle` (waiting for configuration), `failed`, or `stored` (a cursor
    /// with no consumer running in this process).
    pub state: String,
    /// Records in its dead-letter list.
    pub dead_letters: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// The operator's latest pause or resume of it (who, when, why, its seq); absent when it
    /// was never paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

/// One record as JSON (`GET /admin/events`, `GET /admin/events/{seq}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJson {
    /// Sequence.
    pub seq: u64,
    /// Receipt time, RFC 3339 UTC with microseconds.
    pub received_at: String,
    /// Source name.
    pub source: String,
    /// Path and query as received (secrets redacted).
    pub route: String,
    /// Kept headers.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body: UTF-8 text, or base64 when `body_encoding` is `base64`.
    pub body: String,
    /// `utf8` or `base64`.
    pub body_encoding: String,
    /// How it was verified.
    pub verified: String,
    /// The dedup consumer's verdict (`{"verdict":"original"}` or
    /// `{"verdict":"duplicate","of":SEQ}`), once it has processed the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<serde_json::Value>,
}

impl EventJson {
    /// Converts a record.
    pub fn from_event(ev: &Event) -> EventJson {
        let (body, body_encoding) = match std::str::from_utf8(&ev.body) {
            Ok(s) => (s.to_owned(), "utf8"),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&ev.body),
                "base64",
            ),
        };
        EventJson {
            seq: ev.seq.0,
            received_at: ev.received_at.to_rfc3339(),
            source: ev.source.as_str().to_owned(),
            route: ev.route.clone(),
            headers: ev.headers.iter().cloned().collect(),
            body,
            body_encoding: body_encoding.to_owned(),
            verified: ev.verification.label(),
            dedup: None,
        }
    }

    /// The body bytes.
    pub fn body_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        decode_body(&self.body, Some(&self.body_encoding))
    }
}

/// `GET /admin/events` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventPage {
    /// The records, in order.
    pub events: Vec<EventJson>,
    /// Pass as `after` to get the next page.
    pub next_after: u64,
}

/// `POST /admin/events` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppendRequest {
    /// One of the non-webhook sources: `backfill-openphone`, `backfill-twilio`, `outbound`,
    /// `internal`.
    pub source: String,
    /// A route label, e.g. `/v1/messages/AC123`.
    pub route: String,
    /// Headers to keep with the record.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body (text, or base64 with `body_encoding: "base64"`).
    pub body: String,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    pub body_encoding: Option<String>,
}

/// `POST /admin/events` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Appended {
    /// The sequence the record got.
    pub seq: u64,
}

/// Decodes a body given with an optional encoding name.
pub fn decode_body(body: &str, encoding: Option<&str>) -> Result<Vec<u8>, base64::DecodeError> {
    match encoding {
        Some("base64") => base64::engine::general_purpose::STANDARD.decode(body),
        _ => Ok(body.as_bytes().to_vec()),
    }
}

/// `POST /admin/consumers/{name}/rewind` request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RewindRequest {
    /// Process records after this sequence again.
    #[serde(default)]
    pub to_seq: Option<u64>,
    /// Or: process records received at or after this time (RFC 3339) again.
    #[serde(default)]
    pub since: Option<String>,
    /// Report what would happen without changing anything.
    #[serde(default)]
    pub dry_run: bool,
    /// Perform irreversible effects again too (dispatch, sender): their effects ledgers
    /// are bypassed for the rewound records. Refused by consumers without effects. Without
    /// `confirm` the consumer only reports what it would perform again (409).
    #[serde(default)]
    pub redeliver: bool,
    /// With `redeliver`: go ahead (within the limit). Without it nothing changes.
    #[serde(default)]
    pub confirm: bool,
    /// With `redeliver`: the most effects this one rewind may perform again, instead of the
    /// consumer's configured `max_redeliver`.
    #[serde(default)]
    pub max_redeliver: Option<u64>,
}

/// `POST /admin/dead-letters/redrive` request (empty body: every consumer, every record).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RedriveRequest {
    /// Only this consumer.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Only this record.
    #[serde(default)]
    pub seq: Option<u64>,
}

/// `POST /admin/optouts` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OptOutRequest {
    /// The number to suppress.
    pub number: String,
    /// Why (kept as evidence).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /admin/lines/{id}/unblock` body (optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LineNote {
    /// Why the line may send again (e.g. "A2P campaign approved on 2026-12-01").
    #[serde(default)]
    pub reason: Option<String>,
}
