//! Maintenance: replacing the policy (and re-evaluating every subject under
//! it), the vault's counts, and compaction of a closed vault.
//!
//! # Crash order of a policy change
//!
//! The new policy is stored durably, then every live subject is
//! re-evaluated (rotated where a record's fate changes); a checksum of the
//! evaluated policy is stored when every subject is done, so a crash midway
//! redoes the rest at the next open.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::codec;
use crate::crypto::{self, RootKey};
use crate::decide::Fate;
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{
    decode_record, subject_header, DayEntry, Key, Prefix, RecordEntry, SubjectEntry, SubjectHeader,
    VaultMeta,
};
use crate::policy::Policy;
use crate::store::sled_store::compact;
use crate::types::{CompactReport, Stats};

use super::audited::{Commit, Op};
use super::{Engine, Vault};

impl Vault {
    /// Replaces the policy, once checked against the stored data (a category
    /// that still has live records cannot disappear), then re-evaluates
    /// every record's expiry under it: records move to their new day, and
    /// what the new policy says is past due expires now.
    pub fn set_policy(&self, policy: Policy) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::SetPolicy, Commit::Always, |_| {
            // Every subject stripe, so no put races the check, and no writer
            // the re-evaluation.
            let _stripes = engine.locks.all_stripes();
            engine.check_policy_fits(&policy)?;
            engine.store_policy(&policy)?;
            engine.make_durable()?;
            *engine.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
            engine.reevaluate_all()
        })
    }

    /// Counts of subjects, records and keys, and the bytes on disk.
    pub fn stats(&self) -> Result<Stats> {
        let engine = &self.engine;
        let mut stats = Stats::default();
        for item in engine.scan(Prefix::Subjects) {
            let (_, v) = item?;
            match subject_header(&v)? {
                SubjectHeader::Live { .. } => stats.subjects_live += 1,
                SubjectHeader::Erased => stats.subjects_erased += 1,
            }
        }
        for item in engine.scan(Prefix::Records) {
            let (_, v) = item?;
            match decode_record(&v)? {
                RecordEntry::Live(_) => stats.records_live += 1,
                RecordEntry::Gone(_) => stats.records_gone += 1,
            }
        }
        stats.identifiers_indexed = engine.scan(Prefix::Blind).count() as u64;
        for item in engine.scan(Prefix::Days) {
            let (k, v) = item?;
            let key = Key::Day(Key::day(&k)?);
            if !engine
                .decode_state::<DayEntry>(&key, &v, "day entry")?
                .destroyed
            {
                stats.retention_days += 1;
            }
        }
        let (occupied, free) = engine.keys.custody.counts();
        stats.keystore_slots_live = occupied;
        stats.keystore_slots_free = free;
        stats.data_bytes = engine.store.size_on_disk();
        stats.keys_bytes = engine.keys.custody.size_on_disk();
        Ok(stats)
    }

    /// Destroys a root key object in its PKCS#11 token (`C_DestroyObject`)
    /// once none of `vaults` needs it: complete erasure, carried out. After
    /// a rotation away from the key, every keystore copy made before (old
    /// disk blocks, a copy of `keys/`) opens with nothing: `WrongKey`.
    ///
    /// Each vault's keystore is checked first, under the vault's lock (an
    /// open vault is `Locked`: close it, or stop its server; so no rotation
    /// to the key can begin before it is gone): if it is still wrapped
    /// under the key, or a rotation to the key was cut short there, nothing
    /// is destroyed (`InvalidArgument`, saying which). `vaults` must name at least one
    /// vault; a path without a keystore is `NotFound`. A key given as bytes
    /// is `InvalidArgument` (the vault holds nothing to destroy: destroy
    /// the bytes where you keep them). Token errors: see `RootKey`.
    pub fn retire_root_key(root: &RootKey, vaults: &[&Path]) -> Result<()> {
        Vault::retire_root_key_with(root, vaults, false)
    }

    /// [`Vault::retire_root_key`], which also refuses while a backup made
    /// under the key is still within its window (it would become
    /// unrestorable): `backups_unrestorable` accepts that (take a new
    /// backup after the rotation first).
    pub fn retire_root_key_with(
        root: &RootKey,
        vaults: &[&Path],
        backups_unrestorable: bool,
    ) -> Result<()> {
        let Some(uri) = root.token_uri() else {
            return Err(Error::invalid(
                "only a root key in a PKCS#11 token can be retired by the vault: destroy a root key in bytes where you keep it",
            ));
        };
        if vaults.is_empty() {
            return Err(Error::invalid(
                "name every vault that used the key (--vault VAULT): each is checked before the key is destroyed",
            ));
        }
        let secrets = root.secrets()?;
        // Every vault's lock is held until the key is gone: no rotation to
        // it can begin between the check and the destruction.
        let mut locks = Vec::with_capacity(vaults.len());
        for vault in vaults {
            let (lock, needed) = crate::custody::keystore_needs(&vault.join("keys"), &secrets)?;
            if let Some(why) = needed {
                return Err(Error::invalid(format!(
                    "{} is still needed by the vault at {}: {why} (rotate it to another key first: rotate-key); nothing was destroyed",
                    uri.describe(),
                    vault.display()
                )));
            }
            if !backups_unrestorable {
                if let Some(why) = backup_needs(vault, &secrets)? {
                    return Err(Error::invalid(format!(
                        "{} is still needed by {why} of the vault at {}: take a new backup (under the key in force now) and retire this key once the older backups' window ends, or pass --backups-unrestorable to make them unrestorable now; nothing was destroyed",
                        uri.describe(),
                        vault.display()
                    )));
                }
            }
            locks.push(lock);
        }
        drop(secrets);
        let destroyed = crate::custody::pkcs11::destroy(uri);
        drop(locks);
        destroyed
    }

    /// Rewrites the vault's `data/` as a fresh sled database holding only
    /// live entries (`store::sled_store::compact` has the crash order). The vault
    /// must not be open (`Locked` otherwise); the root key proves the caller
    /// may (`WrongKey` otherwise). Every key stays where it is.
    pub fn compact(path: impl AsRef<Path>, root: &RootKey) -> Result<CompactReport> {
        let vault_dir = path.as_ref();
        let keys_dir = vault_dir.join("keys");
        // Holds the vault's lock (no handle can open meanwhile) and checks
        // the root key.
        let (custody, store) = super::open::existing_parts(vault_dir, root)?;
        if vault_dir.join("store").exists() {
            // Records in PostgreSQL: its VACUUM, as a served vault's
            // compaction runs it.
            let report = store.compact_live();
            drop(custody);
            return report;
        }
        drop(store);
        let data_dir = vault_dir.join("data");
        let check_meta = |meta: Option<&[u8]>| -> Result<()> {
            let Some(bytes) = meta else {
                return Err(Error::corrupt(format!(
                    "{} lacks the vault's metadata: nothing to compact",
                    data_dir.display()
                )));
            };
            let meta: VaultMeta = codec::decode(bytes, "vault metadata")?;
            if meta.vault_id != custody.vault_id() {
                return Err(Error::corrupt(format!(
                    "{} belongs to another vault than {}",
                    data_dir.display(),
                    keys_dir.display()
                )));
            }
            Ok(())
        };
        let report = compact::compact(vault_dir, &check_meta)?;
        drop(custody);
        Ok(report)
    }
}

