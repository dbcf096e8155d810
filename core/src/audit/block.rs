//! The stored formats of audit blocks (see the module doc of `audit` for
//! what each format holds), and the in-memory block an appender fills.

use serde::{Deserialize, Serialize};

use super::BLOCK_MAX;
use crate::codec;
use crate::crypto::SecretKey;
use crate::domains;
use crate::error::{Error, Result};

#[derive(Serialize, Deserialize)]
pub(super) struct StoredEntry {
    #[serde(with = "serde_bytes")]
    pub entry: Vec<u8>,
    pub link: [u8; 32],
}

#[derive(Serialize, Deserialize)]
pub(super) struct AuditBlock {
    pub entries: Vec<StoredEntry>,
    pub mac: [u8; 32],
}

/// The format byte of `AuditBlockV2` (format 1 is `codec::FORMAT_V1`).
pub(super) const BLOCK_V2: u8 = 2;
/// The format byte of an LZ4-compressed `AuditBlockV2` body.
pub(super) const BLOCK_LZ4: u8 = 3;
/// LZ4 expands at most 255-fold: a claimed length beyond that (or beyond
/// the decode limit) is damage, refused before anything is allocated.
pub(super) const LZ4_MAX_RATIO: u64 = 255;
pub(super) const CHECK_LEN: usize = 8;

#[derive(Serialize, Deserialize)]
pub(super) struct CheckedEntry {
    #[serde(with = "serde_bytes")]
    pub entry: Vec<u8>,
    /// The first bytes of the entry's link.
    pub check: [u8; CHECK_LEN],
}

#[derive(Serialize, Deserialize)]
pub(super) struct AuditBlockV2 {
    pub entries: Vec<CheckedEntry>,
    pub last_link: [u8; 32],
    pub mac: [u8; 32],
}

/// A stored block of either format.
pub(super) struct Block {
    /// Each entry, and what its link must start with.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub last_link: [u8; 32],
    pub mac: [u8; 32],
}

/// Format 3 from a format-2 block, or the block as it is when compressing
/// would not make it smaller.
pub(super) fn compress_block(v2: Vec<u8>) -> Vec<u8> {
    let body = &v2[1..];
    let packed = lz4_flex::block::compress(body);
    if packed.len() + 5 >= v2.len() {
        return v2;
    }
    let mut out = Vec::with_capacity(packed.len() + 5);
    out.push(BLOCK_LZ4);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&packed);
    out
}

/// The format-2 body inside a format-3 block.
pub(super) fn decompress_body(rest: &[u8]) -> Result<Vec<u8>> {
    let (len, packed) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| Error::corrupt("audit block: truncated length"))?;
    let len = u64::from(u32::from_le_bytes(*len));
    if len > codec::DECODE_LIMIT || len > (packed.len() as u64 + 1) * LZ4_MAX_RATIO {
        return Err(Error::corrupt(format!(
            "audit block: claims {len} bytes from {} compressed",
            packed.len()
        )));
    }
    let mut body = vec![0u8; len as usize];
    match lz4_flex::block::decompress_into(packed, &mut body) {
        Ok(n) if n == body.len() => Ok(body),
        Ok(n) => Err(Error::corrupt(format!(
            "audit block: decompresses to {n} bytes, not the {len} it claims"
        ))),
        Err(e) => Err(Error::corrupt(format!(
            "audit block does not decompress: {e}"
        ))),
    }
}

pub(super) fn decode_block(bytes: &[u8]) -> Result<Block> {
    match bytes.first() {
        Some(&BLOCK_LZ4) => decode_v2(&decompress_body(&bytes[1..])?),
        Some(&BLOCK_V2) => decode_v2(&bytes[1..]),
        _ => {
            let b: AuditBlock = codec::decode(bytes, "audit block")?;
            let last_link = b.entries.last().map(|e| e.link).unwrap_or([0; 32]);
            Ok(Block {
                entries: b
                    .entries
                    .into_iter()
                    .map(|e| (e.entry, e.link.to_vec()))
                    .collect(),
                last_link,
                mac: b.mac,
            })
        }
    }
}

/// A format-2 block's body (after its format byte).
pub(super) fn decode_v2(body: &[u8]) -> Result<Block> {
    let b: AuditBlockV2 = codec::decode_body(body, "audit block")?;
    Ok(Block {
        entries: b
            .entries
            .into_iter()
            .map(|e| (e.entry, e.check.to_vec()))
            .collect(),
        last_link: b.last_link,
        mac: b.mac,
    })
}

/// Encoded entries awaiting their links: each is a 4-byte length and the
/// entry's bytes.
pub(super) struct RawBlock {
    pub first: u64,
    pub count: usize,
    bytes: Vec<u8>,
}

impl RawBlock {
    pub fn new(first: u64) -> Self {
        RawBlock {
            first,
            count: 0,
            bytes: Vec::with_capacity(BLOCK_MAX * 96),
        }
    }

    pub fn push(&mut self, entry: &[u8]) {
        self.bytes
            .extend_from_slice(&(entry.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(entry);
        self.count += 1;
    }

    fn entries(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = &self.bytes[..];
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let (entry, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
            rest = tail;
            Some(entry)
        })
    }

    /// Links each entry to the chain (from `last_link`, which it advances)
    /// and returns the stored block.
    pub fn seal(&self, key: &SecretKey, last_link: &mut [u8; 32]) -> Result<Vec<u8>> {
        let mut block = BlockBuffer::new();
        for entry in self.entries() {
            let l = domains::audit_link(last_link, entry);
            block.push(entry, &l)?;
            *last_link = l;
        }
        let mac = domains::audit_block_mac(key, self.first, self.count as u64, last_link);
        Ok(compress_block(block.finish(last_link, &mac)))
    }
}

/// An `AuditBlockV2` encoded entry by entry, so that sealing a block costs
/// no second encoding: the format byte, the entry count (one byte:
/// bincode's varint for a length under 251, hence `BLOCK_MAX` below that),
/// then each `CheckedEntry`; the last link and the MAC go on the end. A test
/// decodes what this builds as an `AuditBlockV2`.
pub(super) struct BlockBuffer {
    bytes: Vec<u8>,
    count: usize,
}

const _: () = assert!(BLOCK_MAX < 251);

impl BlockBuffer {
    pub fn new() -> Self {
        let mut bytes = Vec::with_capacity(BLOCK_MAX * 100);
        bytes.extend_from_slice(&[BLOCK_V2, 0]);
        BlockBuffer { bytes, count: 0 }
    }

    pub fn push(&mut self, entry: &[u8], link: &[u8; 32]) -> Result<()> {
        codec::encode_len(&mut self.bytes, entry.len())?;
        self.bytes.extend_from_slice(entry);
        self.bytes.extend_from_slice(&link[..CHECK_LEN]);
        self.count += 1;
        Ok(())
    }

    pub fn finish(mut self, last_link: &[u8; 32], mac: &[u8; 32]) -> Vec<u8> {
        self.bytes[1] = self.count as u8;
        self.bytes.extend_from_slice(last_link);
        self.bytes.extend_from_slice(mac);
        self.bytes
    }
}
