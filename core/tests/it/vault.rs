//! The core vault's behaviour as a user sees it: records, identifiers,
//! erasure, rotation, errors, and what reaches the disk.

use crate::common;

use common::*;
use shredvault::{
    Durability, ErrorKind, Policy, RecordId, RootKey, SubjectId, Vault, VaultOptions,
};

#[test]
fn put_get_update_delete_records() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[("email", "alice@example.com")]).unwrap();
    let r1 = v.put(&s, "account", br#"{"name":"Alice"}"#).unwrap();
    let r2 = v.put(&s, "certificate", b"CN=alice").unwrap();
    let rec = v.get(&r1, "account_admin").unwrap();
    assert_eq!(&rec.data[..], br#"{"name":"Alice"}"#);
    assert_eq!(
        (rec.subject, rec.category.as_str(), rec.version),
        (s, "account", 1)
    );
    assert_eq!(
        &v.get(&r1, "billing").unwrap().data[..],
        br#"{"name":"Alice"}"#
    );
    // legal_claims is privileged: refused to this handle.
    assert_eq!(
        v.get(&r2, "legal_claims").unwrap_err().kind(),
        ErrorKind::PurposeDenied
    );

    v.update(&r1, br#"{"name":"Alice B"}"#).unwrap();
    let rec = v.get(&r1, "account_admin").unwrap();
    assert_eq!(&rec.data[..], br#"{"name":"Alice B"}"#);
    assert_eq!(rec.version, 2);
    assert_eq!(
        &v.get(&r2, "certificate_validation").unwrap().data[..],
        b"CN=alice"
    );

    let infos = v.records(&s).unwrap();
    assert_eq!(infos.len(), 2);
    v.delete(&r2).unwrap();
    assert_eq!(
        v.get(&r2, "certificate_validation").unwrap_err().kind(),
        ErrorKind::Erased
    );
    assert_eq!(v.delete(&r2).unwrap_err().kind(), ErrorKind::Erased);
    assert_eq!(v.records(&s).unwrap().len(), 1);
    assert_eq!(
        &v.get(&r1, "account_admin").unwrap().data[..],
        br#"{"name":"Alice B"}"#
    );
    // Empty data is a record like any other.
    let r3 = v.put(&s, "account", b"").unwrap();
    assert!(v.get(&r3, "account_admin").unwrap().data.is_empty());
}

#[test]
fn purposes_categories_and_ids_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "account", b"x").unwrap();
    assert_eq!(
        v.get(&r, "marketing").unwrap_err().kind(),
        ErrorKind::PurposeDenied
    );
    assert_eq!(
        v.get(&r, "no_such_purpose").unwrap_err().kind(),
        ErrorKind::PurposeDenied
    );
    assert_eq!(
        v.put(&s, "no_such_category", b"x").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let missing = SubjectId::parse(&"0".repeat(32)).unwrap();
    assert_eq!(
        v.put(&missing, "account", b"x").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let missing_record = RecordId::parse(&"1".repeat(32)).unwrap();
    assert_eq!(
        v.get(&missing_record, "account_admin").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        SubjectId::parse("not-an-id").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let too_big = vec![0u8; shredvault::MAX_RECORD_BYTES + 1];
    assert_eq!(
        v.put(&s, "account", &too_big).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Nothing was written by the refused calls.
    assert_eq!(v.records(&s).unwrap().len(), 1);
}

#[test]
fn identifiers_are_normalized_blind_indexed_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v
        .create_subject(&[("email", "Alice@Example.com"), ("customer_number", "C-100")])
        .unwrap();
    assert_eq!(
        v.find_subject("email", " alice@example.COM ").unwrap(),
        Some(s)
    );
    assert_eq!(v.find_subject("customer_number", "C-100").unwrap(), Some(s));
    assert_eq!(v.find_subject("customer_number", "c-100").unwrap(), None);
    assert_eq!(v.find_subject("email", "bob@example.com").unwrap(), None);
    v.link_identifier(&s, "phone", "+44 20 7946 0000").unwrap();
    v.link_identifier(&s, "phone", "+44 20 7946 0000").unwrap();
    assert_eq!(
        v.find_subject("phone", "+44 20 7946 0000").unwrap(),
        Some(s)
    );
    let mut ids = v.identifiers(&s).unwrap();
    ids.sort();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&("email".to_string(), "alice@example.com".to_string())));

    let err = v
        .create_subject(&[("email", "ALICE@example.com")])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    for (kind, value) in [
        ("email", ""),
        ("email", "   "),
        ("Email", "a@b"),
        ("", "x"),
        ("e-mail", "a@b"),
    ] {
        assert_eq!(
            v.find_subject(kind, value).unwrap_err().kind(),
            ErrorKind::InvalidArgument,
            "{kind:?} {value:?}"
        );
        assert_eq!(
            v.create_subject(&[(kind, value)]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    let long = "x".repeat(shredvault::MAX_IDENTIFIER_BYTES + 1);
    assert_eq!(
        v.create_subject(&[("email", &long)]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // A refused create wrote nothing.
    assert_eq!(v.stats().unwrap().subjects_live, 1);
}

#[test]
fn erasure_destroys_the_key_and_everything_that_finds_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let alice = v.create_subject(&[("email", "alice@example.com")]).unwrap();
    let bob = v.create_subject(&[("email", "bob@example.com")]).unwrap();
    // Neither category is kept on an erasure request (see the retention
    // tests for those that are).
    let a1 = v
        .put(&alice, "job_application", b"alice application")
        .unwrap();
    let a2 = v.put(&alice, "usage_log", b"alice usage").unwrap();
    let b1 = v.put(&bob, "account", b"bob account").unwrap();
    let receipt = v.erase_subject(&alice).unwrap();
    assert_eq!(receipt.subject, alice.to_string());
    assert_eq!(receipt.records_erased(), 2);
    assert_eq!(receipt.identifiers_removed, 1);
    assert!(receipt.to_json().contains(&alice.to_string()));
    for (r, purpose) in [(a1, "recruitment"), (a2, "security")] {
        assert_eq!(v.get(&r, purpose).unwrap_err().kind(), ErrorKind::Erased);
    }
    assert_eq!(v.find_subject("email", "alice@example.com").unwrap(), None);
    assert_eq!(
        v.put(&alice, "account", b"again").unwrap_err().kind(),
        ErrorKind::Erased
    );
    assert_eq!(v.records(&alice).unwrap_err().kind(), ErrorKind::Erased);
    assert_eq!(
        v.erase_subject(&alice).unwrap_err().kind(),
        ErrorKind::Erased
    );
    assert_eq!(
        &v.get(&b1, "account_admin").unwrap().data[..],
        b"bob account"
    );
    // The identifier is free again for a new subject.
    v.create_subject(&[("email", "alice@example.com")]).unwrap();
    drop(v);
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert_eq!(
        v.get(&a1, "recruitment").unwrap_err().kind(),
        ErrorKind::Erased
    );
    assert_eq!(
        &v.get(&b1, "account_admin").unwrap().data[..],
        b"bob account"
    );
}

#[test]
fn no_plaintext_identifier_or_key_bytes_on_disk_before_or_after_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let marker = b"PLAINTEXT-MARKER-7f3a9c";
    let email = "marker.person.7f3a9c@example.com";
    let s = v
        .create_subject(&[("email", email), ("customer_number", "CUST-7f3a9c-42")])
        .unwrap();
    let mut records = Vec::new();
    for i in 0..50 {
        let mut data = marker.to_vec();
        data.extend_from_slice(format!(" record {i}").as_bytes());
        records.push(v.put(&s, "account", &data).unwrap());
    }
    v.update(&records[0], b"PLAINTEXT-MARKER-7f3a9c updated")
        .unwrap();
    v.delete(&records[1]).unwrap();
    v.flush().unwrap();
    let check = |when: &str| {
        assert_absent(dir.path(), marker, &format!("record marker {when}"));
        assert_absent(dir.path(), email.as_bytes(), &format!("email {when}"));
        assert_absent(
            dir.path(),
            b"marker.person",
            &format!("email local part {when}"),
        );
        assert_absent(
            dir.path(),
            b"CUST-7f3a9c",
            &format!("customer number {when}"),
        );
        assert_absent(
            dir.path(),
            &root().to_bytes().unwrap()[..],
            &format!("root key {when}"),
        );
        assert_absent(
            dir.path(),
            &root().to_bytes().unwrap()[..8],
            &format!("root key prefix {when}"),
        );
    };
    check("before erasure");
    v.erase_subject(&s).unwrap();
    drop(v);
    check("after erasure");
}

#[test]
fn a_backup_of_data_taken_before_erasure_does_not_bring_the_subject_back() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let alice = v.create_subject(&[("email", "alice@example.com")]).unwrap();
    let bob = v.create_subject(&[("email", "bob@example.com")]).unwrap();
    let a = v.put(&alice, "account", b"alice data").unwrap();
    let b = v.put(&bob, "account", b"bob data").unwrap();
    drop(v);
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("data"), backup.path());

    let v = Vault::open(dir.path(), &root(), None).unwrap();
    v.erase_subject(&alice).unwrap();
    drop(v);

    // Put the old data/ back beside the current keys/.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    copy_dir(backup.path(), &dir.path().join("data"));
    accept_stale_copy(dir.path());
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert_eq!(
        v.get(&a, "account_admin").unwrap_err().kind(),
        ErrorKind::Erased
    );
    assert_eq!(v.find_subject("email", "alice@example.com").unwrap(), None);
    assert_eq!(&v.get(&b, "account_admin").unwrap().data[..], b"bob data");
    assert_eq!(
        v.find_subject("email", "bob@example.com").unwrap(),
        Some(bob)
    );
    assert_eq!(v.stats().unwrap().subjects_erased, 1);
}

#[test]
fn a_backup_taken_before_a_rectification_does_not_hold_the_old_value_readable() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "account", b"old address").unwrap();
    drop(v);
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("data"), backup.path());
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    v.update(&r, b"new address").unwrap();
    assert_eq!(
        &v.get(&r, "account_admin").unwrap().data[..],
        b"new address"
    );
    drop(v);
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    copy_dir(backup.path(), &dir.path().join("data"));
    accept_stale_copy(dir.path());
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    // The old ciphertext is there, but its key is destroyed.
    assert_eq!(
        v.get(&r, "account_admin").unwrap_err().kind(),
        ErrorKind::Erased
    );
}

