//! [`EpochCustody`]: the keys of a vault in PostgreSQL, kept in the
//! database itself, wrapped under an *epoch key* that lives in a PKCS#11
//! token and is destroyed there every epoch (issue 19).
//!
//! # Why epochs
//!
//! A key row deleted from PostgreSQL is not gone: it lives on in dead
//! tuples until vacuum, in the WAL, in replicas, in `pg_dump` files and
//! PITR base backups, none of which the vault can overwrite. So no row
//! holds a key in clear or under a key that outlives it: every row is
//! wrapped under the key of the current epoch, an AES object in the token
//! (sensitive, not extractable, sign-only: the wrapping key is derived
//! from it inside the token, as `pkcs11` derives a root key's). Every epoch
//! (policy `[vault] key_epoch`, default `"1d"`) an expiry run re-wraps
//! every live row under a new epoch key and then destroys the old one in
//! the token. A key erased during epoch N was, in every copy of the
//! database anywhere, wrapped under epoch key N or an earlier one; once
//! epoch N ends, none of those keys exists. Hence two times in an erasure
//! receipt: the erasure is *effective* at once (the row is gone: no node
//! derives anything from it), and *complete* by the end of the epoch
//! (`complete_by`): from then on no copy of the database, however old,
//! yields the key with the token as it is.
//!
//! # Layout
//!
//! Tables in the vault's schema (`store::postgres::KeyTable`):
//!
//! ```text
//! shredvault_keys (idx, kind, key_id, epoch, wrapped)
//!   idx       from a sequence, never reused: the KeyRef's index
//!   kind      1 subject, 2 retention day, 3 vault secret (KeyKind)
//!   key_id    random, non-zero (the KeyRef's key id), as i64 bits
//!   epoch     the epoch whose key wraps it
//!   wrapped   AES-256-GCM under the epoch's KEK: nonce, 32 bytes, tag;
//!             AAD `domains::slot_aad` (vault id, idx, kind, key id)
//! shredvault_custody (one row): the header, codec-encoded, version byte:
//!   vault id, the root key's key check, the epoch, when it began, the
//!   epoch key's own key check, the epoch being retired (if any); and a
//!   MAC of all that under the root key's key-check key, so that whoever
//!   can write the database but holds no token cannot steer the custody
//!   (into destroying the live epoch key, say).
//! ```
//!
//! Token objects: the root key the vault is opened with (its label
//! `O`), and the epoch keys `O.epoch.<vault id, 16 hex>.<N>`. The root key
//! gives the header's MAC key, the legacy blind-index key, and the KEK a
//! backup's keystore image is wrapped under (`image`): a backup is sealed
//! under a token day key of its own that `expire` destroys (issue 18).
//!
//! The vault directory keeps no key: its `store` file names the database
//! and its `marks` file the store mark this node has seen (a database
//! restored behind it is refused as stale: `vault::open`) and the vault
//! format.
//!
//! # Crash order
//!
//! - **Create**: rows inserted in one synchronous commit before `create`
//!   returns; an index is drawn from the sequence, so a failed insert
//!   leaves a gap, never a reuse.
//! - **Destroy**: rows deleted in one synchronous commit before `destroy`
//!   returns: effective at once. Complete when the epoch ends.
//! - **Epoch rotation** (`rotate_epoch`), N to N+1:
//!   1. the object for N+1 is made in the token (one left by a rotation
//!      cut short before its commit is reused: nothing live is wrapped
//!      under it);
//!   2. one synchronous transaction re-wraps every row under N+1's KEK
//!      and writes the header {epoch N+1, begun now, retiring N}: the
//!      commit point;
//!   3. the object for N is destroyed in the token;
//!   4. the header's `retiring` is cleared.
//!
//!   A crash before 2's commit leaves epoch N whole (the object for N+1
//!   waits for the next rotation). After it, the next open finds
//!   `retiring` set and finishes 3 and 4 before anything else. A reader
//!   meanwhile finds each row's epoch in the row, and this process keeps
//!   both KEKs until 3.
//!
//! Creation, destruction and a backup's image wait while a rotation runs
//! (one lock over the rows this process knows); reads do not.
//!
//! # Keys read once
//!
//! A derivation needs its key unwrapped, and a put or a subject read
//! derives (the subject's facts are sealed under a key of its own): a row
//! read from the database each time cost a round trip per put, the put's
//! largest cost after its commit. So the keys this process unwrapped are
//! kept in memory (`Unwrapped`, at most [`UNWRAPPED_MAX`], zeroized when
//! dropped), as the vault already keeps the record keys derived from
//! them. A destruction deletes the rows first and then drops their keys
//! from memory, and a key read while any destruction ran is not kept (a
//! generation number says so): once `destroy` returns, no derivation
//! finds the key, in the database or here. An epoch's end changes no key,
//! only how its row is wrapped.
//!
//! Nothing here ever destroys the epoch key the header names as current:
//! `retiring` must be older than the epoch, and the header is
//! authenticated.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};

