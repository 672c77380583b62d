//! PostgreSQL through tokio-postgres: a small pool of connections with per-connection
//! prepared-statement caches. Integer parameters are narrowed to the column's real type
//! (the JuiceFS schema mixes int4 and int8).

use super::db::{Dialect, Pool, Pooled, Row, SqlDb, Txn, Val};
use crate::meta::{MetaError, Result};
use async_trait::async_trait;
use bytes::BytesMut;
use std::collections::HashMap;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

const POOL_SIZE: usize = 8;

pub struct PgDb {
    pool: Pool<PgConn>,
}

struct PgConn {
    client: Client,
    conn_str: String,
    stmts: HashMap<String, Statement>,
    in_txn: bool,
}

fn db_err(e: tokio_postgres::Error) -> MetaError {
    if let Some(code) = e.code()
        && (*code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::UNIQUE_VIOLATION)
    {
        return MetaError::Conflict(e.to_string());
    }
    MetaError::Db(format!("postgres: {}", describe(&e)))
}

/// The server's own message when there is one ("password authentication failed ..."),
/// else the error with its cause ("connection refused").
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

async fn connect_one(conn_str: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(conn_str, NoTls)
        .await
        .map_err(|e| MetaError::Db(format!("postgres: cannot connect: {}", describe(&e))))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("postgres connection closed: {e}");
        }
    });
    Ok(client)
}

impl PgDb {
    pub async fn connect(conn_str: &str) -> Result<PgDb> {
        let mut conns = Vec::with_capacity(POOL_SIZE);
        // Connect one at a time so a bad address fails once, with one message.
        for _ in 0..POOL_SIZE {
            conns.push(PgConn {
                client: connect_one(conn_str).await?,
                conn_str: conn_str.to_string(),
                stmts: HashMap::new(),
                in_txn: false,
            });
        }
        Ok(PgDb {
            pool: Pool::new(conns),
        })
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT8 => i.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to a {ty} column").into()),
            },
            Val::Text(s) => match *ty {
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                _ => s.as_str().to_sql(ty, out),
            },
            Val::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => std::str::from_utf8(b)?.to_sql(ty, out),
            },
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn row_vals(r: &tokio_postgres::Row) -> Result<Row> {
    let mut row = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let conv = |e: tokio_postgres::Error| MetaError::Db(format!("postgres: {e}"));
        let v = match *col.type_() {
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map_err(conv)?
                .map(|v| Val::Int(v as i64)),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map_err(conv)?
                .map(|v| Val::Int(v as i64)),
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(conv)?.map(Val::Int),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map_err(conv)?
                .map(|v| Val::Int(v as i64)),
            Type::BYTEA => r
                .try_get::<_, Option<Vec<u8>>>(i)
                .map_err(conv)?
                .map(Val::Blob),
            _ => r
                .try_get::<_, Option<String>>(i)
                .map_err(conv)?
                .map(Val::Text),
        };
        row.push(v.unwrap_or(Val::Null));
    }
    Ok(row)
}

impl PgConn {
    async fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let st = self
            .client
            .prepare(&placeholders(sql))
            .await
            .map_err(db_err)?;
        self.stmts.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// A transaction in progress; `PgConn::in_txn` stays set if a caller abandons it, and the
/// next `begin` on that connection rolls it back first.
struct PgTxn {
    conn: Pooled<PgConn>,
}

#[async_trait]
impl SqlDb for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn begin(&self, write: bool) -> Result<Box<dyn Txn>> {
        let mut conn = self.pool.get().await?;
        if conn.client.is_closed() {
            conn.client = connect_one(&conn.conn_str).await?;
            conn.stmts.clear();
            conn.in_txn = false;
        }
        if conn.in_txn {
            conn.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(db_err)?;
        }
        let begin = if write {
            "BEGIN ISOLATION LEVEL REPEATABLE READ"
        } else {
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        };
        conn.in_txn = true;
        conn.client.batch_execute(begin).await.map_err(db_err)?;
        Ok(Box::new(PgTxn { conn }))
    }
}

fn params(args: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

#[async_trait]
impl Txn for PgTxn {
    async fn query(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        let st = self.conn.statement(sql).await?;
        let rows = self
            .conn
            .client
            .query(&st, &params(args))
            .await
            .map_err(db_err)?;
        rows.iter().map(row_vals).collect()
    }

    async fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
        let st = self.conn.statement(sql).await?;
        self.conn
            .client
            .execute(&st, &params(args))
            .await
            .map_err(db_err)
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let r = self
            .conn
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(db_err);
        if r.is_ok() {
            self.conn.in_txn = false;
        }
        r
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        self.conn
            .client
            .batch_execute("ROLLBACK")
            .await
            .map_err(db_err)?;
        self.conn.in_txn = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(
            super::placeholders("UPDATE t SET a=? WHERE b=? AND c=?"),
            "UPDATE t SET a=$1 WHERE b=$2 AND c=$3"
        );
    }
}
