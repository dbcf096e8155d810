//! A vault whose records live in PostgreSQL (`VaultOptions::store`), on a
//! throw-away cluster from the installed binaries (see
//! `shredvault::postgres::for_tests`; the test script sets
//! `SV_REQUIRE_POSTGRES=1`, so a missing PostgreSQL fails rather than
//! skips). The store contract itself is checked against PostgreSQL in the
//! core's unit tests (`store::tests`), and kill -9 in `crash`.

use crate::common;

use common::*;
use shredvault::postgres::{for_tests, fresh_schema, schema_of, Throwaway};
use shredvault::{ErrorKind, Vault, VaultOptions};

fn on(url: &str) -> VaultOptions {
    VaultOptions {
        store: Some(url.to_string()),
        ..Default::default()
    }
}

/// Every byte PostgreSQL keeps on disk, written out first (a checkpoint),
/// plus `dump`: panics naming the file if `needle` is in any.
fn assert_absent_in_postgres(pg: &Throwaway, dump: &std::path::Path, needle: &[u8], what: &str) {
    pg.psql("CHECKPOINT").unwrap();
    assert_absent(pg.data_dir(), needle, what);
    let bytes = std::fs::read(dump).unwrap();
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "{what} found in the pg_dump"
    );
}

#[test]
fn a_vault_keeps_its_records_in_postgres_and_its_directory_remembers_where() {
    let Some(pg) = for_tests() else { return };
    let url = fresh_schema(pg, "vault");
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), on(&url)).unwrap();
    let alice = v
        .create_subject(&[("email", "alice.pg@example.com")])
        .unwrap();
    let bob = v
        .create_subject(&[("email", "bob.pg@example.com")])
        .unwrap();
    let a = v.put(&alice, "account", b"alice's account").unwrap();
    let b = v.put(&bob, "account", b"bob's account").unwrap();
    let b2 = v.put(&bob, "account", b"bob's second").unwrap();
    v.update(&b2, b"bob's second, rectified").unwrap();
    v.close().unwrap();
    // The directory holds the keys and the store's name, no data/.
    assert!(!dir.path().join("data").exists());
    let store = std::fs::read_to_string(dir.path().join("store")).unwrap();
    assert_eq!(store, url);
    // A plain open finds the records (every tool opens this way).
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert_eq!(
        &v.get(&a, "account_admin").unwrap().data[..],
        b"alice's account"
    );
    assert_eq!(
        &v.get(&b2, "account_admin").unwrap().data[..],
        b"bob's second, rectified"
    );
    assert_eq!(
        v.find_subject("email", "bob.pg@example.com").unwrap(),
        Some(bob)
    );
    // The account is kept for its retention period (restricted), the
    // identifiers go at once.
    v.erase_subject(&alice).unwrap();
    assert_eq!(
        v.get(&a, "account_admin").unwrap_err().kind(),
        ErrorKind::Restricted
    );
    assert_eq!(
        v.find_subject("email", "alice.pg@example.com").unwrap(),
        None
    );
    v.verify_audit().unwrap();
    // Naming another store than the vault's is refused; so is a second
    // handle.
    let e =
        Vault::open_with(dir.path(), &root(), None, on(&fresh_schema(pg, "other"))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(
        Vault::open(dir.path(), &root(), None).unwrap_err().kind(),
        ErrorKind::Locked
    );
    drop(v);
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert_eq!(
        v.get(&a, "account_admin").unwrap_err().kind(),
        ErrorKind::Restricted
    );
    assert_eq!(
        v.find_subject("email", "alice.pg@example.com").unwrap(),
        None
    );
    assert_eq!(
        &v.get(&b, "account_admin").unwrap().data[..],
        b"bob's account"
    );
    v.verify_audit().unwrap();
    // Offline compaction of a PostgreSQL vault is its VACUUM.
    drop(v);
    let report = Vault::compact(dir.path(), &root()).unwrap();
    assert!(report.entries > 0 && report.bytes_after > 0, "{report:?}");
    // A vault in data/ cannot be pointed at a database afterwards.
    let sled_dir = tempfile::tempdir().unwrap();
    new_vault(sled_dir.path()).close().unwrap();
    let e = Vault::open_with(sled_dir.path(), &root(), None, on(&url)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn two_vaults_never_share_one_schema() {
    let Some(pg) = for_tests() else { return };
    let url = fresh_schema(pg, "shared");
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let v = Vault::open_with(first.path(), &root(), Some(example_policy()), on(&url)).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "account", b"the first vault's").unwrap();
    // While the first is open: the schema's lock.
    let e = Vault::open_with(second.path(), &root(), Some(example_policy()), on(&url)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
    drop(v);
    // Closed: the stored metadata names another vault.
    let e = Vault::open_with(second.path(), &root(), Some(example_policy()), on(&url)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    let v = Vault::open(first.path(), &root(), None).unwrap();
    assert_eq!(
        &v.get(&r, "account_admin").unwrap().data[..],
        b"the first vault's"
    );
}

#[test]
fn no_plaintext_in_postgres_files_or_dumps_and_an_old_dump_brings_no_erased_subject_back() {
    let Some(pg) = for_tests() else { return };
    let url = fresh_schema(pg, "plain");
    let schema = schema_of(&url).to_string();
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), on(&url)).unwrap();
    let marker = b"PG-PLAINTEXT-MARKER-51c2e8";
    let email = "pg.marker.51c2e8@example.com";
    let alice = v.create_subject(&[("email", email)]).unwrap();
    let bob = v
        .create_subject(&[("email", "pg.bob.51c2e8@example.com")])
        .unwrap();
    let mut records = Vec::new();
    for i in 0..40 {
        let mut data = marker.to_vec();
        data.extend_from_slice(format!(" record {i}").as_bytes());
        records.push(v.put(&alice, "account", &data).unwrap());
    }
    let b = v.put(&bob, "account", b"bob stays").unwrap();
    v.close().unwrap();

    let work = tempfile::tempdir().unwrap();
    // pg_dump runs as root here, the cluster's files are postgres's: a
    // directory both can write.
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let before = work.path().join("before.sql");
    pg.dump(&schema, &before).unwrap();
    let check = |dump: &std::path::Path, when: &str| {
        assert_absent_in_postgres(pg, dump, marker, &format!("record marker {when}"));
        assert_absent_in_postgres(pg, dump, email.as_bytes(), &format!("email {when}"));
        assert_absent_in_postgres(pg, dump, b"pg.marker", &format!("email part {when}"));
        assert_absent_in_postgres(pg, dump, &root().to_bytes().unwrap()[..8], "root key");
    };
    check(&before, "before erasure");

    let v = Vault::open(dir.path(), &root(), None).unwrap();
    v.erase_subject(&alice).unwrap();
    v.close().unwrap();
    let after = work.path().join("after.sql");
    pg.dump(&schema, &after).unwrap();
    check(&after, "after erasure");

    // The dump from before the erasure, restored in place of the schema:
    // refused as a stale copy, and once accepted the subject stays erased
    // (its key is gone from keys/, which no dump holds).
    pg.psql(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
    pg.psql_file(&before).unwrap();
    accept_stale_copy(dir.path());
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    for r in &records {
        assert_eq!(
            v.get(r, "account_admin").unwrap_err().kind(),
            ErrorKind::Erased
        );
    }
    assert_eq!(v.find_subject("email", email).unwrap(), None);
    assert_eq!(&v.get(&b, "account_admin").unwrap().data[..], b"bob stays");
    v.verify_audit().unwrap();
}

/// Writes commit without waiting for the WAL flush; the durable point of
/// each acknowledged put flushes it. A PostgreSQL crash (`-m immediate`:
/// WAL still in its buffers is lost) right after the puts are acknowledged
/// loses none of them, nor their audit entries. (A cluster of this test's
/// own: the crash would cut the other tests' connections.)
#[test]
fn a_postgres_crash_loses_no_acknowledged_put() {
    if for_tests().is_none() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let pg = Throwaway::start(base.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), on(&pg.url())).unwrap();
    let acknowledged = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (v, acknowledged) = (&v, &acknowledged);
            scope.spawn(move || {
                let s = v.create_subject(&[]).unwrap();
                for i in 0..50 {
                    let data = format!("thread {t} put {i}");
                    let r = v.put(&s, "account", data.as_bytes()).unwrap();
                    acknowledged.lock().unwrap().push((r, data));
                }
            });
        }
    });
    // The crash comes before the handle's close (which would flush).
    pg.crash_and_restart().unwrap();
    drop(v);
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    let acknowledged = acknowledged.into_inner().unwrap();
    assert_eq!(acknowledged.len(), 200);
    for (r, data) in &acknowledged {
        assert_eq!(
            &v.get(r, "account_admin").unwrap().data[..],
            data.as_bytes()
        );
    }
    v.verify_audit().unwrap();
    let logged: std::collections::HashSet<_> = logged_puts(&v).into_iter().collect();
    for (r, _) in &acknowledged {
        assert!(
            logged.contains(r),
            "acknowledged put {r} has no audit entry"
        );
    }
}

