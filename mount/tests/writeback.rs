//! `--writeback`: a write is acknowledged once its blocks are staged on local disk, even with
//! the object store down; staged blocks are read back from there, survive a killed client,
//! and the next client uploads them, after which the reference client reads the file.

mod common;
use common::*;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

/// Names of the block files under `dir` (temporary ones, a write cut short, left out).
fn staged_blocks(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = files_under(dir)
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .filter(|n| !n.contains(".tmp"))
        .collect();
    names.sort();
    names
}

fn stats_value(m: &Mount, name: &str) -> Option<f64> {
    let text = fs::read_to_string(m.path(".stats")).ok()?;
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn writeback_stages_blocks_and_uploads_them_after_a_crash() {
    let Some(mut s3) = PrivateS3::start() else {
        return;
    };
    let S3Volume { dir, meta, mp } = s3.volume("wbk");
    let cache = dir.path().join("cache");
    let mount = || {
        let mut c = Command::new(OURS);
        // No disk cache: a read that misses memory must come from staging or the bucket.
        c.args(["mount", &meta, mp.to_str().unwrap(), "--writeback"])
            .args(["--cache-size", "0", "--cache-dir", cache.to_str().unwrap()]);
        Mount::start(c, &mp)
    };
    let mut m = mount();
    assert!(
        m.log().contains("--writeback"),
        "no warning that writeback trades durability:\n{}",
        m.log()
    );
    let config = fs::read_to_string(m.path(".config")).unwrap();
    let uuid = serde_json::from_str::<serde_json::Value>(&config).unwrap()["UUID"]
        .as_str()
        .unwrap()
        .to_string();
    let staging = cache.join(&uuid).join("rawstaging");

    s3.stop();
    let data = pattern(7, (6 << 20) + 123);
    {
        let mut f = fs::File::create(m.path("staged")).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all()
            .expect("fsync succeeds with the object store down: the blocks are staged");
    }
    // Normally one slice of two blocks; a commit mid-write (this VM's clock can leap past
    // the 5 s slice age) splits it, so count bytes, not names.
    let staged = staged_blocks(&staging);
    let staged_bytes: u64 = staged
        .iter()
        .filter_map(|n| n.rsplit('_').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(staged_bytes, data.len() as u64, "{staged:?}\n{}", m.log());
    assert_eq!(
        stats_value(&m, "juicefs_staging_blocks"),
        Some(staged.len() as f64)
    );
    // A fresh open drops the page cache (no --open-cache): the read reaches the client,
    // which has no disk cache and no object store, only the staged blocks.
    let mut back = Vec::new();
    fs::File::open(m.path("staged"))
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data, "staged blocks read back different bytes");

    m.kill9_leave_dead_mount();
    let _ = Command::new("umount").arg("-l").arg(&mp).status();
    assert_eq!(
        staged_blocks(&staging).len(),
        2,
        "staged blocks outlive the client"
    );
    let bucket_files = staged_blocks(&s3.volume_dir("wbk").join("chunks"));
    assert!(
        bucket_files.is_empty(),
        "uploaded while S3 was down? {bucket_files:?}"
    );

    s3.restart();
    let mut m = mount();
    let mut uploaded = false;
    for _ in 0..400 {
        if staged_blocks(&staging).is_empty() {
            uploaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        uploaded,
        "the next client did not upload staged blocks:\n{}",
        m.log()
    );
    assert!(
        m.log().contains("staged by an earlier client"),
        "{}",
        m.log()
    );
    assert_eq!(staged_blocks(&s3.volume_dir("wbk").join("chunks")), staged);
    m.unmount();

    let rmp = dir.path().join("ref");
    fs::create_dir_all(&rmp).unwrap();
    let mut c = Command::new(reference());
    c.args(["mount", "--no-usage-report", "--cache-size", "0"])
        .arg("--cache-dir")
        .arg(dir.path().join("cache-ref"))
        .arg(&meta)
        .arg(&rmp);
    let r = Mount::start(c, &rmp);
    assert!(
        fs::read(r.path("staged")).unwrap() == data,
        "the reference client reads what was staged and uploaded later"
    );
}

#[test]
fn writeback_without_a_cache_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = format!("sqlite3://{}/meta.db", dir.path().display());
    let bucket = dir.path().join("bucket");
    run_ok({
        let mut c = Command::new(OURS);
        c.args(["format", "--bucket", bucket.to_str().unwrap(), &meta, "wbk"]);
        c
    });
    let mp = dir.path().join("mnt");
    fs::create_dir_all(&mp).unwrap();
    let out = Command::new(OURS)
        .args(["mount", &meta, mp.to_str().unwrap(), "--writeback"])
        .args(["--cache-dir", "memory"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--writeback") && err.contains("--cache-dir"),
        "{err}"
    );
    assert!(!is_mounted(&mp));
}