use super::marks::Marks;
use super::pkcs11;
use super::pkcs11_uri::Pkcs11Uri;
use super::slot_format::{header_bytes, key_check, slot_bytes, SLOT_SIZE};
use super::{
    CustodyImage, Derivation, HeldSlot, KeyCustody, KeyError, KeyKind, KeyRef, MarkValues,
    RootRotation, VAULT_FORMAT_SEALED,
};
use crate::codec;
use crate::crypto::{self, RootKey, RootSecrets, SecretKey};
use crate::domains;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{KeyRow, KeyTable, PgStore};

/// The domain of the header's MAC.
const HEADER_MAC: &[u8] = b"sv epoch header v1";

/// The custody header (see the module doc).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Header {
    vault_id: [u8; 16],
    root_check: [u8; 32],
    epoch: u64,
    /// When the epoch began (Unix seconds, the expiry run's `now`).
    begun_at: i64,
    epoch_check: [u8; 32],
    retiring: Option<u64>,
}

impl Header {
    fn to_bytes(&self, root: &RootSecrets) -> Result<Vec<u8>> {
        let body = codec::encode(self)?;
        let mac = crypto::mac(&root.check, &[HEADER_MAC, &body]);
        let mut out = mac.to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The header in `bytes`, if `root` authenticates it: `None` if not
    /// (another root key, or altered), `Corrupt` if it is no header.
    fn parse(bytes: &[u8], root: &RootSecrets) -> Result<Option<Header>> {
        if bytes.len() < 33 {
            return Err(Error::corrupt("the key custody's header is cut short"));
        }
        let (mac, body) = bytes.split_at(32);
        if !crypto::mac_matches(&root.check, &[HEADER_MAC, body], mac) {
            return Ok(None);
        }
        let header: Header = codec::decode(body, "the key custody's header")?;
        if header.retiring.is_some_and(|r| r >= header.epoch) {
            return Err(Error::corrupt(
                "the key custody's header retires an epoch that is not past",
            ));
        }
        Ok(Some(header))
    }
}

/// What this process holds of the epochs: the KEK of each epoch a row may
/// be wrapped under (the current one, and the one being retired).
struct Keks {
    current: u64,
    keks: Vec<(u64, SecretKey)>,
}

impl Keks {
    fn get(&self, epoch: u64) -> Option<&SecretKey> {
        self.keks.iter().find(|(e, _)| *e == epoch).map(|(_, k)| k)
    }

