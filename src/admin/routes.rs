//! Every route of the admin listener with the role it needs (docs/api.md#roles), and the
//! tokens that carry a role.
//!
//! [`Route`] is the one list: the router finds a request's route in [`Route::ALL`] and
//! dispatches on it, and a route's [`Route::role`] is an exhaustive `match`, so a route cannot
//! be added without saying who may call it. The integration tests read [`Route::ALL`] to
//! prove that an agent's token reaches nothing else.
//!
//! Roles: the operator token (`[server] admin_token`, or the generated `admin.token`) reaches
//! every route; an agent token (`[server.agent_tokens]`) reaches only [`Role::Agent`] routes
//! and gets 403 on the others. A token that is none of them is 401.
//!
//! Invariants: tokens are compared in constant time, against every configured token (which
//! one matched does not change the time taken); the name of the token that asked
//! ([`Caller`]) comes from the token, never from the request's body.

use std::collections::BTreeMap;

use subtle::{Choice, ConstantTimeEq};
use warp::http::Method;

use crate::config::secret::Secret;
use crate::event::Verification;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The operator token only.
    Operator,
    /// An agent token, or the operator token.
    Agent,
}

/// One route of the admin listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// `POST /v1/messages`
    SendMessage,
    /// `GET /v1/messages/{id}`
    GetMessage,
    /// `POST /admin/lines/{id}/unblock`
    UnblockLine,
    /// `GET /admin/status`
    Status,
    /// `GET /admin/kill-switch`
    KillSwitch,
    /// `POST /admin/kill-switch`
    SetKillSwitch,
    /// `GET /admin/events`
    ListEvents,
    /// `POST /admin/events`
    AppendEvent,
    /// `GET /admin/events/{seq}`
    GetEvent,
    /// `POST /admin/consumers/{name}/rewind`
    Rewind,
    /// `POST /admin/consumers/{name}/pause`
    Pause,
    /// `POST /admin/consumers/{name}/resume`
    Resume,
    /// `GET /admin/dead-letters`
    DeadLetters,
    /// `POST /admin/dead-letters/redrive`
    Redrive,
    /// `GET /admin/optouts`
    ListOptOuts,
    /// `POST /admin/optouts`
    AddOptOut,
    /// `DELETE /admin/optouts/{number}`
    RemoveOptOut,
    /// `GET /metrics`: the Prometheus exposition (it names consumers, agents, listeners and
    /// error rates, so only the operator reads it).
    Metrics,
    /// `POST /admin/reload`: re-read the configuration and apply it (`crate::reload`).
    Reload,
}

impl Route {
    /// Every route the router serves.
    pub const ALL: [Route; 19] = [
        Route::SendMessage,
        Route::GetMessage,
        Route::UnblockLine,
        Route::Status,
        Route::KillSwitch,
        Route::SetKillSwitch,
        Route::ListEvents,
        Route::AppendEvent,
        Route::GetEvent,
        Route::Rewind,
        Route::Pause,
        Route::Resume,
        Route::DeadLetters,
        Route::Redrive,
        Route::ListOptOuts,
        Route::AddOptOut,
        Route::RemoveOptOut,
        Route::Metrics,
        Route::Reload,
    ];

    /// Who may call it.
    pub fn role(self) -> Role {
        match self {
            Route::SendMessage | Route::GetMessage => Role::Agent,
            Route::UnblockLine
            | Route::Status
            | Route::KillSwitch
            | Route::SetKillSwitch
            | Route::ListEvents
            | Route::AppendEvent
            | Route::GetEvent
            | Route::Rewind
            | Route::Pause
            | Route::Resume
            | Route::DeadLetters
            | Route::Redrive
            | Route::ListOptOuts
            | Route::AddOptOut
            | Route::RemoveOptOut
            | Route::Metrics
            | Route::Reload => Role::Operator,
        }
    }

    /// Its method.
    pub fn method(self) -> Method {
        match self {
            Route::GetMessage
            | Route::Status
            | Route::KillSwitch
            | Route::ListEvents
            | Route::GetEvent
            | Route::DeadLetters
            | Route::ListOptOuts
            | Route::Metrics => Method::GET,
            Route::RemoveOptOut => Method::DELETE,
            Route::SendMessage
            | Route::UnblockLine
            | Route::SetKillSwitch
            | Route::AppendEvent
            | Route::Rewind
            | Route::Pause
            | Route::Resume
            | Route::Redrive
            | Route::AddOptOut
            | Route::Reload => Method::POST,
        }
    }

