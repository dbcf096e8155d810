//! The put journal: a put in `Immediate` mode is durable through its frame,
//! not through sled. These tests build what a crash leaves when sled has
//! lost its unflushed tail: a copy of `data/` from before some puts, beside
//! the `keys/` and the `journal` from after them. (The kill -9 harness in
//! `crash.rs` makes the same state for real, at random points.)

use crate::common;

use std::path::Path;

use common::*;
use shredvault::{ErrorKind, RecordId, Vault};

/// A vault at `to` from `data` (an older copy) and the live vault's keys and
/// journal at `live`.
fn assemble(to: &Path, data: &Path, live: &Path) {
    copy_dir(data, &to.join("data"));
    copy_dir(&live.join("keys"), &to.join("keys"));
    std::fs::copy(live.join("journal"), to.join("journal")).unwrap();
}

/// A copy of `data/` once `v` (at `dir`) has made everything durable.
fn flushed_copy(v: &Vault, dir: &Path) -> tempfile::TempDir {
    v.flush().unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dir.join("data"), copy.path());
    copy
}

#[test]
fn puts_sled_never_flushed_come_back_from_the_journal_with_their_audit_entries() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    let first = v.put(&s, "account", b"before the copy").unwrap();
    let old_data = flushed_copy(&v, dir.path());
    let later: Vec<RecordId> = (0..5)
        .map(|i| v.put(&s, "account", format!("after the copy {i}").as_bytes()))
        .collect::<Result<_, _>>()
        .unwrap();

    // The old data/ alone has lost the later puts: the journal is what
    // brings them back, not sled.
    let without = tempfile::tempdir().unwrap();
    copy_dir(old_data.path(), &without.path().join("data"));
    copy_dir(&dir.path().join("keys"), &without.path().join("keys"));
    let w = Vault::open(without.path(), &root(), None).unwrap();
    assert_eq!(
        w.get(&later[0], "account_admin").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    drop(w);

    let crashed = tempfile::tempdir().unwrap();
    assemble(crashed.path(), old_data.path(), dir.path());
    let c = Vault::open(crashed.path(), &root(), None).unwrap();
    assert_eq!(
        &c.get(&first, "account_admin").unwrap().data[..],
        b"before the copy"
    );
    for (i, r) in later.iter().enumerate() {
        let rec = c.get(r, "account_admin").unwrap();
        assert_eq!(&rec.data[..], format!("after the copy {i}").as_bytes());
    }
    c.check_record_counts().unwrap();
    // Each put's audit entry came back with it, once, in order.
    c.verify_audit().unwrap();
    let logged: Vec<RecordId> = c
        .audit_entries(Some(&s))
        .unwrap()
        .into_iter()
        .filter(|e| e.op == "put")
        .filter_map(|e| e.record)
        .collect();
    let mut want = vec![first];
    want.extend(&later);
    assert_eq!(logged, want);
    // New puts go on after them, and a reopen replays nothing twice.
    let next = c.put(&s, "account", b"after the replay").unwrap();
    drop(c);
    let c = Vault::open(crashed.path(), &root(), None).unwrap();
    assert_eq!(
        &c.get(&next, "account_admin").unwrap().data[..],
        b"after the replay"
    );
    let puts = c
        .audit_entries(Some(&s))
        .unwrap()
        .into_iter()
        .filter(|e| e.op == "put")
        .count();
    assert_eq!(puts, 7);
    c.verify_audit().unwrap();
}

#[test]
fn a_subject_erased_after_its_puts_stays_erased_when_an_old_copy_meets_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let alice = v.create_subject(&[("email", "alice@example.com")]).unwrap();
    let bob = v.create_subject(&[]).unwrap();
    let old_data = flushed_copy(&v, dir.path());
    let a = v.put(&alice, "account", b"alice's data").unwrap();
    let b = v.put(&bob, "account", b"bob's data").unwrap();
    v.erase_subject(&alice).unwrap();

    let restored = tempfile::tempdir().unwrap();
    assemble(restored.path(), old_data.path(), dir.path());
    // The erasure was a durable point the copy lacks: no crash leaves such
    // a data/, so it is refused as a stale copy until an operator accepts
    // it (which loses nothing the journal holds).
    let err = Vault::open(restored.path(), &root(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("older than"), "{err}");
    Vault::accept_stale_data(restored.path(), &root()).unwrap();
    let r = Vault::open(restored.path(), &root(), None).unwrap();
    assert_eq!(
        r.get(&a, "account_admin").unwrap_err().kind(),
        ErrorKind::Erased
    );
    assert_eq!(r.find_subject("email", "alice@example.com").unwrap(), None);
    assert_eq!(&r.get(&b, "account_admin").unwrap().data[..], b"bob's data");
    r.check_record_counts().unwrap();
    r.verify_audit().unwrap();
    drop(r);
    // Nor does alice's ciphertext linger readable anywhere: her key is gone.
    assert_absent(restored.path(), b"alice's data", "alice's plaintext");
}

