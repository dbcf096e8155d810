//! The erasure ledger: one entry per operation that made personal data
//! unreadable (an erasure, a deletion, an expiry run, a consent withdrawal
//! or an event that erased or expired records, a rectification's old
//! value), holding ids, days and times only: no personal data. It is what
//! a restore re-applies so that nothing erased after a backup comes back
//! (`vault::backup`).
//!
//! # Entries
//!
//! An entry is a JSON object signed like an erasure receipt, with the
//! vault's receipt key, under its own context (`domains::LEDGER_CONTEXT`,
//! so a ledger line is never taken for a receipt), and chained: `prev` is
//! the SHA-256 of the previous entry's canonical JSON (signature included;
//! zeros for the first). So anyone holding the vault's public key can
//! check a copy, and no entry can be dropped, reordered or altered in one
//! without breaking the chain or a signature.
//!
//! ```text
//! {"kind":"entry","vault":HEX,"seq":N,"at":UNIX,"op":"erase_subject",
//!  "subject":ID|null,"erasure_requested":bool,"subject_erased":bool,
//!  "records":[{"record":ID,"gone":"deleted|erased|expired|rectified"}],
//!  "days":[DAY...],"audit_seq":N,"prev":HEX,"public_key":HEX,"signature":HEX}
//! ```
//!
//! `audit_seq` is the vault's next audit sequence number when the entry was
//! written: the operation's own audit entries come at or after it. Days are
//! days since 1970-01-01 (UTC).
//!
//! # Crash order
//!
//! An entry is written in the same store batch as the change it records,
//! or (when the change is a key destruction alone) in a batch of its own
//! made durable before the key is destroyed. So a ledger never lacks an
//! erasure whose key is gone; after a crash it may hold one whose key was
//! not yet destroyed (the repair pass, or the caller's retry, finishes it),
//! and a restore then erases what the crash interrupted: it errs towards
//! erasing.
//!
//! # The exported file
//!
//! `ledger export VAULT FILE` appends to FILE, one canonical JSON line each,
//! the entries FILE lacks, then a signed *mark*:
//!
//! ```text
//! {"kind":"mark","vault":HEX,"entries":N,"head":HEX,"exported_at":UNIX,
//!  "audit_next":N,"public_key":HEX,"signature":HEX}
//! ```
//!
//! saying "at `exported_at` the ledger held `entries` entries, the last
//! hashing to `head`, and the audit log was at `audit_next`": how a restore
//! tells a ledger newer than a backup from an older one, and how many
//! operations a restore loses. FILE must be a copy of this vault's ledger
//! (same chain) or absent; a last line cut short by a crash is dropped and
//! written again. The file holds no personal data: it may be copied
//! anywhere (off the machine is the point).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::codec;
use crate::domains::LEDGER_CONTEXT;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{RecordId, SubjectId};
use crate::layout::{Key, Prefix};
use crate::receipt;
use crate::store::{Batch, Store};

use super::audited::{Commit, Op};
use super::{lock, Engine, Vault};

/// Bytes of one ledger file line at most (an entry of a subject with many
/// records erased at once may be long; a file line past this is damage).
const MAX_LINE: usize = 16 << 20;

/// What one ledger entry records: filled in by the operation.
#[derive(Debug, Default, Clone)]
pub(crate) struct Erasure {
    pub op: &'static str,
    pub subject: Option<SubjectId>,
    /// The subject asked for erasure (`erase_subject`): a restore answers
    /// the request again, as the policy says.
    pub erasure_requested: bool,
    /// The subject's key was destroyed with nothing kept (by the vault
    /// itself: the purge).
    pub subject_erased: bool,
    /// Records made unreadable, each with how: `deleted`, `erased`,
    /// `expired`, or `rectified` (its old value).
    pub records: Vec<(RecordId, &'static str)>,
    /// Retention days whose key was destroyed.
    pub days: Vec<i64>,
}

impl Erasure {
    pub fn is_empty(&self) -> bool {
        !self.erasure_requested
            && !self.subject_erased
            && self.records.is_empty()
            && self.days.is_empty()
    }
}

/// The ledger's head: the next entry's number and the hash it chains to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub next_seq: u64,
    pub prev: [u8; 32],
}

/// The ledger as the engine holds it.
#[derive(Debug)]
pub(super) struct Ledger {
    head: Mutex<Head>,
    /// The thread of a restore re-applying entries it copied in verbatim:
    /// its changes write no entries of their own (other threads' do).
    paused: Mutex<Option<std::thread::ThreadId>>,
    /// Whether `paused` is set: checked first, so that an ordinary write
    /// never asks for its thread's handle (which a C caller's thread would
    /// then keep allocated).
    pausing: std::sync::atomic::AtomicBool,
}

