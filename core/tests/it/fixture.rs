//! A vault written by the code before the engine was split into its store
//! and custody seams (`core/tests/fixtures/vault-0.1`, made by
//! `core/examples/make_fixture.rs` at commit a8908cc) opens with today's
//! code and reads back exactly as it did then.

use crate::common;

use std::sync::Arc;

use serde_json::Value;
use shredvault::{RecordId, RootKey, SubjectId, Vault, VaultOptions};

use common::readback;

#[test]
fn a_vault_written_before_the_split_reads_back_identically() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault-0.1");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&fixture.join("vault"), dir.path());
    // git keeps no empty directory: sled's blobs/ is made again.
    std::fs::create_dir_all(dir.path().join("data/blobs")).unwrap();
    let clock = expected["clock"].as_i64().unwrap();
    let root = RootKey::from_bytes(&hex(expected["root_key_hex"].as_str().unwrap())).unwrap();
    let subjects: Vec<SubjectId> = ids(&expected["subjects_in_order"]);
    let records: Vec<RecordId> = ids(&expected["records_in_order"]);
    // Privileged: legal_claims is a privileged purpose now, and the
    // fixture's reads were made when any handle could read for it.
    let options = |actor: &str| VaultOptions {
        clock: Some(Arc::new(move || clock)),
        actor: Some(actor.into()),
        privileged: true,
        ..Default::default()
    };

    // As it was closed: the chain, entry for entry, and the counts.
    let v = Vault::open_with(dir.path(), &root, None, options("fixture")).unwrap();
    let entries = serde_json::to_value(v.audit_entries(None).unwrap()).unwrap();
    assert_eq!(entries, expected["audit_entries"]);
    assert_eq!(readback::stats(&v.stats().unwrap()), expected["stats"]);
    let report = v.verify_audit().unwrap();
    assert_eq!(
        report.entries,
        expected["audit_entries"].as_array().unwrap().len() as u64
    );
    drop(v);

    // Read back from a fresh handle, as the writer did: the same answers.
    let v = Vault::open_with(dir.path(), &root, None, options("fixture-check")).unwrap();
    let got = readback::read_back(&v, &subjects, &records);
    for (part, want) in expected["read_back"].as_object().unwrap() {
        assert_eq!(&got[part], want, "{part} differs");
    }
}

fn ids<T: std::str::FromStr>(list: &Value) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().parse().unwrap())
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
