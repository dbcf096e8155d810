//! The audit log on the memory store: blocks through the sealer thread,
//! the stored formats, damage.

use std::sync::Arc;

use super::block::{
    compress_block, decode_block, AuditBlock, AuditBlockV2, BlockBuffer, CheckedEntry, StoredEntry,
    BLOCK_LZ4, BLOCK_V2, CHECK_LEN,
};
use super::{AuditEntry, AuditLog, Draft, EntryRef, BLOCK_MAX};
use crate::codec;
use crate::crypto::SecretKey;
use crate::domains;
use crate::ids::{RecordId, SubjectId};
use crate::layout::{Key, Prefix};
use crate::store::{MemoryStore, Store};

fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

fn blocks(store: &dyn Store) -> usize {
    let prefix = Prefix::Audit.encode();
    store.scan(&prefix, &prefix).count()
}

#[test]
fn full_blocks_reach_sled_through_the_writer_and_the_chain_verifies() {
    let tree = store();
    let key = SecretKey::from_array([9; 32]);
    let n = BLOCK_MAX as u64 * 5 + 3;
    {
        let log = AuditLog::open(tree.clone(), key.clone()).unwrap();
        for i in 0..n {
            let draft = Draft::new("get", i as i64);
            assert_eq!(log.append(&draft, Some("a")).unwrap(), i);
        }
        // A durable point: every entry is in sled, the last three in a
        // block of their own.
        log.write().unwrap();
        assert_eq!(blocks(&*tree), 6);
        let report = log.verify().unwrap();
        assert_eq!(report.entries, n);
        // Full blocks appended after the last durable point still reach
        // sled when the log is dropped (the writer drains its queue).
        for i in n..n + BLOCK_MAX as u64 * 2 {
            log.append(&Draft::new("get", i as i64), None).unwrap();
        }
    }
    assert_eq!(blocks(&*tree), 8);
    let log = AuditLog::open(tree.clone(), key).unwrap();
    let report = log.verify().unwrap();
    assert_eq!(report.entries, n + BLOCK_MAX as u64 * 2);
    assert_eq!(
        log.append(&Draft::new("x", 0), None).unwrap(),
        report.entries
    );
}

#[test]
fn a_draft_is_stored_as_the_entry_it_reads_back_as() {
    let subject = SubjectId::from_bytes(&[3; 16]).unwrap();
    let record = RecordId::from_bytes(&[4; 16]).unwrap();
    let full = EntryRef {
        seq: 300,
        time: -5,
        op: "get",
        subject: Some(subject),
        record: Some(record),
        purpose: Some("billing"),
        actor: Some("clerk"),
        detail: Some("account"),
        outcome: "ok",
    };
    let back: AuditEntry = codec::decode(&codec::encode(&full).unwrap(), "t").unwrap();
    assert_eq!(
        back,
        AuditEntry {
            seq: 300,
            time: -5,
            op: "get".into(),
            subject: Some(subject),
            record: Some(record),
            purpose: Some("billing".into()),
            actor: Some("clerk".into()),
            detail: Some("account".into()),
            outcome: "ok".into(),
        }
    );
    let empty = EntryRef {
        seq: 0,
        time: 0,
        op: "",
        subject: None,
        record: None,
        purpose: None,
        actor: None,
        detail: None,
        outcome: "",
    };
    let back: AuditEntry = codec::decode(&codec::encode(&empty).unwrap(), "t").unwrap();
    assert_eq!((back.subject, back.purpose, back.actor), (None, None, None));
}

#[test]
fn a_block_built_entry_by_entry_decodes_as_an_audit_block() {
    let mut buffer = BlockBuffer::new();
    let mut expected = Vec::new();
    // Entry lengths on both sides of each varint boundary (251, 2^16).
    for (i, len) in [0usize, 1, 250, 251, 252, 300, 65_535, 65_536, 70_000]
        .into_iter()
        .enumerate()
    {
        let entry: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
        let link = [i as u8; 32];
        buffer.push(&entry, &link).unwrap();
        expected.push((entry, link));
    }
    let (last_link, mac) = ([0xcd; 32], [0xab; 32]);
    let bytes = buffer.finish(&last_link, &mac);
    assert_eq!(bytes[0], BLOCK_V2);
    let block = decode_block(&bytes).unwrap();
    assert_eq!((block.last_link, block.mac), (last_link, mac));
    let got: Vec<(Vec<u8>, Vec<u8>)> = block.entries;
    let want: Vec<(Vec<u8>, Vec<u8>)> = expected
        .iter()
        .map(|(e, l)| (e.clone(), l[..CHECK_LEN].to_vec()))
        .collect();
    assert_eq!(got, want);
    // The same bytes as encoding the block whole.
    let whole = AuditBlockV2 {
        entries: expected
            .into_iter()
            .map(|(entry, link)| CheckedEntry {
                entry,
                check: link[..CHECK_LEN].try_into().unwrap(),
            })
            .collect(),
        last_link,
        mac,
    };
    let mut encoded = codec::encode(&whole).unwrap();
    encoded[0] = BLOCK_V2;
    assert_eq!(encoded, bytes);
    // Compressed (entries of repeating bytes shrink), it decodes the same.
    let packed = compress_block(bytes.clone());
    assert_eq!(packed[0], BLOCK_LZ4);
    assert!(packed.len() < bytes.len() / 2, "{}", packed.len());
    let back = decode_block(&packed).unwrap();
    assert_eq!(
        (back.entries, back.last_link, back.mac),
        (got, last_link, mac)
    );
}

