//! shredvault: a privacy vault. Personal records are encrypted per data
//! subject, and erased by destroying keys: on an erasure request, when a
//! retention period ends, when consent is withdrawn.
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
//! # Modules
//!
//! | module | what it is |
//! |---|---|
//! | `vault` | the engine: [`Vault`], its operations, one file per concern |
//! | `store` | the storage seam (`Store`): sled (the default) and memory |
//! | `custody` | the key-custody seam (`KeyCustody`): the slot-file keystore |
//! | `layout` | every stored key (typed codecs) and value, in one place |
//! | `domains` | every key derivation label, MAC domain and associated data |
//! | `crypto` | sealing, derivation and randomness (ring), key types |
//! | [`policy`] | the TOML policy: purposes, categories, retention rules |
//! | [`retention`] | retention arithmetic (pure) |
//! | `decide` | what the policy decides: fates, read and write permissions (pure) |
//! | `audit` | the audit chain: linked, MACed, compressed blocks |
//! | `receipt` | signed erasure receipts |
//! | `codec` | the encoding of every stored structure (bincode, size-limited) |
//! | `ids` | subject, record and request ids |
//! | `types`, `options` | the public value types and the open options |
//! | `error` | [`Error`] and [`ErrorKind`] |

mod audit;
mod codec;
mod crypto;
mod custody;
mod decide;
mod domains;
mod error;
mod fsmode;
mod ids;
pub mod json;
mod layout;
mod options;
pub mod policy;
/// PostgreSQL (feature `postgres`): a throw-away cluster from the installed
/// binaries, for tests and `shredvault bench`; the cluster nodes' table.
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use crate::store::postgres::throwaway::{for_tests, fresh_schema, schema_of, Throwaway};
    pub use crate::store::postgres::NodeTable;

    /// The database the vault at `dir` keeps its records in (its `store`
    /// file), if any, and whether its keys are there too (a vault made
    /// with a store and a root key in a token: no `keys/` directory).
    pub fn vault_store(dir: &std::path::Path) -> crate::Result<Option<(String, bool)>> {
        let path = dir.join("store");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some((
                text.trim().to_string(),
                !dir.join("keys").join("keystore").exists(),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::Error::io(format!("reading {}", path.display()), e)),
        }
    }
}
mod receipt;
pub mod retention;
mod store;
mod types;
mod vault;

pub use audit::{AuditEntry, AuditReport};
pub use crypto::{Plaintext, RootKey};
pub use error::{Error, ErrorKind, Result};
pub use ids::{RecordId, RequestId, SubjectId};
pub use options::{Clock, Durability, VaultOptions};
pub use policy::Policy;
pub use receipt::verify_receipt;
pub use types::{
    CategoryCount, CompactReport, ConsentEntry, Directive, ErasureReceipt, ExpireReport, Record,
    RecordInfo, RequestInfo, RequestKind, RetainedRecords, Stats, SubjectState,
    MAX_IDENTIFIERS_PER_SUBJECT, MAX_IDENTIFIER_BYTES, MAX_REASON_BYTES, MAX_RECORD_BYTES,
};
pub use vault::{
    append_ledger, ledger_file_entries, normalize_identifier, verify_ledger, BackupInfo,
    LedgerExport, LedgerPiece, LedgerSummary, LostWrites, RestoreReport, Scan, Vault,
};

/// Entry points for the fuzz targets (`fuzz/`): the decoding of every
/// stored structure from untrusted bytes, and a vault on the memory store.
/// Not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;
    use std::sync::Arc;

    use crate::{audit, codec, custody, layout, store};

    /// Decodes `bytes` as every structure the vault stores; each must
    /// return an error or a value, never panic or allocate without bound.
    pub fn decode_stored(bytes: &[u8]) {
        let _ = codec::decode::<layout::VaultMeta>(bytes, "fuzz");
        let _ = codec::decode::<layout::VaultSecrets>(bytes, "fuzz");
        let _ = codec::decode::<layout::RotationMarker>(bytes, "fuzz");
        let _ = codec::decode::<layout::SubjectCounts>(bytes, "fuzz");
        let _ = codec::decode::<layout::StoredSubject>(bytes, "fuzz");
        let _ = layout::subject_header(bytes);
        let _ = codec::decode::<layout::SubjectFacts>(bytes, "fuzz");
        let _ = codec::decode::<layout::IndexKeyEntry>(bytes, "fuzz");
        let _ = codec::decode::<layout::IndexRotationMarker>(bytes, "fuzz");
        let key = crate::crypto::SecretKey::from_array([7; 32]);
        let _ = codec::decode_authenticated::<layout::DayEntry>(bytes, b"fuzz", &key, "fuzz");
        let _ = codec::decode::<layout::RecordEntry>(bytes, "fuzz");
        let _ = layout::decode_record_view(bytes);
        let _ = codec::decode::<layout::DayEntry>(bytes, "fuzz");
        let _ = codec::decode::<layout::RequestEntry>(bytes, "fuzz");
        let _ = codec::decode::<layout::JournalReplay>(bytes, "fuzz");
        let _ = codec::decode::<String>(bytes, "fuzz");
        let _ = codec::decode::<i64>(bytes, "fuzz");
        let _ = codec::decode::<Vec<(String, String)>>(bytes, "fuzz");
        let _ = codec::decode::<crate::AuditEntry>(bytes, "fuzz");
        let _ = layout::Key::decode(bytes);
        audit::fuzz_decode_block(bytes);
        store::sled_store::journal::fuzz_decode(bytes);
        custody::fuzz_parse_slot(bytes);
    }

    /// A store in memory that outlives the vaults opened on it (as a
    /// directory outlives a process).
    #[derive(Clone, Default)]
    pub struct MemoryStore(store::MemoryStore);

    impl MemoryStore {
        pub fn new() -> MemoryStore {
            MemoryStore::default()
        }
    }

    /// Opens (or creates) a vault whose state is in `store` and whose keys
    /// are in `keys_dir` (the slot-file custody).
    pub fn open_in_memory(
        store: &MemoryStore,
        keys_dir: &Path,
        root: &crate::RootKey,
        policy: Option<crate::Policy>,
        options: crate::VaultOptions,
    ) -> crate::Result<crate::Vault> {
        let custody =
            custody::SlotFileCustody::open(keys_dir, root, crate::crypto::random_array()?)?;
        crate::vault::start(
            keys_dir.to_path_buf(),
            Arc::new(store.0.clone()),
            Box::new(custody),
            policy,
            options,
        )
    }
}

/// The library's version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
