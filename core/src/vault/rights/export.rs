//! `export(subject)`: everything the vault holds about a subject as one
//! JSON document, for an access or portability request (schema:
//! `schemas/export.schema.json`). The subject's stripe is held throughout,
//! so records and identifiers come from one state of the subject.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::{ErrorKind, Result};
use crate::ids::SubjectId;
use crate::policy;
use crate::types::RequestInfo;

use super::super::audited::{Commit, Op};
use super::super::read::Reader;
use super::super::{Engine, Vault};

impl Vault {
    /// The subject's data as one JSON document, for an access or
    /// portability request: identifiers, states, events, flags, the consent
    /// ledger, every live record (data as JSON when it is JSON, otherwise
    /// base64) with its category, purposes, legal basis, retention rule in
    /// words and expiry, the disclosures (reads) from the audit log, and the
    /// subject's requests. Schema: `schemas/export.schema.json`.
    ///
    /// An erased subject is `Erased`. A subject that asked for erasure gets
    /// what is retained, marked `"retained_only": true`. A restricted
    /// subject, or one that asked for erasure, is exported only to a
    /// privileged handle (`Restricted` otherwise).
    pub fn export(&self, subject: &SubjectId) -> Result<Value> {
        let engine = &self.engine;
        engine.audited(Op::Export, Commit::No, |call| {
            call.entry.subject = Some(*subject);
            engine.export_document(subject)
        })
    }
}

impl Engine {
    fn export_document(&self, subject: &SubjectId) -> Result<Value> {
        let policy = self.policy();
        let _stripe = self.stripe(subject);
        let live = self.live_subject(subject)?;
        // What a restricted subject, or one that asked for erasure, still
        // has is for a privileged handle only (as its identifiers are).
        self.check_processing_allowed(subject, &live.facts)?;
        let identifiers = self.open_identifiers(
            subject,
            &self.identifiers_key(subject, live.key)?,
            &live.identifiers,
        )?;
        let mut records = Vec::new();
        for info in self.records_unaudited(subject)? {
            let record = match self.read_record(&info.id, None, &policy, Reader::Subject) {
                Ok(r) => r,
                // Its day ended since it was listed.
                Err(e) if e.kind() == ErrorKind::Expired => continue,
                Err(e) => return Err(e),
            };
            let (encoding, value) = match serde_json::from_slice::<Value>(&record.data) {
                Ok(v) => ("json", v),
                Err(_) => (
                    "base64",
                    Value::String(
                        base64::engine::general_purpose::STANDARD.encode(&record.data[..]),
                    ),
                ),
            };
            let cat = policy.category(&record.category)?;
            records.push(json!({
                "id": info.id,
                "category": record.category,
                "description": cat.description,
                "purposes": cat.purposes,
                "legal_basis": cat.legal_basis.name(),
                "retention": retention_words(cat),
                "expires_at": info.expires_at,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
                "version": record.version,
                "encoding": encoding,
                "data": value,
            }));
        }
        let disclosures: Vec<Value> = self
            .audit
            .entries(|e| {
                e.subject.as_ref() == Some(subject)
                    && e.outcome == "ok"
                    && [Op::Get, Op::ScanSubject, Op::Export]
                        .iter()
                        .any(|op| op.name() == e.op)
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
        let facts = &live.facts;
        let consents: Vec<Value> = facts
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
        Ok(json!({
            "export_version": 1,
            "vault": hex::encode(self.vault_id),
            "subject": subject,
            "exported_at": self.now(),
            "created_at": live.created_at,
            "retained_only": facts.erasure_requested().is_some(),
            "identifiers": identifiers
                .iter()
                .map(|(k, v)| json!({"kind": k, "value": v}))
                .collect::<Vec<_>>(),
            "states": {
                "restricted": facts.restricted,
                "legal_hold": facts.legal_hold,
                "opt_out_of_sale": facts.opt_out_of_sale,
                "erasure_requested": facts.erasure_requested(),
            },
            "events": facts.events,
            "flags": facts.flags,
            "consents": consents,
            "records": records,
            "disclosures": disclosures,
            "requests": requests,
        }))
    }
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
