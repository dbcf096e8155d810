//! How a vault handle is opened: durability, the clock, the audit actor.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ids::truncate_for_message;

/// When a mutating call's effects reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Durable before the call returns (the default).
    #[default]
    Immediate,
    /// Durable at the next [`Vault::flush`] or within about a second.
    /// Erasure, consent withdrawal, key destruction and the rights
    /// (restriction, opt-out, requests) stay immediate. A background flush
    /// that fails is reported, as `Io`, by every batched write after it
    /// until a durable point succeeds (`flush` retries at once).
    Batched,
}

impl std::str::FromStr for Durability {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "immediate" => Ok(Durability::Immediate),
            "batched" => Ok(Durability::Batched),
            other => Err(Error::invalid(format!(
                "durability must be \"immediate\" or \"batched\", not {:?}",
                truncate_for_message(other)
            ))),
        }
    }
}

/// The source of "now", in Unix seconds. Tests replace it with a simulated
/// clock.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// How to open a vault.
#[derive(Clone, Default)]
pub struct VaultOptions {
    pub durability: Durability,
    /// `None`: the system clock.
    pub clock: Option<Clock>,
    /// A label for whoever uses this handle (a service name, an operator
    /// role), carried by every audit entry. Letters, digits and `_.:-`, at
    /// most 64: it must not be personal data.
    pub actor: Option<String>,
    /// Whether this handle may read for privileged purposes (`legal_claims`
    /// and any the policy marks `privileged = true`), and read the
    /// identifiers and state of restricted subjects.
    pub privileged: bool,
    /// Where the records live. `None`: in the vault directory's `data/`
    /// (sled, the embedded default). `Some(conninfo)`: in that PostgreSQL
    /// database (`postgres://...` or `host=... dbname=...`; feature
    /// `postgres`), one vault per schema; the vault directory then holds
    /// the keys (`keys/`) only. See `store::postgres`.
    pub store: Option<String>,
}

impl std::fmt::Debug for VaultOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultOptions")
            .field("durability", &self.durability)
            .field("clock", &self.clock.as_ref().map(|_| "custom"))
            .field("actor", &self.actor)
            .field("privileged", &self.privileged)
            .field("store", &self.store.as_ref().map(|_| "postgres"))
            .finish()
    }
}