#[test]
fn wrong_key_second_handle_bad_root_and_missing_policy() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let err = Vault::open(dir.path(), &root(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    drop(v);
    let wrong = RootKey::from_bytes(&[1; 32]).unwrap();
    assert_eq!(
        Vault::open(dir.path(), &wrong, None).unwrap_err().kind(),
        ErrorKind::WrongKey
    );
    assert_eq!(
        RootKey::from_bytes(&[1; 16]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        Vault::open(empty.path().join("v"), &root(), None)
            .unwrap_err()
            .kind(),
        ErrorKind::Policy
    );
    assert!(
        !empty.path().join("v").exists(),
        "a refused open created nothing"
    );
    // The vault still opens with the right key and remembers its policy.
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert!(v.policy().category("certificate").is_ok());
}

#[test]
fn a_second_process_gets_locked_naming_the_path() {
    if let Ok(path) = std::env::var("SV_TEST_OPEN_IN_CHILD") {
        let err = Vault::open(&path, &root(), None).unwrap_err();
        println!("CHILD-RESULT {:?} {}", err.kind(), err);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _v = new_vault(dir.path());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "vault::a_second_process_gets_locked_naming_the_path",
            "--nocapture",
        ])
        .env("SV_TEST_OPEN_IN_CHILD", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("CHILD-RESULT"))
        .expect("child reported");
    assert!(line.contains("Locked"), "{line}");
    assert!(line.contains(&dir.path().display().to_string()), "{line}");
}

#[test]
fn swapped_ciphertext_is_corrupt_and_the_rest_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s1 = v.create_subject(&[]).unwrap();
    let s2 = v.create_subject(&[]).unwrap();
    let r1 = v.put(&s1, "account", b"one").unwrap();
    let r2 = v.put(&s1, "account", b"two").unwrap();
    let r3 = v.put(&s2, "account", b"three").unwrap();
    drop(v);
    {
        let db = raw_sled(dir.path());
        let t = db.open_tree("vault").unwrap();
        let k = |r: &RecordId| {
            let mut k = vec![b'R'];
            k.extend_from_slice(r.as_bytes());
            k
        };
        // Same subject: record 1's value under record 2's id and back.
        let v1 = t.get(k(&r1)).unwrap().unwrap();
        let v2 = t.get(k(&r2)).unwrap().unwrap();
        t.insert(k(&r1), v2).unwrap();
        t.insert(k(&r2), v1).unwrap();
        db.flush().unwrap();
    }
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert_eq!(
        v.get(&r1, "account_admin").unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    assert_eq!(
        v.get(&r2, "account_admin").unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    assert_eq!(&v.get(&r3, "account_admin").unwrap().data[..], b"three");
}

#[test]
fn flipped_bytes_in_stored_values_are_corrupt_never_a_panic_or_wrong_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[("email", "a@example.com")]).unwrap();
    let r = v.put(&s, "account", b"precious").unwrap();
    let other = v.create_subject(&[]).unwrap();
    let ro = v.put(&other, "account", b"other").unwrap();
    drop(v);
    let mut key = vec![b'R'];
    key.extend_from_slice(r.as_bytes());
    let original = {
        let db = raw_sled(dir.path());
        db.open_tree("vault")
            .unwrap()
            .get(&key)
            .unwrap()
            .unwrap()
            .to_vec()
    };
    for i in 0..original.len() {
        let mut flipped = original.clone();
        flipped[i] ^= 0x5a;
        {
            let db = raw_sled(dir.path());
            db.open_tree("vault")
                .unwrap()
                .insert(&key, flipped)
                .unwrap();
            db.flush().unwrap();
        }
        let v = Vault::open(dir.path(), &root(), None).unwrap();
        match v.get(&r, "account_admin") {
            Ok(rec) => panic!("byte {i}: flipped record read back as {:?}", rec.data),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Corrupt
                        | ErrorKind::NotFound
                        | ErrorKind::PurposeDenied
                        | ErrorKind::Erased
                ),
                "byte {i}: {e}"
            ),
        }
        assert_eq!(&v.get(&ro, "account_admin").unwrap().data[..], b"other");
    }
}

