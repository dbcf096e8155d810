//! Subjects and their identifiers: creation, the blind index, lookups, and
//! the cache of live subject entries that reads go through.
//!
//! # Crash order
//!
//! `create_subject`: the subject key comes from the pool of keys already
//! durable in the custody; then one batch writes the subject entry and its
//! blind-index entries. `link_identifier`: one batch rewrites the subject
//! (its identifiers re-sealed) and adds the blind-index entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::codec;
use crate::crypto::{self, SecretKey};
use crate::custody::Derivation;
use crate::domains;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{truncate_for_message, SubjectId};
use crate::layout::{Key, LiveSubject, Prefix, SubjectEntry, SubjectFacts};
use crate::store::Batch;
use crate::types::{MAX_IDENTIFIERS_PER_SUBJECT, MAX_IDENTIFIER_BYTES};

use super::audited::{Commit, Op};
use super::{lock, Engine, Vault};

const SUBJECT_CACHE_MAX: usize = 1 << 16;

/// Live subject entries by id, for reads. Any change to any subject empties
/// it; the generation lets a read that raced a change know not to cache
/// what it saw. (FxHash: its keys are ids the vault drew.)
#[derive(Default)]
pub(super) struct SubjectCache {
    generation: AtomicU64,
    cache: RwLock<FxHashMap<SubjectId, Arc<LiveSubject>>>,
}

impl Vault {
    /// Creates a subject with a random id, indexing `identifiers` (kind,
    /// value) in the blind index.
    pub fn create_subject(&self, identifiers: &[(&str, &str)]) -> Result<SubjectId> {
        let engine = &self.engine;
        engine.audited(Op::CreateSubject, Commit::Mode, |call| {
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
            // Under the blind lock, which an index rotation holds: the
            // HMACs are under the index key in force when they are stored.
            let _blind_guard = lock(&engine.locks.blind);
            let blind: Vec<[u8; 32]> = normalized
                .iter()
                .map(|(k, v)| engine.blind_mac(k, v))
                .collect();
            // Record ids carry the subject id's first 8 bytes: no two
            // subjects may share them (checked under the blind lock, which
            // every creation takes).
            let mut id = SubjectId::random()?;
            while engine.scan(Prefix::subjects_sharing(&id)).next().is_some() {
                id = SubjectId::random()?;
            }
            for (mac, (kind, _)) in blind.iter().zip(&normalized) {
                if engine.store.contains(&Key::Blind(*mac).encode())? {
                    return Err(Error::invalid(format!(
                        "a subject with this {kind} identifier already exists"
                    )));
                }
            }
            let key = engine.keys.take_subject_key()?;
            let sealed =
                engine.seal_identifiers(&id, &engine.identifiers_key(&id, key)?, &normalized)?;
            let entry = SubjectEntry::Live(LiveSubject {
                created_at: engine.now(),
                key,
                identifiers: sealed,
                blind: blind.clone(),
                facts: SubjectFacts::default(),
            });
            let mut batch = Batch::default();
            engine.put_subject(&mut batch, &id, &entry)?;
            for mac in &blind {
                batch.insert(Key::Blind(*mac).encode(), &id.as_bytes()[..]);
            }
            if let Err(e) = engine.store.apply(batch) {
                let _ = engine.keys.custody.destroy(&[key]);
                return Err(e);
            }
            call.entry.subject = Some(id);
            Ok(id)
        })
    }

