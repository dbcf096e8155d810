//! The audit chain: every operation, appended in order, each entry keyed-
//! hashed with the one before it, so that editing, removing or reordering an
//! entry breaks the chain from there on.
//!
//! # What an entry holds
//!
//! Sequence number, time, operation, subject and record ids, purpose, the
//! handle's actor label, a detail naming policy terms only (a category, an
//! event, a request kind), and the outcome (`ok` or the error kind). Never
//! personal data: no identifier, no record content, no free text. Purposes,
//! categories and events that the policy does not name are logged as
//! `(unknown)`, since a caller's garbage could be anything. So the log
//! survives erasures and still verifies.
//!
//! # Storage
//!
//! ```text
//! 'A' first seq (8, big-endian)   a block of consecutive entries:
//!                                 format 3 (written now): format 2's body,
//!                                 LZ4-compressed (the byte 3, the body's
//!                                 length as u32 LE, the LZ4 block);
//!                                 format 2 (written when LZ4 would not
//!                                 shrink it, a block of one entry): each
//!                                 encoded entry with the first 8 bytes of
//!                                 its link, then the block's last link
//!                                 and its MAC (`AuditBlockV2`); format 1
//!                                 (still read): each entry with its whole
//!                                 link, then the MAC (`AuditBlock`)
//! ```
//!
//! link(n) = SHA-256("sv audit link v1" ‖ link(n-1) ‖ entry(n)), link(0's
//! predecessor) = 32 zero bytes: editing, dropping or reordering an entry
//! breaks every link after it. Each block also carries
//! HMAC-SHA256(audit key, first seq ‖ entry count ‖ last link), with a
//! random audit key kept in the keystore: whoever edits `data/` and
//! recomputes the links still cannot forge the MACs. (A keyed MAC per entry
//! would cost three more SHA-256 blocks on every read for nothing more.)
//! `verify` recomputes every link; the 8 bytes stored per entry only say
//! *which* entry was altered (the last link and the MAC are what a forger
//! cannot match). Format 2 saves 24 of an entry's some 110 bytes: the log
//! is most of what a vault keeps besides its records. Format 3 then halves
//! a full block (measured: 78 bytes an entry become 41; entries repeat
//! their operation, actor, category, time and the subject's half of a
//! record id): six logged puts per live record made the log 0.45 KiB of
//! every record's 1.6 KiB. Links and MACs are over the uncompressed entries,
//! so compression changes nothing that `verify` checks.
//!
//! An append only encodes its entry into a buffer in memory. A full buffer
//! (`BLOCK_MAX` entries) goes to the sealer thread, which links the
//! entries, MACs the block and writes it into sled, in order; every durable
//! point first waits for that thread and seals what is still buffered
//! itself, so a mutation's entry is durable with it. Reads thus cost neither
//! a hash nor a disk write of their own. A crash loses the entries of reads
//! not yet written, never those of an acknowledged mutation in `Immediate`
//! mode.
//!
//! Limits: the chain proves order and integrity of what is stored; cutting
//! off its newest blocks is detectable only against a head recorded
//! elsewhere (`verify_audit` reports the head; receipts carry their entry's
//! sequence number).

use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{self, SecretKey};
use crate::error::{Error, Result};
use crate::ids::{RecordId, SubjectId};

pub(crate) const AUDIT: u8 = b'A';
const BLOCK_MAX: usize = 128;

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// Unix seconds.
    pub time: i64,
    pub op: String,
    pub subject: Option<SubjectId>,
    pub record: Option<RecordId>,
    pub purpose: Option<String>,
    pub actor: Option<String>,
    /// A policy term or an id: a category, an event, a request kind or id.
    pub detail: Option<String>,
    /// `ok`, or the error kind's name.
    pub outcome: String,
}

/// An operation's audit entry while the operation runs: the names it logs
/// are borrowed (a policy term the caller passed, a literal), so a read
/// costs no allocation for its entry. Stored exactly as the `AuditEntry` it
/// reads back as (see [`EntryRef`]).
#[derive(Debug)]
pub(crate) struct Draft<'a> {
    pub time: i64,
    pub op: &'static str,
    pub subject: Option<SubjectId>,
    pub record: Option<RecordId>,
    pub purpose: Option<&'a str>,
    pub detail: Option<std::borrow::Cow<'a, str>>,
    pub outcome: &'static str,
}

