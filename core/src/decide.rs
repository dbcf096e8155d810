//! What the policy says happens, as pure functions over plain data (like
//! `retention`): a record's fate when its subject is re-evaluated, whether
//! a purpose may read a subject's record, whether a record may be stored,
//! whether consent stands. The engine gathers the facts and applies the
//! answers; nothing here touches storage or keys.

use crate::error::{Error, ErrorKind};
use crate::ids::{truncate_for_message, SubjectId};
use crate::layout::SubjectFacts;
use crate::policy::{self, Category, LegalBasis, OnErasureRequest, Policy};
use crate::retention::{self, Expiry};
use crate::types::ConsentEntry;

/// What happens to a record when its subject is re-evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Kept, sealed under this day's retention key (`None`: no day).
    Keep(Option<i64>),
    /// Erased now: consent withdrawn, an erasure request.
    Erase,
    /// Its retention has ended.
    Expire,
}

/// Whether consent for `purpose` stands in a ledger: its latest entry in
/// the order recorded is a give. (Not by the time each entry claims: a give
/// dated in the future would otherwise outlive every withdrawal recorded
/// before that date. `record_consent` refuses times ahead of the clock.)
pub(crate) fn consent_stands(consents: &[ConsentEntry], purpose: &str) -> bool {
    consents
        .iter()
        .rev()
        .find(|c| c.purpose == purpose)
        .is_some_and(|c| c.given)
}

/// How far ahead of the clock a consent's time may be (clock skew between
/// the caller's records and the vault).
pub(crate) const CONSENT_MAX_AHEAD: i64 = 300;

/// Whether a consent given or withdrawn `at` may be recorded `now`.
pub(crate) fn consent_time_allowed(at: i64, now: i64) -> bool {
    at <= now.saturating_add(CONSENT_MAX_AHEAD)
}

/// How far ahead of the clock `expire` may be run without being forced.
pub(crate) const EXPIRE_MAX_AHEAD: i64 = 86_400;

/// Whether `expire(now)` may run at clock time `clock` (or is forced).
pub(crate) fn expire_time_allowed(now: i64, clock: i64, forced: bool) -> bool {
    forced || now <= clock.saturating_add(EXPIRE_MAX_AHEAD)
}

/// Whether a category kept on consent has standing consent for any of its
/// purposes (other categories need none).
fn consent_covers(category: &Category, facts: &SubjectFacts) -> bool {
    category.legal_basis != LegalBasis::Consent
        || category
            .purposes
            .iter()
            .any(|p| p != policy::LEGAL_CLAIMS && consent_stands(&facts.consents, p))
}

/// A record's fate, and its expiry, from its category, its subject's facts,
/// its creation time and "now" for due dates (`threshold`): the single
/// place where consent, erasure requests, legal hold and retention rules
/// meet.
pub(crate) fn fate(
    category: &Category,
    facts: &SubjectFacts,
    created_at: i64,
    threshold: i64,
) -> (Fate, Expiry) {
    let expiry = retention::expiry(category, &facts.retention(), created_at);
    let due = matches!(expiry, Expiry::At(at) if at <= threshold);
    if facts.legal_hold {
        // Nothing goes while the hold stands; a record past due is kept out
        // of any day, so no expiry run can destroy its key.
        let day = if due { None } else { expiry.day() };
        return (Fate::Keep(day), expiry);
    }
    let requested = facts.erasure_requested().is_some();
    let dropped_on_request = requested
        && !category.follows_erasure_request()
        && category.on_erasure_request != OnErasureRequest::Retain;
    if !consent_covers(category, facts) || dropped_on_request || (due && requested) {
        return (Fate::Erase, expiry);
    }
    if due {
        return (Fate::Expire, expiry);
    }
    (Fate::Keep(expiry.day()), expiry)
}

/// Why a read or a write is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The policy names no such purpose.
    UnknownPurpose,
    /// The category does not serve the purpose.
    NotAPurposeOfTheCategory,
    /// A privileged purpose, and the handle is not privileged.
    Unprivileged,
    /// Restricted processing (`erasure_requested`: what an erasure request
    /// left is kept for legal claims only).
    Restricted { erasure_requested: bool },
    /// A sale purpose, and the subject opted out of sale.
    OptedOutOfSale,
    /// A read of a category kept on consent without standing consent for
    /// the purpose.
    NoConsent,
    /// A record of a category kept on consent, without standing consent for
    /// any of its purposes.
    NoConsentForAnyPurpose,
    /// The subject asked for erasure: nothing new is stored for it.
    ErasureRequested,
    /// The record's retention has already ended.
    RetentionEnded,
}

