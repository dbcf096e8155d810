//! [`PgStore`]: the store in a PostgreSQL database (feature `postgres`),
//! for a vault whose records live in PostgreSQL rather than in `data/`
//! (`VaultOptions::store`, `serve --store postgres://...`).
//!
//! # Layout
//!
//! One table in the connection's schema (`search_path`; one vault per
//! schema):
//!
//! ```sql
//! CREATE TABLE shredvault_entries (k bytea PRIMARY KEY, v bytea NOT NULL)
//! ```
//!
//! holding exactly the keys and values the sled store holds (`layout`):
//! ciphertext, ids and names, never key material. The keys stay in the
//! custody: `keys/`, or, for a vault whose root key is in a token, rows of
//! their own in the same schema wrapped under epoch keys in the token
//! (`key_table`, `custody::epochs`). `bytea` compares as the store contract
//! orders keys (byte by byte, shorter first on a common prefix), so the
//! primary key's index serves point reads, ordered scans and `last`.
//!
//! # The contract, statement by statement
//!
//! - **Single writes** are one statement each, committed on their own;
//!   `insert_new` is `INSERT ... ON CONFLICT DO NOTHING` (the row count says
//!   who won: the unique index decides between racing callers).
//! - **Batches** are one transaction: readers under READ COMMITTED see all
//!   of it or none of it, and a crash keeps all or none.
//! - **Scans** read pages of [`PAGE`] rows by key range, each page one
//!   statement starting just past the last key returned: in order, not a
//!   snapshot (what the contract allows), and an entry nobody touched is
//!   never skipped.
//! - **The durable point is a synchronous commit.** Writes commit with
//!   `synchronous_commit = off`: visible to every reader at once, durable
//!   once the WAL is flushed past them. A synchronous commit flushes the
//!   WAL up to itself, which covers every commit made before it, on any
//!   connection: so each durable point is one synchronous commit, shared by
//!   the writers flushing at the same moment (PostgreSQL's group commit).
//!   Commits replay from the WAL in commit order: the contract's prefix
//!   rule.
//!   - `sync` runs `seal` (the vault's buffered audit entries), then one
//!     synchronous transaction that also empties the journal below.
//!   - `persist_new` (a put in `Immediate` mode: the engine leaves its
//!     new record to it) does not wait for the audit log: one prepared
//!     statement, on a connection whose commits are synchronous, inserts
//!     the record if its key is free and, only then, its note (the put's
//!     audit entry) into the journal table
//!     `shredvault_journal (id bigserial, note bytea, mac bytea)`, for
//!     every put that arrived while the previous such statement ran
//!     (`group`: the store's group commit): one round trip, one
//!     transaction and one flush for the lot. `persist` (inserts already
//!     made) writes the journal row alone. `recover` hands back the journal's notes
//!     (each authenticated: HMAC-SHA256 under the key `recover` is given),
//!     and the vault re-applies the audit entries its chain lacks
//!     (`vault::durability`); the inserts need no replay (the journal row's
//!     flush made them durable). Every [`TRIM_EVERY`] persists, and at every
//!     `sync`, the audit entries are sealed into the chain and the journal
//!     rows they cover deleted.
//! - **One process**: the store holds a session advisory lock, keyed by
//!   the schema, on a connection of its own for its whole life; a second
//!   process opening the same schema gets `Locked`, as with sled's file
//!   lock. (A vault caches state in its process, the audit chain's head
//!   among it: several `serve` nodes on one database are one active node
//!   holding this lock and standbys forwarding to it, `nodes` and the
//!   server's `cluster`.)
//! - **Errors**: a server or connection failure is `Io`; PostgreSQL's
//!   `data_corrupted` and `index_corrupted` are `Corrupt`. Messages carry
//!   no stored bytes.
//!
//! # Threads
//!
//! Every statement runs on the thread that calls the store, its
//! connection's I/O with it (`conn`: each pooled connection owns a
//! current-thread runtime), so the store works the same from a plain
//! thread, from a server's blocking pool or from a test, and a statement
//! wakes no other thread. Only the connection holding the schema's lock
//! runs on a runtime thread of the store's, to notice by itself when the
//! server ends it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio_postgres::Client;

use super::{Batch, Entries, Entry, Recovered, Store, Value};
use crate::crypto::SecretKey;
use crate::error::{Error, ErrorKind, Result};

