//! Damaged files: random byte flips and truncations of the files under
//! `data/` and of the keystore. Opening and reading must give a clean error
//! (`Corrupt`, or `Io` where the file system is the problem) for what is
//! damaged, never a panic, never wrong plaintext; what is intact reads back.
//! And a snapshot that sled was interrupted while writing does not stop an
//! open.

use crate::common;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::*;
use shredvault::{ErrorKind, RecordId, Vault};

fn build(dir: &Path) -> HashMap<RecordId, Vec<u8>> {
    let v = new_vault(dir);
    let mut records = HashMap::new();
    for i in 0..40 {
        let s = v
            .create_subject(&[("email", &format!("t{i}@example.com"))])
            .unwrap();
        for j in 0..5 {
            let data = format!("tamper-record-{i}-{j}-{}", "x".repeat(j * 200)).into_bytes();
            records.insert(v.put(&s, "account", &data).unwrap(), data);
        }
    }
    records
}

/// Opens and reads everything; panics (the test's failure) only on a
/// panic inside the vault or on wrong plaintext.
fn check(dir: &Path, records: &HashMap<RecordId, Vec<u8>>, what: &str) -> (usize, usize) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let v = match Vault::open(dir, &root(), None) {
            Ok(v) => v,
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Io),
                    "{what}: open failed with {e}"
                );
                return (0, 0);
            }
        };
        let (mut good, mut bad) = (0, 0);
        for (r, data) in records {
            match v.get(r, "billing") {
                Ok(rec) => {
                    assert_eq!(&rec.data[..], &data[..], "{what}: wrong plaintext for {r}");
                    good += 1;
                }
                Err(e) => {
                    assert!(
                        matches!(
                            e.kind(),
                            ErrorKind::Corrupt | ErrorKind::NotFound | ErrorKind::Io
                        ),
                        "{what}: record {r}: {e}"
                    );
                    bad += 1;
                }
            }
        }
        (good, bad)
    }));
    outcome.unwrap_or_else(|_| panic!("{what}: the vault panicked"))
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    all_files(dir).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn flipped_and_truncated_data_files_fail_cleanly() {
    let pristine = tempfile::tempdir().unwrap();
    let records = build(pristine.path());
    let seed = std::env::var("SV_TAMPER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001u64);
    let mut rng = Rng(seed | 1);
    let data_files: Vec<_> = files(&pristine.path().join("data"))
        .into_iter()
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    assert!(!data_files.is_empty());
    let rounds: u64 = std::env::var("SV_TAMPER_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut total_good = 0;
    for round in 0..rounds {
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let original = &data_files[rng.below(data_files.len() as u64) as usize];
        let target = work
            .path()
            .join(original.strip_prefix(pristine.path()).unwrap());
        let mut bytes = std::fs::read(&target).unwrap();
        let what = if round % 3 == 2 {
            let len = rng.below(bytes.len() as u64) as usize;
            bytes.truncate(len);
            format!("round {round}: {} truncated to {len}", target.display())
        } else {
            let flips = 1 + rng.below(8);
            for _ in 0..flips {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            format!(
                "round {round}: {} with {flips} bits flipped",
                target.display()
            )
        };
        std::fs::write(&target, &bytes).unwrap();
        let (good, _) = check(work.path(), &records, &what);
        total_good += good;
    }
    // Most damage hits a part of the log no record needs.
    assert!(total_good > 0);
}

#[test]
fn damaged_or_truncated_keystore_is_corrupt_and_erases_nothing() {
    let pristine = tempfile::tempdir().unwrap();
    let records = build(pristine.path());
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let ks_len = std::fs::metadata(pristine.path().join("keys/keystore"))
        .unwrap()
        .len();
    for round in 0..20 {
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let path = work.path().join("keys/keystore");
        let mut bytes = std::fs::read(&path).unwrap();
        let what = if round % 2 == 0 {
            // Past the header: whole slots lost at the end.
            let len = 128 + rng.below(ks_len - 128) as usize;
            bytes.truncate(len);
            format!("round {round}: keystore truncated to {len}")
        } else {
            let at = 128 + rng.below(ks_len - 128) as usize;
            bytes[at] ^= 0x10;
            format!("round {round}: keystore byte {at} flipped")
        };
        std::fs::write(&path, &bytes).unwrap();
        // Either the vault opens and every record reads or is Corrupt, or
        // (a vault-wide key's slot was hit) it refuses to open, cleanly.
        let (good, bad) = check(work.path(), &records, &what);
        assert!(good + bad == records.len() || good + bad == 0, "{what}");
        // Reopen: the repair pass must not have erased the subjects whose
        // key slot was damaged or cut off (they stay Corrupt, not Erased).
        let (good2, bad2) = check(work.path(), &records, &what);
        assert_eq!(
            (good2, bad2),
            (good, bad),
            "{what}: the damage grew on reopen"
        );
    }
}

#[test]
fn an_interrupted_sled_snapshot_does_not_stop_open() {
    let dir = tempfile::tempdir().unwrap();
    let records = build(dir.path());
    std::fs::write(
        dir.path().join("data/snap.FFFFFFFFFFFFFFF0.generating"),
        b"half a snapshot",
    )
    .unwrap();
    let (good, bad) = check(dir.path(), &records, "leftover snapshot");
    assert_eq!((good, bad), (records.len(), 0));
    assert!(!dir
        .path()
        .join("data/snap.FFFFFFFFFFFFFFF0.generating")
        .exists());
}