/// Resumes the ledger when dropped (see [`Ledger::pause_here`]).
pub(super) struct Paused<'a>(&'a Ledger);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        *lock(&self.0.paused) = None;
        self.0
            .pausing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Ledger {
    /// The head of the ledger in `store`.
    pub fn load(store: &dyn Store) -> Result<Ledger> {
        let head = match store.last(&Prefix::Ledger.encode())? {
            None => Head {
                next_seq: 0,
                prev: [0; 32],
            },
            Some((k, v)) => {
                let seq = Key::ledger_seq(&k)?;
                let line: String = codec::decode(&v, "ledger entry")?;
                Head {
                    next_seq: seq + 1,
                    prev: line_hash(&line),
                }
            }
        };
        Ok(Ledger {
            head: Mutex::new(head),
            paused: Mutex::new(None),
            pausing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn head(&self) -> Head {
        *lock(&self.head)
    }

    /// Pauses the ledger for the calling thread until the guard drops.
    pub fn pause_here(&self) -> Paused<'_> {
        *lock(&self.paused) = Some(std::thread::current().id());
        self.pausing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Paused(self)
    }

    fn paused(&self) -> bool {
        self.pausing.load(std::sync::atomic::Ordering::SeqCst)
            && *lock(&self.paused) == Some(std::thread::current().id())
    }
}

/// SHA-256 of a line's canonical JSON.
pub(crate) fn line_hash(canonical: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    digest.as_ref().try_into().expect("32 bytes")
}

fn canonical(value: &Value) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::internal(format!("serializing a ledger line: {e}")))
}

impl Engine {
    /// Applies `batch` with the ledger entry for `erasure` in it (none when
    /// the erasure is empty, or the ledger is paused): atomically, so the
    /// entry is in the store exactly when the change is.
    pub(super) fn apply_with_ledger(&self, mut batch: Batch, erasure: &Erasure) -> Result<()> {
        if erasure.is_empty() || self.ledger.paused() {
            return self.store.apply(batch);
        }
        let mut head = lock(&self.ledger.head);
        let line = self.ledger_line(*head, erasure)?;
        batch.insert(Key::Ledger(head.next_seq).encode(), codec::encode(&line)?);
        self.store.apply(batch)?;
        *head = Head {
            next_seq: head.next_seq + 1,
            prev: line_hash(&line),
        };
        Ok(())
    }

    /// Writes the entry for `erasure` and makes it durable: before a key
    /// destruction that has no store batch of its own before it.
    pub(super) fn ledger_durably(&self, erasure: &Erasure) -> Result<()> {
        if erasure.is_empty() || self.ledger.paused() {
            return Ok(());
        }
        self.apply_with_ledger(Batch::default(), erasure)?;
        self.make_durable()
    }

    fn ledger_line(&self, head: Head, e: &Erasure) -> Result<String> {
        let records: Vec<Value> = e
            .records
            .iter()
            .map(|(id, gone)| json!({"record": id.to_string(), "gone": gone}))
            .collect();
        let value = json!({
            "kind": "entry",
            "vault": hex::encode(self.vault_id),
            "seq": head.next_seq,
            "at": self.now(),
            "op": e.op,
            "subject": e.subject.map(|s| s.to_string()),
            "erasure_requested": e.erasure_requested,
            "subject_erased": e.subject_erased,
            "records": records,
            "days": e.days,
            "audit_seq": self.audit.next_seq(),
            "prev": hex::encode(head.prev),
        });
        canonical(&receipt::sign_in(LEDGER_CONTEXT, &self.receipt_key, value)?)
    }

    /// The stored entries from `from` on, as canonical lines.
    pub(super) fn ledger_lines(&self, from: u64) -> Result<Vec<String>> {
        let prefix = Prefix::Ledger.encode();
        let start = Key::Ledger(from).encode();
        let mut out = Vec::new();
        for item in self.store.scan(&prefix, &start) {
            let (_, v) = item?;
            out.push(codec::decode::<String>(&v, "ledger entry")?);
        }
        Ok(out)
    }

