//! The local disk block cache (`--cache-dir`, `--cache-size`, `--free-space-ratio`): raw
//! (uncompressed) blocks under `<dir>/<volume UUID>/raw/chunks/…`, named like their objects,
//! as JuiceFS lays them out. Blocks are spread over the directories by key; each directory
//! keeps an index of what it holds and evicts the least recently used blocks when it is over
//! its share of the size or its disk's free space falls below the ratio. A restart finds the
//! blocks already there.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

type Key = (u64, u32);

#[derive(Clone, Debug)]
pub struct DiskCacheConfig {
    pub dirs: Vec<PathBuf>,
    /// Total bytes over all directories.
    pub capacity: u64,
    /// Keep at least this fraction of each disk free.
    pub free_ratio: f64,
}

#[derive(Default)]
struct Index {
    blocks: HashMap<Key, (u64, u64)>,
    by_use: BTreeMap<u64, Key>,
    used: u64,
    tick: u64,
}

impl Index {
    fn touch(&mut self, k: Key) -> bool {
        let Some((_, t)) = self.blocks.get(&k).copied() else {
            return false;
        };
        self.tick += 1;
        self.by_use.remove(&t);
        self.by_use.insert(self.tick, k);
        if let Some(e) = self.blocks.get_mut(&k) {
            e.1 = self.tick;
        }
        true
    }

    fn insert(&mut self, k: Key, size: u64) {
        self.remove(k);
        self.tick += 1;
        self.blocks.insert(k, (size, self.tick));
        self.by_use.insert(self.tick, k);
        self.used += size;
    }

    fn remove(&mut self, k: Key) -> bool {
        match self.blocks.remove(&k) {
            Some((size, t)) => {
                self.by_use.remove(&t);
                self.used -= size;
                true
            }
            None => false,
        }
    }

    fn oldest(&self) -> Option<Key> {
        self.by_use.values().next().copied()
    }
}

struct Dir {
    root: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots: Vec<_> = self
            .dirs
            .iter()
            .map(|d| d.root.display().to_string())
            .collect();
        f.debug_struct("DiskCache").field("dirs", &roots).finish()
    }
}

pub struct DiskCache {
    dirs: Vec<Dir>,
    free_ratio: f64,
    block_size: u64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Blocks queued for writing.
    pending: std::sync::atomic::AtomicUsize,
}

fn key_path(root: &Path, id: u64, index: u32, size: u32) -> PathBuf {
    root.join(format!(
        "chunks/{}/{}/{id}_{index}_{size}",
        id / 1_000_000,
        id / 1_000
    ))
}

fn parse_name(name: &str) -> Option<(Key, u32)> {
    let mut it = name.split('_');
    let id = it.next()?.parse().ok()?;
    let index = it.next()?.parse().ok()?;
    let size = it.next()?.parse().ok()?;
    it.next().is_none().then_some(((id, index), size))
}

fn free_fraction(p: &Path) -> Option<f64> {
    let s = nix::sys::statvfs::statvfs(p).ok()?;
    (s.blocks() > 0).then(|| s.blocks_available() as f64 / s.blocks() as f64)
}

impl DiskCache {
    /// Opens (creating) the cache directories of volume `uuid` and indexes the blocks a
    /// previous run left there.
    pub fn open(cfg: &DiskCacheConfig, uuid: &str, block_size: u64) -> Result<DiskCache, String> {
        if cfg.dirs.is_empty() {
            return Err("no cache directory".into());
        }
        let share = cfg.capacity / cfg.dirs.len() as u64;
        let mut dirs = Vec::new();
        for d in &cfg.dirs {
            let root = d.join(uuid).join("raw");
            std::fs::create_dir_all(&root)
                .map_err(|e| format!("cache directory {}: {e}", root.display()))?;
            let mut index = Index::default();
            scan(&root.join("chunks"), &mut index);
            dirs.push(Dir {
                root,
                capacity: share,
                index: Mutex::new(index),
            });
        }
        Ok(DiskCache {
            dirs,
            free_ratio: cfg.free_ratio.clamp(0.0, 0.9),
            block_size,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            pending: Default::default(),
        })
    }

