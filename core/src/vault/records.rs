//! Records: put, update and delete, and listing a subject's records.
//!
//! # Crash order
//!
//! `put`: its day-index entry (when it expires), then its record, into the
//! store; a crash between leaves an index entry to nothing, which the purge
//! skips. In `Immediate` mode the put is then made durable with its audit
//! entry by the store's `persist` (for sled, one journal frame, replayed at
//! open if sled lost them; `durability`); a day's first record makes the
//! day's entry durable first (`expiry::ensure_day_key`).
//!
//! `update` and `delete` are subject-key rotations (`rotate`).

use std::collections::HashMap;

use crate::codec;
use crate::crypto;
use crate::decide;
use crate::domains;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{RecordId, SubjectId};
use crate::layout::{
    decode_record, subject_header, GoneReason, Key, LiveRecord, Prefix, RecordEntry, SubjectHeader,
};
use crate::options::Durability;
use crate::retention;
use crate::types::{RecordInfo, MAX_RECORD_BYTES};

use super::audited::{Commit, Op};
use super::counts::COUNTS_EVERY;
use super::rotate::Edit;
use super::{Engine, Vault};

impl Vault {
    /// Seals `data` as a new record of `subject` in `category`.
    pub fn put(&self, subject: &SubjectId, category: &str, data: &[u8]) -> Result<RecordId> {
        let engine = &self.engine;
        engine.audited(Op::Put, Commit::Mode, |call| {
            call.entry.subject = Some(*subject);
            call.entry.detail = Some(engine.category_term(category).into());
            let policy = engine.policy();
            let category = policy.category(category)?;
            check_record_size(data)?;
            let _stripe = engine.stripe(subject);
            let live = engine.live_subject(subject)?;
            let now = engine.now();
            let day = decide::may_store(category, &live.facts, now, engine.threshold())
                .map_err(|refusal| refusal.into_error(subject, category, ""))?
                .day();
            if let Some(d) = day {
                engine.ensure_day_key(d)?;
            }
            let record_key = engine.record_key(subject, live.key, day)?;
            let mut seqs = engine.record_seqs(subject)?;
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
            let journaled = engine.durability == Durability::Immediate;
            // One store write (two with an expiry day): the day index first,
            // so a crash between leaves at most an index entry to nothing,
            // which the purge skips. The record goes in only if its id is
            // free (a clash needs another subject with the same first 8 id
            // bytes and 3 equal random bytes: met by numbering on).
            let stored = (|| loop {
                let id = RecordId::for_subject(subject, seqs.next)?;
                seqs.next += 1;
                record.sealed = crypto::seal(
                    &record_key,
                    &domains::record_aad(&engine.vault_id, &id, &record.view()),
                    data,
                )?;
                if let Some(d) = day {
                    engine.store.insert(&Key::DayRecord(d, id).encode(), &[])?;
                }
                let entry = RecordEntry::Live(record);
                let bytes = codec::encode(&entry)?;
                let key = Key::Record(id).encode();
                if journaled && day.is_none() && engine.store.joins_new_with_persist() {
                    // Written by the commit with the audit entry, in one
                    // step (one round trip to PostgreSQL instead of two).
                    // A clash found then fails the put, which is acked
                    // only after: the id is this subject's next, so only
                    // another subject sharing its id's first 11 bytes
                    // could take it.
                    call.persist_new(key, bytes);
                    if (seqs.next - 1).saturating_sub(seqs.counted) >= COUNTS_EVERY {
                        let _ = engine.store_counts(subject, &mut seqs);
                    }
                    return Ok(id);
                }
                let inserted = engine.store.insert_new(&key, &bytes)?;
                let RecordEntry::Live(back) = entry else {
                    unreachable!("built as Live above")
                };
                record = back;
                if inserted {
                    if journaled {
                        if let Some(d) = day {
                            call.persist(Key::DayRecord(d, id).encode(), Vec::new());
                        }
                        call.persist(key, bytes);
                    }
                    // The put is done; counts that fail to be stored stay
                    // where they were, and the next put tries again.
                    if (seqs.next - 1).saturating_sub(seqs.counted) >= COUNTS_EVERY {
                        let _ = engine.store_counts(subject, &mut seqs);
                    }
                    return Ok(id);
                }
            })();
            match &stored {
                Ok(id) => {
                    engine.cache_seqs(subject, seqs);
                    call.entry.record = Some(*id);
                }
                Err(_) => engine.forget_seqs(subject),
            }
            stored
        })
    }

