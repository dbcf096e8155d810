//! The put journal's tests (`journal.rs`).

use std::path::{Path, PathBuf};

use super::{Frame, Journal, JournalEntry, Write, DEPTH, HALF, JOURNAL_SIZE, PAGE};
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

/// Frames queued while every write slot is taken go out in one write,
/// and all come back in order.
#[test]
fn concurrent_puts_share_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    let j = std::sync::Arc::new(j);
    // As if leaders were writing: the appenders queue behind them.
    for batch in 0..DEPTH as u64 {
        j.lock().writes.push_back(Write {
            batch: u64::MAX - batch,
            through: 0,
            ended: None,
        });
    }
    let threads: Vec<_> = (1..=8u8)
        .map(|n| {
            let j = std::sync::Arc::clone(&j);
            std::thread::spawn(move || j.append(&entry(n), no_wrap).unwrap().unwrap())
        })
        .collect();
    while j.lock().last < 8 {
        std::thread::yield_now();
    }
    j.lock().writes.clear();
    j.notify_all();
    let mut seqs: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
    assert_eq!(j.lock().written, 1, "one write for the eight frames");
    drop(j);
    let (_, frames) = Journal::open(dir.path(), key(), 0).unwrap();
    assert_eq!(frames.len(), 8);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.seq, i as u64 + 1);
        assert_eq!(f.entry, entry(f.entry.audit[0]));
    }
}

/// Many writers across many half switches: every acknowledged frame is
/// in the file or covered by a checkpoint.
#[test]
fn concurrent_puts_across_wraps() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    let j = std::sync::Arc::new(j);
    let marked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let per_thread = (JOURNAL_SIZE / PAGE) as usize;
    let threads: Vec<_> = (0..8u8)
        .map(|n| {
            let j = std::sync::Arc::clone(&j);
            let marked = std::sync::Arc::clone(&marked);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for _ in 0..per_thread {
                    let seq = j
                        .append(&entry(n), |through| {
                            marked.fetch_max(through, std::sync::atomic::Ordering::SeqCst);
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

/// The durable point for the half just left runs while other writers go
/// on writing into the new half: a wrap stops nobody.
#[test]
fn writers_go_on_while_the_half_left_is_marked_done() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    let per_half = HALF / PAGE; // one writer: a frame per group, a group per page
    for _ in 0..per_half {
        j.append(&entry(1), no_wrap).unwrap();
    }
    let j = std::sync::Arc::new(j);
    let (entered, wait_entered) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let switcher = {
        let j = std::sync::Arc::clone(&j);
        std::thread::spawn(move || {
            j.append(&entry(2), |through| {
                entered.send(through).unwrap();
                released.lock().unwrap().recv().unwrap();
                Ok(())
            })
            .unwrap()
        })
    };
    assert_eq!(
        wait_entered.recv().unwrap(),
        per_half,
        "marks the half left"
    );
    // Meanwhile, others write into the new half and are acknowledged.
    for n in 0..10 {
        assert_eq!(
            j.append(&entry(3), no_wrap).unwrap(),
            Some(per_half + 1 + n)
        );
    }
    release.send(()).unwrap();
    assert_eq!(switcher.join().unwrap(), Some(per_half + 11));
    drop(j);
    // Read back across both halves, from any mark.
    for mark in [0, 100, per_half, per_half + 5] {
        let (_, frames) = Journal::open(dir.path(), key(), mark).unwrap();
        let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, (mark + 1..=per_half + 11).collect::<Vec<u64>>());
    }
}

/// A durable point that failed when writing left a half leaves the half
/// unmarked: the next switch back to it runs the durable point first.
#[test]
fn a_failed_durable_point_is_run_again_before_its_half_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    let per_half = HALF / PAGE;
    for _ in 0..per_half {
        j.append(&entry(1), no_wrap).unwrap();
    }
    let err = j
        .append(&entry(2), |_| {
            Err(crate::error::Error::internal("no space"))
        })
        .expect_err("the put fails with its durable point");
    assert!(err.to_string().contains("no space"), "{err}");
    assert_eq!(j.last_seq(), per_half, "no seq given to the failed put");
    for _ in 0..per_half {
        j.append(&entry(1), no_wrap).unwrap();
    }
    let mut marked = Vec::new();
    let marked_ref = std::sync::Mutex::new(&mut marked);
    j.append(&entry(2), |through| {
        marked_ref.lock().unwrap().push(through);
        Ok(())
    })
    .unwrap();
    assert_eq!(marked, [per_half, 2 * per_half]);
}

/// A journal written by version 1 (each frame alone, padded to a page) is
/// read back.
#[test]
fn a_version_1_journal_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; JOURNAL_SIZE as usize];
    for seq in 1..=3u64 {
        let payload = crate::codec::encode(&entry(seq as u8)).unwrap();
        let at = (seq - 1) as usize * PAGE as usize;
        let mut frame = b"SVJ1".to_vec();
        frame.extend_from_slice(&seq.to_le_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&payload);
        frame.extend_from_slice(&crate::domains::journal_frame_mac(&key(), seq, &payload)[..16]);
        bytes[at..at + frame.len()].copy_from_slice(&frame);
    }
    std::fs::write(dir.path().join("journal"), &bytes).unwrap();
    let (_, frames) = Journal::open(dir.path(), key(), 1).unwrap();
    let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(frames[1].entry, entry(3));
}

