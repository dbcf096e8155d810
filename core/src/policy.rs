//! The policy: purposes, categories, legal bases and retention rules, read
//! from TOML (DESIGN.md §3) and validated whole. Every error names the file,
//! the line and the key; nothing is silently defaulted except what the format
//! documents (`keep = "0d"`, `on_erasure_request = "erase"`).
//!
//! The vault stores the policy's source text, so a later open may omit it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, ErrorKind, Result};

/// The purpose that always exists, that every category allows, and that is
/// the only one for which restricted data may still be read.
pub const LEGAL_CLAIMS: &str = "legal_claims";
/// The event that `erase_subject` records.
pub const ERASURE_REQUESTED: &str = "erasure_requested";
/// The pseudo-event of a record's own creation time.
pub const COLLECTED: &str = "collected";
/// The event that carries out post-mortem directives.
pub const DECEASED: &str = "deceased";

/// Why the processing of a category is lawful (GDPR art. 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    LegitimateInterest,
    VitalInterest,
    PublicTask,
}

impl LegalBasis {
    pub fn name(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Contract => "contract",
            LegalBasis::LegalObligation => "legal_obligation",
            LegalBasis::LegitimateInterest => "legitimate_interest",
            LegalBasis::VitalInterest => "vital_interest",
            LegalBasis::PublicTask => "public_task",
        }
    }
}

/// What `erase_subject` does to a category whose rules do not name
/// `erasure_requested`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnErasureRequest {
    /// Erased at once (the default).
    #[default]
    Erase,
    /// Kept, restricted to `legal_claims`, until its retention ends.
    Retain,
}

/// A calendar span: `30d`, `2w`, `13mo`, `7y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CalendarSpan {
    pub amount: u32,
    pub unit: SpanUnit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanUnit {
    Days,
    Weeks,
    Months,
    Years,
}

impl CalendarSpan {
    pub const ZERO: CalendarSpan = CalendarSpan {
        amount: 0,
        unit: SpanUnit::Days,
    };

    fn parse(text: &str) -> std::result::Result<CalendarSpan, String> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let unit = match unit {
            "d" => SpanUnit::Days,
            "w" => SpanUnit::Weeks,
            "mo" => SpanUnit::Months,
            "y" => SpanUnit::Years,
            _ => return Err(format!("bad span {text:?}: expected a number and one of d, w, mo, y (e.g. \"7y\", \"13mo\")")),
        };
        let amount: u32 = number
            .parse()
            .map_err(|_| format!("bad span {text:?}: expected a number and one of d, w, mo, y"))?;
        // 1000 years is far beyond any retention schedule, and keeps every
        // computed date inside the calendar library's range.
        let years = match unit {
            SpanUnit::Days => amount / 365,
            SpanUnit::Weeks => amount / 52,
            SpanUnit::Months => amount / 12,
            SpanUnit::Years => amount,
        };
        if years > 1000 {
            return Err(format!("bad span {text:?}: longer than 1000 years"));
        }
        Ok(CalendarSpan { amount, unit })
    }
}

impl fmt::Display for CalendarSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            SpanUnit::Days => "d",
            SpanUnit::Weeks => "w",
            SpanUnit::Months => "mo",
            SpanUnit::Years => "y",
        };
        write!(f, "{}{}", self.amount, unit)
    }
}

/// The event a retention clock starts from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// The record's own creation time.
    Collected,
    /// A subject event, recorded with `record_event` (or, for
    /// `erasure_requested`, by `erase_subject`).
    Subject(String),
}

impl Event {
    pub fn name(&self) -> &str {
        match self {
            Event::Collected => COLLECTED,
            Event::Subject(name) => name,
        }
    }
}

/// `keep` after `event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause {
    pub event: Event,
    pub keep: CalendarSpan,
}

/// The shape of one retention rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleKind {
    After(Clause),
    /// Expires at the earliest clause whose event is known.
    Earliest(Vec<Clause>),
    /// Expires once every clause's event is known, at the latest of them.
    Latest(Vec<Clause>),
    /// Lives while the subject's consent for the category's purposes stands.
    UntilConsentWithdrawn,
}