    /// The key `row` holds, unwrapped under its epoch's KEK, with its
    /// index and kind (`Corrupt` if it does not open): the one place a
    /// row is read (a derivation, an epoch's end, a backup's image).
    fn unwrap(&self, vault_id: &[u8; 16], row: &KeyRow) -> Result<(u32, KeyKind, SecretKey)> {
        let index = index_of(row.idx)?;
        let what = format!("key row {index}");
        let kind = KeyKind::from_byte(row.kind as u8)
            .ok_or_else(|| Error::corrupt(format!("{what} has an unknown kind")))?;
        let kek = self.get(row.epoch as u64).ok_or_else(|| {
            Error::corrupt(format!(
                "{what} is wrapped under epoch {}, whose key this process does not hold (the current epoch is {})",
                row.epoch, self.current
            ))
        })?;
        let bytes = crypto::open(
            kek,
            &domains::slot_aad(vault_id, index, kind as u8, key_id_of(row)),
            &row.wrapped,
            &what,
        )?;
        let key = SecretKey::from_slice(&bytes)
            .map_err(|_| Error::corrupt(format!("{what} holds a key of the wrong length")))?;
        Ok((index, kind, key))
    }
}

/// The most unwrapped keys kept in memory (see the module doc); past it
/// the lot is dropped and read again as needed.
const UNWRAPPED_MAX: usize = 1 << 16;

/// Keys this process unwrapped, by index (see the module doc).
#[derive(Default)]
struct Unwrapped {
    inner: Mutex<UnwrappedInner>,
}

#[derive(Default)]
struct UnwrappedInner {
    keys: HashMap<u32, (u64, KeyKind, SecretKey)>,
    /// Bumped by every destruction: a key read before it is not kept.
    generation: u64,
}

impl Unwrapped {
    fn lock(&self) -> MutexGuard<'_, UnwrappedInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key at `key`, if kept.
    fn get(&self, key: KeyRef) -> Option<(KeyKind, SecretKey)> {
        let inner = self.lock();
        match inner.keys.get(&key.index) {
            Some((id, kind, k)) if *id == key.key_id => Some((*kind, k.clone())),
            _ => None,
        }
    }

    /// The generation to pass to [`keep`](Self::keep), taken before the
    /// row is read.
    fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps a key read from its row, unless a destruction ran since
    /// `generation`.
    fn keep(&self, generation: u64, key: KeyRef, kind: KeyKind, secret: &SecretKey) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.keys.len() >= UNWRAPPED_MAX {
            inner.keys.clear();
        }
        inner
            .keys
            .insert(key.index, (key.key_id, kind, secret.clone()));
    }

    /// Drops the keys at `indexes` (their rows deleted just before).
    fn forget(&self, indexes: impl IntoIterator<Item = u32>) {
        let mut inner = self.lock();
        inner.generation += 1;
        for index in indexes {
            inner.keys.remove(&index);
        }
    }
}

/// Kept under one lock: what rows exist (this process is the schema's
/// only writer: the store's advisory lock), and the header.
struct State {
    keys: BTreeMap<u32, (KeyKind, u64)>,
    /// Indexes handed out so far (the sequence's): every reference the
    /// store may hold is below it.
    bound: u64,
    header: Header,
}

/// The custody of a vault in PostgreSQL. See the module doc.
pub(crate) struct EpochCustody {
    table: KeyTable,
    uri: Pkcs11Uri,
    root: RootSecrets,
    vault_id: [u8; 16],
    marks: Marks,
    state: Mutex<State>,
    keks: RwLock<Keks>,
    unwrapped: Unwrapped,
}

impl std::fmt::Debug for EpochCustody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochCustody")
            .field("database", &self.table.name())
            .finish_non_exhaustive()
    }
}

/// The token object of epoch `epoch` of the vault `vault_id`.
fn epoch_uri(root: &Pkcs11Uri, vault_id: &[u8; 16], epoch: u64) -> Pkcs11Uri {
    let base = root.object.as_deref().unwrap_or("shredvault");
    root.with_object(&format!(
        "{base}.epoch.{}.{epoch}",
        &hex::encode(vault_id)[..16]
    ))
}

/// The epoch key's KEK and key check, derived in the token.
fn epoch_keys(uri: &Pkcs11Uri, vault_id: &[u8; 16]) -> Result<(SecretKey, [u8; 32])> {
    let mut keys = pkcs11::derive(uri, &[domains::KEK, domains::KEY_CHECK_V2])?;
    let check = keys.pop();
    let kek = keys.pop();
    match (kek, check) {
        (Some(kek), Some(check)) => Ok((kek, domains::key_check_v2(&check, vault_id))),
        _ => Err(Error::internal("the token derived too few keys")),
    }
}

fn key_id_of(row: &KeyRow) -> u64 {
    row.key_id as u64
}

fn index_of(idx: i64) -> Result<u32> {
    u32::try_from(idx).map_err(|_| Error::internal("the vault has used up its key indexes"))
}

