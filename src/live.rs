//! [`Live`]: a setting that a reload replaces while the daemon runs (`crate::reload` says
//! which settings are live and who reads them).
//!
//! A `Live<T>` is one shared cell holding an `Arc<T>` (`arc-swap`): a reader takes the whole
//! value as it is at that instant ([`Live::get`], lock-free, cheap enough for every request),
//! and a reload replaces the whole value at once ([`Live::set`]). So a reader never sees half
//! of an old value and half of a new one: that is the atomicity rule, per value. Whatever must
//! change together lives in one `T`.
//!
//! A consumer that keeps its settings in its own fields takes a [`Watch`] and asks it at the
//! start of each batch whether the value changed ([`Watch::changed`]): a batch runs on one
//! value from start to end, and the next batch on the new one.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// A value a reload replaces; clones share the cell.
pub struct Live<T> {
    cell: Arc<ArcSwap<T>>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            cell: self.cell.clone(),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Live").field(&self.get()).finish()
    }
}

impl<T> Live<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Live<T> {
        Live {
            cell: Arc::new(ArcSwap::from_pointee(value)),
        }
    }

    /// The value now.
    pub fn get(&self) -> Arc<T> {
        self.cell.load_full()
    }

    /// Replaces the value: readers that already took the old one finish with it.
    pub fn set(&self, value: T) {
        self.cell.store(Arc::new(value));
    }

    /// A watcher that has seen the value as it is now.
    pub fn watch(&self) -> Watch<T> {
        Watch {
            live: self.clone(),
            seen: self.get(),
        }
    }
}

/// Tells a reader with settings of its own when the value was replaced.
pub struct Watch<T> {
    live: Live<T>,
    seen: Arc<T>,
}

impl<T> Watch<T> {
    /// The new value if it was replaced since the last call (or since [`Live::watch`]).
    pub fn changed(&mut self) -> Option<Arc<T>> {
        let now = self.live.get();
        if Arc::ptr_eq(&now, &self.seen) {
            return None;
        }
        self.seen = now.clone();
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_sees_each_replacement_once_and_readers_keep_what_they_took() {
        let live = Live::new(1);
        let mut watch = live.watch();
        assert!(watch.changed().is_none());
        let taken = live.get();
        live.set(2);
        assert_eq!(*taken, 1, "a reader finishes with the value it took");
        assert_eq!(watch.changed().as_deref(), Some(&2));
        assert!(watch.changed().is_none());
        let other = live.clone();
        other.set(3);
        assert_eq!(*live.get(), 3, "clones share the cell");
        assert_eq!(watch.changed().as_deref(), Some(&3));
    }
}
