//! Names and inodes: lookup, create, remove, rename, link, readdir, setattr.

use super::node::{
    add_usage, attr_from, del_entry, dir_from, entry_from, must_from, put_attr, put_entry,
    remove_inode, watch_attr, watch_dir_entry, watch_file,
};
use super::txn::{txn, watching};
use super::{RedisMeta, attr, keys};
use crate::meta::rules::{align4k, check_name};
use crate::meta::*;
use std::sync::LazyLock;

/// One round trip for a lookup: the entry, and the attributes of the inode it names
/// (the reference client does the same with its own script).
const LOOKUP: &str = r#"
local e = redis.call('HGET', KEYS[1], ARGV[1])
if not e then return false end
if string.len(e) ~= 9 then return {e, false} end
local ino = 0
for i = 2, 9 do ino = ino * 256 + string.byte(e, i) end
return {e, redis.call('GET', 'i' .. string.format('%.0f', ino))}
"#;
static LOOKUP_SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(LOOKUP));

/// What `mknod` makes.
pub struct NewNode<'a> {
    pub kind: FileKind,
    pub mode: u16,
    pub rdev: u32,
    pub target: Option<&'a str>,
    pub caller: Caller,
}

impl RedisMeta {
    pub(crate) async fn do_lookup(&self, parent: Ino, name: &str) -> Result<(Ino, Attr)> {
        if name == "." || name == ".." {
            let p = self.get_attr(parent).await?;
            if p.kind != FileKind::Dir {
                return Err(MetaError::NotDir);
            }
            if name == "." {
                return Ok((parent, p));
            }
            let up = if parent == ROOT_INO {
                ROOT_INO
            } else {
                p.parent
            };
            return Ok((up, self.get_attr(up).await?));
        }
        let mut inv = LOOKUP_SCRIPT.key(keys::entries(parent));
        inv.arg(name);
        let found: Option<(Vec<u8>, Option<Vec<u8>>)> = self.conn.run_script(&inv).await?;
        let Some((e, a)) = found else {
            return Err(MetaError::NotFound);
        };
        let (ino, _) = keys::parse_entry(name, &e)?;
        // An entry whose inode is gone (a client died mid-way) reads as absent.
        let a = a.ok_or(MetaError::NotFound)?;
        Ok((ino, attr::decode(ino, &a)?))
    }