mod cache;
mod conn;
use conn::{block, config_of, lock_schema, Conn, SyncConn};
mod group;
mod key_table;
pub(crate) use key_table::{KeyRow, KeyTable};
mod nodes;
mod pool;
pub use nodes::NodeTable;
pub mod throwaway;

/// Rows a scan reads per statement.
const PAGE: i64 = 256;

const TABLE: &str = "shredvault_entries";

/// The durable points' rows (see the module doc).
const SYNC_TABLE: &str = "shredvault_sync";

/// The persisted puts' notes (see the module doc).
const JOURNAL: &str = "shredvault_journal";

/// Persists between two trims of the journal.
const TRIM_EVERY: u64 = 512;

struct Inner {
    config: tokio_postgres::Config,
    /// Taken only by `drop`, which shuts it down without waiting (a
    /// runtime may not be dropped on a thread that runs async code).
    runtime: Option<tokio::runtime::Runtime>,
    idle: pool::Pool<Conn>,
    /// Connections whose commits are synchronous (`synchronous_commit =
    /// on` for the session), for the journaled puts: each one statement,
    /// prepared, in its own implicit transaction.
    idle_sync: pool::Pool<SyncConn>,
    /// Journaled puts waiting to be written together (`group`).
    group: group::Group,
    /// Point reads kept in this process (see `cache`: coherent because
    /// the schema is this process's alone).
    cache: cache::Cache,
    /// Authenticates the journal's notes: given by `recover`, which the
    /// vault calls before any `persist`.
    journal_key: Mutex<Option<SecretKey>>,
    /// Persists since the journal was last trimmed.
    persists: std::sync::atomic::AtomicU64,
    /// The connection holding the advisory lock (never used for anything
    /// else; dropped with the store, which releases the lock).
    lock: Client,
    /// What the store names in messages: the URL without its password.
    name: String,
}

/// The store over PostgreSQL. See the module doc.
#[derive(Clone)]
pub(crate) struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// A `postgres://` URL or `key=value` connection string, for messages:
/// its password left out.
fn describe(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((auth, host)) = rest.split_once('@') {
            let user = auth.split(':').next().unwrap_or("");
            return format!("{scheme}://{user}@{host}");
        }
        return url.to_string();
    }
    url.split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pg_error(name: &str, doing: &str, e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    let kind = match e.code() {
        Some(c) if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => {
            ErrorKind::Corrupt
        }
        _ => ErrorKind::Io,
    };
    // A server error's own text (never our values: they travel as
    // parameters and PostgreSQL does not echo them in these statements).
    let why = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    Error::new(kind, format!("PostgreSQL {name}: {doing}: {why}"))
}

