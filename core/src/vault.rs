//! The vault: opening, subjects, identifiers, records, erasure.
//!
//! # Keys
//!
//! ```text
//! root key (caller's) ─ HKDF ─> KEK (wraps keystore slots), index key, receipt key
//! subject key      random, one live per subject, in a keystore slot
//! record key       HKDF(ikm = subject key ‖ "open", salt = vault id, info = "record v1")
//! identifiers key  HKDF(ikm = subject key, salt = vault id, info = "identifiers v1")
//! ```
//!
//! Derived keys are cached in memory by the subject key's [`SlotRef`]; a
//! key's cache entries are dropped when it is destroyed.
//!
//! # Crash order of the mutating operations
//!
//! - `create_subject`: the subject key comes from a pool of slots that are
//!   already durable; then one sled batch writes the subject and its
//!   blind-index entries.
//! - `put`: its day-index entry (when it expires), then its record, into
//!   sled; a crash between leaves an index entry to nothing, which the purge
//!   skips. In `Immediate` mode the put is then made durable by one frame in
//!   the put journal (`journal`: the same writes and the put's audit
//!   entry), replayed at open if sled lost them; a day's first record makes
//!   the day's entry durable through sled first.
//! - `update` / `delete` (rotation): a fresh durable key; one sled batch
//!   re-seals every record of the subject (and its identifiers) under it and
//!   points the subject at it; that batch is made durable; only then is the
//!   old key's slot zeroed. A crash before the batch leaves the new slot
//!   unreferenced; after it, the old one: the repair pass at open zeroes
//!   either.
//! - `erase_subject`: the key's slot is zeroed and fsynced first (that is the
//!   erasure), then one durable batch replaces the subject by a tombstone,
//!   removes its blind-index entries and turns its records into husks. A
//!   crash between leaves a subject pointing at a destroyed key, which the
//!   repair pass finishes erasing.
//!
//! - Re-evaluation (`record_event`, `set_flag`, `withdraw_consent`, lifting
//!   a hold, a policy change): when no record's fate changes, one batch
//!   writes the subject's new facts; otherwise it is a rotation, as above,
//!   whose batch also holds the husks of what it erased or expired.
//!   Consent withdrawal is durable in either mode.
//! - `erase_subject` with records to keep: a rotation (the erased records
//!   become husks, identifiers are dropped) and then the old key's slot is
//!   zeroed.
//! - `expire`: the expiry mark is written; held subjects are rotated; every
//!   ended day's slot is zeroed (one fsync); then one durable batch marks
//!   those days destroyed. A crash before the mark leaves days whose key is
//!   already gone: their records read as `Expired`, and the next run marks
//!   them. The purge (husks, index removal, day entry last) is idempotent
//!   and resumes at open.
//!
//! With `Durability::Immediate` every mutating call but `put` ends with a
//! sled flush and an fsync of sled's file (sled's own flush uses
//! `sync_file_range`, which does not reach the drive's cache); a `put` ends
//! with its journal frame, written with `O_DSYNC`. Erasure and rotation are
//! durable in either mode.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::audit::{AuditEntry, AuditLog, Draft};
use crate::codec;
use crate::crypto::{self, derive_key, DerivedKeys, Plaintext, RootKey, SecretKey};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{truncate_for_message, RecordId, SubjectId};
use crate::journal::{self, Frame, Journal, JournalEntry, JournalMark, JournalReplay};
use crate::keystore::{KeyKind, Keystore, LoadError, SlotRef};
use crate::layout::{self, *};
use crate::policy::{self, Policy};
use crate::retention;

mod compact;
pub(crate) mod rights;
mod rotation;

pub use compact::CompactReport;
pub use rights::{Directive, RequestInfo, RequestKind, Scan};

/// When a mutating call's effects reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Durable before the call returns (the default).
    #[default]
    Immediate,
    /// Durable at the next [`Vault::flush`] or within about a second.
    /// Erasure, consent withdrawal and key destruction stay immediate.
    Batched,
}

impl std::str::FromStr for Durability {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "immediate" => Ok(Durability::Immediate),
            "batched" => Ok(Durability::Batched),
            other => Err(Error::invalid(format!(
                "durability must be \"immediate\" or \"batched\", not {:?}",
                truncate_for_message(other)
            ))),
        }
    }
}

/// The source of "now", in Unix seconds. Tests replace it with a simulated
/// clock.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// How to open a vault.
#[derive(Clone, Default)]
pub struct VaultOptions {
    pub durability: Durability,
    /// `None`: the system clock.
    pub clock: Option<Clock>,
    /// A label for whoever uses this handle (a service name, an operator
    /// role), carried by every audit entry. Letters, digits and `_.:-`, at
    /// most 64: it must not be personal data.
    pub actor: Option<String>,
}

impl std::fmt::Debug for VaultOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultOptions")
            .field("durability", &self.durability)
            .field("clock", &self.clock.as_ref().map(|_| "custom"))
            .field("actor", &self.actor)
            .finish()
    }
}

/// A record read back: its data and metadata. The data is zeroized when the
/// record is dropped, and never printed by `Debug`.
#[derive(Clone)]
pub struct Record {
    pub id: RecordId,
    pub subject: SubjectId,
    pub category: String,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub data: Plaintext,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("category", &self.category)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field(
                "data",
                &format_args!("[redacted; {} bytes]", self.data.len()),
            )
            .finish()
    }
}

/// A record's metadata, without its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordInfo {
    pub id: RecordId,
    pub subject: SubjectId,
    pub category: String,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub size: usize,
    /// When the record's retention ends (the end of its expiry day), if known.
    pub expires_at: Option<i64>,
}

/// What `erase_subject` did, signed by the vault.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ErasureReceipt {
    pub receipt_version: u32,
    pub vault: String,
    pub subject: String,
    pub erased_at: i64,
    /// Records erased at once, by category.
    pub erased: Vec<CategoryCount>,
    /// Records kept (restricted), by category, with why and until when.
    pub retained: Vec<RetainedRecords>,
    pub identifiers_removed: usize,
    pub subject_key_destroyed: bool,
    /// The sequence number of the erasure's audit entry.
    pub audit_seq: u64,
    /// The vault's receipt-signing key (Ed25519), hex.
    pub public_key: String,
    /// Ed25519 over the receipt's canonical JSON without this field, hex
    /// (see [`crate::verify_receipt`]).
    pub signature: String,
}

impl ErasureReceipt {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a receipt always serializes")
    }

    pub fn records_erased(&self) -> u64 {
        self.erased.iter().map(|c| c.records).sum()
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CategoryCount {
    pub category: String,
    pub records: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RetainedRecords {
    pub category: String,
    pub records: u64,
    pub reason: String,
    pub until: Option<i64>,
}

/// A subject's events, flags, consent ledger and states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubjectState {
    pub created_at: i64,
    /// When the subject asked for erasure: what is left is kept
    /// restricted to `legal_claims`.
    pub erasure_requested: Option<i64>,
    pub events: BTreeMap<String, i64>,
    pub flags: BTreeSet<String>,
    /// Every give and withdrawal, in the order recorded.
    pub consents: Vec<ConsentEntry>,
    pub legal_hold: bool,
    pub restricted: bool,
    pub opt_out_of_sale: bool,
}

/// Counts describing a vault, for `shredvault stats`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub subjects_live: u64,
    pub subjects_erased: u64,
    pub records_live: u64,
    pub records_gone: u64,
    pub identifiers_indexed: u64,
    /// UTC days that have a live retention key.
    pub retention_days: u64,
    /// Live key slots: subject keys, retention keys, and the pool of
    /// pre-written subject keys.
    pub keystore_slots_live: u64,
    pub keystore_slots_free: u64,
    pub data_bytes: u64,
    pub keys_bytes: u64,
}

/// What an `expire` run did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ExpireReport {
    /// Retention keys destroyed (one per ended UTC day).
    pub days_destroyed: u64,
    /// Records whose day key was destroyed.
    pub records_expired: u64,
    /// Records of subjects under legal hold kept out of the destroyed days.
    pub records_spared_by_hold: u64,
}

/// Largest record a vault accepts.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Largest identifier value (after trimming).
pub const MAX_IDENTIFIER_BYTES: usize = 1024;
/// Most identifiers one subject may carry.
pub const MAX_IDENTIFIERS_PER_SUBJECT: usize = 64;

const STRIPES: usize = 64;
const KEY_POOL_BATCH: usize = 16;
const KEY_CACHE_MAX: usize = 1 << 16;
const PURGE_CHUNK: usize = 1024;
const SUBJECT_CACHE_MAX: usize = 1 << 16;
/// A subject's stored record counts are brought up to date every this many
/// puts (see `SubjectCounts`): an erasure reads at most this many records.
const COUNTS_EVERY: u64 = 64;

/// A subject's next record number, and the number its stored counts go to.
#[derive(Clone, Copy, Debug)]
struct RecordSeqs {
    next: u64,
    counted: u64,
}

/// The background purge thread's state.
#[derive(Default)]
struct Purger {
    running: bool,
    /// Another expiry run happened while it ran: go round again.
    again: bool,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// An open vault. `Sync`: one handle may be shared by many threads.
pub struct Vault {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.inner.root)
            .finish_non_exhaustive()
    }
}

