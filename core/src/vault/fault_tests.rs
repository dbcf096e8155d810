//! A failing disk at every step (issue 15, H4): each operation that
//! destroys or moves keys (put, update, delete, erase, expire, a consent
//! withdrawal) is run with an `Io` error injected at its k-th write, for
//! every k, into the store and the custody alike. Two ways on:
//!
//! - **transient**: only that write fails; the handle goes on (a flush, a
//!   put of a bystander), is closed, and the vault reopened;
//! - **dead disk**: every write from the k-th on fails; the handle is
//!   dropped, and the vault reopened from what the store held (a process
//!   crash) and from what its last durable point held (a power cut).
//!
//! Then: the vault opens; no live subject lost a record; what the
//! operation was acknowledged for is there; what it failed on is either
//! done or not, never half (a record reads its old or new value, or the
//! state its erasure gives it), and never `Corrupt`. Before the fix, a
//! failed durable point inside a rotation destroyed the new key the subject
//! already referred to, and the subject read `Erased`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::crypto::{RootKey, SecretKey};
use crate::custody::{
    Derivation, HeldSlot, KeyCustody, KeyError, KeyKind, KeyRef, MarkValues, RootRotation,
    SlotFileCustody,
};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{RecordId, SubjectId};
use crate::options::VaultOptions;
use crate::policy::Policy;
use crate::store::{Batch, Entries, Entry, MemoryStore, Recovered, Store, Value};

use super::{start, Vault};

const T0: i64 = 1_780_000_000; // 2026-05-28

/// Where the next write fails.
#[derive(Default)]
struct Faults {
    calls: AtomicU64,
    /// The call that fails (0: none).
    fail_at: AtomicU64,
    /// Every call from `fail_at` on fails.
    sticky: AtomicBool,
}

impl Faults {
    fn hit(&self) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.fail_at.load(Ordering::SeqCst);
        let fails = at != 0 && (n == at || (n > at && self.sticky.load(Ordering::SeqCst)));
        if fails {
            return Err(Error::io(
                format!("injected fault at write {n}"),
                std::io::Error::other("injected"),
            ));
        }
        Ok(())
    }

    fn arm(&self, at: u64, sticky: bool) {
        self.calls.store(0, Ordering::SeqCst);
        self.sticky.store(sticky, Ordering::SeqCst);
        self.fail_at.store(at, Ordering::SeqCst);
    }

    fn disarm(&self) -> u64 {
        self.fail_at.store(0, Ordering::SeqCst);
        self.calls.load(Ordering::SeqCst)
    }
}

/// The memory store with faults, and a copy of what it held at its last
/// durable point (what a power cut leaves).
struct FaultyStore {
    inner: MemoryStore,
    durable: Arc<Mutex<MemoryStore>>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    fn durable_point(&self) {
        *self.durable.lock().unwrap() = self.inner.deep_copy();
    }
}

impl Store for FaultyStore {
    fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        self.inner.get(key)
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.faults.hit()?;
        self.inner.insert(key, value)
    }
    fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        self.faults.hit()?;
        self.inner.insert_new(key, value)
    }
    fn remove(&self, key: &[u8]) -> Result<()> {
        self.faults.hit()?;
        self.inner.remove(key)
    }
    fn apply(&self, batch: Batch) -> Result<()> {
        self.faults.hit()?;
        self.inner.apply(batch)
    }
    fn scan(&self, prefix: &[u8], from: &[u8]) -> Entries {
        self.inner.scan(prefix, from)
    }
    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>> {
        self.inner.last(prefix)
    }
    fn sync(&self, seal: &dyn Fn() -> Result<()>) -> Result<()> {
        self.faults.hit()?;
        self.inner.sync(seal)?;
        self.faults.hit()?; // the fsync itself
        self.durable_point();
        Ok(())
    }
    fn persist(
        &self,
        _inserts: &[(&[u8], &[u8])],
        _note: &[u8],
        seal: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        // The journal's frame, modelled as a durable point of its own.
        self.sync(seal)
    }
    fn recover(&self, key: SecretKey) -> Result<Recovered> {
        self.inner.recover(key)
    }
    fn size_on_disk(&self) -> u64 {
        0
    }
    fn compact_live(&self) -> Result<crate::types::CompactReport> {
        self.inner.compact_live()
    }
}

