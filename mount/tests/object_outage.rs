//! A dead object store under a live mount: the caller gets EIO, acknowledged data survives,
//! and writes work again once the store is back. A test binary of its own: its client
//! waits out about 30 s of retry backoff, during which this VM's clock leaps ahead, which
//! would trip the deadlines of tests running beside it.

mod common;
use common::*;
use std::fs;
use std::process::Command;

/// A private S3 server (s3s-fs) on a port of its own, stoppable mid-workload.
struct PrivateS3 {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateS3 {
    fn start() -> Option<PrivateS3> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut s = PrivateS3 {
            port,
            dir: tempfile::tempdir().ok()?,
            child: None,
        };
        fs::create_dir_all(s.dir.path().join("outage")).ok()?;
        s.restart();
        Some(s)
    }

    fn restart(&mut self) {
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", "ak", "--secret-key", "sk"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("s3s-fs (scripts/setup.sh installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("s3s-fs did not listen on {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn object_store_outage_gives_eio_then_recovers() {
    if service("JFS_TEST_S3_ENDPOINT").is_none() {
        return;
    }
    let Some(mut s3) = PrivateS3::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let meta = format!("sqlite3://{}/meta.db", dir.path().display());
    let bucket = format!("http://127.0.0.1:{}/outage", s3.port);
    run_ok({
        let mut c = Command::new(OURS);
        c.args(["format", "--storage", "s3", "--bucket", &bucket])
            .args(["--access-key", "ak", "--secret-key", "sk", &meta, "outage"]);
        c
    });
    let mp = dir.path().join("mnt");
    fs::create_dir_all(&mp).unwrap();
    let mut c = Command::new(OURS);
    // No caches: reads must go to the object store.
    c.args(["mount", &meta, mp.to_str().unwrap(), "--cache-size", "0"]);
    let m = Mount::start(c, &mp);
    let before = pattern(2, 5 << 20);
    fs::write(m.path("before"), &before).unwrap();

    s3.stop();
    // fsync, not just close: Rust's File ignores the error close(2) returns.
    let err = {
        use std::io::Write;
        let mut f = fs::File::create(m.path("during")).unwrap();
        f.write_all(&pattern(3, 1 << 20)).unwrap();
        f.sync_all().unwrap_err()
    };
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let log = m.log();
    assert!(
        log.contains(&format!("127.0.0.1:{}", s3.port)) || log.contains("outage/chunks"),
        "no log line naming the object store or the object:\n{log}"
    );

    s3.restart();
    assert_eq!(
        fs::read(m.path("before")).unwrap(),
        before,
        "acknowledged data intact"
    );
    fs::write(m.path("after"), b"back").unwrap();
    assert_eq!(fs::read(m.path("after")).unwrap(), b"back");
    drop(m);
    let fsck = run_ok({
        let mut c = Command::new(OURS);
        c.args(["fsck", &meta]);
        c
    });
    assert!(String::from_utf8_lossy(&fsck.stderr).contains(" 0 lost"));
}
