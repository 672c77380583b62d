//! Names and inodes: lookup, create, remove, rename, link, readdir, setattr.

use super::*;

use crate::meta::rules::check_name;

pub(crate) async fn get_edge(
    tx: &mut Tx,
    parent: Ino,
    name: &str,
) -> Result<Option<(Ino, FileKind)>> {
    let rows = tx
        .query(
            "SELECT inode,type FROM jfs_edge WHERE parent=? AND name=?",
            &[parent.into(), name.into()],
        )
        .await?;
    match rows.first() {
        Some(r) => {
            let kind = FileKind::from_code(r[1].int()?)
                .ok_or_else(|| MetaError::Corrupt(format!("entry {name:?} has unknown type")))?;
            Ok(Some((r[0].uint()?, kind)))
        }
        None => Ok(None),
    }
}

async fn dir_node(tx: &mut Tx, ino: Ino) -> Result<Attr> {
    let a = must_node(tx, ino).await?;
    if a.kind != FileKind::Dir {
        return Err(MetaError::NotDir);
    }
    Ok(a)
}

impl SqlMeta {
    pub(crate) async fn do_lookup(&self, parent: Ino, name: &str) -> Result<(Ino, Attr)> {
        let cols: String = NODE_COLS
            .split(',')
            .map(|c| format!("n.{c}"))
            .collect::<Vec<_>>()
            .join(",");
        txn!(self, false, |tx| {
            if name == "." {
                return Ok((parent, dir_node(&mut tx, parent).await?));
            }
            if name == ".." {
                let p = dir_node(&mut tx, parent).await?;
                let up = if parent == ROOT_INO {
                    ROOT_INO
                } else {
                    p.parent
                };
                return Ok((up, must_node(&mut tx, up).await?));
            }
            let rows = tx
                .query(
                    &format!(
                        "SELECT {cols} FROM jfs_edge e JOIN jfs_node n ON e.inode=n.inode WHERE e.parent=? AND e.name=?"
                    ),
                    &[parent.into(), name.into()],
                )
                .await?;
            match rows.first() {
                Some(r) => attr_from_row(r),
                None => Err(MetaError::NotFound),
            }
        })
    }

