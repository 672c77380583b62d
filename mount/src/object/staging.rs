//! `--writeback`: a block is acknowledged once it is staged on local disk, and uploaded
//! in the background. Staged blocks live where JuiceFS 0.14 keeps them,
//! `<cache-dir>/<UUID>/rawstaging/chunks/...`, uncompressed, written to a temporary name
//! and renamed; a client that starts and finds staged blocks (its predecessor was killed)
//! uploads them. A staged block survives a killed client but not a lost disk: that is
//! the durability `--writeback` trades for speed.

use super::local::LocalDir;
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

pub struct Staging {
    dir: LocalDir,
    queue: mpsc::UnboundedSender<String>,
    /// Blocks staged and not yet uploaded (or found deleted).
    pending: AtomicUsize,
}

impl Staging {
    /// The staging directory, and the queue of keys its uploader takes.
    pub fn new(dir: &Path) -> (Staging, mpsc::UnboundedReceiver<String>) {
        let (queue, rx) = mpsc::unbounded_channel();
        let st = Staging {
            dir: LocalDir::new(&dir.to_string_lossy()),
            queue,
            pending: AtomicUsize::new(0),
        };
        (st, rx)
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

    /// Queues every block a previous client left staged (temporary files, a write cut
    /// short, are not blocks); returns how many.
    pub fn recover(&self) -> std::io::Result<usize> {
        let root = self.dir.root();
        let mut found = Vec::new();
        super::list::walk(root, root, &mut found)?;
        let mut n = 0;
        for (rel, _) in found {
            if super::parse_block_name(&rel).is_some() {
                self.enqueue(rel);
                n += 1;
            }
        }
        Ok(n)
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