impl EpochCustody {
    /// Opens the custody in `store`'s schema with the root key `root` (a
    /// token object), creating it (vault id `new_vault_id`, epoch 1) when
    /// the schema has none and `create` allows. `dir` is the vault
    /// directory (its `marks`). `WrongKey` if the root key is not the
    /// vault's, or the current epoch's key is not in the token (a copy of
    /// the database from an epoch since ended).
    pub fn open(
        store: &PgStore,
        dir: &Path,
        root: &RootKey,
        new_vault_id: [u8; 16],
        create: bool,
        now: i64,
    ) -> Result<EpochCustody> {
        let Some(uri) = root.token_uri().cloned() else {
            return Err(Error::invalid(
                "a vault whose keys are in PostgreSQL needs its root key in a PKCS#11 token",
            ));
        };
        let secrets = root.secrets()?;
        let table = KeyTable::open(store)?;
        let header = match table.header()? {
            Some(bytes) => Self::check_header(&bytes, &secrets, table.name())?,
            None if create => {
                let vault_id = new_vault_id;
                let epoch_uri = epoch_uri(&uri, &vault_id, 1);
                if !pkcs11::exists(&epoch_uri)? {
                    pkcs11::create(&epoch_uri)?;
                }
                let (_, epoch_check) = epoch_keys(&epoch_uri, &vault_id)?;
                let header = Header {
                    vault_id,
                    root_check: key_check(&secrets, &vault_id),
                    epoch: 1,
                    begun_at: now,
                    epoch_check,
                    retiring: None,
                };
                if table.create_header(&header.to_bytes(&secrets)?)? {
                    header
                } else {
                    let bytes = table.header()?.ok_or_else(|| {
                        Error::corrupt("the key custody's header vanished while it was made")
                    })?;
                    Self::check_header(&bytes, &secrets, table.name())?
                }
            }
            None => {
                return Err(Error::not_found(format!(
                    "PostgreSQL {} holds no vault keys",
                    table.name()
                )))
            }
        };
        let epoch_uri = epoch_uri(&uri, &header.vault_id, header.epoch);
        if !pkcs11::exists(&epoch_uri)? {
            return Err(Error::new(
                ErrorKind::WrongKey,
                format!(
                    "the key of epoch {} of the vault in PostgreSQL {} is not in the token: this database is a copy from an epoch that has ended (its keys are gone), or the token is another",
                    header.epoch,
                    table.name()
                ),
            ));
        }
        let (kek, epoch_check) = epoch_keys(&epoch_uri, &header.vault_id)?;
        if epoch_check != header.epoch_check {
            return Err(Error::new(
                ErrorKind::WrongKey,
                format!(
                    "the token's key for epoch {} is not the one the vault in PostgreSQL {} was wrapped under",
                    header.epoch,
                    table.name()
                ),
            ));
        }
        let marks = Marks::open(
            dir,
            header.vault_id,
            MarkValues {
                store_mark: 0,
                vault_format: VAULT_FORMAT_SEALED,
            },
        )?;
        let mut keys = BTreeMap::new();
        for row in table.all()? {
            let kind = KeyKind::from_byte(row.kind as u8).ok_or_else(|| {
                Error::corrupt(format!("key row {} has an unknown kind", row.idx))
            })?;
            keys.insert(index_of(row.idx)?, (kind, key_id_of(&row)));
        }
        let bound = table.index_bound()?.max(0) as u64;
        let custody = EpochCustody {
            table,
            vault_id: header.vault_id,
            keks: RwLock::new(Keks {
                current: header.epoch,
                keks: vec![(header.epoch, kek)],
            }),
            state: Mutex::new(State {
                keys,
                bound,
                header,
            }),
            uri,
            root: secrets,
            marks,
            unwrapped: Unwrapped::default(),
        };
        custody.finish_retiring()?;
        Ok(custody)
    }

