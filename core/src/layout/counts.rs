//! A subject's stored record counts ('C'): what an erasure receipt reports,
//! without a pass over the subject's records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::entries::{decode_record_view, RecordEntryView};
use crate::ids::SubjectId;

/// A subject's live records numbered up to `through`, counted by category
/// and expiry day. Records are numbered in the order they are put (see
/// `RecordId::for_subject`), so the count of all of them is this plus the
/// few put since, read in one short range scan (`vault::counts`).
///
/// Every change to a subject's records keeps it exact:
/// - a put changes nothing here: its record is newer than `through`. Every
///   `COUNTS_EVERY` puts the counts are brought up to date, *after* the
///   record is written: sled recovers a prefix of its log, so stored counts
///   never include a record that is not there;
/// - a rotation (update, delete, re-evaluation, an erasure that keeps some)
///   rewrites it in the batch that rewrites the records;
/// - an erasure removes it with the subject's tombstone;
/// - an expiry leaves it alone: rows of a day whose key is gone are simply
///   not counted (and dropped when the counts are next written).
///
/// Missing counts mean `through = 0`: every record is then read once.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubjectCounts {
    pub rows: Vec<CountRow>,
    pub through: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct CountRow {
    pub category: String,
    pub day: Option<i64>,
    pub records: u64,
}

impl SubjectCounts {
    /// Counts one more record of `category` expiring on `day`.
    pub fn add(&mut self, category: &str, day: Option<i64>) {
        match self
            .rows
            .iter_mut()
            .find(|r| r.day == day && r.category == category)
        {
            Some(row) => row.records += 1,
            None => self.rows.push(CountRow {
                category: category.to_string(),
                day,
                records: 1,
            }),
        }
    }

    /// Counts one stored record entry of `subject`: a live record by its
    /// category and day, an entry that does not decode as "(unreadable)".
    pub fn count_entry(&mut self, subject: &SubjectId, stored: &[u8]) {
        match decode_record_view(stored) {
            Ok(RecordEntryView::Live(r)) if r.subject == *subject => self.add(r.category, r.day),
            Ok(_) => {}
            Err(_) => self.add("(unreadable)", None),
        }
    }

    /// Records by category, leaving out days that ended by `expired_through`
    /// (their key is gone or going: those records are expired, not live).
    pub fn live_by_category(&self, expired_through: i64) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for row in self.rows.iter().filter(|r| r.is_live(expired_through)) {
            *out.entry(row.category.clone()).or_default() += row.records;
        }
        out.retain(|_, n| *n > 0);
        out
    }

    /// Drops the rows of days that ended by `expired_through`.
    pub fn drop_expired(&mut self, expired_through: i64) {
        self.rows
            .retain(|r| r.records > 0 && r.is_live(expired_through));
    }
}

impl CountRow {
    /// Its records have no expiry day, or one that has not ended by
    /// `expired_through`.
    fn is_live(&self, expired_through: i64) -> bool {
        self.day
            .is_none_or(|d| crate::retention::day_end(d) > expired_through)
    }
}
