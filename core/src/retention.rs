//! Retention arithmetic: when a record expires under its category's rules,
//! given what is known of its subject (events, flags) and its own creation
//! time. Pure functions, no storage.
//!
//! - The first rule whose `if_flag` holds (or that has none) decides.
//! - `after` expires at the event plus `keep`; an unknown event means no
//!   expiry yet ("open").
//! - `earliest` expires at the earliest clause whose event is known; `latest`
//!   only when every clause's event is known, at the latest of them.
//! - `until = "consent_withdrawn"` and a category with no rules are open:
//!   consent withdrawal and erasure end them, not a date.
//! - Spans are calendar spans (jiff, in UTC): 31 January + 1 month is the end
//!   of February, 29 February + 1 year is 28 February.
//! - A record expires at the end of the UTC day its expiry instant falls in
//!   (rounded up, never early): it belongs to that day's retention key.
//! - Expiry instants beyond 9999-12-31 cannot be represented: such a record
//!   stays open (documented, and far beyond any schedule).

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use crate::error::{Error, Result};
use crate::policy::{CalendarSpan, Category, Clause, Event, RuleKind, SpanUnit};

pub const SECONDS_PER_DAY: i64 = 86_400;
/// 1970-01-01T00:00:00Z: event times before it are refused.
pub const MIN_EVENT_TIME: i64 = 0;
/// 9999-12-31T23:59:59Z: event times after it are refused.
pub const MAX_EVENT_TIME: i64 = 253_402_300_799;

/// Checks that an event time lies in 1970..=9999.
pub fn check_event_time(at: i64, what: &str) -> Result<()> {
    if (MIN_EVENT_TIME..=MAX_EVENT_TIME).contains(&at) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} time {at} is outside 1970-01-01..9999-12-31 (Unix seconds, UTC)"
        )))
    }
}

/// Parses a time as the command line takes it: Unix seconds (`1767225600`)
/// or RFC 3339 with an offset (`2026-01-01T00:00:00Z`).
pub fn parse_time(text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    text.parse::<Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| {
            Error::invalid(format!(
                "{:?} is not a time: give Unix seconds or RFC 3339 with an offset (2026-01-01T00:00:00Z)",
                crate::ids::truncate_for_message(text)
            ))
        })
}

/// What is known of a subject that rules depend on.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    pub events: Option<&'a BTreeMap<String, i64>>,
    pub flags: Option<&'a BTreeSet<String>>,
}

/// When a record expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Not yet known, or never by date.
    Open,
    /// The instant (Unix seconds, before rounding to the end of its day).
    At(i64),
}

impl Expiry {
    /// The UTC day whose end the record expires at.
    pub fn day(self) -> Option<i64> {
        match self {
            Expiry::Open => None,
            Expiry::At(t) => Some(expiry_day(t)),
        }
    }
}

/// The UTC day (days since 1970-01-01) whose end is the first day end at or
/// after `instant`: an instant exactly at midnight belongs to the day that
/// ends there.
pub fn expiry_day(instant: i64) -> i64 {
    (instant + SECONDS_PER_DAY - 1).div_euclid(SECONDS_PER_DAY) - 1
}

/// The instant a day ends (its key may be destroyed from then on).
pub fn day_end(day: i64) -> i64 {
    (day + 1) * SECONDS_PER_DAY
}

/// `at` plus a calendar span, in UTC; `None` past 9999-12-31.
pub fn add_span(at: i64, span: CalendarSpan) -> Option<i64> {
    let ts = Timestamp::from_second(at).ok()?;
    let amount = i64::from(span.amount);
    let span = match span.unit {
        SpanUnit::Days => Span::new().days(amount),
        SpanUnit::Weeks => Span::new().weeks(amount),
        SpanUnit::Months => Span::new().months(amount),
        SpanUnit::Years => Span::new().years(amount),
    };
    let end = ts.to_zoned_datetime(TimeZone::UTC).checked_add(span).ok()?;
    Some(end.timestamp().as_second())
}

fn clause_instant(clause: &Clause, facts: &Facts, collected_at: i64) -> Option<Option<i64>> {
    // Outer None: the event is not known. Inner None: known, but the result
    // is past the calendar's end.
    let start = match &clause.event {
        Event::Collected => collected_at,
        Event::Subject(name) => *facts.events?.get(name)?,
    };
    Some(add_span(start, clause.keep))
}

