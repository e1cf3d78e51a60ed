//! Twilio `X-Twilio-Signature` and the form body it covers: input = path-and-query line,
//! content-type line (empty = none), signature line, Host line (empty = none), body bytes.
#![no_main]

use std::sync::OnceLock;

use hooklog::signature::twilio::{self, TwilioRequest, TwilioUrls};
use hooklog::signature::HmacKey;
use libfuzzer_sys::fuzz_target;

/// The tokens and public URLs of `fixtures/hooklog.toml` (plus an empty token).
const TOKENS: [&str; 3] = [
    "1ad9454bf158ce5e00b723d06dbb2e93",
    "b5ebc211b959fda1f0ab79750707786f",
    "",
];
const PUBLIC_URLS: [&str; 2] = [
    "https://hooks.example.com",
    "https://hooks-old.example.com:8443",
];

fn urls() -> &'static TwilioUrls {
    static URLS: OnceLock<TwilioUrls> = OnceLock::new();
    URLS.get_or_init(|| TwilioUrls::new(&PUBLIC_URLS.map(str::to_owned)))
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |&b| b == b'\n');
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let content_type = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let signature = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let host = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let tokens = TOKENS.map(HmacKey::from_utf8);
    let opt = |s: &str| (!s.is_empty()).then_some(s.to_owned());
    let (content_type, host) = (opt(&content_type), opt(&host));
    let req = TwilioRequest {
        path_and_query: &path,
        content_type: content_type.as_deref(),
        body,
        signature: &signature,
    };
    let _ = twilio::verify_with(&req, &tokens, urls(), host.as_deref());
    // A base URL built from the request's own Host (operators paste such URLs into config).
    let _ = twilio::verify(
        &req,
        &tokens[..1],
        &[format!("https://{}", host.unwrap_or_default())],
    );
    let _ = twilio::sign(&tokens[0], &path, req.content_type, body);
});
