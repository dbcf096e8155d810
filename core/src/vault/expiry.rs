//! Retention days and expiry: a day's retention key, `expire` (one key
//! destruction per ended day), and the purge that turns expired records
//! into husks and drops erased subjects' dead records afterwards.
//!
//! # Crash order
//!
//! `ensure_day_key`: the key is created in the custody (durable), then the
//! day entry is written; in `Immediate` mode it is made durable before any
//! record uses it (a put's journal frame holds its record, not the day).
//!
//! `expire`: the expiry mark is written; held subjects are rotated out of
//! the ended days; every ended day's key is destroyed (one durable write);
//! then one durable batch marks those days destroyed. A crash before the
//! mark leaves days whose key is already gone: their records read as
//! `Expired`, and the next run marks them. The purge (husks, index removal,
//! the day entry last) is idempotent and resumes at open.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::audit::Draft;
use crate::codec;
use crate::custody::{KeyKind, KeyRef};
use crate::decide;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::SubjectId;
use crate::layout::{
    decode_record_view, DayEntry, GoneReason, Key, Prefix, RecordEntry, RecordEntryView, RecordHusk,
};
use crate::options::Durability;
use crate::retention;
use crate::store::Batch;
use crate::types::ExpireReport;

use super::audited::{Commit, Op};
use super::ledger::Erasure;
use super::{lock, Engine, Vault};

/// Records purged per batch.
const PURGE_CHUNK: usize = 1024;

/// The background purge thread's state.
#[derive(Default)]
pub(super) struct Purger {
    running: bool,
    /// Another expiry run happened while it ran: go round again.
    again: bool,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Vault {
    /// Destroys the retention key of every UTC day that has ended by `now`:
    /// each such day's records expire at once, for every subject, in one
    /// key destruction per day (one durable write for all of them). Before
    /// that, the due records of subjects under legal hold are re-sealed out
    /// of those days. The cost is O(days) plus a count of the day's index
    /// entries; the dead ciphertext and metadata are purged afterwards, in
    /// the background (see [`Vault::purge`]).
    ///
    /// A `now` earlier than a previous run's is harmless: it finds less to
    /// do. A `now` more than a day ahead of the vault's clock is refused
    /// (`InvalidArgument`: a typo or a clock jump would destroy retention
    /// keys years early, irreversibly); [`Vault::expire_with`] can force it.
    pub fn expire(&self, now: i64) -> Result<ExpireReport> {
        self.expire_with(now, false)
    }

    /// [`Vault::expire`], forced when `force`: a `now` ahead of the clock is
    /// then honoured, days ended by then lose their keys, and from then on
    /// nothing due by then is kept or sealed into them again (the mark is
    /// stored, so it outlives the handle).
    pub fn expire_with(&self, now: i64, force: bool) -> Result<ExpireReport> {
        let engine = &self.engine;
        let report = engine.audited(Op::Expire, Commit::Always, |call| {
            let clock = engine.now();
            if !decide::expire_time_allowed(now, clock, force) {
                return Err(Error::invalid(format!(
                    "expire's now ({now}) is more than a day ahead of the clock ({clock}): force it if that is meant"
                )));
            }
            call.entry.detail = Some(format!("now {now}").into());
            let mut r = engine.expire(now, &call.entry)?;
            (r.backup_keys_destroyed, r.backups_readable_past_window) =
                engine.expire_backups(now)?;
            r.key_epochs_ended = engine.end_key_epoch_if_due(now)?;
            call.entry.detail = Some(
                format!(
                    "now {now} days {} records {} spared {} backup keys {} backups readable past window {} key epochs ended {}",
                    r.days_destroyed,
                    r.records_expired,
                    r.records_spared_by_hold,
                    r.backup_keys_destroyed,
                    r.backups_readable_past_window,
                    r.key_epochs_ended
                )
                .into(),
            );
            Ok(r)
        })?;
        if report.days_destroyed > 0 {
            engine.kick_purge();
        }
        Ok(report)
    }

    /// The vault's id (hex) and its key epoch, for a vault whose keys are
    /// in PostgreSQL (feature `testing`: the tests look for the epoch keys
    /// in the token).
    #[cfg(feature = "testing")]
    pub fn key_epoch_for_tests(&self) -> Option<(String, u64)> {
        let e = self.engine.keys.custody.epoch()?;
        Some((hex::encode(self.engine.vault_id), e.number))
    }

    /// Purges what expiry runs left behind, now, in the calling thread:
    /// every record of a destroyed day becomes a husk (`Expired`), its
    /// index entries go, and a subject that asked for erasure and has
    /// nothing left loses its key. `expire` starts this in the background
    /// by itself; call it to wait for it. Returns the records purged.
    pub fn purge(&self) -> Result<u64> {
        if let Some(why) = self.engine.refuse_writes.get() {
            return Err(Error::corrupt(format!("writes are refused: {why}")));
        }
        self.engine.purge(|| false)
    }
}

impl Engine {
    /// Ends the key epoch if it is due by `now` (a custody with epochs:
    /// `custody::epochs`): every key re-wrapped under a new epoch key, the
    /// old one destroyed in the token, which completes every erasure made
    /// during the epoch. Returns the epochs ended (0 or 1).
    fn end_key_epoch_if_due(&self, now: i64) -> Result<u64> {
        let Some(epoch) = self.keys.custody.epoch() else {
            return Ok(0);
        };
        if now < self.epoch_ends_at(epoch.begun_at) {
            return Ok(0);
        }
        Ok(u64::from(self.keys.custody.rotate_epoch(now)?))
    }

