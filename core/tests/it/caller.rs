//! One handle, many callers (`Vault::acting_as`): each call's audit actor
//! is its caller's, and a caller's privilege only narrows the handle's.

use crate::common;

use common::*;
use shredvault::{ErrorKind, Vault, VaultOptions};

fn open(dir: &std::path::Path, privileged: bool) -> Vault {
    let opts = VaultOptions {
        actor: Some("server".into()),
        privileged,
        ..VaultOptions::default()
    };
    Vault::open_with(dir, &root(), Some(example_policy()), opts).unwrap()
}

#[test]
fn each_call_is_logged_as_its_caller() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path(), true);
    let s = v.create_subject(&[]).unwrap();
    let r = v
        .acting_as("billing", false, |v| v.put(&s, "account", b"x"))
        .unwrap()
        .unwrap();
    v.acting_as("analytics", false, |v| v.get(&r, "billing"))
        .unwrap()
        .unwrap();
    v.get(&r, "billing").unwrap();
    let actors: Vec<(String, Option<String>)> = v
        .audit_entries(Some(&s))
        .unwrap()
        .into_iter()
        .map(|e| (e.op, e.actor))
        .collect();
    let of = |op: &str| -> Vec<Option<String>> {
        actors
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.clone())
            .collect()
    };
    assert_eq!(of("create_subject"), [Some("server".to_string())]);
    assert_eq!(of("put"), [Some("billing".to_string())]);
    assert_eq!(
        of("get"),
        [Some("analytics".to_string()), Some("server".to_string())]
    );
    // A bad label is refused before anything runs.
    let err = v.acting_as("Jane Doe", false, |_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn a_callers_privilege_only_narrows_the_handles() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path(), true);
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "account", b"x").unwrap();
    v.get(&r, "legal_claims").unwrap();
    let denied = v
        .acting_as("billing", false, |v| v.get(&r, "legal_claims"))
        .unwrap()
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PurposeDenied);
    v.acting_as("legal", true, |v| v.get(&r, "legal_claims"))
        .unwrap()
        .unwrap();
    drop(v);
    let v = open(dir.path(), false);
    let denied = v
        .acting_as("legal", true, |v| v.get(&r, "legal_claims"))
        .unwrap()
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PurposeDenied);
}

#[test]
fn refused_calls_are_logged_with_their_caller() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path(), false);
    let s = v.create_subject(&[]).unwrap();
    v.acting_as("analytics", false, |v| {
        v.log_refused("erase_subject", Some(&s), None, None)
    })
    .unwrap()
    .unwrap();
    let e = v.audit_entries(Some(&s)).unwrap().pop().unwrap();
    assert_eq!(
        (e.op.as_str(), e.detail.as_deref(), e.outcome.as_str()),
        ("refused", Some("erase_subject"), "Forbidden")
    );
    assert_eq!(e.actor.as_deref(), Some("analytics"));
    assert!(v.log_refused("not a name", None, None, None).is_err());
    v.verify_audit().unwrap();
}
