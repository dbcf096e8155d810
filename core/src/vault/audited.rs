//! The one audited path: every public operation runs through
//! [`Engine::audited`], which logs its audit entry with its outcome whatever
//! happens, and commits (by the handle's durability, or durably whatever the
//! mode) only on success. A failing audit append fails the operation: the
//! audit never silently misses one.
//!
//! Names the policy does not know are logged as `(unknown)` (the `*_term`
//! helpers): a caller's string could be anything, personal data too.

use crate::audit::Draft;
use crate::error::Result;
use crate::layout::KeyBytes;
use crate::options::Durability;

use super::subjects::normalize_identifier;
use super::Engine;

/// The operations the audit log names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    SetPolicy,
    CreateSubject,
    LinkIdentifier,
    FindSubject,
    Identifiers,
    SubjectState,
    Put,
    Get,
    Update,
    Delete,
    Records,
    EraseSubject,
    RecordEvent,
    SetFlag,
    GiveConsent,
    WithdrawConsent,
    SetLegalHold,
    SetRestricted,
    SetOptOutOfSale,
    Expire,
    RotateRootKey,
    RotateBlindIndex,
    /// An erasure or expiry the vault carried out by itself: the repair
    /// pass finishing an erasure, the purge ending a subject whose last
    /// retained record expired, a re-evaluation under a new policy.
    SystemErasure,
    VerifyAudit,
    Scan,
    /// One per subject whose records a scan disclosed (see `rights::scan`).
    ScanSubject,
    Export,
    OpenRequest,
    ExtendRequest,
    CloseRequest,
    Requests,
    PostMortemDirective,
    /// A call a server refused (outside the caller's grant): the call's
    /// name is the entry's detail, the outcome `Forbidden`.
    Refused,
    /// A compaction of the open vault's files (`Vault::compact_live`).
    Compact,
    /// A check of whether an erasure is complete (`Vault::erasure_completion`).
    ErasureCompletion,
    /// An export of the erasure ledger (`Vault::export_ledger`).
    LedgerExport,
    /// A backup of the vault (`Vault::backup`).
    Backup,
    /// A restore's re-application of the ledger (`Vault::restore`).
    Restore,
}

impl Op {
    /// The name stored in audit entries (a stored format: never renamed).
    pub fn name(self) -> &'static str {
        match self {
            Op::SetPolicy => "set_policy",
            Op::CreateSubject => "create_subject",
            Op::LinkIdentifier => "link_identifier",
            Op::FindSubject => "find_subject",
            Op::Identifiers => "identifiers",
            Op::SubjectState => "subject_state",
            Op::Put => "put",
            Op::Get => "get",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Records => "records",
            Op::EraseSubject => "erase_subject",
            Op::RecordEvent => "record_event",
            Op::SetFlag => "set_flag",
            Op::GiveConsent => "give_consent",
            Op::WithdrawConsent => "withdraw_consent",
            Op::SetLegalHold => "set_legal_hold",
            Op::SetRestricted => "set_restricted",
            Op::SetOptOutOfSale => "set_opt_out_of_sale",
            Op::Expire => "expire",
            Op::RotateRootKey => "rotate_root_key",
            Op::RotateBlindIndex => "rotate_blind_index",
            Op::SystemErasure => "system_erasure",
            Op::VerifyAudit => "verify_audit",
            Op::Scan => "scan",
            Op::ScanSubject => "scan_subject",
            Op::Export => "export",
            Op::OpenRequest => "open_request",
            Op::ExtendRequest => "extend_request",
            Op::CloseRequest => "close_request",
            Op::Requests => "requests",
            Op::PostMortemDirective => "post_mortem_directive",
            Op::Refused => "refused",
            Op::Compact => "compact",
            Op::ErasureCompletion => "erasure_completion",
            Op::LedgerExport => "ledger_export",
            Op::Backup => "backup",
            Op::Restore => "restore",
        }
    }
}

