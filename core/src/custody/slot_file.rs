//! [`SlotFileCustody`], today's custody: the keystore, every stored key
//! wrapped by the KEK (derived from the caller's root key), in fixed-size
//! slots of one file, `keys/keystore`, where destroying a key overwrites
//! its slot in place and fsyncs before the call returns.
//!
//! Keys are never written to the store: sled is log-structured and a value
//! removed from it stays in its files until segment GC. A slot overwritten in place is
//! gone from the file (the limits of that on flash and copy-on-write file
//! systems are in the README, with root-key rotation as the answer).
//!
//! # Layout
//!
//! ```text
//! offset 0       header, 128 bytes
//!   [0..8]    magic "SVKEYS\0\0"
//!   [8]       format version (1)
//!   [10..12]  slot size, u16 LE (128)
//!   [16..32]  vault id
//!   [32..64]  key check: HMAC(KEK, "shredvault key check v1", vault id)
//!             (`domains::key_check`)
//!   [64..72]  when the keys were last re-wrapped under a new root key
//!             (Unix seconds, i64 LE; 0: never), for the `WrongKey` message
//!   [120..128] checksum: SHA-256 of [0..120], first 8 bytes
//! offset 128 + 128*i   slot i, 128 bytes
//!   [0]       state: 0 empty (the whole slot is zero), 1 live
//!   [1]       kind: 1 subject key, 2 retention (day) key
//!   [8..16]   key id, u64 LE, random and non-zero
//!   [16..76]  the key, sealed by the KEK: nonce, 32 bytes, tag; the AAD
//!             binds vault id, slot index, kind and key id, so a slot copied
//!             to another place or another vault does not open
//!             (`domains::slot_aad`)
//!   [120..128] checksum of [0..120]
//! ```
//!
//! The store refers to a key by [`KeyRef`] (index and key id). A reference whose
//! slot is empty, or holds another key id, points at a destroyed key.
//!
//! # Crash order
//!
//! - A new key's slot is written and fsynced before anything in the store refers
//!   to it ([`KeyCustody::create`] returns only then).
//! - A destroyed key's slot is zeroed and fsynced before its references are
//!   removed from the store ([`KeyCustody::destroy`]).
//! - So after a crash a slot may be live with no reference (allocated but
//!   never used, or replaced but not yet destroyed), and a reference may point
//!   at a destroyed key. The vault's repair pass at open destroys the first
//!   kind and treats the second as erased.
//!
//! A lock file `keys/lock` is held (flock) while the keystore is open, so a
//! second process, or a second handle in this one, gets `Locked`.
//!
//! # Root-key rotation
//!
//! A rotation (`slot_rotation`) writes a complete copy, `keys/keystore.new`,
//! every live slot re-wrapped under the new KEK at the same index: slots first,
//! fsync, then the header (whose key check names the new key), fsync; then
//! renames it over `keys/keystore` and fsyncs the directory. The rename is
//! the commit point. At open:
//! - the old key opens an uncommitted rotation's `keystore`; a leftover
//!   `keystore.new` is removed (rolled back);
//! - the new key finds `keystore` wrapped by the old one, and a complete
//!   `keystore.new` wrapped by itself: the rename is finished (rolled
//!   forward);
//! - any other mismatch is `WrongKey`, saying whether a rotation was cut
//!   short (then the previous key still opens it) or when the keys were last
//!   re-wrapped under another key.

use std::fs::File;
use std::io::ErrorKind as IoErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use super::slot_format::{
    header_bytes, key_check, parse_slot_state, read_header, slot_bytes, slot_offset, sync_dir,
    unwrap_slot, Header, SlotState, CHECKSUM_AT, HEADER_SIZE, NEW_FILE, SLOT_SIZE, STATE_LIVE,
};
use super::{Derivation, HeldSlot, KeyCustody, KeyError, KeyKind, KeyRef, RootRotation};
use crate::crypto::{self, RootKey, RootSecrets, SecretKey};
use crate::domains;
use crate::error::{Error, ErrorKind, Result};

pub(super) struct Slots {
    pub states: Vec<SlotState>,
    /// Empty slots, reused before the file grows.
    free: Vec<u32>,
}

/// The keystore file and the keys derived from the root key. See the
/// module doc.
pub(crate) struct SlotFileCustody {
    pub(super) path: PathBuf,
    marks: super::marks::Marks,
    /// Replaced whole by a root-key rotation.
    pub(super) backing: RwLock<Backing>,
    _lock: File,
    pub(super) vault_id: [u8; 16],
    pub(super) slots: Mutex<Slots>,
}

