//! The upgrade, at open, of a vault made before subject facts were sealed
//! and the clear state authenticated (vault format `CLEAR` in the custody's
//! marks), and of one whose blind index still uses the key derived from the
//! root key.
//!
//! # Crash order
//!
//! 1. Every subject entry is rewritten sealed (tombstones authenticated), a
//!    batch per chunk; a request's extension reason, sealed until now under
//!    a key of its own derived from the subject key (and lost at the
//!    subject's next key rotation), moves into the subject's facts, and
//!    only after its subject is written is it cleared from the request
//!    (rewritten authenticated); the policy, the expiry mark and the day
//!    entries are rewritten authenticated. A subject that cannot be read
//!    (a damaged key slot) is left as it is.
//! 2. A durable point; then the custody records the sealed format
//!    (durably). Until then the vault reads both forms, so a crash anywhere
//!    before is redone at the next open; from then on an unsealed or
//!    unauthenticated entry is `Corrupt`.
//! 3. Without an index key of its own, the blind index is rotated to a
//!    random one (`index_key`, crash-safe on its own).
//!
//! The old, clear entries stay in the store's files until their space is
//! reused: `compact` (a closed vault) drops them at once. The README says
//! so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use crate::custody::VAULT_FORMAT_SEALED;
use crate::error::Result;
use crate::ids::{RequestId, SubjectId};
use crate::layout::{DayEntry, Key, Prefix, RequestEntry, SubjectEntry};
use crate::store::Batch;

use super::Engine;

/// Entries rewritten per batch.
const CHUNK: usize = 1024;

impl Engine {
    /// Upgrades the vault (see the module doc) if it needs it.
    pub(super) fn migrate(&self) -> Result<()> {
        if !self.sealed_format() {
            self.seal_everything()?;
            self.make_durable()?;
            self.keys.custody.set_vault_format(VAULT_FORMAT_SEALED)?;
            self.sealed.store(true, Ordering::Release);
        }
        if self
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            self.rotate_index_key()?;
        }
        Ok(())
    }

    /// Step 1 of the module doc.
    fn seal_everything(&self) -> Result<()> {
        // Reasons to move out of the request ledger, by subject: read
        // first, cleared in the ledger only once their subject is written
        // with them (a crash between redoes both).
        let mut reasons: BTreeMap<SubjectId, Vec<(RequestId, String)>> = BTreeMap::new();
        for item in self.scan(Prefix::Requests) {
            let (k, v) = item?;
            let id = Key::request_id(&k)?;
            let request: RequestEntry =
                self.decode_state(&Key::Request(id), &v, "request entry")?;
            if let Some(ext) = request.extension.as_ref().filter(|e| !e.reason.is_empty()) {
                if let Some(text) = self.open_old_reason(&request.subject, &id, &ext.reason) {
                    reasons.entry(request.subject).or_default().push((id, text));
                }
            }
        }
        let mut batch = Batch::default();
        let mut sealed: BTreeSet<SubjectId> = BTreeSet::new();
        for item in self.scan(Prefix::Subjects) {
            let (k, _) = item?;
            let id = Key::subject_id(&k)?;
            // A subject that cannot be read (a damaged key slot, a damaged
            // entry) is left as it is: it is `Corrupt` either way, and one
            // such subject must not stop the vault from opening.
            let entry = match self.subject_entry(&id) {
                Ok(Some(SubjectEntry::Live(mut live))) => {
                    if let Some(moved) = reasons.get(&id) {
                        live.facts.request_reasons.extend(moved.iter().cloned());
                    }
                    SubjectEntry::Live(live)
                }
                Ok(Some(erased)) => erased,
                Ok(None) | Err(_) => continue,
            };
            if self.put_subject(&mut batch, &id, &entry).is_ok() {
                sealed.insert(id);
            }
            self.apply_if_full(&mut batch)?;
        }
        self.store.apply(std::mem::take(&mut batch))?;
        for item in self.scan(Prefix::Requests) {
            let (k, v) = item?;
            let id = Key::request_id(&k)?;
            let key = Key::Request(id);
            let mut request: RequestEntry = self.decode_state(&key, &v, "request entry")?;
            if sealed.contains(&request.subject) {
                if let Some(ext) = request.extension.as_mut() {
                    ext.reason.clear();
                }
            }
            batch.insert(&k, self.encode_state(&key, &request)?);
            self.apply_if_full(&mut batch)?;
        }
        for item in self.scan(Prefix::Days) {
            let (k, v) = item?;
            let key = Key::day(&k).map(Key::Day)?;
            let day: DayEntry = self.decode_state(&key, &v, "day entry")?;
            batch.insert(&k, self.encode_state(&key, &day)?);
            self.apply_if_full(&mut batch)?;
        }
        if let Some(mark) = self.read_state::<i64>(&Key::ExpiredThrough, "expiry mark")? {
            batch.insert(
                Key::ExpiredThrough.encode(),
                self.encode_state(&Key::ExpiredThrough, &mark)?,
            );
        }
        if let Some(source) = self.read_state::<String>(&Key::Policy, "stored policy")? {
            batch.insert(
                Key::Policy.encode(),
                self.encode_state(&Key::Policy, &source)?,
            );
        }
        self.store.apply(batch)?;
        self.subjects_changed();
        Ok(())
    }

    fn apply_if_full(&self, batch: &mut Batch) -> Result<()> {
        if batch.len() >= CHUNK {
            self.store.apply(std::mem::take(batch))?;
        }
        Ok(())
    }

    /// An extension reason as the code before sealed facts stored it:
    /// sealed under a key derived from the subject key. `None` when that
    /// key is gone (the subject was erased or rotated since).
    fn open_old_reason(
        &self,
        subject: &SubjectId,
        id: &RequestId,
        sealed: &[u8],
    ) -> Option<String> {
        let Ok(Some(SubjectEntry::Live(live))) = self.subject_entry(subject) else {
            return None;
        };
        self.open_sealed_reason(subject, live.key, id, sealed)
    }
}
