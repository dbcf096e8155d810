use super::SlotFileCustody;
use crate::crypto::{RootKey, SecretKey};
use crate::custody::slot_format::{slot_offset, SLOT_SIZE};
use crate::custody::{Derivation, KeyCustody, KeyError, KeyKind, KeyRef};
use crate::error::ErrorKind;

fn root() -> RootKey {
    RootKey::from_bytes(&[7; 32]).unwrap()
}

/// A key derived from `key`, to compare keys without exposing them.
fn ident(custody: &SlotFileCustody, key: KeyRef) -> Result<SecretKey, KeyError> {
    custody.derive(key, Derivation::Identifiers)
}

#[test]
fn create_derive_destroy_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ks = SlotFileCustody::open(dir.path(), &root(), [1; 16]).unwrap();
    let got = ks.create(KeyKind::Subject, 3).unwrap();
    let derived: Vec<SecretKey> = got.iter().map(|r| ident(&ks, *r).unwrap()).collect();
    assert_ne!(derived[0], derived[1]);
    ks.destroy(&[got[1]]).unwrap();
    assert!(matches!(ident(&ks, got[1]), Err(KeyError::Destroyed(r)) if r == got[1]));
    assert!(!ks.holds(got[1]) && ks.holds(got[0]));
    drop(ks);
    let ks = SlotFileCustody::open(dir.path(), &root(), [2; 16]).unwrap();
    assert_eq!(ks.vault_id(), [1; 16]);
    assert_eq!(ident(&ks, got[0]).unwrap(), derived[0]);
    assert!(matches!(ident(&ks, got[1]), Err(KeyError::Destroyed(_))));
    // The freed slot is reused with a new key id: the old reference stays dead.
    let again = ks.create(KeyKind::Subject, 1).unwrap();
    assert_eq!(again[0].index, got[1].index);
    assert!(matches!(ident(&ks, got[1]), Err(KeyError::Destroyed(_))));
    // The slot's bytes on disk are zero after destruction.
    ks.destroy(&again).unwrap();
    let bytes = std::fs::read(dir.path().join("keystore")).unwrap();
    let off = slot_offset(again[0].index) as usize;
    assert!(bytes[off..off + SLOT_SIZE].iter().all(|&b| b == 0));
}

#[test]
fn derivations_check_the_kind_of_key() {
    let dir = tempfile::tempdir().unwrap();
    let ks = SlotFileCustody::open(dir.path(), &root(), [1; 16]).unwrap();
    let subject = ks.create(KeyKind::Subject, 1).unwrap()[0];
    let day = ks.create(KeyKind::Retention, 1).unwrap()[0];
    let secret = ks.create(KeyKind::Vault, 1).unwrap()[0];
    assert!(ks
        .derive(subject, Derivation::Record { day: Some(day) })
        .is_ok());
    assert_ne!(
        ks.derive(subject, Derivation::Record { day: Some(day) })
            .unwrap(),
        ks.derive(subject, Derivation::Record { day: None })
            .unwrap()
    );
    assert!(ks.derive(secret, Derivation::Secret).is_ok());
    for (key, d) in [
        (subject, Derivation::Secret),
        (secret, Derivation::Identifiers),
        (day, Derivation::Record { day: None }),
        (subject, Derivation::Record { day: Some(secret) }),
    ] {
        assert!(
            matches!(ks.derive(key, d), Err(KeyError::Corrupt(_))),
            "{key:?} {d:?}"
        );
    }
    // A destroyed day key: the record key is gone, naming the day.
    ks.destroy(&[day]).unwrap();
    assert!(matches!(
        ks.derive(subject, Derivation::Record { day: Some(day) }),
        Err(KeyError::Destroyed(r)) if r == day
    ));
}

#[test]
fn wrong_key_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let ks = SlotFileCustody::open(dir.path(), &root(), [1; 16]).unwrap();
    let err = SlotFileCustody::open(dir.path(), &root(), [1; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    drop(ks);
    let other = RootKey::from_bytes(&[8; 32]).unwrap();
    let err = SlotFileCustody::open(dir.path(), &other, [1; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey);
}

#[test]
fn flipped_slot_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let ks = SlotFileCustody::open(dir.path(), &root(), [1; 16]).unwrap();
    let got = ks.create(KeyKind::Subject, 2).unwrap();
    let second = ident(&ks, got[1]).unwrap();
    drop(ks);
    let path = dir.path().join("keystore");
    for byte in 0..SLOT_SIZE {
        let mut bytes = std::fs::read(&path).unwrap();
        let off = slot_offset(got[0].index) as usize + byte;
        bytes[off] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let ks = SlotFileCustody::open(dir.path(), &root(), [1; 16]).unwrap();
        assert!(
            matches!(ident(&ks, got[0]), Err(KeyError::Corrupt(_))),
            "byte {byte}"
        );
        assert_eq!(ident(&ks, got[1]).unwrap(), second);
        drop(ks);
        bytes[off] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
    }
}

#[test]
fn a_rotation_rewraps_every_key_and_only_the_new_root_opens() {
    let dir = tempfile::tempdir().unwrap();
    let ks = SlotFileCustody::open(dir.path(), &root(), [1; 16]).unwrap();
    let got = ks.create(KeyKind::Subject, 3).unwrap();
    ks.destroy(&[got[1]]).unwrap();
    let before = ident(&ks, got[0]).unwrap();
    let new = RootKey::from_bytes(&[9; 32]).unwrap();
    let rotation = ks.begin_rotation(&new).unwrap();
    let new_check = rotation.key_check();
    // The legacy blind index (from the root key) follows the new root.
    let old_mac = ks.blind_mac("email", "a@example.com");
    rotation.commit(1_800_000_000, &mut |_, _| {}).unwrap();
    assert_eq!(ks.key_check(), new_check);
    assert_ne!(ks.blind_mac("email", "a@example.com"), old_mac);
    assert_eq!(ident(&ks, got[0]).unwrap(), before);
    drop(ks);
    let err = SlotFileCustody::open(dir.path(), &root(), [1; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey);
    assert!(err.message().contains("re-wrapped"), "{err}");
    let ks = SlotFileCustody::open(dir.path(), &new, [1; 16]).unwrap();
    assert_eq!(ident(&ks, got[0]).unwrap(), before);
    assert!(matches!(ident(&ks, got[1]), Err(KeyError::Destroyed(_))));
}
