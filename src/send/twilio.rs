//! Twilio `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (docs/reference/twilio.md#sending, docs/reference/twilio.md#opt-out): a pure
//! request builder, a pure response classifier, and a blocking [`Client`].
//!
//! The body is a form with `To`, `From`, `Body`; auth is HTTP Basic `AccountSid:AuthToken`.
//! Success is 201 with the message `sid` (`SM…`). A 400 with code 21610 means the recipient
//! opted out (not sent, not billed): [`Outcome::OptedOut`], to be recorded as an opt-out.
//! 429 (code 20429) was "never processed" and is the one answer safe to retry.

use serde_json::Value;

use super::{is_e164, perform, BuildError, HttpOptions, HttpRequest, OutboundMessage, Outcome};
use crate::config::secret::Secret;

/// Twilio's production API host.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";
/// Twilio's limit on `Body`.
pub const MAX_BODY_CHARS: usize = 1600;
/// "Attempt to send to unsubscribed recipient".
pub const CODE_OPTED_OUT: i64 = 21610;
/// "Too many requests".
pub const CODE_TOO_MANY_REQUESTS: i64 = 20429;

/// Standard base64 with padding (RFC 4648), for the Basic credentials: too small a need
/// for another dependency.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        // `chunks` never yields an empty slice, so `chunk[0]` exists.
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `AC` then 32 hex digits: checked because it goes into the URL path.
fn is_account_sid(s: &str) -> bool {
    s.len() == 34 && s.starts_with("AC") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Builds the call for `message`. Pure.
pub fn build_request(
    base_url: &str,
    account_sid: &str,
    auth_token: &Secret,
    message: &OutboundMessage,
) -> Result<HttpRequest, BuildError> {
    if !is_account_sid(account_sid) {
        return Err(BuildError::BadAccountSid);
    }
    if !is_e164(&message.from) {
        return Err(BuildError::NotE164 { field: "from" });
    }
    if !is_e164(&message.to) {
        return Err(BuildError::NotE164 { field: "to" });
    }
    let len = message.content.chars().count();
    if len == 0 {
        return Err(BuildError::EmptyContent);
    }
    if len > MAX_BODY_CHARS {
        return Err(BuildError::ContentTooLong {
            len,
            max: MAX_BODY_CHARS,
        });
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("To", &message.to)
        .append_pair("From", &message.from)
        .append_pair("Body", &message.content)
        .finish();
    let credentials = base64(format!("{account_sid}:{}", auth_token.expose()).as_bytes());
    Ok(HttpRequest {
        method: "POST",
        url: format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
            base_url.trim_end_matches('/')
        ),
        headers: vec![
            ("Authorization", format!("Basic {credentials}")),
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
        ],
        body,
    })
}

/// Classifies Twilio's answer. Pure.
pub fn classify(status: u16, body: &str) -> Outcome {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = json.get("code").and_then(Value::as_i64);
    let message = json
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match status {
        200..=299 => match json.get("sid").and_then(Value::as_str) {
            Some(sid) if !sid.is_empty() => Outcome::Sent {
                provider_id: sid.to_owned(),
            },
            _ => Outcome::Unknown {
                reason: format!("accepted ({status}) but the answer has no message sid"),
            },
        },
        429 => Outcome::RateLimited,
        _ if code == Some(CODE_TOO_MANY_REQUESTS) => Outcome::RateLimited,
        400..=499 if code == Some(CODE_OPTED_OUT) => Outcome::OptedOut,
        400..=499 => Outcome::Rejected {
            status,
            code: code.map(|c| c.to_string()),
            message,
        },
        _ => Outcome::Transient {
            reason: format!("Twilio answered {status}"),
        },
    }
}

/// Sends from the numbers of one Twilio account.
#[derive(Debug)]
pub struct Client {
    account_sid: String,
    auth_token: Secret,
    options: HttpOptions,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the account (use [`DEFAULT_BASE_URL`] in production).
    pub fn new(account_sid: impl Into<String>, auth_token: Secret, options: HttpOptions) -> Client {
        Client {
            account_sid: account_sid.into(),
            auth_token,
            agent: options.agent(),
            options,
        }
    }
}

impl super::SendClient for Client {
    fn provider(&self) -> &'static str {
        "twilio"
    }

    /// Twilio's 1 message/s applies per sending long-code number.
    fn limiter_key(&self, message: &OutboundMessage) -> String {
        format!("twilio:from:{}", message.from)
    }

    fn send(&self, message: &OutboundMessage) -> Result<Outcome, BuildError> {
        let request = build_request(
            &self.options.base_url,
            &self.account_sid,
            &self.auth_token,
            message,
        )?;
        Ok(perform(&self.agent, &request, classify))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn message() -> OutboundMessage {
        OutboundMessage {
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            content: "Hi & welcome = yes".into(),
        }
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn the_request_is_a_form_with_basic_auth_on_the_account_url() {
        let r = build_request("https://api.example", SID, &Secret::new("tok"), &message()).unwrap();
        assert_eq!(
            r.url,
            format!("https://api.example/2010-04-01/Accounts/{SID}/Messages.json")
        );
        let expected = format!("Basic {}", base64(format!("{SID}:tok").as_bytes()));
        assert!(r.headers.contains(&("Authorization", expected)));
        let fields: Vec<(String, String)> = form_urlencoded::parse(r.body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            fields,
            vec![
                ("To".to_owned(), "+15550002222".to_owned()),
                ("From".to_owned(), "+15550001111".to_owned()),
                ("Body".to_owned(), "Hi & welcome = yes".to_owned()),
            ]
        );
    }

    #[test]
    fn a_malformed_account_sid_never_reaches_the_url() {
        let t = Secret::new("t");
        assert_eq!(
            build_request("h", "AC../../x", &t, &message()),
            Err(BuildError::BadAccountSid)
        );
        let mut m = message();
        m.from = "Acme".into();
        assert_eq!(
            build_request("h", SID, &t, &m),
            Err(BuildError::NotE164 { field: "from" })
        );
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            classify(201, r#"{"sid":"SM123","status":"queued"}"#),
            Outcome::Sent {
                provider_id: "SM123".into()
            }
        );
        assert!(matches!(classify(201, "not json"), Outcome::Unknown { .. }));
        assert_eq!(
            classify(429, r#"{"code":20429,"message":"Too Many Requests"}"#),
            Outcome::RateLimited
        );
        assert_eq!(
            classify(
                400,
                r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","status":400}"#
            ),
            Outcome::OptedOut
        );
        assert_eq!(
            classify(
                400,
                r#"{"code":21211,"message":"Invalid 'To' Phone Number"}"#
            ),
            Outcome::Rejected {
                status: 400,
                code: Some("21211".into()),
                message: "Invalid 'To' Phone Number".into()
            }
        );
        assert!(matches!(classify(500, ""), Outcome::Transient { .. }));
    }
}