/// One retention rule; the first rule whose condition holds decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub if_flag: Option<String>,
    pub kind: RuleKind,
}

impl Rule {
    /// Every event the rule's clauses name.
    pub fn events(&self) -> Vec<&Event> {
        match &self.kind {
            RuleKind::After(c) => vec![&c.event],
            RuleKind::Earliest(cs) | RuleKind::Latest(cs) => cs.iter().map(|c| &c.event).collect(),
            RuleKind::UntilConsentWithdrawn => vec![],
        }
    }

    /// The rule in words, for receipts and exports.
    pub fn describe(&self) -> String {
        fn clause(c: &Clause) -> String {
            if c.keep == CalendarSpan::ZERO {
                format!("at {}", c.event.name())
            } else {
                format!("{} after {}", c.keep, c.event.name())
            }
        }
        let body = match &self.kind {
            RuleKind::After(c) => clause(c),
            RuleKind::Earliest(cs) => {
                format!(
                    "at the earliest of: {}",
                    cs.iter().map(clause).collect::<Vec<_>>().join("; ")
                )
            }
            RuleKind::Latest(cs) => {
                format!(
                    "at the latest of: {}",
                    cs.iter().map(clause).collect::<Vec<_>>().join("; ")
                )
            }
            RuleKind::UntilConsentWithdrawn => "until consent is withdrawn".to_string(),
        };
        match &self.if_flag {
            Some(flag) => format!("{body} (if {flag})"),
            None => body,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purpose {
    pub name: String,
    pub description: String,
    /// Refused for subjects who opted out of sale.
    pub sale: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    pub name: String,
    pub description: String,
    pub legal_basis: LegalBasis,
    pub purposes: Vec<String>,
    pub on_erasure_request: OnErasureRequest,
    /// Empty: the record has no retention period (kept until erased).
    pub retention: Vec<Rule>,
}

impl Category {
    /// Whether a read for `purpose` is allowed by this category.
    pub fn allows(&self, purpose: &str) -> bool {
        purpose == LEGAL_CLAIMS || self.purposes.iter().any(|p| p == purpose)
    }

    /// Whether any rule names `erasure_requested`.
    pub fn follows_erasure_request(&self) -> bool {
        self.retention
            .iter()
            .any(|r| r.events().iter().any(|e| e.name() == ERASURE_REQUESTED))
    }
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    source: String,
    purposes: BTreeMap<String, Purpose>,
    categories: BTreeMap<String, Category>,
    flags: BTreeSet<String>,
    events: BTreeSet<String>,
}

// ---- raw TOML shape --------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    purposes: BTreeMap<Spanned<String>, RawPurpose>,
    #[serde(default)]
    categories: BTreeMap<Spanned<String>, RawCategory>,
    #[serde(default)]
    flags: BTreeMap<Spanned<String>, RawDescribed>,
    #[serde(default)]
    events: BTreeMap<Spanned<String>, RawDescribed>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    #[serde(default)]
    description: String,
    #[serde(default)]
    sale: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescribed {
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    #[serde(default)]
    description: String,
    legal_basis: Spanned<LegalBasis>,
    purposes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    on_erasure_request: Option<Spanned<OnErasureRequest>>,
    #[serde(default)]
    retention: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    after: Option<Spanned<String>>,
    keep: Option<Spanned<String>>,
    if_flag: Option<Spanned<String>>,
    earliest: Option<Spanned<Vec<Spanned<RawClause>>>>,
    latest: Option<Spanned<Vec<Spanned<RawClause>>>>,
    until: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClause {
    after: Option<Spanned<String>>,
    keep: Option<Spanned<String>>,
}

// ---- parsing ---------------------------------------------------------------

struct Ctx<'a> {
    file: &'a str,
    source: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.source.len());
        self.source.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: std::ops::Range<usize>, key: &str, message: impl fmt::Display) -> Error {
        Error::new(
            ErrorKind::Policy,
            format!(
                "{}:{}: {}: {}",
                self.file,
                self.line_of(span.start),
                key,
                message
            ),
        )
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.as_bytes()[0].is_ascii_lowercase()
}

fn check_name(ctx: &Ctx, name: &Spanned<String>, key: &str) -> Result<()> {
    if is_name(name.get_ref()) {
        Ok(())
    } else {
        Err(ctx.err(
            name.span(),
            key,
            format!("{:?} is not a valid name (lowercase letters, digits and _, starting with a letter, at most 64)", name.get_ref()),
        ))
    }
}

impl Policy {
    /// Parses and validates policy text. `file` names the source in errors.
    pub fn parse(source: &str, file: &str) -> Result<Policy> {
        let ctx = Ctx { file, source };
        let raw: RawPolicy = toml::from_str(source).map_err(|e| {
            let line = e.span().map(|s| ctx.line_of(s.start)).unwrap_or(1);
            Error::new(
                ErrorKind::Policy,
                format!("{file}:{line}: {}", e.message().trim()),
            )
        })?;

        let mut purposes = BTreeMap::new();
        for (name, p) in raw.purposes {
            check_name(&ctx, &name, &format!("purposes.{}", name.get_ref()))?;
            let name = name.into_inner();
            purposes.insert(
                name.clone(),
                Purpose {
                    name,
                    description: p.description,
                    sale: p.sale,
                },
            );
        }
        purposes
            .entry(LEGAL_CLAIMS.to_string())
            .or_insert_with(|| Purpose {
                name: LEGAL_CLAIMS.to_string(),
                description: "Establishing, exercising or defending legal claims".to_string(),
                sale: false,
            });
        if purposes[LEGAL_CLAIMS].sale {
            return Err(Error::new(
                ErrorKind::Policy,
                format!("{file}: purposes.legal_claims: cannot be a sale purpose"),
            ));
        }

        let mut flags = BTreeSet::new();
        for name in raw.flags.keys() {
            check_name(&ctx, name, &format!("flags.{}", name.get_ref()))?;
            flags.insert(name.get_ref().clone());
        }
        let mut events: BTreeSet<String> = BTreeSet::new();
        for name in raw.events.keys() {
            check_name(&ctx, name, &format!("events.{}", name.get_ref()))?;
            if name.get_ref() == COLLECTED {
                return Err(ctx.err(
                    name.span(),
                    "events.collected",
                    "is the record's own creation time, not a subject event",
                ));
            }
            events.insert(name.get_ref().clone());
        }
        events.insert(DECEASED.to_string());
        events.insert(ERASURE_REQUESTED.to_string());

        let mut categories = BTreeMap::new();
        for (name, c) in raw.categories {
            let base = format!("categories.{}", name.get_ref());
            check_name(&ctx, &name, &base)?;
            let name = name.into_inner();
            if c.purposes.get_ref().is_empty() {
                return Err(ctx.err(
                    c.purposes.span(),
                    &format!("{base}.purposes"),
                    "a category needs at least one purpose",
                ));
            }
            let mut cat_purposes = Vec::new();
            for p in c.purposes.into_inner() {
                if !purposes.contains_key(p.get_ref()) {
                    return Err(ctx.err(
                        p.span(),
                        &format!("{base}.purposes"),
                        format!(
                            "unknown purpose {:?}: declare it under [purposes.{}]",
                            p.get_ref(),
                            p.get_ref()
                        ),
                    ));
                }
                if !cat_purposes.contains(p.get_ref()) {
                    cat_purposes.push(p.into_inner());
                }
            }
            let legal_basis = c.legal_basis.into_inner();
            let mut retention = Vec::new();
            for (i, rule) in c.retention.into_iter().enumerate() {
                let key = format!("{base}.retention[{i}]");
                let span = rule.span();
                let rule = parse_rule(
                    &ctx,
                    rule.into_inner(),
                    span.clone(),
                    &key,
                    &mut flags,
                    &mut events,
                )?;
                if rule.kind == RuleKind::UntilConsentWithdrawn
                    && legal_basis != LegalBasis::Consent
                {
                    return Err(ctx.err(
                        span,
                        &key,
                        "until = \"consent_withdrawn\" needs legal_basis = \"consent\"",
                    ));
                }
                retention.push(rule);
            }
            // A rule after an unconditional one can never decide.
            if let Some(pos) = retention.iter().position(|r| r.if_flag.is_none()) {
                if pos + 1 < retention.len() {
                    return Err(Error::new(
                        ErrorKind::Policy,
                        format!("{file}: {base}.retention[{}]: unreachable, rule {pos} has no if_flag and always decides", pos + 1),
                    ));
                }
            }
            categories.insert(
                name.clone(),
                Category {
                    name,
                    description: c.description,
                    legal_basis,
                    purposes: cat_purposes,
                    on_erasure_request: c
                        .on_erasure_request
                        .map(Spanned::into_inner)
                        .unwrap_or_default(),
                    retention,
                },
            );
        }
        if categories.is_empty() {
            return Err(Error::new(
                ErrorKind::Policy,
                format!("{file}: categories: a policy needs at least one category"),
            ));
        }
        Ok(Policy {
            source: source.to_string(),
            purposes,
            categories,
            flags,
            events,
        })
    }

    /// Reads and parses a policy file.
    pub fn from_file(path: &std::path::Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::with_source(
                ErrorKind::Policy,
                format!("cannot read policy file {}: {e}", path.display()),
                e,
            )
        })?;
        Policy::parse(&text, &path.display().to_string())
    }

