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

use super::{ct_eq, decode_mac, first_match, hmac_sha1, HmacKey, VerifyError, B64};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

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
pub fn verify(
    req: &TwilioRequest<'_>,
    tokens: &[HmacKey],
    public_base_urls: &[String],
) -> Result<(usize, usize), VerifyError> {
    if tokens.is_empty() || public_base_urls.is_empty() {
        return Err(VerifyError::NoKeys);
    }
    let signature = req.signature.trim();
    if signature.is_empty() {
        return Err(VerifyError::MissingHeader(HEADER));
    }
    let signature = decode_mac::<20>(signature).ok_or(VerifyError::MalformedHeader(HEADER))?;

    let appended = if is_json(req.content_type) {
        check_body_hash(req.path_and_query, req.body)?;
        String::new()
    } else {
        sorted_form_fields(req.body)
    };

    let urls: Vec<(usize, String)> = public_base_urls
        .iter()
        .enumerate()
        .flat_map(|(index, base)| {
            url_variants(base)
                .into_iter()
                .map(move |url| (index, url + req.path_and_query))
        })
        .collect();
    let per_token = urls.len();
    let hit = first_match(tokens.len() * per_token, |candidate| {
        let token = &tokens[candidate / per_token];
        let url = &urls[candidate % per_token].1;
        let mac = hmac_sha1(token, &[url.as_bytes(), appended.as_bytes()]);
        ct_eq(&mac, &signature) & !token.is_empty()
    })
    .ok_or(VerifyError::BadSignature)?;
    Ok((hit / per_token, urls[hit % per_token].0))
}

/// Computes the `X-Twilio-Signature` for a request to the full `url`. For JSON the caller
/// puts `bodySHA256=<`[`body_sha256_hex`]`>` in `url`'s query itself.
pub fn sign(token: &HmacKey, url: &str, content_type: Option<&str>, body: &[u8]) -> String {
    let appended = if is_json(content_type) {
        String::new()
    } else {
        sorted_form_fields(body)
    };
    B64.encode(hmac_sha1(token, &[url.as_bytes(), appended.as_bytes()]))
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

/// `name value` for every field, sorted by name then value, distinct values only: what
/// twilio-python and twilio-node do (Java keeps one value per name; Twilio's own rule for
/// repeated names is undocumented, and its standard webhooks never repeat one).
fn sorted_form_fields(body: &[u8]) -> String {
    let mut fields: BTreeMap<Cow<'_, str>, BTreeSet<Cow<'_, str>>> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        fields.entry(name).or_default().insert(value);
    }
    let mut out = String::new();
    for (name, values) in &fields {
        for value in values {
            out.push_str(name);
            out.push_str(value);
        }
    }
    out
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
