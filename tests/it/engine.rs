//! Which log engine the suite runs on: `HOOKLOG_TEST_ENGINE` = `sled` (the default) or
//! `jetstream`. Every daemon a test starts with its default log (through [`crate::util::config`],
//! the real-binary helpers, or [`env_for`] directly) gets that engine; on JetStream, a stream of
//! its own per data directory on `HOOKLOG_TEST_NATS_URL` (default `nats://127.0.0.1:4222`).
//!
//! The stream's name is derived from the data directory's path, so a test that stops and starts
//! the daemon on the same directory finds its records again; [`TestDir`] deletes the streams of
//! every data directory inside it when it goes away, after the servers it outlives.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The engine of this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sled,
    JetStream,
}

/// `HOOKLOG_TEST_ENGINE`, read once. An unknown value stops the run: a typo must not quietly
/// test sled twice.
pub fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    *ENGINE.get_or_init(|| match std::env::var("HOOKLOG_TEST_ENGINE").as_deref() {
        Err(_) | Ok("") | Ok("sled") => Engine::Sled,
        Ok("jetstream") => Engine::JetStream,
        Ok(other) => panic!("HOOKLOG_TEST_ENGINE={other}: expected sled or jetstream"),
    })
}

/// The streams made for data directories in this process: data directory → (url, stream).
fn streams() -> &'static Mutex<BTreeMap<PathBuf, (String, String)>> {
    static STREAMS: OnceLock<Mutex<BTreeMap<PathBuf, (String, String)>>> = OnceLock::new();
    STREAMS.get_or_init(Mutex::default)
}

/// Mixed into every stream name, so that a stream left behind by an earlier run (killed before
/// its cleanup) is never taken for this run's, even on a recycled temporary path.
fn run_salt() -> u64 {
    static SALT: OnceLock<u64> = OnceLock::new();
    *SALT.get_or_init(rand::random)
}

/// The environment that puts a daemon on `data_dir` on this run's engine: nothing on sled; on
/// JetStream the backend, the server, and the data directory's own stream and subject (the
/// same for every start on that directory).
pub fn env_for(data_dir: &Path) -> Vec<(String, String)> {
    if engine() == Engine::Sled {
        return Vec::new();
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    run_salt().hash(&mut h);
    data_dir.hash(&mut h);
    let tag = format!("{:016x}", h.finish());
    let name = format!("HOOKLOG_SUITE_{tag}");
    let url = crate::jetstream_stream::machine_nats();
    streams()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(data_dir.to_owned(), (url.clone(), name.clone()));
    vec![
        ("HOOKLOG_LOG_BACKEND".into(), "jetstream".into()),
        ("HOOKLOG_LOG_JETSTREAM_NATS_URL".into(), url),
        ("HOOKLOG_LOG_JETSTREAM_STREAM".into(), name),
        (
            "HOOKLOG_LOG_JETSTREAM_SUBJECT".into(),
            format!("hooklog.suite.{tag}"),
        ),
    ]
}

/// Whether a test's own environment already chooses the engine (a test about one engine).
pub fn chooses_engine<K: AsRef<str>>(env: impl IntoIterator<Item = K>) -> bool {
    env.into_iter().any(|k| k.as_ref() == "HOOKLOG_LOG_BACKEND")
}

/// Deletes the streams of the data directories at or below `dir`.
fn delete_streams_under(dir: &Path) {
    let doomed: Vec<(String, String)> = {
        let mut map = streams().lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<PathBuf> = map.keys().filter(|k| k.starts_with(dir)).cloned().collect();
        keys.iter().filter_map(|k| map.remove(k)).collect()
    };
    crate::jetstream_stream::delete_streams(doomed);
}

/// A temporary directory that also deletes the JetStream streams of the data directories in
/// it. Declared before the servers that use it, it is dropped after them.
pub struct TestDir {
    dir: tempfile::TempDir,
}

/// A fresh [`TestDir`].
pub fn tempdir() -> TestDir {
    TestDir {
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl TestDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        delete_streams_under(self.dir.path());
    }
}

/// Opens the log a daemon on `data_dir` uses (stopped first), through the same configuration
/// (`extra`: the test's own settings, e.g. one choosing the engine), for tests that look at
/// or change what was stored.
pub fn open_log(data_dir: &Path, extra: &[(&str, &str)]) -> std::sync::Arc<dyn hooklog::log::Log> {
    let config = crate::util::config(None, data_dir, extra);
    hooklog::open_log(&config, hooklog::metrics::Metrics::new()).expect("the log opens")
}
