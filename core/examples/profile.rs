use shredvault::{Durability, Policy, RootKey, Vault, VaultOptions};
use std::time::Instant;
fn main() {
    let what = std::env::args().nth(1).unwrap_or("get".into());
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy::from_file("example-policy.toml".as_ref()).unwrap();
    let opts = VaultOptions {
        durability: Durability::Batched,
        ..Default::default()
    };
    let v = Vault::open_with(
        dir.path(),
        &RootKey::from_bytes(&[7; 32]).unwrap(),
        Some(policy),
        opts,
    )
    .unwrap();
    let data = vec![0x41u8; 1024];
    let subjects: Vec<_> = (0..1000).map(|_| v.create_subject(&[]).unwrap()).collect();
    let n = 50_000;
    let t = Instant::now();
    let ids: Vec<_> = (0..n)
        .map(|i| v.put(&subjects[i % 1000], "account", &data).unwrap())
        .collect();
    eprintln!("put {:?}/op", t.elapsed() / n as u32);
    if what == "get" {
        let t = Instant::now();
        for _ in 0..12 {
            for id in &ids {
                std::hint::black_box(v.get(id, "billing").unwrap());
            }
        }
        eprintln!("get {:?}/op", t.elapsed() / (12 * n) as u32);
    }
}
