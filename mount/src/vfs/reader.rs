//! The read path: chunk views ("newest slice wins") turned into block reads, served from a
//! bounded in-memory block cache in which concurrent requests for one block share a single
//! fetch, with the next block of a sequential reader fetched ahead.

use super::Error;
use super::disk_cache::DiskCache;
use crate::meta::{CHUNK_SIZE, Ino, Meta, Slice, slice::build_view};
use crate::object::ObjectStore;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

struct Entry {
    cell: Arc<OnceCell<Bytes>>,
    used: u64,
    size: u64,
    /// Counted in `total` (the fetch has finished).
    counted: bool,
}

#[derive(Default)]
struct Lru {
    map: HashMap<(u64, u32), Entry>,
    by_use: BTreeMap<u64, (u64, u32)>,
    total: u64,
    tick: u64,
}

impl Lru {
    fn remove(&mut self, k: (u64, u32)) {
        if let Some(e) = self.map.remove(&k) {
            self.by_use.remove(&e.used);
            if e.counted {
                self.total -= e.size;
            }
        }
    }
}

/// Recently used blocks in memory, keyed by (slice id, block index), in front of the disk
/// cache (if any) and the object store. Concurrent requests for one block share one fetch.
pub struct BlockCache {
    lru: Mutex<Lru>,
    capacity: u64,
    pub disk: Option<Arc<DiskCache>>,
}

