//! The SQL metadata engine: JuiceFS 0.14's `jfs_*` tables on SQLite or PostgreSQL.
//! Every change is one transaction, retried on conflicts, so several clients (ours and the
//! reference) can share a database. This file holds the engine state, counters, format
//! and sessions; the namespace, data and lock operations live in the sibling modules.

mod data;
pub mod db;
mod locks;
mod namespace;
pub mod postgres;
pub mod schema;
pub mod sqlite;
mod xattr;

use super::*;
pub(crate) use crate::meta::rules::{align4k, same_volume, unix_secs};
use db::{Row, SqlDb, Val};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Runs `$body` in a transaction, retrying the whole body on conflicts.
macro_rules! txn {
    ($self:ident, $write:expr, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        let start = std::time::Instant::now();
        let r = loop {
            let mut $tx = $self.db.begin($write).await?;
            let r: $crate::meta::Result<_> = async { $body }.await;
            let r = match r {
                Ok(v) => $tx.commit().await.map(|_| v),
                Err(e) => {
                    let _ = $tx.rollback().await;
                    Err(e)
                }
            };
            match r {
                Err($crate::meta::MetaError::Conflict(why)) if attempt < 100 => {
                    attempt += 1;
                    tracing::debug!(attempt, "transaction conflict: {why}");
                    let ms = (attempt as u64).min(20);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                other => break other,
            }
        };
        $crate::metrics::METRICS.transaction(start.elapsed(), attempt);
        r
    }};
}
pub(crate) use txn;

pub const NODE_COLS: &str =
    "inode,type,flags,mode,uid,gid,atime,mtime,ctime,nlink,length,rdev,parent";
const INODE_BATCH: u64 = 100;
const SLICE_BATCH: u64 = 1000;

pub struct SqlMeta {
    pub(crate) db: Box<dyn SqlDb>,
    pub(crate) read_only: bool,
    pub(crate) sid: AtomicU64,
    pub(crate) format: Mutex<Option<Format>>,
    inode_batch: tokio::sync::Mutex<(u64, u64)>,
    slice_batch: tokio::sync::Mutex<(u64, u64)>,
    pub(crate) open_files: crate::meta::open_files::OpenFiles,
    pub(crate) used_space_delta: AtomicI64,
    pub(crate) used_inodes_delta: AtomicI64,
}

pub(crate) fn micros(n: Nanos) -> i64 {
    n.div_euclid(1000)
}

pub(crate) fn from_micros(m: i64) -> Nanos {
    m.saturating_mul(1000)
}

pub(crate) fn attr_from_row(row: &[Val]) -> Result<(Ino, Attr)> {
    let kind = FileKind::from_code(row[1].int()?).ok_or_else(|| {
        MetaError::Corrupt(format!(
            "inode {} has unknown type {:?}",
            row[0].int().unwrap_or(0),
            row[1]
        ))
    })?;
    Ok((
        row[0].uint()?,
        Attr {
            kind,
            flags: row[2].int()? as u8,
            mode: (row[3].int()? & 0o7777) as u16,
            uid: row[4].int()? as u32,
            gid: row[5].int()? as u32,
            atime: from_micros(row[6].int()?),
            mtime: from_micros(row[7].int()?),
            ctime: from_micros(row[8].int()?),
            nlink: row[9].int()? as u32,
            length: row[10].uint()?,
            rdev: row[11].int()? as u32,
            parent: row[12].uint()?,
        },
    ))
}

pub(crate) fn attr_args(ino: Ino, a: &Attr) -> Vec<Val> {
    vec![
        ino.into(),
        (a.kind as i64).into(),
        a.flags.into(),
        a.mode.into(),
        a.uid.into(),
        a.gid.into(),
        micros(a.atime).into(),
        micros(a.mtime).into(),
        micros(a.ctime).into(),
        a.nlink.into(),
        a.length.into(),
        a.rdev.into(),
        a.parent.into(),
    ]
}

type Tx = Box<dyn db::Txn>;

pub(crate) async fn get_node(tx: &mut Tx, ino: Ino) -> Result<Option<Attr>> {
    let rows = tx
        .query(
            &format!("SELECT {NODE_COLS} FROM jfs_node WHERE inode=?"),
            &[ino.into()],
        )
        .await?;
    match rows.first() {
        Some(r) => Ok(Some(attr_from_row(r)?.1)),
        None => Ok(None),
    }
}