#[test]
fn corrupt_keystore_slot_affects_only_its_subject() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s1 = v.create_subject(&[]).unwrap();
    let r1 = v.put(&s1, "account", b"one").unwrap();
    let s2 = v.create_subject(&[]).unwrap();
    let r2 = v.put(&s2, "account", b"two").unwrap();
    drop(v);
    // Damage every live slot's wrapped key except one, then find which
    // subject still reads: exactly one of the two must be Corrupt.
    let path = dir.path().join("keys/keystore");
    let bytes = std::fs::read(&path).unwrap();
    let slot_count = (bytes.len() - 128) / 128;
    let live: Vec<usize> = (0..slot_count)
        .filter(|i| bytes[128 + i * 128] == 1 && bytes[128 + i * 128 + 1] == 1) // live subject keys
        .collect();
    assert_eq!(
        live.len(),
        2,
        "two subject keys are live after reopen repair"
    );
    let mut damaged = bytes.clone();
    damaged[128 + live[0] * 128 + 40] ^= 0xff;
    std::fs::write(&path, &damaged).unwrap();
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    let results = [
        v.get(&r1, "account_admin").map(|r| r.data.to_vec()),
        v.get(&r2, "account_admin").map(|r| r.data.to_vec()),
    ];
    let corrupt = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.kind() == ErrorKind::Corrupt))
        .count();
    let fine = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!((corrupt, fine), (1, 1), "{results:?}");
}

