//! Rules every engine applies the same way, so that the SQL and Redis engines (and the
//! reference client beside them) agree: name checks, space accounting, statfs figures,
//! which format changes need `--force`.

use super::{Attr, Format, MetaError, Result, StatFs, now_nanos};

const MAX_NAME: usize = 255;

pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(MetaError::Invalid(format!("bad file name {name:?}")));
    }
    if name.len() > MAX_NAME {
        return Err(MetaError::Invalid(format!(
            "file name longer than {MAX_NAME} bytes"
        )));
    }
    Ok(())
}

pub fn check_xattr_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(MetaError::Invalid(format!("bad xattr name {name:?}")));
    }
    Ok(())
}

/// Largest extended attribute value (JuiceFS's limit, the kernel's too).
const MAX_XATTR_VALUE: usize = 65536;

/// A name and value setxattr may store.
pub fn check_setxattr(name: &str, value: &[u8]) -> Result<()> {
    check_xattr_name(name)?;
    if value.len() > MAX_XATTR_VALUE {
        return Err(MetaError::Range);
    }
    Ok(())
}

/// The fallocate(2) modes both engines serve (0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE,
/// ZERO_RANGE); returns the end of the range.
pub fn check_fallocate(mode: i32, off: u64, len: u64) -> Result<u64> {
    let supported =
        libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
    if mode & !supported != 0 {
        return Err(MetaError::Invalid(format!(
            "fallocate mode {mode:#x} is not supported"
        )));
    }
    if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 && mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
        return Err(MetaError::Invalid("PUNCH_HOLE needs KEEP_SIZE".into()));
    }
    off.checked_add(len)
        .ok_or(MetaError::Invalid("range overflows".into()))
}

/// What fallocate does to a file's attributes, inside the engine's transaction: grows it
/// to `end` unless KEEP_SIZE, touches mtime and ctime. Returns the range `(off, len)` whose
/// data must read as zeros afterwards (PUNCH_HOLE, ZERO_RANGE), if any.
pub fn apply_fallocate(a: &mut Attr, mode: i32, off: u64, end: u64) -> Option<(u64, u64)> {
    let mut zero = None;
    if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
        let zero_end = end.min(a.length);
        if zero_end > off {
            zero = Some((off, zero_end - off));
        }
    }
    if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > a.length {
        a.length = end;
    }
    let now = now_nanos();
    a.mtime = now;
    a.ctime = now;
    zero
}

/// Space a file of `len` bytes is charged: JuiceFS rounds up to 4 KiB, and an empty file
/// (or any other inode) costs one 4 KiB unit.
pub fn align4k(len: u64) -> i64 {
    if len == 0 {
        return 4096;
    }
    (len.div_ceil(4096) * 4096) as i64
}

pub fn unix_secs() -> i64 {
    now_nanos() / 1_000_000_000
}

/// Settings that may change on an existing volume without `--force`.
pub fn same_volume(old: &Format, new: &Format) -> bool {
    let mut a = old.clone();
    let mut b = new.clone();
    for f in [&mut a, &mut b] {
        f.capacity = 0;
        f.inodes = 0;
        f.access_key.clear();
        f.secret_key.clear();
    }
    b.uuid = a.uuid.clone();
    a == b
}

/// The figures `statfs` shows, as JuiceFS computes them: used space rounded up to 64 KiB;
/// an unlimited volume shows 1 PiB, doubled while it would be more than 80 % full.
pub fn statfs(used_space: i64, used_inodes: i64, f: Option<&Format>) -> StatFs {
    let used_space = used_space.max(0) as u64;
    let used_inodes = used_inodes.max(0) as u64;
    let capacity = f.map_or(0, |f| f.capacity);
    let inodes = f.map_or(0, |f| f.inodes);
    let used_space = ((used_space >> 16) + 1) << 16;
    let total_space = if capacity > 0 {
        capacity.max(used_space)
    } else {
        let mut t = 1u64 << 50;
        while t.saturating_mul(8) < used_space.saturating_mul(10) {
            t *= 2;
        }
        t
    };
    let avail_inodes = if inodes > 0 {
        inodes.saturating_sub(used_inodes)
    } else {
        10 << 20
    };
    StatFs {
        total_space,
        avail_space: total_space.saturating_sub(used_space),
        used_inodes,
        avail_inodes,
    }
}

/// Refuses a new inode or more space when the volume's quota would be exceeded.
pub fn check_quota(f: &Format, used: (i64, i64), add: (i64, i64)) -> Result<()> {
    let (space, inodes) = add;
    if space > 0 && f.capacity > 0 && used.0 + space > f.capacity as i64 {
        return Err(MetaError::NoSpace("volume capacity reached"));
    }
    if inodes > 0 && f.inodes > 0 && used.1 + inodes > f.inodes as i64 {
        return Err(MetaError::NoSpace("volume inode limit reached"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_is_charged_in_4k_units() {
        assert_eq!(align4k(0), 4096);
        assert_eq!(align4k(1), 4096);
        assert_eq!(align4k(4097), 8192);
    }

    #[test]
    fn unlimited_volume_grows_its_reported_size() {
        let s = statfs(0, 0, None);
        assert_eq!(s.total_space, 1 << 50);
        assert_eq!(s.avail_inodes, 10 << 20);
        let s = statfs(9 << 47, 5, None);
        assert_eq!(s.total_space, 1 << 51);
        assert_eq!(s.used_inodes, 5);
    }
}
