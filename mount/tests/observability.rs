//! What a mount tells about itself: `.stats` (the metrics, moving with the workload),
//! `.config` (settings as JSON, no secrets), `.accesslog` (operations while it is read),
//! and `juicefs stats` reading them.

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn juicefs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_juicefs"))
}

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn stats_config_accesslog_and_the_stats_command() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!("sqlite3://{}/meta.db", tmp.path().display());
    let bucket = tmp.path().join("data").display().to_string();
    assert!(
        juicefs()
            .args([
                "format",
                "--storage",
                "file",
                "--bucket",
                &bucket,
                &meta,
                "observed"
            ])
            .status()
            .unwrap()
            .success()
    );
    let mp: PathBuf = tmp.path().join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let cache = tmp.path().join("cache");
    let opts = format!("cache-dir={},free-space-ratio=0.01", cache.display());
    assert!(
        juicefs()
            .args(["mount", "-d", &meta, &mp.display().to_string(), "-o", &opts])
            .status()
            .unwrap()
            .success()
    );

    let before = std::fs::read_to_string(mp.join(".stats")).unwrap();
    assert!(!before.contains("# HELP"), "plain series lines");
    std::fs::write(mp.join("f"), vec![3u8; 5 << 20]).unwrap();
    let after = std::fs::read_to_string(mp.join(".stats")).unwrap();
    for name in [
        "juicefs_uptime",
        "juicefs_memory",
        "juicefs_cpu_usage",
        "juicefs_used_buffer_size_bytes",
        "juicefs_fuse_ops_total",
        "juicefs_object_request_data_bytes",
        "juicefs_meta_ops_total",
        "juicefs_meta_ops_durations_histogram_seconds_count",
        "juicefs_transaction_durations_histogram_seconds_count",
        "juicefs_transaction_restart",
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{after}"
        );
    }
    let written = series(&after, "juicefs_fuse_written_size_bytes_sum")
        - series(&before, "juicefs_fuse_written_size_bytes_sum");
    assert_eq!(written, (5 << 20) as f64);
    for moving in [
        "juicefs_fuse_ops_total",
        "juicefs_meta_ops_total",
        "juicefs_transaction_durations_histogram_seconds_count",
    ] {
        assert!(
            series(&after, moving) > series(&before, moving),
            "{moving} did not move"
        );
    }

    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mp.join(".config")).unwrap()).unwrap();
    assert_eq!(cfg["Mountpoint"], mp.display().to_string());
    assert_eq!(cfg["Name"], "observed");
    assert_eq!(cfg["CacheDirs"][0], cache.display().to_string());
    assert!(cfg["Pid"].as_u64().unwrap() > 0);
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(mp.join(".stats"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));

    // The access log shows operations that happen while it is read, with their caller and
    // arguments, in the line shape JuiceFS's tools parse.
    let mut log = std::fs::File::open(mp.join(".accesslog")).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = String::new();
        let mut buf = vec![0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !got.contains("] unlink (1,gone)") && Instant::now() < deadline {
            let n = log.read(&mut buf).unwrap();
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        let _ = std::fs::metadata(mp.join("nothing-here"));
        std::fs::write(mp.join("gone"), b"x").unwrap();
        std::fs::remove_file(mp.join("gone")).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = reader.join().unwrap();
    // FUSE reports the calling thread's id, and tests run on their own threads.
    let me = unsafe { libc::syscall(libc::SYS_gettid) };
    assert!(
        got.lines()
            .any(|l| l.contains(&format!("[uid:0,gid:0,pid:{me}] unlink (1,gone): OK <"))),
        "{got}"
    );
    assert!(
        got.lines()
            .any(|l| l.contains("] lookup (1,nothing-here): No such file or directory")),
        "{got}"
    );

    let out = juicefs()
        .args([
            "stats",
            &mp.display().to_string(),
            "--interval",
            "0.3",
            "--count",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("cache.hit")
            && lines[0].contains("get(MiB)")
            && lines[0].contains("m.ops")
    );
    assert!(lines[1].contains('%') && lines[1].contains('M'), "{text}");
    let bad = juicefs().args(["stats", "/tmp"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is it a juicefs mount"));

    assert!(
        juicefs()
            .args(["umount", &mp.display().to_string()])
            .status()
            .unwrap()
            .success()
    );
}
