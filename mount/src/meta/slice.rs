//! The slice list of a chunk: its 24-byte big-endian encoding in `jfs_chunk.slices`
//! (pos u32, id u64, size u32, off u32, len u32) and the "newest slice wins" view that
//! readers build from it.

use super::types::Slice;

pub const SLICE_BYTES: usize = 24;

pub fn encode_one(s: &Slice, out: &mut Vec<u8>) {
    out.extend_from_slice(&s.pos.to_be_bytes());
    out.extend_from_slice(&s.id.to_be_bytes());
    out.extend_from_slice(&s.size.to_be_bytes());
    out.extend_from_slice(&s.off.to_be_bytes());
    out.extend_from_slice(&s.len.to_be_bytes());
}

pub fn encode(slices: &[Slice]) -> Vec<u8> {
    let mut out = Vec::with_capacity(slices.len() * SLICE_BYTES);
    for s in slices {
        encode_one(s, &mut out);
    }
    out
}

/// Decodes a slice list; a trailing partial record means a corrupt row and is reported.
pub fn decode(buf: &[u8]) -> Result<Vec<Slice>, String> {
    if !buf.len().is_multiple_of(SLICE_BYTES) {
        return Err(format!(
            "chunk slice list has {} bytes, not a multiple of {SLICE_BYTES}",
            buf.len()
        ));
    }
    Ok(buf
        .chunks_exact(SLICE_BYTES)
        .map(|b| Slice {
            pos: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            id: u64::from_be_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]),
            size: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            off: u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
            len: u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
        })
        .collect())
}

/// Resolves a slice list (oldest first) into non-overlapping pieces sorted by position,
/// later slices covering earlier ones. Gaps between pieces are not filled: a reader treats
/// any range without a piece as zeros.
pub fn build_view(slices: &[Slice]) -> Vec<Slice> {
    let mut view: Vec<Slice> = Vec::new();
    for s in slices {
        if s.len == 0 {
            continue;
        }
        let (start, end) = (s.pos as u64, s.pos as u64 + s.len as u64);
        let mut next: Vec<Slice> = Vec::with_capacity(view.len() + 2);
        for p in view.drain(..) {
            let (ps, pe) = (p.pos as u64, p.pos as u64 + p.len as u64);
            if pe <= start || ps >= end {
                next.push(p);
                continue;
            }
            if ps < start {
                next.push(Slice {
                    len: (start - ps) as u32,
                    ..p
                });
            }
            if pe > end {
                let cut = end - ps;
                next.push(Slice {
                    pos: end as u32,
                    off: p.off + cut as u32,
                    len: (pe - end) as u32,
                    ..p
                });
            }
        }
        next.push(*s);
        next.sort_by_key(|p| p.pos);
        view = next;
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sl(pos: u32, id: u64, size: u32, off: u32, len: u32) -> Slice {
        Slice {
            pos,
            id,
            size,
            off,
            len,
        }
    }

    #[test]
    fn encoding_matches_reference_bytes() {
        // Taken from a chunk row the reference client wrote: a 10 MB slice, then 2 bytes at 100.
        let hex = "000000000000000000000002009896800000000000989680\
                   000000640000000000000003000000020000000000000002";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let slices = decode(&bytes).unwrap();
        assert_eq!(
            slices,
            vec![sl(0, 2, 10_000_000, 0, 10_000_000), sl(100, 3, 2, 0, 2)]
        );
        assert_eq!(encode(&slices), bytes);
    }

    #[test]
    fn partial_record_is_an_error() {
        assert!(decode(&[0u8; 25]).unwrap_err().contains("25 bytes"));
    }

    #[test]
    fn newest_slice_wins() {
        let v = build_view(&[sl(0, 1, 100, 0, 100), sl(10, 2, 5, 0, 5)]);
        assert_eq!(
            v,
            vec![
                sl(0, 1, 100, 0, 10),
                sl(10, 2, 5, 0, 5),
                sl(15, 1, 100, 15, 85)
            ]
        );
        // A later slice covering everything hides the rest.
        let v = build_view(&[
            sl(0, 1, 100, 0, 100),
            sl(10, 2, 5, 0, 5),
            sl(0, 3, 200, 0, 200),
        ]);
        assert_eq!(v, vec![sl(0, 3, 200, 0, 200)]);
    }

    #[test]
    fn holes_and_truncation_pieces() {
        // id 0 pieces (from truncate) hide data beneath them.
        let v = build_view(&[sl(0, 1, 100, 0, 100), sl(50, 0, 50, 0, 50)]);
        assert_eq!(v, vec![sl(0, 1, 100, 0, 50), sl(50, 0, 50, 0, 50)]);
    }
}
