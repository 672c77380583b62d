//! Deleting file data: chunk lists go, each slice loses one reference in `sliceRef`, and a
//! slice whose count drops below zero (the hash stores references - 1) is freed for the
//! caller to delete its objects. Also the background queues: `delfiles` entries left by a
//! client that died before deleting the data, and `sliceRef` entries left negative.

use super::node::decode_records;
use super::txn::{Tx, txn, watching};
use super::{RedisMeta, keys};
use crate::meta::rules::unix_secs;
use crate::meta::*;

/// The reference client only takes `delfiles` entries older than this, so that it does not
/// race the client still deleting them; we wait as long.
const DELFILE_GRACE_SECS: i64 = 3600;
/// `sliceRef` is scanned for leftovers at most this often by all clients together.
const SLICE_CLEANUP_EVERY: i64 = 3600;
const BATCH: usize = 1000;

/// Takes one reference from each slice named in ARGV and removes the entries that fall
/// below zero, answering their (1-based) positions: the slices now free. Run inside the
/// MULTI block, so the decrement and its consequence are one step.
const DEREF: &str = "local freed = {} \
    for i, f in ipairs(ARGV) do \
      if redis.call('HINCRBY', KEYS[1], f, -1) < 0 then \
        redis.call('HDEL', KEYS[1], f) freed[#freed + 1] = i \
      end \
    end \
    return freed";

/// Slices that lost a reference in a transaction, and where EXEC's answer about them is.
pub struct Deref {
    slices: Vec<Slice>,
    reply: Option<usize>,
}

/// Queues one reference decrement for each slice (holes, id 0, have no references).
pub fn queue_deref(tx: &mut Tx, mut slices: Vec<Slice>) -> Deref {
    slices.retain(|s| s.id > 0);
    if slices.is_empty() {
        return Deref {
            slices,
            reply: None,
        };
    }
    let reply = tx.next_reply();
    tx.pipe.cmd("EVAL").arg(DEREF).arg(1).arg(keys::SLICE_REFS);
    for s in &slices {
        tx.pipe.arg(keys::slice_ref(s.id, s.size));
    }
    Deref {
        slices,
        reply: Some(reply),
    }
}

impl Deref {
    /// After the commit: the slices nobody references any more.
    pub fn freed(&self, replies: &[::redis::Value]) -> Result<Vec<FreedSlice>> {
        let Some(i) = self.reply else {
            return Ok(Vec::new());
        };
        let positions: Vec<usize> = match replies.get(i) {
            Some(v) => ::redis::from_redis_value(v.clone())
                .map_err(|e| MetaError::Db(format!("slice reference update: {e}")))?,
            None => return Err(MetaError::Db("EXEC answered too few replies".into())),
        };
        Ok(positions
            .into_iter()
            .filter_map(|p| self.slices.get(p.wrapping_sub(1)))
            .map(|s| FreedSlice {
                id: s.id,
                size: s.size,
            })
            .collect())
    }
}

impl RedisMeta {
    /// Inside a transaction: watches and reads the chunk lists `idxs` of `ino`, and queues
    /// their deletion with one reference decrement per slice.
    pub(crate) async fn drop_chunks(tx: &mut Tx, ino: Ino, idxs: &[u32]) -> Result<Deref> {
        let mut slices = Vec::new();
        for batch in idxs.chunks(BATCH) {
            let ks: Vec<String> = batch.iter().map(|i| keys::chunk(ino, *i)).collect();
            let refs: Vec<&str> = ks.iter().map(String::as_str).collect();
            let mut p = watching(&refs);
            for k in &ks {
                p.cmd("LRANGE").arg(k).arg(0).arg(-1);
            }
            let lists: Vec<Vec<Vec<u8>>> = tx.read_pipe(&p).await?;
            for (k, recs) in ks.iter().zip(lists) {
                if !recs.is_empty() {
                    tx.pipe.cmd("DEL").arg(k);
                    slices.extend(decode_records(&recs)?);
                }
            }
        }
        Ok(queue_deref(tx, slices))
    }

    async fn delete_chunk(&self, ino: Ino, idx: u32) -> Result<Vec<FreedSlice>> {
        let key = keys::chunk(ino, idx);
        let (deref, replies) = txn!(self, &key, |tx| {
            Self::drop_chunks(&mut tx, ino, &[idx]).await
        })?;
        deref.freed(&replies)
    }

    /// Deletes every chunk of a removed file (of `length` bytes), then its `delfiles` entry.
    pub(crate) async fn delete_file(&self, ino: Ino, length: u64) -> Result<Vec<FreedSlice>> {
        let freed = self.delete_chunks_of(ino, length).await?;
        self.conn
            .run::<()>(
                ::redis::cmd("ZREM")
                    .arg(keys::DELFILES)
                    .arg(keys::delfile_member(ino, length)),
            )
            .await?;
        Ok(freed)
    }

    async fn delete_chunks_of(&self, ino: Ino, length: u64) -> Result<Vec<FreedSlice>> {
        // Chunk 0 is looked at even for an empty file: the reference truncates to zero
        // without dropping the chunks.
        let n = length.div_ceil(CHUNK_SIZE).max(1);
        let mut freed = Vec::new();
        let mut first = 0u64;
        while first < n {
            let last = (first + BATCH as u64).min(n);
            let mut p = ::redis::pipe();
            for i in first..last {
                p.cmd("EXISTS").arg(keys::chunk(ino, i as u32));
            }
            let exists: Vec<bool> = self.conn.run_pipe(&p).await?;
            for (i, e) in (first..last).zip(exists) {
                if e {
                    freed.extend(self.delete_chunk(ino, i as u32).await?);
                }
            }
            first = last;
        }
        Ok(freed)
    }

