//! Creating and opening a vault, and the repair pass at open.
//!
//! # Order at open
//!
//! 1. The custody first: its lock and its key check come before the store
//!    is touched, so a second process gets `Locked` and a wrong key
//!    `WrongKey` without side effects.
//! 2. The store (for sled: a compaction a crash cut short is finished or
//!    undone first).
//! 3. The vault's metadata: written (durably, before any key is created)
//!    for a new vault; checked against the custody's vault id otherwise. A
//!    custody holding keys beside a store without metadata is refused: the
//!    repair pass would take every key for a leftover and destroy it.
//! 4. The puts the store may have lost are replayed (`durability`), before
//!    anything else writes.
//! 5. A new policy replaces the stored one (once it fits the stored data);
//!    a root-key rotation cut short is finished or dropped (`root_key`);
//!    the repair pass; the re-evaluation under a changed policy; a durable
//!    point. Then the purge resumes in the background if it has work.
//!
//! # The repair pass
//!
//! A crash can leave a key nothing refers to (created but unused, or
//! replaced but not yet destroyed): the repair pass destroys it. A subject
//! that refers to a destroyed key is finished off as erased. A stored entry
//! that does not decode stops the pass before it destroys anything: what it
//! refers to cannot be told.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::audit::AuditLog;
use crate::codec;
use crate::crypto::{self, RootKey};
use crate::custody::{HeldSlot, KeyCustody, KeyKind, SlotFileCustody, VAULT_FORMAT_SEALED};
use crate::domains;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::SubjectId;
use crate::layout::{
    subject_header, DayEntry, Key, Prefix, SubjectHeader, VaultMeta, VaultSecrets,
};
use crate::options::{system_clock, Durability, VaultOptions};
use crate::policy::Policy;
use crate::store::{SledStore, Store};

use super::audited::{Commit, Op};
use super::durability::spawn_flusher;
use super::sealing::read_state;
use super::{keys, Background, Engine, Locks, Vault};

/// Whether an open may create the vault, and must.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    CreateOrOpen,
    Create,
    Existing,
    /// A restore opening the vault it wrote (`backup`): the one open a
    /// restore marker allows.
    Restore,
}

impl Vault {
    /// Opens the vault at `path`, creating it if needed, with the default
    /// options: the shortcut for [`Vault::create`] and
    /// [`Vault::open_existing`]. `policy`: required for a new vault; for an
    /// existing one, `None` keeps the stored policy and `Some` replaces it
    /// once validated against the stored data.
    pub fn open(path: impl AsRef<Path>, root: &RootKey, policy: Option<Policy>) -> Result<Vault> {
        Vault::open_with(path, root, policy, VaultOptions::default())
    }

    /// [`Vault::open`] with options.
    pub fn open_with(
        path: impl AsRef<Path>,
        root: &RootKey,
        policy: Option<Policy>,
        options: VaultOptions,
    ) -> Result<Vault> {
        open_dir(path.as_ref(), root, policy, options, Mode::CreateOrOpen)
    }

    /// Creates a vault at `path` with `policy`; `InvalidArgument` if one is
    /// there already.
    pub fn create(
        path: impl AsRef<Path>,
        root: &RootKey,
        policy: Policy,
        options: VaultOptions,
    ) -> Result<Vault> {
        open_dir(path.as_ref(), root, Some(policy), options, Mode::Create)
    }

    /// Whether `path` holds a vault: its keys in `keys/`, or (a vault whose
    /// keys are in its database) the directory a node keeps.
    pub fn exists(path: impl AsRef<Path>) -> bool {
        vault_exists(path.as_ref())
    }

    /// Opens the vault at `path` with its stored policy; `NotFound` if there
    /// is none.
    pub fn open_existing(
        path: impl AsRef<Path>,
        root: &RootKey,
        options: VaultOptions,
    ) -> Result<Vault> {
        open_dir(path.as_ref(), root, None, options, Mode::Existing)
    }
}

