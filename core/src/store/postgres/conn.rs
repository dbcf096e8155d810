//! The store's connections: the one holding the schema's lock, and the
//! pooled ones every statement runs on, with what each prepares.
//!
//! # Whose thread does the I/O
//!
//! A tokio-postgres client sends its statements to a *connection* future
//! that owns the socket; something must poll that future.
//!
//! - A **pooled connection** ([`Conn`], [`SyncConn`]) is driven by the
//!   thread that uses it: it owns a current-thread runtime ([`Local`])
//!   whose `block_on` runs the statement and the connection together, so a
//!   statement is the caller's write to the socket and its read of the
//!   answer, with no other thread woken. (When they ran on a runtime
//!   thread of the store's, every statement woke that thread and was woken
//!   back by it: two context switches a statement, measured by `bench
//!   --server` with `perf` as a tenth of the machine during served puts.)
//!   Between uses nobody polls it: what the server sends meanwhile waits in
//!   the socket, and a connection the server closed is found closed at its
//!   next statement, which then fails (`Io`) and is not pooled again.
//! - The **lock connection** is polled all the time, on the store's
//!   runtime thread (`shredvault-pg`): it is only ever asked whether it is
//!   still open ([`PgStore::still_locked`](super::PgStore)), so it must
//!   notice by itself when the server ends it.
//!
//! A caller may be any thread but one that runs async code: a plain
//! thread, a server's blocking pool, a test (`block_on` inside a runtime's
//! worker panics, as blocking there would stall its tasks anyway).

use std::future::Future;

use tokio_postgres::{Client, NoTls, Statement};

use super::{pg_error, pool, JOURNAL, SYNC_TABLE, TABLE};
use crate::error::{Error, ErrorKind, Result};

/// The client configuration `url` gives (`name`: the URL for messages).
pub(super) fn config_of(url: &str, name: &str) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
        Error::invalid(format!("{name} is not a PostgreSQL connection string: {e}"))
    })?;
    // As libpq does: a password left out of the string comes from the
    // environment (the vault's `store` file then holds none).
    if config.get_password().is_none() {
        if let Some(pw) = std::env::var_os("PGPASSWORD") {
            config.password(std::os::unix::ffi::OsStrExt::as_bytes(pw.as_os_str()));
        }
    }
    Ok(config)
}

/// A connection holding the schema's lock, the table made if missing.
pub(super) fn lock_schema(
    runtime: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
    name: &str,
) -> Result<Client> {
    let lock = connect(runtime, config, name)?;
    // The lock first: two processes making the table at once could race.
    // Tried for a moment: a process killed while it held the lock keeps it
    // until its server process sees the connection gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let row = block(lock.query_one(
            "SELECT pg_try_advisory_lock(hashtext('shredvault'), hashtext(current_schema()))",
            &[],
        ))
        .map_err(|e| pg_error(name, "taking the vault's lock", e))?;
        if row.get::<_, bool>(0) {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("the vault in {name} is open in another process"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    block(lock.batch_execute(&format!(
        "SET synchronous_commit = on;
         CREATE TABLE IF NOT EXISTS {TABLE} (k bytea PRIMARY KEY, v bytea NOT NULL);
         CREATE TABLE IF NOT EXISTS {SYNC_TABLE} (pid integer PRIMARY KEY, n bigint NOT NULL);
         CREATE TABLE IF NOT EXISTS {JOURNAL} (id bigserial PRIMARY KEY, note bytea NOT NULL, mac bytea NOT NULL)"
    )))
    .map_err(|e| pg_error(name, "creating the vault's table", e))?;
    Ok(lock)
}

/// Runs one of the client's futures to its end on this thread, for a
/// client whose connection `runtime` polls (the lock connection, and the
/// nodes' table).
pub(super) fn block<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// A client whose connection runs on `runtime` (see the module doc).
pub(super) fn connect(
    runtime: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
    name: &str,
) -> Result<Client> {
    let config = config.clone();
    let joined = block(runtime.spawn(async move { client_of(&config).await }))
        .map_err(|e| Error::new(ErrorKind::Io, format!("PostgreSQL {name}: {e}")))?;
    joined.map_err(|e| pg_error(name, "connecting", e))
}

/// Connects, and spawns the connection on the runtime this runs on.
async fn client_of(
    config: &tokio_postgres::Config,
) -> std::result::Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // Polled as long as its runtime runs (a pooled connection's: while
        // a statement runs); ends when the client is dropped or the server
        // goes away, and the client's next call then fails with `Io`.
        let _ = connection.await;
    });
    Ok(client)
}

