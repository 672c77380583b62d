//! File data in metadata: chunk slice lists, slice reference counts, truncate/fallocate,
//! open-file tracking, deletion of unreferenced files, sessions cleanup and statfs.

use super::*;
use crate::meta::rules::apply_fallocate;
use crate::meta::slice;

/// Decrements the reference of each slice in `slices`; returns those no longer referenced.
async fn deref_slices(tx: &mut Tx, slices: &[Slice]) -> Result<Vec<FreedSlice>> {
    let mut freed = Vec::new();
    for s in slices.iter().filter(|s| s.id > 0) {
        tx.exec(
            "UPDATE jfs_chunk_ref SET refs=refs-1 WHERE chunkid=? AND size=?",
            &[s.id.into(), s.size.into()],
        )
        .await?;
        let rows = tx
            .query(
                "SELECT refs FROM jfs_chunk_ref WHERE chunkid=?",
                &[s.id.into()],
            )
            .await?;
        match first_int(&rows)? {
            Some(r) if r > 0 => {}
            _ => {
                tx.exec("DELETE FROM jfs_chunk_ref WHERE chunkid=?", &[s.id.into()])
                    .await?;
                freed.push(FreedSlice {
                    id: s.id,
                    size: s.size,
                });
            }
        }
    }
    Ok(freed)
}

/// The raw records of chunk `index` of `ino` (empty when it has none).
async fn chunk_records(tx: &mut Tx, ino: Ino, index: u32) -> Result<Vec<u8>> {
    let rows = tx
        .query(
            "SELECT slices FROM jfs_chunk WHERE inode=? AND indx=?",
            &[ino.into(), index.into()],
        )
        .await?;
    match rows.into_iter().next() {
        Some(mut r) => r.remove(0).blob(),
        None => Ok(Vec::new()),
    }
}

/// Deletes every chunk row of `ino`, dropping the slices' references.
pub(crate) async fn delete_chunks(tx: &mut Tx, ino: Ino) -> Result<Vec<FreedSlice>> {
    let rows = tx
        .query(
            "SELECT indx,slices FROM jfs_chunk WHERE inode=?",
            &[ino.into()],
        )
        .await?;
    let mut freed = Vec::new();
    for mut r in rows {
        let blob = r.remove(1).blob()?;
        let slices = slice::decode(&blob).map_err(MetaError::Corrupt)?;
        freed.extend(deref_slices(tx, &slices).await?);
    }
    tx.exec("DELETE FROM jfs_chunk WHERE inode=?", &[ino.into()])
        .await?;
    Ok(freed)
}

async fn append_slice(tx: &mut Tx, ino: Ino, index: u32, s: &Slice) -> Result<()> {
    let mut buf = Vec::with_capacity(slice::SLICE_BYTES);
    slice::encode_one(s, &mut buf);
    let n = tx
        .exec(
            "UPDATE jfs_chunk SET slices=slices || ? WHERE inode=? AND indx=?",
            &[buf.clone().into(), ino.into(), index.into()],
        )
        .await?;
    if n == 0 {
        tx.exec(
            "INSERT INTO jfs_chunk (inode,indx,slices) VALUES (?,?,?)",
            &[ino.into(), index.into(), buf.into()],
        )
        .await?;
    }
    Ok(())
}

/// Covers `[off, off+len)` of a file with zeros by appending hole slices (id 0).
async fn zero_range(tx: &mut Tx, ino: Ino, off: u64, len: u64) -> Result<()> {
    let mut pos = off;
    let end = off + len;
    while pos < end {
        let index = (pos / CHUNK_SIZE) as u32;
        let in_chunk = pos % CHUNK_SIZE;
        let n = (CHUNK_SIZE - in_chunk).min(end - pos);
        let exists = tx
            .query(
                "SELECT indx FROM jfs_chunk WHERE inode=? AND indx=?",
                &[ino.into(), index.into()],
            )
            .await?;
        // A chunk with no row reads as zeros already.
        if !exists.is_empty() {
            let hole = Slice {
                pos: in_chunk as u32,
                id: 0,
                size: n as u32,
                off: 0,
                len: n as u32,
            };
            append_slice(tx, ino, index, &hole).await?;
        }
        pos += n;
    }
    Ok(())
}

impl SqlMeta {
    pub(crate) async fn do_read_chunk(&self, ino: Ino, index: u32) -> Result<Vec<Slice>> {
        txn!(self, false, |tx| {
            let records = chunk_records(&mut tx, ino, index).await?;
            slice::decode(&records).map_err(MetaError::Corrupt)
        })
    }

