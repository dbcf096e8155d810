//! The sled store's half of a live compaction (`compact.rs`, "Live
//! compaction", has the design and the crash order): recording writes
//! (`SledStore::write`), the copy, waiting out iterators, the swap.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::durable::{sync_file, SyncedEntries};
use super::{compact, dir_size, Handles, SledStore};
use crate::error::{Error, ErrorKind, Result};
use crate::types::CompactReport;

/// How long a live compaction waits for iterators over the old database
/// (a scan under way) to end before it gives up (`Locked`).
const ITERATORS_WAIT: Duration = Duration::from_secs(10);
impl SledStore {
    /// The open database, for an iterator to keep (waiting out a live
    /// compaction's swap).
    pub(super) fn current(&self) -> Result<Arc<Handles>> {
        let mut swapping = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
        while *swapping {
            swapping = self
                .swapped
                .wait(swapping)
                .unwrap_or_else(|p| p.into_inner());
        }
        let handles = self.handles.read().unwrap_or_else(|p| p.into_inner());
        Self::open_handles(&handles)?;
        Ok(Arc::clone(handles.as_ref().expect("checked just above")))
    }

    fn set_swapping(&self, on: bool) {
        *self.swapping.lock().unwrap_or_else(|p| p.into_inner()) = on;
        self.swapped.notify_all();
    }

    /// The live compaction's copy and swap (see [`Store::compact_live`]);
    /// recording is on.
    fn copy_and_swap(&self) -> Result<u64> {
        let (new, entries) =
            compact::copy(&self.current()?.db, &self.vault_dir.join("data.compact"))?;
        compact::settle(&self.vault_dir.join("data.compact").join("db"));
        // No new iterator from here; those under way end first (they may
        // still read and write: nothing is locked yet).
        self.set_swapping(true);
        let given_up = || {
            Error::new(
                ErrorKind::Locked,
                format!(
                    "a scan of the vault stayed open for {} s: the compaction was given up (try again)",
                    ITERATORS_WAIT.as_secs()
                ),
            )
        };
        let deadline = std::time::Instant::now() + ITERATORS_WAIT;
        // The swap holds this: no call uses sled meanwhile.
        let mut handles = loop {
            let handles = self.handles.write().unwrap_or_else(|p| p.into_inner());
            if handles.as_ref().map_or(1, Arc::strong_count) <= 1 {
                break handles;
            }
            drop(handles);
            if std::time::Instant::now() >= deadline {
                self.set_swapping(false);
                return Err(given_up());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let recorded = self
            .recording
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        self.is_recording.store(false, Ordering::Release);
        let Some(old) = handles.take() else {
            self.set_swapping(false);
            return Err(Self::open_handles(&None).err().expect("None is an error"));
        };
        if let Err(e) = old.db.flush() {
            *handles = Some(old);
            drop(handles);
            self.set_swapping(false);
            return Err(e.into());
        }
        let old = match Arc::try_unwrap(old) {
            Ok(old) => old,
            Err(old) => {
                *handles = Some(old);
                drop(handles);
                self.set_swapping(false);
                return Err(given_up());
            }
        };
        drop(old);
        let finished = wait_closed(&self.data_dir.join("db"))
            .and_then(|()| compact::finish_live(&self.vault_dir, new, &recorded));
        // Open again whatever happened: the compacted copy, or the old
        // database if the swap did not begin (the crash order makes either
        // the one at data/).
        let opened = compact::recover(&self.vault_dir)
            .and_then(|()| Handles::open(&self.data_dir, &self.vault_dir));
        let opened = match opened {
            Ok(h) => {
                *handles = Some(Arc::new(h));
                Ok(())
            }
            Err(e) => Err(e),
        };
        drop(handles);
        self.set_swapping(false);
        finished?;
        opened?;
        // Every file is new: the next durable point looks at all of them.
        *self.synced.lock().unwrap_or_else(|p| p.into_inner()) = SyncedEntries::default();
        sync_file(&self.data_dir.join("conf"))?;
        self.sync_new_entries()?;
        Ok(entries)
    }

    /// [`Store::compact_live`]: see `compact.rs`, "Live compaction".
    pub(super) fn compact_live_now(&self) -> Result<CompactReport> {
        let _one = self.compacting.lock().unwrap_or_else(|p| p.into_inner());
        compact::recover(&self.vault_dir)?;
        let bytes_before = dir_size(&self.data_dir);
        {
            // On with no write under way: every write from here is either
            // seen by the copy or recorded (or both).
            let _no_writes = self.handles.write().unwrap_or_else(|p| p.into_inner());
            *self.recording.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
            self.is_recording.store(true, Ordering::Release);
        }
        let copied = self.copy_and_swap();
        self.is_recording.store(false, Ordering::Release);
        *self.recording.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if copied.is_err() {
            compact::abandon(&self.vault_dir);
        }
        Ok(CompactReport {
            bytes_before,
            bytes_after: dir_size(&self.data_dir),
            entries: copied?,
        })
    }
}

/// Waits until no handle holds sled's lock on `db` (sled's threads may
/// outlive the last handle a moment, and must be gone before its
/// directory is renamed: they write by path).
fn wait_closed(db: &Path) -> Result<()> {
    let file = File::open(db).map_err(|e| Error::io(format!("opening {}", db.display()), e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !unlocked(&file) {
        if std::time::Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "{} stayed locked after its database was closed",
                    db.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Whether nobody holds a lock on `file` (sled's is an `flock`): takes one
/// and lets it go.
#[cfg(unix)]
fn unlocked(file: &File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor `file` owns for the whole call.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    }
    locked == 0
}

#[cfg(not(unix))]
fn unlocked(_: &File) -> bool {
    true
}
