//! The approved registry of webhook URLs, and how a provider's URL is judged against it.
//!
//! The registry is every `server.public_urls` base joined with the hooklog route that a
//! provider field should name (the route table of [`crate::edge`]), plus `[doctor]
//! approved_urls`, which are accepted for any field. A URL is approved when it equals one of
//! them after parsing (so the host's case and a default port written out do not matter), its
//! fragment left aside: Twilio reads connection overrides from the fragment (`#rc=3&rt=5000`)
//! and never sends it, so it changes neither the request nor its signature.
//!
//! Anything else is drift, named by its first difference from the closest approved URL on the
//! same host, in this order: the scheme (`http` where hooklog is `https`: the request is
//! signed for another URL and refused), the port, the path (a trailing slash is told apart: it
//! reaches no route), then a query (hooklog's routes take none; a provider that adds one signs
//! it, so it is not refused, but it is not what was approved). A URL on no approved host
//! points elsewhere: the events go to someone else. Each verdict carries the URL to set.

use url::Url;

/// Which route a provider's field should name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A Twilio number's voice URL (`voice_url`).
    TwilioVoice,
    /// A Twilio number's messaging URL (`sms_url`).
    TwilioSms,
    /// A Twilio number's call status callback (`status_callback`).
    TwilioStatus,
    /// A Quo webhook's URL.
    Quo,
}

impl Field {
    /// The hooklog routes this field may name; the first is the one a fix sets.
    pub fn routes(self) -> &'static [&'static str] {
        match self {
            Field::TwilioVoice => &["/voice", "/voice/webhook"],
            Field::TwilioSms => &["/sms", "/sms/webhook"],
            Field::TwilioStatus => &["/voice/status"],
            Field::Quo => &["/webhook/openphone", "/webhook/quo"],
        }
    }
}

/// How a URL differs from the closest approved one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not a URL at all.
    Unparseable,
    /// On no approved host: the events go elsewhere.
    Host,
    /// The scheme differs (`have` → `want`).
    Scheme {
        /// The URL's scheme.
        have: String,
        /// The approved one.
        want: String,
    },
    /// The port differs.
    Port {
        /// The URL's port.
        have: u16,
        /// The approved one.
        want: u16,
    },
    /// The path ends with a slash the route has not.
    TrailingSlash,
    /// Another path.
    Path,
    /// A query string hooklog's routes do not use.
    Query,
}

impl Problem {
    /// In words, for a finding.
    pub fn describe(&self) -> String {
        match self {
            Problem::Unparseable => "is not a URL".into(),
            Problem::Host => "points elsewhere (not a hooklog host)".into(),
            Problem::Scheme { have, want } => format!("uses {have}:// where hooklog is {want}://"),
            Problem::Port { have, want } => format!("uses port {have} where hooklog is on {want}"),
            Problem::TrailingSlash => "has a trailing slash (no hooklog route ends with /)".into(),
            Problem::Path => "names a path that is not the hooklog route for it".into(),
            Problem::Query => "has a query string hooklog's routes do not use".into(),
        }
    }
}

/// The verdict on one URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// In the registry.
    Approved,
    /// Empty or absent.
    Missing {
        /// The URL to set, if hooklog has a public URL.
        expected: Option<String>,
    },
    /// Anything else.
    Drift {
        /// The first difference.
        problem: Problem,
        /// The URL to set, if hooklog has a public URL.
        expected: Option<String>,
    },
}

/// `server.public_urls` and `[doctor] approved_urls`.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    bases: Vec<String>,
    extra: Vec<String>,
}

impl Registry {
    /// The registry of these public base URLs and extra approved URLs.
    pub fn new(public_urls: &[String], approved_urls: &[String]) -> Registry {
        Registry {
            bases: public_urls
                .iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            extra: approved_urls.to_vec(),
        }
    }

    /// Whether hooklog has a public URL at all (without one, nothing can be approved but the
    /// extra entries, and no fix can be given).
    pub fn has_public_url(&self) -> bool {
        !self.bases.is_empty()
    }