/// The smallest key above every key starting with `prefix`; `None` when
/// there is none (an empty prefix, or all 0xff).
fn upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xff {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://...` or
    /// `host=... dbname=...`; `PGPASSWORD` when it gives no password), creates the table if it is missing and takes
    /// the schema's lock (`Locked` if another process holds it).
    pub fn open(url: &str) -> Result<PgStore> {
        let name = describe(url);
        let config = config_of(url, &name)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("shredvault-pg")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the PostgreSQL client's runtime", e))?;
        let lock = match lock_schema(&runtime, &config, &name) {
            Ok(c) => c,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        Ok(PgStore {
            inner: Arc::new(Inner {
                config,
                runtime: Some(runtime),
                idle: pool::Pool::default(),
                idle_sync: pool::Pool::default(),
                group: group::Group::default(),
                cache: cache::Cache::default(),
                journal_key: Mutex::new(None),
                persists: std::sync::atomic::AtomicU64::new(0),
                lock,
                name,
            }),
        })
    }
}

impl Inner {
    /// Writes a batch of journaled puts (see `group`); the keys written.
    fn write_puts(&self, batch: &[&group::Pending]) -> Result<Vec<Vec<u8>>> {
        let keys: Vec<&[u8]> = batch.iter().map(|p| p.key.as_slice()).collect();
        let values: Vec<&[u8]> = batch.iter().map(|p| p.value.as_slice()).collect();
        let notes: Vec<&[u8]> = batch.iter().map(|p| p.note.as_slice()).collect();
        let macs: Vec<&[u8]> = batch.iter().map(|p| &p.mac[..]).collect();
        self.with_sync(|c| {
            let rows =
                c.rt.run(
                    c.client
                        .query(&c.put_batch, &[&keys, &values, &notes, &macs]),
                )
                .map_err(self.err("writing and journaling puts"))?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    /// [`with`](Self::with) on a connection committing synchronously.
    fn with_sync<T>(&self, f: impl FnOnce(&mut SyncConn) -> Result<T>) -> Result<T> {
        self.idle_sync
            .with(|| SyncConn::open(&self.config, &self.name), f)
    }

    /// Runs `f` on a connection of the pool (a new one if none is idle);
    /// the connection goes back unless it broke.
    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.idle.with(|| Conn::open(&self.config, &self.name), f)
    }

    /// Runs the write `f` of `writes` between the cache's two marks (see
    /// `cache`); `took` says whether what `f` returned means the values
    /// given are now the table's (kept then, for the reads that follow).
    fn writing<T>(
        &self,
        writes: &[cache::Write<'_>],
        f: impl FnOnce() -> Result<T>,
        took: impl FnOnce(&T) -> bool,
    ) -> Result<T> {
        let begun = self.cache.begin_write(writes);
        let out = f();
        self.cache
            .end_write(writes, begun, out.as_ref().is_ok_and(took));
        out
    }

    /// The MAC of a journal row's note.
    fn journal_mac(&self, note: &[u8]) -> Result<[u8; 32]> {
        let key = self.journal_key.lock().unwrap_or_else(|e| e.into_inner());
        let key = key
            .as_ref()
            .ok_or_else(|| Error::internal("a put was persisted before the store's recovery"))?;
        Ok(crate::crypto::mac(
            key,
            &[b"shredvault pg journal v1", note],
        ))
    }

    /// The journal's last row id (0 when empty).
    fn journal_end(&self) -> Result<i64> {
        self.with(|c| {
            let row =
                c.rt.run(c.client.query_one(
                    &format!("SELECT coalesce(max(id), 0)::bigint FROM {JOURNAL}"),
                    &[],
                ))
                .map_err(self.err("reading the journal"))?;
            Ok(row.get(0))
        })
    }

    /// The durable point: a synchronous commit after every commit made so
    /// far (see the module doc), which also deletes the journal's rows up
    /// to `upto`.
    fn flush(&self, upto: i64) -> Result<()> {
        self.with(|c| {
            c.rt.run(c.client.batch_execute(&format!(
                "BEGIN; SET LOCAL synchronous_commit = on;
                 DELETE FROM {JOURNAL} WHERE id <= {upto};
                 INSERT INTO {SYNC_TABLE} (pid, n) VALUES (pg_backend_pid(), 1)
                 ON CONFLICT (pid) DO UPDATE SET n = {SYNC_TABLE}.n + 1;
                 COMMIT"
            )))
            .map_err(|e| {
                // Not left in an aborted transaction for the next user.
                let _ = c.rt.run(c.client.batch_execute("ROLLBACK"));
                self.err("making writes durable")(e)
            })
        })
    }

    fn err(&self, doing: &'static str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        move |e| pg_error(&self.name, doing, e)
    }

    /// Up to [`PAGE`] entries from `from` (inclusive), below `upper`.
    fn page(&self, from: &[u8], upper: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with(|c| {
            let rows = match upper {
                Some(u) => c.rt.run(c.client.query(&c.st.page, &[&from, &u, &PAGE])),
                None => c.rt.run(c.client.query(&c.st.page_open, &[&from, &PAGE])),
            }
            .map_err(self.err("scanning"))?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Released before the store is gone, so an open right after this
        // one's drop finds the schema free (closing the connection would
        // release it too, but only once the server notices).
        let _ = block(self.lock.batch_execute("SELECT pg_advisory_unlock_all()"));
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn value(bytes: Vec<u8>) -> Value {
    Value::from_shared(Arc::from(bytes))
}

/// A scan: pages read as it goes. See the module doc.
struct Scan {
    inner: Arc<Inner>,
    /// The next page starts here (inclusive); `None` once the range is
    /// read.
    from: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    buffered: VecDeque<(Vec<u8>, Vec<u8>)>,
}

impl Iterator for Scan {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.buffered.is_empty() {
            let from = self.from.take()?;
            match self.inner.page(&from, self.upper.as_deref()) {
                Ok(rows) => {
                    if rows.len() as i64 == PAGE {
                        // Just past the last key: the smallest key above it.
                        let mut next = rows[rows.len() - 1].0.clone();
                        next.push(0);
                        self.from = Some(next);
                    }
                    self.buffered = rows.into();
                }
                Err(e) => return Some(Err(e)),
            }
        }
        let (k, v) = self.buffered.pop_front()?;
        Some(Ok((value(k), value(v))))
    }
}

impl PgStore {
    /// After a journaled put: every [`TRIM_EVERY`] of them, a durable
    /// point that empties the journal.
    fn after_persist(&self, seal: &dyn Fn() -> Result<()>) -> Result<()> {
        let n = self
            .inner
            .persists
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % TRIM_EVERY == TRIM_EVERY - 1 {
            self.sync(seal)?;
        }
        Ok(())
    }
}

impl Store for PgStore {
    fn still_locked(&self) -> bool {
        !self.inner.lock.is_closed()
    }

    fn reads_may_wait(&self) -> bool {
        // A read the cache does not answer is a round trip to the server.
        true
    }

    fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        let inner = &self.inner;
        let missed = match inner.cache.get(key) {
            Ok(v) => return Ok(Some(Value::from_shared(v))),
            Err(missed) => missed,
        };
        let row = inner.with(|c| {
            c.rt.run(c.client.query_opt(&c.st.get, &[&key]))
                .map_err(inner.err("reading"))
        })?;
        Ok(row.map(|r| {
            let v: Arc<[u8]> = Arc::from(r.get::<_, Vec<u8>>(0));
            inner.cache.fill(key, &v, missed);
            Value::from_shared(v)
        }))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let inner = &self.inner;
        inner.writing(
            &[(key, Some(value))],
            || {
                inner.with(|c| {
                    c.rt.run(c.client.execute(&c.st.upsert, &[&key, &value]))
                        .map_err(inner.err("writing"))?;
                    Ok(())
                })
            },
            |_| true,
        )
    }

    fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        let inner = &self.inner;
        inner.writing(
            &[(key, Some(value))],
            || {
                inner.with(|c| {
                    let n =
                        c.rt.run(c.client.execute(&c.st.insert_new, &[&key, &value]))
                            .map_err(inner.err("writing"))?;
                    Ok(n == 1)
                })
            },
            |&written| written,
        )
    }

    fn remove(&self, key: &[u8]) -> Result<()> {
        let inner = &self.inner;
        inner.writing(
            &[(key, None)],
            || {
                inner.with(|c| {
                    c.rt.run(c.client.execute(&c.st.remove, &[&key]))
                        .map_err(inner.err("removing"))?;
                    Ok(())
                })
            },
            |_| false,
        )
    }

    fn apply(&self, batch: Batch) -> Result<()> {
        let inner = &self.inner;
        let writes = batch.into_writes();
        if writes.is_empty() {
            return Ok(());
        }
        let marks: Vec<cache::Write<'_>> = writes
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        inner.writing(
            &marks,
            || {
                inner.with(|c| {
                    let err = inner.err("applying a batch");
                    let tx = c.rt.run(c.client.transaction()).map_err(&err)?;
                    for (k, v) in &writes {
                        match v {
                            Some(v) => c.rt.run(tx.execute(&c.st.upsert, &[k, v])),
                            None => c.rt.run(tx.execute(&c.st.remove, &[k])),
                        }
                        .map_err(&err)?;
                    }
                    c.rt.run(tx.commit()).map_err(&err)
                })
            },
            |_| true,
        )
    }

    fn scan(&self, prefix: &[u8], from: &[u8]) -> Entries {
        debug_assert!(from.starts_with(prefix));
        Box::new(Scan {
            inner: self.inner.clone(),
            from: Some(from.to_vec()),
            upper: upper_bound(prefix),
            buffered: VecDeque::new(),
        })
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>> {
        let inner = &self.inner;
        let upper = upper_bound(prefix);
        inner.with(|c| {
            let row = match &upper {
                Some(u) => c.rt.run(c.client.query_opt(&c.st.last, &[&prefix, u])),
                None => c.rt.run(c.client.query_opt(&c.st.last_open, &[&prefix])),
            }
            .map_err(inner.err("reading the last entry"))?;
            Ok(row.map(|r| (value(r.get(0)), value(r.get(1)))))
        })
    }

    fn sync(&self, seal: &dyn Fn() -> Result<()>) -> Result<()> {
        let inner = &self.inner;
        // Rows up to here hold entries the vault buffered before it wrote
        // them (it appends a put's entry, then persists it): seal writes
        // them into the chain, so the rows can go.
        let upto = inner.journal_end()?;
        seal()?;
        inner.flush(upto)
    }

    fn persist(
        &self,
        _inserts: &[(&[u8], &[u8])],
        note: &[u8],
        seal: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let inner = &self.inner;
        let mac = inner.journal_mac(note)?;
        // One statement, one round trip, committed synchronously.
        inner.with_sync(|c| {
            c.rt.run(c.client.execute(&c.journal, &[&note, &&mac[..]]))
                .map_err(inner.err("journaling a put"))
        })?;
        self.after_persist(seal)
    }

    fn joins_new_with_persist(&self) -> bool {
        true
    }

    fn persist_new(
        &self,
        key: &[u8],
        value: &[u8],
        note: &[u8],
        seal: &dyn Fn() -> Result<()>,
    ) -> Result<bool> {
        let inner = &self.inner;
        let mac = inner.journal_mac(note)?;
        // With the puts arriving meanwhile (`group`): one statement, one
        // round trip, one transaction committed synchronously.
        let written = inner.writing(
            &[(key, Some(value))],
            || {
                inner.group.put(
                    (key.to_vec(), value.to_vec(), note.to_vec(), mac),
                    &|batch| inner.write_puts(batch),
                )
            },
            |&written| written,
        )?;
        if !written {
            return Ok(false);
        }
        self.after_persist(seal)?;
        Ok(true)
    }

    fn recover(&self, key: SecretKey) -> Result<Recovered> {
        let inner = &self.inner;
        let rows = inner.with(|c| {
            c.rt.run(c.client.query(
                &format!("SELECT id, note, mac FROM {JOURNAL} ORDER BY id"),
                &[],
            ))
            .map_err(inner.err("reading the journal"))
        })?;
        let mut calls = Vec::with_capacity(rows.len());
        let mut mark = 0u64;
        for row in rows {
            let id: i64 = row.get(0);
            let note: Vec<u8> = row.get(1);
            let mac: Vec<u8> = row.get(2);
            if !crate::crypto::mac_matches(&key, &[b"shredvault pg journal v1", &note], &mac) {
                return Err(Error::corrupt(format!(
                    "PostgreSQL {}: journal row {id} does not authenticate (altered, or another vault's)",
                    inner.name
                )));
            }
            mark = id.max(0) as u64;
            calls.push(crate::store::RecoveredCall {
                inserts: Vec::new(),
                note,
            });
        }
        *inner.journal_key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
        Ok(Recovered { mark, calls })
    }

    fn size_on_disk(&self) -> u64 {
        let inner = &self.inner;
        inner
            .with(|c| {
                let row =
                    c.rt.run(c.client.query_one(
                        &format!("SELECT pg_total_relation_size('{TABLE}')::bigint"),
                        &[],
                    ))
                    .map_err(inner.err("measuring the table"))?;
                Ok(row.get::<_, i64>(0).max(0) as u64)
            })
            .unwrap_or(0)
    }

    fn compact_live(&self) -> Result<crate::types::CompactReport> {
        // VACUUM removes dead rows (a removed value's old versions) while
        // reads and writes go on; it returns space to the table, not to
        // the operating system (VACUUM FULL would, but locks the table for
        // its whole run).
        let before = self.size_on_disk();
        let inner = &self.inner;
        let entries = inner.with(|c| {
            c.rt.run(c.client.batch_execute(&format!("VACUUM {TABLE}")))
                .map_err(inner.err("vacuuming"))?;
            let row =
                c.rt.run(
                    c.client
                        .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[]),
                )
                .map_err(inner.err("counting"))?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })?;
        Ok(crate::types::CompactReport {
            bytes_before: before,
            bytes_after: self.size_on_disk(),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_bounds() {
        assert_eq!(upper_bound(b"R"), Some(b"S".to_vec()));
        assert_eq!(upper_bound(b"R\xff"), Some(b"S".to_vec()));
        assert_eq!(upper_bound(b"R\x01\xff\xff"), Some(b"R\x02".to_vec()));
        assert_eq!(upper_bound(b"\xff\xff"), None);
        assert_eq!(upper_bound(b""), None);
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            describe("postgres://sv:secret@db.example/vault"),
            "postgres://sv@db.example/vault"
        );
        assert_eq!(
            describe("host=/tmp user=sv password=secret dbname=v"),
            "host=/tmp user=sv dbname=v"
        );
    }
}
