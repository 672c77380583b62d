//! The fuser adapter: each kernel request runs the matching `Vfs` operation to completion
//! on the fuser worker thread (`Handle::block_on`), while object and metadata I/O runs on
//! the tokio runtime. Errors become errnos here and nowhere else.

use crate::meta::{
    Attr, Caller, FileKind, LockType, PlockRecord, RenameMode, SetAttr, TimeSet, nanos_to_system,
    system_to_nanos,
};
use crate::vfs::{Error, Vfs};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::runtime::Handle;

pub struct FuseFs {
    vfs: Arc<Vfs>,
    rt: Handle,
    internal: Arc<crate::internal::Internal>,
    /// (inode, lock owner) pairs holding POSIX locks: released when the owner closes the file.
    lock_owners: Mutex<HashSet<(u64, u64)>>,
    /// (inode, open file) pairs holding BSD locks: released when the file is released.
    flock_owners: Mutex<HashSet<(u64, u64)>>,
}

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::BlockDev => FileType::BlockDevice,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::Socket => FileType::Socket,
    }
}

pub fn file_attr(ino: u64, a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: a.length,
        blocks: a.length.div_ceil(512),
        atime: nanos_to_system(a.atime),
        mtime: nanos_to_system(a.mtime),
        ctime: nanos_to_system(a.ctime),
        crtime: nanos_to_system(a.ctime),
        kind: kind(a.kind),
        perm: a.mode,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 0x10000,
        flags: 0,
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn errno(op: &str, e: &Error) -> Errno {
    if e.is_expected() {
        tracing::debug!(op, "{e}");
    } else {
        tracing::warn!(op, "{e}");
    }
    Errno::from_i32(e.errno())
}

fn name_str(name: &OsStr) -> Result<&str, Errno> {
    std::str::from_utf8(name.as_bytes()).map_err(|_| Errno::EINVAL)
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(s) => TimeSet::At(system_to_nanos(s)),
    }
}

impl FuseFs {
    pub fn new(vfs: Arc<Vfs>, rt: Handle, internal: Arc<crate::internal::Internal>) -> FuseFs {
        FuseFs {
            vfs,
            rt,
            internal,
            lock_owners: Mutex::new(HashSet::new()),
            flock_owners: Mutex::new(HashSet::new()),
        }
    }

    /// Kernel inode -> volume inode: the kernel's root (1) is our `root` (a subdir).
    fn ino(&self, i: INodeNo) -> u64 {
        if i.0 == 1 { self.vfs.cfg.root } else { i.0 }
    }

    /// Volume inode -> kernel inode.
    fn kino(&self, i: u64) -> u64 {
        if i == self.vfs.cfg.root { 1 } else { i }
    }

    fn attr(&self, ino: u64, a: &Attr) -> FileAttr {
        file_attr(self.kino(ino), a)
    }

    /// Runs one operation to completion on this FUSE thread, timing it for the metrics and,
    /// while someone reads `.accesslog`, logging it with its caller and `args` (formatted
    /// only then).
    fn timed<T>(
        &self,
        req: &Request,
        method: &'static str,
        args: impl FnOnce() -> String,
        op: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        crate::meta::mark_thread_may_block();
        let start = std::time::Instant::now();
        let r = self.rt.block_on(op);
        let errno = r.as_ref().err().map(Error::errno);
        let took = start.elapsed();
        crate::metrics::METRICS.fuse_op(method, took, errno);
        if self.internal.logging() {
            self.internal.log_line(crate::internal::access_line(
                &caller(req),
                method,
                &args(),
                errno,
                took.as_secs_f64(),
            ));
        }
        r
    }

