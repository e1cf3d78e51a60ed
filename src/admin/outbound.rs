//! The outbound API on the admin listener (docs/api.md#outbound-api): agents ask for an SMS with
//! `POST /v1/messages` and follow it with `GET /v1/messages/{id}`; operators unblock a line
//! a provider blocked with `POST /admin/lines/{id}/unblock`.
//!
//! The API decides nothing: it validates the shape, appends a request record and answers
//! `202 {id, status}`. The `outbound` consumer decides, the `sender` sends, and the status
//! read back is their projection ([`crate::consumers::outbound::store`]).
//!
//! Idempotency: one key is one message. Requests are serialised by a mutex; a key is noted
//! (tree `api_keys`) before its request is appended, so a retry that arrives while the
//! projection is behind still finds it. If the daemon stopped between the note and the
//! append, the key names an id without a request; the retry then appends that id's request,
//! but only once the projection has read the whole log (until then: 503, retry).

use serde::{Deserialize, Serialize};

use crate::provider::SendProvider;

use super::routes::Caller;
use crate::consumers::outbound as gate;
use crate::consumers::outbound::{
    LineChange, Message, MessageId, MessageRequest, OutboundRecord, OutboundStore, Status, Step,
};
use crate::error::ApiError;
use crate::event::{Micros, Seq};
use crate::gates::Reason;
use crate::live::Live;
use crate::log::Log;

/// Longest `content` accepted into the log (the content gate's limit is lower; this only
/// keeps absurd bodies out of the log).
const MAX_CONTENT_CHARS: usize = 10_000;

/// `POST /v1/messages` body.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    /// The line: a `[[lines]]` id or its number. Required: hooklog never picks a line.
    #[serde(default)]
    pub from: Option<String>,
    /// The recipient.
    #[serde(default)]
    pub to: Option<String>,
    /// The text.
    #[serde(default)]
    pub content: Option<String>,
    /// One key, one message.
    #[serde(default, alias = "idempotency_key")]
    pub idempotency_key: Option<String>,
    /// `openphone` (or `quo`) or `twilio`: the provider the caller expects; never
    /// substituted. Default: the line's.
    #[serde(default)]
    pub provider: Option<String>,
}

/// `202` answer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Accepted {
    /// The message id.
    pub id: String,
    /// Its status now.
    pub status: Status,
}

/// `GET /v1/messages/{id}` answer.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MessageView {
    /// The id.
    pub id: String,
    /// pending, held, refused, sending, sent, failed or unknown.
    pub status: Status,
    /// Why it is held or refused, or why it failed.
    pub reasons: Vec<Reason>,
    /// For `held`: when it is evaluated again.
    pub hold_until: Option<String>,
    /// The line as given.
    pub from: String,
    /// The resolved line.
    pub line_id: Option<String>,
    /// The sending number.
    pub from_number: Option<String>,
    /// The provider.
    pub provider: Option<SendProvider>,
    /// The recipient as given.
    pub to: String,
    /// The text.
    pub content: String,
    /// The caller's key.
    pub idempotency_key: Option<String>,
    /// Send attempts.
    pub attempts: u32,
    /// The provider's message id, once sent.
    pub provider_message_id: Option<String>,
    /// The provider's error, if it failed.
    pub error: Option<String>,
    /// When it was requested.
    pub requested_at: String,
    /// When its status last changed.
    pub updated_at: String,
    /// Whose token asked: `agent:<name>` or `operator`.
    pub requested_by: String,
    /// Every step, oldest first.
    pub history: Vec<Step>,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> MessageView {
        MessageView {
            id: m.id.0,
            status: m.status,
            reasons: m.reasons,
            hold_until: m.hold_until,
            from: m.from,
            line_id: m.line_id,
            from_number: m.from_number,
            provider: m.provider,
            to: m.to,
            content: m.content,
            idempotency_key: m.idempotency_key,
            attempts: m.attempts,
            provider_message_id: m.provider_id,
            error: m.error,
            requested_at: m.requested_at,
            updated_at: m.updated_at,
            requested_by: m.requested_by.unwrap_or_else(|| "operator".to_owned()),
            history: m.history,
        }
    }
}

/// The ids of `[[lines]]`, as the outbound API keeps them.
pub fn line_ids(lines: &[crate::gates::LineConfig]) -> Vec<String> {
    lines.iter().map(|l| l.id.clone()).collect()
}

/// The outbound API's state.
pub struct OutboundApi {
    store: OutboundStore,
    /// One request at a time: check a key, note it, append.
    lock: tokio::sync::Mutex<()>,
    /// The ids of `[[lines]]`: an unblock must name one (or a line a record blocked).
    /// Replaced by a reload.
    lines: Live<Vec<String>>,
}

fn required(field: &str, value: Option<String>, what: &str) -> Result<String, ApiError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(ApiError::BadRequest(format!(
            "`{field}` is required: {what}"
        ))),
    }
}

impl OutboundApi {
    /// Over `log`'s state, for the configured `lines`.
    pub fn new(
        log: &dyn Log,
        lines: &[crate::gates::LineConfig],
    ) -> Result<OutboundApi, crate::state::StateError> {
        Ok(OutboundApi {
            store: OutboundStore::open(log.state().as_ref())?,
            lock: tokio::sync::Mutex::new(()),
            lines: Live::new(line_ids(lines)),
        })
    }

