//! Keys in PostgreSQL under epoch keys in the token (issue 19,
//! `custody::epochs`): a vault made with a store and a root key in a token
//! keeps no key in its directory; an erasure's receipt says when it is
//! complete; a `pg_dump` and a copy of the data directory taken before the
//! erasure give the erased subject back until the epoch ends (shown, so
//! the check after it can fail), and nothing at all after one epoch
//! rotation, with the token as it is then.
//!
//! Needs PostgreSQL and SoftHSM2 (both required by the test script).

use crate::common;
use crate::hsm::hsm;

use common::*;
use shredvault::postgres::{for_tests, fresh_schema, schema_of, Throwaway};
use shredvault::{ErrorKind, RootKey, Vault, VaultOptions};

fn on(url: &str) -> VaultOptions {
    VaultOptions {
        store: Some(url.to_string()),
        ..Default::default()
    }
}

/// Restores the plain `dump` of schema `from` as schema `to` (a schema of
/// its own beside the live one).
fn restore_as(pg: &Throwaway, dump: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(dump).unwrap();
    assert!(text.contains(from));
    let copy = dump.with_extension(format!("{to}.sql"));
    std::fs::write(&copy, text.replace(from, to)).unwrap();
    pg.psql_file(&copy).unwrap();
}

/// The URL `url` with its schema replaced by `schema`.
fn with_schema(url: &str, schema: &str) -> String {
    url.replace(schema_of(url), schema)
}

/// A work directory the cluster's user (postgres, when the tests run as
/// root) can write too.
fn shared_dir() -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    work
}

#[test]
fn after_one_epoch_no_copy_of_the_database_gives_an_erased_subject_back() {
    let (Some(pg), Some(hsm)) = (for_tests(), hsm()) else {
        return;
    };
    let url = fresh_schema(pg, "epochs");
    let schema = schema_of(&url).to_string();
    let root_uri = hsm.uri("epochs-root");
    let root = RootKey::create_in_token(&root_uri).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(dir.path(), &root, Some(example_policy()), on(&url)).unwrap();
    let alice = v
        .create_subject(&[("email", "alice.epochs@example.com")])
        .unwrap();
    let bob = v
        .create_subject(&[("email", "bob.epochs@example.com")])
        .unwrap();
    let a = v.put(&alice, "usage_log", b"alice, erased later").unwrap();
    let b = v.put(&bob, "account", b"bob stays").unwrap();
    v.close().unwrap();
    // The directory names the database and holds no key.
    assert!(!dir.path().join("keys").exists());
    assert!(!dir.path().join("data").exists());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in &names {
        assert!(
            ["store", "marks"].contains(&name.as_str()),
            "unexpected {name} in the vault directory"
        );
    }
    // Opened again, by any tool, from the directory alone.
    let v = Vault::open(dir.path(), &root, None).unwrap();
    assert_eq!(
        &v.get(&a, "security").unwrap().data[..],
        b"alice, erased later"
    );

    // Copies from before the erasure: a dump and the data directory.
    let work = shared_dir();
    let dump = work.path().join("before.sql");
    pg.dump(&schema, &dump).unwrap();
    let data_copy = pg.copy_data(work.path()).unwrap();

    let receipt = v.erase_subject(&alice).unwrap();
    let complete_by = receipt
        .complete_by
        .expect("a receipt of a vault with key epochs");
    assert!(complete_by > receipt.erased_at);
    assert!(complete_by <= receipt.erased_at + 86_400);
    assert!(receipt.to_json().contains("\"complete_by\""));
    shredvault::verify_receipt(&receipt.to_json(), Some(&v.receipt_public_key().unwrap())).unwrap();
    assert_eq!(v.get(&a, "security").unwrap_err().kind(), ErrorKind::Erased);

    // Within the epoch the erasure is effective but not complete: the old
    // dump, restored beside the vault and joined by a new directory, still
    // yields the subject (what `complete_by` warns of; shown so that the
    // check after the epoch can fail).
    let early = format!("{schema}_early");
    restore_as(pg, &dump, &schema, &early);
    let early_dir = tempfile::tempdir().unwrap();
    let old = Vault::open_with(
        early_dir.path(),
        &root,
        Some(example_policy()),
        on(&with_schema(&url, &early)),
    )
    .unwrap();
    assert_eq!(
        &old.get(&a, "security").unwrap().data[..],
        b"alice, erased later"
    );
    old.close().unwrap();

    // The epoch ends: an expiry run at its end re-wraps every key under a
    // new epoch key and destroys the old one in the token.
    let report = v.expire_with(complete_by, true).unwrap();
    assert_eq!(report.key_epochs_ended, 1);
    assert_eq!(&v.get(&b, "account_admin").unwrap().data[..], b"bob stays");
    // A second run in the new epoch ends nothing.
    assert_eq!(
        v.expire_with(complete_by + 60, true)
            .unwrap()
            .key_epochs_ended,
        0
    );
    let epoch_1 = format!("epochs-root.epoch.{}.1", &receipt.vault[..16]);
    assert_eq!(
        hsm.objects_labelled(&epoch_1),
        0,
        "epoch 1's key is destroyed"
    );
    v.close().unwrap();

    // Now the same copies give nothing: the dump restored afresh...
    let late = format!("{schema}_late");
    restore_as(pg, &dump, &schema, &late);
    let late_dir = tempfile::tempdir().unwrap();
    let err = Vault::open_with(
        late_dir.path(),
        &root,
        Some(example_policy()),
        on(&with_schema(&url, &late)),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey, "{err}");
    assert!(err.message().contains("epoch 1"), "{err}");
    // ...the one restored before, reopened...
    let err = Vault::open(early_dir.path(), &root, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey, "{err}");
    // ...and the data directory's copy, started as a cluster of its own.
    let copy = Throwaway::start_copy(&data_copy).unwrap();
    let copy_url = format!(
        "host={} user=postgres dbname=postgres options=-csearch_path={schema}",
        copy.socket_dir().display()
    );
    let copy_dir = tempfile::tempdir().unwrap();
    let err = Vault::open_with(
        copy_dir.path(),
        &root,
        Some(example_policy()),
        on(&copy_url),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey, "{err}");
    drop(copy);

    // The live vault goes on in the new epoch, its audit chain whole.
    let v = Vault::open(dir.path(), &root, None).unwrap();
    assert_eq!(&v.get(&b, "account_admin").unwrap().data[..], b"bob stays");
    assert_eq!(v.get(&a, "security").unwrap_err().kind(), ErrorKind::Erased);
    let c = v.put(&bob, "account", b"written in epoch 2").unwrap();
    v.close().unwrap();
    let v = Vault::open(dir.path(), &root, None).unwrap();
    assert_eq!(
        &v.get(&c, "account_admin").unwrap().data[..],
        b"written in epoch 2"
    );
    v.verify_audit().unwrap();
}