/// What [`Engine::audited`] does after a successful operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Commit {
    /// A read: nothing to commit.
    No,
    /// Durable now or at the next flush, by the handle's mode.
    Mode,
    /// Durable before returning, whatever the mode.
    Always,
}

/// An operation under way: its audit entry, which the body fills in, and
/// the inserts of a put, made durable with the entry through the store's
/// `persist` (in `Immediate` mode).
pub(super) struct Call<'a> {
    pub entry: Draft<'a>,
    persisted: Vec<(KeyBytes, Vec<u8>)>,
    /// A put's new entry the body left for the commit to write, with the
    /// audit entry, in one step (`Store::persist_new`).
    new_entry: Option<(KeyBytes, Vec<u8>)>,
}

impl Call<'_> {
    /// An insert the body made that a put's commit makes durable.
    pub fn persist(&mut self, key: KeyBytes, value: Vec<u8>) {
        self.persisted.push((key, value));
    }

    /// A new entry the body did not write: the put's commit writes it, if
    /// nothing is stored at `key`, durably with the audit entry.
    pub fn persist_new(&mut self, key: KeyBytes, value: Vec<u8>) {
        self.new_entry = Some((key, value));
    }
}

impl Engine {
    /// Runs `body` as the operation `op`: see the module doc.
    pub(super) fn audited<'a, T>(
        &self,
        op: Op,
        commit: Commit,
        body: impl FnOnce(&mut Call<'a>) -> Result<T>,
    ) -> Result<T> {
        self.audited_seq(op, commit, body).map(|(value, _)| value)
    }

