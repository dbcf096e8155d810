//! The keystore: every stored key, wrapped by the KEK, in fixed-size slots of
//! one file, `keys/keystore`, where destroying a key overwrites its slot in
//! place and fsyncs before the call returns.
//!
//! Keys are never written to sled: sled is log-structured and a value removed
//! from it stays in its files until segment GC. A slot overwritten in place is
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
//!   [120..128] checksum of [0..120]
//! ```
//!
//! Sled refers to a key by [`SlotRef`] (index and key id). A reference whose
//! slot is empty, or holds another key id, points at a destroyed key.
//!
//! # Crash order
//!
//! - A new key's slot is written and fsynced before anything in sled refers
//!   to it ([`Keystore::allocate`] returns only then).
//! - A destroyed key's slot is zeroed and fsynced before its references are
//!   removed from sled ([`Keystore::destroy`]).
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
//! [`Keystore::rewrap`] writes a complete copy, `keys/keystore.new`, every
//! live slot re-wrapped under the new KEK at the same index: slots first,
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

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use crate::crypto::{self, mac_matches, DerivedKeys, SecretKey, KEY_LEN, SEAL_OVERHEAD};
use crate::error::{Error, ErrorKind, Result};

const MAGIC: &[u8; 8] = b"SVKEYS\0\0";
const FORMAT_VERSION: u8 = 1;
pub(crate) const SLOT_SIZE: usize = 128;
const HEADER_SIZE: u64 = SLOT_SIZE as u64;
const CHECKSUM_AT: usize = SLOT_SIZE - 8;
const WRAPPED_AT: usize = 16;
const WRAPPED_LEN: usize = KEY_LEN + SEAL_OVERHEAD;
const STATE_LIVE: u8 = 1;
const NEW_FILE: &str = "keystore.new";

/// What a key is for; written into its slot and bound by the wrapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyKind {
    Subject = 1,
    Retention = 2,
    /// A vault-wide secret (the audit chain's key, the receipt seed): random,
    /// kept across root-key rotations.
    Vault = 3,
}

impl KeyKind {
    fn from_byte(b: u8) -> Option<KeyKind> {
        match b {
            1 => Some(KeyKind::Subject),
            2 => Some(KeyKind::Retention),
            3 => Some(KeyKind::Vault),
            _ => None,
        }
    }
}

/// Where a key lives: its slot and the random id of the key in it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub(crate) struct SlotRef {
    pub index: u32,
    pub key_id: u64,
}

/// Why a key could not be loaded.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// The slot is empty or holds another key: the key was destroyed.
    Destroyed,
    /// The slot fails its checksum or authentication.
    Corrupt(String),
    /// Reading failed.
    Other(Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Empty,
    Live {
        kind: KeyKind,
        key_id: u64,
    },
    /// Unreadable; never reused until repaired, never handed out.
    Damaged,
}

struct Slots {
    states: Vec<SlotState>,
    /// Empty slots, reused before the file grows.
    free: Vec<u32>,
}

pub(crate) struct Keystore {
    path: PathBuf,
    /// Replaced whole by a root-key rotation.
    backing: RwLock<Backing>,
    _lock: File,
    vault_id: [u8; 16],
    slots: Mutex<Slots>,
}

struct Backing {
    file: File,
    kek: SecretKey,
    key_check: [u8; 32],
}

/// The parts of a header that open checks.
struct Header {
    vault_id: [u8; 16],
    key_check: [u8; 32],
    rotated_at: i64,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn slot_offset(index: u32) -> u64 {
    HEADER_SIZE + index as u64 * SLOT_SIZE as u64
}

pub(crate) fn wrap_aad(vault_id: &[u8; 16], index: u32, kind: KeyKind, key_id: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48);
    aad.extend_from_slice(b"sv slot v1");
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&(index as u64).to_le_bytes());
    aad.push(kind as u8);
    aad.extend_from_slice(&key_id.to_le_bytes());
    aad
}

/// The key-check value of a root key's KEK for a vault.
pub(crate) fn key_check(keys: &DerivedKeys, vault_id: &[u8; 16]) -> [u8; 32] {
    crypto::mac(&keys.kek, &[b"shredvault key check v1", vault_id])
}

