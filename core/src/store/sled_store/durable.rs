//! The durable point's file work (the module doc of `sled_store`, steps 2
//! and 4): which of sled's blob files and directories were fsynced already,
//! and fsyncing the rest.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use super::{sync_dir, SledStore};
use crate::error::{Error, Result};

/// What a durable point found durable already (see the module doc, step 3).
#[derive(Default)]
pub(super) struct SyncedEntries {
    data: std::collections::HashSet<std::ffi::OsString>,
    /// Each blob's length and modification time when it was fsynced, and
    /// whether it was settled then (last written well before: sled writes
    /// a blob once, in one go, so a settled blob is never looked at again).
    blobs: std::collections::HashMap<std::ffi::OsString, BlobStamp>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct BlobStamp {
    len: u64,
    modified: std::time::SystemTime,
    settled: bool,
}

/// A blob last written this long before a durable point looks at it is
/// complete.
const BLOB_SETTLED: Duration = Duration::from_secs(2);
impl SledStore {
    /// Step 3 of the durable point: fsyncs the blob files written since
    /// the last one, then the directories whose entries changed.
    pub(super) fn sync_new_entries(&self) -> Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        let blobs_dir = self.data_dir.join("blobs");
        let names = list_dir(&blobs_dir)?;
        let mut blobs = std::collections::HashMap::with_capacity(names.len());
        let mut changed = names.len() != synced.blobs.len();
        let now = std::time::SystemTime::now();
        for name in names {
            if let Some(known) = synced.blobs.get(&name).filter(|b| b.settled) {
                blobs.insert(name, *known);
                continue;
            }
            let path = blobs_dir.join(&name);
            let Some((len, modified)) = file_stamp(&path)? else {
                changed = true;
                continue; // removed meanwhile (sled drops blobs)
            };
            let settled = now
                .duration_since(modified)
                .is_ok_and(|age| age >= BLOB_SETTLED);
            let stamp = BlobStamp {
                len,
                modified,
                settled,
            };
            let known = synced.blobs.get(&name);
            if known.map(|b| (b.len, b.modified)) != Some((len, modified)) {
                // Stamped before the fsync: a write after it changes the
                // stamp, and the next durable point syncs it again.
                sync_file(&path)?;
                changed = true;
            }
            blobs.insert(name, stamp);
        }
        if changed {
            if blobs_dir.exists() {
                sync_dir(&blobs_dir)?;
            }
            synced.blobs = blobs;
        }
        let data = list_dir(&self.data_dir)?;
        if data != synced.data {
            sync_dir(&self.data_dir)?;
            synced.data = data;
        }
        Ok(())
    }
}

/// The names in a directory (none when it does not exist: sled makes
/// `blobs/` with its first blob).
fn list_dir(dir: &Path) -> Result<std::collections::HashSet<std::ffi::OsString>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(Error::io(format!("listing {}", dir.display()), e)),
    }
}

/// A file's length and modification time (`None`: it is gone).
fn file_stamp(path: &Path) -> Result<Option<(u64, std::time::SystemTime)>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((
            m.len(),
            m.modified()
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?,
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// fsyncs one file (one that vanished meanwhile, as sled removes blobs and
/// old snapshots, needs nothing).
pub(super) fn sync_file(path: &Path) -> Result<()> {
    match File::open(path) {
        Ok(f) => f
            .sync_all()
            .map_err(|e| Error::io(format!("syncing {}", path.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("opening {}", path.display()), e)),
    }
}
