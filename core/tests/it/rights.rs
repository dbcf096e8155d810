//! The subject's rights and the vault's accountability, end to end: purpose
//! limitation in scan, export against its JSON Schema, the request ledger,
//! signed receipts, the audit chain, post-mortem directives.

use crate::common;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use common::*;
use shredvault::{verify_receipt, Directive, ErrorKind, RequestId, Vault};

fn open_at(dir: &std::path::Path, start: i64, fresh: bool) -> (Vault, Arc<AtomicI64>) {
    let (mut opts, now) = clocked(start);
    opts.actor = Some("rights-test".into());
    let policy = if fresh { Some(example_policy()) } else { None };
    (Vault::open_with(dir, &root(), policy, opts).unwrap(), now)
}

/// The vault at `dir` reopened as privileged.
fn open_privileged(dir: &std::path::Path) -> Vault {
    let (mut opts, _) = clocked(ts("2026-03-01T00:00:00Z"));
    opts.actor = Some("rights-test".into());
    opts.privileged = true;
    Vault::open_with(dir, &root(), None, opts).unwrap()
}

#[test]
fn scan_yields_only_what_the_purpose_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = open_at(dir.path(), ts("2026-03-01T00:00:00Z"), true);
    let mut expect = Vec::new();
    let plain = v.create_subject(&[]).unwrap();
    let restricted = v.create_subject(&[]).unwrap();
    let opted_out = v.create_subject(&[]).unwrap();
    let erased = v.create_subject(&[]).unwrap();
    let no_consent = v.create_subject(&[]).unwrap();
    for s in [&plain, &restricted, &opted_out, &erased, &no_consent] {
        v.give_consent(s, "marketing", 0).unwrap();
        v.give_consent(s, "sale", 0).unwrap();
    }
    expect.push(v.put(&plain, "marketing_contact", b"plain").unwrap());
    let r = v
        .put(&restricted, "marketing_contact", b"restricted")
        .unwrap();
    let o = v
        .put(&opted_out, "marketing_contact", b"opted out")
        .unwrap();
    v.put(&erased, "marketing_contact", b"erased").unwrap();
    v.put(&no_consent, "marketing_contact", b"no consent for sale")
        .unwrap();
    v.put(&plain, "account", b"another category").unwrap();
    v.set_restricted(&restricted, true).unwrap();
    v.set_opt_out_of_sale(&opted_out, true).unwrap();
    v.erase_subject(&erased).unwrap();
    v.withdraw_consent(&no_consent, "sale", 1).unwrap();

    let ids = |category: &str, purpose: &str| -> Vec<_> {
        let mut out: Vec<_> = v
            .scan(category, purpose)
            .unwrap()
            .map(|r| r.unwrap().id)
            .collect();
        out.sort();
        out
    };
    // Sale: neither the restricted, the opted-out, the erased subject, nor
    // one that withdrew consent for sale.
    assert_eq!(ids("marketing_contact", "sale"), expect);
    // Marketing: the opted-out subject is back (it opted out of sale only),
    // and so is the one that still consents to marketing.
    assert_eq!(ids("marketing_contact", "marketing").len(), 3);
    // Legal claims is privileged: this handle was not opened so.
    assert_eq!(
        v.scan("marketing_contact", "legal_claims")
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::PurposeDenied)
    );
    let rec = v
        .scan("marketing_contact", "sale")
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(&rec.data[..], b"plain");
    assert_eq!(
        v.scan("marketing_contact", "billing").unwrap_err().kind(),
        ErrorKind::PurposeDenied
    );
    assert_eq!(
        v.scan("no_such_category", "billing").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // A privileged handle's legal claims see restricted data too.
    drop(v);
    let (mut opts, _) = clocked(ts("2026-03-01T00:00:00Z"));
    opts.privileged = true;
    let v = Vault::open_with(dir.path(), &root(), None, opts).unwrap();
    let legal: Vec<_> = v
        .scan("marketing_contact", "legal_claims")
        .unwrap()
        .map(|r| r.unwrap().id)
        .collect();
    assert!(legal.contains(&r) && legal.contains(&o));
}