fn header_bytes(vault_id: &[u8; 16], key_check: &[u8; 32], rotated_at: i64) -> [u8; SLOT_SIZE] {
    let mut header = [0u8; SLOT_SIZE];
    header[0..8].copy_from_slice(MAGIC);
    header[8] = FORMAT_VERSION;
    header[10..12].copy_from_slice(&(SLOT_SIZE as u16).to_le_bytes());
    header[16..32].copy_from_slice(vault_id);
    header[32..64].copy_from_slice(key_check);
    header[64..72].copy_from_slice(&rotated_at.to_le_bytes());
    let sum = crypto::checksum8(&header[..CHECKSUM_AT]);
    header[CHECKSUM_AT..].copy_from_slice(&sum);
    header
}

/// Reads and checks a keystore file's header (not the key).
fn read_header(path: &Path) -> Result<Header> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut header = [0u8; SLOT_SIZE];
    file.read_exact(&mut header).map_err(|e| {
        if e.kind() == IoErrorKind::UnexpectedEof {
            Error::corrupt(format!("{} is shorter than its header", path.display()))
        } else {
            Error::io(format!("reading {}", path.display()), e)
        }
    })?;
    if &header[0..8] != MAGIC {
        return Err(Error::corrupt(format!(
            "{} is not a shredvault keystore",
            path.display()
        )));
    }
    if crypto::checksum8(&header[..CHECKSUM_AT]) != header[CHECKSUM_AT..] {
        return Err(Error::corrupt(format!(
            "{} header fails its checksum",
            path.display()
        )));
    }
    if header[8] != FORMAT_VERSION
        || u16::from_le_bytes([header[10], header[11]]) as usize != SLOT_SIZE
    {
        return Err(Error::corrupt(format!(
            "{} has an unsupported format version {}",
            path.display(),
            header[8]
        )));
    }
    let mut out = Header {
        vault_id: [0; 16],
        key_check: [0; 32],
        rotated_at: i64::from_le_bytes(header[64..72].try_into().expect("8 bytes")),
    };
    out.vault_id.copy_from_slice(&header[16..32]);
    out.key_check.copy_from_slice(&header[32..64]);
    Ok(out)
}

fn opens(keys: &DerivedKeys, header: &Header) -> bool {
    mac_matches(
        &keys.kek,
        &[b"shredvault key check v1", &header.vault_id],
        &header.key_check,
    )
}

/// fsyncs a directory, so that entries created or renamed in it survive a
/// power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

impl Keystore {
    /// Opens `dir/keystore`, creating it (with `new_vault_id`) when it does not
    /// exist. The root key is checked against the header: `WrongKey` if it
    /// does not match.
    pub fn open(dir: &Path, keys: &DerivedKeys, new_vault_id: [u8; 16]) -> Result<Keystore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
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

