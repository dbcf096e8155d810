//! The engine: a [`Vault`] handle over one [`Engine`], which holds a store
//! (`store::Store`), a key custody (`custody::KeyCustody`), the audit log
//! and the policy, and never names a backend.
//!
//! # Keys
//!
//! ```text
//! root key (caller's) ─> held by the custody: KEK (wraps its slots), index key
//! subject key      random, one live per subject, in the custody
//! retention key    random, one per UTC expiry day, in the custody
//! record key       derived by the custody from a subject key and a day key
//!                  (or "open"): `domains::record_key`
//! audit key, receipt seed   random vault keys in the custody (kept across
//!                  root-key rotations), computed with here
//! ```
//!
//! Derived record keys are cached in memory by the subject key they come
//! from (`keys`); a key's cache entries are dropped before it is destroyed.
//!
//! # The engine by concern
//!
//! One file per concern, each an `impl Engine` (or `impl Vault`) block with
//! its own imports:
//!
//! | file | concern |
//! |---|---|
//! | `open` | creating and opening, the checks at open, the repair pass |
//! | `audited` | the one audited path every public operation goes through |
//! | `keys` | the custody behind a key cache and a pool of fresh keys |
//! | `subjects` | subjects, identifiers, the blind index, the subject cache |
//! | `facts` | events, flags, consent, legal hold, restriction, opt-out |
//! | `records` | put, update, delete, listing a subject's records |
//! | `read` | the one read path (get, scan and export use it) |
//! | `counts` | stored record counts and record numbers |
//! | `rotate` | subject-key rotation and re-evaluation |
//! | `erase` | erasure requests and their receipts |
//! | `expiry` | day keys, `expire`, the purge |
//! | `durability` | durable points, commits, the journal replay |
//! | `root_key` | root-key rotation (complete erasure) |
//! | `maintenance` | policy changes, stats, compaction |
//! | `rights` | scan, export, the request ledger, post-mortem directives |
//!
//! Each file's doc states its crash order. Writers of one subject serialize
//! on its stripe (one of `STRIPES` locks by subject id); operations over
//! every subject (a policy change, a root-key rotation, a purge chunk) take
//! every stripe.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use crate::audit::AuditLog;
use crate::crypto::SecretKey;
use crate::custody::KeyRef;
use crate::ids::SubjectId;
use crate::options::{Clock, Durability};
use crate::policy::Policy;
use crate::store::Store;

mod audited;
mod backup;
mod caller;
mod completion;
mod counts;
mod durability;
mod erase;
mod expiry;
mod facts;
mod index_key;
mod keys;
mod ledger;
mod maintenance;
mod migrate;
mod open;
mod read;
mod records;
mod rights;
mod root_key;
mod rotate;
mod sealing;
mod subjects;
mod torn;

pub use backup::{BackupInfo, LostWrites, RestoreReport};
pub use ledger::{
    append_ledger, ledger_file_entries, verify_ledger, LedgerExport, LedgerPiece, LedgerSummary,
};
pub use rights::Scan;
pub use subjects::normalize_identifier;

/// Opens the vault held by `store` and `custody` (see `open`): for the
/// stores and custodies that do not live in a vault directory, and for
/// tests. `root` is the directory the vault reports as its path.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn start(
    root: PathBuf,
    store: Arc<dyn Store>,
    custody: Box<dyn crate::custody::KeyCustody>,
    policy: Option<Policy>,
    options: crate::options::VaultOptions,
) -> crate::error::Result<Vault> {
    Engine::start(root, store, custody, policy, options)
}

/// Writers of one subject serialize on one of this many locks.
const STRIPES: usize = 64;

/// An open vault. `Sync`: one handle may be shared by many threads.
pub struct Vault {
    engine: Arc<Engine>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.engine.root)
            .finish_non_exhaustive()
    }
}

