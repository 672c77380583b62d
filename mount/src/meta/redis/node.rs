//! Inodes and directory entries as transactions read and write them, and what becomes of
//! an inode that loses its last link.

use super::delete::{Deref, queue_deref};
use super::txn::{Tx, watching};
use super::{RedisMeta, attr, keys, poisoned};
use crate::meta::rules::align4k;
use crate::meta::slice;
use crate::meta::{Attr, CHUNK_SIZE, FileKind, FreedSlice, Ino, MetaError, Nanos, Result, Slice};

/// Files up to this many chunks (1 GiB) lose their data in the transaction that removes
/// them; bigger ones are queued in `delfiles` and emptied chunk by chunk after it.
const INLINE_CHUNKS: u64 = 16;

/// A removed file whose chunks are deleted after the commit (`delfiles` remembers it
/// should this client die first).
#[derive(Clone, Copy, Debug)]
pub struct Doomed {
    pub ino: Ino,
    pub length: u64,
}

/// What is left to do once a transaction that dropped a link has committed.
pub enum After {
    Nothing,
    /// Data dropped inside the transaction: these slices lost a reference.
    Free(Deref),
    Delete(Doomed),
}

pub fn attr_from(ino: Ino, raw: Option<Vec<u8>>) -> Result<Option<Attr>> {
    raw.map(|b| attr::decode(ino, &b)).transpose()
}

pub fn must_from(ino: Ino, raw: Option<Vec<u8>>) -> Result<Attr> {
    attr_from(ino, raw)?.ok_or(MetaError::NotFound)
}

pub fn dir_from(ino: Ino, raw: Option<Vec<u8>>) -> Result<Attr> {
    let a = must_from(ino, raw)?;
    if a.kind != FileKind::Dir {
        return Err(MetaError::NotDir);
    }
    Ok(a)
}

pub fn entry_from(name: &str, raw: Option<Vec<u8>>) -> Result<Option<(Ino, FileKind)>> {
    raw.map(|b| keys::parse_entry(name, &b)).transpose()
}

/// Watches and reads the attributes of `ino` (one round trip).
pub async fn watch_attr(tx: &mut Tx, ino: Ino) -> Result<Option<Attr>> {
    let key = keys::inode(ino);
    let mut p = watching(&[&key]);
    p.cmd("GET").arg(&key);
    let (raw,): (Option<Vec<u8>>,) = tx.read_pipe(&p).await?;
    attr_from(ino, raw)
}

/// Watches and reads a directory and one of its entries (one round trip).
pub async fn watch_dir_entry(
    tx: &mut Tx,
    parent: Ino,
    name: &str,
) -> Result<(Attr, Option<(Ino, FileKind)>)> {
    let (pk, dk) = (keys::inode(parent), keys::entries(parent));
    let mut p = watching(&[&dk, &pk]);
    p.cmd("GET").arg(&pk).cmd("HGET").arg(&dk).arg(name);
    let (pa, e): (Option<Vec<u8>>, Option<Vec<u8>>) = tx.read_pipe(&p).await?;
    Ok((dir_from(parent, pa)?, entry_from(name, e)?))
}

/// Watches and reads a file's attributes and its first chunk, which is all the chunks
/// most files have (one round trip).
pub async fn watch_file(tx: &mut Tx, ino: Ino) -> Result<(Option<Attr>, Vec<Vec<u8>>)> {
    let (ik, ck) = (keys::inode(ino), keys::chunk(ino, 0));
    let mut p = watching(&[&ik, &ck]);
    p.cmd("GET").arg(&ik).cmd("LRANGE").arg(&ck).arg(0).arg(-1);
    let (raw, first): (Option<Vec<u8>>, Vec<Vec<u8>>) = tx.read_pipe(&p).await?;
    Ok((attr_from(ino, raw)?, first))
}

/// All chunk lists of a file of `length` bytes, watched, given its first one; `None` when
/// it has too many for one transaction.
pub async fn file_chunks(
    tx: &mut Tx,
    ino: Ino,
    length: u64,
    first: Vec<Vec<u8>>,
) -> Result<Option<Vec<(u32, Vec<Slice>)>>> {
    let n = length.div_ceil(CHUNK_SIZE).max(1);
    if n > INLINE_CHUNKS {
        return Ok(None);
    }
    let mut out = vec![(0, decode_records(&first)?)];
    if n > 1 {
        let ks: Vec<String> = (1..n).map(|i| keys::chunk(ino, i as u32)).collect();
        let refs: Vec<&str> = ks.iter().map(String::as_str).collect();
        let mut p = watching(&refs);
        for k in &ks {
            p.cmd("LRANGE").arg(k).arg(0).arg(-1);
        }
        let lists: Vec<Vec<Vec<u8>>> = tx.read_pipe(&p).await?;
        for (i, l) in (1..n).zip(lists) {
            out.push((i as u32, decode_records(&l)?));
        }
    }
    out.retain(|(_, l)| !l.is_empty());
    Ok(Some(out))
}

