//! rename(2) with its RENAME_NOREPLACE and RENAME_EXCHANGE variants, in one transaction over
//! both directories, the moved inode and the one it replaces.

use super::node::{After, dir_from, entry_from, must_from, put_attr, put_entry, remove_inode};
use super::txn::{Tx, txn, watching};
use super::{RedisMeta, keys};
use crate::meta::rules::check_name;
use crate::meta::*;

struct Side {
    parent: Ino,
    attr: Attr,
    /// Change of the directory's link count (subdirectories moved in or out).
    delta: i64,
}

impl RedisMeta {
    pub(crate) async fn do_rename(
        &self,
        sp: Ino,
        sname: &str,
        dp: Ino,
        dname: &str,
        mode: RenameMode,
    ) -> Result<Vec<FreedSlice>> {
        self.check_writable()?;
        check_name(dname)?;
        let sk = keys::entries(sp);
        let (after, replies) = txn!(self, &sk, |tx| {
            self.rename_in(&mut tx, sp, sname, dp, dname, mode).await
        })?;
        self.after(after, &replies).await
    }

    async fn rename_in(
        &self,
        tx: &mut Tx,
        sp: Ino,
        sname: &str,
        dp: Ino,
        dname: &str,
        mode: RenameMode,
    ) -> Result<After> {
        type Raw = Option<Vec<u8>>;
        // Round trip 1: both directories and both names.
        let (sk, spk, dk, dpk) = (
            keys::entries(sp),
            keys::inode(sp),
            keys::entries(dp),
            keys::inode(dp),
        );
        let mut q = watching(&[&sk, &spk, &dk, &dpk]);
        q.cmd("GET").arg(&spk).cmd("GET").arg(&dpk);
        q.cmd("HGET")
            .arg(&sk)
            .arg(sname)
            .cmd("HGET")
            .arg(&dk)
            .arg(dname);
        let (spa, dpa, se, de): (Raw, Raw, Raw, Raw) = tx.read_pipe(&q).await?;
        let spa = dir_from(sp, spa)?;
        let (sino, skind) = entry_from(sname, se)?.ok_or(MetaError::NotFound)?;
        let dpa = dir_from(dp, dpa)?;
        let dst = entry_from(dname, de)?;
        if dst.map(|d| d.0) == Some(sino) {
            // Same inode under both names: POSIX says do nothing.
            return Ok(After::Nothing);
        }
        // Round trip 2: the inode that moves and the one it replaces (with what its
        // removal needs: a directory's entry count, a file's first chunk). Without a
        // replaced inode these name inode 0, which never exists: harmless.
        let dino = dst.map_or(0, |d| d.0);
        let (ik, tk, tdk, tck) = (
            keys::inode(sino),
            keys::inode(dino),
            keys::entries(dino),
            keys::chunk(dino, 0),
        );
        let mut q = watching(&[&ik, &tk, &tdk, &tck]);
        q.cmd("GET")
            .arg(&ik)
            .cmd("GET")
            .arg(&tk)
            .cmd("HLEN")
            .arg(&tdk);
        q.cmd("LRANGE").arg(&tck).arg(0).arg(-1);
        let (sa, da, dchildren, dfirst): (Raw, Raw, u64, Vec<Vec<u8>>) = tx.read_pipe(&q).await?;
        let mut sa = must_from(sino, sa)?;
        let now = now_nanos();
        let mut src = Side {
            parent: sp,
            attr: spa,
            delta: 0,
        };
        let mut dstd = Side {
            parent: dp,
            attr: dpa,
            delta: 0,
        };
        let mut after = After::Nothing;
        match (mode, dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(MetaError::Exists),
            (RenameMode::Exchange, None) => return Err(MetaError::NotFound),
            (RenameMode::Exchange, Some((dino, dkind))) => {
                let mut da = must_from(dino, da)?;
                put_entry(tx, sp, sname, dino, dkind);
                put_entry(tx, dp, dname, sino, skind);
                if sp != dp {
                    if skind == FileKind::Dir && dkind != FileKind::Dir {
                        src.delta -= 1;
                        dstd.delta += 1;
                    } else if dkind == FileKind::Dir && skind != FileKind::Dir {
                        src.delta += 1;
                        dstd.delta -= 1;
                    }
                    if da.parent == dp {
                        da.parent = sp;
                    }
                }
                da.ctime = now;
                put_attr(tx, dino, &da);
            }
            (_, Some((dino, dkind))) => {
                let mut da = must_from(dino, da)?;
                if dkind == FileKind::Dir {
                    if skind != FileKind::Dir {
                        return Err(MetaError::IsDir);
                    }
                    if dchildren > 0 {
                        return Err(MetaError::NotEmpty);
                    }
                    dstd.delta -= 1;
                    remove_inode(tx, dino, &da, now, None);
                } else {
                    if skind == FileKind::Dir {
                        return Err(MetaError::NotDir);
                    }
                    after = self.drop_link(tx, dino, &mut da, dfirst, now).await?;
                }
            }
            (_, None) => {}
        }
        if mode != RenameMode::Exchange {
            tx.pipe.cmd("HDEL").arg(keys::entries(sp)).arg(sname);
            put_entry(tx, dp, dname, sino, skind);
            if skind == FileKind::Dir {
                src.delta -= 1;
                dstd.delta += 1;
            }
        }
        if sp != dp && sa.parent == sp {
            sa.parent = dp;
        }
        sa.ctime = now;
        put_attr(tx, sino, &sa);
        finish_parents(tx, src, dstd, now);
        Ok(after)
    }
}

/// Writes the two parents once each (they may be one directory).
fn finish_parents(tx: &mut Tx, mut src: Side, mut dst: Side, now: Nanos) {
    let add = |n: u32, d: i64| (n as i64 + d).max(0) as u32;
    for s in [&mut src, &mut dst] {
        s.attr.mtime = now;
        s.attr.ctime = now;
    }
    if src.parent == dst.parent {
        dst.attr.nlink = add(dst.attr.nlink, src.delta + dst.delta);
        put_attr(tx, dst.parent, &dst.attr);
    } else {
        src.attr.nlink = add(src.attr.nlink, src.delta);
        dst.attr.nlink = add(dst.attr.nlink, dst.delta);
        put_attr(tx, src.parent, &src.attr);
        put_attr(tx, dst.parent, &dst.attr);
    }
}
