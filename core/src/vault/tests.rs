//! The engine on the memory store: the operations through the same seams
//! as on sled, and state that outlives a handle (a reopen on the same
//! store).

use std::sync::Arc;

use crate::crypto::RootKey;
use crate::custody::SlotFileCustody;
use crate::error::ErrorKind;
use crate::options::VaultOptions;
use crate::policy::Policy;
use crate::store::MemoryStore;

use super::{start, Vault};

fn policy() -> Policy {
    Policy::parse(include_str!("../../../example-policy.toml"), "example").unwrap()
}

fn open(store: &MemoryStore, keys: &std::path::Path, policy: Option<Policy>) -> Vault {
    let root = RootKey::from_bytes(&[3; 32]).unwrap();
    let custody = SlotFileCustody::open(keys, &root, [4; 16]).unwrap();
    start(
        keys.to_path_buf(),
        Arc::new(store.clone()),
        Box::new(custody),
        policy,
        VaultOptions::default(),
    )
    .unwrap()
}

#[test]
fn the_engine_runs_on_the_memory_store_and_its_state_outlives_the_handle() {
    let keys = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let v = open(&store, keys.path(), Some(policy()));
    let alice = v.create_subject(&[("email", "alice@example.com")]).unwrap();
    let bob = v.create_subject(&[]).unwrap();
    let account = v.put(&alice, "account", b"alice's account").unwrap();
    let log = v.put(&alice, "usage_log", b"a login").unwrap();
    let bobs = v.put(&bob, "account", b"bob's account").unwrap();
    v.update(&account, b"alice's account, rectified").unwrap();
    assert_eq!(
        &v.get(&account, "billing").unwrap().data[..],
        b"alice's account, rectified"
    );
    assert_eq!(
        v.find_subject("email", "Alice@Example.com").unwrap(),
        Some(alice)
    );
    let read: Vec<_> = v
        .scan("account", "billing")
        .unwrap()
        .map(|r| r.unwrap().id)
        .collect();
    assert_eq!(read.len(), 2);
    drop(v);

    let v = open(&store, keys.path(), None);
    assert_eq!(&v.get(&log, "security").unwrap().data[..], b"a login");
    let receipt = v.erase_subject(&alice).unwrap();
    assert_eq!(receipt.retained.len(), 1, "the account is retained");
    assert_eq!(
        v.get(&log, "security").unwrap_err().kind(),
        ErrorKind::Erased
    );
    assert_eq!(
        v.get(&account, "billing").unwrap_err().kind(),
        ErrorKind::Restricted
    );
    assert_eq!(v.find_subject("email", "alice@example.com").unwrap(), None);
    v.purge().unwrap();
    assert_eq!(&v.get(&bobs, "billing").unwrap().data[..], b"bob's account");
    assert_eq!(
        v.verify_audit().unwrap().entries,
        v.audit_entries(None).unwrap().len() as u64 - 1
    );
    drop(v);
    let v = open(&store, keys.path(), None);
    assert_eq!(
        v.get(&log, "security").unwrap_err().kind(),
        ErrorKind::Erased
    );
    v.verify_audit().unwrap();
}