#[test]
fn export_answers_an_access_request_and_matches_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = open_at(dir.path(), ts("2026-03-01T00:00:00Z"), true);
    let s = v.create_subject(&[("email", "dora@example.com")]).unwrap();
    let account = v.put(&s, "account", br#"{"name":"Dora"}"#).unwrap();
    v.put(&s, "certificate", b"\x00\x01 binary").unwrap();
    v.give_consent(&s, "marketing", 10).unwrap();
    v.record_event(&s, "last_certificate_end", ts("2027-01-01T00:00:00Z"))
        .unwrap();
    v.get(&account, "billing").unwrap();
    let request = v
        .open_request(&s, "access", ts("2026-03-01T00:00:00Z"))
        .unwrap();
    let doc = v.export(&s).unwrap();

    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/export.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{doc:#}");
    // The schema does reject what is off: a bad encoding, a missing field.
    let mut bad = doc.clone();
    bad["records"][0]["encoding"] = "hex".into();
    assert!(!validator.is_valid(&bad));
    let mut bad = doc.clone();
    bad.as_object_mut().unwrap().remove("disclosures");
    assert!(!validator.is_valid(&bad));

    assert_eq!(doc["subject"], s.to_string());
    assert_eq!(doc["identifiers"][0]["value"], "dora@example.com");
    assert_eq!(doc["retained_only"], false);
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    let acct = records.iter().find(|r| r["category"] == "account").unwrap();
    assert_eq!(acct["encoding"], "json");
    assert_eq!(acct["data"]["name"], "Dora");
    assert_eq!(acct["legal_basis"], "legitimate_interest");
    assert_eq!(acct["retention"], "7y after agreement_end");
    let cert = records
        .iter()
        .find(|r| r["category"] == "certificate")
        .unwrap();
    assert_eq!(cert["encoding"], "base64");
    assert_eq!(cert["data"], "AAEgYmluYXJ5");
    assert_eq!(cert["expires_at"], ts("2034-01-01T00:00:00Z"));
    assert_eq!(doc["consents"][0]["purpose"], "marketing");
    let disclosures = doc["disclosures"].as_array().unwrap();
    assert!(disclosures
        .iter()
        .any(|d| d["op"] == "get" && d["purpose"] == "billing" && d["actor"] == "rights-test"));
    assert_eq!(doc["requests"][0]["id"], request.to_string());

    // After an erasure request: the retained part only, marked as such,
    // and for a privileged handle only.
    v.erase_subject(&s).unwrap();
    assert_eq!(v.export(&s).unwrap_err().kind(), ErrorKind::Restricted);
    drop(v);
    let v = open_privileged(dir.path());
    let doc = v.export(&s).unwrap();
    assert_eq!(doc["retained_only"], true);
    assert_eq!(doc["identifiers"].as_array().unwrap().len(), 0);
    assert!(validator.is_valid(&doc));
    // Erased entirely: no document at all.
    let gone = v.create_subject(&[]).unwrap();
    v.put(&gone, "usage_log", b"x").unwrap();
    v.erase_subject(&gone).unwrap();
    assert_eq!(v.export(&gone).unwrap_err().kind(), ErrorKind::Erased);
}

#[test]
fn requests_are_due_in_a_calendar_month_and_extended_once() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = open_at(dir.path(), ts("2026-01-31T09:00:00Z"), true);
    let s = v.create_subject(&[]).unwrap();
    let received = ts("2026-01-31T09:00:00Z");
    let r = v.open_request(&s, "erasure", received).unwrap();
    let other = v
        .open_request(&s, "access", ts("2026-02-10T00:00:00Z"))
        .unwrap();
    let list = v.requests(None).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, r);
    // 31 January + 1 month = 28 February.
    assert_eq!(list[0].due, ts("2026-02-28T09:00:00Z"));
    let overdue = v.requests(Some(ts("2026-03-01T00:00:00Z"))).unwrap();
    assert_eq!(overdue.iter().map(|q| q.id).collect::<Vec<_>>(), [r]);

    v.extend_request(&r, "many records across systems").unwrap();
    let info = &v.requests(None).unwrap()[0];
    assert!(info.extended);
    assert_eq!(info.due, ts("2026-04-30T09:00:00Z"));
    assert_eq!(
        info.extension_reason.as_deref(),
        Some("many records across systems")
    );
    assert!(v
        .requests(Some(ts("2026-03-01T00:00:00Z")))
        .unwrap()
        .is_empty());
    assert_eq!(
        v.extend_request(&r, "again").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        v.extend_request(&other, " ").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    v.close_request(&r, ts("2026-03-15T00:00:00Z")).unwrap();
    assert_eq!(
        v.close_request(&r, ts("2026-03-16T00:00:00Z"))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        v.close_request(&other, ts("2026-01-01T00:00:00Z"))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let unknown = RequestId::parse(&"ab".repeat(16)).unwrap();
    assert_eq!(
        v.close_request(&unknown, 0).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        v.open_request(&s, "complaint", received)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    // The ledger survives the subject's erasure; the reason goes with it.
    v.erase_subject(&s).unwrap();
    let list = v.requests(None).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].closed_at, Some(ts("2026-03-15T00:00:00Z")));
    assert_eq!(list[0].extension_reason, None);
}

