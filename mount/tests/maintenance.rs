//! `juicefs gc` and `juicefs fsck` on volumes written through real mounts: leaked objects
//! found (young ones spared) and deleted, lost blocks named, and the reference client's
//! own gc/fsck agreeing on SQLite.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

fn juicefs(args: &[&str]) -> Output {
    Command::new(OURS).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Where the bucket's objects are on this machine (the S3 server serves a directory).
fn bucket_dir(v: &Volume) -> PathBuf {
    if v.storage == "file" {
        PathBuf::from(&v.bucket)
    } else {
        let root = service("JFS_TEST_S3_DIR").unwrap();
        Path::new(&root).join(v.bucket.rsplit('/').next().unwrap())
    }
}

fn plant(dir: &Path, name: &str, age: Duration) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, b"0123456789").unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    p
}

fn gc_finds_and_deletes_leaks_and_fsck_names_lost_blocks(b: Backend) {
    let Some(v) = Volume::new(b) else {
        return;
    };
    v.format_ours(&[]);
    {
        let m = Mount::ours(&v, &v.mountpoint("m"), &[]);
        std::fs::write(m.path("big"), pattern(3, 9 << 20)).unwrap();
        std::fs::write(m.path("small"), pattern(4, 1000)).unwrap();
        std::fs::write(m.path("gone"), pattern(5, 5000)).unwrap();
        std::fs::remove_file(m.path("gone")).unwrap();
    }
    let meta = v.meta.as_str();
    let fsck = juicefs(&["fsck", meta]);
    assert!(fsck.status.success(), "{}", stderr(&fsck));
    assert!(
        stderr(&fsck).contains("4 blocks) in the metadata, 0 lost"),
        "{}",
        stderr(&fsck)
    );
    let gc = juicefs(&["gc", meta]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert!(
        stderr(&gc).contains("4 objects: 4 in use, 0 leaked"),
        "{}",
        stderr(&gc)
    );

    // An upload a crashed client never committed (two hours old), and one in flight now.
    let chunks = bucket_dir(&v).join(&v.name).join("chunks/0/0");
    let old = plant(&chunks, "999999_0_10", Duration::from_secs(7200));
    let young = plant(&chunks, "999998_0_10", Duration::ZERO);
    let gc = juicefs(&["gc", meta]);
    let text = stderr(&gc);
    assert!(gc.status.success(), "{text}");
    assert!(
        text.contains("6 objects: 4 in use, 1 leaked (10 B), 1 skipped"),
        "{text}"
    );
    assert!(text.contains("--delete"), "{text}");
    assert!(
        old.exists() && young.exists(),
        "gc without --delete deletes nothing"
    );
    let gc = juicefs(&["gc", "--delete", meta]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert!(!old.exists(), "the leaked object is deleted");
    assert!(young.exists(), "an object younger than an hour is spared");
    std::fs::remove_file(&young).unwrap();

    // Lose a full block of `big`. Which slice holds it depends on whether the writer
    // committed mid-file (a slice open 5 s is committed, and this VM's clock can leap),
    // so look for any 4 MiB block, anywhere under chunks/.
    let lost_path = files_under(&bucket_dir(&v).join(&v.name).join("chunks"))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("_4194304"))
        .expect("a 4 MiB block of the 9 MiB file");
    let lost = lost_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let rel = lost_path
        .strip_prefix(bucket_dir(&v))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::remove_file(&lost_path).unwrap();
    let fsck = juicefs(&["fsck", meta]);
    assert_eq!(fsck.status.code(), Some(1), "{}", stderr(&fsck));
    assert!(
        stderr(&fsck).contains(&format!("missing object {rel}")),
        "{rel}: {}",
        stderr(&fsck)
    );
    assert!(
        stderr(&fsck).contains("1 lost (4.0 MiB)"),
        "{}",
        stderr(&fsck)
    );

    if b == Backend::SqliteFile {
        // The reference client's fsck sees the same loss, its gc no leak.
        let r = Command::new(reference())
            .args(["fsck", meta])
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
        assert!(stderr(&r).contains(&lost), "{}", stderr(&r));
        let r = Command::new(reference())
            .args(["gc", meta])
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", stderr(&r));
        assert!(stderr(&r).contains("no leaked found"), "{}", stderr(&r));
    }
}

#[test]
fn sqlite_file() {
    gc_finds_and_deletes_leaks_and_fsck_names_lost_blocks(Backend::SqliteFile)
}

#[test]
fn redis_file() {
    gc_finds_and_deletes_leaks_and_fsck_names_lost_blocks(Backend::RedisFile)
}

#[test]
fn sqlite_s3() {
    gc_finds_and_deletes_leaks_and_fsck_names_lost_blocks(Backend::SqliteS3)
}

#[test]
fn bad_meta_urls_fail_with_the_reason() {
    let o = juicefs(&["fsck", "sqlite3:///nonexistent/dir/meta.db"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("juicefs fsck: "), "{}", stderr(&o));
    let o = juicefs(&["gc", "mysql://x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("juicefs gc: "), "{}", stderr(&o));
}
