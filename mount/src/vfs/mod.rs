//! The file system layer: POSIX operations on top of a metadata engine and an object
//! store. It returns plain data (attributes, bytes, handles) and knows nothing of fuser,
//! so tests drive it directly and the FUSE adapter stays thin.

mod compact;
pub mod disk_cache;
mod reader;
pub mod trash;
mod writer;

use crate::meta::{
    Attr, Caller, DirEntry, FileKind, FreedSlice, Ino, LockType, Meta, MetaError, PlockRecord,
    RenameMode, SetAttr, StatFs, TRASH_INO,
};
use crate::object::ObjectStore;
use reader::{BlockCache, ChunkViews, Reader};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use writer::FileWriter;

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("I/O error: {0}")]
    Io(String),
    /// A block the view names is not in the object store: the view may be stale (another
    /// client compacted the chunk and deleted the old objects).
    #[error("I/O error: {0}")]
    Gone(String),
    #[error("bad file handle")]
    BadHandle,
    #[error("{1}")]
    Errno(i32, &'static str),
}

impl Error {
    pub fn errno(&self) -> i32 {
        match self {
            Error::Meta(m) => m.errno(),
            Error::Io(_) | Error::Gone(_) => libc::EIO,
            Error::BadHandle => libc::EBADF,
            Error::Errno(e, _) => *e,
        }
    }
    pub fn is_expected(&self) -> bool {
        match self {
            Error::Meta(m) => m.is_expected(),
            Error::Io(_) | Error::Gone(_) => false,
            _ => true,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Debug)]
pub struct VfsConfig {
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
    pub dir_entry_ttl: Duration,
    pub read_only: bool,
    /// Memory for cached blocks, in bytes.
    pub block_cache_bytes: u64,
    /// The shared budget for data in flight (`--buffer-size`): read-ahead takes from it,
    /// and each writer waits for its slices to land beyond three quarters of it.
    pub buffer_bytes: u64,
    /// Blocks uploaded at once per file (`--max-uploads`).
    pub max_uploads: usize,
    /// Largest read-ahead window, in blocks.
    pub max_read_ahead: u32,
    /// Keep the kernel's page cache of a file across opens for this long when its length
    /// and mtime have not changed (`--open-cache`; 0: drop it at every open, as JuiceFS).
    pub open_cache: Duration,
    /// The local disk block cache, if any (`--cache-dir`).
    pub disk_cache: Option<Arc<disk_cache::DiskCache>>,
    /// The inode shown as the mount's root (the `--subdir`, or the volume root).
    pub root: Ino,
    /// Serve extended attributes (`--enable-xattr`). Off, as in JuiceFS: every xattr call
    /// answers ENOSYS, which the kernel remembers (callers see EOPNOTSUPP), so `ls -l` and
    /// each write stop asking the metadata engine for `security.*` and ACL names.
    pub xattr: bool,
    /// Days deleted files stay in `.trash` (the volume's `TrashDays`; 0: no trash).
    pub trash_days: u64,
}

impl Default for VfsConfig {
    fn default() -> Self {
        VfsConfig {
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            dir_entry_ttl: Duration::from_secs(1),
            read_only: false,
            block_cache_bytes: 48 << 20,
            buffer_bytes: 300 << 20,
            max_uploads: writer::DEFAULT_MAX_UPLOADS,
            max_read_ahead: 16,
            disk_cache: None,
            open_cache: Duration::ZERO,
            root: crate::meta::ROOT_INO,
            xattr: true,
            trash_days: 0,
        }
    }
}

enum Handle {
    File {
        ino: Ino,
        writable: bool,
        /// Sequential-read tracking: where the next read would start, and the read-ahead
        /// window in blocks (grows while reads follow each other, drops on a seek).
        seq: Mutex<(u64, u32)>,
    },
    Dir {
        ino: Ino,
        entries: tokio::sync::Mutex<Option<Vec<DirEntry>>>,
    },
}

pub struct Vfs {
    pub meta: Arc<dyn Meta>,
    pub store: ObjectStore,
    pub cfg: VfsConfig,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    writers: Mutex<HashMap<Ino, Arc<FileWriter>>>,
    cache: Arc<BlockCache>,
    views: Arc<ChunkViews>,
    budget: Arc<tokio::sync::Semaphore>,
    /// Length of each open file as this client knows it (from open, then its own writes
    /// and truncates), with the number of open handles; reads use it instead of asking
    /// the metadata engine each time.
    lengths: Mutex<HashMap<Ino, (u64, u32)>>,
    /// (length, mtime, when) of each file at its last open, for `open_cache`.
    seen: Mutex<HashMap<Ino, (u64, i64, std::time::Instant)>>,
    compactions: Arc<compact::Compactions>,
}

fn lock_err<T>(_: std::sync::PoisonError<T>) -> Error {
    Error::Io("internal lock poisoned".into())
}

impl Vfs {
    pub fn new(meta: Arc<dyn Meta>, store: ObjectStore, cfg: VfsConfig) -> Vfs {
        Vfs {
            meta,
            store,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            writers: Mutex::new(HashMap::new()),
            cache: Arc::new(BlockCache::new(
                cfg.block_cache_bytes,
                cfg.disk_cache.clone(),
            )),
            budget: Arc::new(tokio::sync::Semaphore::new(
                (cfg.buffer_bytes / 1024) as usize,
            )),
            views: Arc::new(ChunkViews::default()),
            lengths: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            compactions: Arc::new(compact::Compactions::default()),
            cfg,
        }
    }

