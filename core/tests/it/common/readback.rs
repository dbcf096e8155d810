//! What the compatibility fixture (`core/tests/fixtures/vault-0.1`) must
//! read back as: shared by the program that wrote it
//! (`core/examples/make_fixture.rs`) and the test that opens it
//! (`core/tests/it/fixture.rs`), so both read the same way.
#![allow(dead_code)]

use serde_json::{json, Map, Value};
use shredvault::{RecordId, Stats, SubjectId, Vault};

/// Purposes every record is read for.
pub const PURPOSES: [&str; 6] = [
    "account_admin",
    "security",
    "marketing",
    "legal_claims",
    "certificate_validation",
    "post_mortem",
];

/// Identifiers looked up.
pub const FINDS: [(&str, &str); 6] = [
    ("email", "alice@example.com"),
    ("customer_no", "C-1001"),
    ("email", "bob@example.com"),
    ("email", "carol@example.com"),
    ("customer_no", "C-1004"),
    ("email", "frank@example.com"),
];

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A result as JSON: the value, or `{"error": kind}`.
fn outcome(r: Result<Value, shredvault::Error>) -> Value {
    match r {
        Ok(v) => v,
        Err(e) => json!({"error": e.kind().name()}),
    }
}

/// The counts of `stats` that do not depend on file sizes.
pub fn stats(stats: &Stats) -> Value {
    json!({
        "subjects_live": stats.subjects_live,
        "subjects_erased": stats.subjects_erased,
        "records_live": stats.records_live,
        "records_gone": stats.records_gone,
        "identifiers_indexed": stats.identifiers_indexed,
        "retention_days": stats.retention_days,
    })
}

/// Every record read for every purpose, every subject's records, state,
/// identifiers and export (without its time and disclosures), the
/// identifiers found, the request ledger, the vault's id and receipt key.
pub fn read_back(v: &Vault, subjects: &[SubjectId], records: &[RecordId]) -> Value {
    let mut reads = Map::new();
    for r in records {
        let mut by_purpose = Map::new();
        for p in PURPOSES {
            by_purpose.insert(
                p.to_string(),
                outcome(v.get(r, p).map(|rec| {
                    json!({
                        "subject": rec.subject.to_string(),
                        "category": rec.category,
                        "version": rec.version,
                        "created_at": rec.created_at,
                        "updated_at": rec.updated_at,
                        "data_hex": hex(&rec.data),
                    })
                })),
            );
        }
        reads.insert(r.to_string(), Value::Object(by_purpose));
    }
    let mut per_subject = Map::new();
    for s in subjects {
        let mut exported = outcome(v.export(s));
        if let Some(doc) = exported.as_object_mut() {
            doc.remove("exported_at");
            doc.remove("disclosures");
        }
        per_subject.insert(
            s.to_string(),
            json!({
                "records": outcome(v.records(s).map(|r| serde_json::to_value(r).unwrap())),
                "state": outcome(v.subject_state(s).map(|st| serde_json::to_value(st).unwrap())),
                "identifiers": outcome(v.identifiers(s).map(|i| serde_json::to_value(i).unwrap())),
                "export": exported,
            }),
        );
    }
    let finds: Vec<Value> = FINDS
        .iter()
        .map(|(k, val)| {
            json!({"kind": k, "value": val,
                   "subject": outcome(v.find_subject(k, val).map(|s| json!(s.map(|s| s.to_string()))))})
        })
        .collect();
    json!({
        "vault_id": v.vault_id(),
        "receipt_public_key": outcome(v.receipt_public_key().map(Value::String)),
        "requests": outcome(v.requests(None).map(|r| serde_json::to_value(r).unwrap())),
        "finds": finds,
        "subjects": per_subject,
        "reads": reads,
    })
}