    /// The approved URLs for `field`: every base with every route of the field, then the
    /// extra entries.
    pub fn approved(&self, field: Field) -> Vec<String> {
        let mut out: Vec<String> = self
            .bases
            .iter()
            .flat_map(|b| field.routes().iter().map(move |r| format!("{b}{r}")))
            .collect();
        out.extend(self.extra.iter().cloned());
        out
    }

    /// Judges `actual` (absent or blank: [`Verdict::Missing`]) for `field`.
    pub fn check(&self, actual: Option<&str>, field: Field) -> Verdict {
        let actual = actual.map(str::trim).filter(|a| !a.is_empty());
        let Some(actual) = actual else {
            return Verdict::Missing {
                expected: self
                    .bases
                    .first()
                    .map(|b| format!("{b}{}", field.routes()[0])),
            };
        };
        let Some(have) = parse(actual) else {
            return Verdict::Drift {
                problem: Problem::Unparseable,
                expected: self
                    .bases
                    .first()
                    .map(|b| format!("{b}{}", field.routes()[0])),
            };
        };
        let candidates: Vec<Url> = self
            .approved(field)
            .iter()
            .filter_map(|a| parse(a))
            .collect();
        if candidates.contains(&have) {
            return Verdict::Approved;
        }
        // The closest candidate on the same host, and its first difference; the route of the
        // field's first choice is preferred among equals.
        let best = candidates
            .iter()
            .filter(|c| c.host_str() == have.host_str())
            .map(|c| (first_difference(&have, c), c))
            .min_by_key(|(p, _)| rank(p));
        let fragment = Url::parse(actual)
            .ok()
            .and_then(|u| u.fragment().map(|f| format!("#{f}")))
            .unwrap_or_default();
        match best {
            Some((problem, c)) => Verdict::Drift {
                problem,
                expected: Some(format!("{}{fragment}", c.as_str())),
            },
            None => Verdict::Drift {
                problem: Problem::Host,
                expected: self
                    .bases
                    .first()
                    .map(|b| format!("{b}{}{fragment}", field.routes()[0])),
            },
        }
    }
}

/// A URL without its fragment, or `None`.
fn parse(s: &str) -> Option<Url> {
    let mut u = Url::parse(s.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return None;
    }
    u.set_fragment(None);
    Some(u)
}

/// The first way `have` differs from `want` (same host), in the order of the module header.
fn first_difference(have: &Url, want: &Url) -> Problem {
    if have.scheme() != want.scheme() {
        return Problem::Scheme {
            have: have.scheme().to_owned(),
            want: want.scheme().to_owned(),
        };
    }
    let (hp, wp) = (
        have.port_or_known_default().unwrap_or(0),
        want.port_or_known_default().unwrap_or(0),
    );
    if hp != wp {
        return Problem::Port { have: hp, want: wp };
    }
    if have.path() != want.path() {
        return if have.path().trim_end_matches('/') == want.path().trim_end_matches('/') {
            Problem::TrailingSlash
        } else {
            Problem::Path
        };
    }
    Problem::Query
}

