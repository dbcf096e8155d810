//! Backups, the erasure ledger and restores (`vault::backup`,
//! `vault::ledger`): the disaster story (a vault backed up while in use,
//! more work after it, the machine lost, the backup and the exported
//! ledger restored), and what a skeptic tries: an older ledger, none, a
//! backup past its window, the wrong key, flipped bytes, a cut file,
//! plaintext in the file, kill -9 during a backup and during a restore.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use shredvault::{verify_ledger, ErrorKind, RecordId, RootKey, SubjectId, Vault, VaultOptions};

const DAY: i64 = 86_400;

fn readable(v: &Vault, r: &RecordId, purpose: &str) -> Result<Vec<u8>, ErrorKind> {
    v.get(r, purpose)
        .map(|rec| rec.data.to_vec())
        .map_err(|e| e.kind())
}

fn gone(kind: Result<Vec<u8>, ErrorKind>) -> bool {
    matches!(
        kind,
        Err(ErrorKind::Erased | ErrorKind::Expired | ErrorKind::NotFound)
    )
}

/// What the disaster scenario made, to check a restored vault against.
struct Story {
    /// Acknowledged before the backup, not erased since: (record, purpose, data).
    kept: Vec<(RecordId, &'static str, Vec<u8>)>,
    /// Erased, deleted, expired or withdrawn after the backup.
    erased_after: Vec<(RecordId, &'static str)>,
    /// Erased before the backup.
    erased_before: Vec<(RecordId, &'static str)>,
    erased_subject_after: SubjectId,
    /// Kept by an erasure after the backup (restricted to legal claims).
    restricted_after: RecordId,
    rectified: RecordId,
    /// Written after the backup (lost by a restore).
    written_after: RecordId,
    backup: PathBuf,
    old_ledger: PathBuf,
    ledger: PathBuf,
}

/// The disaster scenario up to the loss of the machine (see the module
/// doc). Times: the usage log is put 13 months before the backup day, so an
/// expiry run two days after the backup ends it.
fn disaster(base: &Path, options: &VaultOptions, now: &std::sync::atomic::AtomicI64) -> Story {
    let dir = base.join("vault");
    now.store(ts("2024-12-11T00:00:00Z"), Ordering::SeqCst);
    let v = Vault::open_with(&dir, &root(), Some(example_policy()), options.clone()).unwrap();
    let bob = v.create_subject(&[("email", "bob@example.com")]).unwrap();
    let bob_usage = v.put(&bob, "usage_log", b"bob-usage-SECRET").unwrap();
    // Under legal hold: the expiry run after the backup spares it, and so
    // does the restore's re-application of that run.
    let hank = v.create_subject(&[]).unwrap();
    let hank_usage = v.put(&hank, "usage_log", b"hank-usage-held").unwrap();
    v.set_legal_hold(&hank, true).unwrap();
    now.store(ts("2026-01-10T12:00:00Z"), Ordering::SeqCst);
    let alice = v.create_subject(&[("email", "alice@example.com")]).unwrap();
    let alice_account = v.put(&alice, "account", b"alice-account-SECRET").unwrap();
    let bob_account = v.put(&bob, "account", b"bob-account-SECRET").unwrap();
    let carol = v.create_subject(&[("email", "carol@example.com")]).unwrap();
    v.give_consent(&carol, "inquiry_response", now.load(Ordering::SeqCst))
        .unwrap();
    let carol_inquiry = v.put(&carol, "inquiry", b"carol-inquiry-SECRET").unwrap();
    let carol_account = v.put(&carol, "account", b"carol-account-SECRET").unwrap();
    let dave = v.create_subject(&[("email", "dave@example.com")]).unwrap();
    let dave_account = v.put(&dave, "account", b"dave-account-SECRET").unwrap();
    let dave_usage = v.put(&dave, "usage_log", b"dave-usage-SECRET").unwrap();
    let erin = v.create_subject(&[("email", "erin@example.com")]).unwrap();
    let erin_deleted = v.put(&erin, "account", b"erin-deleted-SECRET").unwrap();
    let erin_kept = v.put(&erin, "account", b"erin-kept-SECRET").unwrap();
    let frank = v.create_subject(&[("email", "frank@example.com")]).unwrap();
    let frank_account = v.put(&frank, "account", b"frank-old-SECRET").unwrap();
    let gina = v.create_subject(&[("email", "gina@example.com")]).unwrap();
    let gina_usage = v.put(&gina, "usage_log", b"gina-usage-SECRET").unwrap();
    v.erase_subject(&gina).unwrap();
    // A ledger exported before the backup: too old to restore with.
    let old_ledger = base.join("ledger-old.jsonl");
    v.export_ledger(&old_ledger).unwrap();
    now.fetch_add(60, Ordering::SeqCst);

    // The backup, while a writer keeps putting: everything acknowledged
    // before the call reads back; what the writer put meanwhile may or may
    // not be in it, but the backup is one point (checked by the restore).
    let backup = base.join("backup.svb");
    let writer_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kept_during = std::thread::scope(|s| {
        let stop = writer_stop.clone();
        let v = &v;
        let writer = s.spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                v.put(&alice, "account", format!("during-{n}").as_bytes())
                    .unwrap();
                n += 1;
            }
            n
        });
        std::thread::sleep(Duration::from_millis(20));
        let info = v.backup(&backup).unwrap();
        assert!(info.store_entries > 0);
        assert_eq!(info.window_ends_at, ts("2026-01-25T00:00:00Z"));
        writer_stop.store(true, Ordering::SeqCst);
        writer.join().unwrap()
    });
    assert!(kept_during > 0, "the writer ran during the backup");

