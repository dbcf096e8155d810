//! Erasure requests (`erase_subject`) and their signed receipts.
//!
//! # Crash order
//!
//! First the erasure's audit entry, outcome `begun`, is made durable: the
//! log names every erasure whose key a crash may have destroyed. When
//! nothing is kept: the subject key is destroyed (durably: that is the
//! erasure), then one durable batch replaces the subject by a tombstone,
//! removes its blind-index entries and queues its records for the purge. A
//! crash between leaves a subject pointing at a destroyed key, which the
//! repair pass at open finishes erasing. When something is kept: a rotation
//! (`rotate`: the erased records become husks, the identifiers go) and
//! then the old key's destruction.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::audit::Draft;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::SubjectId;
use crate::layout::{Key, LiveSubject, SubjectEntry};
use crate::policy::{self, OnErasureRequest};
use crate::receipt;
use crate::retention;
use crate::store::Batch;
use crate::types::{CategoryCount, ErasureReceipt, RetainedRecords};

use super::audited::{Commit, Op};
use super::ledger::Erasure;
use super::rotate::Outcome;
use super::{Engine, Vault};
use crate::decide::Fate;

impl Vault {
    /// Answers an erasure request. `erasure_requested` is recorded; then,
    /// per category: one whose rules name `erasure_requested` follows them;
    /// one with `on_erasure_request = "retain"` is kept until its retention
    /// ends; every other is erased at once. What is kept is restricted to
    /// `legal_claims` and the subject's identifiers are removed.
    ///
    /// When nothing is kept, the subject key is destroyed (durably) before
    /// this returns, then its metadata and blind-index entries are removed.
    /// When something is kept, the subject key is rotated: the kept records
    /// are re-sealed under a fresh key and the old one destroyed, so the
    /// erased records are unreadable in every copy of `data/`.
    ///
    /// Refused with `LegalHold` while the subject is under legal hold. The
    /// receipt is signed with the vault's receipt key and names the
    /// erasure's audit sequence number.
    pub fn erase_subject(&self, subject: &SubjectId) -> Result<ErasureReceipt> {
        let engine = &self.engine;
        let (mut receipt, seq) = engine.audited_seq(Op::EraseSubject, Commit::Always, |call| {
            call.entry.subject = Some(*subject);
            let receipt = engine.erase(subject, &call.entry, None)?;
            let retained: u64 = receipt.retained.iter().map(|r| r.records).sum();
            call.entry.detail =
                Some(format!("erased {} retained {}", receipt.records_erased(), retained).into());
            Ok(receipt)
        })?;
        receipt.audit_seq = seq;
        engine.sign(&mut receipt)?;
        // The dead ciphertext goes in the background.
        engine.kick_purge();
        Ok(receipt)
    }

    /// The public half of the key that signs this vault's erasure receipts
    /// (Ed25519, 64 hex characters): give it to auditors.
    pub fn receipt_public_key(&self) -> Result<String> {
        receipt::public_key_hex(&self.engine.receipt_key)
    }
}

impl Engine {
    /// The erasure itself, unsigned (see [`Vault::erase_subject`]).
    /// `reapplied`: a restore re-applying an erasure its ledger holds, made
    /// at that time: a legal hold (which the erasure found lifted, then) is
    /// not in its way, and it writes no ledger entry of its own.
    pub(super) fn erase(
        &self,
        subject: &SubjectId,
        entry: &Draft<'_>,
        reapplied: Option<i64>,
    ) -> Result<ErasureReceipt> {
        let _stripe = self.stripe(subject);
        let mut live = self.live_subject(subject)?;
        if live.facts.legal_hold && reapplied.is_none() {
            return Err(Error::new(
                ErrorKind::LegalHold,
                format!(
                    "subject {subject} is under legal hold: erasure is refused until it is lifted"
                ),
            ));
        }
        let now = reapplied.unwrap_or_else(|| self.now());
        live.facts
            .events
            .entry(policy::ERASURE_REQUESTED.to_string())
            .or_insert(now);
        // What categories the subject holds, how many of each: its stored
        // counts and the few records put since. Only when one of them may be
        // kept on an erasure request are the records decided one by one
        // (and the subject rotated); otherwise the erasure is the key.
        let counts = self.erasable_counts(subject)?;
        let policy = self.policy();
        let maybe_kept = counts.keys().any(|c| {
            policy.category(c).is_ok_and(|cat| {
                cat.follows_erasure_request() || cat.on_erasure_request == OnErasureRequest::Retain
            })
        });
        let mut receipt = ErasureReceipt {
            receipt_version: 1,
            vault: hex::encode(self.vault_id),
            subject: subject.to_string(),
            erased_at: now,
            erased: Vec::new(),
            retained: Vec::new(),
            identifiers_removed: 0,
            subject_key_destroyed: false,
            audit_seq: 0,
            complete_by: self
                .keys
                .custody
                .epoch()
                .map(|e| self.epoch_ends_at(e.begun_at)),
            public_key: String::new(),
            signature: String::new(),
        };
        // In the ledger and the log, durably, before any key goes.
        self.ledger_durably(&Erasure {
            op: entry.op,
            subject: Some(*subject),
            erasure_requested: true,
            ..Erasure::default()
        })?;
        self.log_begun(entry)?;
        let keeps_some = maybe_kept
            && self
                .decide_all(subject, &live, self.threshold())?
                .iter()
                .any(|d| matches!(d.fate, Fate::Keep(_)));
        let outcome = if keeps_some {
            self.rotate(subject, live, None, None)?
        } else {
            Outcome::default()
        };
        if outcome.kept.is_empty() {
            // Nothing to keep: the erasure is the key's destruction. (A
            // rotation above that kept nothing ends here too.)
            let live = self.live_subject(subject)?;
            let mut counts = if keeps_some {
                self.erasable_counts(subject)?
            } else {
                counts
            };
            for (category, n) in outcome.erased {
                *counts.entry(category).or_default() += n;
            }
            self.keys.destroy_subject_key(live.key)?;
            self.finish_erasure(subject, &live, now)?;
            receipt.identifiers_removed = outcome.identifiers_removed + live.blind.len();
            receipt.subject_key_destroyed = true;
            receipt.erased = category_counts(counts);
            return Ok(receipt);
        }
        receipt.retained = self.retained(&outcome)?;
        receipt.erased = category_counts(outcome.erased);
        receipt.identifiers_removed = outcome.identifiers_removed;
        Ok(receipt)
    }