#[test]
fn keys_in_postgres_need_a_token_root_key_and_the_vault_s_own() {
    let (Some(pg), Some(hsm)) = (for_tests(), hsm()) else {
        return;
    };
    let url = fresh_schema(pg, "epochwrong");
    let root = RootKey::create_in_token(&hsm.uri("epochs-wrong-a")).unwrap();
    let other = RootKey::create_in_token(&hsm.uri("epochs-wrong-b")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(dir.path(), &root, Some(example_policy()), on(&url)).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "account", b"kept").unwrap();
    v.close().unwrap();
    // Another token key: WrongKey, from the directory or a new one.
    let err = Vault::open(dir.path(), &other, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey, "{err}");
    let joined = tempfile::tempdir().unwrap();
    let err =
        Vault::open_with(joined.path(), &other, Some(example_policy()), on(&url)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongKey, "{err}");
    // The header altered in the database (its epoch, say): refused, and
    // nothing in the token is destroyed on its account.
    let schema = schema_of(&url);
    pg.psql(&format!(
        "UPDATE {schema}.shredvault_custody SET header = set_byte(header, 40, get_byte(header, 40) # 1)"
    ))
    .unwrap();
    let err = Vault::open(dir.path(), &root, None).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WrongKey | ErrorKind::Corrupt),
        "{err}"
    );
    pg.psql(&format!(
        "UPDATE {schema}.shredvault_custody SET header = set_byte(header, 40, get_byte(header, 40) # 1)"
    ))
    .unwrap();
    let v = Vault::open(dir.path(), &root, None).unwrap();
    assert_eq!(&v.get(&r, "account_admin").unwrap().data[..], b"kept");
    // A backup of it restores into a vault directory (its keys re-wrapped
    // under the root key's KEK in the backup's keystore image), and a root
    // rotation is refused (epochs re-wrap the keys instead).
    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("backup.svb");
    v.backup(&backup).unwrap();
    let restored = work.path().join("restored");
    Vault::restore(
        &backup,
        &restored,
        &root,
        &[],
        true,
        VaultOptions::default(),
    )
    .unwrap();
    let copy = Vault::open(&restored, &root, None).unwrap();
    assert_eq!(&copy.get(&r, "account_admin").unwrap().data[..], b"kept");
    copy.verify_audit().unwrap();
    copy.close().unwrap();
    let err = v.rotate_root_key(&other, &mut |_, _| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    // A key row altered: that key is Corrupt, never another's material.
    v.close().unwrap();
    pg.psql(&format!(
        "UPDATE {schema}.shredvault_keys SET wrapped = set_byte(wrapped, 20, get_byte(wrapped, 20) # 1)"
    ))
    .unwrap();
    let err = match Vault::open(dir.path(), &root, None) {
        Err(e) => e,
        Ok(v) => v.get(&r, "account_admin").unwrap_err(),
    };
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

/// The child processes of the kill test, on a token of their own (see
/// there): `SV_EPOCH_MODE` `setup` (the vault and its records), `rotate`
/// (epochs ended in a loop until killed) or `check` (the vault opens with
/// every record, and no older epoch key is in the token).
#[test]
fn epoch_child_entry() {
    let Ok(dir) = std::env::var("SV_EPOCH_CHILD") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let hsm = hsm().unwrap();
    let url = std::env::var("SV_EPOCH_STORE").unwrap();
    let vault = dir.join("vault");
    let records = dir.join("records");
    match std::env::var("SV_EPOCH_MODE").unwrap().as_str() {
        "setup" => {
            let root = RootKey::create_in_token(&hsm.uri("epochs-kill")).unwrap();
            let v = Vault::open_with(&vault, &root, Some(example_policy()), on(&url)).unwrap();
            let mut list = String::new();
            for i in 0..60 {
                let s = v.create_subject(&[]).unwrap();
                let r = v
                    .put(&s, "account", format!("record {i}").as_bytes())
                    .unwrap();
                list.push_str(&format!("{r} record {i}\n"));
            }
            std::fs::write(&records, list).unwrap();
            v.close().unwrap();
            println!("SETUP OK");
        }
        "rotate" => {
            let root = RootKey::from_uri(&hsm.uri("epochs-kill")).unwrap();
            let v = Vault::open(&vault, &root, None).unwrap();
            // Logged in for the process's life before the kill can come
            // (see `hsm::rotation_to_token_child_entry`: SoftHSM2 rewrites
            // its token file at each login).
            let _logged_in = hsm.session();
            let begun: i64 = std::env::var("SV_EPOCH_T0").unwrap().parse().unwrap();
            println!("START");
            for k in 1..=40i64 {
                let report = v.expire_with(begun + k * 86_400 + k, true).unwrap();
                assert_eq!(report.key_epochs_ended, 1);
            }
            println!("DONE");
        }
        "check" => {
            let root = RootKey::from_uri(&hsm.uri("epochs-kill")).unwrap();
            let v = Vault::open(&vault, &root, None).unwrap();
            for line in std::fs::read_to_string(&records).unwrap().lines() {
                let (r, data) = line.split_once(' ').unwrap();
                let r = shredvault::RecordId::parse(r).unwrap();
                assert_eq!(
                    v.get(&r, "billing").unwrap().data.as_slice(),
                    data.as_bytes()
                );
            }
            v.verify_audit().unwrap();
            let (id, epoch) = v.key_epoch_for_tests().unwrap();
            let label = |n: u64| format!("epochs-kill.epoch.{}.{n}", &id[..16]);
            for n in 1..epoch {
                assert_eq!(
                    hsm.objects_labelled(&label(n)),
                    0,
                    "epoch {n}'s key outlived its epoch (now {epoch})"
                );
            }
            assert_eq!(hsm.objects_labelled(&label(epoch)), 1);
            v.close().unwrap();
            println!("CHECK OK epoch {epoch}");
        }
        other => panic!("{other}"),
    }
}

/// kill -9 while epochs end, one after another: the vault opens every
/// time with every record readable and its audit chain whole, and the
/// token holds no epoch key older than the one in force (a rotation
/// killed after its commit is finished at the next open). The children
/// use a SoftHSM2 token of their own: a process killed while SoftHSM2
/// writes a token's files may damage them, and the tests running beside
/// this one use this process's token.
#[test]
fn kill_9_while_epochs_end_leaves_one_epoch_and_every_key() {
    let (Some(pg), Some(_)) = (for_tests(), hsm()) else {
        return;
    };
    let url = fresh_schema(pg, "epochkill");
    let own = tempfile::tempdir().unwrap();
    let (_, conf) = crate::hsm::token_dir(own.path());
    let made = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "shredvault"])
        .args(["--pin", "1234", "--so-pin", "5678"])
        .env("SOFTHSM2_CONF", &conf)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(own.path().join("pin"), "1234\n").unwrap();
    let child = |mode: &str, t0: i64| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "epochs::epoch_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SV_EPOCH_CHILD", own.path())
        .env("SV_EPOCH_MODE", mode)
        .env("SV_EPOCH_STORE", &url)
        .env("SV_EPOCH_T0", t0.to_string())
        .env("SOFTHSM2_CONF", &conf)
        .env("SV_HSM_CHILD_DIR", own.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        cmd
    };
    let run = |mode: &str, want: &str| -> String {
        let out = child(mode, 0).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && text.contains(want),
            "{mode}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    run("setup", "SETUP OK");
    let rounds: u64 = std::env::var("SV_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .map(|r| r.div_ceil(10))
        .unwrap_or(5);
    let mut t0 = 1_900_000_000i64;
    let mut last_epoch = 1;
    for round in 0..rounds {
        let mut rotating = child("rotate", t0)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(rotating.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("START") {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
                "round {round}: the child ended before its rotations"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20 + (round * 37) % 200));
        let _ = rotating.kill();
        rotating.wait().unwrap();
        let text = run("check", "CHECK OK");
        let epoch: u64 = text
            .split("CHECK OK epoch ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(epoch >= last_epoch, "round {round}: epoch went back");
        eprintln!("round {round}: epoch {epoch}");
        last_epoch = epoch;
        t0 += 100 * 86_400;
    }
    assert!(last_epoch > 1, "no round got as far as ending an epoch");
}
