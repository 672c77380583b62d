//! Metadata engines. `Meta` is the seam: the file system layer talks only to this trait,
//! and each engine (SQL, Redis) stores the JuiceFS schema its own way.
//! Engines know nothing of FUSE or object storage.

pub mod format;
pub mod instrumented;
pub mod open_files;
pub mod plock;
pub mod redis;
pub mod rules;
pub mod slice;
pub mod sql;
pub mod types;
pub mod url;

use async_trait::async_trait;
pub use format::Format;
use std::sync::Arc;
pub use types::*;

#[derive(Clone, Debug, thiserror::Error)]
pub enum MetaError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("operation not permitted")]
    Perm,
    #[error("permission denied")]
    Access,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("no space left: {0}")]
    NoSpace(&'static str),
    #[error("no such attribute")]
    NoAttr,
    #[error("attribute value too large for the buffer")]
    Range,
    #[error("resource temporarily unavailable (lock held)")]
    WouldBlock,
    #[error("read-only file system")]
    ReadOnly,
    #[error("volume is not formatted: run `juicefs format` first ({0})")]
    NotFormatted(String),
    #[error("{0}")]
    Format(#[from] format::FormatError),
    #[error("metadata is corrupt: {0}")]
    Corrupt(String),
    #[error("metadata engine error: {0}")]
    Db(String),
    /// The engine's server cannot be reached (after retries with backoff).
    #[error("metadata engine unavailable: {0}")]
    Unavailable(String),
    /// A transaction conflict: the caller retries the whole transaction.
    #[error("transaction conflict, retrying: {0}")]
    Conflict(String),
}

impl MetaError {
    pub fn errno(&self) -> i32 {
        use MetaError::*;
        match self {
            NotFound => libc::ENOENT,
            Exists => libc::EEXIST,
            NotDir => libc::ENOTDIR,
            IsDir => libc::EISDIR,
            NotEmpty => libc::ENOTEMPTY,
            Perm => libc::EPERM,
            Access => libc::EACCES,
            Invalid(_) => libc::EINVAL,
            NoSpace(_) => libc::ENOSPC,
            NoAttr => libc::ENODATA,
            Range => libc::ERANGE,
            WouldBlock => libc::EAGAIN,
            ReadOnly => libc::EROFS,
            NotFormatted(_) | Format(_) | Corrupt(_) | Db(_) | Unavailable(_) | Conflict(_) => {
                libc::EIO
            }
        }
    }

    /// Errors a user causes routinely; they are not worth a warning in the log.
    pub fn is_expected(&self) -> bool {
        !matches!(
            self,
            MetaError::Corrupt(_)
                | MetaError::Db(_)
                | MetaError::Unavailable(_)
                | MetaError::Conflict(_)
        )
    }
}

pub type Result<T> = std::result::Result<T, MetaError>;

/// A slice whose last reference went away: its objects may be deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreedSlice {
    pub id: u64,
    pub size: u32,
}

#[async_trait]
pub trait Meta: Send + Sync {
    /// Engine name for logs and `status` ("sqlite3", "postgres", ...).
    fn name(&self) -> &'static str;

    /// Reads the volume format, `NotFormatted` when the database has none.
    async fn load_format(&self) -> Result<Format>;
    /// Creates the schema and writes the format; `force` overwrites an existing one.
    async fn init(&self, format: &Format, force: bool) -> Result<()>;

    /// Registers a client session (with heartbeat) and returns its id.
    async fn new_session(&self, info: &SessionInfo) -> Result<u64>;
    async fn refresh_session(&self, sid: u64) -> Result<()>;
    /// Ends a session: releases its locks and deletes the files it kept open after unlink.
    async fn close_session(&self, sid: u64) -> Result<Vec<FreedSlice>>;
    async fn list_sessions(&self) -> Result<Vec<Session>>;
    /// Cleans sessions whose heartbeat is older than `stale_before` (unix seconds).
    async fn clean_stale_sessions(&self, stale_before: i64) -> Result<Vec<FreedSlice>>;

    async fn lookup(&self, parent: Ino, name: &str) -> Result<(Ino, Attr)>;
    async fn getattr(&self, ino: Ino) -> Result<Attr>;
    async fn setattr(&self, ino: Ino, set: &SetAttr, caller: Caller) -> Result<Attr>;
    /// Changes the length; returns the new attributes and the slices no longer referenced.
    async fn truncate(&self, ino: Ino, length: u64) -> Result<(Attr, Vec<FreedSlice>)>;
    /// fallocate(2) modes 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE.
    async fn fallocate(&self, ino: Ino, mode: i32, off: u64, len: u64) -> Result<Attr>;

