//! The custody behind two caches: derived record keys by the subject key
//! (and day) they come from, and a pool of fresh subject keys already
//! durable in the custody (created 16 at a time: one durable write for 16
//! subject creations or rotations).
//!
//! Destruction goes through here so the cache forgets a key before the
//! custody destroys it; a derivation re-checks, under the cache lock, that
//! its keys are still held before caching, so no reader caches a key being
//! destroyed.

use std::sync::Mutex;

use rustc_hash::FxHashMap;

use crate::crypto::SecretKey;
use crate::custody::{Derivation, KeyCustody, KeyError, KeyKind, KeyRef};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::SubjectId;

use super::expiry::expired_day_error;
use super::{lock, Engine};

const KEY_POOL_BATCH: usize = 16;
const KEY_CACHE_MAX: usize = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KeyUse {
    RecordOpen,
    RecordDay(i64),
}

/// The custody, its cache of derived keys and its pool of fresh subject
/// keys. (The cache hashes with FxHash: its keys are slots the vault drew
/// at random, nothing a caller picks. Its values are boxed: a rehash moves
/// pointers, and leaves no key bytes in the table it frees.)
pub(super) struct Keys {
    pub custody: Box<dyn KeyCustody>,
    cache: Mutex<FxHashMap<(KeyRef, KeyUse), Box<SecretKey>>>,
    /// Durable, unreferenced subject keys ready to hand out.
    pool: Mutex<Vec<KeyRef>>,
}

impl Keys {
    pub fn new(custody: Box<dyn KeyCustody>) -> Keys {
        Keys {
            custody,
            cache: Mutex::new(FxHashMap::default()),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// A durable, unreferenced subject key from the pool.
    pub fn take_subject_key(&self) -> Result<KeyRef> {
        let mut pool = lock(&self.pool);
        if pool.is_empty() {
            *pool = self.custody.create(KeyKind::Subject, KEY_POOL_BATCH)?;
        }
        Ok(pool.pop().expect("the pool was just filled"))
    }

    /// Destroys the pool's unused keys (a handle closing).
    pub fn release_pool(&self) {
        let pool: Vec<KeyRef> = lock(&self.pool).drain(..).collect();
        let _ = self.custody.destroy(&pool);
    }

    /// Destroys a subject key: its cache entries go first, and the cache
    /// lock is held until the custody has destroyed it.
    pub fn destroy_subject_key(&self, key: KeyRef) -> Result<()> {
        let mut cache = lock(&self.cache);
        self.custody.destroy(&[key])?;
        cache.retain(|(k, _), _| *k != key);
        Ok(())
    }

    /// Destroys day keys, forgetting every record key derived from them.
    pub fn destroy_day_keys(&self, days: &[(i64, KeyRef)]) -> Result<()> {
        let mut cache = lock(&self.cache);
        let keys: Vec<KeyRef> = days.iter().map(|(_, k)| *k).collect();
        self.custody.destroy(&keys)?;
        cache.retain(|(_, use_), _| {
            !matches!(use_, KeyUse::RecordDay(d) if days.iter().any(|(day, _)| day == d))
        });
        Ok(())
    }
}

/// The error a key's absence or damage is, for a subject's key (`Erased`)
/// or a day's (`Expired`).
pub(super) fn key_error(e: KeyError, subject: &SubjectId, day: Option<(i64, KeyRef)>) -> Error {
    match e {
        KeyError::Destroyed(k) => match day {
            Some((d, day_key)) if day_key == k => expired_day_error(d),
            _ => Error::new(
                ErrorKind::Erased,
                format!("subject {subject} was erased (its key is destroyed)"),
            ),
        },
        KeyError::Corrupt(m) => Error::corrupt(format!("subject {subject}: {m}")),
        KeyError::Other(e) => e,
    }
}

impl Engine {
    /// The key sealing a subject's records of `day` (`None`: no day),
    /// through the cache. A destroyed subject key is `Erased`, a destroyed
    /// (or missing) day key `Expired`.
    pub(super) fn record_key(
        &self,
        subject: &SubjectId,
        key: KeyRef,
        day: Option<i64>,
    ) -> Result<SecretKey> {
        let use_ = match day {
            None => KeyUse::RecordOpen,
            Some(d) => KeyUse::RecordDay(d),
        };
        if let Some(k) = lock(&self.keys.cache).get(&(key, use_)) {
            return Ok(SecretKey::clone(k));
        }
        let (derived, day_key) = self.derive_record_key(subject, key, day)?;
        let mut cache = lock(&self.keys.cache);
        // Re-check under the lock: a key may have been destroyed (and its
        // cache entries dropped) while we derived.
        if !self.keys.custody.holds(key) {
            return Err(Error::new(
                ErrorKind::Erased,
                format!("subject {subject} was erased"),
            ));
        }
        if let Some((d, day_key)) = day_key {
            if !self.keys.custody.holds(day_key) {
                return Err(expired_day_error(d));
            }
        }
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert((key, use_), Box::new(derived.clone()));
        Ok(derived)
    }

    /// [`record_key`](Self::record_key) without the cache (a rotation
    /// derives under keys about to change).
    pub(super) fn record_key_uncached(
        &self,
        subject: &SubjectId,
        key: KeyRef,
        day: Option<i64>,
    ) -> Result<SecretKey> {
        self.derive_record_key(subject, key, day).map(|(k, _)| k)
    }

    /// A record key from the custody, and the day key it used.
    fn derive_record_key(
        &self,
        subject: &SubjectId,
        key: KeyRef,
        day: Option<i64>,
    ) -> Result<(SecretKey, Option<(i64, KeyRef)>)> {
        let day_key = match day {
            None => None,
            Some(d) => Some((d, self.day_key_ref(d)?)),
        };
        let derived = self
            .keys
            .custody
            .derive(
                key,
                Derivation::Record {
                    day: day_key.map(|(_, k)| k),
                },
            )
            .map_err(|e| key_error(e, subject, day_key))?;
        Ok((derived, day_key))
    }

    /// A key derived from a subject's key (identifiers, request reasons).
    pub(super) fn subject_derived(
        &self,
        subject: &SubjectId,
        key: KeyRef,
        derivation: Derivation,
    ) -> Result<SecretKey> {
        self.keys
            .custody
            .derive(key, derivation)
            .map_err(|e| key_error(e, subject, None))
    }

    /// A vault secret (the audit key, the receipt seed).
    pub(super) fn vault_secret(
        custody: &dyn KeyCustody,
        key: KeyRef,
        what: &str,
    ) -> Result<SecretKey> {
        custody
            .derive(key, Derivation::Secret)
            .map_err(|e| match e {
                KeyError::Destroyed(_) => {
                    Error::corrupt(format!("the vault's {what} is gone from the keystore"))
                }
                KeyError::Corrupt(m) => Error::corrupt(format!("the vault's {what}: {m}")),
                KeyError::Other(e) => e,
            })
    }
}
