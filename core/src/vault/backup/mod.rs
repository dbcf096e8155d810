//! Backups and restores that never bring an erased person back.
//!
//! A copy of `data/` alone cannot be restored (every subject whose key
//! rotated since cannot be read from it); a copy of `keys/` beside it would
//! bring back everyone erased since. So a backup is one file holding both,
//! taken at one point, sealed under a key that dies with the backup's
//! window, and a restore re-applies, from the erasure ledger (`ledger`),
//! every erasure made after the backup before anything can read the
//! restored vault.
//!
//! # The backup file
//!
//! ```text
//! "SVBACKUP\n" | format (1 byte: 1) | header length (u32 LE) | header
//! frame*       = length (u32 LE) | AES-256-GCM(backup key, frame, aad)
//! aad          = "shredvault backup frame v1" | SHA-256(header) | frame number (u64 BE)
//! frame        = codec(Frame): Custody (the keystore file as it is at rest,
//!                the vault format), then Entries (the store's keys and
//!                values, up to 4 MiB a frame), then End (the count of
//!                entries). Nothing may follow End.
//! header       = JSON: vault id, backup id, created_at, window_ends_at,
//!                the root key's public name, a check value of the backup
//!                key, the token day key's label (if any), the ledger's
//!                length and head, the audit log's next number, the store's
//!                durable-point mark, the receipt public key
//! ```
//!
//! The header is in clear (ids, times, counts: no personal data) and bound
//! to every frame through the AAD, so a changed header, a frame moved,
//! dropped, added or cut short is `Corrupt`; a wrong root key is
//! `WrongKey` (the check value), never garbage. The store's values were
//! already sealed (records under subject keys, which are wrapped in the
//! keystore under the root key); the backup key seals them once more.
//!
//! # The backup key, and the window
//!
//! backup key = HKDF(KEK of the root key in force ‖ day key, vault id,
//! "shredvault backup v1" ‖ backup id). A backup's window ends at the end
//! of the UTC day it was made plus the policy's `backup_window` (default
//! 14 days); then it opens for nobody:
//!
//! - **root key in a PKCS#11 token**: the day key is derived in the token
//!   from an AES key object made for the day (label `<root object>.backup.
//!   <vault id, 16 hex>.<YYYYMMDD>`, same attributes as the root key), and
//!   the first `expire` run after the window destroys that object
//!   (`C_DestroyObject`): every backup of the day becomes noise for
//!   everyone, including whoever holds the root key.
//! - **root key as bytes**: there is no day key (a key the vault could
//!   destroy for real would need a place where destruction is real: the
//!   keystore is copied into the backup itself). A backup is readable only
//!   under the root key in force when it was made; the restore refuses it
//!   past its window, and rotating the root key at least once per window
//!   (then destroying the old one) makes older backups inert. `expire`
//!   reports backups still readable past their window
//!   (`ExpireReport::backups_readable_past_window`).
//!
//! The vault keeps a register of the backups it made ('X'): when, until
//! when, under which root key, and the token day key.
//!
//! # Consistency and crash order of `backup`
//!
//! The backup holds every writer's lock (the root-key rotation's quiesce:
//! no expiry run, no writer of any subject, no blind-index or day-key
//! writer) and makes a durable point first; readers go on. Its register
//! entry is made durable first; the file is written to `DEST.partial`,
//! fsynced, renamed to DEST, and the directory fsynced. A crash leaves no
//! DEST (only a `.partial` file, never read) or a whole one; the vault is
//! untouched but for the register entry.
//!
//! # Restore and its crash order
//!
//! `restore BACKUP VAULT --ledger FILE...`:
//! 1. the backup's header is checked, its window (`Expired` past it), the
//!    root key (`WrongKey`), and the ledgers: every file must be this
//!    vault's (signed with the key in the backup, chained), the newest one
//!    must hold the backup's ledger as its start and be newer than the
//!    backup (entries past it, or a mark exported after it). Without one it
//!    refuses unless `--no-ledger`;
//! 2. VAULT is made with a marker file, `VAULT/restoring`, fsynced, before
//!    anything else: while it is there no open reads the vault (`Corrupt`,
//!    saying to run the restore again) and a new restore into VAULT starts
//!    over;
//! 3. the store is written from the frames and made durable; then the
//!    keystore (made whole: a temporary file and a rename) and the marks;
//!    The ledger's newer entries are copied into the store's ledger
//!    verbatim (the chain continues: the next export appends to the same
//!    file);
//! 4. the vault is opened (the repair pass runs), then each newer ledger
//!    entry is re-applied (writing no entry of its own): a day's key
//!    destroyed, a subject erased, a record deleted (its subject rotated);
//!    a rectified record is reported (its new value is lost with the
//!    writes after the backup). A durable point;
//! 5. the marker is removed and the directory fsynced: the vault opens.
//!
//! A kill at any point before 5 leaves the marker: nothing reads the half
//! restored vault, and the restore is run again.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{self, RootKey, SecretKey};
use crate::custody::{self, pkcs11, CustodyImage, MarkValues};
use crate::domains;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{RecordId, SubjectId};
use crate::layout::{BackupRecord, DayEntry, Key, Prefix};
use crate::options::{system_clock, VaultOptions};
use crate::retention;
use crate::store::{Batch, SledStore, Store};

