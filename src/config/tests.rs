//! Tests of `crate::config`.

use super::*;
use crate::config::secret::Secret;
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

const QUO_KEY: &str = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=";

#[test]
fn no_file_and_no_environment_gives_the_embedded_default() {
    let (c, _) = Config::load_from(None, env(&[])).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.server.listen, vec!["127.0.0.1:18792".parse().unwrap()]);
    assert_eq!(c.server.admin_listen, "127.0.0.1:18800".parse().unwrap());
    assert_eq!(c.server.max_body_bytes, 1 << 20);
    assert_eq!(c.openphone.tolerance_secs, 300);
    assert!(c.twilio.auth_tokens.is_empty());
}

#[test]
fn environment_overrides_the_file_and_splits_lists() {
    let f = file(&format!(
        "data_dir = \"/srv/a\"\n[server]\nlisten = [\"127.0.0.1:1\"]\npublic_urls = [\"https://a.example\"]\n[openphone]\nsigning_keys = [\"{QUO_KEY}\"]\n"
    ));
    let (c, prov) = Config::load_from(
        Some(f.path()),
        env(&[
            ("HOOKLOG_DATA_DIR", "/srv/b"),
            ("HOOKLOG_SERVER_LISTEN", "127.0.0.1:18792, 127.0.0.1:18797"),
            ("HOOKLOG_TWILIO_AUTH_TOKENS", "tok1\ntok2\n"),
            ("HOOKLOG_OPENPHONE_TOLERANCE_SECS", "60"),
            ("HOOKLOG_TWILIO_VOICE_SAY", "Hello"),
            ("HOOKLOG_CONFIG", "ignored"),
            ("OTHER", "ignored"),
        ]),
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/srv/b"));
    assert_eq!(c.server.listen.len(), 2);
    assert_eq!(
        c.twilio.auth_tokens,
        vec![Secret::new("tok1"), Secret::new("tok2")]
    );
    assert_eq!(c.openphone.tolerance_secs, 60);
    assert_eq!(c.openphone.signing_keys.len(), 1);
    assert_eq!(c.twilio.voice.say.as_deref(), Some("Hello"));
    assert_eq!(prov.origin("server.listen"), "env HOOKLOG_SERVER_LISTEN");
    assert!(prov.origin("server.public_urls").starts_with("file "));
}

#[test]
fn a_secret_file_supplies_the_value_and_its_key_is_named_on_error() {
    let secret = file("tok-from-file\n");
    let (c, _) = Config::load_from(
        None,
        env(&[
            (
                "HOOKLOG_TWILIO_AUTH_TOKENS_FILE",
                secret.path().to_str().unwrap(),
            ),
            ("HOOKLOG_SERVER_PUBLIC_URLS", "https://hooks.example.com"),
        ]),
    )
    .unwrap();
    assert_eq!(c.twilio.auth_tokens, vec![Secret::new("tok-from-file")]);

    let err = Config::load_from(
        None,
        env(&[("HOOKLOG_SALESMSG_SECRETS_FILE", "/nonexistent/secret")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("salesmsg.secrets_file"), "{err}");
    assert!(err.contains("HOOKLOG_SALESMSG_SECRETS_FILE"), "{err}");
}

#[test]
fn dispatch_routes_come_from_the_file_and_url_token_and_timeout_from_the_environment() {
    let cfg = file(
        "[dispatch]\nurl = \"https://gw.example/file\"\n\
         [[dispatch.routes]]\nkinds = [\"message.received\"]\nagent = \"acquisitions\"\n\
         [[dispatch.routes]]\nkinds = [\"call.ringing\", \"call.completed\"]\nprovider = \"quo\"\n\
         line = \"+15550001111\"\nagent = \"atlas\"\nurl = \"https://atlas.example/hook\"\n",
    );
    let token = file("gw-token-from-file\n");
    let (c, _) = Config::load_from(
        Some(cfg.path()),
        env(&[
            ("HOOKLOG_DISPATCH_URL", "https://gw.example/env"),
            (
                "HOOKLOG_DISPATCH_TOKEN_FILE",
                token.path().to_str().unwrap(),
            ),
            ("HOOKLOG_DISPATCH_TIMEOUT_SECS", "7"),
        ]),
    )
    .unwrap();
    assert_eq!(c.dispatch.url.as_deref(), Some("https://gw.example/env"));
    assert_eq!(c.dispatch.token, Some(Secret::new("gw-token-from-file")));
    assert_eq!(
        (c.dispatch.timeout_secs, c.dispatch.dead_letter_after_secs),
        (7, 3600)
    );
    assert_eq!(c.dispatch.routes.len(), 2);
    assert_eq!(c.dispatch.routes[1].agent, "atlas");
    assert!(!c.to_redacted_toml().contains("gw-token-from-file"));

    let err = Config::load_from(Some(cfg.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dispatch.token"), "no token with a url: {err}");
    let err = Config::load_from(
        None,
        env(&[
            ("HOOKLOG_DISPATCH_URL", "https://gw.example/env"),
            ("HOOKLOG_DISPATCH_TOKEN", "tok-123456"),
            ("HOOKLOG_DISPATCH_TIMEOUT_SECS", "0"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("dispatch.timeout_secs") && err.contains("HOOKLOG_DISPATCH_TIMEOUT_SECS"),
        "{err}"
    );
}

#[test]
fn errors_name_the_bad_key_and_its_origin() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("HOOKLOG_SERVER_LISTEN", "not-an-addr")], "server.listen"),
        (
            &[("HOOKLOG_OPENPHONE_TOLERANCE_SECS", "soon")],
            "openphone.tolerance_secs",
        ),
        (
            &[("HOOKLOG_OPENPHONE_TOLERANCE_SECS", "0")],
            "openphone.tolerance_secs",
        ),
        (
            &[("HOOKLOG_OPENPHONE_SIGNING_KEYS", "not base64!")],
            "openphone.signing_keys",
        ),
        (
            &[("HOOKLOG_TWILIO_AUTH_TOKENS", "abc")],
            "twilio.auth_tokens",
        ),
        (
            &[("HOOKLOG_SERVER_PUBLIC_URLS", "https://Hooks.Example.com")],
            "server.public_urls",
        ),
        (
            &[("HOOKLOG_SERVER_MAX_BODY_BYTES", "0")],
            "server.max_body_bytes",
        ),
        (
            &[("HOOKLOG_SERVER_ADMIN_TOKEN", "short")],
            "server.admin_token",
        ),
        (
            &[("HOOKLOG_SERVER_HEADER_READ_TIMEOUT_SECS", "0")],
            "server.header_read_timeout_secs",
        ),
        (
            &[("HOOKLOG_SERVER_BODY_READ_TIMEOUT_SECS", "0")],
            "server.body_read_timeout_secs",
        ),
        (
            &[("HOOKLOG_SERVER_MAX_HEADER_BYTES", "4096")],
            "server.max_header_bytes",
        ),
        (
            &[("HOOKLOG_SERVER_MAX_CONNECTIONS", "0")],
            "server.max_connections",
        ),
        (
            &[("HOOKLOG_SERVER_MAX_CONNECTIONS", "1000001")],
            "server.max_connections",
        ),
    ];
    for (vars, key) in cases {
        let err = Config::load_from(None, env(vars)).unwrap_err().to_string();
        assert!(err.contains(key), "expected `{key}` in: {err}");
        assert!(err.contains(vars[0].0), "expected the env var in: {err}");
    }
}

#[test]
fn unknown_keys_and_sections_are_errors_not_ignored() {
    let f = file("[server]\nlisten_addr = \"127.0.0.1:1\"\n");
    let err = Config::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen_addr"), "{err}");
    let f = file("[postgress]\nurl = \"x\"\n");
    let err = Config::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("postgress"), "{err}");
    let err = Config::load_from(None, env(&[("HOOKLOG_NOPE_X", "1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HOOKLOG_NOPE_X"), "{err}");
}

#[test]
fn invalid_toml_names_the_file_and_line() {
    let f = file("[server\nlisten = 1\n");
    let err = Config::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not valid TOML")
            && err.contains("line 1, column")
            && err.contains(&f.path().display().to_string())
            && err.contains("section header"),
        "{err}"
    );
}

/// Asserts that `err` says each of `says` and none of `secrets`.
fn says_without(err: &str, says: &[&str], secrets: &[&str]) {
    for s in says {
        assert!(err.contains(s), "expected `{s}` in: {err}");
    }
    for s in secrets {
        assert!(!err.contains(s), "the value `{s}` leaked into: {err}");
    }
}

#[test]
fn an_unquoted_secret_is_told_by_file_line_column_and_key_never_by_its_value() {
    for (toml, line, key) in [
        (
            "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[twilio]\nauth_tokens = [hunter2secretvalue]\n",
            "line 5, column 16",
            "key `twilio.auth_tokens`",
        ),
        (
            "[log.jetstream]\ntoken = s3cr3t-value-hunter2secretvalue\n",
            "line 2, column 9",
            "key `log.jetstream.token`",
        ),
        (
            "[salesmsg]\nsecrets = [\n  \"first-secret-1\",\n  hunter2secretvalue,\n]\n",
            "line 4, column 3",
            "key `salesmsg.secrets`",
        ),
        (
            "data_dir = hunter2secretvalue\n",
            "line 1, column 12",
            "key `data_dir`",
        ),
        (
            "[server]\nadmin_token = \"hunter2secretvalue\n",
            "line 2",
            "key `server.admin_token`",
        ),
    ] {
        let f = file(toml);
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        let path = f.path().display().to_string();
        says_without(
            &err,
            &[&path, line, key],
            &["hunter2", "s3cr3t", "first-secret"],
        );
    }
    let f = file("[twilio]\nauth_tokens = [hunter2secretvalue]\n");
    let err = Config::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be quoted"), "says what to do: {err}");
}

#[test]
fn a_value_of_the_wrong_type_or_form_is_told_without_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("tolerance");
    std::fs::write(&secret_file, "hunter2secretvalue\n").unwrap();
    // (file, environment, the key or variable named, what the message says)
    type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            Some("[openphone]\ntolerance_secs = \"hunter2secretvalue\"\n"),
            vec![],
            "openphone.tolerance_secs",
            "expected a whole number",
        ),
        (
            Some("[openphone]\ntolerance_secs = [\"hunter2secretvalue\"]\n"),
            vec![],
            "openphone.tolerance_secs",
            "wrong type",
        ),
        (
            Some("[twilio]\nauth_tokens = 5\n"),
            vec![],
            "twilio.auth_tokens",
            "expected a list of strings",
        ),
        (
            Some("[log]\nbackend = \"hunter2secretvalue\"\n"),
            vec![],
            "log.backend",
            "expected",
        ),
        (
            Some("[server]\nlisten = \"hunter2secretvalue\"\n"),
            vec![],
            "server.listen",
            "expected an address with a port",
        ),
        (
            None,
            vec![("HOOKLOG_SERVER_ADMIN_LISTEN", "hunter2secretvalue")],
            "HOOKLOG_SERVER_ADMIN_LISTEN",
            "server.admin_listen",
        ),
        (
            None,
            vec![("HOOKLOG_SALESMSG_TRUST_OPT_IN", "hunter2secretvalue")],
            "HOOKLOG_SALESMSG_TRUST_OPT_IN",
            "expected true or false",
        ),
        (
            None,
            vec![(
                "HOOKLOG_OPENPHONE_TOLERANCE_SECS_FILE",
                secret_file.to_str().unwrap(),
            )],
            "openphone.tolerance_secs_file",
            "expected a whole number",
        ),
    ];
    for (toml, vars, names, says) in cases {
        let f = toml.map(file);
        let err = Config::load_from(f.as_ref().map(|f| f.path()), env(&vars))
            .unwrap_err()
            .to_string();
        says_without(&err, &[names, says], &["hunter2"]);
    }
}

#[test]
fn a_bad_value_from_the_file_is_told_with_its_line_and_column() {
    let f = file(
        "data_dir = \"./d\"\n\n[openphone]\n# the clock\ntolerance_secs = \"hunter2secret\"\n",
    );
    let err = Config::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    let origin = format!("(from file {}, line 5, column 18)", f.path().display());
    says_without(
        &err,
        &[
            "`openphone.tolerance_secs`",
            &origin,
            "expected a whole number",
        ],
        &["hunter2"],
    );
    // A validation error too; a value from the environment names its variable instead.
    let f = file("[server]\nmax_body_bytes = 0\n");
    let err = Config::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains(", line 2, column 18)"), "{err}");
    assert_eq!(super::message::locate("[a]\nb = 1\n", "b"), None);
    assert_eq!(
        super::message::locate("b = 1\n[a]\n  b=2\n", "a.b"),
        Some((3, 5))
    );
}