pub(crate) async fn must_node(tx: &mut Tx, ino: Ino) -> Result<Attr> {
    get_node(tx, ino).await?.ok_or(MetaError::NotFound)
}

pub(crate) async fn insert_node(tx: &mut Tx, ino: Ino, a: &Attr) -> Result<()> {
    tx.exec(
        &format!("INSERT INTO jfs_node ({NODE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"),
        &attr_args(ino, a),
    )
    .await?;
    Ok(())
}

pub(crate) async fn update_node(tx: &mut Tx, ino: Ino, a: &Attr) -> Result<()> {
    let mut args = attr_args(ino, a);
    let ino_arg = args.remove(0);
    args.push(ino_arg);
    tx.exec(
        "UPDATE jfs_node SET type=?,flags=?,mode=?,uid=?,gid=?,atime=?,mtime=?,ctime=?,nlink=?,length=?,rdev=?,parent=? WHERE inode=?",
        &args,
    )
    .await?;
    Ok(())
}

pub(crate) fn first_int(rows: &[Row]) -> Result<Option<i64>> {
    match rows.first().and_then(|r| r.first()) {
        Some(v) => Ok(Some(v.int()?)),
        None => Ok(None),
    }
}

impl SqlMeta {
    pub async fn new(db: Box<dyn SqlDb>, read_only: bool) -> Result<SqlMeta> {
        Ok(SqlMeta {
            db,
            read_only,
            sid: AtomicU64::new(0),
            format: Mutex::new(None),
            inode_batch: tokio::sync::Mutex::new((0, 0)),
            slice_batch: tokio::sync::Mutex::new((0, 0)),
            open_files: Default::default(),
            used_space_delta: AtomicI64::new(0),
            used_inodes_delta: AtomicI64::new(0),
        })
    }

