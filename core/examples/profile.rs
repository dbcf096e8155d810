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
    if std::env::var("SV_FLUSH").is_ok() {
        v.flush().unwrap();
    }
    let n: usize = if what == "erase" {
        0
    } else {
        std::env::var("SV_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(50_000)
    };
    let t = Instant::now();
    let ids: Vec<_> = (0..n)
        .map(|i| v.put(&subjects[i % 1000], "account", &data).unwrap())
        .collect();
    eprintln!("put {:?}/op", t.elapsed() / n.max(1) as u32);
    if what == "erase" {
        for count in [10usize, 10, 10, 1000, 1000, 1000, 10_000] {
            let s = v.create_subject(&[]).unwrap();
            for _ in 0..count {
                v.put(&s, "job_application", &data).unwrap();
            }
            v.flush().unwrap();
            let t = Instant::now();
            v.erase_subject(&s).unwrap();
            eprintln!("erase {count}: {:?}", t.elapsed());
        }
    }
    if what == "shuffled" {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        v.flush().unwrap();
        let t = Instant::now();
        for &i in &order {
            std::hint::black_box(v.get(&ids[i], "billing").unwrap());
        }
        eprintln!("shuffled get {:?}/op", t.elapsed() / n as u32);
    }
    if what == "get" {
        let t = Instant::now();
        for _ in 0..12 {
            for id in &ids {
                std::hint::black_box(v.get(id, "billing").unwrap());
            }
        }
        eprintln!("get {:?}/op", t.elapsed() / (12 * n) as u32);
    }
    if what == "scan" {
        v.flush().unwrap();
        let t = Instant::now();
        let mut count = 0u32;
        for _ in 0..10 {
            for rec in v.scan("account", "billing").unwrap() {
                std::hint::black_box(rec.unwrap());
                count += 1;
            }
        }
        eprintln!("scan {:?}/record", t.elapsed() / count);
    }
}
