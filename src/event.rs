//! The one event envelope: what the log stores for every accepted request.
//!
//! An [`Event`] is the raw request as it arrived (route, the headers needed to re-verify and
//! dedup, the body bytes untouched) plus what hooklog knows about it (sequence, receipt time,
//! source, how it was verified). Everything downstream is a projection of these records.
//!
//! Invariants:
//! - Only a [`Verified`] value can become an `Event`, and only this crate can make a
//!   `Verified` (the edge after a signature check, the admin API after a token check). That is
//!   the typestate behind guarantee 2: nothing unverified reaches the log.
//! - The body is never re-serialised; re-verification must be possible from the record.
//!
//! Encoding (see `schema/log-format.md`): one format byte ([`FORMAT_V1`]) followed by the
//! `bincode` 2.0.1 `standard()` encoding (varint integers) of [`Event`]. When the layout
//! changes, freeze the current struct as `EventV1`, add a new format byte and keep decoding
//! the old one: records are never rewritten in place.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::provider::Provider;

/// Format byte of the current record encoding.
pub const FORMAT_V1: u8 = 1;

/// Records larger than this are refused on decode: a corrupt length prefix must not make the
/// decoder allocate gigabytes. Far above the edge's body limit (1 MiB by default).
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Position of an event in the log. Assigned by the single writer, contiguous, starting at 1;
/// `Seq(0)` means "before the first event" (a fresh cursor).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Encode,
    Decode,
    Serialize,
    Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The sequence as the big-endian key sled sorts by.
    pub fn to_key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads a big-endian key; `None` if it is not 8 bytes.
    pub fn from_key(key: &[u8]) -> Option<Seq> {
        let bytes: [u8; 8] = key.try_into().ok()?;
        Some(Seq(u64::from_be_bytes(bytes)))
    }

    /// The next sequence number.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Microseconds since the Unix epoch, UTC.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    /// The current wall-clock time.
    pub fn now() -> Micros {
        Micros(chrono::Utc::now().timestamp_micros())
    }

    /// As a chrono time (saturating at the representable range).
    pub fn to_datetime(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    /// RFC 3339 with microseconds, e.g. `2026-11-23T14:56:50.123456Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// Whole seconds since the epoch.
    pub fn unix_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }
}

/// Where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Source {
    /// A Quo webhook (`openphone` in the API, the CLI and metrics).
    Quo,
    /// A Twilio webhook.
    Twilio,
    /// A SalesMsg webhook.
    SalesMsg,
    /// A Quo resource fetched from the REST API by `hooklog-replay backfill`.
    BackfillQuo,
    /// A Twilio resource fetched from the REST API by `hooklog-replay backfill`.
    BackfillTwilio,
    /// An outbound request or its result (gate decision, send result).
    Outbound,
    /// hooklog's own bookkeeping (operator actions, alerts that must replay).
    Internal,
}

impl Source {
    /// The provider the record came from; `None` for the records hooklog writes itself.
    pub fn provider(self) -> Option<Provider> {
        match self {
            Source::Quo | Source::BackfillQuo => Some(Provider::Quo),
            Source::Twilio | Source::BackfillTwilio => Some(Provider::Twilio),
            Source::SalesMsg => Some(Provider::SalesMsg),
            Source::Outbound | Source::Internal => None,
        }
    }

    /// Every source, for validation messages and metrics.
    pub const ALL: [Source; 7] = [
        Source::Quo,
        Source::Twilio,
        Source::SalesMsg,
        Source::BackfillQuo,
        Source::BackfillTwilio,
        Source::Outbound,
        Source::Internal,
    ];