#[test]
fn batched_durability_and_flush() {
    let dir = tempfile::tempdir().unwrap();
    let opts = VaultOptions {
        durability: Durability::Batched,
        ..Default::default()
    };
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), opts.clone()).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let ids: Vec<_> = (0..100)
        .map(|i| v.put(&s, "usage_log", format!("e{i}").as_bytes()).unwrap())
        .collect();
    v.flush().unwrap();
    drop(v);
    let v = Vault::open_with(dir.path(), &root(), None, opts).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            &v.get(id, "security").unwrap().data[..],
            format!("e{i}").as_bytes()
        );
    }
}

#[test]
fn policy_changes_are_checked_against_live_records() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "usage_log", b"x").unwrap();
    let small = Policy::parse(
        "[purposes.account_admin]\n[categories.account]\nlegal_basis = \"contract\"\npurposes = [\"account_admin\"]\n",
        "small.toml",
    )
    .unwrap();
    let err = v.set_policy(small.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Policy);
    assert!(err.message().contains("usage_log"), "{err}");
    drop(v);
    assert_eq!(
        Vault::open(dir.path(), &root(), Some(small.clone()))
            .unwrap_err()
            .kind(),
        ErrorKind::Policy
    );
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    v.delete(&r).unwrap();
    v.set_policy(small).unwrap();
    drop(v);
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert!(v.policy().category("usage_log").is_err());
}

