//! What the adversarial review of issue 15 found, one test per finding,
//! each of which failed before its fix (the comment above each says how).
//! Durability under power loss is `powerloss.rs`; a failing disk at every
//! step is the engine's fault-injection test (`vault::fault_tests`).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;

use common::*;
use shredvault::{ErrorKind, Policy, RootKey, Vault, VaultOptions};

/// H1. Before: the subject entry held events, flags and the consent ledger
/// in clear, so `data/` told their times to anyone; now they are sealed
/// under a key derived from the subject key and die with it.
#[test]
fn subject_facts_are_sealed_in_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[("email", "ivy@example.com")]).unwrap();
    // Distinctive times: their 8 bytes would be in the clear entry.
    let death = 1_234_567_891i64;
    let consent = 1_345_678_912i64;
    v.record_event(&s, "deceased", death).unwrap();
    v.give_consent(&s, "marketing", consent).unwrap();
    v.put(&s, "marketing_contact", b"ivy").unwrap();
    v.flush().unwrap();
    let facts = v.subject_state(&s).unwrap();
    assert_eq!(facts.events["deceased"], death);
    drop(v);
    for t in [death, consent] {
        for needle in encodings(t) {
            assert_absent(dir.path(), &needle, "a fact's time");
        }
    }
    // After erasure and compaction too (sled's log kept old entries).
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    v.erase_subject(&s).unwrap();
    drop(v);
    Vault::compact(dir.path(), &root()).unwrap();
    for t in [death, consent] {
        for needle in encodings(t) {
            assert_absent(dir.path(), &needle, "a fact's time");
        }
    }
}

/// How a time may be stored in clear: fixed-width either way, or as
/// bincode's varint (zigzag, then a 0xfc marker and 4 bytes below 2^32).
fn encodings(t: i64) -> Vec<Vec<u8>> {
    let zigzag = ((t << 1) ^ (t >> 63)) as u64;
    let mut varint = vec![0xfc];
    varint.extend_from_slice(&(zigzag as u32).to_le_bytes());
    assert!(zigzag < 1 << 32);
    vec![t.to_le_bytes().to_vec(), t.to_be_bytes().to_vec(), varint]
}

/// H1, the blind index. Before: an erased subject's blind-index entry (an
/// HMAC under a key derived from the root key) stayed in sled's files and
/// matched the identifier forever. Now the index key is random and rotated:
/// after a rotation and a compaction no entry of the old index is left.
#[test]
fn erased_blind_index_entries_leave_the_files_after_a_rotation_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let gone = v.create_subject(&[("email", "gone@example.com")]).unwrap();
    let stays = v.create_subject(&[("email", "stays@example.com")]).unwrap();
    let old_macs = v.blind_index_macs().unwrap();
    assert_eq!(old_macs.len(), 2);
    v.erase_subject(&gone).unwrap();
    v.rotate_blind_index().unwrap();
    let new_macs = v.blind_index_macs().unwrap();
    assert_eq!(new_macs.len(), 1);
    assert!(!old_macs.contains(&new_macs[0]), "a new key: new entries");
    assert_eq!(
        v.find_subject("email", "Stays@Example.com").unwrap(),
        Some(stays)
    );
    assert_eq!(v.find_subject("email", "gone@example.com").unwrap(), None);
    drop(v);
    Vault::compact(dir.path(), &root()).unwrap();
    for mac in &old_macs {
        assert_absent(&dir.path().join("data"), mac, "an old blind-index entry");
    }
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert_eq!(
        v.find_subject("email", "stays@example.com").unwrap(),
        Some(stays)
    );
}

/// H1, the schedule: an expiry run rotates the index key once the
/// policy's `blind_index_rotation` has passed, and logs it.
#[test]
fn expiry_runs_rotate_the_blind_index_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-03-01T00:00:00Z");
    let (opts, now) = clocked(t0);
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), opts).unwrap();
    let s = v.create_subject(&[("email", "june@example.com")]).unwrap();
    let before = v.blind_index_macs().unwrap();
    now.store(t0 + 3 * 86_400, Ordering::SeqCst);
    v.expire(t0 + 3 * 86_400).unwrap();
    assert_eq!(v.blind_index_macs().unwrap(), before, "not due yet");
    now.store(t0 + 8 * 86_400, Ordering::SeqCst);
    v.expire(t0 + 8 * 86_400).unwrap();
    assert_ne!(v.blind_index_macs().unwrap(), before, "due: rotated");
    assert_eq!(
        v.find_subject("email", "june@example.com").unwrap(),
        Some(s)
    );
    let rotations = v
        .audit_entries(None)
        .unwrap()
        .into_iter()
        .filter(|e| e.op == "rotate_blind_index")
        .count();
    assert_eq!(rotations, 1);
}