    /// The name used in the API, the CLI and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Quo => "openphone",
            Source::Twilio => "twilio",
            Source::SalesMsg => "salesmsg",
            Source::BackfillQuo => "backfill-openphone",
            Source::BackfillTwilio => "backfill-twilio",
            Source::Outbound => "outbound",
            Source::Internal => "internal",
        }
    }

    /// Sources that only the signed webhook edge may produce.
    pub fn is_webhook(self) -> bool {
        matches!(self, Source::Quo | Source::Twilio | Source::SalesMsg)
    }

    /// The sources an operator appends with `POST /admin/events` (backfill).
    pub const OPERATOR_HELD: [Source; 2] = [Source::BackfillQuo, Source::BackfillTwilio];

    /// Whether the operator's `POST /admin/events` may append this source: not a webhook
    /// (the signed edge's) and not `outbound` or `internal` (hooklog's own records, see
    /// [`crate::provenance`]).
    pub fn is_operator_held(self) -> bool {
        Source::OPERATOR_HELD.contains(&self)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown source name.
#[derive(Debug, thiserror::Error)]
#[error("unknown source `{0}` (expected one of: openphone, twilio, salesmsg, backfill-openphone, backfill-twilio, outbound, internal)")]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|src| src.as_str() == s)
            .ok_or_else(|| UnknownSource(s.to_owned()))
    }
}

/// How an event was authenticated before it was appended. Key indexes point into the
/// configured key list at the time (useful during a rotation: which key is still in use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Verification {
    /// Quo legacy `openphone-signature`, matched by signing key `key`.
    QuoLegacy { key: u16 },
    /// Quo Standard Webhooks (`webhook-signature`), matched by signing key `key`.
    QuoStandard { key: u16 },
    /// Twilio `X-Twilio-Signature`, matched by auth token `token` over public URL `url`.
    Twilio { token: u16, url: u16 },
    /// SalesMsg `?secret=`, matched by secret `secret`.
    SalesMsgSecret { secret: u16 },
    /// Appended through the admin API by a holder of the admin token.
    AdminToken,
    /// Written by hooklog itself.
    Internal,
    /// Appended through the outbound API by an agent holding one of the
    /// `[server.agent_tokens]` (which agent: the record's own body, e.g. a message request's
    /// `requested_by`). Last, so the bincode index of every older variant stays what old
    /// records hold.
    AgentToken,
}

impl Verification {
    /// A short label for the API and the CLI.
    pub fn label(&self) -> String {
        match self {
            Verification::QuoLegacy { key } => format!("openphone-signature (key {key})"),
            Verification::QuoStandard { key } => format!("standard-webhooks (key {key})"),
            Verification::Twilio { token, url } => {
                format!("x-twilio-signature (token {token}, url {url})")
            }
            Verification::SalesMsgSecret { secret } => format!("salesmsg-secret (secret {secret})"),
            Verification::AdminToken => "admin-token".to_owned(),
            Verification::Internal => "internal".to_owned(),
            Verification::AgentToken => "agent-token".to_owned(),
        }
    }