    /// The TOML text the policy was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn category(&self, name: &str) -> Result<&Category> {
        self.categories.get(name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown category {:?}",
                crate::ids::truncate_for_message(name)
            ))
        })
    }

    pub fn categories(&self) -> impl Iterator<Item = &Category> {
        self.categories.values()
    }

    pub fn purpose(&self, name: &str) -> Result<&Purpose> {
        self.purposes.get(name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown purpose {:?}",
                crate::ids::truncate_for_message(name)
            ))
        })
    }

    pub fn purposes(&self) -> impl Iterator<Item = &Purpose> {
        self.purposes.values()
    }

    /// Flags named by `if_flag` or declared under `[flags]`.
    pub fn flags(&self) -> &BTreeSet<String> {
        &self.flags
    }

    /// Subject events named by rules or declared under `[events]`, plus
    /// `deceased` and `erasure_requested`.
    pub fn events(&self) -> &BTreeSet<String> {
        &self.events
    }
}

fn parse_span_field(ctx: &Ctx, keep: Option<Spanned<String>>, key: &str) -> Result<CalendarSpan> {
    match keep {
        None => Ok(CalendarSpan::ZERO),
        Some(k) => CalendarSpan::parse(k.get_ref())
            .map_err(|m| ctx.err(k.span(), &format!("{key}.keep"), m)),
    }
}