    /// Compaction's commit, watching the chunk list: LTRIM the replaced records, LPUSH the
    /// new one (no `sliceRef` entry: absent means one reference), drop the old references.
    pub(crate) async fn do_replace_slices(
        &self,
        ino: Ino,
        index: u32,
        old: &[Slice],
        new: Slice,
    ) -> Result<Vec<FreedSlice>> {
        self.check_writable()?;
        let key = keys::chunk(ino, index);
        let lock = keys::inode(ino);
        let (deref, replies) = txn!(self, &lock, |tx| {
            let mut p = watching(&[key.as_str()]);
            p.cmd("LRANGE").arg(&key).arg(0).arg(-1);
            let lists: Vec<Vec<Vec<u8>>> = tx.read_pipe(&p).await?;
            let cur = decode_records(lists.first().map_or(&[][..], |l| &l[..]))?;
            if cur.len() < old.len() || cur[..old.len()] != *old {
                return Err(MetaError::Invalid(format!(
                    "chunk {index} of inode {ino} changed while it was compacted"
                )));
            }
            tx.pipe.cmd("LTRIM").arg(&key).arg(old.len()).arg(-1);
            tx.pipe
                .cmd("LPUSH")
                .arg(&key)
                .arg(crate::meta::slice::encode(&[new]));
            Ok(queue_deref(&mut tx, old.to_vec()))
        })?;
        deref.freed(&replies)
    }

    /// Every chunk list's slices: SCAN `c*_*`, then each list.
    pub(crate) async fn do_list_slices(&self) -> Result<Vec<(u64, u32)>> {
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<String>) = self
                .conn
                .run(
                    ::redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg("c*_*")
                        .arg("COUNT")
                        .arg(10_000),
                )
                .await?;
            for key in page {
                let recs: Vec<Vec<u8>> = self
                    .conn
                    .run(::redis::cmd("LRANGE").arg(&key).arg(0).arg(-1))
                    .await?;
                out.extend(
                    decode_records(&recs)?
                        .iter()
                        .filter(|s| s.id > 0)
                        .map(|s| (s.id, s.size)),
                );
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    pub(crate) async fn do_pending_deletions(&self) -> Result<u64> {
        self.conn
            .run(::redis::cmd("ZCARD").arg(keys::DELFILES))
            .await
    }

    /// Files whose data a client (ours or the reference) did not get to delete.
    pub(crate) async fn do_cleanup_deleted_files(&self) -> Result<Vec<FreedSlice>> {
        if self.read_only {
            return Ok(Vec::new());
        }
        let members: Vec<String> = self
            .conn
            .run(
                ::redis::cmd("ZRANGEBYSCORE")
                    .arg(keys::DELFILES)
                    .arg("-inf")
                    .arg(unix_secs() - DELFILE_GRACE_SECS)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(BATCH),
            )
            .await?;
        let mut freed = Vec::new();
        for m in members {
            let Some((ino, length)) = keys::parse_delfile_member(&m) else {
                tracing::warn!("ignoring malformed delfiles entry {m:?}");
                continue;
            };
            let live: bool = self
                .conn
                .run(::redis::cmd("EXISTS").arg(keys::inode(ino)))
                .await?;
            if live {
                // Never delete the data of an inode that exists.
                tracing::warn!(ino, "delfiles names a live inode; leaving it");
                continue;
            }
            freed.extend(self.delete_chunks_of(ino, length).await?);
            self.conn
                .run::<()>(::redis::cmd("ZREM").arg(keys::DELFILES).arg(&m))
                .await?;
        }
        freed.extend(self.cleanup_slice_refs().await?);
        Ok(freed)
    }

    /// Slices left with a negative count (a client died between dropping the last
    /// reference and deleting the objects). One client per hour does it, as JuiceFS.
    async fn cleanup_slice_refs(&self) -> Result<Vec<FreedSlice>> {
        let now = unix_secs();
        let last: Option<i64> = self
            .conn
            .run(::redis::cmd("GET").arg(keys::NEXT_CLEANUP_SLICES))
            .await?;
        if last.is_some_and(|l| l + SLICE_CLEANUP_EVERY > now) {
            return Ok(Vec::new());
        }
        self.conn
            .run::<()>(::redis::cmd("SET").arg(keys::NEXT_CLEANUP_SLICES).arg(now))
            .await?;
        let mut freed = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<(String, i64)>) = self
                .conn
                .run(
                    ::redis::cmd("HSCAN")
                        .arg(keys::SLICE_REFS)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(BATCH),
                )
                .await?;
            for (field, refs) in page {
                if refs < 0
                    && let Some((id, size)) = keys::parse_slice_ref(&field)
                {
                    freed.push(FreedSlice { id, size });
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for batch in freed.chunks(BATCH) {
            let fields: Vec<String> = batch
                .iter()
                .map(|f| keys::slice_ref(f.id, f.size))
                .collect();
            self.conn
                .run::<()>(::redis::cmd("HDEL").arg(keys::SLICE_REFS).arg(fields))
                .await?;
        }
        Ok(freed)
    }
}
