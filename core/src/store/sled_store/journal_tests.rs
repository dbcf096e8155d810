//! The put journal's tests (`journal.rs`).

use std::path::{Path, PathBuf};

use super::{Frame, Journal, JournalEntry, JOURNAL_SIZE, PAGE};
use crate::crypto::SecretKey;
use crate::error::Result;

fn entry(n: u8) -> JournalEntry {
    JournalEntry {
        inserts: vec![(vec![b'R', n].into(), vec![n; 100 + n as usize].into())],
        audit: vec![n; 40],
    }
}

fn key() -> SecretKey {
    SecretKey::from_array([7; 32])
}

/// A journal in a fresh directory holding frames 1 to `n`, closed;
/// and its path.
fn written(n: u8) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    for i in 1..=n {
        j.append(&entry(i), no_wrap).unwrap();
    }
    let path = dir.path().join("journal");
    (dir, path)
}

fn no_wrap(_: u64) -> Result<()> {
    panic!("no wrap expected")
}

/// Opens, then starts as the vault does after its durable point.
fn open(dir: &Path, mark: u64) -> (Journal, Vec<Frame>) {
    let (j, frames) = Journal::open(dir, key(), mark).unwrap();
    j.start(mark).unwrap();
    (j, frames)
}

/// Frames queued while a write is under way go out in one write, and
/// all come back in order.
#[test]
fn concurrent_puts_share_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    let j = std::sync::Arc::new(j);
    // As if a leader were writing: the appenders queue behind it.
    j.lock().writing = true;
    let threads: Vec<_> = (1..=8u8)
        .map(|n| {
            let j = std::sync::Arc::clone(&j);
            std::thread::spawn(move || j.append(&entry(n), no_wrap).unwrap().unwrap())
        })
        .collect();
    while j.lock().last < 8 {
        std::thread::yield_now();
    }
    {
        let mut s = j.lock();
        s.writing = false;
        j.written.notify_all();
    }
    let mut seqs: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
    assert_eq!(j.lock().writes, 1, "one write for the eight frames");
    drop(j);
    let (_, frames) = Journal::open(dir.path(), key(), 0).unwrap();
    assert_eq!(frames.len(), 8);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.seq, i as u64 + 1);
    }
}

/// Many writers across several wraps: every acknowledged frame is in
/// the file or covered by a checkpoint, and a wrap sees no frame
/// queued or being written.
#[test]
fn concurrent_puts_across_wraps() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    let j = std::sync::Arc::new(j);
    let marked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let per_thread = (JOURNAL_SIZE / PAGE) as usize; // 8 threads: 8 wraps
    let threads: Vec<_> = (0..8u8)
        .map(|n| {
            let j = std::sync::Arc::clone(&j);
            let marked = std::sync::Arc::clone(&marked);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for _ in 0..per_thread {
                    let seq = j
                        .append(&entry(n), |through| {
                            marked.store(through, std::sync::atomic::Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap()
                        .unwrap();
                    acked.push(seq);
                }
                acked
            })
        })
        .collect();
    let mut acked: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    acked.sort_unstable();
    let total = (per_thread * 8) as u64;
    assert_eq!(acked, (1..=total).collect::<Vec<u64>>());
    let mark = marked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(mark > 0 && mark < total);
    drop(j);
    let (_, frames) = Journal::open(dir.path(), key(), mark).unwrap();
    let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (mark + 1..=total).collect::<Vec<u64>>());
}

#[test]
fn frames_come_back_in_order_with_what_they_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (j, frames) = open(dir.path(), 0);
    assert!(frames.is_empty());
    assert_eq!(
        std::fs::metadata(dir.path().join("journal")).unwrap().len(),
        JOURNAL_SIZE
    );
    for n in 1..=5 {
        assert_eq!(j.append(&entry(n), no_wrap).unwrap(), Some(n as u64));
    }
    drop(j);
    let (j, frames) = Journal::open(dir.path(), key(), 0).unwrap();
    let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    for f in &frames {
        assert_eq!(f.entry, entry(f.seq as u8));
    }
    // Seqs go on from the last frame, or from a mark past it.
    j.start(0).unwrap();
    assert_eq!(j.last_seq(), 5);
    j.start(9).unwrap();
    assert_eq!(j.append(&entry(1), no_wrap).unwrap(), Some(10));
}

#[test]
fn a_wrap_marks_every_frame_done_first_and_older_frames_end_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    let fit = JOURNAL_SIZE / PAGE;
    for n in 1..=fit {
        j.append(&entry(1), no_wrap).unwrap();
        assert_eq!(j.last_seq(), n);
    }
    let mut marked = Vec::new();
    for _ in 0..3 {
        j.append(&entry(2), |through| {
            marked.push(through);
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(marked, [fit], "one wrap, marking every frame before it");
    drop(j);
    // The run is the three frames after the wrap; the rest are older.
    let (_, frames) = Journal::open(dir.path(), key(), fit).unwrap();
    let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [fit + 1, fit + 2, fit + 3]);
}

#[test]
fn a_torn_last_frame_ends_the_run_and_a_damaged_one_before_acknowledged_puts_is_corrupt() {
    let (dir, path) = written(5);
    let good = std::fs::read(&path).unwrap();
    // The last frame torn (cut off in the middle): the four before it.
    let mut torn = good.clone();
    torn[4 * PAGE as usize + 60..5 * PAGE as usize].fill(0);
    std::fs::write(&path, &torn).unwrap();
    let (_, frames) = Journal::open(dir.path(), key(), 0).unwrap();
    assert_eq!(frames.len(), 4);
    // Frame 2 damaged: frames 3 to 5 would be lost without a word.
    for at in [0usize, 5, 13, 16, 40, 16 + 110] {
        let mut bad = good.clone();
        bad[PAGE as usize + at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let err = Journal::open(dir.path(), key(), 0).err().expect("refused");
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        // ... unless the vault marked them done already.
        let (_, frames) = Journal::open(dir.path(), key(), 5).unwrap();
        assert_eq!(frames.len(), 1);
    }
    // Another key (another vault's journal) takes nothing.
    std::fs::write(&path, &good).unwrap();
    let (_, frames) = Journal::open(dir.path(), SecretKey::from_array([8; 32]), 0).unwrap();
    assert!(frames.is_empty());
}

#[test]
fn a_short_file_is_read_then_made_anew_and_never_written_before() {
    let (dir, path) = written(3);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..3 * PAGE as usize]).unwrap();
    let (j, frames) = Journal::open(dir.path(), key(), 0).unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(j.append(&entry(4), no_wrap).unwrap(), None);
    j.start(3).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), JOURNAL_SIZE);
    assert_eq!(j.append(&entry(4), no_wrap).unwrap(), Some(4));
}

#[test]
fn an_entry_too_big_for_the_journal_is_left_to_sled() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    let big = JournalEntry {
        inserts: vec![(vec![b'R'].into(), vec![1; JOURNAL_SIZE as usize / 4].into())],
        audit: Vec::new(),
    };
    assert_eq!(j.append(&big, no_wrap).unwrap(), None);
    assert_eq!(j.last_seq(), 0);
}
