//! The emergency stops as the `controls` consumer projects them and as every other component
//! reads them (the sender's last-moment check, the outbound gates, the drivers' pauses, the
//! admin API's status): this file is their one reader and their record format.
//!
//! An operator's stop is a record in the log ([`CONTROL_ROUTE`], source `internal`,
//! [`Verification::AdminToken`], body JSON [`ControlRecord`]), written only by the operator
//! routes `POST /admin/kill-switch` and `POST /admin/consumers/{name}/pause|resume`. The
//! projection is a pure function of those records, so every replica that reads the log
//! obeys the same stops, and a restart or a fail-over keeps them.
//!
//! Key layout (trees of consumer `controls`):
//!
//! | tree    | key                 | value                          |
//! |---------|---------------------|--------------------------------|
//! | `stops` | `kill_switch`       | JSON [`KillSwitch`]            |
//! | `stops` | `pause/<consumer>`  | JSON [`Pause`]                 |
//!
//! Each value keeps the sequence of the record that set it; only a newer record replaces it,
//! so a record read twice (a replay, a batch handled again after a crash) never moves a
//! stop back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::{Event, Micros, Seq, Source, Verification, Verified};
use crate::log::{Log, LogError};
use crate::state::{for_each, KvTree, StateError, StateStore};

/// The consumer that projects the stops (and its cursor's name).
pub const NAME: &str = "controls";
/// The tree of the stops.
pub(crate) const TREE: &str = "stops";
/// Route of the `internal` records the operator routes append.
pub const CONTROL_ROUTE: &str = crate::provenance::CONTROL_ROUTE;
/// Who writes a control record today: the holder of the operator (admin) token.
pub const OPERATOR: &str = "operator";

const KILL_SWITCH_KEY: &[u8] = b"kill_switch";
const PAUSE_PREFIX: &str = "pause/";

/// What a control record asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ControlAction {
    /// Turn the kill switch on or off.
    KillSwitch {
        /// On: nothing is sent.
        on: bool,
    },
    /// Pause a consumer.
    Pause {
        /// Its name.
        consumer: String,
    },
    /// Resume a consumer.
    Resume {
        /// Its name.
        consumer: String,
    },
}

/// The body of a [`CONTROL_ROUTE`] record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRecord {
    /// What it asks for.
    #[serde(flatten)]
    pub action: ControlAction,
    /// Why (required to turn the kill switch on).
    #[serde(default)]
    pub reason: Option<String>,
    /// When the operator asked (RFC 3339).
    pub at: String,
    /// Who asked: [`OPERATOR`] (or the name of the token that asked).
    pub by: String,
}

impl ControlRecord {
    /// The record ready to append as the operator route writes it (source `internal`, the
    /// operator's token): the only writer the `controls` consumer obeys ([`forged`]).
    pub fn to_verified(&self, at: Micros) -> Verified {
        Verified::new(
            at,
            Source::Internal,
            CONTROL_ROUTE.to_owned(),
            vec![("content-type".into(), "application/json".into())],
            // An enum and strings: serde_json cannot fail on them.
            serde_json::to_vec(self).unwrap_or_default(),
            Verification::AdminToken,
        )
    }
}

/// The kill switch as the log has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillSwitch {
    /// On: nothing is sent.
    pub on: bool,
    /// Who set it.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// The record that set it.
    pub seq: u64,
}

/// A consumer's pause as the log has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Paused (true) or resumed.
    pub paused: bool,
    /// Who set it.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// The record that set it.
    pub seq: u64,
}

/// Why a record on [`CONTROL_ROUTE`] must not be acted on: it was not written by an operator
/// route (source `internal`, [`Verification::AdminToken`]). `None` when it was.
pub fn forged(event: &Event) -> Option<String> {
    if event.source == Source::Internal && event.verification == Verification::AdminToken {
        return None;
    }
    Some(format!(
        "a control record ({CONTROL_ROUTE}) not written by an operator route: source `{}`, \
         verified by `{}`; only POST /admin/kill-switch and POST /admin/consumers/{{name}}/\
         pause|resume write one (source internal, admin token). It is not acted on",
        event.source.as_str(),
        event.verification.label()
    ))
}

pub(crate) fn pause_key(consumer: &str) -> Vec<u8> {
    format!("{PAUSE_PREFIX}{consumer}").into_bytes()
}

pub(crate) fn kill_switch_key() -> &'static [u8] {
    KILL_SWITCH_KEY
}

fn decode<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(v).map_err(|e| StateError::Corrupt {
        tree: format!("{NAME}/{TREE}"),
        message: e.to_string(),
    })
}

/// The projected stops over a log's state, and how far the projection has read the log.
#[derive(Clone)]
pub struct Controls {
    log: Arc<dyn Log>,
    tree: Arc<dyn KvTree>,
}

impl Controls {
    /// The view over `log`'s state.
    pub fn open(log: Arc<dyn Log>) -> Result<Controls, StateError> {
        let tree = log.state().tree(NAME, TREE)?;
        Ok(Controls { log, tree })
    }

    /// The kill switch as the log has it (`None`: no record has set it).
    pub fn kill_switch(&self) -> Result<Option<KillSwitch>, StateError> {
        kill_switch(self.tree.as_ref())
    }

    /// `consumer`'s pause as the log has it (`None`: never paused).
    pub fn pause(&self, consumer: &str) -> Result<Option<Pause>, StateError> {
        self.tree
            .get(&pause_key(consumer))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Every consumer's pause, by name.
    pub fn pauses(&self) -> Result<Vec<(String, Pause)>, StateError> {
        pauses(self.tree.as_ref())
    }

    /// The last record the projection has applied (its cursor): every stop in the log up to
    /// it is in force here.
    pub fn projected_through(&self) -> Result<Seq, LogError> {
        self.log.cursor(NAME)
    }

    /// Waits until the projection has read the log up to `seq`, for at most `within`;
    /// whether it has.
    pub async fn wait_until_projected(&self, seq: Seq, within: Duration) -> Result<bool, LogError> {
        let deadline = Instant::now() + within;
        loop {
            if self.projected_through()? >= seq {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn kill_switch(tree: &dyn KvTree) -> Result<Option<KillSwitch>, StateError> {
    tree.get(KILL_SWITCH_KEY)?.map(|v| decode(&v)).transpose()
}

fn pauses(tree: &dyn KvTree) -> Result<Vec<(String, Pause)>, StateError> {
    let mut out = Vec::new();
    for_each(tree, PAUSE_PREFIX.as_bytes(), |k, v| {
        let Some(name) = k.strip_prefix(PAUSE_PREFIX.as_bytes()) else {
            return Ok(false);
        };
        out.push((String::from_utf8_lossy(name).into_owned(), decode(v)?));
        Ok(true)
    })?;
    Ok(out)
}

/// The kill switch as stored in `store` (for status read from a data directory).
pub fn stored_kill_switch(store: &dyn StateStore) -> Result<Option<KillSwitch>, StateError> {
    kill_switch(store.tree(NAME, TREE)?.as_ref())
}

/// Every pause as stored in `store` (for status read from a data directory).
pub fn stored_pauses(store: &dyn StateStore) -> Result<Vec<(String, Pause)>, StateError> {
    pauses(store.tree(NAME, TREE)?.as_ref())
}

pub(crate) fn decode_kill_switch(v: &[u8]) -> Result<KillSwitch, StateError> {
    decode(v)
}

pub(crate) fn decode_pause(v: &[u8]) -> Result<Pause, StateError> {
    decode(v)
}
