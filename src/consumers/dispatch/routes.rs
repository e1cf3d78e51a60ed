//! Routing rules: which agent an event goes to, and at which gateway URL.
//!
//! A [`Route`] matches on the event kind (exact names such as `message.received`, or `*`),
//! optionally the provider and optionally the line. [`Routes::match_event`] returns every
//! matching route in configuration order, **one per agent**: when two routes name the same
//! agent, the first one wins, so an agent is dispatched an event at most once however the
//! rules overlap, while several different agents may each receive it. Pure; no I/O.

use crate::provider::Provider;

/// One rule from `[dispatch] routes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Exact kind names (`message.received`, `call.completed`, …) or `*` for any kind.
    pub kinds: Vec<String>,
    /// Only events from this provider; `None` for any.
    pub provider: Option<Provider>,
    /// Only events on this line (the line's number or id, as the parser reports it); `None`
    /// for any. An event without a line never matches a line-restricted route.
    pub line: Option<String>,
    /// The agent's name, sent in the payload.
    pub agent: String,
    /// Overrides the default gateway URL for this route.
    pub url: Option<String>,
}

impl Route {
    /// Whether this route takes an event of `kind` from `provider` on `line`.
    pub fn matches(&self, kind: &str, provider: Provider, line: Option<&str>) -> bool {
        self.matches_lines(kind, provider, line.as_slice())
    }

    /// Whether this route takes an event of `kind` from `provider` on a line known by any
    /// of `lines` (a line has a number and, at Quo, an id: a route may name either).
    pub fn matches_lines(&self, kind: &str, provider: Provider, lines: &[&str]) -> bool {
        let kind_ok = self.kinds.iter().any(|k| k == "*" || k == kind);
        let provider_ok = self.provider.is_none_or(|p| p == provider);
        let line_ok = match &self.line {
            None => true,
            Some(want) => lines.iter().any(|got| want == got),
        };
        kind_ok && provider_ok && line_ok
    }
}

/// Why a set of routes was refused at start.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A route lists no kinds, so it could never fire (a likely typo).
    #[error("route {index} (agent {agent:?}) lists no kinds; use \"*\" for every kind")]
    NoKinds {
        /// 0-based position in the configuration.
        index: usize,
        /// Its agent.
        agent: String,
    },
    /// A route has an empty agent name.
    #[error("route {index} has an empty agent name")]
    NoAgent {
        /// 0-based position in the configuration.
        index: usize,
    },
}

/// The configured routes, in configuration order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Validates `routes`: each names an agent and at least one kind.
    pub fn new(routes: Vec<Route>) -> Result<Routes, RouteError> {
        for (index, r) in routes.iter().enumerate() {
            if r.agent.trim().is_empty() {
                return Err(RouteError::NoAgent { index });
            }
            if r.kinds.is_empty() {
                return Err(RouteError::NoKinds {
                    index,
                    agent: r.agent.clone(),
                });
            }
        }
        Ok(Routes { routes })
    }

    /// Every route that takes the event, in configuration order, the first per agent (see
    /// the module header). Empty when no rule matches: the event is not dispatched.
    pub fn match_event(&self, kind: &str, provider: Provider, line: Option<&str>) -> Vec<&Route> {
        self.match_event_on(kind, provider, line.as_slice())
    }

    /// [`Self::match_event`] for an event whose line is known by several names (its number
    /// and its provider id): a line-restricted route matches if it names any of them.
    pub fn match_event_on(&self, kind: &str, provider: Provider, lines: &[&str]) -> Vec<&Route> {
        let mut out: Vec<&Route> = Vec::new();
        for r in &self.routes {
            if r.matches_lines(kind, provider, lines) && !out.iter().any(|o| o.agent == r.agent) {
                out.push(r);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(kinds: &[&str], provider: Option<Provider>, line: Option<&str>, agent: &str) -> Route {
        Route {
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            provider,
            line: line.map(str::to_owned),
            agent: agent.to_owned(),
            url: None,
        }
    }

    fn agents(routes: &Routes, kind: &str, provider: Provider, line: Option<&str>) -> Vec<String> {
        routes
            .match_event(kind, provider, line)
            .into_iter()
            .map(|r| r.agent.clone())
            .collect()
    }

    #[test]
    fn events_are_routed_by_kind_provider_and_line_in_config_order() {
        let routes = Routes::new(vec![
            route(&["message.received"], None, None, "acquisitions"),
            route(&["call.ringing", "call.completed"], None, None, "atlas"),
            route(&["*"], Some(Provider::Twilio), None, "auditor"),
            route(&["message.received"], None, Some("+15550001111"), "vip"),
        ])
        .unwrap();
        let o = Provider::Quo;
        let t = Provider::Twilio;
        let table: &[(&str, Provider, Option<&str>, &[&str])] = &[
            ("message.received", o, None, &["acquisitions"]),
            (
                "message.received",
                o,
                Some("+15550001111"),
                &["acquisitions", "vip"],
            ),
            (
                "message.received",
                o,
                Some("+15559999999"),
                &["acquisitions"],
            ),
            ("message.received", t, None, &["acquisitions", "auditor"]),
            ("call.ringing", o, None, &["atlas"]),
            ("call.completed", t, None, &["atlas", "auditor"]),
            ("message.delivered", o, None, &[]),
            ("message.delivered", t, Some("+15550001111"), &["auditor"]),
            ("message.received.extra", o, None, &[]),
        ];
        for (kind, provider, line, want) in table {
            assert_eq!(
                agents(&routes, kind, *provider, *line),
                want.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
                "{kind} {provider:?} {line:?}"
            );
        }
    }

    #[test]
    fn an_agent_matched_by_several_routes_is_dispatched_once_by_the_first() {
        let mut first = route(&["message.received"], None, None, "acquisitions");
        first.url = Some("http://first".into());
        let mut second = route(&["*"], None, None, "acquisitions");
        second.url = Some("http://second".into());
        let routes = Routes::new(vec![first, second]).unwrap();
        let hits = routes.match_event("message.received", Provider::Quo, None);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].url.as_deref(), Some("http://first"));
        let hits = routes.match_event("call.ringing", Provider::Quo, None);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].url.as_deref(), Some("http://second"));
    }

    #[test]
    fn a_line_route_matches_the_line_by_number_or_by_provider_id() {
        let routes = Routes::new(vec![
            route(&["*"], None, Some("+15550001111"), "by-number"),
            route(&["*"], None, Some("PNline1"), "by-id"),
        ])
        .unwrap();
        let hits = |lines: &[&str]| -> Vec<String> {
            routes
                .match_event_on("message.received", Provider::Quo, lines)
                .into_iter()
                .map(|r| r.agent.clone())
                .collect()
        };
        assert_eq!(hits(&["+15550001111", "PNline1"]), ["by-number", "by-id"]);
        assert_eq!(hits(&["PNline1"]), ["by-id"]);
        assert!(hits(&["+15559999999", "PNother"]).is_empty());
        assert!(hits(&[]).is_empty());
    }

    #[test]
    fn a_route_without_kinds_or_agent_is_refused() {
        assert_eq!(
            Routes::new(vec![route(&[], None, None, "atlas")]),
            Err(RouteError::NoKinds {
                index: 0,
                agent: "atlas".into()
            })
        );
        assert_eq!(
            Routes::new(vec![
                route(&["*"], None, None, "atlas"),
                route(&["*"], None, None, " ")
            ]),
            Err(RouteError::NoAgent { index: 1 })
        );
    }
}
