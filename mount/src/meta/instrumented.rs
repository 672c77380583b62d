//! `Instrumented` wraps any engine and times each metadata operation for
//! `juicefs_meta_ops_*`, as JuiceFS's base layer does, so the engines stay free of metrics.
//! The forwarding is generated: one line per trait method.

use super::*;
use crate::metrics::METRICS;
use std::time::Instant;

pub struct Instrumented(pub Arc<dyn Meta>);

macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Meta for Instrumented {
            fn name(&self) -> &'static str {
                self.0.name()
            }
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    let start = Instant::now();
                    let r = self.0.$name($($arg),*).await;
                    METRICS.meta_op(stringify!($name), start.elapsed());
                    r
                }
            )*
        }
    };
}

forward! {
    load_format() -> Format;
    init(format: &Format, force: bool) -> ();
    new_session(info: &SessionInfo) -> u64;
    refresh_session(sid: u64) -> ();
    close_session(sid: u64) -> Vec<FreedSlice>;
    list_sessions() -> Vec<Session>;
    clean_stale_sessions(stale_before: i64) -> Vec<FreedSlice>;
    lookup(parent: Ino, name: &str) -> (Ino, Attr);
    getattr(ino: Ino) -> Attr;
    setattr(ino: Ino, set: &SetAttr, caller: Caller) -> Attr;
    truncate(ino: Ino, length: u64) -> (Attr, Vec<FreedSlice>);
    fallocate(ino: Ino, mode: i32, off: u64, len: u64) -> Attr;
    mknod(
        parent: Ino,
        name: &str,
        kind: FileKind,
        mode: u16,
        rdev: u32,
        symlink_target: Option<&str>,
        caller: Caller
    ) -> (Ino, Attr);
    unlink(parent: Ino, name: &str, caller: Caller) -> Vec<FreedSlice>;
    rmdir(parent: Ino, name: &str, caller: Caller) -> ();
    rename(
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        mode: RenameMode,
        caller: Caller
    ) -> Vec<FreedSlice>;
    link(ino: Ino, parent: Ino, name: &str) -> Attr;
    readlink(ino: Ino) -> String;
    readdir(ino: Ino, plus: bool) -> Vec<DirEntry>;
    open(ino: Ino) -> Attr;
    close(ino: Ino) -> Vec<FreedSlice>;
    read_chunk(ino: Ino, index: u32) -> Vec<Slice>;
    new_slice_id() -> u64;
    write_slice(ino: Ino, index: u32, slice: Slice, mtime: Nanos) -> Attr;
    statfs() -> StatFs;
    getxattr(ino: Ino, name: &str) -> Vec<u8>;
    listxattr(ino: Ino) -> Vec<String>;
    setxattr(ino: Ino, name: &str, value: &[u8], flags: i32) -> ();
    removexattr(ino: Ino, name: &str) -> ();
    flock(ino: Ino, owner: u64, ltype: LockType) -> ();
    getlk(ino: Ino, owner: u64, want: PlockRecord) -> Option<PlockRecord>;
    setlk(ino: Ino, owner: u64, rec: PlockRecord) -> ();
    cleanup_deleted_files() -> Vec<FreedSlice>;
    flush_stats() -> ();
    replace_slices(ino: Ino, index: u32, old: &[Slice], new: Slice) -> Vec<FreedSlice>;
    list_slices() -> Vec<(u64, u32)>;
    pending_deletions() -> u64;
    create_trash_root() -> ();
}
