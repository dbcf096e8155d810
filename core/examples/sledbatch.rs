use std::time::Instant;
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(256 * 1024 * 1024)
        .flush_every_ms(Some(1000))
        .open()
        .unwrap();
    let t = db.open_tree("vault").unwrap();
    let v = vec![0x41u8; 1100];
    let n = 50_000u32;
    let mode = std::env::args().nth(1).unwrap_or_default();
    let start = Instant::now();
    for i in 0..n {
        let mut rid = [0u8; 16];
        rid[..4].copy_from_slice(&i.to_le_bytes()); // random-ish order
        rid[4..8].copy_from_slice(&(i.wrapping_mul(2654435761)).to_be_bytes());
        let mut rk = vec![b'R'];
        rk.extend_from_slice(&rid);
        if mode == "batch" {
            let mut xk = vec![b'X'];
            xk.extend_from_slice(&(i % 1000).to_be_bytes());
            xk.extend_from_slice(&rid);
            let mut b = sled::Batch::default();
            b.insert(xk, &[][..]);
            b.insert(rk, v.as_slice());
            t.apply_batch(b).unwrap();
        } else {
            t.insert(rk, v.as_slice()).unwrap();
        }
    }
    eprintln!("{mode}: {:?}/op", start.elapsed() / n);
}
