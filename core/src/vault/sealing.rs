//! How the engine protects what it stores besides records and identifiers:
//!
//! - a live subject's **facts** (events, flags, consent ledger, states,
//!   request reasons) are sealed under a key derived from its subject key,
//!   so they die with it; the AEAD's associated data binds what the entry
//!   keeps in clear (the key it refers to, its creation time, its
//!   blind-index HMACs), so none of that can be edited either;
//! - the **clear state** (tombstones, the policy, day entries, the expiry
//!   mark, the request ledger, the index key's reference and the markers)
//!   is stored authenticated: a MAC under a key derived from the vault's
//!   audit key, bound to the key it is stored at, so whoever can write
//!   `data/` but holds no key cannot forge or move it (`codec`);
//! - the **blind index** is an HMAC of each normalized identifier under a
//!   random index key that is replaced every `blind_index_rotation`
//!   (`index_key`), so the entries an erasure leaves in the store's old
//!   files stop being findable within that bound.
//!
//! A vault made before facts were sealed (vault format `CLEAR` in the
//! custody's marks) is read as it is until `migrate` rewrites it at open;
//! from then on (format `SEALED`) an unsealed subject or an unauthenticated
//! clear state is damage: `Corrupt`.

use std::sync::atomic::Ordering;

use serde::{de::DeserializeOwned, Serialize};

use crate::codec;
use crate::crypto::{self, SecretKey};
use crate::custody::{Derivation, KeyError};
use crate::domains;
use crate::error::{Error, Result};
use crate::ids::SubjectId;
use crate::layout::{Key, LiveSubject, SealedSubject, StoredSubject, SubjectEntry, SubjectFacts};
use crate::store::Batch;

use super::Engine;