    pub(crate) fn sid(&self) -> u64 {
        self.sid.load(Ordering::Relaxed)
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            Err(MetaError::ReadOnly)
        } else {
            Ok(())
        }
    }

    pub(crate) fn cached_format(&self) -> Option<Format> {
        self.format.lock().ok().and_then(|f| f.clone())
    }

    /// Adds `n` to a counter and returns the value it had before.
    async fn incr_counter(&self, name: &str, n: i64) -> Result<i64> {
        txn!(self, true, |tx| {
            let changed = tx
                .exec(
                    "UPDATE jfs_counter SET value=value+? WHERE name=?",
                    &[n.into(), name.into()],
                )
                .await?;
            if changed == 0 {
                tx.exec(
                    "INSERT INTO jfs_counter (name,value) VALUES (?,?)",
                    &[name.into(), n.into()],
                )
                .await?;
                return Ok(0);
            }
            let rows = tx
                .query("SELECT value FROM jfs_counter WHERE name=?", &[name.into()])
                .await?;
            Ok(first_int(&rows)?.unwrap_or(n) - n)
        })
    }

    pub(crate) async fn get_counter(&self, name: &str) -> Result<i64> {
        txn!(self, false, |tx| {
            let rows = tx
                .query("SELECT value FROM jfs_counter WHERE name=?", &[name.into()])
                .await?;
            Ok(first_int(&rows)?.unwrap_or(0))
        })
    }

    async fn next_from(
        &self,
        batch: &tokio::sync::Mutex<(u64, u64)>,
        counter: &str,
        size: u64,
    ) -> Result<u64> {
        let mut b = batch.lock().await;
        if b.0 >= b.1 {
            let start = self.incr_counter(counter, size as i64).await? as u64;
            *b = (start, start + size);
        }
        let v = b.0;
        b.0 += 1;
        Ok(v)
    }

    pub(crate) async fn next_inode(&self) -> Result<Ino> {
        loop {
            let ino = self
                .next_from(&self.inode_batch, "nextInode", INODE_BATCH)
                .await?;
            // Inode 1 is the root, made at format time.
            if ino > ROOT_INO {
                return Ok(ino);
            }
        }
    }

    pub(crate) fn add_usage(&self, space: i64, inodes: i64) {
        if space != 0 {
            self.used_space_delta.fetch_add(space, Ordering::Relaxed);
        }
        if inodes != 0 {
            self.used_inodes_delta.fetch_add(inodes, Ordering::Relaxed);
        }
    }

    /// Refuses a new inode or more space when the volume's quota is exhausted.
    pub(crate) async fn check_quota(&self, space: i64, inodes: i64) -> Result<()> {
        let Some(f) = self.cached_format() else {
            return Ok(());
        };
        let mut used = (0, 0);
        if space > 0 && f.capacity > 0 {
            used.0 = self.get_counter("usedSpace").await?
                + self.used_space_delta.load(Ordering::Relaxed);
        }
        if inodes > 0 && f.inodes > 0 {
            used.1 = self.get_counter("totalInodes").await?
                + self.used_inodes_delta.load(Ordering::Relaxed);
        }
        crate::meta::rules::check_quota(&f, used, (space, inodes))
    }

    async fn do_init(&self, format: &Format, force: bool) -> Result<()> {
        for st in schema::statements(self.db.dialect()) {
            txn!(self, true, |tx| {
                tx.exec(st, &[]).await?;
                Ok(())
            })?;
        }
        let json = format.to_json();
        txn!(self, true, |tx| {
            let rows = tx
                .query("SELECT value FROM jfs_setting WHERE name='format'", &[])
                .await?;
            if let Some(row) = rows.into_iter().next() {
                let old = Format::parse(&row.into_iter().next().unwrap_or(Val::Null).text()?)?;
                if !force && !same_volume(&old, format) {
                    return Err(MetaError::Invalid(format!(
                        "database already holds volume {:?} (uuid {}) with other settings; use --force to overwrite or --no-update to keep it",
                        old.name, old.uuid
                    )));
                }
                tx.exec(
                    "UPDATE jfs_setting SET value=? WHERE name='format'",
                    &[json.as_str().into()],
                )
                .await?;
                return Ok(());
            }
            tx.exec(
                "INSERT INTO jfs_setting (name,value) VALUES ('format',?)",
                &[json.as_str().into()],
            )
            .await?;
            for (name, v) in [
                ("nextInode", 2i64),
                ("nextChunk", 1),
                ("nextSession", 1),
                ("usedSpace", 0),
                ("totalInodes", 0),
                ("nextCleanupSlices", 0),
            ] {
                tx.exec(
                    "INSERT INTO jfs_counter (name,value) VALUES (?,?)",
                    &[name.into(), v.into()],
                )
                .await?;
            }
            let mut root = Attr::new(FileKind::Dir, 0o777, 0, 0);
            root.nlink = 2;
            root.length = 4096;
            root.parent = ROOT_INO;
            if get_node(&mut tx, ROOT_INO).await?.is_none() {
                insert_node(&mut tx, ROOT_INO, &root).await?;
            }
            Ok(())
        })?;
        *self.format.lock().map_err(poisoned)? = Some(format.clone());
        Ok(())
    }
}

pub(crate) use crate::meta::open_files::poisoned;