pub(super) struct Backing {
    pub file: File,
    pub kek: SecretKey,
    /// Keys the blind index.
    pub index: SecretKey,
    pub key_check: [u8; 32],
}

impl std::fmt::Debug for SlotFileCustody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotFileCustody")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(super) fn take_lock(dir: &Path) -> Result<File> {
    let lock_path = dir.join("lock");
    // Not through a link; 0600 inside a 0700 directory, so no other user
    // can open it to hold the lock.
    let lock = crate::fsmode::private_file()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
    // Tried again for a moment before `Locked`: a lock is held by every
    // descriptor of its open file, and a process this one forks holds a
    // copy of each until it execs (closed on exec). A handle closed while
    // another thread spawns a child may so hold the lock a little longer
    // than the handle lived; without the retry an open right after a close
    // failed now and then (CI saw it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "the vault at {} is open in another process or handle",
                        dir.parent().unwrap_or(dir).display()
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", lock_path.display()), e))
            }
        }
    }
}

impl SlotFileCustody {
    /// Opens `dir/keystore`, creating it (with `new_vault_id`) when it does
    /// not exist, and holds `dir/lock`. The root key is checked against the
    /// header: `WrongKey` if it does not match.
    pub fn open(dir: &Path, root: &RootKey, new_vault_id: [u8; 16]) -> Result<SlotFileCustody> {
        crate::fsmode::create_private_dir(dir)?;
        let lock = take_lock(dir)?;
        let secrets = root.secrets()?;
        let kek = secrets.kek.clone();
        let index = secrets.index.clone();
        let path = dir.join("keystore");
        let new_path = dir.join(NEW_FILE);
        let created = !path.exists();
        if created {
            Self::create_file(dir, &path, &secrets, &new_vault_id)?;
        }
        let mut header = read_header(&path)?;
        let opens = |h: &Header| h.opens(&secrets);
        if opens(&header) {
            // An uncommitted rotation, rolled back.
            if new_path.exists() {
                std::fs::remove_file(&new_path)
                    .map_err(|e| Error::io(format!("removing {}", new_path.display()), e))?;
                sync_dir(dir)?;
            }
        } else {
            let vault_dir = dir.parent().unwrap_or(dir).display().to_string();
            let pending = match new_path.exists() {
                true => read_header(&new_path).ok(),
                false => None,
            };
            match pending {
                Some(new_header) if new_header.vault_id == header.vault_id && opens(&new_header) => {
                    // A rotation to this key, complete but not renamed:
                    // rolled forward.
                    std::fs::rename(&new_path, &path).map_err(|e| {
                        Error::io(format!("renaming {}", new_path.display()), e)
                    })?;
                    sync_dir(dir)?;
                    header = new_header;
                }
                Some(_) => {
                    return Err(Error::new(
                        ErrorKind::WrongKey,
                        format!(
                            "the root key does not open the vault at {vault_dir}: a root-key rotation was cut short there, and the vault still opens with its previous root key (which rolls the rotation back)"
                        ),
                    ))
                }
                None if header.rotated_at != 0 => {
                    return Err(Error::new(
                        ErrorKind::WrongKey,
                        format!(
                            "the root key does not open the vault at {vault_dir}: its keys were re-wrapped under another root key at {} (Unix seconds)",
                            header.rotated_at
                        ),
                    ))
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::WrongKey,
                        format!("the root key does not open the vault at {vault_dir}"),
                    ))
                }
            }
        }
        let file = crate::fsmode::private_file()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let slots = Self::scan_slots(&file, &path)?;
        // A keystore made before the marks were kept: its vault is in the
        // clear format until migrated.
        let marks = super::marks::Marks::open(
            dir,
            header.vault_id,
            super::MarkValues {
                store_mark: 0,
                vault_format: if created {
                    super::VAULT_FORMAT_SEALED
                } else {
                    super::VAULT_FORMAT_CLEAR
                },
            },
        )?;
        Ok(SlotFileCustody {
            path,
            marks,
            backing: RwLock::new(Backing {
                file,
                kek,
                index,
                key_check: header.key_check,
            }),
            _lock: lock,
            vault_id: header.vault_id,
            slots: Mutex::new(slots),
        })
    }

    /// Whether `dir` holds a keystore.
    pub fn exists(dir: &Path) -> bool {
        dir.join("keystore").exists()
    }

    fn create_file(dir: &Path, path: &Path, root: &RootSecrets, vault_id: &[u8; 16]) -> Result<()> {
        let header = header_bytes(vault_id, &key_check(root, vault_id), 0);
        // Written to a temporary name and renamed, so a crash never leaves a
        // keystore without a complete header.
        let tmp = dir.join("keystore.tmp");
        let f = crate::fsmode::create_private_file(&tmp)?;
        f.write_all_at(&header, 0)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
        sync_dir(dir)
    }

    fn scan_slots(file: &File, path: &Path) -> Result<Slots> {
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        // A torn append leaves a partial slot at the end: it was never
        // acknowledged, so it is ignored (and overwritten by the next one).
        let count = (len.saturating_sub(HEADER_SIZE) / SLOT_SIZE as u64) as usize;
        let mut states = Vec::with_capacity(count);
        let mut free = Vec::new();
        const CHUNK: usize = 4096;
        let mut buf = vec![0u8; SLOT_SIZE * CHUNK];
        let mut index = 0usize;
        while index < count {
            let n = (count - index).min(CHUNK);
            let bytes = &mut buf[..n * SLOT_SIZE];
            file.read_exact_at(bytes, slot_offset(index as u32))
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            for raw in bytes.chunks_exact(SLOT_SIZE) {
                let state = parse_slot_state(raw);
                if state == SlotState::Empty {
                    free.push(index as u32);
                }
                states.push(state);
                index += 1;
            }
        }
        free.reverse(); // pop() hands out the lowest index first
        Ok(Slots { states, free })
    }

    pub(super) fn read_backing(&self) -> RwLockReadGuard<'_, Backing> {
        self.backing.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn lock_slots(&self) -> MutexGuard<'_, Slots> {
        // A panic while holding the lock leaves the in-memory state as it
        // was after the last completed write; carrying on is safe.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> Error {
        Error::io(format!("{what} {}", self.path.display()), e)
    }

    /// Reads and unwraps the key at `slot`, with its kind.
    fn load(&self, slot: KeyRef) -> Result<(KeyKind, SecretKey), KeyError> {
        let backing = self.read_backing();
        let mut raw = [0u8; SLOT_SIZE];
        match backing
            .file
            .read_exact_at(&mut raw, slot_offset(slot.index))
        {
            Ok(()) => {}
            Err(e) if e.kind() == IoErrorKind::UnexpectedEof => {
                return Err(KeyError::Corrupt(format!(
                    "keystore slot {} is past the end of the file (a truncated keystore)",
                    slot.index
                )))
            }
            Err(e) => return Err(KeyError::Other(self.io_error("reading", e))),
        }
        if raw.iter().all(|&b| b == 0) {
            return Err(KeyError::Destroyed(slot));
        }
        let what = format!("keystore slot {}", slot.index);
        if crypto::checksum8(&raw[..CHECKSUM_AT]) != raw[CHECKSUM_AT..] {
            return Err(KeyError::Corrupt(format!("{what} fails its checksum")));
        }
        let key_id = u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes"));
        if raw[0] != STATE_LIVE || key_id != slot.key_id {
            return Err(KeyError::Destroyed(slot));
        }
        let kind = KeyKind::from_byte(raw[1])
            .ok_or_else(|| KeyError::Corrupt(format!("{what} has an unknown kind")))?;
        unwrap_slot(&backing.kek, &self.vault_id, slot.index, kind, key_id, &raw)
            .map(|key| (kind, key))
            .map_err(|e| KeyError::Corrupt(e.message().to_string()))
    }

    /// Loads a key that must be of `kind`.
    fn load_kind(&self, slot: KeyRef, kind: KeyKind) -> Result<SecretKey, KeyError> {
        let (found, key) = self.load(slot)?;
        if found != kind {
            return Err(KeyError::Corrupt(format!(
                "keystore slot {} holds a {found:?} key where a {kind:?} key was expected",
                slot.index
            )));
        }
        Ok(key)
    }
}

