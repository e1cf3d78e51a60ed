//! Configuration errors, with the real binary: a file that does not parse, a value of the wrong
//! form, from the file, the environment or a `*_file`, is named by file, line and key (or the
//! variable), and the value is in no output of `check-config` or `serve`, which is what the
//! systemd unit runs (its output goes to the journal). And the admin listener off loopback:
//! refused unless allowed, warned about when allowed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `hooklog <args>` with only `env` (and PATH), in `cwd`, logging at debug: a secret
/// must be in no output, debug lines included.
fn hooklog(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let env: Vec<(&str, &str)> = [("RUST_LOG", "debug")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    crate::ops::hooklog(cwd, args, &env)
}

/// stdout and stderr together.
fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn an_unquoted_secret_fails_check_config_and_serve_naming_file_line_and_key_but_not_the_secret() {
    let tmp = crate::engine::tempdir();
    let file = tmp.path().join("hooklog.toml");
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    for (toml, line, key) in [
        (
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[twilio]\nauth_tokens = [hunter2secretvalue]\n",
            "line 5, column 16",
            "key `twilio.auth_tokens`",
        ),
        (
            "[log]\nbackend = \"jetstream\"\n[log.jetstream]\ntoken = s3cr3t-value\n",
            "line 4, column 9",
            "key `log.jetstream.token`",
        ),
        (
            "[openphone]\nsigning_keys = [\n  \"whsec_aGVsbG8=\",\n  hunter2secretvalue\n]\n",
            "line 4, column 3",
            "key `openphone.signing_keys`",
        ),
    ] {
        std::fs::write(&file, toml).unwrap();
        for command in ["check-config", "serve"] {
            let out = hooklog(
                tmp.path(),
                &["--config", file.to_str().unwrap(), command],
                &[("HOOKLOG_DATA_DIR", data)],
            );
            let all = all_output(&out);
            assert_eq!(out.status.code(), Some(1), "{command}: {all}");
            for says in [file.to_str().unwrap(), line, key, "must be quoted"] {
                assert!(all.contains(says), "{command}: expected `{says}` in: {all}");
            }
            for secret in ["hunter2", "s3cr3t", "aGVsbG8"] {
                assert!(!all.contains(secret), "{command}: `{secret}` leaked: {all}");
            }
        }
    }
}

#[test]
fn a_bad_value_from_the_file_the_environment_or_a_secret_file_is_named_but_never_shown() {
    let tmp = crate::engine::tempdir();
    let file = tmp.path().join("hooklog.toml");
    let secret = tmp.path().join("tolerance");
    std::fs::write(&secret, "hunter2secretvalue\n").unwrap();
    let secret = secret.to_str().unwrap();
    // (file, environment, what the error says)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 4] = [
        (
            "[openphone]\ntolerance_secs = \"hunter2secretvalue\"\n",
            &[],
            &[
                "openphone.tolerance_secs",
                "hooklog.toml",
                "expected a whole number",
            ],
        ),
        (
            "[server]\nadmin_token = [\"hunter2secretvalue\"]\n",
            &[],
            &["server.admin_token", "wrong type"],
        ),
        (
            "",
            &[("HOOKLOG_SERVER_LISTEN", "hunter2secretvalue")],
            &[
                "server.listen",
                "HOOKLOG_SERVER_LISTEN",
                "expected an address",
            ],
        ),
        (
            "",
            &[("HOOKLOG_OPENPHONE_TOLERANCE_SECS_FILE", secret)],
            &[
                "openphone.tolerance_secs",
                "HOOKLOG_OPENPHONE_TOLERANCE_SECS_FILE",
                "expected a whole number",
            ],
        ),
    ];
    for (toml, env, says) in cases {
        std::fs::write(&file, toml).unwrap();
        for command in ["check-config", "serve"] {
            let out = hooklog(tmp.path(), &[command], env);
            let all = all_output(&out);
            assert_eq!(out.status.code(), Some(1), "{command}: {all}");
            for s in says {
                assert!(all.contains(s), "{command}: expected `{s}` in: {all}");
            }
            assert!(
                !all.contains("hunter2"),
                "{command}: the value leaked: {all}"
            );
        }
    }
}

#[test]
fn an_admin_listener_off_loopback_is_refused_unless_allowed_and_then_served_with_a_warning() {
    let tmp = crate::engine::tempdir();
    let data = tmp.path().to_str().unwrap().to_owned();
    let public = std::net::SocketAddr::from(([127, 0, 0, 1], crate::crash::free_port()));
    let admin = format!("0.0.0.0:{}", crate::crash::free_port());
    let mut env: Vec<(String, String)> = crate::engine::env_for(tmp.path());
    env.extend(
        [
            ("HOOKLOG_DATA_DIR", data.as_str()),
            ("HOOKLOG_SERVER_LISTEN", &public.to_string()),
            ("HOOKLOG_SERVER_ADMIN_LISTEN", &admin),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for command in ["check-config", "serve"] {
        let out = hooklog(tmp.path(), &[command], &refs);
        let all = all_output(&out);
        assert_eq!(out.status.code(), Some(1), "{command}: {all}");
        for says in [
            "server.admin_listen",
            "HOOKLOG_SERVER_ADMIN_LISTEN",
            "not a loopback address",
            "allow_remote_admin = true",
        ] {
            assert!(all.contains(says), "{command}: expected `{says}` in: {all}");
        }
    }

    let mut allowed = refs.clone();
    allowed.push(("HOOKLOG_SERVER_ALLOW_REMOTE_ADMIN", "true"));
    let out = hooklog(tmp.path(), &["check-config"], &allowed);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    assert!(
        stdout.contains(&format!("# warning: server.admin_listen is {admin}"))
            && stdout.trim_end().ends_with("# ok"),
        "{stdout}"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_hooklog"))
        .arg("serve")
        .current_dir(tmp.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(allowed.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hooklog binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let warned = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("WARN") && line.contains("reachable from the network") => {
                break true
            }
            Ok(line) => seen.push(line),
            Err(_) if Instant::now() > deadline => break false,
            Err(_) => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("the daemon exited with {status}: {seen:?}");
                }
            }
        }
    };
    // The warning comes before the listeners; SIGTERM is handled once the daemon serves.
    while warned && crate::util::get(public, "/readyz").0 != 200 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the daemon exited with {status} before it was ready");
        }
        assert!(
            Instant::now() < deadline,
            "the daemon was not ready in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(warned, "no warning logged at start: {seen:?}");
    assert!(
        status.success(),
        "the daemon was serving and stops cleanly: {status}"
    );
}