pub(super) fn open_dir(
    root_dir: &Path,
    root: &RootKey,
    policy: Option<Policy>,
    options: VaultOptions,
    mode: Mode,
) -> Result<Vault> {
    if root_dir.as_os_str().is_empty() {
        return Err(Error::invalid("the vault path is empty"));
    }
    check_actor(options.actor.as_deref())?;
    if mode != Mode::Restore {
        super::backup::check_not_restoring(root_dir)?;
    }
    let exists = vault_exists(root_dir);
    match mode {
        Mode::Create if exists => {
            return Err(Error::invalid(format!(
                "{} is already a vault",
                root_dir.display()
            )))
        }
        Mode::Existing | Mode::Restore if !exists => {
            return Err(Error::not_found(format!(
                "there is no vault at {}",
                root_dir.display()
            )))
        }
        _ => {}
    }
    if policy.is_none() && !exists {
        // Refused before anything is created.
        return Err(Error::new(
            ErrorKind::Policy,
            format!(
                "there is no vault at {} yet: give a policy to create one",
                root_dir.display()
            ),
        ));
    }
    crate::fsmode::create_private_dir_durably(root_dir)?;
    let store_at = store_location(root_dir, options.store.as_deref(), exists)?;
    let now = options
        .clock
        .clone()
        .unwrap_or_else(crate::options::system_clock)();
    let (custody, store) = open_parts(root_dir, root, store_at.as_deref(), !exists, now)?;
    let vault = Engine::start(root_dir.to_path_buf(), store, custody, policy, options)?;
    *super::lock(&vault.engine.root_name) = Some(root.public_name());
    *super::lock(&vault.engine.token) = root.token_uri().cloned();
    Ok(vault)
}

/// The file in a vault directory naming the database its records live in
/// (absent: `data/`, sled).
const STORE_FILE: &str = "store";

