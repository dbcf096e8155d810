//! One test per row of the privacy policy's retention table (and the
//! post-mortem directive), through the vault with a simulated clock: each
//! record is kept one day before its retention ends and gone one day after,
//! or, for the rows that end on consent withdrawal or never, shown to end
//! exactly that way.

use crate::common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::*;
use shredvault::{ErrorKind, RecordId, SubjectId, Vault};

const DAY: i64 = 86_400;

/// When every record below is collected.
fn t0() -> i64 {
    ts("2026-01-15T12:00:00Z")
}

struct Clocked {
    vault: Vault,
    now: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

fn vault() -> Clocked {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, now) = clocked(t0());
    // Reads for legal_claims (privileged) show what is kept for it.
    opts.privileged = true;
    Clocked {
        vault: Vault::open_with(dir.path(), &root(), Some(example_policy()), opts).unwrap(),
        now,
        _dir: dir,
    }
}

/// Puts a record of `category` for a subject prepared by `setup`, checks
/// its expiry is `end`, that an expiry run one day before keeps it and one
/// a day after removes it (`Expired`), touching one day key.
fn kept_until(
    category: &str,
    purpose: &str,
    setup: impl FnOnce(&Vault, &SubjectId),
    end: i64,
) -> (Clocked, SubjectId, RecordId) {
    let c = vault();
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    setup(v, &s);
    let r = v.put(&s, category, b"row data").unwrap();
    let info = v.records(&s).unwrap();
    let info = info.iter().find(|i| i.id == r).unwrap();
    assert_eq!(info.expires_at, Some(end), "{category}: expiry");
    c.now.store(end - DAY, Ordering::SeqCst);
    assert_eq!(v.expire(end - DAY).unwrap().records_expired, 0);
    assert_eq!(&v.get(&r, purpose).unwrap().data[..], b"row data");
    c.now.store(end + DAY, Ordering::SeqCst);
    let report = v.expire(end + DAY).unwrap();
    assert_eq!((report.days_destroyed, report.records_expired), (1, 1));
    assert_eq!(v.get(&r, purpose).unwrap_err().kind(), ErrorKind::Expired);
    (c, s, r)
}

fn event(v: &Vault, s: &SubjectId, name: &str, at: &str) {
    v.record_event(s, name, ts(at)).unwrap();
}

#[test]
fn row_01_account_agreement_plus_7_years() {
    kept_until(
        "account",
        "account_admin",
        |v, s| event(v, s, "agreement_end", "2027-03-01T00:00:00Z"),
        ts("2034-03-01T00:00:00Z"), // exactly midnight: that day's end
    );
}

#[test]
fn row_02_certificate_7_years_after_the_last_certificate() {
    kept_until(
        "certificate",
        "certificate_validation",
        |v, s| event(v, s, "last_certificate_end", "2027-06-30T10:00:00Z"),
        ts("2034-07-01T00:00:00Z"),
    );
}

#[test]
fn row_02_qualified_certificate_15_years() {
    kept_until(
        "certificate",
        "certificate_validation",
        |v, s| {
            event(v, s, "last_certificate_end", "2027-06-30T10:00:00Z");
            v.set_flag(s, "qualified_certificate", true).unwrap();
        },
        ts("2042-07-01T00:00:00Z"),
    );
}

#[test]
fn row_03_codeguard_until_the_earlier_of_agreement_end_and_a_deletion_request() {
    kept_until(
        "codeguard",
        "codeguard",
        |v, s| event(v, s, "agreement_end", "2027-03-01T12:00:00Z"),
        ts("2027-03-02T00:00:00Z"),
    );
    // The other branch: the deletion request comes first and ends it at once.
    let c = vault();
    let s = c.vault.create_subject(&[]).unwrap();
    let r = c.vault.put(&s, "codeguard", b"backup").unwrap();
    let receipt = c.vault.erase_subject(&s).unwrap();
    assert_eq!(receipt.records_erased(), 1);
    assert_eq!(
        c.vault.get(&r, "legal_claims").unwrap_err().kind(),
        ErrorKind::Erased
    );
}

#[test]
fn row_04_reseller_orders_certificate_or_other_product() {
    kept_until(
        "reseller_order",
        "billing",
        |v, s| {
            v.set_flag(s, "certificate_order", true).unwrap();
            event(v, s, "last_certificate_end", "2027-06-30T10:00:00Z");
        },
        ts("2034-07-01T00:00:00Z"),
    );
    kept_until(
        "reseller_order",
        "billing",
        |v, s| event(v, s, "agreement_end", "2028-02-29T08:00:00Z"),
        ts("2035-03-01T00:00:00Z"), // 29 February + 7 years = 28 February
    );
}

#[test]
fn row_05_third_party_validation_sources() {
    kept_until(
        "validation_source",
        "fraud_prevention",
        |v, s| event(v, s, "last_certificate_end", "2027-06-30T10:00:00Z"),
        ts("2034-07-01T00:00:00Z"),
    );
}

