//! Retention through the vault with a simulated clock: day keys, events,
//! flags, expiry, and that an old copy of data/ does not bring expired
//! records back.

use crate::common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::*;
use shredvault::{ErrorKind, Vault, VaultOptions};

const DAY: i64 = 86_400;

struct Clocked {
    vault: Vault,
    now: Arc<AtomicI64>,
}

fn open_at(dir: &std::path::Path, start: i64, fresh: bool) -> Clocked {
    let (mut opts, now) = clocked(start);
    // Expiry runs below are forced ahead of the simulated clock, and reads
    // for legal_claims (privileged) show what is kept for it.
    opts.privileged = true;
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
    let report = v.expire_with(end - DAY, true).unwrap();
    assert_eq!(report.days_destroyed, 0);
    assert_eq!(&v.get(&usage, "security").unwrap().data[..], b"login");
    let report = v.expire_with(end + DAY, true).unwrap();
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
    assert_eq!(
        v.expire_with(end + 2 * DAY, true).unwrap().days_destroyed,
        0
    );
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
    v.expire_with(ts("2034-01-01T00:00:00Z"), true).unwrap();
    assert_eq!(
        &v.get(&cert, "certificate_validation").unwrap().data[..],
        b"CN=alice"
    );
    // 7 years kept: one day before the end it reads, one day after it is gone.
    v.expire_with(ts("2035-05-31T00:00:00Z"), true).unwrap();
    assert!(v.get(&cert, "certificate_validation").is_ok());
    v.expire_with(ts("2035-06-02T00:00:00Z"), true).unwrap();
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
    let report = v.expire_with(ts("2027-02-16T00:00:00Z"), true).unwrap();
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
    c.vault
        .expire_with(ts("2027-03-01T00:00:00Z"), true)
        .unwrap();
    drop(c);
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    copy_dir(backup.path(), &dir.path().join("data"));
    accept_stale_copy(dir.path());
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

#[test]
fn an_erasure_request_erases_at_once_and_keeps_retain_categories_restricted() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let v = &c.vault;
    let s = v.create_subject(&[("email", "carol@example.com")]).unwrap();
    v.record_event(&s, "last_certificate_end", ts("2027-06-30T10:00:00Z"))
        .unwrap();
    v.give_consent(&s, "marketing", t0).unwrap();
    let cert = v.put(&s, "certificate", b"CN=carol").unwrap();
    let account = v.put(&s, "account", b"carol's account").unwrap();
    let usage = v.put(&s, "usage_log", b"carol logged in").unwrap();
    let mkt = v
        .put(&s, "marketing_contact", b"carol@example.com")
        .unwrap();
    let guard = v.put(&s, "codeguard", b"carol's backup").unwrap();

    let receipt = v.erase_subject(&s).unwrap();
    let erased: Vec<_> = receipt
        .erased
        .iter()
        .map(|c| (c.category.as_str(), c.records))
        .collect();
    assert_eq!(
        erased,
        [("codeguard", 1), ("marketing_contact", 1), ("usage_log", 1)]
    );
    let retained: Vec<_> = receipt
        .retained
        .iter()
        .map(|r| (r.category.as_str(), r.records, r.until))
        .collect();
    assert_eq!(
        retained,
        [
            ("account", 1, None), // the agreement has not ended: no date yet
            ("certificate", 1, Some(ts("2034-07-01T00:00:00Z"))),
        ]
    );
    assert!(receipt.retained[1]
        .reason
        .contains("7y after last_certificate_end"));
    assert_eq!(receipt.identifiers_removed, 1);
    assert!(!receipt.subject_key_destroyed);

    for r in [usage, mkt, guard] {
        assert_eq!(
            v.get(&r, "legal_claims").unwrap_err().kind(),
            ErrorKind::Erased
        );
    }
    // What is kept is readable for legal claims only.
    assert_eq!(
        v.get(&cert, "certificate_validation").unwrap_err().kind(),
        ErrorKind::Restricted
    );
    assert_eq!(&v.get(&cert, "legal_claims").unwrap().data[..], b"CN=carol");
    assert_eq!(
        &v.get(&account, "legal_claims").unwrap().data[..],
        b"carol's account"
    );
    assert_eq!(v.find_subject("email", "carol@example.com").unwrap(), None);
    assert_eq!(
        v.put(&s, "account", b"more").unwrap_err().kind(),
        ErrorKind::Erased
    );
    assert_eq!(v.subject_state(&s).unwrap().erasure_requested, Some(t0));
    assert_absent(dir.path(), b"carol@example.com", "an erased identifier");

    // The certificate goes when its retention ends; the account once its
    // agreement has ended and 7 years passed; then the subject key.
    let end = ts("2034-07-01T00:00:00Z");
    v.expire_with(end + DAY, true).unwrap();
    assert_eq!(
        v.get(&cert, "legal_claims").unwrap_err().kind(),
        ErrorKind::Expired
    );
    v.record_event(&s, "agreement_end", ts("2030-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(
        v.records(&s).unwrap()[0].expires_at,
        Some(ts("2037-01-01T00:00:00Z"))
    );
    v.expire_with(ts("2037-01-02T00:00:00Z"), true).unwrap();
    v.purge().unwrap();
    assert_eq!(v.records(&s).unwrap_err().kind(), ErrorKind::Erased);
    assert_eq!(v.stats().unwrap().subjects_erased, 1);
}

#[test]
fn a_legal_hold_refuses_erasure_and_survives_expiry_runs() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let v = &c.vault;
    let held = v.create_subject(&[]).unwrap();
    let other = v.create_subject(&[]).unwrap();
    let h = v.put(&held, "usage_log", b"held log").unwrap();
    let o = v.put(&other, "usage_log", b"other log").unwrap();
    v.set_legal_hold(&held, true).unwrap();
    assert_eq!(
        v.erase_subject(&held).unwrap_err().kind(),
        ErrorKind::LegalHold
    );
    assert_eq!(v.delete(&h).unwrap_err().kind(), ErrorKind::LegalHold);

    // The day both records share ends: only the unheld one expires.
    let end = ts("2027-02-16T00:00:00Z");
    let report = v.expire_with(end + DAY, true).unwrap();
    assert_eq!(
        (
            report.days_destroyed,
            report.records_expired,
            report.records_spared_by_hold
        ),
        (1, 1, 1)
    );
    assert_eq!(
        v.get(&o, "security").unwrap_err().kind(),
        ErrorKind::Expired
    );
    assert_eq!(&v.get(&h, "security").unwrap().data[..], b"held log");
    // Later runs, and a reopen, keep it.
    assert_eq!(
        v.expire_with(end + 400 * DAY, true)
            .unwrap()
            .records_expired,
        0
    );
    drop(c);
    let c = open_at(dir.path(), end + 400 * DAY, false);
    let v = &c.vault;
    assert_eq!(&v.get(&h, "security").unwrap().data[..], b"held log");
    assert!(v.subject_state(&held).unwrap().legal_hold);
    // Lifted: past due, it expires then.
    v.set_legal_hold(&held, false).unwrap();
    assert_eq!(
        v.get(&h, "security").unwrap_err().kind(),
        ErrorKind::Expired
    );
    v.erase_subject(&held).unwrap();
}

