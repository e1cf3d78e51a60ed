//! `hooklog-replay lines import` against the fake Quo and Twilio APIs of the library's tests
//! (`fake_providers`: documented shapes, the fake checks the credentials, Twilio pages by
//! `next_page_uri`, injected 429s), merging into a configuration file that the real `hooklog
//! check-config` binary must then accept.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::json;

use crate::support::fake_providers::{self, FakeApi, Fault, LINE_1, LINE_2, QUO_KEY};
use crate::support::{self};

/// The `hooklog` binary of this build, beside `hooklog-replay`. `cargo test -p
/// hooklog-replay` alone builds only this package's binaries, so it is built here first
/// (nothing to do when `cargo test --workspace` built it already).
fn hooklog_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let replay = Path::new(env!("CARGO_BIN_EXE_hooklog-replay"));
        let dir = replay.parent().unwrap();
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // What `cargo test` sets for this test process only: some build scripts watch these
        // (ring: CARGO_MANIFEST_DIR), and a changed value rebuilds half the tree.
        for (k, _) in std::env::vars() {
            let of_this_test = k == "OUT_DIR"
                || [
                    "CARGO_MANIFEST_",
                    "CARGO_PKG_",
                    "CARGO_BIN_",
                    "CARGO_CRATE_",
                ]
                .iter()
                .any(|p| k.starts_with(p))
                || [
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&k.as_str());
            if of_this_test {
                cargo.env_remove(k);
            }
        }
        cargo
            .args([
                "build", "--locked", "--quiet", "-p", "hooklog", "--bin", "hooklog",
            ])
            .arg("--target-dir")
            .arg(dir.parent().unwrap())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().unwrap();
        assert!(status.success(), "building the hooklog binary failed");
        dir.join("hooklog")
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A configuration whose Quo and Twilio APIs are `fake`, with `lines` (TOML) at the end.
fn config_file(dir: &Path, fake: &FakeApi, quo_key: &str, lines: &str) -> PathBuf {
    let sid = fake.with(|st| st.twilio_sid.clone());
    let path = dir.join("hooklog.toml");
    std::fs::write(
        &path,
        format!(
            "# Production settings; edited by hand.\n\
             data_dir = {:?}\n\n\
             [server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n\
             public_urls = [\"https://hooks.example.com\"]\n\n\
             [openphone]\napi_key = \"{quo_key}\"   # rotated in March\napi_base = \"{base}\"\n\n\
             [twilio]\nauth_tokens = [\"twilio-test-token\"]\naccount_sid = \"{sid}\"\n\
             api_base = \"{base}\"\n{lines}",
            dir.join("data").to_str().unwrap(),
            base = fake.base(),
        ),
    )
    .unwrap();
    path
}

/// `hooklog-replay --config FILE lines import ARGS`.
fn import(config: &Path, args: &[&str]) -> Output {
    // No daemon: the import never asks one (the admin URL only has to parse).
    support::cli(config, "http://127.0.0.1:9")
        .args(["lines", "import"])
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `hooklog --config FILE check-config` must accept the file; returns what it printed.
fn check_config(config: &Path) -> String {
    let mut cmd = Command::new(hooklog_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("HOOKLOG_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .arg("--config")
        .arg(config)
        .arg("check-config")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&out)
}

fn lines_of(config: &Path) -> Vec<toml::Value> {
    let v: toml::Value = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    v["lines"].as_array().unwrap().clone()
}

fn line<'a>(lines: &'a [toml::Value], number: &str) -> &'a toml::Value {
    lines
        .iter()
        .find(|l| l["number"].as_str() == Some(number))
        .unwrap_or_else(|| panic!("no line {number}"))
}

const OPERATOR_LINE: &str = "\n# Our first line. Approved 2026-02-11, campaign CX42.\n\
[[lines]]\nid = \"front-desk\"\nnumber = \"+15550000001\"\nprovider = \"openphone\"\n\
ten_dlc = \"approved\"   # do not touch\nbusiness_name = \"Acme Homes\"\n";