#[async_trait]
impl Meta for SqlMeta {
    fn name(&self) -> &'static str {
        match self.db.dialect() {
            db::Dialect::Sqlite => "sqlite3",
            db::Dialect::Postgres => "postgres",
        }
    }

    async fn load_format(&self) -> Result<Format> {
        let rows = txn!(self, false, |tx| {
            tx.query("SELECT value FROM jfs_setting WHERE name='format'", &[])
                .await
        });
        let rows = match rows {
            Ok(r) => r,
            Err(MetaError::Db(e))
                if e.contains("no such table") || e.contains("does not exist") =>
            {
                return Err(MetaError::NotFormatted("no jfs_setting table".into()));
            }
            Err(e) => return Err(e),
        };
        let Some(row) = rows.into_iter().next() else {
            return Err(MetaError::NotFormatted("no format setting".into()));
        };
        let f = Format::parse(&row.into_iter().next().unwrap_or(Val::Null).text()?)?;
        *self.format.lock().map_err(poisoned)? = Some(f.clone());
        Ok(f)
    }

    async fn init(&self, format: &Format, force: bool) -> Result<()> {
        self.check_writable()?;
        self.do_init(format, force).await
    }

    async fn new_session(&self, info: &SessionInfo) -> Result<u64> {
        self.check_writable()?;
        // JuiceFS releases disagree on whether a sid is the counter's old or new value;
        // taking old+1 and advancing by 2 is safe beside both.
        let sid = self.incr_counter("nextSession", 2).await? as u64 + 1;
        let info = serde_json::to_vec(info).map_err(|e| MetaError::Db(e.to_string()))?;
        txn!(self, true, |tx| {
            tx.exec(
                "INSERT INTO jfs_session (sid,heartbeat,info) VALUES (?,?,?)",
                &[sid.into(), unix_secs().into(), info.clone().into()],
            )
            .await?;
            Ok(())
        })?;
        self.sid.store(sid, Ordering::Relaxed);
        Ok(sid)
    }

    async fn refresh_session(&self, sid: u64) -> Result<()> {
        txn!(self, true, |tx| {
            tx.exec(
                "UPDATE jfs_session SET heartbeat=? WHERE sid=?",
                &[unix_secs().into(), sid.into()],
            )
            .await?;
            Ok(())
        })
    }

    async fn close_session(&self, sid: u64) -> Result<Vec<FreedSlice>> {
        self.flush_stats().await?;
        self.clean_session(sid).await
    }

    async fn list_sessions(&self) -> Result<Vec<Session>> {
        let rows = txn!(self, false, |tx| {
            tx.query(
                "SELECT sid,heartbeat,info FROM jfs_session ORDER BY sid",
                &[],
            )
            .await
        })?;
        rows.into_iter()
            .map(|mut r| {
                let info = r.pop().unwrap_or(Val::Null).blob()?;
                Ok(Session {
                    sid: r[0].uint()?,
                    heartbeat: r[1].int()?,
                    info: serde_json::from_slice(&info).ok(),
                })
            })
            .collect()
    }

    async fn clean_stale_sessions(&self, stale_before: i64) -> Result<Vec<FreedSlice>> {
        let rows = txn!(self, false, |tx| {
            tx.query(
                "SELECT sid FROM jfs_session WHERE heartbeat < ?",
                &[stale_before.into()],
            )
            .await
        })?;
        let mut freed = Vec::new();
        for r in rows {
            let sid = r[0].uint()?;
            if sid != self.sid() {
                tracing::info!(sid, "cleaning stale session");
                freed.extend(self.clean_session(sid).await?);
            }
        }
        Ok(freed)
    }

    async fn lookup(&self, parent: Ino, name: &str) -> Result<(Ino, Attr)> {
        self.do_lookup(parent, name).await
    }
    async fn getattr(&self, ino: Ino) -> Result<Attr> {
        txn!(self, false, |tx| { must_node(&mut tx, ino).await })
    }
    async fn setattr(&self, ino: Ino, set: &SetAttr, caller: Caller) -> Result<Attr> {
        self.do_setattr(ino, set, caller).await
    }
    async fn truncate(&self, ino: Ino, length: u64) -> Result<(Attr, Vec<FreedSlice>)> {
        self.do_truncate(ino, length).await
    }
    async fn fallocate(&self, ino: Ino, mode: i32, off: u64, len: u64) -> Result<Attr> {
        self.do_fallocate(ino, mode, off, len).await
    }
    async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        kind: FileKind,
        mode: u16,
        rdev: u32,
        symlink_target: Option<&str>,
        caller: Caller,
    ) -> Result<(Ino, Attr)> {
        self.do_mknod(parent, name, kind, mode, rdev, symlink_target, caller)
            .await
    }
    async fn unlink(&self, parent: Ino, name: &str, caller: Caller) -> Result<Vec<FreedSlice>> {
        self.do_unlink(parent, name, caller).await
    }
    async fn rmdir(&self, parent: Ino, name: &str, caller: Caller) -> Result<()> {
        self.do_rmdir(parent, name, caller).await
    }
    async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        mode: RenameMode,
        caller: Caller,
    ) -> Result<Vec<FreedSlice>> {
        self.do_rename(parent, name, new_parent, new_name, mode, caller)
            .await
    }
    async fn link(&self, ino: Ino, parent: Ino, name: &str) -> Result<Attr> {
        self.do_link(ino, parent, name).await
    }
    async fn readlink(&self, ino: Ino) -> Result<String> {
        txn!(self, false, |tx| {
            let rows = tx
                .query(
                    "SELECT target FROM jfs_symlink WHERE inode=?",
                    &[ino.into()],
                )
                .await?;
            match rows.into_iter().next() {
                Some(mut r) => r.remove(0).text(),
                None => Err(MetaError::NotFound),
            }
        })
    }
    async fn readdir(&self, ino: Ino, plus: bool) -> Result<Vec<DirEntry>> {
        self.do_readdir(ino, plus).await
    }
    async fn open(&self, ino: Ino) -> Result<Attr> {
        let attr = self.getattr(ino).await?;
        self.open_files.open(ino)?;
        Ok(attr)
    }
    async fn close(&self, ino: Ino) -> Result<Vec<FreedSlice>> {
        self.do_close(ino).await
    }
    async fn read_chunk(&self, ino: Ino, index: u32) -> Result<Vec<Slice>> {
        self.do_read_chunk(ino, index).await
    }
    async fn new_slice_id(&self) -> Result<u64> {
        self.check_writable()?;
        self.next_from(&self.slice_batch, "nextChunk", SLICE_BATCH)
            .await
    }
    async fn write_slice(&self, ino: Ino, index: u32, slice: Slice, mtime: Nanos) -> Result<Attr> {
        self.do_write_slice(ino, index, slice, mtime).await
    }
    async fn statfs(&self) -> Result<StatFs> {
        self.do_statfs().await
    }
    async fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        self.do_getxattr(ino, name).await
    }
    async fn listxattr(&self, ino: Ino) -> Result<Vec<String>> {
        self.do_listxattr(ino).await
    }
    async fn setxattr(&self, ino: Ino, name: &str, value: &[u8], flags: i32) -> Result<()> {
        self.do_setxattr(ino, name, value, flags).await
    }
    async fn removexattr(&self, ino: Ino, name: &str) -> Result<()> {
        self.do_removexattr(ino, name).await
    }
    async fn flock(&self, ino: Ino, owner: u64, ltype: LockType) -> Result<()> {
        self.do_flock(ino, owner, ltype).await
    }
    async fn getlk(&self, ino: Ino, owner: u64, want: PlockRecord) -> Result<Option<PlockRecord>> {
        self.do_getlk(ino, owner, want).await
    }
    async fn setlk(&self, ino: Ino, owner: u64, rec: PlockRecord) -> Result<()> {
        self.do_setlk(ino, owner, rec).await
    }
    async fn cleanup_deleted_files(&self) -> Result<Vec<FreedSlice>> {
        self.do_cleanup_deleted_files().await
    }
    async fn replace_slices(
        &self,
        ino: Ino,
        index: u32,
        old: &[Slice],
        new: Slice,
    ) -> Result<Vec<FreedSlice>> {
        self.do_replace_slices(ino, index, old, new).await
    }
    async fn list_slices(&self) -> Result<Vec<(u64, u32)>> {
        self.do_list_slices().await
    }
    async fn pending_deletions(&self) -> Result<u64> {
        self.do_pending_deletions().await
    }
    async fn create_trash_root(&self) -> Result<()> {
        self.check_writable()?;
        txn!(self, true, |tx| {
            let found = tx
                .query(
                    "SELECT inode FROM jfs_node WHERE inode=?",
                    &[TRASH_INO.into()],
                )
                .await?;
            if found.is_empty() {
                insert_node(&mut tx, TRASH_INO, &trash_root_attr()).await?;
            }
            Ok(())
        })
    }
    async fn flush_stats(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let space = self.used_space_delta.swap(0, Ordering::Relaxed);
        let inodes = self.used_inodes_delta.swap(0, Ordering::Relaxed);
        if space == 0 && inodes == 0 {
            return Ok(());
        }
        let r = txn!(self, true, |tx| {
            tx.exec(
                "UPDATE jfs_counter SET value=value+? WHERE name='usedSpace'",
                &[space.into()],
            )
            .await?;
            tx.exec(
                "UPDATE jfs_counter SET value=value+? WHERE name='totalInodes'",
                &[inodes.into()],
            )
            .await?;
            Ok(())
        });
        if r.is_err() {
            // Keep the deltas for the next attempt.
            self.add_usage(space, inodes);
        }
        r
    }
}