#[test]
fn erasure_receipts_are_signed_and_any_change_breaks_them() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = open_at(dir.path(), ts("2026-03-01T00:00:00Z"), true);
    let s = v.create_subject(&[]).unwrap();
    v.put(&s, "usage_log", b"x").unwrap();
    v.put(&s, "certificate", b"y").unwrap();
    let receipt = v.erase_subject(&s).unwrap();
    let pk = v.receipt_public_key().unwrap();
    assert_eq!(receipt.public_key, pk);
    let json = receipt.to_json();
    let checked = verify_receipt(&json, Some(&pk)).unwrap();
    assert_eq!(checked["subject"], s.to_string());
    let entries = v.audit_entries(Some(&s)).unwrap();
    // The erasure is in the log, durably, before its key goes (`begun`),
    // and the receipt names its final entry.
    let begun = entries.iter().find(|e| e.op == "erase_subject").unwrap();
    assert_eq!(begun.outcome, "begun");
    let erase = entries
        .iter()
        .find(|e| e.op == "erase_subject" && e.outcome == "ok")
        .unwrap();
    assert!(begun.seq < erase.seq);
    assert_eq!(erase.seq, receipt.audit_seq);
    // The same key after a reopen.
    drop(v);
    let (v, _) = open_at(dir.path(), ts("2026-03-02T00:00:00Z"), false);
    assert_eq!(v.receipt_public_key().unwrap(), pk);
    for (from, to) in [
        (
            format!("\"subject\": \"{s}\""),
            format!("\"subject\": \"{}\"", "0".repeat(32)),
        ),
        ("\"records\": 1".to_string(), "\"records\": 2".to_string()),
        (
            format!("\"audit_seq\": {}", receipt.audit_seq),
            format!("\"audit_seq\": {}", receipt.audit_seq + 1),
        ),
    ] {
        let altered = json.replacen(&from, &to, 1);
        assert_ne!(altered, json, "{from}");
        let err = verify_receipt(&altered, Some(&pk)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{from}");
    }
}