/// Where the vault at `root_dir` keeps its records: `None` for `data/`,
/// else the connection string its `store` file holds. A vault made with
/// `store` given writes that file (0600, durably) before its keys exist,
/// so every later open, by any tool, finds its records without being told;
/// an open naming another store than the vault's is refused.
fn store_location(root_dir: &Path, wanted: Option<&str>, exists: bool) -> Result<Option<String>> {
    let path = root_dir.join(STORE_FILE);
    let recorded = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    match (recorded, wanted) {
        (Some(have), Some(want)) if have != want.trim() => Err(Error::invalid(format!(
            "the vault at {} keeps its records in another database than the one given (see {})",
            root_dir.display(),
            path.display()
        ))),
        (Some(have), _) => Ok(Some(have)),
        (None, None) => Ok(None),
        (None, Some(_)) if exists => Err(Error::invalid(format!(
            "the vault at {} keeps its records in its data/ directory, not in a database",
            root_dir.display()
        ))),
        (None, Some(want)) => {
            use std::io::Write;
            let want = want.trim().to_string();
            let tmp = root_dir.join("store.new");
            let mut f = crate::fsmode::create_private_file(&tmp)?;
            f.write_all(want.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            crate::fsmode::sync_parent(&path)?;
            Ok(Some(want))
        }
    }
}

/// The file in a vault directory whose keys are in PostgreSQL, under
/// epoch keys in a token (`custody::epochs`): the node's marks.
const EPOCH_MARKS: &str = "marks";

/// Whether `root_dir` holds a vault: a keystore in `keys/`, or the marks
/// of a vault whose keys are in its database.
pub(super) fn vault_exists(root_dir: &Path) -> bool {
    SlotFileCustody::exists(&root_dir.join("keys")) || root_dir.join(EPOCH_MARKS).exists()
}

/// The custody and the store of the vault at `root_dir`, opened in order,
/// the vault's lock first: for a directory's keystore, its lock file; for
/// keys in PostgreSQL (`custody::epochs`: a vault made with a store and a
/// root key in a token), the store's advisory lock. `create`: a custody
/// may be made (a new vault; with keys in PostgreSQL, a new node's
/// directory joins the vault its database holds).
pub(super) fn open_parts(
    root_dir: &Path,
    root: &RootKey,
    store_at: Option<&str>,
    create: bool,
    now: i64,
) -> Result<(Box<dyn KeyCustody>, Arc<dyn Store>)> {
    let keys_dir = root_dir.join("keys");
    let epochs = match (store_at, create) {
        (None, _) => false,
        (Some(_), true) => root.is_in_token(),
        (Some(_), false) => !SlotFileCustody::exists(&keys_dir),
    };
    if !epochs {
        let custody = SlotFileCustody::open(&keys_dir, root, crypto::random_array()?)?;
        let store = open_store(root_dir, store_at)?;
        return Ok((Box::new(custody), store));
    }
    #[cfg(feature = "postgres")]
    {
        let url = store_at.expect("a store was given");
        let store = crate::store::PgStore::open(url)?;
        let custody = crate::custody::EpochCustody::open(
            &store,
            root_dir,
            root,
            crypto::random_array()?,
            create,
            now,
        )?;
        Ok((Box::new(custody), Arc::new(store)))
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = now;
        Err(Error::invalid(
            "this vault keeps its records in PostgreSQL, and this build has no PostgreSQL store (the `postgres` feature)",
        ))
    }
}

/// The store of the existing vault at `root_dir` (its `store` file's, or
/// `data/`), for tools that work on a closed vault.
pub(super) fn existing_store(root_dir: &Path) -> Result<Arc<dyn Store>> {
    // (A vault whose keys are in its database is opened whole: see
    // `existing_parts`.)
    open_store(root_dir, store_location(root_dir, None, true)?.as_deref())
}

/// The custody and store of the existing vault at `root_dir`, for tools
/// that work on a closed vault (`NotFound` if there is none).
pub(super) fn existing_parts(
    root_dir: &Path,
    root: &RootKey,
) -> Result<(Box<dyn KeyCustody>, Arc<dyn Store>)> {
    if !vault_exists(root_dir) {
        return Err(Error::not_found(format!(
            "there is no vault at {}",
            root_dir.display()
        )));
    }
    let store_at = store_location(root_dir, None, true)?;
    let now = crate::options::system_clock()();
    open_parts(root_dir, root, store_at.as_deref(), false, now)
}

/// The store at `location` (see [`store_location`]): sled in
/// `root_dir/data`, or PostgreSQL.
fn open_store(root_dir: &Path, location: Option<&str>) -> Result<Arc<dyn Store>> {
    match location {
        None => Ok(Arc::new(SledStore::open(root_dir)?)),
        #[cfg(feature = "postgres")]
        Some(url) => Ok(Arc::new(crate::store::PgStore::open(url)?)),
        #[cfg(not(feature = "postgres"))]
        Some(_) => Err(Error::invalid(
            "this vault keeps its records in PostgreSQL, and this build has no PostgreSQL store (the `postgres` feature)",
        )),
    }
}

/// An actor label is 1 to 64 letters, digits or `_.:-`: never personal data.
pub(super) fn check_actor(actor: Option<&str>) -> Result<()> {
    let Some(actor) = actor else {
        return Ok(());
    };
    let ok = !actor.is_empty()
        && actor.len() <= 64
        && actor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "an actor label is 1 to 64 letters, digits or _.:- (never personal data)",
        ))
    }
}