impl Refusal {
    /// The error a caller sees, naming the subject, category and purpose.
    pub fn into_error(self, subject: &SubjectId, category: &Category, purpose: &str) -> Error {
        let name = &category.name;
        match self {
            Refusal::UnknownPurpose => Error::new(
                ErrorKind::PurposeDenied,
                format!("unknown purpose {:?}", truncate_for_message(purpose)),
            ),
            Refusal::NotAPurposeOfTheCategory => not_a_purpose_of(category, purpose),
            Refusal::Unprivileged => unprivileged(purpose),
            Refusal::Restricted { erasure_requested } => {
                let why = if erasure_requested {
                    "it asked for erasure and what is left is kept for legal claims"
                } else {
                    "its processing is restricted"
                };
                Error::new(
                    ErrorKind::Restricted,
                    format!("subject {subject}: {why}; only purpose legal_claims may read it"),
                )
            }
            Refusal::OptedOutOfSale => Error::new(
                ErrorKind::PurposeDenied,
                format!("subject {subject} opted out of sale: purpose {purpose:?} is refused"),
            ),
            Refusal::NoConsentForAnyPurpose => Error::new(
                ErrorKind::PurposeDenied,
                format!(
                    "category {name:?} is kept on consent, and subject {subject} has no standing consent for any of its purposes ({})",
                    category.purposes.join(", ")
                ),
            ),
            Refusal::NoConsent => Error::new(
                ErrorKind::PurposeDenied,
                format!(
                    "category {name:?} is kept on consent, and subject {subject} has no standing consent for {purpose:?}"
                ),
            ),
            Refusal::ErasureRequested => Error::new(
                ErrorKind::Erased,
                format!("subject {subject} asked for erasure: nothing new is stored for it"),
            ),
            Refusal::RetentionEnded => Error::new(
                ErrorKind::Expired,
                format!("the retention of category {name:?} has already ended for subject {subject}"),
            ),
        }
    }
}

/// The error for a purpose the category does not serve.
pub(crate) fn not_a_purpose_of(category: &Category, purpose: &str) -> Error {
    Error::new(
        ErrorKind::PurposeDenied,
        format!(
            "category {:?} does not allow purpose {:?}",
            category.name,
            truncate_for_message(purpose)
        ),
    )
}

/// The error for a privileged purpose read through a handle that is not.
pub(crate) fn unprivileged(purpose: &str) -> Error {
    Error::new(
        ErrorKind::PurposeDenied,
        format!(
            "purpose {:?} is privileged: only a handle opened as privileged may read for it",
            truncate_for_message(purpose)
        ),
    )
}

/// Whether `category` may be read for `purpose` at all, through a handle
/// that is `privileged` or not: the policy must name the purpose, the
/// category serve it (`legal_claims` is served by every category), and a
/// privileged purpose needs a privileged handle.
pub(crate) fn purpose_allowed(
    policy: &Policy,
    category: &Category,
    purpose: &str,
    privileged: bool,
) -> Result<(), Refusal> {
    let known = policy.purpose(purpose);
    if !category.allows(purpose) {
        return Err(match known {
            Err(_) => Refusal::UnknownPurpose,
            Ok(_) => Refusal::NotAPurposeOfTheCategory,
        });
    }
    match known {
        Ok(p) if p.privileged && !privileged => Err(Refusal::Unprivileged),
        _ => Ok(()),
    }
}

/// Whether a subject's record of `category` may be read for `purpose`
/// (which the category serves): a restricted subject, or one that asked for
/// erasure, only for `legal_claims`; a sale purpose not for a subject who
/// opted out; a category kept on consent only with standing consent for the
/// purpose.
pub(crate) fn subject_allows(
    policy: &Policy,
    category: &Category,
    facts: &SubjectFacts,
    purpose: &str,
) -> Result<(), Refusal> {
    if purpose == policy::LEGAL_CLAIMS {
        return Ok(());
    }
    if facts.restricted || facts.erasure_requested().is_some() {
        return Err(Refusal::Restricted {
            erasure_requested: !facts.restricted,
        });
    }
    if facts.opt_out_of_sale && policy.purpose(purpose).is_ok_and(|p| p.sale) {
        return Err(Refusal::OptedOutOfSale);
    }
    if category.legal_basis == LegalBasis::Consent && !consent_stands(&facts.consents, purpose) {
        return Err(Refusal::NoConsent);
    }
    Ok(())
}

/// Whether a new record of `category`, created `now`, may be stored for a
/// subject with these facts, and when it expires. `threshold` is "now" for
/// due dates.
pub(crate) fn may_store(
    category: &Category,
    facts: &SubjectFacts,
    now: i64,
    threshold: i64,
) -> Result<Expiry, Refusal> {
    if facts.erasure_requested().is_some() {
        return Err(Refusal::ErasureRequested);
    }
    if !consent_covers(category, facts) {
        return Err(Refusal::NoConsentForAnyPurpose);
    }
    let expiry = retention::expiry(category, &facts.retention(), now);
    match expiry {
        Expiry::At(at) if at <= threshold => Err(Refusal::RetentionEnded),
        _ => Ok(expiry),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
