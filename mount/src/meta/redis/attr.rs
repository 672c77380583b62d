//! The binary attribute record under `i{ino}`, big-endian as JuiceFS 0.14 writes it:
//! flags u8, (type << 12 | mode & 0o7777) u16, uid u32, gid u32, then atime, mtime, ctime
//! each as seconds u64 + nanoseconds u32, nlink u32, length u64, rdev u32, parent u64.
//! That is 71 bytes; the reference stores 72 (its buffer has one spare byte at the end),
//! and so do we, so the two clients' records are byte-identical.

use crate::meta::{Attr, FileKind, MetaError, Nanos, Result};

const USED: usize = 71;
pub const STORED: usize = 72;
/// Records of very old clients end before `parent`.
const WITHOUT_PARENT: usize = 63;

fn split_time(t: Nanos) -> (i64, u32) {
    (
        t.div_euclid(1_000_000_000),
        t.rem_euclid(1_000_000_000) as u32,
    )
}

pub fn encode(a: &Attr) -> Vec<u8> {
    let mut b = Vec::with_capacity(STORED);
    b.push(a.flags);
    b.extend_from_slice(&(((a.kind as u16) << 12) | (a.mode & 0o7777)).to_be_bytes());
    b.extend_from_slice(&a.uid.to_be_bytes());
    b.extend_from_slice(&a.gid.to_be_bytes());
    for t in [a.atime, a.mtime, a.ctime] {
        let (s, ns) = split_time(t);
        b.extend_from_slice(&s.to_be_bytes());
        b.extend_from_slice(&ns.to_be_bytes());
    }
    b.extend_from_slice(&a.nlink.to_be_bytes());
    b.extend_from_slice(&a.length.to_be_bytes());
    b.extend_from_slice(&a.rdev.to_be_bytes());
    b.extend_from_slice(&a.parent.to_be_bytes());
    debug_assert_eq!(b.len(), USED);
    b.resize(STORED, 0);
    b
}

/// Reads big-endian integers off the front of a record.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.0[..N]);
        self.0 = &self.0[N..];
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    fn time(&mut self) -> Nanos {
        let s = self.u64() as i64;
        let ns = self.u32() as i64;
        s.saturating_mul(1_000_000_000).saturating_add(ns)
    }
}

pub fn decode(ino: u64, buf: &[u8]) -> Result<Attr> {
    if buf.len() < WITHOUT_PARENT {
        return Err(MetaError::Corrupt(format!(
            "attributes of inode {ino} have {} bytes, expected {STORED}",
            buf.len()
        )));
    }
    let mut r = Reader(buf);
    let flags = r.take::<1>()[0];
    let mode = u16::from_be_bytes(r.take());
    let kind = FileKind::from_code((mode >> 12) as i64).ok_or_else(|| {
        MetaError::Corrupt(format!("inode {ino} has unknown type {}", mode >> 12))
    })?;
    let uid = r.u32();
    let gid = r.u32();
    let atime = r.time();
    let mtime = r.time();
    let ctime = r.time();
    let nlink = r.u32();
    let length = r.u64();
    let rdev = r.u32();
    let parent = if r.0.len() >= 8 { r.u64() } else { 0 };
    Ok(Attr {
        kind,
        mode: mode & 0o7777,
        uid,
        gid,
        atime,
        mtime,
        ctime,
        nlink,
        length,
        rdev,
        parent,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn root_written_by_the_reference() {
        // `GET i1` right after `juicefs format` (0.14.2).
        let raw = unhex(
            "0021 ff00 0000 0000 0000 0000 0000 006b 02fa 2900 0000 0000 0000 006b 02fa 2900
             0000 0000 0000 006b 02fa 2900 0000 0000 0000 0200 0000 0000 0010 0000 0000 0000
             0000 0000 0000 0100",
        );
        let a = decode(1, &raw).unwrap();
        assert_eq!(a.kind, FileKind::Dir);
        assert_eq!(a.mode, 0o777);
        assert_eq!((a.nlink, a.length, a.parent), (2, 4096, 1));
        assert_eq!(a.mtime, 0x6b02_fa29 * 1_000_000_000);
        assert_eq!(encode(&a), raw, "byte-identical round trip");
    }

    #[test]
    fn setuid_bits_nanoseconds_and_short_records() {
        let mut a = Attr::new(FileKind::File, 0o4755, 1000, 2000);
        a.mtime = 1_600_000_000_123_456_789;
        a.atime = -1_500_000_000;
        a.length = 1 << 40;
        let b = encode(&a);
        assert_eq!(b.len(), STORED);
        assert_eq!(decode(2, &b).unwrap(), a);
        assert_eq!(decode(2, &b[..WITHOUT_PARENT]).unwrap().parent, 0);
        assert!(decode(2, &b[..10]).is_err());
    }
}
