//! `--writeback`: a block is acknowledged once it is staged on local disk, and uploaded
//! in the background. Staged blocks live where JuiceFS 0.14 keeps them,
//! `<cache-dir>/<UUID>/rawstaging/chunks/...`, uncompressed, written to a temporary name
//! and renamed; a client that starts and finds staged blocks (its predecessor was killed)
//! uploads them. A staged block survives a killed client but not a lost disk: that is
//! the durability `--writeback` trades for speed.

use super::local::LocalDir;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

pub struct Staging {
    dir: LocalDir,
    queue: mpsc::UnboundedSender<String>,
    receiver: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Blocks staged and not yet uploaded (or found deleted).
    pending: AtomicUsize,
}

impl Staging {
    pub fn new(dir: &Path) -> Staging {
        let (queue, rx) = mpsc::unbounded_channel();
        Staging {
            dir: LocalDir::new(&dir.to_string_lossy()),
            queue,
            receiver: std::sync::Mutex::new(Some(rx)),
            pending: AtomicUsize::new(0),
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Writes a block under its key (relative to the volume prefix) and queues its upload.
    pub async fn stage(&self, rel: &str, data: Bytes) -> std::io::Result<()> {
        self.dir.put(rel, data).await?;
        self.enqueue(rel.to_string());
        Ok(())
    }

    fn enqueue(&self, rel: String) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        if self.queue.send(rel).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A staged block, if it is still waiting for its upload.
    pub async fn get(&self, rel: &str) -> Option<Bytes> {
        self.dir.get(rel).await.ok()
    }

    pub async fn remove(&self, rel: &str) -> std::io::Result<()> {
        self.dir.delete(rel).await
    }

    /// Queues every block a previous client left staged; returns how many.
    pub fn recover(&self) -> std::io::Result<usize> {
        let root = self.dir.root().to_path_buf();
        let mut found = Vec::new();
        walk(&root, &root, &mut found)?;
        let n = found.len();
        for rel in found {
            self.enqueue(rel);
        }
        Ok(n)
    }

    pub fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.receiver.lock().ok()?.take()
    }

    /// Marks one queued block as done (uploaded, or gone because its file was deleted).
    pub fn done(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// Waits until nothing is staged, logging progress; false when `limit` passed first.
    pub async fn drain(self: &Arc<Self>, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last_log = tokio::time::Instant::now();
        while self.pending() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            if last_log.elapsed() >= Duration::from_secs(5) {
                tracing::info!(
                    "writeback: {} staged blocks still uploading",
                    self.pending()
                );
                last_log = tokio::time::Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

/// Staged block files under `dir`, as keys relative to `root`; temporary files (a write
/// cut short) are skipped.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let path: PathBuf = e.path();
        if e.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else if super::parse_block_name(&e.file_name().to_string_lossy()).is_some()
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}
