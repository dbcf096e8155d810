//! The point-read cache of the PostgreSQL store: values read or written
//! by this process, kept so a read need not go to the server.
//!
//! # Why it is coherent
//!
//! The store is one process's (the schema's advisory lock): nobody else
//! writes the table, so the only writes a cached value can miss are this
//! process's own, and every one of them names its keys and passes through
//! here:
//!
//! 1. Before a write goes to the server its keys are dropped from the
//!    cache and marked in flight ([`Cache::begin_write`]).
//! 2. After it (committed or failed), they are unmarked, and each notes
//!    the generation its last write ended at, the cache's generation
//!    moving on ([`Cache::end_write`]).
//! 3. A read that missed notes the generation first ([`Cache::get`]) and
//!    keeps what the server gave only if no write of *its key* is in
//!    flight or ended since ([`Cache::fill`]).
//!
//! 4. A write that committed keeps the values it wrote
//!    ([`Cache::end_write`] with `took`), unless another write of the same
//!    key was in flight or ended while it ran (either may have committed
//!    last): a record read just after its put needs no round trip.
//!
//! So a value in the cache is the value in the table, or one a write
//! still in flight (not yet returned to its caller) is replacing; a read
//! never finds in the cache a value older than one a read already
//! returned. The rule is per key: a busy vault always has some write in
//! flight (16 clients putting, the audit sealing its blocks), and a rule
//! over all keys ("no write began or ended since") kept almost nothing
//! then, so every put read its subject's entry from the server (measured:
//! `bench --server`, one `SELECT` per put). The generations of ended
//! writes are remembered for at most [`ENDED_MAX`] keys; past that they
//! are forgotten at once and every read that missed before is refused
//! (the floor), which is safe and rare.
//!
//! (Several processes on one schema would each need to hear of the
//! others' writes; a cluster's nodes are one active node holding the
//! lock and standbys forwarding to it, so this is not needed.)
//!
//! It holds what the table holds: ciphertext, ids and names, no key
//! material and no personal data in clear. At most [`BUDGET`] bytes of
//! values; past that it is emptied and fills again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of values kept.
pub(super) const BUDGET: usize = 64 << 20;

/// Keys whose last write's end is remembered (see the module doc).
pub(super) const ENDED_MAX: usize = 1 << 16;

#[derive(Default)]
struct State {
    values: HashMap<Vec<u8>, Arc<[u8]>>,
    bytes: usize,
    /// Moves on at the end of every write.
    generation: u64,
    /// Keys of writes under way, with how many.
    in_flight: HashMap<Vec<u8>, usize>,
    /// The generation each key's last write ended at (its end moved the
    /// generation past it).
    ended: HashMap<Vec<u8>, u64>,
    /// Reads that missed before this generation are not kept: `ended`
    /// forgot what happened before it.
    floor: u64,
}

#[derive(Default)]
pub(super) struct Cache {
    state: Mutex<State>,
}

/// What a read that missed noted: see [`Cache::fill`].
#[derive(Debug)]
pub(super) struct Missed(u64);

/// What a write began at: see [`Cache::end_write`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Begun(u64);

