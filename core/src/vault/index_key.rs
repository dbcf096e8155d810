//! The blind index and its key. An identifier is found through
//! `'B' HMAC(index key, kind, normalized value)`; the index key is a random
//! vault key in the custody (`'I'`), replaced every `blind_index_rotation`
//! (a policy setting, 7 days by default) by `expire`, and whenever asked
//! ([`Vault::rotate_blind_index`]). The old key is destroyed, so the
//! blind-index entries an erasure removed, which the store's old files may
//! keep until their space is reused (or `compact` runs), can no longer be
//! matched against any identifier: an erasure's blind-index residue is
//! findable for at most one rotation period.
//!
//! Vaults made before the index had its own key used one derived from the
//! root key (`KeyCustody::blind_mac`); their first open rotates to a random
//! key (`migrate`).
//!
//! # Crash order of a rotation
//!
//! 1. A new key is created in the custody (durable).
//! 2. Every live subject's identifiers are opened and their HMACs under the
//!    new key staged under `'b'`, a batch per chunk; then a marker (`'N'`)
//!    naming the new key; a durable point.
//! 3. One batch swaps the index: the old `'B'` entries go, the staged ones
//!    become `'B'`, subjects learn their new HMACs, `'I'` names the new
//!    key, the marker goes; a durable point.
//! 4. The old key is destroyed.
//!
//! At open, a marker means step 3 never happened: what was staged and the
//! marker are dropped (and the repair pass destroys the new key, which
//! nothing refers to then). A crash after step 3 leaves the old key
//! unreferenced: the repair pass destroys it.

use std::collections::HashMap;

use crate::crypto::SecretKey;
use crate::custody::{Derivation, KeyCustody, KeyError, KeyKind, KeyRef};
use crate::domains;
use crate::error::{Error, Result};
use crate::ids::SubjectId;
use crate::layout::{IndexKeyEntry, IndexRotationMarker, Key, Prefix, SubjectEntry, SubjectHeader};
use crate::store::Batch;

use super::audited::{Commit, Op};
use super::subjects::normalize_identifier;
use super::{lock, Engine, Vault};

/// Staged entries written per batch.
const STAGE_CHUNK: usize = 1024;

/// The blind index's key in force.
pub(super) struct IndexKey {
    pub key: KeyRef,
    pub secret: SecretKey,
    pub since: i64,
}

impl Vault {
    /// Replaces the blind index's key now (see the module doc): the
    /// blind-index entries erasures left behind stop being findable.
    pub fn rotate_blind_index(&self) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::RotateBlindIndex, Commit::Always, |_| {
            let _expire = lock(&engine.locks.expire);
            engine.rotate_index_key()
        })
    }

    /// The blind index's keys (HMACs) as stored, for tests that look for
    /// them in the vault's files (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn blind_index_macs(&self) -> Result<Vec<[u8; 32]>> {
        let mut out = Vec::new();
        for item in self.engine.scan(Prefix::Blind) {
            out.push(Key::blind_mac(&item?.0)?);
        }
        Ok(out)
    }
}

impl Engine {
    /// The blind-index HMAC of a normalized identifier.
    pub(super) fn blind_mac(&self, kind: &str, value: &str) -> [u8; 32] {
        match &*self.index.read().unwrap_or_else(|p| p.into_inner()) {
            Some(index) => domains::blind_mac(&index.secret, &self.vault_id, kind, value),
            None => self.keys.custody.blind_mac(kind, value),
        }
    }

    /// The index key `'I'` names, if any.
    pub(super) fn load_index_key(&self, custody: &dyn KeyCustody) -> Result<Option<IndexKey>> {
        let Some(entry) = self.read_state::<IndexKeyEntry>(&Key::BlindIndex, "index key entry")?
        else {
            return Ok(None);
        };
        let secret = custody
            .derive(entry.key, Derivation::Secret)
            .map_err(|e| match e {
                KeyError::Destroyed(_) => {
                    Error::corrupt("the blind index's key is gone from the keystore")
                }
                KeyError::Corrupt(m) => Error::corrupt(format!("the blind index's key: {m}")),
                KeyError::Other(e) => e,
            })?;
        Ok(Some(IndexKey {
            key: entry.key,
            secret,
            since: entry.since,
        }))
    }

    /// Whether the index key is older than the policy's rotation period.
    pub(super) fn index_key_due(&self, now: i64) -> bool {
        let period = self.policy().vault().blind_index_rotation_seconds();
        match &*self.index.read().unwrap_or_else(|p| p.into_inner()) {
            Some(index) => now.saturating_sub(index.since) >= period,
            None => true,
        }
    }

