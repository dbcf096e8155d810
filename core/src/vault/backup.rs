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

/// Writes a backup file frame by frame.
struct Writer<'a> {
    out: std::io::BufWriter<std::fs::File>,
    key: &'a SecretKey,
    header_hash: [u8; 32],
    next: u64,
    bytes: u64,
    path: &'a Path,
}

impl<'a> Writer<'a> {
    fn new(
        file: std::fs::File,
        header: &Header,
        key: &'a SecretKey,
        path: &'a Path,
    ) -> Result<Writer<'a>> {
        let header_bytes = serde_json::to_vec(header)
            .map_err(|e| Error::internal(format!("serializing a backup header: {e}")))?;
        let mut w = Writer {
            out: std::io::BufWriter::new(file),
            key,
            header_hash: sha256(&header_bytes),
            next: 0,
            bytes: 0,
            path,
        };
        w.write(MAGIC)?;
        w.write(&[FORMAT])?;
        w.write(&(header_bytes.len() as u32).to_le_bytes())?;
        w.write(&header_bytes)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    fn frame(&mut self, frame: &Frame) -> Result<()> {
        // What a frame holds is sealed already (records under subject keys,
        // keys under the root key): the backup key seals it once more.
        let plain = codec::encode(frame)?;
        let sealed = crypto::seal(self.key, &frame_aad(&self.header_hash, self.next), &plain)?;
        self.next += 1;
        self.write(&(sealed.len() as u32).to_le_bytes())?;
        self.write(&sealed)
    }

    fn finish(self) -> Result<u64> {
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
        Ok(self.bytes)
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("32 bytes")
}

/// Reads a backup file frame by frame.
struct Reader {
    input: std::io::BufReader<std::fs::File>,
    header: Header,
    header_hash: [u8; 32],
    next: u64,
    name: String,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader> {
        let name = path.display().to_string();
        let file =
            std::fs::File::open(path).map_err(|e| Error::io(format!("opening {name}"), e))?;
        let mut input = std::io::BufReader::new(file);
        let mut magic = [0u8; 10];
        read_exact(&mut input, &mut magic, &name)?;
        if &magic[..9] != MAGIC {
            return Err(Error::corrupt(format!("{name} is not a shredvault backup")));
        }
        if magic[9] != FORMAT {
            return Err(Error::corrupt(format!(
                "{name} is a backup of format {}, which this version does not read",
                magic[9]
            )));
        }
        let mut len = [0u8; 4];
        read_exact(&mut input, &mut len, &name)?;
        let len = u32::from_le_bytes(len);
        if len > MAX_HEADER {
            return Err(Error::corrupt(format!("{name}: its header is too long")));
        }
        let mut bytes = vec![0u8; len as usize];
        read_exact(&mut input, &mut bytes, &name)?;
        let header: Header = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("{name}: its header does not read: {e}")))?;
        Ok(Reader {
            input,
            header,
            header_hash: sha256(&bytes),
            next: 0,
            name,
        })
    }

    /// The next frame; `None` at the end of the file.
    fn frame(&mut self, key: &SecretKey) -> Result<Option<Frame>> {
        let mut len = [0u8; 4];
        match self.input.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => read_exact(&mut self.input, &mut len[1..], &self.name)?,
            Err(e) => return Err(Error::io(format!("reading {}", self.name), e)),
        }
        let len = u32::from_le_bytes(len);
        if len > MAX_FRAME {
            return Err(Error::corrupt(format!(
                "{}: frame {} claims {len} bytes",
                self.name, self.next
            )));
        }
        let mut sealed = vec![0u8; len as usize];
        read_exact(&mut self.input, &mut sealed, &self.name)?;
        let plain = crypto::open(
            key,
            &frame_aad(&self.header_hash, self.next),
            &sealed,
            &format!("frame {} of {}", self.next, self.name),
        )?;
        self.next += 1;
        Ok(Some(codec::decode(&plain, "backup frame")?))
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], name: &str) -> Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(format!("{name} is cut short"))
        } else {
            Error::io(format!("reading {name}"), e)
        }
    })
}

