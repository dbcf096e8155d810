//! The point-read cache of the PostgreSQL store: values read or written
//! by this process, kept so a read need not go to the server.
//!
//! # Why it is coherent
//!
//! The store is one process's (the schema's advisory lock): nobody else
//! writes the table, so the only writes a cached value can miss are this
//! process's own, and every one of them passes through here:
//!
//! 1. Before a write goes to the server its keys are dropped from the
//!    cache and marked in flight ([`Cache::begin_write`]).
//! 2. After it (committed or failed), they are unmarked and the cache's
//!    generation moves on ([`Cache::end_write`]).
//! 3. A read that missed notes the generation first ([`Cache::miss`]) and
//!    keeps what the server gave only if no write began or ended since and
//!    its key is not in flight ([`Cache::fill`]).
//!
//! So a value in the cache is the value in the table, or one a write
//! still in flight (not yet returned to its caller) is replacing; a read
//! never finds in the cache a value older than one a read already
//! returned. (Several processes on one schema would each need to hear of
//! the others' writes, by LISTEN/NOTIFY or version checks: issue 19's
//! cluster, not built.)
//!
//! It holds what the table holds: ciphertext, ids and names, no key
//! material and no personal data in clear. At most [`BUDGET`] bytes of
//! values; past that it is emptied and fills again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of values kept.
pub(super) const BUDGET: usize = 64 << 20;

#[derive(Default)]
struct State {
    values: HashMap<Vec<u8>, Arc<[u8]>>,
    bytes: usize,
    /// Moves on at the end of every write.
    generation: u64,
    /// Keys of writes under way, with how many.
    in_flight: HashMap<Vec<u8>, usize>,
}

#[derive(Default)]
pub(super) struct Cache {
    state: Mutex<State>,
}

/// What a read that missed noted: see [`Cache::fill`].
#[derive(Debug)]
pub(super) struct Missed(u64);

impl Cache {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached value at `key`, or what to give [`Cache::fill`].
    pub fn get(&self, key: &[u8]) -> Result<Arc<[u8]>, Missed> {
        let state = self.state();
        match state.values.get(key) {
            Some(v) => Ok(v.clone()),
            None => Err(Missed(state.generation)),
        }
    }

    /// Keeps `value`, read from the server at `key` after `missed`, unless
    /// a write began or ended since.
    pub fn fill(&self, key: &[u8], value: &Arc<[u8]>, missed: Missed) {
        let mut state = self.state();
        if state.generation != missed.0 || !state.in_flight.is_empty() {
            return;
        }
        if state.bytes + value.len() > BUDGET {
            state.values.clear();
            state.bytes = 0;
        }
        state.bytes += value.len();
        if let Some(old) = state.values.insert(key.to_vec(), value.clone()) {
            state.bytes -= old.len();
        }
    }

    /// Before a write of `keys`: see the module doc.
    pub fn begin_write<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut state = self.state();
        for key in keys {
            if let Some(old) = state.values.remove(key) {
                state.bytes -= old.len();
            }
            *state.in_flight.entry(key.to_vec()).or_default() += 1;
        }
        state.generation += 1;
    }

    /// After a write of `keys`, whatever its outcome.
    pub fn end_write<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut state = self.state();
        for key in keys {
            if let Some(n) = state.in_flight.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    state.in_flight.remove(key);
                }
            }
        }
        state.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(b: &[u8]) -> Arc<[u8]> {
        Arc::from(b)
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let c = Cache::default();
        // A read misses, a write begins and ends, the read's (old) value
        // comes back: not kept.
        let missed = c.get(b"k").unwrap_err();
        c.begin_write([&b"k"[..]]);
        c.end_write([&b"k"[..]]);
        c.fill(b"k", &val(b"old"), missed);
        assert!(c.get(b"k").is_err());
        // A read while a write is in flight: not kept either.
        let missed = c.get(b"k").unwrap_err();
        c.begin_write([&b"other"[..]]);
        c.fill(b"k", &val(b"v"), missed);
        assert!(c.get(b"k").is_err());
        c.end_write([&b"other"[..]]);
        // Quiet: kept, and a write drops it before it goes out.
        let missed = c.get(b"k").unwrap_err();
        c.fill(b"k", &val(b"v"), missed);
        assert_eq!(&*c.get(b"k").unwrap(), b"v");
        c.begin_write([&b"k"[..]]);
        assert!(c.get(b"k").is_err());
        c.end_write([&b"k"[..]]);
    }

    #[test]
    fn the_budget_holds() {
        let c = Cache::default();
        let big: Arc<[u8]> = vec![0u8; BUDGET / 3].into();
        for k in 0..10u8 {
            let missed = c.get(&[k]).unwrap_err();
            c.fill(&[k], &big, missed);
            assert!(c.state().bytes <= BUDGET);
        }
        assert!(c.get(&[9]).is_ok());
    }
}
