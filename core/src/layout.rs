//! The storage layout of `data/`: every sled key and value the vault writes,
//! in one place.
//!
//! All vault state lives in one sled tree, `vault`, under one-byte prefixes,
//! so that every change touching several entries (a key rotation re-sealing a
//! subject's records, an erasure) is a single `apply_batch`: atomic against
//! crashes and, since sled batches take its write lock, against concurrent
//! readers.
//!
//! ```text
//! key                                   value
//! 'M'                                   VaultMeta
//! 'P'                                   the policy's TOML source (String)
//! 'Q'                                   checksum of the policy every record's
//!                                       expiry was last computed under
//! 'V'                                   VaultSecrets: keystore slots of the
//!                                       audit key and the receipt seed
//! 'K'                                   RotationMarker: a root-key rotation
//!                                       in progress (see rotate_root_key)
//! 'b' HMAC(new index key, ...) (32)     subject id: blind index staged by it
//! 'T'                                   the latest `now` given to `expire` (i64)
//! 'J'                                   JournalMark: every put-journal frame
//!                                       up to a seq has its effects here
//!                                       (see `journal`)
//! 'j'                                   JournalReplay: a journal replay under
//!                                       way (the chain's length when it began)
//! 'S' subject id (16)                   SubjectEntry: live (key slot, sealed
//!                                       identifiers, blind-index hashes) or
//!                                       an erasure tombstone (ids and time only)
//! 'R' record id (16)                    RecordEntry: live (metadata and the
//!                                       sealed data) or a husk saying the
//!                                       record was deleted or expired, and
//!                                       when. A record id is the first 8
//!                                       bytes of its subject's id, the
//!                                       record's number among the subject's
//!                                       (5 bytes, big-endian) and 3 random
//!                                       bytes: 'R' + those 8 bytes lists a
//!                                       subject's records in the order they
//!                                       were put, with no index (and a put
//!                                       is one sled write)
//! 'C' subject id (16)                   SubjectCounts: the subject's live
//!                                       records up to a number, by category
//!                                       and expiry day, so an erasure
//!                                       receipt costs a read and a short
//!                                       scan, not a pass over the records
//!                                       (see `SubjectCounts`)
//! 'Z' subject id (16)                   empty: an erased subject whose dead
//!                                       records the purge still has to drop
//! 'B' HMAC(index key, kind, value) (32) subject id: the blind index
//! 'D' day (8)                           DayEntry: the keystore slot of that
//!                                       UTC day's retention key, and whether
//!                                       it is destroyed (then its records
//!                                       await the purge)
//! 'E' day (8) record id (16)            empty: the records expiring that day,
//!                                       for purging once its key is gone
//! 'L' request id (16)                   RequestEntry: a data-subject request
//!                                       (ids, kind, dates; the extension
//!                                       reason sealed under the subject key)
//! 'H' subject id (16)                   empty: subjects under legal hold, so
//!                                       `expire` finds them without a scan
//! ```
//!
//! Days are days since 1970-01-01 (UTC), stored as big-endian `i64` with the
//! sign bit flipped so that sled's byte order is day order.
//!
//! What is in clear here: ids, category names, timestamps, counts, HMACs.
//! What is sealed: record data and identifiers, each under its subject's key.
//! What is never here: any key. Every value starts with a format-version byte
//! (see `codec`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::ids::{RecordId, SubjectId};
use crate::keystore::SlotRef;

pub(crate) const TREE: &str = "vault";

pub(crate) const META_KEY: &[u8] = b"M";
pub(crate) const POLICY_KEY: &[u8] = b"P";
/// A checksum of the policy source every record was last evaluated under.
pub(crate) const POLICY_EVALUATED_KEY: &[u8] = b"Q";
/// `VaultSecrets`: the keystore slots of the vault-wide keys.
pub(crate) const SECRETS_KEY: &[u8] = b"V";
/// `RotationMarker`: a root-key rotation in progress.
pub(crate) const ROTATION_KEY: &[u8] = b"K";
/// Blind-index entries staged by a root-key rotation: 'b' + new HMAC.
pub(crate) const BLIND_STAGED: u8 = b'b';

