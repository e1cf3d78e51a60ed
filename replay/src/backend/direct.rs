//! Reading the data directory directly, for when the daemon is stopped.
//!
//! The log is opened with [`SledLog::open`] and read only through the [`Log`] trait's read
//! methods: no append, no cursor is stored. It is opened on first use and closed by
//! [`Backend::release`] (and on drop), so `tail --follow` does not keep the daemon from
//! starting while it waits.
//!
//! A directory that holds no log is refused rather than opened: opening would create an
//! empty database there, which is not what a reader should do.

use std::path::PathBuf;

use anyhow::Context as _;
use hooklog::admin::api::EventJson;
use hooklog::event::Seq;
use hooklog::log::sled::{SledLog, SledOptions};
use hooklog::log::{Log, LogError};
use hooklog::metrics::Metrics;

use super::{Backend, StatusReply};

/// A reader of `<data_dir>/log`.
pub struct Direct {
    dir: PathBuf,
    options: SledOptions,
    /// What to say when the directory is locked by another process.
    locked_hint: String,
    log: Option<SledLog>,
}

impl Direct {
    /// A reader of the sled log in `dir`; nothing is opened yet.
    pub fn new(dir: PathBuf, options: SledOptions, locked_hint: String) -> Direct {
        Direct {
            dir,
            options,
            locked_hint,
            log: None,
        }
    }

    fn log(&mut self) -> anyhow::Result<&SledLog> {
        let log = match self.log.take() {
            Some(log) => log,
            None => self.open()?,
        };
        Ok(self.log.insert(log))
    }

    fn open(&self) -> anyhow::Result<SledLog> {
        let holds_files = std::fs::read_dir(&self.dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false);
        if !holds_files {
            anyhow::bail!(
                "there is no hooklog log in {}: is data_dir the daemon's? (use --config or \
                 --data-dir)",
                self.dir.display()
            );
        }
        SledLog::open(&self.dir, &self.options, Metrics::new()).map_err(|e| match e {
            LogError::Locked(detail) => anyhow::anyhow!(
                "cannot open {}: {} ({detail})",
                self.dir.display(),
                self.locked_hint
            ),
            other => anyhow::Error::new(other)
                .context(format!("cannot open the log in {}", self.dir.display())),
        })
    }
}

impl Backend for Direct {
    fn describe(&self) -> String {
        format!("{} (read directly)", self.dir.display())
    }

    fn is_direct(&self) -> bool {
        true
    }

    fn status(&mut self) -> anyhow::Result<StatusReply> {
        let status = hooklog::admin::status_of(self.log()?)?;
        let json = serde_json::to_string(&status)?;
        Ok(StatusReply { status, json })
    }

    fn read(&mut self, after: u64, limit: usize) -> anyhow::Result<Vec<EventJson>> {
        let events = self.log()?.read(Seq(after), limit)?;
        Ok(events.iter().map(EventJson::from_event).collect())
    }

    fn get(&mut self, seq: u64) -> anyhow::Result<Option<EventJson>> {
        Ok(self
            .log()?
            .get(Seq(seq))?
            .as_ref()
            .map(EventJson::from_event))
    }

    fn release(&mut self) -> anyhow::Result<()> {
        if let Some(log) = self.log.take() {
            log.close()
                .with_context(|| format!("cannot close the log in {}", self.dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        // An error here has nowhere to go; the subcommands call `release` themselves and
        // report it. Reading never dirtied anything a close would have to save.
        let _ = self.release();
    }
}
