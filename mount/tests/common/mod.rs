//! Test fixtures: volumes on each backend, our client and the reference client mounted for
//! real with FUSE, and the servers `scripts/services.sh` starts (found through env vars).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const OURS: &str = env!("CARGO_BIN_EXE_juicefs");

/// The reference JuiceFS 0.14.2 client (`scripts/setup.sh` installs it).
pub fn reference() -> PathBuf {
    if let Ok(p) = std::env::var("JUICEFS_REF") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(home).join(".cache/jfs-tools/juicefs-ref");
    assert!(
        p.exists(),
        "reference client not found at {}: run scripts/setup.sh (or set JUICEFS_REF)",
        p.display()
    );
    p
}

/// A server a test needs: in CI it must be there; on a laptop without it the test says so.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok() => {
            panic!("{var} is not set: .ci/run starts the servers with scripts/services.sh")
        }
        _ => {
            eprintln!("SKIP: {var} not set (eval \"$(scripts/services.sh)\" to run this test)");
            None
        }
    }
}

/// Turns `fn name(b: Backend)` test bodies into tests `name::sqlite` and `name::redis`
/// (the Redis one says SKIP when no Redis server is set up, outside CI).
#[allow(unused_macros)]
macro_rules! sqlite_and_redis {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Backend::SqliteFile)
            }
            #[test]
            fn redis() {
                super::$name(super::Backend::RedisFile)
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use sqlite_and_redis;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    SqliteFile,
    PgFile,
    SqliteS3,
    /// Redis metadata (a database of its own on the shared test server) + local directory.
    RedisFile,
    RedisS3,
}