    /// When an epoch begun at `begun_at` ends.
    pub(super) fn epoch_ends_at(&self, begun_at: i64) -> i64 {
        begun_at.saturating_add(self.policy().vault().key_epoch_seconds())
    }

    fn expire(&self, now: i64, entry: &Draft<'_>) -> Result<ExpireReport> {
        let _guard = lock(&self.locks.expire);
        let report = self.expire_days(now, entry)?;
        // The blind index's key goes on its own schedule, kept by these
        // runs, after the days: its failure (a subject it cannot read is
        // skipped, but the disk may fail) neither undoes them nor fails the
        // run; it is logged, and the next run tries again.
        if self.index_key_due(self.now()) {
            let mut rotation = self.draft(Op::RotateBlindIndex);
            rotation.detail = Some("due: by an expiry run".into());
            rotation.outcome = match self.rotate_index_key() {
                Ok(()) => "ok",
                Err(e) => e.kind().name(),
            };
            self.audit.append(&rotation, self.actor().as_deref())?;
        }
        Ok(report)
    }

    /// The expiry itself (the caller holds the expire lock).
    fn expire_days(&self, now: i64, entry: &Draft<'_>) -> Result<ExpireReport> {
        let through = self
            .expired_through
            .fetch_max(now, Ordering::Relaxed)
            .max(now);
        self.write_state(&Key::ExpiredThrough, &through)?;
        let mut ended = Vec::new();
        for item in self.scan(Prefix::Days) {
            let (k, v) = item?;
            let day = Key::day(&k)?;
            if retention::day_end(day) > now {
                break; // days are in order
            }
            let entry: DayEntry = self.decode_state(&Key::Day(day), &v, "day entry")?;
            if !entry.destroyed {
                ended.push((day, entry.key));
            }
        }
        self.expire_these(ended, entry)
    }

    /// Destroys the keys of the days `ended` (live ones), sparing the
    /// records of subjects under legal hold first: an expiry run's work,
    /// and a restore's re-application of one (the caller holds the expire
    /// lock).
    pub(super) fn expire_these(
        &self,
        ended: Vec<(i64, KeyRef)>,
        entry: &Draft<'_>,
    ) -> Result<ExpireReport> {
        let mut report = ExpireReport::default();
        if ended.is_empty() {
            return Ok(report);
        }
        let days: HashSet<i64> = ended.iter().map(|(d, _)| *d).collect();
        // Legal holds first: a held subject's records leave the ended days.
        // (`set_legal_hold` takes the expire lock, so no hold starts between
        // here and the destruction below.)
        for subject in self.subject_ids_under(Prefix::Holds)? {
            let _stripe = self.stripe(&subject);
            let Ok(live) = self.live_subject(&subject) else {
                continue;
            };
            if !live.facts.legal_hold {
                continue;
            }
            let decided = self.decide_all(&subject, &live, self.threshold())?;
            let in_ended = decided
                .iter()
                .filter(|d| d.record.day.is_some_and(|day| days.contains(&day)))
                .count() as u64;
            if in_ended > 0 {
                self.rotate(&subject, live, None, None)?;
                report.records_spared_by_hold += in_ended;
            }
        }
        // The expiry itself: every ended day's key destroyed, one write,
        // once the run is in the log.
        self.ledger_durably(&Erasure {
            op: entry.op,
            days: ended.iter().map(|(d, _)| *d).collect(),
            ..Erasure::default()
        })?;
        self.log_begun(entry)?;
        self.keys.destroy_day_keys(&ended)?;
        report.days_destroyed = ended.len() as u64;
        // The days are marked for the purge, and their records counted.
        let mut batch = Batch::default();
        for (day, key) in &ended {
            let entry = DayEntry {
                key: *key,
                destroyed: true,
            };
            batch.insert(
                Key::Day(*day).encode(),
                self.encode_state(&Key::Day(*day), &entry)?,
            );
            report.records_expired += self.scan(Prefix::DayRecords(*day)).count() as u64;
        }
        self.store.apply(batch)?;
        self.make_durable()?;
        Ok(report)
    }