#[test]
fn a_frame_damaged_before_acknowledged_puts_is_corrupt_not_silently_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    let old_data = flushed_copy(&v, dir.path());
    for i in 0..3 {
        v.put(&s, "account", format!("put {i}").as_bytes()).unwrap();
    }
    let crashed = tempfile::tempdir().unwrap();
    assemble(crashed.path(), old_data.path(), dir.path());
    // One writer: each frame is a group of its own on a 4 KiB boundary; damage the first of the three.
    let path = crashed.path().join("journal");
    let mut bytes = std::fs::read(&path).unwrap();
    let first = (0..bytes.len())
        .step_by(4096)
        .filter(|&at| &bytes[at..at + 4] == b"SVJ2")
        .min_by_key(|&at| u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap()))
        .unwrap();
    bytes[first + 100] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = Vault::open(crashed.path(), &root(), None).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("journal"), "{err}");
}

/// A replay a crash cut short after the chain took its audit entries but
/// before the mark moved: the `'j'` marker says how many it took, so none
/// is logged twice. (Built by replaying fully, then putting the old mark
/// back by hand, with and without the marker.)
#[test]
fn a_replay_cut_short_logs_no_entry_twice() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    let r0 = v.put(&s, "account", b"first").unwrap();
    let old_data = flushed_copy(&v, dir.path());
    // Reads push the puts' entries past where the old chain ends, so a
    // replay renumbers them.
    for _ in 0..5 {
        v.get(&r0, "account_admin").unwrap();
    }
    for i in 0..3 {
        v.put(&s, "account", format!("later {i}").as_bytes())
            .unwrap();
    }
    let pristine = tempfile::tempdir().unwrap();
    assemble(pristine.path(), old_data.path(), dir.path());
    let (old_mark, chain_at_copy) = {
        let db = raw_sled(pristine.path());
        let tree = db.open_tree("vault").unwrap();
        let mark = tree.get(b"J").unwrap().expect("a mark").to_vec();
        let chain = {
            let w = tempfile::tempdir().unwrap();
            copy_dir(old_data.path(), &w.path().join("data"));
            copy_dir(&dir.path().join("keys"), &w.path().join("keys"));
            drop(db);
            let o = Vault::open(w.path(), &root(), None).unwrap();
            o.audit_entries(None).unwrap().len() as u64
        };
        (mark, chain)
    };
    // A JournalMark is the format byte and the seq as a varint (one byte
    // under 251); a JournalReplay is that and the chain's length.
    assert_eq!(old_mark.len(), 2, "{old_mark:?}");
    assert!(chain_at_copy < 251);
    let puts = |dir: &Path| {
        let v = Vault::open(dir, &root(), None).unwrap();
        v.verify_audit().unwrap();
        v.audit_entries(Some(&s))
            .unwrap()
            .into_iter()
            .filter(|e| e.op == "put")
            .count()
    };
    for with_marker in [true, false] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        assert_eq!(puts(work.path()), 4, "a full replay");
        {
            let db = raw_sled(work.path());
            let tree = db.open_tree("vault").unwrap();
            tree.insert(b"J", old_mark.clone()).unwrap();
            if with_marker {
                let marker = [1u8, old_mark[1], chain_at_copy as u8];
                tree.insert(b"j", &marker[..]).unwrap();
            }
            db.flush().unwrap();
        }
        let after = puts(work.path());
        if with_marker {
            assert_eq!(after, 4, "the marker keeps the replay from logging twice");
        } else {
            // What the marker is for: without it the same state logs the
            // three recovered puts again.
            assert_eq!(after, 7);
        }
    }
}
