//! The ledger of data-subject requests: due one calendar month after
//! receipt (in UTC, the time of day kept), extendable once to three months
//! with a reason kept in the subject's sealed facts (free text goes with
//! the subject; the ledger's dates and ids stay). A closed request leaves
//! the ledger [`CLOSED_REQUESTS_KEPT`] seconds after it was closed (the
//! purge drops it), so the ledger does not grow without bound.

use crate::crypto;
use crate::custody::Derivation;
use crate::domains;
use crate::error::{Error, Result};
use crate::ids::{RequestId, SubjectId};
use crate::layout::{Extension, Key, Prefix, RequestEntry, SubjectEntry};
use crate::policy;
use crate::retention;
use crate::store::Batch;
use crate::types::{RequestInfo, RequestKind, MAX_REASON_BYTES};

use super::super::audited::{Commit, Op};
use super::super::{lock, Engine, Vault};

/// How long a closed request stays in the ledger: three years (365-day),
/// the common limitation period for a claim about how it was answered.
pub(crate) const CLOSED_REQUESTS_KEPT: i64 = 3 * 365 * 86_400;

impl Vault {
    /// Opens a data-subject request received at `received`; it is due one
    /// calendar month later (31 January → 28/29 February, same time of day).
    pub fn open_request(
        &self,
        subject: &SubjectId,
        kind: &str,
        received: i64,
    ) -> Result<RequestId> {
        let engine = &self.engine;
        engine.audited(Op::OpenRequest, Commit::Always, |call| {
            call.entry.subject = Some(*subject);
            let kind = RequestKind::parse(kind)?;
            retention::check_event_time(received, "received")?;
            if engine.subject_entry(subject)?.is_none() {
                return Err(Error::not_found(format!("no subject {subject}")));
            }
            let id = RequestId::random()?;
            let request = RequestEntry {
                subject: *subject,
                kind: kind.name().to_string(),
                received,
                due: add_months(received, 1)?,
                extension: None,
                closed_at: None,
            };
            engine.write_state(&Key::Request(id), &request)?;
            call.entry.detail = Some(format!("request {id} {}", kind.name()).into());
            Ok(id)
        })
    }

    /// Extends a request, once, by two more months (due three calendar
    /// months after receipt), with the reason the subject must be told.
    pub fn extend_request(&self, request: &RequestId, reason: &str) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::ExtendRequest, Commit::Always, |call| {
            call.entry.detail = Some(format!("request {request}").into());
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(Error::invalid("an extension needs a reason"));
            }
            if reason.len() > MAX_REASON_BYTES {
                return Err(Error::invalid(format!(
                    "an extension reason may hold at most {MAX_REASON_BYTES} bytes"
                )));
            }
            // The subject's stripe (its facts change), then the ledger's lock.
            let subject = engine.request(request)?.subject;
            let _stripe = engine.stripe(&subject);
            let _guard = lock(&engine.locks.blind);
            let mut req = engine.request(request)?;
            if req.closed_at.is_some() {
                return Err(Error::invalid(format!("request {request} is closed")));
            }
            if req.extension.is_some() {
                return Err(Error::invalid(format!(
                    "request {request} was already extended: an extension is granted once"
                )));
            }
            // The reason is free text: it goes into the subject's sealed
            // facts, and dies with the subject key.
            let mut live = engine.live_subject(&req.subject)?;
            live.facts
                .request_reasons
                .insert(*request, reason.to_string());
            req.due = add_months(req.received, 3)?;
            req.extension = Some(Extension {
                at: engine.now(),
                reason: Vec::new(),
            });
            let mut batch = Batch::default();
            engine.put_subject(&mut batch, &req.subject, &SubjectEntry::Live(live))?;
            batch.insert(
                Key::Request(*request).encode(),
                engine.encode_state(&Key::Request(*request), &req)?,
            );
            engine.store.apply(batch)?;
            engine.subjects_changed();
            call.entry.subject = Some(req.subject);
            Ok(())
        })
    }

    /// Closes a request, answered at `at`.
    pub fn close_request(&self, request: &RequestId, at: i64) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::CloseRequest, Commit::Always, |call| {
            call.entry.detail = Some(format!("request {request}").into());
            retention::check_event_time(at, "closing")?;
            let _guard = lock(&engine.locks.blind);
            let mut req = engine.request(request)?;
            if req.closed_at.is_some() {
                return Err(Error::invalid(format!(
                    "request {request} is already closed"
                )));
            }
            if at < req.received {
                return Err(Error::invalid(format!(
                    "request {request} cannot be closed before it was received"
                )));
            }
            req.closed_at = Some(at);
            engine.write_state(&Key::Request(*request), &req)?;
            call.entry.subject = Some(req.subject);
            Ok(())
        })
    }

    /// The request ledger, oldest first by receipt. With `overdue_at`: only
    /// the requests still open whose due time is before it.
    pub fn requests(&self, overdue_at: Option<i64>) -> Result<Vec<RequestInfo>> {
        let engine = &self.engine;
        engine.audited(Op::Requests, Commit::No, |_| {
            engine.requests_unaudited(overdue_at)
        })
    }
}

