//! File data in metadata: chunk slice lists (`c{ino}_{indx}`, one 24-byte record per list
//! element), appends, truncate, fallocate, and the last close of an unlinked file.

use super::node::{After, decode_records, file_chunks, put_attr, remove_inode, watch_attr};
use super::node::{add_usage, watch_file};
use super::txn::{Tx, txn};
use super::{RedisMeta, keys, poisoned};
use crate::meta::rules::{align4k, apply_fallocate};
use crate::meta::slice::{self, SLICE_BYTES};
use crate::meta::*;

fn record(s: &Slice) -> Vec<u8> {
    let mut b = Vec::with_capacity(SLICE_BYTES);
    slice::encode_one(s, &mut b);
    b
}

/// Beyond this many chunks, `zero_range` asks the server which exist instead of trying all.
const PROBE_LIMIT: u64 = 10_000;

/// Covers `[off, off+len)` with zeros by appending hole slices (id 0) to the chunks that
/// exist; a chunk without a list reads as zeros already. The reference client shrinks files
/// without dropping the data past the end, so any range a file grows over must be zeroed.
async fn zero_range(tx: &mut Tx, ino: Ino, off: u64, len: u64) -> Result<()> {
    let end = off + len;
    if len == 0 {
        return Ok(());
    }
    let (first, last) = (off / CHUNK_SIZE, (end - 1) / CHUNK_SIZE);
    let indexes: Vec<u64> = if last - first < PROBE_LIMIT {
        (first..=last).collect()
    } else {
        existing_chunks(tx, ino, first, last).await?
    };
    for idx in indexes {
        let start = off.max(idx * CHUNK_SIZE);
        let stop = end.min((idx + 1) * CHUNK_SIZE);
        let hole = Slice {
            pos: (start - idx * CHUNK_SIZE) as u32,
            id: 0,
            size: (stop - start) as u32,
            off: 0,
            len: (stop - start) as u32,
        };
        // RPUSHX: only onto a list that exists.
        tx.pipe
            .cmd("RPUSHX")
            .arg(keys::chunk(ino, idx as u32))
            .arg(record(&hole));
    }
    Ok(())
}