fn parse_event(
    ctx: &Ctx,
    after: Spanned<String>,
    key: &str,
    events: &mut BTreeSet<String>,
) -> Result<Event> {
    check_name(ctx, &after, &format!("{key}.after"))?;
    if after.get_ref() == COLLECTED {
        Ok(Event::Collected)
    } else {
        events.insert(after.get_ref().clone());
        Ok(Event::Subject(after.into_inner()))
    }
}

fn parse_clauses(
    ctx: &Ctx,
    clauses: Spanned<Vec<Spanned<RawClause>>>,
    key: &str,
    events: &mut BTreeSet<String>,
) -> Result<Vec<Clause>> {
    if clauses.get_ref().len() < 2 {
        return Err(ctx.err(clauses.span(), key, "needs at least two clauses"));
    }
    let mut out = Vec::new();
    for (i, c) in clauses.into_inner().into_iter().enumerate() {
        let ckey = format!("{key}[{i}]");
        let span = c.span();
        let c = c.into_inner();
        let Some(after) = c.after else {
            return Err(ctx.err(span, &ckey, "a clause needs `after = \"<event>\"`"));
        };
        let event = parse_event(ctx, after, &ckey, events)?;
        out.push(Clause {
            event,
            keep: parse_span_field(ctx, c.keep, &ckey)?,
        });
    }
    Ok(out)
}