    /// The key of `day` (its entry must exist and not be destroyed:
    /// `Expired` otherwise).
    pub(super) fn day_key_ref(&self, day: i64) -> Result<KeyRef> {
        match self.read_state::<DayEntry>(&Key::Day(day), "day entry")? {
            None => Err(expired_day_error(day)),
            Some(entry) if entry.destroyed => Err(expired_day_error(day)),
            Some(entry) => Ok(entry.key),
        }
    }

    /// Whether `day` has a retention key that is not destroyed.
    pub(super) fn day_is_live(&self, day: i64) -> Result<bool> {
        Ok(
            match self.read_state::<DayEntry>(&Key::Day(day), "day entry")? {
                None => false,
                Some(entry) => !entry.destroyed && self.keys.custody.holds(entry.key),
            },
        )
    }

    /// The retention key of `day`, created (durably, before anything uses
    /// it) if the day has none yet.
    pub(super) fn ensure_day_key(&self, day: i64) -> Result<KeyRef> {
        let _guard = lock(&self.locks.day);
        if self.store.contains(&Key::Day(day).encode())? {
            return self.day_key_ref(day);
        }
        let key = self
            .keys
            .custody
            .create(KeyKind::Retention, 1)?
            .pop()
            .expect("one key was asked for");
        self.write_state(
            &Key::Day(day),
            &DayEntry {
                key,
                destroyed: false,
            },
        )?;
        if self.durability == Durability::Immediate {
            // A put's journal frame holds its record, not the day entry its
            // key comes from: that is durable before any record uses it.
            // (Once per day; in `Batched` mode a record lost with its day
            // entry is lost anyway, as the store keeps writes in order.)
            self.make_durable()?;
        }
        Ok(key)
    }

    /// Destroyed days, oldest first.
    pub(super) fn destroyed_days(&self) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        for item in self.scan(Prefix::Days) {
            let (k, v) = item?;
            let day = Key::day(&k)?;
            let entry: DayEntry = self.decode_state(&Key::Day(day), &v, "day entry")?;
            if entry.destroyed {
                out.push(day);
            }
        }
        Ok(out)
    }

    /// Whether a purge has work: a destroyed day, or an erased subject's
    /// dead records.
    pub(super) fn purge_pending(&self) -> Result<bool> {
        Ok(!self.destroyed_days()?.is_empty() || self.scan(Prefix::ErasedPending).next().is_some())
    }

    /// The purge of destroyed days, in chunks of `PURGE_CHUNK` records,
    /// each one batch taken with every subject stripe held (so no rotation
    /// is half-way through one of the records). Stops early, to be resumed
    /// later, when `stop()` says so.
    pub(super) fn purge(&self, stop: impl Fn() -> bool) -> Result<u64> {
        let _guard = lock(&self.locks.purge);
        let mut purged = 0u64;
        let mut touched = HashSet::new();
        for day in self.destroyed_days()? {
            loop {
                if stop() {
                    return Ok(purged);
                }
                let keys: Vec<_> = self
                    .scan(Prefix::DayRecords(day))
                    .take(PURGE_CHUNK)
                    .map(|item| item.map(|(k, _)| k))
                    .collect::<Result<_>>()?;
                if keys.is_empty() {
                    break;
                }
                let _stripes = self.locks.all_stripes();
                let now = self.now();
                let mut batch = Batch::default();
                for k in keys {
                    let (_, id) = Key::day_record(&k)?;
                    batch.remove(&k);
                    if let Ok(Some(RecordEntry::Live(r))) = self.record_entry(&id) {
                        if r.day == Some(day) {
                            touched.insert(r.subject);
                            let husk = RecordHusk {
                                subject: r.subject,
                                category: r.category,
                                gone_at: now,
                                reason: GoneReason::Expired,
                            };
                            batch.insert(
                                Key::Record(id).encode(),
                                codec::encode(&RecordEntry::Gone(husk))?,
                            );
                            purged += 1;
                        }
                    }
                }
                self.store.apply(batch)?;
            }
            self.store.remove(&Key::Day(day).encode())?;
        }
        self.finish_emptied_requests(touched)?;
        purged += self.purge_erased(&stop)?;
        self.drop_old_requests(self.threshold())?;
        self.make_durable()?;
        Ok(purged)
    }

