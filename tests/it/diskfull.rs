//! A disk that really fills up: the real binary on a small tmpfs that the test fills with a
//! file. These tests mount a file system, so they need root (CAP_SYS_ADMIN), as this project's
//! CI machines give; without it they fail with a message saying so rather than skip.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crash::{free_port, load, spawn_daemon_with, stored_sids_with, Daemon};
use crate::edge::twilio_sms;
use crate::util;

/// A tmpfs of a fixed size, unmounted when dropped.
struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("fs");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&mnt)
            .output()
            .expect("`mount` runs");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs to fill it for real, which needs root \
             (CAP_SYS_ADMIN); mount said: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { mnt, _dir: dir }
    }

    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.mnt).unwrap();
        #[allow(clippy::useless_conversion)]
        let free = u64::from(st.blocks_available()) * u64::from(st.fragment_size());
        free
    }

    /// Writes a filler file until only `leave` bytes are free (0: until the disk is full).
    fn fill(&self, leave: u64) -> PathBuf {
        let path = self.mnt.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            let free = self.free();
            if free <= leave {
                break;
            }
            let n = (free - leave).min(chunk.len() as u64) as usize;
            match f.write_all(&chunk[..n]) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC: full
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        f.sync_all().ok();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn send(addr: std::net::SocketAddr, sid: &str) -> util::Response {
    let (path, headers, body) = twilio_sms(sid);
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    util::request(addr, "POST", &path, &h, &body)
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(daemon: &mut Daemon) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    daemon.child.wait().unwrap()
}

/// These tests are about sled on a full disk (its reserve, its failed writes), so they run
/// on sled in the JetStream pass too.
const SLED: (&str, &str) = ("HOOKLOG_LOG_BACKEND", "sled");

fn start(data: &Path, min_free_mb: u64) -> Daemon {
    let mut ports = (free_port(), free_port());
    spawn_daemon_with(
        data,
        &mut ports,
        &[
            ("HOOKLOG_LOG_MIN_FREE_MB", min_free_mb.to_string()),
            (SLED.0, SLED.1.to_owned()),
        ],
    )
}

#[test]
fn a_disk_filled_below_the_reserve_gets_503_and_service_resumes_by_itself_when_space_returns() {
    let fs = Tmpfs::mount(64);
    let data = fs.mnt.join("data");
    let mut daemon = start(&data, 16);
    for sid in ["SMa1", "SMa2"] {
        assert_eq!(send(daemon.public, sid).status, 200);
    }

    let filler = fs.fill(8 * 1024 * 1024);
    for sid in ["SMb1", "SMb2"] {
        let r = send(daemon.public, sid);
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.header("retry-after"), Some("5"));
    }
    assert_eq!(util::get(daemon.public, "/readyz").0, 503);

    // Space returns: readiness comes back without a request, then the providers' retries land.
    std::fs::remove_file(filler).unwrap();
    wait_until("ready again", 10, || {
        util::get(daemon.public, "/readyz").0 == 200
    });
    for sid in ["SMc1", "SMb1", "SMb2"] {
        assert_eq!(send(daemon.public, sid).status, 200);
    }
    assert!(
        sigterm(&mut daemon).success(),
        "the daemon was never stopped by the full disk"
    );
    assert_eq!(
        stored_sids_with(&data, &[SLED]),
        ["SMa1", "SMa2", "SMc1", "SMb1", "SMb2"],
        "what was refused was not stored; everything acknowledged was"
    );
}

#[test]
fn a_write_that_fails_on_a_full_disk_stops_the_daemon_and_a_restart_loses_nothing_acknowledged() {
    let fs = Tmpfs::mount(32);
    let data = fs.mnt.join("data");
    // No reserve: sled itself meets the full disk.
    let mut daemon = start(&data, 0);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load("SM", daemon.public, 0, 4, stop.clone(), acked.clone());
    wait_until("acknowledged under load", 10, || {
        acked.lock().unwrap().len() >= 50
    });

    let filler = fs.fill(0);
    let status = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon still runs on a failed log after 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(
        status.code(),
        Some(1),
        "a failed log stops the daemon with an error, for its service manager to restart it"
    );

    // The operator frees space; the service manager starts hooklog again.
    std::fs::remove_file(filler).unwrap();
    let mut daemon = start(&data, 0);
    assert_eq!(send(daemon.public, "SMafter").status, 200);
    assert!(sigterm(&mut daemon).success());

    let acked = acked.lock().unwrap().clone();
    let stored = stored_sids_with(&data, &[SLED]);
    let stored_set: BTreeSet<&String> = stored.iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|s| !stored_set.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(stored_set.len(), stored.len(), "no record stored twice");
    assert_eq!(stored.last().map(String::as_str), Some("SMafter"));
}