    /// What an erasure kept, by category, with why and until when.
    fn retained(&self, outcome: &Outcome) -> Result<Vec<RetainedRecords>> {
        let policy = self.policy();
        let mut retained: BTreeMap<String, RetainedRecords> = BTreeMap::new();
        for (category, expiry) in &outcome.kept {
            let cat = policy.category(category)?;
            let rule = cat
                .retention
                .iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join("; otherwise ");
            let why = if cat.follows_erasure_request() {
                "its retention rule names erasure_requested"
            } else {
                "on_erasure_request = \"retain\""
            };
            let until = match expiry {
                retention::Expiry::At(t) => Some(retention::day_end(retention::expiry_day(*t))),
                retention::Expiry::Open => None,
            };
            let entry = retained
                .entry(category.clone())
                .or_insert_with(|| RetainedRecords {
                    category: category.clone(),
                    records: 0,
                    reason: if rule.is_empty() {
                        format!("{why}; no retention period: kept until erased, restricted to legal_claims")
                    } else {
                        format!("{why}; kept {rule}, restricted to legal_claims")
                    },
                    until,
                });
            entry.records += 1;
            // The category is kept until its last record goes; open wins.
            entry.until = match (entry.until, until) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        Ok(retained.into_values().collect())
    }

    /// After the key is gone: the tombstone, the blind index entries
    /// removed, and the subject queued for the purge of its dead records;
    /// one durable batch, whatever the number of records.
    pub(super) fn finish_erasure(
        &self,
        subject: &SubjectId,
        live: &LiveSubject,
        now: i64,
    ) -> Result<()> {
        self.finish_erasure_of(subject, &live.blind, now)
    }

    /// [`finish_erasure`](Self::finish_erasure) from the blind-index HMACs
    /// alone (the repair pass has no facts to open).
    pub(super) fn finish_erasure_of(
        &self,
        subject: &SubjectId,
        blind: &[[u8; 32]],
        now: i64,
    ) -> Result<()> {
        let mut batch = Batch::default();
        self.put_subject(
            &mut batch,
            subject,
            &SubjectEntry::Erased { erased_at: now },
        )?;
        for mac in blind {
            batch.remove(Key::Blind(*mac).encode());
        }
        batch.insert(Key::ErasedPending(*subject).encode(), &[][..]);
        batch.remove(Key::Counts(*subject).encode());
        self.store.apply(batch)?;
        self.forget_seqs(subject);
        self.subjects_changed();
        self.make_durable()
    }

    /// Signs a receipt with the vault's receipt key.
    fn sign(&self, receipt: &mut ErasureReceipt) -> Result<()> {
        let value = serde_json::to_value(&*receipt)
            .map_err(|e| Error::internal(format!("serializing a receipt: {e}")))?;
        let signed = receipt::sign(&self.receipt_key, value)?;
        let field = |name: &str| {
            signed
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Error::internal("a signed receipt lacks its signature"))
        };
        receipt.public_key = field("public_key")?;
        receipt.signature = field("signature")?;
        Ok(())
    }
}

fn category_counts(counts: BTreeMap<String, u64>) -> Vec<CategoryCount> {
    counts
        .into_iter()
        .map(|(category, records)| CategoryCount { category, records })
        .collect()
}