#[test]
fn debug_output_never_shows_record_data_or_keys() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v
        .create_subject(&[("email", "secret.person@example.com")])
        .unwrap();
    let r = v.put(&s, "account", b"SECRET-DATA").unwrap();
    let rec = v.get(&r, "account_admin").unwrap();
    let shown = format!("{rec:?} {v:?} {:?}", root());
    assert!(!shown.contains("SECRET-DATA"), "{shown}");
    assert!(!shown.contains("secret.person"), "{shown}");
    let err = v.get(&r, "marketing").unwrap_err();
    assert!(!format!("{err} {err:?}").contains("SECRET"));
}

#[test]
fn one_handle_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let opts = VaultOptions {
        durability: Durability::Batched,
        ..Default::default()
    };
    let v = std::sync::Arc::new(
        Vault::open_with(dir.path(), &root(), Some(example_policy()), opts).unwrap(),
    );
    let subjects: Vec<_> = (0..4).map(|_| v.create_subject(&[]).unwrap()).collect();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let v = v.clone();
            let subjects = subjects.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..50 {
                    let s = &subjects[(t + i) % subjects.len()];
                    let data = format!("t{t}-{i}");
                    let r = v.put(s, "account", data.as_bytes()).unwrap();
                    mine.push((r, data));
                    if i % 10 == 9 {
                        let (r, _) = mine.remove(0);
                        v.delete(&r).unwrap();
                    }
                    if i % 7 == 0 && !mine.is_empty() {
                        let (r, d) = &mut mine[0];
                        *d = format!("{d}+");
                        v.update(r, d.as_bytes()).unwrap();
                    }
                }
                for (r, d) in &mine {
                    assert_eq!(&v.get(r, "account_admin").unwrap().data[..], d.as_bytes());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn close_and_reopen_at_once_many_times() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "account", b"kept").unwrap();
    v.close().unwrap();
    for _ in 0..20 {
        let v = Vault::open(dir.path(), &root(), None).unwrap();
        assert_eq!(&v.get(&r, "account_admin").unwrap().data[..], b"kept");
        drop(v);
    }
}
