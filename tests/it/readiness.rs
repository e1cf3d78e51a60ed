//! `/readyz` and the consumers: the leader is not ready while a consumer it runs has stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hooklog::event::{Seq, Verified};
use hooklog::log::{AppendTicket, Leadership, Log, LogError, LogStats};
use tokio::sync::watch;

use crate::edge::{twilio_sms, BASE, TOKEN};
use crate::util::{self, TestServer};

/// The run's real log, except that once `armed`, storing `victim`'s cursor panics: the
/// consumer's thread dies the way a bug in it would kill it.
struct PanickingLog {
    inner: Arc<dyn Log>,
    victim: &'static str,
    armed: Arc<AtomicBool>,
}

impl Log for PanickingLog {
    fn append(&self, event: Verified) -> AppendTicket {
        self.inner.append(event)
    }
    fn read(&self, after: Seq, limit: usize) -> Result<Vec<hooklog::event::Event>, LogError> {
        self.inner.read(after, limit)
    }
    fn get(&self, seq: Seq) -> Result<Option<hooklog::event::Event>, LogError> {
        self.inner.get(seq)
    }
    fn stats(&self) -> Result<LogStats, LogError> {
        self.inner.stats()
    }
    fn cursor(&self, consumer: &str) -> Result<Seq, LogError> {
        self.inner.cursor(consumer)
    }
    fn store_cursor(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        if consumer == self.victim && self.armed.load(Ordering::SeqCst) {
            panic!(
                "injected: the {consumer} consumer's thread dies storing cursor {}",
                seq.0
            );
        }
        self.inner.store_cursor(consumer, seq)
    }
    fn cursors(&self) -> Result<Vec<(String, Seq)>, LogError> {
        self.inner.cursors()
    }
    fn drop_cursor(&self, consumer: &str) -> Result<bool, LogError> {
        self.inner.drop_cursor(consumer)
    }
    fn prune_before(&self, before: Seq) -> Result<hooklog::log::PruneReport, LogError> {
        self.inner.prune_before(before)
    }
    fn watch_last_seq(&self) -> watch::Receiver<Seq> {
        self.inner.watch_last_seq()
    }
    fn is_writable(&self) -> bool {
        self.inner.is_writable()
    }
    fn failure(&self) -> watch::Receiver<Option<String>> {
        self.inner.failure()
    }
    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership()
    }
    fn close(&self) -> Result<(), LogError> {
        self.inner.close()
    }
    fn state(&self) -> Arc<dyn hooklog::state::StateStore> {
        self.inner.state()
    }
}

#[test]
fn a_consumer_whose_task_ends_makes_readyz_503_and_status_names_it() {
    let dir = crate::engine::tempdir();
    let cfg = util::config(
        None,
        dir.path(),
        &[
            ("HOOKLOG_TWILIO_AUTH_TOKENS", TOKEN),
            ("HOOKLOG_SERVER_PUBLIC_URLS", BASE),
        ],
    );
    let inner = hooklog::open_daemon_log(&cfg, hooklog::metrics::Metrics::new()).unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let log: Arc<dyn Log> = Arc::new(PanickingLog {
        inner,
        victim: "staleness",
        armed: armed.clone(),
    });
    let s = TestServer::start(cfg, Some(log));
    assert_eq!(util::get(s.public, "/readyz"), (200, "ready\n".to_owned()));

    armed.store(true, Ordering::SeqCst);
    let (path, headers, body) = twilio_sms("SMready1");
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // The edge still acknowledges: the log is fine, only a consumer died.
    assert_eq!(s.send("POST", &path, &h, &body).status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, text) = util::get(s.public, "/readyz");
        if code == 503 {
            // The internet gets the fixed words; the name is for the operator.
            assert_eq!(text, "not ready\n");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {code} {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = s.status();
    let stopped: Vec<(String, Option<String>)> = status
        .consumers
        .iter()
        .filter(|c| c.state == "stopped")
        .map(|c| (c.name.clone(), c.last_error.clone()))
        .collect();
    assert_eq!(
        stopped,
        vec![("staleness".to_owned(), Some("its task panicked".to_owned()))]
    );
    // Still not ready a while later: nothing brings a dead consumer back but a restart.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(util::get(s.public, "/readyz").0, 503);
    armed.store(false, Ordering::SeqCst);
    s.stop().unwrap();
}
