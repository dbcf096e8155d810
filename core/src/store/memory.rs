//! [`MemoryStore`]: the store in memory, for unit tests and the fuzz
//! operation model. Clones share one map, so a vault dropped and opened
//! again on a clone finds what the first one wrote (as a process restart
//! finds a file); nothing is ever lost, so `recover` has nothing to give.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use super::{Batch, Entries, Entry, Recovered, Store, Value};
use crate::crypto::SecretKey;
use crate::error::Result;

type Map = BTreeMap<Vec<u8>, Arc<[u8]>>;

/// A store in memory. See the module doc.
#[derive(Clone, Default)]
pub(crate) struct MemoryStore {
    map: Arc<RwLock<Map>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A copy that shares nothing with this one: what a power cut would
    /// leave, taken at a durable point (the fault-injection tests).
    #[cfg(test)]
    pub fn deep_copy(&self) -> MemoryStore {
        MemoryStore {
            map: Arc::new(RwLock::new(self.read().clone())),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        Ok(self.read().get(key).cloned().map(Value::from_shared))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write().insert(key.to_vec(), Arc::from(value));
        Ok(())
    }

    fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        let mut map = self.write();
        if map.contains_key(key) {
            return Ok(false);
        }
        map.insert(key.to_vec(), Arc::from(value));
        Ok(true)
    }

    fn remove(&self, key: &[u8]) -> Result<()> {
        self.write().remove(key);
        Ok(())
    }

    fn apply(&self, batch: Batch) -> Result<()> {
        let mut map = self.write();
        for (key, value) in batch.into_writes() {
            match value {
                Some(v) => map.insert(key, Arc::from(v)),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn scan(&self, prefix: &[u8], from: &[u8]) -> Entries {
        Box::new(Cursor {
            map: self.map.clone(),
            prefix: prefix.to_vec(),
            next: Bound::Included(from.to_vec()),
        })
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>> {
        let map = self.read();
        Ok(map
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .last()
            .map(|(k, v)| {
                (
                    Value::from_shared(Arc::from(&k[..])),
                    Value::from_shared(v.clone()),
                )
            }))
    }

    fn sync(&self, seal: &dyn Fn() -> Result<()>) -> Result<()> {
        seal()
    }

    fn persist(
        &self,
        _inserts: &[(&[u8], &[u8])],
        _note: &[u8],
        _seal: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        Ok(()) // nothing in memory is lost
    }

    fn recover(&self, _key: SecretKey) -> Result<Recovered> {
        Ok(Recovered::default())
    }

    fn size_on_disk(&self) -> u64 {
        0
    }

    fn compact_live(&self) -> Result<crate::types::CompactReport> {
        // Nothing on disk to rewrite.
        Ok(crate::types::CompactReport {
            bytes_before: 0,
            bytes_after: 0,
            entries: self.read().len() as u64,
        })
    }
}

/// A lazy scan: each step looks up the next key after the last one
/// returned, so it holds no lock between steps (as a sled iterator does
/// not) and sees writes made meanwhile.
struct Cursor {
    map: Arc<RwLock<Map>>,
    prefix: Vec<u8>,
    next: Bound<Vec<u8>>,
}

impl Iterator for Cursor {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let bound = match &self.next {
            Bound::Included(k) => Bound::Included(&k[..]),
            Bound::Excluded(k) => Bound::Excluded(&k[..]),
            Bound::Unbounded => Bound::Unbounded,
        };
        let (k, v) = map
            .range::<[u8], _>((bound, Bound::Unbounded))
            .next()
            .filter(|(k, _)| k.starts_with(&self.prefix))?;
        let entry = (
            Value::from_shared(Arc::from(&k[..])),
            Value::from_shared(v.clone()),
        );
        self.next = Bound::Excluded(k.clone());
        Some(Ok(entry))
    }
}