impl<'a> Draft<'a> {
    pub fn new(op: &'static str, time: i64) -> Self {
        Draft {
            time,
            op,
            subject: None,
            record: None,
            purpose: None,
            detail: None,
            outcome: "",
        }
    }
}

/// `AuditEntry` borrowed: field for field the same encoding (a test checks
/// that one decodes as the other).
#[derive(Serialize)]
struct EntryRef<'a> {
    seq: u64,
    time: i64,
    op: &'a str,
    subject: Option<SubjectId>,
    record: Option<RecordId>,
    purpose: Option<&'a str>,
    actor: Option<&'a str>,
    detail: Option<&'a str>,
    outcome: &'a str,
}

/// What `verify_audit` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's sequence number (`None`: the log is empty).
    pub last_seq: Option<u64>,
    /// The last link, hex: record it elsewhere to detect a cut-off tail.
    pub head: String,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    #[serde(with = "serde_bytes")]
    entry: Vec<u8>,
    link: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct AuditBlock {
    entries: Vec<StoredEntry>,
    mac: [u8; 32],
}

/// The format byte of `AuditBlockV2` (format 1 is `codec::FORMAT_V1`).
const BLOCK_V2: u8 = 2;
/// The format byte of an LZ4-compressed `AuditBlockV2` body.
const BLOCK_LZ4: u8 = 3;
/// LZ4 expands at most 255-fold: a claimed length beyond that (or beyond
/// the decode limit) is damage, refused before anything is allocated.
const LZ4_MAX_RATIO: u64 = 255;
const CHECK_LEN: usize = 8;

#[derive(Serialize, Deserialize)]
struct CheckedEntry {
    #[serde(with = "serde_bytes")]
    entry: Vec<u8>,
    /// The first bytes of the entry's link.
    check: [u8; CHECK_LEN],
}

#[derive(Serialize, Deserialize)]
struct AuditBlockV2 {
    entries: Vec<CheckedEntry>,
    last_link: [u8; 32],
    mac: [u8; 32],
}

/// A stored block of either format.
struct Block {
    /// Each entry, and what its link must start with.
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    last_link: [u8; 32],
    mac: [u8; 32],
}

