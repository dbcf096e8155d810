//! Durable puts from T threads (default 16; `SV_THREADS`), `SV_N` in all:
//! the rate, for profiling group commit (`perf record`). `SV_BATCHED=1`:
//! the same puts without a durable point each, the CPU's ceiling.
use shredvault::{Durability, Policy, RootKey, Vault, VaultOptions};
use std::time::Instant;
fn main() {
    let threads: usize = std::env::var("SV_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16);
    let n: usize = std::env::var("SV_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(32_000);
    let dir = tempfile::tempdir_in(".").unwrap();
    let policy = Policy::from_file("example-policy.toml".as_ref()).unwrap();
    let mut options = VaultOptions::default();
    if std::env::var("SV_BATCHED").is_ok() {
        options.durability = Durability::Batched;
    }
    let v = Vault::open_with(
        dir.path(),
        &RootKey::from_bytes(&[7; 32]).unwrap(),
        Some(policy),
        options,
    )
    .unwrap();
    let data = vec![0x41u8; 1024];
    let subjects: Vec<_> = (0..threads)
        .map(|_| v.create_subject(&[]).unwrap())
        .collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for subject in &subjects {
            let (v, data) = (&v, &data);
            s.spawn(move || {
                for _ in 0..n / threads {
                    v.put(subject, "account", data).unwrap();
                }
            });
        }
    });
    let e = t.elapsed();
    eprintln!(
        "{threads} threads: {:.0} durable puts/s",
        n as f64 / e.as_secs_f64()
    );
}
