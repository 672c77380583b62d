//! The command line as users and Mount Pods run it: `-d` background mounts, the
//! `mount.juicefs` helper form, `--subdir`, `umount`, `status`.

mod common;
use common::*;
use std::fs;
use std::process::Command;

fn background_mount_helper_form_subdir_umount_and_status(b: Backend) {
    let Some(v) = Volume::new(b) else {
        return;
    };
    v.format_ours(&[]);
    let mp = v.mountpoint("bg");
    let log = v.dir.path().join("bg.log");
    // `-d` returns once the file system is live.
    run_ok({
        let mut c = Command::new(OURS);
        c.args([
            "mount",
            "-d",
            "--log",
            log.to_str().unwrap(),
            &v.meta,
            mp.to_str().unwrap(),
        ]);
        c
    });
    assert!(is_mounted(&mp));
    fs::create_dir_all(mp.join("team/a")).unwrap();
    fs::write(mp.join("team/a/f"), b"in subdir").unwrap();
    fs::write(mp.join("outside"), b"x").unwrap();
    let st = run_ok({
        let mut c = Command::new(OURS);
        c.args(["status", &v.meta]);
        c
    });
    let status: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(status["Setting"]["Name"], v.name.as_str());
    let sessions = status["Sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["MountPoint"], mp.to_str().unwrap());
    run_ok({
        let mut c = Command::new(OURS);
        c.args(["umount", mp.to_str().unwrap()]);
        c
    });
    assert!(!is_mounted(&mp));

    // The helper form a Mount Pod runs; it daemonizes like mount(8) expects.
    let helper = v.dir.path().join("mount.juicefs");
    std::os::unix::fs::symlink(OURS, &helper).unwrap();
    let sub = v.mountpoint("sub");
    run_ok({
        let mut c = Command::new(&helper);
        c.args([
            &v.meta,
            sub.to_str().unwrap(),
            "-o",
            &format!("subdir=/team/a,allow_other,log={}", log.display()),
        ]);
        c
    });
    assert!(is_mounted(&sub));
    assert_eq!(fs::read(sub.join("f")).unwrap(), b"in subdir");
    assert!(!sub.join("outside").exists(), "the subdir is the root");
    assert!(!sub.join("../outside").exists() || !sub.join("..").join("outside").starts_with(&sub));
    fs::write(sub.join("new"), b"n").unwrap();
    run_ok({
        let mut c = Command::new(OURS);
        c.args(["umount", sub.to_str().unwrap()]);
        c
    });
    let m = Mount::ours(&v, &v.mountpoint("check"), &[]);
    assert_eq!(fs::read(m.path("team/a/new")).unwrap(), b"n");
    // A missing subdir is created (read-write mounts).
    drop(m);
    let m = Mount::ours(&v, &v.mountpoint("fresh"), &["--subdir", "/brand/new"]);
    fs::write(m.path("x"), b"y").unwrap();
    drop(m);
    let m = Mount::ours(&v, &v.mountpoint("check2"), &[]);
    assert_eq!(fs::read(m.path("brand/new/x")).unwrap(), b"y");
    // Unmounting something that is not a mount point says so.
    let out = Command::new(OURS)
        .args(["umount", v.dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a mount point"));
}

fn drain_waits_for_open_files_then_returns(b: Backend) {
    let Some(v) = Volume::new(b) else {
        return;
    };
    v.format_ours(&[]);
    let mp = v.mountpoint("drain");
    let drain = |timeout: &str| {
        Command::new(OURS)
            .args([
                "drain",
                mp.to_str().unwrap(),
                "--timeout",
                timeout,
                "--quiet",
                "1",
            ])
            .spawn()
            .unwrap()
    };
    // Nobody serving: nothing to wait for.
    let started = std::time::Instant::now();
    assert!(drain("10").wait().unwrap().success());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let m = Mount::ours(&v, &mp, &[]);
    let mut held = std::fs::File::create(m.path("busy")).unwrap();
    std::io::Write::write_all(&mut held, b"in use").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let mut d = drain("20");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(
        d.try_wait().unwrap().is_none(),
        "drain must wait while a file is open"
    );
    drop(held);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = d.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "drain never returned after the close"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success());
    // A file held past the timeout does not hold the pod forever.
    let _held = std::fs::File::create(m.path("stuck")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let started = std::time::Instant::now();
    assert!(drain("2").wait().unwrap().success());
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
}

fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn series(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn metrics_endpoint_has_the_juicefs_series_and_they_move(b: Backend) {
    let Some(v) = Volume::new(b) else {
        return;
    };
    v.format_ours(&[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let m = Mount::ours(
        &v,
        &v.mountpoint("metrics"),
        &["-o", &format!("metrics={addr}")],
    );
    let before = scrape(&addr);
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    for name in [
        "juicefs_uptime",
        "juicefs_used_space",
        "juicefs_used_inodes",
        "juicefs_memory",
        "juicefs_cpu_usage",
        "juicefs_fuse_ops_durations_histogram_seconds_bucket",
        "juicefs_blockcache_hits",
    ] {
        assert!(before.contains(name), "{name} missing:\n{before}");
    }
    std::fs::write(m.path("f"), vec![7u8; 3 << 20]).unwrap();
    assert_eq!(std::fs::read(m.path("f")).unwrap().len(), 3 << 20);
    let after = scrape(&addr);
    let ops = |t: &str| series(t, "juicefs_fuse_ops_total{");
    assert!(ops(&after) > ops(&before), "FUSE op counters must move");
    assert!(
        series(&after, "juicefs_object_request_data_bytes{") >= (3 << 20) as f64,
        "object bytes: \n{after}"
    );
    assert!(after.contains("method=\"write\"") && after.contains("method=\"PUT\""));
    assert!(series(&after, "juicefs_used_space{") > 0.0);
}

/// `rediss://`: TLS to Redis, the server checked against the CA in `SSL_CERT_FILE` (the
/// reference honours it too, so both clients share the volume over TLS).
#[test]
fn rediss_with_a_private_ca() {
    if service("JFS_TEST_REDIS").is_none() {
        return;
    }
    let redis = PrivateRedis::start_tls();
    let ca = redis.ca.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let meta = format!("rediss://127.0.0.1:{}/2", redis.port);
    let bucket = format!("{}/data/", dir.path().display());
    let out = Command::new(OURS).args(["status", &meta]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("certificate"),
        "an unknown CA must be refused: {err}"
    );
    run_ok({
        let mut c = Command::new(OURS);
        c.env("SSL_CERT_FILE", &ca).args([
            "format",
            "--storage",
            "file",
            "--bucket",
            &bucket,
            &meta,
            "tls",
        ]);
        c
    });
    let mp = dir.path().join("ours");
    fs::create_dir_all(&mp).unwrap();
    {
        let mut c = Command::new(OURS);
        c.env("SSL_CERT_FILE", &ca)
            .args(["mount", &meta, mp.to_str().unwrap()]);
        let m = Mount::start(c, &mp);
        fs::write(m.path("over-tls"), b"encrypted in transit").unwrap();
    }
    let rmp = dir.path().join("ref");
    fs::create_dir_all(&rmp).unwrap();
    let mut c = Command::new(reference());
    c.env("SSL_CERT_FILE", &ca)
        .args(["mount", "--no-usage-report", "--cache-dir"])
        .arg(dir.path().join("refcache"))
        .args(["--metrics", "127.0.0.1:0", &meta, rmp.to_str().unwrap()]);
    let m = Mount::start(c, &rmp);
    assert_eq!(
        fs::read(m.path("over-tls")).unwrap(),
        b"encrypted in transit"
    );
}

sqlite_and_redis!(
    background_mount_helper_form_subdir_umount_and_status,
    drain_waits_for_open_files_then_returns,
    metrics_endpoint_has_the_juicefs_series_and_they_move,
);
