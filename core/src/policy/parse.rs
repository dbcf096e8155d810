//! Reading a policy from TOML: the raw shape serde reads, then every
//! check, each failure naming the file, the line and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::{
    CalendarSpan, Category, Clause, Event, LegalBasis, OnErasureRequest, Policy, Purpose, Rule,
    RuleKind, SpanUnit, VaultSettings, COLLECTED, DECEASED, ERASURE_REQUESTED, LEGAL_CLAIMS,
};
use crate::error::{Error, ErrorKind, Result};

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
    #[serde(default)]
    vault: Option<RawVault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    #[serde(default)]
    blind_index_rotation: Option<Spanned<String>>,
    #[serde(default)]
    backup_window: Option<Spanned<String>>,
    #[serde(default)]
    key_epoch: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    #[serde(default)]
    description: String,
    #[serde(default)]
    sale: bool,
    #[serde(default)]
    privileged: Option<bool>,
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

/// A `[vault]` period of 1 to 366 days, given in `d` or `w` (`"7d"`).
fn days_setting(ctx: &Ctx, span: &Spanned<String>, key: &str, what: &str) -> Result<u32> {
    let parsed = CalendarSpan::parse(span.get_ref()).map_err(|m| ctx.err(span.span(), key, m))?;
    let days = match parsed.unit {
        SpanUnit::Days => parsed.amount,
        SpanUnit::Weeks => parsed.amount.saturating_mul(7),
        _ => 0,
    };
    if !(1..=366).contains(&days) {
        return Err(ctx.err(
            span.span(),
            key,
            format!("{what} is 1 to 366 days, given in d or w (e.g. \"7d\")"),
        ));
    }
    Ok(days)
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
            if name == LEGAL_CLAIMS && p.privileged == Some(false) {
                return Err(Error::new(
                    ErrorKind::Policy,
                    format!("{file}: purposes.legal_claims.privileged: legal_claims is always privileged"),
                ));
            }
            purposes.insert(
                name.clone(),
                Purpose {
                    privileged: p.privileged.unwrap_or(false) || name == LEGAL_CLAIMS,
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
                privileged: true,
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
        let mut vault = VaultSettings::default();
        if let Some(raw_vault) = raw.vault {
            if let Some(span) = raw_vault.blind_index_rotation {
                vault.blind_index_rotation_days = days_setting(
                    &ctx,
                    &span,
                    "vault.blind_index_rotation",
                    "a rotation period",
                )?;
            }
            if let Some(span) = raw_vault.backup_window {
                vault.backup_window_days =
                    days_setting(&ctx, &span, "vault.backup_window", "a backup window")?;
            }
            if let Some(span) = raw_vault.key_epoch {
                vault.key_epoch_days = days_setting(&ctx, &span, "vault.key_epoch", "a key epoch")?;
            }
        }
        Ok(Policy {
            source: source.to_string(),
            purposes,
            categories,
            flags,
            events,
            vault,
        })
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
