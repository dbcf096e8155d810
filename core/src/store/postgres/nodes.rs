//! Which `serve` node is active, for the nodes of a cluster on one
//! vault in PostgreSQL (`shredvault serve --advertise`; the design is in
//! the server's `cluster` module). One row in the vault's schema:
//!
//! ```sql
//! CREATE TABLE shredvault_nodes (one boolean PRIMARY KEY CHECK (one),
//!     url text NOT NULL, pid integer NOT NULL, since bigint NOT NULL)
//! ```
//!
//! written by the node that holds the vault open (the store's advisory
//! lock decides which), read by the others to forward their calls. The
//! row says where to forward, nothing more: a node that died leaves it
//! behind, and a call forwarded there fails (`Locked`) until the next
//! active node writes its own.

use tokio_postgres::Client;

use super::conn::{block, config_of, connect};
use super::{describe, pg_error};
use crate::error::{Error, Result};

const NODES: &str = "shredvault_nodes";

/// A connection to a vault's schema for its nodes' bookkeeping.
pub struct NodeTable {
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    name: String,
}

impl std::fmt::Debug for NodeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTable")
            .field("database", &self.name)
            .finish_non_exhaustive()
    }
}

impl NodeTable {
    /// Connects to the database `url` names (the vault's `store`).
    pub fn connect(url: &str) -> Result<NodeTable> {
        let name = describe(url);
        let config = config_of(url, &name)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting a PostgreSQL client's runtime", e))?;
        let client = connect(&runtime, &config, &name)?;
        block(client.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {NODES} (one boolean PRIMARY KEY CHECK (one),
                 url text NOT NULL, pid integer NOT NULL, since bigint NOT NULL)"
        )))
        .map_err(|e| pg_error(&name, "creating the nodes table", e))?;
        Ok(NodeTable {
            runtime: Some(runtime),
            client,
            name,
        })
    }

    /// Says this process (`pid`), reachable at `url`, is the active node
    /// since `since` (Unix seconds).
    pub fn announce(&self, url: &str, pid: u32, since: i64) -> Result<()> {
        let pid = pid as i32;
        block(self.client.execute(
            &format!(
                "INSERT INTO {NODES} (one, url, pid, since) VALUES (true, $1, $2, $3)
                 ON CONFLICT (one) DO UPDATE SET url = $1, pid = $2, since = $3"
            ),
            &[&url, &pid, &since],
        ))
        .map_err(|e| pg_error(&self.name, "announcing the active node", e))?;
        Ok(())
    }

    /// The URL the active node announced, if any.
    pub fn active(&self) -> Result<Option<String>> {
        let row = block(
            self.client
                .query_opt(&format!("SELECT url FROM {NODES}"), &[]),
        )
        .map_err(|e| pg_error(&self.name, "reading the active node", e))?;
        Ok(row.map(|r| r.get(0)))
    }
}

impl Drop for NodeTable {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
