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
//!    check; one durable batch per chunk, the marker last.
//! 2. The keystore is re-wrapped ([`Keystore::rewrap`]): its rename is the
//!    commit point.
//! 3. The blind index is swapped: old `'B'` entries go, staged ones become
//!    `'B'`, subjects point at their new HMACs, the marker goes; durable.
//!
//! At open ([`Inner::finish_rotation`]), a marker whose key check is the
//! keystore's (the new key opened it: step 2 happened) finishes step 3; any
//! other marker means step 2 never happened, and what was staged is
//! dropped. Between steps, the vault opens with exactly one of the two keys
//! (the keystore's module doc says which, and its `WrongKey` says so).

use super::*;
use crate::keystore;

const STAGE_CHUNK: usize = 1024;

impl Vault {
    /// Re-wraps every live key under `new` and rebuilds the blind index, in
    /// the crash order of this module's doc; `progress(done, total)` is
    /// called along the way. Every other operation waits meanwhile. From
    /// return on, only `new` opens the vault: keep it before calling this.
    pub fn rotate_root_key(&self, new: &RootKey, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let inner = &self.inner;
        let entry = inner.entry("rotate_root_key");
        let result = inner.rotate_root_key(new, progress);
        inner.finish(entry, result, Commit::Always)
    }
}

impl Inner {
    fn rotate_root_key(&self, new: &RootKey, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        // Quiesce: no expiry run, no writer of any subject, no blind-index
        // or day-key writer.
        let _expire = lock(&self.expire_lock);
        let _stripes: Vec<_> = self.stripes.iter().map(lock).collect();
        let _blind = lock(&self.blind_lock);
        let _day = lock(&self.day_lock);
        let new_keys = DerivedKeys::from_root(new);
        let new_check = keystore::key_check(&new_keys, &self.vault_id);
        if new_check == self.keystore.current_key_check() {
            return Err(Error::invalid(
                "the new root key is the one in use: nothing to rotate",
            ));
        }

        // 1. Stage the new blind index.
        self.drop_staged_rotation()?;
        let subjects: Vec<(SubjectId, LiveSubject)> = self
            .tree
            .scan_prefix([SUBJECT])
            .map(|item| -> Result<Option<(SubjectId, LiveSubject)>> {
                let (k, v) = item?;
                Ok(match decode_subject(&v)? {
                    SubjectEntry::Live(live) => Some((SubjectId::from_bytes(&k[1..])?, live)),
                    SubjectEntry::Erased { .. } => None,
                })
            })
            .filter_map(Result::transpose)
            .collect::<Result<_>>()?;
        let (live_slots, free_slots) = self.keystore.counts();
        let total = (subjects.len() + live_slots + free_slots) as u64;
        let mut done = 0u64;
        for chunk in subjects.chunks(STAGE_CHUNK) {
            let mut batch = sled::Batch::default();
            for (id, live) in chunk {
                if live.blind.is_empty() {
                    continue;
                }
                let key = self.subject_key(id, live.key)?;
                for (kind, value) in self.open_identifiers(id, &key, &live.identifiers)? {
                    let mac = blind_mac_with(&new_keys.index, &self.vault_id, &kind, &value);
                    batch.insert(&staged_key(&mac)[..], &id.as_bytes()[..]);
                }
            }
            self.tree.apply_batch(batch)?;
            done += chunk.len() as u64;
            progress(done, total);
        }
        self.tree.insert(
            ROTATION_KEY,
            codec::encode(&RotationMarker {
                new_key_check: new_check,
            })?,
        )?;
        self.make_durable()?;

        // 2. Re-wrap the keystore: the commit point.
        let base = done;
        self.keystore
            .rewrap(&new_keys, self.now(), &mut |d, _| progress(base + d, total))?;
        *self.index_key.write().unwrap_or_else(|p| p.into_inner()) = new_keys.index.clone();

        // 3. Swap the blind index in.
        self.swap_staged_blind_index()?;
        progress(total, total);
        Ok(())
    }

    /// At open: finishes a committed rotation, or drops an uncommitted one.
    pub(super) fn finish_rotation(&self) -> Result<()> {
        let Some(bytes) = self.tree.get(ROTATION_KEY)? else {
            return Ok(());
        };
        let marker: RotationMarker = codec::decode(&bytes, "rotation marker")?;
        if marker.new_key_check == self.keystore.current_key_check() {
            self.swap_staged_blind_index()
        } else {
            self.drop_staged_rotation()?;
            self.make_durable()
        }
    }

    fn drop_staged_rotation(&self) -> Result<()> {
        let mut batch = sled::Batch::default();
        for k in self.tree.scan_prefix([BLIND_STAGED]).keys() {
            batch.remove(k?);
        }
        batch.remove(ROTATION_KEY);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Step 3: staged entries become the blind index; subjects learn their
    /// new HMACs; the marker goes. One batch, durable.
    fn swap_staged_blind_index(&self) -> Result<()> {
        let mut batch = sled::Batch::default();
        for k in self.tree.scan_prefix([BLIND]).keys() {
            batch.remove(k?);
        }
        let mut by_subject: HashMap<SubjectId, Vec<[u8; 32]>> = HashMap::new();
        for item in self.tree.scan_prefix([BLIND_STAGED]) {
            let (k, v) = item?;
            let mac: [u8; 32] = k[1..]
                .try_into()
                .map_err(|_| Error::corrupt("a staged blind-index entry is malformed"))?;
            let subject = SubjectId::from_bytes(&v)?;
            batch.remove(k);
            batch.insert(&blind_key(&mac)[..], v);
            by_subject.entry(subject).or_default().push(mac);
        }
        for item in self.tree.scan_prefix([SUBJECT]) {
            let (k, v) = item?;
            if let SubjectEntry::Live(mut live) = decode_subject(&v)? {
                let id = SubjectId::from_bytes(&k[1..])?;
                live.blind = by_subject.remove(&id).unwrap_or_default();
                put_subject(&mut batch, &id, &SubjectEntry::Live(live))?;
            }
        }
        batch.remove(ROTATION_KEY);
        self.tree.apply_batch(batch)?;
        self.subjects_changed();
        self.make_durable()
    }
}

fn staged_key(mac: &[u8; 32]) -> [u8; 33] {
    let mut k = blind_key(mac);
    k[0] = BLIND_STAGED;
    k
}
