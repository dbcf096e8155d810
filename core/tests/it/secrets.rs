//! No key bytes and no record plaintext in any `Debug` or `Display` output
//! of a public type, nor in any error message, whatever the caller passed.

use crate::common;

use common::*;
use shredvault::{Durability, ErrorKind, RecordId, RootKey, SubjectId, Vault, VaultOptions};

const SECRET: &str = "TOP-SECRET-PLAINTEXT-4c1d";
const EMAIL: &str = "olga.secret@example.com";

fn assert_clean(what: &str, text: &str, key: &[u8; 32]) {
    assert!(
        !text.contains(SECRET),
        "{what} shows record plaintext: {text}"
    );
    assert!(!text.contains(EMAIL), "{what} shows an identifier: {text}");
    let hex_key = key.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(
        !text.contains(&hex_key[..16]),
        "{what} shows key bytes (hex): {text}"
    );
    let dec = format!("{}, {}, {}", key[0], key[1], key[2]);
    assert!(!text.contains(&dec), "{what} shows key bytes: {text}");
}

#[test]
fn nothing_secret_in_debug_display_or_errors() {
    let key = [
        0xc3u8, 0x51, 0x9e, 0x07, 0x77, 0x12, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xaa,
        0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0,
        0xb0, 0xc0,
    ];
    let root = RootKey::from_bytes(&key).unwrap();
    assert_clean("RootKey Debug", &format!("{root:?}"), &key);
    let dir = tempfile::tempdir().unwrap();
    let opts = VaultOptions {
        durability: Durability::Batched,
        actor: Some("secrets-test".into()),
        ..Default::default()
    };
    assert_clean("VaultOptions Debug", &format!("{opts:?}"), &key);
    let v = Vault::open_with(dir.path(), &root, Some(example_policy()), opts).unwrap();
    assert_clean("Vault Debug", &format!("{v:?}"), &key);
    let s = v.create_subject(&[("email", EMAIL)]).unwrap();
    let r = v.put(&s, "account", SECRET.as_bytes()).unwrap();
    let rec = v.get(&r, "billing").unwrap();
    assert_eq!(&rec.data[..], SECRET.as_bytes());
    assert_clean("Record Debug", &format!("{rec:?}"), &key);
    assert_clean(
        "RecordInfo Debug",
        &format!("{:?}", v.records(&s).unwrap()),
        &key,
    );
    assert_clean(
        "SubjectState Debug",
        &format!("{:?}", v.subject_state(&s).unwrap()),
        &key,
    );
    assert_clean("Stats Debug", &format!("{:?}", v.stats().unwrap()), &key);
    assert_clean(
        "Scan Debug",
        &format!("{:?}", v.scan("account", "billing").unwrap()),
        &key,
    );
    assert_clean("policy Debug", &format!("{:?}", v.policy()), &key);

    // Errors, with the secret handed in wherever a caller could.
    let mut errors = Vec::new();
    let mut push = |what: &str, e: shredvault::Error| errors.push((what.to_string(), e));
    push(
        "put unknown category",
        v.put(&s, SECRET, SECRET.as_bytes()).unwrap_err(),
    );
    push("get unknown purpose", v.get(&r, SECRET).unwrap_err());
    push("get denied purpose", v.get(&r, "marketing").unwrap_err());
    push(
        "duplicate identifier",
        v.create_subject(&[("email", EMAIL)]).unwrap_err(),
    );
    push(
        "bad identifier kind",
        v.create_subject(&[(SECRET, EMAIL)]).unwrap_err(),
    );
    let long = format!("{SECRET}{}", "x".repeat(2000));
    push(
        "long identifier",
        v.create_subject(&[("email", &long)]).unwrap_err(),
    );
    let other = v.create_subject(&[]).unwrap();
    push(
        "identifier of another",
        v.link_identifier(&other, "email", EMAIL).unwrap_err(),
    );
    push("find bad kind", v.find_subject(SECRET, EMAIL).unwrap_err());
    push("unknown event", v.record_event(&s, SECRET, 0).unwrap_err());
    push("unknown flag", v.set_flag(&s, SECRET, true).unwrap_err());
    push(
        "unknown consent purpose",
        v.give_consent(&s, SECRET, 0).unwrap_err(),
    );
    push("bad record id", RecordId::parse(SECRET).unwrap_err());
    push("bad subject id", SubjectId::parse(EMAIL).unwrap_err());
    push(
        "bad request kind",
        v.open_request(&s, SECRET, 0).unwrap_err(),
    );
    push("bad durability", SECRET.parse::<Durability>().unwrap_err());
    push(
        "too big",
        v.put(&s, "account", &vec![b'x'; 17 * 1024 * 1024])
            .unwrap_err(),
    );
    push(
        "bad time",
        shredvault::retention::parse_time(SECRET).unwrap_err(),
    );
    push(
        "bad receipt",
        shredvault::verify_receipt(SECRET, None).unwrap_err(),
    );
    push(
        "bad policy",
        shredvault::Policy::parse(
            &format!("[purposes.x]\ndescription = \"{SECRET}\"\nbogus = 1\n"),
            "p.toml",
        )
        .unwrap_err(),
    );
    let receipt = v.erase_subject(&s).unwrap();
    assert_clean("receipt", &receipt.to_json(), &key);
    push("get restricted", v.get(&r, "billing").unwrap_err());
    drop(v);
    let wrong = RootKey::from_bytes(&[0x11; 32]).unwrap();
    push(
        "wrong key",
        Vault::open(dir.path(), &wrong, None).unwrap_err(),
    );
    let v = Vault::open(dir.path(), &root, None).unwrap();
    push("locked", Vault::open(dir.path(), &root, None).unwrap_err());
    for (what, e) in &errors {
        assert_clean(what, &e.to_string(), &key);
        assert_clean(what, &format!("{e:?}"), &key);
    }
    assert!(errors.iter().any(|(_, e)| e.kind() == ErrorKind::WrongKey));
    // The audit log as an auditor sees it.
    assert_clean(
        "audit entries",
        &format!("{:?}", v.audit_entries(None).unwrap()),
        &key,
    );
}
