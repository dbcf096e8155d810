//! Complete erasure: `rotate_root_key` re-wraps every live key under a new
//! root key and rebuilds the blind index under the new index key. Once the
//! caller destroys the old root key, nothing wrapped or indexed under it
//! (old copies of `keys/`, old blocks on a flash disk, blind-index entries
//! in old copies of `data/`) is of use to anyone.
//!
//! # Crash order
//!
//! 1. Every live subject's identifiers are opened and their new HMACs
//!    staged under `'b'`, with a `RotationMarker` naming the new key's key
//!    check; one batch per chunk, then the marker, then a durable point.
//! 2. The custody re-wraps every key (`RootRotation::commit`): the commit
//!    point.
//! 3. The blind index is swapped: old `'B'` entries go, staged ones become
//!    `'B'`, subjects point at their new HMACs, the marker goes; durable.
//!
//! At open ([`Engine::finish_root_rotation`]), a marker whose key check is
//! the custody's (the new key opened it: step 2 happened) finishes step 3;
//! any other marker means step 2 never happened, and what was staged is
//! dropped. Between steps, the vault opens with exactly one of the two keys
//! (the custody's doc says which, and its `WrongKey` says so).

use std::collections::HashMap;

use crate::codec;
use crate::crypto::RootKey;
use crate::error::{Error, Result};
use crate::ids::SubjectId;
use crate::layout::{decode_subject, Key, LiveSubject, Prefix, RotationMarker, SubjectEntry};
use crate::store::Batch;

use super::audited::{Commit, Op};
use super::subjects::put_subject;
use super::{lock, Engine, Vault};

const STAGE_CHUNK: usize = 1024;

impl Vault {
    /// Re-wraps every live key under `new` and rebuilds the blind index, in
    /// the crash order of this module's doc; `progress(done, total)` is
    /// called along the way. Every other operation waits meanwhile. From
    /// return on, only `new` opens the vault: keep it before calling this.
    pub fn rotate_root_key(&self, new: &RootKey, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::RotateRootKey, Commit::Always, |_| {
            engine.rotate_root_key(new, progress)
        })
    }
}

impl Engine {
    fn rotate_root_key(&self, new: &RootKey, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        // Quiesce: no expiry run, no writer of any subject, no blind-index
        // or day-key writer.
        let _expire = lock(&self.locks.expire);
        let _stripes = self.locks.all_stripes();
        let _blind = lock(&self.locks.blind);
        let _day = lock(&self.locks.day);
        let rotation = self.keys.custody.begin_rotation(new)?;
        let new_check = rotation.key_check();
        if new_check == self.keys.custody.key_check() {
            return Err(Error::invalid(
                "the new root key is the one in use: nothing to rotate",
            ));
        }

        // 1. Stage the new blind index.
        self.drop_staged_rotation()?;
        let subjects: Vec<(SubjectId, LiveSubject)> = self
            .scan(Prefix::Subjects)
            .map(|item| -> Result<Option<(SubjectId, LiveSubject)>> {
                let (k, v) = item?;
                Ok(match decode_subject(&v)? {
                    SubjectEntry::Live(live) => Some((Key::subject_id(&k)?, live)),
                    SubjectEntry::Erased { .. } => None,
                })
            })
            .filter_map(Result::transpose)
            .collect::<Result<_>>()?;
        let (occupied, free) = self.keys.custody.counts();
        let total = subjects.len() as u64 + occupied + free;
        let mut done = 0u64;
        for chunk in subjects.chunks(STAGE_CHUNK) {
            let mut batch = Batch::default();
            for (id, live) in chunk {
                if live.blind.is_empty() {
                    continue;
                }
                let key = self.identifiers_key(id, live.key)?;
                for (kind, value) in self.open_identifiers(id, &key, &live.identifiers)? {
                    let mac = rotation.blind_mac(&kind, &value);
                    batch.insert(Key::BlindStaged(mac).encode(), &id.as_bytes()[..]);
                }
            }
            self.store.apply(batch)?;
            done += chunk.len() as u64;
            progress(done, total);
        }
        self.store.insert(
            &Key::Rotation.encode(),
            &codec::encode(&RotationMarker {
                new_key_check: new_check,
            })?,
        )?;
        self.make_durable()?;

        // 2. Re-wrap every key: the commit point.
        let base = done;
        rotation.commit(self.now(), &mut |d, _| progress(base + d, total))?;

        // 3. Swap the blind index in.
        self.swap_staged_blind_index()?;
        progress(total, total);
        Ok(())
    }

    /// At open: finishes a committed rotation, or drops an uncommitted one.
    pub(super) fn finish_root_rotation(&self) -> Result<()> {
        let Some(bytes) = self.store.get(&Key::Rotation.encode())? else {
            return Ok(());
        };
        let marker: RotationMarker = codec::decode(&bytes, "rotation marker")?;
        if marker.new_key_check == self.keys.custody.key_check() {
            self.swap_staged_blind_index()
        } else {
            self.drop_staged_rotation()?;
            self.make_durable()
        }
    }

    fn drop_staged_rotation(&self) -> Result<()> {
        let mut batch = Batch::default();
        for item in self.scan(Prefix::BlindStaged) {
            batch.remove(&item?.0);
        }
        batch.remove(Key::Rotation.encode());
        self.store.apply(batch)
    }

    /// Step 3: staged entries become the blind index; subjects learn their
    /// new HMACs; the marker goes. One batch, durable.
    fn swap_staged_blind_index(&self) -> Result<()> {
        let mut batch = Batch::default();
        for item in self.scan(Prefix::Blind) {
            batch.remove(&item?.0);
        }
        let mut by_subject: HashMap<SubjectId, Vec<[u8; 32]>> = HashMap::new();
        for item in self.scan(Prefix::BlindStaged) {
            let (k, v) = item?;
            let mac = Key::blind_mac(&k)
                .map_err(|_| Error::corrupt("a staged blind-index entry is malformed"))?;
            let subject = SubjectId::from_bytes(&v)?;
            batch.remove(&k);
            batch.insert(Key::Blind(mac).encode(), &v[..]);
            by_subject.entry(subject).or_default().push(mac);
        }
        for item in self.scan(Prefix::Subjects) {
            let (k, v) = item?;
            if let SubjectEntry::Live(mut live) = decode_subject(&v)? {
                let id = Key::subject_id(&k)?;
                live.blind = by_subject.remove(&id).unwrap_or_default();
                put_subject(&mut batch, &id, &SubjectEntry::Live(live))?;
            }
        }
        batch.remove(Key::Rotation.encode());
        self.store.apply(batch)?;
        self.subjects_changed();
        self.make_durable()
    }
}
