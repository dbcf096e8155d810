//! Complete erasure by root-key rotation: every live key re-wrapped under
//! the new root key, the blind index rebuilt, and a kill -9 at any point
//! leaves a vault that opens with the old key or the new one, never neither.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use shredvault::{ErrorKind, RecordId, RootKey, SubjectId, Vault};

fn new_root() -> RootKey {
    RootKey::from_bytes(&[0xa7; 32]).unwrap()
}

#[test]
fn rotation_rewraps_every_key_and_the_old_key_no_longer_opens() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[("email", "ivy@example.com")]).unwrap();
    let r = v.put(&s, "account", b"ivy's account").unwrap();
    let u = v.put(&s, "usage_log", b"ivy's log").unwrap(); // has a day key
    let gone = v.create_subject(&[("email", "jay@example.com")]).unwrap();
    v.put(&gone, "usage_log", b"jay").unwrap();
    v.erase_subject(&gone).unwrap();
    let public_key = v.receipt_public_key().unwrap();
    let old_keystore = std::fs::read(dir.path().join("keys/keystore")).unwrap();

    let mut calls = 0;
    let mut last = (0, 0);
    v.rotate_root_key(&new_root(), &mut |done, total| {
        calls += 1;
        last = (done, total);
    })
    .unwrap();
    assert!(calls > 0 && last.0 == last.1);
    // The same handle goes on working, identifiers included.
    assert_eq!(&v.get(&r, "billing").unwrap().data[..], b"ivy's account");
    assert_eq!(v.find_subject("email", "ivy@example.com").unwrap(), Some(s));
    let s2 = v.create_subject(&[("email", "kim@example.com")]).unwrap();
    assert_eq!(
        v.rotate_root_key(&new_root(), &mut |_, _| {})
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    drop(v);

    let err = Vault::open(dir.path(), &root(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey);
    assert!(err.to_string().contains("re-wrapped"), "{err}");
    let v = Vault::open(dir.path(), &new_root(), None).unwrap();
    assert_eq!(&v.get(&r, "billing").unwrap().data[..], b"ivy's account");
    assert_eq!(&v.get(&u, "security").unwrap().data[..], b"ivy's log");
    assert_eq!(v.find_subject("email", "ivy@example.com").unwrap(), Some(s));
    assert_eq!(
        v.find_subject("email", "kim@example.com").unwrap(),
        Some(s2)
    );
    assert_eq!(v.find_subject("email", "jay@example.com").unwrap(), None);
    // The audit chain and the receipt key survive the rotation.
    v.verify_audit().unwrap();
    assert_eq!(v.receipt_public_key().unwrap(), public_key);
    // Not one wrapped key of the old file is left in the new one.
    let new_keystore = std::fs::read(dir.path().join("keys/keystore")).unwrap();
    for (i, slot) in old_keystore.chunks(128).enumerate().skip(1) {
        if slot[0] == 1 {
            let wrapped = &slot[16..76];
            assert!(
                !new_keystore.windows(60).any(|w| w == wrapped),
                "slot {i} still wrapped under the old key"
            );
        }
    }
}

#[test]
fn a_rotation_cut_short_leaves_the_old_key_working_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[("email", "lee@example.com")]).unwrap();
    let r = v.put(&s, "account", b"lee").unwrap();
    drop(v);
    // A partial keystore.new, as a crash during its writing leaves it.
    let keys = dir.path().join("keys");
    let partial = std::fs::read(keys.join("keystore")).unwrap();
    std::fs::write(keys.join("keystore.new"), &partial[..200]).unwrap();
    let err = Vault::open(dir.path(), &new_root(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey);
    assert!(err.to_string().contains("cut short"), "{err}");
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert!(!keys.join("keystore.new").exists(), "rolled back");
    assert_eq!(&v.get(&r, "billing").unwrap().data[..], b"lee");
    assert_eq!(v.find_subject("email", "lee@example.com").unwrap(), Some(s));
}

// ---- kill -9 during rotation -------------------------------------------------

#[test]
fn rotation_child_entry() {
    // Only does something when run as the child.
    if let Ok(dir) = std::env::var("SV_ROTATION_CHILD") {
        let v = Vault::open(&dir, &root(), None).unwrap();
        println!("START");
        v.rotate_root_key(&new_root(), &mut |_, _| {}).unwrap();
        println!("DONE");
    }
}

#[test]
fn kill_9_during_rotation_leaves_one_key_that_opens_everything() {
    let rounds: u64 = std::env::var("SV_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .map(|r| r.div_ceil(4))
        .unwrap_or(10);
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut records: Vec<(RecordId, SubjectId, String)> = Vec::new();
        {
            let v = new_vault(dir.path());
            for i in 0..400 {
                let s = v
                    .create_subject(&[("email", &format!("p{i}@example.com"))])
                    .unwrap();
                let data = format!("record {i}");
                records.push((v.put(&s, "account", data.as_bytes()).unwrap(), s, data));
            }
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "rotation::rotation_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SV_ROTATION_CHILD", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a different point each round, from before the open to
        // after the rotation.
        let delay = Duration::from_millis(5 + (round * 37) % 120);
        let start = Instant::now();
        while start.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        child.wait().unwrap();

        let (v, which) = match Vault::open(dir.path(), &root(), None) {
            Ok(v) => (v, "old"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WrongKey, "round {round}: {e}");
                let v = Vault::open(dir.path(), &new_root(), None)
                    .unwrap_or_else(|e2| panic!("round {round}: neither key opens: {e} / {e2}"));
                (v, "new")
            }
        };
        for (i, (r, s, data)) in records.iter().enumerate() {
            assert_eq!(
                v.get(r, "billing").unwrap().data.as_slice(),
                data.as_bytes(),
                "round {round} ({which} key)"
            );
            assert_eq!(
                v.find_subject("email", &format!("p{i}@example.com"))
                    .unwrap(),
                Some(*s),
                "round {round} ({which} key)"
            );
        }
        v.verify_audit().unwrap();
        eprintln!("round {round}: killed after {delay:?}, opens with the {which} key");
    }
}
