//! The sled store's put journal: how a `put` becomes durable with one write
//! ([`Store::persist`](crate::store::Store::persist)).
//!
//! # Why
//!
//! A durable point in sled is `flush()` (sled writes its buffer, then waits
//! on `sync_file_range`, which does not reach the drive's cache) and then an
//! `fdatasync` of sled's file (which does, and which also commits the file's
//! new length, since sled's file grows as it logs). Two waits on the device
//! per call. A `put` in `Immediate` mode instead writes one frame here with
//! `O_DSYNC`, into a file written full of zeros beforehand (so the write
//! changes no metadata): one wait, the least any durable write costs. sled
//! gets the same writes in memory and makes them durable at its next flush.
//!
//! # Layout
//!
//! `VAULT/journal`, `JOURNAL_SIZE` bytes, made as a file of zeros (written to
//! `journal.tmp`, fsynced, renamed, directory fsynced), in two halves of
//! `HALF` bytes. Each write puts one *group* of frames (the puts that
//! queued for it: see "Group commit") on the next 4 KiB boundary of the
//! half being written; a half is written from its start, group after
//! group, until the next group does not fit:
//!
//! ```text
//! group = "SVJ2" | first seq u64 LE | count u32 LE | len u32 LE | body (len bytes)
//!         | MAC (16) | zeros to the next 4 KiB
//! body  = count frames, each: payload len u32 LE | payload; seqs first, first + 1, ...
//! MAC   = HMAC-SHA256(journal key, "sv journal group v2" ‖ first ‖ count ‖ body),
//!         each part length-prefixed (`crypto::mac`), cut to 16 bytes
//! payload = JournalEntry (codec): the sled inserts of one put (its record
//!           and its day-index entry) and its encoded audit entry
//! ```
//!
//! Until version 2 every frame was a group of its own, padded to 4 KiB,
//! one after the other from offset 0 (`"SVJ1" | seq u64 | len u32 | payload
//! | MAC(16)`, MAC = HMAC(key, "sv journal frame v1" ‖ seq ‖ payload)); a
//! journal left by that version is read as groups of one frame each (a
//! vault opened by this version marks every frame it finds done and writes
//! only groups from then on). Packing a write's frames together took a
//! 1 KiB put from 4 KiB of journal to about 1.2 KiB.
//!
//! The journal key is derived from the audit key (`domains::journal_key`;
//! the audit key is a vault-wide keystore secret that survives root-key
//! rotation), so nobody without the keystore
//! can add a frame, and with it an audit entry the chain would take in.
//! Frames hold what sled holds: ciphertext, ids, names; no key and no
//! plaintext.
//!
//! # Crash order
//!
//! 1. A put inserts its day-index entry and its record into sled and appends
//!    its audit entry (all in memory).
//! 2. It takes the next seq and queues its frame; the frame is written in a
//!    group with `O_DSYNC`; when that write returns, the put is durable and
//!    acknowledged.
//! 3. Every durable point ([`Store::sync`](crate::store::Store::sync)) records in
//!    sled `'J'` = a frame seq (a `JournalMark`), then flushes and fsyncs:
//!    every frame up to it has its effects in sled. A seq is given only
//!    after the put's effects are in sled's memory, so a mark never covers
//!    a frame whose inserts the flush could miss.
//! 4. When the next group does not fit in the rest of its half, writing
//!    moves to the start of the other half, once every frame there is
//!    marked done; and the put that moved it runs a durable point marking
//!    every frame of the half it left done, while the other writers go on
//!    writing into the new half. So a wrap stops nobody unless the new
//!    half fills before the durable point for the other one ends.
//!
//! # Group commit
//!
//! Concurrent puts share writes. A put takes the next seq under the
//! journal's lock and queues its frame in the batch to be written next. If
//! fewer than `DEPTH` (2) writes are under way it becomes the leader: it
//! takes the queued batch, gives the group its place (the next 4 KiB
//! boundary), writes it with one `O_DSYNC` write without the lock, and
//! wakes that batch's writers; frames queued meanwhile wait for the next
//! leader, which is one of their own writers. Two writes may be under way
//! at once (this disk takes concurrent writes faster than one after the
//! other), but puts are acknowledged in order: a put is acknowledged only
//! when the write that held its frame, and every write before it, returned.
//! Each group records `durable_before`, the last seq acknowledged when its
//! write began. A crash can therefore tear groups none of whose puts was
//! acknowledged, and keep whole a group written beside a torn one (its
//! `durable_before` is below the torn group's frames); a whole group whose
//! `durable_before` reaches past a group that does not read back means
//! damage to an acknowledged group. A failed write fails the puts whose
//! frames it held (each is undone by the vault), marks the journal damaged,
//! and the puts after it become durable through the store instead
//! (`append` returns `None`, as for a frame too big).
//!
//! # Reading at open
//!
//! In `journal_read.rs`: each half's run, the frames past the mark in
//! order, and why every unmarked frame is in a run.
//!
//! An old copy of `data/` with a newer journal: frames past the copy's mark
//! are replayed into it. They are puts acknowledged after the copy was made;
//! those of subjects erased since are sealed under destroyed keys, and the
//! repair pass at open (which runs after the replay) erases them again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::SecretKey;
use crate::domains::{journal_frame_mac as frame_mac, journal_group_mac as group_mac};
use crate::error::{Error, Result};

