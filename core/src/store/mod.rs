//! The storage seam: what the vault needs from an ordered key-value store,
//! as one small trait with its contract written on it, and the stores
//! behind it ([`SledStore`], the embedded default; [`MemoryStore`], for unit
//! tests and the fuzz operation model).
//!
//! The vault keeps no key material in a store (keys live in the custody,
//! see `custody`), so a store's copies, logs and backups hold ciphertext,
//! ids and names only: what `layout` lists.

use std::sync::Arc;

use crate::error::Result;

#[cfg(any(test, feature = "fuzzing"))]
mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod sled_store;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use self::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub(crate) use self::postgres::{KeyRow, KeyTable, PgStore};
pub(crate) use self::sled_store::SledStore;

/// A stored value, borrowed from the store where it can be (a sled read
/// copies nothing; see [`Value::from_shared`]). Derefs to its bytes.
#[derive(Clone)]
pub(crate) struct Value(Repr);

#[derive(Clone)]
enum Repr {
    Sled(sled_store::SledValue),
    /// Bytes a store holds as an `Arc` (the memory and PostgreSQL stores).
    #[cfg_attr(
        not(any(test, feature = "fuzzing", feature = "postgres")),
        allow(dead_code)
    )]
    Shared(Arc<[u8]>),
}

impl Value {
    #[cfg_attr(
        not(any(test, feature = "fuzzing", feature = "postgres")),
        allow(dead_code)
    )]
    pub fn from_shared(bytes: Arc<[u8]>) -> Value {
        Value(Repr::Shared(bytes))
    }
}

impl std::ops::Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Sled(v) => v,
            Repr::Shared(v) => v,
        }
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({} bytes)", self.len())
    }
}

/// One entry of a scan.
pub(crate) type Entry = (Value, Value);

/// A scan's entries in ascending key order, read lazily.
pub(crate) type Entries = Box<dyn Iterator<Item = Result<Entry>> + Send>;

/// Writes applied together by [`Store::apply`]: inserts and removals, in
/// order (a later write to the same key wins).
#[derive(Default, Debug)]
pub(crate) struct Batch {
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl Into<Vec<u8>>) {
        self.writes
            .push((key.as_ref().to_vec(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.writes.push((key.as_ref().to_vec(), None));
    }

    /// The writes so far.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    fn into_writes(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.writes
    }
}

/// What a store hands back at open from [`Store::persist`] calls whose
/// writes it may have lost in a crash: for the vault to reconcile (see
/// `vault::durability`).
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The store's mark when it was opened: every persisted call up to it
    /// has its writes in the store.
    pub mark: u64,
    /// The calls past the mark, oldest first.
    pub calls: Vec<RecoveredCall>,
}

/// One [`Store::persist`] call read back.
#[derive(Debug)]
pub(crate) struct RecoveredCall {
    /// The inserts it made durable, in the order they were made.
    pub inserts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Its note (for the vault, the audit entry of the put).
    pub note: Vec<u8>,
}

/// An ordered key-value store of byte strings: the vault's whole state but
/// its keys.
///
/// # Contract
///
/// - **Order.** Keys compare as byte strings (lexicographically, shorter
///   first on a common prefix); scans return entries in that order.
/// - **Single writes** ([`insert`](Store::insert),
///   [`insert_new`](Store::insert_new), [`remove`](Store::remove)) are each
///   atomic. `insert_new` is a compare-and-swap on absence: of two racing
///   callers exactly one gets `true`.
/// - **Batches** ([`apply`](Store::apply)) are atomic and isolated: no
///   point read ([`get`](Store::get)) ever sees some of a batch's writes and
///   not others, and after a crash either every write of a batch is there or
///   none is.
/// - **Scans** ([`scan`](Store::scan), [`last`](Store::last)) are not
///   snapshots: a scan running beside writers may or may not see their
///   writes (sled reads a node at a time), but it returns entries in order,
///   each as it was stored at some moment of the scan, and every entry no
///   writer touched. Callers that need a consistent view of a range hold
///   the vault's own lock on it (a subject's stripe).
/// - **Prefix after a crash.** Writes become durable in the order they were
///   made: after a crash the store holds every write up to some point and
///   none after it (a batch counts as one write). So a write made after
///   another is never there without it.
/// - **Durability.** Nothing is promised durable until [`sync`](Store::sync)
///   returns (then every write made before the call is), or, for the writes
///   it names, until [`persist`](Store::persist) returns.
/// - **Errors** are `Io` (the operating system refused), `Corrupt` (stored
///   bytes that do not read back), `Locked` (another process holds the
///   store), never a panic.
pub(crate) trait Store: Send + Sync {
    /// The value stored at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Value>>;