fn parse_rule(
    ctx: &Ctx,
    raw: RawRule,
    span: std::ops::Range<usize>,
    key: &str,
    flags: &mut BTreeSet<String>,
    events: &mut BTreeSet<String>,
) -> Result<Rule> {
    let forms = [
        raw.after.is_some(),
        raw.earliest.is_some(),
        raw.latest.is_some(),
        raw.until.is_some(),
    ];
    match forms.iter().filter(|&&f| f).count() {
        0 => {
            return Err(ctx.err(
                span,
                key,
                "a rule names no event: use after, earliest, latest or until",
            ))
        }
        1 => {}
        _ => {
            return Err(ctx.err(
                span,
                key,
                "a rule takes exactly one of after, earliest, latest, until",
            ))
        }
    }
    if raw.keep.is_some() && raw.after.is_none() {
        return Err(ctx.err(
            span,
            &format!("{key}.keep"),
            "keep goes with after (inside earliest/latest, on each clause)",
        ));
    }
    let if_flag = match raw.if_flag {
        Some(flag) => {
            check_name(ctx, &flag, &format!("{key}.if_flag"))?;
            flags.insert(flag.get_ref().clone());
            Some(flag.into_inner())
        }
        None => None,
    };
    let kind = if let Some(after) = raw.after {
        let event = parse_event(ctx, after, key, events)?;
        RuleKind::After(Clause {
            event,
            keep: parse_span_field(ctx, raw.keep, key)?,
        })
    } else if let Some(clauses) = raw.earliest {
        RuleKind::Earliest(parse_clauses(
            ctx,
            clauses,
            &format!("{key}.earliest"),
            events,
        )?)
    } else if let Some(clauses) = raw.latest {
        RuleKind::Latest(parse_clauses(
            ctx,
            clauses,
            &format!("{key}.latest"),
            events,
        )?)
    } else {
        let until = raw.until.expect("one form is present");
        if until.get_ref() != "consent_withdrawn" {
            return Err(ctx.err(
                until.span(),
                &format!("{key}.until"),
                format!(
                    "unknown condition {:?}: the only one is \"consent_withdrawn\"",
                    until.get_ref()
                ),
            ));
        }
        RuleKind::UntilConsentWithdrawn
    };
    Ok(Rule { if_flag, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_EXCERPT: &str = r#"
[purposes.account_admin]
description = "Provide the products and services and administer the account"
[purposes.marketing]
description = "Marketing"
[purposes.sale]
description = "Sale"
sale = true
[purposes.certificate_validation]
[purposes.fraud_prevention]
[purposes.codeguard]
[purposes.security]

[categories.certificate]
description = "Information provided to validate and issue a certificate"
legal_basis = "legitimate_interest"
purposes = ["certificate_validation", "fraud_prevention"]
on_erasure_request = "retain"
retention = [
  { after = "last_certificate_end", keep = "15y", if_flag = "qualified_certificate" },
  { after = "last_certificate_end", keep = "7y" },
]

[categories.codeguard]
legal_basis = "contract"
purposes = ["codeguard"]
retention = [{ earliest = [ { after = "erasure_requested" }, { after = "agreement_end" } ] }]

[categories.purchased_leads]
legal_basis = "legitimate_interest"
purposes = ["marketing"]
retention = [{ latest = [ { after = "agreement_end", keep = "7y" }, { after = "erasure_requested" } ] }]

[categories.marketing_contact]
legal_basis = "consent"
purposes = ["marketing"]
retention = [{ until = "consent_withdrawn" }]

[categories.usage_log]
legal_basis = "legitimate_interest"
purposes = ["security"]
retention = [{ after = "collected", keep = "13mo" }]
"#;

    #[test]
    fn parses_the_design_excerpt() {
        let p = Policy::parse(DESIGN_EXCERPT, "p.toml").unwrap();
        let cert = p.category("certificate").unwrap();
        assert_eq!(cert.on_erasure_request, OnErasureRequest::Retain);
        assert_eq!(cert.retention.len(), 2);
        assert_eq!(
            cert.retention[0].if_flag.as_deref(),
            Some("qualified_certificate")
        );
        assert!(cert.allows("legal_claims"));
        assert!(!cert.allows("marketing"));
        assert!(p.flags().contains("qualified_certificate"));
        assert!(p.events().contains("agreement_end"));
        assert!(p.category("codeguard").unwrap().follows_erasure_request());
        assert!(p.purpose("sale").unwrap().sale);
        let usage = &p.category("usage_log").unwrap().retention[0];
        assert_eq!(
            usage.kind,
            RuleKind::After(Clause {
                event: Event::Collected,
                keep: CalendarSpan {
                    amount: 13,
                    unit: SpanUnit::Months
                }
            })
        );
        assert_eq!(
            cert.retention[1].describe(),
            "7y after last_certificate_end"
        );
    }

    fn error_of(src: &str) -> String {
        let e = Policy::parse(src, "bad.toml").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Policy);
        e.message().to_string()
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let base = "[purposes.p]\n[categories.c]\nlegal_basis = \"contract\"\npurposes = [\"p\"]\n";
        let m = error_of(&format!("{base}colour = 1\n"));
        assert!(m.starts_with("bad.toml:5"), "{m}");
        assert!(m.contains("colour"), "{m}");
        let m = error_of("[purposes.p]\n[categories.c]\nlegal_basis = \"contract\"\npurposes = [\"p\", \"nope\"]\n");
        assert!(
            m.starts_with("bad.toml:4: categories.c.purposes: unknown purpose \"nope\""),
            "{m}"
        );
        let m =
            error_of("[purposes.p]\n[categories.c]\nlegal_basis = \"whim\"\npurposes = [\"p\"]\n");
        assert!(m.starts_with("bad.toml:3"), "{m}");
        let m = error_of(&format!(
            "{base}retention = [{{ after = \"x\", keep = \"7 years\" }}]\n"
        ));
        assert!(
            m.starts_with("bad.toml:5: categories.c.retention[0].keep: bad span"),
            "{m}"
        );
        let m = error_of(&format!("{base}retention = [{{ keep = \"7y\" }}]\n"));
        assert!(m.contains("names no event"), "{m}");
        let m = error_of(&format!("{base}retention = [{{ before = \"x\" }}]\n"));
        assert!(m.contains("before"), "{m}");
        let m = error_of(&format!("{base}retention = [{{ until = \"bored\" }}]\n"));
        assert!(m.contains("consent_withdrawn"), "{m}");
        let m = error_of(&format!(
            "{base}retention = [{{ until = \"consent_withdrawn\" }}]\n"
        ));
        assert!(m.contains("legal_basis = \"consent\""), "{m}");
        let m = error_of(&format!(
            "{base}retention = [{{ earliest = [{{ after = \"a\" }}] }}]\n"
        ));
        assert!(m.contains("at least two"), "{m}");
        let m = error_of(&format!(
            "{base}retention = [{{ after = \"a\" }}, {{ after = \"b\" }}]\n"
        ));
        assert!(m.contains("unreachable"), "{m}");
        let m = error_of("[purposes.p]\n");
        assert!(m.contains("at least one category"), "{m}");
        let m = error_of("this is not toml");
        assert!(m.starts_with("bad.toml:1"), "{m}");
        let m = error_of(
            "[purposes.Bad-Name]\n[categories.c]\nlegal_basis = \"contract\"\npurposes = [\"p\"]\n",
        );
        assert!(m.contains("not a valid name"), "{m}");
    }

    #[test]
    fn spans() {
        assert_eq!(CalendarSpan::parse("0d").unwrap(), CalendarSpan::ZERO);
        assert_eq!(CalendarSpan::parse("13mo").unwrap().unit, SpanUnit::Months);
        for bad in [
            "",
            "7",
            "y",
            "-1y",
            "1.5y",
            "7Y",
            "1001y",
            "99999999999d",
            "7 y",
        ] {
            assert!(CalendarSpan::parse(bad).is_err(), "{bad}");
        }
    }
}