    pub(crate) async fn do_setattr(
        &self,
        ino: Ino,
        set: &SetAttr,
        _caller: Caller,
    ) -> Result<Attr> {
        self.check_writable()?;
        txn!(self, true, |tx| {
            let mut a = must_node(&mut tx, ino).await?;
            set.apply(&mut a, now_nanos());
            update_node(&mut tx, ino, &a).await?;
            Ok(a)
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn do_mknod(
        &self,
        parent: Ino,
        name: &str,
        kind: FileKind,
        mode: u16,
        rdev: u32,
        target: Option<&str>,
        caller: Caller,
    ) -> Result<(Ino, Attr)> {
        self.check_writable()?;
        check_name(name)?;
        self.check_quota(align4k(0), 1).await?;
        let ino = self.next_inode().await?;
        let result = txn!(self, true, |tx| {
            let mut p = dir_node(&mut tx, parent).await?;
            if p.nlink == 0 {
                return Err(MetaError::NotFound);
            }
            if get_edge(&mut tx, parent, name).await?.is_some() {
                return Err(MetaError::Exists);
            }
            let mut a = Attr::new(kind, mode & 0o7777, caller.uid, caller.gid);
            if p.mode & (libc::S_ISGID as u16) != 0 {
                a.gid = p.gid;
                if kind == FileKind::Dir {
                    a.mode |= libc::S_ISGID as u16;
                }
            }
            a.parent = parent;
            a.rdev = rdev;
            match kind {
                FileKind::Dir => {
                    a.nlink = 2;
                    a.length = 4096;
                    p.nlink += 1;
                }
                FileKind::Symlink => a.length = target.map_or(0, |t| t.len() as u64),
                _ => {}
            }
            let now = a.ctime;
            p.mtime = now;
            p.ctime = now;
            insert_node(&mut tx, ino, &a).await?;
            tx.exec(
                "INSERT INTO jfs_edge (parent,name,inode,type) VALUES (?,?,?,?)",
                &[parent.into(), name.into(), ino.into(), (kind as i64).into()],
            )
            .await?;
            if let Some(t) = target {
                tx.exec(
                    "INSERT INTO jfs_symlink (inode,target) VALUES (?,?)",
                    &[ino.into(), t.into()],
                )
                .await?;
            }
            update_node(&mut tx, parent, &p).await?;
            Ok((ino, a))
        })?;
        self.add_usage(align4k(0), 1);
        Ok(result)
    }

    /// Drops one link of `ino` inside `tx`: deletes the inode and its data when none is
    /// left and no open handle of this session needs it, else marks it sustained.
    async fn drop_link(
        &self,
        tx: &mut Tx,
        ino: Ino,
        a: &mut Attr,
        now: Nanos,
    ) -> Result<Vec<FreedSlice>> {
        a.nlink = a.nlink.saturating_sub(1);
        a.ctime = now;
        if a.nlink > 0 {
            update_node(tx, ino, a).await?;
            return Ok(Vec::new());
        }
        let open = self.open_files.is_open(ino)?;
        if open && a.kind == FileKind::File {
            update_node(tx, ino, a).await?;
            tx.exec(
                "INSERT INTO jfs_sustained (sid,inode) VALUES (?,?)",
                &[self.sid().into(), ino.into()],
            )
            .await?;
            return Ok(Vec::new());
        }
        self.delete_inode(tx, ino, a).await
    }

    /// Removes an unreferenced inode with its symlink, xattrs and chunks.
    pub(crate) async fn delete_inode(
        &self,
        tx: &mut Tx,
        ino: Ino,
        a: &Attr,
    ) -> Result<Vec<FreedSlice>> {
        tx.exec("DELETE FROM jfs_node WHERE inode=?", &[ino.into()])
            .await?;
        tx.exec("DELETE FROM jfs_xattr WHERE inode=?", &[ino.into()])
            .await?;
        if a.kind == FileKind::Symlink {
            tx.exec("DELETE FROM jfs_symlink WHERE inode=?", &[ino.into()])
                .await?;
        }
        let freed = if a.kind == FileKind::File {
            super::data::delete_chunks(tx, ino).await?
        } else {
            Vec::new()
        };
        let space = if a.kind == FileKind::File {
            align4k(a.length)
        } else {
            align4k(0)
        };
        self.add_usage(-space, -1);
        Ok(freed)
    }

    pub(crate) async fn do_unlink(
        &self,
        parent: Ino,
        name: &str,
        _caller: Caller,
    ) -> Result<Vec<FreedSlice>> {
        self.check_writable()?;
        txn!(self, true, |tx| {
            let mut p = dir_node(&mut tx, parent).await?;
            let (ino, kind) = get_edge(&mut tx, parent, name)
                .await?
                .ok_or(MetaError::NotFound)?;
            if kind == FileKind::Dir {
                return Err(MetaError::IsDir);
            }
            let mut a = must_node(&mut tx, ino).await?;
            let now = now_nanos();
            tx.exec(
                "DELETE FROM jfs_edge WHERE parent=? AND name=?",
                &[parent.into(), name.into()],
            )
            .await?;
            p.mtime = now;
            p.ctime = now;
            update_node(&mut tx, parent, &p).await?;
            self.drop_link(&mut tx, ino, &mut a, now).await
        })
    }

    pub(crate) async fn do_rmdir(&self, parent: Ino, name: &str, _caller: Caller) -> Result<()> {
        self.check_writable()?;
        if name == "." {
            return Err(MetaError::Invalid("cannot remove '.'".into()));
        }
        if name == ".." {
            return Err(MetaError::NotEmpty);
        }
        txn!(self, true, |tx| {
            let mut p = dir_node(&mut tx, parent).await?;
            let (ino, kind) = get_edge(&mut tx, parent, name)
                .await?
                .ok_or(MetaError::NotFound)?;
            if kind != FileKind::Dir {
                return Err(MetaError::NotDir);
            }
            let child = tx
                .query(
                    "SELECT name FROM jfs_edge WHERE parent=? LIMIT 1",
                    &[ino.into()],
                )
                .await?;
            if !child.is_empty() {
                return Err(MetaError::NotEmpty);
            }
            let a = must_node(&mut tx, ino).await?;
            let now = now_nanos();
            tx.exec(
                "DELETE FROM jfs_edge WHERE parent=? AND name=?",
                &[parent.into(), name.into()],
            )
            .await?;
            p.nlink = p.nlink.saturating_sub(1);
            p.mtime = now;
            p.ctime = now;
            update_node(&mut tx, parent, &p).await?;
            self.delete_inode(&mut tx, ino, &a).await?;
            Ok(())
        })
    }

    pub(crate) async fn do_rename(
        &self,
        sp: Ino,
        sname: &str,
        dp: Ino,
        dname: &str,
        mode: RenameMode,
        _caller: Caller,
    ) -> Result<Vec<FreedSlice>> {
        self.check_writable()?;
        check_name(dname)?;
        txn!(self, true, |tx| {
            let mut spa = dir_node(&mut tx, sp).await?;
            let (sino, skind) = get_edge(&mut tx, sp, sname)
                .await?
                .ok_or(MetaError::NotFound)?;
            let mut dpa = if dp == sp {
                spa.clone()
            } else {
                dir_node(&mut tx, dp).await?
            };
            // Link-count changes of the two parents, applied once at the end (they may be
            // the same directory).
            let (mut sdelta, mut ddelta) = (0i64, 0i64);
            if dpa.nlink == 0 {
                return Err(MetaError::NotFound);
            }
            let dst = get_edge(&mut tx, dp, dname).await?;
            if dst.map(|d| d.0) == Some(sino) {
                // Same inode under both names: POSIX says do nothing.
                return Ok(Vec::new());
            }
            let now = now_nanos();
            let mut sa = must_node(&mut tx, sino).await?;
            let mut freed = Vec::new();
            match (mode, dst) {
                (RenameMode::NoReplace, Some(_)) => return Err(MetaError::Exists),
                (RenameMode::Exchange, None) => return Err(MetaError::NotFound),
                (RenameMode::Exchange, Some((dino, dkind))) => {
                    let mut da = must_node(&mut tx, dino).await?;
                    tx.exec(
                        "UPDATE jfs_edge SET inode=?, type=? WHERE parent=? AND name=?",
                        &[dino.into(), (dkind as i64).into(), sp.into(), sname.into()],
                    )
                    .await?;
                    tx.exec(
                        "UPDATE jfs_edge SET inode=?, type=? WHERE parent=? AND name=?",
                        &[sino.into(), (skind as i64).into(), dp.into(), dname.into()],
                    )
                    .await?;
                    if sp != dp {
                        if skind == FileKind::Dir && dkind != FileKind::Dir {
                            sdelta -= 1;
                            ddelta += 1;
                        } else if dkind == FileKind::Dir && skind != FileKind::Dir {
                            sdelta += 1;
                            ddelta -= 1;
                        }
                        if da.parent == dp {
                            da.parent = sp;
                        }
                    }
                    da.ctime = now;
                    update_node(&mut tx, dino, &da).await?;
                }
                (_, Some((dino, dkind))) => {
                    let mut da = must_node(&mut tx, dino).await?;
                    if dkind == FileKind::Dir {
                        if skind != FileKind::Dir {
                            return Err(MetaError::IsDir);
                        }
                        let child = tx
                            .query(
                                "SELECT name FROM jfs_edge WHERE parent=? LIMIT 1",
                                &[dino.into()],
                            )
                            .await?;
                        if !child.is_empty() {
                            return Err(MetaError::NotEmpty);
                        }
                        ddelta -= 1;
                        self.delete_inode(&mut tx, dino, &da).await?;
                    } else {
                        if skind == FileKind::Dir {
                            return Err(MetaError::NotDir);
                        }
                        freed = self.drop_link(&mut tx, dino, &mut da, now).await?;
                    }
                    tx.exec(
                        "DELETE FROM jfs_edge WHERE parent=? AND name=?",
                        &[dp.into(), dname.into()],
                    )
                    .await?;
                }
                (_, None) => {}
            }
            if mode != RenameMode::Exchange {
                tx.exec(
                    "DELETE FROM jfs_edge WHERE parent=? AND name=?",
                    &[sp.into(), sname.into()],
                )
                .await?;
                tx.exec(
                    "INSERT INTO jfs_edge (parent,name,inode,type) VALUES (?,?,?,?)",
                    &[dp.into(), dname.into(), sino.into(), (skind as i64).into()],
                )
                .await?;
                if skind == FileKind::Dir {
                    sdelta -= 1;
                    ddelta += 1;
                }
            }
            if sp != dp && sa.parent == sp {
                sa.parent = dp;
            }
            sa.ctime = now;
            update_node(&mut tx, sino, &sa).await?;
            spa.mtime = now;
            spa.ctime = now;
            dpa.mtime = now;
            dpa.ctime = now;
            let add = |n: u32, d: i64| (n as i64 + d).max(0) as u32;
            if sp == dp {
                dpa.nlink = add(dpa.nlink, sdelta + ddelta);
                update_node(&mut tx, dp, &dpa).await?;
            } else {
                spa.nlink = add(spa.nlink, sdelta);
                dpa.nlink = add(dpa.nlink, ddelta);
                update_node(&mut tx, sp, &spa).await?;
                update_node(&mut tx, dp, &dpa).await?;
            }
            Ok(freed)
        })
    }

    pub(crate) async fn do_link(&self, ino: Ino, parent: Ino, name: &str) -> Result<Attr> {
        self.check_writable()?;
        check_name(name)?;
        txn!(self, true, |tx| {
            let mut p = dir_node(&mut tx, parent).await?;
            if p.nlink == 0 {
                return Err(MetaError::NotFound);
            }
            let mut a = must_node(&mut tx, ino).await?;
            if a.kind == FileKind::Dir {
                return Err(MetaError::Perm);
            }
            if get_edge(&mut tx, parent, name).await?.is_some() {
                return Err(MetaError::Exists);
            }
            let now = now_nanos();
            a.nlink += 1;
            a.ctime = now;
            p.mtime = now;
            p.ctime = now;
            tx.exec(
                "INSERT INTO jfs_edge (parent,name,inode,type) VALUES (?,?,?,?)",
                &[
                    parent.into(),
                    name.into(),
                    ino.into(),
                    (a.kind as i64).into(),
                ],
            )
            .await?;
            update_node(&mut tx, ino, &a).await?;
            update_node(&mut tx, parent, &p).await?;
            Ok(a)
        })
    }

    pub(crate) async fn do_readdir(&self, ino: Ino, plus: bool) -> Result<Vec<DirEntry>> {
        let cols: String = NODE_COLS
            .split(',')
            .map(|c| format!("n.{c}"))
            .collect::<Vec<_>>()
            .join(",");
        txn!(self, false, |tx| {
            dir_node(&mut tx, ino).await?;
            let mut out = Vec::new();
            if plus {
                let rows = tx
                    .query(
                        &format!(
                            "SELECT e.name,{cols} FROM jfs_edge e JOIN jfs_node n ON e.inode=n.inode WHERE e.parent=?"
                        ),
                        &[ino.into()],
                    )
                    .await?;
                for mut r in rows {
                    let name = r.remove(0).text()?;
                    let (child, attr) = attr_from_row(&r)?;
                    out.push(DirEntry {
                        name,
                        ino: child,
                        kind: attr.kind,
                        attr: Some(attr),
                    });
                }
            } else {
                let rows = tx
                    .query(
                        "SELECT name,inode,type FROM jfs_edge WHERE parent=?",
                        &[ino.into()],
                    )
                    .await?;
                for mut r in rows {
                    let kind = FileKind::from_code(r[2].int()?).ok_or_else(|| {
                        MetaError::Corrupt("directory entry of unknown type".into())
                    })?;
                    let child = r[1].uint()?;
                    out.push(DirEntry {
                        name: r.remove(0).text()?,
                        ino: child,
                        kind,
                        attr: None,
                    });
                }
            }
            Ok(out)
        })
    }
}
