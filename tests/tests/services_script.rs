//! `scripts/services.sh` starts its servers and returns. It is run the way `.ci/run` runs
//! it, `eval "$(scripts/services.sh)"`, on ports nothing else uses, so it takes the path
//! that starts Redis and the S3 server (CI's own run finds them running after the first
//! time). A server that kept the script's stdout made `$(...)` wait forever: session 8's CI
//! timed out on exactly that.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn installed(cmd: &str) -> bool {
    let home = std::env::var("HOME").unwrap_or_default();
    Path::new(&home).join(".cargo/bin").join(cmd).exists()
        || Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The pid of the s3s-fs serving `port`, from its command line.
fn s3_server_pid(port: u16) -> Option<u32> {
    let want = format!("--port\0{port}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("s3s-fs") && cmdline.contains(&want)).then_some(pid)
    })
}

/// Stops what the script started, whatever the test's outcome.
struct Started {
    s3_port: u16,
    redis_port: u16,
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(pid) = s3_server_pid(self.s3_port) {
            // SAFETY: kill(2) on a pid we found by its command line; no memory involved.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let _ = Command::new("redis-cli")
            .args(["-p", &self.redis_port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn services_script_starts_servers_and_returns() {
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "scripts", "services.sh"]
        .iter()
        .collect();
    let missing: Vec<_> = ["redis-server", "s3s-fs", "pg_ctlcluster"]
        .into_iter()
        .filter(|c| !installed(c))
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").is_err(),
            "{missing:?} not installed: .ci/run installs them with scripts/setup.sh"
        );
        eprintln!("SKIP: {missing:?} not installed (scripts/setup.sh installs them)");
        return;
    }

    let s3_dir = tempfile::tempdir().expect("tempdir");
    // stderr goes to a file, not to the test's own stderr: a server that held on to it
    // would keep `cargo test`'s output pipe open after the test ends.
    let stderr = tempfile::NamedTempFile::new().expect("stderr file");
    let started = Started {
        s3_port: free_port(),
        redis_port: free_port(),
    };
    let mut child = Command::new("bash")
        .args(["-c", r#"out=$("$0") || exit; printf '%s\n' "$out""#])
        .arg(&script)
        .env("JFS_S3_PORT", started.s3_port.to_string())
        .env("JFS_REDIS_PORT", started.redis_port.to_string())
        .env("JFS_S3_DIR", s3_dir.path())
        .stdout(Stdio::piped())
        .stderr(stderr.reopen().expect("reopen"))
        .process_group(0)
        .spawn()
        .expect("run bash");

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break status;
        }
        if Instant::now() > deadline {
            // The whole group: the script, and whatever it left holding the pipe.
            // SAFETY: kill(2) on the process group we created; no memory involved.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!(
                "`$(scripts/services.sh)` did not return within 60 s: a server it started \
                 still holds its stdout. stderr:\n{}",
                std::fs::read_to_string(stderr.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::io::read_to_string(child.stdout.take().expect("stdout")).expect("read");
    let err = std::fs::read_to_string(stderr.path()).unwrap_or_default();
    assert!(
        status.success(),
        "services.sh failed ({status}):\n{out}\n{err}"
    );

    let endpoint = format!(
        "export JFS_TEST_S3_ENDPOINT='http://127.0.0.1:{}'",
        started.s3_port
    );
    let redis = format!(
        "export JFS_TEST_REDIS='redis://127.0.0.1:{}'",
        started.redis_port
    );
    assert!(out.contains(&endpoint), "no `{endpoint}` in:\n{out}");
    assert!(out.contains(&redis), "no `{redis}` in:\n{out}");
    for port in [started.s3_port, started.redis_port] {
        TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("nothing listens on {port} after services.sh: {e}"));
    }

    // The S3 server runs from its data directory, so it keeps working after the clone
    // that started it is deleted.
    let pid = s3_server_pid(started.s3_port).expect("the s3s-fs process");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("its cwd");
    assert_eq!(cwd, s3_dir.path().canonicalize().expect("canonical"));
}
