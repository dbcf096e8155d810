//! The data subject's rights and the vault's accountability: signed erasure
//! receipts, the audit chain, `scan` for analytics, export (access and
//! portability), the request ledger, post-mortem directives.

use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use super::*;
use crate::audit::{AuditEntry, AuditReport};
use crate::ids::RequestId;
use crate::receipt;

/// The category a post-mortem directive is stored in.
pub const POST_MORTEM_CATEGORY: &str = "post_mortem_directive";

/// The kinds of data-subject request the ledger tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

impl Vault {
    /// Answers an erasure request (see the crate docs for what is erased
    /// and what is kept) and returns the receipt, signed with the vault's
    /// receipt key and naming the erasure's audit sequence number.
    pub fn erase_subject(&self, subject: &SubjectId) -> Result<ErasureReceipt> {
        let inner = &self.inner;
        let mut entry = inner.entry("erase_subject");
        entry.subject = Some(*subject);
        let mut receipt = match self.erase_unsigned(subject) {
            Ok(r) => r,
            Err(e) => return inner.finish(entry, Err(e), Commit::No),
        };
        inner.subjects_changed();
        let retained: u64 = receipt.retained.iter().map(|r| r.records).sum();
        entry.detail =
            Some(format!("erased {} retained {}", receipt.records_erased(), retained).into());
        entry.outcome = "ok";
        receipt.audit_seq = inner.append_audit(&entry)?;
        inner.sign(&mut receipt)?;
        inner.make_durable()?;
        // The dead ciphertext goes in the background.
        Inner::kick_purge(&self.inner);
        Ok(receipt)
    }

    /// The public half of the key that signs this vault's erasure receipts
    /// (Ed25519, 64 hex characters): give it to auditors.
    pub fn receipt_public_key(&self) -> Result<String> {
        receipt::public_key_hex(&self.inner.receipt_key)
    }

    /// Walks the audit chain from its first entry. `Corrupt`, naming the
    /// first broken entry, if any entry was altered, removed or reordered.
    pub fn verify_audit(&self) -> Result<AuditReport> {
        let inner = &self.inner;
        let entry = inner.entry("verify_audit");
        let result = inner.audit.verify(&inner.tree);
        inner.finish(entry, result, Commit::No)
    }

    /// Audit entries (all, or those naming `subject`), oldest first.
    pub fn audit_entries(&self, subject: Option<&SubjectId>) -> Result<Vec<AuditEntry>> {
        let inner = &self.inner;
        inner.audit.entries(&inner.tree, |e| {
            subject.is_none() || e.subject.as_ref() == subject
        })
    }

    /// Every live record of `category` readable for `purpose`, as a lazy
    /// iterator: records of erased, expired, restricted (unless the purpose
    /// is `legal_claims`) and opted-out (for a sale purpose) subjects, and of
    /// consent-based categories without consent for the purpose, are
    /// skipped. It walks the records in id order, holding a few at a time,
    /// and logs in the audit chain, once per subject, that its records of
    /// the category were read for the purpose.
    ///
    /// `InvalidArgument` for an unknown category; `PurposeDenied` for a
    /// purpose the category does not allow.
    pub fn scan(&self, category: &str, purpose: &str) -> Result<Scan> {
        let inner = &self.inner;
        let mut entry = inner.entry("scan");
        entry.detail = Some(inner.category_term(category).into());
        entry.purpose = Some(inner.purpose_term(purpose));
        let result = (|| -> Result<Scan> {
            let policy = inner.policy();
            let cat = policy.category(category)?;
            if !cat.allows(purpose) {
                return Err(Error::new(
                    ErrorKind::PurposeDenied,
                    format!(
                        "category {:?} does not allow purpose {:?}",
                        cat.name,
                        truncate_for_message(purpose)
                    ),
                ));
            }
            Ok(Scan {
                inner: self.inner.clone(),
                iter: inner.tree.scan_prefix([RECORD]),
                category: category.to_string(),
                purpose: purpose.to_string(),
                policy: policy.clone(),
                last_disclosed: None,
            })
        })();
        inner.finish(entry, result, Commit::No)
    }

