//! The JuiceFS 0.14 Redis key schema, exactly as the reference client names things, so both
//! clients can share one database:
//!
//! | key | type | content |
//! |---|---|---|
//! | `setting` | string | format JSON |
//! | `nextinode`, `nextchunk`, `nextsession` | string | last id handed out |
//! | `usedSpace`, `totalInodes` | string | counters, updated inside each transaction |
//! | `sessions` | zset | sid -> last heartbeat (unix seconds) |
//! | `sessionInfos` | hash | sid -> session JSON |
//! | `session{sid}` | set | inodes unlinked while this session kept them open |
//! | `locked{sid}` | set | `lockf{ino}`/`lockp{ino}` keys this session ever locked |
//! | `i{ino}` | string | attributes (see `attr.rs`) |
//! | `d{ino}` | hash | name -> type u8 + inode u64 BE |
//! | `c{ino}_{indx}` | list | 24-byte slice records, oldest first |
//! | `sliceRef` | hash | `k{id}_{size}` -> references - 1 (absent: one reference) |
//! | `s{ino}` | string | symlink target |
//! | `x{ino}` | hash | xattr name -> value |
//! | `lockf{ino}` / `lockp{ino}` | hash | `{sid}_{owner %016X}` -> `R`/`W` / plock records |
//! | `delfiles` | zset | `{ino}:{length}` -> unix seconds of the unlink |
//!
//! Plain string keys `k{id}_{size}` at -1 are left behind by the reference's chunk
//! compaction (it decrements those instead of `sliceRef`); nothing reads them.

use crate::meta::{FileKind, Ino, MetaError, Result};

pub const SETTING: &str = "setting";
pub const NEXT_INODE: &str = "nextinode";
pub const NEXT_CHUNK: &str = "nextchunk";
pub const NEXT_SESSION: &str = "nextsession";
pub const USED_SPACE: &str = "usedSpace";
pub const TOTAL_INODES: &str = "totalInodes";
/// Guards the hourly scan of `sliceRef` so that only one client does it.
pub const NEXT_CLEANUP_SLICES: &str = "nextCleanupSlices";
pub const SESSIONS: &str = "sessions";
pub const SESSION_INFOS: &str = "sessionInfos";
pub const DELFILES: &str = "delfiles";
pub const SLICE_REFS: &str = "sliceRef";

pub fn inode(ino: Ino) -> String {
    format!("i{ino}")
}
pub fn entries(ino: Ino) -> String {
    format!("d{ino}")
}
pub fn chunk(ino: Ino, indx: u32) -> String {
    format!("c{ino}_{indx}")
}
pub fn symlink(ino: Ino) -> String {
    format!("s{ino}")
}
pub fn xattrs(ino: Ino) -> String {
    format!("x{ino}")
}
pub fn flock(ino: Ino) -> String {
    format!("lockf{ino}")
}
pub fn plock(ino: Ino) -> String {
    format!("lockp{ino}")
}
pub fn sustained(sid: u64) -> String {
    format!("session{sid}")
}
pub fn locked(sid: u64) -> String {
    format!("locked{sid}")
}
/// Field of a slice in the `sliceRef` hash.
pub fn slice_ref(id: u64, size: u32) -> String {
    format!("k{id}_{size}")
}
/// Field of a lock holder in `lockf{ino}` / `lockp{ino}`.
pub fn lock_owner(sid: u64, owner: u64) -> String {
    format!("{sid}_{owner:016X}")
}
pub fn delfile_member(ino: Ino, length: u64) -> String {
    format!("{ino}:{length}")
}

/// `{ino}:{length}`; older clients wrote `{ino}:{sid}:{length}` and very old ones `{ino}`
/// (length unknown: the reference assumes 1 GiB worth of chunks, as we do).
pub fn parse_delfile_member(m: &str) -> Option<(Ino, u64)> {
    let ps: Vec<&str> = m.split(':').collect();
    let ino = ps.first()?.parse().ok()?;
    let len = match ps.len() {
        1 => 1 << 30,
        2 => ps[1].parse().ok()?,
        _ => ps[2].parse().ok()?,
    };
    Some((ino, len))
}

/// `k{id}_{size}` back to the slice it names.
pub fn parse_slice_ref(field: &str) -> Option<(u64, u32)> {
    let (id, size) = field.strip_prefix('k')?.split_once('_')?;
    Some((id.parse().ok()?, size.parse().ok()?))
}

pub fn pack_entry(kind: FileKind, ino: Ino) -> [u8; 9] {
    let mut b = [0u8; 9];
    b[0] = kind as u8;
    b[1..].copy_from_slice(&ino.to_be_bytes());
    b
}

pub fn parse_entry(name: &str, buf: &[u8]) -> Result<(Ino, FileKind)> {
    let bad = || MetaError::Corrupt(format!("directory entry {name:?} is malformed: {buf:02x?}"));
    if buf.len() != 9 {
        return Err(bad());
    }
    let kind = FileKind::from_code(buf[0] as i64).ok_or_else(bad)?;
    let mut ino = [0u8; 8];
    ino.copy_from_slice(&buf[1..]);
    Ok((u64::from_be_bytes(ino), kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_reference() {
        assert_eq!(chunk(7, 0), "c7_0");
        assert_eq!(lock_owner(1, 0xC91703C417267D6E), "1_C91703C417267D6E");
        assert_eq!(lock_owner(12, 5), "12_0000000000000005");
        assert_eq!(slice_ref(3, 7), "k3_7");
        assert_eq!(parse_slice_ref("k3_7"), Some((3, 7)));
        assert_eq!(parse_delfile_member("9:4096"), Some((9, 4096)));
        assert_eq!(parse_delfile_member("9:2:4096"), Some((9, 4096)));
        assert_eq!(parse_delfile_member("9"), Some((9, 1 << 30)));
    }

    #[test]
    fn entries_round_trip() {
        // "d1" of a reference volume: a directory at inode 2.
        let e = pack_entry(FileKind::Dir, 2);
        assert_eq!(e, [2, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(parse_entry("d", &e).unwrap(), (2, FileKind::Dir));
        assert!(parse_entry("d", &e[..8]).is_err());
    }
}
