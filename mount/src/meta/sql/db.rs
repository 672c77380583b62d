//! The narrow database seam the SQL engine is written against: positional `?` parameters,
//! four value kinds, explicit transactions. SQLite and PostgreSQL implement it; the engine's
//! logic exists once.

use crate::meta::{MetaError, Result};
use async_trait::async_trait;
use tokio::sync::mpsc;

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

impl Val {
    pub fn int(&self) -> Result<i64> {
        match self {
            Val::Int(i) => Ok(*i),
            Val::Null => Ok(0),
            other => Err(MetaError::Corrupt(format!(
                "expected an integer, found {other:?}"
            ))),
        }
    }
    pub fn uint(&self) -> Result<u64> {
        Ok(self.int()? as u64)
    }
    pub fn text(self) -> Result<String> {
        match self {
            Val::Text(s) => Ok(s),
            Val::Blob(b) => String::from_utf8(b)
                .map_err(|_| MetaError::Corrupt("text column holds invalid UTF-8".into())),
            other => Err(MetaError::Corrupt(format!(
                "expected text, found {other:?}"
            ))),
        }
    }
    pub fn blob(self) -> Result<Vec<u8>> {
        match self {
            Val::Blob(b) => Ok(b),
            Val::Text(s) => Ok(s.into_bytes()),
            Val::Null => Ok(Vec::new()),
            other => Err(MetaError::Corrupt(format!(
                "expected bytes, found {other:?}"
            ))),
        }
    }
}

macro_rules! val_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Val {
            fn from(v: $t) -> Val { Val::Int(v as i64) }
        }
    )*};
}
val_from_int!(i64, u64, i32, u32, u16, u8);

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Val {
        Val::Blob(v)
    }
}
impl From<&[u8]> for Val {
    fn from(v: &[u8]) -> Val {
        Val::Blob(v.to_vec())
    }
}

pub type Row = Vec<Val>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[async_trait]
pub trait SqlDb: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// Starts a transaction; `write` takes the write lock up front where the engine has one,
    /// so two writers never deadlock upgrading a read lock.
    async fn begin(&self, write: bool) -> Result<Box<dyn Txn>>;
}

#[async_trait]
pub trait Txn: Send {
    async fn query(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>>;
    async fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64>;
    async fn commit(self: Box<Self>) -> Result<()>;
    async fn rollback(self: Box<Self>) -> Result<()>;
}

/// A fixed set of connections handed out one at a time; a connection returns to the pool
/// when its guard drops, whatever happened to the transaction.
pub struct Pool<C: Send + 'static> {
    tx: mpsc::UnboundedSender<C>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<C>>,
}

pub struct Pooled<C: Send + 'static> {
    conn: Option<C>,
    home: mpsc::UnboundedSender<C>,
}

impl<C: Send + 'static> Pool<C> {
    pub fn new(conns: Vec<C>) -> Pool<C> {
        let (tx, rx) = mpsc::unbounded_channel();
        for c in conns {
            // The receiver is alive: it is stored just below.
            let _ = tx.send(c);
        }
        Pool {
            tx,
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    pub async fn get(&self) -> Result<Pooled<C>> {
        let conn = self
            .rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| MetaError::Db("connection pool closed".into()))?;
        Ok(Pooled {
            conn: Some(conn),
            home: self.tx.clone(),
        })
    }
}

impl<C: Send + 'static> std::ops::Deref for Pooled<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn.as_ref().expect("connection present until drop")
    }
}
impl<C: Send + 'static> std::ops::DerefMut for Pooled<C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_mut().expect("connection present until drop")
    }
}
impl<C: Send + 'static> Drop for Pooled<C> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = self.home.send(c);
        }
    }
}
