//! The local state database (cursors and the consumers' state) and its flusher: one thread
//! that serves every append waiting for "state written before me is durable" with one flush
//! (group commit).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::shared::sled_err;
use crate::log::LogError;

/// Opens the local state database. Its file lock is what says a daemon runs on this data
/// directory (`hooklog-replay` relies on it), so a lock held by another process is
/// [`LogError::Locked`]: sled reports it as an I/O error of kind `WouldBlock`, or of kind
/// `Other` whose text says "could not acquire lock". As for the sled log, sled's background
/// threads keep the lock for a moment after the previous handle is dropped (a restart, a tool
/// that just closed it), so a lock is retried briefly before the directory is called in use.
pub(super) fn open_state_db(state_dir: &Path, cache_capacity: u64) -> Result<sled::Db, LogError> {
    let mut attempt = 0;
    loop {
        let opened = sled::Config::new()
            .path(state_dir)
            .cache_capacity(cache_capacity)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    LogError::Locked(format!("{}: {io}", state_dir.display()))
                }
                other => sled_err(other),
            });
        match opened {
            Err(LogError::Locked(_)) if attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// One thread that flushes the local state database for every append waiting on it: each
/// flush starts after the requests it answers were made, so it covers every state write made
/// before them.
/// Where an append waits for its flush.
pub(super) type FlushWaiter = tokio::sync::oneshot::Sender<Result<(), LogError>>;

#[derive(Clone)]
pub(super) struct StateFlusher {
    tx: Arc<Mutex<Option<crossbeam_channel::Sender<FlushWaiter>>>>,
}

impl StateFlusher {
    pub(super) fn start(db: sled::Db) -> Result<StateFlusher, LogError> {
        let (tx, rx) =
            crossbeam_channel::unbounded::<tokio::sync::oneshot::Sender<Result<(), LogError>>>();
        std::thread::Builder::new()
            .name("hooklog-state-flush".into())
            .spawn(move || {
                // Ends when every sender is gone (`stop`, or the log dropped).
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    for w in waiting {
                        let _ =
                            w.send(result.clone().map_err(|e| {
                                LogError::Storage(format!("local state database: {e}"))
                            }));
                    }
                }
            })
            .map_err(|e| LogError::Storage(format!("cannot start the state flusher: {e}")))?;
        Ok(StateFlusher {
            tx: Arc::new(Mutex::new(Some(tx))),
        })
    }

    /// Resolves once a flush that started after this call has finished.
    pub(super) async fn flush(&self) -> Result<(), LogError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let sent = match self.tx.lock() {
            Ok(g) => g.as_ref().map(|tx| tx.send(done).is_ok()),
            Err(p) => p.into_inner().as_ref().map(|tx| tx.send(done).is_ok()),
        };
        if sent != Some(true) {
            return Err(LogError::WriterStopped);
        }
        wait.await.unwrap_or(Err(LogError::WriterStopped))
    }

    pub(super) fn stop(&self) {
        match self.tx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
    }
}