    /// The cell a reload replaces the line ids in ([`line_ids`]).
    pub fn lines(&self) -> Live<Vec<String>> {
        self.lines.clone()
    }

    /// The message `id` as projected, or as requested when the projection has not read it.
    fn view(&self, log: &dyn Log, id: &MessageId) -> Result<Option<Message>, ApiError> {
        if let Some(m) = self.store.message(id)? {
            return Ok(Some(m));
        }
        let Some(seq) = self.store.requested_seq(id)? else {
            return Ok(None);
        };
        let Some(event) = log.get(Seq(seq))? else {
            return Ok(None);
        };
        match OutboundRecord::decode(&event) {
            Some(Ok(OutboundRecord::Request(r))) if &r.id == id => {
                Ok(Some(Message::requested(seq, &r)))
            }
            _ => Ok(None),
        }
    }

    /// `POST /v1/messages` from `caller`, whose name the request record keeps (from the
    /// token, never from the body: a `requestedBy` in the JSON is ignored).
    pub async fn post(
        &self,
        log: &dyn Log,
        caller: &Caller,
        body: &[u8],
        header_key: Option<String>,
    ) -> Result<Accepted, ApiError> {
        let req: SendRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid message request: {e}")))?;
        let from = required(
            "from",
            req.from,
            "the line to send from (a [[lines]] id or its number); hooklog never picks one",
        )?;
        let to = required("to", req.to, "the recipient's number")?;
        let content = req
            .content
            .ok_or_else(|| ApiError::BadRequest("`content` is required: the text".into()))?;
        if content.chars().count() > MAX_CONTENT_CHARS {
            return Err(ApiError::BadRequest(format!(
                "`content` is longer than {MAX_CONTENT_CHARS} characters"
            )));
        }
        let provider = match req.provider.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(name.parse::<SendProvider>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "`provider` is `{name}`; expected openphone (quo) or twilio"
                ))
            })?),
        };
        let key = req
            .idempotency_key
            .or(header_key)
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        if key.as_ref().is_some_and(|k| k.len() > 255) {
            return Err(ApiError::BadRequest(
                "`idempotencyKey` is longer than 255 bytes".into(),
            ));
        }

        let _one_at_a_time = self.lock.lock().await;
        let mut id = None;
        if let Some(key) = &key {
            if let Some(owner) = self.store.id_for_key(key)? {
                if let Some(m) = self.view(log, &owner)? {
                    return Ok(Accepted {
                        id: owner.0,
                        status: m.status,
                    });
                }
                let behind = log.cursor(gate::NAME)?.0 < log.stats()?.last_seq;
                if behind {
                    return Err(ApiError::NotReady(format!(
                        "idempotency key `{key}` is being recovered after a restart; retry in a second"
                    )));
                }
                // Noted, never appended (the daemon stopped in between): append it now.
                id = Some(owner);
            }
        }
        let now = Micros::now();
        let id = id.unwrap_or_else(|| MessageId::generate(now));
        if let Some(key) = &key {
            self.store.note_api_key(key, &id)?;
        }
        let record = OutboundRecord::Request(MessageRequest {
            id: id.clone(),
            idempotency_key: key,
            from,
            provider,
            to,
            content,
            requested_at: now.to_rfc3339(),
            requested_by: Some(caller.label()),
        });
        let seq = log
            .append(record.to_verified_as(now, caller.verification()))
            .await
            .map_err(ApiError::AppendFailed)?;
        self.store.note_requested(&id, seq.0)?;
        tracing::info!(id = %id, seq = seq.0, "outbound request accepted");
        Ok(Accepted {
            id: id.0,
            status: Status::Pending,
        })
    }

    /// `GET /v1/messages/{id}`.
    pub fn get(&self, log: &dyn Log, id: &str) -> Result<MessageView, ApiError> {
        if !MessageId::is_valid(id) {
            return Err(ApiError::NotFound);
        }
        self.view(log, &MessageId(id.to_owned()))?
            .map(MessageView::from)
            .ok_or(ApiError::NotFound)
    }

    /// `POST /admin/lines/{id}/unblock`: appends the change; the gates apply it.
    ///
    /// The line must be a `[[lines]]` id or one a record names (blocked, then removed from
    /// the configuration): a mistyped id would otherwise be answered 202 while the line the
    /// operator meant stays blocked.
    pub async fn unblock(
        &self,
        log: &dyn Log,
        line_id: &str,
        reason: Option<String>,
    ) -> Result<u64, ApiError> {
        if !self.lines.get().iter().any(|l| l == line_id) && self.store.line(line_id)?.is_none() {
            return Err(ApiError::NoSuch(format!(
                "no line `{line_id}`: unblock takes the id of a [[lines]] entry"
            )));
        }
        let now = Micros::now();
        let record = OutboundRecord::Line(LineChange {
            line_id: line_id.to_owned(),
            state: "unblocked".into(),
            reason: reason.unwrap_or_else(|| "unblocked by an operator".into()),
            at: now.to_rfc3339(),
        });
        let verified = record.to_verified_as(now, crate::event::Verification::AdminToken);
        Ok(log
            .append(verified)
            .await
            .map_err(ApiError::AppendFailed)?
            .0)
    }
}
