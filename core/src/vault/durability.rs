//! Durable points and commits, and the reconciliation at open of what the
//! store's `persist` made durable (for the sled store, its put journal).
//!
//! With `Durability::Immediate` every mutating call ends with a durable
//! point: [`Engine::make_durable`], which writes the buffered audit entries
//! into the store and then calls the store's `sync`; a `put` ends with the
//! store's `persist` of its inserts and its audit entry instead (one journal
//! frame for sled). `Batched` leaves it to `flush()` and a background tick
//! (about a second); erasure, consent withdrawal and key destruction are
//! durable in either mode.
//!
//! # Replay at open
//!
//! The store hands back the persisted puts it may lack (past its mark). For
//! each: its inserts go in only where the key is absent (a record a later
//! erasure turned into a husk stays a husk), unless its subject was erased
//! since (whose dead records the purge may have dropped already); then the
//! audit entries, in their original order, unless the chain recovered by
//! the store already reaches them. A `JournalReplay` marker (`'j'`, written
//! before the first recovered audit entry) lets a replay cut short by a
//! crash know how many of its entries the chain already took, so none is
//! logged twice. Then a durable point marks them done.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use crate::audit::AuditEntry;
use crate::codec;
use crate::error::Result;
use crate::layout::{JournalReplay, Key, KeyBytes, RecordEntry, SubjectEntry};
use crate::options::Durability;
use crate::store::{Recovered, RecoveredCall};

use super::{lock, Engine, Vault};

impl Vault {
    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.engine.make_durable()
    }

    /// Flushes and closes. Dropping the vault does the same, ignoring errors.
    pub fn close(self) -> Result<()> {
        self.engine.make_durable()
    }
}

impl Engine {
    /// The durable point: buffered audit entries go into the store, the
    /// store counts one more durable point (`Key::StoreMark`), then makes
    /// everything durable; the custody then notes how far the store is
    /// (see `custody::marks`), and keys whose destruction waited for this
    /// point are destroyed.
    pub(super) fn make_durable(&self) -> Result<()> {
        self.background.dirty.store(false, Ordering::Relaxed);
        // Taken before the sync: a key queued after this point may belong
        // to a batch this sync does not cover, and waits for the next one.
        let deferred: Vec<_> = lock(&self.deferred_destroy).drain(..).collect();
        let requeue = |keys: &[crate::custody::KeyRef]| {
            lock(&self.deferred_destroy).extend_from_slice(keys);
        };
        let mark = (|| {
            // Under the lock, so the stored count only rises.
            let mut points = lock(&self.durable_points);
            *points += 1;
            self.store
                .insert(&Key::StoreMark.encode(), &codec::encode(&*points)?)?;
            Ok(*points)
        })();
        let mark = match mark {
            Ok(mark) => mark,
            Err(e) => {
                requeue(&deferred);
                return Err(e);
            }
        };
        if let Err(e) = self.store.sync(&|| self.audit.write()) {
            requeue(&deferred);
            return Err(e);
        }
        lock(&self.background.flush_failed).take();
        if let Err(e) = self.keys.custody.note_store_mark(mark) {
            requeue(&deferred);
            return Err(e);
        }
        for (i, key) in deferred.iter().enumerate() {
            if let Err(e) = self.keys.destroy_subject_key(*key) {
                requeue(&deferred[i..]);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The end of a mutating call: durable now, or soon, by the mode.
    pub(super) fn commit(&self) -> Result<()> {
        match self.durability {
            Durability::Immediate => self.make_durable(),
            Durability::Batched => {
                self.background.dirty.store(true, Ordering::Relaxed);
                match lock(&self.background.flush_failed).as_deref() {
                    // This write is in the store, as are the ones before it,
                    // but none is durable until a durable point succeeds.
                    Some(why) => Err(crate::error::Error::new(
                        crate::error::ErrorKind::Io,
                        format!("the background flush failed, so recent writes are not durable (call flush to retry): {why}"),
                    )),
                    None => Ok(()),
                }
            }
        }
    }

    /// Makes a put's inserts durable with its audit entry (`note`).
    pub(super) fn persist(&self, inserts: &[(KeyBytes, Vec<u8>)], note: &[u8]) -> Result<()> {
        let inserts: Vec<(&[u8], &[u8])> = inserts.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        self.store.persist(&inserts, note, &|| self.audit.write())
    }

    /// Whether the subject of a persisted put still stands (not erased).
    fn call_subject_is_live(&self, call: &RecoveredCall) -> Result<bool> {
        for (key, value) in &call.inserts {
            if let Ok(Key::Record(_)) = Key::decode(key) {
                let RecordEntry::Live(record) = codec::decode(value, "journaled record")? else {
                    return Ok(false);
                };
                return Ok(matches!(
                    self.subject_entry(&record.subject)?,
                    Some(SubjectEntry::Live(_))
                ));
            }
        }
        Ok(false)
    }

    /// Re-applies what the store recovered (see the module doc), before
    /// anything else writes or makes a durable point.
    pub(super) fn replay(&self, recovered: Recovered) -> Result<()> {
        let Recovered { mark, calls } = recovered;
        if calls.is_empty() {
            return Ok(());
        }
        // How far the chain went when this replay (or one a crash cut
        // short) began, and how many entries it has taken since.
        let chain = self.audit.next_seq();
        let marker_key = Key::JournalReplay.encode();
        let base = match self.store.get(&marker_key)? {
            Some(b) => match codec::decode::<JournalReplay>(&b, "journal replay marker") {
                Ok(r) if r.through == mark && r.audit_base <= chain => r.audit_base,
                _ => chain,
            },
            None => chain,
        };
        self.store.insert(
            &marker_key,
            &codec::encode(&JournalReplay {
                through: mark,
                audit_base: base,
            })?,
        )?;
        let mut entries = Vec::new();
        for call in &calls {
            if self.call_subject_is_live(call)? {
                for (key, value) in &call.inserts {
                    // false: the key is there (the put reached the store).
                    self.store.insert_new(key, value)?;
                }
            }
            let entry: AuditEntry = codec::decode(&call.note, "journaled audit entry")?;
            if entry.seq >= base {
                entries.push(entry);
            }
        }
        entries.sort_by_key(|e| e.seq);
        let taken = (chain - base) as usize;
        for entry in entries.iter().skip(taken) {
            self.audit.append_recovered(entry)?;
        }
        self.make_durable()?;
        self.store.remove(&marker_key)
    }
}

/// In `Batched` mode: makes the handle's writes durable about every second.
pub(super) fn spawn_flusher(engine: Weak<Engine>) {
    let _ = std::thread::Builder::new()
        .name("shredvault-flush".into())
        .spawn(move || loop {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(100));
                match engine.upgrade() {
                    Some(e) if !e.background.closing.load(Ordering::Relaxed) => {}
                    _ => return,
                }
            }
            let Some(e) = engine.upgrade() else { return };
            if e.background.dirty.load(Ordering::Relaxed) {
                if let Err(err) = e.make_durable() {
                    // Reported by the next batched write, and dirty again
                    // so the next tick retries.
                    *lock(&e.background.flush_failed) = Some(err.to_string());
                    e.background.dirty.store(true, Ordering::Relaxed);
                }
            }
        });
}
