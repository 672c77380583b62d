//! The read path, counted at the object store: a sequential read of a 1 GiB file fetches
//! each 4 MiB block once (read-ahead and concurrent readers share fetches), and a second
//! read, by a new client process on the same disk cache, fetches nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn juicefs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_juicefs"))
}

fn run(args: &[&str]) {
    let out = Command::new(juicefs_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "juicefs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A foreground client; unmounted and reaped on drop.
struct Client {
    child: Child,
    mp: PathBuf,
    metrics: u16,
}

impl Client {
    fn start(meta: &str, mp: &Path, opts: &str) -> Client {
        let metrics = free_port();
        let child = Command::new(juicefs_bin())
            .args(["mount", meta, &mp.display().to_string(), "-o"])
            .arg(format!("{opts},metrics=127.0.0.1:{metrics}"))
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
        Client {
            child,
            mp: mp.to_path_buf(),
            metrics,
        }
    }

    fn gets(&self) -> u64 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with("juicefs_object_request_durations_histogram_seconds_count{")
                    && l.contains("method=\"GET\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = Command::new(juicefs_bin())
            .args(["umount", &self.mp.display().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn read_all(path: &Path) -> u64 {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut sum = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sum = sum.wrapping_add(buf[..n].iter().map(|b| *b as u64).sum::<u64>());
        total += n as u64;
    }
    assert_eq!(total, 1 << 30);
    sum
}

/// The mount's `read_ahead_kb` in sysfs (set a moment after the mount is live).
fn kernel_readahead_kib(mp: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dev = info
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() > 4 && Path::new(f[4]) == mp)
        .map(|f| f[2].to_string())
        .next_back()?;
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    for _ in 0..100 {
        let v = std::fs::read_to_string(&knob).ok()?.trim().to_string();
        if v != "128" {
            return Some(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some("128".into())
}

#[test]
fn sequential_reads_fetch_each_block_once_and_the_disk_cache_serves_the_second() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!("sqlite3://{}/meta.db", tmp.path().display());
    run(&[
        "format",
        "--storage",
        "file",
        "--bucket",
        &tmp.path().join("data").display().to_string(),
        &meta,
        "readpath",
    ]);
    let mp = tmp.path().join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let file = mp.join("big");
    let expected = {
        let _c = Client::start(&meta, &mp, "cache-dir=memory");
        let mut f = std::fs::File::create(&file).unwrap();
        let mut sum = 0u64;
        let mut block = vec![0u8; 1 << 20];
        for i in 0..1024u64 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = ((i * 31 + j as u64 * 7) % 251) as u8;
            }
            sum = sum.wrapping_add(block.iter().map(|b| *b as u64).sum::<u64>());
            f.write_all(&block).unwrap();
        }
        f.sync_all().unwrap();
        sum
    };
    let cache = tmp.path().join("cache");
    // This machine keeps most of its disk reserved (statfs f_bavail is small): a low ratio.
    let opts = format!("cache-dir={},free-space-ratio=0.01", cache.display());
    {
        let c = Client::start(&meta, &mp, &opts);
        assert_eq!(
            kernel_readahead_kib(&mp).as_deref(),
            Some("1024"),
            "the client widens the mount's kernel read-ahead"
        );
        // Mounting reads a probe object back (the bucket check): count from here.
        let base = c.gets();
        assert_eq!(read_all(&file), expected);
        let gets = c.gets() - base;
        eprintln!("first read: {gets} GETs for 256 blocks");
        assert!(
            (256..=260).contains(&gets),
            "each 4 MiB block fetched about once, got {gets} GETs"
        );
    }
    {
        // A new client process: nothing in memory, everything on the disk cache.
        let c = Client::start(&meta, &mp, &opts);
        let base = c.gets();
        // Random 4 KiB reads (answered from the cache files by positioned reads) are right.
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(&file).unwrap();
            let mut buf = vec![0u8; 4096];
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for _ in 0..300 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = x % ((1 << 30) - 4096);
                f.read_exact_at(&mut buf, off).unwrap();
                for (k, b) in buf.iter().enumerate() {
                    let pos = off + k as u64;
                    let (i, j) = (pos >> 20, pos & ((1 << 20) - 1));
                    assert_eq!(*b, ((i * 31 + j * 7) % 251) as u8, "byte {pos}");
                }
            }
        }
        assert_eq!(read_all(&file), expected);
        assert_eq!(
            c.gets() - base,
            0,
            "the second read comes from the disk cache"
        );
    }
}
