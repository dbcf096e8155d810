//! A subject's facts: events, flags, the consent ledger, legal hold,
//! restriction, opt-out of sale. Changing an event, a flag, consent or a
//! hold re-evaluates the subject (`rotate`): when no record's fate changes,
//! one batch writes the new facts; otherwise the subject key is rotated,
//! whose batch also holds what it erased or expired. Consent withdrawal and
//! legal holds are durable in either mode.

use crate::decide;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{truncate_for_message, SubjectId};
use crate::layout::{SubjectEntry, SubjectFacts};
use crate::policy;
use crate::retention;
use crate::store::Batch;
use crate::types::{ConsentEntry, SubjectState};

use super::audited::{Commit, Op};
use super::{lock, Vault};

impl Vault {
    /// Records (or moves) a subject event that starts retention clocks,
    /// e.g. `agreement_end`. Affected records are re-sealed under the key of
    /// their new expiry day (the subject key is rotated, so nothing stays
    /// readable under the old day); records whose expiry is now past are
    /// erased by this call.
    pub fn record_event(&self, subject: &SubjectId, event: &str, at: i64) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::RecordEvent, Commit::Mode, |call| {
            call.entry.subject = Some(*subject);
            call.entry.detail = Some(engine.event_term(event).into());
            let policy = engine.policy();
            if event == policy::COLLECTED {
                return Err(Error::invalid(
                    "collected is each record's own creation time, not a subject event",
                ));
            }
            if event == policy::ERASURE_REQUESTED {
                return Err(Error::invalid(
                    "erasure_requested is recorded by erase_subject",
                ));
            }
            if !policy.events().contains(event) {
                return Err(Error::invalid(format!(
                    "unknown event {:?}: the policy names no such event",
                    truncate_for_message(event)
                )));
            }
            retention::check_event_time(at, event)?;
            let _stripe = engine.stripe(subject);
            let mut live = engine.live_subject(subject)?;
            if live.facts.events.get(event) == Some(&at) {
                return Ok(());
            }
            live.facts.events.insert(event.to_string(), at);
            engine.reevaluate(subject, live, &call.entry).map(|_| ())
        })?;
        if event == policy::DECEASED {
            self.carry_out_post_mortem(subject)?;
        }
        Ok(())
    }

    /// Sets or clears a subject flag that retention rules test (`if_flag`),
    /// re-evaluating the subject's expiries as `record_event` does.
    pub fn set_flag(&self, subject: &SubjectId, flag: &str, on: bool) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::SetFlag, Commit::Mode, |call| {
            call.entry.subject = Some(*subject);
            call.entry.detail = Some(format!("{}={}", engine.flag_term(flag), on).into());
            if !engine.policy().flags().contains(flag) {
                return Err(Error::invalid(format!(
                    "unknown flag {:?}: the policy names no such flag",
                    truncate_for_message(flag)
                )));
            }
            let _stripe = engine.stripe(subject);
            let mut live = engine.live_subject(subject)?;
            let changed = if on {
                live.facts.flags.insert(flag.to_string())
            } else {
                live.facts.flags.remove(flag)
            };
            if !changed {
                return Ok(());
            }
            engine.reevaluate(subject, live, &call.entry).map(|_| ())
        })
    }

    /// Records that the subject gave consent for `purpose` at `at`. The
    /// ledger keeps every give and withdrawal.
    pub fn give_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()> {
        self.consent(Op::GiveConsent, Commit::Mode, subject, purpose, at, true)
    }

    /// Records that the subject withdrew consent for `purpose` at `at`, and
    /// erases, by rotating the subject key, every record of a category kept
    /// on consent for which no consent now stands (a category serving two
    /// purposes lives on while consent for the other stands). Other records
    /// are untouched. Always durable before it returns. Under legal hold the
    /// withdrawal is recorded and reads on consent refused, but the records
    /// are kept until the hold is lifted.
    pub fn withdraw_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()> {
        self.consent(
            Op::WithdrawConsent,
            Commit::Always,
            subject,
            purpose,
            at,
            false,
        )
    }

    fn consent(
        &self,
        op: Op,
        commit: Commit,
        subject: &SubjectId,
        purpose: &str,
        at: i64,
        given: bool,
    ) -> Result<()> {
        let engine = &self.engine;
        engine.audited(op, commit, |call| {
            call.entry.subject = Some(*subject);
            call.entry.purpose = Some(engine.purpose_term(purpose));
            engine.policy().purpose(purpose).map_err(|_| {
                Error::invalid(format!(
                    "unknown purpose {:?}: the policy names no such purpose",
                    truncate_for_message(purpose)
                ))
            })?;
            if purpose == policy::LEGAL_CLAIMS {
                return Err(Error::invalid(
                    "legal_claims does not rest on consent: it cannot be given or withdrawn",
                ));
            }
            retention::check_event_time(at, "consent")?;
            let now = engine.now();
            if !decide::consent_time_allowed(at, now) {
                return Err(Error::invalid(format!(
                    "consent time {at} is more than {} seconds ahead of the clock ({now})",
                    decide::CONSENT_MAX_AHEAD
                )));
            }
            let _stripe = engine.stripe(subject);
            let mut live = engine.live_subject(subject)?;
            if given && live.facts.erasure_requested().is_some() {
                return Err(Error::new(
                    ErrorKind::Erased,
                    format!("subject {subject} asked for erasure: no consent is recorded for it"),
                ));
            }
            live.facts.consents.push(ConsentEntry {
                purpose: purpose.to_string(),
                given,
                at,
                recorded_at: now,
            });
            bound_consent_ledger(&mut live.facts.consents, purpose);
            engine.reevaluate(subject, live, &call.entry).map(|_| ())
        })
    }

    /// Puts a subject under legal hold, or lifts it. While held, nothing of
    /// the subject is erased or expires: `erase_subject` and `delete` are
    /// refused with `LegalHold`, and expiry runs re-seal its due records
    /// out of their day before destroying the day's key. Lifting the hold
    /// re-evaluates the subject: what is past due expires then.
    pub fn set_legal_hold(&self, subject: &SubjectId, on: bool) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::SetLegalHold, Commit::Always, |call| {
            call.entry.subject = Some(*subject);
            call.entry.detail = Some(if on { "true" } else { "false" }.into());
            // No expiry run is between choosing whom to spare and destroying keys.
            let _expire = lock(&engine.locks.expire);
            let _stripe = engine.stripe(subject);
            let mut live = engine.live_subject(subject)?;
            if live.facts.legal_hold == on {
                return Ok(());
            }
            live.facts.legal_hold = on;
            engine.reevaluate(subject, live, &call.entry).map(|_| ())
        })
    }

    /// Restricts the processing of a subject's data (GDPR art. 18), or lifts
    /// the restriction: while restricted, reads are refused with
    /// `Restricted` for every purpose but `legal_claims`.
    pub fn set_restricted(&self, subject: &SubjectId, on: bool) -> Result<()> {
        self.set_state(Op::SetRestricted, subject, |f| &mut f.restricted, on)
    }

    /// Records the subject's opt-out of any sale of its data, or its
    /// withdrawal: while opted out, reads for a `sale = true` purpose are
    /// refused with `PurposeDenied`.
    pub fn set_opt_out_of_sale(&self, subject: &SubjectId, on: bool) -> Result<()> {
        self.set_state(Op::SetOptOutOfSale, subject, |f| &mut f.opt_out_of_sale, on)
    }

    /// A state that changes no record's fate: one batch, durable before
    /// this returns whatever the mode (a restriction or an opt-out is a
    /// data subject's right: it is not lost with a crash).
    fn set_state(
        &self,
        op: Op,
        subject: &SubjectId,
        field: impl Fn(&mut SubjectFacts) -> &mut bool,
        on: bool,
    ) -> Result<()> {
        let engine = &self.engine;
        engine.audited(op, Commit::Always, |call| {
            call.entry.subject = Some(*subject);
            call.entry.detail = Some(if on { "true" } else { "false" }.into());
            let _stripe = engine.stripe(subject);
            let mut live = engine.live_subject(subject)?;
            if *field(&mut live.facts) == on {
                return Ok(());
            }
            *field(&mut live.facts) = on;
            let mut batch = Batch::default();
            engine.put_subject(&mut batch, subject, &SubjectEntry::Live(live))?;
            engine.store.apply(batch)?;
            engine.subjects_changed();
            Ok(())
        })
    }

    /// What the vault knows of a subject besides its records: events,
    /// flags, the consent ledger and its states. A restricted subject (or
    /// one that asked for erasure) is `Restricted` except to a privileged
    /// handle.
    pub fn subject_state(&self, subject: &SubjectId) -> Result<SubjectState> {
        let engine = &self.engine;
        engine.audited(Op::SubjectState, Commit::No, |call| {
            call.entry.subject = Some(*subject);
            let live = engine.live_subject(subject)?;
            engine.check_processing_allowed(subject, &live.facts)?;
            let facts = live.facts;
            Ok(SubjectState {
                created_at: live.created_at,
                erasure_requested: facts.erasure_requested(),
                events: facts.events,
                flags: facts.flags,
                consents: facts.consents,
                legal_hold: facts.legal_hold,
                restricted: facts.restricted,
                opt_out_of_sale: facts.opt_out_of_sale,
            })
        })
    }

    /// The events and flags recorded for a subject, unaudited: for the
    /// crash harness (feature `testing`).
    #[cfg(feature = "testing")]
    #[allow(clippy::type_complexity)]
    pub fn subject_facts(
        &self,
        subject: &SubjectId,
    ) -> Result<(
        std::collections::BTreeMap<String, i64>,
        std::collections::BTreeSet<String>,
    )> {
        let live = self.engine.live_subject(subject)?;
        Ok((live.facts.events, live.facts.flags))
    }
}

