//! `format --trash-days N`: deleted files, removed directories and files replaced by a
//! rename land in `.trash/<UTC hour>/{parent}-{inode}-{name}`, can be moved back, are
//! deleted for good from there, and hours older than N days are purged by a client's
//! background job. The reference client (0.14, no trash) still mounts and reads the volume.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn is_hour_name(n: &str) -> bool {
    let b = n.as_bytes();
    n.len() == 13
        && b.iter().enumerate().all(|(i, c)| {
            if [4, 7, 10].contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn trash_keeps_what_is_deleted_until_it_expires(b: Backend) {
    let Some(v) = Volume::new(b) else {
        return;
    };
    v.format_ours(&["--trash-days", "1"]);
    let mut m = Mount::ours(&v, &v.mountpoint("m"), &[]);
    let a_data = pattern(1, 5000);
    fs::write(m.path("a"), &a_data).unwrap();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("b"), b"old b").unwrap();
    fs::write(m.path("new"), b"new b").unwrap();
    let ino = |p: &str| fs::metadata(m.path(p)).unwrap().ino();
    let (a, d, old_b) = (ino("a"), ino("d"), ino("b"));

    fs::remove_file(m.path("a")).unwrap();
    fs::remove_dir(m.path("d")).unwrap();
    fs::rename(m.path("new"), m.path("b")).unwrap();
    assert!(!m.path("a").exists() && !m.path("d").exists() && !m.path("new").exists());
    assert_eq!(fs::read(m.path("b")).unwrap(), b"new b");
    assert_eq!(
        names(&m.mp),
        ["b"],
        "the root lists neither .trash nor the moved names"
    );

    let trash = m.path(".trash");
    assert_eq!(
        fs::metadata(&trash).unwrap().permissions().mode() & 0o7777,
        0o555
    );
    let hours = names(&trash);
    assert!(hours.len() == 1 && is_hour_name(&hours[0]), "{hours:?}");
    let hour = trash.join(&hours[0]);
    let (ea, eb, ed) = (
        format!("1-{a}-a"),
        format!("1-{old_b}-b"),
        format!("1-{d}-d"),
    );
    let mut expected = vec![ea.clone(), eb.clone(), ed.clone()];
    expected.sort();
    assert_eq!(names(&hour), expected);
    assert!(
        fs::read(hour.join(&ea)).unwrap() == a_data,
        "a deleted file keeps its data"
    );
    assert_eq!(
        fs::read(hour.join(&eb)).unwrap(),
        b"old b",
        "so does a replaced one"
    );
    assert!(hour.join(&ed).is_dir());

    // Moved back, a file is whole again; deleted inside the trash, it is gone for good.
    fs::rename(hour.join(&ea), m.path("a")).unwrap();
    assert!(fs::read(m.path("a")).unwrap() == a_data);
    fs::remove_file(hour.join(&eb)).unwrap();
    assert_eq!(names(&hour), [ed]);
    assert_eq!(
        names(&trash).len(),
        1,
        "not moved into a trash inside the trash"
    );

    // An hour older than the trash days, with a subtree, goes at the next client's start.
    let old = trash.join("2000-01-01-00");
    fs::create_dir(&old).unwrap();
    fs::write(old.join("x"), pattern(2, 3 << 20)).unwrap();
    fs::create_dir(old.join("sub")).unwrap();
    fs::write(old.join("sub/y"), b"y").unwrap();
    m.unmount();
    let m = Mount::ours(&v, &v.mountpoint("m"), &[]);
    let mut purged = false;
    for _ in 0..200 {
        if !m.path(".trash/2000-01-01-00").exists() {
            purged = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(purged, "an expired hour was not purged:\n{}", m.log());
    assert_eq!(names(&m.path(".trash")), hours, "the current hour stays");
    drop(m);

    let fsck = Command::new(OURS).args(["fsck", &v.meta]).output().unwrap();
    let err = String::from_utf8_lossy(&fsck.stderr);
    assert!(fsck.status.success() && err.contains(" 0 lost"), "{err}");

    if b == Backend::SqliteFile {
        // The 0.14 client ignores TrashDays: it mounts, reads, and deletes at once.
        let r = Mount::reference(&v, &v.mountpoint("ref"), &[]);
        assert!(fs::read(r.path("a")).unwrap() == a_data);
        fs::remove_file(r.path("b")).unwrap();
        assert!(!r.path("b").exists());
    }
}

#[test]
fn sqlite_file() {
    trash_keeps_what_is_deleted_until_it_expires(Backend::SqliteFile)
}

#[test]
fn redis_file() {
    trash_keeps_what_is_deleted_until_it_expires(Backend::RedisFile)
}

#[test]
fn without_trash_days_deletion_is_final() {
    let Some(v) = Volume::new(Backend::SqliteFile) else {
        return;
    };
    v.format_ours(&[]);
    let m = Mount::ours(&v, &v.mountpoint("m"), &[]);
    fs::write(m.path("f"), b"x").unwrap();
    fs::remove_file(m.path("f")).unwrap();
    let e = fs::metadata(m.path(".trash")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn with_trash_a_non_empty_directory_is_still_refused() {
    let Some(v) = Volume::new(Backend::SqliteFile) else {
        return;
    };
    v.format_ours(&["--trash-days", "1"]);
    let m = Mount::ours(&v, &v.mountpoint("m"), &[]);
    fs::create_dir(m.path("full")).unwrap();
    fs::write(m.path("full/f"), b"f").unwrap();
    fs::create_dir(m.path("empty")).unwrap();
    // The kernel refuses unlink of a directory and rmdir of a file itself; emptiness it
    // leaves to us.
    let e = fs::remove_dir(m.path("full")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "rmdir: {e}");
    let e = fs::rename(m.path("empty"), m.path("full")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "rename: {e}");
    assert_eq!(names(&m.path("full")), ["f"]);
    assert!(m.path("empty").is_dir());
    let trash = m.path(".trash");
    for h in names(&trash) {
        assert!(names(&trash.join(&h)).is_empty(), "{h} holds what stayed");
    }
}
