//! The data directory of a stopped daemon, opened with the engine its configuration names: the
//! one place that knows which engine that is, where a running daemon's lock is, and how to say
//! so in messages. The direct backend reads through it; import and `drop-cursor` write
//! through it.

use std::path::PathBuf;
use std::sync::Arc;

use hooklog::config::Config;
use hooklog::log::{Log, LogBackend, LogError};
use hooklog::metrics::Metrics;

/// The log of a stopped daemon, as the configuration names it: the one place that knows
/// which engine that is, where a running daemon's lock is, and how to say so in messages.
#[derive(Clone, Debug)]
pub struct Store {
    config: Config,
}

impl Store {
    /// The store `config` names.
    pub fn new(config: Config) -> Store {
        Store { config }
    }

    /// Whether the configuration names the JetStream engine.
    pub fn is_jetstream(&self) -> bool {
        self.config.log.backend == LogBackend::Jetstream
    }

    /// The directory a running daemon holds locked, and that holds what a stopped one left:
    /// the sled log (`data_dir/log`), or the JetStream engine's local state database
    /// (`data_dir/state`: consumer state and cursors; the records are in the stream).
    pub fn dir(&self) -> PathBuf {
        if self.is_jetstream() {
            hooklog::state_dir(&self.config.data_dir)
        } else {
            hooklog::log_dir(&self.config.data_dir)
        }
    }

    /// The log as messages name it: the sled directory, or the JetStream stream with its
    /// server and local state directory (so that a message says which engine it is about).
    pub fn location(&self) -> String {
        if self.is_jetstream() {
            let j = &self.config.log.jetstream;
            format!(
                "JetStream stream {} at {} (local state {})",
                j.stream,
                j.nats_url,
                self.dir().display()
            )
        } else {
            self.dir().display().to_string()
        }
    }

    /// The JetStream stream's name, `None` for sled.
    pub fn stream(&self) -> Option<&str> {
        self.is_jetstream()
            .then_some(self.config.log.jetstream.stream.as_str())
    }

    /// Whether the store directory holds files: a daemon (or an import) ran here with this
    /// engine. Opening a store that does not exist would create it.
    pub fn holds_files(&self) -> bool {
        std::fs::read_dir(self.dir())
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    }

    /// Fails unless a daemon ever ran on this data directory with this engine (its store
    /// directory holds files). Readers check this first, so that they never create a log
    /// (nor, for JetStream, a stream) where there was none.
    pub fn check_exists(&self) -> anyhow::Result<()> {
        if self.holds_files() {
            Ok(())
        } else if self.is_jetstream() {
            anyhow::bail!(
                "there is no hooklog state in {} (the JetStream engine keeps its consumers' \
                 state and cursors there): is data_dir the daemon's? (use --config or \
                 --data-dir)",
                self.dir().display()
            )
        } else {
            anyhow::bail!(
                "there is no hooklog log in {}: is data_dir the daemon's? (use --config or \
                 --data-dir)",
                self.dir().display()
            )
        }
    }

    /// Opens the log directly, the daemon being stopped: the engine `[log] backend` names,
    /// exactly as the daemon opens it ([`hooklog::open_log`]). A running daemon holds the
    /// store directory's lock (sled allows one process per database: the log for sled, the
    /// local state database for JetStream), so this fails with [`LogError::Locked`] then.
    pub fn open(&self) -> Result<Arc<dyn Log>, LogError> {
        hooklog::open_log(&self.config, Metrics::new())
    }
}