    // After the backup: an erasure, a deletion, a rectification, a consent
    // withdrawal, an expiry run, a new write.
    now.fetch_add(60, Ordering::SeqCst);
    v.erase_subject(&dave).unwrap();
    v.delete(&erin_deleted).unwrap();
    v.update(&frank_account, b"frank-new-value").unwrap();
    v.withdraw_consent(&carol, "inquiry_response", now.load(Ordering::SeqCst))
        .unwrap();
    let written_after = v.put(&alice, "account", b"alice-after-backup").unwrap();
    now.store(ts("2026-01-12T06:00:00Z"), Ordering::SeqCst);
    let report = v.expire(now.load(Ordering::SeqCst)).unwrap();
    assert!(report.records_expired >= 1, "{report:?}");
    assert!(gone(readable(&v, &bob_usage, "security")));
    assert_eq!(report.records_spared_by_hold, 1, "{report:?}");
    let ledger = base.join("ledger.jsonl");
    let export = v.export_ledger(&ledger).unwrap();
    assert!(export.entries >= 6, "{export:?}");
    drop(v);

    Story {
        kept: vec![
            (
                alice_account,
                "account_admin",
                b"alice-account-SECRET".to_vec(),
            ),
            (bob_account, "account_admin", b"bob-account-SECRET".to_vec()),
            (
                carol_account,
                "account_admin",
                b"carol-account-SECRET".to_vec(),
            ),
            (erin_kept, "account_admin", b"erin-kept-SECRET".to_vec()),
            (hank_usage, "security", b"hank-usage-held".to_vec()),
        ],
        erased_after: vec![
            (dave_usage, "security"),
            (erin_deleted, "account_admin"),
            (carol_inquiry, "inquiry_response"),
            (bob_usage, "security"),
        ],
        erased_before: vec![(gina_usage, "security")],
        erased_subject_after: dave,
        restricted_after: dave_account,
        rectified: frank_account,
        written_after,
        backup,
        old_ledger,
        ledger,
    }
}