/// The latest `now` an `expire` run was given (i64).
pub(crate) const EXPIRED_THROUGH_KEY: &[u8] = b"T";
/// `JournalMark`: the put journal's frames with their effects in sled.
pub(crate) const JOURNAL_MARK_KEY: &[u8] = b"J";
/// `JournalReplay`: a replay of the put journal under way.
pub(crate) const JOURNAL_REPLAY_KEY: &[u8] = b"j";
pub(crate) const SUBJECT: u8 = b'S';
pub(crate) const ERASED_PENDING: u8 = b'Z';
pub(crate) const COUNTS: u8 = b'C';
pub(crate) const RECORD: u8 = b'R';
pub(crate) const BLIND: u8 = b'B';
pub(crate) const DAY: u8 = b'D';
pub(crate) const DAY_RECORD: u8 = b'E';
pub(crate) const HOLD: u8 = b'H';
pub(crate) const REQUEST: u8 = b'L';

pub(crate) fn request_key(id: &crate::ids::RequestId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = REQUEST;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct RequestEntry {
    pub subject: SubjectId,
    /// `RequestKind::name()`.
    pub kind: String,
    pub received: i64,
    pub due: i64,
    pub extension: Option<Extension>,
    pub closed_at: Option<i64>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Extension {
    pub at: i64,
    /// The reason, sealed under a key derived from the subject key: it is
    /// free text, so it goes with the subject.
    #[serde(with = "serde_bytes")]
    pub reason: Vec<u8>,
}

pub(crate) fn hold_key(id: &SubjectId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = HOLD;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

pub(crate) fn day_bytes(day: i64) -> [u8; 8] {
    ((day as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn day_from_bytes(bytes: &[u8]) -> Option<i64> {
    let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(array) ^ (1 << 63)) as i64)
}

pub(crate) fn day_key(day: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = DAY;
    k[1..].copy_from_slice(&day_bytes(day));
    k
}

pub(crate) fn day_records_prefix(day: i64) -> [u8; 9] {
    let mut k = day_key(day);
    k[0] = DAY_RECORD;
    k
}

pub(crate) fn day_record_key(day: i64, record: &RecordId) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..9].copy_from_slice(&day_records_prefix(day));
    k[9..].copy_from_slice(record.as_bytes());
    k
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct DayEntry {
    pub key: SlotRef,
    /// The key is destroyed: the day's records are expired, and the purge
    /// turns them into husks, then removes this entry.
    pub destroyed: bool,
}

pub(crate) fn subject_key(id: &SubjectId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = SUBJECT;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

pub(crate) fn record_key(id: &RecordId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RECORD;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// The records of a subject: 'R' and the subject id's first 8 bytes
/// (record ids start with them).
pub(crate) fn subject_records_prefix(id: &SubjectId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = RECORD;
    k[1..].copy_from_slice(&id.as_bytes()[..8]);
    k
}

/// The subject a record id belongs to is the one whose id starts with the
/// same 8 bytes: 'S' and those bytes.
pub(crate) fn subject_prefix_of(record: &RecordId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = SUBJECT;
    k[1..].copy_from_slice(&record.as_bytes()[..8]);
    k
}

pub(crate) fn counts_key(id: &SubjectId) -> [u8; 17] {
    let mut k = subject_key(id);
    k[0] = COUNTS;
    k
}

/// A subject's live records numbered up to `through`, counted by category
/// and expiry day. Records are numbered in the order they are put (see
/// `RecordId::for_subject`), so the count of all of them is this plus the
/// few put since, read in one short range scan (`Inner::subject_counts`).
///
/// Every change to a subject's records keeps it exact:
/// - a put changes nothing here: its record is newer than `through`. Every
///   `COUNTS_EVERY` puts the counts are brought up to date, *after* the
///   record is written: sled recovers a prefix of its log, so stored counts
///   never include a record that is not there;
/// - a rotation (update, delete, re-evaluation, an erasure that keeps some)
///   rewrites it in the batch that rewrites the records;
/// - an erasure removes it with the subject's tombstone;
/// - an expiry leaves it alone: rows of a day whose key is gone are simply
///   not counted (and dropped when the counts are next written).
///
/// Missing counts mean `through = 0`: every record is then read once.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubjectCounts {
    pub rows: Vec<CountRow>,
    pub through: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct CountRow {
    pub category: String,
    pub day: Option<i64>,
    pub records: u64,
}

impl SubjectCounts {
    /// Counts one more record of `category` expiring on `day`.
    pub fn add(&mut self, category: &str, day: Option<i64>) {
        match self
            .rows
            .iter_mut()
            .find(|r| r.day == day && r.category == category)
        {
            Some(row) => row.records += 1,
            None => self.rows.push(CountRow {
                category: category.to_string(),
                day,
                records: 1,
            }),
        }
    }

    /// Counts one stored record entry of `subject`: a live record by its
    /// category and day, an entry that does not decode as "(unreadable)".
    pub fn count_entry(&mut self, subject: &SubjectId, stored: &[u8]) {
        match decode_record_view(stored) {
            Ok(RecordEntryView::Live(r)) if r.subject == *subject => self.add(r.category, r.day),
            Ok(_) => {}
            Err(_) => self.add("(unreadable)", None),
        }
    }

    /// Records by category, leaving out days that ended by `expired_through`
    /// (their key is gone or going: those records are expired, not live).
    pub fn live_by_category(&self, expired_through: i64) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for row in self.rows.iter().filter(|r| r.is_live(expired_through)) {
            *out.entry(row.category.clone()).or_default() += row.records;
        }
        out.retain(|_, n| *n > 0);
        out
    }

    /// Drops the rows of days that ended by `expired_through`.
    pub fn drop_expired(&mut self, expired_through: i64) {
        self.rows
            .retain(|r| r.records > 0 && r.is_live(expired_through));
    }
}

impl CountRow {
    /// Its records have no expiry day, or one that has not ended by
    /// `expired_through`.
    fn is_live(&self, expired_through: i64) -> bool {
        self.day
            .is_none_or(|d| crate::retention::day_end(d) > expired_through)
    }
}

/// Where a subject's records numbered `seq` and up begin.
pub(crate) fn subject_records_from(id: &SubjectId, seq: u64) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[..9].copy_from_slice(&subject_records_prefix(id));
    k[9..].copy_from_slice(&seq.min((1 << 40) - 1).to_be_bytes()[3..]);
    k
}

pub(crate) fn erased_pending_key(id: &SubjectId) -> [u8; 17] {
    let mut k = subject_key(id);
    k[0] = ERASED_PENDING;
    k
}

pub(crate) fn blind_key(mac: &[u8; 32]) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = BLIND;
    k[1..].copy_from_slice(mac);
    k
}

/// Vault-wide secrets live in the keystore (random, kept across root-key
/// rotations, so the audit chain verifies and receipts keep their signing
/// key); sled holds only where.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct VaultSecrets {
    pub audit: SlotRef,
    pub receipt: SlotRef,
}

/// Written, durably, before a rotation re-wraps the keystore: the key check
/// of the new root key. At open it tells whether the rotation committed
/// (the keystore now has this key check: finish the blind index) or not
/// (drop what was staged).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct RotationMarker {
    pub new_key_check: [u8; 32],
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct VaultMeta {
    pub vault_id: [u8; 16],
    pub created_at: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum SubjectEntry {
    Live(LiveSubject),
    Erased { erased_at: i64 },
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct LiveSubject {
    pub created_at: i64,
    pub key: SlotRef,
    /// `Vec<(kind, value)>` encoded, sealed under the subject key.
    #[serde(with = "serde_bytes")]
    pub identifiers: Vec<u8>,
    /// Blind-index MACs of the identifiers, so erasure can remove them
    /// without decrypting anything.
    pub blind: Vec<[u8; 32]>,
    /// Subject events that start retention clocks (name -> Unix seconds).
    pub events: BTreeMap<String, i64>,
    /// Flags that retention rules test (`if_flag`).
    pub flags: BTreeSet<String>,
    /// The consent ledger: every give and withdrawal, in call order.
    pub consents: Vec<ConsentEntry>,
    /// Under legal hold: nothing of the subject is erased or expires.
    pub legal_hold: bool,
    /// Processing restricted: reads only for `legal_claims`.
    pub restricted: bool,
    /// Opted out of sale: `sale` purposes are refused.
    pub opt_out_of_sale: bool,
}

impl LiveSubject {
    /// When the subject asked for erasure, if it did: what is left of it is
    /// kept restricted to `legal_claims`.
    pub fn erasure_requested(&self) -> Option<i64> {
        self.events.get(crate::policy::ERASURE_REQUESTED).copied()
    }

    /// Whether consent for `purpose` stands: its latest entry (by time, then
    /// by order of recording) is a give.
    pub fn consent_stands(&self, purpose: &str) -> bool {
        self.consents
            .iter()
            .enumerate()
            .filter(|(_, c)| c.purpose == purpose)
            .max_by_key(|(i, c)| (c.at, *i))
            .is_some_and(|(_, c)| c.given)
    }
}

/// One entry of the consent ledger.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConsentEntry {
    pub purpose: String,
    pub given: bool,
    /// When the subject gave or withdrew it (Unix seconds).
    pub at: i64,
    /// When the vault recorded it.
    pub recorded_at: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum RecordEntry {
    Live(LiveRecord),
    Gone(RecordHusk),
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct LiveRecord {
    pub subject: SubjectId,
    pub category: String,
    /// Starts at 1; each rectification adds one. Bound into the AAD.
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The key id of the subject key the data is sealed under.
    pub subject_key_id: u64,
    /// The UTC day whose retention key also seals the data; `None`: no
    /// expiry yet, sealed under the subject key alone.
    pub day: Option<i64>,
    /// nonce || ciphertext || tag. (`serde_bytes`: one copy, not a
    /// visit per byte; the same bytes on disk.)
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// What is left of a record once its key is gone: enough to answer `Erased`
/// rather than `NotFound`, nothing personal.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct RecordHusk {
    pub subject: SubjectId,
    pub category: String,
    pub gone_at: i64,
    pub reason: GoneReason,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GoneReason {
    Erased,
    Expired,
}

pub(crate) fn decode_subject(bytes: &[u8]) -> Result<SubjectEntry> {
    codec::decode(bytes, "subject entry")
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<RecordEntry> {
    codec::decode(bytes, "record entry")
}

/// The associated data binding a sealed record to its place and its
/// metadata: vault, subject, record, category, version and timestamps, so
/// that moving a ciphertext or editing its metadata fails authentication.
pub(crate) fn record_aad(vault_id: &[u8; 16], record: &RecordId, meta: &LiveRecord) -> Vec<u8> {
    record_aad_view(vault_id, record, &meta.view())
}

/// A live record decoded in place: borrows its category and sealed bytes
/// from the stored value (reads copy nothing they do not need).
#[derive(Deserialize, Debug, Clone, Copy)]
pub(crate) struct LiveRecordView<'a> {
    pub subject: SubjectId,
    pub category: &'a str,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub subject_key_id: u64,
    pub day: Option<i64>,
    pub sealed: &'a [u8],
}

/// [`RecordEntry`] decoded in place (same encoding).
#[derive(Deserialize, Debug)]
pub(crate) enum RecordEntryView<'a> {
    #[serde(borrow)]
    Live(LiveRecordView<'a>),
    Gone(RecordHusk),
}

pub(crate) fn decode_record_view(bytes: &[u8]) -> Result<RecordEntryView<'_>> {
    codec::decode(bytes, "record entry")
}

impl LiveRecord {
    pub(crate) fn view(&self) -> LiveRecordView<'_> {
        LiveRecordView {
            subject: self.subject,
            category: &self.category,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            subject_key_id: self.subject_key_id,
            day: self.day,
            sealed: &self.sealed,
        }
    }
}

pub(crate) fn record_aad_view(
    vault_id: &[u8; 16],
    record: &RecordId,
    meta: &LiveRecordView<'_>,
) -> Vec<u8> {
    let (subject, category, version) = (&meta.subject, meta.category, meta.version);
    let mut aad = Vec::with_capacity(80 + category.len());
    aad.extend_from_slice(b"sv record v1");
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(subject.as_bytes());
    aad.extend_from_slice(record.as_bytes());
    aad.extend_from_slice(&(category.len() as u32).to_le_bytes());
    aad.extend_from_slice(category.as_bytes());
    aad.extend_from_slice(&version.to_le_bytes());
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