    fn check_header(bytes: &[u8], root: &RootSecrets, name: &str) -> Result<Header> {
        let wrong = || {
            Error::new(
                ErrorKind::WrongKey,
                format!("the root key does not open the vault in PostgreSQL {name}"),
            )
        };
        let header = Header::parse(bytes, root)?.ok_or_else(wrong)?;
        if header.root_check != key_check(root, &header.vault_id) {
            return Err(wrong());
        }
        Ok(header)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Steps 3 and 4 of a rotation (see the module doc), if the header
    /// says one committed without them.
    fn finish_retiring(&self) -> Result<()> {
        let mut state = self.lock_state();
        let Some(old) = state.header.retiring else {
            return Ok(());
        };
        let old_uri = epoch_uri(&self.uri, &self.vault_id, old);
        if pkcs11::exists(&old_uri)? {
            pkcs11::destroy(&old_uri)?;
        }
        let mut header = state.header.clone();
        header.retiring = None;
        self.table.set_header(&header.to_bytes(&self.root)?)?;
        state.header = header;
        let mut keks = self.keks.write().unwrap_or_else(|p| p.into_inner());
        keks.keks.retain(|(e, _)| *e != old);
        Ok(())
    }

    /// After `table.delete(asked)`: the rows it deleted leave `state`, and
    /// every key asked for leaves memory whatever the outcome (a delete
    /// that failed late may have committed).
    fn after_delete(
        &self,
        state: &mut State,
        asked: &[(i64, Option<i64>)],
        deleted: Result<Vec<i64>>,
    ) -> Result<()> {
        self.unwrapped
            .forget(asked.iter().filter_map(|(i, _)| u32::try_from(*i).ok()));
        for idx in deleted? {
            state.keys.remove(&index_of(idx)?);
        }
        Ok(())
    }

    /// The key at `key`, unwrapped, with its kind: kept in memory once
    /// read (see the module doc).
    fn load(&self, key: KeyRef) -> Result<(KeyKind, SecretKey), KeyError> {
        if let Some(found) = self.unwrapped.get(key) {
            return Ok(found);
        }
        let generation = self.unwrapped.generation();
        let row = self
            .table
            .get(i64::from(key.index))
            .map_err(KeyError::Other)?
            .ok_or(KeyError::Destroyed(key))?;
        if key_id_of(&row) != key.key_id {
            return Err(KeyError::Destroyed(key));
        }
        let keks = self.keks.read().unwrap_or_else(|p| p.into_inner());
        let (_, kind, secret) = keks
            .unwrap(&self.vault_id, &row)
            .map_err(|e| KeyError::Corrupt(e.message().to_string()))?;
        self.unwrapped.keep(generation, key, kind, &secret);
        Ok((kind, secret))
    }

    fn load_kind(&self, key: KeyRef, kind: KeyKind) -> Result<SecretKey, KeyError> {
        let (found, k) = self.load(key)?;
        if found != kind {
            return Err(KeyError::Corrupt(format!(
                "key row {} holds a {found:?} key where a {kind:?} key was expected",
                key.index
            )));
        }
        Ok(k)
    }

    fn wrap(
        &self,
        kek: &SecretKey,
        index: u32,
        kind: KeyKind,
        key_id: u64,
        key: &[u8],
    ) -> Result<Vec<u8>> {
        crypto::seal(
            kek,
            &domains::slot_aad(&self.vault_id, index, kind as u8, key_id),
            key,
        )
    }
}

impl KeyCustody for EpochCustody {
    fn vault_id(&self) -> [u8; 16] {
        self.vault_id
    }

    fn create(&self, kind: KeyKind, count: usize) -> Result<Vec<KeyRef>> {
        let mut state = self.lock_state();
        let indexes = self.table.next_indexes(count)?;
        let keks = self.keks.read().unwrap_or_else(|p| p.into_inner());
        let kek = keks
            .get(keks.current)
            .expect("the current epoch's KEK is held");
        let mut rows = Vec::with_capacity(count);
        let mut refs = Vec::with_capacity(count);
        for idx in indexes {
            let index = index_of(idx)?;
            let key = SecretKey::random()?;
            let key_id = loop {
                let id = u64::from_le_bytes(crypto::random_array()?);
                if id != 0 {
                    break id;
                }
            };
            rows.push(KeyRow {
                idx,
                kind: kind as i16,
                key_id: key_id as i64,
                epoch: keks.current as i64,
                wrapped: self.wrap(kek, index, kind, key_id, key.expose())?,
            });
            refs.push(KeyRef { index, key_id });
        }
        drop(keks);
        self.table.insert(&rows)?;
        for r in &refs {
            state.keys.insert(r.index, (kind, r.key_id));
            state.bound = state.bound.max(u64::from(r.index) + 1);
        }
        Ok(refs)
    }

