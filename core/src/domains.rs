//! Every key derivation label, MAC domain and associated-data layout the
//! vault uses, in one place. Each one fixes how something stored is
//! authenticated or which key opens it: changing any of them is a change of
//! the stored format, and the known answers at the end of this file (computed
//! by the code before these functions were gathered here) say so.
//!
//! ```text
//! root key ─ HKDF ─> KEK          "shredvault kek v1"   wraps keystore slots
//!          └ HKDF ─> index key    "blind index v1"      blind-index HMACs
//! KEK ─ MAC "shredvault key check v1" ‖ vault id        the keystore's key check
//! subject key ‖ (retention key | "open") ─ HKDF(salt vault id, "record v1")  record key
//! subject key ─ HKDF(salt vault id, "identifiers v1")                       identifiers key
//! subject key ─ HKDF(salt vault id, "request reason v1")                    extension reasons
//! audit key ─ HKDF(salt "sv journal", "journal v1")                         put-journal MACs
//! ```
//!
//! The audit key and the receipt seed are random keystore keys (they outlive
//! root-key rotations), not derivations. Associated data always starts with
//! its own label (`sv slot v1`, `sv record v1`, ...), so no ciphertext opens
//! in another role even under the same key.

use zeroize::Zeroizing;

use crate::crypto::{self, derive_key, SecretKey};
use crate::ids::{RecordId, RequestId, SubjectId};
use crate::layout::LiveRecordView;

/// The KEK: wraps every key in the keystore.
pub(crate) fn kek(root: &SecretKey) -> SecretKey {
    derive_key(root.expose(), b"", KEK)
}

/// The blind-index key: HMACs of identifiers.
pub(crate) fn index_key(root: &SecretKey) -> SecretKey {
    derive_key(root.expose(), b"", INDEX_KEY)
}

const KEY_CHECK: &[u8] = b"shredvault key check v1";

/// The key-check value of a KEK for a vault (in a keystore header of
/// format 1; checked by [`key_check_matches`], written no more).
#[cfg(test)]
pub(crate) fn key_check(kek: &SecretKey, vault_id: &[u8; 16]) -> [u8; 32] {
    crypto::mac(kek, &[KEY_CHECK, vault_id])
}

/// Whether `check` is `kek`'s key check for the vault (constant time).
pub(crate) fn key_check_matches(kek: &SecretKey, vault_id: &[u8; 16], check: &[u8]) -> bool {
    crypto::mac_matches(kek, &[KEY_CHECK, vault_id], check)
}

/// The associated data of a wrapped keystore slot: vault, slot index, key
/// kind and key id, so a slot copied elsewhere (another index, another
/// vault) does not open.
pub(crate) fn slot_aad(vault_id: &[u8; 16], index: u32, kind: u8, key_id: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48);
    aad.extend_from_slice(b"sv slot v1");
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&(index as u64).to_le_bytes());
    aad.push(kind);
    aad.extend_from_slice(&key_id.to_le_bytes());
    aad
}

/// A record's key: HKDF(subject key ‖ (retention key | "open"), vault id,
/// "record v1"). Destroying either input key makes it underivable.
pub(crate) fn record_key(
    subject_key: &SecretKey,
    retention_key: Option<&SecretKey>,
    vault_id: &[u8; 16],
) -> SecretKey {
    let mut ikm = Zeroizing::new(Vec::with_capacity(64));
    ikm.extend_from_slice(subject_key.expose());
    match retention_key {
        Some(k) => ikm.extend_from_slice(k.expose()),
        None => ikm.extend_from_slice(b"open"),
    }
    derive_key(&ikm, vault_id, b"record v1")
}

/// The key sealing a subject's identifiers.
pub(crate) fn identifiers_key(subject_key: &SecretKey, vault_id: &[u8; 16]) -> SecretKey {
    derive_key(subject_key.expose(), vault_id, b"identifiers v1")
}

/// The key sealing a subject's facts (events, flags, consent ledger,
/// states, request reasons): they die with the subject key.
pub(crate) fn facts_key(subject_key: &SecretKey, vault_id: &[u8; 16]) -> SecretKey {
    derive_key(subject_key.expose(), vault_id, b"subject facts v1")
}

