//! The read path: chunk views ("newest slice wins") turned into block reads, served from a
//! bounded in-memory block cache in which concurrent requests for one block share a single
//! fetch, with the next block of a sequential reader fetched ahead.

use super::Error;
use crate::meta::{CHUNK_SIZE, Ino, Meta, Slice, slice::build_view};
use crate::object::ObjectStore;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

struct Entry {
    cell: Arc<OnceCell<Bytes>>,
    used: u64,
    size: u64,
}

/// Recently used blocks, keyed by (slice id, block index).
pub struct BlockCache {
    map: Mutex<HashMap<(u64, u32), Entry>>,
    capacity: u64,
    tick: std::sync::atomic::AtomicU64,
}

impl BlockCache {
    pub fn new(capacity: u64) -> BlockCache {
        BlockCache {
            map: Mutex::new(HashMap::new()),
            capacity,
            tick: Default::default(),
        }
    }

    pub async fn get(
        &self,
        store: &ObjectStore,
        id: u64,
        index: u32,
        size: u32,
    ) -> Result<Bytes, Error> {
        let tick = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cell = {
            let mut g = self
                .map
                .lock()
                .map_err(|_| Error::Io("block cache lock poisoned".into()))?;
            let e = g.entry((id, index)).or_insert_with(|| Entry {
                cell: Arc::new(OnceCell::new()),
                used: tick,
                size: size as u64,
            });
            e.used = tick;
            crate::metrics::METRICS.block_cache(e.cell.initialized());
            e.cell.clone()
        };
        let r = cell
            .get_or_try_init(|| async {
                store.get_block(id, index, size).await.map_err(|e| {
                    tracing::error!("read of slice {id} block {index}: {e}");
                    Error::Io(e.to_string())
                })
            })
            .await
            .cloned();
        let mut g = self
            .map
            .lock()
            .map_err(|_| Error::Io("block cache lock poisoned".into()))?;
        match &r {
            Err(_) => {
                g.remove(&(id, index));
            }
            Ok(_) => {
                let mut total: u64 = g
                    .values()
                    .filter(|e| e.cell.initialized())
                    .map(|e| e.size)
                    .sum();
                while total > self.capacity {
                    let victim = g
                        .iter()
                        .filter(|(_, e)| e.cell.initialized())
                        .min_by_key(|(_, e)| e.used)
                        .map(|(k, e)| (*k, e.size));
                    match victim {
                        Some((k, sz)) => {
                            g.remove(&k);
                            total -= sz;
                        }
                        None => break,
                    }
                }
            }
        }
        r
    }

    /// Forgets the blocks of a slice whose objects are being deleted.
    pub fn forget_slice(&self, id: u64) {
        if let Ok(mut g) = self.map.lock() {
            g.retain(|k, _| k.0 != id);
        }
    }
}

/// Slice views per (inode, chunk), dropped whenever this client changes the chunk and
/// when a file is opened (close-to-open consistency with other clients).
/// The resolved pieces of one chunk.
type View = Arc<Vec<Slice>>;

#[derive(Default)]
pub struct ChunkViews {
    map: Mutex<HashMap<(Ino, u32), View>>,
}

impl ChunkViews {
    pub fn invalidate(&self, ino: Ino) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|k, _| k.0 != ino);
        }
    }

    async fn view(&self, meta: &dyn Meta, ino: Ino, chunk: u32) -> Result<View, Error> {
        if let Some(v) = self
            .map
            .lock()
            .ok()
            .and_then(|m| m.get(&(ino, chunk)).cloned())
        {
            return Ok(v);
        }
        let slices = meta.read_chunk(ino, chunk).await?;
        let v = Arc::new(build_view(&slices));
        if let Ok(mut m) = self.map.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert((ino, chunk), v.clone());
        }
        Ok(v)
    }
}

/// Blocks fetched ahead of a reader that reaches the start of a block.
const READ_AHEAD_BLOCKS: u32 = 4;

pub struct Reader<'a> {
    pub meta: &'a dyn Meta,
    pub store: &'a ObjectStore,
    pub cache: &'a Arc<BlockCache>,
    pub views: &'a ChunkViews,
}