#[test]
fn consent_withdrawal_erases_consent_based_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    v.give_consent(&s, "marketing", t0).unwrap();
    v.give_consent(&s, "sale", t0).unwrap();
    v.give_consent(&s, "events", t0).unwrap();
    let mkt = v
        .put(&s, "marketing_contact", b"marketing contact")
        .unwrap();
    let ev = v.put(&s, "event_contact", b"event contact").unwrap();
    let acct = v.put(&s, "account", b"account").unwrap();
    drop(c);
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("data"), backup.path());
    let c = open_at(dir.path(), t0 + 10, false);
    let v = &c.vault;

    // Marketing contact serves marketing and sale: withdrawing one leaves it
    // alive for the other, but no longer readable for the withdrawn one.
    v.withdraw_consent(&s, "marketing", t0 + 10).unwrap();
    assert_eq!(
        v.get(&mkt, "marketing").unwrap_err().kind(),
        ErrorKind::PurposeDenied
    );
    assert_eq!(&v.get(&mkt, "sale").unwrap().data[..], b"marketing contact");
    v.withdraw_consent(&s, "sale", t0 + 20).unwrap();
    assert_eq!(v.get(&mkt, "sale").unwrap_err().kind(), ErrorKind::Erased);
    assert_eq!(&v.get(&ev, "events").unwrap().data[..], b"event contact");
    assert_eq!(&v.get(&acct, "account_admin").unwrap().data[..], b"account");
    let state = v.subject_state(&s).unwrap();
    assert_eq!(state.consents.len(), 5);
    assert!(!state.consents[3].given);
    // Consent given again later: new records may be stored again.
    v.give_consent(&s, "marketing", t0 + 30).unwrap();
    v.put(&s, "marketing_contact", b"new contact").unwrap();
    drop(c);

    // A copy of data/ from before the withdrawal does not bring it back.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    copy_dir(backup.path(), &dir.path().join("data"));
    accept_stale_copy(dir.path());
    let c = open_at(dir.path(), t0 + 40, false);
    assert_eq!(
        c.vault.get(&mkt, "legal_claims").unwrap_err().kind(),
        ErrorKind::Erased
    );
}

