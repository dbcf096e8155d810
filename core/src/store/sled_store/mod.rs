//! [`SledStore`]: the embedded default store, sled 0.34.7 in `VAULT/data/`,
//! and everything sled-specific: opening it (and waiting out the lock a
//! handle dropped a moment ago still holds), its tuning, the durable point
//! (sled's flush, then an fsync sled's flush lacks), the put journal that
//! makes a put durable with one write (`journal`), and compaction
//! (`compact`).
//!
//! All keys live in one sled tree ([`SLED_TREE`]): sled batches are atomic
//! and isolated from readers within one tree (they take its write lock),
//! which is what the store contract asks of [`Store::apply`]. sled recovers
//! a prefix of its log after a crash, as the contract asks too.
//!
//! # The durable point
//!
//! sled's `flush` writes its buffers and waits on `sync_file_range`, which
//! does not reach the drive's cache, and sled never fsyncs the other files
//! it writes: a value or node over about 128 KiB goes to a file of its own,
//! `data/blobs/<lsn>`, which its log then points to, and `data/conf` is
//! written once. So [`Store::sync`]:
//!
//! 1. notes the put journal's last frame and lets the vault seal what it
//!    buffers (`seal`);
//! 2. fsyncs every blob file written since the last durable point, then
//!    the `blobs/` directory and `data/` itself when their entries changed
//!    (new blobs, sled's snapshot renames). A blob counts as synced with
//!    the length and modification time it had when fsynced, and one last
//!    written seconds before is settled and not looked at again: sled may
//!    be writing a blob (for later data) while a durable point lists the
//!    directory, and such a blob is fsynced again, whole, at the next one;
//! 3. records in the tree that every frame up to the one noted has its
//!    effects in sled ([`Key::JournalMark`]) (a frame is written only after
//!    its inserts are in sled's memory, so the mark never covers a frame
//!    whose inserts the flush could miss; and their blobs are durable by
//!    step 2, before sled can write the mark out);
//! 4. flushes sled, then step 2 again for the blobs the flush wrote;
//! 5. `fdatasync`s sled's log file: the commit.
//!
//! The power-loss harness (`core/tests/it/powerloss.rs`) found both orders
//! wrong before: a blob fsynced half-written and never again, and the mark
//! reaching the disk before a blob it covers.
//!
//! A power cut before step 5 loses only writes after the previous durable
//! point; after it, everything up to this point is there, blobs included.
//! Of the writes after the last durable point, sled's recovery keeps some
//! prefix, with one exception: a log entry whose blob did not survive is
//! skipped and the rest kept, so a batch with a big value can come back in
//! part (the engine repairs a torn rotation at open: `vault::torn`). `data/conf` and both directories are fsynced once at open.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::Duration;

use super::{Batch, Entries, Entry, Recovered, RecoveredCall, Store, Value};
use crate::codec;
use crate::crypto::SecretKey;
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{Key, SLED_TREE};

pub(crate) mod compact;
mod durable;
pub(crate) mod journal;
mod live;

use durable::{sync_file, SyncedEntries};

use journal::{Journal, JournalEntry, JournalMark};

/// A value read from sled: sled's own reference-counted bytes, not a copy.
#[derive(Clone)]
pub(crate) struct SledValue(sled::IVec);

impl std::ops::Deref for SledValue {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

fn value(v: sled::IVec) -> Value {
    Value(super::Repr::Sled(SledValue(v)))
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => Error::io("database", io),
            sled::Error::Corruption { .. } => Error::corrupt(format!("database: {e}")),
            // sled refuses a configuration file that disagrees with its
            // data: on a vault, whose configuration never changes, that
            // file is damaged.
            sled::Error::Unsupported(_) => Error::corrupt(format!("database: {e}")),
            other => Error::internal(format!("database: {other}")),
        }
    }
}

