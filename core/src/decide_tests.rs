//! Table tests of the decisions, on the example policy.

use super::{
    consent_stands, consent_time_allowed, expire_time_allowed, fate, may_store, purpose_allowed,
    subject_allows, Fate, Refusal,
};
use crate::layout::SubjectFacts;
use crate::policy::{self, Policy};
use crate::retention::{self, Expiry};
use crate::types::ConsentEntry;

const DAY: i64 = 86_400;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;

fn span(text: &str) -> policy::CalendarSpan {
    policy::CalendarSpan::parse(text).unwrap()
}

fn policy() -> Policy {
    Policy::parse(include_str!("../../example-policy.toml"), "example").unwrap()
}

fn consent(purpose: &str, given: bool, at: i64) -> ConsentEntry {
    ConsentEntry {
        purpose: purpose.into(),
        given,
        at,
        recorded_at: at,
    }
}

/// Facts built from a short description: events, flags, states, consents.
#[derive(Default, Clone)]
struct F {
    events: &'static [(&'static str, i64)],
    flags: &'static [&'static str],
    hold: bool,
    restricted: bool,
    opt_out: bool,
    consents: Ledger,
}

impl F {
    fn facts(&self) -> SubjectFacts {
        SubjectFacts {
            events: self
                .events
                .iter()
                .map(|(e, t)| (e.to_string(), *t))
                .collect(),
            flags: self.flags.iter().map(|f| f.to_string()).collect(),
            consents: self
                .consents
                .iter()
                .map(|(p, g, t)| consent(p, *g, *t))
                .collect(),
            legal_hold: self.hold,
            restricted: self.restricted,
            opt_out_of_sale: self.opt_out,
            request_reasons: Default::default(),
        }
    }
}

/// A consent ledger: (purpose, given, at), in the order recorded.
type Ledger = &'static [(&'static str, bool, i64)];

#[test]
fn consent_stands_by_order_of_recording() {
    let rows: &[(Ledger, &str, bool)] = &[
        (&[], "marketing", false),
        (&[("marketing", true, 10)], "marketing", true),
        (&[("marketing", true, 10)], "sale", false),
        (
            &[("marketing", true, 10), ("marketing", false, 20)],
            "marketing",
            false,
        ),
        // A give recorded after a withdrawal renews consent, whatever time
        // either claims.
        (
            &[("marketing", false, 20), ("marketing", true, 10)],
            "marketing",
            true,
        ),
        // Failed before the fix (M5): a give dated later than a withdrawal
        // recorded after it outlived the withdrawal.
        (
            &[("marketing", true, 30), ("marketing", false, 20)],
            "marketing",
            false,
        ),
        (
            &[("marketing", true, 10), ("marketing", false, 10)],
            "marketing",
            false,
        ),
        (
            &[("marketing", false, 10), ("marketing", true, 10)],
            "marketing",
            true,
        ),
        (
            &[("marketing", true, 10), ("sale", false, 20)],
            "marketing",
            true,
        ),
    ];
    for (ledger, purpose, stands) in rows {
        let consents: Vec<ConsentEntry> =
            ledger.iter().map(|(p, g, t)| consent(p, *g, *t)).collect();
        assert_eq!(
            consent_stands(&consents, purpose),
            *stands,
            "{ledger:?} {purpose}"
        );
    }
}

#[test]
fn times_ahead_of_the_clock() {
    // (at, now, consent may be recorded)
    for (at, now, ok) in [
        (T0, T0, true),
        (T0 + 300, T0, true),
        (T0 + 301, T0, false),
        (0, T0, true),
    ] {
        assert_eq!(
            consent_time_allowed(at, now),
            ok,
            "consent at {at} now {now}"
        );
    }
    // (expiry run's now, clock, forced, may run)
    for (now, clock, forced, ok) in [
        (T0, T0, false, true),
        (T0 + DAY, T0, false, true),
        (T0 + DAY + 1, T0, false, false),
        (T0 + 400 * DAY, T0, true, true),
        (T0 - 400 * DAY, T0, false, true),
    ] {
        assert_eq!(
            expire_time_allowed(now, clock, forced),
            ok,
            "expire {now} at {clock}"
        );
    }
}

