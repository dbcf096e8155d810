//! The store contract (see [`Store`]), checked against every store: each
//! check is a function of a way to open the store (again, after a drop, as
//! a restarted process would).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Batch, MemoryStore, SledStore, Store};
use crate::crypto::SecretKey;

/// Opens the store under test; a second call opens the same data again.
type Opener<'a> = &'a dyn Fn() -> Arc<dyn Store>;

fn keys(store: &dyn Store, prefix: &[u8], from: &[u8]) -> Vec<Vec<u8>> {
    store
        .scan(prefix, from)
        .map(|e| e.unwrap().0.to_vec())
        .collect()
}

fn single_writes_and_reads(open: Opener) {
    let s = open();
    assert!(s.get(b"a").unwrap().is_none());
    s.insert(b"a", b"1").unwrap();
    assert_eq!(&*s.get(b"a").unwrap().unwrap(), b"1");
    assert!(s.contains(b"a").unwrap());
    s.insert(b"a", b"2").unwrap();
    assert_eq!(&*s.get(b"a").unwrap().unwrap(), b"2");
    assert!(!s.insert_new(b"a", b"3").unwrap());
    assert_eq!(&*s.get(b"a").unwrap().unwrap(), b"2");
    assert!(s.insert_new(b"b", b"").unwrap());
    assert_eq!(&*s.get(b"b").unwrap().unwrap(), b"");
    s.remove(b"a").unwrap();
    s.remove(b"never there").unwrap();
    assert!(!s.contains(b"a").unwrap());
}

fn byte_order_prefixes_and_last(open: Opener) {
    let s = open();
    let mut batch = Batch::default();
    for k in [
        &b"R\x00"[..],
        b"R",
        b"R\xff\x01",
        b"Q\xff",
        b"R\x01\x02",
        b"S",
        b"R\x01",
        b"R\xff",
    ] {
        batch.insert(k, k.to_vec());
    }
    s.apply(batch).unwrap();
    assert_eq!(
        keys(&*s, b"R", b"R"),
        [
            &b"R"[..],
            b"R\x00",
            b"R\x01",
            b"R\x01\x02",
            b"R\xff",
            b"R\xff\x01"
        ]
    );
    assert_eq!(
        keys(&*s, b"R", b"R\x01\x01"),
        [&b"R\x01\x02"[..], b"R\xff", b"R\xff\x01"]
    );
    assert_eq!(keys(&*s, b"R\x01", b"R\x01"), [&b"R\x01"[..], b"R\x01\x02"]);
    assert!(keys(&*s, b"T", b"T").is_empty());
    assert_eq!(&*s.last(b"R").unwrap().unwrap().0, b"R\xff\x01");
    assert_eq!(&*s.last(b"R\x01").unwrap().unwrap().1, b"R\x01\x02");
    assert!(s.last(b"T").unwrap().is_none());
    // Writes while a scan runs: it may or may not see them, but it goes on
    // in order and returns every entry nobody touched.
    let mut scan = s.scan(b"R", b"R");
    assert_eq!(&*scan.next().unwrap().unwrap().0, b"R");
    s.insert(b"R\x00\x01", b"new").unwrap();
    s.remove(b"R\x01").unwrap();
    let rest: Vec<Vec<u8>> = scan.map(|e| e.unwrap().0.to_vec()).collect();
    assert!(rest.windows(2).all(|w| w[0] < w[1]), "{rest:?}");
    for untouched in [&b"R\x00"[..], b"R\x01\x02", b"R\xff", b"R\xff\x01"] {
        assert!(rest.contains(&untouched.to_vec()), "{rest:?}");
    }
}

