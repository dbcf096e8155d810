//! Compaction: `data/` rewritten as a fresh sled database holding only what
//! is live, for a vault that no handle has open.
//!
//! sled 0.34.7 never gives space back by itself: its file keeps its
//! high-water mark, and values that were removed stay in old log segments
//! until sled happens to reuse them (see "Performance" in the README). That
//! costs disk, and it leaves dead ciphertext of erased and expired records
//! on disk longer than it needs to be (unreadable, its keys are gone, but
//! still there). `compact` copies every live entry into a new database and
//! swaps it in.
//!
//! # Crash order
//!
//! 1. `data.compact/` is built (any leftover one is removed first), flushed,
//!    and every file in it and the directory itself are fsynced.
//! 2. `data/` is renamed `data.old/`.
//! 3. `data.compact/` is renamed `data/`; the vault directory is fsynced.
//! 4. `data.old/` is removed.
//!
//! At open and before compacting ([`recover`]): `data.compact/` beside
//! `data/` is an unfinished step 1 and is removed; `data.compact/` without
//! `data/` is a crash between 2 and 3, and step 3 is finished (the copy was
//! complete and durable before step 2); `data.old/` beside `data/` is a
//! crash before 4, and is removed. The keystore is not touched: an erased
//! subject's key is as gone after compaction as before.

//!
//! # Live compaction (`SledStore::compact_live`, `Vault::compact_live`)
//!
//! The same files and crash order, for a store in use:
//!
//! 1. With no write under way (sled's handles held for writing a moment),
//!    recording starts: from then on every write takes a lock, is made in
//!    sled, and is appended to a list, in the order sled took them.
//! 2. The live entries are copied into `data.compact/` while reads and
//!    writes go on. A key written after recording began is in the list;
//!    one not written since is in the copy as it is now. So the copy with
//!    the list applied in order is the store as it is when the list ends.
//! 3. New iterators wait; those under way end (up to 10 s, else `Locked`
//!    and nothing changes: an iterator holds the old database, whose sled
//!    threads write by path and must be gone before `data/` is renamed).
//! 4. sled's handles held for writing (every call waits from here): the
//!    list is applied to the copy, the old database flushed and closed
//!    (its lock gone), then steps 1 to 4 of the crash order above, and
//!    `data/` (the copy) is opened and takes the old handles' place.
//!
//! Every write acknowledged as durable before step 4 was durable in the
//! old `data/` (or the journal) and is in the copy, which is durable before
//! the rename; a crash anywhere leaves what the crash order above leaves.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use super::{dir_size, open_sled, sync_dir};
use crate::error::{Error, Result};
use crate::layout::{Key, SLED_TREE};
use crate::types::CompactReport;

const NEW: &str = "data.compact";
const OLD: &str = "data.old";
const COPY_FLUSH_MS: u64 = 3;
const SETTLE_MAX: Duration = Duration::from_secs(3);
const SETTLE_IDLE: Duration = Duration::from_millis(400);

/// Rewrites `VAULT/data/` with only what is live, in the crash order of
/// this module's doc. `check_meta` is given the stored vault metadata first
/// (the vault checks that it names the vault whose lock it holds). The
/// caller holds the vault's lock.
pub(crate) fn compact(
    vault_dir: &Path,
    check_meta: &dyn Fn(Option<&[u8]>) -> Result<()>,
) -> Result<CompactReport> {
    recover(vault_dir)?;
    let data_dir = vault_dir.join("data");
    let new_dir = vault_dir.join(NEW);
    let bytes_before = dir_size(&data_dir);
    let entries = {
        let old = open_sled(&data_dir, vault_dir, 1000)?;
        check_meta(
            old.open_tree(SLED_TREE)?
                .get(Key::Meta.encode())?
                .as_deref(),
        )?;
        let (new, entries) = copy(&old, &new_dir)?;
        new.flush()?;
        settle(&new_dir.join("db"));
        new.flush()?;
        entries
    };
    // Step 1's end: everything in data.compact/ durable.
    sync_tree(&new_dir)?;
    // Steps 2 and 3.
    rename(&data_dir, &vault_dir.join(OLD))?;
    rename(&new_dir, &data_dir)?;
    sync_dir(vault_dir)?;
    // Step 4.
    remove(&vault_dir.join(OLD))?;
    Ok(CompactReport {
        bytes_before,
        bytes_after: dir_size(&data_dir),
        entries,
    })
}