/// H3. Before: opening beside an older `data/` (even for `stats`) took
/// the newer keys for leftovers and destroyed them. Now the keystore notes
/// how far the store has been, and an older copy is refused, with nothing
/// destroyed.
#[test]
fn an_older_data_copy_is_refused_and_destroys_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let a = v.create_subject(&[]).unwrap();
    v.put(&a, "account", b"a").unwrap();
    drop(v);
    let old = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("data"), old.path());
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    let b = v.create_subject(&[]).unwrap();
    let rb = v.put(&b, "account", b"b").unwrap();
    drop(v);
    let newer = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("data"), newer.path());
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    copy_dir(old.path(), &dir.path().join("data"));
    let keys_before = std::fs::read(dir.path().join("keys/keystore")).unwrap();
    for _ in 0..2 {
        let err = Vault::open(dir.path(), &root(), None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("accept-stale-data"), "{err}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("keys/keystore")).unwrap(),
        keys_before,
        "nothing destroyed"
    );
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    copy_dir(newer.path(), &dir.path().join("data"));
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert_eq!(&v.get(&rb, "billing").unwrap().data[..], b"b");
}

/// H3, the other way round. Before: with `keys/` older than `data/` (a
/// restored copy whose empty slots were taken since), the subjects that
/// took them looked like erasures a crash cut short and were finished off
/// as erased at the next open. Now an erasure is finished only if it was
/// begun in the audit log: the rest is refused, nothing destroyed, and
/// with the newer `keys/` back everything reads.
#[test]
fn an_older_keys_copy_destroys_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    // Empty slots in the keystore: erased subjects' slots.
    let gone: Vec<_> = (0..80).map(|_| v.create_subject(&[]).unwrap()).collect();
    for s in &gone {
        v.erase_subject(s).unwrap();
    }
    drop(v);
    let keystore = dir.path().join("keys/keystore");
    let old_keys = std::fs::read(&keystore).unwrap();
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    let records: Vec<_> = (0..40)
        .map(|_| {
            let s = v.create_subject(&[]).unwrap();
            v.put(&s, "account", b"kept").unwrap()
        })
        .collect();
    let erased_before = v.stats().unwrap().subjects_erased;
    drop(v);
    let new_keys = std::fs::read(&keystore).unwrap();
    assert_eq!(
        old_keys.len(),
        new_keys.len(),
        "the new subjects took old slots"
    );
    std::fs::write(&keystore, &old_keys).unwrap();
    for _ in 0..2 {
        let v = Vault::open(dir.path(), &root(), None).unwrap();
        let err = v.create_subject(&[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("keys/ is older than data/"), "{err}");
        assert_eq!(v.stats().unwrap().subjects_erased, erased_before);
        drop(v);
    }
    std::fs::write(&keystore, &new_keys).unwrap();
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    for r in &records {
        assert_eq!(&v.get(r, "billing").unwrap().data[..], b"kept");
    }
    assert_eq!(v.stats().unwrap().subjects_erased, erased_before);
    v.create_subject(&[]).unwrap();
}

/// M6. Before: a keystore cut short, plus one new key, reused a missing
/// slot's index, and the subject that referred to it was tombstoned at the
/// next open. Now writes are refused while `data/` refers past the end,
/// and nothing is destroyed; with keys/ restored all is there.
#[test]
fn a_keystore_cut_short_refuses_writes_and_erases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let subjects: Vec<_> = (0..4).map(|_| v.create_subject(&[]).unwrap()).collect();
    let records: Vec<_> = subjects
        .iter()
        .map(|s| v.put(s, "account", b"kept").unwrap())
        .collect();
    drop(v);
    let keystore = dir.path().join("keys/keystore");
    let full = std::fs::read(&keystore).unwrap();
    // Cut the last slots off (the pool's unused keys are freed at close,
    // so the last referenced slot is near the end).
    let cut = full.len() - 64 * 24;
    std::fs::write(&keystore, &full[..cut]).unwrap();
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    let err = v.create_subject(&[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("writes are refused"), "{err}");
    assert_eq!(v.stats().unwrap().subjects_erased, 0);
    drop(v);
    std::fs::write(&keystore, &full).unwrap();
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    for r in &records {
        assert_eq!(&v.get(r, "billing").unwrap().data[..], b"kept");
    }
    v.create_subject(&[]).unwrap();
}