/// The runtime of one pooled connection, driven by whichever thread uses
/// the connection (see the module doc).
pub(super) struct Local {
    /// Taken only by `drop`, which shuts it down without waiting (a
    /// runtime may not be dropped on a thread that runs async code).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Local {
    /// A client, the runtime its connection runs on, its session's
    /// commits synchronous or not (`synchronous_commit`).
    fn connect(
        config: &tokio_postgres::Config,
        name: &str,
        synchronous_commit: bool,
    ) -> Result<(Client, Local)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting a PostgreSQL connection's runtime", e))?;
        let local = Local {
            runtime: Some(runtime),
        };
        let client = local
            .run(client_of(config))
            .map_err(|e| pg_error(name, "connecting", e))?;
        let set = if synchronous_commit {
            "SET synchronous_commit = on"
        } else {
            "SET synchronous_commit = off"
        };
        local
            .run(client.batch_execute(set))
            .map_err(|e| pg_error(name, "preparing statements", e))?;
        Ok((client, local))
    }

    /// Runs `f` (a statement of this connection's client) to its end on
    /// this thread, the connection with it.
    pub fn run<F: Future>(&self, f: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("taken only by drop")
            .block_on(f)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The statements every connection prepares once.
pub(super) struct Prepared {
    pub get: Statement,
    pub upsert: Statement,
    pub insert_new: Statement,
    pub remove: Statement,
    pub page: Statement,
    pub page_open: Statement,
    pub last: Statement,
    pub last_open: Statement,
}

/// A pooled connection committing asynchronously (`synchronous_commit =
/// off` for the session: see the store's module doc).
pub(super) struct Conn {
    pub client: Client,
    pub rt: Local,
    pub st: Prepared,
}

impl Conn {
    pub fn open(config: &tokio_postgres::Config, name: &str) -> Result<Conn> {
        let (client, rt) = Local::connect(config, name, false)?;
        let err = |e| pg_error(name, "preparing statements", e);
        let prep = |sql: &str| rt.run(client.prepare(sql)).map_err(err);
        let st = Prepared {
            get: prep(&format!("SELECT v FROM {TABLE} WHERE k = $1"))?,
            upsert: prep(&format!(
                "INSERT INTO {TABLE} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
            ))?,
            insert_new: prep(&format!(
                "INSERT INTO {TABLE} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING"
            ))?,
            remove: prep(&format!("DELETE FROM {TABLE} WHERE k = $1"))?,
            page: prep(&format!(
                "SELECT k, v FROM {TABLE} WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3"
            ))?,
            page_open: prep(&format!(
                "SELECT k, v FROM {TABLE} WHERE k >= $1 ORDER BY k LIMIT $2"
            ))?,
            last: prep(&format!(
                "SELECT k, v FROM {TABLE} WHERE k >= $1 AND k < $2 ORDER BY k DESC LIMIT 1"
            ))?,
            last_open: prep(&format!(
                "SELECT k, v FROM {TABLE} WHERE k >= $1 ORDER BY k DESC LIMIT 1"
            ))?,
        };
        Ok(Conn { client, rt, st })
    }
}

/// A pooled connection committing synchronously, and its two statements.
pub(super) struct SyncConn {
    pub client: Client,
    pub rt: Local,
    /// A batch of puts: each entry whose key is free, and its journal row
    /// only then; returns the keys written.
    pub put_batch: Statement,
    /// A journal row.
    pub journal: Statement,
}

impl SyncConn {
    pub fn open(config: &tokio_postgres::Config, name: &str) -> Result<SyncConn> {
        let (client, rt) = Local::connect(config, name, true)?;
        let err = |e| pg_error(name, "preparing statements", e);
        let put_batch = rt
            .run(client.prepare(&format!(
                "WITH t AS (SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[])
                              WITH ORDINALITY AS t(k, v, note, mac, ord)),
                 new AS (INSERT INTO {TABLE} (k, v) SELECT k, v FROM t
                         ON CONFLICT (k) DO NOTHING RETURNING k),
                 j AS (INSERT INTO {JOURNAL} (note, mac)
                       SELECT t.note, t.mac FROM t JOIN new ON new.k = t.k ORDER BY t.ord
                       RETURNING 1)
                 SELECT k FROM new"
            )))
            .map_err(err)?;
        let journal = rt
            .run(client.prepare(&format!(
                "INSERT INTO {JOURNAL} (note, mac) VALUES ($1, $2)"
            )))
            .map_err(err)?;
        Ok(SyncConn {
            client,
            rt,
            put_batch,
            journal,
        })
    }
}

impl pool::Connection for Conn {
    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

impl pool::Connection for SyncConn {
    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
