//! Subject-key rotation and re-evaluation: how an update, a delete, a
//! changed fact, an erasure request that keeps something, or a policy
//! change re-seals a subject under a fresh key, so that no old value or old
//! expiry day stays decryptable anywhere.
//!
//! # Crash order
//!
//! A fresh key (already durable in the custody); one batch re-seals every
//! record of the subject (and its identifiers) under it, writes the husks of
//! what it erased or expired, and points the subject at it; that batch is
//! made durable; only then is the old key destroyed. A crash before the
//! batch leaves the new key unreferenced; after it, the old one: the repair
//! pass at open destroys either. Once the batch is written the new key is
//! never destroyed: a durable point that fails there leaves the old key for
//! the next one.

use std::collections::{BTreeMap, HashMap};

use crate::audit::Draft;
use crate::codec;
use crate::crypto::{self, Plaintext, SecretKey};
use crate::custody::KeyRef;
use crate::decide::{self, Fate};
use crate::domains;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{RecordId, SubjectId};
use crate::layout::{
    decode_record, GoneReason, Key, LiveRecord, LiveSubject, Prefix, RecordEntry, RecordHusk,
    SubjectCounts, SubjectEntry,
};
use crate::retention;
use crate::store::Batch;

use super::ledger::Erasure;
use super::{lock, Engine};

/// What an update or a delete does to its record during a rotation.
pub(super) enum Edit<'a> {
    Update(&'a [u8]),
    Delete,
}

/// A live record and what re-evaluation decides for it.
pub(super) struct Decided {
    pub record: LiveRecord,
    pub fate: Fate,
    pub expiry: retention::Expiry,
}

/// What a rotation or re-evaluation did.
#[derive(Default, Debug)]
pub(super) struct Outcome {
    pub erased: BTreeMap<String, u64>,
    pub expired: u64,
    /// The records kept, by category, with their expiry.
    pub kept: Vec<(String, retention::Expiry)>,
    pub identifiers_removed: usize,
    /// The records made unreadable, with how (for the erasure ledger).
    pub gone: Vec<(RecordId, &'static str)>,
}

impl Engine {
    /// `update` and `delete`: a rotation with the edit applied.
    pub(super) fn rotate_for(
        &self,
        record: &RecordId,
        edit: Edit,
        intent: &Draft<'_>,
    ) -> Result<()> {
        let subject = self.live_record(record)?.subject;
        let _stripe = self.stripe(&subject);
        // Re-read under the stripe: the record may have been deleted meanwhile.
        self.live_record(record)?;
        let live = self.live_subject(&subject)?;
        if live.facts.legal_hold && matches!(edit, Edit::Delete) {
            return Err(Error::new(
                ErrorKind::LegalHold,
                format!("subject {subject} is under legal hold: record {record} cannot be deleted"),
            ));
        }
        self.rotate(&subject, live, Some((record, edit)), Some(intent))
            .map(|_| ())
    }

    /// What the policy says should happen now to one record of `live`.
    fn fate_of(
        &self,
        live: &LiveSubject,
        id: &RecordId,
        r: &LiveRecord,
        threshold: i64,
    ) -> Result<(Fate, retention::Expiry)> {
        let policy = self.policy();
        let category = policy.category(&r.category).map_err(|_| {
            Error::corrupt(format!(
                "record {id} names category {:?}, which the policy lacks",
                r.category
            ))
        })?;
        Ok(decide::fate(category, &live.facts, r.created_at, threshold))
    }

    /// The subject's live records, each with what `decide::fate` says.
    pub(super) fn decide_all(
        &self,
        subject: &SubjectId,
        live: &LiveSubject,
        threshold: i64,
    ) -> Result<Vec<Decided>> {
        let mut out = Vec::new();
        for item in self.scan(Prefix::RecordsOf(*subject)) {
            let (k, v) = item?;
            let id = Key::record_id(&k)?;
            if let RecordEntry::Live(r) = decode_record(&v)? {
                let (fate, expiry) = self.fate_of(live, &id, &r, threshold)?;
                out.push(Decided {
                    record: r,
                    fate,
                    expiry,
                });
            }
        }
        Ok(out)
    }

