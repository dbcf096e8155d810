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
//! `journal.tmp`, fsynced, renamed, directory fsynced). Frames start on
//! 4 KiB boundaries, one after the other from offset 0:
//!
//! ```text
//! "SVJ1" | seq u64 LE | len u32 LE | payload (len bytes) | MAC (16) | zeros to the next 4 KiB
//! MAC = HMAC-SHA256(journal key, "sv journal frame v1" ‖ seq ‖ payload), each
//!       part length-prefixed (`crypto::mac`), cut to 16 bytes
//! payload = JournalEntry (codec): the sled inserts of one put (its record
//!           and its day-index entry) and its encoded audit entry
//! ```
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
//! 2. It writes its frame (seq = last + 1) at the current offset with
//!    `O_DSYNC`; when that returns, the put is durable and acknowledged.
//! 3. Every durable point ([`Store::sync`](crate::store::Store::sync)) records in
//!    sled `'J'` = the last frame seq written (a `JournalMark`), then flushes
//!    and fsyncs: every frame up to it has its effects in sled. Frames are
//!    written only after their effects are in sled's memory, so a mark never
//!    covers a frame whose inserts the flush could miss.
//! 4. When the next frame does not fit before the end, a durable point
//!    marks every frame done and writing starts again at offset 0.
//!
//! # Group commit
//!
//! Concurrent puts share writes. A put takes the next seq and the next
//! place in the file under the journal's lock and queues its frame. If no
//! write is under way it becomes the leader: it takes every queued frame
//! (contiguous in the file, seqs in order), writes them with one `O_DSYNC`
//! write without the lock, and wakes the others; frames queued meanwhile
//! wait for the next leader, which is one of their own writers. A put is
//! acknowledged only when the write that held its frame returned, and
//! writes never overlap, so what a crash tears is only frames nobody was
//! told about: the run read at open ends at the first torn frame, and every
//! frame after it is unacknowledged too. A wrap waits until no frame is
//! queued or being written. A failed write fails the puts whose frames it
//! held (each is undone by the vault), marks the journal damaged, and the
//! puts queued behind it become durable through the store instead
//! (`append` returns `None`, as for a frame too big).
//!
//! At open, frames are read from offset 0 while each one is whole (magic,
//! length, MAC) and its seq is one more than the one before: a torn frame,
//! zeros, or an older frame left from before the last wrap end the run. The
//! frames past the mark go to the vault (`Store::recover`), which replays
//! them (`vault::durability`): each insert goes in only where the key
//! is absent (a record a later erasure turned into a husk stays a husk), and
//! their audit entries, in their original order, are appended to the chain
//! unless the chain recovered by sled already reaches them. Then a durable
//! point marks them done, and writing starts again at offset 0. Replaying
//! is idempotent; a `JournalReplay` marker (`'j'`, written before the first
//! recovered audit entry) lets a replay cut short by a crash know how many
//! of its entries the chain already took, so none is logged twice.
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
use crate::domains::journal_frame_mac as frame_mac;
use crate::error::{Error, Result};

/// The journal file's size: 1,024 frames of a 1 KiB record between two
/// wraps (a wrap costs one durable point).
pub(crate) const JOURNAL_SIZE: u64 = 4 << 20;
const PAGE: u64 = 4096;
const MAGIC: &[u8; 4] = b"SVJ1";
/// Magic, seq and length.
const HEADER: usize = 16;
const MAC_LEN: usize = 16;

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
    /// Signalled when a write of queued frames ends.
    written: Condvar,
}

struct State {
    /// Open for writing with `O_DSYNC` (shared with the leader's write,
    /// made without the lock).
    file: Arc<File>,
    /// Where the next frame goes (after those queued).
    pos: u64,
    /// The last frame seq given out (written, queued, or replayed).
    last: u64,
    /// The file is not a whole journal (cut short, grown, or a write to it
    /// failed): nothing more is written to it until it is made anew once
    /// what it held is marked done (`start`).
    damaged: bool,
    /// Frames given a seq and a place, waiting for the next write.
    queued: Vec<u8>,
    /// Where the first queued frame goes.
    queued_at: u64,
    /// A leader is writing frames (the lock is not held meanwhile).
    writing: bool,
    /// Every frame up to this seq is on the disk.
    durable: u64,
    /// A failed write: the last seq it held and what went wrong. Frames up
    /// to it failed; those after it were never written.
    failed: Option<(u64, std::io::ErrorKind, String)>,
    /// Writes made (for the tests of group commit).
    writes: u64,
}

/// The bytes a frame of `payload_len` takes, padded to whole pages.
fn frame_span(payload_len: usize) -> u64 {
    let len = (HEADER + payload_len + MAC_LEN) as u64;
    len.div_ceil(PAGE) * PAGE
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

/// The frames at the start of `bytes`, while each is whole and follows the
/// one before. What ends the run is a torn frame (a crash while writing
/// it), zeros, or a frame left from before the last wrap (an older seq);
/// a whole frame with a *newer* seq further on means the one that ended
/// the run was damaged after it was written: `Corrupt`, since replaying
/// only the frames before it would drop acknowledged puts without a word.
/// (Frames from before the last wrap are at most `mark`: a wrap comes after
/// a durable point that marked them done. A frame past `mark` and past the
/// run can only have been written after the run's end, by this run.)
fn read_frames(bytes: &[u8], key: &SecretKey, mark: u64, path: &Path) -> Result<Vec<Frame>> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut pos = 0usize;
    while let Some(frame) = bytes.get(pos..).and_then(|rest| parse_frame(rest, key)) {
        if frames
            .last()
            .is_some_and(|prev| frame.0.seq != prev.seq + 1)
        {
            break; // a frame left from before the last wrap
        }
        pos += frame.1 as usize;
        frames.push(frame.0);
    }
    let last = frames.last().map_or(0, |f| f.seq).max(mark);
    let mut page = pos + PAGE as usize;
    while page < bytes.len() {
        if let Some((later, _)) = parse_frame(&bytes[page..], key) {
            if later.seq > last {
                return Err(Error::corrupt(format!(
                    "{}: the frame at offset {pos} is damaged, and frame {} after it holds a put that was acknowledged (move the file away to open the vault without the puts it holds)",
                    path.display(),
                    later.seq
                )));
            }
        }
        page += PAGE as usize;
    }
    Ok(frames)
}