/// The vault's sled database and put journal.
pub(crate) struct SledStore {
    data_dir: PathBuf,
    vault_dir: PathBuf,
    /// The open database: swapped for the compacted one by
    /// [`compact_live`](Store::compact_live) (`None` only if opening that
    /// failed). Every call holds it for reading while it uses sled; an
    /// iterator holds the `Arc`.
    handles: RwLock<Option<Arc<Handles>>>,
    /// While a live compaction copies: every write, also recorded here, in
    /// the order sled took them (the lock is held across the write).
    recording: Mutex<Option<Vec<Recorded>>>,
    /// Whether `recording` is on (read without its lock on every write).
    is_recording: AtomicBool,
    /// A live compaction is about to swap databases: new iterators wait
    /// (existing ones end first).
    swapping: Mutex<bool>,
    swapped: Condvar,
    /// One live compaction at a time.
    compacting: Mutex<()>,
    /// Opened by `recover`.
    journal: OnceLock<Journal>,
    /// Held while the journal mark is read and raised; and whether the
    /// journal has been started (after the first durable point covering
    /// every frame read at open).
    mark: Mutex<bool>,
    /// The entries of `data/` and `data/blobs/` already durable.
    synced: Mutex<SyncedEntries>,
}

/// sled's handles on `data/`.
struct Handles {
    db: sled::Db,
    tree: sled::Tree,
    db_file: File,
}

/// A write recorded during a live compaction: a key and its new value
/// (`None`: removed).
type Recorded = (Vec<u8>, Option<Vec<u8>>);

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) `VAULT/data/`, finishing or undoing a compaction
    /// a crash cut short first. The caller holds the vault's lock.
    pub fn open(vault_dir: &Path) -> Result<SledStore> {
        compact::recover(vault_dir)?;
        let data_dir = vault_dir.join("data");
        let fresh = !data_dir.join("db").exists();
        crate::fsmode::create_private_dir(&data_dir)?;
        let handles = Handles::open(&data_dir, vault_dir)?;
        if fresh {
            // A new data/ must survive a power cut in the vault directory.
            sync_dir(vault_dir)?;
        }
        let store = SledStore {
            data_dir,
            vault_dir: vault_dir.to_path_buf(),
            handles: RwLock::new(Some(Arc::new(handles))),
            recording: Mutex::new(None),
            is_recording: AtomicBool::new(false),
            swapping: Mutex::new(false),
            swapped: Condvar::new(),
            compacting: Mutex::new(()),
            journal: OnceLock::new(),
            mark: Mutex::new(false),
            synced: Mutex::new(SyncedEntries::default()),
        };
        // Once at open: conf (written once, never fsynced by sled), every
        // blob there is, both directories.
        sync_file(&store.data_dir.join("conf"))?;
        store.sync_new_entries()?;
        Ok(store)
    }

    /// The stored journal mark (0: none).
    fn stored_mark(&self) -> Result<u64> {
        match self.get(&Key::JournalMark.encode())? {
            None => Ok(0),
            Some(b) => Ok(codec::decode::<JournalMark>(&b, "journal mark")?.through),
        }
    }

    /// The durable point, marking journal frames up to `through` done.
    fn durable_through(&self, through: u64, seal: &dyn Fn() -> Result<()>) -> Result<()> {
        seal()?;
        {
            // The mark only grows (two durable points may race to it).
            let mut started = self.mark.lock().unwrap_or_else(|p| p.into_inner());
            // IMPORTANT: the blobs of the puts the mark covers are durable
            // before the mark can reach the disk (sled may write its log
            // out at any moment): otherwise a power cut can keep the mark
            // and lose a blob, and sled's recovery drops the record while
            // the mark says the journal need not bring it back. (Found by
            // the power-loss harness.)
            self.sync_new_entries()?;
            if through > 0 && through > self.stored_mark()? {
                self.insert(
                    &Key::JournalMark.encode(),
                    &codec::encode(&JournalMark { through })?,
                )?;
            }
            {
                let handles = self.handles.read().unwrap_or_else(|p| p.into_inner());
                let h = Self::open_handles(&handles)?;
                h.db.flush()?;
                self.sync_new_entries()?;
                // IMPORTANT: the commit, after what the log points to.
                h.db_file
                    .sync_data()
                    .map_err(|e| Error::io(format!("syncing {}", self.data_dir.display()), e))?;
            }
            if let (false, Some(journal)) = (*started, self.journal.get()) {
                // Every frame read at open is marked done now: writing
                // starts again at the journal's beginning.
                journal.start(self.stored_mark()?)?;
                *started = true;
            } else if let Some(journal) = self.journal.get() {
                journal.marked(through);
            }
        }
        Ok(())
    }
}

