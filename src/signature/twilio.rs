//! Twilio `X-Twilio-Signature`: base64 HMAC-SHA1, keyed by the Auth Token's UTF-8 bytes, over
//! the URL Twilio requested followed by the POST form fields.
//!
//! The URL is rebuilt from each configured public base URL plus the raw request-target,
//! byte-for-byte: what our listener sees behind a tunnel (scheme, host, port) is not what
//! Twilio signed, and any re-encoding breaks the signature. Like Twilio's own validators we
//! also try each base with its default port added or removed. Form fields are percent-decoded
//! and sorted by name only (byte order), each distinct value of a repeated name appended in
//! sorted order. A JSON body is not appended: Twilio puts `bodySHA256=<hex>` in the query
//! instead, so the signature covers the body only through that hash, which we check.

use super::{ct_eq, decode_mac, first_match, HmacKey, VerifyError, B64};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::ops::Range;

const HEADER: &str = "x-twilio-signature";

/// One received Twilio request, as far as the signature is concerned.
#[derive(Debug, Clone, Copy)]
pub struct TwilioRequest<'a> {
    /// The raw request-target as received (origin form, e.g. `/sms?x=1`), not re-encoded.
    pub path_and_query: &'a str,
    /// The `Content-Type` header. `application/json` (any parameters) selects the
    /// `bodySHA256` scheme; anything else, or none, is read as a form body (an empty body,
    /// as on a GET, contributes nothing).
    pub content_type: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
    /// The `X-Twilio-Signature` value; pass `""` when the header is absent.
    pub signature: &'a str,
}

/// Verifies `req` against every token and every URL variant of every base URL. Returns
/// `(token index, base URL index)` of the first match. An empty token or base URL list is
/// [`VerifyError::NoKeys`]: neither can be verified without the other.
///
/// Convenience form of [`verify_with`] that prepares the URLs on each call.
pub fn verify(
    req: &TwilioRequest<'_>,
    tokens: &[HmacKey],
    public_base_urls: &[String],
) -> Result<(usize, usize), VerifyError> {
    verify_with(req, tokens, &TwilioUrls::new(public_base_urls), None)
}

/// The configured public base URLs with their default-port variants, prepared once at start-up
/// so the hot path does not rebuild them per request.
#[derive(Clone, Debug, Default)]
pub struct TwilioUrls {
    /// (index of the configured base, one variant of it without the request target).
    variants: Vec<(usize, String)>,
}

impl TwilioUrls {
    /// Prepares every base and its variants.
    pub fn new(public_base_urls: &[String]) -> TwilioUrls {
        TwilioUrls {
            variants: public_base_urls
                .iter()
                .enumerate()
                .flat_map(|(index, base)| url_variants(base).into_iter().map(move |v| (index, v)))
                .collect(),
        }
    }

    /// Whether no base URL is configured.
    pub fn is_empty(&self) -> bool {
        self.variants.is_empty()
    }
}

/// Like [`verify`], with prepared URLs and an optional `host` hint (the request's `Host`
/// header): variants whose host matches it are tried first, so the usual request costs one
/// HMAC per token instead of one per variant.
///
/// URL variants are tried one after the other and the search stops at the first that matches:
/// the configured URLs are public, so the time that reveals which one matched leaks nothing.
/// Within one URL every token is tried, in constant time, whatever matched.
pub fn verify_with(
    req: &TwilioRequest<'_>,
    tokens: &[HmacKey],
    urls: &TwilioUrls,
    host: Option<&str>,
) -> Result<(usize, usize), VerifyError> {
    if tokens.is_empty() || urls.is_empty() {
        return Err(VerifyError::NoKeys);
    }
    let signature = req.signature.trim();
    if signature.is_empty() {
        return Err(VerifyError::MissingHeader(HEADER));
    }
    let signature = decode_mac::<20>(signature).ok_or(VerifyError::MalformedHeader(HEADER))?;

    let fields = if is_json(req.content_type) {
        check_body_hash(req.path_and_query, req.body)?;
        FormFields::default()
    } else {
        FormFields::parse(req.body)
    };

    let hinted = |variant: &str| host.is_some_and(|h| host_of(variant).eq_ignore_ascii_case(h));
    let ordered = urls
        .variants
        .iter()
        .filter(|(_, v)| hinted(v))
        .chain(urls.variants.iter().filter(|(_, v)| !hinted(v)));
    for (base_index, variant) in ordered {
        let hit = first_match(tokens.len(), |t| {
            let token = &tokens[t];
            let mac = fields.mac(token, &[variant.as_bytes(), req.path_and_query.as_bytes()]);
            ct_eq(&mac, &signature) & !token.is_empty()
        });
        if let Some(token_index) = hit {
            return Ok((token_index, *base_index));
        }
    }
    Err(VerifyError::BadSignature)
}

