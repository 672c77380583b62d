//! `juicefs warmup PATH…`: reads files through the mount so their blocks land in the
//! client's cache (the disk cache, when the mount has one), with a progress line and
//! `--threads` readers.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn files(paths: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if m.is_dir() {
            for e in std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))? {
                stack.push(e.map_err(|e| format!("{}: {e}", p.display()))?.path());
            }
        } else if m.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

fn read_through(p: &Path, bytes: &AtomicU64) -> std::io::Result<()> {
    let mut f = std::fs::File::open(p)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

pub fn run(paths: &[String], threads: usize) -> ExitCode {
    if paths.iter().any(|p| !Path::new(p).exists()) {
        eprintln!(
            "juicefs warmup: {} does not exist",
            paths
                .iter()
                .find(|p| !Path::new(p).exists())
                .cloned()
                .unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    let list = match files(paths) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("juicefs warmup: {e}");
            return ExitCode::FAILURE;
        }
    };
    let total = list.len() as u64;
    let queue = Arc::new(Mutex::new(list));
    let (done, bytes, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (q, done, bytes, failed) =
                (queue.clone(), done.clone(), bytes.clone(), failed.clone());
            std::thread::spawn(move || {
                while let Some(p) = q.lock().ok().and_then(|mut q| q.pop()) {
                    if let Err(e) = read_through(&p, &bytes) {
                        eprintln!("juicefs warmup: {}: {e}", p.display());
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let tty = std::io::stderr().is_terminal();
    let progress = |end: bool| {
        let line = format!(
            "warmup: {}/{total} files, {:.1} MiB",
            done.load(Ordering::Relaxed),
            bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
        );
        let mut e = std::io::stderr();
        if tty {
            let _ = write!(e, "\r{line}{}", if end { "\n" } else { "" });
        } else if end {
            let _ = writeln!(e, "{line}");
        }
    };
    while workers.iter().any(|w| !w.is_finished()) {
        progress(false);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for w in workers {
        let _ = w.join();
    }
    progress(true);
    if failed.load(Ordering::Relaxed) > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