    /// The subject's data as one JSON document, for an access or
    /// portability request: identifiers, states, events, flags, the consent
    /// ledger, every live record (data as JSON when it is JSON, otherwise
    /// base64) with its category, purposes, legal basis, retention rule in
    /// words and expiry, the disclosures (reads) from the audit log, and the
    /// subject's requests. Schema: `schemas/export.schema.json`.
    ///
    /// An erased subject is `Erased`. A subject that asked for erasure gets
    /// what is retained, marked `"retained_only": true`.
    pub fn export(&self, subject: &SubjectId) -> Result<Value> {
        let inner = &self.inner;
        let mut entry = inner.entry("export");
        entry.subject = Some(*subject);
        let result = self.export_document(subject);
        inner.finish(entry, result, Commit::No)
    }

    fn export_document(&self, subject: &SubjectId) -> Result<Value> {
        let inner = &self.inner;
        let policy = inner.policy();
        // Records and identifiers under one key: retry if a rotation
        // replaces it between our reads.
        for _ in 0..16 {
            let live = inner.live_subject(subject)?;
            let key = inner.subject_key(subject, live.key)?;
            let identifiers = inner.open_identifiers(subject, &key, &live.identifiers)?;
            let mut records = Vec::new();
            let mut rotated = false;
            for info in self.records_unaudited(subject)? {
                let r = match inner.live_record(&info.id) {
                    Ok(r) => r,
                    Err(_) => continue, // gone meanwhile
                };
                if r.subject_key_id != live.key.key_id {
                    rotated = true;
                    break;
                }
                let record_key = match inner.record_key(subject, live.key, r.day) {
                    Ok(k) => k,
                    Err(e) if e.kind() == ErrorKind::Expired => continue,
                    Err(e) if e.kind() == ErrorKind::Erased => {
                        rotated = true;
                        break;
                    }
                    Err(e) => return Err(e),
                };
                let data = crypto::open(
                    &record_key,
                    &record_aad(&inner.vault_id, &info.id, &r),
                    &r.sealed,
                    &format!("record {}", info.id),
                )?;
                let (encoding, value) = match serde_json::from_slice::<Value>(&data) {
                    Ok(v) => ("json", v),
                    Err(_) => (
                        "base64",
                        Value::String(base64::engine::general_purpose::STANDARD.encode(&data[..])),
                    ),
                };
                let cat = policy.category(&r.category)?;
                records.push(json!({
                    "id": info.id,
                    "category": r.category,
                    "description": cat.description,
                    "purposes": cat.purposes,
                    "legal_basis": cat.legal_basis.name(),
                    "retention": retention_words(cat),
                    "expires_at": info.expires_at,
                    "created_at": r.created_at,
                    "updated_at": r.updated_at,
                    "version": r.version,
                    "encoding": encoding,
                    "data": value,
                }));
            }
            if rotated {
                continue;
            }
            let disclosures: Vec<Value> = inner
                .audit
                .entries(&inner.tree, |e| {
                    e.subject.as_ref() == Some(subject)
                        && e.outcome == "ok"
                        && matches!(e.op.as_str(), "get" | "scan_subject" | "export")
                })?
                .into_iter()
                .map(|e| {
                    json!({
                        "seq": e.seq,
                        "time": e.time,
                        "op": e.op,
                        "record": e.record,
                        "purpose": e.purpose,
                        "actor": e.actor,
                    })
                })
                .collect();
            let requests: Vec<RequestInfo> = self
                .requests_unaudited(None)?
                .into_iter()
                .filter(|r| r.subject == *subject)
                .collect();
            let consents: Vec<Value> = live
                .consents
                .iter()
                .map(|c| {
                    json!({
                        "purpose": c.purpose,
                        "given": c.given,
                        "at": c.at,
                        "recorded_at": c.recorded_at,
                    })
                })
                .collect();
            return Ok(json!({
                "export_version": 1,
                "vault": hex::encode(inner.vault_id),
                "subject": subject,
                "exported_at": inner.now(),
                "created_at": live.created_at,
                "retained_only": live.erasure_requested().is_some(),
                "identifiers": identifiers
                    .iter()
                    .map(|(k, v)| json!({"kind": k, "value": v}))
                    .collect::<Vec<_>>(),
                "states": {
                    "restricted": live.restricted,
                    "legal_hold": live.legal_hold,
                    "opt_out_of_sale": live.opt_out_of_sale,
                    "erasure_requested": live.erasure_requested(),
                },
                "events": live.events,
                "flags": live.flags,
                "consents": consents,
                "records": records,
                "disclosures": disclosures,
                "requests": requests,
            }));
        }
        Err(Error::internal(format!(
            "subject {subject} kept changing while being exported"
        )))
    }

