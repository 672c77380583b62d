//! POSIX lock ranges as JuiceFS stores them (24-byte big-endian records: type u32, pid u32,
//! start u64, end u64, `end` inclusive as the kernel gives it) and the rules for merging and
//! conflicts. Both engines keep one record list per (inode, session, owner).

use super::{LockType, PlockRecord};

const PLOCK_BYTES: usize = 24;

/// Plock records: type u32, pid u32, start u64, end u64, big-endian.
pub fn encode_plocks(recs: &[PlockRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(recs.len() * PLOCK_BYTES);
    for r in recs {
        out.extend_from_slice(&(r.ltype.to_libc() as u32).to_be_bytes());
        out.extend_from_slice(&r.pid.to_be_bytes());
        out.extend_from_slice(&r.start.to_be_bytes());
        out.extend_from_slice(&r.end.to_be_bytes());
    }
    out
}

pub fn decode_plocks(buf: &[u8]) -> Vec<PlockRecord> {
    buf.chunks_exact(PLOCK_BYTES)
        .filter_map(|b| {
            let t = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i32;
            Some(PlockRecord {
                ltype: LockType::from_libc(t)?,
                pid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                start: u64::from_be_bytes(b[8..16].try_into().ok()?),
                end: u64::from_be_bytes(b[16..24].try_into().ok()?),
            })
        })
        .collect()
}

/// Replaces `[rec.start, rec.end]` of an owner's ranges with `rec` (or removes it on unlock),
/// merging neighbours of the same type.
pub fn apply_plock(mut recs: Vec<PlockRecord>, rec: PlockRecord) -> Vec<PlockRecord> {
    let mut out: Vec<PlockRecord> = Vec::with_capacity(recs.len() + 2);
    for r in recs.drain(..) {
        if r.end < rec.start || r.start > rec.end {
            out.push(r);
            continue;
        }
        if r.start < rec.start {
            out.push(PlockRecord {
                end: rec.start - 1,
                ..r
            });
        }
        if r.end > rec.end {
            out.push(PlockRecord {
                start: rec.end + 1,
                ..r
            });
        }
    }
    if rec.ltype != LockType::Unlock {
        out.push(rec);
    }
    out.sort_by_key(|r| r.start);
    let mut merged: Vec<PlockRecord> = Vec::with_capacity(out.len());
    for r in out {
        match merged.last_mut() {
            Some(last) if last.ltype == r.ltype && last.end.checked_add(1) == Some(r.start) => {
                last.end = r.end;
            }
            _ => merged.push(r),
        }
    }
    merged
}

/// Two ranges conflict when they overlap and one of them is a write lock.
pub fn conflicts(a: &PlockRecord, b: &PlockRecord) -> bool {
    let overlap = a.start <= b.end && b.start <= a.end;
    overlap && (a.ltype == LockType::Write || b.ltype == LockType::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::LockType;

    fn rec(t: LockType, s: u64, e: u64) -> PlockRecord {
        PlockRecord {
            ltype: t,
            pid: 1,
            start: s,
            end: e,
        }
    }

    #[test]
    fn plock_ranges_split_and_merge() {
        let r = apply_plock(vec![], rec(LockType::Write, 0, 99));
        let r = apply_plock(r, rec(LockType::Unlock, 10, 19));
        assert_eq!(
            r,
            vec![rec(LockType::Write, 0, 9), rec(LockType::Write, 20, 99)]
        );
        let r = apply_plock(r, rec(LockType::Write, 10, 19));
        assert_eq!(r, vec![rec(LockType::Write, 0, 99)]);
        let r = apply_plock(r, rec(LockType::Read, 50, u64::MAX));
        assert_eq!(
            r,
            vec![
                rec(LockType::Write, 0, 49),
                rec(LockType::Read, 50, u64::MAX)
            ]
        );
        assert_eq!(decode_plocks(&encode_plocks(&r)), r);
    }

    #[test]
    fn read_locks_share_write_locks_exclude() {
        assert!(!conflicts(
            &rec(LockType::Read, 0, 10),
            &rec(LockType::Read, 5, 20)
        ));
        assert!(conflicts(
            &rec(LockType::Read, 0, 10),
            &rec(LockType::Write, 5, 20)
        ));
        assert!(!conflicts(
            &rec(LockType::Write, 0, 10),
            &rec(LockType::Write, 11, 20)
        ));
    }
}