#[path = "journal_read.rs"]
mod read;
use read::read_frames;

/// The journal file's size: two halves of some 1,700 puts of a 1 KiB
/// record each (moving from one half to the other costs one durable point,
/// which runs while writers fill the other half).
pub(crate) const JOURNAL_SIZE: u64 = 4 << 20;
const HALF: u64 = JOURNAL_SIZE / 2;
const PAGE: u64 = 4096;
const MAGIC: &[u8; 4] = b"SVJ2";
/// Magic, first seq, count, body length and durable-before.
const HEADER: usize = 28;
/// A version 1 frame: magic, seq and payload length.
const MAGIC_V1: &[u8; 4] = b"SVJ1";
const HEADER_V1: usize = 16;
const MAC_LEN: usize = 16;
/// The largest frame (length and payload) the journal takes; a bigger put
/// is made durable through the store.
const MAX_FRAME: usize = (HALF / 2) as usize;
/// How many more groups a leader writes after its own while waiting for
/// its frame to be durable.
const LEAD_ON: u32 = 8;
/// Group writes under way at once (the device takes concurrent writes
/// faster than one after the other: measured in docs/performance.md).
const DEPTH: usize = 2;

/// One put's effects, as a frame's payload.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalEntry {
    /// sled inserts, in the order the put made them.
    pub inserts: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
    /// The put's audit entry as the audit log encoded it.
    #[serde(with = "serde_bytes")]
    pub audit: Vec<u8>,
}

/// A frame read back: its seq and what it holds.
#[derive(Debug)]
pub(crate) struct Frame {
    pub seq: u64,
    pub entry: JournalEntry,
}

/// `'J'`: every frame up to `through` has its effects in sled.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JournalMark {
    pub through: u64,
}

pub(crate) struct Journal {
    path: PathBuf,
    key: SecretKey,
    state: Mutex<State>,
    /// Batch `b`'s writers wait on `batches[b % BATCH_SIGNALS]`: signalled
    /// when it is durable (or its write failed), or, while it is the queued
    /// batch, when a write ends and leaves room for it: so a write wakes
    /// its own writers, not every writer.
    batches: [Condvar; BATCH_SIGNALS],
    /// Signalled when a durable point run for a half ends, or a mark is
    /// raised.
    changed: Condvar,
}

/// Batches that can have writers waiting at once: `DEPTH` being written
/// and one queued.
const BATCH_SIGNALS: usize = DEPTH + 1;

/// A group write under way.
struct Write {
    batch: u64,
    through: u64,
    /// Ended: how.
    ended: Option<std::result::Result<(), (std::io::ErrorKind, String)>>,
}

