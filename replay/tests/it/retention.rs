//! Retention end to end: the daemon's retention task prunes old records once every consumer
//! has passed them, `status` reports the first remaining record, and `drop-cursor` releases a
//! retired consumer's hold.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use hooklog::event::{Event, Micros, Seq, Source, Verification};
use hooklog::log::sled::SledLog;
use hooklog::log::Log;
use hooklog::metrics::Metrics;
use serde_json::Value;

use crate::support;

fn write_config(dir: &Path, data_dir: &Path) -> PathBuf {
    let config = dir.join("hooklog.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n\
             shutdown_grace_secs = 2\npublic_urls = [\"https://hooks.example.net\"]\n\
             [log]\nretention_days = 1\nprune_interval_secs = 1\n",
            data_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    config
}

/// Writes `n` records received in 2020 (long past any retention) into a stopped data
/// directory, then `recent` received now.
fn seed(data_dir: &Path, n: usize, recent: usize, cursors: &[(&str, u64)]) {
    let log = SledLog::open(
        &hooklog::log_dir(data_dir),
        &Default::default(),
        Metrics::new(),
    )
    .unwrap();
    let old = Micros(1_577_836_800_000_000); // 2020-01-01
    let events = (0..n + recent)
        .map(|i| Event {
            seq: Seq(0),
            received_at: if i < n {
                Micros(old.0 + i as i64)
            } else {
                Micros::now()
            },
            source: Source::BackfillTwilio,
            route: "/test".into(),
            headers: Vec::new(),
            body: format!("Body=hi+{i}").into_bytes(),
            verification: Verification::AdminToken,
        })
        .collect();
    hooklog::log::restore(&log, events).unwrap();
    for (name, seq) in cursors {
        log.store_cursor(name, Seq(*seq)).unwrap();
    }
    log.close().unwrap();
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn direct_status(config: &Path) -> Value {
    let o = ok(support::cli(config, "http://127.0.0.1:9")
        .args(["--direct", "status", "--json"])
        .output()
        .unwrap());
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn the_daemon_prunes_old_records_once_consumers_pass_them_and_status_shows_first_seq() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = write_config(dir.path(), &data_dir);
    seed(&data_dir, 30, 5, &[]);
    let mut daemon = support::InProcess::start(&config);
    let token = support::token(&data_dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s: Value = ureq::get(&format!("{}/admin/status", daemon.admin_url))
            .set("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        // Every consumer catches up, so the age alone bounds it: records 1..=30 go.
        if s["log"]["first_seq"].as_u64().unwrap() == 31 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the old records were not pruned: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    daemon.stop();
    // The recent records stay, and status (the daemon's and the CLI's) tells the truth.
    assert_eq!(status["log"]["last_seq"], 35, "{status}");
    assert_eq!(status["log"]["count"], 5, "{status}");
    let offline = direct_status(&config);
    assert_eq!(offline["log"]["first_seq"], 31, "{offline}");
    assert_eq!(offline["log"]["count"], 5, "{offline}");
}

#[test]
fn drop_cursor_releases_a_retired_consumers_hold() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = write_config(dir.path(), &data_dir);
    // A consumer switched off (no such consumer runs here) waits at 0.
    seed(&data_dir, 10, 0, &[("retired-sink", 0)]);
    let cli = |args: &[&str]| {
        ok(support::cli(&config, "http://127.0.0.1:9")
            .arg("--direct")
            .args(args)
            .output()
            .unwrap())
    };
    let prune = || {
        let log = SledLog::open(
            &hooklog::log_dir(&data_dir),
            &Default::default(),
            Metrics::new(),
        )
        .unwrap();
        let (_, report) = hooklog::consumers::retention::prune_once(
            &log,
            log.state().as_ref(),
            &[],
            1,
            Micros::now(),
            &Metrics::new(),
        )
        .unwrap();
        log.close().unwrap();
        report
    };
    assert_eq!(
        prune().pruned,
        0,
        "the retired sink's cursor holds every record"
    );
    let o = cli(&["drop-cursor", "retired-sink"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("dropped the cursor of retired-sink"),
        "{text}"
    );
    let o = cli(&["drop-cursor", "retired-sink"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to do"));
    // Nothing else holds them now: all but the last record go (the last keeps the sequence).
    let report = prune();
    assert_eq!((report.pruned, report.first_seq), (9, 10));
    assert_eq!(direct_status(&config)["log"]["first_seq"], 10);
}