/// The ledger a restore re-applies: the newest given, checked against the
/// backup.
struct Chosen {
    path: PathBuf,
    file: LedgerFile,
}

fn choose_ledger(
    header: &Header,
    ledgers: &[PathBuf],
    no_ledger: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<Chosen>> {
    let mut best: Option<Chosen> = None;
    for path in ledgers {
        let file = LedgerFile::read(path)?;
        if file.vault != header.vault {
            return Err(Error::invalid(format!(
                "{} is the ledger of vault {}, and the backup is of vault {}",
                path.display(),
                file.vault,
                header.vault
            )));
        }
        if file.public_key != header.receipt_public_key {
            return Err(Error::corrupt(format!(
                "{} is signed with another key than the vault's: it is not the vault's ledger",
                path.display()
            )));
        }
        if file.torn {
            warnings.push(format!(
                "{}: its last line is cut short (an export interrupted): read up to it",
                path.display()
            ));
        }
        let newer = match &best {
            None => true,
            Some(b) => {
                (file.entries.len(), file.last_mark().map(|m| m.exported_at))
                    > (
                        b.file.entries.len(),
                        b.file.last_mark().map(|m| m.exported_at),
                    )
            }
        };
        if newer {
            best = Some(Chosen {
                path: path.clone(),
                file,
            });
        }
    }
    let refusal = |why: String| {
        Error::invalid(format!(
            "{why}. Restoring without it would bring back every subject and record erased, deleted, expired or withdrawn after the backup (made at {}). Give the latest export (`shredvault ledger export VAULT FILE`) with --ledger FILE, or accept that risk with --no-ledger",
            header.created_at
        ))
    };
    let Some(chosen) = best else {
        if no_ledger {
            warnings.push("restored with --no-ledger: whatever was erased after the backup is back; erase it again".into());
            return Ok(None);
        }
        return Err(refusal("no erasure ledger was given".into()));
    };
    let held = header.ledger_entries as usize;
    if chosen.file.entries.len() < held {
        if no_ledger {
            warnings.push(format!("{} is older than the backup: restored with --no-ledger, whatever was erased after the backup is back", chosen.path.display()));
            return Ok(None);
        }
        return Err(refusal(format!(
            "the newest ledger given ({}, {} entries) is older than the backup, which holds {held}",
            chosen.path.display(),
            chosen.file.entries.len()
        )));
    }
    if held > 0 && hex::encode(chosen.file.entries[held - 1].hash) != header.ledger_head {
        return Err(Error::corrupt(format!(
            "{} differs from the backup's own ledger at entry {}: it is another history of the vault (a ledger of a copy restored from another backup?)",
            chosen.path.display(),
            held - 1
        )));
    }
    let exported_after = chosen
        .file
        .last_mark()
        .is_some_and(|m| m.exported_at >= header.created_at);
    if chosen.file.entries.len() == held && !exported_after {
        if no_ledger {
            warnings.push(format!("{} was exported before the backup was made: restored with --no-ledger, whatever was erased after the backup is back", chosen.path.display()));
            return Ok(None);
        }
        return Err(refusal(format!(
            "the newest ledger given ({}) was exported before the backup was made, and holds nothing past it: it cannot say what was erased after the backup",
            chosen.path.display()
        )));
    }
    Ok(Some(chosen))
}

/// Makes `dir` ready for a restore: a new or empty directory, or one an
/// unfinished restore left (cleared). The marker is written and made
/// durable before anything else.
fn prepare_dir(dir: &Path) -> Result<()> {
    let marker = dir.join(RESTORING);
    if dir.exists() {
        let unfinished = marker.exists();
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        if !unfinished && entries.next().is_some() {
            return Err(Error::invalid(format!(
                "{} is not empty: a backup is restored into a new or empty directory",
                dir.display()
            )));
        }
        if unfinished {
            // The lock first: a restore still running elsewhere holds it.
            let _lock = custody::lock_dir(&dir.join("keys"))?;
            for part in ["data", "keys", "journal"] {
                let path = dir.join(part);
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
                }
            }
            crate::store::sled_store::sync_dir(dir)?;
            return Ok(());
        }
    }
    crate::fsmode::create_private_dir(dir)?;
    let file = crate::fsmode::create_private_file(&marker)?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", marker.display()), e))?;
    crate::fsmode::sync_parent(&marker)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::store::sled_store::sync_dir(parent)?;
    }
    Ok(())
}

