//! Root-key rotation of the slot-file custody: every live slot re-wrapped
//! under the new root key's KEK into `keys/keystore.new`, which a rename
//! makes the keystore (the commit point; the crash order is in `slot_file`).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::slot_file::SlotFileCustody;
use super::slot_format::{
    header_bytes, slot_bytes, slot_offset, sync_dir, unwrap_slot, SlotState, NEW_FILE, SLOT_SIZE,
};
use super::RootRotation;
use crate::crypto::{RootKey, SecretKey};
use crate::error::{Error, Result};

/// A rotation of a [`SlotFileCustody`] to a new root key.
pub(super) struct SlotRotation<'a> {
    custody: &'a SlotFileCustody,
    kek: SecretKey,
    index: SecretKey,
    key_check: [u8; 32],
}

// The new keystore is written in the current header format (its key check
// keyed apart from the KEK).

impl<'a> SlotRotation<'a> {
    pub fn new(custody: &'a SlotFileCustody, new: &RootKey) -> Result<Self> {
        let new = new.secrets()?;
        let key_check = super::slot_format::key_check(&new, &custody.vault_id);
        Ok(SlotRotation {
            custody,
            index: new.index.clone(),
            kek: new.kek.clone(),
            key_check,
        })
    }
}

impl RootRotation for SlotRotation<'_> {
    fn key_check(&self) -> [u8; 32] {
        self.key_check
    }

    /// Re-wraps every live slot (creation, destruction and loads wait
    /// meanwhile): slots, fsync, header, fsync, rename, directory fsync.
    fn commit(self: Box<Self>, now: i64, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let custody = self.custody;
        let mut slots = custody.lock_slots();
        let mut damaged = Vec::new();
        let mut backing = custody.backing.write().unwrap_or_else(|p| p.into_inner());
        let dir = custody.path.parent().unwrap_or(Path::new("."));
        let new_path = dir.join(NEW_FILE);
        let io =
            |what: &str, e: std::io::Error| Error::io(format!("{what} {}", new_path.display()), e);
        let out = crate::fsmode::create_private_file(&new_path)?;
        let total = slots.states.len() as u64;
        let mut raw = [0u8; SLOT_SIZE];
        for (index, state) in slots.states.iter().enumerate() {
            let index = index as u32;
            backing
                .file
                .read_exact_at(&mut raw, slot_offset(index))
                .map_err(|e| Error::io(format!("reading {}", custody.path.display()), e))?;
            if let SlotState::Live { kind, key_id } = *state {
                match unwrap_slot(&backing.kek, &custody.vault_id, index, kind, key_id, &raw) {
                    Ok(key) => {
                        raw = slot_bytes(
                            &self.kek,
                            &custody.vault_id,
                            index,
                            kind,
                            key_id,
                            key.expose(),
                        )?;
                    }
                    // Damaged on disk: it opened under no key before and
                    // will not after; one such slot does not hold up the
                    // rotation of every other.
                    Err(e) if e.kind() == crate::error::ErrorKind::Corrupt => damaged.push(index),
                    Err(e) => return Err(e),
                }
            }
            // Empty slots stay zero; a damaged one is copied as it is (it
            // opens under no key, and stays reported as damaged).
            out.write_all_at(&raw, slot_offset(index))
                .map_err(|e| io("writing", e))?;
            if index.is_multiple_of(1024) {
                progress(index as u64, total);
            }
        }
        raw.fill(0);
        out.sync_all().map_err(|e| io("syncing", e))?;
        // The header last: a complete header means complete slots.
        out.write_all_at(&header_bytes(&custody.vault_id, &self.key_check, now), 0)
            .and_then(|_| out.sync_all())
            .map_err(|e| io("writing", e))?;
        // The commit point.
        std::fs::rename(&new_path, &custody.path).map_err(|e| io("renaming", e))?;
        sync_dir(dir)?;
        backing.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&custody.path)
            .map_err(|e| Error::io(format!("opening {}", custody.path.display()), e))?;
        backing.kek = self.kek.clone();
        backing.index = self.index.clone();
        backing.key_check = self.key_check;
        for index in damaged {
            slots.states[index as usize] = SlotState::Damaged;
        }
        progress(total, total);
        Ok(())
    }
}