impl Engine {
    /// Whether the vault is in the sealed format (see the module doc).
    pub(super) fn sealed_format(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// A subject entry as stored.
    pub(super) fn encode_subject(&self, id: &SubjectId, entry: &SubjectEntry) -> Result<Vec<u8>> {
        match entry {
            SubjectEntry::Erased { erased_at } => codec::encode_authenticated(
                &StoredSubject::Erased {
                    erased_at: *erased_at,
                },
                &Key::Subject(*id).encode(),
                &self.state_key,
            ),
            SubjectEntry::Live(live) => {
                let key = self.facts_key(id, live)?;
                let plain = zeroize::Zeroizing::new(codec::encode(&live.facts)?);
                let facts = crypto::seal(&key, &facts_aad(&self.vault_id, id, live), &plain)?;
                codec::encode(&StoredSubject::Sealed(SealedSubject {
                    created_at: live.created_at,
                    key: live.key,
                    identifiers: live.identifiers.clone(),
                    blind: live.blind.clone(),
                    facts,
                }))
            }
        }
    }

    /// A stored subject entry, its facts opened. A subject whose key is
    /// destroyed (an erasure a crash cut short before its tombstone) is
    /// erased.
    pub(super) fn decode_subject(&self, id: &SubjectId, bytes: &[u8]) -> Result<SubjectEntry> {
        let at = Key::Subject(*id).encode();
        let stored: StoredSubject = if codec::is_authenticated(bytes) {
            codec::decode_authenticated(bytes, &at, &self.state_key, "subject entry")?
        } else {
            codec::decode(bytes, "subject entry")?
        };
        let authenticated = codec::is_authenticated(bytes);
        match stored {
            StoredSubject::Erased { erased_at } if authenticated || !self.sealed_format() => {
                Ok(SubjectEntry::Erased { erased_at })
            }
            StoredSubject::Clear(c) if !self.sealed_format() => Ok(SubjectEntry::Live(LiveSubject {
                created_at: c.created_at,
                key: c.key,
                identifiers: c.identifiers,
                blind: c.blind,
                facts: c.facts.into(),
            })),
            StoredSubject::Sealed(s) if !authenticated => {
                let mut live = LiveSubject {
                    created_at: s.created_at,
                    key: s.key,
                    identifiers: s.identifiers,
                    blind: s.blind,
                    facts: SubjectFacts::default(),
                };
                let key = match self.keys.custody.derive(live.key, Derivation::Facts) {
                    Ok(k) => k,
                    Err(KeyError::Destroyed(_)) => return Ok(SubjectEntry::Erased { erased_at: 0 }),
                    Err(KeyError::Corrupt(m)) => return Err(Error::corrupt(m)),
                    Err(KeyError::Other(e)) => return Err(e),
                };
                let plain = crypto::open(
                    &key,
                    &facts_aad(&self.vault_id, id, &live),
                    &s.facts,
                    "subject facts",
                )?;
                live.facts = codec::decode(&plain, "subject facts")?;
                Ok(SubjectEntry::Live(live))
            }
            _ => Err(Error::corrupt(
                "the entry is in a format this vault no longer stores (unsealed or unauthenticated)",
            )),
        }
    }

    fn facts_key(&self, id: &SubjectId, live: &LiveSubject) -> Result<SecretKey> {
        self.subject_derived(id, live.key, Derivation::Facts)
    }

    /// Writes a subject entry into `batch`, and keeps the legal-hold index
    /// in step with it.
    pub(super) fn put_subject(
        &self,
        batch: &mut Batch,
        id: &SubjectId,
        entry: &SubjectEntry,
    ) -> Result<()> {
        batch.insert(Key::Subject(*id).encode(), self.encode_subject(id, entry)?);
        match entry {
            SubjectEntry::Live(live) if live.facts.legal_hold => {
                batch.insert(Key::Hold(*id).encode(), &[][..])
            }
            _ => batch.remove(Key::Hold(*id).encode()),
        }
        Ok(())
    }

    /// A clear-state value as stored at `key`: authenticated.
    pub(super) fn encode_state<T: Serialize>(&self, key: &Key, value: &T) -> Result<Vec<u8>> {
        codec::encode_authenticated(value, &key.encode(), &self.state_key)
    }

    /// A clear-state value stored at `key` (see the module doc).
    pub(super) fn decode_state<T: DeserializeOwned>(
        &self,
        key: &Key,
        bytes: &[u8],
        what: &str,
    ) -> Result<T> {
        decode_state(bytes, key, &self.state_key, self.sealed_format(), what)
    }

    /// Reads the clear-state value at `key`, if any.
    pub(super) fn read_state<T: DeserializeOwned>(
        &self,
        key: &Key,
        what: &str,
    ) -> Result<Option<T>> {
        read_state(
            &*self.store,
            key,
            &self.state_key,
            self.sealed_format(),
            what,
        )
    }

    /// Writes a clear-state value at `key`.
    pub(super) fn write_state<T: Serialize>(&self, key: &Key, value: &T) -> Result<()> {
        self.store
            .insert(&key.encode(), &self.encode_state(key, value)?)
    }
}

/// A clear-state value stored at `key`: authenticated, or (in a vault not
/// yet `sealed`) as the code before wrote it.
pub(super) fn decode_state<T: DeserializeOwned>(
    bytes: &[u8],
    key: &Key,
    state_key: &SecretKey,
    sealed: bool,
    what: &str,
) -> Result<T> {
    if codec::is_authenticated(bytes) || sealed {
        codec::decode_authenticated(bytes, &key.encode(), state_key, what)
    } else {
        codec::decode(bytes, what)
    }
}

/// Reads the clear-state value at `key` in `store`, if any.
pub(super) fn read_state<T: DeserializeOwned>(
    store: &dyn crate::store::Store,
    key: &Key,
    state_key: &SecretKey,
    sealed: bool,
    what: &str,
) -> Result<Option<T>> {
    match store.get(&key.encode())? {
        None => Ok(None),
        Some(bytes) => decode_state(&bytes, key, state_key, sealed, what).map(Some),
    }
}

/// The associated data of a live subject's sealed facts.
fn facts_aad(vault_id: &[u8; 16], id: &SubjectId, live: &LiveSubject) -> Vec<u8> {
    domains::facts_aad(
        vault_id,
        id,
        (live.key.index, live.key.key_id),
        live.created_at,
        &live.blind,
    )
}