/// Computes the `X-Twilio-Signature` for a request to the full `url`. For JSON the caller
/// puts `bodySHA256=<`[`body_sha256_hex`]`>` in `url`'s query itself.
pub fn sign(token: &HmacKey, url: &str, content_type: Option<&str>, body: &[u8]) -> String {
    let fields = if is_json(content_type) {
        FormFields::default()
    } else {
        FormFields::parse(body)
    };
    B64.encode(fields.mac(token, &[url.as_bytes()]))
}

/// Lower-case hex SHA-256 of `body`, as Twilio puts in `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let media_type = ct.split(';').next().unwrap_or_default();
        media_type.trim().eq_ignore_ascii_case("application/json")
    })
}

fn check_body_hash(path_and_query: &str, body: &[u8]) -> Result<(), VerifyError> {
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    let claimed = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "bodySHA256")
        .ok_or(VerifyError::MissingBodyHash)?
        .1;
    // Decoding rather than comparing text accepts upper-case hex too.
    let claimed = hex::decode(claimed.as_bytes()).map_err(|_| VerifyError::BodyHashMismatch)?;
    if ct_eq(&claimed, &Sha256::digest(body)) {
        Ok(())
    } else {
        Err(VerifyError::BodyHashMismatch)
    }
}

/// The form fields of a body, percent-decoded into one buffer and sorted by name then value
/// with repeated (name, value) pairs dropped: what twilio-python and twilio-node sign (Java
/// keeps one value per name; Twilio's own rule for repeated names is undocumented, and its
/// standard webhooks never repeat one). One buffer and index pairs instead of a map of
/// strings: this runs on every Twilio request.
#[derive(Default)]
struct FormFields {
    buf: Vec<u8>,
    pairs: Vec<(Range<usize>, Range<usize>)>,
    /// Every name and value, in signing order, back to back: hashed with one `update`
    /// (forty small updates cost more than copying the bytes once).
    signed: Vec<u8>,
}

