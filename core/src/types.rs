//! The vault's public value types: what its operations return, and the
//! limits they check. (How they are stored is `layout`'s business, not
//! theirs.)

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::crypto::Plaintext;
use crate::error::{Error, Result};
use crate::ids::{truncate_for_message, RecordId, RequestId, SubjectId};

/// A record read back: its data and metadata. The data is zeroized when the
/// record is dropped, and never printed by `Debug`.
#[derive(Clone)]
pub struct Record {
    pub id: RecordId,
    pub subject: SubjectId,
    pub category: String,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub data: Plaintext,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("category", &self.category)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field(
                "data",
                &format_args!("[redacted; {} bytes]", self.data.len()),
            )
            .finish()
    }
}

/// A record's metadata, without its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordInfo {
    pub id: RecordId,
    pub subject: SubjectId,
    pub category: String,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub size: usize,
    /// When the record's retention ends (the end of its expiry day), if known.
    pub expires_at: Option<i64>,
}

/// What `erase_subject` did, signed by the vault.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ErasureReceipt {
    pub receipt_version: u32,
    pub vault: String,
    pub subject: String,
    pub erased_at: i64,
    /// Records erased at once, by category.
    pub erased: Vec<CategoryCount>,
    /// Records kept (restricted), by category, with why and until when.
    pub retained: Vec<RetainedRecords>,
    pub identifiers_removed: usize,
    pub subject_key_destroyed: bool,
    /// The sequence number of the erasure's audit entry.
    pub audit_seq: u64,
    /// For a vault whose keys are in PostgreSQL: when the erasure is
    /// complete (Unix seconds), the end of the key epoch it was made in.
    /// It is effective at once, on every node (`erased_at`); until
    /// `complete_by`, a copy of the database from before the erasure
    /// (a dump, a replica, a PITR backup) still holds its key under an
    /// epoch key the token keeps. Absent for a vault whose keys are in
    /// its directory or a token, where destruction is complete at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_by: Option<i64>,
    /// The vault's receipt-signing key (Ed25519), hex.
    pub public_key: String,
    /// Ed25519 over the receipt's canonical JSON without this field, hex
    /// (see [`crate::verify_receipt`]).
    pub signature: String,
}

impl ErasureReceipt {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a receipt always serializes")
    }

    pub fn records_erased(&self) -> u64 {
        self.erased.iter().map(|c| c.records).sum()
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CategoryCount {
    pub category: String,
    pub records: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RetainedRecords {
    pub category: String,
    pub records: u64,
    pub reason: String,
    pub until: Option<i64>,
}

/// A subject's events, flags, consent ledger and states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectState {
    pub created_at: i64,
    /// When the subject asked for erasure: what is left is kept
    /// restricted to `legal_claims`.
    pub erasure_requested: Option<i64>,
    pub events: BTreeMap<String, i64>,
    pub flags: BTreeSet<String>,
    /// Every give and withdrawal, in the order recorded.
    pub consents: Vec<ConsentEntry>,
    pub legal_hold: bool,
    pub restricted: bool,
    pub opt_out_of_sale: bool,
}

/// Counts describing a vault, for `shredvault stats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub subjects_live: u64,
    pub subjects_erased: u64,
    pub records_live: u64,
    pub records_gone: u64,
    pub identifiers_indexed: u64,
    /// UTC days that have a live retention key.
    pub retention_days: u64,
    /// Live key slots: subject keys, retention keys, and the pool of
    /// pre-written subject keys.
    pub keystore_slots_live: u64,
    pub keystore_slots_free: u64,
    pub data_bytes: u64,
    pub keys_bytes: u64,
}

/// What an `expire` run did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExpireReport {
    /// Retention keys destroyed (one per ended UTC day).
    pub days_destroyed: u64,
    /// Records whose day key was destroyed.
    pub records_expired: u64,
    /// Records of subjects under legal hold kept out of the destroyed days.
    pub records_spared_by_hold: u64,
    /// Backup day keys destroyed in the token (their backups' window
    /// ended): see `Vault::backup`.
    #[serde(default)]
    pub backup_keys_destroyed: u64,
    /// Backups past their window that the root key in force still opens
    /// (a root key given as bytes): rotate the root key to make them inert.
    #[serde(default)]
    pub backups_readable_past_window: u64,
    /// Key epochs ended (0 or 1), for a vault whose keys are in
    /// PostgreSQL: its keys re-wrapped under a new epoch key and the old
    /// one destroyed in the token, which completes the erasures made
    /// during the epoch (their `complete_by`).
    #[serde(default)]
    pub key_epochs_ended: u64,
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

/// What [`Vault::compact`] did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CompactReport {
    /// Bytes of `data/` before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Entries copied (all trees).
    pub entries: u64,
}

/// The kinds of data-subject request the ledger tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Access,
    Rectification,
    Erasure,
    Restriction,
    Portability,
    Objection,
}

impl RequestKind {
    pub const ALL: [RequestKind; 6] = [
        RequestKind::Access,
        RequestKind::Rectification,
        RequestKind::Erasure,
        RequestKind::Restriction,
        RequestKind::Portability,
        RequestKind::Objection,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Rectification => "rectification",
            RequestKind::Erasure => "erasure",
            RequestKind::Restriction => "restriction",
            RequestKind::Portability => "portability",
            RequestKind::Objection => "objection",
        }
    }

    pub fn parse(text: &str) -> Result<RequestKind> {
        RequestKind::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown request kind {:?}: one of access, rectification, erasure, restriction, portability, objection",
                    truncate_for_message(text)
                ))
            })
    }
}

/// One entry of the request ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo {
    pub id: RequestId,
    pub subject: SubjectId,
    pub kind: RequestKind,
    pub received: i64,
    /// One calendar month after receipt; three once extended.
    pub due: i64,
    pub extended: bool,
    /// The extension's reason; `None` when not extended, or when the
    /// subject has since been erased (the reason went with it).
    pub extension_reason: Option<String>,
    pub closed_at: Option<i64>,
}

/// What a subject asked to happen to its data after its death.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Directive {
    /// Erase everything (as an erasure request) once `deceased` is recorded.
    Erase,
    /// Hand the data over to the named person: the subject is restricted,
    /// and its export is what is handed over.
    HandOver { to: String },
}

/// Longest extension reason accepted.
pub const MAX_REASON_BYTES: usize = 1000;

/// Largest record a vault accepts.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Largest identifier value (after trimming).
pub const MAX_IDENTIFIER_BYTES: usize = 1024;
/// Most identifiers one subject may carry.
pub const MAX_IDENTIFIERS_PER_SUBJECT: usize = 64;