#[test]
fn fates() {
    let policy = policy();
    // (category, facts, created, threshold, fate)
    let rows: Vec<(&str, F, i64, i64, Fate)> = vec![
        // Open until its event: kept with no day.
        ("account", F::default(), T0, T0, Fate::Keep(None)),
        // Agreement ended: seven years later, that day.
        (
            "account",
            F {
                events: &[("agreement_end", T0)],
                ..F::default()
            },
            T0,
            T0,
            Fate::Keep(retention::expiry_day(retention::add_span(T0, span("7y")).unwrap()).into()),
        ),
        // ... and past due by the threshold: expires.
        (
            "account",
            F {
                events: &[("agreement_end", T0)],
                ..F::default()
            },
            T0,
            T0 + 8 * 365 * DAY,
            Fate::Expire,
        ),
        // Held: past due is kept, out of any day.
        (
            "account",
            F {
                events: &[("agreement_end", T0)],
                hold: true,
                ..F::default()
            },
            T0,
            T0 + 8 * 365 * DAY,
            Fate::Keep(None),
        ),
        // An erasure request: retained categories stay (restricted), others go.
        (
            "account",
            F {
                events: &[("erasure_requested", T0)],
                ..F::default()
            },
            T0,
            T0,
            Fate::Keep(None),
        ),
        (
            "usage_log",
            F {
                events: &[("erasure_requested", T0)],
                ..F::default()
            },
            T0,
            T0,
            Fate::Erase,
        ),
        // codeguard names erasure_requested: it follows its rule, which ends now.
        (
            "codeguard",
            F {
                events: &[("erasure_requested", T0)],
                ..F::default()
            },
            T0,
            T0,
            Fate::Erase,
        ),
        // An erasure request under hold: nothing goes.
        (
            "usage_log",
            F {
                events: &[("erasure_requested", T0)],
                hold: true,
                ..F::default()
            },
            T0,
            T0,
            Fate::Keep(Some(retention::expiry_day(
                retention::add_span(T0, span("13mo")).unwrap(),
            ))),
        ),
        // Consent: kept while it stands for one of the category's purposes.
        (
            "marketing_contact",
            F {
                consents: &[("marketing", true, T0)],
                ..F::default()
            },
            T0,
            T0,
            Fate::Keep(None),
        ),
        (
            "marketing_contact",
            F {
                consents: &[("marketing", true, T0), ("marketing", false, T0 + 1)],
                ..F::default()
            },
            T0,
            T0,
            Fate::Erase,
        ),
        (
            "marketing_contact",
            F {
                consents: &[
                    ("marketing", true, T0),
                    ("sale", true, T0),
                    ("marketing", false, T0 + 1),
                ],
                ..F::default()
            },
            T0,
            T0,
            Fate::Keep(None),
        ),
        // Consent withdrawn under hold: kept until the hold is lifted.
        (
            "marketing_contact",
            F {
                consents: &[("marketing", false, T0)],
                hold: true,
                ..F::default()
            },
            T0,
            T0,
            Fate::Keep(None),
        ),
        // A flag picks the first rule whose condition holds.
        (
            "certificate",
            F {
                events: &[("last_certificate_end", T0)],
                flags: &["qualified_certificate"],
                ..F::default()
            },
            T0,
            T0 + 10 * 365 * DAY,
            Fate::Keep(Some(retention::expiry_day(
                retention::add_span(T0, span("15y")).unwrap(),
            ))),
        ),
        (
            "certificate",
            F {
                events: &[("last_certificate_end", T0)],
                ..F::default()
            },
            T0,
            T0 + 10 * 365 * DAY,
            Fate::Expire,
        ),
    ];
    for (i, (category, f, created, threshold, want)) in rows.into_iter().enumerate() {
        let cat = policy.category(category).unwrap();
        let (got, _) = fate(cat, &f.facts(), created, threshold);
        assert_eq!(got, want, "row {i}: {category}");
    }
}