    /// A subject kept only for what an erasure request retained, with
    /// nothing left: its key goes too.
    fn finish_emptied_requests(&self, touched: HashSet<SubjectId>) -> Result<()> {
        let now = self.now();
        for subject in touched {
            let _stripe = self.stripe(&subject);
            let Ok(live) = self.live_subject(&subject) else {
                continue;
            };
            if live.facts.erasure_requested().is_some() && !self.has_live_records(&subject)? {
                self.system_erasure(&subject, "purge: what an erasure kept expired", || {
                    self.ledger_durably(&Erasure {
                        op: Op::SystemErasure.name(),
                        subject: Some(subject),
                        subject_erased: true,
                        ..Erasure::default()
                    })?;
                    self.keys.destroy_subject_key(live.key)?;
                    self.finish_erasure(&subject, &live, now)
                })?;
            }
        }
        Ok(())
    }

    /// Erased subjects: their dead records go (no husks: a read of a
    /// missing record finds the subject's tombstone and says `Erased`).
    fn purge_erased(&self, stop: &impl Fn() -> bool) -> Result<u64> {
        let mut purged = 0;
        for subject in self.subject_ids_under(Prefix::ErasedPending)? {
            loop {
                if stop() {
                    return Ok(purged);
                }
                let mut batch = Batch::default();
                let mut n = 0;
                for item in self.scan(Prefix::RecordsOf(subject)).take(PURGE_CHUNK) {
                    let (k, v) = item?;
                    if let Ok(RecordEntryView::Live(r)) = decode_record_view(&v) {
                        if let Some(day) = r.day {
                            batch.remove(Key::DayRecord(day, Key::record_id(&k)?).encode());
                        }
                    }
                    batch.remove(&k);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                self.store.apply(batch)?;
                purged += n;
            }
            self.store.remove(&Key::ErasedPending(subject).encode())?;
        }
        Ok(purged)
    }

    /// Starts the background purge, or tells the running one to go round
    /// again. The thread holds only a weak reference between chunks, and
    /// the handle's `Drop` stops and joins it.
    pub(super) fn kick_purge(self: &Arc<Self>) {
        let mut state = lock(&self.background.purger);
        if state.running {
            state.again = true;
            return;
        }
        state.running = true;
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("shredvault-purge".into())
            .spawn(move || loop {
                let Some(engine) = weak.upgrade() else { return };
                let closing = || engine.background.closing.load(Ordering::Relaxed);
                // Errors are left for the next run (or `purge`) to meet.
                let _ = engine.purge(closing);
                let mut state = lock(&engine.background.purger);
                if state.again && !closing() {
                    state.again = false;
                    continue;
                }
                state.running = false;
                return;
            });
        match spawned {
            Ok(handle) => state.handle = Some(handle),
            Err(_) => state.running = false, // `purge` and the next open catch up
        }
    }

    /// Stops background work and waits for it (a handle closing).
    pub(super) fn stop_background(&self) {
        self.background.closing.store(true, Ordering::Relaxed);
        let handle = lock(&self.background.purger).handle.take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// The error for a record whose day key is gone.
pub(super) fn expired_day_error(day: i64) -> Error {
    Error::new(
        ErrorKind::Expired,
        format!(
            "the retention key of day {} is destroyed: the record expired",
            day_label(day)
        ),
    )
}

/// A UTC day as YYYY-MM-DD, for messages.
fn day_label(day: i64) -> String {
    jiff::Timestamp::from_second(day * retention::SECONDS_PER_DAY)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| format!("day {day}"))
}