    /// Its path; `{…}` is one path segment.
    pub fn pattern(self) -> &'static str {
        match self {
            Route::SendMessage => "/v1/messages",
            Route::GetMessage => "/v1/messages/{id}",
            Route::UnblockLine => "/admin/lines/{id}/unblock",
            Route::Status => "/admin/status",
            Route::KillSwitch | Route::SetKillSwitch => "/admin/kill-switch",
            Route::ListEvents | Route::AppendEvent => "/admin/events",
            Route::GetEvent => "/admin/events/{seq}",
            Route::Rewind => "/admin/consumers/{name}/rewind",
            Route::Pause => "/admin/consumers/{name}/pause",
            Route::Resume => "/admin/consumers/{name}/resume",
            Route::DeadLetters => "/admin/dead-letters",
            Route::Redrive => "/admin/dead-letters/redrive",
            Route::ListOptOuts | Route::AddOptOut => "/admin/optouts",
            Route::RemoveOptOut => "/admin/optouts/{number}",
            Route::Metrics => "/metrics",
            Route::Reload => "/admin/reload",
        }
    }

    /// Whether it reads or changes consumer state (the outbound messages, the suppression
    /// list, consumers and their dead letters): only the replica that runs the consumers
    /// answers it. The log itself (status, events, appends, opt-out changes, which are
    /// appends) is the same on every replica.
    pub fn needs_consumers(self) -> bool {
        match self {
            Route::SendMessage
            | Route::GetMessage
            | Route::UnblockLine
            | Route::Rewind
            | Route::Pause
            | Route::Resume
            | Route::DeadLetters
            | Route::Redrive
            | Route::ListOptOuts => true,
            Route::Status
            | Route::KillSwitch
            | Route::SetKillSwitch
            | Route::ListEvents
            | Route::AppendEvent
            | Route::GetEvent
            | Route::AddOptOut
            | Route::RemoveOptOut
            | Route::Metrics
            | Route::Reload => false,
        }
    }

    /// `METHOD /path`, for messages and docs.
    pub fn describe(self) -> String {
        format!("{} {}", self.method(), self.pattern())
    }

    /// The path's `{…}` segments if `parts` (the path split at `/`, without the leading
    /// one) is this route's path.
    fn params<'a>(self, parts: &[&'a str]) -> Option<Vec<&'a str>> {
        let pattern: Vec<&str> = self.pattern().trim_start_matches('/').split('/').collect();
        if pattern.len() != parts.len() {
            return None;
        }
        let mut params = Vec::new();
        for (want, got) in pattern.iter().zip(parts) {
            if want.starts_with('{') {
                params.push(*got);
            } else if want != got {
                return None;
            }
        }
        Some(params)
    }

    /// The routes an agent token reaches, for its 403.
    pub fn for_agents() -> String {
        Route::ALL
            .iter()
            .filter(|r| r.role() == Role::Agent)
            .map(|r| r.describe())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a request's method and path name.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// A route, with its `{…}` segments in order.
    Route(Route, Vec<&'a str>),
    /// The path is a route's, for other methods: the routes it is.
    OtherMethod(Vec<Route>),
    /// No route has this path.
    Nothing,
}

/// The route of `method` and `path`.
pub fn find<'a>(method: &Method, path: &'a str) -> Found<'a> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut same_path = Vec::new();
    for route in Route::ALL {
        if let Some(params) = route.params(&parts) {
            if route.method() == method {
                return Found::Route(route, params);
            }
            same_path.push(route);
        }
    }
    if same_path.is_empty() {
        Found::Nothing
    } else {
        Found::OtherMethod(same_path)
    }
}

/// The `Allow` header for a path that is these routes.
pub fn allow(routes: &[Route]) -> &'static str {
    let has = |m: Method| routes.iter().any(|r| r.method() == m);
    match (has(Method::GET), has(Method::POST), has(Method::DELETE)) {
        (true, true, _) => "GET, POST",
        (true, false, _) => "GET",
        (false, true, _) => "POST",
        _ => "DELETE",
    }
}

/// Who asked: the token a request was authenticated with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The operator token.
    Operator,
    /// The agent token of this name (`[server.agent_tokens]`).
    Agent(String),
}

impl Caller {
    /// `operator` or `agent:<name>`: what a message's `requested_by` says.
    pub fn label(&self) -> String {
        match self {
            Caller::Operator => "operator".to_owned(),
            Caller::Agent(name) => format!("agent:{name}"),
        }
    }

    /// The verification of the records this caller appends.
    pub fn verification(&self) -> Verification {
        match self {
            Caller::Operator => Verification::AdminToken,
            Caller::Agent(_) => Verification::AgentToken,
        }
    }

    /// Whether this caller may call `route`.
    pub fn may_call(&self, route: Route) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Agent(_) => route.role() == Role::Agent,
        }
    }
}

