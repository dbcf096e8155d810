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
mod keystore;
mod layout;
pub mod policy;
mod receipt;
pub mod retention;
mod vault;

pub use audit::{AuditEntry, AuditReport};
pub use crypto::RootKey;
pub use error::{Error, ErrorKind, Result};
pub use ids::RequestId;
pub use ids::{RecordId, SubjectId};
pub use layout::ConsentEntry;
pub use policy::Policy;
pub use receipt::verify_receipt;
pub use vault::{
    normalize_identifier, CategoryCount, Clock, Directive, Durability, ErasureReceipt,
    ExpireReport, Record, RecordInfo, RequestInfo, RequestKind, RetainedRecords, Scan, Stats,
    SubjectState, Vault, VaultOptions, MAX_IDENTIFIERS_PER_SUBJECT, MAX_IDENTIFIER_BYTES,
    MAX_RECORD_BYTES,
};

/// The library's version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