    fn destroy(&self, keys: &[KeyRef]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut state = self.lock_state();
        let refs: Vec<(i64, Option<i64>)> = keys
            .iter()
            .map(|k| (i64::from(k.index), Some(k.key_id as i64)))
            .collect();
        let deleted = self.table.delete(&refs);
        self.after_delete(&mut state, &refs, deleted)
    }

    fn derive(&self, key: KeyRef, derivation: Derivation) -> Result<SecretKey, KeyError> {
        super::derive_with(&self.vault_id, key, derivation, &|k, kind| {
            self.load_kind(k, kind)
        })
    }

    fn blind_mac(&self, kind: &str, value: &str) -> [u8; 32] {
        domains::blind_mac(&self.root.index, &self.vault_id, kind, value)
    }

    fn holds(&self, key: KeyRef) -> bool {
        let state = self.lock_state();
        state
            .keys
            .get(&key.index)
            .is_some_and(|(_, id)| *id == key.key_id)
    }

    fn inventory(&self) -> Vec<HeldSlot> {
        let state = self.lock_state();
        state
            .keys
            .iter()
            .map(|(&index, &(kind, key_id))| HeldSlot {
                index,
                kind: Some(kind),
                key_id,
            })
            .collect()
    }

    fn destroy_slots(&self, indexes: &[u32]) -> Result<()> {
        let mut state = self.lock_state();
        let refs: Vec<(i64, Option<i64>)> = indexes.iter().map(|&i| (i64::from(i), None)).collect();
        let deleted = self.table.delete(&refs);
        self.after_delete(&mut state, &refs, deleted)
    }

    /// (live rows, indexes handed out and destroyed since: never reused).
    fn counts(&self) -> (u64, u64) {
        let state = self.lock_state();
        let live = state.keys.len() as u64;
        (live, state.bound.saturating_sub(live))
    }

    fn key_check(&self) -> [u8; 32] {
        self.lock_state().header.root_check
    }

    fn begin_rotation(&self, _new: &RootKey) -> Result<Box<dyn RootRotation + '_>> {
        Err(Error::invalid(
            "the keys of a vault in PostgreSQL are re-wrapped under a new token key every epoch (expiry runs do it): its root key is not rotated",
        ))
    }

    fn size_on_disk(&self) -> u64 {
        self.table.size()
    }

    fn marks(&self) -> MarkValues {
        self.marks.values()
    }

    fn note_store_mark(&self, mark: u64) -> Result<()> {
        self.marks.note_store_mark(mark)
    }

    fn reset_store_mark(&self, mark: u64) -> Result<()> {
        self.marks.reset_store_mark(mark)
    }

    fn set_vault_format(&self, format: u8) -> Result<()> {
        self.marks.set_vault_format(format)
    }

    fn image(&self) -> Result<CustodyImage> {
        // The rows re-wrapped under the root key's KEK as a keystore file
        // (slot i at index i, empty slots zero): a backup restores into a
        // vault directory, whose keystore it becomes. Under the state lock:
        // no row is created or destroyed meanwhile.
        let state = self.lock_state();
        let len = state.keys.keys().next_back().map_or(0, |&i| i as usize + 1);
        let mut keystore = Vec::with_capacity((len + 1) * SLOT_SIZE);
        keystore.extend_from_slice(&header_bytes(
            &self.vault_id,
            &key_check(&self.root, &self.vault_id),
            0,
        ));
        keystore.resize((len + 1) * SLOT_SIZE, 0);
        // The rows read in one statement (not one round trip a key), each
        // unwrapped under its epoch's KEK and wrapped again under the root's.
        let keks = self.keks.read().unwrap_or_else(|p| p.into_inner());
        for row in self.table.all()? {
            let index = index_of(row.idx)?;
            if state.keys.get(&index).map(|&(_, id)| id) != Some(key_id_of(&row)) {
                continue;
            }
            let (index, kind, key) = keks.unwrap(&self.vault_id, &row)?;
            let raw = slot_bytes(
                &self.root.kek,
                &self.vault_id,
                index,
                kind,
                key_id_of(&row),
                key.expose(),
            )?;
            let at = (index as usize + 1) * SLOT_SIZE;
            keystore[at..at + SLOT_SIZE].copy_from_slice(&raw);
        }
        Ok(CustodyImage {
            keystore,
            marks: self.marks.values(),
        })
    }