/// Chunk indexes in `first..=last` that have a list, found by scanning the key space.
async fn existing_chunks(tx: &mut Tx, ino: Ino, first: u64, last: u64) -> Result<Vec<u64>> {
    let prefix = format!("c{ino}_");
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = tx
            .read(
                ::redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{prefix}*"))
                    .arg("COUNT")
                    .arg(10_000),
            )
            .await?;
        out.extend(
            page.iter()
                .filter_map(|k| k.strip_prefix(&prefix)?.parse::<u64>().ok())
                .filter(|i| (first..=last).contains(i)),
        );
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

impl RedisMeta {
    pub(crate) async fn do_read_chunk(&self, ino: Ino, index: u32) -> Result<Vec<Slice>> {
        let recs: Vec<Vec<u8>> = self
            .conn
            .run(
                ::redis::cmd("LRANGE")
                    .arg(keys::chunk(ino, index))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        decode_records(&recs)
    }

    pub(crate) async fn do_write_slice(
        &self,
        ino: Ino,
        index: u32,
        s: Slice,
        mtime: Nanos,
    ) -> Result<Attr> {
        self.check_writable()?;
        let start = index as u64 * CHUNK_SIZE + s.pos as u64;
        let end = start + s.len as u64;
        let key = keys::inode(ino);
        let (a, _) = txn!(self, &key, |tx| {
            let mut a = watch_attr(&mut tx, ino).await?.ok_or(MetaError::NotFound)?;
            if a.kind != FileKind::File {
                return Err(MetaError::Perm);
            }
            if start > a.length {
                zero_range(&mut tx, ino, a.length, start - a.length).await?;
            }
            tx.pipe
                .cmd("RPUSH")
                .arg(keys::chunk(ino, index))
                .arg(record(&s));
            let old = a.length;
            a.length = a.length.max(end);
            a.mtime = mtime;
            a.ctime = now_nanos();
            put_attr(&mut tx, ino, &a);
            add_usage(&mut tx, align4k(a.length) - align4k(old), 0);
            Ok(a)
        })?;
        Ok(a)
    }

    pub(crate) async fn do_truncate(
        &self,
        ino: Ino,
        length: u64,
    ) -> Result<(Attr, Vec<FreedSlice>)> {
        self.check_writable()?;
        let cur = self.get_attr(ino).await?;
        if length > cur.length {
            self.check_quota(align4k(length) - align4k(cur.length), 0)
                .await?;
        }
        let key = keys::inode(ino);
        let ((a, dropped), replies) = txn!(self, &key, |tx| {
            let mut a = watch_attr(&mut tx, ino).await?.ok_or(MetaError::NotFound)?;
            if a.kind != FileKind::File {
                return Err(MetaError::Perm);
            }
            let old = a.length;
            let mut dropped = None;
            if length < old {
                // Whole chunks past the new end go; the chunk holding the end gets a hole.
                let keep = length.div_ceil(CHUNK_SIZE);
                let gone: Vec<u32> = (keep..old.div_ceil(CHUNK_SIZE)).map(|i| i as u32).collect();
                dropped = Some(Self::drop_chunks(&mut tx, ino, &gone).await?);
                let chunk_end = (keep * CHUNK_SIZE).min(old);
                zero_range(&mut tx, ino, length, chunk_end.saturating_sub(length)).await?;
            } else {
                zero_range(&mut tx, ino, old, length - old).await?;
            }
            a.length = length;
            let now = now_nanos();
            a.mtime = now;
            a.ctime = now;
            put_attr(&mut tx, ino, &a);
            add_usage(&mut tx, align4k(length) - align4k(old), 0);
            Ok((a, dropped))
        })?;
        let freed = match dropped {
            Some(d) => d.freed(&replies)?,
            None => Vec::new(),
        };
        Ok((a, freed))
    }

    pub(crate) async fn do_fallocate(
        &self,
        ino: Ino,
        mode: i32,
        off: u64,
        len: u64,
    ) -> Result<Attr> {
        self.check_writable()?;
        let end = crate::meta::rules::check_fallocate(mode, off, len)?;
        let cur = self.get_attr(ino).await?;
        if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > cur.length {
            self.check_quota(align4k(end) - align4k(cur.length), 0)
                .await?;
        }
        let key = keys::inode(ino);
        let (a, _) = txn!(self, &key, |tx| {
            let mut a = watch_attr(&mut tx, ino).await?.ok_or(MetaError::NotFound)?;
            if a.kind != FileKind::File {
                return Err(MetaError::Perm);
            }
            let old = a.length;
            if let Some((at, len)) = apply_fallocate(&mut a, mode, off, end) {
                zero_range(&mut tx, ino, at, len).await?;
            }
            put_attr(&mut tx, ino, &a);
            add_usage(&mut tx, align4k(a.length) - align4k(old), 0);
            Ok(a)
        })?;
        Ok(a)
    }

    pub(crate) async fn do_close(&self, ino: Ino) -> Result<Vec<FreedSlice>> {
        let last = self.open_files.close(ino)?;
        if !last || self.read_only {
            return Ok(Vec::new());
        }
        // Only files this session unlinked while open are sustained, and it knows which.
        if !self.sustained.lock().map_err(poisoned)?.remove(&ino) {
            return Ok(Vec::new());
        }
        self.release_sustained(self.sid(), ino).await
    }

    /// Deletes a file session `sid` kept after its last link went, and forgets it.
    pub(crate) async fn release_sustained(&self, sid: u64, ino: Ino) -> Result<Vec<FreedSlice>> {
        let key = keys::inode(ino);
        let (after, replies) = txn!(self, &key, |tx| {
            let (a, first) = watch_file(&mut tx, ino).await?;
            let after = match a {
                Some(a) if a.nlink == 0 => {
                    let chunks = file_chunks(&mut tx, ino, a.length, first).await?;
                    remove_inode(&mut tx, ino, &a, now_nanos(), chunks)
                }
                _ => After::Nothing,
            };
            tx.pipe.cmd("SREM").arg(keys::sustained(sid)).arg(ino);
            Ok(after)
        })?;
        self.after(after, &replies).await
    }
}