impl Engine {
    pub(super) fn requests_unaudited(&self, overdue_at: Option<i64>) -> Result<Vec<RequestInfo>> {
        let mut out = Vec::new();
        for item in self.scan(Prefix::Requests) {
            let (k, v) = item?;
            let id = Key::request_id(&k)?;
            let req: RequestEntry = self.decode_state(&Key::Request(id), &v, "request entry")?;
            if let Some(t) = overdue_at {
                if req.closed_at.is_some() || req.due >= t {
                    continue;
                }
            }
            let extension_reason = match &req.extension {
                None => None,
                Some(ext) => self.extension_reason(&req.subject, &id, &ext.reason),
            };
            out.push(RequestInfo {
                id,
                subject: req.subject,
                kind: RequestKind::parse(&req.kind)
                    .map_err(|_| Error::corrupt(format!("request {id} has an unknown kind")))?,
                received: req.received,
                due: req.due,
                extended: req.extension.is_some(),
                extension_reason,
                closed_at: req.closed_at,
            });
        }
        out.sort_by_key(|r| (r.received, r.id));
        Ok(out)
    }

    /// Drops the requests closed more than [`CLOSED_REQUESTS_KEPT`] before
    /// `now` (the purge calls it); how many.
    pub(in super::super) fn drop_old_requests(&self, now: i64) -> Result<u64> {
        let _guard = lock(&self.locks.blind);
        let mut batch = Batch::default();
        for item in self.scan(Prefix::Requests) {
            let (k, v) = item?;
            let id = Key::request_id(&k)?;
            let req: RequestEntry = self.decode_state(&Key::Request(id), &v, "request entry")?;
            if req
                .closed_at
                .is_some_and(|t| t < now.saturating_sub(CLOSED_REQUESTS_KEPT))
            {
                batch.remove(&k);
            }
        }
        let n = batch.len() as u64;
        if n > 0 {
            self.store.apply(batch)?;
        }
        Ok(n)
    }

    fn request(&self, id: &RequestId) -> Result<RequestEntry> {
        self.read_state(&Key::Request(*id), "request entry")?
            .ok_or_else(|| Error::not_found(format!("no request {id}")))
    }

    /// The extension reason, if the subject (and so its key) still exists:
    /// from its facts, or (a request extended before reasons went there,
    /// in a vault not yet migrated) sealed in the request itself.
    fn extension_reason(
        &self,
        subject: &SubjectId,
        id: &RequestId,
        sealed: &[u8],
    ) -> Option<String> {
        let live = self.subject_view(subject).ok()?;
        if let Some(reason) = live.facts.request_reasons.get(id) {
            return Some(reason.clone());
        }
        if sealed.is_empty() {
            return None;
        }
        self.open_sealed_reason(subject, live.key, id, sealed)
    }

    /// An extension reason sealed in request `id` (the format before
    /// reasons went into the subject's facts), under a key derived from the
    /// subject's `key`; `None` when it does not open.
    pub(in crate::vault) fn open_sealed_reason(
        &self,
        subject: &SubjectId,
        key: crate::custody::KeyRef,
        id: &RequestId,
        sealed: &[u8],
    ) -> Option<String> {
        let key = self
            .subject_derived(subject, key, Derivation::RequestReason)
            .ok()?;
        let plain = crypto::open(
            &key,
            &domains::reason_aad(&self.vault_id, id),
            sealed,
            "extension reason",
        )
        .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// `at` plus `months` calendar months, in UTC (clamped to the month's end).
fn add_months(at: i64, months: u16) -> Result<i64> {
    retention::add_span(
        at,
        policy::CalendarSpan {
            amount: months as u32,
            unit: policy::SpanUnit::Months,
        },
    )
    .ok_or_else(|| Error::invalid(format!("{at} plus {months} months is out of range")))
}