/// The associated data of a subject's sealed facts: what the subject entry
/// keeps in clear (its key, creation time and blind-index HMACs) is bound
/// to them, so editing any of it fails authentication.
pub(crate) fn facts_aad(
    vault_id: &[u8; 16],
    subject: &SubjectId,
    key: (u32, u64),
    created_at: i64,
    blind: &[[u8; 32]],
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(80 + 32 * blind.len());
    aad.extend_from_slice(b"sv facts v1");
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(subject.as_bytes());
    aad.extend_from_slice(&key.0.to_le_bytes());
    aad.extend_from_slice(&key.1.to_le_bytes());
    aad.extend_from_slice(&created_at.to_le_bytes());
    aad.extend_from_slice(&(blind.len() as u32).to_le_bytes());
    for mac in blind {
        aad.extend_from_slice(mac);
    }
    aad
}

/// The key MACing the stored state that is not sealed (the policy, day
/// entries, the expiry mark, tombstones, the request ledger, the index key
/// reference), from the audit key, so that whoever can write `data/` but
/// holds no key cannot forge them.
pub(crate) fn state_key(audit_key: &SecretKey) -> SecretKey {
    derive_key(audit_key.expose(), b"sv state", b"state v1")
}

/// The MAC of a stored value under `state_key`, bound to the key it is
/// stored at.
pub(crate) fn state_mac(key: &SecretKey, stored_at: &[u8], body: &[u8]) -> [u8; 32] {
    crypto::mac(key, &[b"sv state v1", stored_at, body])
}

/// [`state_mac`] checked in constant time.
pub(crate) fn state_mac_matches(
    key: &SecretKey,
    stored_at: &[u8],
    body: &[u8],
    mac: &[u8],
) -> bool {
    crypto::mac_matches(key, &[b"sv state v1", stored_at, body], mac)
}

/// The key check of a keystore of format 2: a MAC under a key of its own
/// derived from the root key (format 1 MACed with the KEK itself, which
/// then did two jobs).
pub(crate) fn key_check_v2(check: &SecretKey, vault_id: &[u8; 16]) -> [u8; 32] {
    crypto::mac(check, &[KEY_CHECK_V2, vault_id])
}

/// The label of the key-check key (derived from a root key in bytes by
/// HKDF, from a token's root key inside the token).
pub(crate) const KEY_CHECK_V2: &[u8] = b"shredvault key check v2";
/// The label of the KEK.
pub(crate) const KEK: &[u8] = b"shredvault kek v1";
/// The label of the (legacy) blind-index key.
pub(crate) const INDEX_KEY: &[u8] = b"blind index v1";

/// The key [`key_check_v2`] is keyed with, from a root key in bytes.
pub(crate) fn key_check_key(root: &SecretKey) -> SecretKey {
    derive_key(root.expose(), b"", KEY_CHECK_V2)
}

/// The key sealing the free-text reasons of a subject's requests.
pub(crate) fn reason_key(subject_key: &SecretKey, vault_id: &[u8; 16]) -> SecretKey {
    derive_key(subject_key.expose(), vault_id, b"request reason v1")
}

/// The blind-index HMAC of a normalized identifier.
pub(crate) fn blind_mac(
    index_key: &SecretKey,
    vault_id: &[u8; 16],
    kind: &str,
    value: &str,
) -> [u8; 32] {
    crypto::mac(
        index_key,
        &[b"sv blind v1", vault_id, kind.as_bytes(), value.as_bytes()],
    )
}

/// The associated data binding a sealed record to its place and its
/// metadata: vault, subject, record, category, version, timestamps, key id
/// and day, so that moving a ciphertext or editing its metadata fails
/// authentication.
pub(crate) fn record_aad(
    vault_id: &[u8; 16],
    record: &RecordId,
    meta: &LiveRecordView<'_>,
) -> Vec<u8> {
    let category = meta.category;
    let mut aad = Vec::with_capacity(80 + category.len());
    aad.extend_from_slice(b"sv record v1");
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(meta.subject.as_bytes());
    aad.extend_from_slice(record.as_bytes());
    aad.extend_from_slice(&(category.len() as u32).to_le_bytes());
    aad.extend_from_slice(category.as_bytes());
    aad.extend_from_slice(&meta.version.to_le_bytes());
    aad.extend_from_slice(&meta.created_at.to_le_bytes());
    aad.extend_from_slice(&meta.updated_at.to_le_bytes());
    aad.extend_from_slice(&meta.subject_key_id.to_le_bytes());
    match meta.day {
        None => aad.push(0),
        Some(d) => {
            aad.push(1);
            aad.extend_from_slice(&d.to_le_bytes());
        }
    }
    aad
}