impl Vault {
    /// Compacts the files of this open vault, as [`Vault::compact`] does
    /// for a closed one, while it stays in use: reads and writes go on
    /// while the live entries are copied, and wait only while the copy
    /// takes the old files' place (writes made meanwhile are carried
    /// over; the crash order is [`Vault::compact`]'s). A scan under way
    /// holds the old files: the swap waits up to 10 s for it to end, then
    /// gives up with `Locked` and changes nothing. Audited as `compact`.
    pub fn compact_live(&self) -> Result<CompactReport> {
        let engine = &self.engine;
        engine.audited(Op::Compact, Commit::Always, |_| engine.store.compact_live())
    }

    /// An operator's decision, for a vault that refuses to open because its
    /// `data/` is older than its keys (a restored or stale copy): accept
    /// that copy as it is. The custody's mark is set back to the store's,
    /// so the next open goes ahead, and its repair pass takes the keys the
    /// copy does not know for leftovers and destroys them, and subjects
    /// whose keys were destroyed since for erased: whatever was written
    /// after the copy was made is lost for good. The vault must be closed.
    /// Returns the durable point the copy stops at.
    pub fn accept_stale_data(path: impl AsRef<Path>, root: &RootKey) -> Result<u64> {
        let (custody, store) = super::open::existing_parts(path.as_ref(), root)?;
        let stored = match store.get(&Key::StoreMark.encode())? {
            Some(bytes) => codec::decode::<u64>(&bytes, "store mark")?,
            None => 0,
        };
        // The next repair pass takes subjects whose keys were destroyed
        // after this copy was made for erased (their erasures' log entries
        // are not in the copy).
        store.insert(&Key::StaleAccepted.encode(), &[])?;
        store.sync(&|| Ok(()))?;
        custody.reset_store_mark(stored)?;
        Ok(stored)
    }
}