#[test]
fn secret_lists_split_on_newlines_only_and_other_lists_on_commas_too() {
    let (c, _) = Config::load_from(
        None,
        env(&[
            (
                "HOOKLOG_SALESMSG_SECRETS",
                "first,with-comma\r\nsecond-secret\n\n",
            ),
            (
                "HOOKLOG_SERVER_LISTEN",
                "127.0.0.1:1,127.0.0.1:2\n127.0.0.1:3",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.salesmsg.secrets,
        vec![
            Secret::new("first,with-comma"),
            Secret::new("second-secret")
        ]
    );
    assert_eq!(c.server.listen.len(), 3);
    assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
    assert!(c.warnings()[0].contains("one per line"));
    assert!(!c.warnings()[0].contains("with-comma"));

    let keys = file(&format!(
        "{QUO_KEY}\nwhsec_bmV3LXF1by1rZXktYWZ0ZXItcm90YXRpb24tMzJi\n"
    ));
    let (c, _) = Config::load_from(
        None,
        env(&[(
            "HOOKLOG_OPENPHONE_SIGNING_KEYS_FILE",
            keys.path().to_str().unwrap(),
        )]),
    )
    .unwrap();
    assert_eq!(c.openphone.signing_keys.len(), 2);
    assert!(c.warnings().is_empty());
}

#[test]
fn comma_separated_provider_secrets_are_refused_with_one_per_line_as_the_fix() {
    for (var, value, key) in [
        (
            "HOOKLOG_TWILIO_AUTH_TOKENS",
            "old-token-hunter2aaaaaaa,new-token-hunter2bbbbbbb",
            "twilio.auth_tokens",
        ),
        (
            "HOOKLOG_OPENPHONE_SIGNING_KEYS",
            "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg=,aHVudGVyMg==",
            "openphone.signing_keys",
        ),
    ] {
        let err = Config::load_from(
            None,
            env(&[
                (var, value),
                ("HOOKLOG_SERVER_PUBLIC_URLS", "https://hooks.example.com"),
            ]),
        )
        .unwrap_err()
        .to_string();
        says_without(&err, &[key, var, "one per line"], &["hunter2", "aHVudGVy"]);
    }
}

#[test]
fn a_non_loopback_admin_listen_needs_allow_remote_admin_and_is_warned_about() {
    for addr in ["0.0.0.0:18800", "10.1.2.3:18800", "[::]:18800"] {
        let err = Config::load_from(None, env(&[("HOOKLOG_SERVER_ADMIN_LISTEN", addr)]))
            .unwrap_err()
            .to_string();
        says_without(
            &err,
            &[
                "server.admin_listen",
                "HOOKLOG_SERVER_ADMIN_LISTEN",
                "not a loopback address",
                "allow_remote_admin = true",
            ],
            &[],
        );
    }
    for addr in ["127.0.0.1:18800", "127.0.0.2:1", "[::1]:18800"] {
        let (c, _) =
            Config::load_from(None, env(&[("HOOKLOG_SERVER_ADMIN_LISTEN", addr)])).unwrap();
        assert!(c.warnings().is_empty(), "{addr}");
    }
    let f = file("[server]\nadmin_listen = \"0.0.0.0:18800\"\nallow_remote_admin = true\n");
    let (c, _) = Config::load_from(Some(f.path()), env(&[])).unwrap();
    assert!(c.server.allow_remote_admin);
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("0.0.0.0:18800") && warnings[0].contains("reachable from the network"),
        "{warnings:?}"
    );
}

#[test]
fn outgoing_urls_must_be_https_unless_loopback() {
    let routes = file(
        "[dispatch]\ntoken = \"gw-token-0123456789\"\n\
         [[dispatch.routes]]\nkinds = [\"*\"]\nagent = \"a\"\n",
    );
    for (var, url, key) in [
        (
            "HOOKLOG_OPENPHONE_API_BASE",
            "http://api.openphone.com",
            "openphone.api_base",
        ),
        (
            "HOOKLOG_TWILIO_API_BASE",
            "http://api.twilio.com",
            "twilio.api_base",
        ),
        (
            "HOOKLOG_DISPATCH_URL",
            "http://gw.example/v1?t=hunter2",
            "dispatch.url",
        ),
        (
            "HOOKLOG_ALERTS_DISCORD_WEBHOOK_URL",
            "http://discord.com/api/webhooks/1/hunter2",
            "alerts.discord_webhook_url",
        ),
    ] {
        let err = Config::load_from(Some(routes.path()), env(&[(var, url)]))
            .unwrap_err()
            .to_string();
        says_without(&err, &[key, var, "must be https://"], &["hunter2"]);
    }
    let (c, _) = Config::load_from(
        Some(routes.path()),
        env(&[
            ("HOOKLOG_OPENPHONE_API_BASE", "http://127.0.0.1:9"),
            ("HOOKLOG_TWILIO_API_BASE", "http://localhost:9"),
            ("HOOKLOG_DISPATCH_URL", "http://[::1]:9/v1/dispatch"),
            (
                "HOOKLOG_ALERTS_DISCORD_WEBHOOK_URL",
                "https://discord.com/api/webhooks/1/t",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(c.twilio.api_base, "http://localhost:9");
}

#[test]
fn tolerance_may_not_exceed_the_dedup_window() {
    let err = Config::load_from(
        None,
        env(&[
            ("HOOKLOG_OPENPHONE_TOLERANCE_SECS", "7200"),
            ("HOOKLOG_DEDUP_TTL_HOURS", "1"),
        ]),
    )
    .unwrap_err()
    .to_string();
    says_without(
        &err,
        &[
            "openphone.tolerance_secs",
            "HOOKLOG_OPENPHONE_TOLERANCE_SECS",
            "dedup window",
            "HOOKLOG_DEDUP_TTL_HOURS",
            "Lower tolerance_secs or raise ttl_hours",
        ],
        &[],
    );
    let (c, _) = Config::load_from(
        None,
        env(&[
            ("HOOKLOG_OPENPHONE_TOLERANCE_SECS", "3600"),
            ("HOOKLOG_DEDUP_TTL_HOURS", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.openphone.tolerance_secs, 3600,
        "equal to the window is fine"
    );
}

#[test]
fn secrets_never_appear_in_debug_or_rendered_config() {
    let (c, _) = Config::load_from(
        None,
        env(&[
            ("HOOKLOG_TWILIO_AUTH_TOKENS", "supersecret-token-1"),
            ("HOOKLOG_SERVER_PUBLIC_URLS", "https://hooks.example.com"),
            ("HOOKLOG_SALESMSG_SECRETS", "salesmsg-secret-2"),
            ("HOOKLOG_OPENPHONE_SIGNING_KEYS", QUO_KEY),
            ("HOOKLOG_SERVER_ADMIN_TOKEN", "admin-token-abcdefgh"),
        ]),
    )
    .unwrap();
    let debug = format!("{c:?}");
    let rendered = c.to_redacted_toml();
    for secret in [
        "supersecret-token-1",
        "salesmsg-secret-2",
        QUO_KEY,
        "admin-token-abcdefgh",
    ] {
        assert!(!debug.contains(secret), "{secret} in Debug");
        assert!(!rendered.contains(secret), "{secret} in rendered config");
    }
    assert!(rendered.contains("<redacted>"));
}

#[test]
fn the_postgres_url_comes_from_a_file_and_never_shows_and_bad_keys_are_named() {
    let url = file("postgres://u:pw-secret-9@db.example.com:6543/postgres?sslmode=require\n");
    let (c, _) = Config::load_from(
        None,
        env(&[
            ("HOOKLOG_POSTGRES_URL_FILE", url.path().to_str().unwrap()),
            ("HOOKLOG_POSTGRES_BATCH", "250"),
            ("HOOKLOG_POSTGRES_SCHEMA", "hooklog"),
            ("HOOKLOG_POSTGRES_MIGRATE_ON_START", "false"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.postgres.url.as_ref().unwrap().expose(),
        "postgres://u:pw-secret-9@db.example.com:6543/postgres?sslmode=require"
    );
    assert_eq!(
        (
            c.postgres.batch,
            c.postgres.schema.as_str(),
            c.postgres.migrate_on_start
        ),
        (250, "hooklog", false)
    );
    assert!(!c.to_redacted_toml().contains("pw-secret-9"));
    assert!(!format!("{c:?}").contains("pw-secret-9"));

    let (c, _) = Config::load_from(None, env(&[])).unwrap();
    assert!(c.postgres.url.is_none(), "no sync unless configured");
    for (var, value, key) in [
        ("HOOKLOG_POSTGRES_SCHEMA", "Bad-Name", "postgres.schema"),
        ("HOOKLOG_POSTGRES_BATCH", "0", "postgres.batch"),
        (
            "HOOKLOG_POSTGRES_URL",
            "postgres://h/db?sslmode=sometimes",
            "postgres.url",
        ),
    ] {
        let err = Config::load_from(None, env(&[(var, value)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(var), "{err}");
    }
}

#[test]
fn setting_a_key_and_its_file_twice_is_an_error() {
    let secret = file("x");
    let err = Config::load_from(
        None,
        env(&[
            ("HOOKLOG_SALESMSG_SECRETS", "abcdefghij"),
            (
                "HOOKLOG_SALESMSG_SECRETS_FILE",
                secret.path().to_str().unwrap(),
            ),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("keep one"), "{err}");
}

#[test]
fn retention_keys_default_to_keep_forever_and_are_validated() {
    let (c, _) = Config::load_from(None, env(&[])).unwrap();
    assert_eq!((c.log.retention_days, c.log.prune_interval_secs), (0, 3600));
    let f = file("[log]\nretention_days = 30\nprune_interval_secs = 600\n");
    let (c, _) =
        Config::load_from(Some(f.path()), env(&[("HOOKLOG_LOG_RETENTION_DAYS", "14")])).unwrap();
    assert_eq!((c.log.retention_days, c.log.prune_interval_secs), (14, 600));
    let err = Config::load_from(None, env(&[("HOOKLOG_LOG_PRUNE_INTERVAL_SECS", "0")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("log.prune_interval_secs"), "{err}");
    let err = Config::load_from(None, env(&[("HOOKLOG_LOG_RETENTION_DAYS", "99999")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("log.retention_days"), "{err}");
}

#[test]
fn salesmsg_opt_ins_are_distrusted_unless_trust_opt_in_is_set_and_a_bad_value_names_the_key() {
    let (c, _) = Config::load_from(None, env(&[])).unwrap();
    assert!(!c.salesmsg.trust_opt_in, "fail closed by default");
    let f = file("[salesmsg]\ntrust_opt_in = true\n");
    let (c, _) = Config::load_from(Some(f.path()), env(&[])).unwrap();
    assert!(c.salesmsg.trust_opt_in);
    let (c, _) = Config::load_from(
        Some(f.path()),
        env(&[("HOOKLOG_SALESMSG_TRUST_OPT_IN", "false")]),
    )
    .unwrap();
    assert!(!c.salesmsg.trust_opt_in);
    let err = Config::load_from(None, env(&[("HOOKLOG_SALESMSG_TRUST_OPT_IN", "maybe")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("salesmsg.trust_opt_in"), "{err}");
}

#[test]
fn agent_tokens_come_from_the_file_a_file_of_their_own_or_the_environment() {
    let secret = file("acq-token-0123456789abcdef\n");
    let f = file(&format!(
        "[server.agent_tokens]\nacquisitions_file = \"{}\"\ndispo = \"dispo-token-0123456789\"\n",
        secret.path().display()
    ));
    let (c, prov) = Config::load_from(
        Some(f.path()),
        env(&[(
            "HOOKLOG_SERVER_AGENT_TOKENS_FOLLOW_UP",
            "follow-token-0123456789",
        )]),
    )
    .unwrap();
    let tokens: Vec<(&str, &str)> = c
        .server
        .agent_tokens
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        tokens,
        vec![
            ("acquisitions", "acq-token-0123456789abcdef"),
            ("dispo", "dispo-token-0123456789"),
            ("follow_up", "follow-token-0123456789"),
        ]
    );
    assert!(prov
        .origin("server.agent_tokens.acquisitions")
        .contains("acquisitions_file"));
    assert!(
        !c.to_redacted_toml().contains("dispo-token"),
        "agent tokens are secrets"
    );
}

#[test]
fn a_bad_agent_token_is_refused_with_what_to_do() {
    let admin = "operator-token-0123456789";
    for (toml, key, says) in [
        (
            "[server.agent_tokens]\nAcquisitions = \"acq-token-0123456789\"\n",
            "server.agent_tokens.Acquisitions",
            "lower-case letters",
        ),
        (
            "[server.agent_tokens]\nacquisitions = \"short\"\n",
            "server.agent_tokens.acquisitions",
            "openssl rand",
        ),
        (
            "[server.agent_tokens]\nacquisitions = \"\"\n",
            "server.agent_tokens.acquisitions",
            "at least 16",
        ),
        (
            "[server.agent_tokens]\na = \"same-token-0123456789\"\nb = \"same-token-0123456789\"\n",
            "server.agent_tokens.b",
            "server.agent_tokens.a",
        ),
        (
            &format!(
                "[server]\nadmin_token = \"{admin}\"\n[server.agent_tokens]\na = \"{admin}\"\n"
            ),
            "server.agent_tokens.a",
            "token of its own",
        ),
    ] {
        let f = file(toml);
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(says), "{toml}: {err}");
    }
}
