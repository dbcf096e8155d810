//! Writes the compatibility fixture `core/tests/fixtures/vault-0.1/`: a
//! small vault touching every stored structure (subjects with identifiers,
//! events, flags, consent, states; records open, dated, updated, deleted,
//! expired; an erased subject; an erasure request that kept something;
//! requests with an extension reason; a post-mortem directive; the audit
//! chain), and `expected.json`, what reading it back must give.
//!
//! The committed fixture was written by the code of commit a8908cc (before
//! the engine was split into its store and custody seams); the test
//! `core/tests/it/fixture.rs` opens a copy with today's code and compares
//! everything. Run again only to make a fixture for a new format:
//!
//! ```sh
//! cargo run -p shredvault --example make_fixture -- core/tests/fixtures/vault-0.1
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde_json::json;
use shredvault::{Directive, Policy, RecordId, RootKey, SubjectId, Vault, VaultOptions};

#[path = "../tests/it/common/readback.rs"]
mod readback;

/// 2026-06-01T00:00:00Z: the fixture's clock.
const T0: i64 = 1_780_272_000;
const DAY: i64 = 86_400;
/// The fixture's root key: 32 bytes of 0x0f.
const ROOT: [u8; 32] = [0x0f; 32];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: make_fixture DIR")?);
    if out.exists() {
        return Err(format!("{} exists: remove it first", out.display()).into());
    }
    let vault_dir = out.join("vault");
    let clock = Arc::new(AtomicI64::new(T0));
    let options = {
        let c = clock.clone();
        VaultOptions {
            clock: Some(Arc::new(move || c.load(Ordering::SeqCst))),
            actor: Some("fixture".into()),
            ..Default::default()
        }
    };
    let root = RootKey::from_bytes(&ROOT)?;
    let policy = Policy::from_file(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../example-policy.toml"),
    )?;
    let v = Vault::open_with(&vault_dir, &root, Some(policy), options.clone())?;
    let tick = |secs: i64| clock.fetch_add(secs, Ordering::SeqCst);

    let mut subjects: Vec<SubjectId> = Vec::new();
    let mut records: Vec<RecordId> = Vec::new();

    // Alice: an account, usage logs (dated), an update, a delete, consent.
    let alice = v.create_subject(&[("email", "Alice@Example.com"), ("customer_no", "C-1001")])?;
    subjects.push(alice);
    records.push(v.put(&alice, "account", br#"{"name":"Alice","plan":"pro"}"#)?);
    tick(60);
    for i in 0..5 {
        records.push(v.put(
            &alice,
            "usage_log",
            format!("login {i} from 10.0.0.{i}").as_bytes(),
        )?);
        tick(DAY);
    }
    v.update(&records[0], br#"{"name":"Alice B.","plan":"pro"}"#)?;
    tick(60);
    v.delete(&records[2])?;
    v.give_consent(&alice, "marketing", T0 + 3 * DAY)?;
    records.push(v.put(&alice, "marketing_contact", b"alice@example.com, weekly")?);
    v.set_flag(&alice, "qualified_certificate", true)?;
    records.push(v.put(&alice, "certificate", b"CN=Alice, O=Example")?);
    v.record_event(&alice, "last_certificate_end", T0 + 400 * DAY)?;
    v.set_opt_out_of_sale(&alice, true)?;
    let request = v.open_request(&alice, "access", T0 + 2 * DAY)?;
    v.extend_request(&request, "many systems to search")?;
    let closed = v.open_request(&alice, "rectification", T0 + 3 * DAY)?;
    v.close_request(&closed, T0 + 6 * DAY)?;

    // Bob: erased outright (nothing retained).
    let bob = v.create_subject(&[("email", "bob@example.com")])?;
    subjects.push(bob);
    records.push(v.put(&bob, "usage_log", b"bob's login")?);
    records.push(v.put(&bob, "codeguard", b"bob's site backup")?);
    tick(60);
    v.erase_subject(&bob)?;

    // Carol: an erasure request that keeps her account (restricted).
    let carol = v.create_subject(&[("email", "carol@example.com")])?;
    subjects.push(carol);
    records.push(v.put(&carol, "account", br#"{"name":"Carol"}"#)?);
    records.push(v.put(&carol, "codeguard", b"carol's site")?);
    v.record_event(&carol, "agreement_end", T0 + 10 * DAY)?;
    tick(60);
    v.erase_subject(&carol)?;

    // Dave: restricted, under legal hold, with a post-mortem directive.
    let dave = v.create_subject(&[("customer_no", "C-1004")])?;
    subjects.push(dave);
    records.push(v.put(&dave, "account", br#"{"name":"Dave"}"#)?);
    records.push(v.put(&dave, "usage_log", b"dave's login")?);
    records.push(v.set_post_mortem_directive(
        &dave,
        &Directive::HandOver {
            to: "Erin Example".into(),
        },
    )?);
    v.set_restricted(&dave, true)?;
    v.set_legal_hold(&dave, true)?;

    // Frank: consent withdrawn (his marketing contact is erased).
    let frank = v.create_subject(&[("email", "frank@example.com")])?;
    subjects.push(frank);
    v.give_consent(&frank, "marketing", T0)?;
    records.push(v.put(&frank, "marketing_contact", b"frank@example.com")?);
    records.push(v.put(&frank, "account", br#"{"name":"Frank"}"#)?);
    tick(60);
    v.withdraw_consent(&frank, "marketing", clock.load(Ordering::SeqCst))?;

    // Time passes: Alice's first usage logs (13 months) expire; Dave's are
    // spared by the hold.
    let expire_at = T0 + 400 * DAY + 3 * DAY;
    v.expire(expire_at)?;
    v.purge()?;
    clock.store(expire_at + 60, Ordering::SeqCst);

    // A few more puts after the expiry run.
    records.push(v.put(&alice, "usage_log", b"a later login")?);
    records.push(v.put(&frank, "usage_log", b"frank's later login")?);

    let audit = v.verify_audit()?;
    let audit_entries = v.audit_entries(None)?;
    let stats = v.stats()?;
    v.close()?;

    // What reading it back gives, from a fresh handle at the same time, on
    // a copy (reads add audit entries: the fixture stays as written).
    let check_dir = out.join("check");
    copy_dir(&vault_dir, &check_dir)?;
    let c = clock.clone();
    let options = VaultOptions {
        clock: Some(Arc::new(move || c.load(Ordering::SeqCst))),
        actor: Some("fixture-check".into()),
        ..Default::default()
    };
    let v = Vault::open_with(&check_dir, &root, None, options)?;
    let expected = json!({
        "root_key_hex": hex(&ROOT),
        "clock": clock.load(Ordering::SeqCst),
        "subjects_in_order": subjects.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "records_in_order": records.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "audit_entries_at_close": audit.entries,
        "audit_head_at_close": audit.head,
        "audit_entries": serde_json::to_value(&audit_entries)?,
        "stats": readback::stats(&stats),
        "read_back": readback::read_back(&v, &subjects, &records),
    });
    drop(v);
    std::fs::remove_dir_all(&check_dir)?;
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected)? + "\n",
    )?;
    println!("fixture written to {}", out.display());
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    readback::hex(bytes)
}