    /// A signed mark for the ledger as it stands (see the module doc).
    fn ledger_mark(&self, head: Head) -> Result<String> {
        let value = json!({
            "kind": "mark",
            "vault": hex::encode(self.vault_id),
            "entries": head.next_seq,
            "head": hex::encode(head.prev),
            "exported_at": self.now(),
            "audit_next": self.audit.next_seq(),
        });
        canonical(&receipt::sign_in(LEDGER_CONTEXT, &self.receipt_key, value)?)
    }
}

/// What `ledger export` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerExport {
    /// Entries appended to the file.
    pub appended: u64,
    /// Entries the file holds now.
    pub entries: u64,
}

/// A piece of a vault's ledger, to append to a ledger file
/// ([`append_ledger`]): the entries from `first` on and a signed mark. What
/// a server sends a client that exports the ledger of a served vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerPiece {
    pub vault: String,
    pub public_key: String,
    /// The number of the first line.
    pub first: u64,
    /// Canonical JSON lines.
    pub lines: Vec<String>,
    /// The signed mark for the whole ledger.
    pub mark: String,
}

impl Vault {
    /// How many entries the erasure ledger holds (durable or about to be).
    pub fn ledger_entries(&self) -> u64 {
        self.engine.ledger.head().next_seq
    }

    /// The ledger's entries from `from` on (those made durable: the call
    /// makes a durable point first) and a signed mark: see
    /// [`append_ledger`].
    pub fn ledger_since(&self, from: u64) -> Result<LedgerPiece> {
        let engine = &self.engine;
        engine.audited(Op::LedgerExport, Commit::No, |_| {
            engine.make_durable()?;
            let head = engine.ledger.head();
            if from > head.next_seq {
                return Err(Error::invalid(format!(
                    "the ledger holds {} entries: {from} is past its end",
                    head.next_seq
                )));
            }
            Ok(LedgerPiece {
                vault: hex::encode(engine.vault_id),
                public_key: receipt::public_key_hex(&engine.receipt_key)?,
                first: from,
                lines: engine.ledger_lines(from)?,
                mark: engine.ledger_mark(head)?,
            })
        })
    }

    /// Appends to the ledger file at `path` the entries it lacks and a
    /// signed mark (see the module doc of the ledger); creates the file if
    /// there is none. `Corrupt` if the file is not a copy of this vault's
    /// ledger (another vault's, or altered).
    pub fn export_ledger(&self, path: impl AsRef<Path>) -> Result<LedgerExport> {
        let path = path.as_ref();
        let have = ledger_file_entries(path)?;
        let piece = self.ledger_since(have.saturating_sub(1)).map_err(|e| {
            if e.kind() == ErrorKind::InvalidArgument {
                Error::corrupt(format!(
                    "{} holds {have} entries, more than this vault's ledger: it is not this vault's ledger (or the vault was restored from a backup older than it: export to a new file)",
                    path.display()
                ))
            } else {
                e
            }
        })?;
        append_ledger(path, &piece)
    }
}

