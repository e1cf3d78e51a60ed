//! Consumer state: named key-value trees a consumer owns, behind a small trait so that
//! consumers never touch the storage engine (sled today; a JetStream key-value bucket later).
//!
//! Each consumer's trees are namespaced `consumer/<name>/<tree>`. Writes are individually
//! atomic and become durable with the log's next flush; a consumer's effects must therefore be
//! idempotent per record (the driver saves the cursor after the effects, so a crash between
//! the two replays the batch, which must give the same state).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Why a state operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// The storage engine failed (I/O, disk full, corruption).
    #[error("state storage error: {0}")]
    Storage(String),
    /// A stored value could not be decoded.
    #[error("corrupt state value in {tree}: {message}")]
    Corrupt {
        /// Tree name.
        tree: String,
        /// What was wrong.
        message: String,
    },
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A state value as JSON. The values consumers keep are plain structs of strings, numbers and
/// enums, so this fails only on a bug; it is still an error, never a panic.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| StateError::Storage(e.to_string()))
}

/// One ordered key-value tree.
pub trait KvTree: Send + Sync {
    /// A value.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Sets a value.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    /// Removes a value.
    fn remove(&self, key: &[u8]) -> Result<(), StateError>;
    /// Up to `limit` entries with key ≥ `from`, in key order.
    fn scan(&self, from: &[u8], limit: usize) -> Result<Vec<Entry>, StateError>;
    /// Number of entries (may be O(n)).
    fn len(&self) -> Result<usize, StateError>;
    /// Whether the tree is empty.
    fn is_empty(&self) -> Result<bool, StateError> {
        Ok(self.len()? == 0)
    }
    /// Removes every entry.
    fn clear(&self) -> Result<(), StateError>;
    /// Makes every write so far durable (survives `kill -9`), for a consumer whose state
    /// records an effect that must not be repeated. Without it, writes reach the disk with the
    /// engine's next flush. An in-memory store has nothing to do.
    fn flush(&self) -> Result<(), StateError> {
        Ok(())
    }
}

/// Where consumers keep their trees.
pub trait StateStore: Send + Sync {
    /// The tree `name` of consumer `consumer`, created if absent.
    fn tree(&self, consumer: &str, name: &str) -> Result<Arc<dyn KvTree>, StateError>;
}

/// Every key from `from` on, visited in pages (for scans larger than memory should hold).
pub fn for_each(
    tree: &dyn KvTree,
    from: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StateError>,
) -> Result<(), StateError> {
    let mut start = from.to_vec();
    loop {
        let page = tree.scan(&start, 512)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        let mut next = last.clone();
        next.push(0);
        for (k, v) in &page {
            if !f(k, v)? {
                return Ok(());
            }
        }
        if page.len() < 512 {
            return Ok(());
        }
        start = next;
    }
}

/// The sled implementation: trees in the log's own database. Handles are shared, so that a
/// tree cleared by its owner is seen cleared by every reader.
#[derive(Clone)]
pub struct SledState {
    db: sled::Db,
    trees: Arc<Mutex<BTreeMap<String, Arc<SledTree>>>>,
}

impl SledState {
    /// State stored in `db`.
    pub fn new(db: sled::Db) -> SledState {
        SledState {
            db,
            trees: Arc::default(),
        }
    }
}

fn storage(e: sled::Error) -> StateError {
    StateError::Storage(e.to_string())
}

/// A sled tree that can be cleared by dropping and recreating it: far cheaper than deleting
/// every key when a rebuild throws away hundreds of thousands of them.
struct SledTree {
    db: sled::Db,
    name: String,
    tree: std::sync::RwLock<sled::Tree>,
}

