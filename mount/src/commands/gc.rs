//! `juicefs gc META-URL`: objects no slice refers to (leaked by crashed uploads or lost
//! deletions), and files whose deletion is still pending. With `--delete`, removes both.
//! Objects younger than an hour are skipped: a client may be uploading a slice it has not
//! committed yet (the reference client's rule too).

use super::volume::{Volume, classify, human};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Objects written more recently than this are never called leaked.
pub const YOUNG: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub objects: u64,
    pub valid: u64,
    pub leaked: Vec<(String, u64)>,
    pub skipped: u64,
    pub skipped_bytes: u64,
    pub pending_files: u64,
}

/// Sorts the bucket's blocks into valid, leaked and too young to tell.
pub async fn scan(v: &Volume, now: SystemTime) -> Result<Report, String> {
    let (slices, objects) = v.inventory().await?;
    let slices: HashMap<u64, u32> = slices.into_iter().collect();
    let mut r = Report {
        objects: objects.len() as u64,
        pending_files: v
            .meta
            .pending_deletions()
            .await
            .map_err(|e| e.to_string())?,
        ..Report::default()
    };
    for o in objects {
        let young = o
            .modified
            .is_none_or(|m| now.duration_since(m).unwrap_or_default() < YOUNG);
        if classify(&v.store, &slices, &o) {
            r.valid += 1;
        } else if young {
            r.skipped += 1;
            r.skipped_bytes += o.size as u64;
        } else {
            r.leaked.push((o.key, o.size as u64));
        }
    }
    Ok(r)
}

async fn gc(url: &str, delete: bool, threads: usize) -> Result<(), String> {
    let v = Volume::open(url, !delete).await?;
    let mut pending_done = 0;
    if delete {
        for f in v
            .meta
            .cleanup_deleted_files()
            .await
            .map_err(|e| e.to_string())?
        {
            v.store
                .delete_slice(f.id, f.size)
                .await
                .map_err(|e| format!("deleting slice {}: {e}", f.id))?;
            pending_done += 1;
        }
    }
    let r = scan(&v, SystemTime::now()).await?;
    let leaked_bytes: u64 = r.leaked.iter().map(|(_, b)| b).sum();
    eprintln!(
        "{} objects: {} in use, {} leaked ({}), {} skipped as younger than an hour ({})",
        r.objects,
        r.valid,
        r.leaked.len(),
        human(leaked_bytes),
        r.skipped,
        human(r.skipped_bytes)
    );
    if delete {
        let store = Arc::new(v.store.clone());
        let queue = Arc::new(std::sync::Mutex::new(r.leaked.clone()));
        let mut tasks = Vec::new();
        for _ in 0..threads.max(1) {
            let (store, queue) = (store.clone(), queue.clone());
            tasks.push(tokio::spawn(async move {
                let mut failed = 0u64;
                while let Some((key, _)) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    if let Err(e) = store.delete_object(&key).await {
                        eprintln!("juicefs gc: deleting {key}: {e}");
                        failed += 1;
                    }
                }
                failed
            }));
        }
        let mut failed = 0;
        for t in tasks {
            failed += t.await.unwrap_or(1);
        }
        eprintln!(
            "deleted {} leaked objects and the data of {pending_done} pending slices",
            r.leaked.len() as u64 - failed
        );
        if failed > 0 {
            return Err(format!("{failed} objects could not be deleted"));
        }
    } else {
        if r.pending_files > 0 {
            eprintln!("{} deleted files still hold their data", r.pending_files);
        }
        if !r.leaked.is_empty() || r.pending_files > 0 {
            eprintln!("run again with --delete to remove them");
        }
    }
    Ok(())
}

pub fn run(url: &str, delete: bool, threads: usize) -> ExitCode {
    let r = super::runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(gc(url, delete, threads)));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("juicefs gc: {e}");
            ExitCode::FAILURE
        }
    }
}
