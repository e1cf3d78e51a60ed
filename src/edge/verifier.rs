//! From a received request to a [`Verified`] one: route → scheme → key set, as one pure
//! function of the request, the configured keys and the receipt time.
//!
//! This is the only place the edge makes a [`Verified`]: the HTTP layer reads the request,
//! calls [`Verifier::verify`], and can append only what it returns. No I/O and no clock
//! here, so benches and tests drive it directly.

use crate::config::Config;
use crate::event::{Micros, Source, Verification, Verified};
use crate::provider::Provider;
use crate::signature::{self, HmacKey, KeyError, Rejection, VerifyError};

/// Headers kept in the record: what re-verification and dedup need, plus the host, content
/// type and user agent for forensics (the host is also a hint for which public URL Twilio
/// signed). Everything else (tunnel headers, cookies) is dropped.
pub const KEPT_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "user-agent",
    "openphone-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-twilio-signature",
    "i-twilio-idempotency-token",
    "x-twilio-webhooks-signature-settings",
];

/// The webhook routes (docs/api.md#routes) and how each is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookRoute {
    /// `/webhook/openphone`, `/webhook/quo`.
    Quo,
    /// `/voice`, `/voice/webhook`: answered with the configured TwiML.
    TwilioVoice,
    /// The other Twilio routes: answered with an empty `<Response/>`.
    TwilioCallback,
    /// `/webhook/salesmsg`.
    SalesMsg,
}

impl WebhookRoute {
    /// The route for a request path, if it is a webhook route.
    pub fn for_path(path: &str) -> Option<WebhookRoute> {
        Some(match path {
            "/webhook/openphone" | "/webhook/quo" => WebhookRoute::Quo,
            "/voice" | "/voice/webhook" => WebhookRoute::TwilioVoice,
            "/voice/status"
            | "/voice/recording-complete"
            | "/voice/transcription"
            | "/sms"
            | "/sms/webhook"
            | "/sms/status" => WebhookRoute::TwilioCallback,
            "/webhook/salesmsg" => WebhookRoute::SalesMsg,
            _ => return None,
        })
    }

    /// Who signs requests to this route.
    pub fn provider(self) -> Provider {
        match self {
            WebhookRoute::Quo => Provider::Quo,
            WebhookRoute::TwilioVoice | WebhookRoute::TwilioCallback => Provider::Twilio,
            WebhookRoute::SalesMsg => Provider::SalesMsg,
        }
    }
}

/// Whether a request to `route` carries what its scheme authenticates with, asked before its
/// body is read: `has_header` says whether a header (lower-case name) is present with a
/// non-blank value, `query` is the raw query. Quo needs `webhook-signature` or
/// `openphone-signature`, Twilio `x-twilio-signature`, SalesMsg a `secret` query parameter. A
/// request without it can never verify ([`Verifier::verify`] would refuse it with the same
/// [`VerifyError::MissingHeader`]), so its body, up to `max_body_bytes` of a stranger's
/// choosing, is not worth reading.
pub fn presents_signature(
    route: WebhookRoute,
    has_header: impl Fn(&str) -> bool,
    query: Option<&str>,
) -> Result<(), VerifyError> {
    match route {
        WebhookRoute::Quo => {
            if has_header("webhook-signature") || has_header("openphone-signature") {
                Ok(())
            } else {
                Err(VerifyError::MissingHeader("openphone-signature"))
            }
        }
        WebhookRoute::TwilioVoice | WebhookRoute::TwilioCallback => {
            if has_header("x-twilio-signature") {
                Ok(())
            } else {
                Err(VerifyError::MissingHeader("x-twilio-signature"))
            }
        }
        WebhookRoute::SalesMsg => {
            if signature::salesmsg::presents_secret(query) {
                Ok(())
            } else {
                Err(VerifyError::MissingHeader("secret"))
            }
        }
    }
}

