//! The keystore file's format (see `slot_file` for the layout table and
//! the crash order): the header, a slot's bytes, wrapping and unwrapping.

use std::fs::File;
use std::io::{ErrorKind as IoErrorKind, Read};
use std::path::Path;

use super::KeyKind;
use crate::crypto::{self, RootSecrets, SecretKey, KEY_LEN, SEAL_OVERHEAD};
use crate::domains;
use crate::error::{Error, Result};

pub(super) const MAGIC: &[u8; 8] = b"SVKEYS\0\0";
/// Format 2 (written now) keys its key check apart from the KEK; format 1
/// (still read) MACed it with the KEK.
pub(super) const FORMAT_VERSION: u8 = 2;
const FORMAT_V1: u8 = 1;
pub(super) const SLOT_SIZE: usize = 128;
pub(super) const HEADER_SIZE: u64 = SLOT_SIZE as u64;
pub(super) const CHECKSUM_AT: usize = SLOT_SIZE - 8;
pub(super) const WRAPPED_AT: usize = 16;
pub(super) const WRAPPED_LEN: usize = KEY_LEN + SEAL_OVERHEAD;
pub(super) const STATE_LIVE: u8 = 1;
pub(super) const NEW_FILE: &str = "keystore.new";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotState {
    Empty,
    Live {
        kind: KeyKind,
        key_id: u64,
    },
    /// Unreadable; never reused until repaired, never handed out.
    Damaged,
}

/// The parts of a header that open checks.
pub(super) struct Header {
    pub format: u8,
    pub vault_id: [u8; 16],
    pub key_check: [u8; 32],
    pub rotated_at: i64,
}

impl Header {
    /// Whether `root` is the key this header was written for.
    pub fn opens(&self, root: &RootSecrets) -> bool {
        match self.format {
            FORMAT_V1 => domains::key_check_matches(&root.kek, &self.vault_id, &self.key_check),
            _ => bool::from(subtle::ConstantTimeEq::ct_eq(
                &domains::key_check_v2(&root.check, &self.vault_id)[..],
                &self.key_check[..],
            )),
        }
    }
}

/// The key check a header of the current format holds for `root`.
pub(super) fn key_check(root: &RootSecrets, vault_id: &[u8; 16]) -> [u8; 32] {
    domains::key_check_v2(&root.check, vault_id)
}

pub(super) fn slot_offset(index: u32) -> u64 {
    HEADER_SIZE + index as u64 * SLOT_SIZE as u64
}

pub(super) fn header_bytes(
    vault_id: &[u8; 16],
    key_check: &[u8; 32],
    rotated_at: i64,
) -> [u8; SLOT_SIZE] {
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
pub(super) fn read_header(path: &Path) -> Result<Header> {
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
    parse_header(&header, &path.display().to_string())
}

/// Checks a keystore's first bytes as its header; `name` says whose.
pub(super) fn parse_header(header: &[u8], name: &str) -> Result<Header> {
    if header.len() < SLOT_SIZE {
        return Err(Error::corrupt(format!("{name} is shorter than its header")));
    }
    if &header[0..8] != MAGIC {
        return Err(Error::corrupt(format!(
            "{name} is not a shredvault keystore"
        )));
    }
    if crypto::checksum8(&header[..CHECKSUM_AT]) != header[CHECKSUM_AT..SLOT_SIZE] {
        return Err(Error::corrupt(format!("{name} header fails its checksum")));
    }
    if !(header[8] == FORMAT_VERSION || header[8] == FORMAT_V1)
        || u16::from_le_bytes([header[10], header[11]]) as usize != SLOT_SIZE
    {
        return Err(Error::corrupt(format!(
            "{name} has an unsupported format version {}",
            header[8]
        )));
    }
    let mut out = Header {
        format: header[8],
        vault_id: [0; 16],
        key_check: [0; 32],
        rotated_at: i64::from_le_bytes(header[64..72].try_into().expect("8 bytes")),
    };
    out.vault_id.copy_from_slice(&header[16..32]);
    out.key_check.copy_from_slice(&header[32..64]);
    Ok(out)
}

/// Seals `key` into a slot's bytes (state, kind, key id, wrapped key,
/// checksum).
pub(super) fn slot_bytes(
    kek: &SecretKey,
    vault_id: &[u8; 16],
    index: u32,
    kind: KeyKind,
    key_id: u64,
    key: &[u8],
) -> Result<[u8; SLOT_SIZE]> {
    let mut raw = [0u8; SLOT_SIZE];
    raw[0] = STATE_LIVE;
    raw[1] = kind as u8;
    raw[8..16].copy_from_slice(&key_id.to_le_bytes());
    let wrapped = crypto::seal(
        kek,
        &domains::slot_aad(vault_id, index, kind as u8, key_id),
        key,
    )?;
    debug_assert_eq!(wrapped.len(), WRAPPED_LEN);
    raw[WRAPPED_AT..WRAPPED_AT + WRAPPED_LEN].copy_from_slice(&wrapped);
    let sum = crypto::checksum8(&raw[..CHECKSUM_AT]);
    raw[CHECKSUM_AT..].copy_from_slice(&sum);
    Ok(raw)
}

/// The key in a live slot's bytes, unwrapped.
pub(super) fn unwrap_slot(
    kek: &SecretKey,
    vault_id: &[u8; 16],
    index: u32,
    kind: KeyKind,
    key_id: u64,
    raw: &[u8; SLOT_SIZE],
) -> Result<SecretKey> {
    let what = format!("keystore slot {index}");
    let key = crypto::open(
        kek,
        &domains::slot_aad(vault_id, index, kind as u8, key_id),
        &raw[WRAPPED_AT..WRAPPED_AT + WRAPPED_LEN],
        &what,
    )?;
    SecretKey::from_slice(&key)
        .map_err(|_| Error::corrupt(format!("{what} holds a key of the wrong length")))
}

/// fsyncs a directory, so that entries created or renamed in it survive a
/// power cut.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_parse_slot(bytes: &[u8]) {
    for raw in bytes.chunks_exact(SLOT_SIZE) {
        let _ = parse_slot_state(raw);
    }
}

pub(super) fn parse_slot_state(raw: &[u8]) -> SlotState {
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