/// A key a write changes, and the value it writes there (`None`: it
/// removes the key, or its value is not known to be the table's).
pub(super) type Write<'a> = (&'a [u8], Option<&'a [u8]>);

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
    /// a write of `key` is in flight or ended since.
    pub fn fill(&self, key: &[u8], value: &Arc<[u8]>, missed: Missed) {
        let mut state = self.state();
        if state.untouched_since(key, missed.0, 0) {
            state.keep(key, value.clone());
        }
    }

    /// Before a write: see the module doc. What it returns goes to
    /// [`end_write`](Self::end_write).
    pub fn begin_write(&self, writes: &[Write<'_>]) -> Begun {
        let mut state = self.state();
        let begun = Begun(state.generation);
        for (key, _) in writes {
            if let Some(old) = state.values.remove(*key) {
                state.bytes -= old.len();
            }
            *state.in_flight.entry(key.to_vec()).or_default() += 1;
        }
        state.generation += 1;
        begun
    }

    /// After a write, whatever its outcome; `took`: it committed, so its
    /// values are the table's, and each is kept unless another write of
    /// its key is in flight or ended since this one began (whose value
    /// may be the newer).
    pub fn end_write(&self, writes: &[Write<'_>], begun: Begun, took: bool) {
        let mut state = self.state();
        if took {
            for (key, value) in writes {
                let Some(value) = value else { continue };
                // This write is the one in flight.
                if state.untouched_since(key, begun.0, 1) {
                    state.keep(key, Arc::from(*value));
                }
            }
        }
        let end = state.generation;
        for (key, _) in writes {
            if let Some(n) = state.in_flight.get_mut(*key) {
                *n -= 1;
                if *n == 0 {
                    state.in_flight.remove(*key);
                }
            }
            if state.ended.len() >= ENDED_MAX && !state.ended.contains_key(*key) {
                state.ended.clear();
                state.floor = end + 1;
            }
            state.ended.insert(key.to_vec(), end);
        }
        state.generation += 1;
    }
}

impl State {
    /// Whether no write of `key` but `own` (0 or 1) writes now in flight
    /// began or ended since `generation`, as far as `ended` still knows
    /// (the floor): the one rule of reads and writes alike.
    fn untouched_since(&self, key: &[u8], generation: u64, own: usize) -> bool {
        generation >= self.floor
            && self.in_flight.get(key).copied().unwrap_or(0) == own
            && self.ended.get(key).is_none_or(|&end| end < generation)
    }

    /// Keeps `value` at `key`, within the budget.
    fn keep(&mut self, key: &[u8], value: Arc<[u8]>) {
        if self.bytes + value.len() > BUDGET {
            // Emptied, to fill again with what is read from now on:
            // dropping a part instead (a quarter, in the map's order) was
            // measured worse, the reads refilling what the next drop took.
            self.values.clear();
            self.bytes = 0;
        }
        self.bytes += value.len();
        if let Some(old) = self.values.insert(key.to_vec(), value) {
            self.bytes -= old.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(b: &[u8]) -> Arc<[u8]> {
        Arc::from(b)
    }

    /// A write of `key` that begins now; `done` ends it (not taken).
    fn write<'a>(c: &'a Cache, key: &'a [u8]) -> impl FnOnce() + 'a {
        let begun = c.begin_write(&[(key, None)]);
        move || c.end_write(&[(key, None)], begun, false)
    }

    #[test]
    fn a_read_that_raced_a_write_of_its_key_is_not_kept() {
        let c = Cache::default();
        // A read misses, a write begins and ends, the read's (old) value
        // comes back: not kept.
        let missed = c.get(b"k").unwrap_err();
        write(&c, b"k")();
        c.fill(b"k", &val(b"old"), missed);
        assert!(c.get(b"k").is_err());
        // A read while a write of its key is in flight: not kept either.
        let missed = c.get(b"k").unwrap_err();
        let done = write(&c, b"k");
        c.fill(b"k", &val(b"v"), missed);
        assert!(c.get(b"k").is_err());
        done();
        // A write of another key, in flight or ended, does not matter.
        let missed = c.get(b"k").unwrap_err();
        let done = write(&c, b"other");
        c.fill(b"k", &val(b"v"), missed);
        assert_eq!(&*c.get(b"k").unwrap(), b"v");
        done();
        write(&c, b"k")();
        let missed = c.get(b"k").unwrap_err();
        write(&c, b"other")();
        c.fill(b"k", &val(b"v"), missed);
        assert_eq!(&*c.get(b"k").unwrap(), b"v");
        // A write of the key begun before one read's miss and ended before
        // another's: the earlier read is refused, the later kept.
        let done = write(&c, b"k");
        let early = c.get(b"k").unwrap_err();
        done();
        let late = c.get(b"k").unwrap_err();
        c.fill(b"k", &val(b"old"), early);
        assert!(c.get(b"k").is_err());
        c.fill(b"k", &val(b"new"), late);
        assert_eq!(&*c.get(b"k").unwrap(), b"new");
        // A write drops the key before it goes out.
        let done = write(&c, b"k");
        assert!(c.get(b"k").is_err());
        done();
    }

    #[test]
    fn a_committed_write_keeps_its_value_only_if_no_other_write_of_its_key_raced_it() {
        let c = Cache::default();
        // Alone, and taken: kept.
        let w = [(&b"k"[..], Some(&b"v1"[..]))];
        let begun = c.begin_write(&w);
        c.end_write(&w, begun, true);
        assert_eq!(&*c.get(b"k").unwrap(), b"v1");
        // Not taken (failed, or its insert found the key taken): dropped.
        let w = [(&b"k"[..], Some(&b"v2"[..]))];
        let begun = c.begin_write(&w);
        c.end_write(&w, begun, false);
        assert!(c.get(b"k").is_err());
        // A second write of the key began and ended while the first ran:
        // the first's value may be the older, so neither is kept by the
        // first's end.
        let first = [(&b"k"[..], Some(&b"first"[..]))];
        let second = [(&b"k"[..], Some(&b"second"[..]))];
        let a = c.begin_write(&first);
        let b = c.begin_write(&second);
        c.end_write(&second, b, true);
        c.end_write(&first, a, true);
        assert!(
            c.get(b"k").is_err(),
            "a write that raced another kept its value"
        );
        // Both in flight when the first ends: not kept; the second, alone
        // by then but begun while the first ran: not kept either.
        let a = c.begin_write(&first);
        let b = c.begin_write(&second);
        c.end_write(&first, a, true);
        assert!(c.get(b"k").is_err());
        c.end_write(&second, b, true);
        assert!(c.get(b"k").is_err());
        // A removal keeps nothing.
        let gone = [(&b"k"[..], None)];
        let begun = c.begin_write(&gone);
        c.end_write(&gone, begun, true);
        assert!(c.get(b"k").is_err());
    }

    #[test]
    fn past_the_ended_bound_earlier_misses_are_refused() {
        let c = Cache::default();
        let missed = c.get(b"k").unwrap_err();
        // Writes of other keys fill `ended` past its bound: what it forgot
        // might have been a write of "k", so the earlier miss is refused.
        for i in 0..=ENDED_MAX as u32 {
            let key = i.to_be_bytes();
            write(&c, &key)();
        }
        assert!(c.state().ended.len() <= ENDED_MAX);
        c.fill(b"k", &val(b"v"), missed);
        assert!(c.get(b"k").is_err());
        // A read that misses after it is kept.
        let missed = c.get(b"k").unwrap_err();
        c.fill(b"k", &val(b"v"), missed);
        assert!(c.get(b"k").is_ok());
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
