//! The key-custody seam: who holds the vault's keys and really destroys
//! them, as one small trait with its contract written on it
//! ([`KeyCustody`]), and today's custody behind it ([`SlotFileCustody`]:
//! the keystore file of fixed-size slots overwritten in place).
//!
//! The engine asks a custody for operations, never for a subject's or a
//! day's raw key: create keys, destroy keys, derive the key a record is
//! sealed under from a subject key and an optional day key, and so on. So
//! a custody whose keys never leave a token (an HSM) fits behind the same
//! trait; only derived keys (and the two vault secrets the engine must
//! compute with) reach the engine's memory.

use serde::{Deserialize, Serialize};

use crate::crypto::{RootKey, SecretKey};
use crate::error::{Error, Result};

#[cfg(feature = "postgres")]
mod epochs;
mod marks;
pub(crate) mod pkcs11;
pub(crate) mod pkcs11_uri;
mod slot_file;
mod slot_format;

pub(crate) use marks::MarkValues;

/// The vault format of a vault whose subject facts are stored in clear (the
/// format before they were sealed): `vault::migrate` upgrades it.
pub(crate) const VAULT_FORMAT_CLEAR: u8 = 1;
/// Every subject's facts sealed, the clear state authenticated.
pub(crate) const VAULT_FORMAT_SEALED: u8 = 2;
mod slot_rotation;

#[cfg(feature = "postgres")]
pub(crate) use epochs::EpochCustody;
pub(crate) use slot_file::SlotFileCustody;
#[cfg(feature = "fuzzing")]
pub(crate) use slot_format::fuzz_parse_slot;

/// What a key is for; written into its slot and bound by its wrapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyKind {
    /// One live key per subject: destroying it erases the subject.
    Subject = 1,
    /// One key per UTC expiry day: destroying it expires the day's records.
    Retention = 2,
    /// A vault-wide secret (the audit chain's key, the receipt seed):
    /// random, kept across root-key rotations.
    Vault = 3,
}

impl KeyKind {
    pub fn from_byte(b: u8) -> Option<KeyKind> {
        match b {
            1 => Some(KeyKind::Subject),
            2 => Some(KeyKind::Retention),
            3 => Some(KeyKind::Vault),
            _ => None,
        }
    }
}

/// How the store refers to a key: its slot, and the random id of the key in
/// it (a slot reused after a destruction holds another id, so an old
/// reference never finds the new key). Stored in subject, day and secrets
/// entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct KeyRef {
    pub index: u32,
    pub key_id: u64,
}

/// What the engine derives from a key it holds a reference to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Derivation {
    /// The key a record is sealed under, from its subject's key and, for a
    /// record with an expiry day, that day's retention key
    /// (`domains::record_key`).
    Record { day: Option<KeyRef> },
    /// The key sealing a subject's identifiers.
    Identifiers,
    /// The key sealing a subject's facts.
    Facts,
    /// The key sealing the reasons of a subject's requests.
    RequestReason,
    /// A vault secret itself (kind [`KeyKind::Vault`] only): the audit key
    /// and the receipt seed, which the engine computes with.
    Secret,
}

/// Why a key could not be used.
#[derive(Debug)]
pub(crate) enum KeyError {
    /// The key was destroyed (its slot is empty or holds another key).
    Destroyed(KeyRef),
    /// The key's slot fails its checksum or authentication.
    Corrupt(String),
    /// Reading failed, or the derivation is not one this key allows.
    Other(Error),
}

/// A slot that holds, or may hold, key material: what the repair pass
/// checks against the references in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldSlot {
    pub index: u32,
    /// `None`: the slot is damaged (it cannot be read, but may hold a key).
    pub kind: Option<KeyKind>,
    /// The key's id (0 for a damaged slot).
    pub key_id: u64,
}

impl HeldSlot {
    /// The reference to the key the slot holds, if it is live.
    pub fn key(&self) -> Option<KeyRef> {
        self.kind.map(|_| KeyRef {
            index: self.index,
            key_id: self.key_id,
        })
    }
}