    /// Stores a subject's new facts and carries out what they change: if
    /// every record keeps its day, only the subject entry is written;
    /// otherwise the subject is rotated. The caller commits and holds the
    /// subject's stripe.
    pub(super) fn reevaluate(
        &self,
        subject: &SubjectId,
        live: LiveSubject,
        intent: &Draft<'_>,
    ) -> Result<Outcome> {
        let decided = self.decide_all(subject, &live, self.threshold())?;
        // A subject that asked for erasure must also lose its identifiers.
        let identifiers_stay = live.facts.erasure_requested().is_none() || live.blind.is_empty();
        let unchanged =
            identifiers_stay && decided.iter().all(|d| d.fate == Fate::Keep(d.record.day));
        if !unchanged {
            return self.rotate(subject, live, None, Some(intent));
        }
        let mut batch = Batch::default();
        self.put_subject(&mut batch, subject, &SubjectEntry::Live(live.clone()))?;
        self.store.apply(batch)?;
        self.subjects_changed();
        let mut outcome = Outcome::default();
        for d in decided {
            outcome.kept.push((d.record.category, d.expiry));
        }
        Ok(outcome)
    }

    /// Re-seals everything of a subject under a fresh subject key, then
    /// destroys the old key (see the module doc). `live` carries the
    /// subject's new facts: each record's fate is decided afresh from them,
    /// so a record may move to another day, be erased (consent withdrawn,
    /// erasure request) or expire (past due) here. A subject that asked for
    /// erasure loses its identifiers here too. The caller holds the
    /// subject's stripe.
    pub(super) fn rotate(
        &self,
        subject: &SubjectId,
        mut live: LiveSubject,
        target: Option<(&RecordId, Edit)>,
        intent: Option<&Draft<'_>>,
    ) -> Result<Outcome> {
        let old_key = live.key;
        let mut idents = self.open_identifiers(
            subject,
            &self.identifiers_key(subject, old_key)?,
            &live.identifiers,
        )?;
        let new_key = self.keys.take_subject_key()?;
        let now = self.now();
        let threshold = self.threshold();
        let mut outcome = Outcome::default();
        let batch = match self.rotation_batch(
            subject,
            &mut live,
            &mut idents,
            (old_key, new_key),
            target,
            (now, threshold),
            &mut outcome,
        ) {
            Ok(batch) => batch,
            Err(e) => {
                self.forget_seqs(subject);
                let _ = self.keys.custody.destroy(&[new_key]);
                return Err(e);
            }
        };
        let erasure = Erasure {
            op: intent.map_or("rotation", |d| d.op),
            subject: Some(*subject),
            records: outcome.gone.clone(),
            ..Erasure::default()
        };
        if let Err(e) = self.apply_with_ledger(batch, &erasure) {
            // A failed batch wrote nothing (batches are atomic): the new key
            // refers to nothing.
            self.forget_seqs(subject);
            let _ = self.keys.custody.destroy(&[new_key]);
            return Err(e);
        }
        self.forget_seqs(subject);
        self.subjects_changed();
        // IMPORTANT: the new state must be durable before the old key goes,
        // or a crash would leave records under a destroyed key. And from
        // here on the subject may refer to the new key (the store holds the
        // batch, durably or soon): it is never destroyed on this path. If
        // the durable point fails, the old key waits for the next one (or
        // for the repair pass at the next open).
        if let Some(entry) = intent {
            // The operation's `begun` entry, durable with the batch: a
            // crash after the old key is gone still leaves it in the log.
            let mut begun = entry.clone();
            begun.outcome = "begun";
            if let Err(e) = self.audit.append(&begun, self.actor().as_deref()) {
                lock(&self.deferred_destroy).push(old_key);
                return Err(e);
            }
        }
        if let Err(e) = self.make_durable() {
            lock(&self.deferred_destroy).push(old_key);
            return Err(e);
        }
        if let Err(e) = self.keys.destroy_subject_key(old_key) {
            // Durable, and the old key is not referenced: it goes at the
            // next durable point (or the repair pass).
            lock(&self.deferred_destroy).push(old_key);
            return Err(e);
        }
        Ok(outcome)
    }

