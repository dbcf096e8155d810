//! `scan(category, purpose)`: every live record of a category readable for
//! a purpose, lazily, through the one read path (`read`).
//!
//! It walks the records in id order (no category index: one fewer write
//! per put), decoding each in place so other categories cost no copy, and
//! logs one disclosure per subject (its records are consecutive): "these
//! records of this category were read for this purpose".

use std::sync::Arc;

use crate::decide;
use crate::error::{ErrorKind, Result};
use crate::ids::SubjectId;
use crate::layout::{decode_record_view, Key, Prefix, RecordEntryView};
use crate::policy::Policy;
use crate::store::{Entries, Value};
use crate::types::Record;

use super::super::audited::{Commit, Op};
use super::super::read::Reader;
use super::super::{Engine, Vault};

impl Vault {
    /// Every live record of `category` readable for `purpose`, as a lazy
    /// iterator: records of erased, expired, restricted (unless the purpose
    /// is `legal_claims`) and opted-out (for a sale purpose) subjects, and of
    /// consent-based categories without consent for the purpose, are
    /// skipped. It walks the records in id order, holding a few at a time,
    /// and logs in the audit chain, once per subject, that its records of
    /// the category were read for the purpose.
    ///
    /// `InvalidArgument` for an unknown category; `PurposeDenied` for a
    /// purpose the category does not allow.
    pub fn scan(&self, category: &str, purpose: &str) -> Result<Scan> {
        let engine = &self.engine;
        engine.audited(Op::Scan, Commit::No, |call| {
            call.entry.detail = Some(engine.category_term(category).into());
            call.entry.purpose = Some(engine.purpose_term(purpose));
            let policy = engine.policy();
            let cat = policy.category(category)?;
            if !cat.allows(purpose) {
                return Err(decide::not_a_purpose_of(cat, purpose));
            }
            if decide::purpose_allowed(&policy, cat, purpose, engine.privileged()).is_err() {
                return Err(decide::unprivileged(purpose));
            }
            Ok(Scan {
                engine: self.engine.clone(),
                entries: engine.scan(Prefix::Records),
                category: category.to_string(),
                purpose: purpose.to_string(),
                policy: policy.clone(),
                last_disclosed: None,
            })
        })
    }
}

/// An iterator over the records of a category readable for a purpose; see
/// [`Vault::scan`]. Owns a handle on the vault, so it may outlive the
/// borrow it came from (and cross into Python).
pub struct Scan {
    engine: Arc<Engine>,
    entries: Entries,
    category: String,
    purpose: String,
    policy: Arc<Policy>,
    last_disclosed: Option<SubjectId>,
}

impl std::fmt::Debug for Scan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("category", &self.category)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

impl Scan {
    /// The record stored at `k`, or `None` to skip it.
    fn try_record(&mut self, k: &[u8], v: Value) -> Result<Option<Record>> {
        // Decoded in place: records of other categories cost no copy.
        let live = match decode_record_view(&v)? {
            RecordEntryView::Live(r) if r.category == self.category => r,
            _ => return Ok(None),
        };
        let id = Key::record_id(k)?;
        let record = match self.engine.read_record(
            &id,
            Some(live),
            &self.policy,
            Reader::Purpose(&self.purpose),
        ) {
            Ok(record) => record,
            // Erased, expired, gone meanwhile, or not readable for the
            // purpose: skipped.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Erased
                        | ErrorKind::Expired
                        | ErrorKind::NotFound
                        | ErrorKind::Restricted
                        | ErrorKind::PurposeDenied
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        // One disclosure entry per subject per scan: a subject's records
        // are consecutive (their ids start with its id), so this is the
        // first of a run. Logging every record would double a scan's cost
        // for no more information than "this subject's records of this
        // category were read for this purpose, then".
        if self.last_disclosed != Some(record.subject) {
            let mut entry = self.engine.draft(Op::ScanSubject);
            entry.subject = Some(record.subject);
            entry.purpose = Some(&self.purpose);
            entry.detail = Some(self.category.as_str().into());
            self.engine.log(entry)?;
            self.last_disclosed = Some(record.subject);
        }
        Ok(Some(record))
    }
}

impl Iterator for Scan {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            let (k, v) = match self.entries.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e)),
            };
            match self.try_record(&k, v) {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
