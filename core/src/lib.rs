//! shredvault: an embedded privacy vault. Personal records are encrypted per
//! data subject in sled, and erased by destroying keys: on an erasure
//! request, when a retention period ends, when consent is withdrawn.
//!
//! ```no_run
//! use shredvault::{Policy, RootKey, Vault};
//! # fn main() -> shredvault::Result<()> {
//! let root = RootKey::generate()?; // keep it in your KMS
//! let policy = Policy::from_file("example-policy.toml".as_ref())?;
//! let vault = Vault::open("my-vault", &root, Some(policy))?;
//! let alice = vault.create_subject(&[("email", "alice@example.com")])?;
//! let record = vault.put(&alice, "account", br#"{"name": "Alice"}"#)?;
//! assert_eq!(&vault.get(&record, "account_admin")?.data[..], br#"{"name": "Alice"}"#);
//! let receipt = vault.erase_subject(&alice)?;
//! # Ok(()) }
//! ```
//!
//! Modules: [`keystore`](crate::keystore) (slots that really destroy keys),
//! `crypto` (sealing and derivation), [`policy`] (the TOML policy), `layout`
//! (what is stored in sled, in one place), `vault` (the operations).

mod audit;
mod codec;
mod crypto;
mod error;
mod ids;
mod journal;
#[cfg(test)]
mod kat;
mod keystore;
mod layout;
pub mod policy;
mod receipt;
pub mod retention;
mod vault;

pub use audit::{AuditEntry, AuditReport};
pub use crypto::{Plaintext, RootKey};
pub use error::{Error, ErrorKind, Result};
pub use ids::RequestId;
pub use ids::{RecordId, SubjectId};
pub use layout::ConsentEntry;
pub use policy::Policy;
pub use receipt::verify_receipt;
pub use vault::{
    normalize_identifier, CategoryCount, Clock, CompactReport, Directive, Durability,
    ErasureReceipt, ExpireReport, Record, RecordInfo, RequestInfo, RequestKind, RetainedRecords,
    Scan, Stats, SubjectState, Vault, VaultOptions, MAX_IDENTIFIERS_PER_SUBJECT,
    MAX_IDENTIFIER_BYTES, MAX_RECORD_BYTES,
};

/// Entry points for the fuzz targets (`fuzz/`): the decoding of every
/// stored structure, from untrusted bytes. Not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use crate::{audit, codec, journal, keystore, layout};

    /// Decodes `bytes` as every structure the vault stores; each must
    /// return an error or a value, never panic or allocate without bound.
    pub fn decode_stored(bytes: &[u8]) {
        let _ = codec::decode::<layout::VaultMeta>(bytes, "fuzz");
        let _ = codec::decode::<layout::VaultSecrets>(bytes, "fuzz");
        let _ = codec::decode::<layout::RotationMarker>(bytes, "fuzz");
        let _ = codec::decode::<layout::SubjectCounts>(bytes, "fuzz");
        let _ = codec::decode::<layout::SubjectEntry>(bytes, "fuzz");
        let _ = codec::decode::<layout::RecordEntry>(bytes, "fuzz");
        let _ = layout::decode_record_view(bytes);
        let _ = codec::decode::<layout::DayEntry>(bytes, "fuzz");
        let _ = codec::decode::<layout::RequestEntry>(bytes, "fuzz");
        let _ = codec::decode::<String>(bytes, "fuzz");
        let _ = codec::decode::<i64>(bytes, "fuzz");
        let _ = codec::decode::<Vec<(String, String)>>(bytes, "fuzz");
        let _ = codec::decode::<crate::AuditEntry>(bytes, "fuzz");
        let _ = codec::decode::<journal::JournalEntry>(bytes, "fuzz");
        let _ = codec::decode::<journal::JournalMark>(bytes, "fuzz");
        let _ = codec::decode::<journal::JournalReplay>(bytes, "fuzz");
        audit::fuzz_decode_block(bytes);
        journal::fuzz_read_frames(bytes);
        keystore::fuzz_parse_slot(bytes);
    }
}

/// The library's version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
