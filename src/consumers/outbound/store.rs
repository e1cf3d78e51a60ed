//! Where the outbound path keeps its state: trees of consumer `outbound` in the state store.
//!
//! Key layout:
//!
//! | tree          | key                                 | value                          | written by |
//! |---------------|-------------------------------------|--------------------------------|------------|
//! | `messages`    | message id                          | JSON [`Message`]               | projection |
//! | `idempotency` | idempotency key                     | message id                     | projection |
//! | `open`        | message id                          | due time, µs since epoch, BE   | projection |
//! | `contacted`   | line id `\0` recipient E.164        | first record's seq, BE         | projection |
//! | `lines`       | line id                             | JSON [`LineState`]             | projection |
//! | `sends`       | cleared or re-sent at (µs, BE) ++ message id | JSON [`SentEntry`]    | projection |
//! | `api_keys`    | idempotency key                     | message id                     | the API    |
//! | `requested`   | message id                          | request record's seq, BE       | the API    |
//!
//! The projection trees are a pure function of the log and are cleared on a rebuild. The
//! two API trees are never cleared: they let the API answer for a request it has appended
//! before the projection has read it, and they keep one idempotency key one message across
//! a rebuild.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::message::Message;
use super::records::{LineChange, MessageId, SendAttempt};
use crate::event::Micros;
use crate::gates::blast_safety::{content_hash, ContentHash, Sent};
use crate::state::{for_each, to_json, KvTree, StateError, StateStore};

/// The consumer that owns these trees.
pub const CONSUMER: &str = "outbound";

/// A line's provider-side state, with the record that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineState {
    /// The change.
    pub change: LineChange,
    /// Its record.
    pub seq: u64,
}

impl LineState {
    /// Why the line is blocked, if it is.
    pub fn blocked(&self) -> Option<&str> {
        (self.change.state == "blocked").then_some(self.change.reason.as_str())
    }
}

/// A message the gates cleared, as blast safety counts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEntry {
    /// The line.
    pub line_id: String,
    /// The recipient, E.164.
    pub to: String,
    /// SHA-256 of the normalised body.
    pub content_hash: ContentHash,
    /// When it was cleared.
    pub at: DateTime<Utc>,
}

impl From<SentEntry> for Sent {
    fn from(e: SentEntry) -> Sent {
        Sent {
            line_id: e.line_id,
            to: e.to,
            content_hash: e.content_hash,
            at: e.at,
        }
    }
}

/// Handles on every tree.
#[derive(Clone)]
pub struct OutboundStore {
    messages: Arc<dyn KvTree>,
    idempotency: Arc<dyn KvTree>,
    open: Arc<dyn KvTree>,
    contacted: Arc<dyn KvTree>,
    lines: Arc<dyn KvTree>,
    sends: Arc<dyn KvTree>,
    api_keys: Arc<dyn KvTree>,
    requested: Arc<dyn KvTree>,
}

fn corrupt(tree: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt {
        tree: tree.to_owned(),
        message: e.to_string(),
    }
}