    #[allow(clippy::too_many_arguments)]
    async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        kind: FileKind,
        mode: u16,
        rdev: u32,
        symlink_target: Option<&str>,
        caller: Caller,
    ) -> Result<(Ino, Attr)>;
    /// Removes a name; the inode goes once unreferenced (kept while `is_open` says so).
    async fn unlink(&self, parent: Ino, name: &str, caller: Caller) -> Result<Vec<FreedSlice>>;
    async fn rmdir(&self, parent: Ino, name: &str, caller: Caller) -> Result<()>;
    async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        mode: RenameMode,
        caller: Caller,
    ) -> Result<Vec<FreedSlice>>;
    async fn link(&self, ino: Ino, parent: Ino, name: &str) -> Result<Attr>;
    async fn readlink(&self, ino: Ino) -> Result<String>;
    async fn readdir(&self, ino: Ino, plus: bool) -> Result<Vec<DirEntry>>;

    /// Tracks an open file so that unlinking it keeps the data until the last close.
    async fn open(&self, ino: Ino) -> Result<Attr>;
    /// Drops one open reference; when the file was unlinked meanwhile, deletes it.
    async fn close(&self, ino: Ino) -> Result<Vec<FreedSlice>>;

    async fn read_chunk(&self, ino: Ino, index: u32) -> Result<Vec<Slice>>;
    async fn new_slice_id(&self) -> Result<u64>;
    /// Appends a written slice to chunk `index` and extends the length if needed.
    async fn write_slice(&self, ino: Ino, index: u32, slice: Slice, mtime: Nanos) -> Result<Attr>;

    async fn statfs(&self) -> Result<StatFs>;

    async fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>>;
    async fn listxattr(&self, ino: Ino) -> Result<Vec<String>>;
    /// `flags`: XATTR_CREATE / XATTR_REPLACE semantics.
    async fn setxattr(&self, ino: Ino, name: &str, value: &[u8], flags: i32) -> Result<()>;
    async fn removexattr(&self, ino: Ino, name: &str) -> Result<()>;

    /// BSD lock (flock) for (session, owner).
    async fn flock(&self, ino: Ino, owner: u64, ltype: LockType) -> Result<()>;
    /// The first conflicting POSIX lock, if any.
    async fn getlk(&self, ino: Ino, owner: u64, want: PlockRecord) -> Result<Option<PlockRecord>>;
    async fn setlk(&self, ino: Ino, owner: u64, rec: PlockRecord) -> Result<()>;

    /// Pending deletions of unlinked files: deletes their chunks, returns freed slices.
    async fn cleanup_deleted_files(&self) -> Result<Vec<FreedSlice>>;
    /// Flushes locally batched counters (used space, inodes) to the engine.
    async fn flush_stats(&self) -> Result<()>;
    /// Compaction's commit: `old`, the first records of chunk `index` of `ino`, become the
    /// one slice `new` (records appended meanwhile stay after it). `Invalid` when the chunk
    /// no longer starts with `old`; returns the slices nothing references any more.
    async fn replace_slices(
        &self,
        ino: Ino,
        index: u32,
        old: &[Slice],
        new: Slice,
    ) -> Result<Vec<FreedSlice>>;
    /// Every slice a chunk refers to, `(id, size)`, holes left out (for `gc` and `fsck`).
    async fn list_slices(&self) -> Result<Vec<(u64, u32)>>;
    /// Unlinked files whose data is still to be deleted.
    async fn pending_deletions(&self) -> Result<u64>;
    /// Creates the `.trash` directory's node ([`TRASH_INO`]) unless it exists.
    async fn create_trash_root(&self) -> Result<()>;
}

thread_local! {
    static MAY_BLOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as one that serves one request at a time and may block (a FUSE
/// worker): engines may then do their I/O on it synchronously instead of handing it to the
/// runtime and back, which costs two thread wake-ups per round trip.
pub fn mark_thread_may_block() {
    MAY_BLOCK.set(true);
}

pub fn thread_may_block() -> bool {
    MAY_BLOCK.get()
}

/// Opens the engine a META-URL names. The URL is never logged with its password.
/// An SQLite file that does not exist is an unformatted volume, not something to create.
pub async fn open(url: &str, read_only: bool) -> Result<Arc<dyn Meta>> {
    open_with(url, read_only, false).await
}

/// Like `open`, creating an SQLite database file when missing (for `format`); other
/// engines need nothing created.
pub async fn create(url: &str) -> Result<Arc<dyn Meta>> {
    open_with(url, false, true).await
}

async fn open_with(url: &str, read_only: bool, create: bool) -> Result<Arc<dyn Meta>> {
    let parsed = url::MetaUrl::parse(url).map_err(MetaError::Invalid)?;
    match parsed {
        url::MetaUrl::Sqlite { path } => Ok(Arc::new(
            sql::SqlMeta::new(
                Box::new(sql::sqlite::SqliteDb::open(&path, read_only, create)?),
                read_only,
            )
            .await?,
        )),
        url::MetaUrl::Redis { url } => Ok(Arc::new(redis::RedisMeta::open(&url, read_only).await?)),
        url::MetaUrl::Postgres { conn } => Ok(Arc::new(
            sql::SqlMeta::new(
                Box::new(sql::postgres::PgDb::connect(&conn).await?),
                read_only,
            )
            .await?,
        )),
    }
}
