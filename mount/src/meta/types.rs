//! Plain data shared by every metadata engine: inode attributes, directory entries,
//! slices, and the time units of the JuiceFS schema. No I/O here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;
/// The `.trash` directory (`--trash-days`), at JuiceFS 1.x's inode: above every inode
/// the counters hand out, beside the virtual files.
pub const TRASH_INO: Ino = 0x7FFF_FFFF_1000_0000;
/// JuiceFS chunks are fixed 64 MiB windows of a file.
pub const CHUNK_SIZE: u64 = 64 << 20;

/// File type codes as stored in `jfs_node.type` / `jfs_edge.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    BlockDev = 5,
    CharDev = 6,
    Socket = 7,
}

impl FileKind {
    pub fn from_code(code: i64) -> Option<FileKind> {
        Some(match code {
            1 => FileKind::File,
            2 => FileKind::Dir,
            3 => FileKind::Symlink,
            4 => FileKind::Fifo,
            5 => FileKind::BlockDev,
            6 => FileKind::CharDev,
            7 => FileKind::Socket,
            _ => return None,
        })
    }

    /// Kind from the `S_IFMT` bits of a mode given to mknod.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFBLK => FileKind::BlockDev,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }
}

/// Timestamps are kept as nanoseconds since the epoch; the SQL schema stores microseconds.
pub type Nanos = i64;

pub fn now_nanos() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn nanos_to_system(n: Nanos) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

pub fn system_to_nanos(t: SystemTime) -> Nanos {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky (`0o7777`).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: Nanos,
    pub mtime: Nanos,
    pub ctime: Nanos,
    pub nlink: u32,
    pub length: u64,
    pub rdev: u32,
    pub parent: Ino,
    pub flags: u8,
}

impl Attr {
    pub fn new(kind: FileKind, mode: u16, uid: u32, gid: u32) -> Attr {
        let now = now_nanos();
        Attr {
            kind,
            mode,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            nlink: 1,
            length: 0,
            rdev: 0,
            parent: 0,
            flags: 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: String,
    pub ino: Ino,
    pub kind: FileKind,
    pub attr: Option<Attr>,
}

/// One reference to (part of) a slice inside a chunk: the 24-byte record of `jfs_chunk.slices`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Offset of this piece inside the chunk.
    pub pos: u32,
    /// Slice id (0 = a hole of zeros).
    pub id: u64,
    /// Full length of the slice object data.
    pub size: u32,
    /// Offset of the used range inside the slice.
    pub off: u32,
    /// Length of the used range.
    pub len: u32,
}

/// Which attributes a setattr call changes.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub size: Option<u64>,
}

impl SetAttr {
    /// Applies the owner, mode and time changes (not `size`, which truncates) to `a` at
    /// time `now`; ctime always moves.
    pub fn apply(&self, a: &mut Attr, now: Nanos) {
        if let Some(m) = self.mode {
            a.mode = m & 0o7777;
        }
        if let Some(u) = self.uid {
            a.uid = u;
        }
        if let Some(g) = self.gid {
            a.gid = g;
        }
        if let Some(t) = self.atime {
            a.atime = t.resolve(now);
        }
        if let Some(t) = self.mtime {
            a.mtime = t.resolve(now);
        }
        a.ctime = now;
    }
}

#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    Now,
    At(Nanos),
}

impl TimeSet {
    pub fn resolve(self, now: Nanos) -> Nanos {
        match self {
            TimeSet::Now => now,
            TimeSet::At(t) => t,
        }
    }
}

/// Caller identity, used for ownership of new inodes and permission decisions that the
/// kernel's `default_permissions` does not cover (sticky directories).
#[derive(Clone, Copy, Debug, Default)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    Replace,
    NoReplace,
    Exchange,
}

#[derive(Clone, Debug, Default)]
pub struct StatFs {
    pub total_space: u64,
    pub avail_space: u64,
    pub used_inodes: u64,
    pub avail_inodes: u64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct SessionInfo {
    pub version: String,
    pub hostname: String,
    pub mount_point: String,
    #[serde(rename = "ProcessID")]
    pub process_id: u32,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub sid: u64,
    /// Unix seconds of the last heartbeat.
    pub heartbeat: i64,
    pub info: Option<SessionInfo>,
}

/// Lock types shared by BSD (flock) and POSIX (fcntl) locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockType {
    Read,
    Write,
    Unlock,
}

impl LockType {
    pub fn from_libc(t: i32) -> Option<LockType> {
        match t {
            libc::F_RDLCK => Some(LockType::Read),
            libc::F_WRLCK => Some(LockType::Write),
            libc::F_UNLCK => Some(LockType::Unlock),
            _ => None,
        }
    }
    pub fn to_libc(self) -> i32 {
        match self {
            LockType::Read => libc::F_RDLCK,
            LockType::Write => libc::F_WRLCK,
            LockType::Unlock => libc::F_UNLCK,
        }
    }
}

/// One POSIX lock range held by (sid, owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlockRecord {
    pub ltype: LockType,
    pub pid: u32,
    pub start: u64,
    pub end: u64,
}

/// The `.trash` directory's own node: root-owned, read-only for everyone else, under the
/// root though no entry of the root names it.
pub fn trash_root_attr() -> Attr {
    let mut a = Attr::new(FileKind::Dir, 0o555, 0, 0);
    a.nlink = 2;
    a.length = 4096;
    a.parent = ROOT_INO;
    a
}