fn be_u64(tree: &str, v: &[u8]) -> Result<u64, StateError> {
    let bytes: [u8; 8] = v
        .try_into()
        .map_err(|_| corrupt(tree, "value is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

fn id_of(tree: &str, v: &[u8]) -> Result<MessageId, StateError> {
    String::from_utf8(v.to_vec())
        .map(MessageId)
        .map_err(|e| corrupt(tree, e))
}

impl OutboundStore {
    /// Opens (creates) the trees.
    pub fn open(store: &dyn StateStore) -> Result<OutboundStore, StateError> {
        let t = |name: &str| store.tree(CONSUMER, name);
        Ok(OutboundStore {
            messages: t("messages")?,
            idempotency: t("idempotency")?,
            open: t("open")?,
            contacted: t("contacted")?,
            lines: t("lines")?,
            sends: t("sends")?,
            api_keys: t("api_keys")?,
            requested: t("requested")?,
        })
    }

    /// Clears the projection (not the API's trees) before a rebuild.
    pub fn clear_projection(&self) -> Result<(), StateError> {
        for t in [
            &self.messages,
            &self.idempotency,
            &self.open,
            &self.contacted,
            &self.lines,
            &self.sends,
        ] {
            t.clear()?;
        }
        Ok(())
    }

    /// A message's projected state.
    pub fn message(&self, id: &MessageId) -> Result<Option<Message>, StateError> {
        self.messages
            .get(id.as_str().as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt("messages", e)))
            .transpose()
    }

    /// Stores a message's state.
    pub fn put_message(&self, m: &Message) -> Result<(), StateError> {
        self.messages.insert(m.id.as_str().as_bytes(), &to_json(m)?)
    }

    /// Every projected message, in id (= time) order.
    pub fn messages(&self) -> Result<Vec<Message>, StateError> {
        let mut out = Vec::new();
        for_each(self.messages.as_ref(), b"", |_, v| {
            out.push(serde_json::from_slice(v).map_err(|e| corrupt("messages", e))?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The message an idempotency key belongs to, by the projection or by the API.
    pub fn id_for_key(&self, key: &str) -> Result<Option<MessageId>, StateError> {
        if let Some(v) = self.idempotency.get(key.as_bytes())? {
            return id_of("idempotency", &v).map(Some);
        }
        self.api_keys
            .get(key.as_bytes())?
            .map(|v| id_of("api_keys", &v))
            .transpose()
    }

    /// The projection's owner of `key`, set by the first request that carries it.
    pub fn projected_id_for_key(&self, key: &str) -> Result<Option<MessageId>, StateError> {
        self.idempotency
            .get(key.as_bytes())?
            .map(|v| id_of("idempotency", &v))
            .transpose()
    }

    /// Gives `key` to `id` unless another message has it. Returns the owner.
    pub fn claim_key(&self, key: &str, id: &MessageId) -> Result<MessageId, StateError> {
        match self.projected_id_for_key(key)? {
            Some(owner) => Ok(owner),
            None => {
                self.idempotency
                    .insert(key.as_bytes(), id.as_str().as_bytes())?;
                Ok(id.clone())
            }
        }
    }

    /// The API's note of a key it is about to append a request for.
    pub fn note_api_key(&self, key: &str, id: &MessageId) -> Result<(), StateError> {
        self.api_keys.insert(key.as_bytes(), id.as_str().as_bytes())
    }

    /// The API's note of a request it has appended.
    pub fn note_requested(&self, id: &MessageId, seq: u64) -> Result<(), StateError> {
        self.requested
            .insert(id.as_str().as_bytes(), &seq.to_be_bytes())
    }

    /// The request record of `id`, if the API appended one.
    pub fn requested_seq(&self, id: &MessageId) -> Result<Option<u64>, StateError> {
        self.requested
            .get(id.as_str().as_bytes())?
            .map(|v| be_u64("requested", &v))
            .transpose()
    }

    /// Marks `id` as waiting for the gates from `due` on.
    pub fn set_open(&self, id: &MessageId, due: Micros) -> Result<(), StateError> {
        self.open
            .insert(id.as_str().as_bytes(), &(due.0.max(0) as u64).to_be_bytes())
    }

    /// `id` no longer waits for the gates.
    pub fn close(&self, id: &MessageId) -> Result<(), StateError> {
        self.open.remove(id.as_str().as_bytes())
    }

    /// Messages waiting for the gates whose time has come (`due ≤ now`), oldest id first.
    pub fn due(&self, now: Micros) -> Result<Vec<MessageId>, StateError> {
        let mut out = Vec::new();
        for_each(self.open.as_ref(), b"", |k, v| {
            if be_u64("open", v)? as i64 <= now.0 {
                out.push(id_of("open", k)?);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn contact_key(line_id: &str, to: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(line_id.len() + 1 + to.len());
        k.extend_from_slice(line_id.as_bytes());
        k.push(0);
        k.extend_from_slice(to.as_bytes());
        k
    }

    /// Whether `line_id` has texted `to` before (a cleared message, or an outgoing message
    /// the provider reported).
    pub fn contacted(&self, line_id: &str, to: &str) -> Result<bool, StateError> {
        Ok(self
            .contacted
            .get(&Self::contact_key(line_id, to))?
            .is_some())
    }

    /// The first record that made `to` a contact of `line_id`, if any.
    pub fn contacted_at(&self, line_id: &str, to: &str) -> Result<Option<u64>, StateError> {
        self.contacted
            .get(&Self::contact_key(line_id, to))?
            .map(|v| be_u64("contacted", &v))
            .transpose()
    }

    /// Records that `line_id` has texted `to` (first record wins).
    pub fn set_contacted(&self, line_id: &str, to: &str, seq: u64) -> Result<(), StateError> {
        let k = Self::contact_key(line_id, to);
        if self.contacted.get(&k)?.is_none() {
            self.contacted.insert(&k, &seq.to_be_bytes())?;
        }
        Ok(())
    }

    /// A line's provider-side state.
    pub fn line(&self, line_id: &str) -> Result<Option<LineState>, StateError> {
        self.lines
            .get(line_id.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt("lines", e)))
            .transpose()
    }

    /// Applies a line change from record `seq` unless a later one is stored.
    pub fn put_line(&self, seq: u64, change: &LineChange) -> Result<(), StateError> {
        if self.line(&change.line_id)?.is_some_and(|l| l.seq >= seq) {
            return Ok(());
        }
        let state = LineState {
            change: change.clone(),
            seq,
        };
        self.lines
            .insert(change.line_id.as_bytes(), &to_json(&state)?)
    }

    /// Counts a cleared message for blast safety (idempotent per message).
    pub fn record_send(&self, id: &MessageId, entry: &SentEntry) -> Result<(), StateError> {
        let mut k = (entry.at.timestamp_micros().max(0) as u64)
            .to_be_bytes()
            .to_vec();
        k.extend_from_slice(id.as_str().as_bytes());
        self.sends.insert(&k, &to_json(entry)?)
    }

    /// Messages cleared (and re-sent) at or after `since`.
    pub fn sends_since(&self, since: DateTime<Utc>) -> Result<Vec<Sent>, StateError> {
        Ok(self.sends_since_apart(since, None)?.0)
    }

    /// Messages cleared (and re-sent) at or after `since`: those of other messages, and
    /// those of message `own` (its clearance and its earlier re-sends).
    pub fn sends_since_apart(
        &self,
        since: DateTime<Utc>,
        own: Option<&MessageId>,
    ) -> Result<(Vec<Sent>, Vec<Sent>), StateError> {
        let from = (since.timestamp_micros().max(0) as u64).to_be_bytes();
        let (mut others, mut mine) = (Vec::new(), Vec::new());
        for_each(self.sends.as_ref(), &from, |k, v| {
            let e: SentEntry = serde_json::from_slice(v).map_err(|e| corrupt("sends", e))?;
            let is_own = own.is_some_and(|id| k.get(8..) == Some(id.as_str().as_bytes()));
            if is_own {
                mine.push(e.into());
            } else {
                others.push(e.into());
            }
            Ok(true)
        })?;
        Ok((others, mine))
    }

    /// Counts a re-send (an attempt with `redelivery`) for blast safety: a re-send is one
    /// more message to the person and on the line. Keyed by the attempt's own time, so the
    /// sender (at once, before the projection reads the attempt) and the projection write the
    /// same entry. Nothing when the message has no resolved line.
    pub fn record_resend(&self, msg: &Message, attempt: &SendAttempt) -> Result<(), StateError> {
        let Some(line_id) = msg.line_id.clone() else {
            return Ok(());
        };
        let Ok(at) = DateTime::parse_from_rfc3339(&attempt.at) else {
            return Ok(());
        };
        self.record_send(
            &msg.id,
            &SentEntry {
                line_id,
                to: attempt.to.clone(),
                content_hash: content_hash(&msg.content),
                at: at.with_timezone(&Utc),
            },
        )
    }

    /// Forgets cleared messages older than `before` (blast safety looks back 24 h).
    pub fn prune_sends(&self, before: DateTime<Utc>) -> Result<usize, StateError> {
        let limit = before.timestamp_micros().max(0) as u64;
        let mut old = Vec::new();
        for_each(self.sends.as_ref(), b"", |k, _| {
            let at = k.get(..8).map(|b| be_u64("sends", b)).transpose()?;
            if at.is_some_and(|at| at < limit) {
                old.push(k.to_vec());
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        for k in &old {
            self.sends.remove(k)?;
        }
        Ok(old.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::outbound::records::MessageRequest;
    use crate::state::MemState;
    use chrono::TimeZone;

    fn id(n: u8) -> MessageId {
        MessageId(format!("msg_{:026x}", n))
    }

    #[test]
    fn a_rebuild_clears_the_projection_but_not_the_api_notes() {
        let mem = MemState::default();
        let s = OutboundStore::open(&mem).unwrap();
        let m = Message::requested(
            3,
            &MessageRequest {
                id: id(1),
                idempotency_key: Some("k".into()),
                from: "l".into(),
                provider: None,
                to: "+12125550100".into(),
                content: "c".into(),
                requested_at: "2026-11-30T12:00:00Z".into(),
                requested_by: None,
            },
        );
        s.put_message(&m).unwrap();
        s.note_api_key("k", &id(1)).unwrap();
        s.note_requested(&id(1), 3).unwrap();
        assert_eq!(s.claim_key("k", &id(1)).unwrap(), id(1));
        assert_eq!(s.claim_key("k", &id(2)).unwrap(), id(1), "first owner wins");
        s.clear_projection().unwrap();
        assert!(s.message(&id(1)).unwrap().is_none());
        assert_eq!(
            s.id_for_key("k").unwrap(),
            Some(id(1)),
            "the API's note stays"
        );
        assert_eq!(s.requested_seq(&id(1)).unwrap(), Some(3));
    }

    #[test]
    fn due_lists_only_messages_whose_time_has_come() {
        let mem = MemState::default();
        let s = OutboundStore::open(&mem).unwrap();
        s.set_open(&id(1), Micros(0)).unwrap();
        s.set_open(&id(2), Micros(5_000)).unwrap();
        assert_eq!(s.due(Micros(4_999)).unwrap(), vec![id(1)]);
        assert_eq!(s.due(Micros(5_000)).unwrap(), vec![id(1), id(2)]);
        s.close(&id(1)).unwrap();
        assert_eq!(s.due(Micros(9_000)).unwrap(), vec![id(2)]);
    }

    #[test]
    fn sends_are_counted_once_per_message_and_pruned_by_age() {
        let mem = MemState::default();
        let s = OutboundStore::open(&mem).unwrap();
        let at = |h: u32| Utc.with_ymd_and_hms(2026, 11, 30, h, 0, 0).unwrap();
        let e = |h| SentEntry {
            line_id: "l".into(),
            to: "+12125550100".into(),
            content_hash: [0; 32],
            at: at(h),
        };
        s.record_send(&id(1), &e(1)).unwrap();
        s.record_send(&id(1), &e(1)).unwrap();
        s.record_send(&id(2), &e(5)).unwrap();
        assert_eq!(s.sends_since(at(0)).unwrap().len(), 2);
        assert_eq!(s.sends_since(at(2)).unwrap().len(), 1);
        assert_eq!(s.prune_sends(at(2)).unwrap(), 1);
        assert_eq!(s.sends_since(at(0)).unwrap().len(), 1);
    }

    #[test]
    fn a_later_line_change_wins_and_an_older_one_is_ignored() {
        let mem = MemState::default();
        let s = OutboundStore::open(&mem).unwrap();
        let change = |state: &str| LineChange {
            line_id: "quo-main".into(),
            state: state.into(),
            reason: "A2P".into(),
            at: "t".into(),
        };
        s.put_line(5, &change("blocked")).unwrap();
        s.put_line(4, &change("unblocked")).unwrap();
        assert_eq!(s.line("quo-main").unwrap().unwrap().blocked(), Some("A2P"));
        s.put_line(9, &change("unblocked")).unwrap();
        assert_eq!(s.line("quo-main").unwrap().unwrap().blocked(), None);
    }
}