impl SledTree {
    fn tree(&self) -> sled::Tree {
        // The lock guards a handle swap only; a panic cannot leave it half-swapped.
        self.tree.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl KvTree for SledTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.tree().get(key).map_err(storage)?.map(|v| v.to_vec()))
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.tree().insert(key, value).map_err(storage).map(|_| ())
    }
    fn remove(&self, key: &[u8]) -> Result<(), StateError> {
        self.tree().remove(key).map_err(storage).map(|_| ())
    }
    fn scan(&self, from: &[u8], limit: usize) -> Result<Vec<Entry>, StateError> {
        self.tree()
            .range(from..)
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
            .collect()
    }
    fn len(&self) -> Result<usize, StateError> {
        Ok(self.tree().len())
    }
    fn flush(&self) -> Result<(), StateError> {
        // sled flushes the whole database, whichever tree it is asked through.
        self.db.flush().map_err(storage).map(|_| ())
    }
    fn clear(&self) -> Result<(), StateError> {
        let mut guard = self.tree.write().unwrap_or_else(|p| p.into_inner());
        self.db.drop_tree(self.name.as_bytes()).map_err(storage)?;
        *guard = self.db.open_tree(self.name.as_bytes()).map_err(storage)?;
        Ok(())
    }
}

impl StateStore for SledState {
    fn tree(&self, consumer: &str, name: &str) -> Result<Arc<dyn KvTree>, StateError> {
        let name = format!("consumer/{consumer}/{name}");
        let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = trees.get(&name) {
            return Ok(t.clone());
        }
        let tree = Arc::new(SledTree {
            db: self.db.clone(),
            name: name.clone(),
            tree: std::sync::RwLock::new(self.db.open_tree(name.as_bytes()).map_err(storage)?),
        });
        trees.insert(name, tree.clone());
        Ok(tree)
    }
}

/// An in-memory store, for tests and for logs without a state engine.
#[derive(Clone, Default)]
pub struct MemState {
    trees: Arc<Mutex<BTreeMap<String, Arc<MemTree>>>>,
}

#[derive(Default)]
struct MemTree(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

impl MemTree {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated: every operation
        // below is a single map call.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KvTree for MemTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map().get(key).cloned())
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.map().insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn remove(&self, key: &[u8]) -> Result<(), StateError> {
        self.map().remove(key);
        Ok(())
    }
    fn scan(&self, from: &[u8], limit: usize) -> Result<Vec<Entry>, StateError> {
        Ok(self
            .map()
            .range(from.to_vec()..)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn len(&self) -> Result<usize, StateError> {
        Ok(self.map().len())
    }
    fn clear(&self) -> Result<(), StateError> {
        self.map().clear();
        Ok(())
    }
}

impl StateStore for MemState {
    fn tree(&self, consumer: &str, name: &str) -> Result<Arc<dyn KvTree>, StateError> {
        let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        let tree = trees
            .entry(format!("consumer/{consumer}/{name}"))
            .or_default()
            .clone();
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn StateStore) {
        let t = store.tree("dedup", "keys").unwrap();
        let other = store.tree("compliance", "keys").unwrap();
        for i in 0u16..1200 {
            t.insert(&i.to_be_bytes(), b"v").unwrap();
        }
        assert!(
            other.is_empty().unwrap(),
            "trees of different consumers are separate"
        );
        assert_eq!(t.len().unwrap(), 1200);
        let page = t.scan(&10u16.to_be_bytes(), 3).unwrap();
        assert_eq!(
            page.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            vec![
                10u16.to_be_bytes().to_vec(),
                11u16.to_be_bytes().to_vec(),
                12u16.to_be_bytes().to_vec()
            ]
        );
        let mut n = 0;
        for_each(t.as_ref(), &[], |_, _| {
            n += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!(n, 1200, "for_each visits every page");
        t.remove(&5u16.to_be_bytes()).unwrap();
        assert_eq!(t.get(&5u16.to_be_bytes()).unwrap(), None);
        t.clear().unwrap();
        assert!(t.is_empty().unwrap());
    }

    #[test]
    fn the_sled_and_memory_stores_behave_alike() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&SledState::new(sled::open(dir.path()).unwrap()));
        exercise(&MemState::default());
    }
}