use super::audited::{Commit, Op};
use super::ledger::{LedgerFile, LedgerLine};
use super::open::{open_dir, Mode};
use super::rotate::Edit;
use super::{lock, Engine, Vault};

mod file;
mod restore;

use file::Writer;
use restore::restore;

const MAGIC: &[u8; 9] = b"SVBACKUP\n";
const FORMAT: u8 = 1;
/// Store bytes per frame (a frame holds at least one entry).
const FRAME_BYTES: usize = 4 << 20;
/// A header longer than this is damage.
const MAX_HEADER: u32 = 1 << 20;
/// A frame longer than this is damage (the codec's limit and the seal).
const MAX_FRAME: u32 = codec::DECODE_LIMIT as u32 + 1024;
/// The marker of a restore under way, in the vault directory.
const RESTORING: &str = "restoring";
const FRAME_AAD: &[u8] = b"shredvault backup frame v1";
const KEY_CHECK: &[u8] = b"shredvault backup key check v1";

/// The clear header of a backup file (see the module doc).
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Header {
    format: u8,
    vault: String,
    backup: String,
    created_at: i64,
    window_ends_at: i64,
    root_key: String,
    key_check: String,
    token_day_key: Option<String>,
    ledger_entries: u64,
    ledger_head: String,
    audit_next: u64,
    store_mark: u64,
    receipt_public_key: String,
}

/// One sealed frame.
#[derive(Serialize, Deserialize)]
enum Frame {
    Custody { keystore: Vec<u8>, vault_format: u8 },
    Entries(Vec<(Vec<u8>, Vec<u8>)>),
    End { entries: u64 },
}

/// What [`Vault::backup`] made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// The backup's id (32 hex characters).
    pub id: String,
    /// The vault's id.
    pub vault: String,
    pub created_at: i64,
    /// After this (Unix seconds) the backup opens for nobody.
    pub window_ends_at: i64,
    /// Store entries it holds.
    pub store_entries: u64,
    /// Erasure-ledger entries it holds.
    pub ledger_entries: u64,
    /// The file's size.
    pub bytes: u64,
    /// The label of the token object its key needs (a root key in a
    /// token), destroyed when the window ends.
    pub token_day_key: Option<String>,
}

/// What [`Vault::restore`] did (printed as JSON by `shredvault restore`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub vault: String,
    pub backup: String,
    pub backup_created_at: i64,
    pub window_ends_at: i64,
    /// The ledger file whose newer entries were re-applied.
    pub ledger: Option<String>,
    /// When that ledger was exported (its latest mark).
    pub ledger_exported_at: Option<i64>,
    /// Ledger entries newer than the backup, re-applied.
    pub ledger_entries_reapplied: u64,
    pub re_erased_subjects: Vec<String>,
    pub re_deleted_records: Vec<String>,
    pub re_erased_records: Vec<String>,
    pub re_expired_records: Vec<String>,
    /// UTC days (days since 1970-01-01) whose retention key was destroyed
    /// again.
    pub re_expired_days: Vec<i64>,
    /// Ledger entries about what the backup did not hold (made after it)
    /// or held already gone.
    pub already_gone: u64,
    pub lost: LostWrites,
    pub warnings: Vec<String>,
}