    /// Adds an identifier to a subject. Linking one it already has is a no-op;
    /// one that belongs to another subject is `InvalidArgument`.
    pub fn link_identifier(&self, subject: &SubjectId, kind: &str, value: &str) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::LinkIdentifier, Commit::Mode, |call| {
            call.entry.subject = Some(*subject);
            call.entry.detail = Some(engine.kind_term(kind).into());
            let ident = normalize_identifier(kind, value)?;
            let _stripe = engine.stripe(subject);
            let _blind_guard = lock(&engine.locks.blind);
            let mac = engine.blind_mac(&ident.0, &ident.1);
            let mut live = engine.live_subject(subject)?;
            if live.facts.erasure_requested().is_some() {
                // What an erasure request kept must not be re-identified.
                return Err(Error::new(
                    ErrorKind::Erased,
                    format!("subject {subject} asked for erasure: no identifier is linked to it"),
                ));
            }
            if let Some(owner) = engine.store.get(&Key::Blind(mac).encode())? {
                if &*owner == subject.as_bytes() {
                    return Ok(());
                }
                return Err(Error::invalid(format!(
                    "this {} identifier belongs to another subject",
                    ident.0
                )));
            }
            let key = engine.identifiers_key(subject, live.key)?;
            let mut idents = engine.open_identifiers(subject, &key, &live.identifiers)?;
            if idents.len() >= MAX_IDENTIFIERS_PER_SUBJECT {
                return Err(Error::invalid(format!(
                    "a subject may have at most {MAX_IDENTIFIERS_PER_SUBJECT} identifiers"
                )));
            }
            idents.push(ident);
            live.identifiers = engine.seal_identifiers(subject, &key, &idents)?;
            live.blind.push(mac);
            let mut batch = Batch::default();
            engine.put_subject(&mut batch, subject, &SubjectEntry::Live(live))?;
            batch.insert(Key::Blind(mac).encode(), &subject.as_bytes()[..]);
            engine.store.apply(batch)?;
            engine.subjects_changed();
            Ok(())
        })
    }

    /// The subject an identifier belongs to, if any (erased subjects have
    /// none).
    pub fn find_subject(&self, kind: &str, value: &str) -> Result<Option<SubjectId>> {
        let engine = &self.engine;
        engine.audited(Op::FindSubject, Commit::No, |call| {
            call.entry.detail = Some(engine.kind_term(kind).into());
            let (kind, value) = normalize_identifier(kind, value)?;
            let mac = engine.blind_mac(&kind, &value);
            let Some(bytes) = engine.store.get(&Key::Blind(mac).encode())? else {
                return Ok(None);
            };
            let id = SubjectId::from_bytes(&bytes)?;
            match engine.subject_entry(&id)? {
                Some(SubjectEntry::Live(_)) => {
                    call.entry.subject = Some(id);
                    Ok(Some(id))
                }
                _ => Ok(None),
            }
        })
    }

    /// The identifiers of a subject, decrypted: (kind, normalized value).
    /// A restricted subject (or one that asked for erasure) is `Restricted`
    /// except to a privileged handle.
    pub fn identifiers(&self, subject: &SubjectId) -> Result<Vec<(String, String)>> {
        let engine = &self.engine;
        engine.audited(Op::Identifiers, Commit::No, |call| {
            call.entry.subject = Some(*subject);
            let live = engine.live_subject(subject)?;
            engine.check_processing_allowed(subject, &live.facts)?;
            let key = engine.identifiers_key(subject, live.key)?;
            engine.open_identifiers(subject, &key, &live.identifiers)
        })
    }
}