/// Everything an open vault holds. Its methods are spread over this
/// module's files, one concern each.
pub(crate) struct Engine {
    /// The vault's directory.
    root: PathBuf,
    vault_id: [u8; 16],
    store: Arc<dyn Store>,
    keys: keys::Keys,
    audit: AuditLog,
    /// The erasure ledger's head (`ledger`).
    ledger: ledger::Ledger,
    /// The label every audit entry of this handle carries.
    actor: Option<String>,
    /// Whether this handle may read for privileged purposes.
    privileged: bool,
    policy: RwLock<Arc<Policy>>,
    durability: Durability,
    clock: Clock,
    /// The Ed25519 seed of erasure receipts (a vault-wide custody key).
    receipt_key: SecretKey,
    /// MACs the clear state (`sealing`), from the audit key.
    state_key: SecretKey,
    /// The vault is in the sealed format (`sealing`, `migrate`).
    sealed: AtomicBool,
    /// How the audit log names the root key in force
    /// ([`crate::RootKey::public_name`]; `None`: not known, a vault opened
    /// from a store and custody given apart): a rotation records it.
    root_name: Mutex<Option<String>>,
    /// The root key's token, when it is in one: where a backup's day key
    /// is made and destroyed (`backup`).
    token: Mutex<Option<crate::custody::pkcs11_uri::Pkcs11Uri>>,
    /// The blind index's key (`index_key`); `None` until a vault made
    /// before it had one is migrated.
    index: RwLock<Option<index_key::IndexKey>>,
    /// The store's durable points so far (`durability`): the mark the
    /// custody notes.
    durable_points: Mutex<u64>,
    /// Why writes are refused, when they are (`open`: the keystore is
    /// shorter than the store refers to).
    refuse_writes: OnceLock<String>,
    /// Keys to destroy at the next durable point (`rotate`: an old key
    /// whose replacement is written but not yet durable).
    deferred_destroy: Mutex<Vec<KeyRef>>,
    subjects: subjects::SubjectCache,
    seqs: counts::SeqCache,
    locks: Locks,
    /// The latest `now` an `expire` run was given: days ended by then may
    /// have lost their keys, so nothing is sealed into them again.
    expired_through: AtomicI64,
    background: Background,
    /// What the open found worth an operator's attention (loose file
    /// modes).
    warnings: Mutex<Vec<String>>,
}

/// The engine's locks, each for one kind of check-then-act.
struct Locks {
    /// Writers of one subject serialize on its stripe.
    stripes: Vec<Mutex<()>>,
    /// Blind-index writers (check-then-insert), subject creation, and the
    /// request ledger.
    blind: Mutex<()>,
    /// Creating a day's retention key (check-then-allocate).
    day: Mutex<()>,
    /// One `expire` run at a time.
    expire: Mutex<()>,
    /// One purge at a time.
    purge: Mutex<()>,
}

/// The background threads' state: the purge, the batched-mode flusher.
#[derive(Default)]
struct Background {
    purger: Mutex<expiry::Purger>,
    /// Writes not yet durable (batched mode).
    dirty: AtomicBool,
    /// The handle is being dropped: background threads stop.
    closing: AtomicBool,
    /// Why the last background flush failed, until a durable point
    /// succeeds: the next batched write reports it.
    flush_failed: Mutex<Option<String>>,
}

/// Takes a lock whose data stays consistent across a panic (caches, pools,
/// unit guards): a poisoned lock is simply taken over.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Locks {
    fn new() -> Locks {
        Locks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            blind: Mutex::new(()),
            day: Mutex::new(()),
            expire: Mutex::new(()),
            purge: Mutex::new(()),
        }
    }

    /// The stripe of `subject`.
    fn stripe(&self, subject: &SubjectId) -> MutexGuard<'_, ()> {
        let b = subject.as_bytes();
        let i = u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as usize % STRIPES;
        lock(&self.stripes[i])
    }

    /// Every stripe: no writer of any subject runs meanwhile.
    fn all_stripes(&self) -> Vec<MutexGuard<'_, ()>> {
        self.stripes.iter().map(lock).collect()
    }
}

impl Engine {
    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// "Now" for due dates: the clock, or the latest `expire` run's `now`
    /// if that is later (an operator may expire ahead of the clock).
    fn threshold(&self) -> i64 {
        self.now().max(
            self.expired_through
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stripe(&self, subject: &SubjectId) -> MutexGuard<'_, ()> {
        self.locks.stripe(subject)
    }

    /// Adds to what `Vault::warnings` reports.
    fn warn(&self, warning: String) {
        lock(&self.warnings).push(warning);
    }
}

impl Vault {
    /// Whether this handle still holds its store's lock: always, but for a
    /// vault in PostgreSQL whose lock went with its connection (the
    /// database restarted, the session was ended). A server whose vault
    /// lost its lock must stop serving it: another node may hold it now.
    pub fn still_locked(&self) -> bool {
        self.engine.store.still_locked()
    }

    /// Whether a read may wait on another machine: a vault in PostgreSQL
    /// (a read its cache does not answer is a round trip to the database).
    /// A server runs such reads off its async threads; a vault in a
    /// directory reads from memory or the local disk.
    pub fn reads_may_wait(&self) -> bool {
        self.engine.store.reads_may_wait()
    }

    /// The vault's directory.
    pub fn path(&self) -> &Path {
        &self.engine.root
    }

    /// The vault's id (32 hex characters).
    pub fn vault_id(&self) -> String {
        hex::encode(self.engine.vault_id)
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.engine.policy()
    }

    /// What the open found worth an operator's attention: writes refused
    /// (and why), the vault's directories or files open to other local users (a vault made before
    /// its files were private, or a directory widened since). Each names
    /// the path and the fix. Empty when all is well.
    pub fn warnings(&self) -> Vec<String> {
        lock(&self.engine.warnings).clone()
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        // Background threads stop at their next check and are waited for,
        // so the directory's locks are free once the handle is gone.
        self.engine.stop_background();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.background
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.keys.release_pool();
        let _ = self.make_durable();
    }
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
