//! An operation model: put, get, update, delete, erase, expire and reopen
//! on a real vault, checked against an in-memory model of what each record
//! must read as. Every sequence runs twice: on the sled store (a vault
//! directory) and on the memory store, through the same engine.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shredvault::{
    fuzzing, Durability, ErrorKind, Policy, RecordId, RootKey, SubjectId, Vault, VaultOptions,
};

const POLICY: &str = include_str!("../../example-policy.toml");
const T0: i64 = 1_767_225_600; // 2026-01-01

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    CreateSubject,
    Put { subject: u8, usage: bool, data: Vec<u8> },
    Get { record: u8 },
    Update { record: u8, data: Vec<u8> },
    Delete { record: u8 },
    Erase { subject: u8 },
    Expire { days: u16 },
    Reopen,
}

#[derive(Clone, Debug, PartialEq)]
enum Want {
    Data(Vec<u8>),
    Gone,
    /// A usage log: readable until its day ends, then Expired.
    Log(Vec<u8>, i64),
}

fuzz_target!(|ops: Vec<Op>| {
    if ops.len() > 64 {
        return;
    }
    let root = RootKey::from_bytes(&[9; 32]).unwrap();
    // The clock stays at T0; expiry runs name their own `now` (forced:
    // ahead of the clock). Privileged: the model reads for legal_claims.
    let options = || VaultOptions {
        durability: Durability::Batched,
        clock: Some(Arc::new(|| T0)),
        actor: None,
        privileged: true,
        ..Default::default()
    };
    // On sled, in a vault directory.
    let dir = tempfile::tempdir().unwrap();
    run(&ops, &|policy| Vault::open_with(dir.path(), &root, policy, options()).unwrap());
    // On the memory store, which outlives each handle as a directory does.
    let keys = tempfile::tempdir().unwrap();
    let store = fuzzing::MemoryStore::new();
    run(&ops, &|policy| {
        fuzzing::open_in_memory(&store, keys.path(), &root, policy, options()).unwrap()
    });
});

/// Runs `ops` on vaults from `open` (which opens the same vault again after
/// a drop), checking every read against the model.
fn run(ops: &[Op], open: &dyn Fn(Option<Policy>) -> Vault) {
    let mut v = open(Some(Policy::parse(POLICY, "p").unwrap()));
    let mut subjects: Vec<(SubjectId, bool)> = Vec::new(); // (id, erased)
    let mut records: Vec<(RecordId, usize)> = Vec::new();
    let mut want: HashMap<RecordId, Want> = HashMap::new();
    let mut expired_through = i64::MIN;
    for op in ops {
        match op.clone() {
            Op::CreateSubject => subjects.push((v.create_subject(&[]).unwrap(), false)),
            Op::Put { subject, usage, data } => {
                let Some(&(s, erased)) = subjects.get(subject as usize % subjects.len().max(1)) else { continue };
                let category = if usage { "usage_log" } else { "account" };
                match v.put(&s, category, &data) {
                    Ok(r) => {
                        assert!(!erased);
                        // 13 months after 2026-01-01: the end of 2027-02-01.
                        let w = if usage { Want::Log(data, 1_801_526_400) } else { Want::Data(data) };
                        records.push((r, subject as usize % subjects.len()));
                        want.insert(r, w);
                    }
                    Err(e) => assert!(erased && e.kind() == ErrorKind::Erased, "{e}"),
                }
            }
            Op::Get { record } => {
                let Some(&(r, _)) = records.get(record as usize % records.len().max(1)) else { continue };
                let got = v.get(&r, "legal_claims");
                match (&want[&r], got) {
                    (Want::Data(d), Ok(rec)) => assert_eq!(&rec.data[..], &d[..]),
                    (Want::Log(d, end), Ok(rec)) => {
                        assert!(*end > expired_through, "an expired log read back");
                        assert_eq!(&rec.data[..], &d[..]);
                    }
                    (Want::Log(_, end), Err(e)) => {
                        assert!(*end <= expired_through && e.kind() == ErrorKind::Expired, "{e}")
                    }
                    (Want::Gone, Err(e)) => {
                        assert!(matches!(e.kind(), ErrorKind::Erased | ErrorKind::Expired), "{e}")
                    }
                    (w, got) => panic!("{r}: want {w:?}, got {got:?}"),
                }
            }
            Op::Update { record, data } => {
                let Some(&(r, _)) = records.get(record as usize % records.len().max(1)) else { continue };
                match v.update(&r, &data) {
                    Ok(()) => {
                        let w = want.get_mut(&r).unwrap();
                        match w {
                            Want::Data(d) | Want::Log(d, _) => *d = data,
                            Want::Gone => panic!("an erased record updated"),
                        }
                    }
                    Err(e) => assert!(matches!(e.kind(), ErrorKind::Erased | ErrorKind::Expired), "{e}"),
                }
            }
            Op::Delete { record } => {
                let Some(&(r, _)) = records.get(record as usize % records.len().max(1)) else { continue };
                if v.delete(&r).is_ok() {
                    want.insert(r, Want::Gone);
                }
            }
            Op::Erase { subject } => {
                let Some(&(s, erased)) = subjects.get(subject as usize % subjects.len().max(1)) else { continue };
                let i = subject as usize % subjects.len();
                match v.erase_subject(&s) {
                    Ok(_) => {
                        assert!(!erased);
                        subjects[i].1 = true;
                        for (r, owner) in &records {
                            if *owner == i {
                                // Accounts are retained on an erasure request.
                                if let Some(Want::Log(..)) = want.get(r) {
                                    want.insert(*r, Want::Gone);
                                }
                            }
                        }
                    }
                    Err(e) => assert!(erased && e.kind() == ErrorKind::Erased, "{e}"),
                }
            }
            Op::Expire { days } => {
                let now = T0 + days as i64 * 86_400;
                v.expire_with(now, true).unwrap();
                expired_through = expired_through.max(now);
            }
            Op::Reopen => {
                drop(v);
                v = open(None);
            }
        }
    }
    v.verify_audit().unwrap();
}