    /// The batch of a rotation: every record re-sealed, erased or expired,
    /// the identifiers re-sealed (or dropped), the counts, the subject.
    #[allow(clippy::too_many_arguments)]
    fn rotation_batch(
        &self,
        subject: &SubjectId,
        live: &mut LiveSubject,
        idents: &mut Vec<(String, String)>,
        (old_key, new_key): (KeyRef, KeyRef),
        target: Option<(&RecordId, Edit)>,
        (now, threshold): (i64, i64),
        outcome: &mut Outcome,
    ) -> Result<Batch> {
        let mut batch = Batch::default();
        let mut counts = SubjectCounts::default();
        // Record keys by day, old and new, derived once per rotation.
        let mut old_keys: HashMap<Option<i64>, Option<SecretKey>> = HashMap::new();
        let mut new_keys: HashMap<Option<i64>, SecretKey> = HashMap::new();
        if live.facts.erasure_requested().is_some() {
            for mac in live.blind.drain(..) {
                batch.remove(Key::Blind(mac).encode());
                outcome.identifiers_removed += 1;
            }
            idents.clear();
        }
        for item in self.scan(Prefix::RecordsOf(*subject)) {
            let (k, v) = item?;
            let id = Key::record_id(&k)?;
            counts.through = counts.through.max(id.seq());
            let RecordEntry::Live(mut r) = decode_record(&v)? else {
                continue; // a husk
            };
            if r.subject != *subject || r.subject_key_id != old_key.key_id {
                return Err(Error::corrupt(format!(
                    "record {id} is sealed under another key than its subject's"
                )));
            }
            if let Some(old_day) = r.day {
                batch.remove(Key::DayRecord(old_day, id).encode());
            }
            let edit = target.as_ref().filter(|(t, _)| **t == id).map(|(_, e)| e);
            let (mut fate, expiry) = match edit {
                Some(Edit::Delete) => (Fate::Erase, retention::Expiry::Open),
                _ => self.fate_of(live, &id, &r, threshold)?,
            };
            // A record whose day key is already gone has expired, whatever
            // it would be decided now.
            let old_record_key = match old_keys.get(&r.day) {
                Some(k) => k.clone(),
                None => {
                    let k = match self.record_key_uncached(subject, old_key, r.day) {
                        Ok(key) => Some(key),
                        Err(e) if e.kind() == ErrorKind::Expired => None,
                        Err(e) => return Err(e),
                    };
                    old_keys.insert(r.day, k.clone());
                    k
                }
            };
            if old_record_key.is_none() {
                fate = Fate::Expire;
            }
            let (Fate::Keep(day), Some(old_record_key)) = (fate, old_record_key) else {
                let reason = if fate == Fate::Erase {
                    *outcome.erased.entry(r.category.clone()).or_default() += 1;
                    let how = match edit {
                        Some(Edit::Delete) => "deleted",
                        _ => "erased",
                    };
                    outcome.gone.push((id, how));
                    GoneReason::Erased
                } else {
                    outcome.expired += 1;
                    outcome.gone.push((id, "expired"));
                    GoneReason::Expired
                };
                let husk = RecordEntry::Gone(RecordHusk {
                    subject: *subject,
                    category: r.category,
                    gone_at: now,
                    reason,
                });
                batch.insert(Key::Record(id).encode(), codec::encode(&husk)?);
                continue;
            };
            let mut data = crypto::open(
                &old_record_key,
                &domains::record_aad(&self.vault_id, &id, &r.view()),
                &r.sealed,
                &format!("record {id}"),
            )?;
            if let Some(Edit::Update(new_data)) = edit {
                outcome.gone.push((id, "rectified"));
                data = Plaintext::new(new_data.to_vec());
                r.version += 1;
                r.updated_at = now;
            }
            r.day = day;
            if let Some(day) = r.day {
                self.ensure_day_key(day)?;
                batch.insert(Key::DayRecord(day, id).encode(), &[][..]);
            }
            let new_record_key = match new_keys.get(&r.day) {
                Some(k) => k.clone(),
                None => {
                    let k = self.record_key_uncached(subject, new_key, r.day)?;
                    new_keys.insert(r.day, k.clone());
                    k
                }
            };
            r.subject_key_id = new_key.key_id;
            r.sealed = crypto::seal(
                &new_record_key,
                &domains::record_aad(&self.vault_id, &id, &r.view()),
                &data,
            )?;
            outcome.kept.push((r.category.clone(), expiry));
            counts.add(&r.category, r.day);
            batch.insert(
                Key::Record(id).encode(),
                codec::encode(&RecordEntry::Live(r))?,
            );
        }
        live.key = new_key;
        live.identifiers =
            self.seal_identifiers(subject, &self.identifiers_key(subject, new_key)?, idents)?;
        self.put_subject(&mut batch, subject, &SubjectEntry::Live(live.clone()))?;
        batch.insert(Key::Counts(*subject).encode(), codec::encode(&counts)?);
        Ok(batch)
    }
}
