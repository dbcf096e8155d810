//! `keys/marks`: what the custody knows of the store beside it, kept apart
//! from the keystore so it can be written often without ever risking the
//! keystore's header:
//!
//! - the **store mark**: how far the store must be. The engine counts its
//!   durable points in the store (`Key::StoreMark`) and notes each one here
//!   once it is durable; a store found behind the mark at open is an older
//!   copy (a restored or stale `data/`), which the engine refuses to open
//!   rather than let its repair pass take newer keys for leftovers;
//! - the **vault format**: whether every subject's facts are sealed and the
//!   clear state authenticated (`vault::migrate`), so that an unsealed
//!   entry found afterwards is damage, not an old format. It lives here,
//!   with the keys, where whoever can write only `data/` cannot reset it.
//!
//! # Layout
//!
//! Two records of 64 bytes: the first written only by durable updates
//! (and fsynced), the second only by notes (never fsynced), so a note never
//! overwrites what a durable update made durable, and a torn write spoils
//! only the record it was writing; the valid one with the higher sequence
//! number counts. The file is made whole (a temporary file and a rename),
//! so a crash never leaves it empty:
//!
//! ```text
//! [0..4]    magic "SVMK"
//! [4..8]    format (1)
//! [8..16]   sequence number, u64 LE
//! [16..32]  vault id
//! [32..40]  store mark, u64 LE
//! [40]      vault format
//! [56..64]  checksum: SHA-256 of [0..56], first 8 bytes
//! ```
//!
//! Noting the store mark writes a record without an fsync: a power cut may
//! lose the latest notes (the mark then lags, which weakens the check but
//! never refuses a good store). Setting the vault format or resetting the
//! mark (an operator accepting an older store) is fsynced.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::crypto;
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"SVMK";
const FORMAT: u32 = 1;
const RECORD: usize = 64;
const CHECKSUM_AT: usize = RECORD - 8;

/// The values a record holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MarkValues {
    pub store_mark: u64,
    pub vault_format: u8,
}

/// The marks file, open.
pub(super) struct Marks {
    path: PathBuf,
    file: File,
    vault_id: [u8; 16],
    state: Mutex<(u64, MarkValues)>,
}

impl std::fmt::Debug for Marks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Marks").field("path", &self.path).finish()
    }
}

fn record_bytes(seq: u64, vault_id: &[u8; 16], values: MarkValues) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0..4].copy_from_slice(MAGIC);
    r[4..8].copy_from_slice(&FORMAT.to_le_bytes());
    r[8..16].copy_from_slice(&seq.to_le_bytes());
    r[16..32].copy_from_slice(vault_id);
    r[32..40].copy_from_slice(&values.store_mark.to_le_bytes());
    r[40] = values.vault_format;
    let sum = crypto::checksum8(&r[..CHECKSUM_AT]);
    r[CHECKSUM_AT..].copy_from_slice(&sum);
    r
}

/// A record's sequence number and values, if it is whole.
fn parse(r: &[u8], vault_id: &[u8; 16]) -> Option<(u64, MarkValues)> {
    if r.len() != RECORD
        || &r[0..4] != MAGIC
        || r[4..8] != FORMAT.to_le_bytes()
        || crypto::checksum8(&r[..CHECKSUM_AT]) != r[CHECKSUM_AT..]
        || &r[16..32] != vault_id
    {
        return None;
    }
    let seq = u64::from_le_bytes(r[8..16].try_into().ok()?);
    let store_mark = u64::from_le_bytes(r[32..40].try_into().ok()?);
    Some((
        seq,
        MarkValues {
            store_mark,
            vault_format: r[40],
        },
    ))
}

