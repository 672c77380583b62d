//! Bad input fails at once with one clear line naming the cause, and never panics:
//! malformed META-URLs, missing buckets, wrong passwords, unformatted databases, bad mount
//! options, writes to read-only mounts, volume formats this client does not know.

mod common;
use common::*;
use std::fs;
use std::process::Command;

/// Runs our binary expecting failure; returns its stderr, checked to be one line, no panic.
fn fails(args: &[&str]) -> String {
    let out = Command::new(OURS).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail; stderr: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains(" WARN ") && !l.contains(" INFO "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: want one line of cause, got:\n{err}"
    );
    lines[0].to_string()
}

#[test]
fn malformed_meta_urls() {
    let mp = tempfile::tempdir().unwrap();
    let mp = mp.path().to_str().unwrap();
    assert!(fails(&["mount", "/tmp/meta.db", mp]).contains("has no scheme"));
    assert!(fails(&["mount", "mysql://u:p@h/db", mp]).contains("not supported"));
    assert!(fails(&["status", "sqlite3://"]).contains("names no database file"));
    let e = fails(&["format", "postgres://u:hunter2@127.0.0.1:1/db", "vol1"]);
    assert!(e.contains("cannot connect"), "{e}");
    assert!(!e.contains("hunter2"), "password leaked: {e}");
    assert!(
        fails(&["format", "sqlite3:///no/such/dir/meta.db", "vol1"]).contains("does not exist")
    );
}

#[test]
fn unformatted_database() {
    let d = tempfile::tempdir().unwrap();
    let meta = format!("sqlite3://{}/empty.db", d.path().display());
    let mp = d.path().join("mnt");
    let e = fails(&["mount", &meta, mp.to_str().unwrap()]);
    assert!(
        e.contains("not formatted") && e.contains("juicefs format"),
        "{e}"
    );
    assert!(fails(&["status", &meta]).contains("not formatted"));
}

#[test]
fn bad_format_arguments() {
    let d = tempfile::tempdir().unwrap();
    let meta = format!("sqlite3://{}/m.db", d.path().display());
    assert!(fails(&["format", &meta, "no_underscores"]).contains("invalid volume name"));
    assert!(
        fails(&["format", &meta, "vol", "--compress", "brotli"]).contains("unknown compression")
    );
    assert!(fails(&["format", &meta, "vol", "--block-size", "8"]).contains("out of range"));
    assert!(fails(&["format", &meta, "vol", "--storage", "s3"]).contains("--bucket is required"));
    assert!(fails(&["format", &meta, "vol", "--storage", "gcs"]).contains("not supported"));
}

#[test]
fn mount_options_with_spaces_and_unknown_options() {
    let v = Volume::new(Backend::SqliteFile).unwrap();
    v.format_ours(&[]);
    let mp = v.mountpoint("o");
    let mp = mp.to_str().unwrap();
    let e = fails(&["mount", &v.meta, mp, "-o", "debug", "foreground"]);
    assert!(
        e.contains("options are comma-separated: use `-o debug,foreground`"),
        "{e}"
    );
    let e = fails(&["mount", "-o", "allow_other", "ro", &v.meta, mp]);
    assert!(e.contains("-o allow_other,ro"), "{e}");
    assert!(
        fails(&["mount", &v.meta, mp, "-o", "allow_other,bogus"])
            .contains("unknown mount option \"bogus\"")
    );
    assert!(fails(&["mount", &v.meta, mp, "-o", "attr-cache=soon"]).contains("not a number"));
    assert!(
        fails(&["mount", &v.meta, mp, "--subdir", "../escape"]).contains("must not contain '..'")
    );
    // The mount-helper form a Mount Pod runs.
    let helper = v.dir.path().join("mount.juicefs");
    std::os::unix::fs::symlink(OURS, &helper).unwrap();
    let out = Command::new(&helper)
        .args([&v.meta, mp, "-o", "debug", "foreground"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("-o debug,foreground"),
        "{err}"
    );
    assert!(
        !is_mounted(std::path::Path::new(mp)),
        "nothing may be mounted after a refused option"
    );
}

#[test]
fn read_only_mount_refuses_writes() {
    let v = Volume::new(Backend::SqliteFile).unwrap();
    v.format_ours(&[]);
    {
        let m = Mount::ours(&v, &v.mountpoint("rw"), &[]);
        fs::write(m.path("f"), b"data").unwrap();
    }
    let m = Mount::ours(&v, &v.mountpoint("ro"), &["--read-only"]);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"data");
    let erofs = |r: std::io::Result<()>| r.unwrap_err().raw_os_error();
    assert_eq!(erofs(fs::write(m.path("g"), b"x")), Some(libc::EROFS));
    assert_eq!(erofs(fs::create_dir(m.path("d"))), Some(libc::EROFS));
    assert_eq!(erofs(fs::remove_file(m.path("f"))), Some(libc::EROFS));
    assert!(
        fs::OpenOptions::new()
            .write(true)
            .open(m.path("f"))
            .is_err()
    );
}