    /// Attributes of a virtual file: read-only for root, its size unknown (direct I/O).
    fn internal_attr(&self, ino: u64) -> FileAttr {
        let now = SystemTime::now();
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind: FileType::RegularFile,
            perm: if crate::internal::Internal::writable(ino) {
                0o600
            } else {
                0o400
            },
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 0x10000,
            flags: 0,
        }
    }

    fn ttl(&self, a: &Attr) -> Duration {
        if a.kind == FileKind::Dir {
            self.vfs.cfg.dir_entry_ttl
        } else {
            self.vfs.cfg.entry_ttl
        }
    }

    fn entry(&self, reply: ReplyEntry, op: &str, r: Result<(u64, Attr), Error>) {
        match r {
            Ok((ino, a)) => reply.entry_with_ttls(
                &self.vfs.cfg.attr_ttl,
                &self.ttl(&a),
                &self.attr(ino, &a),
                Generation(0),
            ),
            Err(e) => reply.error(errno(op, &e)),
        }
    }

    fn empty(&self, reply: ReplyEmpty, op: &str, r: Result<(), Error>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(op, &e)),
        }
    }

    fn release_locks(&self, ino: u64, owner: u64) {
        let held = self
            .lock_owners
            .lock()
            .map(|mut s| s.remove(&(ino, owner)))
            .unwrap_or(false);
        if held {
            let unlock = PlockRecord {
                ltype: LockType::Unlock,
                pid: 0,
                start: 0,
                end: u64::MAX,
            };
            if let Err(e) = self.rt.block_on(self.vfs.setlk(ino, owner, unlock, false)) {
                tracing::warn!("releasing POSIX locks of inode {ino}: {e}");
            }
        }
    }
}