    /// Reads back a [`Verification::label`] (for `hooklog-replay import`, which restores an
    /// export made through the admin API, where only the label is shown). `None` for text
    /// that no variant produces.
    pub fn from_label(label: &str) -> Option<Verification> {
        fn num(s: &str, prefix: &str) -> Option<u16> {
            s.strip_prefix(prefix)?.parse().ok()
        }
        let label = label.trim();
        match label {
            "admin-token" => return Some(Verification::AdminToken),
            "internal" => return Some(Verification::Internal),
            "agent-token" => return Some(Verification::AgentToken),
            _ => {}
        }
        let (kind, args) = label.split_once(" (")?;
        let args = args.strip_suffix(')')?;
        match kind {
            "openphone-signature" => Some(Verification::QuoLegacy {
                key: num(args, "key ")?,
            }),
            "standard-webhooks" => Some(Verification::QuoStandard {
                key: num(args, "key ")?,
            }),
            "x-twilio-signature" => {
                let (token, url) = args.split_once(", ")?;
                Some(Verification::Twilio {
                    token: num(token, "token ")?,
                    url: num(url, "url ")?,
                })
            }
            "salesmsg-secret" => Some(Verification::SalesMsgSecret {
                secret: num(args, "secret ")?,
            }),
            _ => None,
        }
    }
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Event {
    /// Position in the log.
    pub seq: Seq,
    /// When hooklog received the request (before verification).
    pub received_at: Micros,
    /// Who sent it.
    pub source: Source,
    /// The request target as received (path and query); secrets in the query are redacted.
    pub route: String,
    /// Lower-case header names and values needed to re-verify and dedup, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw body bytes, exactly as received.
    pub body: Vec<u8>,
    /// How the request was authenticated.
    pub verification: Verification,
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record is empty: not even a format byte.
    #[error("empty record")]
    Empty,
    /// The format byte is one this build does not know (written by a newer hooklog?).
    #[error("unknown record format {0} (this build reads format {FORMAT_V1})")]
    UnknownFormat(u8),
    /// The bytes after the format byte are not a valid encoding.
    #[error("corrupt record: {0}")]
    Corrupt(#[from] bincode::error::DecodeError),
    /// Bytes were left over after the record.
    #[error("corrupt record: {0} trailing bytes")]
    Trailing(usize),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

impl Event {
    /// Encodes the record: format byte + bincode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 128);
        out.push(FORMAT_V1);
        // Encoding into a Vec cannot fail: the only errors are writer I/O and the size limit,
        // which applies to decoding only.
        #[allow(clippy::expect_used)]
        bincode::encode_into_std_write(self, &mut out, bincode::config::standard())
            .expect("encoding an Event into a Vec cannot fail");
        out
    }

    /// Decodes a record written by [`Event::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let (&format, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        match format {
            FORMAT_V1 => {
                let (event, used): (Event, usize) =
                    bincode::decode_from_slice(rest, bincode_config())?;
                if used != rest.len() {
                    return Err(DecodeError::Trailing(rest.len() - used));
                }
                Ok(event)
            }
            other => Err(DecodeError::UnknownFormat(other)),
        }
    }

    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request that passed authentication and may be appended. Its fields can be read by
/// anyone but it can only be built inside this crate, by code that checked a signature or
/// the admin token.
#[derive(Clone, Debug)]
pub struct Verified {
    pub(crate) received_at: Micros,
    pub(crate) source: Source,
    pub(crate) route: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) verification: Verification,
}

impl Verified {
    /// Only for code that has just authenticated the request.
    pub(crate) fn new(
        received_at: Micros,
        source: Source,
        route: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        verification: Verification,
    ) -> Verified {
        Verified {
            received_at,
            source,
            route,
            headers,
            body,
            verification,
        }
    }