impl KeyCustody for SlotFileCustody {
    fn vault_id(&self) -> [u8; 16] {
        self.vault_id
    }

    fn create(&self, kind: KeyKind, count: usize) -> Result<Vec<KeyRef>> {
        let mut slots = self.lock_slots();
        let mut taken = Vec::with_capacity(count);
        for _ in 0..count {
            let index = match slots.free.pop() {
                Some(i) => i,
                None => {
                    let i = u32::try_from(slots.states.len())
                        .map_err(|_| Error::internal("the keystore is full"))?;
                    slots.states.push(SlotState::Empty);
                    i
                }
            };
            taken.push(index);
        }
        let backing = self.read_backing();
        let mut out = Vec::with_capacity(count);
        let result = (|| -> Result<()> {
            for &index in &taken {
                let key = SecretKey::random()?;
                let key_id = loop {
                    let id = u64::from_le_bytes(crypto::random_array()?);
                    if id != 0 {
                        break id;
                    }
                };
                let raw = slot_bytes(
                    &backing.kek,
                    &self.vault_id,
                    index,
                    kind,
                    key_id,
                    key.expose(),
                )?;
                backing
                    .file
                    .write_all_at(&raw, slot_offset(index))
                    .map_err(|e| self.io_error("writing", e))?;
                out.push(KeyRef { index, key_id });
            }
            backing
                .file
                .sync_data()
                .map_err(|e| self.io_error("syncing", e))
        })();
        match result {
            Ok(()) => {
                for key in &out {
                    slots.states[key.index as usize] = SlotState::Live {
                        kind,
                        key_id: key.key_id,
                    };
                }
                Ok(out)
            }
            Err(e) => {
                // Whatever reached the file is unreferenced: the repair pass
                // at the next open destroys it. Meanwhile keep the slots out
                // of use.
                for &index in &taken {
                    slots.states[index as usize] = SlotState::Damaged;
                }
                Err(e)
            }
        }
    }

