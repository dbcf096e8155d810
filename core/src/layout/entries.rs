//! The structures stored as values (see the table in `layout`). Every one
//! is encoded by `codec`: a format-version byte, then bincode.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::custody::KeyRef;
use crate::error::Result;
use crate::ids::{RequestId, SubjectId};
use crate::types::ConsentEntry;

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

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct DayEntry {
    pub key: KeyRef,
    /// The key is destroyed: the day's records are expired, and the purge
    /// turns them into husks, then removes this entry.
    pub destroyed: bool,
}

/// Vault-wide secrets live in the keystore (random, kept across root-key
/// rotations, so the audit chain verifies and receipts keep their signing
/// key); sled holds only where.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct VaultSecrets {
    pub audit: KeyRef,
    pub receipt: KeyRef,
}

/// Written, durably, before a rotation re-wraps the keystore: the key check
/// of the new root key. At open it tells whether the rotation committed
/// (the keystore now has this key check: finish the blind index) or not
/// (drop what was staged).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct RotationMarker {
    pub new_key_check: [u8; 32],
}

/// A backup the vault made ('X' + backup id): see `vault::backup`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct BackupRecord {
    pub created_at: i64,
    /// After this it opens for nobody.
    pub window_ends_at: i64,
    /// The key check of the root key in force when it was made (the
    /// keystore header's): a backup the root key in force still opens.
    pub root_key_check: [u8; 32],
    /// The label of its day key in the token (a root key in a token).
    pub token_day_key: Option<String>,
    /// That day key is destroyed (an expiry run after the window).
    pub day_key_destroyed: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct VaultMeta {
    pub vault_id: [u8; 16],
    pub created_at: i64,
}

/// A subject as the engine works with it: live (its facts opened), or
/// erased. (How it is stored: [`StoredSubject`].)
#[derive(Debug, Clone)]
pub(crate) enum SubjectEntry {
    Live(LiveSubject),
    Erased { erased_at: i64 },
}

/// A live subject, its facts opened.
#[derive(Debug, Clone)]
pub(crate) struct LiveSubject {
    pub created_at: i64,
    pub key: KeyRef,
    /// `Vec<(kind, value)>` encoded, sealed under a key derived from the
    /// subject key.
    pub identifiers: Vec<u8>,
    /// Blind-index MACs of the identifiers, so erasure can remove them
    /// without decrypting anything.
    pub blind: Vec<[u8; 32]>,
    /// What the policy's decisions depend on (`decide`), and the reasons of
    /// the subject's requests.
    pub facts: SubjectFacts,
}

/// What is stored at 'S' + subject id.
///
/// Variants are bincode-numbered in this order (a stored format). A
/// tombstone is stored authenticated (`codec::encode_authenticated`), a
/// sealed subject as it is (its AEAD binds what it keeps in clear).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum StoredSubject {
    /// The format before facts were sealed: read, and rewritten sealed at
    /// open (see `vault::migrate`).
    Clear(ClearSubject),
    Erased {
        erased_at: i64,
    },
    Sealed(SealedSubject),
}

/// A live subject with its facts in clear (the stored format before facts
/// were sealed).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct ClearSubject {
    pub created_at: i64,
    pub key: KeyRef,
    #[serde(with = "serde_bytes")]
    pub identifiers: Vec<u8>,
    pub blind: Vec<[u8; 32]>,
    /// Encoded in line (bincode gives a nested struct no framing).
    pub facts: ClearFacts,
}

/// The facts of a [`ClearSubject`].
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClearFacts {
    pub events: BTreeMap<String, i64>,
    pub flags: BTreeSet<String>,
    pub consents: Vec<ConsentEntry>,
    pub legal_hold: bool,
    pub restricted: bool,
    pub opt_out_of_sale: bool,
}

/// A live subject with its facts sealed under a key derived from the
/// subject key (`domains::facts_key`; AAD `domains::facts_aad`, binding the
/// fields kept in clear): the facts die with the key.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct SealedSubject {
    pub created_at: i64,
    pub key: KeyRef,
    #[serde(with = "serde_bytes")]
    pub identifiers: Vec<u8>,
    /// In clear: an erasure removes the blind-index entries after the key
    /// is gone (and the repair pass finishes one a crash cut short).
    pub blind: Vec<[u8; 32]>,
    /// [`SubjectFacts`] (codec), sealed.
    #[serde(with = "serde_bytes")]
    pub facts: Vec<u8>,
}

/// What can be read of a stored subject without its key: whether it is
/// live, its key, its blind-index HMACs.
#[derive(Debug, Clone)]
pub(crate) enum SubjectHeader {
    Live { key: KeyRef, blind: Vec<[u8; 32]> },
    Erased,
}

/// A subject's events, flags, consent ledger and states, and the reasons
/// given for extending its requests.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubjectFacts {
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
    /// The reason each extended request of the subject was extended: free
    /// text, so it goes with the subject.
    pub request_reasons: BTreeMap<RequestId, String>,
}

impl From<ClearFacts> for SubjectFacts {
    fn from(c: ClearFacts) -> Self {
        SubjectFacts {
            events: c.events,
            flags: c.flags,
            consents: c.consents,
            legal_hold: c.legal_hold,
            restricted: c.restricted,
            opt_out_of_sale: c.opt_out_of_sale,
            request_reasons: BTreeMap::new(),
        }
    }
}

impl SubjectFacts {
    /// When the subject asked for erasure, if it did: what is left of it is
    /// kept restricted to `legal_claims`.
    pub fn erasure_requested(&self) -> Option<i64> {
        self.events.get(crate::policy::ERASURE_REQUESTED).copied()
    }

    /// What retention rules depend on.
    pub fn retention(&self) -> crate::retention::Facts<'_> {
        crate::retention::Facts {
            events: Some(&self.events),
            flags: Some(&self.flags),
        }
    }
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

/// What can be read of a stored subject without its key (an authenticated
/// tombstone is taken as it claims to be: the engine checks its MAC when it
/// opens the entry).
pub(crate) fn subject_header(bytes: &[u8]) -> Result<SubjectHeader> {
    let stored: StoredSubject = if codec::is_authenticated(bytes) {
        codec::decode(bytes.get(33..).unwrap_or_default(), "subject entry")?
    } else {
        codec::decode(bytes, "subject entry")?
    };
    Ok(match stored {
        StoredSubject::Clear(c) => SubjectHeader::Live {
            key: c.key,
            blind: c.blind,
        },
        StoredSubject::Sealed(s) => SubjectHeader::Live {
            key: s.key,
            blind: s.blind,
        },
        StoredSubject::Erased { .. } => SubjectHeader::Erased,
    })
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<RecordEntry> {
    codec::decode(bytes, "record entry")
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

/// `'j'`: a replay of the frames past `through` is under way; the chain had
/// `audit_base` entries when it began.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JournalReplay {
    pub through: u64,
    pub audit_base: u64,
}

/// `'I'`: the blind index's key, a random vault key in the custody, and
/// when it came into use (it is replaced every `blind_index_rotation`; see
/// `vault::index_key`). Stored authenticated.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct IndexKeyEntry {
    pub key: KeyRef,
    pub since: i64,
}

/// `'N'`: a rotation of the blind index's key under way, to `new_key`
/// (the staged entries are under `'b'`). Stored authenticated.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct IndexRotationMarker {
    pub new_key: KeyRef,
}