impl Handles {
    fn open(data_dir: &Path, vault_dir: &Path) -> Result<Handles> {
        let db = open_sled(data_dir, vault_dir, 1000)?;
        // sled makes its files with the umask.
        crate::fsmode::restrict_tree(data_dir)?;
        let tree = db.open_tree(SLED_TREE)?;
        let db_file = File::open(data_dir.join("db"))
            .map_err(|e| Error::io(format!("opening {}", data_dir.display()), e))?;
        Ok(Handles { db, tree, db_file })
    }
}

impl SledStore {
    fn open_handles(handles: &Option<Arc<Handles>>) -> Result<&Handles> {
        handles.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Io,
                "the database could not be opened again after a compaction: open the vault again",
            )
        })
    }

    /// Runs `f` on the open database.
    fn with<T>(&self, f: impl FnOnce(&Handles) -> Result<T>) -> Result<T> {
        let handles = self.handles.read().unwrap_or_else(|p| p.into_inner());
        f(Self::open_handles(&handles)?)
    }

    /// Runs the write `f` on the open database; while a live compaction
    /// copies, in order with every other write, and `record`s it.
    fn write<T>(
        &self,
        f: impl FnOnce(&Handles) -> Result<T>,
        record: impl FnOnce(&T, &mut Vec<Recorded>),
    ) -> Result<T> {
        let handles = self.handles.read().unwrap_or_else(|p| p.into_inner());
        let h = Self::open_handles(&handles)?;
        if !self.is_recording.load(Ordering::Acquire) {
            return f(h);
        }
        let mut log = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(h)?;
        if let Some(log) = log.as_mut() {
            record(&out, log);
        }
        Ok(out)
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        self.with(|h| Ok(h.tree.get(key)?.map(value)))
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        self.with(|h| Ok(h.tree.contains_key(key)?))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(
            |h| Ok(h.tree.insert(key, value).map(|_| ())?),
            |(), log| log.push((key.to_vec(), Some(value.to_vec()))),
        )
    }

    fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        self.write(
            |h| {
                Ok(h.tree
                    .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
                    .is_ok())
            },
            |inserted, log| {
                if *inserted {
                    log.push((key.to_vec(), Some(value.to_vec())));
                }
            },
        )
    }

    fn remove(&self, key: &[u8]) -> Result<()> {
        self.write(
            |h| Ok(h.tree.remove(key).map(|_| ())?),
            |(), log| log.push((key.to_vec(), None)),
        )
    }

    fn apply(&self, batch: Batch) -> Result<()> {
        let writes = batch.into_writes();
        self.write(
            |h| {
                let mut sled_batch = sled::Batch::default();
                for (key, value) in &writes {
                    match value {
                        Some(v) => sled_batch.insert(key.as_slice(), v.as_slice()),
                        None => sled_batch.remove(key.as_slice()),
                    }
                }
                Ok(h.tree.apply_batch(sled_batch)?)
            },
            |(), log| log.extend(writes.iter().cloned()),
        )
    }

    fn scan(&self, prefix: &[u8], from: &[u8]) -> Entries {
        let h = match self.current() {
            Ok(h) => h,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        // Bounded above by the first key past the prefix, as sled's own
        // `scan_prefix` is (an open range iterates measurably slower).
        let iter = match prefix_end(prefix) {
            Some(end) => h.tree.range(from.to_vec()..end),
            None => h.tree.range(from.to_vec()..),
        };
        // The iterator keeps `h`: a live compaction waits for it.
        Box::new(iter.map(move |item| {
            let _held = &h;
            item.map(|(k, v)| (value(k), value(v))).map_err(Error::from)
        }))
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>> {
        self.with(|h| match h.tree.scan_prefix(prefix).next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((value(k), value(v))))
            }
        })
    }

    fn sync(&self, seal: &dyn Fn() -> Result<()>) -> Result<()> {
        // Read first: every frame up to here has its inserts in sled and its
        // note handed to the vault already, so `seal` covers it.
        let through = self.journal.get().map_or(0, Journal::last_seq);
        self.durable_through(through, seal)
    }

    fn persist(
        &self,
        inserts: &[(&[u8], &[u8])],
        note: &[u8],
        seal: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let started = *self.mark.lock().unwrap_or_else(|p| p.into_inner());
        let Some(journal) = self.journal.get().filter(|_| started) else {
            return self.sync(seal);
        };
        let entry = JournalEntry {
            inserts: inserts
                .iter()
                .map(|(k, v)| (k.to_vec().into(), v.to_vec().into()))
                .collect(),
            audit: note.to_vec(),
        };
        let written = journal.append(&entry, |through| self.durable_through(through, seal))?;
        if written.is_none() {
            self.sync(seal)?; // too big for a frame
        }
        Ok(())
    }

    fn recover(&self, key: SecretKey) -> Result<Recovered> {
        let mark = self.stored_mark()?;
        let (journal, frames) = Journal::open(&self.vault_dir, key, mark)?;
        if self.journal.set(journal).is_err() {
            return Err(Error::internal("the put journal was recovered twice"));
        }
        Ok(Recovered {
            mark,
            calls: frames
                .into_iter()
                .filter(|f| f.seq > mark)
                .map(|f| RecoveredCall {
                    inserts: f
                        .entry
                        .inserts
                        .into_iter()
                        .map(|(k, v)| (k.into_vec(), v.into_vec()))
                        .collect(),
                    note: f.entry.audit,
                })
                .collect(),
        })
    }

    fn size_on_disk(&self) -> u64 {
        dir_size(&self.data_dir)
    }

    fn compact_live(&self) -> Result<crate::types::CompactReport> {
        self.compact_live_now()
    }
}

