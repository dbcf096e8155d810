//! Many threads on overlapping subjects: put, get, erase and expire at once.
//! After `erase_subject` returns, no read of that subject returns plaintext
//! and later puts fail with `Erased`; nothing deadlocks.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use shredvault::{Durability, ErrorKind, RecordId, SubjectId, Vault, VaultOptions};

#[test]
fn erasure_is_final_under_concurrent_reads_writes_and_expiry() {
    races(None);
}

/// The same on a vault whose records live in PostgreSQL: its store keeps
/// a cache of point reads, which must never hand back what an erasure
/// removed.
#[test]
fn erasure_is_final_under_concurrent_reads_writes_and_expiry_on_postgres() {
    let Some(pg) = shredvault::postgres::for_tests() else {
        return;
    };
    races(Some(shredvault::postgres::fresh_schema(pg, "races")));
}

fn races(store: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = VaultOptions {
        durability: Durability::Batched,
        privileged: true,
        store,
        ..Default::default()
    };
    let v = Arc::new(Vault::open_with(dir.path(), &root(), Some(example_policy()), opts).unwrap());
    let subjects: Vec<SubjectId> = (0..16).map(|_| v.create_subject(&[]).unwrap()).collect();
    // Records known to each thread, and the moment each subject's erasure
    // returned.
    let records: Arc<Mutex<Vec<(RecordId, SubjectId)>>> = Arc::new(Mutex::new(Vec::new()));
    let erased: Arc<Mutex<Vec<SubjectId>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();

    for t in 0..3 {
        let (v, subjects, records, erased, stop) = (
            v.clone(),
            subjects.clone(),
            records.clone(),
            erased.clone(),
            stop.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                i += 7;
                let s = subjects[i % subjects.len()];
                let was_erased = erased.lock().unwrap().contains(&s);
                let category = if i % 3 == 0 {
                    "usage_log"
                } else {
                    "job_application"
                };
                match v.put(&s, category, format!("secret-{i}").as_bytes()) {
                    Ok(r) => {
                        assert!(!was_erased, "a put to erased subject {s} succeeded");
                        records.lock().unwrap().push((r, s));
                    }
                    // Expired: the expiry thread runs ahead of the clock, so
                    // a new usage log may be past its retention already.
                    Err(e) => assert!(
                        e.kind() == ErrorKind::Erased
                            || (e.kind() == ErrorKind::Expired && category == "usage_log"),
                        "{e}"
                    ),
                }
            }
        }));
    }
    for _ in 0..3 {
        let (v, records, erased, stop) = (v.clone(), records.clone(), erased.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let pick = {
                    let r = records.lock().unwrap();
                    if r.is_empty() {
                        None
                    } else {
                        n = n.wrapping_mul(31).wrapping_add(17);
                        Some(r[n % r.len()])
                    }
                };
                let Some((r, s)) = pick else { continue };
                // Read the erased list before the record: if the erasure had
                // returned by then, the read must not see plaintext.
                let erased_before = erased.lock().unwrap().contains(&s);
                let purpose = "security";
                match v.get(&r, purpose) {
                    Ok(rec) => {
                        assert!(!erased_before, "plaintext of erased subject {s} read back");
                        assert!(rec.data.starts_with(b"secret-"));
                    }
                    Err(e) => assert!(
                        matches!(
                            e.kind(),
                            ErrorKind::Erased | ErrorKind::Expired | ErrorKind::PurposeDenied
                        ),
                        "{e}"
                    ),
                }
            }
        }));
    }
    {
        let (v, stop) = (v.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut now = 1_900_000_000;
            while !stop.load(Ordering::Relaxed) {
                now += 86_400;
                // Ahead of the wall clock on purpose: forced.
                v.expire_with(now, true).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    // The eraser: one subject after another, while everything else runs.
    let start = Instant::now();
    for s in subjects.iter().take(12) {
        std::thread::sleep(Duration::from_millis(40));
        match v.erase_subject(s) {
            Ok(_) => erased.lock().unwrap().push(*s),
            Err(e) => panic!("erase: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("no thread panicked");
    }
    assert!(start.elapsed() < Duration::from_secs(60), "no deadlock");
    // And afterwards, for every record of an erased subject: never plaintext.
    let erased = erased.lock().unwrap().clone();
    for (r, s) in records.lock().unwrap().iter() {
        if erased.contains(s) {
            let err = v.get(r, "legal_claims").unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::Erased | ErrorKind::Expired),
                "{err}"
            );
        }
    }
    v.verify_audit().unwrap();
}
