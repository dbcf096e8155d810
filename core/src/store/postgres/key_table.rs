//! The key rows of a vault in PostgreSQL: the SQL half of the epoch
//! custody (`custody::epochs`), which holds the layout, the wrapping and
//! the crash order. Here: tables, statements, transactions; never a key in
//! clear (every row's key is wrapped before it gets here).
//!
//! ```sql
//! CREATE TABLE shredvault_keys (idx bigint PRIMARY KEY, kind smallint NOT NULL,
//!     key_id bigint NOT NULL, epoch bigint NOT NULL, wrapped bytea NOT NULL);
//! CREATE SEQUENCE shredvault_key_idx MINVALUE 0 START 0;    -- never reused
//! CREATE TABLE shredvault_custody (one boolean PRIMARY KEY CHECK (one),
//!     header bytea NOT NULL);                                  -- one row
//! ```
//!
//! Every write here is a synchronous commit: durable before it returns, as
//! the custody's contract asks of creation and destruction.

use super::conn::Local;
use super::PgStore;
use crate::error::Result;

const KEYS: &str = "shredvault_keys";
const SEQUENCE: &str = "shredvault_key_idx";
const HEADER: &str = "shredvault_custody";

/// Rows changed per statement (arrays bound as parameters).
const CHUNK: usize = 4096;

/// One key row as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyRow {
    pub idx: i64,
    pub kind: i16,
    pub key_id: i64,
    pub epoch: i64,
    pub wrapped: Vec<u8>,
}

/// The key rows and the custody header of the store's schema, on the
/// store's connections.
#[derive(Clone, Debug)]
pub(crate) struct KeyTable {
    store: PgStore,
}

