//! `content`: the body is not empty, not too long, names nothing on the deny-list and links
//! to no public URL shortener.
//!
//! The deny-list holds words the business never sends, such as the owner's personal name;
//! entries match case-insensitively on word boundaries, so `Ann` does not match `annual`.
//! Shorteners hide the destination and carriers filter them (Twilio 30963, docs/reference/compliance.md#content
//! §4): a link whose host is a listed domain, or a subdomain of one, is refused, with or
//! without a scheme (`bit.ly/x`, `https://www.bit.ly/x`).

use super::config::ComplianceConfig;
use super::reason::{Reason, ReasonCode};

/// Every content problem of `body`.
pub fn check(config: &ComplianceConfig, body: &str) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if body.trim().is_empty() {
        reasons.push(Reason::new(
            ReasonCode::ContentEmpty,
            "the message is empty",
        ));
    }
    let len = body.chars().count();
    if len > config.max_length {
        reasons.push(Reason::new(
            ReasonCode::ContentTooLong,
            format!(
                "the message has {len} characters; the limit is {}",
                config.max_length
            ),
        ));
    }
    let words = words(body);
    for term in &config.deny_list {
        let term_words = self::words(term);
        if !term_words.is_empty() && words.windows(term_words.len()).any(|w| w == term_words) {
            reasons.push(Reason::new(
                ReasonCode::ContentDeniedTerm,
                format!("the message contains `{term}`, which is on the deny-list"),
            ));
        }
    }
    for token in body.split_whitespace() {
        if let Some(domain) = shortener_of(token, &config.shortener_domains) {
            reasons.push(Reason::new(
                ReasonCode::ContentLinkShortener,
                format!("`{token}` uses the link shortener {domain}; link to your own domain"),
            ));
        }
    }
    reasons
}

/// Lower-case alphanumeric words.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The shortener domain `token` links to, if any.
fn shortener_of<'a>(token: &str, domains: &'a [String]) -> Option<&'a str> {
    let t = token
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(&t);
    let host = rest.split(['/', '?', '#', ':']).next().unwrap_or_default();
    domains
        .iter()
        .find(|d| host == d.as_str() || host.ends_with(&format!(".{d}")))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ComplianceConfig {
        ComplianceConfig {
            deny_list: vec!["Jane Doe".into(), "Ann".into()],
            max_length: 40,
            ..ComplianceConfig::default()
        }
    }

    fn codes(body: &str) -> Vec<ReasonCode> {
        check(&cfg(), body).into_iter().map(|r| r.code).collect()
    }

    #[test]
    fn a_plain_message_with_an_own_domain_link_passes() {
        assert!(codes("See https://acmehomes.com/offer").is_empty());
        assert!(
            codes("Annual review at acme.com").is_empty(),
            "Ann is a whole word only"
        );
    }

    #[test]
    fn shortener_links_are_refused_with_or_without_a_scheme() {
        for body in [
            "see bit.ly/abc",
            "https://bit.ly/abc",
            "(www.bit.ly/x)",
            "go t.co/z!",
            "HTTPS://TinyURL.com/a",
        ] {
            assert_eq!(codes(body), [ReasonCode::ContentLinkShortener], "{body}");
        }
        assert!(codes("habit.ly is fine? no: habit.ly").is_empty());
    }

    #[test]
    fn a_deny_list_name_is_refused_in_any_case_and_punctuation() {
        assert_eq!(
            codes("Hi, this is jane  DOE."),
            [ReasonCode::ContentDeniedTerm]
        );
        assert_eq!(codes("Ann here"), [ReasonCode::ContentDeniedTerm]);
        assert!(codes("Jane here").is_empty());
    }

    #[test]
    fn length_is_counted_in_characters_and_the_limit_itself_passes() {
        assert!(codes(&"é".repeat(40)).is_empty());
        assert_eq!(codes(&"é".repeat(41)), [ReasonCode::ContentTooLong]);
    }

    #[test]
    fn an_empty_message_is_refused() {
        assert_eq!(codes("  \n"), [ReasonCode::ContentEmpty]);
    }
}