    fn backup_key(&self, backup_id: &[u8; 16], day_key: Option<&SecretKey>) -> SecretKey {
        domains::backup_key(&self.root.kek, day_key, &self.vault_id, backup_id)
    }

    fn epoch(&self) -> Option<super::Epoch> {
        let state = self.lock_state();
        Some(super::Epoch {
            number: state.header.epoch,
            begun_at: state.header.begun_at,
        })
    }

    fn rotate_epoch(&self, now: i64) -> Result<bool> {
        let mut state = self.lock_state();
        let old = state.header.epoch;
        let new = old + 1;
        // 1. The new epoch's key in the token.
        let new_uri = epoch_uri(&self.uri, &self.vault_id, new);
        if !pkcs11::exists(&new_uri)? {
            pkcs11::create(&new_uri)?;
        }
        let (new_kek, new_check) = epoch_keys(&new_uri, &self.vault_id)?;
        // 2. Every row re-wrapped, and the header, in one commit.
        let header = Header {
            epoch: new,
            begun_at: now,
            epoch_check: new_check,
            retiring: Some(old),
            ..state.header.clone()
        };
        {
            let keks = self.keks.read().unwrap_or_else(|p| p.into_inner());
            let rewrap = |row: &KeyRow| -> Result<Vec<u8>> {
                let (index, kind, key) = keks.unwrap(&self.vault_id, row)?;
                self.wrap(&new_kek, index, kind, key_id_of(row), key.expose())
            };
            self.table
                .rewrap_all(new as i64, &header.to_bytes(&self.root)?, &rewrap)?;
        }
        {
            let mut keks = self.keks.write().unwrap_or_else(|p| p.into_inner());
            keks.keks.push((new, new_kek));
            keks.current = new;
        }
        state.header = header;
        drop(state);
        // 3 and 4.
        self.finish_retiring()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: u32, key_id: u64) -> KeyRef {
        KeyRef { index, key_id }
    }

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_array([byte; 32])
    }

    #[test]
    fn a_kept_key_is_found_by_its_index_and_id_only() {
        let kept = Unwrapped::default();
        let g = kept.generation();
        kept.keep(g, at(7, 70), KeyKind::Subject, &key(1));
        let (kind, found) = kept.get(at(7, 70)).unwrap();
        assert_eq!(kind, KeyKind::Subject);
        assert_eq!(found, key(1));
        // Another key id at the same index (a stale reference) finds nothing.
        assert!(kept.get(at(7, 71)).is_none());
        assert!(kept.get(at(8, 70)).is_none());
    }

    #[test]
    fn a_destroyed_key_is_forgotten_and_one_read_across_a_destruction_is_not_kept() {
        let kept = Unwrapped::default();
        let g = kept.generation();
        kept.keep(g, at(1, 10), KeyKind::Subject, &key(1));
        kept.keep(g, at(2, 20), KeyKind::Retention, &key(2));
        // A read of index 3 begins; a destruction of index 1 runs meanwhile.
        let before = kept.generation();
        kept.forget([1]);
        assert!(kept.get(at(1, 10)).is_none(), "a destroyed key stays found");
        assert!(
            kept.get(at(2, 20)).is_some(),
            "a key not destroyed was dropped"
        );
        kept.keep(before, at(3, 30), KeyKind::Subject, &key(3));
        assert!(
            kept.get(at(3, 30)).is_none(),
            "a key read while a destruction ran is kept"
        );
        // A read begun after it is kept.
        let after = kept.generation();
        kept.keep(after, at(3, 30), KeyKind::Subject, &key(3));
        assert!(kept.get(at(3, 30)).is_some());
    }

    #[test]
    fn past_its_bound_the_memory_empties_rather_than_grows() {
        let kept = Unwrapped::default();
        let g = kept.generation();
        for i in 0..UNWRAPPED_MAX as u32 {
            kept.keep(g, at(i, 1), KeyKind::Subject, &key(0));
        }
        assert_eq!(kept.lock().keys.len(), UNWRAPPED_MAX);
        kept.keep(g, at(u32::MAX, 1), KeyKind::Subject, &key(0));
        assert_eq!(kept.lock().keys.len(), 1);
        assert!(kept.get(at(u32::MAX, 1)).is_some());
    }
}