    fn dir(&self, k: Key) -> &Dir {
        let h = k.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(k.1);
        &self.dirs[(h % self.dirs.len() as u64) as usize]
    }

    /// Bytes held, over all directories.
    pub fn used(&self) -> u64 {
        self.dirs
            .iter()
            .map(|d| d.index.lock().map(|i| i.used).unwrap_or(0))
            .sum()
    }

    /// The block, if cached and intact.
    pub async fn load(&self, id: u64, index: u32, size: u32) -> Option<Bytes> {
        let d = self.dir((id, index));
        let known = d
            .index
            .lock()
            .ok()
            .is_some_and(|mut i| i.touch((id, index)));
        if !known {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let path = key_path(&d.root, id, index, size);
        let file = path.clone();
        let read =
            tokio::task::spawn_blocking(move || crate::mapped::read(&file, Some(size as u64)));
        match read.await {
            Ok(Ok(b)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(b)
            }
            // Truncated or gone (disk trouble, someone cleaned the directory): drop it.
            _ => {
                if let Ok(mut i) = d.index.lock() {
                    i.remove((id, index));
                }
                let _ = tokio::fs::remove_file(&path).await;
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// `len` bytes at `off` of a cached block, read from its file without the rest (a random
    /// 4 KiB reader must not pay for 4 MiB).
    pub async fn load_range(
        &self,
        id: u64,
        index: u32,
        size: u32,
        off: usize,
        len: usize,
    ) -> Option<Bytes> {
        let d = self.dir((id, index));
        if !d
            .index
            .lock()
            .ok()
            .is_some_and(|mut i| i.touch((id, index)))
        {
            return None;
        }
        let path = key_path(&d.root, id, index, size);
        let got = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(&path)?;
            if f.metadata()?.len() != size as u64 {
                return Err(std::io::Error::other("truncated cache file"));
            }
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, off as u64)?;
            Ok(buf)
        })
        .await;
        match got {
            Ok(Ok(b)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(Bytes::from(b))
            }
            _ => {
                if let Ok(mut i) = d.index.lock() {
                    i.remove((id, index));
                }
                None
            }
        }
    }

    /// Stores a block in the background (tmp + rename: readers never see half a block).
    pub fn store(self: &std::sync::Arc<Self>, id: u64, index: u32, data: Bytes) {
        let me = self.clone();
        self.pending.fetch_add(1, Ordering::SeqCst);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = me.store_now(id, index, &data) {
                tracing::debug!("disk cache: {e}");
            }
            me.pending.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Waits (up to `limit`) for queued block writes, so a clean exit leaves them cached.
    pub async fn settle(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn store_now(&self, id: u64, index: u32, data: &[u8]) -> Result<(), String> {
        let d = self.dir((id, index));
        let path = key_path(&d.root, id, index, data.len() as u32);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        self.make_room(d, data.len() as u64);
        if free_fraction(&d.root).is_some_and(|f| f < self.free_ratio) {
            return Err(format!(
                "{}: less than {:.0}% free, not caching",
                d.root.display(),
                self.free_ratio * 100.0
            ));
        }
        if d.index
            .lock()
            .is_ok_and(|i| i.blocks.contains_key(&(id, index)))
        {
            return Ok(());
        }
        // One temporary name per write: two fetches of one block must not share it.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = path.with_extension(format!("tmp{}", SEQ.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&tmp, data)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("writing {}: {e}", path.display())
            })?;
        if let Ok(mut i) = d.index.lock() {
            i.insert((id, index), data.len() as u64);
        }
        Ok(())
    }

    /// Evicts least recently used blocks until `incoming` fits the share and the disk keeps
    /// its free ratio.
    fn make_room(&self, d: &Dir, incoming: u64) {
        loop {
            let victim = {
                let Ok(mut i) = d.index.lock() else { return };
                let over = i.used + incoming > d.capacity;
                let low = !over && free_fraction(&d.root).is_some_and(|f| f < self.free_ratio);
                if !(over || low) {
                    return;
                }
                let Some(k) = i.oldest() else { return };
                let size = i.blocks.get(&k).map_or(0, |e| e.0);
                i.remove(k);
                (k, size as u32)
            };
            let ((id, index), size) = victim;
            let _ = std::fs::remove_file(key_path(&d.root, id, index, size));
        }
    }

    /// Drops the blocks of a deleted slice.
    pub fn forget_slice(&self, id: u64, size: u32) {
        let bs = self.block_size.max(1);
        let blocks = (size as u64).div_ceil(bs) as u32;
        for index in 0..blocks {
            let d = self.dir((id, index));
            let len = if (index as u64 + 1) * bs <= size as u64 {
                bs as u32
            } else {
                (size as u64 - index as u64 * bs) as u32
            };
            let removed = d.index.lock().is_ok_and(|mut i| i.remove((id, index)));
            if removed {
                let _ = std::fs::remove_file(key_path(&d.root, id, index, len));
            }
        }
    }
}

/// Indexes blocks left by an earlier run (oldest first by modification time).
fn scan(dir: &Path, index: &mut Index) {
    let mut found: Vec<(std::time::SystemTime, Key, u64)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            match parse_name(&name) {
                Some((k, size)) if m.len() == size as u64 => {
                    found.push((m.modified().unwrap_or(std::time::UNIX_EPOCH), k, m.len()));
                }
                // Half-written (`.tmp`) or damaged: not worth keeping.
                _ => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }
    found.sort();
    for (_, k, size) in found {
        index.insert(k, size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn stores_loads_evicts_and_survives_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = DiskCacheConfig {
            dirs: vec![tmp.path().join("a"), tmp.path().join("b")],
            capacity: 4 * 1000,
            free_ratio: 0.0,
        };
        let c = Arc::new(DiskCache::open(&cfg, "uuid-1", 1000).unwrap());
        for i in 0..4u32 {
            c.store_now(7, i, &[i as u8; 1000]).unwrap();
        }
        assert_eq!(c.used(), 4000);
        assert_eq!(c.load(7, 1, 1000).await.unwrap()[0], 1);
        assert_eq!(
            &c.load_range(7, 2, 1000, 990, 10).await.unwrap()[..],
            &[2u8; 10]
        );
        assert!(c.load_range(7, 9, 1000, 0, 10).await.is_none());
        assert!(c.load(7, 9, 1000).await.is_none());
        // Over the capacity: the least recently used block of that directory goes.
        for i in 4..8u32 {
            c.store_now(7, i, &[i as u8; 1000]).unwrap();
        }
        assert!(c.used() <= 4000, "{}", c.used());
        drop(c);
        let again = DiskCache::open(&cfg, "uuid-1", 1000).unwrap();
        assert!(again.used() > 0 && again.used() <= 4000);
        let held: Vec<u32> = {
            let mut v = Vec::new();
            for i in 0..8u32 {
                if again.load(7, i, 1000).await.is_some() {
                    v.push(i);
                }
            }
            v
        };
        assert!(held.contains(&7), "the newest block survives: {held:?}");
        again.forget_slice(7, 8000);
        assert_eq!(again.used(), 0);
        // A damaged file is dropped instead of served.
        let d = DiskCache::open(&cfg, "uuid-2", 1000).unwrap();
        d.store_now(9, 0, &[1u8; 1000]).unwrap();
        let p = key_path(&d.dir((9, 0)).root, 9, 0, 1000);
        std::fs::write(&p, b"short").unwrap();
        assert!(d.load(9, 0, 1000).await.is_none());
        assert!(!p.exists());
    }
}