/// Runs `redis-cli` against database `db` of the server `base` (a `redis://host:port` URL).
pub fn redis_cli(base: &str, db: u32, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-u", &format!("{}/{db}", base.trim_end_matches('/'))])
        .args(args)
        .output()
        .expect("run redis-cli (Debian package redis-tools)");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// A Redis database claimed for one volume, so tests run in parallel on one server (also
/// across test binaries): the claim is a key in database 0 naming the owning process (pid
/// and start time, so a reused pid is not mistaken for the owner); a claim whose process is
/// gone is taken over. The database is emptied when claimed and when released.
///
/// Claims do not expire: this VM's clock leaps, and a claim that expired under a running
/// test let another test flush its database mid-run (a file "lost" after kill -9).
pub struct RedisDb {
    pub base: String,
    pub db: u32,
    token: String,
}

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// A process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
fn started_at(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

impl RedisDb {
    pub fn claim(base: &str) -> RedisDb {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id().to_string();
        let token = format!("{pid}:{}:{n}", started_at(&pid).unwrap_or_default());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            // 14 and 15 are the benchmark's (bench/run_bench.py).
            for db in 1..14u32 {
                let key = format!("jfs-test-db:{db}");
                if redis_cli(base, 0, &["SET", &key, &token, "NX"]) == "OK" {
                    redis_cli(base, db, &["FLUSHDB"]);
                    return RedisDb {
                        base: base.to_string(),
                        db,
                        token,
                    };
                }
                let owner = redis_cli(base, 0, &["GET", &key]);
                let mut parts = owner.split(':');
                let (pid, start) = (parts.next().unwrap_or_default(), parts.next());
                let alive = !pid.is_empty() && started_at(pid).as_deref() == start;
                if !owner.is_empty() && !alive {
                    redis_cli(base, 0, &["EVAL", RELEASE, "1", &key, &owner]);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no free Redis database on {base} for 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.base.trim_end_matches('/'), self.db)
    }

    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(&self.base, self.db, args)
    }
}

impl Drop for RedisDb {
    fn drop(&mut self) {
        let key = format!("jfs-test-db:{}", self.db);
        let _ = Command::new("redis-cli")
            .args(["-u", &self.url(), "FLUSHDB"])
            .output();
        let _ = Command::new("redis-cli")
            .args(["-u", &format!("{}/0", self.base.trim_end_matches('/'))])
            .args(["EVAL", RELEASE, "1", &key, &self.token])
            .output();
    }
}

pub struct Volume {
    pub dir: tempfile::TempDir,
    pub name: String,
    /// META-URL in the form both clients accept.
    pub meta: String,
    pub storage: String,
    pub bucket: String,
    pub keys: Option<(String, String)>,
    /// The Redis database of a Redis-backed volume.
    pub redis: Option<RedisDb>,
    /// The PostgreSQL database of a PostgreSQL-backed volume.
    pub pg: Option<PgDb>,
    /// The test S3 server's bucket of an S3-backed volume.
    pub s3_bucket: Option<S3Bucket>,
}

/// A bucket of the test S3 server, removed with its volume: the objects and the server's
/// metadata file per object (`.bucket-<base64 name>.object-...` in the server's root), which
/// would otherwise pile up by the hundred thousand over test runs.
pub struct S3Bucket {
    root: PathBuf,
    name: String,
}

impl S3Bucket {
    /// Makes the bucket (the server serves each directory under its root as one).
    pub fn create(root: &str, name: &str) -> S3Bucket {
        let root = PathBuf::from(root);
        std::fs::create_dir_all(root.join(name)).expect("create bucket dir");
        S3Bucket {
            root,
            name: name.to_string(),
        }
    }
}

impl Drop for S3Bucket {
    fn drop(&mut self) {
        use base64::Engine;
        let _ = std::fs::remove_dir_all(self.root.join(&self.name));
        let prefix = format!(
            ".bucket-{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.name)
        );
        for e in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// A PostgreSQL database made for one volume, dropped with it.
pub struct PgDb {
    conn: String,
    name: String,
}

impl PgDb {
    fn create(conn: &str) -> PgDb {
        let db = PgDb {
            conn: conn.to_string(),
            name: unique("jfs"),
        };
        // The name holds this process's pid: a database already so named was left by a
        // process gone since (pids wrap around), never by a live test.
        db.drop_database();
        let out = psql(conn, "postgres", &format!("CREATE DATABASE {}", db.name));
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        db
    }

    fn drop_database(&self) {
        psql(
            &self.conn,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        self.drop_database();
    }
}

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

pub fn psql(conn: &str, db: &str, sql: &str) -> Output {
    let mut cmd = Command::new("psql");
    for kv in conn.split_whitespace() {
        if let Some((k, v)) = kv.split_once('=') {
            match k {
                "host" => cmd.env("PGHOST", v),
                "port" => cmd.env("PGPORT", v),
                "user" => cmd.env("PGUSER", v),
                "password" => cmd.env("PGPASSWORD", v),
                _ => &mut cmd,
            };
        }
    }
    cmd.args(["-qtAX", "-d", db, "-c", sql])
        .output()
        .expect("run psql")
}

impl Volume {
    /// A fresh, unformatted volume location; `None` when the backend's server is absent.
    pub fn new(b: Backend) -> Option<Volume> {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = unique("vol").replace('x', "-");
        let mut pg_db = None;
        let mut s3_bucket = None;
        let (meta, storage, bucket, keys) = match b {
            Backend::SqliteFile => (
                format!("sqlite3://{}/meta.db", dir.path().display()),
                "file".to_string(),
                format!("{}/data/", dir.path().display()),
                None,
            ),
            Backend::PgFile => {
                let pg = service("JFS_TEST_PG")?;
                let db = PgDb::create(&pg);
                let url = format!("postgres://{pg} dbname={}", db.name);
                pg_db = Some(db);
                (
                    url,
                    "file".to_string(),
                    format!("{}/data/", dir.path().display()),
                    None,
                )
            }
            Backend::SqliteS3 | Backend::RedisS3 => {
                let ep = service("JFS_TEST_S3_ENDPOINT")?;
                let root = service("JFS_TEST_S3_DIR")?;
                let keys = service("JFS_TEST_S3_KEYS")?;
                let bucket = unique("bkt");
                s3_bucket = Some(S3Bucket::create(&root, &bucket));
                let (a, s) = keys.split_once(':').expect("KEY:SECRET");
                (
                    String::new(),
                    "s3".to_string(),
                    format!("{ep}/{bucket}"),
                    Some((a.to_string(), s.to_string())),
                )
            }
            Backend::RedisFile => (
                String::new(),
                "file".to_string(),
                format!("{}/data/", dir.path().display()),
                None,
            ),
        };
        let mut redis = None;
        let meta = match b {
            Backend::RedisFile | Backend::RedisS3 => {
                let db = RedisDb::claim(&service("JFS_TEST_REDIS")?);
                let url = db.url();
                redis = Some(db);
                url
            }
            Backend::SqliteS3 => format!("sqlite3://{}/meta.db", dir.path().display()),
            _ => meta,
        };
        Some(Volume {
            dir,
            name,
            meta,
            storage,
            bucket,
            keys,
            redis,
            pg: pg_db,
            s3_bucket,
        })
    }

    fn format_cmd(&self, bin: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args([
            "format",
            "--storage",
            &self.storage,
            "--bucket",
            &self.bucket,
        ]);
        if let Some((a, s)) = &self.keys {
            c.args(["--access-key", a, "--secret-key", s]);
        }
        c.args(extra).arg(&self.meta).arg(&self.name);
        c
    }

    pub fn format_ours(&self, extra: &[&str]) {
        run_ok(self.format_cmd(Path::new(OURS), extra));
    }

    pub fn format_reference(&self, extra: &[&str]) {
        run_ok(self.format_cmd(&reference(), extra));
    }

    pub fn mountpoint(&self, tag: &str) -> PathBuf {
        let p = self.dir.path().join(format!("mnt-{tag}"));
        std::fs::create_dir_all(&p).expect("mountpoint");
        p
    }
}

pub fn run_ok(mut c: Command) -> Output {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn is_mounted(mp: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mp = mp.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&*mp) && l.contains("fuse.juicefs"))
}

/// A running client (ours or the reference) serving a mount point; unmounted on drop.
pub struct Mount {
    pub mp: PathBuf,
    pub child: Option<Child>,
    log: PathBuf,
}

impl Mount {
    pub fn start(mut cmd: Command, mp: &Path) -> Mount {
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = mp.with_extension(format!("{n}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        cmd.stdout(Stdio::null()).stderr(f);
        let mut child = cmd.spawn().expect("spawn client");
        let deadline = Instant::now() + Duration::from_secs(20);
        // Live means: the top mount is fuse.juicefs and the client answers statfs. A dead
        // mount left by a killed client is listed too, and `stat` may still be answered
        // from the kernel's attribute cache; `juicefs probe` is not fooled by either.
        let live = |mp: &Path| {
            Command::new(OURS)
                .arg("probe")
                .arg(mp)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        // This VM's clock leaps ahead while every CPU sleeps (another test waiting out a
        // retry backoff was enough to pass a 20 s deadline in one 50 ms nap), so the
        // limit is both 20 s and as many probes as 20 s of naps hold.
        let mut probes = 0;
        while !live(mp) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "client exited ({status}) before mounting {}:\n{}",
                    mp.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            probes += 1;
            if Instant::now() >= deadline && probes >= 400 {
                let _ = child.kill();
                let _ = child.wait();
                let _ = Command::new("umount").arg("-l").arg(mp).status();
                panic!(
                    "{} not mounted after 20 s:\n{}",
                    mp.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Mount {
            mp: mp.to_path_buf(),
            child: Some(child),
            log,
        }
    }

    pub fn ours(v: &Volume, mp: &Path, extra: &[&str]) -> Mount {
        let mut c = Command::new(OURS);
        // Each volume's caches in its own directory, not the host's /var/jfsCache.
        c.arg("mount")
            .arg("--cache-dir")
            .arg(v.dir.path().join("cache-ours"));
        c.args(extra).arg(&v.meta).arg(mp);
        Mount::start(c, mp)
    }

    pub fn reference(v: &Volume, mp: &Path, extra: &[&str]) -> Mount {
        let mut c = Command::new(reference());
        c.arg("mount")
            .args(["--no-usage-report"])
            .arg("--cache-dir")
            .arg(v.dir.path().join("cache-ref"))
            .args(extra)
            .arg(&v.meta)
            .arg(mp);
        Mount::start(c, mp)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }

    /// SIGKILL the client: nothing is flushed and the kernel mount is left dead
    /// (`Transport endpoint is not connected`), as after a crash.
    pub fn kill9_leave_dead_mount(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn unmount(&mut self) {
        if self.child.is_none() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while is_mounted(&self.mp) {
            let _ = Command::new("umount").arg(&self.mp).output();
            if !is_mounted(&self.mp) {
                break;
            }
            if Instant::now() > deadline {
                let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_none() && is_mounted(&self.mp) {
            let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
        }
        self.unmount();
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A Redis server of a test's own, so it can be stopped and started again (its data
/// survives, saved on shutdown), or made to speak TLS.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    /// With TLS only: the CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        Self::start_with(false)
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 from a CA of its own
    /// (made with `openssl`).
    pub fn start_tls() -> PrivateRedis {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = PrivateRedis {
            port,
            dir: tempfile::tempdir().unwrap(),
            ca: None,
            child: None,
        };
        if tls {
            r.make_certs();
        }
        r.restart();
        r
    }

    fn make_certs(&mut self) {
        let d = self.dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(d)
                .args(args)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        std::fs::write(d.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=jfs-test-ca",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.crt",
            "-days",
            "1",
            "-extfile",
            "ext",
        ]);
        self.ca = Some(d.join("ca.crt"));
    }

    pub fn restart(&mut self) {
        let d = self.dir.path();
        let port = self.port.to_string();
        let mut c = Command::new("redis-server");
        c.args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            d.to_str().unwrap(),
        ]);
        if self.ca.is_some() {
            c.args([
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-auth-clients",
                "no",
            ])
            .args(["--tls-cert-file", "srv.crt", "--tls-key-file", "srv.key"])
            .args(["--tls-ca-cert-file", "ca.crt"])
            .current_dir(d);
        } else {
            c.args(["--port", &port]);
        }
        let child = c
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server)");
        self.child = Some(child);
        for _ in 0..100 {
            if self.cli(&["PING"]).contains("PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start");
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let mut c = Command::new("redis-cli");
        c.args(["-p", &self.port.to_string()]);
        if let Some(ca) = &self.ca {
            c.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = c.args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Saves the data and stops the server.
    pub fn stop(&mut self) {
        self.cli(&["SHUTDOWN", "SAVE"]);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every file under `dir`, at any depth, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A volume made by [`PrivateS3::volume`]; its directory goes when it is dropped.
pub struct S3Volume {
    pub dir: tempfile::TempDir,
    pub meta: String,
    pub mp: PathBuf,
}

impl S3Volume {
    /// Mounts the volume with no disk cache (reads and writes reach the store) and `extra`
    /// options.
    pub fn mount_uncached(&self, extra: &[&str]) -> Mount {
        let mut c = Command::new(OURS);
        c.args(["mount", &self.meta, self.mp.to_str().unwrap()])
            .args(["--cache-size", "0"])
            .args(extra);
        Mount::start(c, &self.mp)
    }
}

/// A private S3 server (s3s-fs) on a port of its own, stoppable mid-workload.
pub struct PrivateS3 {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateS3 {
    /// `None` where the S3 tools are not installed (`scripts/services.sh` was not run).
    pub fn start() -> Option<PrivateS3> {
        service("JFS_TEST_S3_ENDPOINT")?;
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
        std::fs::create_dir_all(s.dir.path().join("outage")).ok()?;
        s.restart();
        Some(s)
    }

    pub fn restart(&mut self) {
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

    /// Formats volume `name` with SQLite metadata in a new temporary directory and its data
    /// in this server's bucket (under [`PrivateS3::volume_dir`]), with an empty mount point
    /// beside the metadata.
    pub fn volume(&self, name: &str) -> S3Volume {
        let dir = tempfile::tempdir().unwrap();
        let meta = format!("sqlite3://{}/meta.db", dir.path().display());
        let bucket = format!("http://127.0.0.1:{}/outage", self.port);
        run_ok({
            let mut c = Command::new(OURS);
            c.args(["format", "--storage", "s3", "--bucket", &bucket])
                .args(["--access-key", "ak", "--secret-key", "sk", &meta, name]);
            c
        });
        let mp = dir.path().join("mnt");
        std::fs::create_dir_all(&mp).unwrap();
        S3Volume { dir, meta, mp }
    }

    /// Where the server keeps volume `name`'s objects.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("outage").join(name)
    }

    /// Freezes the server (SIGSTOP): connections stay open and requests hang, like a store
    /// that has stopped answering.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            assert_eq!(unsafe { libc::kill(c.id() as libc::pid_t, sig) }, 0);
        }
    }

    pub fn stop(&mut self) {
        self.resume();
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