    /// Rectifies a record: the subject's key is rotated, so the old value is
    /// no longer decryptable anywhere.
    pub fn update(&self, record: &RecordId, data: &[u8]) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::Update, Commit::Mode, |call| {
            call.entry.record = Some(*record);
            check_record_size(data)?;
            engine.rotate_for(record, Edit::Update(data), &call.entry)
        })
    }

    /// Erases one record: the subject's key is rotated.
    pub fn delete(&self, record: &RecordId) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::Delete, Commit::Mode, |call| {
            call.entry.record = Some(*record);
            engine.rotate_for(record, Edit::Delete, &call.entry)
        })
    }

    /// The metadata of a subject's live records, oldest first.
    pub fn records(&self, subject: &SubjectId) -> Result<Vec<RecordInfo>> {
        let engine = &self.engine;
        engine.audited(Op::Records, Commit::No, |call| {
            call.entry.subject = Some(*subject);
            engine.records_unaudited(subject)
        })
    }
}

impl Vault {
    /// What `records` says of one record: its subject, category, size,
    /// times (no data; no purpose needed). `NotFound`, `Erased` or
    /// `Expired` as a read of it would be. Logged as `records`.
    pub fn record_info(&self, id: &RecordId) -> Result<RecordInfo> {
        let engine = &self.engine;
        engine.audited(Op::Records, Commit::No, |call| {
            call.entry.record = Some(*id);
            let live = engine.live_record(id)?;
            call.entry.subject = Some(live.subject);
            engine
                .records_unaudited(&live.subject)?
                .into_iter()
                .find(|r| r.id == *id)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Expired,
                        format!("record {id}: its retention period ended"),
                    )
                })
        })
    }
}

impl Engine {
    /// A subject's live records (expired ones awaiting the purge are left
    /// out), oldest first.
    pub(super) fn records_unaudited(&self, subject: &SubjectId) -> Result<Vec<RecordInfo>> {
        self.live_subject(subject)?;
        let mut out = Vec::new();
        let mut day_live: HashMap<i64, bool> = HashMap::new();
        for item in self.scan(Prefix::RecordsOf(*subject)) {
            let (k, v) = item?;
            let id = Key::record_id(&k)?;
            let RecordEntry::Live(r) = decode_record(&v)? else {
                continue;
            };
            if let Some(day) = r.day {
                let live = match day_live.get(&day) {
                    Some(l) => *l,
                    None => {
                        let l = self.day_is_live(day)?;
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
        out.sort_by_key(|r| (r.created_at, r.id));
        Ok(out)
    }

    pub(super) fn record_entry(&self, id: &RecordId) -> Result<Option<RecordEntry>> {
        match self.store.get(&Key::Record(*id).encode())? {
            None => Ok(None),
            Some(bytes) => decode_record(&bytes)
                .map(Some)
                .map_err(|e| Error::corrupt(format!("record {id}: {}", e.message()))),
        }
    }

    pub(super) fn live_record(&self, id: &RecordId) -> Result<LiveRecord> {
        match self.record_entry(id)? {
            None => Err(self.missing_record_error(id)),
            Some(RecordEntry::Gone(h)) => Err(gone_error(id, h.reason)),
            Some(RecordEntry::Live(r)) => Ok(r),
        }
    }

    /// A record that is not stored: `Erased` when its subject was erased
    /// (an erased subject's records are purged without husks: its tombstone
    /// answers for them), else `NotFound`.
    pub(super) fn missing_record_error(&self, id: &RecordId) -> Error {
        if let Some(Ok((_, v))) = self.scan(Prefix::subject_of(id)).next() {
            if let Ok(SubjectHeader::Erased) = subject_header(&v) {
                return Error::new(
                    ErrorKind::Erased,
                    format!("record {id} was erased with its subject"),
                );
            }
        }
        Error::not_found(format!("no record {id}"))
    }
}

/// The error for a record whose key is gone.
pub(super) fn gone_error(id: &RecordId, reason: GoneReason) -> Error {
    match reason {
        GoneReason::Erased => Error::new(ErrorKind::Erased, format!("record {id} was erased")),
        GoneReason::Expired => Error::new(ErrorKind::Expired, format!("record {id} expired")),
    }
}

pub(super) fn check_record_size(data: &[u8]) -> Result<()> {
    if data.len() > MAX_RECORD_BYTES {
        return Err(Error::invalid(format!(
            "a record may hold at most {MAX_RECORD_BYTES} bytes, not {}",
            data.len()
        )));
    }
    Ok(())
}