#[test]
fn a_block_lz4_cannot_shrink_stays_in_format_2() {
    let mut buffer = BlockBuffer::new();
    buffer.push(&[1, 2, 3], &[7; 32]).unwrap();
    let bytes = buffer.finish(&[0x31; 32], &[0x5a; 32]);
    let noise: Vec<u8> = bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if i < 8 {
                *b
            } else {
                (i as u8).wrapping_mul(97) ^ 0x3c
            }
        })
        .collect();
    assert_eq!(compress_block(noise.clone()), noise);
}

#[test]
fn damaged_compressed_blocks_are_corrupt_not_a_panic_or_a_huge_allocation() {
    let tree = store();
    let log = AuditLog::open(tree.clone(), SecretKey::from_array([9; 32])).unwrap();
    for i in 0..BLOCK_MAX as i64 {
        let mut draft = Draft::new("put", 1_780_000_000 + i / 10);
        draft.detail = Some("account".into());
        log.append(&draft, Some("clerk")).unwrap();
    }
    log.write().unwrap();
    let prefix = Prefix::Audit.encode();
    let (key, good) = tree.scan(&prefix, &prefix).next().unwrap().unwrap();
    assert_eq!(good[0], BLOCK_LZ4, "a full block is stored compressed");
    assert_eq!(decode_block(&good).unwrap().entries.len(), BLOCK_MAX);
    // A length claiming more than LZ4 can expand to, or the limit.
    for claim in [u32::MAX, (good.len() as u32) * 300] {
        let mut bad = good.to_vec();
        bad[1..5].copy_from_slice(&claim.to_le_bytes());
        let err = decode_block(&bad).err().expect("refused");
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
    }
    // Truncations, and every single flipped bit of two: an error, or
    // a block whose links no longer verify.
    for cut in 0..good.len() {
        let _ = decode_block(&good[..cut]).err().expect("truncated");
    }
    for at in 0..good.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = good.to_vec();
            bad[at] ^= bit;
            tree.insert(&key, &bad).unwrap();
            // A flip LZ4 cannot notice either leaves the entries as
            // they were (a match offset moved onto equal bytes) or
            // breaks a link or the MAC.
            let same = decode_block(&bad).is_ok_and(|b| {
                let a = decode_block(&good).unwrap();
                (a.entries, a.last_link, a.mac) == (b.entries, b.last_link, b.mac)
            });
            assert!(same || log.verify().is_err(), "flip at {at} went unnoticed");
        }
    }
    tree.insert(&key, &good).unwrap();
    assert_eq!(log.verify().unwrap().entries, BLOCK_MAX as u64);
}

#[test]
fn blocks_of_format_1_still_verify_and_the_chain_goes_on_from_them() {
    let tree = store();
    let key = SecretKey::from_array([5; 32]);
    // Three entries in a format-1 block, as earlier versions wrote.
    let mut prev = [0u8; 32];
    let mut entries = Vec::new();
    for seq in 0..3u64 {
        let mut draft = Draft::new("get", 100 + seq as i64);
        draft.outcome = "ok";
        let entry = codec::encode(&EntryRef {
            seq,
            time: draft.time,
            op: draft.op,
            subject: None,
            record: None,
            purpose: None,
            actor: None,
            detail: None,
            outcome: draft.outcome,
        })
        .unwrap();
        prev = domains::audit_link(&prev, &entry);
        entries.push(StoredEntry { entry, link: prev });
    }
    let mac = domains::audit_block_mac(&key, 0, 3, &prev);
    tree.insert(
        &Key::Audit(0).encode(),
        &codec::encode(&AuditBlock { entries, mac }).unwrap(),
    )
    .unwrap();
    let log = AuditLog::open(tree.clone(), key.clone()).unwrap();
    assert_eq!(log.append(&Draft::new("put", 200), None).unwrap(), 3);
    log.write().unwrap();
    let report = log.verify().unwrap();
    assert_eq!(report.entries, 4);
    assert_eq!(log.entries(|_| true).unwrap().len(), 4);

    // One flipped byte in the format-1 entry is named.
    let v = tree.get(&Key::Audit(0).encode()).unwrap().unwrap();
    let mut bytes = v.to_vec();
    let at = bytes.windows(3).position(|w| w == b"get").unwrap();
    bytes[at] ^= 0x20;
    tree.insert(&Key::Audit(0).encode(), &bytes).unwrap();
    let err = log.verify().unwrap_err();
    assert!(err.to_string().contains("audit entry 0:"), "{err}");
}