/// The holder of every key of a vault.
///
/// # Contract
///
/// - **Creation** ([`create`](KeyCustody::create)) returns only once the
///   new keys are durable: a crash afterwards never loses a key a store
///   entry may already refer to.
/// - **Destruction** ([`destroy`](KeyCustody::destroy)) returns only once
///   the keys are gone for good from the custody's current state, durably:
///   nothing the custody holds now, nor after any crash, derives anything
///   from them. This is the erasure promise. (Copies made before, such as
///   backups of the keystore file, are the root key's to neutralise: see
///   [`begin_rotation`](KeyCustody::begin_rotation).)
/// - **Derivation** ([`derive`](KeyCustody::derive)) of a destroyed key is
///   [`KeyError::Destroyed`], never another key's material.
/// - **References** ([`KeyRef`]) are never reused: a slot refilled after a
///   destruction carries a fresh random key id.
/// - **Inventory** ([`inventory`](KeyCustody::inventory),
///   [`holds`](KeyCustody::holds)) reflects every creation and destruction
///   made through this handle, and what was found at open.
/// - **Root rotation** ([`begin_rotation`](KeyCustody::begin_rotation))
///   re-wraps every live key under a new root key; its commit is atomic:
///   after a crash the custody opens with exactly one of the two root keys.
/// - Opening a custody takes the vault's lock (a second opener gets
///   `Locked`) and checks the root key (`WrongKey`, never garbage).
pub(crate) trait KeyCustody: Send + Sync {
    /// The vault the keys belong to (bound into every wrapping).
    fn vault_id(&self) -> [u8; 16];

    /// Generates `count` fresh keys of `kind`; durable before returning.
    fn create(&self, kind: KeyKind, count: usize) -> Result<Vec<KeyRef>>;

    /// Destroys `keys`; durable before returning (see the contract). A
    /// reference whose key is already gone is skipped.
    fn destroy(&self, keys: &[KeyRef]) -> Result<()>;

    /// A key derived from `key` (see [`Derivation`]).
    fn derive(&self, key: KeyRef, derivation: Derivation) -> Result<SecretKey, KeyError>;

    /// The blind-index HMAC of a normalized identifier under the index key
    /// derived from the root key in force: the blind index of vaults made
    /// before the index had a random key of its own (`vault::index_key`),
    /// until their first open rotates it.
    fn blind_mac(&self, kind: &str, value: &str) -> [u8; 32];

    /// Whether `key` is held (not destroyed). A key the custody cannot
    /// account for either way (a slot past the end of a keystore cut short)
    /// counts as held: nothing is erased on its account.
    fn holds(&self, key: KeyRef) -> bool;

    /// Every slot that holds, or may hold, key material.
    fn inventory(&self) -> Vec<HeldSlot>;

    /// Destroys whatever the slots at `indexes` hold (the repair pass's
    /// leftovers, damaged slots included); durable before returning.
    fn destroy_slots(&self, indexes: &[u32]) -> Result<()>;

    /// Counts of (occupied, free) slots.
    fn counts(&self) -> (u64, u64);

    /// The key-check value of the root key in force.
    fn key_check(&self) -> [u8; 32];

    /// Starts re-wrapping every key under `new`: see [`RootRotation`].
    fn begin_rotation(&self, new: &RootKey) -> Result<Box<dyn RootRotation + '_>>;

    /// Bytes the custody keeps on disk.
    fn size_on_disk(&self) -> u64;

    /// What the custody knows of the store beside it: how far the store
    /// must be, and the vault format (see `marks`).
    fn marks(&self) -> MarkValues;

    /// Notes that the store durably reached `mark` (the mark only rises;
    /// the note itself need not be durable).
    fn note_store_mark(&self, mark: u64) -> Result<()>;

    /// An operator accepting an older store: the mark becomes `mark`,
    /// durably.
    fn reset_store_mark(&self, mark: u64) -> Result<()>;

    /// Records the vault format, durably.
    fn set_vault_format(&self, format: u8) -> Result<()>;

    /// The custody's state as a restore writes it back
    /// ([`write_image`]): for a backup. The caller keeps every creation,
    /// destruction and rotation out meanwhile (the vault's locks); the
    /// image holds keys wrapped as they are at rest (under the root key),
    /// never a key in clear.
    fn image(&self) -> Result<CustodyImage>;

    /// The key a backup with id `backup_id` is sealed under, from the root
    /// key in force (and `day_key`, a key from a token: see
    /// `vault::backup`).
    fn backup_key(&self, backup_id: &[u8; 16], day_key: Option<&SecretKey>) -> SecretKey;

    /// The key epoch in force, for a custody whose keys are wrapped under
    /// epoch keys destroyed each epoch (`epochs`); `None` for one whose
    /// destruction is complete at once.
    fn epoch(&self) -> Option<Epoch> {
        None
    }

    /// Re-wraps every live key under a new epoch key and destroys the old
    /// one (`epochs` has the crash order); `now` is when the new epoch
    /// begins. `false`: this custody has no epochs.
    fn rotate_epoch(&self, now: i64) -> Result<bool> {
        let _ = now;
        Ok(false)
    }
}

/// A key epoch: see [`KeyCustody::epoch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Epoch {
    pub number: u64,
    /// When it began (Unix seconds).
    pub begun_at: i64,
}

