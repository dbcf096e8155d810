//! Retention through the vault with a simulated clock: day keys, events,
//! flags, expiry, and that an old copy of data/ does not bring expired
//! records back.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::*;
use shredvault::{ErrorKind, Vault, VaultOptions};

const DAY: i64 = 86_400;

fn ts(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_second()
}

struct Clocked {
    vault: Vault,
    now: Arc<AtomicI64>,
}

fn open_at(dir: &std::path::Path, start: i64, fresh: bool) -> Clocked {
    let now = Arc::new(AtomicI64::new(start));
    let clock = now.clone();
    let opts = VaultOptions {
        clock: Some(Arc::new(move || clock.load(Ordering::SeqCst))),
        ..Default::default()
    };
    let policy = if fresh { Some(example_policy()) } else { None };
    Clocked {
        vault: Vault::open_with(dir, &root(), policy, opts).unwrap(),
        now,
    }
}

#[test]
fn a_record_is_kept_one_day_before_its_end_and_gone_one_day_after() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    let usage = v.put(&s, "usage_log", b"login").unwrap();
    let other = v.put(&s, "account", b"no expiry yet").unwrap();
    let end = ts("2027-02-16T00:00:00Z"); // 13 months on, rounded up to the day's end
    assert_eq!(
        v.records(&s)
            .unwrap()
            .iter()
            .find(|r| r.id == usage)
            .unwrap()
            .expires_at,
        Some(end)
    );
    let report = v.expire(end - DAY).unwrap();
    assert_eq!(report.days_destroyed, 0);
    assert_eq!(&v.get(&usage, "security").unwrap().data[..], b"login");
    let report = v.expire(end + DAY).unwrap();
    assert_eq!((report.days_destroyed, report.records_expired), (1, 1));
    assert_eq!(
        v.get(&usage, "security").unwrap_err().kind(),
        ErrorKind::Expired
    );
    assert_eq!(
        &v.get(&other, "account_admin").unwrap().data[..],
        b"no expiry yet"
    );
    assert_eq!(v.records(&s).unwrap().len(), 1);
    // A second run finds nothing more to do.
    assert_eq!(v.expire(end + 2 * DAY).unwrap().days_destroyed, 0);
}

#[test]
fn events_and_flags_move_expiry_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    let cert = v.put(&s, "certificate", b"CN=alice").unwrap();
    let expires = |v: &Vault| {
        v.records(&s)
            .unwrap()
            .iter()
            .find(|r| r.id == cert)
            .unwrap()
            .expires_at
    };
    assert_eq!(expires(v), None);
    v.record_event(&s, "last_certificate_end", ts("2027-03-01T00:00:00Z"))
        .unwrap();
    assert_eq!(expires(v), Some(ts("2034-03-01T00:00:00Z")));
    v.set_flag(&s, "qualified_certificate", true).unwrap();
    assert_eq!(expires(v), Some(ts("2042-03-01T00:00:00Z")));
    v.set_flag(&s, "qualified_certificate", false).unwrap();
    assert_eq!(expires(v), Some(ts("2034-03-01T00:00:00Z")));
    v.record_event(&s, "last_certificate_end", ts("2026-06-01T00:00:00Z"))
        .unwrap();
    assert_eq!(expires(v), Some(ts("2033-06-01T00:00:00Z")));
    v.record_event(&s, "last_certificate_end", ts("2028-06-01T00:00:00Z"))
        .unwrap();
    assert_eq!(expires(v), Some(ts("2035-06-01T00:00:00Z")));
    // Expiring the earlier days it passed through touches nothing.
    v.expire(ts("2034-01-01T00:00:00Z")).unwrap();
    assert_eq!(
        &v.get(&cert, "certificate_validation").unwrap().data[..],
        b"CN=alice"
    );
    // 7 years kept: one day before the end it reads, one day after it is gone.
    v.expire(ts("2035-05-31T00:00:00Z")).unwrap();
    assert!(v.get(&cert, "certificate_validation").is_ok());
    v.expire(ts("2035-06-02T00:00:00Z")).unwrap();
    assert_eq!(
        v.get(&cert, "certificate_validation").unwrap_err().kind(),
        ErrorKind::Expired
    );
    // Events and flags survive a reopen.
    drop(c);
    let c = open_at(dir.path(), t0, false);
    let (events, flags) = c.vault.subject_facts(&s).unwrap();
    assert_eq!(
        events.get("last_certificate_end"),
        Some(&ts("2028-06-01T00:00:00Z"))
    );
    assert!(flags.is_empty());
}