fn restore(
    backup: &Path,
    dir: &Path,
    root: &RootKey,
    ledgers: &[PathBuf],
    no_ledger: bool,
    options: VaultOptions,
) -> Result<RestoreReport> {
    let clock = options.clock.clone().unwrap_or_else(system_clock);
    let now = clock();
    let mut reader = Reader::open(backup)?;
    let header = reader.header.clone();
    let name = backup.display();
    let vault_id: [u8; 16] = hex::decode(&header.vault)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::corrupt(format!("{name}: its header names no vault id")))?;
    let backup_id: [u8; 16] = hex::decode(&header.backup)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::corrupt(format!("{name}: its header names no backup id")))?;
    if now >= header.window_ends_at {
        return Err(Error::new(
            ErrorKind::Expired,
            format!(
                "{name} is past its window: made at {}, restorable until {} (the policy's backup_window); it opens for nobody{}",
                header.created_at,
                header.window_ends_at,
                if header.token_day_key.is_some() {
                    " (its day key in the token is destroyed by the first expiry run after the window)"
                } else {
                    ""
                }
            ),
        ));
    }
    let secrets = root.secrets()?;
    let day_key = match &header.token_day_key {
        None => None,
        Some(label) => {
            let Some(uri) = root.token_uri() else {
                return Err(Error::new(
                    ErrorKind::WrongKey,
                    format!("{name} was made under a root key in a PKCS#11 token ({}): give that key's URI", header.root_key),
                ));
            };
            let day_uri = uri.with_object(label);
            if !pkcs11::exists(&day_uri)? {
                return Err(Error::new(
                    ErrorKind::Expired,
                    format!("{name} cannot be opened: its day key ({label}) is no longer in the token (destroyed when its window ended, or not this token)"),
                ));
            }
            Some(day_secret(&day_uri)?)
        }
    };
    let key = domains::backup_key(&secrets.kek, day_key.as_ref(), &vault_id, &backup_id);
    drop(day_key);
    if key_check(&key) != header.key_check {
        return Err(Error::new(
            ErrorKind::WrongKey,
            format!(
                "the root key given does not open {name}: it was made under {} (the root key in force at {})",
                if header.root_key.is_empty() { "another root key" } else { &header.root_key },
                header.created_at
            ),
        ));
    }
    let mut report = RestoreReport {
        vault: dir.display().to_string(),
        backup: header.backup.clone(),
        backup_created_at: header.created_at,
        window_ends_at: header.window_ends_at,
        ..RestoreReport::default()
    };
    let chosen = choose_ledger(&header, ledgers, no_ledger, &mut report.warnings)?;
    // Frame 0 before the directory is touched: a wrong or damaged file
    // changes nothing.
    let Some(Frame::Custody {
        keystore,
        vault_format,
    }) = reader.frame(&key)?
    else {
        return Err(Error::corrupt(format!(
            "{name}: its first frame is not the keystore"
        )));
    };
    let image = CustodyImage {
        keystore,
        marks: MarkValues {
            store_mark: header.store_mark,
            vault_format,
        },
    };
    if !image.opens(&secrets)? {
        return Err(Error::new(
            ErrorKind::WrongKey,
            format!("the root key given does not open the keystore in {name}"),
        ));
    }
    drop(secrets);
    prepare_dir(dir)?;
    {
        let _lock = custody::lock_dir(&dir.join("keys"))?;
        let store = SledStore::open(dir)?;
        let mut count = 0u64;
        loop {
            match reader.frame(&key)? {
                Some(Frame::Entries(entries)) => {
                    let mut batch = Batch::default();
                    for (k, v) in entries {
                        batch.insert(k, v);
                        count += 1;
                    }
                    store.apply(batch)?;
                }
                Some(Frame::End { entries }) => {
                    if entries != count {
                        return Err(Error::corrupt(format!(
                            "{name}: its end says {entries} entries, and {count} were read"
                        )));
                    }
                    break;
                }
                Some(Frame::Custody { .. }) => {
                    return Err(Error::corrupt(format!("{name}: a second keystore frame")))
                }
                None => {
                    return Err(Error::corrupt(format!(
                        "{name} is cut short: it has no end frame"
                    )))
                }
            }
        }
        if reader.frame(&key)?.is_some() {
            return Err(Error::corrupt(format!(
                "{name}: frames follow its end frame"
            )));
        }
        // The newer ledger entries go in verbatim (their chain was checked
        // with the file, and continues the backup's own), before the vault
        // opens: nothing it does at open (the purge) can write an entry
        // that the copy would then not follow.
        if let Some(chosen) = &chosen {
            let mut batch = Batch::default();
            for e in &chosen.file.entries[header.ledger_entries as usize..] {
                batch.insert(Key::Ledger(e.seq).encode(), codec::encode(&e.line)?);
            }
            store.apply(batch)?;
        }
        store.sync(&|| Ok(()))?;
        drop(store);
        custody::write_image(&dir.join("keys"), vault_id, &image, header.store_mark)?;
    }
    let vault = open_dir(dir, root, None, options, Mode::Restore)?;
    let operations_after = chosen.as_ref().and_then(|c| {
        c.file
            .last_mark()
            .map(|m| m.audit_next.saturating_sub(header.audit_next))
    });
    if let Some(chosen) = &chosen {
        let newer = &chosen.file.entries[header.ledger_entries as usize..];
        report.ledger = Some(chosen.path.display().to_string());
        report.ledger_exported_at = chosen.file.last_mark().map(|m| m.exported_at);
        report.ledger_entries_reapplied = newer.len() as u64;
        vault
            .engine
            .reapply_ledger(&header.backup, newer, &mut report)?;
    }
    report.lost.operations_after_backup = operations_after;
    report.lost.note = match operations_after {
        Some(n) => format!("{n} audited operations (reads included) were made after the backup, up to the ledger's export; writes among them (puts, updates, new subjects, facts) are lost, erasures among them were re-applied"),
        None => "every write made after the backup is lost; without a ledger, so is every erasure made after it".into(),
    };
    drop(vault);
    let marker = dir.join(RESTORING);
    std::fs::remove_file(&marker)
        .map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
    crate::store::sled_store::sync_dir(dir)?;
    Ok(report)
}

