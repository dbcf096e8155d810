//! Who a call is made for, when one handle serves many callers (the
//! server): [`Vault::acting_as`] runs a closure with an actor and a
//! privilege of its own, on the calling thread.
//!
//! The handle's own actor and privilege (from `VaultOptions`) are the
//! default. A caller's actor replaces the handle's in every audit entry the
//! closure's calls write; a caller's privilege can only narrow the
//! handle's (a handle opened unprivileged never reads for a privileged
//! purpose, whatever a caller says). The context is the thread's, for the
//! duration of the closure: work the closure hands to another thread, or an
//! iterator it returns and someone drains later, runs as the handle.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::error::{ErrorKind, Result};
use crate::ids::{RecordId, SubjectId};

use super::audited::Op;
use super::{open::check_actor, Engine, Vault};

struct Caller {
    actor: String,
    privileged: bool,
}

thread_local! {
    static CALLER: RefCell<Option<Caller>> = const { RefCell::new(None) };
}

/// Restores the caller before it on drop (a panic included).
struct Restore(Option<Caller>);

impl Drop for Restore {
    fn drop(&mut self) {
        let before = self.0.take();
        CALLER.with(|c| *c.borrow_mut() = before);
    }
}

impl Vault {
    /// Runs `f` with `actor` as the audit actor of every call it makes on
    /// this thread, and reads for privileged purposes allowed only if
    /// `privileged` and the handle is privileged. `actor` follows the
    /// rules of `VaultOptions::actor` (`InvalidArgument` otherwise).
    pub fn acting_as<T>(
        &self,
        actor: &str,
        privileged: bool,
        f: impl FnOnce(&Vault) -> T,
    ) -> Result<T> {
        check_actor(Some(actor))?;
        let before = CALLER.with(|c| {
            c.borrow_mut().replace(Caller {
                actor: actor.to_string(),
                privileged,
            })
        });
        let _restore = Restore(before);
        Ok(f(self))
    }

    /// Logs a call refused before it reached the vault (a server's
    /// `Forbidden`), as the current caller: op `refused`, the call's name
    /// (letters, digits, `_`) as its detail, outcome `Forbidden`, with the
    /// subject, record and purpose it named. Durable by the handle's mode.
    pub fn log_refused(
        &self,
        call: &str,
        subject: Option<&SubjectId>,
        record: Option<&RecordId>,
        purpose: Option<&str>,
    ) -> Result<()> {
        if call.is_empty()
            || call.len() > 64
            || !call.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(crate::error::Error::invalid(
                "a refused call's name is 1 to 64 letters, digits or _",
            ));
        }
        let engine = &self.engine;
        let mut entry = engine.draft(Op::Refused);
        entry.subject = subject.copied();
        entry.record = record.copied();
        entry.purpose = purpose.map(|p| engine.purpose_term(p));
        entry.detail = Some(call.into());
        entry.outcome = ErrorKind::Forbidden.name();
        engine.audit.append(&entry, engine.actor().as_deref())?;
        engine.commit()
    }
}

impl Engine {
    /// The actor of the call under way: the caller's, else the handle's.
    pub(super) fn actor(&self) -> Option<Cow<'_, str>> {
        CALLER
            .with(|c| c.borrow().as_ref().map(|c| c.actor.clone()))
            .map(Cow::Owned)
            .or_else(|| self.actor.as_deref().map(Cow::Borrowed))
    }

    /// Whether the call under way may read for privileged purposes.
    pub(super) fn privileged(&self) -> bool {
        self.privileged && CALLER.with(|c| c.borrow().as_ref().is_none_or(|c| c.privileged))
    }
}