    /// [`audited`](Self::audited), returning also the sequence number of
    /// the operation's audit entry (an erasure receipt names it).
    pub(super) fn audited_seq<'a, T>(
        &self,
        op: Op,
        commit: Commit,
        body: impl FnOnce(&mut Call<'a>) -> Result<T>,
    ) -> Result<(T, u64)> {
        let mut call = Call {
            entry: Draft::new(op.name(), self.now()),
            persisted: Vec::new(),
            new_entry: None,
        };
        let result = match (commit, self.refuse_writes.get()) {
            (Commit::Mode | Commit::Always, Some(why)) => Err(crate::error::Error::corrupt(
                format!("writes are refused: {why}"),
            )),
            _ => body(&mut call),
        };
        call.entry.outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind().name(),
        };
        if result.is_ok()
            && commit == Commit::Mode
            && self.durability == Durability::Immediate
            && !(call.persisted.is_empty() && call.new_entry.is_none())
        {
            // A put: its inserts and its entry, durable together.
            let mut note = Vec::new();
            let seq =
                self.audit
                    .append_keeping(&call.entry, self.actor().as_deref(), Some(&mut note))?;
            let persisted = match &call.new_entry {
                None => self.persist(&call.persisted, &note),
                Some((key, value)) => self
                    .store
                    .persist_new(key, value, &note, &|| self.audit.write())
                    .and_then(|written| match written {
                        true => Ok(()),
                        // Another put took the id between the body's
                        // choice and now (see `Vault::put`): nothing was
                        // written; the caller puts again.
                        false => Err(crate::error::Error::internal(
                            "the record id was taken by another put meanwhile: put again",
                        )),
                    }),
            };
            if let Err(e) = persisted {
                let subject = call.entry.subject;
                return Err(self.undo_put(op, subject, &call.persisted, seq, e));
            }
            return result.map(|value| (value, seq));
        }
        let appended = self.audit.append(&call.entry, self.actor().as_deref());
        let value = result?;
        let seq = appended?;
        match commit {
            Commit::No => {}
            Commit::Mode => self.commit()?,
            Commit::Always => self.make_durable()?,
        }
        Ok((value, seq))
    }

    /// A put whose inserts could not be made durable: they are taken out of
    /// the store again (they are new keys: nothing was overwritten; the
    /// put's stripe is free by now, so it is taken again), and a
    /// second entry says the one at `seq` failed, so the log does not claim
    /// a put the caller was told failed. (Whether the journal frame reached
    /// the disk is unknown after a failed write: a crash may bring the put
    /// back at the next open, as with any store whose write failed late.)
    fn undo_put(
        &self,
        op: Op,
        subject: Option<crate::ids::SubjectId>,
        inserts: &[(KeyBytes, Vec<u8>)],
        seq: u64,
        error: crate::error::Error,
    ) -> crate::error::Error {
        for (key, _) in inserts {
            let _ = self.store.remove(key);
        }
        if let Some(subject) = subject {
            // Stored counts may have counted the record: they are rebuilt
            // from the records at the subject's next erasure.
            let _stripe = self.stripe(&subject);
            let _ = self
                .store
                .remove(&crate::layout::Key::Counts(subject).encode());
            self.forget_seqs(&subject);
        }
        let mut entry = self.draft(op);
        entry.outcome = error.kind().name();
        entry.detail = Some(format!("entry {seq} undone: not made durable").into());
        let _ = self.audit.append(&entry, self.actor().as_deref());
        error
    }

    /// Before an irreversible step (a key's destruction): the operation's
    /// entry as it stands, outcome `begun`, made durable. A crash after the
    /// key is gone still leaves the operation in the log; its own entry
    /// (`ok`, or the error) follows as usual.
    pub(super) fn log_begun(&self, entry: &Draft<'_>) -> Result<()> {
        let mut begun = entry.clone();
        begun.outcome = "begun";
        self.audit.append(&begun, self.actor().as_deref())?;
        self.make_durable()
    }

    /// An erasure the vault carries out by itself (`why` says which), as
    /// an operation of its own: `system_erasure`, its `begun` entry durable
    /// before `body` destroys anything. Not refused while writes are: it
    /// only ever destroys.
    pub(super) fn system_erasure(
        &self,
        subject: &crate::ids::SubjectId,
        why: &'static str,
        body: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let mut entry = self.draft(Op::SystemErasure);
        entry.subject = Some(*subject);
        entry.detail = Some(why.into());
        self.log_begun(&entry)?;
        let result = body();
        entry.outcome = match &result {
            Ok(()) => "ok",
            Err(e) => e.kind().name(),
        };
        self.audit.append(&entry, self.actor().as_deref())?;
        result?;
        self.make_durable()
    }

    /// Logs an entry that is not an operation of its own (a scan's
    /// disclosure of one subject's records), outcome `ok`.
    pub(super) fn log(&self, mut entry: Draft<'_>) -> Result<u64> {
        entry.outcome = "ok";
        self.audit.append(&entry, self.actor().as_deref())
    }

    /// A fresh audit entry for `op`, stamped with the time.
    pub(super) fn draft<'a>(&self, op: Op) -> Draft<'a> {
        Draft::new(op.name(), self.now())
    }

    /// A purpose for the audit log: the name if the policy knows it, else
    /// `(unknown)`.
    pub(super) fn purpose_term<'a>(&self, name: &'a str) -> &'a str {
        known_term(self.policy().purpose(name).is_ok(), name)
    }

    pub(super) fn category_term<'a>(&self, name: &'a str) -> &'a str {
        known_term(self.policy().category(name).is_ok(), name)
    }

    pub(super) fn event_term<'a>(&self, name: &'a str) -> &'a str {
        known_term(self.policy().events().contains(name), name)
    }

    pub(super) fn flag_term<'a>(&self, name: &'a str) -> &'a str {
        known_term(self.policy().flags().contains(name), name)
    }

    /// Identifier kinds are checked names (`normalize_identifier`).
    pub(super) fn kind_term<'a>(&self, kind: &'a str) -> &'a str {
        known_term(normalize_identifier(kind, "x").is_ok(), kind)
    }
}

/// `name` if it is known, else `(unknown)`.
pub(super) fn known_term(known: bool, name: &str) -> &str {
    if known {
        name
    } else {
        "(unknown)"
    }
}