    pub(crate) async fn do_write_slice(
        &self,
        ino: Ino,
        index: u32,
        s: Slice,
        mtime: Nanos,
    ) -> Result<Attr> {
        self.check_writable()?;
        let end = index as u64 * CHUNK_SIZE + s.pos as u64 + s.len as u64;
        let (attr, grown) = txn!(self, true, |tx| {
            let mut a = must_node(&mut tx, ino).await?;
            if a.kind != FileKind::File {
                return Err(MetaError::Perm);
            }
            append_slice(&mut tx, ino, index, &s).await?;
            if s.id > 0 {
                let n = tx
                    .exec(
                        "UPDATE jfs_chunk_ref SET refs=refs+1 WHERE chunkid=? AND size=?",
                        &[s.id.into(), s.size.into()],
                    )
                    .await?;
                if n == 0 {
                    tx.exec(
                        "INSERT INTO jfs_chunk_ref (chunkid,size,refs) VALUES (?,?,1)",
                        &[s.id.into(), s.size.into()],
                    )
                    .await?;
                }
            }
            let old = a.length;
            if end > a.length {
                a.length = end;
            }
            a.mtime = mtime;
            a.ctime = now_nanos();
            update_node(&mut tx, ino, &a).await?;
            let grown = align4k(a.length) - align4k(old);
            Ok((a, grown))
        })?;
        self.add_usage(grown, 0);
        Ok(attr)
    }

    pub(crate) async fn do_truncate(
        &self,
        ino: Ino,
        length: u64,
    ) -> Result<(Attr, Vec<FreedSlice>)> {
        self.check_writable()?;
        let cur = self.getattr(ino).await?;
        if length > cur.length {
            self.check_quota(align4k(length) - align4k(cur.length), 0)
                .await?;
        }
        let (attr, freed, delta) = txn!(self, true, |tx| {
            let mut a = must_node(&mut tx, ino).await?;
            if a.kind != FileKind::File {
                return Err(MetaError::Perm);
            }
            let old = a.length;
            let mut freed = Vec::new();
            if length < old {
                // Whole chunks past the new end go; the chunk holding the end gets a hole.
                let keep = length.div_ceil(CHUNK_SIZE) as i64;
                let rows = tx
                    .query(
                        "SELECT indx,slices FROM jfs_chunk WHERE inode=? AND indx>=?",
                        &[ino.into(), keep.into()],
                    )
                    .await?;
                for mut r in rows {
                    let slices = slice::decode(&r.remove(1).blob()?).map_err(MetaError::Corrupt)?;
                    freed.extend(deref_slices(&mut tx, &slices).await?);
                }
                tx.exec(
                    "DELETE FROM jfs_chunk WHERE inode=? AND indx>=?",
                    &[ino.into(), keep.into()],
                )
                .await?;
                let chunk_end = (keep as u64 * CHUNK_SIZE).min(old);
                if chunk_end > length {
                    zero_range(&mut tx, ino, length, chunk_end - length).await?;
                }
            }
            a.length = length;
            let now = now_nanos();
            a.mtime = now;
            a.ctime = now;
            update_node(&mut tx, ino, &a).await?;
            Ok((a, freed, align4k(length) - align4k(old)))
        })?;
        self.add_usage(delta, 0);
        Ok((attr, freed))
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
        let cur = self.getattr(ino).await?;
        if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > cur.length {
            self.check_quota(align4k(end) - align4k(cur.length), 0)
                .await?;
        }
        let (attr, delta) = txn!(self, true, |tx| {
            let mut a = must_node(&mut tx, ino).await?;
            if a.kind != FileKind::File {
                return Err(MetaError::Perm);
            }
            let old = a.length;
            if let Some((at, len)) = apply_fallocate(&mut a, mode, off, end) {
                zero_range(&mut tx, ino, at, len).await?;
            }
            update_node(&mut tx, ino, &a).await?;
            let grown = align4k(a.length) - align4k(old);
            Ok((a, grown))
        })?;
        self.add_usage(delta, 0);
        Ok(attr)
    }

    pub(crate) async fn do_close(&self, ino: Ino) -> Result<Vec<FreedSlice>> {
        let last = self.open_files.close(ino)?;
        if !last || self.read_only {
            return Ok(Vec::new());
        }
        let sid = self.sid();
        txn!(self, true, |tx| {
            let sustained = tx
                .query(
                    "SELECT inode FROM jfs_sustained WHERE sid=? AND inode=?",
                    &[sid.into(), ino.into()],
                )
                .await?;
            if sustained.is_empty() {
                return Ok(Vec::new());
            }
            tx.exec(
                "DELETE FROM jfs_sustained WHERE sid=? AND inode=?",
                &[sid.into(), ino.into()],
            )
            .await?;
            match get_node(&mut tx, ino).await? {
                Some(a) if a.nlink == 0 => self.delete_inode(&mut tx, ino, &a).await,
                _ => Ok(Vec::new()),
            }
        })
    }

