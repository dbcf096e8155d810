//! The data subject's rights and the vault's accountability: the audit
//! chain, `scan` for analytics (`scan`), export for access and portability
//! (`export`), the request ledger (`requests`), post-mortem directives
//! (`post_mortem`). Signed erasure receipts are `erase`'s.

use crate::audit::{AuditEntry, AuditReport};
use crate::error::Result;
use crate::ids::SubjectId;

use super::audited::{Commit, Op};
use super::Vault;

mod export;
mod post_mortem;
mod requests;
mod scan;

pub use scan::Scan;

impl Vault {
    /// Walks the audit chain from its first entry. `Corrupt`, naming the
    /// first broken entry, if any entry was altered, removed or reordered.
    pub fn verify_audit(&self) -> Result<AuditReport> {
        let engine = &self.engine;
        engine.audited(Op::VerifyAudit, Commit::No, |_| engine.audit.verify())
    }

    /// Audit entries (all, or those naming `subject`), oldest first.
    pub fn audit_entries(&self, subject: Option<&SubjectId>) -> Result<Vec<AuditEntry>> {
        self.engine
            .audit
            .entries(|e| subject.is_none() || e.subject.as_ref() == subject)
    }
}
