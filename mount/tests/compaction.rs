//! A file appended with an fsync after each piece becomes one slice per fsync; the client
//! compacts the chunk in the background into one slice that reads the same, through our
//! client and the reference client, and the replaced objects are deleted.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn slices_of(path: &Path) -> usize {
    let out = run_ok({
        let mut c = Command::new(OURS);
        c.args(["info", "--json"]).arg(path);
        c
    });
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slices"].as_array().unwrap().len())
        .sum()
}

fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn appended_with_fsync_then_compacted(b: Backend) {
    let Some(v) = Volume::new(b) else {
        return;
    };
    v.format_ours(&[]);
    let piece = pattern(9, 3000);
    let mut expected = Vec::new();
    {
        let m = Mount::ours(&v, &v.mountpoint("c"), &[]);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.path("log"))
            .unwrap();
        for i in 0..60u8 {
            let mut p = piece.clone();
            p[0] = i;
            f.write_all(&p).unwrap();
            f.sync_all().unwrap();
            expected.extend_from_slice(&p);
        }
        drop(f);
        // An overwrite in the middle (not through the O_APPEND handle, which would append),
        // so the view has pieces of several slices.
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(m.path("log"))
            .unwrap();
        f.write_all_at(b"OVERWRITE", 100_000).unwrap();
        f.sync_all().unwrap();
        expected[100_000..100_009].copy_from_slice(b"OVERWRITE");
        drop(f);
        let deadline = Instant::now() + Duration::from_secs(20);
        while slices_of(&m.path("log")) >= 20 {
            assert!(Instant::now() < deadline, "61 slices were never compacted");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(std::fs::read(m.path("log")).unwrap(), expected);
    }
    {
        // A fresh client reads the compacted chunk right (nothing cached in memory).
        let m = Mount::ours(&v, &v.mountpoint("c"), &[]);
        assert_eq!(std::fs::read(m.path("log")).unwrap(), expected);
        let n = slices_of(&m.path("log"));
        assert!(n < 20, "{n} slices left");
    }
    if b == Backend::SqliteFile {
        let m = Mount::reference(&v, &v.mountpoint("r"), &["--metrics", "127.0.0.1:0"]);
        assert_eq!(
            std::fs::read(m.path("log")).unwrap(),
            expected,
            "the reference reads it"
        );
    }
    // The replaced slices' objects are gone: the bucket holds what fsck expects, no more.
    let fsck = run_ok({
        let mut c = Command::new(OURS);
        c.args(["fsck", &v.meta]);
        c
    });
    let text = String::from_utf8_lossy(&fsck.stderr).into_owned();
    let blocks: usize = text
        .split(" blocks) in the metadata")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("fsck said: {text}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let chunks = Path::new(&v.bucket).join(&v.name).join("chunks");
    while files_under(&chunks) != blocks {
        assert!(
            Instant::now() < deadline,
            "{} objects for {blocks} blocks",
            files_under(&chunks)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sqlite_file() {
    appended_with_fsync_then_compacted(Backend::SqliteFile)
}

#[test]
fn redis_file() {
    appended_with_fsync_then_compacted(Backend::RedisFile)
}
