//! A classic sidecar in a pod that runs to completion (a Job) must exit after the app, or
//! the pod never completes. The webhook's watcher marks such pods with an annotation once
//! every app container has terminated; the kubelet writes the pod's annotations into a
//! downward-API file, and this task, polling it, unmounts when nothing is open and written
//! any more. `Session::run` then returns and the client exits 0.

use crate::vfs::Vfs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Must equal `jfs_mountspec::container::ANNOTATION_APP_EXITED` (the client does not
/// depend on the Kubernetes crates).
pub const ANNOTATION: &str = "juicefs.com/app-exited";
const POLL: Duration = Duration::from_secs(2);
/// The app is gone, so open files are leftovers of processes it left behind; do not wait
/// on them for ever.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Whether a downward-API annotations file (`key="value"` lines) carries the mark.
pub fn marked(text: &str) -> bool {
    text.lines()
        .any(|l| l.split_once('=').is_some_and(|(k, _)| k == ANNOTATION))
}

pub async fn watch(file: PathBuf, vfs: Arc<Vfs>, mp: String) {
    loop {
        if tokio::fs::read_to_string(&file)
            .await
            .is_ok_and(|t| marked(&t))
        {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    tracing::info!(
        "the app has exited ({ANNOTATION} in {}): unmounting {mp} once no file is open",
        file.display()
    );
    let start = Instant::now();
    while vfs.open_handles() > 0 || vfs.dirty_files().await > 0 {
        if start.elapsed() >= MAX_WAIT {
            tracing::warn!(
                "{} files still open on {mp} {} s after the app exited: unmounting anyway",
                vfs.open_handles(),
                MAX_WAIT.as_secs()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    super::mount::flush_and_unmount(&vfs, &mp).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mark_among_downward_api_lines() {
        let text = "kubernetes.io/config.seen=\"2026-11-22T10:00:00Z\"\njuicefs.com/app-exited=\"2026-11-22T10:01:00Z\"\n";
        assert!(marked(text));
        assert!(!marked("kubernetes.io/config.seen=\"x\"\n"));
        // A value that merely mentions the key is not the key.
        assert!(!marked("note=\"juicefs.com/app-exited=\"\n"));
        assert!(!marked(""));
    }
}