/// The first key past every key that starts with `prefix` (`None`: there
/// is none, the prefix being all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// fsyncs a directory, so that entries created or renamed in it survive a
/// power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// The bytes of every file under `dir`.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Opens sled's database in `data_dir`, sled's flusher ticking every
/// `flush_ms`.
///
/// sled locks its file, and a handle dropped a moment ago in this process
/// (its I/O threads end after `Drop` returns) can still hold that lock. The
/// caller holds the vault's own lock, so no other vault handle can: a sled
/// lock failure here is retried for a few seconds before it is `Locked`.
fn open_sled(data_dir: &Path, vault_dir: &Path, flush_ms: u64) -> Result<sled::Db> {
    remove_interrupted_snapshots(data_dir)?;
    let config = sled::Config::new()
        .path(data_dir)
        .cache_capacity(256 * 1024 * 1024)
        .flush_every_ms(Some(flush_ms));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_millis(5);
    loop {
        // sled 0.34.7 can panic while recovering a log whose tail a power
        // cut tore (seen by the power-loss harness: "cannot find pid N in
        // view_for_key" after a dangling blob). That is damage, not a bug
        // of the caller: it becomes `Corrupt`, not a crash of the process.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
        let Ok(opened) = opened else {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "sled could not recover {} (it panicked reading its log): \
                     the data directory is damaged",
                    data_dir.display()
                ),
            ));
        };
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::new(
                        ErrorKind::Locked,
                        format!(
                            "the vault at {} is open in another process ({io})",
                            vault_dir.display()
                        ),
                    ));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(other) => return Err(Error::from(other)),
        }
    }
}

/// sled writes a snapshot as `snap.<lsn>.generating` and renames it when
/// complete; an interrupted one is left behind under that name, and sled
/// 0.34.7 would then try to read it as its newest snapshot. The complete
/// snapshot before it is intact, so the leftover is removed.
fn remove_interrupted_snapshots(data_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Ok(()); // no data/ yet
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(|e| {
                Error::io(
                    format!(
                        "removing the interrupted snapshot {}",
                        entry.path().display()
                    ),
                    e,
                )
            })?;
        }
    }
    Ok(())
}