/// A put's audit entry waits in the journal table until the next durable
/// point seals it into the chain. Rows brought back after that (an old
/// copy) log nothing twice; an altered row is `Corrupt` at open, nothing
/// changed.
#[test]
fn journal_rows_are_authenticated_and_never_logged_twice() {
    let Some(pg) = for_tests() else { return };
    let url = fresh_schema(pg, "journal");
    let schema = schema_of(&url).to_string();
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(dir.path(), &root(), Some(example_policy()), on(&url)).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "account", b"journaled").unwrap();
    // The put's entry is in the journal (the handle has not sealed it).
    pg.psql(&format!(
        "CREATE TABLE {schema}.saved AS SELECT * FROM {schema}.shredvault_journal"
    ))
    .unwrap();
    let saved = pg
        .psql(&format!("SELECT count(*) FROM {schema}.saved"))
        .unwrap();
    let saved_rows = saved
        .split_whitespace()
        .find_map(|w| w.parse::<u64>().ok())
        .unwrap();
    assert!(saved_rows >= 1, "{saved}");
    v.close().unwrap();
    let count = || {
        let v = Vault::open(dir.path(), &root(), None).unwrap();
        let n = v
            .audit_entries(None)
            .unwrap()
            .into_iter()
            .filter(|e| e.op == "put" && e.record == Some(r))
            .count();
        v.verify_audit().unwrap();
        n
    };
    assert_eq!(count(), 1);
    // The old rows again: nothing logged twice.
    pg.psql(&format!(
        "INSERT INTO {schema}.shredvault_journal SELECT * FROM {schema}.saved"
    ))
    .unwrap();
    assert_eq!(count(), 1);
    // An altered row: Corrupt.
    pg.psql(&format!(
        "INSERT INTO {schema}.shredvault_journal (note, mac) SELECT set_byte(note, 3, get_byte(note, 3) # 1), mac FROM {schema}.saved"
    ))
    .unwrap();
    let e = Vault::open(dir.path(), &root(), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}