/// A request as read off the wire, before verification.
#[derive(Clone, Debug)]
pub struct IncomingRequest {
    /// Raw path, not percent-decoded.
    pub path: String,
    /// Raw query string (without `?`), if the request target had one.
    pub query: Option<String>,
    /// The [`KEPT_HEADERS`] present, lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl IncomingRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Why a [`Verifier`] could not be built from configuration.
#[derive(Debug, thiserror::Error)]
#[error("openphone.signing_keys #{index}: {source}")]
pub struct VerifierError {
    index: usize,
    source: KeyError,
}

/// The decoded keys of every provider.
#[derive(Debug)]
pub struct Verifier {
    quo_keys: Vec<HmacKey>,
    quo_tolerance_secs: u64,
    twilio_tokens: Vec<HmacKey>,
    public_urls: signature::twilio::TwilioUrls,
    salesmsg_secrets: Vec<HmacKey>,
}

fn index(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

impl Verifier {
    /// Decodes the configured keys.
    pub fn from_config(config: &Config) -> Result<Verifier, VerifierError> {
        let quo_keys = config
            .openphone
            .signing_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                HmacKey::from_quo_secret(k.expose()).map_err(|source| VerifierError {
                    index: i + 1,
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Verifier {
            quo_keys,
            quo_tolerance_secs: config.openphone.tolerance_secs,
            twilio_tokens: config
                .twilio
                .auth_tokens
                .iter()
                .map(|t| HmacKey::from_utf8(t.expose()))
                .collect(),
            public_urls: signature::twilio::TwilioUrls::new(&config.server.public_urls),
            salesmsg_secrets: config
                .salesmsg
                .secrets
                .iter()
                .map(|s| HmacKey::from_utf8(s.expose()))
                .collect(),
        })
    }

    /// The decoded Quo signing keys, in configured order (the replay key of a legacy header
    /// with several entries is the entry one of them verifies: [`super::replay`]).
    pub(crate) fn quo_keys(&self) -> &[HmacKey] {
        &self.quo_keys
    }

    /// Whether a provider has keys to verify with.
    pub fn is_configured(&self, provider: Provider) -> bool {
        match provider {
            Provider::Quo => !self.quo_keys.is_empty(),
            Provider::Twilio => !self.twilio_tokens.is_empty() && !self.public_urls.is_empty(),
            Provider::SalesMsg => !self.salesmsg_secrets.is_empty(),
        }
    }

    /// Verifies a request to `route` received at `received_at`.
    pub fn verify(
        &self,
        route: WebhookRoute,
        req: IncomingRequest,
        received_at: Micros,
    ) -> Result<Verified, Rejection> {
        let provider = route.provider();
        if !self.is_configured(provider) {
            return Err(Rejection::NotConfigured(provider));
        }
        let fail = |e: VerifyError| Rejection::Unverified(provider, e);
        let now = received_at.unix_secs();
        let (source, verification, stored_route) = match route {
            WebhookRoute::Quo => {
                let v = if let Some(sig) = req.header("webhook-signature") {
                    let id = req
                        .header("webhook-id")
                        .ok_or(VerifyError::MissingHeader("webhook-id"))
                        .map_err(fail)?;
                    let ts = req
                        .header("webhook-timestamp")
                        .ok_or(VerifyError::MissingHeader("webhook-timestamp"))
                        .map_err(fail)?;
                    let key = signature::standard_webhooks::verify(
                        id,
                        ts,
                        sig,
                        &req.body,
                        &self.quo_keys,
                        now,
                        self.quo_tolerance_secs,
                    )
                    .map_err(fail)?;
                    Verification::QuoStandard { key: index(key) }
                } else {
                    let sig = req
                        .header("openphone-signature")
                        .ok_or(VerifyError::MissingHeader("openphone-signature"))
                        .map_err(fail)?;
                    let key = signature::quo_legacy::verify(
                        sig,
                        &req.body,
                        &self.quo_keys,
                        now,
                        self.quo_tolerance_secs,
                    )
                    .map_err(fail)?;
                    Verification::QuoLegacy { key: index(key) }
                };
                (Source::Quo, v, req.path_and_query())
            }
            WebhookRoute::TwilioVoice | WebhookRoute::TwilioCallback => {
                let path_and_query = req.path_and_query();
                let (token, url) = signature::twilio::verify_with(
                    &signature::twilio::TwilioRequest {
                        path_and_query: &path_and_query,
                        content_type: req.header("content-type"),
                        body: &req.body,
                        signature: req.header("x-twilio-signature").unwrap_or(""),
                    },
                    &self.twilio_tokens,
                    &self.public_urls,
                    req.header("host"),
                )
                .map_err(fail)?;
                (
                    Source::Twilio,
                    Verification::Twilio {
                        token: index(token),
                        url: index(url),
                    },
                    path_and_query,
                )
            }
            WebhookRoute::SalesMsg => {
                let secret =
                    signature::salesmsg::verify(req.query.as_deref(), &self.salesmsg_secrets)
                        .map_err(fail)?;
                // The secret rides in the query; the log must not keep it.
                let route = match &req.query {
                    Some(q) => format!("{}?{}", req.path, signature::salesmsg::redact_query(q)),
                    None => req.path.clone(),
                };
                (
                    Source::SalesMsg,
                    Verification::SalesMsgSecret {
                        secret: index(secret),
                    },
                    route,
                )
            }
        };
        Ok(Verified::new(
            received_at,
            source,
            stored_route,
            req.headers,
            req.body,
            verification,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_its_scheme_s_signature_is_refused_before_its_body() {
        let with = |names: &'static [&'static str]| move |n: &str| names.contains(&n);
        let quo = WebhookRoute::Quo;
        assert_eq!(
            presents_signature(quo, with(&["webhook-signature"]), None),
            Ok(())
        );
        assert_eq!(
            presents_signature(quo, with(&["openphone-signature"]), None),
            Ok(())
        );
        assert_eq!(
            presents_signature(quo, with(&["x-twilio-signature", "webhook-id"]), None),
            Err(VerifyError::MissingHeader("openphone-signature"))
        );
        for twilio in [WebhookRoute::TwilioVoice, WebhookRoute::TwilioCallback] {
            assert_eq!(
                presents_signature(twilio, with(&["x-twilio-signature"]), None),
                Ok(())
            );
            assert_eq!(
                presents_signature(twilio, with(&["openphone-signature"]), Some("secret=x")),
                Err(VerifyError::MissingHeader("x-twilio-signature"))
            );
        }
        let salesmsg = WebhookRoute::SalesMsg;
        assert_eq!(
            presents_signature(salesmsg, with(&[]), Some("secret=x")),
            Ok(())
        );
        assert_eq!(
            presents_signature(salesmsg, with(&["x-twilio-signature"]), Some("a=1")),
            Err(VerifyError::MissingHeader("secret"))
        );
        assert_eq!(
            presents_signature(salesmsg, with(&[]), None),
            Err(VerifyError::MissingHeader("secret"))
        );
    }
}