    /// Removes a session's locks and the files it held open after they were unlinked.
    pub(crate) async fn clean_session(&self, sid: u64) -> Result<Vec<FreedSlice>> {
        self.check_writable()?;
        txn!(self, true, |tx| {
            let rows = tx
                .query("SELECT inode FROM jfs_sustained WHERE sid=?", &[sid.into()])
                .await?;
            let mut freed = Vec::new();
            for r in rows {
                let ino = r[0].uint()?;
                if let Some(a) = get_node(&mut tx, ino).await?
                    && a.nlink == 0
                {
                    freed.extend(self.delete_inode(&mut tx, ino, &a).await?);
                }
            }
            for table in ["jfs_sustained", "jfs_flock", "jfs_plock", "jfs_session"] {
                tx.exec(&format!("DELETE FROM {table} WHERE sid=?"), &[sid.into()])
                    .await?;
            }
            Ok(freed)
        })
    }

    pub(crate) async fn do_replace_slices(
        &self,
        ino: Ino,
        index: u32,
        old: &[Slice],
        new: Slice,
    ) -> Result<Vec<FreedSlice>> {
        self.check_writable()?;
        let prefix = slice::encode(old);
        txn!(self, true, |tx| {
            let cur = chunk_records(&mut tx, ino, index).await?;
            if !cur.starts_with(&prefix) {
                return Err(MetaError::Invalid(format!(
                    "chunk {index} of inode {ino} changed while it was compacted"
                )));
            }
            let mut next = slice::encode(&[new]);
            next.extend_from_slice(&cur[prefix.len()..]);
            tx.exec(
                "UPDATE jfs_chunk SET slices=? WHERE inode=? AND indx=?",
                &[next.into(), ino.into(), index.into()],
            )
            .await?;
            tx.exec(
                "INSERT INTO jfs_chunk_ref (chunkid,size,refs) VALUES (?,?,1)",
                &[new.id.into(), new.size.into()],
            )
            .await?;
            deref_slices(&mut tx, old).await
        })
    }

    pub(crate) async fn do_list_slices(&self) -> Result<Vec<(u64, u32)>> {
        let rows = txn!(self, false, |tx| {
            tx.query("SELECT slices FROM jfs_chunk", &[]).await
        })?;
        let mut out = Vec::new();
        for mut r in rows {
            let slices = slice::decode(&r.remove(0).blob()?).map_err(MetaError::Corrupt)?;
            out.extend(slices.iter().filter(|s| s.id > 0).map(|s| (s.id, s.size)));
        }
        Ok(out)
    }

    pub(crate) async fn do_pending_deletions(&self) -> Result<u64> {
        let rows = txn!(self, false, |tx| {
            tx.query("SELECT COUNT(*) FROM jfs_delfile", &[]).await
        })?;
        rows.first().map_or(Ok(0), |r| r[0].uint())
    }

    /// Files queued in `jfs_delfile` (by the reference client or an interrupted delete).
    pub(crate) async fn do_cleanup_deleted_files(&self) -> Result<Vec<FreedSlice>> {
        if self.read_only {
            return Ok(Vec::new());
        }
        let rows = txn!(self, false, |tx| {
            tx.query(
                "SELECT inode FROM jfs_delfile WHERE expire<=?",
                &[unix_secs().into()],
            )
            .await
        })?;
        let mut freed = Vec::new();
        for r in rows {
            let ino = r[0].uint()?;
            freed.extend(txn!(self, true, |tx| {
                let f = delete_chunks(&mut tx, ino).await?;
                tx.exec("DELETE FROM jfs_delfile WHERE inode=?", &[ino.into()])
                    .await?;
                Ok(f)
            })?);
        }
        Ok(freed)
    }

    pub(crate) async fn do_statfs(&self) -> Result<StatFs> {
        let used_space =
            self.get_counter("usedSpace").await? + self.used_space_delta.load(Ordering::Relaxed);
        let used_inodes =
            self.get_counter("totalInodes").await? + self.used_inodes_delta.load(Ordering::Relaxed);
        Ok(crate::meta::rules::statfs(
            used_space,
            used_inodes,
            self.cached_format().as_ref(),
        ))
    }
}