/// The expiry of a record of `category`, created at `collected_at`.
pub fn expiry(category: &Category, facts: &Facts, collected_at: i64) -> Expiry {
    let rule = category.retention.iter().find(|r| match &r.if_flag {
        None => true,
        Some(flag) => facts.flags.is_some_and(|f| f.contains(flag)),
    });
    let Some(rule) = rule else {
        return Expiry::Open;
    };
    let at = match &rule.kind {
        RuleKind::After(c) => clause_instant(c, facts, collected_at).flatten(),
        RuleKind::Earliest(cs) => cs
            .iter()
            .filter_map(|c| clause_instant(c, facts, collected_at))
            .map(|t| t.unwrap_or(i64::MAX))
            .min()
            .filter(|&t| t != i64::MAX),
        RuleKind::Latest(cs) => {
            let all: Option<Vec<Option<i64>>> = cs
                .iter()
                .map(|c| clause_instant(c, facts, collected_at))
                .collect();
            all.and_then(|ts| ts.into_iter().collect::<Option<Vec<i64>>>())
                .and_then(|ts| ts.into_iter().max())
        }
        RuleKind::UntilConsentWithdrawn => None,
    };
    match at {
        Some(t) => Expiry::At(t),
        None => Expiry::Open,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use jiff::Timestamp;

    use super::{
        add_span, check_event_time, day_end, expiry, expiry_day, parse_time, Expiry, Facts,
        MAX_EVENT_TIME,
    };
    use crate::policy::Policy;
    use crate::policy::{CalendarSpan, SpanUnit};

    fn ts(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn times_parse_as_seconds_or_rfc_3339() {
        assert_eq!(parse_time("1767225600").unwrap(), 1767225600);
        assert_eq!(parse_time("2026-01-01T00:00:00Z").unwrap(), 1767225600);
        assert_eq!(parse_time("2026-01-01T01:00:00+01:00").unwrap(), 1767225600);
        assert_eq!(parse_time("-5").unwrap(), -5);
        for bad in ["", "yesterday", "2026-01-01", "2026-01-01T00:00:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    fn policy() -> Policy {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../example-policy.toml"
        ))
        .unwrap();
        Policy::parse(&text, "example-policy.toml").unwrap()
    }

    fn exp(
        p: &Policy,
        cat: &str,
        events: &[(&str, &str)],
        flags: &[&str],
        collected: &str,
    ) -> Expiry {
        let events: BTreeMap<String, i64> =
            events.iter().map(|(e, t)| (e.to_string(), ts(t))).collect();
        let flags: BTreeSet<String> = flags.iter().map(|f| f.to_string()).collect();
        expiry(
            p.category(cat).unwrap(),
            &Facts {
                events: Some(&events),
                flags: Some(&flags),
            },
            ts(collected),
        )
    }

    const T0: &str = "2026-01-15T12:00:00Z";

    #[test]
    fn calendar_arithmetic_and_rounding() {
        let m = CalendarSpan {
            amount: 1,
            unit: SpanUnit::Months,
        };
        assert_eq!(
            add_span(ts("2026-01-31T10:00:00Z"), m),
            Some(ts("2026-02-28T10:00:00Z"))
        );
        let y = CalendarSpan {
            amount: 1,
            unit: SpanUnit::Years,
        };
        assert_eq!(
            add_span(ts("2024-02-29T00:00:00Z"), y),
            Some(ts("2025-02-28T00:00:00Z"))
        );
        let big = CalendarSpan {
            amount: 1000,
            unit: SpanUnit::Years,
        };
        assert_eq!(add_span(ts("9000-01-01T00:00:00Z"), big), None);
        // Rounding up to the end of the day, never early.
        let d = expiry_day(ts("2026-03-10T00:00:01Z"));
        assert_eq!(day_end(d), ts("2026-03-11T00:00:00Z"));
        assert_eq!(
            day_end(expiry_day(ts("2026-03-11T00:00:00Z"))),
            ts("2026-03-11T00:00:00Z")
        );
        assert_eq!(
            day_end(expiry_day(ts("2026-03-10T23:59:59Z"))),
            ts("2026-03-11T00:00:00Z")
        );
        assert_eq!(expiry_day(0), -1);
        assert!(check_event_time(-1, "event").is_err());
        assert!(check_event_time(MAX_EVENT_TIME + 1, "event").is_err());
        assert!(check_event_time(MAX_EVENT_TIME, "event").is_ok());
    }

    /// One case per row of the privacy policy's retention table (and the
    /// post-mortem directive): the expiry the example policy computes.
    #[test]
    fn every_row_of_the_retention_table() {
        let p = policy();
        let end = ("agreement_end", "2027-06-30T00:00:00Z");
        let cert_end = ("last_certificate_end", "2028-03-01T00:00:00Z");
        // 1 account: 7 years after the agreement ends.
        assert_eq!(exp(&p, "account", &[], &[], T0), Expiry::Open);
        assert_eq!(
            exp(&p, "account", &[end], &[], T0),
            Expiry::At(ts("2034-06-30T00:00:00Z"))
        );
        // 2 certificate: 7 years after the last certificate, 15 if qualified.
        assert_eq!(
            exp(&p, "certificate", &[cert_end], &[], T0),
            Expiry::At(ts("2035-03-01T00:00:00Z"))
        );
        assert_eq!(
            exp(
                &p,
                "certificate",
                &[cert_end],
                &["qualified_certificate"],
                T0
            ),
            Expiry::At(ts("2043-03-01T00:00:00Z"))
        );
        // 3 codeguard: the earlier of a deletion request and the agreement end.
        assert_eq!(exp(&p, "codeguard", &[], &[], T0), Expiry::Open);
        assert_eq!(
            exp(&p, "codeguard", &[end], &[], T0),
            Expiry::At(ts("2027-06-30T00:00:00Z"))
        );
        assert_eq!(
            exp(
                &p,
                "codeguard",
                &[end, ("erasure_requested", "2026-05-01T09:00:00Z")],
                &[],
                T0
            ),
            Expiry::At(ts("2026-05-01T09:00:00Z"))
        );
        // 4 reseller orders: certificate orders as row 2, others 7y after the agreement.
        assert_eq!(
            exp(&p, "reseller_order", &[end, cert_end], &[], T0),
            Expiry::At(ts("2034-06-30T00:00:00Z"))
        );
        assert_eq!(
            exp(
                &p,
                "reseller_order",
                &[end, cert_end],
                &["certificate_order"],
                T0
            ),
            Expiry::At(ts("2035-03-01T00:00:00Z"))
        );
        assert_eq!(
            exp(
                &p,
                "reseller_order",
                &[end, cert_end],
                &["certificate_order", "qualified_certificate"],
                T0
            ),
            Expiry::At(ts("2043-03-01T00:00:00Z"))
        );
        // 5 third-party validation sources: as row 2.
        assert_eq!(
            exp(&p, "validation_source", &[cert_end], &[], T0),
            Expiry::At(ts("2035-03-01T00:00:00Z"))
        );
        // 6 other third-party sources: the later of agreement end + 7y and a deletion request.
        assert_eq!(exp(&p, "purchased_leads", &[end], &[], T0), Expiry::Open);
        assert_eq!(
            exp(
                &p,
                "purchased_leads",
                &[end, ("erasure_requested", "2026-05-01T00:00:00Z")],
                &[],
                T0
            ),
            Expiry::At(ts("2034-06-30T00:00:00Z"))
        );
        assert_eq!(
            exp(
                &p,
                "purchased_leads",
                &[end, ("erasure_requested", "2040-01-01T00:00:00Z")],
                &[],
                T0
            ),
            Expiry::At(ts("2040-01-01T00:00:00Z"))
        );
        // 7 issued certificates: as row 2.
        assert_eq!(
            exp(
                &p,
                "issued_certificate",
                &[cert_end],
                &["qualified_certificate"],
                T0
            ),
            Expiry::At(ts("2043-03-01T00:00:00Z"))
        );
        // 8 CT logs: no retention period.
        assert_eq!(
            exp(&p, "ct_log_entry", &[end, cert_end], &[], T0),
            Expiry::Open
        );
        // 9 usage: 13 months from collection.
        assert_eq!(
            exp(&p, "usage_log", &[], &[], T0),
            Expiry::At(ts("2027-02-15T12:00:00Z"))
        );
        // 10-12 inquiries, events, marketing: until consent is withdrawn.
        for cat in ["inquiry", "event_contact", "marketing_contact"] {
            assert_eq!(exp(&p, cat, &[end], &[], T0), Expiry::Open, "{cat}");
        }
        // 13-14 cookies and analytics: 13 months from collection.
        for cat in ["analytics_experience", "analytics_advertising"] {
            assert_eq!(
                exp(&p, cat, &[], &[], T0),
                Expiry::At(ts("2027-02-15T12:00:00Z")),
                "{cat}"
            );
        }
        // 15 job applications: 4 years after hiring concludes; employees per their notice.
        let hired = ("hiring_concluded", "2026-02-01T00:00:00Z");
        assert_eq!(
            exp(&p, "job_application", &[hired], &[], T0),
            Expiry::At(ts("2030-02-01T00:00:00Z"))
        );
        assert_eq!(
            exp(&p, "job_application", &[hired], &["employee"], T0),
            Expiry::Open
        );
        assert_eq!(
            exp(
                &p,
                "job_application",
                &[
                    hired,
                    ("employee_notice_period_end", "2036-01-01T00:00:00Z")
                ],
                &["employee"],
                T0
            ),
            Expiry::At(ts("2036-01-01T00:00:00Z"))
        );
        // Post-mortem directive: one year after death.
        assert_eq!(
            exp(
                &p,
                "post_mortem_directive",
                &[("deceased", "2030-05-05T05:00:00Z")],
                &[],
                T0
            ),
            Expiry::At(ts("2031-05-05T05:00:00Z"))
        );
    }
}