impl BlockCache {
    pub fn new(capacity: u64, disk: Option<Arc<DiskCache>>) -> BlockCache {
        BlockCache {
            lru: Mutex::new(Lru::default()),
            capacity,
            disk,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Lru>, Error> {
        self.lru
            .lock()
            .map_err(|_| Error::Io("block cache lock poisoned".into()))
    }

    /// Whether the block is in memory already (read-ahead skips those).
    pub fn has(&self, id: u64, index: u32) -> bool {
        self.lru
            .lock()
            .is_ok_and(|l| l.map.contains_key(&(id, index)))
    }

    pub async fn get(
        &self,
        store: &ObjectStore,
        id: u64,
        index: u32,
        size: u32,
    ) -> Result<Bytes, Error> {
        let cell = {
            let mut g = self.lock()?;
            g.tick += 1;
            let tick = g.tick;
            let k = (id, index);
            let old = g.map.get(&k).map(|e| e.used);
            if let Some(t) = old {
                g.by_use.remove(&t);
            }
            g.by_use.insert(tick, k);
            let e = g.map.entry(k).or_insert_with(|| Entry {
                cell: Arc::new(OnceCell::new()),
                used: tick,
                size: size as u64,
                counted: false,
            });
            e.used = tick;
            if e.cell.initialized() {
                crate::metrics::METRICS.block_cache(true);
            }
            e.cell.clone()
        };
        // A hit is a block served without the object store: from memory or from disk.
        let r = cell
            .get_or_try_init(|| async {
                if let Some(d) = &self.disk
                    && let Some(b) = d.load(id, index, size).await
                {
                    crate::metrics::METRICS.block_cache(true);
                    return Ok(b);
                }
                crate::metrics::METRICS.block_cache(false);
                let b = store.get_block(id, index, size).await.map_err(|e| {
                    tracing::error!("read of slice {id} block {index}: {e}");
                    if e.is_not_found() {
                        Error::Gone(e.to_string())
                    } else {
                        Error::Io(e.to_string())
                    }
                })?;
                if let Some(d) = &self.disk {
                    d.store(id, index, b.clone());
                }
                Ok(b)
            })
            .await
            .cloned();
        let mut g = self.lock()?;
        match &r {
            Err(_) => g.remove((id, index)),
            Ok(_) => {
                if let Some(e) = g.map.get_mut(&(id, index))
                    && !e.counted
                {
                    e.counted = true;
                    let sz = e.size;
                    g.total += sz;
                }
                // Evict the least recently used finished blocks (in-flight ones stay).
                let mut skipped = Vec::new();
                while g.total > self.capacity {
                    let Some((&t, &k)) = g.by_use.iter().next() else {
                        break;
                    };
                    if g.map.get(&k).is_some_and(|e| e.counted) {
                        g.remove(k);
                    } else {
                        g.by_use.remove(&t);
                        skipped.push((t, k));
                    }
                }
                for (t, k) in skipped {
                    g.by_use.insert(t, k);
                }
            }
        }
        r
    }

    /// `len` bytes at `off` of a block, for a random reader: from memory when the block is
    /// there, else straight from its disk cache file, else the whole block as usual.
    pub async fn read_range(
        &self,
        store: &ObjectStore,
        id: u64,
        index: u32,
        size: u32,
        off: usize,
        len: usize,
    ) -> Result<Bytes, Error> {
        let cached = self
            .lru
            .lock()
            .ok()
            .and_then(|l| l.map.get(&(id, index)).and_then(|e| e.cell.get().cloned()));
        if let Some(b) = cached {
            crate::metrics::METRICS.block_cache(true);
            return Ok(b.slice(off..(off + len).min(b.len())));
        }
        if let Some(d) = &self.disk
            && let Some(b) = d.load_range(id, index, size, off, len).await
        {
            crate::metrics::METRICS.block_cache(true);
            return Ok(b);
        }
        let b = self.get(store, id, index, size).await?;
        Ok(b.slice(off..(off + len).min(b.len())))
    }

    /// A block this client just wrote: kept on disk for later reads (not in memory, where
    /// it would push out what readers use).
    pub fn written(&self, id: u64, index: u32, data: &Bytes) {
        if let Some(d) = &self.disk {
            d.store(id, index, data.clone());
        }
    }

    /// Forgets the blocks of a slice whose objects are being deleted.
    pub fn forget_slice(&self, id: u64, size: u32) {
        if let Ok(mut g) = self.lru.lock() {
            let keys: Vec<_> = g.map.keys().filter(|k| k.0 == id).copied().collect();
            for k in keys {
                g.remove(k);
            }
        }
        if let Some(d) = &self.disk {
            d.forget_slice(id, size);
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

pub struct Reader<'a> {
    pub meta: &'a dyn Meta,
    pub store: &'a ObjectStore,
    pub cache: &'a Arc<BlockCache>,
    pub views: &'a ChunkViews,
    /// Blocks to fetch ahead of this reader (its sequential window; 0 after a seek).
    pub ahead: u32,
    /// Bounds the memory of fetches ahead (`--buffer-size`): none start without a permit.
    pub budget: &'a Arc<tokio::sync::Semaphore>,
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
        let len = (end - off) as usize;
        if self.ahead == 0 {
            // A random reader: only the bytes asked for.
            let blen = self.store.block_len(p.size, index as u32);
            let b = self
                .cache
                .read_range(self.store, p.id, index as u32, blen, in_block, len)
                .await?;
            return Ok(Some(b));
        }
        let block = self.fetch(p, index as u32, in_block).await?;
        Ok(Some(block.slice(in_block..in_block + len)))
    }

    pub(crate) async fn read_slice(
        &self,
        p: &Slice,
        slice_off: u64,
        dst: &mut [u8],
    ) -> Result<(), Error> {
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
    /// (its read-ahead window) fetched while it uses this one, as far as the buffer budget
    /// allows.
    async fn fetch(&self, p: &Slice, index: u32, in_block: usize) -> Result<Bytes, Error> {
        let bs = self.store.block_size();
        if in_block == 0 {
            for ahead in 1..=self.ahead {
                let next = index + ahead;
                if next as u64 * bs >= p.size as u64 {
                    break;
                }
                if self.cache.has(p.id, next) {
                    continue;
                }
                let next_len = self.store.block_len(p.size, next);
                let Ok(permit) = self
                    .budget
                    .clone()
                    .try_acquire_many_owned(next_len.div_ceil(1024).max(1))
                else {
                    break;
                };
                let (cache, store, id) = (self.cache.clone(), self.store.clone(), p.id);
                tokio::spawn(async move {
                    let _ = cache.get(&store, id, next, next_len).await;
                    drop(permit);
                });
            }
        }
        let blen = self.store.block_len(p.size, index);
        self.cache.get(self.store, p.id, index, blen).await
    }
}