#[test]
fn a_restore_brings_back_what_was_kept_and_nothing_erased_after_the_backup() {
    let base = tempfile::tempdir().unwrap();
    let (options, now) = clocked(0);
    let story = disaster(base.path(), &options, &now);
    // The machine is lost.
    std::fs::remove_dir_all(base.path().join("vault")).unwrap();
    // Every secret is sealed in the backup file.
    for secret in [
        &b"alice-account-SECRET"[..],
        b"dave-usage-SECRET",
        b"carol-inquiry-SECRET",
    ] {
        let bytes = std::fs::read(&story.backup).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }
    let ledger = verify_ledger(&story.ledger, None).unwrap();
    assert!(ledger.entries >= 6);

    now.store(ts("2026-01-12T07:00:00Z"), Ordering::SeqCst);
    let target = base.path().join("restored");
    // Without a ledger, with one older than the backup: refused, and the
    // directory is not made.
    let err =
        Vault::restore(&story.backup, &target, &root(), &[], false, options.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("--no-ledger"), "{err}");
    let err = Vault::restore(
        &story.backup,
        &target,
        &root(),
        std::slice::from_ref(&story.old_ledger),
        false,
        options.clone(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("before the backup"), "{err}");
    assert!(!target.exists());

    let report = Vault::restore(
        &story.backup,
        &target,
        &root(),
        &[story.old_ledger.clone(), story.ledger.clone()],
        false,
        options.clone(),
    )
    .unwrap();
    assert_eq!(
        report.re_erased_subjects,
        vec![story.erased_subject_after.to_string()]
    );
    assert!(report.re_deleted_records.len() == 1, "{report:?}");
    assert!(!report.re_erased_records.is_empty(), "{report:?}");
    assert!(!report.re_expired_days.is_empty(), "{report:?}");
    assert_eq!(
        report.lost.rectified_records,
        vec![story.rectified.to_string()]
    );
    assert!(report.lost.operations_after_backup.unwrap() > 0);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("re_erased_subjects"));

    let v = Vault::open_with(&target, &root(), None, options.clone()).unwrap();
    for (r, purpose, data) in &story.kept {
        assert_eq!(readable(&v, r, purpose).as_deref(), Ok(&data[..]), "{r}");
    }
    for (r, purpose) in story.erased_after.iter().chain(&story.erased_before) {
        assert!(
            gone(readable(&v, r, purpose)),
            "{r} reads back after the restore"
        );
    }
    assert!(gone(readable(&v, &story.written_after, "account_admin")));
    assert_eq!(
        readable(&v, &story.restricted_after, "account_admin"),
        Err(ErrorKind::Restricted)
    );
    assert_eq!(
        readable(&v, &story.rectified, "account_admin").unwrap(),
        b"frank-old-SECRET"
    );
    assert!(matches!(
        v.find_subject("email", "dave@example.com"),
        Ok(None) | Err(_)
    ));
    assert!(v.verify_audit().unwrap().entries > 0);
    // The ledger goes on as one chain: the next export appends to the same
    // file, which still verifies.
    v.erase_subject(
        &v.find_subject("email", "erin@example.com")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let export = v.export_ledger(&story.ledger).unwrap();
    assert_eq!(export.appended, 1);
    verify_ledger(&story.ledger, Some(&v.receipt_public_key().unwrap())).unwrap();
    drop(v);
    // The restored directory is no longer empty: a second restore into it
    // is refused.
    let err = Vault::restore(
        &story.backup,
        &target,
        &root(),
        std::slice::from_ref(&story.ledger),
        false,
        options.clone(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    // --no-ledger is what it says: the erasures after the backup are back.
    let risky = base.path().join("risky");
    let report =
        Vault::restore(&story.backup, &risky, &root(), &[], true, options.clone()).unwrap();
    assert!(!report.warnings.is_empty());
    let v = Vault::open_with(&risky, &root(), None, options.clone()).unwrap();
    assert!(readable(&v, &story.erased_after[0].0, "security").is_ok());
    drop(v);

    // Past its window it opens for nobody.
    now.store(ts("2026-01-25T00:00:01Z"), Ordering::SeqCst);
    let err = Vault::restore(
        &story.backup,
        base.path().join("late"),
        &root(),
        std::slice::from_ref(&story.ledger),
        false,
        options.clone(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Expired, "{err}");
    assert!(err.message().contains("past its window"), "{err}");
}

#[test]
fn a_backup_refuses_the_wrong_key_flipped_bytes_and_a_cut_file() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("vault");
    let v = new_vault(&dir);
    let s = v.create_subject(&[("email", "x@example.com")]).unwrap();
    for i in 0..50 {
        v.put(&s, "account", format!("record-{i}").as_bytes())
            .unwrap();
    }
    let backup = base.path().join("b.svb");
    v.backup(&backup).unwrap();
    let err = v.backup(&backup).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let ledger = base.path().join("l.jsonl");
    v.export_ledger(&ledger).unwrap();
    drop(v);

    let restore = |file: &Path, to: &str, key: &RootKey| {
        Vault::restore(
            file,
            base.path().join(to),
            key,
            std::slice::from_ref(&ledger),
            false,
            VaultOptions::default(),
        )
    };
    let wrong = RootKey::from_bytes(&[7; 32]).unwrap();
    let err = restore(&backup, "wrong", &wrong).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey, "{err}");
    assert!(!base.path().join("wrong").exists());

    let bytes = std::fs::read(&backup).unwrap();
    // Flips: the magic, the header, a frame length, inside the frames, the
    // last byte; and the file cut at several places.
    let len = bytes.len();
    for (n, at) in [0usize, 12, 40, 200, len / 3, len / 2, len - 1]
        .into_iter()
        .enumerate()
    {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let file = base.path().join(format!("flip-{n}.svb"));
        std::fs::write(&file, &bad).unwrap();
        let err = restore(&file, &format!("flip-{n}"), &root()).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::WrongKey),
            "flip at {at}: {err}"
        );
        // Whatever was made is refused by an open, never half read.
        if base.path().join(format!("flip-{n}")).exists() {
            let err =
                Vault::open(base.path().join(format!("flip-{n}")), &root(), None).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        }
    }
    for (n, cut) in [5usize, 30, len / 2, len - 10].into_iter().enumerate() {
        let file = base.path().join(format!("cut-{n}.svb"));
        std::fs::write(&file, &bytes[..cut]).unwrap();
        let err = restore(&file, &format!("cut-{n}"), &root()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "cut at {cut}: {err}");
    }
    // The untouched file restores.
    restore(&backup, "fine", &root()).unwrap();
    let v = Vault::open(base.path().join("fine"), &root(), None).unwrap();
    assert_eq!(v.records(&s).unwrap().len(), 50);
}