impl Reader<'_> {
    /// Reads `[off, off+size)` of a file of `length` bytes.
    pub async fn read(&self, ino: Ino, off: u64, size: usize, length: u64) -> Result<Bytes, Error> {
        if off >= length {
            return Ok(Bytes::new());
        }
        let end = (off + size as u64).min(length);
        if let Some(b) = self.read_one_block(ino, off, end).await? {
            return Ok(b);
        }
        let mut out = vec![0u8; (end - off) as usize];
        let mut pos = off;
        while pos < end {
            let chunk = (pos / CHUNK_SIZE) as u32;
            let chunk_start = chunk as u64 * CHUNK_SIZE;
            let chunk_end = (chunk_start + CHUNK_SIZE).min(end);
            let view = self.views.view(self.meta, ino, chunk).await?;
            for p in view.iter().filter(|p| p.id > 0) {
                let ps = chunk_start + p.pos as u64;
                let pe = ps + p.len as u64;
                let (rs, re) = (ps.max(pos), pe.min(chunk_end));
                if rs >= re {
                    continue;
                }
                let slice_off = p.off as u64 + (rs - ps);
                let dst = &mut out[(rs - off) as usize..(re - off) as usize];
                self.read_slice(p, slice_off, dst).await?;
            }
            pos = chunk_end;
        }
        Ok(Bytes::from(out))
    }

    /// The common sequential case: the whole range lies in one block of one slice, so the
    /// answer is a slice of the cached block, without copying or allocating.
    async fn read_one_block(&self, ino: Ino, off: u64, end: u64) -> Result<Option<Bytes>, Error> {
        let chunk = (off / CHUNK_SIZE) as u32;
        let chunk_start = chunk as u64 * CHUNK_SIZE;
        if end > chunk_start + CHUNK_SIZE {
            return Ok(None);
        }
        let view = self.views.view(self.meta, ino, chunk).await?;
        let Some(p) = view.iter().find(|p| {
            let ps = chunk_start + p.pos as u64;
            ps <= off && end <= ps + p.len as u64
        }) else {
            return Ok(None);
        };
        if p.id == 0 {
            return Ok(Some(Bytes::from(vec![0u8; (end - off) as usize])));
        }
        let bs = self.store.block_size();
        let slice_off = p.off as u64 + (off - (chunk_start + p.pos as u64));
        let index = slice_off / bs;
        if (slice_off + (end - off) - 1) / bs != index {
            return Ok(None);
        }
        let in_block = (slice_off % bs) as usize;
        let block = self.fetch(p, index as u32, in_block).await?;
        Ok(Some(block.slice(in_block..in_block + (end - off) as usize)))
    }

    async fn read_slice(&self, p: &Slice, slice_off: u64, dst: &mut [u8]) -> Result<(), Error> {
        let bs = self.store.block_size();
        let mut done = 0usize;
        while done < dst.len() {
            let at = slice_off + done as u64;
            let in_block = (at % bs) as usize;
            let block = self.fetch(p, (at / bs) as u32, in_block).await?;
            let n = (block.len() - in_block).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&block[in_block..in_block + n]);
            done += n;
        }
        Ok(())
    }

    /// Block `index` of slice `p`; a reader at the start of a block gets the next ones
    /// fetched ahead while it uses this one.
    async fn fetch(&self, p: &Slice, index: u32, in_block: usize) -> Result<Bytes, Error> {
        let bs = self.store.block_size();
        if in_block == 0 {
            for ahead in 1..=READ_AHEAD_BLOCKS {
                let next = index + ahead;
                if next as u64 * bs >= p.size as u64 {
                    break;
                }
                let (cache, store, id) = (self.cache.clone(), self.store.clone(), p.id);
                let next_len = self.store.block_len(p.size, next);
                tokio::spawn(async move {
                    let _ = cache.get(&store, id, next, next_len).await;
                });
            }
        }
        let blen = self.store.block_len(p.size, index);
        self.cache.get(self.store, p.id, index, blen).await
    }
}