    /// The source this request will be logged under.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Turns the verified request into a record at `seq`.
    pub(crate) fn into_event(self, seq: Seq) -> Event {
        Event {
            seq,
            received_at: self.received_at,
            source: self.source,
            route: self.route,
            headers: self.headers,
            body: self.body,
            verification: self.verification,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn source() -> impl Strategy<Value = Source> {
        prop::sample::select(Source::ALL.to_vec())
    }

    fn verification() -> impl Strategy<Value = Verification> {
        prop_oneof![
            any::<u16>().prop_map(|key| Verification::QuoLegacy { key }),
            any::<u16>().prop_map(|key| Verification::QuoStandard { key }),
            (any::<u16>(), any::<u16>())
                .prop_map(|(token, url)| Verification::Twilio { token, url }),
            any::<u16>().prop_map(|secret| Verification::SalesMsgSecret { secret }),
            Just(Verification::AdminToken),
            Just(Verification::Internal),
            Just(Verification::AgentToken),
        ]
    }

    prop_compose! {
        fn event()(
            seq in any::<u64>(),
            received_at in any::<i64>(),
            source in source(),
            route in ".{0,64}",
            headers in prop::collection::vec(("[a-z-]{1,20}", ".{0,80}"), 0..8),
            body in prop::collection::vec(any::<u8>(), 0..2048),
            verification in verification(),
        ) -> Event {
            Event { seq: Seq(seq), received_at: Micros(received_at), source, route, headers, body, verification }
        }
    }

    proptest! {
        #[test]
        fn any_event_survives_an_encode_decode_round_trip(ev in event()) {
            let bytes = ev.encode();
            prop_assert_eq!(bytes[0], FORMAT_V1);
            prop_assert_eq!(Event::decode(&bytes).unwrap(), ev);
        }

        #[test]
        fn a_truncated_record_never_decodes_to_an_event(ev in event(), cut in 0usize..64) {
            let bytes = ev.encode();
            let keep = bytes.len().saturating_sub(cut + 1);
            prop_assert!(Event::decode(&bytes[..keep]).is_err());
        }
    }

    #[test]
    fn an_unknown_format_byte_is_refused_not_guessed() {
        let mut bytes = Event {
            seq: Seq(1),
            received_at: Micros(0),
            source: Source::Twilio,
            route: "/sms".into(),
            headers: vec![],
            body: b"a=b".to_vec(),
            verification: Verification::Internal,
        }
        .encode();
        bytes[0] = 9;
        assert!(matches!(
            Event::decode(&bytes),
            Err(DecodeError::UnknownFormat(9))
        ));
        assert!(matches!(Event::decode(&[]), Err(DecodeError::Empty)));
    }

    #[test]
    fn trailing_garbage_after_a_record_is_corruption() {
        let mut bytes = Event {
            seq: Seq(7),
            received_at: Micros(1),
            source: Source::SalesMsg,
            route: "/webhook/salesmsg".into(),
            headers: vec![],
            body: vec![],
            verification: Verification::AdminToken,
        }
        .encode();
        bytes.push(0);
        assert!(matches!(
            Event::decode(&bytes),
            Err(DecodeError::Trailing(1))
        ));
    }

    #[test]
    fn the_v1_encoding_is_stable() {
        // A record written by this build must stay readable by later builds: pin the bytes.
        let ev = Event {
            seq: Seq(1),
            received_at: Micros(1_700_000_000_000_000),
            source: Source::Quo,
            route: "/webhook/quo".into(),
            headers: vec![("webhook-id".into(), "msg_1".into())],
            body: b"{}".to_vec(),
            verification: Verification::QuoStandard { key: 1 },
        };
        let hex = hex::encode(ev.encode());
        assert_eq!(
            hex, PINNED_V1_HEX,
            "the v1 encoding changed: add a new format instead"
        );
        assert_eq!(
            Event::decode(&hex::decode(PINNED_V1_HEX).unwrap()).unwrap(),
            ev
        );
    }

    #[test]
    fn the_variants_old_records_hold_keep_their_encoding() {
        // The variant index is what bincode stores: an older record's `admin-token` (4) and
        // `internal` (5) must read back as themselves, and the new variant comes after them.
        let byte = |v: Verification| {
            let mut out = Vec::new();
            bincode::encode_into_std_write(v, &mut out, bincode::config::standard()).unwrap();
            out[0]
        };
        assert_eq!(byte(Verification::AdminToken), 4);
        assert_eq!(byte(Verification::Internal), 5);
        assert_eq!(byte(Verification::AgentToken), 6);
    }

    const PINNED_V1_HEX: &str =
        "0101fd00803c3048140c00000c2f776562686f6f6b2f71756f010a776562686f6f6b2d6964056d73675f31027b7d0101";

    #[test]
    fn seq_keys_sort_like_numbers() {
        let mut keys: Vec<[u8; 8]> = [300u64, 2, 256, 1, 65_536]
            .iter()
            .map(|&n| Seq(n).to_key())
            .collect();
        keys.sort();
        let back: Vec<u64> = keys.iter().map(|k| Seq::from_key(k).unwrap().0).collect();
        assert_eq!(back, vec![1, 2, 256, 300, 65_536]);
    }

    proptest! {
        #[test]
        fn every_verification_label_reads_back(v in verification()) {
            prop_assert_eq!(Verification::from_label(&v.label()), Some(v));
        }
    }

    #[test]
    fn text_no_verification_produces_is_not_read_as_one() {
        for label in [
            "",
            "admin",
            "openphone-signature",
            "openphone-signature (key x)",
            "x-twilio-signature (token 1)",
            "salesmsg-secret (secret 70000)",
            "internal (1)",
        ] {
            assert_eq!(Verification::from_label(label), None, "{label}");
        }
    }

    #[test]
    fn source_names_round_trip() {
        for s in Source::ALL {
            assert_eq!(s.as_str().parse::<Source>().unwrap(), s);
        }
        assert!("quo".parse::<Source>().is_err());
    }
}