/// Finishes or undoes a compaction that a crash interrupted (see the module
/// doc). The caller holds `keys/lock`.
pub(crate) fn recover(root_dir: &Path) -> Result<()> {
    let data_dir = root_dir.join("data");
    let new_dir = root_dir.join(NEW);
    let old_dir = root_dir.join(OLD);
    // Beside data/, either is left over and goes. Without data/, the new
    // copy (complete before data/ was moved) takes its place; the old one
    // only if there is no new one, which no crash leaves.
    for leftover in [new_dir, old_dir] {
        if !leftover.exists() {
            continue;
        }
        if data_dir.exists() {
            remove(&leftover)?;
        } else {
            rename(&leftover, &data_dir)?;
            sync_dir(root_dir)?;
        }
    }
    Ok(())
}

/// Copies every entry of every tree of `old` into a new database at
/// `new_dir` (a leftover one is removed first); the new database, open,
/// and how many entries it took.
pub(super) fn copy(old: &sled::Db, new_dir: &Path) -> Result<(sled::Db, u64)> {
    if new_dir.exists() {
        remove(new_dir)?;
    }
    // sled cleans its log (rewrites what is live out of mostly dead
    // segments, truncates a free tail) in its flusher thread, a little at
    // each tick. Copying in key order still leaves it garbage (each leaf is
    // rewritten as it fills); ticking every few milliseconds during the
    // copy and a moment after (see `settle`) ends with a file about 10%
    // smaller than at sled's usual one-second tick, measured after the
    // bench's churn.
    let new = sled::Config::new()
        .path(new_dir)
        .cache_capacity(256 * 1024 * 1024)
        .flush_every_ms(Some(COPY_FLUSH_MS))
        .open()?;
    let mut entries = 0u64;
    for name in old.tree_names() {
        let from = old.open_tree(&name)?;
        let to = new.open_tree(&name)?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for item in from.iter() {
            let (k, v) = item?;
            batch.insert(k, v);
            in_batch += 1;
            entries += 1;
            if in_batch == 1024 {
                to.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        to.apply_batch(batch)?;
    }
    Ok((new, entries))
}

/// The end of a live compaction (`SledStore::compact_live`): `new`, the
/// copy, takes the writes `recorded` since the copy began, is made durable
/// and closed, and replaces `data/` (steps 1 to 4 of the crash order
/// above). The caller has closed the old database, and no write is under
/// way.
pub(super) fn finish_live(
    vault_dir: &Path,
    new: sled::Db,
    recorded: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Result<()> {
    let new_dir = vault_dir.join(NEW);
    let tree = new.open_tree(SLED_TREE)?;
    for chunk in recorded.chunks(1024) {
        let mut batch = sled::Batch::default();
        for (key, value) in chunk {
            match value {
                Some(v) => batch.insert(key.as_slice(), v.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        tree.apply_batch(batch)?;
    }
    new.flush()?;
    drop(tree);
    drop(new);
    // Step 1's end: everything in data.compact/ durable.
    sync_tree(&new_dir)?;
    let data_dir = vault_dir.join("data");
    rename(&data_dir, &vault_dir.join(OLD))?;
    rename(&new_dir, &data_dir)?;
    sync_dir(vault_dir)?;
    remove(&vault_dir.join(OLD))
}

/// Removes a copy a failed live compaction left.
pub(super) fn abandon(vault_dir: &Path) {
    let _ = std::fs::remove_dir_all(vault_dir.join(NEW));
}

/// Gives sled's cleaner a moment after the copy: waits while the file
/// keeps shrinking, up to `SETTLE_MAX`.
pub(super) fn settle(db_file: &Path) {
    let len = || std::fs::metadata(db_file).map(|m| m.len()).unwrap_or(0);
    let start = std::time::Instant::now();
    let mut smallest = len();
    let mut last_progress = start;
    while start.elapsed() < SETTLE_MAX && last_progress.elapsed() < SETTLE_IDLE {
        std::thread::sleep(Duration::from_millis(20));
        let now = len();
        if now < smallest {
            smallest = now;
            last_progress = std::time::Instant::now();
        }
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", from.display(), to.display()),
            e,
        )
    })
}

fn remove(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))
}

/// fsyncs every file under `dir`, then the directories.
fn sync_tree(dir: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
        }
    }
    sync_dir(dir)
}