impl Engine {
    /// Opens the vault held by `store` and `custody` (the order of this
    /// module's doc, from step 3).
    pub(crate) fn start(
        root: PathBuf,
        store: Arc<dyn Store>,
        custody: Box<dyn KeyCustody>,
        policy: Option<Policy>,
        options: VaultOptions,
    ) -> Result<Vault> {
        check_actor(options.actor.as_deref())?;
        let root_for_warnings = root.clone();
        let vault_id = custody.vault_id();
        let clock = options.clock.clone().unwrap_or_else(system_clock);
        let meta_is_new = check_meta(&root, &*store, &*custody, vault_id, clock())?;
        let durable_points = check_store_mark(&root, &*store, &*custody)?;
        let secrets = vault_secrets(&*store, &*custody)?;
        let audit_key = Engine::vault_secret(&*custody, secrets.audit, "audit key")?;
        let state_key = domains::state_key(&audit_key);
        let recovered = store.recover(domains::journal_key(&audit_key))?;
        let audit = AuditLog::open(store.clone(), audit_key)?;
        let ledger = super::ledger::Ledger::load(&*store)?;
        let receipt_key = Engine::vault_secret(&*custody, secrets.receipt, "receipt key")?;
        let sealed = custody.marks().vault_format >= VAULT_FORMAT_SEALED;
        let stored_policy =
            match read_state::<String>(&*store, &Key::Policy, &state_key, sealed, "stored policy")?
            {
                Some(text) => Some(Policy::parse(&text, "stored policy").map_err(|e| {
                    Error::corrupt(format!(
                        "the stored policy no longer parses: {}",
                        e.message()
                    ))
                })?),
                None => None,
            };
        let in_force = match (&policy, &stored_policy) {
            (Some(p), _) | (None, Some(p)) => p.clone(),
            (None, None) if meta_is_new => {
                return Err(Error::new(
                    ErrorKind::Policy,
                    format!(
                        "the vault at {} has no policy yet: give one to create it",
                        root.display()
                    ),
                ))
            }
            (None, None) => {
                return Err(Error::corrupt(format!(
                    "the vault at {} has lost its stored policy (data/ is damaged)",
                    root.display()
                )))
            }
        };
        let expired_through = read_state::<i64>(
            &*store,
            &Key::ExpiredThrough,
            &state_key,
            sealed,
            "expiry mark",
        )?
        .unwrap_or(i64::MIN);
        let engine = Engine {
            root,
            vault_id,
            store,
            keys: keys::Keys::new(custody),
            audit,
            ledger,
            actor: options.actor.clone(),
            privileged: options.privileged,
            policy: RwLock::new(Arc::new(in_force)),
            durability: options.durability,
            clock,
            receipt_key,
            state_key,
            sealed: AtomicBool::new(sealed),
            root_name: Mutex::new(None),
            token: Mutex::new(None),
            index: RwLock::new(None),
            durable_points: Mutex::new(durable_points),
            refuse_writes: OnceLock::new(),
            deferred_destroy: Mutex::new(Vec::new()),
            subjects: Default::default(),
            seqs: Default::default(),
            locks: Locks::new(),
            expired_through: AtomicI64::new(expired_through),
            background: Background::default(),
            warnings: Mutex::new(private_mode_warnings(&root_for_warnings)),
        };
        let index = engine.load_index_key(&*engine.keys.custody)?;
        *engine.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        engine.replay(recovered)?;
        engine.finish_root_rotation()?;
        engine.finish_index_rotation()?;
        engine.repair()?;
        if let Some(why) = engine.refuse_writes.get() {
            engine.warn(format!("writes are refused: {why}"));
        }
        if let Some(new) = policy {
            if stored_policy.as_ref().map(|p| p.source()) != Some(new.source()) {
                if let (Some(_), Some(stored)) = (engine.refuse_writes.get(), stored_policy) {
                    // Nothing is written: the stored policy stays in force.
                    engine.warn("the policy given was not stored (writes are refused); the stored one is in force".into());
                    *engine.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(stored);
                } else {
                    engine.audited(Op::SetPolicy, Commit::No, |call| {
                        call.entry.detail = Some("at open".into());
                        engine.check_policy_fits(&new)?;
                        engine.store_policy(&new)
                    })?;
                }
            }
        }
        if engine.refuse_writes.get().is_none() {
            engine.migrate()?;
            engine.reevaluate_all()?;
        }
        engine.make_durable()?;
        let pending_purge = engine.refuse_writes.get().is_none() && engine.purge_pending()?;
        let engine = Arc::new(engine);
        if engine.durability == Durability::Batched {
            spawn_flusher(Arc::downgrade(&engine));
        }
        if pending_purge {
            engine.kick_purge();
        }
        Ok(Vault { engine })
    }