impl Engine {
    /// Re-applies a newer ledger's entries (already copied into the store),
    /// as one audited operation, durable.
    fn reapply_ledger(
        &self,
        backup: &str,
        entries: &[LedgerLine],
        report: &mut RestoreReport,
    ) -> Result<()> {
        self.audited(Op::Restore, Commit::Always, |call| {
            call.entry.detail = Some(
                format!(
                    "from backup {backup}: {} ledger entries re-applied",
                    entries.len()
                )
                .into(),
            );
            let _paused = self.ledger.pause_here();
            for e in entries {
                self.reapply(e, report)?;
            }
            Ok(())
        })
    }

    fn reapply(&self, e: &LedgerLine, report: &mut RestoreReport) -> Result<()> {
        let v = &e.value;
        let bad = |what: &str| Error::corrupt(format!("ledger entry {}: {what}", e.seq));
        // Days: as the expiry run did (legal holds spared first, by the
        // holds the restored vault knows).
        let mut ended = Vec::new();
        for day in v["days"].as_array().into_iter().flatten() {
            let day = day.as_i64().ok_or_else(|| bad("a day is not a number"))?;
            let entry: Option<DayEntry> = match self.store.get(&Key::Day(day).encode())? {
                Some(b) => Some(self.decode_state(&Key::Day(day), &b, "day entry")?),
                None => None,
            };
            match entry {
                Some(entry) if !entry.destroyed => ended.push((day, entry.key)),
                _ => report.already_gone += 1,
            }
        }
        if !ended.is_empty() {
            let _guard = lock(&self.locks.expire);
            let mut entry = self.draft(Op::Expire);
            entry.detail = Some(format!("re-applied from ledger entry {}", e.seq).into());
            let days: Vec<i64> = ended.iter().map(|(d, _)| *d).collect();
            let result = self.expire_these(ended, &entry);
            entry.outcome = match &result {
                Ok(_) => "ok",
                Err(err) => err.kind().name(),
            };
            self.audit.append(&entry, self.actor().as_deref())?;
            result?;
            report.re_expired_days.extend(days);
        }
        if v["erasure_requested"].as_bool() == Some(true) {
            let subject = v["subject"]
                .as_str()
                .ok_or_else(|| bad("an erasure request without a subject"))
                .and_then(|s| SubjectId::parse(s).map_err(|_| bad("a malformed subject id")))?;
            let at = v["at"].as_i64().unwrap_or_else(|| self.now());
            let mut entry = self.draft(Op::EraseSubject);
            entry.subject = Some(subject);
            entry.detail = Some(format!("re-applied from ledger entry {}", e.seq).into());
            match self.erase(&subject, &entry, Some(at)) {
                Ok(_) => {
                    entry.outcome = "ok";
                    self.audit.append(&entry, self.actor().as_deref())?;
                    report.re_erased_subjects.push(subject.to_string());
                }
                Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::Erased) => {
                    report.already_gone += 1
                }
                Err(err) => return Err(err),
            }
        }
        if v["subject_erased"].as_bool() == Some(true) {
            let subject = v["subject"]
                .as_str()
                .ok_or_else(|| bad("an erased subject without an id"))
                .and_then(|s| SubjectId::parse(s).map_err(|_| bad("a malformed subject id")))?;
            let _stripe = self.stripe(&subject);
            match self.live_subject(&subject) {
                Ok(live) => {
                    self.keys.destroy_subject_key(live.key)?;
                    self.finish_erasure(&subject, &live, self.now())?;
                    report.re_erased_subjects.push(subject.to_string());
                }
                Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::Erased) => {
                    report.already_gone += 1
                }
                Err(err) => return Err(err),
            }
        }
        for r in v["records"].as_array().into_iter().flatten() {
            let id = r["record"]
                .as_str()
                .and_then(|s| RecordId::parse(s).ok())
                .ok_or_else(|| bad("a malformed record id"))?;
            let how = r["gone"].as_str().unwrap_or_default();
            let live = match self.live_record(&id) {
                Ok(live) => live,
                Err(err)
                    if matches!(
                        err.kind(),
                        ErrorKind::NotFound | ErrorKind::Erased | ErrorKind::Expired
                    ) =>
                {
                    report.already_gone += 1;
                    continue;
                }
                Err(err) => return Err(err),
            };
            if how == "rectified" {
                report.lost.rectified_records.push(id.to_string());
                continue;
            }
            let subject = live.subject;
            let _stripe = self.stripe(&subject);
            let live_subject = self.live_subject(&subject)?;
            self.rotate(&subject, live_subject, Some((&id, Edit::Delete)), None)?;
            let list = match how {
                "deleted" => &mut report.re_deleted_records,
                "expired" => &mut report.re_expired_records,
                _ => &mut report.re_erased_records,
            };
            list.push(id.to_string());
        }
        Ok(())
    }
}