#[test]
fn unknown_volume_formats_are_refused_untouched() {
    let v = Volume::new(Backend::SqliteFile).unwrap();
    v.format_ours(&[]);
    let db = v.dir.path().join("meta.db");
    let set = |sql: &str| {
        let out = Command::new("sqlite3").arg(&db).arg(sql).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let orig = set("SELECT value FROM jfs_setting WHERE name='format'");
    let mp = v.mountpoint("u");
    for (field, json) in [
        (
            "EncryptKey",
            orig.replace(
                "\"Inodes\": 0",
                "\"Inodes\": 0,\n\"EncryptKey\": \"-----BEGIN\"",
            ),
        ),
        (
            "MetaVersion",
            orig.replace("\"Inodes\": 0", "\"Inodes\": 0,\n\"MetaVersion\": 1"),
        ),
        ("Compression", orig.replace("\"none\"", "\"brotli\"")),
        (
            "EnableACL",
            orig.replace("\"Inodes\": 0", "\"Inodes\": 0,\n\"EnableACL\": true"),
        ),
    ] {
        set(&format!(
            "UPDATE jfs_setting SET value='{}' WHERE name='format'",
            json.replace('\'', "''")
        ));
        let before = set("SELECT count(*) FROM jfs_session")
            + &set("SELECT value FROM jfs_counter WHERE name='nextSession'");
        let e = fails(&["mount", &v.meta, mp.to_str().unwrap()]);
        assert!(
            e.contains(field) && e.contains("nothing was written"),
            "{field}: {e}"
        );
        let after = set("SELECT count(*) FROM jfs_session")
            + &set("SELECT value FROM jfs_counter WHERE name='nextSession'");
        assert_eq!(before, after, "{field}: a refused mount must not write");
    }
}

#[test]
fn missing_bucket_and_wrong_credentials() {
    let d = tempfile::tempdir().unwrap();
    let meta = format!("sqlite3://{}/m.db", d.path().display());
    if let (Some(ep), Some(keys)) = (service("JFS_TEST_S3_ENDPOINT"), service("JFS_TEST_S3_KEYS")) {
        let (ak, sk) = keys.split_once(':').unwrap();
        let bucket = format!("{ep}/no-such-bucket-{}", std::process::id());
        let e = fails(&[
            "format",
            &meta,
            "vol",
            "--storage",
            "s3",
            "--bucket",
            &bucket,
            "--access-key",
            ak,
            "--secret-key",
            sk,
        ]);
        assert!(
            e.contains("cannot use object storage") && e.contains("no-such-bucket"),
            "{e}"
        );
        let root = service("JFS_TEST_S3_DIR").unwrap();
        let name = format!("bkt-cred-{}", std::process::id());
        let _bucket = common::S3Bucket::create(&root, &name);
        let e = fails(&[
            "format",
            &meta,
            "vol",
            "--storage",
            "s3",
            "--bucket",
            &format!("{ep}/{name}"),
            "--access-key",
            ak,
            "--secret-key",
            "wrong-secret",
        ]);
        assert!(e.contains("cannot use object storage"), "{e}");
        assert!(!e.contains("wrong-secret"), "secret leaked: {e}");
    }
    if let Some(pg) = service("JFS_TEST_PG") {
        let bad = pg.replace("password=jfs", "password=wrong");
        let e = fails(&["status", &format!("postgres://{bad} dbname=postgres")]);
        assert!(e.contains("password authentication failed"), "{e}");
        assert!(!e.contains("password=wrong"), "password leaked: {e}");
    }
}

#[test]
fn redis_urls_wrong_passwords_and_unreachable_servers() {
    let mp = tempfile::tempdir().unwrap();
    let mp = mp.path().to_str().unwrap();
    let e = fails(&["mount", "redis://:hunter2@127.0.0.1:1/3", mp]);
    assert!(
        e.contains("cannot connect to Redis redis://:****@127.0.0.1:1/3"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "password leaked: {e}");
    let e = fails(&["status", "redis://mymaster,127.0.0.1:26379/1"]);
    assert!(e.contains("Sentinel") && e.contains("not supported"), "{e}");
    let e = fails(&["format", "redis://127.0.0.1:6379/notadb", "vol1"]);
    assert!(e.contains("not a valid Redis address"), "{e}");
    let Some(v) = Volume::new(Backend::RedisFile) else {
        return;
    };
    let e = fails(&["status", &v.meta]);
    assert!(e.contains("not formatted"), "{e}");
    let wrong = v.meta.replace("redis://", "redis://:wrongpw@");
    let e = fails(&["status", &wrong]);
    assert!(
        e.contains("cannot connect to Redis") && e.contains(":****@"),
        "{e}"
    );
    assert!(!e.contains("wrongpw"), "password leaked: {e}");
}

/// Redis going away mid-workload: the caller gets EIO (after retries with backoff, with a
/// clear log line), and once Redis is back the same mount works again with nothing lost;
/// an outage shorter than the retry budget only delays the caller.
#[test]
fn redis_outage_gives_eio_then_recovers() {
    if service("JFS_TEST_REDIS").is_none() {
        return;
    }
    let mut redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let meta = format!("redis://127.0.0.1:{}/1", redis.port);
    let bucket = format!("{}/data/", dir.path().display());
    run_ok({
        let mut c = Command::new(OURS);
        c.args([
            "format",
            "--storage",
            "file",
            "--bucket",
            &bucket,
            &meta,
            "outage",
        ]);
        c
    });
    let mp = dir.path().join("mnt");
    fs::create_dir_all(&mp).unwrap();
    let mut c = Command::new(OURS);
    c.args(["mount", &meta, mp.to_str().unwrap()]);
    let m = Mount::start(c, &mp);
    fs::write(m.path("before"), pattern(1, 300_000)).unwrap();

    redis.stop();
    let started = std::time::Instant::now();
    let err = fs::write(m.path("during"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "EIO should come after the retry budget, not hang: {:?}",
        started.elapsed()
    );
    let log = m.log();
    assert!(
        log.contains("is unreachable") && log.contains(&format!("127.0.0.1:{}", redis.port)),
        "no clear log line about the outage:\n{log}"
    );

    redis.restart();
    assert_eq!(fs::read(m.path("before")).unwrap(), pattern(1, 300_000));
    fs::write(m.path("after"), b"back").unwrap();
    assert_eq!(fs::read(m.path("after")).unwrap(), b"back");
    assert!(
        m.log().contains("reachable again"),
        "recovery is not logged:\n{}",
        m.log()
    );

    // A short outage (a restart) within the retry budget is not even seen by the caller.
    redis.stop();
    let writer = {
        let p = m.path("across-restart");
        std::thread::spawn(move || fs::write(p, b"waited"))
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    redis.restart();
    writer.join().unwrap().unwrap();
    assert_eq!(fs::read(m.path("across-restart")).unwrap(), b"waited");
}