    fn opened(&self, ino: Ino, length: u64) {
        if let Ok(mut l) = self.lengths.lock() {
            let e = l.entry(ino).or_insert((length, 0));
            // Our own unflushed writes may already be longer than what metadata says.
            e.0 = if e.1 == 0 { length } else { e.0.max(length) };
            e.1 += 1;
        }
    }

    fn closed(&self, ino: Ino) {
        if let Ok(mut l) = self.lengths.lock()
            && let Some(e) = l.get_mut(&ino)
        {
            e.1 -= 1;
            if e.1 == 0 {
                l.remove(&ino);
            }
        }
    }

    fn set_length(&self, ino: Ino, f: impl FnOnce(u64) -> u64) {
        if let Ok(mut l) = self.lengths.lock()
            && let Some(e) = l.get_mut(&ino)
        {
            e.0 = f(e.0);
        }
    }

    fn known_length(&self, ino: Ino) -> Option<u64> {
        self.lengths
            .lock()
            .ok()
            .and_then(|l| l.get(&ino).map(|e| e.0))
    }

    fn check_writable(&self) -> Result<()> {
        if self.cfg.read_only {
            Err(Error::Meta(MetaError::ReadOnly))
        } else {
            Ok(())
        }
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        self.handles
            .lock()
            .map_err(lock_err)?
            .get(&fh)
            .cloned()
            .ok_or(Error::BadHandle)
    }

    fn add_handle(&self, h: Handle) -> Result<u64> {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .map_err(lock_err)?
            .insert(fh, Arc::new(h));
        Ok(fh)
    }

    fn writer(&self, ino: Ino) -> Result<Arc<FileWriter>> {
        let mut w = self.writers.lock().map_err(lock_err)?;
        if let Some(x) = w.get(&ino) {
            return Ok(x.clone());
        }
        let (views, compactions) = (self.views.clone(), self.compactions.clone());
        let x = Arc::new(FileWriter::new(
            ino,
            self.meta.clone(),
            self.store.clone(),
            self.cache.clone(),
            writer::WriteLimits {
                max_uploads: self.cfg.max_uploads.max(1),
                max_buffered: (self.cfg.buffer_bytes / 4 * 3).max(8 << 20),
            },
            Arc::new(move |ino, chunk| {
                views.invalidate(ino);
                compactions.committed(ino, chunk);
            }),
        ));
        w.insert(ino, x.clone());
        Ok(x)
    }

    fn existing_writer(&self, ino: Ino) -> Option<Arc<FileWriter>> {
        self.writers.lock().ok().and_then(|w| w.get(&ino).cloned())
    }

    async fn flush_ino(&self, ino: Ino) -> Result<()> {
        if let Some(w) = self.existing_writer(ino) {
            w.flush().await?;
        }
        Ok(())
    }