struct Inner {
    root: PathBuf,
    audit: AuditLog,
    /// The label every audit entry of this handle carries.
    actor: Option<String>,
    data_dir: PathBuf,
    tree: sled::Tree,
    db: sled::Db,
    db_file: File,
    keystore: Keystore,
    /// Keys the blind index; replaced by a root-key rotation.
    index_key: RwLock<SecretKey>,
    /// The Ed25519 seed of erasure receipts (a vault-wide keystore key).
    receipt_key: SecretKey,
    vault_id: [u8; 16],
    policy: RwLock<Arc<Policy>>,
    durability: Durability,
    clock: Clock,
    /// Derived keys by the subject key they come from. (These caches hash
    /// with FxHash: their keys are ids and slots the vault drew at random,
    /// nothing a caller picks.)
    key_cache: Mutex<FxHashMap<(SlotRef, KeyUse), SecretKey>>,
    /// Durable, unreferenced subject keys ready to hand out.
    key_pool: Mutex<Vec<(SlotRef, SecretKey)>>,
    /// Writers of one subject serialize on its stripe.
    stripes: Vec<Mutex<()>>,
    /// Blind-index writers serialize here (check-then-insert).
    blind_lock: Mutex<()>,
    /// Creating a day's retention key (check-then-allocate).
    day_lock: Mutex<()>,
    /// One `expire` run at a time.
    expire_lock: Mutex<()>,
    /// One purge at a time.
    purge_lock: Mutex<()>,
    purger: Mutex<Purger>,
    /// The latest `now` an `expire` run was given: days ended by then may
    /// have lost their keys, so nothing is sealed into them again.
    expired_through: AtomicI64,
    /// Bumped whenever a subject's entry changes, so that a read racing
    /// the change does not cache what it saw (see `subject_view`).
    subject_generation: AtomicU64,
    subject_cache: RwLock<FxHashMap<SubjectId, Arc<LiveSubject>>>,
    /// Per subject: the next record number, and how far its stored counts
    /// go. Read and written only under the subject's stripe.
    record_seqs: Mutex<FxHashMap<SubjectId, RecordSeqs>>,
    /// Where a `put` in `Immediate` mode becomes durable (see `journal`).
    journal: Journal,
    /// Held while the journal mark is read and raised.
    mark_lock: Mutex<()>,
    dirty: AtomicBool,
    closing: AtomicBool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KeyUse {
    RecordOpen,
    RecordDay(i64),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent across a panic (caches,
    // pools, unit guards), so a poisoned lock is simply taken over.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Vault {
    /// Opens the vault at `path` (creating it if needed) with the default
    /// options. `policy`: required for a new vault; for an existing one,
    /// `None` keeps the stored policy and `Some` replaces it once validated
    /// against the stored data.
    pub fn open(path: impl AsRef<Path>, root: &RootKey, policy: Option<Policy>) -> Result<Vault> {
        Vault::open_with(path, root, policy, VaultOptions::default())
    }

    pub fn open_with(
        path: impl AsRef<Path>,
        root: &RootKey,
        policy: Option<Policy>,
        options: VaultOptions,
    ) -> Result<Vault> {
        let root_dir = path.as_ref().to_path_buf();
        if root_dir.as_os_str().is_empty() {
            return Err(Error::invalid("the vault path is empty"));
        }
        if let Some(actor) = &options.actor {
            let ok = !actor.is_empty()
                && actor.len() <= 64
                && actor
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
            if !ok {
                return Err(Error::invalid(
                    "an actor label is 1 to 64 letters, digits or _.:- (never personal data)",
                ));
            }
        }
        if policy.is_none() && !root_dir.join("keys").join("keystore").exists() {
            // Refused before anything is created.
            return Err(Error::new(
                ErrorKind::Policy,
                format!(
                    "there is no vault at {} yet: give a policy to create one",
                    root_dir.display()
                ),
            ));
        }
        std::fs::create_dir_all(&root_dir)
            .map_err(|e| Error::io(format!("creating {}", root_dir.display()), e))?;
        let keys = DerivedKeys::from_root(root);
        // The keystore first: its lock and key check come before sled is
        // touched, so a second process gets `Locked` and a wrong key
        // `WrongKey` without side effects.
        let keystore = Keystore::open(&root_dir.join("keys"), &keys, crypto::random_array()?)?;
        let vault_id = *keystore.vault_id();

        // A compaction a crash cut short is finished or undone first.
        compact::recover(&root_dir)?;
        let data_dir = root_dir.join("data");
        let fresh_data = !data_dir.join("db").exists();
        let db = open_sled(&data_dir, &root_dir)?;
        let tree = db.open_tree(TREE)?;
        let db_file = File::open(data_dir.join("db"))
            .map_err(|e| Error::io(format!("opening {}", data_dir.display()), e))?;
        if fresh_data {
            // New directory entries (data/, data/db, data/conf) must survive
            // a power cut too.
            for dir in [&data_dir, &root_dir] {
                crate::keystore::sync_dir(dir)?;
            }
        }

        let mut meta_is_new = false;
        match tree.get(META_KEY)? {
            Some(bytes) => {
                let meta: VaultMeta = codec::decode(&bytes, "vault metadata")?;
                if meta.vault_id != vault_id {
                    return Err(Error::corrupt(format!(
                        "{} belongs to another vault than {}/keys",
                        data_dir.display(),
                        root_dir.display()
                    )));
                }
            }
            None => {
                let (live, _) = keystore.counts();
                if live > 0 {
                    // The metadata is made durable before any key is
                    // allocated, so keys without it mean data/ is lost or
                    // damaged. Opening would make every stored key look
                    // unreferenced and the repair pass would destroy them.
                    return Err(Error::corrupt(format!(
                        "{} is missing, empty or damaged (it lacks the vault's metadata) but {} holds {live} keys; refusing to open (restore data/ first)",
                        data_dir.display(),
                        keystore.path().display()
                    )));
                }
                let meta = VaultMeta {
                    vault_id,
                    created_at: options
                        .clock
                        .as_ref()
                        .map(|c| c())
                        .unwrap_or_else(|| system_clock()()),
                };
                tree.insert(META_KEY, codec::encode(&meta)?)?;
                // Durable before any key exists (see above).
                db.flush()?;
                File::open(data_dir.join("db"))
                    .and_then(|f| f.sync_data())
                    .map_err(|e| Error::io(format!("syncing {}", data_dir.display()), e))?;
                meta_is_new = true;
            }
        }

        let stored_policy = match tree.get(POLICY_KEY)? {
            Some(bytes) => {
                let text: String = codec::decode(&bytes, "stored policy")?;
                Some(Policy::parse(&text, "stored policy").map_err(|e| {
                    Error::corrupt(format!(
                        "the stored policy no longer parses: {}",
                        e.message()
                    ))
                })?)
            }
            None => None,
        };

        let expired_through: i64 = match tree.get(EXPIRED_THROUGH_KEY)? {
            Some(bytes) => codec::decode(&bytes, "expiry mark")?,
            None => i64::MIN,
        };
        let secrets = vault_secrets(&tree, &keystore)?;
        let load_secret = |slot: SlotRef, what: &str| match keystore.load(slot) {
            Ok(k) => Ok(k),
            Err(LoadError::Destroyed) => Err(Error::corrupt(format!(
                "the vault's {what} is gone from the keystore"
            ))),
            Err(LoadError::Corrupt(m)) => Err(Error::corrupt(format!("the vault's {what}: {m}"))),
            Err(LoadError::Other(e)) => Err(e),
        };
        let audit_key = load_secret(secrets.audit, "audit key")?;
        let (journal, frames) = Journal::open(
            &root_dir,
            journal::journal_key(&audit_key),
            stored_journal_mark(&tree)?,
        )?;
        let audit = AuditLog::open(&tree, audit_key)?;
        let receipt_key = load_secret(secrets.receipt, "receipt key")?;
        let inner = Inner {
            root: root_dir.clone(),
            audit,
            actor: options.actor.clone(),
            data_dir,
            tree,
            db,
            db_file,
            keystore,
            index_key: RwLock::new(keys.index.clone()),
            receipt_key,
            vault_id,
            policy: RwLock::new(Arc::new(match (&policy, &stored_policy) {
                (Some(p), _) => p.clone(),
                (None, Some(p)) => p.clone(),
                (None, None) if meta_is_new => {
                    return Err(Error::new(
                        ErrorKind::Policy,
                        format!(
                            "the vault at {} has no policy yet: give one to create it",
                            root_dir.display()
                        ),
                    ))
                }
                (None, None) => {
                    return Err(Error::corrupt(format!(
                        "the vault at {} has lost its stored policy (data/ is damaged)",
                        root_dir.display()
                    )))
                }
            })),
            durability: options.durability,
            clock: options.clock.unwrap_or_else(system_clock),
            key_cache: Mutex::new(FxHashMap::default()),
            key_pool: Mutex::new(Vec::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            blind_lock: Mutex::new(()),
            day_lock: Mutex::new(()),
            expire_lock: Mutex::new(()),
            purge_lock: Mutex::new(()),
            purger: Mutex::new(Purger::default()),
            expired_through: AtomicI64::new(expired_through),
            subject_generation: AtomicU64::new(0),
            subject_cache: RwLock::new(FxHashMap::default()),
            record_seqs: Mutex::new(FxHashMap::default()),
            journal,
            mark_lock: Mutex::new(()),
            dirty: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        };
        // Before anything else writes or makes a durable point: the puts
        // the journal holds past sled's mark go back in.
        let mark = inner.replay_journal(frames)?;
        if let Some(new) = policy {
            if stored_policy.as_ref().map(|p| p.source()) != Some(new.source()) {
                inner.check_policy_fits(&new)?;
                inner
                    .tree
                    .insert(POLICY_KEY, codec::encode(&new.source().to_string())?)?;
            }
        }
        inner.finish_rotation()?;
        inner.repair()?;
        inner.reevaluate_all()?;
        inner.make_durable()?;
        inner.journal.start(mark)?;
        let pending_purge = !inner.destroyed_days()?.is_empty()
            || inner.tree.scan_prefix([ERASED_PENDING]).next().is_some();
        let inner = Arc::new(inner);
        if inner.durability == Durability::Batched {
            spawn_flusher(Arc::downgrade(&inner));
        }
        if pending_purge {
            Inner::kick_purge(&inner);
        }
        Ok(Vault { inner })
    }

    /// The vault's directory.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// The vault's id (32 hex characters).
    pub fn vault_id(&self) -> String {
        hex::encode(self.inner.vault_id)
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy()
    }

    /// Replaces the policy, once checked against the stored data (a category
    /// that still has live records cannot disappear), then re-evaluates
    /// every record's expiry under it: records move to their new day, and
    /// what the new policy says is past due expires now.
    pub fn set_policy(&self, policy: Policy) -> Result<()> {
        let entry = self.inner.entry("set_policy");
        let result = (|| -> Result<()> {
            let inner = &self.inner;
            // Every subject stripe, so no put races the check.
            let _guards: Vec<_> = inner.stripes.iter().map(lock).collect();
            inner.check_policy_fits(&policy)?;
            inner
                .tree
                .insert(POLICY_KEY, codec::encode(&policy.source().to_string())?)?;
            inner.make_durable()?;
            *inner.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
            inner.reevaluate_all()
        })();
        self.inner.finish(entry, result, Commit::Always)
    }

    /// Creates a subject with a random id, indexing `identifiers` (kind,
    /// value) in the blind index.
    pub fn create_subject(&self, identifiers: &[(&str, &str)]) -> Result<SubjectId> {
        let mut entry = self.inner.entry("create_subject");
        let result = (|| -> Result<SubjectId> {
            let inner = &self.inner;
            let mut normalized = Vec::with_capacity(identifiers.len());
            for (kind, value) in identifiers {
                let ident = normalize_identifier(kind, value)?;
                if !normalized.contains(&ident) {
                    normalized.push(ident);
                }
            }
            if normalized.len() > MAX_IDENTIFIERS_PER_SUBJECT {
                return Err(Error::invalid(format!(
                    "a subject may have at most {MAX_IDENTIFIERS_PER_SUBJECT} identifiers"
                )));
            }
            let blind: Vec<[u8; 32]> = normalized
                .iter()
                .map(|(k, v)| inner.blind_mac(k, v))
                .collect();
            let _blind_guard = lock(&inner.blind_lock);
            // Record ids carry the subject id's first 8 bytes: no two
            // subjects may share them (checked under the blind lock, which
            // every creation takes).
            let mut id = SubjectId::random()?;
            while inner
                .tree
                .scan_prefix(&layout::subject_key(&id)[..9])
                .next()
                .is_some()
            {
                id = SubjectId::random()?;
            }
            for (mac, (kind, _)) in blind.iter().zip(&normalized) {
                if inner.tree.contains_key(blind_key(mac))? {
                    return Err(Error::invalid(format!(
                        "a subject with this {kind} identifier already exists"
                    )));
                }
            }
            let (slot, key) = inner.take_subject_key()?;
            let sealed_identifiers = inner.seal_identifiers(&id, &key, &normalized)?;
            let entry = SubjectEntry::Live(LiveSubject {
                created_at: inner.now(),
                key: slot,
                identifiers: sealed_identifiers,
                blind: blind.clone(),
                events: BTreeMap::new(),
                flags: BTreeSet::new(),
                consents: Vec::new(),
                legal_hold: false,
                restricted: false,
                opt_out_of_sale: false,
            });
            let mut batch = sled::Batch::default();
            batch.insert(&subject_key(&id), codec::encode(&entry)?);
            for mac in &blind {
                batch.insert(&blind_key(mac)[..], &id.as_bytes()[..]);
            }
            if let Err(e) = inner.tree.apply_batch(batch) {
                let _ = inner.keystore.destroy(&[slot]);
                return Err(e.into());
            }
            Ok(id)
        })();
        if let Ok(id) = &result {
            entry.subject = Some(*id);
        }
        self.inner.finish(entry, result, Commit::Mode)
    }

    /// Adds an identifier to a subject. Linking one it already has is a no-op;
    /// one that belongs to another subject is `InvalidArgument`.
    pub fn link_identifier(&self, subject: &SubjectId, kind: &str, value: &str) -> Result<()> {
        let mut entry = self.inner.entry("link_identifier");
        entry.subject = Some(*subject);
        entry.detail = Some(self.inner.kind_term(kind).into());
        let result = (|| -> Result<()> {
            let inner = &self.inner;
            let ident = normalize_identifier(kind, value)?;
            let mac = inner.blind_mac(&ident.0, &ident.1);
            let _stripe = inner.stripe(subject);
            let _blind_guard = lock(&inner.blind_lock);
            let mut live = inner.live_subject(subject)?;
            if let Some(owner) = inner.tree.get(blind_key(&mac))? {
                if owner.as_ref() == subject.as_bytes() {
                    return Ok(());
                }
                return Err(Error::invalid(format!(
                    "this {} identifier belongs to another subject",
                    ident.0
                )));
            }
            let subject_key = inner.subject_key(subject, live.key)?;
            let mut idents = inner.open_identifiers(subject, &subject_key, &live.identifiers)?;
            if idents.len() >= MAX_IDENTIFIERS_PER_SUBJECT {
                return Err(Error::invalid(format!(
                    "a subject may have at most {MAX_IDENTIFIERS_PER_SUBJECT} identifiers"
                )));
            }
            idents.push(ident);
            live.identifiers = inner.seal_identifiers(subject, &subject_key, &idents)?;
            live.blind.push(mac);
            let mut batch = sled::Batch::default();
            batch.insert(
                &layout::subject_key(subject),
                codec::encode(&SubjectEntry::Live(live))?,
            );
            batch.insert(&blind_key(&mac)[..], &subject.as_bytes()[..]);
            inner.tree.apply_batch(batch)?;
            inner.subjects_changed();
            Ok(())
        })();
        self.inner.finish(entry, result, Commit::Mode)
    }

    /// The subject an identifier belongs to, if any (erased subjects have
    /// none).
    pub fn find_subject(&self, kind: &str, value: &str) -> Result<Option<SubjectId>> {
        let mut entry = self.inner.entry("find_subject");
        entry.detail = Some(self.inner.kind_term(kind).into());
        let result = (|| -> Result<Option<SubjectId>> {
            let inner = &self.inner;
            let (kind, value) = normalize_identifier(kind, value)?;
            let mac = inner.blind_mac(&kind, &value);
            match inner.tree.get(blind_key(&mac))? {
                None => Ok(None),
                Some(bytes) => {
                    let id = SubjectId::from_bytes(&bytes)?;
                    match inner.subject_entry(&id)? {
                        Some(SubjectEntry::Live(_)) => Ok(Some(id)),
                        _ => Ok(None),
                    }
                }
            }
        })();
        if let Ok(Some(id)) = &result {
            entry.subject = Some(*id);
        }
        self.inner.finish(entry, result, Commit::No)
    }

    /// The identifiers of a subject, decrypted: (kind, normalized value).
    pub fn identifiers(&self, subject: &SubjectId) -> Result<Vec<(String, String)>> {
        let mut entry = self.inner.entry("identifiers");
        entry.subject = Some(*subject);
        let result = (|| -> Result<Vec<(String, String)>> {
            let inner = &self.inner;
            let live = inner.live_subject(subject)?;
            let key = inner.subject_key(subject, live.key)?;
            inner.open_identifiers(subject, &key, &live.identifiers)
        })();
        self.inner.finish(entry, result, Commit::No)
    }

    /// Seals `data` as a new record of `subject` in `category`.
    pub fn put(&self, subject: &SubjectId, category: &str, data: &[u8]) -> Result<RecordId> {
        let mut entry = self.inner.entry("put");
        entry.subject = Some(*subject);
        entry.detail = Some(self.inner.category_term(category).into());
        // What the put wrote, for its journal frame (`Immediate` mode).
        let mut journaled = JournalEntry::default();
        let result = (|| -> Result<RecordId> {
            let inner = &self.inner;
            let policy = inner.policy();
            let category = policy.category(category)?;
            check_record_size(data)?;
            let _stripe = inner.stripe(subject);
            let live = inner.live_subject(subject)?;
            if live.erasure_requested().is_some() {
                return Err(Error::new(
                    ErrorKind::Erased,
                    format!("subject {subject} asked for erasure: nothing new is stored for it"),
                ));
            }
            if category.legal_basis == policy::LegalBasis::Consent
                && !category
                    .purposes
                    .iter()
                    .any(|p| p != policy::LEGAL_CLAIMS && live.consent_stands(p))
            {
                return Err(Error::new(
                ErrorKind::PurposeDenied,
                format!(
                    "category {:?} is kept on consent, and subject {subject} has no standing consent for any of its purposes ({})",
                    category.name,
                    category.purposes.join(", ")
                ),
            ));
            }
            let now = inner.now();
            let facts = retention::Facts {
                events: Some(&live.events),
                flags: Some(&live.flags),
            };
            let expiry = retention::expiry(category, &facts, now);
            if let retention::Expiry::At(at) = expiry {
                if at <= inner.threshold() {
                    return Err(Error::new(
                        ErrorKind::Expired,
                        format!(
                        "the retention of category {:?} has already ended for subject {subject}",
                        category.name
                    ),
                    ));
                }
            }
            let day = expiry.day();
            if let Some(d) = day {
                inner.ensure_day_key(d)?;
            }
            let record_key = inner.record_key(subject, live.key, day)?;
            let mut seqs = inner.record_seqs(subject)?;
            let mut record = LiveRecord {
                subject: *subject,
                category: category.name.clone(),
                version: 1,
                created_at: now,
                updated_at: now,
                subject_key_id: live.key.key_id,
                day,
                sealed: Vec::new(),
            };
            // One sled write (two with an expiry day): the day index first,
            // so a crash between leaves at most an index entry to nothing,
            // which the purge skips. The record goes in only if its id is
            // free (a clash needs another subject with the same first 8 id
            // bytes and 3 equal random bytes: met by numbering on).
            let stored = (|| loop {
                let id = RecordId::for_subject(subject, seqs.next)?;
                seqs.next += 1;
                record.sealed = crypto::seal(
                    &record_key,
                    &record_aad(&inner.vault_id, &id, &record),
                    data,
                )?;
                if let Some(d) = day {
                    inner.tree.insert(&day_record_key(d, &id)[..], &[][..])?;
                }
                let entry = RecordEntry::Live(record);
                let bytes = codec::encode(&entry)?;
                let key = layout::record_key(&id);
                let stored =
                    inner
                        .tree
                        .compare_and_swap(key, None as Option<&[u8]>, Some(&bytes[..]))?;
                let RecordEntry::Live(back) = entry else {
                    unreachable!("built as Live above")
                };
                record = back;
                if stored.is_ok() {
                    if inner.durability == Durability::Immediate {
                        if let Some(d) = day {
                            journaled
                                .inserts
                                .push((day_record_key(d, &id).to_vec().into(), Vec::new().into()));
                        }
                        journaled.inserts.push((key.to_vec().into(), bytes.into()));
                    }
                    // The put is done; counts that fail to be stored stay
                    // where they were, and the next put tries again.
                    if (seqs.next - 1).saturating_sub(seqs.counted) >= COUNTS_EVERY {
                        let _ = inner.store_counts(subject, &mut seqs);
                    }
                    return Ok(id);
                }
            })();
            match &stored {
                Ok(_) => inner.cache_seqs(subject, seqs),
                Err(_) => inner.forget_seqs(subject),
            }
            stored
        })();
        if let Ok(id) = &result {
            entry.record = Some(*id);
        }
        self.inner.finish_put(entry, result, journaled)
    }

    /// Reads a record for `purpose`.
    pub fn get(&self, record: &RecordId, purpose: &str) -> Result<Record> {
        let policy = self.inner.policy();
        let mut entry = self.inner.entry("get");
        entry.record = Some(*record);
        entry.purpose = Some(known_term(policy.purpose(purpose).is_ok(), purpose));
        let result = (|| -> Result<Record> {
            let inner = &self.inner;
            // A rotation may replace the record and its subject's key between
            // our two reads; it finishes quickly, so re-reading settles it.
            let mut last_mismatch = None;
            for _ in 0..64 {
                let stored = inner.record_bytes(record)?;
                let live = match decode_record_view(&stored)
                    .map_err(|e| Error::corrupt(format!("record {record}: {}", e.message())))?
                {
                    RecordEntryView::Live(live) => live,
                    RecordEntryView::Gone(h) => return Err(gone_error(record, h.reason)),
                };
                let category = policy.category(live.category).map_err(|_| {
                    Error::corrupt(format!(
                        "record {record} names category {:?}, which the policy lacks",
                        live.category
                    ))
                })?;
                if !category.allows(purpose) {
                    policy.purpose(purpose).map_err(|_| {
                        Error::new(
                            ErrorKind::PurposeDenied,
                            format!("unknown purpose {:?}", truncate_for_message(purpose)),
                        )
                    })?;
                    return Err(Error::new(
                        ErrorKind::PurposeDenied,
                        format!(
                            "category {:?} does not allow purpose {:?}",
                            category.name, purpose
                        ),
                    ));
                }
                let subject = inner.subject_for_record(&live.subject, live.subject_key_id)?;
                check_read_allowed(&policy, category, &subject, &live.subject, purpose)?;
                if subject.key.key_id != live.subject_key_id {
                    // Mid-rotation, the pair changes between reads; the same
                    // mismatch seen twice is damage, not a race.
                    let mismatch = (live.subject_key_id, subject.key);
                    if last_mismatch == Some(mismatch) {
                        return Err(Error::corrupt(format!(
                            "record {record} is sealed under a key its subject does not hold"
                        )));
                    }
                    last_mismatch = Some(mismatch);
                    continue;
                }
                let key = match inner.record_key(&live.subject, subject.key, live.day) {
                    Ok(k) => k,
                    Err(e) if e.kind() == ErrorKind::Erased => continue,
                    Err(e) => return Err(e),
                };
                let aad = record_aad_view(&inner.vault_id, record, &live);
                let data = crypto::open(&key, &aad, live.sealed, "record")?;
                return Ok(Record {
                    id: *record,
                    subject: live.subject,
                    category: live.category.to_string(),
                    version: live.version,
                    created_at: live.created_at,
                    updated_at: live.updated_at,
                    data,
                });
            }
            Err(Error::internal(format!(
                "record {record} kept changing while being read"
            )))
        })();
        if let Ok(r) = &result {
            entry.subject = Some(r.subject);
            entry.detail = Some(r.category.clone().into());
        }
        self.inner.finish(entry, result, Commit::No)
    }

    /// Rectifies a record: the subject's key is rotated, so the old value is
    /// no longer decryptable anywhere.
    pub fn update(&self, record: &RecordId, data: &[u8]) -> Result<()> {
        let mut entry = self.inner.entry("update");
        entry.record = Some(*record);
        let result = (|| -> Result<()> {
            check_record_size(data)?;
            self.inner.rotate_for(record, Edit::Update(data))
        })();
        self.inner.finish(entry, result, Commit::Mode)
    }

    /// Erases one record: the subject's key is rotated.
    pub fn delete(&self, record: &RecordId) -> Result<()> {
        let mut entry = self.inner.entry("delete");
        entry.record = Some(*record);
        let result = self.inner.rotate_for(record, Edit::Delete);
        self.inner.finish(entry, result, Commit::Mode)
    }

    /// The metadata of a subject's live records, oldest first by id order.
    pub fn records(&self, subject: &SubjectId) -> Result<Vec<RecordInfo>> {
        let mut entry = self.inner.entry("records");
        entry.subject = Some(*subject);
        let result = self.records_unaudited(subject);
        self.inner.finish(entry, result, Commit::No)
    }

    fn records_unaudited(&self, subject: &SubjectId) -> Result<Vec<RecordInfo>> {
        let inner = &self.inner;
        inner.live_subject(subject)?;
        let mut out = Vec::new();
        let mut day_live: HashMap<i64, bool> = HashMap::new();
        for item in inner.tree.scan_prefix(subject_records_prefix(subject)) {
            let (k, v) = item?;
            let id = RecordId::from_bytes(&k[1..])?;
            if let RecordEntry::Live(r) = decode_record(&v)? {
                if let Some(day) = r.day {
                    // Expired, awaiting the purge: not listed.
                    let live = match day_live.get(&day) {
                        Some(l) => *l,
                        None => {
                            let l = inner.day_is_live(day)?;
                            day_live.insert(day, l);
                            l
                        }
                    };
                    if !live {
                        continue;
                    }
                }
                out.push(RecordInfo {
                    id,
                    subject: r.subject,
                    category: r.category,
                    version: r.version,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                    size: r.sealed.len().saturating_sub(crypto::SEAL_OVERHEAD),
                    expires_at: r.day.map(retention::day_end),
                });
            }
        }
        out.sort_by_key(|r| (r.created_at, r.id));
        Ok(out)
    }

    /// Answers an erasure request. `erasure_requested` is recorded; then,
    /// per category: one whose rules name `erasure_requested` follows them;
    /// one with `on_erasure_request = "retain"` is kept until its retention
    /// ends; every other is erased at once. What is kept is restricted to
    /// `legal_claims` and the subject's identifiers are removed.
    ///
    /// When nothing is kept, the subject key is destroyed (durably) before
    /// this returns, then its metadata and blind-index entries are removed.
    /// When something is kept, the subject key is rotated: the kept records
    /// are re-sealed under a fresh key and the old one destroyed, so the
    /// erased records are unreadable in every copy of `data/`.
    ///
    /// Refused with `LegalHold` while the subject is under legal hold.
    /// The receipt is signed (see `rights.rs`).
    fn erase_unsigned(&self, subject: &SubjectId) -> Result<ErasureReceipt> {
        let inner = &self.inner;
        let _stripe = inner.stripe(subject);
        let mut live = inner.live_subject(subject)?;
        if live.legal_hold {
            return Err(Error::new(
                ErrorKind::LegalHold,
                format!(
                    "subject {subject} is under legal hold: erasure is refused until it is lifted"
                ),
            ));
        }
        let now = inner.now();
        live.events
            .entry(policy::ERASURE_REQUESTED.to_string())
            .or_insert(now);
        // What categories the subject holds, how many of each: its stored
        // counts and the few records put since. Only when one of them
        // may be kept on an erasure request are the records decided one by
        // one (and the subject rotated); otherwise the erasure is the key.
        let counts = inner.erasable_counts(subject)?;
        let policy = inner.policy();
        let maybe_kept = counts.keys().any(|c| {
            policy.category(c).is_ok_and(|cat| {
                cat.follows_erasure_request()
                    || cat.on_erasure_request == policy::OnErasureRequest::Retain
            })
        });
        let mut receipt = ErasureReceipt {
            receipt_version: 1,
            vault: hex::encode(inner.vault_id),
            subject: subject.to_string(),
            erased_at: now,
            erased: Vec::new(),
            retained: Vec::new(),
            identifiers_removed: 0,
            subject_key_destroyed: false,
            audit_seq: 0,
            public_key: String::new(),
            signature: String::new(),
        };
        let keeps_some = maybe_kept
            && inner
                .decide_all(subject, &live, inner.threshold())?
                .iter()
                .any(|d| matches!(d.fate, Fate::Keep(_)));
        let outcome = if keeps_some {
            inner.rotate(subject, live, None)?
        } else {
            Outcome::default()
        };
        if outcome.kept.is_empty() {
            // Nothing to keep: the erasure is the key's slot, zeroed and
            // fsynced. (A rotation above that kept nothing ends here too.)
            let live = inner.live_subject(subject)?;
            let mut counts = if keeps_some {
                inner.erasable_counts(subject)?
            } else {
                counts
            };
            for (category, n) in outcome.erased {
                *counts.entry(category).or_default() += n;
            }
            inner.destroy_subject_key(live.key)?;
            inner.finish_erasure(subject, &live, now)?;
            receipt.identifiers_removed = outcome.identifiers_removed + live.blind.len();
            receipt.subject_key_destroyed = true;
            receipt.erased = category_counts(counts);
            return Ok(receipt);
        }
        let policy = inner.policy();
        let mut retained: BTreeMap<String, RetainedRecords> = BTreeMap::new();
        for (category, expiry) in &outcome.kept {
            let cat = policy.category(category)?;
            let rule = cat
                .retention
                .iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join("; otherwise ");
            let why = if cat.follows_erasure_request() {
                "its retention rule names erasure_requested"
            } else {
                "on_erasure_request = \"retain\""
            };
            let until = match expiry {
                retention::Expiry::At(t) => Some(retention::day_end(retention::expiry_day(*t))),
                retention::Expiry::Open => None,
            };
            let entry = retained
                .entry(category.clone())
                .or_insert_with(|| RetainedRecords {
                    category: category.clone(),
                    records: 0,
                    reason: if rule.is_empty() {
                        format!("{why}; no retention period: kept until erased, restricted to legal_claims")
                    } else {
                        format!("{why}; kept {rule}, restricted to legal_claims")
                    },
                    until,
                });
            entry.records += 1;
            // The category is kept until its last record goes; open wins.
            entry.until = match (entry.until, until) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        receipt.erased = category_counts(outcome.erased);
        receipt.retained = retained.into_values().collect();
        receipt.identifiers_removed = outcome.identifiers_removed;
        Ok(receipt)
    }

    /// Records (or moves) a subject event that starts retention clocks,
    /// e.g. `agreement_end`. Affected records are re-sealed under the key of
    /// their new expiry day (the subject key is rotated, so nothing stays
    /// readable under the old day); records whose expiry is now past are
    /// erased by this call.
    pub fn record_event(&self, subject: &SubjectId, event: &str, at: i64) -> Result<()> {
        let mut entry = self.inner.entry("record_event");
        entry.subject = Some(*subject);
        entry.detail = Some(self.inner.event_term(event).into());
        let result = (|| -> Result<()> {
            let inner = &self.inner;
            let policy = inner.policy();
            if event == policy::COLLECTED {
                return Err(Error::invalid(
                    "collected is each record's own creation time, not a subject event",
                ));
            }
            if event == policy::ERASURE_REQUESTED {
                return Err(Error::invalid(
                    "erasure_requested is recorded by erase_subject",
                ));
            }
            if !policy.events().contains(event) {
                return Err(Error::invalid(format!(
                    "unknown event {:?}: the policy names no such event",
                    truncate_for_message(event)
                )));
            }
            retention::check_event_time(at, event)?;
            let _stripe = inner.stripe(subject);
            let mut live = inner.live_subject(subject)?;
            if live.events.get(event) == Some(&at) {
                return Ok(());
            }
            live.events.insert(event.to_string(), at);
            inner.reevaluate(subject, live).map(|_| ())
        })();
        self.inner.finish(entry, result, Commit::Mode)?;
        if event == policy::DECEASED {
            self.carry_out_post_mortem(subject)?;
        }
        Ok(())
    }

    /// Sets or clears a subject flag that retention rules test (`if_flag`),
    /// re-evaluating the subject's expiries as `record_event` does.
    pub fn set_flag(&self, subject: &SubjectId, flag: &str, on: bool) -> Result<()> {
        let mut entry = self.inner.entry("set_flag");
        entry.subject = Some(*subject);
        entry.detail = Some(format!("{}={}", self.inner.flag_term(flag), on).into());
        let result = (|| -> Result<()> {
            let inner = &self.inner;
            if !inner.policy().flags().contains(flag) {
                return Err(Error::invalid(format!(
                    "unknown flag {:?}: the policy names no such flag",
                    truncate_for_message(flag)
                )));
            }
            let _stripe = inner.stripe(subject);
            let mut live = inner.live_subject(subject)?;
            let changed = if on {
                live.flags.insert(flag.to_string())
            } else {
                live.flags.remove(flag)
            };
            if !changed {
                return Ok(());
            }
            inner.reevaluate(subject, live).map(|_| ())
        })();
        self.inner.finish(entry, result, Commit::Mode)
    }

    /// Records that the subject gave consent for `purpose` at `at`. The
    /// ledger keeps every give and withdrawal.
    pub fn give_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()> {
        let mut entry = self.inner.entry("give_consent");
        entry.subject = Some(*subject);
        entry.purpose = Some(self.inner.purpose_term(purpose));
        let result = self.consent(subject, purpose, at, true);
        self.inner.finish(entry, result, Commit::Mode)
    }

    /// Records that the subject withdrew consent for `purpose` at `at`, and
    /// erases, by rotating the subject key, every record of a category kept
    /// on consent for which no consent now stands (a category serving two
    /// purposes lives on while consent for the other stands). Other records
    /// are untouched. Always durable before it returns. Under legal hold the
    /// withdrawal is recorded and reads on consent refused, but the records
    /// are kept until the hold is lifted.
    pub fn withdraw_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()> {
        let mut entry = self.inner.entry("withdraw_consent");
        entry.subject = Some(*subject);
        entry.purpose = Some(self.inner.purpose_term(purpose));
        let result = self.consent(subject, purpose, at, false);
        self.inner.finish(entry, result, Commit::Always)
    }

    fn consent(&self, subject: &SubjectId, purpose: &str, at: i64, given: bool) -> Result<()> {
        let inner = &self.inner;
        let policy = inner.policy();
        policy.purpose(purpose).map_err(|_| {
            Error::invalid(format!(
                "unknown purpose {:?}: the policy names no such purpose",
                truncate_for_message(purpose)
            ))
        })?;
        if purpose == policy::LEGAL_CLAIMS {
            return Err(Error::invalid(
                "legal_claims does not rest on consent: it cannot be given or withdrawn",
            ));
        }
        retention::check_event_time(at, "consent")?;
        let _stripe = inner.stripe(subject);
        let mut live = inner.live_subject(subject)?;
        live.consents.push(ConsentEntry {
            purpose: purpose.to_string(),
            given,
            at,
            recorded_at: inner.now(),
        });
        inner.reevaluate(subject, live).map(|_| ())
    }

    /// Puts a subject under legal hold, or lifts it. While held, nothing of
    /// the subject is erased or expires: `erase_subject` and `delete` are
    /// refused with `LegalHold`, and expiry runs re-seal its due records
    /// out of their day before destroying the day's key. Lifting the hold
    /// re-evaluates the subject: what is past due expires then.
    pub fn set_legal_hold(&self, subject: &SubjectId, on: bool) -> Result<()> {
        let mut entry = self.inner.entry("set_legal_hold");
        entry.subject = Some(*subject);
        entry.detail = Some(if on { "true" } else { "false" }.into());
        let result = (|| -> Result<()> {
            let inner = &self.inner;
            // No expiry run is between choosing whom to spare and destroying keys.
            let _expire = lock(&inner.expire_lock);
            let _stripe = inner.stripe(subject);
            let mut live = inner.live_subject(subject)?;
            if live.legal_hold == on {
                return Ok(());
            }
            live.legal_hold = on;
            inner.reevaluate(subject, live).map(|_| ())
        })();
        self.inner.finish(entry, result, Commit::Always)
    }

    /// Restricts the processing of a subject's data (GDPR art. 18), or lifts
    /// the restriction: while restricted, reads are refused with
    /// `Restricted` for every purpose but `legal_claims`.
    pub fn set_restricted(&self, subject: &SubjectId, on: bool) -> Result<()> {
        let mut entry = self.inner.entry("set_restricted");
        entry.subject = Some(*subject);
        entry.detail = Some(if on { "true" } else { "false" }.into());
        let result = self.set_state(subject, |live| &mut live.restricted, on);
        self.inner.finish(entry, result, Commit::Mode)
    }

    /// Records the subject's opt-out of any sale of its data, or its
    /// withdrawal: while opted out, reads for a `sale = true` purpose are
    /// refused with `PurposeDenied`.
    pub fn set_opt_out_of_sale(&self, subject: &SubjectId, on: bool) -> Result<()> {
        let mut entry = self.inner.entry("set_opt_out_of_sale");
        entry.subject = Some(*subject);
        entry.detail = Some(if on { "true" } else { "false" }.into());
        let result = self.set_state(subject, |live| &mut live.opt_out_of_sale, on);
        self.inner.finish(entry, result, Commit::Mode)
    }

    fn set_state(
        &self,
        subject: &SubjectId,
        field: impl Fn(&mut LiveSubject) -> &mut bool,
        on: bool,
    ) -> Result<()> {
        let inner = &self.inner;
        let _stripe = inner.stripe(subject);
        let mut live = inner.live_subject(subject)?;
        if *field(&mut live) == on {
            return Ok(());
        }
        *field(&mut live) = on;
        let mut batch = sled::Batch::default();
        put_subject(&mut batch, subject, &SubjectEntry::Live(live))?;
        inner.tree.apply_batch(batch)?;
        inner.subjects_changed();
        Ok(())
    }

    /// What the vault knows of a subject besides its records: events,
    /// flags, the consent ledger and its states.
    pub fn subject_state(&self, subject: &SubjectId) -> Result<SubjectState> {
        let mut entry = self.inner.entry("subject_state");
        entry.subject = Some(*subject);
        let result = (|| -> Result<SubjectState> {
            let live = self.inner.live_subject(subject)?;
            Ok(SubjectState {
                created_at: live.created_at,
                erasure_requested: live.erasure_requested(),
                events: live.events,
                flags: live.flags,
                consents: live.consents,
                legal_hold: live.legal_hold,
                restricted: live.restricted,
                opt_out_of_sale: live.opt_out_of_sale,
            })
        })();
        self.inner.finish(entry, result, Commit::No)
    }

    /// The events and flags recorded for a subject.
    pub fn subject_facts(
        &self,
        subject: &SubjectId,
    ) -> Result<(BTreeMap<String, i64>, BTreeSet<String>)> {
        let live = self.inner.live_subject(subject)?;
        Ok((live.events, live.flags))
    }

    /// Destroys the retention key of every UTC day that has ended by `now`:
    /// each such day's records expire at once, for every subject, in one
    /// key destruction per day (one fsync for all of them). Before that,
    /// the due records of subjects under legal hold are re-sealed out of
    /// those days. The cost is O(days) plus a count of the day's index
    /// entries; the dead ciphertext and metadata are purged afterwards, in
    /// the background (see [`Vault::purge`]).
    ///
    /// A `now` earlier than a previous run's is harmless: it finds less to
    /// do. A `now` ahead of the clock is honoured: days ended by then lose
    /// their keys, and from then on nothing due by then is kept or sealed
    /// into them again (the mark is stored, so it outlives the handle).
    pub fn expire(&self, now: i64) -> Result<ExpireReport> {
        let mut entry = self.inner.entry("expire");
        let result = self.inner.expire(now);
        if let Ok(r) = &result {
            entry.detail = Some(
                format!(
                    "now {now} days {} records {} spared {}",
                    r.days_destroyed, r.records_expired, r.records_spared_by_hold
                )
                .into(),
            );
        }
        let report = self.inner.finish(entry, result, Commit::Always)?;
        if report.days_destroyed > 0 {
            Inner::kick_purge(&self.inner);
        }
        Ok(report)
    }

    /// Purges what expiry runs left behind, now, in the calling thread:
    /// every record of a destroyed day becomes a husk (`Expired`), its
    /// index entries go, and a subject that asked for erasure and has
    /// nothing left loses its key. `expire` starts this in the background
    /// by itself; call it to wait for it. Returns the records purged.
    pub fn purge(&self) -> Result<u64> {
        self.inner.purge(|| false)
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.inner.make_durable()
    }

    /// Counts of subjects, records and keys, and the bytes on disk.
    pub fn stats(&self) -> Result<Stats> {
        let inner = &self.inner;
        let mut stats = Stats::default();
        for item in inner.tree.scan_prefix([SUBJECT]) {
            let (_, v) = item?;
            match decode_subject(&v)? {
                SubjectEntry::Live(_) => stats.subjects_live += 1,
                SubjectEntry::Erased { .. } => stats.subjects_erased += 1,
            }
        }
        for item in inner.tree.scan_prefix([RECORD]) {
            let (_, v) = item?;
            match decode_record(&v)? {
                RecordEntry::Live(_) => stats.records_live += 1,
                RecordEntry::Gone(_) => stats.records_gone += 1,
            }
        }
        stats.identifiers_indexed = inner.tree.scan_prefix([BLIND]).count() as u64;
        for item in inner.tree.scan_prefix([DAY]) {
            let (_, v) = item?;
            if !codec::decode::<DayEntry>(&v, "day entry")?.destroyed {
                stats.retention_days += 1;
            }
        }
        let (live, free) = inner.keystore.counts();
        stats.keystore_slots_live = live as u64;
        stats.keystore_slots_free = free as u64;
        stats.data_bytes = dir_size(&inner.data_dir);
        stats.keys_bytes = dir_size(&inner.root.join("keys"));
        Ok(stats)
    }

    /// Checks every live subject's stored record counts (what erasure
    /// receipts report) against its records, one by one; returns how many
    /// subjects it checked, or `Corrupt` naming the first that differs.
    /// For tests and the crash harness: it reads every record.
    #[doc(hidden)]
    pub fn check_record_counts(&self) -> Result<u64> {
        let inner = &self.inner;
        let mut checked = 0;
        for subject in inner.subject_ids_under(SUBJECT)? {
            let _stripe = inner.stripe(&subject);
            match inner.live_subject(&subject) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Erased => continue,
                Err(e) => return Err(e),
            }
            let through = inner.expired_through.load(Ordering::Relaxed);
            let counted = inner.subject_counts(&subject)?.live_by_category(through);
            let scanned = inner.counts_by_scan(&subject)?.live_by_category(through);
            if counted != scanned {
                return Err(Error::corrupt(format!(
                    "subject {subject}: records counted {counted:?}, but {scanned:?} are there"
                )));
            }
            checked += 1;
        }
        Ok(checked)
    }

    /// Flushes and closes. Dropping the vault does the same, ignoring errors.
    pub fn close(self) -> Result<()> {
        self.inner.make_durable()
    }
}

enum Edit<'a> {
    Update(&'a [u8]),
    Delete,
}

/// What happens to a record when its subject is re-evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Kept, sealed under this day's retention key (`None`: no day).
    Keep(Option<i64>),
    /// Erased now: consent withdrawn, an erasure request, a delete.
    Erase,
    /// Its retention has ended.
    Expire,
}

struct Decided {
    record: LiveRecord,
    fate: Fate,
    expiry: retention::Expiry,
}

/// What a rotation or re-evaluation did.
#[derive(Default, Debug)]
struct Outcome {
    erased: BTreeMap<String, u64>,
    expired: u64,
    /// The records kept, by category, with their expiry.
    kept: Vec<(String, retention::Expiry)>,
    identifiers_removed: usize,
}

/// The journal mark stored in sled (0: none).
fn stored_journal_mark(tree: &sled::Tree) -> Result<u64> {
    match tree.get(JOURNAL_MARK_KEY)? {
        None => Ok(0),
        Some(b) => Ok(codec::decode::<JournalMark>(&b, "journal mark")?.through),
    }
}

/// Writes a subject entry, and keeps the legal-hold index in step with it.
fn put_subject(batch: &mut sled::Batch, id: &SubjectId, entry: &SubjectEntry) -> Result<()> {
    batch.insert(&subject_key(id), codec::encode(entry)?);
    match entry {
        SubjectEntry::Live(live) if live.legal_hold => batch.insert(&hold_key(id)[..], &[][..]),
        _ => batch.remove(&hold_key(id)[..]),
    }
    Ok(())
}

/// The subject-state checks of a read, after the category's own purposes:
/// a restricted subject (or one that asked for erasure) is readable only
/// for `legal_claims`; a `sale` purpose is refused for a subject who opted
/// out; a category kept on consent needs standing consent for the purpose.
fn check_read_allowed(
    policy: &Policy,
    category: &policy::Category,
    live: &LiveSubject,
    subject: &SubjectId,
    purpose: &str,
) -> Result<()> {
    if purpose == policy::LEGAL_CLAIMS {
        return Ok(());
    }
    if live.restricted || live.erasure_requested().is_some() {
        let why = if live.restricted {
            "its processing is restricted"
        } else {
            "it asked for erasure and what is left is kept for legal claims"
        };
        return Err(Error::new(
            ErrorKind::Restricted,
            format!("subject {subject}: {why}; only purpose legal_claims may read it"),
        ));
    }
    if live.opt_out_of_sale && policy.purpose(purpose).is_ok_and(|p| p.sale) {
        return Err(Error::new(
            ErrorKind::PurposeDenied,
            format!("subject {subject} opted out of sale: purpose {purpose:?} is refused"),
        ));
    }
    if category.legal_basis == policy::LegalBasis::Consent && !live.consent_stands(purpose) {
        return Err(Error::new(
            ErrorKind::PurposeDenied,
            format!(
                "category {:?} is kept on consent, and subject {subject} has no standing consent for {purpose:?}",
                category.name
            ),
        ));
    }
    Ok(())
}

fn known_term(known: bool, name: &str) -> &str {
    if known {
        name
    } else {
        "(unknown)"
    }
}

/// What [`Inner::finish`] does after a successful operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// A read: nothing to commit.
    No,
    /// Durable now or at the next flush, by the handle's mode.
    Mode,
    /// Durable before returning, whatever the mode.
    Always,
}

fn category_counts(counts: BTreeMap<String, u64>) -> Vec<CategoryCount> {
    counts
        .into_iter()
        .map(|(category, records)| CategoryCount { category, records })
        .collect()
}

fn check_record_size(data: &[u8]) -> Result<()> {
    if data.len() > MAX_RECORD_BYTES {
        return Err(Error::invalid(format!(
            "a record may hold at most {MAX_RECORD_BYTES} bytes, not {}",
            data.len()
        )));
    }
    Ok(())
}

/// Normalizes an identifier: the kind must be a name (lowercase letters,
/// digits, `_`); the value is trimmed, and e-mail addresses lower-cased.
pub fn normalize_identifier(kind: &str, value: &str) -> Result<(String, String)> {
    let kind_ok = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !kind_ok {
        return Err(Error::invalid(format!(
            "identifier kind {:?} must be 1 to 64 lowercase letters, digits or _",
            truncate_for_message(kind)
        )));
    }
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(format!("the {kind} identifier is empty")));
    }
    if trimmed.len() > MAX_IDENTIFIER_BYTES {
        return Err(Error::invalid(format!(
            "the {kind} identifier is longer than {MAX_IDENTIFIER_BYTES} bytes"
        )));
    }
    let value = if kind == "email" {
        trimmed.to_lowercase()
    } else {
        trimmed.to_string()
    };
    Ok((kind.to_string(), value))
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Opens sled's database in `data_dir`.
///
/// sled locks its file, and a handle dropped a moment ago in this process
/// (its I/O threads end after `Drop` returns) can still hold that lock. We
/// already hold `keys/lock`, so no other vault handle can: a sled lock
/// failure here is retried for a few seconds before it is `Locked`.
fn open_sled(data_dir: &Path, root_dir: &Path) -> Result<sled::Db> {
    remove_interrupted_snapshots(data_dir)?;
    let config = sled::Config::new()
        .path(data_dir)
        .cache_capacity(256 * 1024 * 1024)
        .flush_every_ms(Some(1000));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_millis(5);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::new(
                        ErrorKind::Locked,
                        format!(
                            "the vault at {} is open in another process ({io})",
                            root_dir.display()
                        ),
                    ));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(other) => return Err(Error::from(other)),
        }
    }
}