/// Entries of one purpose the consent ledger keeps: the oldest go beyond
/// this (consent stands by the latest entry, and the audit log keeps every
/// give and withdrawal), so a subject's sealed facts stay small.
pub(super) const CONSENT_ENTRIES_PER_PURPOSE: usize = 32;

/// Drops `purpose`'s oldest entries past [`CONSENT_ENTRIES_PER_PURPOSE`].
fn bound_consent_ledger(consents: &mut Vec<ConsentEntry>, purpose: &str) {
    let mut excess = consents
        .iter()
        .filter(|c| c.purpose == purpose)
        .count()
        .saturating_sub(CONSENT_ENTRIES_PER_PURPOSE);
    consents.retain(|c| {
        if excess > 0 && c.purpose == purpose {
            excess -= 1;
            return false;
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::{bound_consent_ledger, ConsentEntry, CONSENT_ENTRIES_PER_PURPOSE};

    #[test]
    fn the_consent_ledger_keeps_the_latest_entries_of_a_purpose() {
        let entry = |purpose: &str, at| ConsentEntry {
            purpose: purpose.into(),
            given: at % 2 == 0,
            at,
            recorded_at: at,
        };
        let mut ledger = vec![entry("sale", 0)];
        for at in 0..100 {
            ledger.push(entry("marketing", at));
            bound_consent_ledger(&mut ledger, "marketing");
        }
        assert_eq!(ledger.len(), CONSENT_ENTRIES_PER_PURPOSE + 1);
        assert_eq!(ledger[0].purpose, "sale");
        assert_eq!(ledger.last().unwrap().at, 99);
        assert_eq!(ledger[1].at, 100 - CONSENT_ENTRIES_PER_PURPOSE as i64);
    }
}