    /// Deletes the objects of slices nobody references any more, in the background.
    pub fn free_slices(&self, freed: Vec<FreedSlice>) {
        if freed.is_empty() {
            return;
        }
        let store = self.store.clone();
        let cache = self.cache.clone();
        tokio::spawn(async move {
            for f in freed {
                cache.forget_slice(f.id, f.size);
                if let Err(e) = store.delete_slice(f.id, f.size).await {
                    tracing::warn!("deleting objects of slice {}: {e}", f.id);
                }
            }
        });
    }

    async fn with_pending_length(&self, ino: Ino, mut a: Attr) -> Attr {
        if a.kind == FileKind::File
            && let Some(w) = self.existing_writer(ino)
            && let Some(len) = w.pending_length().await
        {
            a.length = a.length.max(len);
        }
        a
    }

    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<(Ino, Attr)> {
        if self.is_trash_name(parent, name) {
            return Ok((TRASH_INO, self.meta.getattr(TRASH_INO).await?));
        }
        let (ino, a) = self.meta.lookup(parent, name).await?;
        Ok((ino, self.with_pending_length(ino, a).await))
    }

    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        let a = self.meta.getattr(ino).await?;
        Ok(self.with_pending_length(ino, a).await)
    }

    pub async fn setattr(&self, ino: Ino, set: &SetAttr, caller: Caller) -> Result<Attr> {
        self.check_writable()?;
        if let Some(size) = set.size {
            self.flush_ino(ino).await?;
            let (_, freed) = self.meta.truncate(ino, size).await?;
            self.set_length(ino, |_| size);
            self.views.invalidate(ino);
            self.free_slices(freed);
        }
        let only_size = set.mode.is_none()
            && set.uid.is_none()
            && set.gid.is_none()
            && set.atime.is_none()
            && set.mtime.is_none();
        if only_size {
            return self.getattr(ino).await;
        }
        let a = self.meta.setattr(ino, set, caller).await?;
        Ok(self.with_pending_length(ino, a).await)
    }

