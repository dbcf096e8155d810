//! The policy: purposes, categories, legal bases and retention rules, read
//! from TOML (DESIGN.md §3) and validated whole. Every error names the file,
//! the line and the key; nothing is silently defaulted except what the format
//! documents (`keep = "0d"`, `on_erasure_request = "erase"`).
//!
//! The vault stores the policy's source text, so a later open may omit it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

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

    pub(crate) fn parse(text: &str) -> std::result::Result<CalendarSpan, String> {
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
    /// Readable only through a handle opened as privileged
    /// (`VaultOptions::privileged`). `legal_claims` always is.
    pub privileged: bool,
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

/// Settings of the vault itself (`[vault]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultSettings {
    /// How often the blind index gets a new key (`blind_index_rotation`,
    /// default `"7d"`): the blind-index entries an erasure leaves in the
    /// store's old files are findable for at most this long.
    pub blind_index_rotation_days: u32,
    /// How long a backup may be restored (`backup_window`, default
    /// `"14d"`): past it, a backup's key is destroyed (a root key in a
    /// token) or refused (see `vault::backup`).
    pub backup_window_days: u32,
    /// How long a key epoch lasts (`key_epoch`, default `"1d"`), for a
    /// vault whose keys are in PostgreSQL (`custody::epochs`): an erasure
    /// is complete, in every copy of the database, once its epoch ends.
    pub key_epoch_days: u32,
}

impl Default for VaultSettings {
    fn default() -> Self {
        VaultSettings {
            blind_index_rotation_days: 7,
            backup_window_days: 14,
            key_epoch_days: 1,
        }
    }
}

impl VaultSettings {
    pub fn blind_index_rotation_seconds(&self) -> i64 {
        i64::from(self.blind_index_rotation_days) * 86_400
    }

    pub fn backup_window_seconds(&self) -> i64 {
        i64::from(self.backup_window_days) * 86_400
    }

    pub fn key_epoch_seconds(&self) -> i64 {
        i64::from(self.key_epoch_days) * 86_400
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
    vault: VaultSettings,
}

mod parse;

impl Policy {
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

    /// The `[vault]` settings.
    pub fn vault(&self) -> &VaultSettings {
        &self.vault
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

#[cfg(test)]
mod tests;
