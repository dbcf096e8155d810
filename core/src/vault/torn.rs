//! Rotations a power cut tore, repaired at open.
//!
//! A rotation is one store batch (`rotate`), and the store applies batches
//! atomically, except in one case the power-loss harness found: sled writes
//! a value over about 128 KiB to a blob file of its own, and after a power
//! cut its recovery skips a log entry whose blob did not survive ("dangling
//! blob") while keeping the rest of the batch. In the tail after the last
//! durable point (writes nobody was told were durable) that can leave a
//! subject naming one key and some of its records sealed under another.
//! Both keys are still in the custody then (the old one goes only after the
//! batch is durable; the new one was taken before it), and the one the
//! subject does not name looks like a leftover to the repair pass, which
//! would destroy it and the records with it.
//!
//! So before any leftover is destroyed: every live record sealed under a
//! leftover subject key is re-sealed under its subject's key (its day and
//! contents as they are; the operation the cut interrupted was never
//! acknowledged), its day index entry written, and the subject's stored
//! counts dropped (they are rebuilt from the records). Then the leftover
//! references nothing and goes. This reads every record once, and only
//! after an unclean stop that left a subject key unreferenced.

use std::collections::HashMap;

use crate::codec;
use crate::crypto;
use crate::custody::{HeldSlot, KeyKind, KeyRef};
use crate::domains;
use crate::error::{ErrorKind, Result};
use crate::ids::{RecordId, SubjectId};
use crate::layout::{decode_record, Key, Prefix, RecordEntry, SubjectEntry};
use crate::store::Batch;

use super::Engine;

impl Engine {
    /// See the module doc. `leftovers`: the slots nothing refers to.
    pub(super) fn repair_torn_rotations(&self, leftovers: &[HeldSlot]) -> Result<()> {
        let keys: HashMap<u64, KeyRef> = leftovers
            .iter()
            .filter(|h| h.kind == Some(KeyKind::Subject))
            .filter_map(HeldSlot::key)
            .map(|k| (k.key_id, k))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let mut torn: HashMap<SubjectId, Vec<RecordId>> = HashMap::new();
        for item in self.scan(Prefix::Records) {
            let (k, v) = item?;
            if let Ok(RecordEntry::Live(r)) = decode_record(&v) {
                if keys.contains_key(&r.subject_key_id) {
                    torn.entry(r.subject).or_default().push(Key::record_id(&k)?);
                }
            }
        }
        for (subject, records) in torn {
            self.reseal_torn(&subject, &records, &keys)?;
        }
        Ok(())
    }

    /// Re-seals `records` of `subject` under the key the subject names.
    fn reseal_torn(
        &self,
        subject: &SubjectId,
        records: &[RecordId],
        leftovers: &HashMap<u64, KeyRef>,
    ) -> Result<()> {
        let Some(SubjectEntry::Live(live)) = self.subject_entry(subject)? else {
            return Ok(()); // erased since: its records go with it
        };
        let mut batch = Batch::default();
        for id in records {
            let Some(RecordEntry::Live(mut r)) = self.record_entry(id)? else {
                continue;
            };
            let Some(&from) = leftovers.get(&r.subject_key_id) else {
                continue;
            };
            let old = match self.record_key_uncached(subject, from, r.day) {
                Ok(k) => k,
                // Its day key is gone: expired anyway.
                Err(e) if e.kind() == ErrorKind::Expired => continue,
                Err(e) => return Err(e),
            };
            let data = crypto::open(
                &old,
                &domains::record_aad(&self.vault_id, id, &r.view()),
                &r.sealed,
                &format!("record {id}"),
            )?;
            let new = self.record_key_uncached(subject, live.key, r.day)?;
            r.subject_key_id = live.key.key_id;
            r.sealed = crypto::seal(
                &new,
                &domains::record_aad(&self.vault_id, id, &r.view()),
                &data,
            )?;
            if let Some(day) = r.day {
                batch.insert(Key::DayRecord(day, *id).encode(), &[][..]);
            }
            batch.insert(
                Key::Record(*id).encode(),
                codec::encode(&RecordEntry::Live(r))?,
            );
        }
        batch.remove(Key::Counts(*subject).encode());
        self.store.apply(batch)?;
        self.forget_seqs(subject);
        Ok(())
    }
}