/// The slot-file custody with faults on everything that writes.
struct FaultyCustody {
    inner: SlotFileCustody,
    faults: Arc<Faults>,
}

impl KeyCustody for FaultyCustody {
    fn vault_id(&self) -> [u8; 16] {
        self.inner.vault_id()
    }
    fn create(&self, kind: KeyKind, count: usize) -> Result<Vec<KeyRef>> {
        self.faults.hit()?;
        self.inner.create(kind, count)
    }
    fn destroy(&self, keys: &[KeyRef]) -> Result<()> {
        self.faults.hit()?;
        self.inner.destroy(keys)
    }
    fn derive(&self, key: KeyRef, derivation: Derivation) -> Result<SecretKey, KeyError> {
        self.inner.derive(key, derivation)
    }
    fn blind_mac(&self, kind: &str, value: &str) -> [u8; 32] {
        self.inner.blind_mac(kind, value)
    }
    fn holds(&self, key: KeyRef) -> bool {
        self.inner.holds(key)
    }
    fn inventory(&self) -> Vec<HeldSlot> {
        self.inner.inventory()
    }
    fn destroy_slots(&self, indexes: &[u32]) -> Result<()> {
        self.faults.hit()?;
        self.inner.destroy_slots(indexes)
    }
    fn counts(&self) -> (u64, u64) {
        self.inner.counts()
    }
    fn key_check(&self) -> [u8; 32] {
        self.inner.key_check()
    }
    fn image(&self) -> Result<crate::custody::CustodyImage> {
        self.inner.image()
    }
    fn backup_key(&self, id: &[u8; 16], day: Option<&SecretKey>) -> SecretKey {
        self.inner.backup_key(id, day)
    }
    fn begin_rotation(&self, new: &RootKey) -> Result<Box<dyn RootRotation + '_>> {
        self.faults.hit()?;
        self.inner.begin_rotation(new)
    }
    fn size_on_disk(&self) -> u64 {
        self.inner.size_on_disk()
    }
    fn marks(&self) -> MarkValues {
        self.inner.marks()
    }
    fn note_store_mark(&self, mark: u64) -> Result<()> {
        self.faults.hit()?;
        self.inner.note_store_mark(mark)
    }
    fn reset_store_mark(&self, mark: u64) -> Result<()> {
        self.faults.hit()?;
        self.inner.reset_store_mark(mark)
    }
    fn set_vault_format(&self, format: u8) -> Result<()> {
        self.faults.hit()?;
        self.inner.set_vault_format(format)
    }
}

fn policy() -> Policy {
    Policy::parse(include_str!("../../../example-policy.toml"), "example").unwrap()
}

fn options(now: i64) -> VaultOptions {
    VaultOptions {
        clock: Some(Arc::new(move || now)),
        privileged: true,
        ..Default::default()
    }
}

/// Opens the vault on `store` and the keys in `keys`, with `faults`.
fn open(
    store: &MemoryStore,
    durable: &Arc<Mutex<MemoryStore>>,
    keys: &Path,
    faults: &Arc<Faults>,
    policy: Option<Policy>,
    now: i64,
) -> Result<Vault> {
    let root = RootKey::from_bytes(&[3; 32]).unwrap();
    let custody = SlotFileCustody::open(keys, &root, [4; 16])?;
    start(
        keys.to_path_buf(),
        Arc::new(FaultyStore {
            inner: store.clone(),
            durable: durable.clone(),
            faults: faults.clone(),
        }),
        Box::new(FaultyCustody {
            inner: custody,
            faults: faults.clone(),
        }),
        policy,
        options(now),
    )
}

/// What a record may read as.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Value(Vec<u8>),
    Kind(ErrorKind),
}

