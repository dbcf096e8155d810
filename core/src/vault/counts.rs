//! Record numbers and stored record counts (`layout::SubjectCounts`): what
//! lets an erasure report its counts without a pass over the records.
//!
//! Every `COUNTS_EVERY` puts of a subject its counts are brought up to date,
//! after the record is written (the store recovers a prefix of its writes,
//! so stored counts never include a record that is not there). Rotations
//! rewrite the counts in their batch; an erasure removes them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use rustc_hash::FxHashMap;

use crate::codec;
use crate::error::Result;
use crate::ids::SubjectId;
use crate::layout::{decode_record_view, Key, Prefix, RecordEntryView, SubjectCounts};

use super::{lock, Engine};

/// A subject's stored counts are brought up to date every this many puts:
/// an erasure reads at most this many records.
pub(super) const COUNTS_EVERY: u64 = 64;
const SEQ_CACHE_MAX: usize = 1 << 16;

/// A subject's next record number, and the number its stored counts go to.
#[derive(Clone, Copy, Debug)]
pub(super) struct RecordSeqs {
    pub next: u64,
    pub counted: u64,
}

/// Record numbers by subject, read and written only under the subject's
/// stripe.
#[derive(Default)]
pub(super) struct SeqCache(Mutex<FxHashMap<SubjectId, RecordSeqs>>);

impl Engine {
    /// A subject's live records by category and day: its stored counts,
    /// and the records put since (numbered past them: one short range
    /// scan). `through` is then the subject's last record number. The
    /// caller holds the subject's stripe.
    pub(super) fn subject_counts(&self, subject: &SubjectId) -> Result<SubjectCounts> {
        let mut counts = match self.store.get(&Key::Counts(*subject).encode())? {
            Some(v) => codec::decode(&v, "record counts")?,
            None => SubjectCounts::default(),
        };
        let prefix = Prefix::RecordsOf(*subject).encode();
        let from = Prefix::records_from(subject, counts.through + 1);
        for item in self.store.scan(&prefix, &from) {
            let (k, v) = item?;
            counts.through = counts.through.max(Key::record_id(&k)?.seq());
            counts.count_entry(subject, &v);
        }
        Ok(counts)
    }

    /// The subject's record numbers: cached, else from its last record and
    /// its stored counts. The caller holds the subject's stripe.
    pub(super) fn record_seqs(&self, subject: &SubjectId) -> Result<RecordSeqs> {
        if let Some(s) = lock(&self.seqs.0).get(subject) {
            return Ok(*s);
        }
        let last = match self.store.last(&Prefix::RecordsOf(*subject).encode())? {
            Some((k, _)) => Key::record_id(&k)?.seq(),
            None => 0,
        };
        let counted = match self.store.get(&Key::Counts(*subject).encode())? {
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

    pub(super) fn cache_seqs(&self, subject: &SubjectId, seqs: RecordSeqs) {
        let mut cache = lock(&self.seqs.0);
        if cache.len() >= SEQ_CACHE_MAX {
            cache.clear();
        }
        cache.insert(*subject, seqs);
    }

    /// After a failed write: the numbers are read afresh next time.
    pub(super) fn forget_seqs(&self, subject: &SubjectId) {
        lock(&self.seqs.0).remove(subject);
    }

    /// Brings the subject's stored counts up to its last record (after
    /// `COUNTS_EVERY` puts). The caller holds the subject's stripe.
    pub(super) fn store_counts(&self, subject: &SubjectId, seqs: &mut RecordSeqs) -> Result<()> {
        let mut counts = self.subject_counts(subject)?;
        counts.drop_expired(self.expired_through.load(Ordering::Relaxed));
        self.store
            .insert(&Key::Counts(*subject).encode(), &codec::encode(&counts)?)?;
        seqs.counted = counts.through;
        Ok(())
    }

    /// Counts a subject's live records one by one.
    #[cfg(feature = "testing")]
    pub(super) fn counts_by_scan(&self, subject: &SubjectId) -> Result<SubjectCounts> {
        let mut counts = SubjectCounts::default();
        for item in self.scan(Prefix::RecordsOf(*subject)) {
            let (_, v) = item?;
            counts.count_entry(subject, &v);
        }
        Ok(counts)
    }

    /// What erasing `subject` now erases, by category.
    pub(super) fn erasable_counts(&self, subject: &SubjectId) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .subject_counts(subject)?
            .live_by_category(self.expired_through.load(Ordering::Relaxed)))
    }

    /// Whether any live record of `subject` is left.
    pub(super) fn has_live_records(&self, subject: &SubjectId) -> Result<bool> {
        for item in self.scan(Prefix::RecordsOf(*subject)) {
            let (_, v) = item?;
            if matches!(decode_record_view(&v), Ok(RecordEntryView::Live(_))) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(feature = "testing")]
impl super::Vault {
    /// Checks every live subject's stored record counts (what erasure
    /// receipts report) against its records, one by one; returns how many
    /// subjects it checked, or `Corrupt` naming the first that differs.
    /// For tests and the crash harness (feature `testing`): it reads every
    /// record.
    pub fn check_record_counts(&self) -> Result<u64> {
        let engine = &self.engine;
        let mut checked = 0;
        for subject in engine.subject_ids_under(Prefix::Subjects)? {
            let _stripe = engine.stripe(&subject);
            match engine.live_subject(&subject) {
                Ok(_) => {}
                Err(e) if e.kind() == crate::ErrorKind::Erased => continue,
                Err(e) => return Err(e),
            }
            let through = engine.expired_through.load(Ordering::Relaxed);
            let counted = engine.subject_counts(&subject)?.live_by_category(through);
            let scanned = engine.counts_by_scan(&subject)?.live_by_category(through);
            if counted != scanned {
                return Err(crate::error::Error::corrupt(format!(
                    "subject {subject}: records counted {counted:?}, but {scanned:?} are there"
                )));
            }
            checked += 1;
        }
        Ok(checked)
    }
}