    pub async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        kind: FileKind,
        mode: u16,
        rdev: u32,
        caller: Caller,
    ) -> Result<(Ino, Attr)> {
        self.check_writable()?;
        Ok(self
            .meta
            .mknod(parent, name, kind, mode, rdev, None, caller)
            .await?)
    }

    pub async fn symlink(
        &self,
        parent: Ino,
        name: &str,
        target: &str,
        caller: Caller,
    ) -> Result<(Ino, Attr)> {
        self.check_writable()?;
        if target.is_empty() || target.len() >= 4096 {
            return Err(Error::Errno(
                libc::ENAMETOOLONG,
                "symlink target length out of range",
            ));
        }
        Ok(self
            .meta
            .mknod(
                parent,
                name,
                FileKind::Symlink,
                0o777,
                0,
                Some(target),
                caller,
            )
            .await?)
    }

    pub async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u16,
        flags: i32,
        caller: Caller,
    ) -> Result<(Ino, Attr, u64)> {
        self.check_writable()?;
        let (ino, attr) = self
            .meta
            .mknod(parent, name, FileKind::File, mode, 0, None, caller)
            .await?;
        self.meta.open(ino).await?;
        self.opened(ino, 0);
        let fh = self.add_handle(Handle::File {
            ino,
            writable: flags & libc::O_ACCMODE != libc::O_RDONLY,
            seq: Mutex::new((0, 1)),
        })?;
        Ok((ino, attr, fh))
    }

    pub async fn unlink(&self, parent: Ino, name: &str, caller: Caller) -> Result<()> {
        self.check_writable()?;
        if self.trash_remove(parent, name, false, caller).await? {
            return Ok(());
        }
        let freed = self.meta.unlink(parent, name, caller).await?;
        self.free_slices(freed);
        Ok(())
    }

    pub async fn rmdir(&self, parent: Ino, name: &str, caller: Caller) -> Result<()> {
        self.check_writable()?;
        if self.trash_remove(parent, name, true, caller).await? {
            return Ok(());
        }
        Ok(self.meta.rmdir(parent, name, caller).await?)
    }

    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        mode: RenameMode,
        caller: Caller,
    ) -> Result<()> {
        self.check_writable()?;
        if mode == RenameMode::Replace
            && self
                .trash_rename(parent, name, new_parent, new_name, caller)
                .await?
        {
            return Ok(());
        }
        let freed = self
            .meta
            .rename(parent, name, new_parent, new_name, mode, caller)
            .await?;
        self.free_slices(freed);
        Ok(())
    }

    pub async fn link(&self, ino: Ino, parent: Ino, name: &str) -> Result<Attr> {
        self.check_writable()?;
        let a = self.meta.link(ino, parent, name).await?;
        Ok(self.with_pending_length(ino, a).await)
    }

    pub async fn readlink(&self, ino: Ino) -> Result<String> {
        Ok(self.meta.readlink(ino).await?)
    }

    /// Opens a file; the flag says whether the kernel may keep the pages it cached at an
    /// earlier open (the file is unchanged since, and `open_cache` allows it).
    pub async fn open(&self, ino: Ino, flags: i32) -> Result<(u64, Attr, bool)> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writable {
            self.check_writable()?;
        }
        let a = self.meta.open(ino).await?;
        if a.kind == FileKind::Dir {
            let _ = self.meta.close(ino).await;
            return Err(Error::Meta(MetaError::IsDir));
        }
        // Close-to-open: whatever other clients wrote is visible from here on.
        self.views.invalidate(ino);
        self.opened(ino, a.length);
        let fh = self.add_handle(Handle::File {
            ino,
            writable,
            seq: Mutex::new((0, 1)),
        })?;
        let keep = self.keep_cache(ino, &a);
        Ok((fh, self.with_pending_length(ino, a).await, keep))
    }

    fn keep_cache(&self, ino: Ino, a: &Attr) -> bool {
        if self.cfg.open_cache.is_zero() || self.existing_writer(ino).is_some() {
            return false;
        }
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        let keep = seen.get(&ino).is_some_and(|(len, mtime, at)| {
            *len == a.length && *mtime == a.mtime && now.duration_since(*at) < self.cfg.open_cache
        });
        if seen.len() > 100_000 {
            seen.clear();
        }
        seen.insert(ino, (a.length, a.mtime, now));
        keep
    }

    fn file_handle(&self, fh: u64) -> Result<(Ino, bool)> {
        match &*self.handle(fh)? {
            Handle::File { ino, writable, .. } => Ok((*ino, *writable)),
            Handle::Dir { .. } => Err(Error::BadHandle),
        }
    }

    /// The read-ahead window for a read of `[off, off+size)` on `fh`: doubles each time a
    /// sequential reader enters a new block, up to `max_read_ahead`; none after a seek.
    fn read_ahead(&self, fh: u64, off: u64, size: u32) -> u32 {
        let bs = self.store.block_size().max(1);
        let Ok(h) = self.handle(fh) else { return 0 };
        let Handle::File { seq, .. } = &*h else {
            return 0;
        };
        let Ok(mut s) = seq.lock() else { return 0 };
        let (next, window) = *s;
        let sequential = off == next || (next == 0 && off == 0);
        // Fetched-ahead blocks must fit in half the memory cache, or they push each other out.
        let max = self
            .cfg
            .max_read_ahead
            .min((self.cfg.block_cache_bytes / bs / 2) as u32)
            .max(1);
        let new_window = if !sequential {
            0
        } else if off / bs != next.saturating_sub(1) / bs || off == 0 {
            (window.max(1) * 2).min(max)
        } else {
            window.max(1)
        };
        *s = (off + size as u64, new_window);
        new_window
    }

    pub async fn read(&self, fh: u64, off: u64, size: u32) -> Result<bytes::Bytes> {
        let (ino, _) = self.file_handle(fh)?;
        let ahead = self.read_ahead(fh, off, size);
        // Our own unflushed writes must be visible to our reads.
        self.flush_ino(ino).await?;
        let length = match self.known_length(ino) {
            Some(l) => l,
            None => self.meta.getattr(ino).await?.length,
        };
        let r = Reader {
            meta: &*self.meta,
            store: &self.store,
            cache: &self.cache,
            views: &self.views,
            ahead,
            budget: &self.budget,
        };
        match r.read(ino, off, size as usize, length).await {
            // Another client may have compacted the chunk and deleted the objects of the
            // view we held: once more with a fresh view.
            Err(Error::Gone(_)) => {
                self.views.invalidate(ino);
                r.read(ino, off, size as usize, length).await
            }
            other => other,
        }
    }

    pub async fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        let (ino, writable) = self.file_handle(fh)?;
        if !writable {
            return Err(Error::BadHandle);
        }
        self.check_writable()?;
        let end = off
            .checked_add(data.len() as u64)
            .filter(|e| *e <= (1u64 << 50))
            .ok_or(Error::Errno(libc::EFBIG, "file too large"))?;
        self.writer(ino)?.write(off, data).await?;
        self.set_length(ino, |l| l.max(end));
        Ok(data.len() as u32)
    }

    /// flush(2) on close and fsync(2): both return only once data and metadata are durable.
    pub async fn flush(&self, fh: u64) -> Result<()> {
        let (ino, _) = self.file_handle(fh)?;
        self.flush_ino(ino).await
    }

    pub async fn release(&self, fh: u64) -> Result<()> {
        let h = self.handles.lock().map_err(lock_err)?.remove(&fh);
        let Some(h) = h else {
            return Err(Error::BadHandle);
        };
        if let Handle::File { ino, .. } = &*h {
            let ino = *ino;
            let flushed = self.flush_ino(ino).await;
            let still_open = self
                .handles
                .lock()
                .map_err(lock_err)?
                .values()
                .any(|h| matches!(&**h, Handle::File { ino: i, .. } if *i == ino));
            if !still_open
                && let Some(w) = self.existing_writer(ino)
                && w.is_idle().await
            {
                self.writers.lock().map_err(lock_err)?.remove(&ino);
            }
            self.closed(ino);
            let freed = self.meta.close(ino).await?;
            self.free_slices(freed);
            flushed?;
        }
        Ok(())
    }

    pub async fn fallocate(&self, fh: u64, mode: i32, off: u64, len: u64) -> Result<()> {
        let (ino, writable) = self.file_handle(fh)?;
        if !writable {
            return Err(Error::BadHandle);
        }
        self.check_writable()?;
        if len == 0 {
            return Err(Error::Errno(libc::EINVAL, "fallocate of zero bytes"));
        }
        self.flush_ino(ino).await?;
        let a = self.meta.fallocate(ino, mode, off, len).await?;
        self.set_length(ino, |_| a.length);
        self.views.invalidate(ino);
        Ok(())
    }

    pub async fn opendir(&self, ino: Ino) -> Result<u64> {
        let a = self.meta.getattr(ino).await?;
        if a.kind != FileKind::Dir {
            return Err(Error::Meta(MetaError::NotDir));
        }
        self.add_handle(Handle::Dir {
            ino,
            entries: tokio::sync::Mutex::new(None),
        })
    }

    /// Entries from `offset` on; the listing is taken once per open directory handle
    /// (at offset 0), so a directory changing meanwhile does not shift later pages.
    pub async fn readdir(&self, fh: u64, offset: u64, plus: bool) -> Result<Vec<DirEntry>> {
        let h = self.handle(fh)?;
        let Handle::Dir { ino, entries } = &*h else {
            return Err(Error::BadHandle);
        };
        let mut cached = entries.lock().await;
        if cached.is_none() || offset == 0 {
            let me = self.meta.getattr(*ino).await?;
            let parent = if *ino == self.cfg.root {
                *ino
            } else {
                me.parent
            };
            let mut list = vec![
                DirEntry {
                    name: ".".into(),
                    ino: *ino,
                    kind: FileKind::Dir,
                    attr: Some(me.clone()),
                },
                DirEntry {
                    name: "..".into(),
                    ino: parent,
                    kind: FileKind::Dir,
                    attr: None,
                },
            ];
            for mut e in self.meta.readdir(*ino, plus).await? {
                if let Some(a) = e.attr.take() {
                    e.attr = Some(self.with_pending_length(e.ino, a).await);
                }
                list.push(e);
            }
            *cached = Some(list);
        }
        let list = cached.as_ref().map(|l| l.as_slice()).unwrap_or(&[]);
        Ok(list.iter().skip(offset as usize).cloned().collect())
    }

    pub async fn releasedir(&self, fh: u64) -> Result<()> {
        self.handles.lock().map_err(lock_err)?.remove(&fh);
        Ok(())
    }

    pub async fn statfs(&self) -> Result<StatFs> {
        Ok(self.meta.statfs().await?)
    }

    fn check_xattr(&self) -> Result<()> {
        if self.cfg.xattr {
            Ok(())
        } else {
            // ENOSYS, not ENOTSUP: only ENOSYS makes the kernel stop asking (it then tells
            // callers EOPNOTSUPP itself).
            Err(Error::Errno(
                libc::ENOSYS,
                "extended attributes are off; mount with --enable-xattr",
            ))
        }
    }
    pub async fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        self.check_xattr()?;
        Ok(self.meta.getxattr(ino, name).await?)
    }
    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<String>> {
        self.check_xattr()?;
        Ok(self.meta.listxattr(ino).await?)
    }
    pub async fn setxattr(&self, ino: Ino, name: &str, value: &[u8], flags: i32) -> Result<()> {
        self.check_xattr()?;
        self.check_writable()?;
        Ok(self.meta.setxattr(ino, name, value, flags).await?)
    }
    pub async fn removexattr(&self, ino: Ino, name: &str) -> Result<()> {
        self.check_xattr()?;
        self.check_writable()?;
        Ok(self.meta.removexattr(ino, name).await?)
    }

    /// Tries a lock; with `wait`, polls every 10 ms until it is granted.
    async fn lock_polling<F: std::future::Future<Output = crate::meta::Result<()>>>(
        wait: bool,
        mut attempt: impl FnMut() -> F,
    ) -> Result<()> {
        loop {
            match attempt().await {
                Err(MetaError::WouldBlock) if wait => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                r => return Ok(r?),
            }
        }
    }

    /// flock(2); `wait` polls until the lock is granted.
    pub async fn flock(&self, ino: Ino, owner: u64, ltype: LockType, wait: bool) -> Result<()> {
        Self::lock_polling(wait, || self.meta.flock(ino, owner, ltype)).await
    }

    pub async fn getlk(
        &self,
        ino: Ino,
        owner: u64,
        want: PlockRecord,
    ) -> Result<Option<PlockRecord>> {
        Ok(self.meta.getlk(ino, owner, want).await?)
    }

    pub async fn setlk(&self, ino: Ino, owner: u64, rec: PlockRecord, wait: bool) -> Result<()> {
        Self::lock_polling(wait, || self.meta.setlk(ino, owner, rec)).await
    }

    /// Commits slices that writers left idle (1 s) or open too long (5 s), as JuiceFS does,
    /// so other clients see the data before the writer closes the file.
    pub fn spawn_auto_commit(self: &Arc<Self>) {
        let vfs = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(vfs) = vfs.upgrade() else { return };
                let writers: Vec<_> = match vfs.writers.lock() {
                    Ok(w) => w.values().cloned().collect(),
                    Err(_) => return,
                };
                for w in writers {
                    w.commit_if_stale(Duration::from_secs(1), Duration::from_secs(5))
                        .await;
                }
            }
        });
    }

    /// Flushes every file with buffered writes (unmount, SIGTERM).
    pub async fn flush_all(&self) -> Result<()> {
        let writers: Vec<_> = self
            .writers
            .lock()
            .map_err(lock_err)?
            .values()
            .cloned()
            .collect();
        let mut first_err = None;
        for w in writers {
            if let Err(e) = w.flush().await {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Open files (directories excluded).
    /// Bytes of the buffer budget taken by data in flight.
    pub fn used_buffer(&self) -> u64 {
        let total = self.cfg.buffer_bytes / 1024;
        total.saturating_sub(self.budget.available_permits() as u64) * 1024
    }

    pub fn open_handles(&self) -> usize {
        self.handles
            .lock()
            .map(|h| {
                h.values()
                    .filter(|x| matches!(&***x, Handle::File { .. }))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Files with writes not yet committed.
    pub async fn dirty_files(&self) -> usize {
        let writers: Vec<_> = match self.writers.lock() {
            Ok(w) => w.values().cloned().collect(),
            Err(_) => return 0,
        };
        let mut n = 0;
        for w in writers {
            if !w.is_idle().await {
                n += 1;
            }
        }
        n
    }
}