/// Writes under way together: a crash may tear one and keep a later one
/// whole; the later one was never acknowledged (acknowledgements go in
/// order), so it ends the run quietly. A whole group written after the
/// missing frame was acknowledged is `Corrupt`.
#[test]
fn a_group_written_beside_a_torn_one_is_dropped_and_one_written_after_it_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), 0);
    let body = |seqs: std::ops::RangeInclusive<u8>| {
        let mut body = Vec::new();
        for n in seqs {
            let payload = crate::codec::encode(&entry(n)).unwrap();
            body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            body.extend_from_slice(&payload);
        }
        body
    };
    let file = |third_durable_before: u64| {
        let mut bytes = vec![0u8; JOURNAL_SIZE as usize];
        let mut at = 0;
        for (first, seqs, before) in [
            (1, 1..=2, 0),
            (3, 3..=4, 2),
            (5, 5..=5, third_durable_before),
        ] {
            let n = seqs.clone().count() as u32;
            let g = j.group_bytes(first, n, before, &body(seqs));
            bytes[at..at + g.len()].copy_from_slice(&g);
            at += g.len();
        }
        bytes
    };
    let path = dir.path().join("journal");
    // Whole: all five.
    std::fs::write(&path, file(2)).unwrap();
    assert_eq!(Journal::open(dir.path(), key(), 0).unwrap().1.len(), 5);
    // The second group torn, the third written beside it: frames 1 and 2.
    let mut torn = file(2);
    torn[PAGE as usize + 100] ^= 1;
    std::fs::write(&path, &torn).unwrap();
    let (_, frames) = Journal::open(dir.path(), key(), 0).unwrap();
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2]);
    // The third written after frame 3 was acknowledged: Corrupt.
    let mut damaged = file(4);
    damaged[PAGE as usize + 100] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    let err = Journal::open(dir.path(), key(), 0).err().expect("refused");
    assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
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
    let fit = JOURNAL_SIZE / PAGE; // both halves, a frame a page
    let mut marked = Vec::new();
    let marked_ref = std::sync::Mutex::new(&mut marked);
    for n in 1..=fit + 3 {
        j.append(&entry(1), |through| {
            marked_ref.lock().unwrap().push(through);
            Ok(())
        })
        .unwrap();
        assert_eq!(j.last_seq(), n);
    }
    assert_eq!(marked, [fit / 2, fit], "a durable point for each half left");
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
        assert!(frames.is_empty());
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