#[test]
fn the_audit_chain_verifies_holds_no_personal_data_and_breaks_where_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = open_at(dir.path(), ts("2026-03-01T00:00:00Z"), true);
    let s = v.create_subject(&[("email", "erin@example.com")]).unwrap();
    let r = v.put(&s, "account", b"ERIN-SECRET-RECORD").unwrap();
    for _ in 0..3 {
        v.get(&r, "billing").unwrap();
    }
    let _ = v.get(&r, "NOT-A-PURPOSE erin@example.com");
    v.record_event(&s, "agreement_end", ts("2027-01-01T00:00:00Z"))
        .unwrap();
    let report = v.verify_audit().unwrap();
    assert!(report.entries >= 7);
    // The vault's first policy is logged at its creation; then the calls.
    let all = v.audit_entries(None).unwrap();
    assert_eq!(all[0].op, "set_policy");
    let entries = &all[1..];
    let ops: Vec<&str> = entries.iter().map(|e| e.op.as_str()).collect();
    assert!(ops.starts_with(&[
        "create_subject",
        "put",
        "get",
        "get",
        "get",
        "get",
        "record_event"
    ]));
    assert_eq!(entries[5].outcome, "PurposeDenied");
    assert_eq!(entries[5].purpose.as_deref(), Some("(unknown)"));
    assert!(entries
        .iter()
        .all(|e| e.actor.as_deref() == Some("rights-test")));
    let target = entries.iter().find(|e| e.op == "record_event").unwrap().seq;
    v.erase_subject(&s).unwrap();
    v.verify_audit().unwrap();
    drop(v);
    for needle in [&b"erin@example.com"[..], b"ERIN-SECRET-RECORD"] {
        assert_absent(dir.path(), needle, "personal data");
    }

    // Flip one byte of one entry: verification fails at that entry.
    {
        let db = raw_sled(dir.path());
        let tree = db.open_tree("vault").unwrap();
        let mut done = false;
        for item in tree.scan_prefix(b"A") {
            let (k, v) = item.unwrap();
            if let Some(pos) = v.windows(12).position(|w| w == b"record_event") {
                let mut bytes = v.to_vec();
                bytes[pos] ^= 0x20;
                tree.insert(k, bytes).unwrap();
                done = true;
                break;
            }
        }
        assert!(done);
        db.flush().unwrap();
    }
    let (v, _) = open_at(dir.path(), ts("2026-03-02T00:00:00Z"), false);
    let err = v.verify_audit().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.to_string().contains(&format!("audit entry {target}:")),
        "{err}"
    );
}

#[test]
fn a_post_mortem_directive_is_carried_out_when_death_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = open_at(dir.path(), ts("2026-03-01T00:00:00Z"), true);
    let erase = v.create_subject(&[]).unwrap();
    let usage = v.put(&erase, "usage_log", b"log").unwrap();
    let cert = v.put(&erase, "certificate", b"cert").unwrap();
    v.set_post_mortem_directive(&erase, &Directive::Erase)
        .unwrap();
    v.record_event(&erase, "deceased", ts("2026-02-20T00:00:00Z"))
        .unwrap();
    assert_eq!(
        v.get(&usage, "security").unwrap_err().kind(),
        ErrorKind::Erased
    );
    // Industry rules keep the certificate, restricted, as for any erasure.
    assert_eq!(
        v.get(&cert, "certificate_validation").unwrap_err().kind(),
        ErrorKind::Restricted
    );

    let hand = v.create_subject(&[]).unwrap();
    let acct = v.put(&hand, "account", b"account").unwrap();
    let d = v
        .set_post_mortem_directive(
            &hand,
            &Directive::HandOver {
                to: "Frank Heir".into(),
            },
        )
        .unwrap();
    // Replacing the directive updates the same record.
    assert_eq!(
        v.set_post_mortem_directive(
            &hand,
            &Directive::HandOver {
                to: "Grace Heir".into()
            }
        )
        .unwrap(),
        d
    );
    v.record_event(&hand, "deceased", ts("2026-02-20T00:00:00Z"))
        .unwrap();
    assert_eq!(
        v.get(&acct, "billing").unwrap_err().kind(),
        ErrorKind::Restricted
    );
    // The hand-over is the export, which a restricted subject's is only to
    // a privileged handle.
    assert_eq!(v.export(&hand).unwrap_err().kind(), ErrorKind::Restricted);
    drop(v);
    let v = open_privileged(dir.path());
    let doc = v.export(&hand).unwrap();
    let directive = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "post_mortem_directive")
        .unwrap();
    assert_eq!(directive["data"]["to"], "Grace Heir");
    assert!(doc["states"]["restricted"].as_bool().unwrap());
}
