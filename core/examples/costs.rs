//! Rough costs of the pieces of a read, for the README's cost model.
use std::time::Instant;
use zeroize::Zeroize;
fn main() {
    let n = 200_000u32;
    let key = [7u8; 32];
    let data = vec![0x41u8; 1024];
    let nonce = [1u8; 12];
    let k = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).unwrap(),
    );
    let mut sealed = data.clone();
    let tag = k
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(b"aad"),
            &mut sealed,
        )
        .unwrap();
    sealed.extend_from_slice(tag.as_ref());
    let t = Instant::now();
    for _ in 0..n {
        let k = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).unwrap(),
        );
        let mut buf = sealed.clone();
        let out = k
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(b"aad"),
                &mut buf,
            )
            .unwrap();
        std::hint::black_box(out);
        buf.zeroize();
    }
    eprintln!(
        "aes-gcm key setup + open 1KiB + zeroize: {:?}",
        t.elapsed() / n
    );
    let t = Instant::now();
    for _ in 0..n {
        let mut b = vec![1u8; 1024];
        b.zeroize();
        std::hint::black_box(&b);
    }
    eprintln!("alloc + zeroize 1KiB: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, &data[..120]));
    }
    eprintln!("sha256 of 120 bytes: {:?}", t.elapsed() / n);
}
