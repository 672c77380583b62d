//! The Redis metadata engine: JuiceFS 0.14's key schema (see `keys.rs`), so that this client
//! and the reference client can share one Redis database. Every multi-key change is one
//! WATCH/MULTI/EXEC transaction (`txn.rs`), rerun when another client got there first.
//! Space and inode counters change inside the same transactions, as the reference does.
//!
//! This file holds the engine state and the `Meta` entry points; the work is done in the
//! sibling modules.

mod attr;
mod conn;
mod data;
mod delete;
mod direct;
pub mod keys;
mod locks;
mod namespace;
mod node;
mod rename;
mod session;
mod txn;
mod xattr;

use super::*;
use conn::Conn;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use txn::KeyLocks;

pub use attr::{decode as decode_attr, encode as encode_attr};

const INODE_BATCH: u64 = 100;
const SLICE_BATCH: u64 = 1000;

pub struct RedisMeta {
    pub(crate) conn: Conn,
    pub(crate) locks: KeyLocks,
    read_only: bool,
    sid: AtomicU64,
    format: Mutex<Option<Format>>,
    /// Ids handed out by the server in batches: (next, end).
    inode_batch: tokio::sync::Mutex<(u64, u64)>,
    slice_batch: tokio::sync::Mutex<(u64, u64)>,
    /// Open handles per inode in this client: an unlinked file stays while one is open.
    open_files: crate::meta::open_files::OpenFiles,
    /// Files this session unlinked while they were open (also in `session{sid}`).
    sustained: Mutex<HashSet<Ino>>,
}

use crate::meta::open_files::poisoned;

impl RedisMeta {
    /// Connects to the server a `redis://` or `rediss://` META-URL names.
    pub async fn open(url: &str, read_only: bool) -> Result<RedisMeta> {
        let conn = Conn::connect(url).await?;
        if !read_only {
            conn.check_server().await;
        }
        Ok(RedisMeta {
            conn,
            locks: KeyLocks::new(),
            read_only,
            sid: AtomicU64::new(0),
            format: Mutex::new(None),
            inode_batch: tokio::sync::Mutex::new((0, 0)),
            slice_batch: tokio::sync::Mutex::new((0, 0)),
            open_files: Default::default(),
            sustained: Mutex::new(HashSet::new()),
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

    fn is_open(&self, ino: Ino) -> Result<bool> {
        self.open_files.is_open(ino)
    }

    /// Takes the next id of a batch, asking the server for a new batch when it runs out.
    /// The server's counter holds the last id handed out, as the reference keeps it.
    async fn next_from(
        &self,
        batch: &tokio::sync::Mutex<(u64, u64)>,
        counter: &str,
        size: u64,
    ) -> Result<u64> {
        let mut b = batch.lock().await;
        if b.0 >= b.1 {
            // Repeating an INCRBY whose answer was lost only skips ids: safe to retry.
            let last: u64 = self
                .conn
                .run(::redis::cmd("INCRBY").arg(counter).arg(size))
                .await?;
            *b = (last + 1 - size, last + 1);
        }
        let v = b.0;
        b.0 += 1;
        Ok(v)
    }

    async fn next_inode(&self) -> Result<Ino> {
        loop {
            let ino = self
                .next_from(&self.inode_batch, keys::NEXT_INODE, INODE_BATCH)
                .await?;
            // Inode 1 is the root, made at format time.
            if ino > ROOT_INO {
                return Ok(ino);
            }
        }
    }
}

#[async_trait]
impl Meta for RedisMeta {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn load_format(&self) -> Result<Format> {
        self.do_load_format().await
    }
    async fn init(&self, format: &Format, force: bool) -> Result<()> {
        self.do_init(format, force).await
    }

    async fn new_session(&self, info: &SessionInfo) -> Result<u64> {
        self.do_new_session(info).await
    }
    async fn refresh_session(&self, sid: u64) -> Result<()> {
        self.do_refresh_session(sid).await
    }
    async fn close_session(&self, sid: u64) -> Result<Vec<FreedSlice>> {
        self.clean_session(sid).await
    }
    async fn list_sessions(&self) -> Result<Vec<Session>> {
        self.do_list_sessions().await
    }
    async fn clean_stale_sessions(&self, stale_before: i64) -> Result<Vec<FreedSlice>> {
        self.do_clean_stale_sessions(stale_before).await
    }

    async fn lookup(&self, parent: Ino, name: &str) -> Result<(Ino, Attr)> {
        self.do_lookup(parent, name).await
    }
    async fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.get_attr(ino).await
    }
    async fn setattr(&self, ino: Ino, set: &SetAttr, _caller: Caller) -> Result<Attr> {
        self.do_setattr(ino, set).await
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
        let new = namespace::NewNode {
            kind,
            mode,
            rdev,
            target: symlink_target,
            caller,
        };
        self.do_mknod(parent, name, new).await
    }
    async fn unlink(&self, parent: Ino, name: &str, _caller: Caller) -> Result<Vec<FreedSlice>> {
        self.do_unlink(parent, name).await
    }
    async fn rmdir(&self, parent: Ino, name: &str, _caller: Caller) -> Result<()> {
        self.do_rmdir(parent, name).await
    }
    async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        mode: RenameMode,
        _caller: Caller,
    ) -> Result<Vec<FreedSlice>> {
        self.do_rename(parent, name, new_parent, new_name, mode)
            .await
    }
    async fn link(&self, ino: Ino, parent: Ino, name: &str) -> Result<Attr> {
        self.do_link(ino, parent, name).await
    }
    async fn readlink(&self, ino: Ino) -> Result<String> {
        self.do_readlink(ino).await
    }
    async fn readdir(&self, ino: Ino, plus: bool) -> Result<Vec<DirEntry>> {
        self.do_readdir(ino, plus).await
    }

    async fn open(&self, ino: Ino) -> Result<Attr> {
        let attr = self.get_attr(ino).await?;
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
        self.next_from(&self.slice_batch, keys::NEXT_CHUNK, SLICE_BATCH)
            .await
    }
    async fn write_slice(&self, ino: Ino, index: u32, slice: Slice, mtime: Nanos) -> Result<Attr> {
        self.do_write_slice(ino, index, slice, mtime).await
    }

    async fn statfs(&self) -> Result<StatFs> {
        let (space, inodes) = self.usage().await?;
        Ok(rules::statfs(space, inodes, self.cached_format().as_ref()))
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
        // NX: a trash that exists keeps its link count.
        self.conn
            .run::<()>(
                ::redis::cmd("SET")
                    .arg(keys::inode(TRASH_INO))
                    .arg(encode_attr(&trash_root_attr()))
                    .arg("NX"),
            )
            .await
    }
    /// Nothing is batched locally: the counters change inside each transaction.
    async fn flush_stats(&self) -> Result<()> {
        Ok(())
    }
}