#[test]
fn an_event_whose_expiry_is_already_past_erases_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-06-01T00:00:00Z");
    let c = open_at(dir.path(), now, true);
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    let cg = v.put(&s, "codeguard", b"site backup settings").unwrap();
    let acct = v.put(&s, "account", b"account").unwrap();
    v.record_event(&s, "agreement_end", now - 10 * DAY).unwrap();
    // CodeGuard ends at the agreement's end: already past, erased by the call.
    assert_eq!(
        v.get(&cg, "codeguard").unwrap_err().kind(),
        ErrorKind::Expired
    );
    // The account has 7 more years.
    assert!(v.get(&acct, "account_admin").is_ok());
    // A put into a category whose retention already ended is refused.
    assert_eq!(
        v.put(&s, "codeguard", b"x").unwrap_err().kind(),
        ErrorKind::Expired
    );
    c.now.store(now + DAY, Ordering::SeqCst);
}

#[test]
fn one_key_per_day_for_all_subjects_and_other_days_are_spared() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let v = &c.vault;
    let mut day_one = Vec::new();
    for _ in 0..20 {
        let s = v.create_subject(&[]).unwrap();
        day_one.push(v.put(&s, "usage_log", b"a").unwrap());
    }
    c.now.store(t0 + DAY, Ordering::SeqCst);
    let s = v.create_subject(&[]).unwrap();
    let day_two = v.put(&s, "usage_log", b"b").unwrap();
    // One retention key per day, whatever the number of subjects.
    assert_eq!(v.stats().unwrap().retention_days, 2);
    let report = v.expire(ts("2027-02-16T00:00:00Z")).unwrap();
    assert_eq!((report.days_destroyed, report.records_expired), (1, 20));
    for r in &day_one {
        assert_eq!(v.get(r, "security").unwrap_err().kind(), ErrorKind::Expired);
    }
    assert!(v.get(&day_two, "security").is_ok());
    assert_eq!(v.stats().unwrap().retention_days, 1);
}

#[test]
fn a_copy_of_data_from_before_expiry_does_not_bring_records_back() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let s = c.vault.create_subject(&[]).unwrap();
    let r = c.vault.put(&s, "usage_log", b"old log line").unwrap();
    let keep = c.vault.put(&s, "account", b"account").unwrap();
    drop(c);
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("data"), backup.path());
    let c = open_at(dir.path(), t0, false);
    c.vault.expire(ts("2027-03-01T00:00:00Z")).unwrap();
    drop(c);
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    copy_dir(backup.path(), &dir.path().join("data"));
    let c = open_at(dir.path(), t0, false);
    assert_eq!(
        c.vault.get(&r, "security").unwrap_err().kind(),
        ErrorKind::Expired
    );
    assert_eq!(
        &c.vault.get(&keep, "account_admin").unwrap().data[..],
        b"account"
    );
}

#[test]
fn bad_events_flags_and_times_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = open_at(dir.path(), ts("2026-01-15T12:00:00Z"), true);
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    for (event, at) in [
        ("agreement_ends", 0),
        ("collected", 0),
        ("erasure_requested", 0),
        ("agreement_end", -1),
        ("agreement_end", 253_402_300_800),
    ] {
        assert_eq!(
            v.record_event(&s, event, at).unwrap_err().kind(),
            ErrorKind::InvalidArgument,
            "{event} {at}"
        );
    }
    assert_eq!(
        v.set_flag(&s, "vip", true).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // An event at the very end of the calendar: the expiry is past 9999 and stays open.
    v.put(&s, "account", b"x").unwrap();
    v.record_event(&s, "agreement_end", 253_402_300_799)
        .unwrap();
    assert_eq!(v.records(&s).unwrap()[0].expires_at, None);
}
