//! BSD (`jfs_flock`) and POSIX (`jfs_plock`) locks, stored per (inode, session, owner) so
//! every client sharing the volume sees them.

use super::*;

const FLOCK_READ: i64 = b'R' as i64;
const FLOCK_WRITE: i64 = b'W' as i64;
const PLOCK_BYTES: usize = 24;

/// Plock records: type u32, pid u32, start u64, end u64, big-endian.
pub(crate) fn encode_plocks(recs: &[PlockRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(recs.len() * PLOCK_BYTES);
    for r in recs {
        out.extend_from_slice(&(r.ltype.to_libc() as u32).to_be_bytes());
        out.extend_from_slice(&r.pid.to_be_bytes());
        out.extend_from_slice(&r.start.to_be_bytes());
        out.extend_from_slice(&r.end.to_be_bytes());
    }
    out
}

pub(crate) fn decode_plocks(buf: &[u8]) -> Vec<PlockRecord> {
    buf.chunks_exact(PLOCK_BYTES)
        .filter_map(|b| {
            let t = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i32;
            Some(PlockRecord {
                ltype: LockType::from_libc(t)?,
                pid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                start: u64::from_be_bytes(b[8..16].try_into().ok()?),
                end: u64::from_be_bytes(b[16..24].try_into().ok()?),
            })
        })
        .collect()
}

/// Replaces `[rec.start, rec.end]` of an owner's ranges with `rec` (or removes it on unlock),
/// merging neighbours of the same type.
pub(crate) fn apply_plock(mut recs: Vec<PlockRecord>, rec: PlockRecord) -> Vec<PlockRecord> {
    let mut out: Vec<PlockRecord> = Vec::with_capacity(recs.len() + 2);
    for r in recs.drain(..) {
        if r.end < rec.start || r.start > rec.end {
            out.push(r);
            continue;
        }
        if r.start < rec.start {
            out.push(PlockRecord {
                end: rec.start - 1,
                ..r
            });
        }
        if r.end > rec.end {
            out.push(PlockRecord {
                start: rec.end + 1,
                ..r
            });
        }
    }
    if rec.ltype != LockType::Unlock {
        out.push(rec);
    }
    out.sort_by_key(|r| r.start);
    let mut merged: Vec<PlockRecord> = Vec::with_capacity(out.len());
    for r in out {
        match merged.last_mut() {
            Some(last) if last.ltype == r.ltype && last.end.checked_add(1) == Some(r.start) => {
                last.end = r.end;
            }
            _ => merged.push(r),
        }
    }
    merged
}

fn conflicts(a: &PlockRecord, b: &PlockRecord) -> bool {
    let overlap = a.start <= b.end && b.start <= a.end;
    overlap && (a.ltype == LockType::Write || b.ltype == LockType::Write)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: LockType, s: u64, e: u64) -> PlockRecord {
        PlockRecord {
            ltype: t,
            pid: 1,
            start: s,
            end: e,
        }
    }

    #[test]
    fn plock_ranges_split_and_merge() {
        let r = apply_plock(vec![], rec(LockType::Write, 0, 99));
        let r = apply_plock(r, rec(LockType::Unlock, 10, 19));
        assert_eq!(
            r,
            vec![rec(LockType::Write, 0, 9), rec(LockType::Write, 20, 99)]
        );
        let r = apply_plock(r, rec(LockType::Write, 10, 19));
        assert_eq!(r, vec![rec(LockType::Write, 0, 99)]);
        let r = apply_plock(r, rec(LockType::Read, 50, u64::MAX));
        assert_eq!(
            r,
            vec![
                rec(LockType::Write, 0, 49),
                rec(LockType::Read, 50, u64::MAX)
            ]
        );
        assert_eq!(decode_plocks(&encode_plocks(&r)), r);
    }

    #[test]
    fn read_locks_share_write_locks_exclude() {
        assert!(!conflicts(
            &rec(LockType::Read, 0, 10),
            &rec(LockType::Read, 5, 20)
        ));
        assert!(conflicts(
            &rec(LockType::Read, 0, 10),
            &rec(LockType::Write, 5, 20)
        ));
        assert!(!conflicts(
            &rec(LockType::Write, 0, 10),
            &rec(LockType::Write, 11, 20)
        ));
    }
}