pub fn decode_records(recs: &[Vec<u8>]) -> Result<Vec<Slice>> {
    let mut out = Vec::with_capacity(recs.len());
    for r in recs {
        out.extend(slice::decode(r).map_err(MetaError::Corrupt)?);
    }
    Ok(out)
}

pub fn put_attr(tx: &mut Tx, ino: Ino, a: &Attr) {
    tx.pipe
        .cmd("SET")
        .arg(keys::inode(ino))
        .arg(attr::encode(a));
}

pub fn put_entry(tx: &mut Tx, parent: Ino, name: &str, ino: Ino, kind: FileKind) {
    tx.pipe
        .cmd("HSET")
        .arg(keys::entries(parent))
        .arg(name)
        .arg(&keys::pack_entry(kind, ino)[..]);
}

pub fn del_entry(tx: &mut Tx, parent: Ino, name: &str) {
    tx.pipe.cmd("HDEL").arg(keys::entries(parent)).arg(name);
}

pub fn add_usage(tx: &mut Tx, space: i64, inodes: i64) {
    if space != 0 {
        tx.pipe.cmd("INCRBY").arg(keys::USED_SPACE).arg(space);
    }
    if inodes != 0 {
        tx.pipe.cmd("INCRBY").arg(keys::TOTAL_INODES).arg(inodes);
    }
}

/// Queues the removal of an unreferenced inode with its xattrs, symlink target or (empty)
/// entry list, and of a file's data: the `chunks` read in this transaction, or, when they
/// were too many, a `delfiles` entry to empty them after the commit (as the reference
/// always does).
pub fn remove_inode(
    tx: &mut Tx,
    ino: Ino,
    a: &Attr,
    now: Nanos,
    chunks: Option<Vec<(u32, Vec<Slice>)>>,
) -> After {
    tx.pipe
        .cmd("DEL")
        .arg(keys::inode(ino))
        .arg(keys::xattrs(ino));
    match a.kind {
        FileKind::Symlink => {
            tx.pipe.cmd("DEL").arg(keys::symlink(ino));
        }
        FileKind::Dir => {
            tx.pipe.cmd("DEL").arg(keys::entries(ino));
        }
        _ => {}
    }
    let file = a.kind == FileKind::File;
    let space = if file { align4k(a.length) } else { align4k(0) };
    add_usage(tx, -space, -1);
    if !file {
        return After::Nothing;
    }
    match chunks {
        Some(chunks) => {
            let mut slices = Vec::new();
            for (idx, list) in chunks {
                tx.pipe.cmd("DEL").arg(keys::chunk(ino, idx));
                slices.extend(list);
            }
            After::Free(queue_deref(tx, slices))
        }
        None => {
            tx.pipe
                .cmd("ZADD")
                .arg(keys::DELFILES)
                .arg(now.div_euclid(1_000_000_000))
                .arg(keys::delfile_member(ino, a.length));
            After::Delete(Doomed {
                ino,
                length: a.length,
            })
        }
    }
}

impl RedisMeta {
    /// Drops one link of `ino` (watched with its first chunk, `first`): the inode goes when
    /// none is left and no handle of this client has it open, else it is kept as sustained
    /// by this session until the last close.
    pub(crate) async fn drop_link(
        &self,
        tx: &mut Tx,
        ino: Ino,
        a: &mut Attr,
        first: Vec<Vec<u8>>,
        now: Nanos,
    ) -> Result<After> {
        a.nlink = a.nlink.saturating_sub(1);
        a.ctime = now;
        if a.nlink > 0 {
            put_attr(tx, ino, a);
            return Ok(After::Nothing);
        }
        if a.kind == FileKind::File && self.is_open(ino)? {
            put_attr(tx, ino, a);
            tx.pipe
                .cmd("SADD")
                .arg(keys::sustained(self.sid()))
                .arg(ino);
            // Noted before the commit, so a close racing it cannot miss it; if the commit
            // does not happen, the last close finds the file linked and leaves it.
            self.sustained.lock().map_err(poisoned)?.insert(ino);
            return Ok(After::Nothing);
        }
        let chunks = if a.kind == FileKind::File {
            file_chunks(tx, ino, a.length, first).await?
        } else {
            None
        };
        Ok(remove_inode(tx, ino, a, now, chunks))
    }

    /// The part of an unlink that follows its commit.
    pub(crate) async fn after(
        &self,
        after: After,
        replies: &[::redis::Value],
    ) -> Result<Vec<FreedSlice>> {
        match after {
            After::Nothing => Ok(Vec::new()),
            After::Free(d) => d.freed(replies),
            After::Delete(d) => self.delete_file(d.ino, d.length).await,
        }
    }

    /// Attributes outside a transaction.
    pub(crate) async fn get_attr(&self, ino: Ino) -> Result<Attr> {
        let raw: Option<Vec<u8>> = self
            .conn
            .run(::redis::cmd("GET").arg(keys::inode(ino)))
            .await?;
        must_from(ino, raw)
    }
}
