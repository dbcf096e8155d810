//! Post-mortem directives: records of category `post_mortem_directive`
//! (`{"directive": "erase"}` or `{"directive": "hand_over", "to": ...}`).
//! Recording `deceased` carries one out: erasure as an erasure request, or
//! a hand-over, which restricts the subject; its export is what is handed
//! over.

use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{RecordId, SubjectId};
use crate::types::{Directive, RecordInfo, MAX_IDENTIFIER_BYTES};

use super::super::audited::{Commit, Op};
use super::super::Vault;

/// The category a post-mortem directive is stored in.
pub const POST_MORTEM_CATEGORY: &str = "post_mortem_directive";

impl Vault {
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
        match self.directive_record(subject)? {
            Some(r) => {
                self.update(&r.id, &data)?;
                Ok(r.id)
            }
            None => self.put(subject, POST_MORTEM_CATEGORY, &data),
        }
    }

    /// The subject's latest directive record, if any.
    fn directive_record(&self, subject: &SubjectId) -> Result<Option<RecordInfo>> {
        Ok(self
            .engine
            .records_unaudited(subject)?
            .into_iter()
            .filter(|r| r.category == POST_MORTEM_CATEGORY)
            .max_by_key(|r| (r.created_at, r.id)))
    }

    /// After `deceased` is recorded: carries out the subject's directive,
    /// if it left one. Erasure follows the erasure-request rules (and is
    /// skipped under legal hold); a hand-over restricts the subject.
    pub(crate) fn carry_out_post_mortem(&self, subject: &SubjectId) -> Result<()> {
        let engine = &self.engine;
        let Some(info) = self.directive_record(subject)? else {
            return Ok(());
        };
        // The vault carrying out the subject's own directive: no purpose
        // is read for, so neither a restriction (a hand-over already
        // carried out) nor the handle's privileges stand in the way.
        let record = engine.read_record(
            &info.id,
            None,
            &engine.policy(),
            super::super::read::Reader::Subject,
        )?;
        let directive: Value = serde_json::from_slice(&record.data)
            .map_err(|_| Error::corrupt("the post-mortem directive is not JSON"))?;
        match directive.get("directive").and_then(Value::as_str) {
            Some("erase") => {
                engine.audited(Op::PostMortemDirective, Commit::No, |call| {
                    call.entry.subject = Some(*subject);
                    call.entry.record = Some(info.id);
                    call.entry.detail = Some("erase".into());
                    if engine.live_subject(subject)?.facts.legal_hold {
                        return Err(Error::new(
                            ErrorKind::LegalHold,
                            format!("subject {subject} is under legal hold: its directive waits"),
                        ));
                    }
                    Ok(())
                })?;
                self.erase_subject(subject).map(|_| ())
            }
            Some("hand_over") => {
                self.set_restricted(subject, true)?;
                engine.audited(Op::PostMortemDirective, Commit::Always, |call| {
                    call.entry.subject = Some(*subject);
                    call.entry.record = Some(info.id);
                    call.entry.detail = Some("hand_over".into());
                    Ok(())
                })
            }
            _ => Err(Error::corrupt(
                "the post-mortem directive names no known directive",
            )),
        }
    }
}