impl FormFields {
    fn parse(body: &[u8]) -> FormFields {
        let mut f = FormFields {
            buf: Vec::with_capacity(body.len()),
            pairs: Vec::with_capacity(32),
            signed: Vec::new(),
        };
        for piece in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(i) => (&piece[..i], &piece[i + 1..]),
                None => (piece, &b""[..]),
            };
            let name = f.decode(name);
            let value = f.decode(value);
            f.pairs.push((name, value));
        }
        let buf = &f.buf;
        f.pairs.sort_unstable_by(|a, b| {
            buf[a.0.clone()]
                .cmp(&buf[b.0.clone()])
                .then_with(|| buf[a.1.clone()].cmp(&buf[b.1.clone()]))
        });
        f.pairs.dedup_by(|a, b| {
            buf[a.0.clone()] == buf[b.0.clone()] && buf[a.1.clone()] == buf[b.1.clone()]
        });
        let mut signed = Vec::with_capacity(f.buf.len());
        for (name, value) in &f.pairs {
            signed.extend_from_slice(&f.buf[name.clone()]);
            signed.extend_from_slice(&f.buf[value.clone()]);
        }
        f.signed = signed;
        f
    }

    /// Percent-decodes `raw` (`+` is a space, a `%` not followed by two hex digits stays) onto
    /// the buffer; bytes that are not UTF-8 become U+FFFD, as the official libraries read them.
    fn decode(&mut self, raw: &[u8]) -> Range<usize> {
        let start = self.buf.len();
        let mut rest = raw;
        // Copy runs of plain bytes at once; only `+` and `%` need work.
        while let Some(i) = rest.iter().position(|&b| b == b'+' || b == b'%') {
            self.buf.extend_from_slice(&rest[..i]);
            if rest[i] == b'+' {
                self.buf.push(b' ');
                rest = &rest[i + 1..];
                continue;
            }
            match (
                rest.get(i + 1).and_then(|&b| hex_val(b)),
                rest.get(i + 2).and_then(|&b| hex_val(b)),
            ) {
                (Some(h), Some(l)) => {
                    self.buf.push(h << 4 | l);
                    rest = &rest[i + 3..];
                }
                _ => {
                    self.buf.push(b'%');
                    rest = &rest[i + 1..];
                }
            }
        }
        self.buf.extend_from_slice(rest);
        let decoded = &self.buf[start..];
        if !decoded.is_ascii() && std::str::from_utf8(decoded).is_err() {
            let lossy = String::from_utf8_lossy(decoded).into_owned();
            self.buf.truncate(start);
            self.buf.extend_from_slice(lossy.as_bytes());
        }
        start..self.buf.len()
    }

    /// HMAC-SHA1 over `prefix` parts then every `name` + `value`, without building the string.
    fn mac(&self, token: &HmacKey, prefix: &[&[u8]]) -> [u8; 20] {
        // HMAC is defined for keys of any length, so this cannot fail.
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
        for part in prefix {
            mac.update(part);
        }
        mac.update(&self.signed);
        mac.finalize().into_bytes().into()
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The `host[:port]` of a URL variant, for matching the `Host` header.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// The base (one trailing `/` dropped) as given, plus the same with the scheme's default
/// port added (if it has no port) or removed (if it names the default port explicitly).
fn url_variants(base: &str) -> Vec<String> {
    let base = base.strip_suffix('/').unwrap_or(base);
    let mut variants = vec![base.to_owned()];
    let Some((scheme, rest)) = base.split_once("://") else {
        return variants;
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        "80"
    } else {
        return variants;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    // The port follows the last `:`, unless that `:` is inside an IPv6 literal's brackets.
    let colon = authority[host_start..]
        .rfind(':')
        .map(|i| host_start + i)
        .filter(|&i| !authority[i..].contains(']'));
    match colon {
        None => variants.push(format!("{scheme}://{authority}:{default_port}{path}")),
        Some(i) if &authority[i + 1..] == default_port => {
            variants.push(format!("{scheme}://{}{path}", &authority[..i]));
        }
        Some(_) => {}
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::hmac_sha1;
    use proptest::prelude::*;

    /// The string the fields contribute to the signed data.
    fn sorted_form_fields(body: &[u8]) -> String {
        let f = FormFields::parse(body);
        f.pairs
            .iter()
            .map(|(n, v)| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&f.buf[n.clone()]),
                    String::from_utf8_lossy(&f.buf[v.clone()])
                )
            })
            .collect()
    }

    #[test]
    fn form_decoding_matches_the_url_standard() {
        let body = b"a=1+2&b=%41%zz%4&c&=x&d=%E2%82%AC&e=%FF";
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        let f = FormFields::parse(body);
        let mut mine: Vec<(String, String)> = f
            .pairs
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8(f.buf[n.clone()].to_vec()).unwrap(),
                    String::from_utf8(f.buf[v.clone()].to_vec()).unwrap(),
                )
            })
            .collect();
        let mut want = pairs;
        want.sort();
        mine.sort();
        assert_eq!(mine, want);
    }

    proptest! {
        #[test]
        fn form_decoding_agrees_with_form_urlencoded_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut want: Vec<(String, String)> = form_urlencoded::parse(&body)
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            want.sort();
            want.dedup();
            let f = FormFields::parse(&body);
            let mine: Vec<(String, String)> = f.pairs.iter().map(|(n, v)| (
                String::from_utf8(f.buf[n.clone()].to_vec()).unwrap(),
                String::from_utf8(f.buf[v.clone()].to_vec()).unwrap(),
            )).collect();
            prop_assert_eq!(mine, want);
        }
    }

    const TOKEN: &str = "12345";
    const BASE: &str = "https://mycompany.com";
    const PATH: &str = "/myapp.php?foo=1&bar=2";
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
    const JSON: Option<&str> = Some("application/json");

    const PARAMS_A: &[(&str, &str)] = &[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ];
    const SIG_A: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
    const PARAMS_B: &[(&str, &str)] = &[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ];
    const SIG_B: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const SIG_B_443: &str = "kvajT1Ptam85bY51eRf/AJRuM3w=";
    const PARAMS_C: &[(&str, &str)] = &[
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ];
    const SIG_C: &str = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
    const SIG_C_MISSORTED: &str = "f2eNeQA03Kk6SUEEsqN6nCjnksU=";
    const BODY_D: &[u8] = br#"{"property": "value", "boolean": true}"#;
    const HASH_D: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    const SIG_D: &str = "a9nBmqA0ju/hNViExpshrM61xv4=";

    fn token() -> HmacKey {
        HmacKey::from_utf8(TOKEN)
    }

    /// Form body in the given field order.
    fn form(params: &[(&str, &str)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
            .into_bytes()
    }

    /// The same fields, deliberately not in name order, since order must not matter.
    fn shuffled_form(params: &[(&str, &str)]) -> Vec<u8> {
        let mut params = params.to_vec();
        params.reverse();
        let mid = params.len() / 2;
        params.rotate_left(mid);
        form(&params)
    }

    fn request<'a>(
        path: &'a str,
        content_type: Option<&'a str>,
        body: &'a [u8],
        signature: &'a str,
    ) -> TwilioRequest<'a> {
        TwilioRequest {
            path_and_query: path,
            content_type,
            body,
            signature,
        }
    }

    fn bases(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|u| u.to_string()).collect()
    }

    fn flipped(bytes: &[u8], i: usize) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[i] ^= 0x01;
        out
    }

    fn flipped_str(s: &str, i: usize) -> String {
        String::from_utf8(flipped(s.as_bytes(), i)).unwrap()
    }

    fn path_d() -> String {
        format!("{PATH}&bodySHA256={HASH_D}")
    }

    #[test]
    fn documented_form_vectors_verify_in_any_field_order() {
        for (params, sig) in [(PARAMS_A, SIG_A), (PARAMS_B, SIG_B), (PARAMS_C, SIG_C)] {
            for body in [form(params), shuffled_form(params)] {
                let req = request(PATH, FORM, &body, sig);
                assert_eq!(
                    verify(&req, &[token()], &bases(&[BASE])),
                    Ok((0, 0)),
                    "{sig}"
                );
            }
        }
    }

    #[test]
    fn sign_reproduces_the_documented_vectors() {
        let url = format!("{BASE}{PATH}");
        let url_443 = format!("{BASE}:443{PATH}");
        assert_eq!(sign(&token(), &url, FORM, &shuffled_form(PARAMS_A)), SIG_A);
        assert_eq!(sign(&token(), &url, FORM, &shuffled_form(PARAMS_B)), SIG_B);
        assert_eq!(
            sign(&token(), &url_443, FORM, &shuffled_form(PARAMS_B)),
            SIG_B_443
        );
        assert_eq!(sign(&token(), &url, FORM, &shuffled_form(PARAMS_C)), SIG_C);
        assert_eq!(
            sign(&token(), &format!("{BASE}{}", path_d()), JSON, BODY_D),
            SIG_D
        );
    }

    #[test]
    fn vector_a_signs_the_documented_string() {
        let expected = "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDE\
                        Caller+12349013030Digits1234From+12349013030To+18005551212";
        assert_eq!(
            format!(
                "{BASE}{PATH}{}",
                sorted_form_fields(&shuffled_form(PARAMS_A))
            ),
            expected
        );
        assert_eq!(
            sorted_form_fields(&form(PARAMS_C)),
            "Digits1234Digits5678SidCA123SidAccountAC123"
        );
    }

    #[test]
    fn sorting_by_name_plus_value_gives_a_different_signature() {
        let mut pairs: Vec<String> = PARAMS_C.iter().map(|(n, v)| format!("{n}{v}")).collect();
        pairs.sort();
        pairs.dedup();
        let data = format!("{BASE}{PATH}{}", pairs.concat());
        let missorted = B64.encode(hmac_sha1(&token(), &[data.as_bytes()]));
        assert_eq!(missorted, SIG_C_MISSORTED);
        assert_ne!(missorted, SIG_C);
        let body = form(PARAMS_C);
        let req = request(PATH, FORM, &body, SIG_C_MISSORTED);
        assert_eq!(
            verify(&req, &[token()], &bases(&[BASE])),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn vector_e_with_escaped_characters_verifies() {
        let zeros = "0".repeat(32);
        let (account, message) = (format!("AC{zeros}"), format!("SM{zeros}"));
        let params = [
            ("AccountSid", account.as_str()),
            ("Body", "Hello & <world>"),
            ("From", "+15005550006"),
            ("MessageSid", message.as_str()),
            ("NumMedia", "0"),
            ("To", "+15005550001"),
        ];
        let token = HmacKey::from_utf8("test_auth_token_0123456789abcdef");
        let sig = "zsHuwgEc8yvZx7Qud7RS1sLhobo=";
        let body = shuffled_form(&params);
        let charset = Some("application/x-www-form-urlencoded; charset=UTF-8");
        let req = request("/twilio/sms", charset, &body, sig);
        assert_eq!(
            verify(
                &req,
                std::slice::from_ref(&token),
                &bases(&["https://example.com"])
            ),
            Ok((0, 0))
        );
        assert_eq!(
            sign(&token, "https://example.com/twilio/sms", FORM, &body),
            sig
        );
    }

    #[test]
    fn vector_f_get_without_body_signs_the_url_alone() {
        let path = "/twilio/voice?CallSid=CA123&From=%2B15005550006";
        let sig = "avMN+xdALJs5mhod618Rt5kq66s=";
        let req = request(path, None, b"", sig);
        assert_eq!(
            verify(&req, &[token()], &bases(&["https://example.com"])),
            Ok((0, 0))
        );
        assert_eq!(
            sign(&token(), &format!("https://example.com{path}"), None, b""),
            sig
        );
    }

    #[test]
    fn json_body_is_checked_through_body_sha256() {
        assert_eq!(body_sha256_hex(BODY_D), HASH_D);
        let path = path_d();
        let req = request(
            &path,
            Some("application/json; charset=utf-8"),
            BODY_D,
            SIG_D,
        );
        assert_eq!(verify(&req, &[token()], &bases(&[BASE])), Ok((0, 0)));

        let upper = format!("{PATH}&bodySHA256={}", HASH_D.to_uppercase());
        let sig = sign(&token(), &format!("{BASE}{upper}"), JSON, BODY_D);
        let req = request(&upper, JSON, BODY_D, &sig);
        assert_eq!(verify(&req, &[token()], &bases(&[BASE])), Ok((0, 0)));
    }

    #[test]
    fn json_without_body_sha256_fails() {
        let sig = sign(&token(), &format!("{BASE}{PATH}"), JSON, BODY_D);
        let req = request(PATH, JSON, BODY_D, &sig);
        assert_eq!(
            verify(&req, &[token()], &bases(&[BASE])),
            Err(VerifyError::MissingBodyHash)
        );
    }

    #[test]
    fn json_body_not_matching_body_sha256_fails() {
        let path = path_d();
        for i in 0..BODY_D.len() {
            let body = flipped(BODY_D, i);
            let req = request(&path, JSON, &body, SIG_D);
            let got = verify(&req, &[token()], &bases(&[BASE]));
            assert_eq!(got, Err(VerifyError::BodyHashMismatch), "byte {i}");
        }
        let bad_hex = format!("{PATH}&bodySHA256=zz");
        let req = request(&bad_hex, JSON, BODY_D, SIG_D);
        assert_eq!(
            verify(&req, &[token()], &bases(&[BASE])),
            Err(VerifyError::BodyHashMismatch)
        );
    }

    #[test]
    fn public_url_verifies_with_and_without_default_port() {
        let body = form(PARAMS_B);
        for base in [BASE, "https://mycompany.com:443", "https://mycompany.com/"] {
            for sig in [SIG_B, SIG_B_443] {
                let req = request(PATH, FORM, &body, sig);
                assert_eq!(
                    verify(&req, &[token()], &bases(&[base])),
                    Ok((0, 0)),
                    "{base} {sig}"
                );
            }
        }
        // A non-default port is part of what Twilio signed; the bare host is not a variant.
        let req = request(PATH, FORM, &body, SIG_B);
        let got = verify(&req, &[token()], &bases(&["https://mycompany.com:8443"]));
        assert_eq!(got, Err(VerifyError::BadSignature));
    }

    #[test]
    fn url_variants_add_or_drop_only_the_default_port() {
        let cases: &[(&str, &[&str])] = &[
            ("https://h", &["https://h", "https://h:443"]),
            ("http://h/", &["http://h", "http://h:80"]),
            (
                "https://h:443/prefix/",
                &["https://h:443/prefix", "https://h/prefix"],
            ),
            ("http://h:80", &["http://h:80", "http://h"]),
            ("https://h:8443/prefix", &["https://h:8443/prefix"]),
            ("http://h:443", &["http://h:443"]),
            ("https://[::1]", &["https://[::1]", "https://[::1]:443"]),
            ("https://[::1]:443", &["https://[::1]:443", "https://[::1]"]),
            ("ftp://h", &["ftp://h"]),
        ];
        for (base, expected) in cases {
            assert_eq!(url_variants(base), *expected, "{base}");
        }
    }

    #[test]
    fn second_base_url_matching_returns_its_index() {
        let body = form(PARAMS_A);
        let req = request(PATH, FORM, &body, SIG_A);
        let urls = bases(&["https://other.example.com", BASE]);
        assert_eq!(verify(&req, &[token()], &urls), Ok((0, 1)));
    }

    #[test]
    fn unknown_token_fails_and_rotated_second_token_passes() {
        let body = form(PARAMS_A);
        let req = request(PATH, FORM, &body, SIG_A);
        let urls = bases(&[BASE]);
        let old = HmacKey::from_utf8("54321");
        assert_eq!(
            verify(&req, std::slice::from_ref(&old), &urls),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(verify(&req, &[old, token()], &urls), Ok((1, 0)));
        assert_eq!(verify(&req, &[], &urls), Err(VerifyError::NoKeys));
        assert_eq!(verify(&req, &[token()], &[]), Err(VerifyError::NoKeys));
    }

    #[test]
    fn missing_or_malformed_signature_fails() {
        let body = form(PARAMS_A);
        let urls = bases(&[BASE]);
        let missing = verify(&request(PATH, FORM, &body, ""), &[token()], &urls);
        assert_eq!(missing, Err(VerifyError::MissingHeader(HEADER)));
        let sha256_sized = B64.encode([0u8; 32]);
        for sig in ["not base64", sha256_sized.as_str()] {
            let got = verify(&request(PATH, FORM, &body, sig), &[token()], &urls);
            assert_eq!(got, Err(VerifyError::MalformedHeader(HEADER)), "{sig}");
        }
    }

    #[test]
    fn every_flipped_form_body_byte_fails() {
        // XOR 0x01 never maps one encoding of a field onto an equivalent one here: it turns
        // `+` into `*`, `%` into `$`, `&` into `'`, `=` into `<`, and digits or letters into
        // different digits or letters, all of which change the decoded fields.
        let urls = bases(&[BASE]);
        for (params, sig) in [(PARAMS_A, SIG_A), (PARAMS_C, SIG_C)] {
            let body = form(params);
            for i in 0..body.len() {
                let changed = flipped(&body, i);
                let got = verify(&request(PATH, FORM, &changed, sig), &[token()], &urls);
                assert_eq!(
                    got,
                    Err(VerifyError::BadSignature),
                    "{}",
                    String::from_utf8_lossy(&changed)
                );
            }
        }
    }

    #[test]
    fn every_flipped_signature_byte_fails() {
        let body = form(PARAMS_A);
        let urls = bases(&[BASE]);
        let raw = B64.decode(SIG_A).unwrap();
        for i in 0..raw.len() {
            let sig = B64.encode(flipped(&raw, i));
            let got = verify(&request(PATH, FORM, &body, &sig), &[token()], &urls);
            assert_eq!(got, Err(VerifyError::BadSignature), "byte {i}");
        }
        for i in 0..SIG_A.len() {
            let sig = flipped_str(SIG_A, i);
            let got = verify(&request(PATH, FORM, &body, &sig), &[token()], &urls);
            assert!(got.is_err(), "{sig}");
        }
    }

    #[test]
    fn every_flipped_url_byte_fails() {
        let body = form(PARAMS_A);
        for i in 0..BASE.len() {
            let base = flipped_str(BASE, i);
            let got = verify(
                &request(PATH, FORM, &body, SIG_A),
                &[token()],
                std::slice::from_ref(&base),
            );
            assert_eq!(got, Err(VerifyError::BadSignature), "{base}");
        }
        let urls = bases(&[BASE]);
        for i in 0..PATH.len() {
            let path = flipped_str(PATH, i);
            let got = verify(&request(&path, FORM, &body, SIG_A), &[token()], &urls);
            assert_eq!(got, Err(VerifyError::BadSignature), "{path}");
        }
    }

    #[test]
    fn every_flipped_token_byte_fails() {
        let body = form(PARAMS_A);
        let urls = bases(&[BASE]);
        for i in 0..TOKEN.len() {
            let other = HmacKey::from_utf8(&flipped_str(TOKEN, i));
            let got = verify(&request(PATH, FORM, &body, SIG_A), &[other], &urls);
            assert_eq!(got, Err(VerifyError::BadSignature), "byte {i}");
        }
    }

    proptest! {
        #[test]
        fn signed_requests_verify_and_other_tokens_fail(
            params in proptest::collection::vec(("\\PC{0,8}", "\\PC{0,12}"), 0..8),
            token in "[0-9a-f]{32}",
            path in "/[a-z/]{0,12}(\\?[a-z0-9=&%]{0,16})?",
        ) {
            let body = form(&params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect::<Vec<_>>());
            let key = HmacKey::from_utf8(&token);
            let sig = sign(&key, &format!("{BASE}{path}"), FORM, &body);
            let req = request(&path, FORM, &body, &sig);
            prop_assert_eq!(verify(&req, &[key], &bases(&[BASE])), Ok((0, 0)));
            let other = HmacKey::from_bytes(flipped(token.as_bytes(), 0));
            prop_assert_eq!(verify(&req, &[other], &bases(&[BASE])), Err(VerifyError::BadSignature));
        }
    }
}