/// M7. Before: an extension reason was sealed under the subject key and
/// not re-sealed on rotation, so any later update turned it into `null`.
#[test]
fn an_extension_reason_survives_the_subjects_key_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "account", b"v1").unwrap();
    let req = v.open_request(&s, "access", 1_780_000_000).unwrap();
    v.extend_request(&req, "records are archived off-site")
        .unwrap();
    v.update(&r, b"v2").unwrap();
    v.update(&r, b"v3").unwrap();
    let listed = v.requests(None).unwrap();
    assert_eq!(
        listed[0].extension_reason.as_deref(),
        Some("records are archived off-site")
    );
}

/// M5. Before: a give dated after a later-recorded withdrawal won, so the
/// withdrawal returned OK and reads went on. Now the order of recording
/// decides, and times far ahead of the clock are refused.
#[test]
fn a_withdrawal_wins_over_a_give_dated_later() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-03-01T00:00:00Z");
    let (opts, _) = clocked(t0);
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), opts).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let far = t0 + 365 * 86_400;
    assert_eq!(
        v.give_consent(&s, "marketing", far).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    v.give_consent(&s, "marketing", t0 + 200).unwrap(); // a little skew is fine
    let r = v.put(&s, "marketing_contact", b"kim").unwrap();
    v.withdraw_consent(&s, "marketing", t0).unwrap();
    assert_eq!(
        v.get(&r, "marketing").unwrap_err().kind(),
        ErrorKind::Erased
    );
}

/// Low: consent and identifiers after an erasure request re-identified the
/// retained remainder. Now refused.
#[test]
fn no_consent_or_identifier_after_an_erasure_request() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    v.put(&s, "account", b"kept on request").unwrap();
    let receipt = v.erase_subject(&s).unwrap();
    assert!(!receipt.retained.is_empty(), "something is retained");
    assert_eq!(
        v.link_identifier(&s, "email", "back@example.com")
            .unwrap_err()
            .kind(),
        ErrorKind::Erased
    );
    assert_eq!(
        v.give_consent(&s, "marketing", 1_700_000_000)
            .unwrap_err()
            .kind(),
        ErrorKind::Erased
    );
}