#[test]
fn lines_imported_from_quo_after_a_429_merge_into_the_file_and_hooklog_check_config_accepts_it() {
    let fake = FakeApi::start(fake_providers::quo_day());
    fake.with(|st| {
        st.phone_numbers
            .push(json!({"id": "PN3", "number": "+15550000003",
            "name": "Sales \"East\"\n[[lines]]\nid = \"evil\"", "users": []}));
        st.phone_numbers
            .push(json!({"id": "PN4", "number": "555-0004", "name": "Bad", "users": []}));
        st.faults.push_back(Fault {
            status: 429,
            retry_after: Some("1".into()),
        });
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &fake, QUO_KEY, OPERATOR_LINE);
    let before = std::fs::read_to_string(&config).unwrap();

    let stdout = ok(&import(
        &config,
        &["--from", "quo", "--merge", config.to_str().unwrap()],
    ));
    assert!(
        stdout.contains("2 added, 1 filled, 0 unchanged, 0 differing, 0 missing, 1 skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("skipped    PN4: its number `555-0004` is not E.164"),
        "{stdout}"
    );
    assert!(
        stdout.contains("business_name = \"Acme Homes\" on new lines"),
        "{stdout}"
    );
    assert!(stdout.contains("wrote "), "{stdout}");

    // The fake was asked twice (the 429, then the answer), with the raw key both times.
    let seen = fake.seen();
    assert_eq!(
        seen.iter()
            .map(|s| (s.path.as_str(), s.status))
            .collect::<Vec<_>>(),
        [("/v1/phone-numbers", 429), ("/v1/phone-numbers", 200)]
    );
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some(QUO_KEY)));

    // The operator's line keeps its settings and its comments, and gets its PN id.
    let after = std::fs::read_to_string(&config).unwrap();
    for kept in [
        "# Production settings; edited by hand.\n",
        "api_key = \"quo-test-key\"   # rotated in March\n",
        "# Our first line. Approved 2026-02-11, campaign CX42.\n[[lines]]\nid = \"front-desk\"\n",
        "ten_dlc = \"approved\"   # do not touch\n",
    ] {
        assert!(after.contains(kept), "lost {kept:?}:\n{after}");
    }
    let lines = lines_of(&config);
    assert_eq!(lines.len(), 3);
    let first = line(&lines, LINE_1);
    assert_eq!(first["id"].as_str(), Some("front-desk"));
    assert_eq!(first["ten_dlc"].as_str(), Some("approved"));
    assert_eq!(first["business_name"].as_str(), Some("Acme Homes"));
    assert_eq!(first["phone_number_id"].as_str(), Some("PN1"));
    let second = line(&lines, LINE_2);
    assert_eq!(second["id"].as_str(), Some("quo-second"));
    assert_eq!(second["phone_number_id"].as_str(), Some("PN2"));
    assert_eq!(second["ten_dlc"].as_str(), Some("pending"));
    let third = line(&lines, "+15550000003");
    assert_eq!(third["id"].as_str(), Some("quo-sales-east-lines-id-evil"));
    assert_eq!(third["ten_dlc"].as_str(), Some("pending"));
    assert!(!lines.iter().any(|l| l["id"].as_str() == Some("evil")));
    assert_eq!(
        std::fs::read_to_string(config.with_extension("toml.bak")).unwrap(),
        before
    );

    let checked = check_config(&config);
    assert!(checked.contains("phone_number_id = \"PN1\""), "{checked}");
    assert!(checked.trim_end().ends_with("# ok"), "{checked}");

    // What the sender makes of the imported lines: hooklog loads the merged file, and a Quo
    // send from each line names it by its PN id in `from` (the sender's own test shows the
    // request going out with it).
    let (loaded, _) = hooklog::config::Config::load_from(Some(&config), std::iter::empty())
        .expect("hooklog loads the merged file");
    for (number, pn) in [(LINE_1, "PN1"), (LINE_2, "PN2"), ("+15550000003", "PN3")] {
        let line = loaded
            .lines
            .iter()
            .find(|l| l.number == number)
            .unwrap_or_else(|| panic!("no line {number}"));
        assert_eq!(line.sender_id(), pn);
        let request = hooklog::send::quo::build_request(
            &fake.base(),
            &hooklog::config::secret::Secret::new(QUO_KEY),
            &hooklog::send::OutboundMessage {
                from: line.sender_id().to_owned(),
                to: "+12125550100".into(),
                content: "Hi from Acme Homes. Reply STOP to opt out".into(),
            },
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["from"], pn, "{body}");
        assert!(body.get("phoneNumberId").is_none(), "{body}");
    }

    // Once more: nothing changes and nothing is written.
    fake.with(|st| st.seen.clear());
    let stdout = ok(&import(
        &config,
        &["--from", "quo", "--merge", config.to_str().unwrap()],
    ));
    assert!(
        stdout.contains("0 added, 0 filled, 3 unchanged"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing to change"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), after);
}

#[test]
fn twilio_numbers_over_two_pages_merge_beside_an_approved_line_that_keeps_its_settings() {
    let fake = FakeApi::start(fake_providers::quo_day());
    let sid = fake.with(|st| st.twilio_sid.clone());
    fake.with(|st| {
        st.twilio_numbers = vec![
            json!({"sid": "PNt1", "account_sid": sid, "phone_number": "+15550000009",
                   "friendly_name": "(555) 000-0009", "capabilities": {"sms": true}}),
            json!({"sid": "PNt2", "account_sid": sid, "phone_number": "+15550000010",
                   "friendly_name": "Night line", "capabilities": {"sms": true}}),
            json!({"sid": "PNt3", "account_sid": sid, "phone_number": "+15550000011",
                   "friendly_name": "Night line", "capabilities": {"sms": true}}),
        ];
    });
    let dir = tempfile::tempdir().unwrap();
    let operator = "\n[[lines]]\nid = \"tw-main\"\nnumber = \"+15550000009\"\nprovider = \"twilio\"\n\
                    ten_dlc = \"approved\"\nbusiness_name = \"Acme Homes\"\n\n\
                    [[lines]]\nid = \"tw-retired\"\nnumber = \"+15550000077\"\nprovider = \"twilio\"\n\
                    ten_dlc = \"rejected\"\nbusiness_name = \"Acme Realty\"\n";
    let config = config_file(dir.path(), &fake, QUO_KEY, operator);

    // Printed first: every listed number, as TOML.
    let printed = ok(&import(&config, &["--from", "twilio"]));
    let v: toml::Value = toml::from_str(&printed).unwrap();
    assert_eq!(v["lines"].as_array().unwrap().len(), 3, "{printed}");

    // A dry run shows the change and writes nothing.
    let before = std::fs::read_to_string(&config).unwrap();
    let dry = ok(&import(
        &config,
        &[
            "--from",
            "twilio",
            "--merge",
            config.to_str().unwrap(),
            "--dry-run",
        ],
    ));
    assert!(dry.contains("+number = \"+15550000010\""), "{dry}");
    assert!(dry.contains("dry run: "), "{dry}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    assert!(!config.with_extension("toml.bak").exists());

    fake.with(|st| st.seen.clear());
    let stdout = ok(&import(
        &config,
        &["--from", "twilio", "--merge", config.to_str().unwrap()],
    ));
    assert!(
        stdout.contains("2 added, 0 filled, 1 unchanged, 0 differing, 1 missing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("missing    tw-retired +15550000077"),
        "{stdout}"
    );
    // Two business names in the file: new lines get the placeholder, and the report says so.
    assert!(
        stdout.contains("the configuration requires one"),
        "{stdout}"
    );

    // Two pages (the fake gives at most 2 numbers a page), HTTP Basic on both.
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.path == format!("/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json")));
    assert_eq!(seen[1].param("PageToken"), Some("PN2"));
    assert!(seen.iter().all(|s| s
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic "))));

    let lines = lines_of(&config);
    let main = line(&lines, "+15550000009");
    assert_eq!(main["ten_dlc"].as_str(), Some("approved"));
    assert_eq!(main["business_name"].as_str(), Some("Acme Homes"));
    assert!(main.get("phone_number_id").is_none());
    assert!(
        line(&lines, "+15550000077").get("id").is_some(),
        "never deleted"
    );
    assert_eq!(
        line(&lines, "+15550000010")["id"].as_str(),
        Some("twilio-night-line-0010")
    );
    assert_eq!(
        line(&lines, "+15550000011")["id"].as_str(),
        Some("twilio-night-line-0011")
    );
    check_config(&config);
}

#[test]
fn a_refused_key_names_the_setting_to_check_and_leaves_the_file_alone() {
    let fake = FakeApi::start(fake_providers::quo_day());
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &fake, "not-the-key", OPERATOR_LINE);
    let before = std::fs::read_to_string(&config).unwrap();
    let out = import(
        &config,
        &["--from", "quo", "--merge", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the Quo API key was refused (401): check [openphone] api_key"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-key"), "{stderr}");
    assert_eq!(fake.seen().len(), 1, "a refused key is not retried");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    assert!(!config.with_extension("toml.bak").exists());
}
