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
//! entries, MACs the block and writes it into the store, in order; every durable
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
use crate::crypto::SecretKey;
use crate::domains;
use crate::error::{Error, Result};
use crate::ids::{RecordId, SubjectId};
use crate::layout::{Key, Prefix};
use crate::store::Store;

mod block;

use block::{decode_block, RawBlock};

/// Entries in a full block (a varint count under 251: see `BlockBuffer`).
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
#[derive(Clone, Debug)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's sequence number (`None`: the log is empty).
    pub last_seq: Option<u64>,
    /// The last link, hex: record it elsewhere to detect a cut-off tail.
    pub head: String,
}

struct State {
    next_seq: u64,
    /// The entries appended since the last block was handed on.
    pending: RawBlock,
    /// Reused for encoding each entry.
    scratch: Vec<u8>,
}

pub(crate) struct AuditLog {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    chain: Arc<Chain>,
    sealer: Option<std::thread::JoinHandle<()>>,
}

/// Full blocks on their way into the store, and the chain's head. Linking
/// entries (a SHA-256 each) and writing a block (some 14 KiB)
/// are done here, by the sealer thread, not by the operation that filled
/// the block; every durable point (and `verify`, and listing entries) first
/// waits for the thread and seals what is left itself, so an entry is in
/// the store before anything that must be durable with it. Blocks are sealed in
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

    /// Seals and writes `blocks` in order, `link` advanced over those
    /// written. On a failure, the blocks from the failing one on come back
    /// with it, to be queued again: an entry is never dropped because a
    /// write failed.
    fn seal_into(
        &self,
        store: &dyn Store,
        blocks: Vec<RawBlock>,
        link: &mut [u8; 32],
    ) -> std::result::Result<(), (Vec<RawBlock>, Error)> {
        let mut blocks = blocks.into_iter();
        while let Some(raw) = blocks.next() {
            let mut next = *link;
            let written = raw
                .seal(&self.key, &mut next)
                .and_then(|block| store.insert(&Key::Audit(raw.first).encode(), &block));
            match written {
                Ok(()) => *link = next,
                Err(e) => {
                    let mut rest = vec![raw];
                    rest.extend(blocks);
                    return Err((rest, e));
                }
            }
        }
        Ok(())
    }

    /// Puts blocks a failed write left back at the front of the queue.
    fn requeue(q: &mut ChainState, mut rest: Vec<RawBlock>) {
        rest.append(&mut q.blocks);
        q.blocks = rest;
    }

    fn run(&self, store: &dyn Store) {
        let mut q = self.lock();
        loop {
            // After a failure the thread waits: the next durable point
            // reports it, and seals (retries) what is queued itself.
            while (q.blocks.is_empty() || q.failed.is_some()) && !q.stop {
                q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.blocks.is_empty() || q.failed.is_some() {
                return; // stopping: nothing left, or nothing that writes
            }
            let blocks = std::mem::take(&mut q.blocks);
            let mut link = q.last_link;
            q.in_flight = blocks.len();
            drop(q);
            // A panic here must not leave `in_flight` set (every durable
            // point would wait for it forever): it becomes the failure.
            let sealed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.seal_into(store, blocks, &mut link)
            }))
            .unwrap_or_else(|_| Err((Vec::new(), Error::internal("the audit sealer panicked"))));
            q = self.lock();
            q.last_link = link;
            q.in_flight = 0;
            if let Err((rest, e)) = sealed {
                Self::requeue(&mut q, rest);
                q.failed.get_or_insert(e);
            }
            self.wake.notify_all();
        }
    }

    /// Waits for the thread, then seals every queued block here: on return
    /// every block handed on is in the store (or the failure is reported).
    fn seal_all(&self, store: &dyn Store) -> Result<()> {
        let mut q = self.lock();
        while q.in_flight > 0 {
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(e) = q.failed.take() {
            return Err(e);
        }
        let blocks = std::mem::take(&mut q.blocks);
        let mut link = q.last_link;
        let sealed = self.seal_into(store, blocks, &mut link);
        q.last_link = link;
        sealed.map_err(|(rest, e)| {
            Self::requeue(&mut q, rest);
            e
        })
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
    /// Continues the chain stored in `store`.
    pub fn open(store: Arc<dyn Store>, key: SecretKey) -> Result<AuditLog> {
        let (next_seq, last_link) = match store.last(&Prefix::Audit.encode())? {
            None => (0, [0u8; 32]),
            Some((k, v)) => {
                let first = Key::audit_seq(&k)?;
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
            let store = store.clone();
            std::thread::Builder::new()
                .name("shredvault-audit".into())
                .spawn(move || chain.run(&*store))
                .map_err(|e| Error::internal(format!("starting the audit sealer: {e}")))?
        };
        Ok(AuditLog {
            store,
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
    pub fn append(&self, draft: &Draft<'_>, actor: Option<&str>) -> Result<u64> {
        self.append_keeping(draft, actor, None)
    }

    /// [`append`](Self::append), copying the encoded entry into `keep`
    /// (for the put journal).
    pub fn append_keeping(
        &self,
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
        self.push_locked(&mut state, &entry, keep)
    }

    /// Appends an entry recovered from the put journal, renumbered to come
    /// next in the chain.
    pub fn append_recovered(&self, entry: &AuditEntry) -> Result<u64> {
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
        self.push_locked(&mut state, &entry, None)
    }

    /// How many entries the chain holds (stored and buffered): the next
    /// entry's sequence number.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    fn push_locked(
        &self,
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
                self.chain.seal_all(&*self.store)?;
            }
        }
        Ok(seq)
    }

    /// Puts every entry appended so far into the store (before a durable
    /// point).
    pub fn write(&self) -> Result<()> {
        let mut state = self.lock();
        if state.pending.count > 0 {
            let next = state.next_seq;
            let partial = std::mem::replace(&mut state.pending, RawBlock::new(next));
            self.chain.lock().blocks.push(partial);
        }
        self.chain.seal_all(&*self.store)
    }

    /// Walks the stored chain (write buffered entries first). Fails with
    /// `Corrupt` naming the first entry whose link, sequence number or
    /// encoding is wrong.
    pub fn verify(&self) -> Result<AuditReport> {
        self.write()?;
        let mut prev = [0u8; 32];
        let mut expected = 0u64;
        let prefix = Prefix::Audit.encode();
        for item in self.store.scan(&prefix, &prefix) {
            let (k, v) = item?;
            let first = Key::audit_seq(&k)
                .map_err(|_| Error::corrupt("audit: a block has a malformed key"))?;
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
                let l = domains::audit_link(&prev, &stored);
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
            if !domains::audit_block_mac_matches(&self.chain.key, first, count, &prev, &block.mac) {
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
    pub fn entries(&self, keep: impl Fn(&AuditEntry) -> bool) -> Result<Vec<AuditEntry>> {
        self.write()?;
        let mut out = Vec::new();
        let prefix = Prefix::Audit.encode();
        for item in self.store.scan(&prefix, &prefix) {
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
mod tests;
