//! Quo (OpenPhone) `POST /v1/messages` (docs/reference/quo.md#sending): a pure request builder, a pure
//! response classifier, and a blocking [`Client`].
//!
//! The body is `{content, from, to: [one E.164]}`; `Authorization` carries the raw API key,
//! **without** `Bearer`. Success is 202 with the message (id `AC…`) under `data` (the id is
//! also looked for at the top level).
//!
//! # The A2P rule
//!
//! Quo answers 400 "when A2P registration is not approved" but the wording of that error
//! is not documented. A 400 is [`Outcome::LineBlocked`] when its `message`, `title` or
//! `description` mentions `a2p` or `10dlc` (any case); every other 400 is
//! [`Outcome::Rejected`]. Both are final, so a mismatch changes only which alert fires and
//! whether the line is recorded as blocked, never whether a message is resent.

use serde_json::Value;

use super::{is_e164, perform, BuildError, HttpOptions, HttpRequest, OutboundMessage, Outcome};
use crate::config::secret::Secret;

/// Quo's limit on `content`.
pub const MAX_CONTENT_CHARS: usize = 1600;
/// The documented API host (the newer spec also names `https://api.quo.com`).
pub const DEFAULT_BASE_URL: &str = "https://api.openphone.com";

/// Builds the call for `message`. Pure.
pub fn build_request(
    base_url: &str,
    api_key: &Secret,
    message: &OutboundMessage,
) -> Result<HttpRequest, BuildError> {
    let from_ok = is_e164(&message.from)
        || (message.from.starts_with("PN")
            && message.from.len() > 2
            && message.from.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !from_ok {
        return Err(BuildError::BadFrom);
    }
    if !is_e164(&message.to) {
        return Err(BuildError::NotE164 { field: "to" });
    }
    let len = message.content.chars().count();
    if len == 0 {
        return Err(BuildError::EmptyContent);
    }
    if len > MAX_CONTENT_CHARS {
        return Err(BuildError::ContentTooLong {
            len,
            max: MAX_CONTENT_CHARS,
        });
    }
    let body = serde_json::json!({
        "content": message.content,
        "from": message.from,
        "to": [message.to],
    });
    Ok(HttpRequest {
        method: "POST",
        url: format!("{}/v1/messages", base_url.trim_end_matches('/')),
        headers: vec![
            ("Authorization", api_key.expose().to_owned()),
            ("Content-Type", "application/json".to_owned()),
        ],
        body: body.to_string(),
    })
}

/// Classifies Quo's answer. Pure.
pub fn classify(status: u16, body: &str) -> Outcome {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = |field: &str| json.get(field).and_then(Value::as_str).unwrap_or_default();
    match status {
        200..=299 => {
            let id = json
                .pointer("/data/id")
                .or_else(|| json.get("id"))
                .and_then(Value::as_str);
            match id {
                Some(id) if !id.is_empty() => Outcome::Sent {
                    provider_id: id.to_owned(),
                },
                _ => Outcome::Unknown {
                    reason: format!("accepted ({status}) but the answer has no message id"),
                },
            }
        }
        429 => Outcome::RateLimited,
        400 if ["message", "title", "description"].iter().any(|f| {
            let t = text(f).to_ascii_lowercase();
            t.contains("a2p") || t.contains("10dlc")
        }) =>
        {
            let reason = ["message", "description", "title"]
                .iter()
                .map(|f| text(f))
                .find(|t| !t.is_empty())
                .unwrap_or("A2P registration not approved");
            Outcome::LineBlocked {
                reason: reason.to_owned(),
            }
        }
        400..=499 => Outcome::Rejected {
            status,
            code: json.get("code").and_then(|c| match c {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            message: text("message").to_owned(),
        },
        _ => Outcome::Transient {
            reason: format!("Quo answered {status}"),
        },
    }
}

/// A fingerprint of an API key, for limiter keys and logs: never the key itself.
fn fingerprint(api_key: &Secret) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(api_key.expose().as_bytes())[..6])
}

/// Sends through one Quo API key.
#[derive(Debug)]
pub struct Client {
    api_key: Secret,
    key_id: String,
    options: HttpOptions,
    agent: ureq::Agent,
}

impl Client {
    /// A client for `api_key` with `options` (use [`DEFAULT_BASE_URL`] in production).
    pub fn new(api_key: Secret, options: HttpOptions) -> Client {
        Client {
            key_id: fingerprint(&api_key),
            agent: options.agent(),
            api_key,
            options,
        }
    }
}

impl super::SendClient for Client {
    fn provider(&self) -> &'static str {
        "openphone"
    }

    /// Quo limits per API key, whatever the line.
    fn limiter_key(&self, _message: &OutboundMessage) -> String {
        format!("openphone:key:{}", self.key_id)
    }

    fn send(&self, message: &OutboundMessage) -> Result<Outcome, BuildError> {
        let request = build_request(&self.options.base_url, &self.api_key, message)?;
        Ok(perform(&self.agent, &request, classify))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> OutboundMessage {
        OutboundMessage {
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            content: "Hi, this is Acme. Reply STOP to opt out.".into(),
        }
    }

    #[test]
    fn the_request_carries_the_raw_key_and_one_recipient_in_an_array() {
        let r = build_request("https://api.example/", &Secret::new("k123"), &message()).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "https://api.example/v1/messages");
        assert!(r.headers.contains(&("Authorization", "k123".to_owned())));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "content": "Hi, this is Acme. Reply STOP to opt out.",
                "from": "+15550001111",
                "to": ["+15550002222"],
            })
        );
    }

    #[test]
    fn invalid_messages_are_refused_before_any_call() {
        let key = Secret::new("k");
        let mut m = message();
        m.to = "5550002222".into();
        assert_eq!(
            build_request("h", &key, &m),
            Err(BuildError::NotE164 { field: "to" })
        );
        let mut m = message();
        m.from = "line one".into();
        assert_eq!(build_request("h", &key, &m), Err(BuildError::BadFrom));
        let mut m = message();
        m.from = "PNabc123".into();
        assert!(build_request("h", &key, &m).is_ok());
        let mut m = message();
        m.content = "x".repeat(1601);
        assert_eq!(
            build_request("h", &key, &m),
            Err(BuildError::ContentTooLong {
                len: 1601,
                max: 1600
            })
        );
        m.content.clear();
        assert_eq!(build_request("h", &key, &m), Err(BuildError::EmptyContent));
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            classify(202, r#"{"data":{"id":"AC123","status":"queued"}}"#),
            Outcome::Sent {
                provider_id: "AC123".into()
            }
        );
        assert!(matches!(classify(202, "{}"), Outcome::Unknown { .. }));
        assert_eq!(classify(429, ""), Outcome::RateLimited);
        assert_eq!(
            classify(
                400,
                r#"{"message":"A2P 10DLC registration is not approved for this number","code":"0206400","status":400}"#
            ),
            Outcome::LineBlocked {
                reason: "A2P 10DLC registration is not approved for this number".into()
            }
        );
        assert_eq!(
            classify(400, r#"{"message":"Invalid to","code":"0101400"}"#),
            Outcome::Rejected {
                status: 400,
                code: Some("0101400".into()),
                message: "Invalid to".into()
            }
        );
        assert_eq!(
            classify(400, r#"{"title":"10DLC campaign pending","message":""}"#),
            Outcome::LineBlocked {
                reason: "10DLC campaign pending".into()
            }
        );
        assert!(matches!(
            classify(402, r#"{"message":"Out of credits"}"#),
            Outcome::Rejected { status: 402, .. }
        ));
        assert!(matches!(classify(503, "oops"), Outcome::Transient { .. }));
    }

    #[test]
    fn the_limiter_key_is_a_fingerprint_not_the_key() {
        use crate::send::SendClient;
        let c = Client::new(
            Secret::new("secret-key"),
            HttpOptions::new("http://127.0.0.1:9"),
        );
        let k = c.limiter_key(&message());
        assert!(k.starts_with("openphone:key:"), "{k}");
        assert!(!k.contains("secret-key"));
        assert!(!format!("{c:?}").contains("secret-key"));
    }
}
