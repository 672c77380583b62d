//! BSD (`lockf{ino}`) and POSIX (`lockp{ino}`) locks: one hash per inode, one field per
//! holder (`{sid}_{owner}`), so every client sharing the volume sees them. Each lock key a
//! session uses is also remembered in `locked{sid}`, so whoever cleans up after a dead
//! session can release its locks.

use super::txn::{txn, watching};
use super::{RedisMeta, keys};
use crate::meta::plock::{apply_plock, conflicts, decode_plocks, encode_plocks};
use crate::meta::*;
use std::collections::HashMap;

impl RedisMeta {
    pub(crate) async fn do_flock(&self, ino: Ino, owner: u64, ltype: LockType) -> Result<()> {
        let key = keys::flock(ino);
        let me = keys::lock_owner(self.sid(), owner);
        if ltype == LockType::Unlock {
            return self
                .conn
                .run::<()>(::redis::cmd("HDEL").arg(&key).arg(&me))
                .await;
        }
        txn!(self, &key, |tx| {
            let mut q = watching(&[&key]);
            q.cmd("HGETALL").arg(&key);
            let (holders,): (HashMap<String, String>,) = tx.read_pipe(&q).await?;
            for (who, t) in &holders {
                if *who != me && (ltype == LockType::Write || t == "W") {
                    return Err(MetaError::WouldBlock);
                }
            }
            let t = if ltype == LockType::Write { "W" } else { "R" };
            tx.pipe.cmd("HSET").arg(&key).arg(&me).arg(t);
            tx.pipe.cmd("SADD").arg(keys::locked(self.sid())).arg(&key);
            Ok(())
        })?;
        Ok(())
    }

    /// Splits the holders of a `lockp` hash into this holder's records and everyone else's.
    fn plocks(
        &self,
        holders: HashMap<String, Vec<u8>>,
        owner: u64,
    ) -> (Vec<PlockRecord>, Vec<PlockRecord>) {
        let me = keys::lock_owner(self.sid(), owner);
        let (mut mine, mut others) = (Vec::new(), Vec::new());
        for (who, recs) in holders {
            if who == me {
                mine = decode_plocks(&recs);
            } else {
                others.extend(decode_plocks(&recs));
            }
        }
        (mine, others)
    }

    pub(crate) async fn do_getlk(
        &self,
        ino: Ino,
        owner: u64,
        want: PlockRecord,
    ) -> Result<Option<PlockRecord>> {
        let holders: HashMap<String, Vec<u8>> = self
            .conn
            .run(::redis::cmd("HGETALL").arg(keys::plock(ino)))
            .await?;
        let (_, others) = self.plocks(holders, owner);
        Ok(others.into_iter().find(|o| conflicts(o, &want)))
    }

    pub(crate) async fn do_setlk(&self, ino: Ino, owner: u64, rec: PlockRecord) -> Result<()> {
        let key = keys::plock(ino);
        let me = keys::lock_owner(self.sid(), owner);
        txn!(self, &key, |tx| {
            let mut q = watching(&[&key]);
            q.cmd("HGETALL").arg(&key);
            let (holders,): (HashMap<String, Vec<u8>>,) = tx.read_pipe(&q).await?;
            let (mine, others) = self.plocks(holders, owner);
            if rec.ltype != LockType::Unlock && others.iter().any(|o| conflicts(o, &rec)) {
                return Err(MetaError::WouldBlock);
            }
            let updated = apply_plock(mine, rec);
            if updated.is_empty() {
                tx.pipe.cmd("HDEL").arg(&key).arg(&me);
            } else {
                tx.pipe
                    .cmd("HSET")
                    .arg(&key)
                    .arg(&me)
                    .arg(encode_plocks(&updated));
                tx.pipe.cmd("SADD").arg(keys::locked(self.sid())).arg(&key);
            }
            Ok(())
        })?;
        Ok(())
    }
}