        let path = dir.join("keystore");
        let new_path = dir.join(NEW_FILE);
        if !path.exists() {
            Self::create_file(dir, &path, keys, &new_vault_id)?;
        }
        let mut header = read_header(&path)?;
        if opens(keys, &header) {
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
                Some(new_header)
                    if new_header.vault_id == header.vault_id && opens(keys, &new_header) =>
                {
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let slots = Self::scan_slots(&file, &path)?;
        Ok(Keystore {
            path,
            backing: RwLock::new(Backing {
                file,
                kek: keys.kek.clone(),
                key_check: header.key_check,
            }),
            _lock: lock,
            vault_id: header.vault_id,
            slots: Mutex::new(slots),
        })
    }

    fn create_file(dir: &Path, path: &Path, keys: &DerivedKeys, vault_id: &[u8; 16]) -> Result<()> {
        let header = header_bytes(vault_id, &key_check(keys, vault_id), 0);
        // Written to a temporary name and renamed, so a crash never leaves a
        // keystore without a complete header.
        let tmp = dir.join("keystore.tmp");
        let f =
            File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
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

    pub fn vault_id(&self) -> &[u8; 16] {
        &self.vault_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_backing(&self) -> std::sync::RwLockReadGuard<'_, Backing> {
        self.backing.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The key-check value of the KEK the keystore is wrapped by now.
    pub fn current_key_check(&self) -> [u8; 32] {
        self.read_backing().key_check
    }

    /// Re-wraps every live key under `new`'s KEK (see the module doc for
    /// the crash order): allocation, destruction and loads wait meanwhile.
    /// `progress(done, total)` is called as slots are written.
    pub fn rewrap(
        &self,
        new: &DerivedKeys,
        rotated_at: i64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let slots = self.lock_slots();
        let mut backing = self.backing.write().unwrap_or_else(|p| p.into_inner());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let new_path = dir.join(NEW_FILE);
        let io =
            |what: &str, e: std::io::Error| Error::io(format!("{what} {}", new_path.display()), e);
        let out = File::create(&new_path).map_err(|e| io("creating", e))?;
        let total = slots.states.len() as u64;
        let mut raw = [0u8; SLOT_SIZE];
        for (index, state) in slots.states.iter().enumerate() {
            let index = index as u32;
            backing
                .file
                .read_exact_at(&mut raw, slot_offset(index))
                .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
            if let SlotState::Live { kind, key_id } = *state {
                let aad = wrap_aad(&self.vault_id, index, kind, key_id);
                let what = format!("keystore slot {index}");
                let key = crypto::open(
                    &backing.kek,
                    &aad,
                    &raw[WRAPPED_AT..WRAPPED_AT + WRAPPED_LEN],
                    &what,
                )?;
                let wrapped = crypto::seal(&new.kek, &aad, &key)?;
                raw[WRAPPED_AT..WRAPPED_AT + WRAPPED_LEN].copy_from_slice(&wrapped);
                let sum = crypto::checksum8(&raw[..CHECKSUM_AT]);
                raw[CHECKSUM_AT..].copy_from_slice(&sum);
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
        let check = key_check(new, &self.vault_id);
        out.write_all_at(&header_bytes(&self.vault_id, &check, rotated_at), 0)
            .and_then(|_| out.sync_all())
            .map_err(|e| io("writing", e))?;
        // The commit point.
        std::fs::rename(&new_path, &self.path).map_err(|e| io("renaming", e))?;
        sync_dir(dir)?;
        backing.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
        backing.kek = new.kek.clone();
        backing.key_check = check;
        progress(total, total);
        Ok(())
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic while holding the lock leaves the in-memory state as it
        // was after the last completed write; carrying on is safe.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Generates `count` fresh keys of `kind`, writes them to free slots and
    /// fsyncs once; returns only when they are durable.
    pub fn allocate(&self, kind: KeyKind, count: usize) -> Result<Vec<(SlotRef, SecretKey)>> {
        let mut slots = self.lock_slots();
        let mut out = Vec::with_capacity(count);
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
        let result = (|| -> Result<()> {
            for &index in &taken {
                let key = SecretKey::random()?;
                let key_id = loop {
                    let id = u64::from_le_bytes(crypto::random_array()?);
                    if id != 0 {
                        break id;
                    }
                };
                let mut raw = [0u8; SLOT_SIZE];
                raw[0] = STATE_LIVE;
                raw[1] = kind as u8;
                raw[8..16].copy_from_slice(&key_id.to_le_bytes());
                let wrapped = crypto::seal(
                    &backing.kek,
                    &wrap_aad(&self.vault_id, index, kind, key_id),
                    key.expose(),
                )?;
                debug_assert_eq!(wrapped.len(), WRAPPED_LEN);
                raw[WRAPPED_AT..WRAPPED_AT + WRAPPED_LEN].copy_from_slice(&wrapped);
                let sum = crypto::checksum8(&raw[..CHECKSUM_AT]);
                raw[CHECKSUM_AT..].copy_from_slice(&sum);
                backing
                    .file
                    .write_all_at(&raw, slot_offset(index))
                    .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
                out.push((SlotRef { index, key_id }, key));
            }
            backing
                .file
                .sync_data()
                .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))
        })();
        match result {
            Ok(()) => {
                for (slot, _) in &out {
                    slots.states[slot.index as usize] = SlotState::Live {
                        kind,
                        key_id: slot.key_id,
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

    /// Reads and unwraps the key at `slot`.
    pub fn load(&self, slot: SlotRef) -> Result<SecretKey, LoadError> {
        let backing = self.read_backing();
        let mut raw = [0u8; SLOT_SIZE];
        match backing
            .file
            .read_exact_at(&mut raw, slot_offset(slot.index))
        {
            Ok(()) => {}
            Err(e) if e.kind() == IoErrorKind::UnexpectedEof => {
                return Err(LoadError::Corrupt(format!(
                    "keystore slot {} is past the end of the file (a truncated keystore)",
                    slot.index
                )))
            }
            Err(e) => {
                return Err(LoadError::Other(Error::io(
                    format!("reading {}", self.path.display()),
                    e,
                )))
            }
        }
        if raw.iter().all(|&b| b == 0) {
            return Err(LoadError::Destroyed);
        }
        let what = format!("keystore slot {}", slot.index);
        if crypto::checksum8(&raw[..CHECKSUM_AT]) != raw[CHECKSUM_AT..] {
            return Err(LoadError::Corrupt(format!("{what} fails its checksum")));
        }
        let key_id = u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes"));
        if raw[0] != STATE_LIVE || key_id != slot.key_id {
            return Err(LoadError::Destroyed);
        }
        let kind = KeyKind::from_byte(raw[1])
            .ok_or_else(|| LoadError::Corrupt(format!("{what} has an unknown kind")))?;
        let aad = wrap_aad(&self.vault_id, slot.index, kind, key_id);
        let key = crypto::open(
            &backing.kek,
            &aad,
            &raw[WRAPPED_AT..WRAPPED_AT + WRAPPED_LEN],
            &what,
        )
        .map_err(|e| LoadError::Corrupt(e.message().to_string()))?;
        SecretKey::from_slice(&key)
            .map_err(|_| LoadError::Corrupt(format!("{what} holds a key of the wrong length")))
    }

    /// Overwrites the slots of `refs` with zeros and fsyncs. A reference whose
    /// slot already holds something else is skipped: that key is gone.
    pub fn destroy(&self, refs: &[SlotRef]) -> Result<()> {
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
                .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
            destroyed.push(r.index);
        }
        backing
            .file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))?;
        for index in destroyed {
            slots.states[index as usize] = SlotState::Empty;
            slots.free.push(index);
        }
        Ok(())
    }

    /// Every slot that holds (or may hold) key material, with its kind when
    /// readable: what the repair pass checks against sled's references.
    pub fn occupied_slots(&self) -> Vec<(u32, Option<KeyKind>, u64)> {
        let slots = self.lock_slots();
        slots
            .states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match *s {
                SlotState::Empty => None,
                SlotState::Live { kind, key_id } => Some((i as u32, Some(kind), key_id)),
                SlotState::Damaged => Some((i as u32, None, 0)),
            })
            .collect()
    }

    /// Zeroes damaged or unreferenced slots found by the repair pass.
    pub fn destroy_indexes(&self, indexes: &[u32]) -> Result<()> {
        let refs: Vec<SlotRef> = {
            let slots = self.lock_slots();
            indexes
                .iter()
                .filter_map(|&i| match slots.states.get(i as usize)? {
                    SlotState::Live { key_id, .. } => Some(SlotRef {
                        index: i,
                        key_id: *key_id,
                    }),
                    SlotState::Damaged => Some(SlotRef {
                        index: i,
                        key_id: 0,
                    }),
                    SlotState::Empty => None,
                })
                .collect()
        };
        self.destroy(&refs)
    }

    /// Whether `slot` holds the key it names (in the state read at open and
    /// kept since): what the repair pass uses to find references to
    /// destroyed keys without unwrapping anything.
    /// A slot past the end of the file is not "destroyed" but missing (a
    /// truncated keystore): it counts as held, so nothing is erased on its
    /// account, and loading it is `Corrupt`.
    pub fn holds(&self, slot: SlotRef) -> bool {
        let slots = self.lock_slots();
        match slots.states.get(slot.index as usize) {
            Some(SlotState::Live { key_id, .. }) => *key_id == slot.key_id,
            Some(SlotState::Damaged) | None => true,
            Some(SlotState::Empty) => false,
        }
    }

    /// Counts of (live, empty) slots.
    pub fn counts(&self) -> (usize, usize) {
        let slots = self.lock_slots();
        let live = slots
            .states
            .iter()
            .filter(|s| !matches!(s, SlotState::Empty))
            .count();
        (live, slots.states.len() - live)
    }
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_parse_slot(bytes: &[u8]) {
    for raw in bytes.chunks_exact(SLOT_SIZE) {
        let _ = parse_slot_state(raw);
    }
}

fn parse_slot_state(raw: &[u8]) -> SlotState {
    if raw.iter().all(|&b| b == 0) {
        return SlotState::Empty;
    }
    if crypto::checksum8(&raw[..CHECKSUM_AT]) != raw[CHECKSUM_AT..] || raw[0] != STATE_LIVE {
        return SlotState::Damaged;
    }
    match KeyKind::from_byte(raw[1]) {
        Some(kind) => SlotState::Live {
            kind,
            key_id: u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes")),
        },
        None => SlotState::Damaged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::RootKey;

    fn keys() -> DerivedKeys {
        DerivedKeys::from_root(&RootKey::from_bytes(&[7; 32]).unwrap())
    }

    #[test]
    fn allocate_load_destroy_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path(), &keys(), [1; 16]).unwrap();
        let got = ks.allocate(KeyKind::Subject, 3).unwrap();
        for (r, k) in &got {
            assert_eq!(&ks.load(*r).unwrap(), k);
        }
        ks.destroy(&[got[1].0]).unwrap();
        assert!(matches!(ks.load(got[1].0), Err(LoadError::Destroyed)));
        drop(ks);
        let ks = Keystore::open(dir.path(), &keys(), [2; 16]).unwrap();
        assert_eq!(ks.vault_id(), &[1; 16]);
        assert_eq!(&ks.load(got[0].0).unwrap(), &got[0].1);
        assert!(matches!(ks.load(got[1].0), Err(LoadError::Destroyed)));
        // The freed slot is reused with a new key id: the old reference stays dead.
        let again = ks.allocate(KeyKind::Subject, 1).unwrap();
        assert_eq!(again[0].0.index, got[1].0.index);
        assert!(matches!(ks.load(got[1].0), Err(LoadError::Destroyed)));
        // The slot's bytes on disk are zero after destruction.
        ks.destroy(&[again[0].0]).unwrap();
        let bytes = std::fs::read(dir.path().join("keystore")).unwrap();
        let off = slot_offset(again[0].0.index) as usize;
        assert!(bytes[off..off + SLOT_SIZE].iter().all(|&b| b == 0));
    }

    #[test]
    fn wrong_key_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path(), &keys(), [1; 16]).unwrap();
        let err = Keystore::open(dir.path(), &keys(), [1; 16]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked);
        drop(ks);
        let other = DerivedKeys::from_root(&RootKey::from_bytes(&[8; 32]).unwrap());
        let err = Keystore::open(dir.path(), &other, [1; 16]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongKey);
    }

    #[test]
    fn flipped_slot_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path(), &keys(), [1; 16]).unwrap();
        let got = ks.allocate(KeyKind::Subject, 2).unwrap();
        drop(ks);
        let path = dir.path().join("keystore");
        for byte in 0..SLOT_SIZE {
            let mut bytes = std::fs::read(&path).unwrap();
            let off = slot_offset(got[0].0.index) as usize + byte;
            bytes[off] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
            let ks = Keystore::open(dir.path(), &keys(), [1; 16]).unwrap();
            assert!(
                matches!(ks.load(got[0].0), Err(LoadError::Corrupt(_))),
                "byte {byte}"
            );
            assert_eq!(&ks.load(got[1].0).unwrap(), &got[1].1);
            drop(ks);
            bytes[off] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
        }
    }
}