/// sled writes a snapshot as `snap.<lsn>.generating` and renames it when
/// complete; an interrupted one is left behind under that name, and sled
/// 0.34.7 would then try to read it as its newest snapshot. The complete
/// snapshot before it is intact, so the leftover is removed.
fn remove_interrupted_snapshots(data_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Ok(()); // no data/ yet
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(|e| {
                Error::io(
                    format!(
                        "removing the interrupted snapshot {}",
                        entry.path().display()
                    ),
                    e,
                )
            })?;
        }
    }
    Ok(())
}

fn spawn_flusher(inner: Weak<Inner>) {
    let _ = std::thread::Builder::new()
        .name("shredvault-flush".into())
        .spawn(move || loop {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(100));
                match inner.upgrade() {
                    Some(i) if !i.closing.load(Ordering::Relaxed) => {}
                    _ => return,
                }
            }
            let Some(i) = inner.upgrade() else { return };
            if i.dirty.load(Ordering::Relaxed) {
                let _ = i.make_durable();
            }
        });
}

impl Inner {
    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// "Now" for due dates: the clock, or the latest `expire` run's `now`
    /// if that is later (an operator may expire ahead of the clock).
    fn threshold(&self) -> i64 {
        self.now().max(self.expired_through.load(Ordering::Relaxed))
    }

    fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stripe(&self, subject: &SubjectId) -> MutexGuard<'_, ()> {
        let b = subject.as_bytes();
        let i = u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as usize % STRIPES;
        lock(&self.stripes[i])
    }

    fn expire(&self, now: i64) -> Result<ExpireReport> {
        let _guard = lock(&self.expire_lock);
        let through = self
            .expired_through
            .fetch_max(now, Ordering::Relaxed)
            .max(now);
        self.tree
            .insert(EXPIRED_THROUGH_KEY, codec::encode(&through)?)?;
        let mut ended = Vec::new();
        for item in self.tree.scan_prefix([DAY]) {
            let (k, v) = item?;
            let day = day_from_bytes(&k[1..])
                .ok_or_else(|| Error::corrupt("a day entry has a malformed key"))?;
            if retention::day_end(day) > now {
                break; // days are in order
            }
            let entry: DayEntry = codec::decode(&v, "day entry")?;
            if !entry.destroyed {
                ended.push((day, entry.key));
            }
        }
        let mut report = ExpireReport::default();
        if ended.is_empty() {
            return Ok(report);
        }
        let days: HashSet<i64> = ended.iter().map(|(d, _)| *d).collect();
        // Legal holds first: a held subject's records leave the ended days.
        // (`set_legal_hold` takes the expire lock, so no hold starts between
        // here and the destruction below.)
        let held: Vec<SubjectId> = self.subject_ids_under(HOLD)?;
        for subject in held {
            let _stripe = self.stripe(&subject);
            let Ok(live) = self.live_subject(&subject) else {
                continue;
            };
            if !live.legal_hold {
                continue;
            }
            let decided = self.decide_all(&subject, &live, self.threshold())?;
            let in_ended = decided
                .iter()
                .filter(|d| d.record.day.is_some_and(|day| days.contains(&day)))
                .count() as u64;
            if in_ended > 0 {
                self.rotate(&subject, live, None)?;
                report.records_spared_by_hold += in_ended;
            }
        }
        // The expiry itself: every ended day's key slot zeroed, one fsync.
        {
            let mut cache = lock(&self.key_cache);
            let slots: Vec<SlotRef> = ended.iter().map(|(_, s)| *s).collect();
            self.keystore.destroy(&slots)?;
            cache.retain(|(_, use_), _| !matches!(use_, KeyUse::RecordDay(d) if days.contains(d)));
        }
        report.days_destroyed = ended.len() as u64;
        // The days are marked for the purge, and their records counted.
        let mut batch = sled::Batch::default();
        for (day, key) in &ended {
            let entry = DayEntry {
                key: *key,
                destroyed: true,
            };
            batch.insert(&layout::day_key(*day)[..], codec::encode(&entry)?);
            report.records_expired +=
                self.tree.scan_prefix(day_records_prefix(*day)).count() as u64;
        }
        self.tree.apply_batch(batch)?;
        self.make_durable()?;
        Ok(report)
    }

    /// Whether `day` has a retention key that is not destroyed.
    fn day_is_live(&self, day: i64) -> Result<bool> {
        Ok(match self.tree.get(layout::day_key(day))? {
            None => false,
            Some(v) => {
                let entry: DayEntry = codec::decode(&v, "day entry")?;
                !entry.destroyed && self.keystore.holds(entry.key)
            }
        })
    }

    /// Destroyed days, oldest first.
    fn destroyed_days(&self) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([DAY]) {
            let (k, v) = item?;
            let entry: DayEntry = codec::decode(&v, "day entry")?;
            if entry.destroyed {
                out.push(
                    day_from_bytes(&k[1..])
                        .ok_or_else(|| Error::corrupt("a day entry has a malformed key"))?,
                );
            }
        }
        Ok(out)
    }

    /// The purge of destroyed days, in chunks of `PURGE_CHUNK` records,
    /// each one sled batch taken with every subject stripe held (so no
    /// rotation is half-way through one of the records). Stops early, to
    /// be resumed later, when `stop()` says so.
    fn purge(&self, stop: impl Fn() -> bool) -> Result<u64> {
        let _guard = lock(&self.purge_lock);
        let mut purged = 0u64;
        let mut touched = HashSet::new();
        for day in self.destroyed_days()? {
            loop {
                if stop() {
                    return Ok(purged);
                }
                let keys: Vec<sled::IVec> = self
                    .tree
                    .scan_prefix(day_records_prefix(day))
                    .keys()
                    .take(PURGE_CHUNK)
                    .collect::<std::result::Result<_, _>>()?;
                if keys.is_empty() {
                    break;
                }
                let _stripes: Vec<_> = self.stripes.iter().map(lock).collect();
                let now = self.now();
                let mut batch = sled::Batch::default();
                for k in keys {
                    let id = RecordId::from_bytes(&k[9..])?;
                    batch.remove(k);
                    if let Ok(Some(RecordEntry::Live(r))) = self.record_entry(&id) {
                        if r.day == Some(day) {
                            touched.insert(r.subject);
                            let husk = RecordHusk {
                                subject: r.subject,
                                category: r.category,
                                gone_at: now,
                                reason: GoneReason::Expired,
                            };
                            batch.insert(
                                &layout::record_key(&id),
                                codec::encode(&RecordEntry::Gone(husk))?,
                            );
                            purged += 1;
                        }
                    }
                }
                self.tree.apply_batch(batch)?;
            }
            self.tree.remove(layout::day_key(day))?;
        }
        // A subject kept only for what an erasure request retained, with
        // nothing left: its key goes too.
        let now = self.now();
        for subject in touched {
            let _stripe = self.stripe(&subject);
            let Ok(live) = self.live_subject(&subject) else {
                continue;
            };
            if live.erasure_requested().is_some() && !self.has_live_records(&subject)? {
                self.destroy_subject_key(live.key)?;
                self.finish_erasure(&subject, &live, now)?;
            }
        }
        // Erased subjects: their dead records go (no husks: a read of a
        // missing record finds the subject's tombstone and says Erased).
        let pending: Vec<SubjectId> = self.subject_ids_under(ERASED_PENDING)?;
        for subject in pending {
            loop {
                if stop() {
                    return Ok(purged);
                }
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for item in self
                    .tree
                    .scan_prefix(subject_records_prefix(&subject))
                    .take(PURGE_CHUNK)
                {
                    let (k, v) = item?;
                    if let Ok(RecordEntryView::Live(r)) = decode_record_view(&v) {
                        if let Some(day) = r.day {
                            let id = RecordId::from_bytes(&k[1..])?;
                            batch.remove(&day_record_key(day, &id)[..]);
                        }
                    }
                    batch.remove(k);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                self.tree.apply_batch(batch)?;
                purged += n;
            }
            self.tree.remove(erased_pending_key(&subject))?;
        }
        self.make_durable()?;
        Ok(purged)
    }

    /// Starts the background purge, or tells the running one to go round
    /// again. The thread holds only a weak reference between chunks, and
    /// the handle's `Drop` stops and joins it.
    fn kick_purge(this: &Arc<Inner>) {
        let mut state = lock(&this.purger);
        if state.running {
            state.again = true;
            return;
        }
        state.running = true;
        let weak = Arc::downgrade(this);
        let spawned = std::thread::Builder::new()
            .name("shredvault-purge".into())
            .spawn(move || loop {
                let Some(inner) = weak.upgrade() else { return };
                // Errors are left for the next run (or `purge`) to meet.
                let _ = inner.purge(|| inner.closing.load(Ordering::Relaxed));
                let mut state = lock(&inner.purger);
                if state.again && !inner.closing.load(Ordering::Relaxed) {
                    state.again = false;
                    continue;
                }
                state.running = false;
                return;
            });
        match spawned {
            Ok(handle) => state.handle = Some(handle),
            Err(_) => state.running = false, // `purge` and the next open catch up
        }
    }

    /// Flushes sled and fsyncs its file: the durable point. Buffered audit
    /// entries are written first, so they are durable with what they log;
    /// then the journal's mark, so the frames it covers are not replayed.
    fn make_durable(&self) -> Result<()> {
        // Read first: every frame up to here has its audit entry appended
        // already, so the write below seals it.
        let through = self.journal.last_seq();
        self.durable_through(through)
    }

    /// [`make_durable`](Self::make_durable), marking journal frames up to
    /// `through` done.
    fn durable_through(&self, through: u64) -> Result<()> {
        self.dirty.store(false, Ordering::Relaxed);
        self.audit.write(&self.tree)?;
        if through > 0 {
            // The mark only grows (two durable points may race to it).
            let _guard = lock(&self.mark_lock);
            if through > stored_journal_mark(&self.tree)? {
                self.tree
                    .insert(JOURNAL_MARK_KEY, codec::encode(&JournalMark { through })?)?;
            }
        }
        self.db.flush()?;
        self.db_file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.data_dir.display()), e))
    }

    /// Whether the subject of a journaled put still stands (not erased).
    fn frame_subject_is_live(&self, entry: &JournalEntry) -> Result<bool> {
        for (key, value) in &entry.inserts {
            if key.first() == Some(&RECORD) {
                let RecordEntry::Live(record) = codec::decode(value, "journaled record")? else {
                    return Ok(false);
                };
                return Ok(matches!(
                    self.subject_entry(&record.subject)?,
                    Some(SubjectEntry::Live(_))
                ));
            }
        }
        Ok(false)
    }

    /// Replays the journal's frames past sled's mark (see `journal`):
    /// inserts where the key is absent, then the audit entries the chain
    /// lacks, in order. Returns the mark the journal goes on from.
    fn replay_journal(&self, frames: Vec<Frame>) -> Result<u64> {
        let mark = stored_journal_mark(&self.tree)?;
        // In seq order, as `Journal::open` reads them.
        let frames: Vec<Frame> = frames.into_iter().filter(|f| f.seq > mark).collect();
        if frames.is_empty() {
            return Ok(mark);
        }
        // How far the chain went when this replay (or one a crash cut
        // short) began, and how many entries it has taken since.
        let chain = self.audit.next_seq();
        let base = match self.tree.get(JOURNAL_REPLAY_KEY)? {
            Some(b) => match codec::decode::<JournalReplay>(&b, "journal replay marker") {
                Ok(r) if r.through == mark && r.audit_base <= chain => r.audit_base,
                _ => chain,
            },
            None => chain,
        };
        self.tree.insert(
            JOURNAL_REPLAY_KEY,
            codec::encode(&JournalReplay {
                through: mark,
                audit_base: base,
            })?,
        )?;
        let mut entries = Vec::new();
        for frame in &frames {
            // A record of a subject erased since (whose dead records the
            // purge may have dropped already) does not come back.
            if self.frame_subject_is_live(&frame.entry)? {
                for (key, value) in &frame.entry.inserts {
                    // Err: the key is there (the put reached sled).
                    let _ = self.tree.compare_and_swap(
                        &key[..],
                        None as Option<&[u8]>,
                        Some(&value[..]),
                    )?;
                }
            }
            let entry: AuditEntry = codec::decode(&frame.entry.audit, "journaled audit entry")?;
            if entry.seq >= base {
                entries.push(entry);
            }
        }
        entries.sort_by_key(|e| e.seq);
        let taken = (chain - base) as usize;
        for entry in entries.iter().skip(taken) {
            self.audit.append_recovered(&self.tree, entry)?;
        }
        let last = frames.last().map_or(mark, |f| f.seq);
        self.durable_through(last)?;
        self.tree.remove(JOURNAL_REPLAY_KEY)?;
        Ok(last)
    }

    /// The subject ids of every entry under a one-byte prefix whose key is
    /// that byte and a subject id ('S', 'H', 'Z').
    fn subject_ids_under(&self, prefix: u8) -> Result<Vec<SubjectId>> {
        self.tree
            .scan_prefix([prefix])
            .keys()
            .map(|k| {
                k.map_err(Error::from)
                    .and_then(|k| SubjectId::from_bytes(&k[1..]))
            })
            .collect()
    }

    /// Tells cached views of subjects (`Scan`) that one changed.
    fn subjects_changed(&self) {
        self.subject_generation.fetch_add(1, Ordering::AcqRel);
        self.subject_cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A fresh audit entry for `op`, stamped with the time and the actor.
    fn entry<'a>(&self, op: &'static str) -> Draft<'a> {
        Draft::new(op, self.now())
    }

    /// The end of every public operation: its audit entry is appended with
    /// the outcome, then a successful mutation is committed (by the mode, or
    /// durably whatever the mode for `Commit::Always`). A failing audit
    /// append fails the operation: the audit never silently misses one.
    fn finish<T>(&self, mut entry: Draft<'_>, result: Result<T>, commit: Commit) -> Result<T> {
        entry.outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind().name(),
        };
        let appended = self.append_audit(&entry);
        let value = result?;
        appended?;
        match commit {
            Commit::No => {}
            Commit::Mode => self.commit()?,
            Commit::Always => self.make_durable()?,
        }
        Ok(value)
    }

    /// [`finish`](Self::finish) for a put: in `Immediate` mode its journal
    /// frame (its writes and its audit entry) is what makes it durable.
    fn finish_put(
        &self,
        mut entry: Draft<'_>,
        result: Result<RecordId>,
        mut journaled: JournalEntry,
    ) -> Result<RecordId> {
        if self.durability != Durability::Immediate || result.is_err() {
            return self.finish(entry, result, Commit::Mode);
        }
        entry.outcome = "ok";
        self.audit.append_keeping(
            &self.tree,
            &entry,
            self.actor.as_deref(),
            Some(&mut journaled.audit),
        )?;
        let written = self
            .journal
            .append(&journaled, |through| self.durable_through(through))?;
        if written.is_none() {
            self.make_durable()?; // too big for a frame
        }
        result
    }

    /// Appends an entry with this handle's actor.
    fn append_audit(&self, entry: &Draft<'_>) -> Result<u64> {
        self.audit.append(&self.tree, entry, self.actor.as_deref())
    }

    /// A name for the audit log: the name if the policy knows it, else
    /// `(unknown)` (a caller's string could be anything, personal data too).
    fn purpose_term<'a>(&self, name: &'a str) -> &'a str {
        known_term(self.policy().purpose(name).is_ok(), name)
    }

    fn category_term<'a>(&self, name: &'a str) -> &'a str {
        known_term(self.policy().category(name).is_ok(), name)
    }

    fn event_term<'a>(&self, name: &'a str) -> &'a str {
        known_term(self.policy().events().contains(name), name)
    }

    fn flag_term<'a>(&self, name: &'a str) -> &'a str {
        known_term(self.policy().flags().contains(name), name)
    }

    /// Identifier kinds are checked names (`normalize_identifier`).
    fn kind_term<'a>(&self, kind: &'a str) -> &'a str {
        known_term(normalize_identifier(kind, "x").is_ok(), kind)
    }

    /// The end of a mutating call: durable now, or soon, by the mode.
    fn commit(&self) -> Result<()> {
        match self.durability {
            Durability::Immediate => self.make_durable(),
            Durability::Batched => {
                self.dirty.store(true, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn blind_mac(&self, kind: &str, value: &str) -> [u8; 32] {
        let key = self.index_key.read().unwrap_or_else(|p| p.into_inner());
        blind_mac_with(&key, &self.vault_id, kind, value)
    }

    fn subject_entry(&self, id: &SubjectId) -> Result<Option<SubjectEntry>> {
        match self.tree.get(subject_key(id))? {
            None => Ok(None),
            Some(bytes) => decode_subject(&bytes)
                .map(Some)
                .map_err(|e| Error::corrupt(format!("subject {id}: {}", e.message()))),
        }
    }

    fn live_subject(&self, id: &SubjectId) -> Result<LiveSubject> {
        match self.subject_entry(id)? {
            None => Err(Error::not_found(format!("no subject {id}"))),
            Some(SubjectEntry::Erased { .. }) => Err(Error::new(
                ErrorKind::Erased,
                format!("subject {id} was erased"),
            )),
            Some(SubjectEntry::Live(live)) => Ok(live),
        }
    }

    fn record_entry(&self, id: &RecordId) -> Result<Option<RecordEntry>> {
        match self.tree.get(layout::record_key(id))? {
            None => Ok(None),
            Some(bytes) => decode_record(&bytes)
                .map(Some)
                .map_err(|e| Error::corrupt(format!("record {id}: {}", e.message()))),
        }
    }

    /// The stored bytes of a record; a missing one is `NotFound`, or
    /// `Erased` when its subject was erased (see [`Inner::live_record`]).
    fn record_bytes(&self, id: &RecordId) -> Result<sled::IVec> {
        match self.tree.get(layout::record_key(id))? {
            Some(bytes) => Ok(bytes),
            None => Err(self.missing_record_error(id)),
        }
    }

    fn missing_record_error(&self, id: &RecordId) -> Error {
        // An erased subject's records are purged without husks: its
        // tombstone answers for them.
        if let Some(Ok((_, v))) = self.tree.scan_prefix(subject_prefix_of(id)).next() {
            if let Ok(SubjectEntry::Erased { .. }) = decode_subject(&v) {
                return Error::new(
                    ErrorKind::Erased,
                    format!("record {id} was erased with its subject"),
                );
            }
        }
        Error::not_found(format!("no record {id}"))
    }

    /// A subject's live entry through a small cache (reads take it on
    /// every call). Any change to any subject empties the cache; the
    /// generation check keeps a read that raced a change from caching
    /// what it saw.
    fn subject_view(&self, id: &SubjectId) -> Result<Arc<LiveSubject>> {
        if let Some(s) = self
            .subject_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(s.clone());
        }
        let generation = self.subject_generation.load(Ordering::Acquire);
        let live = Arc::new(self.live_subject(id)?);
        let mut cache = self
            .subject_cache
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if self.subject_generation.load(Ordering::Acquire) == generation {
            if cache.len() >= SUBJECT_CACHE_MAX {
                cache.clear();
            }
            cache.insert(*id, live.clone());
        }
        Ok(live)
    }

    /// The subject of a record read just now: the cached state, unless it
    /// names another key than the record's, which happens for a moment after
    /// a rotation (between its batch and the cache being emptied); then the
    /// subject is read from sled itself.
    fn subject_for_record(&self, id: &SubjectId, record_key_id: u64) -> Result<Arc<LiveSubject>> {
        let cached = self.subject_view(id)?;
        if cached.key.key_id == record_key_id {
            return Ok(cached);
        }
        Ok(Arc::new(self.live_subject(id)?))
    }

    fn live_record(&self, id: &RecordId) -> Result<LiveRecord> {
        match self.record_entry(id)? {
            None => Err(self.missing_record_error(id)),
            Some(RecordEntry::Gone(h)) => Err(gone_error(id, h.reason)),
            Some(RecordEntry::Live(r)) => Ok(r),
        }
    }

    /// The raw subject key, from the keystore. A destroyed key is `Erased`.
    fn subject_key(&self, subject: &SubjectId, slot: SlotRef) -> Result<SecretKey> {
        match self.keystore.load(slot) {
            Ok(k) => Ok(k),
            Err(LoadError::Destroyed) => Err(Error::new(
                ErrorKind::Erased,
                format!("subject {subject} was erased (its key is destroyed)"),
            )),
            Err(LoadError::Corrupt(m)) => Err(Error::corrupt(format!("subject {subject}: {m}"))),
            Err(LoadError::Other(e)) => Err(e),
        }
    }

    /// The key sealing a subject's records: derived from the subject key
    /// and, for a record with an expiry day, that day's retention key. A
    /// destroyed subject key is `Erased`, a destroyed day key `Expired`.
    fn record_key(
        &self,
        subject: &SubjectId,
        slot: SlotRef,
        day: Option<i64>,
    ) -> Result<SecretKey> {
        let use_ = match day {
            None => KeyUse::RecordOpen,
            Some(d) => KeyUse::RecordDay(d),
        };
        if let Some(k) = lock(&self.key_cache).get(&(slot, use_)) {
            return Ok(k.clone());
        }
        let raw = self.subject_key(subject, slot)?;
        let (key, day_slot) = match day {
            None => (derive_record_key(&raw, None, &self.vault_id), None),
            Some(d) => {
                let (day_slot, day_raw) = self.day_key(d)?;
                (
                    derive_record_key(&raw, Some(&day_raw), &self.vault_id),
                    Some(day_slot),
                )
            }
        };
        let mut cache = lock(&self.key_cache);
        // Re-check under the lock: a key may have been destroyed (and its
        // cache entries dropped) while we derived.
        if !self.keystore.holds(slot) {
            return Err(Error::new(
                ErrorKind::Erased,
                format!("subject {subject} was erased"),
            ));
        }
        if let Some(day_slot) = day_slot {
            if !self.keystore.holds(day_slot) {
                return Err(expired_day_error(day.unwrap_or_default()));
            }
        }
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert((slot, use_), key.clone());
        Ok(key)
    }

    /// The retention key of `day`, which must exist.
    fn day_key(&self, day: i64) -> Result<(SlotRef, SecretKey)> {
        let entry = match self.tree.get(layout::day_key(day))? {
            None => return Err(expired_day_error(day)),
            Some(bytes) => codec::decode::<DayEntry>(&bytes, "day entry")?,
        };
        if entry.destroyed {
            return Err(expired_day_error(day));
        }
        match self.keystore.load(entry.key) {
            Ok(k) => Ok((entry.key, k)),
            Err(LoadError::Destroyed) => Err(expired_day_error(day)),
            Err(LoadError::Corrupt(m)) => {
                Err(Error::corrupt(format!("retention key of day {day}: {m}")))
            }
            Err(LoadError::Other(e)) => Err(e),
        }
    }

    /// The retention key of `day`, created (durably, before anything uses
    /// it) if the day has none yet.
    fn ensure_day_key(&self, day: i64) -> Result<(SlotRef, SecretKey)> {
        let _guard = lock(&self.day_lock);
        if self.tree.contains_key(layout::day_key(day))? {
            return self.day_key(day);
        }
        let (slot, key) = self
            .keystore
            .allocate(KeyKind::Retention, 1)?
            .pop()
            .expect("one key was asked for");
        self.tree.insert(
            layout::day_key(day),
            codec::encode(&DayEntry {
                key: slot,
                destroyed: false,
            })?,
        )?;
        if self.durability == Durability::Immediate {
            // A put's journal frame holds its record, not the day entry its
            // key comes from: that is durable before any record uses it.
            // (Once per day; in `Batched` mode a record lost with its day
            // entry is lost anyway, as sled keeps writes in order.)
            self.make_durable()?;
        }
        Ok((slot, key))
    }

    fn seal_identifiers(
        &self,
        subject: &SubjectId,
        subject_key: &SecretKey,
        idents: &[(String, String)],
    ) -> Result<Vec<u8>> {
        let key = derive_identifiers_key(subject_key, &self.vault_id);
        let plain = Zeroizing::new(codec::encode(&idents)?);
        crypto::seal(&key, &identifiers_aad(&self.vault_id, subject), &plain)
    }

    fn open_identifiers(
        &self,
        subject: &SubjectId,
        subject_key: &SecretKey,
        sealed: &[u8],
    ) -> Result<Vec<(String, String)>> {
        let key = derive_identifiers_key(subject_key, &self.vault_id);
        let plain = crypto::open(
            &key,
            &identifiers_aad(&self.vault_id, subject),
            sealed,
            &format!("identifiers of subject {subject}"),
        )?;
        codec::decode(&plain, "identifiers")
    }

    /// A durable, unreferenced subject key from the pool (refilled
    /// `KEY_POOL_BATCH` at a time, one fsync each).
    fn take_subject_key(&self) -> Result<(SlotRef, SecretKey)> {
        let mut pool = lock(&self.key_pool);
        if pool.is_empty() {
            *pool = self.keystore.allocate(KeyKind::Subject, KEY_POOL_BATCH)?;
        }
        Ok(pool.pop().expect("the pool was just filled"))
    }

    fn destroy_subject_key(&self, slot: SlotRef) -> Result<()> {
        // Cache first: from here on no reader derives from this key again
        // (`derived_key` re-checks the slot under the cache lock).
        let mut cache = lock(&self.key_cache);
        self.keystore.destroy(&[slot])?;
        cache.retain(|(s, _), _| *s != slot);
        Ok(())
    }

    /// A subject's live records by category and day: its stored counts,
    /// and the records put since (numbered past them: one short range
    /// scan). `through` is then the subject's last record number. The
    /// caller holds the subject's stripe.
    fn subject_counts(&self, subject: &SubjectId) -> Result<SubjectCounts> {
        let mut counts = match self.tree.get(counts_key(subject))? {
            Some(v) => codec::decode(&v, "record counts")?,
            None => SubjectCounts::default(),
        };
        let prefix = subject_records_prefix(subject);
        let from = subject_records_from(subject, counts.through + 1);
        for item in self.tree.range(from..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let id = RecordId::from_bytes(&k[1..])?;
            counts.through = counts.through.max(id.seq());
            counts.count_entry(subject, &v);
        }
        Ok(counts)
    }

    /// The subject's record numbers: cached, else from its last record and
    /// its stored counts. The caller holds the subject's stripe.
    fn record_seqs(&self, subject: &SubjectId) -> Result<RecordSeqs> {
        if let Some(s) = lock(&self.record_seqs).get(subject) {
            return Ok(*s);
        }
        let last = match self
            .tree
            .scan_prefix(subject_records_prefix(subject))
            .keys()
            .next_back()
        {
            Some(k) => RecordId::from_bytes(&k?[1..])?.seq(),
            None => 0,
        };
        let counted = match self.tree.get(counts_key(subject))? {
            Some(v) => codec::decode::<SubjectCounts>(&v, "record counts")?.through,
            None => 0,
        };
        // Numbers go on past both: a record numbered at or below `counted`
        // would be missed by the counts.
        let seqs = RecordSeqs {
            next: last.max(counted) + 1,
            counted,
        };
        self.cache_seqs(subject, seqs);
        Ok(seqs)
    }

    fn cache_seqs(&self, subject: &SubjectId, seqs: RecordSeqs) {
        let mut cache = lock(&self.record_seqs);
        if cache.len() >= SUBJECT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(*subject, seqs);
    }

    /// After a failed write: the numbers are read afresh next time.
    fn forget_seqs(&self, subject: &SubjectId) {
        lock(&self.record_seqs).remove(subject);
    }

    /// Brings the subject's stored counts up to its last record (after
    /// `COUNTS_EVERY` puts). The caller holds the subject's stripe.
    fn store_counts(&self, subject: &SubjectId, seqs: &mut RecordSeqs) -> Result<()> {
        let mut counts = self.subject_counts(subject)?;
        counts.drop_expired(self.expired_through.load(Ordering::Relaxed));
        self.tree
            .insert(&counts_key(subject)[..], codec::encode(&counts)?)?;
        seqs.counted = counts.through;
        Ok(())
    }

    /// Counts a subject's live records one by one.
    fn counts_by_scan(&self, subject: &SubjectId) -> Result<SubjectCounts> {
        let mut counts = SubjectCounts::default();
        for item in self.tree.scan_prefix(subject_records_prefix(subject)) {
            let (_, v) = item?;
            counts.count_entry(subject, &v);
        }
        Ok(counts)
    }

    /// What erasing `subject` now erases, by category.
    fn erasable_counts(&self, subject: &SubjectId) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .subject_counts(subject)?
            .live_by_category(self.expired_through.load(Ordering::Relaxed)))
    }

    /// After the key is gone: the tombstone, the blind index entries
    /// removed, and the subject queued for the purge of its dead records;
    /// one durable batch, whatever the number of records.
    fn finish_erasure(&self, subject: &SubjectId, live: &LiveSubject, now: i64) -> Result<()> {
        let mut batch = sled::Batch::default();
        put_subject(
            &mut batch,
            subject,
            &SubjectEntry::Erased { erased_at: now },
        )?;
        for mac in &live.blind {
            batch.remove(&blind_key(mac)[..]);
        }
        batch.insert(&erased_pending_key(subject)[..], &[][..]);
        batch.remove(&counts_key(subject)[..]);
        self.tree.apply_batch(batch)?;
        self.forget_seqs(subject);
        self.subjects_changed();
        self.make_durable()
    }

    /// Whether any live record of `subject` is left.
    fn has_live_records(&self, subject: &SubjectId) -> Result<bool> {
        for item in self.tree.scan_prefix(subject_records_prefix(subject)) {
            let (_, v) = item?;
            if matches!(decode_record_view(&v), Ok(RecordEntryView::Live(_))) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `update` and `delete`: a rotation with the edit applied.
    fn rotate_for(&self, record: &RecordId, edit: Edit) -> Result<()> {
        let subject = self.live_record(record)?.subject;
        let _stripe = self.stripe(&subject);
        // Re-read under the stripe: the record may have been deleted meanwhile.
        self.live_record(record)?;
        let live = self.live_subject(&subject)?;
        if live.legal_hold && matches!(edit, Edit::Delete) {
            return Err(Error::new(
                ErrorKind::LegalHold,
                format!("subject {subject} is under legal hold: record {record} cannot be deleted"),
            ));
        }
        self.rotate(&subject, live, Some((record, edit)))
            .map(|_| ())
    }

    /// What the policy says should happen now to one record of `live`:
    /// the single place where consent, erasure requests, legal hold and
    /// retention rules meet. `threshold` is "now" for due dates (see
    /// [`Inner::threshold`]).
    fn decide(
        &self,
        policy: &Policy,
        live: &LiveSubject,
        id: &RecordId,
        r: &LiveRecord,
        threshold: i64,
    ) -> Result<(Fate, retention::Expiry)> {
        let category = policy.category(&r.category).map_err(|_| {
            Error::corrupt(format!(
                "record {id} names category {:?}, which the policy lacks",
                r.category
            ))
        })?;
        let facts = retention::Facts {
            events: Some(&live.events),
            flags: Some(&live.flags),
        };
        let expiry = retention::expiry(category, &facts, r.created_at);
        let due = matches!(expiry, retention::Expiry::At(at) if at <= threshold);
        if live.legal_hold {
            // Nothing goes while the hold stands; a record past due is kept
            // out of any day, so no expiry run can destroy its key.
            let day = if due { None } else { expiry.day() };
            return Ok((Fate::Keep(day), expiry));
        }
        let consent_gone = category.legal_basis == policy::LegalBasis::Consent
            && !category
                .purposes
                .iter()
                .any(|p| p != policy::LEGAL_CLAIMS && live.consent_stands(p));
        let requested = live.erasure_requested().is_some();
        let dropped_on_request = requested
            && !category.follows_erasure_request()
            && category.on_erasure_request != policy::OnErasureRequest::Retain;
        if consent_gone || dropped_on_request || (due && requested) {
            return Ok((Fate::Erase, expiry));
        }
        if due {
            return Ok((Fate::Expire, expiry));
        }
        Ok((Fate::Keep(expiry.day()), expiry))
    }

    /// The subject's live records, each with what [`Inner::decide`] says.
    fn decide_all(
        &self,
        subject: &SubjectId,
        live: &LiveSubject,
        threshold: i64,
    ) -> Result<Vec<Decided>> {
        let policy = self.policy();
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(subject_records_prefix(subject)) {
            let (k, v) = item?;
            let id = RecordId::from_bytes(&k[1..])?;
            if let RecordEntry::Live(r) = decode_record(&v)? {
                let (fate, expiry) = self.decide(&policy, live, &id, &r, threshold)?;
                out.push(Decided {
                    record: r,
                    fate,
                    expiry,
                });
            }
        }
        Ok(out)
    }

    /// Stores a subject's new facts (events, flags, consent, states) and
    /// carries out what they change: if every record keeps its day, only
    /// the subject entry is written; otherwise the subject is rotated. The
    /// caller commits (see [`Inner::finish`]) and holds the subject's stripe.
    fn reevaluate(&self, subject: &SubjectId, live: LiveSubject) -> Result<Outcome> {
        let threshold = self.threshold();
        let decided = self.decide_all(subject, &live, threshold)?;
        // A subject that asked for erasure must also lose its identifiers.
        let identifiers_stay = live.erasure_requested().is_none() || live.blind.is_empty();
        let unchanged =
            identifiers_stay && decided.iter().all(|d| d.fate == Fate::Keep(d.record.day));
        if !unchanged {
            return self.rotate(subject, live, None);
        }
        let mut batch = sled::Batch::default();
        put_subject(&mut batch, subject, &SubjectEntry::Live(live.clone()))?;
        self.tree.apply_batch(batch)?;
        self.subjects_changed();
        let mut outcome = Outcome::default();
        for d in decided {
            outcome.kept.push((d.record.category, d.expiry));
        }
        Ok(outcome)
    }

    /// Re-seals everything of a subject under a fresh subject key, then
    /// destroys the old key. `live` carries the subject's new facts: each
    /// record's fate is decided afresh from them ([`Inner::decide`]), so a
    /// record may move to another day, be erased (consent withdrawn, erasure
    /// request) or expire (past due) here. A subject that asked for erasure
    /// loses its identifiers here too. The caller holds the subject's stripe.
    fn rotate(
        &self,
        subject: &SubjectId,
        mut live: LiveSubject,
        target: Option<(&RecordId, Edit)>,
    ) -> Result<Outcome> {
        let policy = self.policy();
        let old_slot = live.key;
        let old_raw = self.subject_key(subject, old_slot)?;
        let mut idents = self.open_identifiers(subject, &old_raw, &live.identifiers)?;
        let (new_slot, new_raw) = self.take_subject_key()?;
        let now = self.now();
        let threshold = self.threshold();
        let mut outcome = Outcome::default();
        let mut counts = SubjectCounts::default();
        let result = (|| -> Result<()> {
            let mut batch = sled::Batch::default();
            if live.erasure_requested().is_some() {
                for mac in live.blind.drain(..) {
                    batch.remove(&blind_key(&mac)[..]);
                    outcome.identifiers_removed += 1;
                }
                idents.clear();
            }
            for item in self.tree.scan_prefix(subject_records_prefix(subject)) {
                let (k, v) = item?;
                let id = RecordId::from_bytes(&k[1..])?;
                counts.through = counts.through.max(id.seq());
                let RecordEntry::Live(mut r) = decode_record(&v)? else {
                    continue; // a husk
                };
                if r.subject != *subject || r.subject_key_id != old_slot.key_id {
                    return Err(Error::corrupt(format!(
                        "record {id} is sealed under another key than its subject's"
                    )));
                }
                if let Some(old_day) = r.day {
                    batch.remove(&day_record_key(old_day, &id)[..]);
                }
                let edit = target.as_ref().filter(|(t, _)| **t == id).map(|(_, e)| e);
                let (mut fate, expiry) = match edit {
                    Some(Edit::Delete) => (Fate::Erase, retention::Expiry::Open),
                    _ => self.decide(&policy, &live, &id, &r, threshold)?,
                };
                // A record whose day key is already gone has expired,
                // whatever it would be decided now.
                let old_key = match self.record_key_with(&old_raw, r.day) {
                    Ok(key) => Some(key),
                    Err(e) if e.kind() == ErrorKind::Expired => None,
                    Err(e) => return Err(e),
                };
                if old_key.is_none() {
                    fate = Fate::Expire;
                }
                let (Fate::Keep(day), Some(old_key)) = (fate, old_key) else {
                    let reason = if fate == Fate::Erase {
                        *outcome.erased.entry(r.category.clone()).or_default() += 1;
                        GoneReason::Erased
                    } else {
                        outcome.expired += 1;
                        GoneReason::Expired
                    };
                    let husk = RecordEntry::Gone(RecordHusk {
                        subject: *subject,
                        category: r.category,
                        gone_at: now,
                        reason,
                    });
                    batch.insert(&layout::record_key(&id), codec::encode(&husk)?);
                    continue;
                };
                let mut data = crypto::open(
                    &old_key,
                    &record_aad(&self.vault_id, &id, &r),
                    &r.sealed,
                    &format!("record {id}"),
                )?;
                if let Some(Edit::Update(new_data)) = edit {
                    data = Plaintext::new(new_data.to_vec());
                    r.version += 1;
                    r.updated_at = now;
                }
                r.day = day;
                if let Some(day) = r.day {
                    self.ensure_day_key(day)?;
                    batch.insert(&day_record_key(day, &id)[..], &[][..]);
                }
                let new_key = self.record_key_with(&new_raw, r.day)?;
                r.subject_key_id = new_slot.key_id;
                r.sealed = crypto::seal(&new_key, &record_aad(&self.vault_id, &id, &r), &data)?;
                outcome.kept.push((r.category.clone(), expiry));
                counts.add(&r.category, r.day);
                batch.insert(
                    &layout::record_key(&id),
                    codec::encode(&RecordEntry::Live(r))?,
                );
            }
            live.key = new_slot;
            live.identifiers = self.seal_identifiers(subject, &new_raw, &idents)?;
            put_subject(&mut batch, subject, &SubjectEntry::Live(live))?;
            batch.insert(&counts_key(subject)[..], codec::encode(&counts)?);
            self.tree.apply_batch(batch)?;
            self.forget_seqs(subject);
            self.subjects_changed();
            // The new state must be durable before the old key goes, or a
            // crash would leave records under a destroyed key.
            self.make_durable()
        })();
        if let Err(e) = result {
            self.forget_seqs(subject);
            let _ = self.keystore.destroy(&[new_slot]);
            return Err(e);
        }
        self.destroy_subject_key(old_slot)?;
        Ok(outcome)
    }

    /// The record key for a raw subject key (not cached: rotation only).
    fn record_key_with(&self, subject_raw: &SecretKey, day: Option<i64>) -> Result<SecretKey> {
        match day {
            None => Ok(derive_record_key(subject_raw, None, &self.vault_id)),
            Some(d) => {
                let (_, day_raw) = self.day_key(d)?;
                Ok(derive_record_key(
                    subject_raw,
                    Some(&day_raw),
                    &self.vault_id,
                ))
            }
        }
    }

    /// Re-evaluates every live subject under the policy in force, once per
    /// policy: the policy's checksum is stored when every subject is done,
    /// so a crash midway redoes the rest at the next open.
    fn reevaluate_all(&self) -> Result<()> {
        let digest = crypto::checksum8(self.policy().source().as_bytes());
        if self.tree.get(POLICY_EVALUATED_KEY)?.as_deref() == Some(&digest[..]) {
            return Ok(());
        }
        let subjects: Vec<SubjectId> = self.subject_ids_under(SUBJECT)?;
        for subject in subjects {
            if let Some(SubjectEntry::Live(live)) = self.subject_entry(&subject)? {
                if !self.keystore.holds(live.key) {
                    continue; // the repair pass finished erasing it
                }
                let decided = self.decide_all(&subject, &live, self.threshold())?;
                if decided.iter().any(|d| d.fate != Fate::Keep(d.record.day)) {
                    self.rotate(&subject, live, None)?;
                }
            }
        }
        self.tree.insert(POLICY_EVALUATED_KEY, &digest[..])?;
        self.make_durable()
    }

    /// A new policy may not drop a category that still has live records.
    fn check_policy_fits(&self, policy: &Policy) -> Result<()> {
        let mut missing = HashSet::new();
        for item in self.tree.scan_prefix([RECORD]) {
            let (_, v) = item?;
            if let RecordEntry::Live(r) = decode_record(&v)? {
                if policy.category(&r.category).is_err() {
                    missing.insert(r.category);
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            let mut names: Vec<_> = missing.into_iter().collect();
            names.sort();
            Err(Error::new(
                ErrorKind::Policy,
                format!(
                    "the new policy drops categories that still have live records: {}",
                    names.join(", ")
                ),
            ))
        }
    }

    /// The repair pass at open: destroys keys nothing refers to (a crash
    /// between allocating and using a key, or between replacing and
    /// destroying one), and finishes erasing subjects whose key is gone.
    fn repair(&self) -> Result<()> {
        let mut referenced = HashSet::new();
        let mut dead = Vec::new();
        for item in self.tree.scan_prefix([SUBJECT]) {
            let (k, v) = item?;
            let id = SubjectId::from_bytes(&k[1..])?;
            // A subject entry that does not decode keeps whatever it might
            // refer to: we cannot tell, so we destroy nothing on its account.
            let entry = match decode_subject(&v) {
                Ok(e) => e,
                Err(_) => return Ok(()),
            };
            if let SubjectEntry::Live(live) = entry {
                if self.keystore.holds(live.key) {
                    referenced.insert(live.key);
                } else {
                    dead.push((id, live));
                }
            }
        }
        for item in self.tree.scan_prefix([DAY]) {
            let (_, v) = item?;
            let Ok(entry) = codec::decode::<DayEntry>(&v, "day entry") else {
                return Ok(());
            };
            if self.keystore.holds(entry.key) {
                referenced.insert(entry.key);
            }
        }
        if let Some(bytes) = self.tree.get(SECRETS_KEY)? {
            let Ok(secrets) = codec::decode::<VaultSecrets>(&bytes, "vault secrets") else {
                return Ok(());
            };
            referenced.insert(secrets.audit);
            referenced.insert(secrets.receipt);
        }
        // `holds` matched the key id of every live slot in `referenced`, and
        // a damaged slot is kept as long as someone refers to its index.
        let referenced_indexes: HashSet<u32> = referenced.iter().map(|r| r.index).collect();
        let orphans: Vec<u32> = self
            .keystore
            .occupied_slots()
            .into_iter()
            .map(|(index, _, _)| index)
            .filter(|index| !referenced_indexes.contains(index))
            .collect();
        self.keystore.destroy_indexes(&orphans)?;
        let now = self.now();
        for (id, live) in dead {
            self.finish_erasure(&id, &live, now)?;
        }
        Ok(())
    }
}

fn gone_error(id: &RecordId, reason: GoneReason) -> Error {
    match reason {
        GoneReason::Erased => Error::new(ErrorKind::Erased, format!("record {id} was erased")),
        GoneReason::Expired => Error::new(ErrorKind::Expired, format!("record {id} expired")),
    }
}

/// The blind-index HMAC of a normalized identifier.
pub(crate) fn blind_mac_with(
    index_key: &SecretKey,
    vault_id: &[u8; 16],
    kind: &str,
    value: &str,
) -> [u8; 32] {
    crypto::mac(
        index_key,
        &[b"sv blind v1", vault_id, kind.as_bytes(), value.as_bytes()],
    )
}

/// The vault-wide secrets' slots, created on a vault's first open.
fn vault_secrets(tree: &sled::Tree, keystore: &Keystore) -> Result<VaultSecrets> {
    if let Some(bytes) = tree.get(SECRETS_KEY)? {
        return codec::decode(&bytes, "vault secrets");
    }
    let keys = keystore.allocate(KeyKind::Vault, 2)?;
    let secrets = VaultSecrets {
        audit: keys[0].0,
        receipt: keys[1].0,
    };
    tree.insert(SECRETS_KEY, codec::encode(&secrets)?)?;
    Ok(secrets)
}

/// record key = HKDF(subject key ‖ (retention key | "open"), vault id, "record v1")
pub(crate) fn derive_record_key(
    subject_key: &SecretKey,
    retention_key: Option<&SecretKey>,
    vault_id: &[u8; 16],
) -> SecretKey {
    let mut ikm = Zeroizing::new(Vec::with_capacity(64));
    ikm.extend_from_slice(subject_key.expose());
    match retention_key {
        Some(k) => ikm.extend_from_slice(k.expose()),
        None => ikm.extend_from_slice(b"open"),
    }
    derive_key(&ikm, vault_id, b"record v1")
}

pub(crate) fn derive_identifiers_key(subject_key: &SecretKey, vault_id: &[u8; 16]) -> SecretKey {
    derive_key(subject_key.expose(), vault_id, b"identifiers v1")
}

fn expired_day_error(day: i64) -> Error {
    Error::new(
        ErrorKind::Expired,
        format!(
            "the retention key of day {} is destroyed: the record expired",
            day_label(day)
        ),
    )
}

/// A UTC day as YYYY-MM-DD, for messages and receipts.
pub(crate) fn day_label(day: i64) -> String {
    jiff::Timestamp::from_second(day * retention::SECONDS_PER_DAY)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| format!("day {day}"))
}

impl Drop for Vault {
    fn drop(&mut self) {
        // Background threads stop at their next check and are waited for,
        // so the directory's locks are free once the handle is gone.
        self.inner.closing.store(true, Ordering::Relaxed);
        let handle = lock(&self.inner.purger).handle.take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        let pool: Vec<SlotRef> = lock(&self.key_pool).drain(..).map(|(s, _)| s).collect();
        let _ = self.keystore.destroy(&pool);
        let _ = self.make_durable();
    }
}