/// M8. Before: the umask's 0755/0644. Now 0700 directories and 0600 files,
/// and an open warns of looser modes.
#[test]
fn vault_files_are_private_and_looser_modes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let v = new_vault(&path);
    v.create_subject(&[]).unwrap();
    assert!(v.warnings().is_empty(), "{:?}", v.warnings());
    drop(v);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in ["", "keys", "data"] {
        assert_eq!(mode(&path.join(d)), 0o700, "{d}");
    }
    for (p, _) in all_files(&path) {
        assert_eq!(mode(&p) & 0o077, 0, "{}", p.display());
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let v = Vault::open(&path, &root(), None).unwrap();
    assert!(v.warnings().iter().any(|w| w.contains("0755")));
    // The lock is not opened through a link.
    drop(v);
    let lock = path.join("keys/lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &lock).unwrap();
    let err = Vault::open(&path, &root(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(!dir.path().join("elsewhere").exists());
}

/// The value of `key` in the vault's sled tree, changed by `f`.
fn tamper(vault: &std::path::Path, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) {
    let db = raw_sled(vault);
    let tree = db.open_tree("vault").unwrap();
    let mut value = tree.get(key).unwrap().expect("the key is stored").to_vec();
    f(&mut value);
    tree.insert(key, value).unwrap();
    db.flush().unwrap();
}

/// M9. Before: the stored policy, the expiry mark, subject and day entries
/// were unauthenticated: whoever could write `data/` could set
/// `on_erasure_request = "retain"` everywhere or move the mark. Now any
/// change is `Corrupt`.
#[test]
fn stored_state_is_authenticated() {
    // The policy: one character of its text changed.
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    v.expire(1_700_000_000).unwrap();
    drop(v);
    tamper(dir.path(), b"P", |v| {
        let at = v.windows(6).position(|w| w == b"retain").unwrap();
        v[at] = b'R';
    });
    let err = Vault::open(dir.path(), &root(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    // The expiry mark: one byte.
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    v.expire(1_700_000_000).unwrap();
    drop(v);
    tamper(dir.path(), b"T", |v| {
        let n = v.len();
        v[n / 2] ^= 1;
    });
    let err = Vault::open(dir.path(), &root(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    // A subject entry: reads of that subject are `Corrupt`.
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[]).unwrap();
    drop(v);
    let mut key = vec![b'S'];
    key.extend_from_slice(s.as_bytes());
    tamper(dir.path(), &key, |v| {
        let n = v.len();
        v[n - 3] ^= 1;
    });
    match Vault::open(dir.path(), &root(), None) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
        Ok(v) => assert_eq!(v.subject_state(&s).unwrap_err().kind(), ErrorKind::Corrupt),
    }
}

/// M9, the log. Before: a policy given at open replaced the stored one
/// without an audit entry, and the erasures it triggered (and the purge's)
/// left none either.
#[test]
fn policy_changes_and_system_erasures_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-03-01T00:00:00Z");
    let (opts, now) = clocked(t0);
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), opts.clone()).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "usage_log", b"a login").unwrap();
    drop(v);
    // Two days later, a policy that keeps usage logs one day: the record
    // is past due under it and expires at open.
    now.store(t0 + 2 * 86_400, Ordering::SeqCst);
    let text = std::fs::read_to_string(example_policy_path())
        .unwrap()
        .replace(
            r#"retention = [{ after = "collected", keep = "13mo" }]"#,
            r#"retention = [{ after = "collected", keep = "1d" }]"#,
        );
    let shorter = Policy::parse(&text, "shorter").unwrap();
    let v = Vault::open_with(dir.path(), &root(), Some(shorter), opts).unwrap();
    assert_eq!(
        v.get(&r, "security").unwrap_err().kind(),
        ErrorKind::Expired
    );
    let entries = v.audit_entries(None).unwrap();
    let at_open = entries
        .iter()
        .filter(|e| e.op == "set_policy" && e.detail.as_deref() == Some("at open"))
        .count();
    assert_eq!(at_open, 2, "the first policy and its replacement");
    let system: Vec<_> = entries
        .iter()
        .filter(|e| e.op == "system_erasure" && e.subject == Some(s))
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(system, ["begun", "ok"], "{entries:#?}");
}

/// M10. Before: naming `legal_claims` read any record of any subject,
/// restricted or not. Now only a privileged handle reads for it, and
/// identifiers and state honour restriction.
#[test]
fn legal_claims_needs_a_privileged_handle() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v.create_subject(&[("email", "lee@example.com")]).unwrap();
    let r = v.put(&s, "account", b"lee").unwrap();
    v.set_restricted(&s, true).unwrap();
    assert_eq!(
        v.get(&r, "legal_claims").unwrap_err().kind(),
        ErrorKind::PurposeDenied
    );
    assert_eq!(v.identifiers(&s).unwrap_err().kind(), ErrorKind::Restricted);
    assert_eq!(
        v.subject_state(&s).unwrap_err().kind(),
        ErrorKind::Restricted
    );
    assert!(v.scan("account", "legal_claims").is_err());
    drop(v);
    let opts = VaultOptions {
        privileged: true,
        ..Default::default()
    };
    let v = Vault::open_with(dir.path(), &root(), None, opts).unwrap();
    assert_eq!(&v.get(&r, "legal_claims").unwrap().data[..], b"lee");
    assert_eq!(v.identifiers(&s).unwrap().len(), 1);
    assert_eq!(
        v.get(&r, "billing").unwrap_err().kind(),
        ErrorKind::Restricted
    );
    // A policy marks another purpose privileged; marking legal_claims
    // unprivileged is refused.
    let text = std::fs::read_to_string(example_policy_path()).unwrap();
    let marked = text.replace(
        "[purposes.billing]\n",
        "[purposes.billing]\nprivileged = true\n",
    );
    assert_ne!(marked, text);
    v.set_policy(Policy::parse(&marked, "marked").unwrap())
        .unwrap();
    drop(v);
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    v.set_restricted(&s, false).unwrap();
    assert_eq!(
        v.get(&r, "billing").unwrap_err().kind(),
        ErrorKind::PurposeDenied
    );
    let unmarked = text.replace(
        "[purposes.legal_claims]\n",
        "[purposes.legal_claims]\nprivileged = false\n",
    );
    let unmarked = unmarked.replacen("privileged = true\n", "", 1);
    assert_eq!(
        Policy::parse(&unmarked, "unmarked").unwrap_err().kind(),
        ErrorKind::Policy
    );
}