struct State {
    /// Open for writing with `O_DSYNC` (shared with the leaders' writes,
    /// made without the lock).
    file: Arc<File>,
    /// Where the next group goes: a 4 KiB boundary in the half being
    /// written.
    pos: u64,
    /// The end of the half being written.
    end: u64,
    /// The last frame seq given out (written, queued, or replayed).
    last: u64,
    /// The file is not a whole journal (cut short, grown, or a write to it
    /// failed): nothing more is written to it until it is made anew once
    /// what it held is marked done (`start`).
    damaged: bool,
    /// The body of the next group: the frames queued for the next write.
    queued: Vec<u8>,
    /// How many frames `queued` holds, and the seq of its first.
    queued_count: u32,
    queued_first: u64,
    /// The number of the batch `queued` is (one per write).
    batch: u64,
    /// Writes under way or ended out of order, oldest first (at most
    /// `DEPTH`; the lock is not held while writing).
    writes: std::collections::VecDeque<Write>,
    /// Every frame up to this seq is on the disk: the frames of the writes
    /// that ended well, up to the first that has not.
    durable: u64,
    /// The first write that failed: its frames and what went wrong. Its
    /// frames failed; those after it are made durable through the store.
    failed: Option<(u64, u64, std::io::ErrorKind, String)>,
    /// The last frame seq in the other half: it may be written again once
    /// `marked` reaches this.
    other_last: u64,
    /// Every frame up to this seq is marked done by a durable point.
    marked: u64,
    /// A durable point for a half is under way (the lock is not held).
    checkpointing: bool,
    /// Writes made (for the tests of group commit).
    written: u64,
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

/// The bytes a group with a body of `body_len` takes, padded to pages.
fn group_span(body_len: usize) -> u64 {
    round_up((HEADER + body_len + MAC_LEN) as u64)
}

fn io<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(format!("{what} {}", path.display()), e)
}

fn open_for_writing(path: &Path) -> Result<File> {
    let mut options = crate::fsmode::private_file();
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_DSYNC);
    }
    options.open(path).map_err(io("opening", path))
}

/// Writes a journal of zeros at `path` (through a temporary file and a
/// rename, so a crash leaves the old file or the new one).
fn make_file(path: &Path) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = crate::fsmode::create_private_file(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..JOURNAL_SIZE / zeros.len() as u64 {
        f.write_all(&zeros).map_err(io("writing", &tmp))?;
    }
    f.sync_all().map_err(io("syncing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", &tmp))?;
    if let Some(dir) = path.parent() {
        super::sync_dir(dir)?;
    }
    Ok(())
}