fn read(v: &Vault, r: &RecordId) -> Seen {
    match v.get(r, "legal_claims") {
        Ok(rec) => Seen::Value(rec.data.to_vec()),
        Err(e) => Seen::Kind(e.kind()),
    }
}

fn value(bytes: &[u8]) -> Seen {
    Seen::Value(bytes.to_vec())
}

/// The subjects and records every run starts from.
struct Setup {
    a: SubjectId,
    b: SubjectId,
    a_account: RecordId,
    a_usage: RecordId,
    a_marketing: RecordId,
    b_account: RecordId,
    b_usage: RecordId,
}

fn populate(v: &Vault) -> Setup {
    let a = v.create_subject(&[("email", "a@example.com")]).unwrap();
    let b = v.create_subject(&[("email", "b@example.com")]).unwrap();
    v.give_consent(&a, "marketing", T0 - 10).unwrap();
    Setup {
        a,
        b,
        a_account: v.put(&a, "account", b"a account").unwrap(),
        a_usage: v.put(&a, "usage_log", b"a usage").unwrap(),
        a_marketing: v.put(&a, "marketing_contact", b"a marketing").unwrap(),
        b_account: v.put(&b, "account", b"b account").unwrap(),
        b_usage: v.put(&b, "usage_log", b"b usage").unwrap(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Put,
    Update,
    Delete,
    Erase,
    Expire,
    Withdraw,
}

const OPS: [Op; 6] = [
    Op::Put,
    Op::Update,
    Op::Delete,
    Op::Erase,
    Op::Expire,
    Op::Withdraw,
];

/// After the usage logs' 13 months.
const LATER: i64 = T0 + 400 * 86_400;

/// Runs `op`; the new record of a put that was acknowledged.
fn run(v: &Vault, s: &Setup, op: Op) -> (bool, Option<RecordId>) {
    match op {
        Op::Put => match v.put(&s.a, "account", b"a new") {
            Ok(r) => (true, Some(r)),
            Err(_) => (false, None),
        },
        Op::Update => (v.update(&s.a_account, b"a updated").is_ok(), None),
        Op::Delete => (v.delete(&s.a_usage).is_ok(), None),
        Op::Erase => (v.erase_subject(&s.a).is_ok(), None),
        Op::Expire => (v.expire_with(LATER, true).is_ok(), None),
        Op::Withdraw => (v.withdraw_consent(&s.a, "marketing", T0).is_ok(), None),
    }
}

/// What each record may read as after `op`, acknowledged (`ok`) or not.
fn allowed(s: &Setup, op: Op, ok: bool) -> Vec<(RecordId, Vec<Seen>)> {
    let either = |before: Seen, after: Seen| {
        if ok {
            vec![after]
        } else {
            vec![before, after]
        }
    };
    let erased = Seen::Kind(ErrorKind::Erased);
    let expired = Seen::Kind(ErrorKind::Expired);
    let mut out = vec![
        (s.a_account, vec![value(b"a account")]),
        (s.a_usage, vec![value(b"a usage")]),
        (s.a_marketing, vec![value(b"a marketing")]),
        (s.b_account, vec![value(b"b account")]),
        (s.b_usage, vec![value(b"b usage")]),
    ];
    let mut set = |r: RecordId, seen: Vec<Seen>| {
        out.iter_mut().find(|(id, _)| *id == r).unwrap().1 = seen;
    };
    match op {
        Op::Put => {}
        Op::Update => set(
            s.a_account,
            either(value(b"a account"), value(b"a updated")),
        ),
        Op::Delete => set(s.a_usage, either(value(b"a usage"), erased.clone())),
        Op::Erase => {
            // The account is retained on an erasure request (restricted:
            // legal_claims reads it); the rest goes with the key.
            set(s.a_usage, either(value(b"a usage"), erased.clone()));
            set(s.a_marketing, either(value(b"a marketing"), erased.clone()));
        }
        Op::Expire => {
            set(s.a_usage, either(value(b"a usage"), expired.clone()));
            set(s.b_usage, either(value(b"b usage"), expired));
        }
        Op::Withdraw => set(s.a_marketing, either(value(b"a marketing"), erased)),
    }
    out
}

/// Checks the reopened vault against what `op` allows.
fn check(v: &Vault, s: &Setup, op: Op, ok: bool, new: Option<RecordId>, what: &str) {
    for (r, allowed) in allowed(s, op, ok) {
        let seen = read(v, &r);
        assert!(
            allowed.contains(&seen),
            "{what}: record {r} reads {seen:?}, allowed {allowed:?}"
        );
    }
    if let Some(r) = new {
        assert_eq!(read(v, &r), value(b"a new"), "{what}: an acknowledged put");
    }
    // No live subject lost: the bystander is live and found.
    assert_eq!(
        v.find_subject("email", "b@example.com").unwrap(),
        Some(s.b),
        "{what}"
    );
    v.verify_audit()
        .unwrap_or_else(|e| panic!("{what}: the audit chain: {e}"));
}

/// A fresh vault with the setup, its store, its durable copy, its keys.
struct World {
    store: MemoryStore,
    durable: Arc<Mutex<MemoryStore>>,
    keys: tempfile::TempDir,
    faults: Arc<Faults>,
}

impl World {
    fn new() -> (World, Vault, Setup) {
        let world = World {
            store: MemoryStore::new(),
            durable: Arc::new(Mutex::new(MemoryStore::new())),
            keys: tempfile::tempdir().unwrap(),
            faults: Arc::new(Faults::default()),
        };
        let v = world
            .open(&world.store.clone(), world.keys.path(), Some(policy()), T0)
            .unwrap();
        let s = populate(&v);
        v.flush().unwrap();
        (world, v, s)
    }

    fn open(
        &self,
        store: &MemoryStore,
        keys: &Path,
        policy: Option<Policy>,
        now: i64,
    ) -> Result<Vault> {
        open(store, &self.durable, keys, &self.faults, policy, now)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "lock" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The writes `op` makes with no fault: how many points to fail at.
fn writes_of(op: Op) -> u64 {
    let (world, v, s) = World::new();
    world.faults.arm(0, false);
    run(&v, &s, op);
    v.purge().unwrap();
    world.faults.disarm()
}

#[test]
fn no_live_subject_is_lost_when_a_write_fails_at_any_step() {
    for op in OPS {
        let writes = writes_of(op);
        assert!(writes > 0, "{op:?} writes");
        for at in 1..=writes + 1 {
            // Transient: only that write fails; the handle goes on.
            let (world, v, s) = World::new();
            world.faults.arm(at, false);
            let (ok, new) = run(&v, &s, op);
            world.faults.disarm();
            let _ = v.flush();
            let after = v.put(&s.b, "account", b"b later");
            let what = format!("{op:?}, write {at} of {writes} failed once (ok: {ok})");
            let after = after.unwrap_or_else(|e| panic!("{what}: the handle goes on: {e}"));
            drop(v);
            let v = world
                .open(&world.store, world.keys.path(), None, LATER)
                .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            check(&v, &s, op, ok, new, &what);
            assert_eq!(read(&v, &after), value(b"b later"), "{what}");
            drop(v);

            // A dead disk: every write from this one on fails.
            let (world, v, s) = World::new();
            world.faults.arm(at, true);
            let (ok, new) = run(&v, &s, op);
            drop(v);
            world.faults.disarm();
            // The power cut first (on a copy of keys/), then the crash.
            let cut_keys = tempfile::tempdir().unwrap();
            copy_dir(world.keys.path(), cut_keys.path());
            let durable = world.durable.lock().unwrap().deep_copy();
            for (store, keys, how) in [
                (&durable, cut_keys.path(), "power cut"),
                (&world.store, world.keys.path(), "process crash"),
            ] {
                let what =
                    format!("{op:?}, writes from {at} of {writes} failed, then a {how} (ok: {ok})");
                let v = world
                    .open(store, keys, None, LATER)
                    .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
                check(&v, &s, op, ok, new, &what);
            }
        }
    }
}