impl fuser::Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_POSIX_LOCKS
            | InitFlags::FUSE_FLOCK_LOCKS
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS;
        for f in wanted.iter() {
            let _ = config.add_capabilities(f);
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        if parent.0 == 1
            && let Some(ino) = crate::internal::lookup(name)
        {
            let ttl = Duration::from_secs(1);
            return reply.entry_with_ttls(&ttl, &ttl, &self.internal_attr(ino), Generation(0));
        }
        let r = self.timed(
            req,
            "lookup",
            || format!("{},{name}", parent.0),
            self.vfs.lookup(self.ino(parent), name),
        );
        self.entry(reply, "lookup", r)
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if crate::internal::is_internal(ino.0) {
            return reply.attr(&Duration::from_secs(1), &self.internal_attr(ino.0));
        }
        match self.timed(
            req,
            "getattr",
            || ino.0.to_string(),
            self.vfs.getattr(self.ino(ino)),
        ) {
            Ok(a) => reply.attr(&self.vfs.cfg.attr_ttl, &self.attr(self.ino(ino), &a)),
            Err(e) => reply.error(errno("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            size,
        };
        match self.timed(
            req,
            "setattr",
            || format!("{},{set:?}", ino.0),
            self.vfs.setattr(self.ino(ino), &set, caller(req)),
        ) {
            Ok(a) => reply.attr(&self.vfs.cfg.attr_ttl, &self.attr(self.ino(ino), &a)),
            Err(e) => reply.error(errno("setattr", &e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.timed(
            req,
            "readlink",
            || ino.0.to_string(),
            self.vfs.readlink(self.ino(ino)),
        ) {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(errno("readlink", &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let Some(k) = FileKind::from_mode(mode) else {
            return reply.error(Errno::EINVAL);
        };
        if k == FileKind::Dir || k == FileKind::Symlink {
            return reply.error(Errno::EINVAL);
        }
        let perm = (mode & !umask & 0o7777) as u16;
        let r = self.timed(
            req,
            "mknod",
            || format!("{},{name},{mode:o},{rdev}", parent.0),
            self.vfs
                .mknod(self.ino(parent), name, k, perm, rdev, caller(req)),
        );
        self.entry(reply, "mknod", r)
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let perm = (mode & !umask & 0o7777) as u16;
        let r = self.timed(
            req,
            "mkdir",
            || format!("{},{name},{mode:o}", parent.0),
            self.vfs
                .mknod(self.ino(parent), name, FileKind::Dir, perm, 0, caller(req)),
        );
        self.entry(reply, "mkdir", r)
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let r = self.timed(
            req,
            "unlink",
            || format!("{},{name}", parent.0),
            self.vfs.unlink(self.ino(parent), name, caller(req)),
        );
        self.empty(reply, "unlink", r)
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let r = self.timed(
            req,
            "rmdir",
            || format!("{},{name}", parent.0),
            self.vfs.rmdir(self.ino(parent), name, caller(req)),
        );
        self.empty(reply, "rmdir", r)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, target) = match (name_str(link_name), name_str(target.as_os_str())) {
            (Ok(n), Ok(t)) => (n, t),
            _ => return reply.error(Errno::EINVAL),
        };
        let r = self.timed(
            req,
            "symlink",
            || format!("{},{name},{target}", parent.0),
            self.vfs
                .symlink(self.ino(parent), name, target, caller(req)),
        );
        self.entry(reply, "symlink", r)
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = match (name_str(name), name_str(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return reply.error(Errno::EINVAL),
        };
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else if flags.is_empty() {
            RenameMode::Replace
        } else {
            return reply.error(Errno::EINVAL);
        };
        let r = self.timed(
            req,
            "rename",
            || {
                format!(
                    "{},{name},{},{newname},{}",
                    parent.0,
                    newparent.0,
                    flags.bits()
                )
            },
            self.vfs.rename(
                self.ino(parent),
                name,
                self.ino(newparent),
                newname,
                mode,
                caller(req),
            ),
        );
        self.empty(reply, "rename", r)
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let name = match name_str(newname) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let r = self
            .timed(
                req,
                "link",
                || format!("{},{},{name}", ino.0, newparent.0),
                self.vfs.link(self.ino(ino), self.ino(newparent), name),
            )
            .map(|a| (self.ino(ino), a));
        self.entry(reply, "link", r)
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if crate::internal::is_internal(ino.0) {
            if flags.0 & libc::O_ACCMODE != libc::O_RDONLY
                && !crate::internal::Internal::writable(ino.0)
            {
                return reply.error(Errno::EACCES);
            }
            return match self.rt.block_on(self.internal.open(ino.0)) {
                Some(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                None => reply.error(Errno::ENOENT),
            };
        }
        match self.timed(
            req,
            "open",
            || format!("{},{:#x}", ino.0, flags.0),
            self.vfs.open(self.ino(ino), flags.0),
        ) {
            Ok((fh, _, keep)) => reply.opened(
                FileHandle(fh),
                if keep {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                },
            ),
            Err(e) => reply.error(errno("open", &e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if crate::internal::is_internal_fh(fh.0) {
            return match self.rt.block_on(self.internal.read(fh.0, offset, size)) {
                Some(b) => reply.data(&b),
                None => reply.error(Errno::EBADF),
            };
        }
        match self.timed(
            req,
            "read",
            || format!("{},{size},{offset},{}", ino.0, fh.0),
            self.vfs.read(fh.0, offset, size),
        ) {
            Ok(data) => {
                crate::metrics::METRICS.fuse_io(data.len() as u64, 0);
                reply.data(&data)
            }
            Err(e) => reply.error(errno("read", &e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if crate::internal::is_internal_fh(fh.0) {
            return match self.rt.block_on(self.internal.write(fh.0, data)) {
                Some(n) => reply.written(n),
                None => reply.error(Errno::EBADF),
            };
        }
        tracing::debug!(ino = ino.0, fh = fh.0, offset, len = data.len(), "write");
        match self.timed(
            req,
            "write",
            || format!("{},{},{offset},{}", ino.0, data.len(), fh.0),
            self.vfs.write(fh.0, offset, data),
        ) {
            Ok(n) => {
                crate::metrics::METRICS.fuse_io(0, n as u64);
                reply.written(n)
            }
            Err(e) => reply.error(errno("write", &e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        if crate::internal::is_internal_fh(fh.0) {
            return reply.ok();
        }
        self.release_locks(self.ino(ino), lock_owner.0);
        let r = self.timed(
            req,
            "flush",
            || format!("{},{}", ino.0, fh.0),
            self.vfs.flush(fh.0),
        );
        tracing::debug!(ino = ino.0, fh = fh.0, ok = r.is_ok(), "flush");
        self.empty(reply, "flush", r)
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if crate::internal::is_internal_fh(fh.0) {
            self.internal.release(fh.0);
            return reply.ok();
        }
        if let Some(owner) = lock_owner {
            let ino = self.ino(ino);
            let held = self
                .flock_owners
                .lock()
                .map(|mut s| s.remove(&(ino, owner.0)))
                .unwrap_or(false);
            if held
                && let Err(e) =
                    self.rt
                        .block_on(self.vfs.flock(ino, owner.0, LockType::Unlock, false))
            {
                tracing::warn!("releasing the BSD lock on inode {ino}: {e}");
            }
        }
        let r = self.timed(
            req,
            "release",
            || format!("{},{}", ino.0, fh.0),
            self.vfs.release(fh.0),
        );
        tracing::debug!(ino = ino.0, fh = fh.0, ok = r.is_ok(), "release");
        self.empty(reply, "release", r)
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.timed(
            req,
            "fsync",
            || format!("{},{},{}", ino.0, fh.0, u8::from(datasync)),
            self.vfs.flush(fh.0),
        );
        self.empty(reply, "fsync", r)
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.timed(
            req,
            "opendir",
            || ino.0.to_string(),
            self.vfs.opendir(self.ino(ino)),
        ) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.timed(
            req,
            "readdir",
            || format!("{},{offset}", ino.0),
            self.vfs.readdir(fh.0, offset, false),
        ) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    if reply.add(
                        INodeNo(self.kino(e.ino)),
                        offset + i as u64 + 1,
                        kind(e.kind),
                        &e.name,
                    ) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(errno("readdir", &e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.timed(
            req,
            "readdirplus",
            || format!("{},{offset}", ino.0),
            self.vfs.readdir(fh.0, offset, true),
        ) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    let attr = match &e.attr {
                        Some(a) => a.clone(),
                        None => match self.rt.block_on(self.vfs.getattr(e.ino)) {
                            Ok(a) => a,
                            Err(err) => return reply.error(errno("readdirplus", &err)),
                        },
                    };
                    let ttl = self.ttl(&attr);
                    if reply.add(
                        INodeNo(self.kino(e.ino)),
                        offset + i as u64 + 1,
                        &e.name,
                        &ttl,
                        &self.attr(e.ino, &attr),
                        Generation(0),
                    ) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(errno("readdirplus", &e)),
        }
    }

    fn releasedir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.timed(
            req,
            "releasedir",
            || ino.0.to_string(),
            self.vfs.releasedir(fh.0),
        );
        self.empty(reply, "releasedir", r)
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every directory change is committed before it is acknowledged.
        reply.ok()
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.timed(req, "statfs", || ino.0.to_string(), self.vfs.statfs()) {
            Ok(s) => {
                let bs = 4096u64;
                reply.statfs(
                    s.total_space / bs,
                    s.avail_space / bs,
                    s.avail_space / bs,
                    s.used_inodes + s.avail_inodes,
                    s.avail_inodes,
                    bs as u32,
                    255,
                    bs as u32,
                )
            }
            Err(e) => reply.error(errno("statfs", &e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let r = self.timed(
            req,
            "setxattr",
            || format!("{},{name},{},{flags}", ino.0, value.len()),
            self.vfs.setxattr(self.ino(ino), name, value, flags),
        );
        self.empty(reply, "setxattr", r)
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.timed(
            req,
            "getxattr",
            || format!("{},{name},{size}", ino.0),
            self.vfs.getxattr(self.ino(ino), name),
        ) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno("getxattr", &e)),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.timed(
            req,
            "listxattr",
            || format!("{},{size}", ino.0),
            self.vfs.listxattr(self.ino(ino)),
        ) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(n.as_bytes());
                    buf.push(0);
                }
                if size == 0 {
                    reply.size(buf.len() as u32)
                } else if buf.len() > size as usize {
                    reply.error(Errno::ERANGE)
                } else {
                    reply.data(&buf)
                }
            }
            Err(e) => reply.error(errno("listxattr", &e)),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let r = self.timed(
            req,
            "removexattr",
            || format!("{},{name}", ino.0),
            self.vfs.removexattr(self.ino(ino), name),
        );
        self.empty(reply, "removexattr", r)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let perm = (mode & !umask & 0o7777) as u16;
        match self.timed(
            req,
            "create",
            || format!("{},{name},{mode:o},{flags:#x}", parent.0),
            self.vfs
                .create(self.ino(parent), name, perm, flags, caller(req)),
        ) {
            Ok((ino, a, fh)) => {
                tracing::debug!(ino, fh, "create");
                reply.created(
                    &self.ttl(&a),
                    &self.attr(ino, &a),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            }
            Err(e) => reply.error(errno("create", &e)),
        }
    }

    fn getlk(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let Some(ltype) = LockType::from_libc(typ) else {
            return reply.error(Errno::EINVAL);
        };
        let want = PlockRecord {
            ltype,
            pid,
            start,
            end,
        };
        match self.timed(
            req,
            "getlk",
            || format!("{},{:#x},{typ},{start},{end},{pid}", ino.0, lock_owner.0),
            self.vfs.getlk(self.ino(ino), lock_owner.0, want),
        ) {
            Ok(Some(c)) => reply.locked(c.start, c.end, c.ltype.to_libc(), c.pid),
            Ok(None) => reply.locked(start, end, libc::F_UNLCK, 0),
            Err(e) => reply.error(errno("getlk", &e)),
        }
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let Some(ltype) = LockType::from_libc(typ) else {
            return reply.error(Errno::EINVAL);
        };
        let rec = PlockRecord {
            ltype,
            pid,
            start,
            end,
        };
        let r = self.timed(
            req,
            if sleep { "setlkw" } else { "setlk" },
            || format!("{},{:#x},{typ},{start},{end},{pid}", ino.0, lock_owner.0),
            self.vfs.setlk(self.ino(ino), lock_owner.0, rec, sleep),
        );
        if r.is_ok()
            && ltype != LockType::Unlock
            && let Ok(mut s) = self.lock_owners.lock()
        {
            s.insert((self.ino(ino), lock_owner.0));
        }
        self.empty(reply, "setlk", r)
    }

    fn flock(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        typ: i32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let Some(ltype) = LockType::from_libc(typ) else {
            return reply.error(Errno::EINVAL);
        };
        let kino = ino.0;
        let ino = self.ino(ino);
        let r = self.timed(
            req,
            "flock",
            || format!("{kino},{:#x},{typ},{}", lock_owner.0, u8::from(sleep)),
            self.vfs.flock(ino, lock_owner.0, ltype, sleep),
        );
        if let Ok(mut s) = self.flock_owners.lock() {
            match (&r, ltype) {
                (Ok(()), LockType::Unlock) => {
                    s.remove(&(ino, lock_owner.0));
                }
                (Ok(()), _) => {
                    s.insert((ino, lock_owner.0));
                }
                _ => {}
            }
        }
        self.empty(reply, "flock", r)
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let r = self.timed(
            req,
            "fallocate",
            || format!("{},{mode},{offset},{length}", ino.0),
            self.vfs.fallocate(fh.0, mode, offset, length),
        );
        self.empty(reply, "fallocate", r)
    }
}