impl Engine {
    /// Writes a policy's source as the stored policy.
    pub(super) fn store_policy(&self, policy: &Policy) -> Result<()> {
        self.write_state(&Key::Policy, &policy.source().to_string())
    }

    /// Re-evaluates every live subject under the policy in force, once per
    /// policy (see the module doc).
    pub(super) fn reevaluate_all(&self) -> Result<()> {
        let digest = crypto::checksum8(self.policy().source().as_bytes());
        let evaluated = Key::PolicyEvaluated.encode();
        if self.store.get(&evaluated)?.as_deref() == Some(&digest[..]) {
            return Ok(());
        }
        // A subject that cannot be read (a damaged key slot or entry) is
        // passed over: it is `Corrupt` either way, and one such subject
        // must not stop a policy change (or the open that brings one).
        let damaged = |e: &Error| e.kind() == ErrorKind::Corrupt;
        for subject in self.subject_ids_under(Prefix::Subjects)? {
            let live = match self.subject_entry(&subject) {
                Ok(Some(SubjectEntry::Live(live))) => live,
                Ok(_) => continue,
                Err(e) if damaged(&e) => continue,
                Err(e) => return Err(e),
            };
            if !self.keys.custody.holds(live.key) {
                continue; // the repair pass finished erasing it
            }
            let decided = match self.decide_all(&subject, &live, self.threshold()) {
                Ok(d) => d,
                Err(e) if damaged(&e) => continue,
                Err(e) => return Err(e),
            };
            if decided.iter().any(|d| d.fate != Fate::Keep(d.record.day)) {
                // Records may be erased or expire by the new policy.
                match self.system_erasure(&subject, "policy change: re-evaluated", || {
                    self.rotate(&subject, live, None, None).map(|_| ())
                }) {
                    Ok(()) => {}
                    Err(e) if damaged(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        self.store.insert(&evaluated, &digest)?;
        self.make_durable()
    }

    /// A new policy may not drop a category that still has live records.
    pub(super) fn check_policy_fits(&self, policy: &Policy) -> Result<()> {
        let mut missing = HashSet::new();
        for item in self.scan(Prefix::Records) {
            let (_, v) = item?;
            if let RecordEntry::Live(r) = decode_record(&v)? {
                if policy.category(&r.category).is_err() {
                    missing.insert(r.category);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
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

/// Which backup of the vault at `vault` (whose lock the caller holds) is
/// still within its window and was made under the root key whose derived
/// keys are `root`: a key the restore of that backup needs.
fn backup_needs(vault: &Path, root: &crate::crypto::RootSecrets) -> Result<Option<String>> {
    let made_under = crate::custody::key_check_test(&vault.join("keys"), root)?;
    if !vault.join("data").join("db").exists() && !vault.join("store").exists() {
        return Ok(None);
    }
    let store = super::open::existing_store(vault)?;
    let now = crate::options::system_clock()();
    for item in store.scan(&Prefix::Backups.encode(), &Prefix::Backups.encode()) {
        let (k, v) = item?;
        // Its MAC is the engine's to check (the state key is a vault
        // secret): read here as it claims to be. Whoever could forge one
        // could only let a key retire early, making backups unrestorable.
        let body = match codec::is_authenticated(&v) {
            true => v.get(33..).unwrap_or_default(),
            false => &v[..],
        };
        let record: crate::layout::BackupRecord = codec::decode(body, "backup record")?;
        if now < record.window_ends_at
            && !record.day_key_destroyed
            && made_under(&record.root_key_check)
        {
            let id = match Key::decode(&k)? {
                Key::Backup(id) => hex::encode(id),
                _ => String::new(),
            };
            return Ok(Some(format!(
                "backup {id} (made at {}, restorable until {})",
                record.created_at, record.window_ends_at
            )));
        }
    }
    Ok(None)
}