/// Format 3 from a format-2 block, or the block as it is when compressing
/// would not make it smaller.
fn compress_block(v2: Vec<u8>) -> Vec<u8> {
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
fn decompress_body(rest: &[u8]) -> Result<Vec<u8>> {
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

fn decode_block(bytes: &[u8]) -> Result<Block> {
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
fn decode_v2(body: &[u8]) -> Result<Block> {
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

pub(crate) fn block_mac(
    key: &SecretKey,
    first_seq: u64,
    count: u64,
    last_link: &[u8; 32],
) -> [u8; 32] {
    crypto::mac(
        key,
        &[
            b"sv audit block v1",
            &first_seq.to_be_bytes(),
            &count.to_be_bytes(),
            last_link,
        ],
    )
}

fn block_mac_matches(
    key: &SecretKey,
    first_seq: u64,
    count: u64,
    last_link: &[u8; 32],
    mac: &[u8],
) -> bool {
    crypto::mac_matches(
        key,
        &[
            b"sv audit block v1",
            &first_seq.to_be_bytes(),
            &count.to_be_bytes(),
            last_link,
        ],
        mac,
    )
}

fn block_key(first_seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = AUDIT;
    k[1..].copy_from_slice(&first_seq.to_be_bytes());
    k
}

pub(crate) fn link(prev: &[u8; 32], entry: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"sv audit link v1");
    ctx.update(prev);
    ctx.update(entry);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

struct State {
    next_seq: u64,
    /// The entries appended since the last block was handed on.
    pending: RawBlock,
    /// Reused for encoding each entry.
    scratch: Vec<u8>,
}

/// Encoded entries awaiting their links: each is a 4-byte length and the
/// entry's bytes.
struct RawBlock {
    first: u64,
    count: usize,
    bytes: Vec<u8>,
}

impl RawBlock {
    fn new(first: u64) -> Self {
        RawBlock {
            first,
            count: 0,
            bytes: Vec::with_capacity(BLOCK_MAX * 96),
        }
    }

    fn push(&mut self, entry: &[u8]) {
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
    fn seal(&self, key: &SecretKey, last_link: &mut [u8; 32]) -> Result<Vec<u8>> {
        let mut block = BlockBuffer::new();
        for entry in self.entries() {
            let l = link(last_link, entry);
            block.push(entry, &l)?;
            *last_link = l;
        }
        let mac = block_mac(key, self.first, self.count as u64, last_link);
        Ok(compress_block(block.finish(last_link, &mac)))
    }
}

/// An `AuditBlockV2` encoded entry by entry, so that sealing a block costs
/// no second encoding: the format byte, the entry count (one byte:
/// bincode's varint for a length under 251, hence `BLOCK_MAX` below that),
/// then each `CheckedEntry`; the last link and the MAC go on the end. A test
/// decodes what this builds as an `AuditBlockV2`.
struct BlockBuffer {
    bytes: Vec<u8>,
    count: usize,
}

const _: () = assert!(BLOCK_MAX < 251);

impl BlockBuffer {
    fn new() -> Self {
        let mut bytes = Vec::with_capacity(BLOCK_MAX * 100);
        bytes.extend_from_slice(&[BLOCK_V2, 0]);
        BlockBuffer { bytes, count: 0 }
    }

    fn push(&mut self, entry: &[u8], link: &[u8; 32]) -> Result<()> {
        codec::encode_len(&mut self.bytes, entry.len())?;
        self.bytes.extend_from_slice(entry);
        self.bytes.extend_from_slice(&link[..CHECK_LEN]);
        self.count += 1;
        Ok(())
    }

    fn finish(mut self, last_link: &[u8; 32], mac: &[u8; 32]) -> Vec<u8> {
        self.bytes[1] = self.count as u8;
        self.bytes.extend_from_slice(last_link);
        self.bytes.extend_from_slice(mac);
        self.bytes
    }
}

pub(crate) struct AuditLog {
    state: Mutex<State>,
    chain: Arc<Chain>,
    sealer: Option<std::thread::JoinHandle<()>>,
}

/// Full blocks on their way into sled, and the chain's head. Linking
/// entries (a SHA-256 each) and writing a block (some 14 KiB into sled)
/// are done here, by the sealer thread, not by the operation that filled
/// the block; every durable point (and `verify`, and listing entries) first
/// waits for the thread and seals what is left itself, so an entry is in
/// sled before anything that must be durable with it. Blocks are sealed in
/// order, by one hand at a time (`in_flight`): the chain is sequential.
struct Chain {
    key: SecretKey,
    queue: Mutex<ChainState>,
    wake: Condvar,
}

struct ChainState {
    blocks: Vec<RawBlock>,
    /// The link of the last entry sealed.
    last_link: [u8; 32],
    /// Blocks the thread has taken and not yet written.
    in_flight: usize,
    /// The thread's first failure, for the next durable point to report.
    failed: Option<Error>,
    stop: bool,
}

/// More blocks than this waiting (a slow disk): the appender seals them
/// itself.
const MAX_QUEUED: usize = 8;

impl Chain {
    fn lock(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seal_into(&self, tree: &sled::Tree, blocks: &[RawBlock], link: &mut [u8; 32]) -> Result<()> {
        for raw in blocks {
            let block = raw.seal(&self.key, link)?;
            tree.insert(block_key(raw.first), block)?;
        }
        Ok(())
    }

    fn run(&self, tree: &sled::Tree) {
        let mut q = self.lock();
        loop {
            while q.blocks.is_empty() && !q.stop {
                q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.blocks.is_empty() {
                return; // stopping, nothing left
            }
            let blocks = std::mem::take(&mut q.blocks);
            let mut link = q.last_link;
            q.in_flight = blocks.len();
            drop(q);
            // A panic here must not leave `in_flight` set (every durable
            // point would wait for it forever): it becomes the failure.
            let sealed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.seal_into(tree, &blocks, &mut link)
            }))
            .unwrap_or_else(|_| Err(Error::internal("the audit sealer panicked")));
            q = self.lock();
            q.last_link = link;
            q.in_flight = 0;
            if let Err(e) = sealed {
                q.failed.get_or_insert(e);
            }
            self.wake.notify_all();
        }
    }

    /// Waits for the thread, then seals every queued block here: on return
    /// every block handed on is in sled (or the failure is reported).
    fn seal_all(&self, tree: &sled::Tree) -> Result<()> {
        let mut q = self.lock();
        while q.in_flight > 0 {
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(e) = q.failed.take() {
            return Err(e);
        }
        let blocks = std::mem::take(&mut q.blocks);
        let mut link = q.last_link;
        let sealed = self.seal_into(tree, &blocks, &mut link);
        q.last_link = link;
        sealed
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.chain.lock().stop = true;
        self.chain.wake.notify_all();
        if let Some(t) = self.sealer.take() {
            let _ = t.join();
        }
    }
}

impl AuditLog {
    /// Continues the chain stored in `tree`.
    pub fn open(tree: &sled::Tree, key: SecretKey) -> Result<AuditLog> {
        let (next_seq, last_link) = match tree.scan_prefix([AUDIT]).next_back() {
            None => (0, [0u8; 32]),
            Some(item) => {
                let (k, v) = item?;
                let first = u64::from_be_bytes(
                    k[1..]
                        .try_into()
                        .map_err(|_| Error::corrupt("an audit block has a malformed key"))?,
                );
                // A damaged last block is verify_audit's to report; the
                // chain goes on from a fresh link after it.
                match decode_block(&v) {
                    Ok(block) if !block.entries.is_empty() => {
                        (first + block.entries.len() as u64, block.last_link)
                    }
                    _ => (first + 1, [0u8; 32]),
                }
            }
        };
        let chain = Arc::new(Chain {
            key,
            queue: Mutex::new(ChainState {
                blocks: Vec::new(),
                last_link,
                in_flight: 0,
                failed: None,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let sealer = {
            let chain = chain.clone();
            let tree = tree.clone();
            std::thread::Builder::new()
                .name("shredvault-audit".into())
                .spawn(move || chain.run(&tree))
                .map_err(|e| Error::internal(format!("starting the audit sealer: {e}")))?
        };
        Ok(AuditLog {
            state: Mutex::new(State {
                next_seq,
                pending: RawBlock::new(next_seq),
                scratch: Vec::with_capacity(256),
            }),
            chain,
            sealer: Some(sealer),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an entry (its `seq` is assigned here) and returns its
    /// sequence number. A full block goes to the sealer thread.
    pub fn append(&self, tree: &sled::Tree, draft: &Draft<'_>, actor: Option<&str>) -> Result<u64> {
        self.append_keeping(tree, draft, actor, None)
    }

    /// [`append`](Self::append), copying the encoded entry into `keep`
    /// (for the put journal).
    pub fn append_keeping(
        &self,
        tree: &sled::Tree,
        draft: &Draft<'_>,
        actor: Option<&str>,
        keep: Option<&mut Vec<u8>>,
    ) -> Result<u64> {
        let mut state = self.lock();
        let seq = state.next_seq;
        let entry = EntryRef {
            seq,
            time: draft.time,
            op: draft.op,
            subject: draft.subject,
            record: draft.record,
            purpose: draft.purpose,
            actor,
            detail: draft.detail.as_deref(),
            outcome: draft.outcome,
        };
        self.push_locked(tree, &mut state, &entry, keep)
    }

    /// Appends an entry recovered from the put journal, renumbered to come
    /// next in the chain.
    pub fn append_recovered(&self, tree: &sled::Tree, entry: &AuditEntry) -> Result<u64> {
        let mut state = self.lock();
        let entry = EntryRef {
            seq: state.next_seq,
            time: entry.time,
            op: &entry.op,
            subject: entry.subject,
            record: entry.record,
            purpose: entry.purpose.as_deref(),
            actor: entry.actor.as_deref(),
            detail: entry.detail.as_deref(),
            outcome: &entry.outcome,
        };
        self.push_locked(tree, &mut state, &entry, None)
    }

    /// How many entries the chain holds (stored and buffered): the next
    /// entry's sequence number.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    fn push_locked(
        &self,
        tree: &sled::Tree,
        state: &mut State,
        entry: &EntryRef<'_>,
        keep: Option<&mut Vec<u8>>,
    ) -> Result<u64> {
        let seq = entry.seq;
        codec::encode_into(&mut state.scratch, entry)?;
        if let Some(keep) = keep {
            keep.clear();
            keep.extend_from_slice(&state.scratch);
        }
        state.pending.push(&state.scratch);
        state.next_seq += 1;
        if state.pending.count >= BLOCK_MAX {
            let full = std::mem::replace(&mut state.pending, RawBlock::new(state.next_seq));
            let mut q = self.chain.lock();
            q.blocks.push(full);
            let backlog = q.blocks.len() > MAX_QUEUED || q.stop;
            drop(q);
            self.chain.wake.notify_all();
            if backlog {
                self.chain.seal_all(tree)?;
            }
        }
        Ok(seq)
    }

    /// Puts every entry appended so far into sled (before a durable point).
    pub fn write(&self, tree: &sled::Tree) -> Result<()> {
        let mut state = self.lock();
        if state.pending.count > 0 {
            let next = state.next_seq;
            let partial = std::mem::replace(&mut state.pending, RawBlock::new(next));
            self.chain.lock().blocks.push(partial);
        }
        self.chain.seal_all(tree)
    }

    /// Walks the stored chain (write buffered entries first). Fails with
    /// `Corrupt` naming the first entry whose link, sequence number or
    /// encoding is wrong.
    pub fn verify(&self, tree: &sled::Tree) -> Result<AuditReport> {
        self.write(tree)?;
        let mut prev = [0u8; 32];
        let mut expected = 0u64;
        for item in tree.scan_prefix([AUDIT]) {
            let (k, v) = item?;
            let first = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| Error::corrupt("audit: a block has a malformed key"))?;
            if first != expected {
                return Err(Error::corrupt(format!(
                    "audit entry {expected}: missing (the next block starts at {first})"
                )));
            }
            let block = decode_block(&v).map_err(|e| {
                Error::corrupt(format!(
                    "audit entry {first}: its block does not decode ({})",
                    e.message()
                ))
            })?;
            let count = block.entries.len() as u64;
            for (stored, check) in block.entries {
                let l = link(&prev, &stored);
                if !l.starts_with(&check) {
                    return Err(Error::corrupt(format!(
                        "audit entry {expected}: the chain is broken here (entry or link altered)"
                    )));
                }
                let entry: AuditEntry = codec::decode(&stored, "audit entry")?;
                if entry.seq != expected {
                    return Err(Error::corrupt(format!(
                        "audit entry {expected}: carries sequence number {}",
                        entry.seq
                    )));
                }
                prev = l;
                expected += 1;
            }
            if prev != block.last_link {
                return Err(Error::corrupt(format!(
                    "audit entries {first}..{}: the block's last link does not follow from its entries",
                    expected.saturating_sub(1)
                )));
            }
            if !block_mac_matches(&self.chain.key, first, count, &prev, &block.mac) {
                return Err(Error::corrupt(format!(
                    "audit entries {first}..{}: the block's MAC fails (entries altered and their links recomputed, or another vault's block)",
                    expected.saturating_sub(1)
                )));
            }
        }
        Ok(AuditReport {
            entries: expected,
            last_seq: expected.checked_sub(1),
            head: hex::encode(prev),
        })
    }

    /// Every stored entry for which `keep` holds, in order (buffered
    /// entries are written first). Entries that do not decode are skipped:
    /// `verify` is where damage is reported.
    pub fn entries(
        &self,
        tree: &sled::Tree,
        keep: impl Fn(&AuditEntry) -> bool,
    ) -> Result<Vec<AuditEntry>> {
        self.write(tree)?;
        let mut out = Vec::new();
        for item in tree.scan_prefix([AUDIT]) {
            let (_, v) = item?;
            let Ok(block) = decode_block(&v) else {
                continue;
            };
            for (stored, _) in block.entries {
                if let Ok(entry) = codec::decode::<AuditEntry>(&stored, "audit entry") {
                    if keep(&entry) {
                        out.push(entry);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_decode_block(bytes: &[u8]) {
    if let Ok(block) = decode_block(bytes) {
        for (stored, _) in block.entries {
            let _ = codec::decode::<AuditEntry>(&stored, "fuzz");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_tree() -> (tempfile::TempDir, sled::Db, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        (dir, db, tree)
    }

    #[test]
    fn full_blocks_reach_sled_through_the_writer_and_the_chain_verifies() {
        let (_dir, _db, tree) = temp_tree();
        let key = SecretKey::from_array([9; 32]);
        let n = BLOCK_MAX as u64 * 5 + 3;
        {
            let log = AuditLog::open(&tree, key.clone()).unwrap();
            for i in 0..n {
                let draft = Draft::new("get", i as i64);
                assert_eq!(log.append(&tree, &draft, Some("a")).unwrap(), i);
            }
            // A durable point: every entry is in sled, the last three in a
            // block of their own.
            log.write(&tree).unwrap();
            assert_eq!(tree.scan_prefix([AUDIT]).count(), 6);
            let report = log.verify(&tree).unwrap();
            assert_eq!(report.entries, n);
            // Full blocks appended after the last durable point still reach
            // sled when the log is dropped (the writer drains its queue).
            for i in n..n + BLOCK_MAX as u64 * 2 {
                log.append(&tree, &Draft::new("get", i as i64), None)
                    .unwrap();
            }
        }
        assert_eq!(tree.scan_prefix([AUDIT]).count(), 8);
        let log = AuditLog::open(&tree, key).unwrap();
        let report = log.verify(&tree).unwrap();
        assert_eq!(report.entries, n + BLOCK_MAX as u64 * 2);
        assert_eq!(
            log.append(&tree, &Draft::new("x", 0), None).unwrap(),
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
        let (_dir, _db, tree) = temp_tree();
        let log = AuditLog::open(&tree, SecretKey::from_array([9; 32])).unwrap();
        for i in 0..BLOCK_MAX as i64 {
            let mut draft = Draft::new("put", 1_780_000_000 + i / 10);
            draft.detail = Some("account".into());
            log.append(&tree, &draft, Some("clerk")).unwrap();
        }
        log.write(&tree).unwrap();
        let (key, good) = tree.scan_prefix([AUDIT]).next().unwrap().unwrap();
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
                tree.insert(&key, bad.clone()).unwrap();
                // A flip LZ4 cannot notice either leaves the entries as
                // they were (a match offset moved onto equal bytes) or
                // breaks a link or the MAC.
                let same = decode_block(&bad).is_ok_and(|b| {
                    let a = decode_block(&good).unwrap();
                    (a.entries, a.last_link, a.mac) == (b.entries, b.last_link, b.mac)
                });
                assert!(
                    same || log.verify(&tree).is_err(),
                    "flip at {at} went unnoticed"
                );
            }
        }
        tree.insert(&key, good).unwrap();
        assert_eq!(log.verify(&tree).unwrap().entries, BLOCK_MAX as u64);
    }

    #[test]
    fn blocks_of_format_1_still_verify_and_the_chain_goes_on_from_them() {
        let (_dir, _db, tree) = temp_tree();
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
            prev = link(&prev, &entry);
            entries.push(StoredEntry { entry, link: prev });
        }
        let mac = block_mac(&key, 0, 3, &prev);
        tree.insert(
            block_key(0),
            codec::encode(&AuditBlock { entries, mac }).unwrap(),
        )
        .unwrap();
        let log = AuditLog::open(&tree, key.clone()).unwrap();
        assert_eq!(log.append(&tree, &Draft::new("put", 200), None).unwrap(), 3);
        log.write(&tree).unwrap();
        let report = log.verify(&tree).unwrap();
        assert_eq!(report.entries, 4);
        assert_eq!(log.entries(&tree, |_| true).unwrap().len(), 4);

        // One flipped byte in the format-1 entry is named.
        let v = tree.get(block_key(0)).unwrap().unwrap();
        let mut bytes = v.to_vec();
        let at = bytes.windows(3).position(|w| w == b"get").unwrap();
        bytes[at] ^= 0x20;
        tree.insert(block_key(0), bytes).unwrap();
        let err = log.verify(&tree).unwrap_err();
        assert!(err.to_string().contains("audit entry 0:"), "{err}");
    }
}