    fn destroy(&self, refs: &[KeyRef]) -> Result<()> {
        if refs.is_empty() {
            return Ok(());
        }
        let mut slots = self.lock_slots();
        let backing = self.read_backing();
        let zero = [0u8; SLOT_SIZE];
        let mut destroyed = Vec::new();
        for r in refs {
            let Some(state) = slots.states.get(r.index as usize).copied() else {
                continue;
            };
            let ours = match state {
                SlotState::Live { key_id, .. } => key_id == r.key_id,
                // A damaged slot is zeroed too: whatever it held goes.
                SlotState::Damaged => true,
                SlotState::Empty => false,
            };
            if !ours {
                continue;
            }
            backing
                .file
                .write_all_at(&zero, slot_offset(r.index))
                .map_err(|e| self.io_error("writing", e))?;
            destroyed.push(r.index);
        }
        backing
            .file
            .sync_data()
            .map_err(|e| self.io_error("syncing", e))?;
        for index in destroyed {
            slots.states[index as usize] = SlotState::Empty;
            slots.free.push(index);
        }
        Ok(())
    }

    fn derive(&self, key: KeyRef, derivation: Derivation) -> Result<SecretKey, KeyError> {
        super::derive_with(&self.vault_id, key, derivation, &|k, kind| {
            self.load_kind(k, kind)
        })
    }

    fn blind_mac(&self, kind: &str, value: &str) -> [u8; 32] {
        domains::blind_mac(&self.read_backing().index, &self.vault_id, kind, value)
    }

    fn holds(&self, key: KeyRef) -> bool {
        let slots = self.lock_slots();
        match slots.states.get(key.index as usize) {
            Some(SlotState::Live { key_id, .. }) => *key_id == key.key_id,
            // A slot past the end of the file is not "destroyed" but
            // missing (a truncated keystore): loading it is `Corrupt`.
            Some(SlotState::Damaged) | None => true,
            Some(SlotState::Empty) => false,
        }
    }