/// The associated data of a subject's sealed identifiers.
pub(crate) fn identifiers_aad(vault_id: &[u8; 16], subject: &SubjectId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48);
    aad.extend_from_slice(b"sv identifiers v1");
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(subject.as_bytes());
    aad
}

/// The associated data of a request's sealed extension reason.
pub(crate) fn reason_aad(vault_id: &[u8; 16], request: &RequestId) -> Vec<u8> {
    let mut aad = b"sv request reason v1".to_vec();
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(request.as_bytes());
    aad
}

/// The put journal's MAC key, from the audit key (which outlives root-key
/// rotations, as the journal must).
pub(crate) fn journal_key(audit_key: &SecretKey) -> SecretKey {
    derive_key(audit_key.expose(), b"sv journal", b"journal v1")
}

/// A journal frame's MAC (the journal keeps its first 16 bytes).
pub(crate) fn journal_frame_mac(key: &SecretKey, seq: u64, payload: &[u8]) -> [u8; 32] {
    crypto::mac(key, &[b"sv journal frame v1", &seq.to_le_bytes(), payload])
}

/// A journal group's MAC: its first frame's seq, its frame count, the seq
/// every frame up to which was durable before it was written, and its body
/// (the journal keeps the first 16 bytes).
pub(crate) fn journal_group_mac(
    key: &SecretKey,
    first: u64,
    count: u32,
    durable_before: u64,
    body: &[u8],
) -> [u8; 32] {
    crypto::mac(
        key,
        &[
            b"sv journal group v2",
            &first.to_le_bytes(),
            &count.to_le_bytes(),
            &durable_before.to_le_bytes(),
            body,
        ],
    )
}

const AUDIT_BLOCK: &[u8] = b"sv audit block v1";

/// An audit block's MAC: its first entry's number, its entry count and the
/// link of its last entry, under the audit key.
pub(crate) fn audit_block_mac(
    key: &SecretKey,
    first_seq: u64,
    count: u64,
    last_link: &[u8; 32],
) -> [u8; 32] {
    crypto::mac(
        key,
        &[
            AUDIT_BLOCK,
            &first_seq.to_be_bytes(),
            &count.to_be_bytes(),
            last_link,
        ],
    )
}

/// [`audit_block_mac`] checked in constant time.
pub(crate) fn audit_block_mac_matches(
    key: &SecretKey,
    first_seq: u64,
    count: u64,
    last_link: &[u8; 32],
    mac: &[u8],
) -> bool {
    crypto::mac_matches(
        key,
        &[
            AUDIT_BLOCK,
            &first_seq.to_be_bytes(),
            &count.to_be_bytes(),
            last_link,
        ],
        mac,
    )
}

/// The audit chain's link: SHA-256("sv audit link v1" ‖ previous link ‖
/// entry).
pub(crate) fn audit_link(prev: &[u8; 32], entry: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"sv audit link v1");
    ctx.update(prev);
    ctx.update(entry);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// What an erasure receipt's Ed25519 signature covers comes after this.
pub(crate) const RECEIPT_CONTEXT: &[u8] = b"shredvault receipt v1\n";

/// What an erasure-ledger line's Ed25519 signature covers comes after this
/// (`vault::ledger`): a ledger line is never taken for a receipt, nor the
/// other way round.
pub(crate) const LEDGER_CONTEXT: &[u8] = b"shredvault ledger v1\n";

/// The key a backup's contents are sealed under: from the KEK of the root
/// key in force when it was made, the backup's id and, for a root key in a
/// token, the day key derived in the token (`vault::backup`).
pub(crate) fn backup_key(
    kek: &SecretKey,
    day_key: Option<&SecretKey>,
    vault_id: &[u8; 16],
    backup_id: &[u8; 16],
) -> SecretKey {
    let mut ikm = Zeroizing::new(kek.expose().to_vec());
    if let Some(day) = day_key {
        ikm.extend_from_slice(day.expose());
    }
    derive_key(&ikm, vault_id, &[BACKUP_KEY, backup_id].concat())
}

pub(crate) const BACKUP_KEY: &[u8] = b"shredvault backup v1";

#[cfg(test)]
#[path = "domains_kat.rs"]
mod kat;