    /// The repair pass: see the module doc.
    fn repair(&self) -> Result<()> {
        let mut referenced = HashSet::new();
        let mut dead = Vec::new();
        for item in self.scan(Prefix::Subjects) {
            let (k, v) = item?;
            let id = Key::subject_id(&k)?;
            let Ok(header) = subject_header(&v) else {
                return Ok(());
            };
            if let SubjectHeader::Live { key, blind } = header {
                if self.keys.custody.holds(key) {
                    referenced.insert(key);
                } else {
                    dead.push((id, blind));
                }
            }
        }
        for item in self.scan(Prefix::Days) {
            let (k, v) = item?;
            let Ok(entry) =
                self.decode_state::<DayEntry>(&Key::Day(Key::day(&k)?), &v, "day entry")
            else {
                return Ok(());
            };
            if self.keys.custody.holds(entry.key) {
                referenced.insert(entry.key);
            }
        }
        if let Some(bytes) = self.store.get(&Key::Secrets.encode())? {
            let Ok(secrets) = codec::decode::<VaultSecrets>(&bytes, "vault secrets") else {
                return Ok(());
            };
            referenced.insert(secrets.audit);
            referenced.insert(secrets.receipt);
        }
        if let Some(index) = &*self.index.read().unwrap_or_else(|p| p.into_inner()) {
            referenced.insert(index.key);
        }
        if let Some(rotating) = self.rotating_index_key().unwrap_or(None) {
            referenced.insert(rotating);
        }
        // A keystore cut short: the store refers to slots past its end.
        // Nothing is destroyed, and nothing is written, until keys/ is
        // restored (a new key could take a missing slot's index).
        let (occupied, free) = self.keys.custody.counts();
        let slots = occupied + free;
        if let Some(past) = referenced.iter().find(|r| u64::from(r.index) >= slots) {
            let _ = self.refuse_writes.set(format!(
                "the keystore holds {slots} slots but data/ refers to slot {}: keys/ was cut short or replaced by an older copy; restore it (nothing is written meanwhile)",
                past.index
            ));
            return Ok(());
        }
        // A subject whose key is gone is an erasure a crash cut short only
        // if its erasure was begun (logged, durably, before any key goes)
        // or an operator accepted an older data/. Otherwise keys/ is older
        // than data/ (a restored copy whose slot was reused since) or
        // damaged: nothing is destroyed, and nothing written.
        let accepted = self.store.contains(&Key::StaleAccepted.encode())?;
        if !dead.is_empty() && !accepted {
            let begun: HashSet<SubjectId> = self
                .audit
                .entries(|e| {
                    e.outcome == "begun"
                        && (e.op == Op::EraseSubject.name() || e.op == Op::SystemErasure.name())
                })?
                .into_iter()
                .filter_map(|e| e.subject)
                .collect();
            if let Some((id, _)) = dead.iter().find(|(id, _)| !begun.contains(id)) {
                let _ = self.refuse_writes.set(format!(
                    "subject {id} refers to a key keys/ does not hold, and no erasure of it was begun: keys/ is older than data/ (a restored copy) or damaged; put the newer keys/ back (nothing is destroyed or written meanwhile)"
                ));
                return Ok(());
            }
        }
        // `holds` matched the key id of every live key in `referenced`, and
        // a damaged slot is kept as long as someone refers to its index.
        let referenced_slots: HashSet<u32> = referenced.iter().map(|r| r.index).collect();
        let orphans: Vec<HeldSlot> = self
            .keys
            .custody
            .inventory()
            .into_iter()
            .filter(|held| !referenced_slots.contains(&held.index))
            .collect();
        // A rotation a power cut tore (records under a key their subject
        // no longer, or not yet, names): re-sealed under the subject's key
        // before any key goes (see `torn`).
        self.repair_torn_rotations(&orphans)?;
        let orphans: Vec<u32> = orphans.iter().map(|held| held.index).collect();
        self.keys.custody.destroy_slots(&orphans)?;
        let now = self.now();
        for (id, blind) in dead {
            self.system_erasure(&id, "repair: an erasure cut short", || {
                self.finish_erasure_of(&id, &blind, now)
            })?;
        }
        if accepted {
            self.store.remove(&Key::StaleAccepted.encode())?;
        }
        Ok(())
    }
}