impl Journal {
    /// Opens `dir/journal` (making it when missing) and returns the frames
    /// it holds past `mark` (sled's), for the caller to replay.
    pub fn open(dir: &Path, key: SecretKey, mark: u64) -> Result<(Journal, Vec<Frame>)> {
        let path = dir.join("journal");
        let bytes = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("reading", &path)(e)),
        };
        let frames = match &bytes {
            Some(b) => read_frames(b, &key, mark, &path)?,
            None => Vec::new(),
        };
        let damaged = match &bytes {
            None => {
                make_file(&path)?;
                false
            }
            Some(b) => b.len() as u64 != JOURNAL_SIZE,
        };
        let file = if damaged {
            // Kept for reading only until `start`: nothing is written to a
            // file that is not a whole journal.
            File::open(&path).map_err(io("opening", &path))?
        } else {
            open_for_writing(&path)?
        };
        let last = frames.last().map_or(mark, |f| f.seq);
        Ok((
            Journal {
                path,
                key,
                state: Mutex::new(State {
                    file: Arc::new(file),
                    pos: 0,
                    end: HALF,
                    last,
                    damaged,
                    queued: Vec::new(),
                    queued_count: 0,
                    queued_first: 0,
                    batch: 0,
                    writes: Default::default(),
                    durable: last,
                    failed: None,
                    // Nothing is written before `start`, which frees both.
                    other_last: last,
                    marked: mark,
                    checkpointing: false,
                    written: 0,
                }),
                batches: std::array::from_fn(|_| Condvar::new()),
                changed: Condvar::new(),
            },
            frames,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called once the open's durable point has marked every frame read at
    /// open done: writing starts at offset 0 again, and seqs go on from
    /// `mark` (the stored mark may be past the frames, when the journal was
    /// lost or renewed). A damaged file is made anew now.
    pub fn start(&self, mark: u64) -> Result<()> {
        let mut s = self.lock();
        if s.damaged {
            make_file(&self.path)?;
            s.file = Arc::new(open_for_writing(&self.path)?);
            s.damaged = false;
            s.failed = None;
        }
        s.pos = 0;
        s.end = HALF;
        s.last = s.last.max(mark);
        s.durable = s.last;
        s.marked = s.marked.max(mark);
        s.other_last = 0;
        Ok(())
    }

    /// The last frame seq given out: the mark a durable point records.
    pub fn last_seq(&self) -> u64 {
        self.lock().last
    }

    /// Tells the journal a durable point marked every frame up to
    /// `through` done (so the half holding them may be written again).
    pub fn marked(&self, through: u64) {
        let mut s = self.lock();
        if through > s.marked {
            s.marked = through;
            self.changed.notify_all();
        }
    }

    /// Writes one frame, durably (with others queued meanwhile: see
    /// "Group commit"). `None` when the entry would not fit the journal at
    /// all (a huge record) or the journal is damaged: the caller makes the
    /// put durable through the store instead. `checkpoint(through)` runs a
    /// durable point marking every frame up to `through` done; it is
    /// called without the journal's lock, when the frame moves writing to
    /// the other half (see "Crash order", 4).
    pub fn append(
        &self,
        entry: &JournalEntry,
        checkpoint: impl Fn(u64) -> Result<()>,
    ) -> Result<Option<u64>> {
        let payload = codec::encode(entry)?;
        let frame_len = 4 + payload.len();
        if frame_len > MAX_FRAME {
            return Ok(None);
        }
        let mut s = self.lock();
        loop {
            if s.damaged {
                return Ok(None);
            }
            if s.pos + group_span(s.queued.len() + frame_len) <= s.end {
                break;
            }
            // The group would not fit in the rest of this half: on to the
            // other, once every frame in it is marked done.
            if s.marked < s.other_last {
                if s.checkpointing {
                    s = self.wait(&self.changed, s);
                } else {
                    let through = s.other_last;
                    s = self.checkpoint(s, through, &checkpoint)?;
                }
                continue;
            }
            // Frames queued but not written yet go to the other half too.
            let left = if s.queued_count > 0 {
                s.queued_first - 1
            } else {
                s.last
            };
            s.pos = if s.end == HALF { HALF } else { 0 };
            s.end = s.pos + HALF;
            s.other_last = left;
            if s.marked < left && !s.checkpointing {
                s = self.checkpoint(s, left, &checkpoint)?;
            }
        }
        let seq = s.last + 1;
        if s.queued_count == 0 {
            s.queued_first = seq;
        }
        s.queued_count += 1;
        s.queued
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        s.queued.extend_from_slice(&payload);
        s.last = seq;
        let batch = s.batch;
        let mut led = 0;
        loop {
            if s.durable >= seq {
                if led > 0 && s.queued_count > 0 && s.writes.len() < DEPTH {
                    // The queued batch needs a leader of its own.
                    self.signal(s.batch);
                }
                return Ok(Some(seq));
            }
            if let Some((first, through, kind, message)) = &s.failed {
                if (*first..=*through).contains(&seq) {
                    let e = std::io::Error::new(*kind, message.clone());
                    return Err(io("writing", &self.path)(e));
                }
                if seq > *through {
                    return Ok(None); // to be made durable by the store
                }
            }
            let mine_queued = s.batch == batch && s.queued_count > 0;
            let theirs_queued = led > 0 && led <= LEAD_ON && s.queued_count > 0;
            if (mine_queued || theirs_queued) && s.writes.len() < DEPTH && !s.damaged {
                // The leader: the queued batch, one write. A leader whose
                // frame is written but not yet durable (a write before it
                // is still under way) writes what was queued meanwhile, a
                // few times: it is running already, where a waiting writer
                // would first have to be woken.
                s = self.lead(s);
                led += 1;
                continue;
            }
            s = self.wait(&self.batches[batch as usize % BATCH_SIGNALS], s);
        }
    }

    /// Writes the queued batch as a group (one write, without the lock),
    /// then notes how it ended.
    fn lead<'a>(&'a self, mut s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let body = std::mem::take(&mut s.queued);
        let count = std::mem::take(&mut s.queued_count);
        let (first, through, batch) = (s.queued_first, s.last, s.batch);
        let durable_before = s.durable;
        let at = s.pos;
        s.batch += 1;
        s.pos += group_span(body.len());
        s.writes.push_back(Write {
            batch,
            through,
            ended: None,
        });
        let file = Arc::clone(&s.file);
        drop(s);
        let group = self.group_bytes(first, count, durable_before, &body);
        let wrote = write_at(&file, &group, at);
        #[cfg(not(unix))]
        let wrote = wrote.and_then(|()| file.sync_data());
        let mut s = self.lock();
        s.written += 1;
        let ended = wrote.map_err(|e| (e.kind(), e.to_string()));
        if let Err((kind, message)) = &ended {
            // What reached the file is unknown: no group is written after
            // it (a group past a torn one would be Corrupt), and those
            // written meanwhile count for nothing.
            s.damaged = true;
            s.queued.clear();
            s.queued_count = 0;
            if s.failed.as_ref().is_none_or(|f| first < f.0) {
                s.failed = Some((first, through, *kind, message.clone()));
            }
            self.notify_all();
        }
        if let Some(w) = s.writes.iter_mut().find(|w| w.batch == batch) {
            w.ended = Some(ended);
        }
        // What is durable: the writes that ended well, oldest first, up to
        // one still under way (or failed).
        while s
            .writes
            .front()
            .is_some_and(|w| matches!(w.ended, Some(Ok(()))))
        {
            let w = s.writes.pop_front().expect("front checked");
            s.durable = w.through;
            self.signal(w.batch);
        }
        s
    }

    fn signal(&self, batch: u64) {
        self.batches[batch as usize % BATCH_SIGNALS].notify_all();
    }

    /// Runs `checkpoint(through)` without the lock (writers go on), and
    /// notes what it marked.
    fn checkpoint<'a>(
        &'a self,
        mut s: MutexGuard<'a, State>,
        through: u64,
        checkpoint: &impl Fn(u64) -> Result<()>,
    ) -> Result<MutexGuard<'a, State>> {
        s.checkpointing = true;
        drop(s);
        let done = checkpoint(through);
        let mut s = self.lock();
        s.checkpointing = false;
        if done.is_ok() {
            s.marked = s.marked.max(through);
        }
        self.changed.notify_all();
        done.map(|()| s)
    }

    /// A group as written: header, body, MAC, zeros to the next page.
    fn group_bytes(&self, first: u64, count: u32, durable_before: u64, body: &[u8]) -> Vec<u8> {
        let span = group_span(body.len()) as usize;
        let mut group = Vec::with_capacity(span);
        group.extend_from_slice(MAGIC);
        group.extend_from_slice(&first.to_le_bytes());
        group.extend_from_slice(&count.to_le_bytes());
        group.extend_from_slice(&(body.len() as u32).to_le_bytes());
        group.extend_from_slice(&durable_before.to_le_bytes());
        group.extend_from_slice(body);
        let mac = group_mac(&self.key, first, count, durable_before, body);
        group.extend_from_slice(&mac[..MAC_LEN]);
        group.resize(span, 0);
        group
    }

    fn wait<'a>(&self, on: &Condvar, s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        on.wait(s).unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every waiter (a failed write; the tests).
    fn notify_all(&self) {
        self.batches.iter().for_each(Condvar::notify_all);
        self.changed.notify_all();
    }
}

/// Decodes `bytes` as the journal's structures, and reads them as a
/// journal file (under a fixed key: frames that pass its MAC are what a
/// fuzzer cannot make, so the header checks are what this exercises).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_decode(bytes: &[u8]) {
    let _ = codec::decode::<JournalEntry>(bytes, "fuzz");
    let _ = codec::decode::<JournalMark>(bytes, "fuzz");
    let key = SecretKey::from_array([0; 32]);
    let _ = read_frames(bytes, &key, 0, Path::new("fuzz"));
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], pos: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, pos)
}

#[cfg(windows)]
fn write_at(file: &File, mut bytes: &[u8], mut pos: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !bytes.is_empty() {
        let n = file.seek_write(bytes, pos)?;
        bytes = &bytes[n..];
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
