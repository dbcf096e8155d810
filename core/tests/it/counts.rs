//! Erasure receipts count a subject's records without reading them all:
//! the counts kept beside the records follow every change, and counts that
//! are stale (an old copy, a lost log tail) or missing are made good from
//! the records put since.

use crate::common;

use common::*;
use shredvault::{ErasureReceipt, Vault};

fn erased(receipt: &ErasureReceipt) -> Vec<(String, u64)> {
    receipt
        .erased
        .iter()
        .map(|c| (c.category.clone(), c.records))
        .collect()
}

fn retained(receipt: &ErasureReceipt) -> Vec<(String, u64)> {
    receipt
        .retained
        .iter()
        .map(|c| (c.category.clone(), c.records))
        .collect()
}

#[test]
fn receipt_counts_follow_puts_deletes_updates_events_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, now) = clocked(ts("2026-01-01T00:00:00Z"));
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), opts).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let jobs: Vec<_> = (0..5)
        .map(|i| v.put(&s, "job_application", format!("cv {i}").as_bytes()))
        .collect::<Result<_, _>>()
        .unwrap();
    for i in 0..4 {
        v.put(&s, "usage_log", format!("log {i}").as_bytes())
            .unwrap();
    }
    v.delete(&jobs[0]).unwrap();
    v.update(&jobs[1], b"cv 1, corrected").unwrap();
    // The applications now expire four years on: a day of their own.
    v.record_event(&s, "hiring_concluded", ts("2026-01-01T00:00:00Z"))
        .unwrap();
    for i in 0..2 {
        v.put(&s, "job_application", format!("late cv {i}").as_bytes())
            .unwrap();
    }
    assert_eq!(v.check_record_counts().unwrap(), 1);

    // 14 months on, the usage logs' day has ended and its key goes.
    now.store(
        ts("2027-03-01T00:00:00Z"),
        std::sync::atomic::Ordering::SeqCst,
    );
    let report = v.expire(ts("2027-03-01T00:00:00Z")).unwrap();
    assert_eq!(report.records_expired, 4);
    assert_eq!(v.check_record_counts().unwrap(), 1);
    let receipt = v.erase_subject(&s).unwrap();
    assert_eq!(erased(&receipt), vec![("job_application".to_string(), 6)]);

    // A category kept on an erasure request is counted as retained.
    let t = v.create_subject(&[]).unwrap();
    for i in 0..3 {
        v.put(&t, "account", format!("acct {i}").as_bytes())
            .unwrap();
    }
    for i in 0..2 {
        v.put(&t, "usage_log", format!("log {i}").as_bytes())
            .unwrap();
    }
    let receipt = v.erase_subject(&t).unwrap();
    assert_eq!(erased(&receipt), vec![("usage_log".to_string(), 2)]);
    assert_eq!(retained(&receipt), vec![("account".to_string(), 3)]);
    assert_eq!(v.check_record_counts().unwrap(), 1);

    // Read back from disk, not from this handle's memory.
    let u = v.create_subject(&[]).unwrap();
    for i in 0..3 {
        v.put(&u, "job_application", format!("cv {i}").as_bytes())
            .unwrap();
    }
    v.close().unwrap();
    let v = new_vault(dir.path());
    let receipt = v.erase_subject(&u).unwrap();
    assert_eq!(erased(&receipt), vec![("job_application".to_string(), 3)]);
}

#[test]
fn counts_lost_stale_or_missing_are_made_good_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let [s, t, u] = [(); 3].map(|_| v.create_subject(&[]).unwrap());
    let put = |who, n: usize| {
        (0..n)
            .map(|i| {
                v.put(who, "job_application", format!("cv {i}").as_bytes())
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    // Enough puts that counts are stored (every 64), and some after.
    put(&s, 150);
    put(&t, 100);
    let counts_key = |who: &shredvault::SubjectId| {
        let mut k = vec![b'C'];
        k.extend_from_slice(who.as_bytes());
        k
    };
    v.flush().unwrap();
    let old_counts = {
        v.close().unwrap();
        let db = raw_sled(dir.path());
        let tree = db.open_tree("vault").unwrap();
        let value = tree.get(counts_key(&u)).unwrap();
        assert!(
            value.is_none(),
            "no counts before a subject's first records"
        );
        tree.get(counts_key(&s)).unwrap().expect("counts stored")
    };
    let v = new_vault(dir.path());
    let more = (0..80)
        .map(|i| {
            v.put(&s, "job_application", format!("more {i}").as_bytes())
                .unwrap()
        })
        .collect::<Vec<_>>();
    v.put(&u, "job_application", b"cv").unwrap();
    v.close().unwrap();
    {
        let db = raw_sled(dir.path());
        let tree = db.open_tree("vault").unwrap();
        // s: counts from before its last 80 puts (a copy restored, or the
        // newer counts lost with the tail of the log in Batched mode), and
        // its last record lost too.
        tree.insert(counts_key(&s), old_counts).unwrap();
        let mut last = vec![b'R'];
        last.extend_from_slice(more.last().unwrap().as_bytes());
        assert!(tree.remove(&last).unwrap().is_some());
        // t: counts gone altogether.
        assert!(tree.remove(counts_key(&t)).unwrap().is_some());
        db.flush().unwrap();
    }
    let v = new_vault(dir.path());
    assert_eq!(v.check_record_counts().unwrap(), 3);
    // Numbering goes on after the last record there is.
    v.put(&s, "job_application", b"after").unwrap();
    assert_eq!(v.check_record_counts().unwrap(), 3);
    let receipt = v.erase_subject(&s).unwrap();
    assert_eq!(erased(&receipt), vec![("job_application".to_string(), 230)]);
    let receipt = v.erase_subject(&t).unwrap();
    assert_eq!(erased(&receipt), vec![("job_application".to_string(), 100)]);
    let receipt = v.erase_subject(&u).unwrap();
    assert_eq!(erased(&receipt), vec![("job_application".to_string(), 1)]);
}
