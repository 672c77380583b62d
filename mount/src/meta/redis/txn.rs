//! Optimistic transactions as JuiceFS runs them on Redis: WATCH the keys a change depends
//! on, read them, queue the writes, and EXEC them as one MULTI block. EXEC answers nil when
//! any watched key changed meanwhile (another client won the race): the whole thing is run
//! again. A key may be watched at any point before EXEC, as long as it is watched before it
//! is read, so a transaction can follow a directory entry to the inode it names. A WATCH
//! and the reads it guards go out as one pipeline (`watching`): one round trip per step.
//!
//! Local transactions on the same key wait for each other first (as JuiceFS's `txlocks`),
//! which keeps this client from racing itself.

use super::conn::{Conn, Req, Slot, describe, retire, transient};
use crate::meta::sql::db::Pooled;
use crate::meta::{MetaError, Result};
use ::redis::{Cmd, FromRedisValue, Pipeline, Value};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Runs `$body` as a transaction, again from the start when a watched key changed or the
/// server could not be reached before EXEC. Evaluates to `Result<(T, replies)>`, `replies`
/// being EXEC's answers to the queued commands in order.
macro_rules! txn {
    ($self:ident, $lock:expr, |$tx:ident| $body:block) => {{
        let _local = $self.locks.lock($lock).await;
        let mut retry = $crate::meta::redis::conn::Retry::new();
        let start = std::time::Instant::now();
        let mut restarts = 0u32;
        let r = loop {
            let mut $tx = match $crate::meta::redis::txn::Tx::begin(&$self.conn).await {
                Ok(t) => t,
                Err(e) => break Err(e),
            };
            let body: $crate::meta::Result<_> = async { $body }.await;
            match $tx.finish(body).await {
                $crate::meta::redis::txn::Step::Done(v, replies) => break Ok((v, replies)),
                $crate::meta::redis::txn::Step::Conflict => {
                    restarts += 1;
                    if !retry.conflict().await {
                        break Err($crate::meta::MetaError::Conflict(
                            "too many concurrent changes to the same keys".into(),
                        ));
                    }
                }
                $crate::meta::redis::txn::Step::Unreachable(why) => {
                    if !retry.quick()
                        && let Err(e) = $self.conn.outage(&why, &mut retry).await
                    {
                        break Err(e);
                    }
                }
                $crate::meta::redis::txn::Step::Fail(e) => break Err(e),
            }
        };
        $crate::metrics::METRICS.transaction(start.elapsed(), restarts);
        r
    }};
}
pub(crate) use txn;

pub enum Step<T> {
    Done(T, Vec<Value>),
    Conflict,
    /// The server went away before EXEC: nothing was applied, the transaction may rerun.
    Unreachable(String),
    Fail(MetaError),
}

pub struct Tx {
    slot: Pooled<Slot>,
    generation: Arc<AtomicU64>,
    /// The writes, sent as MULTI ... EXEC by `finish`.
    pub pipe: Pipeline,
}

impl Tx {
    pub async fn begin(conn: &Conn) -> Result<Tx> {
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        let (slot, generation) = conn.exclusive().await?;
        Ok(Tx {
            slot,
            generation,
            pipe,
        })
    }

    /// A read inside the transaction. A lost connection is reported as `Unavailable`, which
    /// makes `finish` rerun the transaction on a fresh connection.
    pub async fn read<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T> {
        let r = self.slot.conn()?.query(Req::Cmd(cmd)).await;
        r.map_err(|e| self.failed(e))
    }

    /// Several reads in one round trip (a plain pipeline, not part of the MULTI block);
    /// see `watching`.
    pub async fn read_pipe<T: FromRedisValue>(&mut self, p: &Pipeline) -> Result<T> {
        let r = self.slot.conn()?.query(Req::Pipe(p)).await;
        r.map_err(|e| self.failed(e))
    }

    fn failed(&mut self, e: ::redis::RedisError) -> MetaError {
        if transient(&e) {
            self.slot.discard();
            retire(&self.generation);
            MetaError::Unavailable(describe(&e))
        } else {
            MetaError::Db(format!("Redis: {}", describe(&e)))
        }
    }

    /// Index that the next queued command's answer will have among the EXEC replies.
    pub fn next_reply(&self) -> usize {
        self.pipe.len()
    }

    pub async fn finish<T>(mut self, body: Result<T>) -> Step<T> {
        let v = match body {
            Ok(v) => v,
            Err(MetaError::Unavailable(why)) => {
                self.unwatch().await;
                return Step::Unreachable(why);
            }
            Err(e) => {
                self.unwatch().await;
                return Step::Fail(e);
            }
        };
        if self.pipe.is_empty() {
            self.unwatch().await;
            return Step::Done(v, Vec::new());
        }
        let conn = match self.slot.conn() {
            Ok(c) => c,
            Err(e) => return Step::Fail(e),
        };
        match conn
            .query::<Option<Vec<Value>>>(Req::Pipe(&self.pipe))
            .await
        {
            Ok(Some(replies)) => Step::Done(v, replies),
            // EXEC refused: a watched key changed. EXEC also ended the WATCH.
            Ok(None) => Step::Conflict,
            Err(e) if transient(&e) => {
                // The EXEC may or may not have been applied: do not guess, report EIO.
                self.slot.discard();
                retire(&self.generation);
                Step::Fail(MetaError::Unavailable(format!(
                    "connection lost while committing a change (it may or may not be applied): {}",
                    describe(&e)
                )))
            }
            Err(e) => {
                self.unwatch().await;
                Step::Fail(MetaError::Db(format!(
                    "Redis transaction: {}",
                    describe(&e)
                )))
            }
        }
    }

    /// Ends a WATCH left by a transaction that queued nothing or failed, so the pooled
    /// connection does not carry it into the next one.
    async fn unwatch(&mut self) {
        let ok = match self.slot.conn() {
            Ok(c) => c
                .query::<()>(Req::Cmd(&::redis::cmd("UNWATCH")))
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !ok {
            self.slot.discard();
        }
    }
}

/// A pipeline that first watches `keys`: the reads added to it see the watched state, and
/// all of it costs one round trip.
pub fn watching(keys: &[&str]) -> Pipeline {
    let mut p = ::redis::pipe();
    p.cmd("WATCH").arg(keys).ignore();
    p
}

/// Serialises this client's transactions that start from the same key.
pub struct KeyLocks(Vec<tokio::sync::Mutex<()>>);

impl KeyLocks {
    pub fn new() -> KeyLocks {
        KeyLocks((0..1024).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    pub async fn lock(&self, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.0[(h.finish() % self.0.len() as u64) as usize]
            .lock()
            .await
    }
}

impl Default for KeyLocks {
    fn default() -> Self {
        KeyLocks::new()
    }
}