fn batches_are_atomic_and_isolated(open: Opener) {
    let s = open();
    // Later writes to a key in one batch win.
    let mut batch = Batch::default();
    batch.insert(b"k", b"1".to_vec());
    batch.remove(b"k");
    batch.insert(b"k", b"2".to_vec());
    batch.remove(b"gone");
    s.apply(batch).unwrap();
    assert_eq!(&*s.get(b"k").unwrap().unwrap(), b"2");
    // A writer sets A then B to the same version in one batch; a reader
    // reading B before A must never see A behind B.
    s.insert(b"A", &0u64.to_be_bytes()).unwrap();
    s.insert(b"B", &0u64.to_be_bytes()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen_by_writer = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (s, stop, seen) = (s.clone(), stop.clone(), seen_by_writer.clone());
        std::thread::spawn(move || {
            let read =
                |k: &[u8]| u64::from_be_bytes((&*s.get(k).unwrap().unwrap()).try_into().unwrap());
            while !stop.load(Ordering::Relaxed) {
                let b = read(b"B");
                let a = read(b"A");
                assert!(a >= b, "A {a} behind B {b}: a batch was seen half-applied");
                seen.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // At least 2,000 batches, and on until the reader has read beside them
    // a while (on a loaded machine it may start late).
    let mut v = 0u64;
    // (A reader that failed ends the loop: its panic is the test's.)
    while !reader.is_finished()
        && (v < 2_000 || (seen_by_writer.load(Ordering::Relaxed) < 1_000 && v < 10_000_000))
    {
        v += 1;
        let mut batch = Batch::default();
        batch.insert(b"A", v.to_be_bytes().to_vec());
        batch.insert(b"B", v.to_be_bytes().to_vec());
        s.apply(batch).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(seen_by_writer.load(Ordering::Relaxed) >= 1_000);
}

fn insert_new_has_one_winner(open: Opener) {
    let s = open();
    let winners: usize = (0..4)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..200u32)
                    .filter(|k| s.insert_new(&k.to_be_bytes(), &[i]).unwrap())
                    .count()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    assert_eq!(winners, 200);
}

fn synced_and_persisted_writes_outlive_the_handle(open: Opener) {
    let s = open();
    let _ = s.recover(SecretKey::from_array([1; 32])).unwrap();
    s.insert(b"synced", b"1").unwrap();
    let sealed = std::sync::atomic::AtomicUsize::new(0);
    s.sync(&|| {
        sealed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
    .unwrap();
    assert_eq!(sealed.load(Ordering::Relaxed), 1, "seal is called once");
    s.insert(b"persisted", b"2").unwrap();
    s.persist(&[(b"persisted", b"2")], b"note", &|| Ok(()))
        .unwrap();
    drop(s);
    let s = open();
    let recovered = s.recover(SecretKey::from_array([1; 32])).unwrap();
    assert_eq!(&*s.get(b"synced").unwrap().unwrap(), b"1");
    // Either the store kept the persisted insert, or it hands it back.
    let kept = s.get(b"persisted").unwrap().is_some();
    let handed_back = recovered
        .calls
        .iter()
        .any(|c| c.note == b"note" && c.inserts == [(b"persisted".to_vec(), b"2".to_vec())]);
    assert!(kept || handed_back);
    // A new entry written with its note in one step: durable, or handed
    // back; never written over what is there.
    assert!(s
        .persist_new(b"joined", b"3", b"note 2", &|| Ok(()))
        .unwrap());
    assert!(!s
        .persist_new(b"joined", b"4", b"note 3", &|| Ok(()))
        .unwrap());
    assert_eq!(&*s.get(b"joined").unwrap().unwrap(), b"3");
    drop(s);
    let s = open();
    let recovered = s.recover(SecretKey::from_array([1; 32])).unwrap();
    let kept = s.get(b"joined").unwrap().is_some_and(|v| &*v == b"3");
    let handed_back = recovered
        .calls
        .iter()
        .any(|c| c.note == b"note 2" && c.inserts == [(b"joined".to_vec(), b"3".to_vec())]);
    assert!(kept || handed_back);
    assert!(!recovered.calls.iter().any(|c| c.note == b"note 3"));
}

/// A live compaction keeps every write made before it and while it runs
/// (from other threads), an iterator opened before it reads on, and the
/// store is written and read as before after it.
fn a_live_compaction_keeps_every_write(open: &dyn Fn() -> Arc<dyn Store>) {
    let s = open();
    let _ = s.recover(SecretKey::from_array([1; 32])).unwrap();
    for i in 0..500u32 {
        s.insert(&i.to_be_bytes(), &[7; 100]).unwrap();
    }
    s.remove(&3u32.to_be_bytes()).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut n = 0u32;
            while !done.load(Ordering::SeqCst) {
                let mut key = b"w".to_vec();
                key.extend_from_slice(&n.to_be_bytes());
                s.insert(&key, &n.to_le_bytes()).unwrap();
                if n < 490 {
                    s.remove(&(n + 10).to_be_bytes()).unwrap();
                }
                n += 1;
            }
            n
        });
        // An iterator held open: the swap waits for it, and it reads on.
        let mut held = s.scan(&[], &[]);
        assert!(held.next().is_some());
        let reader = scope.spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            // (The writer's keys sort after these, and it removes some.)
            held.take_while(|e| e.as_ref().unwrap().0.len() == 4)
                .count()
        });
        s.compact_live().unwrap();
        assert!(reader.join().unwrap() >= 8, "the held iterator read on");
        done.store(true, Ordering::SeqCst);
        let end = writer.join().unwrap();
        for n in 0..end {
            let mut key = b"w".to_vec();
            key.extend_from_slice(&n.to_be_bytes());
            assert_eq!(&*s.get(&key).unwrap().unwrap(), &n.to_le_bytes(), "{n}");
        }
        for n in 10..(end.min(490) + 10) {
            assert!(s.get(&n.to_be_bytes()).unwrap().is_none(), "{n} removed");
        }
        assert!(s.get(&3u32.to_be_bytes()).unwrap().is_none());
        assert!(s.get(&5u32.to_be_bytes()).unwrap().is_some());
    });
    s.insert(b"after", b"1").unwrap();
    s.sync(&|| Ok(())).unwrap();
    drop(s);
    let s = open();
    assert_eq!(&*s.get(b"after").unwrap().unwrap(), b"1");
    assert!(s.get(&5u32.to_be_bytes()).unwrap().is_some());
}