#[test]
fn restriction_and_sale_opt_out_are_enforced_on_reads() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    v.give_consent(&s, "marketing", t0).unwrap();
    v.give_consent(&s, "sale", t0).unwrap();
    let mkt = v.put(&s, "marketing_contact", b"contact").unwrap();
    let acct = v.put(&s, "account", b"account").unwrap();
    v.set_opt_out_of_sale(&s, true).unwrap();
    assert_eq!(
        v.get(&mkt, "sale").unwrap_err().kind(),
        ErrorKind::PurposeDenied
    );
    assert!(v.get(&mkt, "marketing").is_ok());
    v.set_restricted(&s, true).unwrap();
    assert_eq!(
        v.get(&acct, "account_admin").unwrap_err().kind(),
        ErrorKind::Restricted
    );
    assert!(v.get(&acct, "legal_claims").is_ok());
    v.set_restricted(&s, false).unwrap();
    v.set_opt_out_of_sale(&s, false).unwrap();
    assert!(v.get(&mkt, "sale").is_ok());
    assert!(v.get(&acct, "account_admin").is_ok());
    // Unknown purposes and legal_claims cannot be consented to.
    for p in ["newsletter", "legal_claims"] {
        assert_eq!(
            v.give_consent(&s, p, t0).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    assert_eq!(
        v.give_consent(&s, "marketing", -5).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn a_policy_change_reevaluates_expiries() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let s = c.vault.create_subject(&[]).unwrap();
    let r = c.vault.put(&s, "usage_log", b"log").unwrap();
    let old_end = ts("2027-02-16T00:00:00Z");
    assert_eq!(c.vault.records(&s).unwrap()[0].expires_at, Some(old_end));
    drop(c);
    // Usage logs now kept 6 months: the record moves to its new day, at open.
    let text = std::fs::read_to_string(example_policy_path())
        .unwrap()
        .replace(
            r#"retention = [{ after = "collected", keep = "13mo" }]"#,
            r#"retention = [{ after = "collected", keep = "6mo" }]"#,
        );
    let policy = shredvault::Policy::parse(&text, "shorter.toml").unwrap();
    let now = Arc::new(AtomicI64::new(t0));
    let clock = now.clone();
    let opts = VaultOptions {
        clock: Some(Arc::new(move || clock.load(Ordering::SeqCst))),
        ..Default::default()
    };
    let v = Vault::open_with(dir.path(), &root(), Some(policy.clone()), opts).unwrap();
    let new_end = ts("2026-07-16T00:00:00Z");
    assert_eq!(v.records(&s).unwrap()[0].expires_at, Some(new_end));
    now.store(t0 + 200 * DAY, Ordering::SeqCst);
    let s2 = v.create_subject(&[]).unwrap();
    let r2 = v.put(&s2, "usage_log", b"log").unwrap();
    assert_eq!(
        v.expire_with(new_end + DAY, true).unwrap().records_expired,
        1
    );
    assert_eq!(
        v.get(&r, "security").unwrap_err().kind(),
        ErrorKind::Expired
    );
    assert!(v.get(&r2, "security").is_ok());
    // Through set_policy, a rule that is already past erases at once.
    now.store(t0 + 250 * DAY, Ordering::SeqCst);
    let text = text.replace(
        r#"retention = [{ after = "collected", keep = "6mo" }]"#,
        r#"retention = [{ after = "collected", keep = "30d" }]"#,
    );
    v.set_policy(shredvault::Policy::parse(&text, "shortest.toml").unwrap())
        .unwrap();
    assert_eq!(
        v.get(&r2, "security").unwrap_err().kind(),
        ErrorKind::Expired
    );
}

#[test]
fn expired_records_are_unreadable_at_once_and_purged_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-01-15T12:00:00Z");
    let c = open_at(dir.path(), t0, true);
    let subjects: Vec<_> = (0..30)
        .map(|_| c.vault.create_subject(&[]).unwrap())
        .collect();
    let mut ids = Vec::new();
    for i in 0..3000 {
        ids.push(c.vault.put(&subjects[i % 30], "usage_log", b"log").unwrap());
    }
    c.now.store(t0 + DAY, Ordering::SeqCst);
    let later = c.vault.put(&subjects[0], "usage_log", b"next day").unwrap();
    let report = c
        .vault
        .expire_with(ts("2027-02-16T01:00:00Z"), true)
        .unwrap();
    assert_eq!((report.days_destroyed, report.records_expired), (1, 3000));
    // Unreadable and unlisted at once, whether or not the purge has run.
    for id in ids.iter().step_by(97) {
        assert_eq!(
            c.vault.get(id, "security").unwrap_err().kind(),
            ErrorKind::Expired
        );
    }
    assert_eq!(c.vault.records(&subjects[1]).unwrap().len(), 0);
    assert_eq!(c.vault.records(&subjects[0]).unwrap().len(), 1);
    // Dropping the handle may cut the purge short; the next open resumes it.
    drop(c);
    let c = open_at(dir.path(), t0 + DAY, false);
    c.vault.purge().unwrap();
    let stats = c.vault.stats().unwrap();
    assert_eq!((stats.records_live, stats.records_gone), (1, 3000));
    assert_eq!(stats.retention_days, 1);
    assert_eq!(
        &c.vault.get(&later, "security").unwrap().data[..],
        b"next day"
    );
}
