//! Background compaction: a chunk written as many slices (appends, small overwrites, one
//! slice per fsync) is rewritten as one slice, so reads fetch one object per block and
//! the chunk's record list stays short. The result is an ordinary slice record that the
//! reference client reads unchanged; the replaced slices lose their references and their
//! objects are deleted when nothing else uses them.

use super::reader::Reader;
use super::{Error, Result, Vfs};
use crate::meta::slice::build_view;
use crate::meta::{Ino, MetaError, Slice};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Every this many slices committed to one chunk by this client, it is compacted
/// (JuiceFS 0.14: every 20th slice).
pub const COMPACT_EVERY: u32 = 20;
/// Fewer slices than this are left alone when the compaction runs.
pub const MIN_SLICES: usize = 5;

/// Commits counted per chunk, and the queue of chunks to compact.
pub struct Compactions {
    counts: Mutex<HashMap<(Ino, u32), u32>>,
    tx: mpsc::UnboundedSender<(Ino, u32)>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<(Ino, u32)>>>,
    /// One compaction at a time: it holds up to a chunk (64 MiB) in memory.
    running: tokio::sync::Mutex<()>,
}

impl Default for Compactions {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Compactions {
            counts: Mutex::new(HashMap::new()),
            tx,
            rx: Mutex::new(Some(rx)),
            running: tokio::sync::Mutex::new(()),
        }
    }
}

impl Compactions {
    /// A slice of `chunk` of `ino` was committed.
    pub fn committed(&self, ino: Ino, chunk: u32) {
        let Ok(mut c) = self.counts.lock() else {
            return;
        };
        if c.len() > 100_000 {
            c.clear();
        }
        let n = c.entry((ino, chunk)).or_insert(0);
        *n += 1;
        if *n % COMPACT_EVERY == 0 {
            let _ = self.tx.send((ino, chunk));
        }
    }
}

impl Vfs {
    /// Starts the task that compacts the chunks `Compactions::committed` queued.
    pub fn spawn_compactor(self: &Arc<Self>) {
        let Some(mut rx) = self.compactions.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let vfs = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some((ino, chunk)) = rx.recv().await {
                let Some(vfs) = vfs.upgrade() else { return };
                if let Err(e) = vfs.compact_chunk(ino, chunk, MIN_SLICES).await {
                    tracing::warn!("compacting chunk {chunk} of inode {ino}: {e}");
                }
            }
        });
    }

    /// Rewrites chunk `chunk` of `ino` as one slice when it has `min_slices` or more.
    /// Returns whether it did; a chunk changed meanwhile by another client is left as is.
    pub async fn compact_chunk(&self, ino: Ino, chunk: u32, min_slices: usize) -> Result<bool> {
        let _one = self.compactions.running.lock().await;
        let old = self.meta.read_chunk(ino, chunk).await?;
        if old.len() < min_slices.max(2) {
            return Ok(false);
        }
        let view = build_view(&old);
        let data_pieces: Vec<&Slice> = view.iter().filter(|p| p.id > 0).collect();
        let (Some(first), Some(last)) = (data_pieces.first(), data_pieces.last()) else {
            return Ok(false);
        };
        let (start, end) = (first.pos, last.pos + last.len);
        let mut data = vec![0u8; (end - start) as usize];
        let reader = Reader {
            meta: &*self.meta,
            store: &self.store,
            cache: &self.cache,
            views: &self.views,
            ahead: 0,
            budget: &self.budget,
        };
        for p in &data_pieces {
            let at = (p.pos - start) as usize;
            reader
                .read_slice(p, p.off as u64, &mut data[at..at + p.len as usize])
                .await?;
        }
        let id = self.meta.new_slice_id().await?;
        let data = Bytes::from(data);
        let new = Slice {
            pos: start,
            id,
            size: data.len() as u32,
            off: 0,
            len: data.len() as u32,
        };
        let bs = self.store.block_size() as usize;
        let stored = async {
            for (i, off) in (0..data.len()).step_by(bs).enumerate() {
                let piece = data.slice(off..(off + bs).min(data.len()));
                self.store.put_block(id, i as u32, piece).await?;
            }
            Ok::<_, crate::object::ObjectError>(())
        };
        if let Err(e) = stored.await {
            let _ = self.store.delete_slice(id, new.size).await;
            return Err(Error::Io(format!("storing compacted slice {id}: {e}")));
        }
        match self.meta.replace_slices(ino, chunk, &old, new).await {
            Ok(freed) => {
                self.views.invalidate(ino);
                tracing::debug!(
                    "compacted {} slices of chunk {chunk} of inode {ino} into slice {id} ({} bytes)",
                    old.len(),
                    new.size
                );
                self.free_slices(freed);
                Ok(true)
            }
            Err(e) => {
                let _ = self.store.delete_slice(id, new.size).await;
                match e {
                    MetaError::Invalid(_) => Ok(false),
                    e => Err(e.into()),
                }
            }
        }
    }
}