    /// Whether a value is stored at `key`.
    fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Stores `value` at `key`, replacing what was there.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Stores `value` at `key` only if nothing is stored there; whether it
    /// did.
    fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<bool>;

    /// Removes what is stored at `key` (nothing there is no error).
    fn remove(&self, key: &[u8]) -> Result<()>;

    /// Applies every write of `batch`, atomically and isolated from readers.
    fn apply(&self, batch: Batch) -> Result<()>;

    /// The entries whose keys start with `prefix` and are not below `from`
    /// (`from` starts with `prefix`), ascending.
    fn scan(&self, prefix: &[u8], from: &[u8]) -> Entries;

    /// The entry with the highest key starting with `prefix`.
    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>>;

    /// The durable point: every write made before this call is durable
    /// when it returns. `seal` is called once, after the store has fixed
    /// what this durable point covers and before it writes anything: what
    /// `seal` writes is covered too (the vault writes its buffered audit
    /// entries there).
    fn sync(&self, seal: &dyn Fn() -> Result<()>) -> Result<()>;

    /// Makes durable the `inserts` this handle has already made (with
    /// [`insert`](Store::insert) or [`insert_new`](Store::insert_new)),
    /// together with `note`, before returning; it may cost less than
    /// [`sync`](Store::sync) (the sled store writes one journal frame). A
    /// store that may lose such inserts in a crash hands them back, with
    /// their note, from [`recover`](Store::recover) at the next open. `seal`
    /// is as for `sync`, for a store that needs a durable point meanwhile.
    fn persist(
        &self,
        inserts: &[(&[u8], &[u8])],
        note: &[u8],
        seal: &dyn Fn() -> Result<()>,
    ) -> Result<()>;

    /// Whether [`persist_new`](Store::persist_new) writes a new entry with
    /// its note in one step, cheaper than `insert_new` then `persist` (the
    /// PostgreSQL store: one transaction, one round trip, instead of two).
    fn joins_new_with_persist(&self) -> bool {
        false
    }

    /// Stores `value` at `key` only if nothing is stored there, durably
    /// together with `note`, as [`insert_new`](Store::insert_new) then
    /// [`persist`](Store::persist) would: `false`, and nothing written, if
    /// something was there. Until it returns, readers may not see the
    /// entry.
    fn persist_new(
        &self,
        key: &[u8],
        value: &[u8],
        note: &[u8],
        seal: &dyn Fn() -> Result<()>,
    ) -> Result<bool> {
        if !self.insert_new(key, value)? {
            return Ok(false);
        }
        self.persist(&[(key, value)], note, seal)?;
        Ok(true)
    }

    /// Called once after open, before any [`persist`](Store::persist): the
    /// persisted calls the store may lack, past its mark (`key`
    /// authenticates them). The vault re-applies what still stands, then
    /// calls [`sync`](Store::sync), which marks them done.
    fn recover(&self, key: crate::crypto::SecretKey) -> Result<Recovered>;

    /// Bytes the store takes on disk (0 for one that keeps none).
    fn size_on_disk(&self) -> u64;

    /// Rewrites the store's files to hold only what is live, while it is
    /// in use: reads and writes go on during the copy (and wait while the
    /// copy takes its place); every write made before or during it reads
    /// back after it, and what was durable stays durable. `Locked` when an
    /// iterator stays open too long for the swap (nothing changed then).
    fn compact_live(&self) -> Result<crate::types::CompactReport>;

    /// Whether this handle still holds the store's lock (one process per
    /// store). A lock that can be lost while the handle lives (a
    /// database's session lock, gone with its connection) reports `false`
    /// from then on: the holder must stop writing.
    fn still_locked(&self) -> bool {
        true
    }

    /// Whether a read may wait on another machine (a database server's
    /// answer), rather than only on this one's memory and disk: a server
    /// then keeps its reads off its async threads.
    fn reads_may_wait(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