impl KeyTable {
    /// The tables of `store`'s schema, made if missing (the store holds the
    /// schema's lock, so no other process makes them meanwhile).
    pub fn open(store: &PgStore) -> Result<KeyTable> {
        let table = KeyTable {
            store: store.clone(),
        };
        table.run("creating the key tables", |c, rt| {
            rt.run(c.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {KEYS} (idx bigint PRIMARY KEY, kind smallint NOT NULL,
                     key_id bigint NOT NULL, epoch bigint NOT NULL, wrapped bytea NOT NULL);
                 CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} MINVALUE 0 START 0;
                 CREATE TABLE IF NOT EXISTS {HEADER} (one boolean PRIMARY KEY CHECK (one), header bytea NOT NULL)"
            )))
        })?;
        Ok(table)
    }

    /// What the store names in messages.
    pub fn name(&self) -> &str {
        &self.store.inner.name
    }

    /// Runs `f` on a pooled connection, mapping its error.
    fn run<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce(
            &mut tokio_postgres::Client,
            &Local,
        ) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let inner = &self.store.inner;
        inner.with(|c| f(&mut c.client, &c.rt).map_err(inner.err(doing)))
    }

    /// Runs `f` in one transaction committed synchronously (rolled back on
    /// error, so the connection goes back clean).
    fn durably<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce(
            &tokio_postgres::Transaction<'_>,
            &Local,
        ) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        self.run(doing, |c, rt| {
            let tx = rt.run(c.transaction())?;
            rt.run(tx.batch_execute("SET LOCAL synchronous_commit = on"))?;
            let out = f(&tx, rt)?;
            rt.run(tx.commit())?;
            Ok(out)
        })
    }

    /// The custody header, if the schema holds one.
    pub fn header(&self) -> Result<Option<Vec<u8>>> {
        self.run("reading the custody header", |c, rt| {
            let row = rt.run(c.query_opt(&format!("SELECT header FROM {HEADER}"), &[]))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// Writes the header if there is none; `false` if there was one (a
    /// racing creator's, which the caller reads back).
    pub fn create_header(&self, header: &[u8]) -> Result<bool> {
        self.durably("writing the custody header", |tx, rt| {
            let n = rt.run(tx.execute(
                &format!(
                    "INSERT INTO {HEADER} (one, header) VALUES (true, $1) ON CONFLICT DO NOTHING"
                ),
                &[&header],
            ))?;
            Ok(n == 1)
        })
    }

    /// Replaces the header, durably.
    pub fn set_header(&self, header: &[u8]) -> Result<()> {
        self.durably("writing the custody header", |tx, rt| {
            rt.run(tx.execute(&format!("UPDATE {HEADER} SET header = $1"), &[&header]))
                .map(|_| ())
        })
    }

    /// `count` fresh row indexes (never handed out before).
    pub fn next_indexes(&self, count: usize) -> Result<Vec<i64>> {
        let count = count as i64;
        self.run("drawing key indexes", |c, rt| {
            let rows = rt.run(c.query(
                &format!("SELECT nextval('{SEQUENCE}') FROM generate_series(1, $1::bigint)"),
                &[&count],
            ))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// How many indexes the sequence has handed out (every row's index
    /// is below it).
    pub fn index_bound(&self) -> Result<i64> {
        self.run("reading the key sequence", |c, rt| {
            let row = rt.run(c.query_one(
                &format!(
                    "SELECT CASE WHEN is_called THEN last_value + 1 ELSE 0 END FROM {SEQUENCE}"
                ),
                &[],
            ))?;
            Ok(row.get::<_, i64>(0))
        })
    }

    /// Inserts `rows`, durably, in one transaction.
    pub fn insert(&self, rows: &[KeyRow]) -> Result<()> {
        self.durably("writing keys", |tx, rt| {
            for chunk in rows.chunks(CHUNK) {
                let (idx, kind, key_id, epoch, wrapped) = columns(chunk);
                rt.run(tx.execute(
                    &format!(
                        "INSERT INTO {KEYS} (idx, kind, key_id, epoch, wrapped)
                         SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::bigint[], $5::bytea[])"
                    ),
                    &[&idx, &kind, &key_id, &epoch, &wrapped],
                ))?;
            }
            Ok(())
        })
    }

    /// Deletes the rows `(idx, key_id)` names (`key_id` `None`: whatever
    /// the index holds), durably; returns the indexes deleted.
    pub fn delete(&self, refs: &[(i64, Option<i64>)]) -> Result<Vec<i64>> {
        self.durably("destroying keys", |tx, rt| {
            let mut gone = Vec::new();
            for chunk in refs.chunks(CHUNK) {
                let idx: Vec<i64> = chunk.iter().map(|r| r.0).collect();
                let id: Vec<Option<i64>> = chunk.iter().map(|r| r.1).collect();
                let rows = rt.run(tx.query(
                    &format!(
                        "DELETE FROM {KEYS} k USING unnest($1::bigint[], $2::bigint[]) AS d(idx, key_id)
                         WHERE k.idx = d.idx AND (d.key_id IS NULL OR k.key_id = d.key_id)
                         RETURNING k.idx"
                    ),
                    &[&idx, &id],
                ))?;
                gone.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
            }
            Ok(gone)
        })
    }

    /// The row at `idx`, if any.
    pub fn get(&self, idx: i64) -> Result<Option<KeyRow>> {
        self.run("reading a key", |c, rt| {
            let row = rt.run(c.query_opt(
                &format!("SELECT idx, kind, key_id, epoch, wrapped FROM {KEYS} WHERE idx = $1"),
                &[&idx],
            ))?;
            Ok(row.map(|r| row_of(&r)))
        })
    }

    /// Every row, in index order.
    pub fn all(&self) -> Result<Vec<KeyRow>> {
        self.run("reading the keys", |c, rt| {
            let rows = rt.run(c.query(
                &format!("SELECT idx, kind, key_id, epoch, wrapped FROM {KEYS} ORDER BY idx"),
                &[],
            ))?;
            Ok(rows.iter().map(row_of).collect())
        })
    }

    /// The epoch's commit: every row is given the wrapping `rewrap`
    /// returns, marked with `epoch`, and the header becomes `header`, in
    /// one synchronous transaction; the rows are read and locked inside it.
    /// A `rewrap` error rolls everything back and is returned.
    pub fn rewrap_all(
        &self,
        epoch: i64,
        header: &[u8],
        rewrap: &dyn Fn(&KeyRow) -> Result<Vec<u8>>,
    ) -> Result<u64> {
        self.run("re-wrapping the keys", |c, rt| {
            let tx = rt.run(c.transaction())?;
            rt.run(tx.batch_execute("SET LOCAL synchronous_commit = on"))?;
            let rows = rt.run(tx.query(
                &format!(
                    "SELECT idx, kind, key_id, epoch, wrapped FROM {KEYS} ORDER BY idx FOR UPDATE"
                ),
                &[],
            ))?;
            let rows: Vec<KeyRow> = rows.iter().map(row_of).collect();
            let mut wrapped = Vec::with_capacity(rows.len());
            for row in &rows {
                match rewrap(row) {
                    Ok(w) => wrapped.push(w),
                    // Dropping the transaction rolls it back.
                    Err(e) => return Ok(Err(e)),
                }
            }
            let idx: Vec<i64> = rows.iter().map(|r| r.idx).collect();
            let mut done = 0u64;
            for (idx, wrapped) in idx.chunks(CHUNK).zip(wrapped.chunks(CHUNK)) {
                done += rt.run(tx.execute(
                    &format!(
                        "UPDATE {KEYS} k SET epoch = $1, wrapped = u.w
                         FROM unnest($2::bigint[], $3::bytea[]) AS u(idx, w) WHERE k.idx = u.idx"
                    ),
                    &[&epoch, &idx, &wrapped],
                ))?;
            }
            rt.run(tx.execute(&format!("UPDATE {HEADER} SET header = $1"), &[&header]))?;
            rt.run(tx.commit())?;
            Ok(Ok(done))
        })?
    }

    /// Bytes the key table takes in the database.
    pub fn size(&self) -> u64 {
        self.run("sizing the keys", |c, rt| {
            let row = rt.run(c.query_one(
                &format!("SELECT pg_total_relation_size('{KEYS}')::bigint"),
                &[],
            ))?;
            Ok(row.get::<_, i64>(0))
        })
        .map(|n| n.max(0) as u64)
        .unwrap_or(0)
    }
}

fn row_of(r: &tokio_postgres::Row) -> KeyRow {
    KeyRow {
        idx: r.get(0),
        kind: r.get(1),
        key_id: r.get(2),
        epoch: r.get(3),
        wrapped: r.get(4),
    }
}

type Columns = (Vec<i64>, Vec<i16>, Vec<i64>, Vec<i64>, Vec<Vec<u8>>);

fn columns(rows: &[KeyRow]) -> Columns {
    let mut out: Columns = Default::default();
    for r in rows {
        out.0.push(r.idx);
        out.1.push(r.kind);
        out.2.push(r.key_id);
        out.3.push(r.epoch);
        out.4.push(r.wrapped.clone());
    }
    out
}