#[test]
fn row_06_purchased_leads_until_the_later_of_agreement_plus_7_years_and_a_deletion_request() {
    let c = vault();
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    event(v, &s, "agreement_end", "2027-03-01T12:00:00Z");
    let r = v.put(&s, "purchased_leads", b"lead").unwrap();
    // No deletion request yet: no expiry, even years after the agreement.
    assert_eq!(v.records(&s).unwrap()[0].expires_at, None);
    assert_eq!(
        v.expire_with(ts("2033-01-01T00:00:00Z"), true)
            .unwrap()
            .records_expired,
        0
    );
    // The request: the later clause (7 years after the agreement) decides.
    let receipt = v.erase_subject(&s).unwrap();
    let end = ts("2034-03-02T00:00:00Z");
    assert_eq!(receipt.retained.len(), 1);
    assert_eq!(receipt.retained[0].until, Some(end));
    assert_eq!(
        v.get(&r, "marketing").unwrap_err().kind(),
        ErrorKind::Restricted
    );
    v.expire_with(end - DAY, true).unwrap();
    assert_eq!(&v.get(&r, "legal_claims").unwrap().data[..], b"lead");
    c.now.store(end + DAY, Ordering::SeqCst);
    assert_eq!(v.expire(end + DAY).unwrap().records_expired, 1);
    assert_eq!(
        v.get(&r, "legal_claims").unwrap_err().kind(),
        ErrorKind::Expired
    );
    // With nothing left, the subject is erased entirely (by the purge that
    // follows an expiry run; `purge` waits for it).
    v.purge().unwrap();
    assert_eq!(v.records(&s).unwrap_err().kind(), ErrorKind::Erased);
}

#[test]
fn row_07_information_in_issued_certificates() {
    kept_until(
        "issued_certificate",
        "certificate_integrity",
        |v, s| {
            v.set_flag(s, "qualified_certificate", true).unwrap();
            event(v, s, "last_certificate_end", "2030-12-31T23:59:59Z");
        },
        ts("2046-01-01T00:00:00Z"),
    );
}

#[test]
fn row_08_ct_log_entries_have_no_retention_period() {
    let c = vault();
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "ct_log_entry", b"precert").unwrap();
    assert_eq!(v.records(&s).unwrap()[0].expires_at, None);
    assert_eq!(
        v.expire_with(ts("2126-01-01T00:00:00Z"), true)
            .unwrap()
            .records_expired,
        0
    );
    assert_eq!(
        &v.get(&r, "certificate_integrity").unwrap().data[..],
        b"precert"
    );
    // Kept on an erasure request too (restricted), with no end date.
    let receipt = v.erase_subject(&s).unwrap();
    assert_eq!(receipt.retained[0].category, "ct_log_entry");
    assert_eq!(receipt.retained[0].until, None);
    assert_eq!(&v.get(&r, "legal_claims").unwrap().data[..], b"precert");
}

#[test]
fn row_09_usage_logs_13_months_after_collection() {
    kept_until(
        "usage_log",
        "security",
        |_, _| {},
        ts("2027-02-16T00:00:00Z"),
    );
}

/// The consent rows: no date ends them; withdrawing consent erases them.
fn ends_on_withdrawal(category: &str, purpose: &str) {
    let c = vault();
    let v = &c.vault;
    let s = v.create_subject(&[]).unwrap();
    assert_eq!(
        v.put(&s, category, b"x").unwrap_err().kind(),
        ErrorKind::PurposeDenied,
        "{category}: no consent, no put"
    );
    v.give_consent(&s, purpose, t0() - 60).unwrap();
    let r = v.put(&s, category, b"contact").unwrap();
    let kept = v.put(&s, "account", b"account").unwrap();
    assert_eq!(
        v.expire_with(ts("2100-01-01T00:00:00Z"), true)
            .unwrap()
            .records_expired,
        0
    );
    assert_eq!(&v.get(&r, purpose).unwrap().data[..], b"contact");
    v.withdraw_consent(&s, purpose, t0() + 60).unwrap();
    assert_eq!(v.get(&r, purpose).unwrap_err().kind(), ErrorKind::Erased);
    assert_eq!(&v.get(&kept, "account_admin").unwrap().data[..], b"account");
}

#[test]
fn row_10_inquiries_until_consent_is_withdrawn() {
    ends_on_withdrawal("inquiry", "inquiry_response");
}

#[test]
fn row_11_events_and_news_until_consent_is_withdrawn() {
    ends_on_withdrawal("event_contact", "events");
}

#[test]
fn row_12_marketing_until_consent_is_withdrawn() {
    ends_on_withdrawal("marketing_contact", "marketing");
}

#[test]
fn row_13_analytics_for_the_experience_13_months_on_consent() {
    kept_until(
        "analytics_experience",
        "site_improvement",
        |v, s| v.give_consent(s, "site_improvement", t0()).unwrap(),
        ts("2027-02-16T00:00:00Z"),
    );
}

#[test]
fn row_14_analytics_for_advertising_13_months_on_consent() {
    kept_until(
        "analytics_advertising",
        "personalised_advertising",
        |v, s| v.give_consent(s, "personalised_advertising", t0()).unwrap(),
        ts("2027-02-16T00:00:00Z"),
    );
}

#[test]
fn row_15_job_applications_4_years_after_hiring_or_the_employee_notice() {
    kept_until(
        "job_application",
        "recruitment",
        |v, s| event(v, s, "hiring_concluded", "2026-03-31T17:00:00Z"),
        ts("2030-04-01T00:00:00Z"),
    );
    kept_until(
        "job_application",
        "recruitment",
        |v, s| {
            event(v, s, "hiring_concluded", "2026-03-31T17:00:00Z");
            v.set_flag(s, "employee", true).unwrap();
            event(v, s, "employee_notice_period_end", "2026-06-30T12:00:00Z");
        },
        ts("2026-07-01T00:00:00Z"),
    );
}

#[test]
fn row_16_post_mortem_directive_a_year_after_death() {
    kept_until(
        "post_mortem_directive",
        "post_mortem",
        |v, s| event(v, s, "deceased", "2026-01-10T09:00:00Z"),
        ts("2027-01-11T00:00:00Z"),
    );
}