/// An agent token that is the operator token too: refused at start-up.
#[derive(Debug, thiserror::Error)]
#[error(
    "the agent token `{0}` is the operator token (server.admin_token or the generated \
     admin.token): give the agent a token of its own, e.g. `openssl rand -hex 32`"
)]
pub struct SharedToken(pub String);

/// The tokens of the admin listener.
pub struct Tokens {
    operator: Secret,
    agents: Vec<(String, Secret)>,
}

impl Tokens {
    /// The operator token and the agents' (`[server.agent_tokens]`, validated by the
    /// configuration: names, lengths, distinct from each other and from a configured
    /// operator token). A generated operator token is checked here.
    pub fn new(operator: Secret, agents: &BTreeMap<String, Secret>) -> Result<Tokens, SharedToken> {
        if let Some((name, _)) = agents.iter().find(|(_, t)| *t == &operator) {
            return Err(SharedToken(name.clone()));
        }
        Ok(Tokens {
            operator,
            agents: agents.iter().map(|(n, t)| (n.clone(), t.clone())).collect(),
        })
    }

    /// The caller whose token `header` (an `Authorization` value) carries, if any.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Option<Caller> {
        let given = header?.strip_prefix(b"Bearer ")?;
        let same = |t: &Secret| -> Choice {
            let expected = t.expose().as_bytes();
            // Lengths are not secret (every token is at least 16 characters); contents are.
            if given.len() == expected.len() {
                given.ct_eq(expected)
            } else {
                Choice::from(0)
            }
        };
        // Every token is compared, whichever matches: the time does not say which one did.
        let operator = same(&self.operator);
        let mut agent = None;
        for (name, token) in &self.agents {
            if bool::from(same(token)) {
                agent = Some(name);
            }
        }
        if bool::from(operator) {
            Some(Caller::Operator)
        } else {
            agent.map(|n| Caller::Agent(n.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(route: Route) -> String {
        route.pattern().replace("{id}", "x").replace("{seq}", "1")
    }

    #[test]
    fn every_route_is_found_at_its_own_method_and_path_and_nowhere_else() {
        for route in Route::ALL {
            match find(&route.method(), &example(route)) {
                Found::Route(r, _) => assert_eq!(r, route),
                other => panic!("{route:?}: {other:?}"),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for route in Route::ALL {
            assert!(
                seen.insert((route.method().to_string(), route.pattern())),
                "{route:?} twice"
            );
        }
    }

    #[test]
    fn agents_reach_only_the_outbound_api() {
        let agent: Vec<Route> = Route::ALL
            .into_iter()
            .filter(|r| Caller::Agent("a".into()).may_call(*r))
            .collect();
        assert_eq!(agent, vec![Route::SendMessage, Route::GetMessage]);
        assert!(Route::ALL.iter().all(|r| Caller::Operator.may_call(*r)));
        assert_eq!(
            Route::for_agents(),
            "POST /v1/messages, GET /v1/messages/{id}"
        );
    }

    #[test]
    fn a_path_with_another_method_says_which_methods_it_takes() {
        assert_eq!(
            find(&Method::DELETE, "/admin/events"),
            Found::OtherMethod(vec![Route::ListEvents, Route::AppendEvent])
        );
        assert_eq!(allow(&[Route::ListEvents, Route::AppendEvent]), "GET, POST");
        assert_eq!(find(&Method::GET, "/admin/nothing"), Found::Nothing);
        assert_eq!(
            find(&Method::POST, "/admin/consumers/sender/rewind"),
            Found::Route(Route::Rewind, vec!["sender"])
        );
    }

    #[test]
    fn a_token_names_its_caller_and_anything_else_is_nobody() {
        let agents: BTreeMap<String, Secret> = [
            ("acquisitions".to_owned(), Secret::new("a".repeat(32))),
            ("dispo".to_owned(), Secret::new("d".repeat(32))),
        ]
        .into();
        let tokens = Tokens::new(Secret::new("o".repeat(32)), &agents).unwrap();
        let auth = |t: &str| tokens.authenticate(Some(format!("Bearer {t}").as_bytes()));
        assert_eq!(auth(&"o".repeat(32)), Some(Caller::Operator));
        assert_eq!(
            auth(&"a".repeat(32)),
            Some(Caller::Agent("acquisitions".into()))
        );
        assert_eq!(auth(&"d".repeat(32)), Some(Caller::Agent("dispo".into())));
        assert_eq!(auth(&"a".repeat(31)), None);
        assert_eq!(auth(""), None);
        assert_eq!(tokens.authenticate(None), None);
        assert_eq!(tokens.authenticate(Some("a".repeat(32).as_bytes())), None);
        assert!(Tokens::new(Secret::new("a".repeat(32)), &agents).is_err());
    }
}