#[test]
fn a_ledger_file_refuses_tampering_and_another_vault() {
    let base = tempfile::tempdir().unwrap();
    let v = new_vault(&base.path().join("a"));
    for i in 0..3 {
        let s = v
            .create_subject(&[("email", &format!("p{i}@example.com"))])
            .unwrap();
        v.put(&s, "account", b"x").unwrap();
        v.erase_subject(&s).unwrap();
    }
    let ledger = base.path().join("l.jsonl");
    assert_eq!(v.export_ledger(&ledger).unwrap().appended, 3);
    assert_eq!(v.export_ledger(&ledger).unwrap().appended, 0);
    let summary = verify_ledger(&ledger, Some(&v.receipt_public_key().unwrap())).unwrap();
    assert_eq!((summary.entries, summary.marks), (3, 2));
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert!(
        !text.contains("example.com"),
        "no personal data in the ledger"
    );

    // Changed, dropped or reordered lines fail.
    let lines: Vec<&str> = text.lines().collect();
    let altered = [
        text.replacen("\"erase_subject\"", "\"put\"", 1),
        lines[1..].join("\n") + "\n",
        [lines[1], lines[0], lines[2], lines[3], lines[4]].join("\n") + "\n",
        text.replacen("\"seq\":1", "\"seq\":2", 1),
    ];
    for (n, bad) in altered.iter().enumerate() {
        let path = base.path().join(format!("bad-{n}.jsonl"));
        std::fs::write(&path, bad).unwrap();
        let err = verify_ledger(&path, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{n}: {err}");
    }
    // A last line cut short: refused by verify, mended by the next export.
    std::fs::write(&ledger, &text[..text.len() - 20]).unwrap();
    assert_eq!(
        verify_ledger(&ledger, None).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    v.export_ledger(&ledger).unwrap();
    verify_ledger(&ledger, None).unwrap();
    // Another vault's key, another vault's file.
    let other = new_vault(&base.path().join("b"));
    let err = verify_ledger(&ledger, Some(&other.receipt_public_key().unwrap())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let err = other.export_ledger(&ledger).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

#[test]
fn expire_reports_backups_past_their_window_until_the_root_key_rotates() {
    let base = tempfile::tempdir().unwrap();
    let (options, now) = clocked(ts("2026-03-01T10:00:00Z"));
    let dir = base.path().join("v");
    let v = Vault::open_with(&dir, &root(), Some(example_policy()), options).unwrap();
    let s = v.create_subject(&[]).unwrap();
    v.put(&s, "account", b"x").unwrap();
    v.backup(base.path().join("b1")).unwrap();
    assert_eq!(
        v.expire(now.load(Ordering::SeqCst))
            .unwrap()
            .backups_readable_past_window,
        0
    );
    now.fetch_add(16 * DAY, Ordering::SeqCst);
    assert_eq!(
        v.expire(now.load(Ordering::SeqCst))
            .unwrap()
            .backups_readable_past_window,
        1
    );
    let new_root = RootKey::from_bytes(&[0x33; 32]).unwrap();
    v.rotate_root_key(&new_root, &mut |_, _| {}).unwrap();
    assert_eq!(
        v.expire(now.load(Ordering::SeqCst))
            .unwrap()
            .backups_readable_past_window,
        0
    );
}

// ---- kill -9 -------------------------------------------------------------

/// A vault with some weight, a backup of it and a ledger newer than it
/// (an erasure after the backup).
fn weighty(base: &Path) -> (PathBuf, PathBuf, PathBuf, Vec<RecordId>, SubjectId) {
    let dir = base.join("vault");
    let v = new_vault(&dir);
    let mut records = Vec::new();
    let blob = vec![b'z'; 2048];
    for i in 0..40 {
        let s = v
            .create_subject(&[("email", &format!("w{i}@example.com"))])
            .unwrap();
        for _ in 0..25 {
            records.push(v.put(&s, "usage_log", &blob).unwrap());
        }
    }
    let victim = v.find_subject("email", "w0@example.com").unwrap().unwrap();
    let backup = base.join("b.svb");
    v.backup(&backup).unwrap();
    v.erase_subject(&victim).unwrap();
    let ledger = base.join("l.jsonl");
    v.export_ledger(&ledger).unwrap();
    (dir, backup, ledger, records, victim)
}

#[test]
fn backup_child_entry() {
    // Only does something when run as a child.
    let (Ok(vault), Ok(dest)) = (
        std::env::var("SV_BACKUP_VAULT"),
        std::env::var("SV_BACKUP_DEST"),
    ) else {
        return;
    };
    let v = Vault::open(&vault, &root(), None).unwrap();
    println!("START");
    v.backup(&dest).unwrap();
    println!("DONE");
}

#[test]
fn restore_child_entry() {
    let (Ok(backup), Ok(to), Ok(ledger)) = (
        std::env::var("SV_RESTORE_BACKUP"),
        std::env::var("SV_RESTORE_TO"),
        std::env::var("SV_RESTORE_LEDGER"),
    ) else {
        return;
    };
    println!("START");
    Vault::restore(
        &backup,
        &to,
        &root(),
        &[ledger.into()],
        false,
        VaultOptions::default(),
    )
    .unwrap();
    println!("DONE");
}

/// Runs this binary's `test` as a child with `env`, killed `delay` after it
/// prints START (never, for `None`); whether it printed DONE, and how long
/// it ran from START.
fn run_child(test: &str, env: &[(&str, &Path)], delay: Option<Duration>) -> (bool, Duration) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.contains("START") {
        line.clear();
    }
    let started = std::time::Instant::now();
    if let Some(delay) = delay {
        std::thread::sleep(delay);
        let _ = child.kill();
    }
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    child.wait().unwrap();
    (rest.contains("DONE"), started.elapsed())
}

fn rounds() -> u64 {
    std::env::var("SV_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .map_or(8, |r| r.clamp(1, 200))
}

#[test]
fn kill_9_during_a_backup_leaves_the_vault_whole_and_no_half_backup() {
    let base = tempfile::tempdir().unwrap();
    let (dir, _, ledger, records, victim) = weighty(base.path());
    let mut rng = Rng(0x5eed ^ std::process::id() as u64);
    let mut finished = 0;
    // An unkilled run first, to spread the kills over its length (and a
    // bit past it).
    let first = base.path().join("first.svb");
    let (done, took) = run_child(
        "backup::backup_child_entry",
        &[("SV_BACKUP_VAULT", &dir), ("SV_BACKUP_DEST", &first)],
        None,
    );
    assert!(done && first.exists());
    let span = took.as_micros() as u64 * 3 / 2 + 1;
    for round in 0..rounds() {
        let dest = base.path().join(format!("k{round}.svb"));
        let delay = Duration::from_micros(rng.below(span));
        let (done, _) = run_child(
            "backup::backup_child_entry",
            &[("SV_BACKUP_VAULT", &dir), ("SV_BACKUP_DEST", &dest)],
            Some(delay),
        );
        // The vault opens whole.
        let v = Vault::open(&dir, &root(), None).unwrap();
        assert_eq!(readable(&v, &records[999], "security").unwrap().len(), 2048);
        assert!(gone(readable(&v, &records[0], "security")));
        drop(v);
        if dest.exists() {
            finished += 1;
            let to = base.path().join(format!("r{round}"));
            Vault::restore(
                &dest,
                &to,
                &root(),
                std::slice::from_ref(&ledger),
                true,
                VaultOptions::default(),
            )
            .unwrap();
            let v = Vault::open(&to, &root(), None).unwrap();
            let subject = v.record_info(&records[999]).unwrap().subject;
            assert_eq!(v.records(&subject).unwrap().len(), 25);
            assert!(v.subject_state(&victim).is_err());
        } else {
            assert!(!done, "DONE printed and no backup");
        }
    }
    eprintln!("{finished} of {} killed backups had finished", rounds());
}

#[test]
fn kill_9_during_a_restore_leaves_a_vault_nobody_reads_until_it_is_run_again() {
    let base = tempfile::tempdir().unwrap();
    let (_, backup, ledger, records, victim) = weighty(base.path());
    let mut rng = Rng(0xbeef ^ std::process::id() as u64);
    let mut cut = 0;
    let first = base.path().join("first");
    let env = [
        ("SV_RESTORE_BACKUP", backup.as_path()),
        ("SV_RESTORE_TO", &first),
        ("SV_RESTORE_LEDGER", &ledger),
    ];
    let (done, took) = run_child("backup::restore_child_entry", &env, None);
    assert!(done);
    let span = took.as_micros() as u64 * 3 / 2 + 1;
    for round in 0..rounds() {
        let to = base.path().join(format!("r{round}"));
        let delay = Duration::from_micros(rng.below(span));
        let env = [
            ("SV_RESTORE_BACKUP", backup.as_path()),
            ("SV_RESTORE_TO", &to),
            ("SV_RESTORE_LEDGER", &ledger),
        ];
        run_child("backup::restore_child_entry", &env, Some(delay));
        match Vault::open(&to, &root(), None) {
            Ok(v) => {
                // Finished: the erasure after the backup was re-applied.
                assert!(gone(readable(&v, &records[0], "security")));
                assert!(v.subject_state(&victim).is_err());
                continue;
            }
            // Killed before it made anything, or part way: no open reads it
            // (no vault there yet, or the marker).
            Err(e) => {
                cut += 1;
                assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::Corrupt | ErrorKind::NotFound | ErrorKind::Policy
                    ),
                    "{e}"
                );
            }
        }
        // Run again, unkilled: it finishes, and the erasure is re-applied.
        assert!(run_child("backup::restore_child_entry", &env, None).0);
        let v = Vault::open(&to, &root(), None).unwrap();
        assert!(gone(readable(&v, &records[0], "security")));
        assert_eq!(readable(&v, &records[999], "security").unwrap().len(), 2048);
    }
    eprintln!("{cut} of {} restores were cut short", rounds());
}