/// How far a difference is from a match (smaller is closer): a candidate that differs only by
/// its query is a better suggestion than one on another path.
fn rank(p: &Problem) -> u8 {
    match p {
        Problem::Query => 0,
        Problem::TrailingSlash => 1,
        Problem::Scheme { .. } | Problem::Port { .. } => 2,
        Problem::Path => 3,
        Problem::Host | Problem::Unparseable => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::verifier::WebhookRoute;

    fn registry() -> Registry {
        Registry::new(
            &["https://hooks.example.com/".to_owned()],
            &["https://fallback.example.net/twilio".to_owned()],
        )
    }

    fn drift(v: Verdict) -> (Problem, String) {
        match v {
            Verdict::Drift { problem, expected } => (problem, expected.unwrap_or_default()),
            other => panic!("expected drift, got {other:?}"),
        }
    }

    #[test]
    fn every_route_a_field_names_is_one_the_edge_serves_for_that_provider() {
        for (field, want) in [
            (Field::TwilioVoice, WebhookRoute::TwilioVoice),
            (Field::TwilioSms, WebhookRoute::TwilioCallback),
            (Field::TwilioStatus, WebhookRoute::TwilioCallback),
            (Field::Quo, WebhookRoute::Quo),
        ] {
            for route in field.routes() {
                assert_eq!(WebhookRoute::for_path(route), Some(want), "{route}");
            }
        }
    }

    #[test]
    fn the_public_url_with_the_fields_route_is_approved_whatever_the_host_case_or_default_port() {
        let r = registry();
        for url in [
            "https://hooks.example.com/voice",
            "https://HOOKS.example.com/voice",
            "https://hooks.example.com:443/voice",
            "https://hooks.example.com/voice/webhook",
            "https://hooks.example.com/voice#rc=3&rt=5000",
            "https://fallback.example.net/twilio",
        ] {
            assert_eq!(
                r.check(Some(url), Field::TwilioVoice),
                Verdict::Approved,
                "{url}"
            );
        }
    }

    #[test]
    fn a_wrong_scheme_is_named_with_the_https_url_to_set() {
        let (p, fix) =
            drift(registry().check(Some("http://hooks.example.com/sms"), Field::TwilioSms));
        assert_eq!(
            p,
            Problem::Scheme {
                have: "http".into(),
                want: "https".into()
            }
        );
        assert_eq!(fix, "https://hooks.example.com/sms");
    }

    #[test]
    fn a_wrong_port_is_named_with_both_ports() {
        let (p, fix) =
            drift(registry().check(Some("https://hooks.example.com:8443/sms"), Field::TwilioSms));
        assert_eq!(
            p,
            Problem::Port {
                have: 8443,
                want: 443
            }
        );
        assert_eq!(fix, "https://hooks.example.com/sms");
    }

    #[test]
    fn another_host_points_elsewhere_and_the_fix_keeps_a_connection_override_fragment() {
        let (p, fix) = drift(registry().check(
            Some("https://old-node.example.org/sms#rc=2"),
            Field::TwilioSms,
        ));
        assert_eq!(p, Problem::Host);
        assert_eq!(fix, "https://hooks.example.com/sms#rc=2");
    }

    #[test]
    fn a_trailing_slash_and_another_path_are_told_apart() {
        let r = registry();
        let (p, fix) = drift(r.check(
            Some("https://hooks.example.com/voice/status/"),
            Field::TwilioStatus,
        ));
        assert_eq!(
            (p, fix.as_str()),
            (
                Problem::TrailingSlash,
                "https://hooks.example.com/voice/status"
            )
        );
        // The SMS route on the voice field is the wrong route, not an approved one.
        let (p, fix) = drift(r.check(Some("https://hooks.example.com/sms"), Field::TwilioVoice));
        assert_eq!(
            (p, fix.as_str()),
            (Problem::Path, "https://hooks.example.com/voice")
        );
    }

    #[test]
    fn a_query_is_drift_and_the_fix_drops_it() {
        let (p, fix) = drift(registry().check(
            Some("https://hooks.example.com/webhook/quo?x=1"),
            Field::Quo,
        ));
        assert_eq!(
            (p, fix.as_str()),
            (Problem::Query, "https://hooks.example.com/webhook/quo")
        );
    }

    #[test]
    fn a_blank_or_missing_url_is_missing_and_garbage_is_unparseable() {
        let r = registry();
        for v in [None, Some(""), Some("  ")] {
            assert_eq!(
                r.check(v, Field::TwilioStatus),
                Verdict::Missing {
                    expected: Some("https://hooks.example.com/voice/status".into())
                }
            );
        }
        for bad in ["not a url", "ftp://hooks.example.com/sms", "https://"] {
            assert_eq!(
                drift(r.check(Some(bad), Field::TwilioSms)).0,
                Problem::Unparseable,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_public_url_with_a_path_prefix_is_joined_with_the_route() {
        let r = Registry::new(&["https://example.com/hooklog".to_owned()], &[]);
        assert_eq!(
            r.check(Some("https://example.com/hooklog/sms"), Field::TwilioSms),
            Verdict::Approved
        );
        let (p, fix) = drift(r.check(Some("https://example.com/sms"), Field::TwilioSms));
        assert_eq!(
            (p, fix.as_str()),
            (Problem::Path, "https://example.com/hooklog/sms")
        );
    }
}