impl Engine {
    /// Processing a restricted subject (or what an erasure request left of
    /// one) beyond reading for legal claims takes a privileged handle.
    pub(super) fn check_processing_allowed(
        &self,
        subject: &SubjectId,
        facts: &SubjectFacts,
    ) -> Result<()> {
        if self.privileged() || !(facts.restricted || facts.erasure_requested().is_some()) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Restricted,
            format!("subject {subject} is restricted: only a privileged handle may process it"),
        ))
    }

    /// The entries under a prefix, ascending.
    pub(super) fn scan(&self, prefix: Prefix) -> crate::store::Entries {
        let p = prefix.encode();
        self.store.scan(&p, &p)
    }

    /// The subject ids of every entry under a prefix whose keys are a
    /// prefix byte and a subject id (subjects, holds, pending purges).
    pub(super) fn subject_ids_under(&self, prefix: Prefix) -> Result<Vec<SubjectId>> {
        self.scan(prefix)
            .map(|item| item.and_then(|(k, _)| Key::subject_id(&k)))
            .collect()
    }

    /// Tells cached views of subjects that one changed.
    pub(super) fn subjects_changed(&self) {
        self.subjects.generation.fetch_add(1, Ordering::AcqRel);
        self.subjects
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub(super) fn subject_entry(&self, id: &SubjectId) -> Result<Option<SubjectEntry>> {
        let key = Key::Subject(*id).encode();
        let Some(mut bytes) = self.store.get(&key)? else {
            return Ok(None);
        };
        loop {
            let entry = self
                .decode_subject(id, &bytes)
                .map_err(|e| Error::corrupt(format!("subject {id}: {}", e.message())))?;
            // A key found destroyed may be one a rotation replaced after
            // these bytes were read (opening the facts needs the key): read
            // again, and only entries that stay put are taken as erased.
            if matches!(entry, SubjectEntry::Erased { erased_at: 0 }) {
                if let Some(now) = self.store.get(&key)? {
                    if *now != *bytes {
                        bytes = now;
                        continue;
                    }
                }
            }
            return Ok(Some(entry));
        }
    }

    pub(super) fn live_subject(&self, id: &SubjectId) -> Result<LiveSubject> {
        match self.subject_entry(id)? {
            None => Err(Error::not_found(format!("no subject {id}"))),
            Some(SubjectEntry::Erased { .. }) => Err(Error::new(
                ErrorKind::Erased,
                format!("subject {id} was erased"),
            )),
            Some(SubjectEntry::Live(live)) => Ok(live),
        }
    }

    /// A subject's live entry through the cache (reads take it on every
    /// call).
    pub(super) fn subject_view(&self, id: &SubjectId) -> Result<Arc<LiveSubject>> {
        if let Some(s) = self
            .subjects
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(s.clone());
        }
        let generation = self.subjects.generation.load(Ordering::Acquire);
        let live = Arc::new(self.live_subject(id)?);
        let mut cache = self
            .subjects
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if self.subjects.generation.load(Ordering::Acquire) == generation {
            if cache.len() >= SUBJECT_CACHE_MAX {
                cache.clear();
            }
            cache.insert(*id, live.clone());
        }
        Ok(live)
    }

    /// The subject of a record read just now: the cached state, unless it
    /// names another key than the record's, which happens for a moment
    /// after a rotation (between its batch and the cache being emptied);
    /// then the subject is read from the store itself.
    pub(super) fn subject_for_record(
        &self,
        id: &SubjectId,
        record_key_id: u64,
    ) -> Result<Arc<LiveSubject>> {
        let cached = self.subject_view(id)?;
        if cached.key.key_id == record_key_id {
            return Ok(cached);
        }
        Ok(Arc::new(self.live_subject(id)?))
    }

    /// The key sealing a subject's identifiers.
    pub(super) fn identifiers_key(
        &self,
        subject: &SubjectId,
        key: crate::custody::KeyRef,
    ) -> Result<SecretKey> {
        self.subject_derived(subject, key, Derivation::Identifiers)
    }

    pub(super) fn seal_identifiers(
        &self,
        subject: &SubjectId,
        key: &SecretKey,
        idents: &[(String, String)],
    ) -> Result<Vec<u8>> {
        let plain = Zeroizing::new(codec::encode(&idents)?);
        crypto::seal(
            key,
            &domains::identifiers_aad(&self.vault_id, subject),
            &plain,
        )
    }

    pub(super) fn open_identifiers(
        &self,
        subject: &SubjectId,
        key: &SecretKey,
        sealed: &[u8],
    ) -> Result<Vec<(String, String)>> {
        let plain = crypto::open(
            key,
            &domains::identifiers_aad(&self.vault_id, subject),
            sealed,
            &format!("identifiers of subject {subject}"),
        )?;
        codec::decode(&plain, "identifiers")
    }
}

/// Normalizes an identifier: the kind must be a name (lowercase letters,
/// digits, `_`); the value is put in Unicode NFKC (so a full-width `Ａ` or a
/// decomposed `é` finds the same subject as `A` or `é`) and trimmed, and an
/// e-mail address is case-folded (Unicode lower case, then NFKC again).
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
    if value.len() > 4 * MAX_IDENTIFIER_BYTES {
        // Before normalizing it: NFKC may expand a string many times.
        return Err(Error::invalid(format!(
            "the {kind} identifier is longer than {MAX_IDENTIFIER_BYTES} bytes"
        )));
    }
    let normal: String = value.nfkc().collect();
    let trimmed = normal.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(format!("the {kind} identifier is empty")));
    }
    if trimmed.len() > MAX_IDENTIFIER_BYTES {
        return Err(Error::invalid(format!(
            "the {kind} identifier is longer than {MAX_IDENTIFIER_BYTES} bytes"
        )));
    }
    let value = if kind == "email" {
        trimmed.to_lowercase().nfkc().collect()
    } else {
        trimmed.to_string()
    };
    Ok((kind.to_string(), value))
}
