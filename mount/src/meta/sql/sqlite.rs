//! SQLite through rusqlite: a small pool of connections to one database file. Calls are
//! synchronous and short; they run on the thread that polls the transaction.

use super::db::{Dialect, Pool, Pooled, Row, SqlDb, Txn, Val};
use crate::meta::{MetaError, Result};
use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::time::Duration;

const POOL_SIZE: usize = 4;

pub struct SqliteDb {
    pool: Pool<Connection>,
}

fn db_err(e: rusqlite::Error) -> MetaError {
    use rusqlite::ErrorCode::*;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, DatabaseBusy | DatabaseLocked | ConstraintViolation) =>
        {
            MetaError::Conflict(e.to_string())
        }
        _ => MetaError::Db(format!("sqlite: {e}")),
    }
}

impl SqliteDb {
    pub fn open(path: &str, read_only: bool, create: bool) -> Result<SqliteDb> {
        let p = std::path::Path::new(path);
        if !create && !p.exists() {
            return Err(MetaError::NotFormatted(format!(
                "database {path} does not exist"
            )));
        }
        if let Some(dir) = p.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            return Err(MetaError::Db(format!(
                "sqlite: directory {} of database {path} does not exist",
                dir.display()
            )));
        }
        let mut flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut conns = Vec::with_capacity(POOL_SIZE);
        for _ in 0..POOL_SIZE {
            let c = Connection::open_with_flags(path, flags)
                .map_err(|e| MetaError::Db(format!("sqlite: cannot open {path}: {e}")))?;
            c.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
            if !read_only && conns.is_empty() {
                // WAL: readers never block the writer and a commit costs one fsync. The
                // mode is stored in the file; the reference client works with it too.
                if let Err(e) = c.pragma_update(None, "journal_mode", "WAL") {
                    tracing::debug!("keeping the journal mode of {path}: {e}");
                }
            }
            c.set_prepared_statement_cache_capacity(128);
            conns.push(c);
        }
        Ok(SqliteDb {
            pool: Pool::new(conns),
        })
    }
}

struct SqliteTxn {
    conn: Pooled<Connection>,
    open: bool,
}

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Val::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

fn to_val(v: ValueRef<'_>) -> Val {
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Real(f) => Val::Int(f as i64),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Val::Text(s.to_string()),
            Err(_) => Val::Blob(t.to_vec()),
        },
        ValueRef::Blob(b) => Val::Blob(b.to_vec()),
    }
}

#[async_trait]
impl SqlDb for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn begin(&self, write: bool) -> Result<Box<dyn Txn>> {
        let conn = self.pool.get().await?;
        if write {
            conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
        }
        // Reads run in autocommit mode: each statement sees a committed state, and we
        // save two round trips through SQLite's locking per read.
        Ok(Box::new(SqliteTxn { conn, open: write }))
    }
}

#[async_trait]
impl Txn for SqliteTxn {
    async fn query(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        let mut st = self.conn.prepare_cached(sql).map_err(db_err)?;
        let n = st.column_count();
        let mut rows = st
            .query(rusqlite::params_from_iter(args.iter()))
            .map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(to_val(r.get_ref(i).map_err(db_err)?));
            }
            out.push(row);
        }
        Ok(out)
    }

    async fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
        let mut st = self.conn.prepare_cached(sql).map_err(db_err)?;
        let n = st
            .execute(rusqlite::params_from_iter(args.iter()))
            .map_err(db_err)?;
        Ok(n as u64)
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(db_err(e));
        }
        Ok(())
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        self.conn.execute_batch("ROLLBACK").map_err(db_err)
    }
}

impl Drop for SqliteTxn {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