/// What every custody derives from its keys, given a way to load a key of
/// a kind: the one place [`Derivation`] is mapped to `domains`.
pub(crate) fn derive_with(
    vault_id: &[u8; 16],
    key: KeyRef,
    derivation: Derivation,
    load: &dyn Fn(KeyRef, KeyKind) -> Result<SecretKey, KeyError>,
) -> Result<SecretKey, KeyError> {
    use crate::domains;
    match derivation {
        Derivation::Record { day } => {
            let subject = load(key, KeyKind::Subject)?;
            let day_key = match day {
                Some(day) => Some(load(day, KeyKind::Retention)?),
                None => None,
            };
            Ok(domains::record_key(&subject, day_key.as_ref(), vault_id))
        }
        Derivation::Identifiers => Ok(domains::identifiers_key(
            &load(key, KeyKind::Subject)?,
            vault_id,
        )),
        Derivation::Facts => Ok(domains::facts_key(&load(key, KeyKind::Subject)?, vault_id)),
        Derivation::RequestReason => {
            Ok(domains::reason_key(&load(key, KeyKind::Subject)?, vault_id))
        }
        Derivation::Secret => load(key, KeyKind::Vault),
    }
}

/// A custody's state in a backup: the keystore file as it is at rest, and
/// the marks.
pub(crate) struct CustodyImage {
    pub keystore: Vec<u8>,
    pub marks: MarkValues,
}

impl CustodyImage {
    /// Whether the root key whose derived keys are `root` opens this
    /// image's keystore (`Corrupt` if it is not a keystore).
    pub fn opens(&self, root: &crate::crypto::RootSecrets) -> Result<bool> {
        Ok(slot_format::parse_header(&self.keystore, "the backup's keystore")?.opens(root))
    }
}

/// Whether a key check is one a keystore header of the vault in
/// `keys_dir` would hold for the root key whose derived keys are `root`
/// (either format): how a backup's record names the root key it was made
/// under.
pub(crate) fn key_check_test<'a>(
    keys_dir: &std::path::Path,
    root: &'a crate::crypto::RootSecrets,
) -> Result<impl Fn(&[u8; 32]) -> bool + 'a> {
    let id = slot_format::read_header(&keys_dir.join("keystore"))?.vault_id;
    let v2 = slot_format::key_check(root, &id);
    Ok(move |check: &[u8; 32]| {
        *check == v2 || crate::domains::key_check_matches(&root.kek, &id, check)
    })
}

/// Takes the vault lock of `keys_dir` (made if missing) and returns it:
/// held by a restore while it writes the vault (`Locked` if another
/// process holds it).
pub(crate) fn lock_dir(keys_dir: &std::path::Path) -> Result<std::fs::File> {
    crate::fsmode::create_private_dir(keys_dir)?;
    slot_file::take_lock(keys_dir)
}

/// Writes a custody image into `keys_dir` (which holds no keystore): the
/// keystore made whole (a temporary file, fsynced, renamed), then the
/// marks with `store_mark`, the mark of the store restored beside it.
pub(crate) fn write_image(
    keys_dir: &std::path::Path,
    vault_id: [u8; 16],
    image: &CustodyImage,
    store_mark: u64,
) -> Result<()> {
    slot_file::write_image(keys_dir, vault_id, image, store_mark)
}

/// A root-key rotation under way: what the new key will compute, and the
/// commit. Until [`commit`](RootRotation::commit) returns, the vault opens
/// with the old key only.
pub(crate) trait RootRotation {
    /// The new root key's key-check value.
    fn key_check(&self) -> [u8; 32];

    /// Re-wraps every live key under the new root key: the commit point.
    /// `progress(done, total)` is called along the way; `now` is recorded
    /// for the `WrongKey` message of the old key.
    fn commit(self: Box<Self>, now: i64, progress: &mut dyn FnMut(u64, u64)) -> Result<()>;
}

/// Why the keystore in `keys_dir` still needs the root key whose derived
/// keys are `root`: its keystore opens with it, or a rotation cut short
/// there (`keystore.new`) is to it. `None`: it needs it no more. The
/// vault's lock is taken first and returned with the answer: hold it until
/// the key is destroyed, so no rotation to the key starts meanwhile (an
/// open vault is `Locked`). A keystore that is not there is `NotFound` (a
/// mistyped vault must not pass the check).
pub(crate) fn keystore_needs(
    keys_dir: &std::path::Path,
    root: &crate::crypto::RootSecrets,
) -> Result<(std::fs::File, Option<&'static str>)> {
    slot_file::keystore_needs(keys_dir, root)
}
