//! Whether an erasure is complete, as a signed statement.
//!
//! An erasure is *immediate* when its key's slot is overwritten (its
//! receipt says so), and *complete* once no copy of the keystore made
//! before it (a backup of `keys/`, old flash blocks) can be opened either:
//! after a rotation away from the root key in force at the erasure, once
//! that root key is destroyed. For a root key in a PKCS#11 token the vault
//! can check the second step itself: every rotation's audit entry names
//! the key it retired from use and the one that took over
//! (`RootKey::public_name`, no PIN), and the token answers whether the
//! object is still there.
//!
//! [`Vault::erasure_completion`] takes an erasure receipt this vault
//! signed and returns a statement, signed the same way (so
//! `verify_receipt` checks it): `complete` true only when every root key
//! in force up to the erasure (the keys the rotations up to and including
//! the first one after it went away from: a backup of `keys/` from any of
//! their times may hold the erased key) is a token key the token no longer
//! holds, and those rotations chain in the log (each from the key the one
//! before went to; a rotation whose entry a crash lost breaks the chain).
//! Left: a crash that loses the entry of a vault's *first* rotation is not
//! seen (nothing records the key a vault was created with). Otherwise `complete` is false and `reason` says
//! what is missing: no rotation since, a root key given as bytes (which
//! only its keeper can destroy), a rotation recorded before names were
//! (`unknown`), or a key still in its token (`retire-key`).

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::RootKey;

use super::audited::{Commit, Op};
use super::Vault;

/// The statement's version (its fields may only be added to).
const STATEMENT_VERSION: u64 = 1;

impl Vault {
    /// A signed statement of whether the erasure of `receipt` (an erasure
    /// receipt's JSON, signed by this vault) is complete: see the module
    /// doc. A receipt not signed by this vault is `Corrupt`; a malformed
    /// one `InvalidArgument`; a token that cannot be asked, its error
    /// (`Io`, `WrongKey`, `Locked`).
    pub fn erasure_completion(&self, receipt: &str) -> Result<Value> {
        let engine = &self.engine;
        let public_key = self.receipt_public_key()?;
        engine.audited(Op::ErasureCompletion, Commit::No, |call| {
            let r = crate::receipt::verify_receipt(receipt, Some(&public_key))?;
            let field = |name: &str| {
                r.get(name)
                    .cloned()
                    .ok_or_else(|| Error::invalid(format!("the receipt has no {name}")))
            };
            let seq = field("audit_seq")?
                .as_u64()
                .ok_or_else(|| Error::invalid("the receipt's audit_seq is not a number"))?;
            let subject = field("subject")?;
            // What was erased had its key destroyed (the subject's, or the
            // subject's old key at a rotation when records are retained).
            if r.get("erased").is_none() || r.get("subject_key_destroyed").is_none() {
                return Err(Error::invalid("not an erasure receipt"));
            }
            let subject_id = subject
                .as_str()
                .and_then(|s| s.parse::<crate::SubjectId>().ok());
            call.entry.subject = subject_id;
            // Every successful rotation, oldest first, as (entry, from, to).
            let rotations: Vec<_> = engine
                .audit
                .entries(|e| e.op == Op::RotateRootKey.name() && e.outcome == "ok")?
                .into_iter()
                .map(|e| {
                    let (from, to) = e
                        .detail
                        .as_deref()
                        .and_then(|d| d.strip_prefix("from "))
                        .and_then(|d| d.split_once(" to "))
                        .map(|(f, t)| (f.to_string(), t.to_string()))
                        .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
                    (e, from, to)
                })
                .collect();
            let first_after = rotations.iter().position(|(e, _, _)| e.seq > seq);
            let rotation = first_after.map(|i| &rotations[i].0);
            let (complete, reason, retired) = match first_after {
                None => (
                    false,
                    "the root key in force at the erasure is still in force: rotate-key to a new one, then retire-key the old one".to_string(),
                    Vec::new(),
                ),
                // Every root key in force up to the erasure may wrap a copy
                // of the keystore holding the erased key (a backup of keys/
                // from its time): all of them must be gone.
                Some(last) => keys_gone(&rotations[..=last])?,
            };            let statement = json!({
                "statement": "erasure_completion",
                "statement_version": STATEMENT_VERSION,
                "vault": field("vault")?,
                "subject": subject,
                "erasure_audit_seq": seq,
                "erased_at": field("erased_at")?,
                "complete": complete,
                "reason": reason,
                "rotation_audit_seq": rotation.as_ref().map(|e| e.seq),
                "rotated_at": rotation.as_ref().map(|e| e.time),
                "retired_root_keys": retired,
                "checked_at": engine.now(),
            });
            crate::receipt::sign(&engine.receipt_key, statement)
        })
    }
}

/// Whether every key `rotations` rotated away from is a token key the
/// token no longer holds: (complete, reason, the keys checked). The
/// rotations must chain (each from the key the one before went to): a
/// rotation missing from the log (a crash between its commit and its
/// entry) leaves a key nobody checked.
fn keys_gone(
    rotations: &[(crate::audit::AuditEntry, String, String)],
) -> Result<(bool, String, Vec<String>)> {
    for pair in rotations.windows(2) {
        let ((a, _, to), (b, from, _)) = (&pair[0], &pair[1]);
        if to != from {
            return Ok((
                false,
                format!("the audit log misses a rotation between entries {} and {}: the vault cannot tell every key to check", a.seq, b.seq),
                Vec::new(),
            ));
        }
    }
    let mut checked = Vec::new();
    for (e, from, _) in rotations {
        if from == "bytes" {
            return Ok((
                false,
                format!("the root key rotated away from at entry {} was given as bytes, which only its keeper can destroy (and the vault cannot check)", e.seq),
                checked,
            ));
        }
        if !from.starts_with("pkcs11:") {
            return Ok((
                false,
                format!("the root key rotated away from at entry {} was not named (a rotation made before rotations named their keys): the vault cannot check it", e.seq),
                checked,
            ));
        }
        let key = RootKey::from_uri(from)?;
        let uri = key
            .token_uri()
            .ok_or_else(|| Error::internal("a pkcs11: name parsed as another kind of key"))?;
        if crate::custody::pkcs11::exists(uri)? {
            return Ok((
                false,
                format!(
                    "{} (rotated away from at entry {}) is still in its token: retire-key it",
                    uri.describe(),
                    e.seq
                ),
                checked,
            ));
        }
        checked.push(uri.describe());
    }
    Ok((
        true,
        "every root key in force up to the erasure was rotated away from and is no longer in its token".into(),
        checked,
    ))
}