    pub(crate) async fn do_setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.check_writable()?;
        let key = keys::inode(ino);
        let (a, _) = txn!(self, &key, |tx| {
            let mut a = watch_attr(&mut tx, ino).await?.ok_or(MetaError::NotFound)?;
            set.apply(&mut a, now_nanos());
            put_attr(&mut tx, ino, &a);
            Ok(a)
        })?;
        Ok(a)
    }

    pub(crate) async fn do_mknod(
        &self,
        parent: Ino,
        name: &str,
        n: NewNode<'_>,
    ) -> Result<(Ino, Attr)> {
        self.check_writable()?;
        check_name(name)?;
        self.check_quota(align4k(0), 1).await?;
        let ino = self.next_inode().await?;
        let dk = keys::entries(parent);
        let (made, _) = txn!(self, &dk, |tx| {
            let (mut p, existing) = watch_dir_entry(&mut tx, parent, name).await?;
            if existing.is_some() {
                return Err(MetaError::Exists);
            }
            let mut a = Attr::new(n.kind, n.mode & 0o7777, n.caller.uid, n.caller.gid);
            if p.mode & (libc::S_ISGID as u16) != 0 {
                a.gid = p.gid;
                if n.kind == FileKind::Dir {
                    a.mode |= libc::S_ISGID as u16;
                }
            }
            a.parent = parent;
            a.rdev = n.rdev;
            match n.kind {
                FileKind::Dir => {
                    a.nlink = 2;
                    a.length = 4096;
                    p.nlink += 1;
                }
                FileKind::Symlink => a.length = n.target.map_or(0, |t| t.len() as u64),
                _ => {}
            }
            p.mtime = a.ctime;
            p.ctime = a.ctime;
            put_entry(&mut tx, parent, name, ino, n.kind);
            put_attr(&mut tx, parent, &p);
            put_attr(&mut tx, ino, &a);
            if let Some(t) = n.target {
                tx.pipe.cmd("SET").arg(keys::symlink(ino)).arg(t);
            }
            add_usage(&mut tx, align4k(0), 1);
            Ok((ino, a))
        })?;
        Ok(made)
    }

    pub(crate) async fn do_unlink(&self, parent: Ino, name: &str) -> Result<Vec<FreedSlice>> {
        self.check_writable()?;
        let dk = keys::entries(parent);
        let (after, replies) = txn!(self, &dk, |tx| {
            let (mut p, e) = watch_dir_entry(&mut tx, parent, name).await?;
            let (ino, kind) = e.ok_or(MetaError::NotFound)?;
            if kind == FileKind::Dir {
                return Err(MetaError::IsDir);
            }
            let (a, first) = watch_file(&mut tx, ino).await?;
            let now = now_nanos();
            del_entry(&mut tx, parent, name);
            p.mtime = now;
            p.ctime = now;
            put_attr(&mut tx, parent, &p);
            match a {
                Some(mut a) => self.drop_link(&mut tx, ino, &mut a, first, now).await,
                // A dangling entry: removing the name is all there is to do.
                None => Ok(super::node::After::Nothing),
            }
        })?;
        self.after(after, &replies).await
    }

    pub(crate) async fn do_rmdir(&self, parent: Ino, name: &str) -> Result<()> {
        self.check_writable()?;
        if name == "." {
            return Err(MetaError::Invalid("cannot remove '.'".into()));
        }
        if name == ".." {
            return Err(MetaError::NotEmpty);
        }
        let dk = keys::entries(parent);
        txn!(self, &dk, |tx| {
            let (mut p, e) = watch_dir_entry(&mut tx, parent, name).await?;
            let (ino, kind) = e.ok_or(MetaError::NotFound)?;
            if kind != FileKind::Dir {
                return Err(MetaError::NotDir);
            }
            let (ik, ck) = (keys::inode(ino), keys::entries(ino));
            let mut q = watching(&[&ik, &ck]);
            q.cmd("HLEN").arg(&ck).cmd("GET").arg(&ik);
            let (children, a): (u64, Option<Vec<u8>>) = tx.read_pipe(&q).await?;
            if children > 0 {
                return Err(MetaError::NotEmpty);
            }
            let now = now_nanos();
            del_entry(&mut tx, parent, name);
            p.nlink = p.nlink.saturating_sub(1);
            p.mtime = now;
            p.ctime = now;
            put_attr(&mut tx, parent, &p);
            if let Some(a) = attr_from(ino, a)? {
                remove_inode(&mut tx, ino, &a, now, None);
            }
            Ok(())
        })?;
        Ok(())
    }

    pub(crate) async fn do_link(&self, ino: Ino, parent: Ino, name: &str) -> Result<Attr> {
        self.check_writable()?;
        check_name(name)?;
        let (pk, dk, ik) = (keys::inode(parent), keys::entries(parent), keys::inode(ino));
        let (a, _) = txn!(self, &dk, |tx| {
            let mut q = watching(&[&dk, &pk, &ik]);
            q.cmd("GET").arg(&pk).cmd("GET").arg(&ik);
            q.cmd("HGET").arg(&dk).arg(name);
            type Raw = Option<Vec<u8>>;
            let (pa, ia, e): (Raw, Raw, Raw) = tx.read_pipe(&q).await?;
            let mut p = dir_from(parent, pa)?;
            let mut a = must_from(ino, ia)?;
            if a.kind == FileKind::Dir {
                return Err(MetaError::Perm);
            }
            if entry_from(name, e)?.is_some() {
                return Err(MetaError::Exists);
            }
            let now = now_nanos();
            a.nlink += 1;
            a.ctime = now;
            p.mtime = now;
            p.ctime = now;
            put_entry(&mut tx, parent, name, ino, a.kind);
            put_attr(&mut tx, ino, &a);
            put_attr(&mut tx, parent, &p);
            Ok(a)
        })?;
        Ok(a)
    }

    pub(crate) async fn do_readlink(&self, ino: Ino) -> Result<String> {
        let t: Option<Vec<u8>> = self
            .conn
            .run(::redis::cmd("GET").arg(keys::symlink(ino)))
            .await?;
        let t = t.ok_or(MetaError::NotFound)?;
        Ok(String::from_utf8_lossy(&t).into_owned())
    }

    pub(crate) async fn do_readdir(&self, ino: Ino, plus: bool) -> Result<Vec<DirEntry>> {
        let key = keys::entries(ino);
        let scan = |cursor: u64| {
            let mut c = ::redis::cmd("HSCAN");
            c.arg(&key).arg(cursor).arg("COUNT").arg(10_000);
            c
        };
        type Page = (u64, Vec<(String, Vec<u8>)>);
        // The directory's attributes and the first page in one round trip.
        let mut p = ::redis::pipe();
        p.cmd("GET").arg(keys::inode(ino)).add_command(scan(0));
        let (d, mut page): (Option<Vec<u8>>, Page) = self.conn.run_pipe(&p).await?;
        dir_from(ino, d)?;
        let mut out = Vec::new();
        // HSCAN rather than HGETALL: a huge directory comes in pieces, not one reply. Pieces
        // may repeat a name (when Redis resizes the hash meanwhile): each is listed once.
        let mut seen = std::collections::HashSet::new();
        let paged = page.0 != 0;
        loop {
            for (name, e) in page.1 {
                if paged && !seen.insert(name.clone()) {
                    continue;
                }
                let (child, kind) = keys::parse_entry(&name, &e)?;
                out.push(DirEntry {
                    name,
                    ino: child,
                    kind,
                    attr: None,
                });
            }
            if page.0 == 0 {
                break;
            }
            page = self.conn.run(&scan(page.0)).await?;
        }
        if plus {
            out = self.fill_attrs(out).await?;
        }
        Ok(out)
    }

    /// Attributes for `readdirplus`, in batches; entries whose inode vanished meanwhile are
    /// left out (as a join would).
    async fn fill_attrs(&self, entries: Vec<DirEntry>) -> Result<Vec<DirEntry>> {
        let mut out = Vec::with_capacity(entries.len());
        for batch in entries.chunks(4096) {
            let keys: Vec<String> = batch.iter().map(|e| keys::inode(e.ino)).collect();
            let attrs: Vec<Option<Vec<u8>>> =
                self.conn.run(::redis::cmd("MGET").arg(&keys)).await?;
            for (e, a) in batch.iter().zip(attrs) {
                if let Some(a) = a {
                    let a = attr::decode(e.ino, &a)?;
                    out.push(DirEntry {
                        kind: a.kind,
                        attr: Some(a),
                        ..e.clone()
                    });
                }
            }
        }
        Ok(out)
    }
}