/// Writers raising counters while readers read them: no read returns a
/// value older than one a read had already returned (a store's cache must
/// never hand back what a write replaced), and a removal is seen by every
/// read that starts after it returned.
fn reads_never_go_back(open: Opener) {
    let s = open();
    const KEYS: u32 = 4;
    let done = AtomicBool::new(false);
    let seen: Vec<std::sync::atomic::AtomicU64> = (0..KEYS)
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    std::thread::scope(|scope| {
        for w in 0..KEYS {
            let (s, done) = (&s, &done);
            scope.spawn(move || {
                let mut n = 1u64;
                while !done.load(Ordering::SeqCst) {
                    s.insert(&w.to_be_bytes(), &n.to_be_bytes()).unwrap();
                    n += 1;
                }
            });
        }
        for _ in 0..3 {
            let (s, done, seen) = (&s, &done, &seen);
            scope.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    for k in 0..KEYS {
                        // What some read returned before this one began.
                        let floor = seen[k as usize].load(Ordering::SeqCst);
                        let Some(v) = s.get(&k.to_be_bytes()).unwrap() else {
                            continue;
                        };
                        let v = u64::from_be_bytes(v[..].try_into().unwrap());
                        if v < floor {
                            done.store(true, Ordering::SeqCst);
                            panic!("key {k}: read {v} after {floor}");
                        }
                        seen[k as usize].fetch_max(v, Ordering::SeqCst);
                    }
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1500));
        done.store(true, Ordering::SeqCst);
    });
    for k in 0..KEYS {
        s.remove(&k.to_be_bytes()).unwrap();
        assert!(s.get(&k.to_be_bytes()).unwrap().is_none());
    }
}

/// Gives a fresh store's opener (which reopens that same store).
type Fresh<'a> = &'a dyn Fn() -> Box<dyn Fn() -> Arc<dyn Store>>;

fn contract(fresh: Fresh) {
    single_writes_and_reads(&*fresh());
    byte_order_prefixes_and_last(&*fresh());
    batches_are_atomic_and_isolated(&*fresh());
    insert_new_has_one_winner(&*fresh());
    synced_and_persisted_writes_outlive_the_handle(&*fresh());
    a_live_compaction_keeps_every_write(&*fresh());
    reads_never_go_back(&*fresh());
}

#[test]
fn the_memory_store_keeps_the_contract() {
    contract(&|| {
        let store = MemoryStore::new();
        Box::new(move || Arc::new(store.clone()) as Arc<dyn Store>)
    });
}

#[test]
fn the_sled_store_keeps_the_contract() {
    contract(&|| {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Box::new(move || Arc::new(reopen_sled(dir.path())) as Arc<dyn Store>)
    });
}

/// Opens the sled store at `path`; a handle dropped a moment ago may hold
/// sled's lock for a moment (its threads end after `Drop`).
fn reopen_sled(path: &std::path::Path) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open(path) {
            Ok(s) => return s,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[cfg(feature = "postgres")]
#[test]
fn the_postgres_store_keeps_the_contract() {
    use super::PgStore;
    use crate::postgres::{for_tests, fresh_schema};
    let Some(pg) = for_tests() else { return };
    contract(&|| {
        let url = fresh_schema(pg, "contract");
        Box::new(move || Arc::new(PgStore::open(&url).unwrap()) as Arc<dyn Store>)
    });
}

#[cfg(feature = "postgres")]
#[test]
fn a_postgres_store_is_one_process_s_and_its_errors_are_clean() {
    use super::PgStore;
    use crate::error::ErrorKind;
    use crate::postgres::{for_tests, fresh_schema};
    let Some(pg) = for_tests() else { return };
    let url = fresh_schema(pg, "locked");
    let first = PgStore::open(&url).unwrap();
    let e = PgStore::open(&url).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
    drop(first);
    let again = PgStore::open(&url).unwrap();
    // Another schema is another vault: no lock shared.
    let other = PgStore::open(&fresh_schema(pg, "locked")).unwrap();
    drop((again, other));
    // Nothing listening: Io, naming the database but never a password.
    let e = PgStore::open("host=/nonexistent-dir user=sv password=hunter2 dbname=v").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = PgStore::open("postgres://sv:hunter2@/v?host=/nonexistent-dir").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = PgStore::open("not a connection string =").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}