/// The frame at the start of `rest` and the bytes it spans, if whole.
fn parse_frame(rest: &[u8], key: &SecretKey) -> Option<(Frame, u64)> {
    let (head, body) = rest.split_first_chunk::<HEADER>()?;
    if &head[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(head[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(head[12..16].try_into().ok()?) as usize;
    let payload = body.get(..len)?;
    let mac = body.get(len..len + MAC_LEN)?;
    let expected = frame_mac(key, seq, payload);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..MAC_LEN], mac)) {
        return None;
    }
    // A whole frame whose payload does not decode was written by a vault
    // that knew the key: damage after the MAC is beyond this check, so it
    // ends the run like a torn frame.
    let entry: JournalEntry = codec::decode(payload, "journal frame").ok()?;
    Some((Frame { seq, entry }, frame_span(len)))
}

impl Journal {
    /// Opens `dir/journal` (making it when missing) and returns the frames
    /// it holds, for the caller to replay those past `mark` (sled's).
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
        let last = frames.last().map(|f| f.seq).unwrap_or(0);
        Ok((
            Journal {
                path,
                key,
                state: Mutex::new(State {
                    file: Arc::new(file),
                    pos: 0,
                    last,
                    damaged,
                    queued: Vec::new(),
                    queued_at: 0,
                    writing: false,
                    durable: last,
                    failed: None,
                    writes: 0,
                }),
                written: Condvar::new(),
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
        s.last = s.last.max(mark);
        s.durable = s.last;
        Ok(())
    }

    /// The last frame seq written: the mark a durable point records.
    pub fn last_seq(&self) -> u64 {
        self.lock().last
    }

    /// Writes one frame, durably (with others queued meanwhile: see
    /// "Group commit"). `None` when the entry would not fit the journal at
    /// all (a huge record) or the journal is damaged: the caller makes the
    /// put durable through the store instead. When the frame does not fit
    /// before the end, `checkpoint(last)` is called first (with the journal
    /// held and no frame queued or being written) to mark every frame done,
    /// and writing starts again at offset 0.
    pub fn append(
        &self,
        entry: &JournalEntry,
        checkpoint: impl FnOnce(u64) -> Result<()>,
    ) -> Result<Option<u64>> {
        let payload = codec::encode(entry)?;
        let span = frame_span(payload.len());
        if span > JOURNAL_SIZE / 4 {
            return Ok(None);
        }
        let mut s = self.lock();
        let mut checkpoint = Some(checkpoint);
        loop {
            if s.damaged {
                return Ok(None);
            }
            if s.pos + span <= JOURNAL_SIZE {
                break;
            }
            if s.writing || !s.queued.is_empty() {
                s = self.wait(s);
                continue;
            }
            let checkpoint = checkpoint.take().expect("a wrap happens once per append");
            checkpoint(s.last)?;
            s.pos = 0;
        }
        let seq = s.last + 1;
        if s.queued.is_empty() {
            s.queued_at = s.pos;
        }
        let start = s.queued.len();
        s.queued.reserve(span as usize);
        s.queued.extend_from_slice(MAGIC);
        s.queued.extend_from_slice(&seq.to_le_bytes());
        s.queued
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        s.queued.extend_from_slice(&payload);
        s.queued
            .extend_from_slice(&frame_mac(&self.key, seq, &payload)[..MAC_LEN]);
        s.queued.resize(start + span as usize, 0);
        s.pos += span;
        s.last = seq;
        loop {
            if s.durable >= seq {
                return Ok(Some(seq));
            }
            if let Some((through, kind, message)) = &s.failed {
                if seq <= *through {
                    let e = std::io::Error::new(*kind, message.clone());
                    return Err(io("writing", &self.path)(e));
                }
                return Ok(None); // queued behind the failed write
            }
            if s.writing {
                s = self.wait(s);
                continue;
            }
            // The leader: every queued frame (ours among them), one write.
            let frames = std::mem::take(&mut s.queued);
            let at = s.queued_at;
            let through = s.last;
            let file = Arc::clone(&s.file);
            s.writing = true;
            drop(s);
            let wrote = write_at(&file, &frames, at);
            #[cfg(not(unix))]
            let wrote = wrote.and_then(|()| file.sync_data());
            s = self.lock();
            s.writing = false;
            s.writes += 1;
            match wrote {
                Ok(()) => s.durable = through,
                Err(e) => {
                    // What reached the file is unknown: no frame is written
                    // after it (a frame past a torn one would never be read
                    // back).
                    s.damaged = true;
                    s.queued.clear();
                    s.failed = Some((through, e.kind(), e.to_string()));
                }
            }
            self.written.notify_all();
        }
    }

    fn wait<'a>(&self, s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.written.wait(s).unwrap_or_else(|p| p.into_inner())
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
