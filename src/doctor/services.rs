//! The services hooklog writes to: Postgres (reachable, TLS, migrations current, the
//! `[[postgres.mirror]]` mappings fitting their tables), the agent gateway and the Discord
//! webhook (reachable, without posting anything).

use std::time::Duration;

use super::report::{cut, Finding};
use crate::config::Config;
use crate::consumers::postgres::mirror::{self, MirrorProblem};
use crate::consumers::postgres::{connect, migrate};

/// The HTTP agent of every check that calls out (the daemon, the gateway, Discord): `timeout`
/// per request, and no redirect followed: a redirect is an answer worth reporting, and
/// following one could carry the operator token elsewhere.
pub(super) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .user_agent(concat!("hooklog-doctor/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// 4. Postgres, when `[postgres] url` is set.
pub(super) fn postgres(config: &Config, runtime: &tokio::runtime::Runtime, out: &mut Vec<Finding>) {
    const CHECK: &str = "postgres";
    let pg = &config.postgres;
    let Some(url) = &pg.url else {
        out.push(Finding::ok(
            CHECK,
            "postgres.url is not set: the sync is off",
        ));
        return;
    };
    let timeout = Duration::from_secs(pg.timeout_secs.min(config.doctor.timeout_secs));
    let local = connect::parse_url(url.expose())
        .map(|t| connect::all_local(&t.config))
        .unwrap_or(false);
    let result = runtime.block_on(async {
        let connected = tokio::time::timeout(
            timeout,
            connect::connect(url.expose(), pg.ca_file.as_deref(), timeout),
        )
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
        .map_err(|e| e.to_string())?;
        let mut client = connected.client;
        // `migrate --check`'s plan: read in a read-only transaction, nothing created.
        let plan = tokio::time::timeout(timeout, migrate::plan(&mut client, &pg.schema))
            .await
            .map_err(|_| {
                format!(
                    "the migrations table did not answer within {} s",
                    timeout.as_secs()
                )
            })?;
        let mirrors = if pg.mirror.is_empty() {
            None
        } else {
            let checked = tokio::time::timeout(timeout, mirror::validate(&client, &pg.mirror))
                .await
                .unwrap_or_else(|_| {
                    Err(vec![MirrorProblem {
                        table: "postgres.mirror".into(),
                        column: None,
                        message: format!("no answer within {} s", timeout.as_secs()),
                    }])
                });
            Some(checked)
        };
        Ok::<_, String>((connected.tls, plan.map_err(|e| e.to_string()), mirrors))
    });
    let (tls, plan, mirrors) = match result {
        Ok(r) => r,
        Err(e) => {
            out.push(Finding::fail(
                CHECK,
                format!("cannot connect: {}", cut(&e, 300)),
                "check postgres.url (host, port, password, sslmode) and postgres.ca_file; the \
                 sync retries meanwhile and alerts after postgres.alert_after_secs",
            ));
            return;
        }
    };
    match (tls, local) {
        (true, _) => out.push(Finding::ok(CHECK, "reachable, over TLS")),
        (false, true) => out.push(Finding::ok(CHECK, "reachable (loopback, without TLS)")),
        (false, false) => out.push(Finding::warn(
            CHECK,
            "reachable, but without TLS to a host off this machine: the password and the rows \
             cross the network in clear",
            "add sslmode=verify-full to postgres.url (Supabase: with postgres.ca_file set to its CA)",
        )),
    }
    if let Some(checked) = mirrors {
        check_mirror(pg.mirror.len(), checked, out);
    }
    let how = if pg.migrate_on_start {
        "the daemon applies them when the sync connects (postgres.migrate_on_start); or run \
         `hooklog migrate` now"
    } else {
        "run `hooklog migrate` (postgres.migrate_on_start is off)"
    };
    let pending = |what: String| {
        if pg.migrate_on_start {
            Finding::warn(CHECK, what, how)
        } else {
            Finding::fail(CHECK, what, how)
        }
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            out.push(Finding::fail(
                CHECK,
                format!(
                    "cannot read the migrations of schema {}: {}",
                    pg.schema,
                    cut(&e, 300)
                ),
                "check that the user of postgres.url may read the schema",
            ));
            return;
        }
    };
    for c in &plan.changed {
        out.push(Finding::fail(
            CHECK,
            format!(
                "migration {} ({}) was applied with another checksum than this build's file",
                c.version,
                cut(&c.name, 80)
            ),
            "released migrations are never edited: run the build that applied it, or restore \
             the file",
        ));
    }
    for c in &plan.conflicts {
        out.push(Finding::fail(
            CHECK,
            format!("schema {}: {}", pg.schema, cut(&c.to_string(), 200)),
            "hooklog migrate refuses to touch it: set postgres.schema to a schema of hooklog's \
             own (docs/configuration.md), or move that object (hooklog migrate --check lists \
             every conflict)",
        ));
    }
    if !plan.unknown.is_empty() {
        let names: Vec<String> = plan.unknown.iter().map(|a| cut(&a.name, 80)).collect();
        out.push(Finding::warn(
            CHECK,
            format!(
                "schema {} has migration(s) this build does not know: {} (a newer hooklog \
                 applied them)",
                pg.schema,
                names.join(", ")
            ),
            "run the hooklog that migrated the schema, or a newer one",
        ));
    }
    if plan.is_blocked() {
        return;
    }
    if plan.present.is_empty() && (plan.create_schema || plan.create_migrations_table) {
        out.push(pending(format!(
            "schema {} has no hooklog migrations applied",
            pg.schema
        )));
    } else if !plan.pending.is_empty() {
        let names: Vec<&str> = plan.pending.iter().map(|p| p.name).collect();
        out.push(pending(format!(
            "schema {}: migration(s) not applied: {}",
            pg.schema,
            names.join(", ")
        )));
    } else if plan.is_current() {
        out.push(Finding::ok(
            CHECK,
            format!(
                "schema {}: every migration applied ({})",
                pg.schema,
                plan.present.len()
            ),
        ));
    }
}

/// The `[[postgres.mirror]]` mappings against the database (the sink's own check,
/// [`mirror::validate`]: each target table and column exists and holds its field's type, every
/// `NOT NULL` column without default is mapped). A mapping that does not fit stops the sink.
fn check_mirror(mappings: usize, checked: Result<(), Vec<MirrorProblem>>, out: &mut Vec<Finding>) {
    const CHECK: &str = "postgres";
    match checked {
        Ok(()) => out.push(Finding::ok(
            CHECK,
            format!("postgres.mirror: every mapping ({mappings}) fits its table"),
        )),
        Err(problems) => {
            for p in problems {
                out.push(Finding::fail(
                    CHECK,
                    format!("postgres.mirror: {}", cut(&p.to_string(), 300)),
                    "fix the table or its [[postgres.mirror]] mapping: the sink writes nothing \
                     until they fit (docs/configuration.md)",
                ));
            }
        }
    }
}

/// 5a. The agent gateway: a `GET` of each configured gateway's base (scheme, host, port; no
/// token, no path), so nothing is dispatched. Any HTTP answer means it is reachable.
pub(super) fn gateway(config: &Config, timeout: Duration, out: &mut Vec<Finding>) {
    const CHECK: &str = "gateway";
    let mut urls: Vec<(String, String)> = Vec::new();
    if let Some(u) = &config.dispatch.url {
        urls.push(("dispatch.url".into(), u.clone()));
    }
    for (i, r) in config.dispatch.routes.iter().enumerate() {
        if let Some(u) = &r.url {
            urls.push((format!("dispatch.routes[{i}].url"), u.clone()));
        }
    }
    if urls.is_empty() {
        out.push(Finding::ok(
            CHECK,
            "dispatch.url is not set: dispatch is off",
        ));
        return;
    }
    let agent = agent(timeout);
    let mut seen = std::collections::BTreeSet::new();
    for (key, u) in urls {
        let Some(base) = url::Url::parse(&u).ok().and_then(|p| {
            p.host_str().map(|h| {
                let port = p.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{h}{port}/", p.scheme())
            })
        }) else {
            out.push(Finding::fail(
                CHECK,
                format!("{key} is not a URL"),
                format!("fix {key}"),
            ));
            continue;
        };
        if !seen.insert(base.clone()) {
            continue;
        }
        match agent.get(&base).call() {
            Ok(r) => out.push(Finding::ok(
                CHECK,
                format!("{base} ({key}) answers {}", r.status()),
            )),
            Err(ureq::Error::Status(code, _)) => out.push(Finding::ok(
                CHECK,
                format!("{base} ({key}) answers {code} (reachable)"),
            )),
            Err(ureq::Error::Transport(t)) => out.push(Finding::fail(
                CHECK,
                format!("{base} ({key}) is unreachable: {}", t.kind()),
                format!(
                    "start the gateway or fix {key}; dispatch retries and dead-letters after \
                     dispatch.dead_letter_after_secs"
                ),
            )),
        }
    }
}

/// 5b. The Discord webhook: a `GET` of its URL returns the webhook's JSON and posts nothing.
/// The URL holds the webhook's token: it is never shown.
pub(super) fn discord(config: &Config, timeout: Duration, out: &mut Vec<Finding>) {
    const CHECK: &str = "discord";
    let Some(url) = &config.alerts.discord_webhook_url else {
        out.push(Finding::warn(
            CHECK,
            "alerts.discord_webhook_url is not set: alerts go to the log only",
            "create a webhook in the Discord channel's settings (Integrations → Webhooks) and set \
             alerts.discord_webhook_url_file",
        ));
        return;
    };
    let agent = agent(timeout);
    match agent.get(url.expose()).call() {
        Ok(resp) => {
            let json: Option<serde_json::Value> = resp.into_json().ok();
            let name = json
                .as_ref()
                .and_then(|v| v.get("name"))
                .and_then(serde_json::Value::as_str)
                .map(|n| format!(" (`{}`)", cut(n, 60)))
                .unwrap_or_default();
            if json.as_ref().and_then(|v| v.get("id")).is_some() {
                out.push(Finding::ok(CHECK, format!("the webhook answers{name}")));
            } else {
                out.push(Finding::warn(
                    CHECK,
                    "the webhook URL answers, but not with a Discord webhook",
                    "check alerts.discord_webhook_url is a https://discord.com/api/webhooks/… URL",
                ));
            }
        }
        Err(ureq::Error::Status(code @ (401 | 404), _)) => out.push(Finding::fail(
            CHECK,
            format!("the webhook answers {code}: it was deleted or its token is wrong"),
            "create a new webhook in the channel's settings and set alerts.discord_webhook_url",
        )),
        Err(ureq::Error::Status(code, _)) => out.push(Finding::warn(
            CHECK,
            format!("the webhook answers {code}"),
            "try again later; alerts are retried and always in the log",
        )),
        Err(ureq::Error::Transport(t)) => out.push(Finding::fail(
            CHECK,
            format!("Discord is unreachable: {}", t.kind()),
            "check this machine's outbound HTTPS (DNS, firewall)",
        )),
    }
}