/// M11. Before: `expire` took any time, so a typo destroyed retention keys
/// years early. Now a time more than a day ahead of the clock is refused
/// unless forced, and the refusal destroys nothing.
#[test]
fn expire_refuses_a_time_far_ahead_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ts("2026-03-01T00:00:00Z");
    let (opts, _) = clocked(t0);
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), opts).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "usage_log", b"a login").unwrap();
    let typo = ts("2099-01-01T00:00:00Z");
    let err = v.expire(typo).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(&v.get(&r, "security").unwrap().data[..], b"a login");
    assert_eq!(v.expire(t0 + 86_000).unwrap().days_destroyed, 0);
    assert_eq!(v.expire_with(typo, true).unwrap().days_destroyed, 1);
    assert_eq!(
        v.get(&r, "security").unwrap_err().kind(),
        ErrorKind::Expired
    );
}

/// Low. Before: one damaged slot made `rotate_root_key` fail for the
/// whole vault. Now it is carried over as damaged, and the rest rotate.
#[test]
fn one_damaged_slot_does_not_block_a_root_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let a = v.create_subject(&[]).unwrap();
    let b = v.create_subject(&[]).unwrap();
    let ra = v.put(&a, "account", b"a").unwrap();
    let rb = v.put(&b, "account", b"b").unwrap();
    drop(v);
    // Damage one slot's wrapped key, its checksum made right again (so it
    // reads as live and fails only when unwrapped: the case that stopped
    // a rotation). Which slot holds `a`'s key is unknown here, so each
    // live slot is tried until exactly one of the two subjects reads
    // `Corrupt`. Slots are 128 bytes after a 128-byte header; the wrapped
    // key starts at byte 16, the checksum (SHA-256, 8 bytes) at 120.
    let keystore = dir.path().join("keys/keystore");
    let good = std::fs::read(&keystore).unwrap();
    let new_root = RootKey::from_bytes(&[0x77; 32]).unwrap();
    let mut done = false;
    for slot in 0..(good.len() - 128) / 128 {
        let mut bytes = good.clone();
        let at = 128 + slot * 128;
        if bytes[at] != 1 {
            continue; // not live
        }
        bytes[at + 30] ^= 0x10;
        let sum = ring::digest::digest(&ring::digest::SHA256, &bytes[at..at + 120]);
        bytes[at + 120..at + 128].copy_from_slice(&sum.as_ref()[..8]);
        std::fs::write(&keystore, &bytes).unwrap();
        let Ok(v) = Vault::open(dir.path(), &root(), None) else {
            continue; // a vault key: the open itself is Corrupt
        };
        let (ga, gb) = (v.get(&ra, "billing"), v.get(&rb, "billing"));
        if ga.is_ok() == gb.is_ok() {
            continue;
        }
        let (damaged, fine) = if ga.is_err() { (ra, rb) } else { (rb, ra) };
        v.rotate_root_key(&new_root, &mut |_, _| {}).unwrap();
        drop(v);
        let v = Vault::open(dir.path(), &new_root, None).unwrap();
        assert!(v.get(&fine, "billing").is_ok());
        assert_eq!(
            v.get(&damaged, "billing").unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        done = true;
        break;
    }
    assert!(done, "a slot of one subject was damaged and rotated past");
}

/// Low. Before: identifiers were compared as given (a full-width or
/// decomposed form found no one). Now NFKC, and e-mail case-folded.
#[test]
fn identifiers_are_normalized_before_they_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let s = v
        .create_subject(&[("email", "Zoë@Example.com"), ("customer_no", "ＡＢ-12")])
        .unwrap();
    // "e" + combining diaeresis, upper case: the same e-mail.
    assert_eq!(
        v.find_subject("email", "ZOE\u{308}@example.COM").unwrap(),
        Some(s)
    );
    assert_eq!(v.find_subject("customer_no", "AB-12").unwrap(), Some(s));
    assert_eq!(v.find_subject("customer_no", "ab-12").unwrap(), None);
}
