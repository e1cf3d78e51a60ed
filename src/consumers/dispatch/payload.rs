//! The JSON body POSTed to the agent gateway, and the idempotency key.
//!
//! ```text
//! { "seq": 42, "dedup_key": "openphone:message:AC1", "idempotency_key": "hooklog:42:openphone:message:AC1",
//!   "kind": "message.received", "provider": "openphone", "line": "+15550001111" | null,
//!   "agent": "acquisitions", "received_at": "2026-…Z", "occurred_at": "2026-…Z" | null,
//!   "opted_out": false, "event": { …the parsed event (kind, provider, occurred_at, dedup_keys, data)… } }
//! ```
//!
//! Invariant: the idempotency key depends only on the log record (its sequence and first
//! dedup key), never on the attempt or the clock, so every retry and every redelivery of
//! one event to the gateway carries the same key and the gateway can drop the copies. It is
//! sent both in the body and as the `Idempotency-Key` header. `opted_out` is decided by the
//! caller (the compliance projection) so the agent knows not to reply.

use serde::Serialize;

use crate::event::{Micros, Seq};
use crate::parse::Parsed;

/// `hooklog:<seq>:<dedup_key>`.
pub fn idempotency_key(seq: Seq, dedup_key: &str) -> String {
    format!("hooklog:{}:{dedup_key}", seq.0)
}

/// Why a payload could not be built: nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The parser promises at least one dedup key; without one there is no stable key.
    #[error("event {0} has no dedup key")]
    NoDedupKey(u64),
    /// The parsed event could not be encoded as JSON.
    #[error("event {seq} cannot be encoded: {source}")]
    Encode {
        /// The event.
        seq: u64,
        /// The encoder's error.
        source: serde_json::Error,
    },
}

/// The body, as documented in the module header.
#[derive(Clone, Debug, Serialize)]
struct Body<'a> {
    seq: u64,
    dedup_key: &'a str,
    idempotency_key: &'a str,
    kind: &'a str,
    provider: &'static str,
    line: Option<&'a str>,
    agent: &'a str,
    received_at: String,
    occurred_at: Option<String>,
    opted_out: bool,
    event: &'a Parsed,
}

/// What the caller knows about one event going to one agent.
#[derive(Clone, Copy, Debug)]
pub struct PayloadInput<'a> {
    /// The record's position in the log.
    pub seq: Seq,
    /// When hooklog received it.
    pub received_at: Micros,
    /// The parsed event.
    pub parsed: &'a Parsed,
    /// The line it happened on, if known.
    pub line: Option<&'a str>,
    /// The route's agent.
    pub agent: &'a str,
    /// Whether the contact has opted out (the agent must not reply).
    pub opted_out: bool,
}

/// One POST, ready to perform: where, its idempotency key and the encoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchRequest {
    /// The gateway URL (the route's, or the default).
    pub url: String,
    /// The same for every attempt at this event.
    pub idempotency_key: String,
    /// The agent, for logs and alerts.
    pub agent: String,
    /// The JSON body.
    pub body: String,
}

impl DispatchRequest {
    /// Builds the request for `input` to `url`.
    pub fn new(url: &str, input: PayloadInput<'_>) -> Result<DispatchRequest, PayloadError> {
        let seq = input.seq.0;
        let dedup_key = input
            .parsed
            .dedup_keys
            .first()
            .ok_or(PayloadError::NoDedupKey(seq))?;
        let key = idempotency_key(input.seq, dedup_key);
        let body = Body {
            seq,
            dedup_key,
            idempotency_key: &key,
            kind: input.parsed.kind.as_str(),
            provider: input.parsed.provider_name(),
            line: input.line,
            agent: input.agent,
            received_at: input.received_at.to_rfc3339(),
            occurred_at: input
                .parsed
                .occurred_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            opted_out: input.opted_out,
            event: input.parsed,
        };
        let body =
            serde_json::to_string(&body).map_err(|source| PayloadError::Encode { seq, source })?;
        Ok(DispatchRequest {
            url: url.to_owned(),
            idempotency_key: key,
            agent: input.agent.to_owned(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Data, Kind};
    use crate::provider::Provider;

    fn parsed(keys: &[&str]) -> Parsed {
        Parsed {
            kind: Kind::MessageReceived,
            provider: Some(Provider::Quo),
            occurred_at: None,
            dedup_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            data: Data::Other,
        }
    }

    fn input(p: &Parsed, opted_out: bool) -> PayloadInput<'_> {
        PayloadInput {
            seq: Seq(42),
            received_at: Micros(1_700_000_000_000_000),
            parsed: p,
            line: Some("+15550001111"),
            agent: "acquisitions",
            opted_out,
        }
    }

    #[test]
    fn the_idempotency_key_is_the_sequence_and_the_first_dedup_key() {
        let p = parsed(&["openphone:message:AC1", "other"]);
        let r = DispatchRequest::new("http://gw", input(&p, false)).unwrap();
        assert_eq!(r.idempotency_key, "hooklog:42:openphone:message:AC1");
        let again = DispatchRequest::new("http://gw", input(&p, false)).unwrap();
        assert_eq!(r, again);
    }

    #[test]
    fn the_body_has_the_documented_fields_and_the_opted_out_flag() {
        let p = parsed(&["k1"]);
        let r = DispatchRequest::new("http://gw", input(&p, true)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["dedup_key"], "k1");
        assert_eq!(v["idempotency_key"], "hooklog:42:k1");
        assert_eq!(v["kind"], "message.received");
        assert_eq!(v["provider"], "openphone");
        assert_eq!(v["line"], "+15550001111");
        assert_eq!(v["agent"], "acquisitions");
        assert_eq!(v["received_at"], "2023-11-14T22:13:20.000000Z");
        assert!(v["occurred_at"].is_null());
        assert_eq!(v["opted_out"], true);
        assert_eq!(v["event"]["kind"], "message.received");
        assert_eq!(v["event"]["dedup_keys"][0], "k1");
    }

    #[test]
    fn an_event_without_a_dedup_key_is_not_dispatched() {
        let p = parsed(&[]);
        assert!(matches!(
            DispatchRequest::new("http://gw", input(&p, false)),
            Err(PayloadError::NoDedupKey(42))
        ));
    }
}