    /// Opens a data-subject request received at `received`; it is due one
    /// calendar month later (31 January → 28/29 February, same time of day).
    pub fn open_request(
        &self,
        subject: &SubjectId,
        kind: &str,
        received: i64,
    ) -> Result<RequestId> {
        let inner = &self.inner;
        let mut entry = inner.entry("open_request");
        entry.subject = Some(*subject);
        let result = (|| -> Result<RequestId> {
            let kind = RequestKind::parse(kind)?;
            retention::check_event_time(received, "received")?;
            if inner.subject_entry(subject)?.is_none() {
                return Err(Error::not_found(format!("no subject {subject}")));
            }
            let due = add_months(received, 1)?;
            let id = RequestId::random()?;
            let request = RequestEntry {
                subject: *subject,
                kind: kind.name().to_string(),
                received,
                due,
                extension: None,
                closed_at: None,
            };
            inner
                .tree
                .insert(request_key(&id), codec::encode(&request)?)?;
            Ok(id)
        })();
        if let Ok(id) = &result {
            entry.detail = Some(format!("request {id} {kind}").into());
        }
        inner.finish(entry, result, Commit::Mode)
    }

    /// Extends a request, once, by two more months (due three calendar
    /// months after receipt), with the reason the subject must be told.
    pub fn extend_request(&self, request: &RequestId, reason: &str) -> Result<()> {
        let inner = &self.inner;
        let mut entry = inner.entry("extend_request");
        entry.detail = Some(format!("request {request}").into());
        let result = (|| -> Result<SubjectId> {
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(Error::invalid("an extension needs a reason"));
            }
            if reason.len() > MAX_REASON_BYTES {
                return Err(Error::invalid(format!(
                    "an extension reason may hold at most {MAX_REASON_BYTES} bytes"
                )));
            }
            let _guard = lock(&inner.blind_lock);
            let mut req = inner.request(request)?;
            if req.closed_at.is_some() {
                return Err(Error::invalid(format!("request {request} is closed")));
            }
            if req.extension.is_some() {
                return Err(Error::invalid(format!(
                    "request {request} was already extended: an extension is granted once"
                )));
            }
            let live = inner.live_subject(&req.subject)?;
            let key = inner.subject_key(&req.subject, live.key)?;
            let sealed = crypto::seal(
                &derive_reason_key(&key, &inner.vault_id),
                &reason_aad(&inner.vault_id, request),
                reason.as_bytes(),
            )?;
            req.due = add_months(req.received, 3)?;
            req.extension = Some(Extension {
                at: inner.now(),
                reason: sealed,
            });
            inner
                .tree
                .insert(request_key(request), codec::encode(&req)?)?;
            Ok(req.subject)
        })();
        if let Ok(s) = &result {
            entry.subject = Some(*s);
        }
        inner.finish(entry, result.map(|_| ()), Commit::Mode)
    }

    /// Closes a request, answered at `at`.
    pub fn close_request(&self, request: &RequestId, at: i64) -> Result<()> {
        let inner = &self.inner;
        let mut entry = inner.entry("close_request");
        entry.detail = Some(format!("request {request}").into());
        let result = (|| -> Result<SubjectId> {
            retention::check_event_time(at, "closing")?;
            let _guard = lock(&inner.blind_lock);
            let mut req = inner.request(request)?;
            if req.closed_at.is_some() {
                return Err(Error::invalid(format!(
                    "request {request} is already closed"
                )));
            }
            if at < req.received {
                return Err(Error::invalid(format!(
                    "request {request} cannot be closed before it was received"
                )));
            }
            req.closed_at = Some(at);
            inner
                .tree
                .insert(request_key(request), codec::encode(&req)?)?;
            Ok(req.subject)
        })();
        if let Ok(s) = &result {
            entry.subject = Some(*s);
        }
        inner.finish(entry, result.map(|_| ()), Commit::Mode)
    }

    /// The request ledger, oldest first by receipt. With `overdue_at`: only
    /// the requests still open whose due time is before it.
    pub fn requests(&self, overdue_at: Option<i64>) -> Result<Vec<RequestInfo>> {
        let inner = &self.inner;
        let entry = inner.entry("requests");
        let result = self.requests_unaudited(overdue_at);
        inner.finish(entry, result, Commit::No)
    }

    fn requests_unaudited(&self, overdue_at: Option<i64>) -> Result<Vec<RequestInfo>> {
        let inner = &self.inner;
        let mut out = Vec::new();
        for item in inner.tree.scan_prefix([REQUEST]) {
            let (k, v) = item?;
            let id = RequestId::from_bytes(&k[1..])?;
            let req: RequestEntry = codec::decode(&v, "request entry")?;
            if let Some(t) = overdue_at {
                if req.closed_at.is_some() || req.due >= t {
                    continue;
                }
            }
            let extension_reason = match &req.extension {
                None => None,
                Some(ext) => inner.open_reason(&req.subject, &id, &ext.reason),
            };
            out.push(RequestInfo {
                id,
                subject: req.subject,
                kind: RequestKind::parse(&req.kind)
                    .map_err(|_| Error::corrupt(format!("request {id} has an unknown kind")))?,
                received: req.received,
                due: req.due,
                extended: req.extension.is_some(),
                extension_reason,
                closed_at: req.closed_at,
            });
        }
        out.sort_by_key(|r| (r.received, r.id));
        Ok(out)
    }

    /// Leaves (or replaces) the subject's post-mortem directive, stored as a
    /// record of category `post_mortem_directive`. Recording the `deceased`
    /// event carries it out.
    pub fn set_post_mortem_directive(
        &self,
        subject: &SubjectId,
        directive: &Directive,
    ) -> Result<RecordId> {
        let data = match directive {
            Directive::Erase => json!({"directive": "erase"}),
            Directive::HandOver { to } => {
                let to = to.trim();
                if to.is_empty() || to.len() > MAX_IDENTIFIER_BYTES {
                    return Err(Error::invalid(
                        "a hand-over directive names the person (1 to 1024 bytes)",
                    ));
                }
                json!({"directive": "hand_over", "to": to})
            }
        };
        let data = Zeroizing::new(serde_json::to_vec(&data).expect("JSON serializes"));
        let existing = self
            .records_unaudited(subject)?
            .into_iter()
            .filter(|r| r.category == POST_MORTEM_CATEGORY)
            .max_by_key(|r| (r.created_at, r.id));
        match existing {
            Some(r) => {
                self.update(&r.id, &data)?;
                Ok(r.id)
            }
            None => self.put(subject, POST_MORTEM_CATEGORY, &data),
        }
    }

    /// After `deceased` is recorded: carries out the subject's directive,
    /// if it left one. Erasure follows the erasure-request rules (and is
    /// skipped under legal hold); a hand-over restricts the subject.
    pub(super) fn carry_out_post_mortem(&self, subject: &SubjectId) -> Result<()> {
        let inner = &self.inner;
        let Some(info) = self
            .records_unaudited(subject)?
            .into_iter()
            .filter(|r| r.category == POST_MORTEM_CATEGORY)
            .max_by_key(|r| (r.created_at, r.id))
        else {
            return Ok(());
        };
        // Read for the directive's own purpose; a subject restricted since
        // (a hand-over already carried out) only for legal claims.
        let record = match self.get(&info.id, "post_mortem") {
            Err(e) if e.kind() == ErrorKind::Restricted => {
                self.get(&info.id, policy::LEGAL_CLAIMS)?
            }
            other => other?,
        };
        let directive: Value = serde_json::from_slice(&record.data)
            .map_err(|_| Error::corrupt("the post-mortem directive is not JSON"))?;
        let mut entry = inner.entry("post_mortem_directive");
        entry.subject = Some(*subject);
        entry.record = Some(info.id);
        match directive.get("directive").and_then(Value::as_str) {
            Some("erase") => {
                entry.detail = Some("erase".into());
                let live = inner.live_subject(subject)?;
                if live.legal_hold {
                    return inner.finish(
                        entry,
                        Err(Error::new(
                            ErrorKind::LegalHold,
                            format!("subject {subject} is under legal hold: its directive waits"),
                        )),
                        Commit::No,
                    );
                }
                inner.finish(entry, Ok(()), Commit::No)?;
                self.erase_subject(subject).map(|_| ())
            }
            Some("hand_over") => {
                entry.detail = Some("hand_over".into());
                self.set_restricted(subject, true)?;
                inner.finish(entry, Ok(()), Commit::Mode)
            }
            _ => Err(Error::corrupt(
                "the post-mortem directive names no known directive",
            )),
        }
    }
}