#[test]
fn read_permissions() {
    let policy = policy();
    // (category, purpose, facts, allowed or the refusal), by a privileged
    // handle
    let rows: Vec<(&str, &str, F, Result<(), Refusal>)> = vec![
        ("account", "billing", F::default(), Ok(())),
        (
            "account",
            "marketing",
            F::default(),
            Err(Refusal::NotAPurposeOfTheCategory),
        ),
        (
            "account",
            "no_such_purpose",
            F::default(),
            Err(Refusal::UnknownPurpose),
        ),
        ("account", "legal_claims", F::default(), Ok(())),
        (
            "account",
            "billing",
            F {
                restricted: true,
                ..F::default()
            },
            Err(Refusal::Restricted {
                erasure_requested: false,
            }),
        ),
        (
            "account",
            "legal_claims",
            F {
                restricted: true,
                ..F::default()
            },
            Ok(()),
        ),
        (
            "account",
            "billing",
            F {
                events: &[("erasure_requested", T0)],
                ..F::default()
            },
            Err(Refusal::Restricted {
                erasure_requested: true,
            }),
        ),
        (
            "marketing_contact",
            "sale",
            F {
                opt_out: true,
                consents: &[("sale", true, T0)],
                ..F::default()
            },
            Err(Refusal::OptedOutOfSale),
        ),
        (
            "marketing_contact",
            "marketing",
            F {
                opt_out: true,
                consents: &[("marketing", true, T0)],
                ..F::default()
            },
            Ok(()),
        ),
        (
            "marketing_contact",
            "marketing",
            F::default(),
            Err(Refusal::NoConsent),
        ),
        (
            "marketing_contact",
            "marketing",
            F {
                consents: &[("sale", true, T0)],
                ..F::default()
            },
            Err(Refusal::NoConsent),
        ),
        ("marketing_contact", "legal_claims", F::default(), Ok(())),
    ];
    for (i, (category, purpose, f, want)) in rows.into_iter().enumerate() {
        let cat = policy.category(category).unwrap();
        let got = purpose_allowed(&policy, cat, purpose, true)
            .and_then(|()| subject_allows(&policy, cat, &f.facts(), purpose));
        assert_eq!(got, want, "row {i}: {category} for {purpose}");
    }
    // Not privileged: legal_claims (privileged by definition) is refused,
    // the others as before.
    let cat = policy.category("account").unwrap();
    assert_eq!(
        purpose_allowed(&policy, cat, "legal_claims", false),
        Err(Refusal::Unprivileged)
    );
    assert_eq!(purpose_allowed(&policy, cat, "billing", false), Ok(()));
    assert_eq!(
        purpose_allowed(&policy, cat, "marketing", false),
        Err(Refusal::NotAPurposeOfTheCategory)
    );
    // A purpose the policy marks privileged.
    let marked = Policy::parse(
        &include_str!("../../example-policy.toml").replace(
            "[purposes.billing]\n",
            "[purposes.billing]\nprivileged = true\n",
        ),
        "example",
    )
    .unwrap();
    let cat = marked.category("account").unwrap();
    assert_eq!(
        purpose_allowed(&marked, cat, "billing", false),
        Err(Refusal::Unprivileged)
    );
    assert_eq!(purpose_allowed(&marked, cat, "billing", true), Ok(()));
    assert!(Policy::parse(
        &include_str!("../../example-policy.toml").replace(
            "[purposes.legal_claims]\n",
            "[purposes.legal_claims]\nprivileged = false\n",
        ),
        "example",
    )
    .is_err());
}

#[test]
fn store_permissions() {
    let policy = policy();
    let rows: Vec<(&str, F, i64, Result<Expiry, Refusal>)> = vec![
        ("account", F::default(), T0, Ok(Expiry::Open)),
        (
            "usage_log",
            F::default(),
            T0,
            Ok(Expiry::At(retention::add_span(T0, span("13mo")).unwrap())),
        ),
        (
            "account",
            F {
                events: &[("erasure_requested", T0)],
                ..F::default()
            },
            T0,
            Err(Refusal::ErasureRequested),
        ),
        (
            "marketing_contact",
            F::default(),
            T0,
            Err(Refusal::NoConsentForAnyPurpose),
        ),
        (
            "marketing_contact",
            F {
                consents: &[("sale", true, T0)],
                ..F::default()
            },
            T0,
            Ok(Expiry::Open),
        ),
        // The agreement ended more than seven years before the threshold.
        (
            "account",
            F {
                events: &[("agreement_end", T0 - 8 * 365 * DAY)],
                ..F::default()
            },
            T0,
            Err(Refusal::RetentionEnded),
        ),
        // A threshold past the clock (an expiry run ahead of it) counts.
        (
            "usage_log",
            F::default(),
            T0 + 400 * DAY,
            Err(Refusal::RetentionEnded),
        ),
    ];
    for (i, (category, f, threshold, want)) in rows.into_iter().enumerate() {
        let cat = policy.category(category).unwrap();
        assert_eq!(
            may_store(cat, &f.facts(), T0, threshold),
            want,
            "row {i}: {category}"
        );
    }
}
