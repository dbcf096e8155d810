//! Reading the put journal back at open (`journal.rs` has the layout and
//! the crash order).
//!
//! Each half is read from its start while each group is whole (magic,
//! lengths, MAC) and its first seq is one more than the last seq before it:
//! a torn group, zeros, or a group left from before the half was last
//! reused end the half's run. The frames of both runs past the mark, in seq
//! order from mark + 1 while seqs follow each other, go to the vault
//! (`Store::recover`), which replays them (`vault::durability`): each
//! insert goes in only where the key is absent (a record a later erasure
//! turned into a husk stays a husk), and their audit entries, in their
//! original order, are appended to the chain unless the chain recovered by
//! sled already reaches them. A whole group anywhere holding a frame past
//! the last one recovered, written after that frame was acknowledged (its
//! `durable_before` says so), is `Corrupt`: replaying only the frames
//! before it would drop acknowledged puts without a word. Then a durable point
//! marks them done, and writing starts again at offset 0. Replaying is
//! idempotent; a `JournalReplay` marker (`'j'`, written before the first
//! recovered audit entry) lets a replay cut short by a crash know how many
//! of its entries the chain already took, so none is logged twice.
//!
//! Why every unmarked frame is in a run: a half is reused only when every
//! frame in it is marked done, so the frames past the mark are the tail of
//! one half's run (the half left last) and the head of the other's (the
//! half being written), or one half's run alone.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    frame_mac, group_mac, group_span, round_up, Frame, HALF, HEADER, HEADER_V1, MAC_LEN, MAGIC,
    MAGIC_V1, PAGE,
};
use crate::codec;
use crate::crypto::SecretKey;
use crate::error::{Error, Result};

/// A group read back: its frames, in seq order, the bytes it spans, and
/// the seq every frame up to which was durable before it was written.
struct Group {
    frames: Vec<Frame>,
    span: u64,
    durable_before: u64,
}

impl Group {
    fn first(&self) -> u64 {
        self.frames[0].seq
    }
    fn last(&self) -> u64 {
        self.frames[self.frames.len() - 1].seq
    }
}

/// The group (or version 1 frame) at the start of `rest`, if whole.
fn parse_group(rest: &[u8], key: &SecretKey) -> Option<Group> {
    if rest.starts_with(MAGIC_V1) {
        return parse_frame_v1(rest, key);
    }
    let (head, body) = rest.split_first_chunk::<HEADER>()?;
    if &head[..4] != MAGIC {
        return None;
    }
    let first = u64::from_le_bytes(head[4..12].try_into().ok()?);
    let count = u32::from_le_bytes(head[12..16].try_into().ok()?);
    let len = u32::from_le_bytes(head[16..20].try_into().ok()?) as usize;
    let durable_before = u64::from_le_bytes(head[20..28].try_into().ok()?);
    let (body, mac) = (body.get(..len)?, body.get(len..len.checked_add(MAC_LEN)?)?);
    let expected = group_mac(key, first, count, durable_before, body);
    if count == 0 || !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..MAC_LEN], mac)) {
        return None;
    }
    // A whole group whose frames do not decode was written by a vault that
    // knew the key: damage after the MAC is beyond this check, so it ends
    // the run like a torn group.
    let mut frames = Vec::with_capacity(count.min(4096) as usize);
    let mut at = body;
    for i in 0..u64::from(count) {
        let (n, rest) = at.split_first_chunk::<4>()?;
        let n = u32::from_le_bytes(*n) as usize;
        let payload = rest.get(..n)?;
        at = &rest[n..];
        let entry = codec::decode(payload, "journal frame").ok()?;
        frames.push(Frame {
            seq: first.checked_add(i)?,
            entry,
        });
    }
    if !at.is_empty() {
        return None;
    }
    Some(Group {
        frames,
        span: group_span(len),
        durable_before,
    })
}

/// A version 1 frame, as a group of one.
fn parse_frame_v1(rest: &[u8], key: &SecretKey) -> Option<Group> {
    let (head, body) = rest.split_first_chunk::<HEADER_V1>()?;
    let seq = u64::from_le_bytes(head[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(head[12..16].try_into().ok()?) as usize;
    let payload = body.get(..len)?;
    let mac = body.get(len..len.checked_add(MAC_LEN)?)?;
    let expected = frame_mac(key, seq, payload);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..MAC_LEN], mac)) {
        return None;
    }
    let entry = codec::decode(payload, "journal frame").ok()?;
    Some(Group {
        frames: vec![Frame { seq, entry }],
        span: round_up((HEADER_V1 + len + MAC_LEN) as u64),
        // Version 1 wrote one frame at a time.
        durable_before: seq - 1,
    })
}

/// The groups read from `start` while each is whole and follows the one
/// before.
fn read_run(bytes: &[u8], start: usize, key: &SecretKey) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut pos = start;
    while let Some(group) = bytes.get(pos..).and_then(|rest| parse_group(rest, key)) {
        if groups
            .last()
            .is_some_and(|prev| group.first() != prev.last() + 1)
        {
            break; // a group left from before the half was last reused
        }
        pos += group.span as usize;
        groups.push(group);
    }
    groups
}

/// The frames past `mark` in `bytes` (a journal file), in seq order while
/// seqs follow each other from `mark + 1` (see "Reading at open");
/// `Corrupt` when a whole group past those was written after the first
/// missing frame was durable (acknowledged).
pub(super) fn read_frames(
    bytes: &[u8],
    key: &SecretKey,
    mark: u64,
    path: &Path,
) -> Result<Vec<Frame>> {
    let mut found: BTreeMap<u64, Frame> = BTreeMap::new();
    for start in [0, HALF as usize] {
        for group in read_run(bytes, start, key) {
            for frame in group.frames {
                if frame.seq > mark {
                    found.insert(frame.seq, frame);
                }
            }
        }
    }
    let mut frames = Vec::new();
    while let Some(frame) = found.remove(&(mark + frames.len() as u64 + 1)) {
        frames.push(frame);
    }
    let last = mark + frames.len() as u64;
    for page in (0..bytes.len()).step_by(PAGE as usize) {
        let Some(later) = parse_group(&bytes[page..], key) else {
            continue;
        };
        if later.last() > last && later.durable_before > last {
            return Err(Error::corrupt(format!(
                "{}: frame {} is missing or damaged, and the group at offset {page}, written after it was acknowledged, holds frames up to {} (move the file away to open the vault without the puts it holds)",
                path.display(),
                last + 1,
                later.last()
            )));
        }
    }
    Ok(frames)
}
