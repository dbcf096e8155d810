//! Idle connections kept for reuse, one pool per kind of connection (the
//! store's asynchronous-commit connections and its synchronous ones).

use std::sync::Mutex;

use crate::error::Result;

/// Idle connections kept per pool.
const IDLE: usize = 32;

/// A connection that can tell it broke.
pub(super) trait Connection {
    fn is_closed(&self) -> bool;
}

/// The idle connections of one kind.
pub(super) struct Pool<C> {
    idle: Mutex<Vec<C>>,
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }
}

impl<C: Connection> Pool<C> {
    /// Runs `f` on an idle connection, or on a new one from `fresh` if
    /// none is; the connection goes back unless it broke.
    pub fn with<T>(
        &self,
        fresh: impl FnOnce() -> Result<C>,
        f: impl FnOnce(&mut C) -> Result<T>,
    ) -> Result<T> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match taken {
            Some(c) if !c.is_closed() => c,
            _ => fresh()?,
        };
        let out = f(&mut conn);
        if !conn.is_closed() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE {
                idle.push(conn);
            }
        }
        out
    }
}