/// What a restore cannot bring back: the writes made after the backup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct LostWrites {
    /// Audited operations made after the backup, up to the ledger's export
    /// (`None`: no ledger told).
    pub operations_after_backup: Option<u64>,
    /// Records rectified after the backup: restored with their earlier
    /// value; rectify them again.
    pub rectified_records: Vec<String>,
    pub note: String,
}

/// `Corrupt` while a restore into `dir` is unfinished.
pub(super) fn check_not_restoring(dir: &Path) -> Result<()> {
    if dir.join(RESTORING).exists() {
        return Err(Error::corrupt(format!(
            "a restore into {} did not finish: nothing in it may be read until it does. Run `shredvault restore BACKUP {}` again (with the same ledgers): it starts over",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn frame_aad(header_hash: &[u8; 32], n: u64) -> Vec<u8> {
    [FRAME_AAD, &header_hash[..], &n.to_be_bytes()].concat()
}

fn key_check(key: &SecretKey) -> String {
    hex::encode(crypto::mac(key, &[KEY_CHECK]))
}

/// The label of a vault's token day key for `day`.
fn day_label(root_object: &str, vault_id: &[u8; 16], day: i64) -> String {
    let date = jiff::Timestamp::from_second(day * retention::SECONDS_PER_DAY)
        .map(|t| t.strftime("%Y%m%d").to_string())
        .unwrap_or_else(|_| format!("day{day}"));
    format!(
        "{root_object}.backup.{}.{date}",
        &hex::encode(vault_id)[..16]
    )
}

/// The secret a token day key gives (derived in the token).
fn day_secret(uri: &custody::pkcs11_uri::Pkcs11Uri) -> Result<SecretKey> {
    pkcs11::derive(uri, &[domains::BACKUP_KEY])?
        .pop()
        .ok_or_else(|| Error::internal("the token derived no key"))
}

impl Vault {
    /// Writes a backup of the vault to `dest` (a new file): see the module
    /// doc of `vault::backup`. Readers go on meanwhile; writers wait.
    /// `InvalidArgument` if `dest` exists.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupInfo> {
        let dest = dest.as_ref();
        let engine = &self.engine;
        engine.audited(Op::Backup, Commit::Always, |call| {
            let info = engine.backup(dest)?;
            call.entry.detail = Some(format!("backup {}", info.id).into());
            Ok(info)
        })
    }

    /// Restores the backup at `backup` into `dir` (a new or empty
    /// directory, or one a restore left unfinished), then re-applies every
    /// erasure the newest of `ledgers` holds past the backup (see the
    /// module doc of `vault::backup`). `no_ledger`: restore without a ledger
    /// newer than the backup, bringing back whatever was erased after it.
    /// `options.clock` is the clock of the window check and of the vault.
    pub fn restore(
        backup: impl AsRef<Path>,
        dir: impl AsRef<Path>,
        root: &RootKey,
        ledgers: &[PathBuf],
        no_ledger: bool,
        options: VaultOptions,
    ) -> Result<RestoreReport> {
        restore(
            backup.as_ref(),
            dir.as_ref(),
            root,
            ledgers,
            no_ledger,
            options,
        )
    }
}

impl Engine {
    fn backup(&self, dest: &Path) -> Result<BackupInfo> {
        if dest.exists() || dest.is_symlink() {
            return Err(Error::invalid(format!(
                "{} exists: a backup is written to a new file",
                dest.display()
            )));
        }
        let now = self.now();
        let backup_id: [u8; 16] = crypto::random_array()?;
        let day = retention::expiry_day(now);
        let window_ends_at =
            retention::day_end(day) + self.policy().vault().backup_window_seconds();
        // Quiesce writers (as a root-key rotation does).
        let _expire = lock(&self.locks.expire);
        let _stripes = self.locks.all_stripes();
        let _blind = lock(&self.locks.blind);
        let _day = lock(&self.locks.day);
        let token = lock(&self.token).clone();
        let (token_day_key, day_key) = match &token {
            Some(uri) => {
                let label = day_label(
                    uri.object.as_deref().unwrap_or("shredvault"),
                    &self.vault_id,
                    day,
                );
                let day_uri = uri.with_object(&label);
                if !pkcs11::exists(&day_uri)? {
                    pkcs11::create(&day_uri)?;
                }
                (Some(label), Some(day_secret(&day_uri)?))
            }
            None => (None, None),
        };
        let key = self.keys.custody.backup_key(&backup_id, day_key.as_ref());
        drop(day_key);
        // The register entry, durable before the file exists.
        let record = BackupRecord {
            created_at: now,
            window_ends_at,
            root_key_check: self.keys.custody.key_check(),
            token_day_key: token_day_key.clone(),
            day_key_destroyed: false,
        };
        self.store.insert(
            &Key::Backup(backup_id).encode(),
            &self.encode_state(&Key::Backup(backup_id), &record)?,
        )?;
        self.make_durable()?;
        let image = self.keys.custody.image()?;
        let ledger = self.ledger.head();
        let skip = |k: &[u8]| matches!(Key::decode(k), Ok(Key::JournalMark | Key::JournalReplay));
        let store_mark = match self.store.get(&Key::StoreMark.encode())? {
            Some(b) => codec::decode::<u64>(&b, "store mark")?,
            None => 0,
        };
        let header = Header {
            format: FORMAT,
            vault: hex::encode(self.vault_id),
            backup: hex::encode(backup_id),
            created_at: now,
            window_ends_at,
            root_key: lock(&self.root_name).clone().unwrap_or_default(),
            key_check: key_check(&key),
            token_day_key: token_day_key.clone(),
            ledger_entries: ledger.next_seq,
            ledger_head: hex::encode(ledger.prev),
            audit_next: self.audit.next_seq(),
            store_mark,
            receipt_public_key: crate::receipt::public_key_hex(&self.receipt_key)?,
        };
        let partial = dest.with_file_name(format!(
            "{}.partial",
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "backup".into())
        ));
        let written = (|| -> Result<(u64, u64)> {
            let file = crate::fsmode::create_private_file(&partial)?;
            let mut w = Writer::new(file, &header, &key, &partial)?;
            w.frame(&Frame::Custody {
                keystore: image.keystore,
                vault_format: image.marks.vault_format,
            })?;
            let mut chunk = Vec::new();
            let mut bytes = 0usize;
            let mut count = 0u64;
            for item in self.store.scan(&[], &[]) {
                let (k, v) = item?;
                if skip(&k) {
                    continue;
                }
                bytes += k.len() + v.len();
                chunk.push((k.to_vec(), v.to_vec()));
                count += 1;
                if bytes >= FRAME_BYTES {
                    w.frame(&Frame::Entries(std::mem::take(&mut chunk)))?;
                    bytes = 0;
                }
            }
            if !chunk.is_empty() {
                w.frame(&Frame::Entries(chunk))?;
            }
            w.frame(&Frame::End { entries: count })?;
            Ok((w.finish()?, count))
        })();
        let (bytes, store_entries) = match written {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        std::fs::rename(&partial, dest)
            .map_err(|e| Error::io(format!("renaming {}", partial.display()), e))?;
        crate::fsmode::sync_parent(dest)?;
        Ok(BackupInfo {
            id: header.backup,
            vault: header.vault,
            created_at: now,
            window_ends_at,
            store_entries,
            ledger_entries: ledger.next_seq,
            bytes,
            token_day_key,
        })
    }

    /// The backups' part of an expiry run: a token day key whose window
    /// has ended is destroyed; a backup past its window that the root key
    /// in force still opens is counted (and logged).
    pub(super) fn expire_backups(&self, now: i64) -> Result<(u64, u64)> {
        let token = lock(&self.token).clone();
        let check = self.keys.custody.key_check();
        let mut destroyed = 0;
        let mut readable = 0;
        let mut done: Vec<String> = Vec::new();
        let entries: Vec<_> = self.scan(Prefix::Backups).collect::<Result<_>>()?;
        for (k, v) in entries {
            let key = Key::decode(&k)?;
            let mut record: BackupRecord = self.decode_state(&key, &v, "backup record")?;
            if now < record.window_ends_at || record.day_key_destroyed {
                continue;
            }
            match (&record.token_day_key, &token) {
                (Some(label), Some(uri)) => {
                    if !done.contains(label) {
                        let day_uri = uri.with_object(label);
                        if pkcs11::exists(&day_uri)? {
                            pkcs11::destroy(&day_uri)?;
                            destroyed += 1;
                        }
                        done.push(label.clone());
                    }
                    record.day_key_destroyed = true;
                    self.store.insert(&k, &self.encode_state(&key, &record)?)?;
                }
                _ if record.root_key_check == check => readable += 1,
                _ => {}
            }
        }
        Ok((destroyed, readable))
    }
}