    /// Rotates the index key (the crash order of the module doc). The
    /// caller holds the expire lock; this takes every stripe and the blind
    /// lock.
    pub(super) fn rotate_index_key(&self) -> Result<()> {
        let _stripes = self.locks.all_stripes();
        let _blind = lock(&self.locks.blind);
        // 1.
        let new = self
            .keys
            .custody
            .create(KeyKind::Vault, 1)?
            .pop()
            .expect("one key was asked for");
        let secret = Engine::vault_secret(&*self.keys.custody, new, "new blind index key")?;
        // 2.
        self.drop_staged_index()?;
        let mut batch = Batch::default();
        for item in self.scan(Prefix::Subjects) {
            let (k, _) = item?;
            let id = Key::subject_id(&k)?;
            // A subject that cannot be read (a damaged key slot or entry)
            // is left out: it is `Corrupt` anyway, and one such subject
            // must not stop every rotation (and so every expiry run).
            let Ok(Some(SubjectEntry::Live(live))) = self.subject_entry(&id) else {
                continue;
            };
            if live.blind.is_empty() {
                continue;
            }
            let Ok(idents) = self
                .identifiers_key(&id, live.key)
                .and_then(|key| self.open_identifiers(&id, &key, &live.identifiers))
            else {
                continue;
            };
            for (kind, value) in idents {
                // Normalized again (the rules may have changed since); one
                // that no longer normalizes keeps its stored form.
                let (kind, value) = normalize_identifier(&kind, &value).unwrap_or((kind, value));
                let mac = domains::blind_mac(&secret, &self.vault_id, &kind, &value);
                batch.insert(Key::BlindStaged(mac).encode(), &id.as_bytes()[..]);
            }
            if batch.len() >= STAGE_CHUNK {
                self.store.apply(std::mem::take(&mut batch))?;
            }
        }
        self.store.apply(batch)?;
        self.write_state(&Key::IndexRotation, &IndexRotationMarker { new_key: new })?;
        self.make_durable()?;
        // 3.
        let since = self.now();
        let mut swap = Batch::default();
        swap.insert(
            Key::BlindIndex.encode(),
            self.encode_state(&Key::BlindIndex, &IndexKeyEntry { key: new, since })?,
        );
        swap.remove(Key::IndexRotation.encode());
        self.swap_staged_blind_index(swap)?;
        // The store names the new key from here on, durable or not yet:
        // so does the handle.
        let old = self
            .index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(IndexKey {
                key: new,
                secret,
                since,
            });
        self.make_durable()?;
        // 4.
        if let Some(old) = old {
            self.keys.custody.destroy(&[old.key])?;
        }
        Ok(())
    }

    /// At open: a rotation a crash cut short before its swap is dropped.
    pub(super) fn finish_index_rotation(&self) -> Result<()> {
        if self.store.contains(&Key::IndexRotation.encode())? {
            self.drop_staged_index()?;
            self.make_durable()?;
        }
        Ok(())
    }

    /// The key a rotation under way names, if any (the repair pass keeps it).
    pub(super) fn rotating_index_key(&self) -> Result<Option<KeyRef>> {
        Ok(self
            .read_state::<IndexRotationMarker>(&Key::IndexRotation, "index rotation marker")?
            .map(|m| m.new_key))
    }

    /// Removes staged entries and the marker.
    pub(super) fn drop_staged_index(&self) -> Result<()> {
        let mut batch = Batch::default();
        for item in self.scan(Prefix::BlindStaged) {
            batch.remove(&item?.0);
        }
        batch.remove(Key::IndexRotation.encode());
        self.store.apply(batch)
    }

    /// Staged entries become the blind index; subjects learn their new
    /// HMACs; `batch` (what else the swap writes) goes with them. One
    /// batch; the caller makes it durable.
    pub(super) fn swap_staged_blind_index(&self, mut batch: Batch) -> Result<()> {
        for item in self.scan(Prefix::Blind) {
            batch.remove(&item?.0);
        }
        let mut by_subject: HashMap<SubjectId, Vec<[u8; 32]>> = HashMap::new();
        for item in self.scan(Prefix::BlindStaged) {
            let (k, v) = item?;
            let mac = Key::blind_mac(&k)
                .map_err(|_| Error::corrupt("a staged blind-index entry is malformed"))?;
            let subject = SubjectId::from_bytes(&v)?;
            batch.remove(&k);
            batch.insert(Key::Blind(mac).encode(), &v[..]);
            by_subject.entry(subject).or_default().push(mac);
        }
        for item in self.scan(Prefix::Subjects) {
            let (k, v) = item?;
            if !matches!(
                crate::layout::subject_header(&v)?,
                SubjectHeader::Live { .. }
            ) {
                continue;
            }
            let id = Key::subject_id(&k)?;
            // An unreadable subject keeps its entry (see the staging).
            if let Ok(Some(SubjectEntry::Live(mut live))) = self.subject_entry(&id) {
                live.blind = by_subject.remove(&id).unwrap_or_default();
                if self
                    .put_subject(&mut batch, &id, &SubjectEntry::Live(live))
                    .is_err()
                {
                    continue;
                }
            }
        }
        self.store.apply(batch)?;
        self.subjects_changed();
        Ok(())
    }
}