    fn inventory(&self) -> Vec<HeldSlot> {
        let slots = self.lock_slots();
        slots
            .states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match *s {
                SlotState::Empty => None,
                SlotState::Live { kind, key_id } => Some(HeldSlot {
                    index: i as u32,
                    kind: Some(kind),
                    key_id,
                }),
                SlotState::Damaged => Some(HeldSlot {
                    index: i as u32,
                    kind: None,
                    key_id: 0,
                }),
            })
            .collect()
    }

    fn destroy_slots(&self, indexes: &[u32]) -> Result<()> {
        let refs: Vec<KeyRef> = {
            let slots = self.lock_slots();
            indexes
                .iter()
                .filter_map(|&i| match slots.states.get(i as usize)? {
                    SlotState::Live { key_id, .. } => Some(KeyRef {
                        index: i,
                        key_id: *key_id,
                    }),
                    SlotState::Damaged => Some(KeyRef {
                        index: i,
                        key_id: 0,
                    }),
                    SlotState::Empty => None,
                })
                .collect()
        };
        self.destroy(&refs)
    }

    fn counts(&self) -> (u64, u64) {
        let slots = self.lock_slots();
        let occupied = slots
            .states
            .iter()
            .filter(|s| !matches!(s, SlotState::Empty))
            .count();
        (occupied as u64, (slots.states.len() - occupied) as u64)
    }

    fn key_check(&self) -> [u8; 32] {
        self.read_backing().key_check
    }

    fn begin_rotation(&self, new: &RootKey) -> Result<Box<dyn RootRotation + '_>> {
        Ok(Box::new(super::slot_rotation::SlotRotation::new(
            self, new,
        )?))
    }

    fn size_on_disk(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    fn marks(&self) -> super::MarkValues {
        self.marks.values()
    }

    fn note_store_mark(&self, mark: u64) -> Result<()> {
        self.marks.note_store_mark(mark)
    }

    fn reset_store_mark(&self, mark: u64) -> Result<()> {
        self.marks.reset_store_mark(mark)
    }

    fn set_vault_format(&self, format: u8) -> Result<()> {
        self.marks.set_vault_format(format)
    }

    fn image(&self) -> Result<super::CustodyImage> {
        // Under the slots' lock: no slot is written while the file is read.
        let _slots = self.lock_slots();
        let backing = self.read_backing();
        let len = backing
            .file
            .metadata()
            .map_err(|e| self.io_error("reading", e))?
            .len();
        let mut keystore = vec![0u8; len as usize];
        backing
            .file
            .read_exact_at(&mut keystore, 0)
            .map_err(|e| self.io_error("reading", e))?;
        Ok(super::CustodyImage {
            keystore,
            marks: self.marks.values(),
        })
    }

    fn backup_key(&self, backup_id: &[u8; 16], day_key: Option<&SecretKey>) -> SecretKey {
        crate::domains::backup_key(&self.read_backing().kek, day_key, &self.vault_id, backup_id)
    }
}

/// See [`super::write_image`].
pub(super) fn write_image(
    dir: &Path,
    vault_id: [u8; 16],
    image: &super::CustodyImage,
    store_mark: u64,
) -> Result<()> {
    crate::fsmode::create_private_dir(dir)?;
    let path = dir.join("keystore");
    if path.exists() {
        return Err(Error::invalid(format!(
            "{} exists: a keystore is never overwritten",
            path.display()
        )));
    }
    let header = super::slot_format::parse_header(&image.keystore, "the backup's keystore")?;
    if header.vault_id != vault_id {
        return Err(Error::corrupt(
            "the backup's keystore belongs to another vault than its header names",
        ));
    }
    let tmp = dir.join("keystore.tmp");
    let mut file = crate::fsmode::create_private_file(&tmp)?;
    std::io::Write::write_all(&mut file, &image.keystore)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
    sync_dir(dir)?;
    let marks = super::marks::Marks::open(
        dir,
        vault_id,
        super::MarkValues {
            store_mark,
            vault_format: image.marks.vault_format,
        },
    )?;
    // The marks file exists only if it was made just now (the directory
    // held no keystore); its values are the ones given.
    marks.update(true, |v| {
        v.store_mark = store_mark;
        v.vault_format = image.marks.vault_format;
    })
}

#[cfg(test)]
#[path = "slot_file_tests.rs"]
mod tests;

/// See [`super::keystore_needs`]: the keystore's lock is taken (no
/// rotation can start or be under way while it is held: `Locked` if the
/// vault is open) and returned, to be held until the key is destroyed.
pub(super) fn keystore_needs(
    dir: &Path,
    root: &RootSecrets,
) -> Result<(File, Option<&'static str>)> {
    let path = dir.join("keystore");
    if !path.exists() {
        return Err(Error::not_found(format!(
            "no keystore at {}",
            path.display()
        )));
    }
    let lock = take_lock(dir)?;
    if read_header(&path)?.opens(root) {
        return Ok((lock, Some("its keystore is wrapped under this key")));
    }
    let new_path = dir.join(NEW_FILE);
    if !new_path.exists() {
        return Ok((lock, None));
    }
    match read_header(&new_path) {
        Ok(h) if h.opens(root) => Ok((
            lock,
            Some("a root-key rotation to this key was cut short there (it rolls forward at the next open)"),
        )),
        Ok(_) => Ok((lock, None)),
        // A torn new keystore (no whole header: nothing runs, the lock is
        // ours) is rolled back at the next open: it needs the key it was
        // begun under, checked above.
        Err(e) if e.kind() == ErrorKind::Corrupt => Ok((lock, None)),
        Err(e) => Err(e),
    }
}