/// How many entries the ledger file at `path` holds (0 when it is not
/// there): where to ask a vault for a [`LedgerPiece`] from (one entry
/// back, so the piece overlaps the file and is checked against it).
pub fn ledger_file_entries(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(LedgerFile::read(path)?.entries.len() as u64),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Appends `piece` to the ledger file at `path`: the lines the file lacks,
/// then the mark, fsynced (the file is created if missing). The piece must
/// continue the file: same vault and key, and its lines agree with the
/// file's where they overlap (`Corrupt` otherwise). A last line cut short
/// by an interrupted export is dropped first.
pub fn append_ledger(path: &Path, piece: &LedgerPiece) -> Result<LedgerExport> {
    let existing = match std::fs::metadata(path) {
        Ok(_) => Some(LedgerFile::read(path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let (have, keep_bytes, last_hash) = match &existing {
        Some(file) => {
            if file.vault != piece.vault || file.public_key != piece.public_key {
                return Err(Error::corrupt(format!(
                    "{} is the ledger of another vault ({}), not of this one",
                    path.display(),
                    file.vault
                )));
            }
            (
                file.entries.len() as u64,
                file.whole_bytes,
                file.entries.last().map_or([0; 32], |e| e.hash),
            )
        }
        None => (0, 0, [0; 32]),
    };
    if piece.first > have {
        return Err(Error::invalid(format!(
            "the ledger piece starts at entry {} and {} holds {have}: entries would be missing",
            piece.first,
            path.display()
        )));
    }
    // Check the piece's lines (signatures, chain) by reading them as a
    // file of their own would be, from the file's last entry on.
    let mut seq = piece.first;
    let mut prev_hash = None;
    for line in &piece.lines {
        let value =
            receipt::verify_in(LEDGER_CONTEXT, "ledger line", line, Some(&piece.public_key))?;
        let hash = line_hash(&canonical(&value)?);
        if value.get("seq").and_then(Value::as_u64) != Some(seq) {
            return Err(Error::corrupt(format!(
                "ledger entry {seq} is out of order"
            )));
        }
        let prev = value
            .get("prev")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(p) = prev_hash {
            if prev != hex::encode(p) {
                return Err(Error::corrupt(format!("ledger entry {seq} does not chain")));
            }
        }
        if let Some(file) = &existing {
            match file.entries.get(seq as usize) {
                Some(e) if e.hash != hash => {
                    return Err(Error::corrupt(format!(
                        "{} differs from this vault's ledger at entry {seq}",
                        path.display()
                    )))
                }
                None if seq == have && prev != hex::encode(last_hash) => {
                    return Err(Error::corrupt(format!(
                        "{} differs from this vault's ledger before entry {seq}",
                        path.display()
                    )))
                }
                _ => {}
            }
        }
        prev_hash = Some(hash);
        seq += 1;
    }
    let total = seq.max(have);
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    // A last line cut short by a crash is dropped and written again.
    out.set_len(keep_bytes)
        .map_err(|e| Error::io(format!("truncating {}", path.display()), e))?;
    let mut append = String::new();
    for line in piece.lines.iter().skip((have - piece.first) as usize) {
        append.push_str(line);
        append.push('\n');
    }
    append.push_str(&piece.mark);
    append.push('\n');
    use std::io::Seek;
    out.seek(std::io::SeekFrom::End(0))
        .and_then(|_| out.write_all(append.as_bytes()))
        .and_then(|_| out.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    if existing.is_none() {
        crate::fsmode::sync_parent(path)?;
    }
    // Read back: the mark must agree with what the file now holds.
    let file = LedgerFile::read(path)?;
    Ok(LedgerExport {
        appended: total - have,
        entries: file.entries.len() as u64,
    })
}

/// One entry of a ledger file, checked.
#[derive(Debug, Clone)]
pub(crate) struct LedgerLine {
    pub seq: u64,
    pub hash: [u8; 32],
    /// The canonical line.
    pub line: String,
    pub value: Value,
}

/// A mark of a ledger file, checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    pub exported_at: i64,
    pub audit_next: u64,
}

/// A ledger file read and checked: every signature by one key, the chain
/// whole, every mark agreeing with the entries before it.
#[derive(Debug)]
pub(crate) struct LedgerFile {
    pub vault: String,
    pub public_key: String,
    pub entries: Vec<LedgerLine>,
    pub marks: Vec<Mark>,
    /// Bytes up to the end of the last whole line.
    pub whole_bytes: u64,
    /// The file ends in a line cut short (an export interrupted).
    pub torn: bool,
}

impl LedgerFile {
    pub fn read(path: &Path) -> Result<LedgerFile> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        LedgerFile::parse(&bytes, &path.display().to_string())
    }

    pub fn parse(bytes: &[u8], name: &str) -> Result<LedgerFile> {
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let torn = whole < bytes.len();
        let text = std::str::from_utf8(&bytes[..whole])
            .map_err(|_| Error::corrupt(format!("{name} is not UTF-8 text: not a ledger file")))?;
        let mut file = LedgerFile {
            vault: String::new(),
            public_key: String::new(),
            entries: Vec::new(),
            marks: Vec::new(),
            whole_bytes: whole as u64,
            torn,
        };
        for (n, line) in text.lines().enumerate() {
            let at = |m: String| Error::corrupt(format!("{name}, line {}: {m}", n + 1));
            if line.len() > MAX_LINE {
                return Err(at("a line longer than a ledger line can be".into()));
            }
            let key = (!file.public_key.is_empty()).then_some(file.public_key.as_str());
            let value = receipt::verify_in(LEDGER_CONTEXT, "ledger line", line, key)
                .map_err(|e| at(e.message().to_string()))?;
            let text_field = |f: &str| value.get(f).and_then(Value::as_str).map(str::to_string);
            let num = |f: &str| value.get(f).and_then(Value::as_u64);
            let vault = text_field("vault").ok_or_else(|| at("no vault".into()))?;
            if file.public_key.is_empty() {
                file.public_key = text_field("public_key").unwrap_or_default();
                file.vault = vault.clone();
            } else if vault != file.vault {
                return Err(at(format!(
                    "names vault {vault}, the file's first line {}",
                    file.vault
                )));
            }
            let last_hash = file.entries.last().map_or([0; 32], |e| e.hash);
            match value.get("kind").and_then(Value::as_str) {
                Some("entry") => {
                    let seq = num("seq").ok_or_else(|| at("no seq".into()))?;
                    if seq != file.entries.len() as u64 {
                        return Err(at(format!(
                            "entry {seq} where entry {} belongs: entries are missing or out of order",
                            file.entries.len()
                        )));
                    }
                    let prev = text_field("prev")
                        .and_then(|p| hex::decode(p).ok())
                        .and_then(|p| <[u8; 32]>::try_from(p).ok())
                        .ok_or_else(|| at("no prev".into()))?;
                    if prev != last_hash {
                        return Err(at(format!(
                            "entry {seq} does not chain to the entry before it"
                        )));
                    }
                    check_entry_fields(&value).map_err(at)?;
                    let line = canonical(&value)?;
                    file.entries.push(LedgerLine {
                        seq,
                        hash: line_hash(&line),
                        line,
                        value,
                    });
                }
                Some("mark") => {
                    let entries = num("entries").ok_or_else(|| at("no entries".into()))?;
                    let head = text_field("head").unwrap_or_default();
                    if entries != file.entries.len() as u64 || head != hex::encode(last_hash) {
                        return Err(at(format!(
                            "a mark for {entries} entries after {} entries, or naming another head",
                            file.entries.len()
                        )));
                    }
                    let exported_at = value
                        .get("exported_at")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| at("no exported_at".into()))?;
                    file.marks.push(Mark {
                        exported_at,
                        audit_next: num("audit_next").unwrap_or(0),
                    });
                }
                _ => return Err(at("neither an entry nor a mark".into())),
            }
        }
        if file.vault.is_empty() {
            return Err(Error::corrupt(format!("{name} holds no ledger line")));
        }
        Ok(file)
    }

    /// The latest mark.
    pub fn last_mark(&self) -> Option<Mark> {
        self.marks.last().copied()
    }
}

/// The fields a restore reads from an entry, checked for their types.
fn check_entry_fields(v: &Value) -> std::result::Result<(), String> {
    let ok = v.get("at").is_some_and(Value::is_i64)
        && v.get("op").is_some_and(Value::is_string)
        && v.get("subject")
            .is_some_and(|s| s.is_null() || s.is_string())
        && v.get("subject_erased").is_some_and(Value::is_boolean)
        && v.get("erasure_requested").is_some_and(Value::is_boolean)
        && v.get("audit_seq").is_some_and(Value::is_u64)
        && v.get("days")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().all(Value::is_i64))
        && v.get("records").and_then(Value::as_array).is_some_and(|r| {
            r.iter().all(|x| {
                x.get("record").is_some_and(Value::is_string)
                    && x.get("gone").is_some_and(Value::is_string)
            })
        });
    if ok {
        Ok(())
    } else {
        Err("an entry lacks a field or has one of the wrong type".into())
    }
}

/// What `ledger verify` found: the file is whole and signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSummary {
    /// The vault's id, hex.
    pub vault: String,
    /// The Ed25519 key every line is signed with, hex: compare it with the
    /// vault's receipt public key.
    pub public_key: String,
    pub entries: u64,
    pub marks: u64,
    /// When the latest export was made (Unix seconds).
    pub last_exported_at: Option<i64>,
}

/// Checks a ledger file: every line signed by the file's one key, the
/// chain whole, the marks agreeing with the entries. `public_key` (hex):
/// the key the checker trusts (the vault's receipt public key); without
/// it the file is only checked against its own key. `Corrupt` names the
/// first line at fault; a last line cut short is `Corrupt` too.
pub fn verify_ledger(path: impl AsRef<Path>, public_key: Option<&str>) -> Result<LedgerSummary> {
    let path = path.as_ref();
    let file = LedgerFile::read(path)?;
    if file.torn {
        return Err(Error::corrupt(format!(
            "{}: its last line is cut short (an export interrupted); the next `ledger export` to it mends it",
            path.display()
        )));
    }
    if let Some(key) = public_key {
        if !file.public_key.eq_ignore_ascii_case(key.trim()) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{} is signed with another key than the one given: not this vault's ledger",
                    path.display()
                ),
            ));
        }
    }
    Ok(LedgerSummary {
        vault: file.vault.clone(),
        public_key: file.public_key.clone(),
        entries: file.entries.len() as u64,
        marks: file.marks.len() as u64,
        last_exported_at: file.last_mark().map(|m| m.exported_at),
    })
}
