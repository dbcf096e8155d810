//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod readback;

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use shredvault::{Policy, RecordId, RootKey, Vault, VaultOptions};

pub fn example_policy_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-policy.toml")
}

pub fn example_policy() -> Policy {
    Policy::from_file(&example_policy_path()).expect("example policy parses")
}

pub fn root() -> RootKey {
    RootKey::from_bytes(&[0x5a; 32]).unwrap()
}

pub fn new_vault(dir: &Path) -> Vault {
    Vault::open(dir, &root(), Some(example_policy())).expect("vault opens")
}

/// A `data/` copy older than `keys/` (a restored copy) is refused at open,
/// with nothing changed; an operator's `accept_stale_data` lets it open.
pub fn accept_stale_copy(dir: &Path) {
    let err = Vault::open(dir, &root(), None).unwrap_err();
    assert_eq!(err.kind(), shredvault::ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("older than"), "{err}");
    Vault::accept_stale_data(dir, &root()).unwrap();
}

/// Every file under `dir`, with its bytes.
pub fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Panics naming the file if `needle` occurs in any file under `dir`.
pub fn assert_absent(dir: &Path, needle: &[u8], what: &str) {
    assert!(!needle.is_empty());
    for (path, bytes) in all_files(dir) {
        if bytes.windows(needle.len()).any(|w| w == needle) {
            panic!("{what} found in {}", path.display());
        }
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Opens a vault's sled database directly (to tamper with it). sled's I/O
/// threads may hold its file lock for a moment after a vault is dropped,
/// so this retries for a few seconds.
pub fn raw_sled(vault_dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(vault_dir.join("data")) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("opening sled: {e}"),
        }
    }
}

/// Vault options with a simulated clock starting at `start` (Unix seconds),
/// and the handle that moves it.
pub fn clocked(start: i64) -> (VaultOptions, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(start));
    let clock = now.clone();
    let options = VaultOptions {
        clock: Some(Arc::new(move || clock.load(Ordering::SeqCst))),
        ..Default::default()
    };
    (options, now)
}

/// An RFC 3339 time as Unix seconds.
pub fn ts(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_second()
}

/// xorshift64: a small deterministic generator for test schedules (seeded,
/// so a failing run can be repeated).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The records of the successful puts the audit log holds, in its order
/// (a put logged twice is there twice).
pub fn logged_puts(v: &Vault) -> Vec<RecordId> {
    v.audit_entries(None)
        .unwrap()
        .into_iter()
        .filter(|e| e.op == "put" && e.outcome == "ok")
        .filter_map(|e| e.record)
        .collect()
}
