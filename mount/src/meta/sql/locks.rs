//! BSD (`jfs_flock`) and POSIX (`jfs_plock`) locks, stored per (inode, session, owner) so
//! every client sharing the volume sees them.

use super::*;
use crate::meta::plock::{apply_plock, conflicts, decode_plocks, encode_plocks};

const FLOCK_READ: i64 = b'R' as i64;
const FLOCK_WRITE: i64 = b'W' as i64;

impl SqlMeta {
    pub(crate) async fn do_flock(&self, ino: Ino, owner: u64, ltype: LockType) -> Result<()> {
        let sid = self.sid();
        txn!(self, true, |tx| {
            if ltype == LockType::Unlock {
                tx.exec(
                    "DELETE FROM jfs_flock WHERE inode=? AND sid=? AND owner=?",
                    &[ino.into(), sid.into(), (owner as i64).into()],
                )
                .await?;
                return Ok(());
            }
            let rows = tx
                .query(
                    "SELECT sid,owner,ltype FROM jfs_flock WHERE inode=?",
                    &[ino.into()],
                )
                .await?;
            for r in &rows {
                let mine = r[0].uint()? == sid && r[1].int()? == owner as i64;
                if !mine && (ltype == LockType::Write || r[2].int()? == FLOCK_WRITE) {
                    return Err(MetaError::WouldBlock);
                }
            }
            let t = if ltype == LockType::Write {
                FLOCK_WRITE
            } else {
                FLOCK_READ
            };
            let n = tx
                .exec(
                    "UPDATE jfs_flock SET ltype=? WHERE inode=? AND sid=? AND owner=?",
                    &[t.into(), ino.into(), sid.into(), (owner as i64).into()],
                )
                .await?;
            if n == 0 {
                tx.exec(
                    "INSERT INTO jfs_flock (inode,sid,owner,ltype) VALUES (?,?,?,?)",
                    &[ino.into(), sid.into(), (owner as i64).into(), t.into()],
                )
                .await?;
            }
            Ok(())
        })
    }

    async fn plocks_of_others(
        &self,
        tx: &mut Tx,
        ino: Ino,
        owner: u64,
    ) -> Result<Vec<PlockRecord>> {
        let sid = self.sid();
        let rows = tx
            .query(
                "SELECT sid,owner,records FROM jfs_plock WHERE inode=?",
                &[ino.into()],
            )
            .await?;
        let mut out = Vec::new();
        for mut r in rows {
            let mine = r[0].uint()? == sid && r[1].int()? == owner as i64;
            if !mine {
                out.extend(decode_plocks(&r.remove(2).blob()?));
            }
        }
        Ok(out)
    }

    pub(crate) async fn do_getlk(
        &self,
        ino: Ino,
        owner: u64,
        want: PlockRecord,
    ) -> Result<Option<PlockRecord>> {
        txn!(self, false, |tx| {
            let others = self.plocks_of_others(&mut tx, ino, owner).await?;
            Ok(others.into_iter().find(|o| conflicts(o, &want)))
        })
    }

    pub(crate) async fn do_setlk(&self, ino: Ino, owner: u64, rec: PlockRecord) -> Result<()> {
        let sid = self.sid();
        txn!(self, true, |tx| {
            if rec.ltype != LockType::Unlock {
                let others = self.plocks_of_others(&mut tx, ino, owner).await?;
                if others.iter().any(|o| conflicts(o, &rec)) {
                    return Err(MetaError::WouldBlock);
                }
            }
            let rows = tx
                .query(
                    "SELECT records FROM jfs_plock WHERE inode=? AND sid=? AND owner=?",
                    &[ino.into(), sid.into(), (owner as i64).into()],
                )
                .await?;
            let exists = !rows.is_empty();
            let mine = match rows.into_iter().next() {
                Some(mut r) => decode_plocks(&r.remove(0).blob()?),
                None => Vec::new(),
            };
            let updated = apply_plock(mine, rec);
            let args = |b: Vec<u8>| -> Vec<Val> {
                vec![b.into(), ino.into(), sid.into(), (owner as i64).into()]
            };
            if updated.is_empty() {
                tx.exec(
                    "DELETE FROM jfs_plock WHERE inode=? AND sid=? AND owner=?",
                    &[ino.into(), sid.into(), (owner as i64).into()],
                )
                .await?;
            } else if exists {
                tx.exec(
                    "UPDATE jfs_plock SET records=? WHERE inode=? AND sid=? AND owner=?",
                    &args(encode_plocks(&updated)),
                )
                .await?;
            } else {
                tx.exec(
                    "INSERT INTO jfs_plock (records,inode,sid,owner) VALUES (?,?,?,?)",
                    &args(encode_plocks(&updated)),
                )
                .await?;
            }
            Ok(())
        })
    }
}