/// Loose modes on the vault's directories and files (see `fsmode`).
fn private_mode_warnings(root: &Path) -> Vec<String> {
    let mut paths = vec![root.to_path_buf()];
    for dir in ["keys", "data"] {
        paths.push(root.join(dir));
    }
    for file in ["keys/keystore", "keys/lock", "keys/marks", "journal"] {
        paths.push(root.join(file));
    }
    paths
        .iter()
        .filter_map(|p| crate::fsmode::looser_than_private(p))
        .collect()
}

/// Checks the stored metadata names the custody's vault, or writes it for
/// a new vault (durably, before any key is created); whether it was new.
fn check_meta(
    root: &Path,
    store: &dyn Store,
    custody: &dyn KeyCustody,
    vault_id: [u8; 16],
    now: i64,
) -> Result<bool> {
    let data_dir = root.join("data");
    if let Some(bytes) = store.get(&Key::Meta.encode())? {
        let meta: VaultMeta = codec::decode(&bytes, "vault metadata")?;
        if meta.vault_id != vault_id {
            return Err(Error::corrupt(format!(
                "{} belongs to another vault than {}/keys",
                data_dir.display(),
                root.display()
            )));
        }
        return Ok(false);
    }
    let (occupied, _) = custody.counts();
    if occupied > 0 {
        // The metadata is made durable before any key is created, so keys
        // without it mean data/ is lost or damaged. Opening would make
        // every stored key look unreferenced and the repair pass would
        // destroy them.
        return Err(Error::corrupt(format!(
            "{} is missing, empty or damaged (it lacks the vault's metadata) but {} holds {occupied} keys; refusing to open (restore data/ first)",
            data_dir.display(),
            root.join("keys").join("keystore").display()
        )));
    }
    let meta = VaultMeta {
        vault_id,
        created_at: now,
    };
    store.insert(&Key::Meta.encode(), &codec::encode(&meta)?)?;
    store.sync(&|| Ok(()))?;
    Ok(true)
}

/// The store's count of durable points, checked against how far the
/// custody has seen it go: a store behind it is an older copy.
fn check_store_mark(root: &Path, store: &dyn Store, custody: &dyn KeyCustody) -> Result<u64> {
    let stored = match store.get(&Key::StoreMark.encode())? {
        Some(bytes) => codec::decode::<u64>(&bytes, "store mark")?,
        None => 0,
    };
    let seen = custody.marks().store_mark;
    if stored < seen {
        return Err(Error::corrupt(format!(
            "{data} is older than {keys}: it stops at durable point {stored}, and the keys beside it have seen point {seen}. It is a restored or stale copy; opening it would take keys made since for leftovers and destroy them, erasing what was written meanwhile. Nothing was changed. Put the newer data/ back; or restore a backup made with `shredvault backup` (`shredvault restore BACKUP NEW-VAULT --ledger LEDGER`: it brings back keys and data from one point and re-applies the erasures made since); or, accepting that whatever was written after this copy is lost, run `shredvault repair {vault} --accept-stale-data`",
            data = root.join("data").display(),
            keys = root.join("keys").display(),
            vault = root.display(),
        )));
    }
    Ok(stored)
}

/// The vault-wide secrets' keys, created on a vault's first open.
fn vault_secrets(store: &dyn Store, custody: &dyn KeyCustody) -> Result<VaultSecrets> {
    if let Some(bytes) = store.get(&Key::Secrets.encode())? {
        return codec::decode(&bytes, "vault secrets");
    }
    let keys = custody.create(KeyKind::Vault, 2)?;
    let secrets = VaultSecrets {
        audit: keys[0],
        receipt: keys[1],
    };
    store.insert(&Key::Secrets.encode(), &codec::encode(&secrets)?)?;
    Ok(secrets)
}
