//! Reading the data directory directly, for when the daemon is stopped.
//!
//! The log is opened with [`Store::open`] (the engine the configuration names) and read only through the [`Log`] trait's read
//! methods: no append, no cursor is stored. It is opened on first use and closed by
//! [`Backend::release`] (and on drop), so `tail --follow` does not keep the daemon from
//! starting while it waits.
//!
//! A directory that holds no log (sled) or no local state (JetStream) is refused rather than
//! opened: opening would create an empty database there (and a JetStream stream), which is
//! not what a reader should do.
//!
//! Consumer state (dead letters, the suppression list) lives in the same database, in the
//! trees `consumer/<name>/<tree>`; it is read through the library's own readers
//! ([`consumers::dead_letters()`], [`compliance::list`]) on [`Log::state`]. The consumers looked
//! at are those with a stored cursor: every consumer that ever ran has one. Records carry
//! their dedup verdict, as the admin API shows them.

use std::sync::Arc;

use anyhow::Context as _;
use hooklog::admin::api::EventJson;
use hooklog::consumers::compliance::{self, OptOutEntry};
use hooklog::consumers::{self, DeadLetter};
use hooklog::event::{Event, Seq};
use hooklog::log::{Log, LogError};
use hooklog::state::StateStore;

use super::{Backend, Item, StatusReply};
use crate::store::Store;

/// A reader of the stopped daemon's log: `<data_dir>/log`, or the JetStream stream and
/// `<data_dir>/state`.
pub struct Direct {
    store: Store,
    /// What to say when the directory is locked by another process.
    locked_hint: String,
    log: Option<Arc<dyn Log>>,
}

impl Direct {
    /// A reader of `store`; nothing is opened yet.
    pub fn new(store: Store, locked_hint: String) -> Direct {
        Direct {
            store,
            locked_hint,
            log: None,
        }
    }

    fn log(&mut self) -> anyhow::Result<&Arc<dyn Log>> {
        let log = match self.log.take() {
            Some(log) => log,
            None => self.open()?,
        };
        Ok(self.log.insert(log))
    }

    fn open(&self) -> anyhow::Result<Arc<dyn Log>> {
        self.store.check_exists()?;
        self.store.open().map_err(|e| match e {
            LogError::Locked(detail) => anyhow::anyhow!(
                "cannot open {}: {} ({detail})",
                self.store.location(),
                self.locked_hint
            ),
            other => anyhow::Error::new(other)
                .context(format!("cannot open the log in {}", self.store.location())),
        })
    }
}

impl Backend for Direct {
    fn describe(&self) -> String {
        format!("{} (read directly)", self.store.location())
    }

    fn is_direct(&self) -> bool {
        true
    }

    fn status(&mut self) -> anyhow::Result<StatusReply> {
        let log = self.log()?;
        let mut status = hooklog::admin::status_of(log.as_ref())?;
        // The dead letters are stored; states and last errors live only in the daemon.
        let store = log.state();
        for c in &mut status.consumers {
            c.dead_letters = consumers::dead_letters(store.as_ref(), &c.name)
                .with_context(|| format!("cannot read the dead letters of {}", c.name))?
                .len() as u64;
        }
        let json = serde_json::to_string(&status)?;
        Ok(StatusReply { status, json })
    }

    fn read(&mut self, after: u64, limit: usize) -> anyhow::Result<Vec<EventJson>> {
        let log = self.log()?;
        let store = log.state();
        log.read(Seq(after), limit)?
            .iter()
            .map(|ev| event_json(store.as_ref(), ev))
            .collect()
    }

    fn get(&mut self, seq: u64) -> anyhow::Result<Option<EventJson>> {
        let log = self.log()?;
        let store = log.state();
        log.get(Seq(seq))?
            .as_ref()
            .map(|ev| event_json(store.as_ref(), ev))
            .transpose()
    }

    fn dead_letters(&mut self, consumer: Option<&str>) -> anyhow::Result<Vec<Item<DeadLetter>>> {
        let log = self.log()?;
        let names = match consumer {
            Some(name) => vec![name.to_owned()],
            None => log.cursors()?.into_iter().map(|(name, _)| name).collect(),
        };
        let store = log.state();
        let mut out = Vec::new();
        for name in names {
            let letters = consumers::dead_letters(store.as_ref(), &name)
                .with_context(|| format!("cannot read the dead letters of {name}"))?;
            for dl in letters {
                out.push(Item::new(dl)?);
            }
        }
        Ok(out)
    }

    fn optouts(&mut self) -> anyhow::Result<Vec<Item<OptOutEntry>>> {
        let list = compliance::list(self.log()?.state().as_ref())
            .context("cannot read the suppression list")?;
        list.into_iter().map(Item::new).collect()
    }

    fn release(&mut self) -> anyhow::Result<()> {
        if let Some(log) = self.log.take() {
            log.close()
                .with_context(|| format!("cannot close the log in {}", self.store.location()))?;
        }
        Ok(())
    }
}

/// A record as the admin API shows it: with the dedup verdict stored for it, if any.
fn event_json(store: &dyn StateStore, ev: &Event) -> anyhow::Result<EventJson> {
    let mut json = EventJson::from_event(ev);
    let verdict = consumers::dedup::verdict(store, ev.seq)
        .with_context(|| format!("cannot read the dedup verdict of record {}", ev.seq))?;
    json.dedup = verdict.map(serde_json::to_value).transpose()?;
    Ok(json)
}

impl Drop for Direct {
    fn drop(&mut self) {
        // An error here has nowhere to go; the subcommands call `release` themselves and
        // report it. Reading never dirtied anything a close would have to save.
        let _ = self.release();
    }
}