impl Marks {
    /// Opens `dir/marks` of the vault `vault_id`, creating it (with
    /// `initial`) when missing. Two damaged records are `Corrupt`.
    pub fn open(dir: &Path, vault_id: [u8; 16], initial: MarkValues) -> Result<Marks> {
        let path = dir.join("marks");
        let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", path.display()), e);
        let exists = path.exists();
        if !exists {
            let tmp = dir.join("marks.tmp");
            let f = crate::fsmode::create_private_file(&tmp)?;
            f.write_all_at(&record_bytes(1, &vault_id, initial), 0)
                .and_then(|_| f.sync_all())
                .map_err(|e| io("writing", e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io("renaming", e))?;
            super::slot_format::sync_dir(dir)?;
        }
        let file = crate::fsmode::private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("opening", e))?;
        let state = {
            let mut bytes = vec![0u8; 2 * RECORD];
            let n = read_up_to(&file, &mut bytes).map_err(|e| io("reading", e))?;
            let best = bytes[..n]
                .chunks(RECORD)
                .filter_map(|r| parse(r, &vault_id))
                .max_by_key(|(seq, _)| *seq);
            best.ok_or_else(|| {
                Error::corrupt(format!(
                    "{} is damaged (neither of its records is whole, or it belongs to another vault)",
                    path.display()
                ))
            })?
        };
        Ok(Marks {
            path,
            file,
            vault_id,
            state: Mutex::new(state),
        })
    }

    pub fn values(&self) -> MarkValues {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Notes that the store durably reached `mark` (the mark only rises;
    /// the note is not fsynced).
    pub fn note_store_mark(&self, mark: u64) -> Result<()> {
        self.update(false, |v| v.store_mark = v.store_mark.max(mark))
    }

    /// An operator accepting an older store: the mark becomes `mark`,
    /// durably.
    pub fn reset_store_mark(&self, mark: u64) -> Result<()> {
        self.update(true, |v| v.store_mark = mark)
    }

    /// Records the vault format, durably.
    pub fn set_vault_format(&self, format: u8) -> Result<()> {
        self.update(true, |v| v.vault_format = format)
    }

    /// Writes `change(values)` as the next record; fsyncs when `durable`.
    pub fn update(&self, durable: bool, change: impl FnOnce(&mut MarkValues)) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut values = state.1;
        change(&mut values);
        if values == state.1 && !durable {
            return Ok(());
        }
        let seq = state.0 + 1;
        let at = if durable { 0 } else { RECORD as u64 };
        self.file
            .write_all_at(&record_bytes(seq, &self.vault_id, values), at)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        if durable {
            self.file
                .sync_data()
                .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))?;
        }
        *state = (seq, values);
        Ok(())
    }
}

fn read_up_to(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::{MarkValues, Marks, RECORD};

    #[test]
    fn the_newer_whole_record_counts_and_a_torn_one_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let id = [3u8; 16];
        let m = Marks::open(dir.path(), id, MarkValues::default()).unwrap();
        m.update(false, |v| v.store_mark = 7).unwrap();
        m.update(true, |v| v.vault_format = 2).unwrap();
        drop(m);
        let m = Marks::open(dir.path(), id, MarkValues::default()).unwrap();
        assert_eq!(
            m.values(),
            MarkValues {
                store_mark: 7,
                vault_format: 2
            }
        );
        m.update(false, |v| v.store_mark = 9).unwrap();
        drop(m);
        // The newest record torn: the one before it stands.
        let path = dir.path().join("marks");
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = bytes.chunks(RECORD).position(|r| r[32] == 9).unwrap();
        bytes[newest * RECORD + 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let m = Marks::open(dir.path(), id, MarkValues::default()).unwrap();
        assert_eq!(
            m.values(),
            MarkValues {
                store_mark: 7,
                vault_format: 2
            }
        );
        drop(m);
        // Both damaged, or another vault's: refused.
        std::fs::write(&path, vec![0xaa; 2 * RECORD]).unwrap();
        assert!(Marks::open(dir.path(), id, MarkValues::default()).is_err());
        std::fs::remove_file(&path).unwrap();
        Marks::open(dir.path(), [4; 16], MarkValues::default()).unwrap();
        assert!(Marks::open(dir.path(), id, MarkValues::default()).is_err());
    }
}