/// An iterator over the records of a category readable for a purpose; see
/// [`Vault::scan`]. Owns a handle on the vault, so it may outlive the
/// borrow it came from (and cross into Python).
pub struct Scan {
    inner: Arc<Inner>,
    iter: sled::Iter,
    category: String,
    purpose: String,
    policy: Arc<Policy>,
    last_disclosed: Option<SubjectId>,
}

impl std::fmt::Debug for Scan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("category", &self.category)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

impl Scan {
    /// The subject's live state through the vault's subject cache (see
    /// `Inner::subject_for_record`); `None` for an erased one.
    fn subject(&self, id: &SubjectId, record_key_id: u64) -> Result<Option<Arc<LiveSubject>>> {
        match self.inner.subject_for_record(id, record_key_id) {
            Ok(live) => Ok(Some(live)),
            Err(e) if matches!(e.kind(), ErrorKind::Erased | ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next record, or `None` to skip this one.
    fn try_record(&mut self, k: &[u8], v: sled::IVec) -> Result<Option<Record>> {
        let id = RecordId::from_bytes(&k[1..])?;
        let policy = self.policy.clone();
        let category = policy.category(&self.category)?;
        let mut stored = v;
        for _ in 0..8 {
            // Decoded in place: records of other categories cost no copy.
            let RecordEntryView::Live(r) = decode_record_view(&stored)? else {
                return Ok(None);
            };
            if r.category != self.category {
                return Ok(None);
            }
            let Some(subject) = self.subject(&r.subject, r.subject_key_id)? else {
                return Ok(None);
            };
            if check_read_allowed(&policy, category, &subject, &r.subject, &self.purpose).is_err() {
                return Ok(None);
            }
            if subject.key.key_id != r.subject_key_id {
                // Rotated since: read both again (the rotation emptied the
                // subject cache).
                match self.inner.tree.get(layout::record_key(&id))? {
                    Some(fresh) => stored = fresh,
                    None => return Ok(None),
                }
                continue;
            }
            let key = match self.inner.record_key(&r.subject, subject.key, r.day) {
                Ok(key) => key,
                Err(e) if matches!(e.kind(), ErrorKind::Expired | ErrorKind::Erased) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            let data = crypto::open(
                &key,
                &record_aad_view(&self.inner.vault_id, &id, &r),
                r.sealed,
                "record",
            )?;
            // One disclosure entry per subject per scan: a subject's records
            // are consecutive (their ids start with its id), so this is the
            // first of a run. Logging every record would double a scan's
            // cost for no more information than "this subject's records of
            // this category were read for this purpose, then".
            if self.last_disclosed != Some(r.subject) {
                let mut entry = self.inner.entry("scan_subject");
                entry.subject = Some(r.subject);
                entry.purpose = Some(&self.purpose);
                entry.detail = Some(self.category.as_str().into());
                entry.outcome = "ok";
                self.inner.append_audit(&entry)?;
                self.last_disclosed = Some(r.subject);
            }
            return Ok(Some(Record {
                id,
                subject: r.subject,
                category: r.category.to_string(),
                version: r.version,
                created_at: r.created_at,
                updated_at: r.updated_at,
                data,
            }));
        }
        Ok(None)
    }
}

impl Iterator for Scan {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            let (k, v) = match self.iter.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            match self.try_record(&k, v) {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Inner {
    fn sign(&self, receipt: &mut ErasureReceipt) -> Result<()> {
        let value = serde_json::to_value(&*receipt)
            .map_err(|e| Error::internal(format!("serializing a receipt: {e}")))?;
        let signed = receipt::sign(&self.receipt_key, value)?;
        let field = |name: &str| {
            signed
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Error::internal("a signed receipt lacks its signature"))
        };
        receipt.public_key = field("public_key")?;
        receipt.signature = field("signature")?;
        Ok(())
    }

    fn request(&self, id: &RequestId) -> Result<RequestEntry> {
        match self.tree.get(request_key(id))? {
            None => Err(Error::not_found(format!("no request {id}"))),
            Some(v) => codec::decode(&v, "request entry"),
        }
    }

    /// The extension reason, if the subject (and so its key) still exists.
    fn open_reason(&self, subject: &SubjectId, id: &RequestId, sealed: &[u8]) -> Option<String> {
        let Ok(live) = self.live_subject(subject) else {
            return None;
        };
        let key = self.subject_key(subject, live.key).ok()?;
        let plain = crypto::open(
            &derive_reason_key(&key, &self.vault_id),
            &reason_aad(&self.vault_id, id),
            sealed,
            "extension reason",
        )
        .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

pub(crate) fn derive_reason_key(subject_key: &SecretKey, vault_id: &[u8; 16]) -> SecretKey {
    derive_key(subject_key.expose(), vault_id, b"request reason v1")
}

pub(crate) fn reason_aad(vault_id: &[u8; 16], id: &RequestId) -> Vec<u8> {
    let mut aad = b"sv request reason v1".to_vec();
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// The category's retention rules in words.
pub(crate) fn retention_words(category: &policy::Category) -> String {
    if category.retention.is_empty() {
        return "no retention period: kept until erased".to_string();
    }
    category
        .retention
        .iter()
        .map(|r| r.describe())
        .collect::<Vec<_>>()
        .join("; otherwise ")
}

/// `at` plus `months` calendar months, in UTC (clamped to the month's end).
fn add_months(at: i64, months: u16) -> Result<i64> {
    retention::add_span(
        at,
        policy::CalendarSpan {
            amount: months as u32,
            unit: policy::SpanUnit::Months,
        },
    )
    .ok_or_else(|| Error::invalid(format!("{at} plus {months} months is out of range")))
}
