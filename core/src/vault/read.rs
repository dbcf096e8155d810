//! The one read path: `get`, `scan` and `export` all open a record through
//! [`Engine::read_record`], with one retry policy.
//!
//! A read takes the record's stored entry, then its subject's state (from
//! the subject cache), checks who may read it (`decide`), derives its key
//! and opens it under its associated data. A subject-key rotation may
//! replace the record and its subject's key between those reads; it
//! finishes quickly, so the read starts over, up to [`READ_RETRIES`] times.
//! The same mismatch seen twice in a row is damage, not a race.

use crate::crypto;
use crate::decide;
use crate::domains;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::RecordId;
use crate::layout::{decode_record_view, Key, LiveRecordView, RecordEntryView};
use crate::policy::Policy;
use crate::store::Value;
use crate::types::Record;

use super::audited::{known_term, Commit, Op};
use super::records::gone_error;
use super::{Engine, Vault};

/// How many times a read starts over while a rotation races it.
const READ_RETRIES: usize = 64;

/// Who reads a record.
#[derive(Clone, Copy, Debug)]
pub(super) enum Reader<'p> {
    /// A read for a purpose: the category must serve it and the subject's
    /// state allow it (`decide`).
    Purpose(&'p str),
    /// The subject's own access (an export), or the vault carrying out
    /// the subject's own directive: every live record, no purpose.
    Subject,
}

impl Vault {
    /// Reads a record for `purpose`.
    pub fn get(&self, record: &RecordId, purpose: &str) -> Result<Record> {
        let engine = &self.engine;
        let policy = engine.policy();
        engine.audited(Op::Get, Commit::No, |call| {
            call.entry.record = Some(*record);
            call.entry.purpose = Some(known_term(policy.purpose(purpose).is_ok(), purpose));
            let read = engine.read_record(record, None, &policy, Reader::Purpose(purpose))?;
            call.entry.subject = Some(read.subject);
            call.entry.detail = Some(read.category.clone().into());
            Ok(read)
        })
    }
}

/// One attempt's end.
enum Attempt {
    Read(Record),
    /// A rotation raced the read: this mismatch of (record's key id,
    /// subject's key) was seen, if any.
    Again(Option<(u64, crate::custody::KeyRef)>),
}

impl Engine {
    /// The stored bytes of a record; a missing one is `NotFound`, or
    /// `Erased` when its subject was erased.
    pub(super) fn record_bytes(&self, id: &RecordId) -> Result<Value> {
        match self.store.get(&Key::Record(*id).encode())? {
            Some(bytes) => Ok(bytes),
            None => Err(self.missing_record_error(id)),
        }
    }

    /// Reads and opens record `id` for `reader`: see the module doc.
    /// `first` is its entry when the caller has read and decoded it
    /// already (a scan).
    pub(super) fn read_record(
        &self,
        id: &RecordId,
        first: Option<LiveRecordView<'_>>,
        policy: &Policy,
        reader: Reader<'_>,
    ) -> Result<Record> {
        let mut attempt = match first {
            Some(live) => self.read_live(id, live, policy, reader)?,
            None => self.read_stored(id, policy, reader)?,
        };
        let mut last_mismatch = None;
        for _ in 1..READ_RETRIES {
            let mismatch = match attempt {
                Attempt::Read(record) => return Ok(record),
                Attempt::Again(mismatch) => mismatch,
            };
            if mismatch.is_some() && mismatch == last_mismatch {
                return Err(Error::corrupt(format!(
                    "record {id} is sealed under a key its subject does not hold"
                )));
            }
            last_mismatch = mismatch;
            attempt = self.read_stored(id, policy, reader)?;
        }
        match attempt {
            Attempt::Read(record) => Ok(record),
            Attempt::Again(_) => Err(Error::internal(format!(
                "record {id} kept changing while being read"
            ))),
        }
    }

    /// One attempt, reading the record's entry from the store.
    fn read_stored(&self, id: &RecordId, policy: &Policy, reader: Reader<'_>) -> Result<Attempt> {
        let stored = self.record_bytes(id)?;
        match decode_record_view(&stored)
            .map_err(|e| Error::corrupt(format!("record {id}: {}", e.message())))?
        {
            RecordEntryView::Live(live) => self.read_live(id, live, policy, reader),
            RecordEntryView::Gone(h) => Err(gone_error(id, h.reason)),
        }
    }

    /// One attempt on a live entry.
    fn read_live(
        &self,
        id: &RecordId,
        live: LiveRecordView<'_>,
        policy: &Policy,
        reader: Reader<'_>,
    ) -> Result<Attempt> {
        let category = policy.category(live.category).map_err(|_| {
            Error::corrupt(format!(
                "record {id} names category {:?}, which the policy lacks",
                live.category
            ))
        })?;
        if let Reader::Purpose(purpose) = reader {
            decide::purpose_allowed(policy, category, purpose, self.privileged())
                .map_err(|r| r.into_error(&live.subject, category, purpose))?;
        }
        let subject = self.subject_for_record(&live.subject, live.subject_key_id)?;
        if let Reader::Purpose(purpose) = reader {
            decide::subject_allows(policy, category, &subject.facts, purpose)
                .map_err(|r| r.into_error(&live.subject, category, purpose))?;
        }
        if subject.key.key_id != live.subject_key_id {
            return Ok(Attempt::Again(Some((live.subject_key_id, subject.key))));
        }
        let key = match self.record_key(&live.subject, subject.key, live.day) {
            Ok(k) => k,
            // Rotated (and the old key destroyed) since the subject was read.
            Err(e) if e.kind() == ErrorKind::Erased => return Ok(Attempt::Again(None)),
            Err(e) => return Err(e),
        };
        let aad = domains::record_aad(&self.vault_id, id, &live);
        let data = crypto::open(&key, &aad, live.sealed, "record")?;
        Ok(Attempt::Read(Record {
            id: *id,
            subject: live.subject,
            category: live.category.to_string(),
            version: live.version,
            created_at: live.created_at,
            updated_at: live.updated_at,
            data,
        }))
    }
}
