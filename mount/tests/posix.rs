//! POSIX behaviour on a real FUSE mount of our client, with SQLite and with Redis metadata
//! (local-directory storage).

mod common;
use common::*;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// A volume formatted by us; `None` (the test is skipped) when its server is not set up.
fn volume(b: Backend) -> Option<Volume> {
    let v = Volume::new(b)?;
    v.format_ours(&[]);
    Some(v)
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    r.err()
        .and_then(|e| e.raw_os_error())
        .expect("expected an error")
}

fn create_overwrite_truncate_and_persist(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let mp = v.mountpoint("a");
    let data = pattern(1, 3 << 20);
    {
        let m = Mount::ours(&v, &mp, &[]);
        let p = m.path("f");
        fs::write(&p, &data).unwrap();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(b"OVERWRITE", 1000).unwrap();
        f.write_all_at(b"TAIL", data.len() as u64 - 4).unwrap();
        drop(f);
        let mut want = data.clone();
        want[1000..1009].copy_from_slice(b"OVERWRITE");
        let n = want.len();
        want[n - 4..].copy_from_slice(b"TAIL");
        assert_eq!(fs::read(&p).unwrap(), want);

        // Shrink, then grow again: the cut-off bytes must come back as zeros.
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(500).unwrap();
        f.set_len(2000).unwrap();
        drop(f);
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len(), 2000);
        assert_eq!(&got[..500], &want[..500]);
        assert!(
            got[500..].iter().all(|&b| b == 0),
            "extended range must read as zeros"
        );
        fs::write(m.path("empty"), b"").unwrap();
    }
    let m = Mount::ours(&v, &mp, &[]);
    let got = fs::read(m.path("f")).unwrap();
    assert_eq!(got.len(), 2000);
    assert_eq!(&got[..500], &pattern(1, 500)[..]);
    assert_eq!(fs::metadata(m.path("empty")).unwrap().len(), 0);
}

fn rename_variants(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let m = Mount::ours(&v, &v.mountpoint("r"), &[]);
    fs::create_dir_all(m.path("d1/sub")).unwrap();
    fs::create_dir(m.path("d2")).unwrap();
    fs::write(m.path("d1/a"), b"A").unwrap();
    fs::write(m.path("d2/b"), b"B").unwrap();

    fs::rename(m.path("d1/a"), m.path("d1/a2")).unwrap();
    assert_eq!(fs::read(m.path("d1/a2")).unwrap(), b"A");
    // Replace an existing file.
    fs::rename(m.path("d1/a2"), m.path("d2/b")).unwrap();
    assert_eq!(fs::read(m.path("d2/b")).unwrap(), b"A");
    assert!(!m.path("d1/a2").exists());
    // A directory moves with its link counts.
    assert_eq!(fs::metadata(m.path("d1")).unwrap().nlink(), 3);
    fs::rename(m.path("d1/sub"), m.path("d2/sub")).unwrap();
    assert_eq!(fs::metadata(m.path("d1")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(m.path("d2")).unwrap().nlink(), 3);
    // Non-empty directory cannot be replaced; file onto dir is EISDIR.
    fs::write(m.path("d2/sub/x"), b"x").unwrap();
    fs::create_dir(m.path("d1/sub2")).unwrap();
    assert_eq!(
        errno_of(fs::rename(m.path("d1/sub2"), m.path("d2/sub"))),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno_of(fs::rename(m.path("d2/b"), m.path("d1/sub2"))),
        libc::EISDIR
    );

    fs::write(m.path("x"), b"X").unwrap();
    fs::write(m.path("y"), b"Y").unwrap();
    let rename2 = |a: &str, b: &str, flags: u32| {
        // SAFETY: valid NUL-terminated paths.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                cpath(&m.path(a)).as_ptr(),
                libc::AT_FDCWD,
                cpath(&m.path(b)).as_ptr(),
                flags,
            )
        };
        if rc == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap()
        }
    };
    assert_eq!(rename2("x", "y", libc::RENAME_NOREPLACE), libc::EEXIST);
    assert_eq!(fs::read(m.path("y")).unwrap(), b"Y");
    assert_eq!(rename2("x", "y", libc::RENAME_EXCHANGE), 0);
    assert_eq!(fs::read(m.path("x")).unwrap(), b"Y");
    assert_eq!(fs::read(m.path("y")).unwrap(), b"X");
    assert_eq!(rename2("x", "nope", libc::RENAME_EXCHANGE), libc::ENOENT);
    assert_eq!(rename2("x", "z", libc::RENAME_NOREPLACE), 0);
    assert_eq!(fs::read(m.path("z")).unwrap(), b"Y");
}

fn hard_links_and_symlinks(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let m = Mount::ours(&v, &v.mountpoint("l"), &[]);
    fs::write(m.path("f"), b"data").unwrap();
    fs::hard_link(m.path("f"), m.path("g")).unwrap();
    assert_eq!(fs::metadata(m.path("f")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(m.path("f")).unwrap().ino(),
        fs::metadata(m.path("g")).unwrap().ino()
    );
    fs::remove_file(m.path("f")).unwrap();
    assert_eq!(fs::read(m.path("g")).unwrap(), b"data");
    assert_eq!(fs::metadata(m.path("g")).unwrap().nlink(), 1);
    std::os::unix::fs::symlink("g", m.path("s")).unwrap();
    assert_eq!(fs::read_link(m.path("s")).unwrap(), Path::new("g"));
    assert_eq!(fs::read(m.path("s")).unwrap(), b"data");
    std::os::unix::fs::symlink("/no/such/target", m.path("dangling")).unwrap();
    assert_eq!(errno_of(fs::read(m.path("dangling"))), libc::ENOENT);
    assert_eq!(fs::symlink_metadata(m.path("dangling")).unwrap().len(), 15);
    fs::create_dir(m.path("dir")).unwrap();
    assert_eq!(
        errno_of(fs::hard_link(m.path("dir"), m.path("dir2"))),
        libc::EPERM
    );
    assert_eq!(errno_of(fs::remove_dir(m.path("g"))), libc::ENOTDIR);
    fs::write(m.path("dir/x"), b"").unwrap();
    assert_eq!(errno_of(fs::remove_dir(m.path("dir"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::remove_file(m.path("dir"))), libc::EISDIR);
    assert_eq!(errno_of(fs::create_dir(m.path("dir"))), libc::EEXIST);
}

fn setxattr(p: &Path, name: &str, val: &[u8], flags: i32) -> i32 {
    let n = CString::new(name).unwrap();
    // SAFETY: valid pointers and lengths.
    let rc = unsafe {
        libc::setxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            val.as_ptr().cast(),
            val.len(),
            flags,
        )
    };
    if rc == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

fn getxattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: buf is writable for its length.
    let rc = unsafe {
        libc::getxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(rc as usize);
    Ok(buf)
}

fn xattrs(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let m = Mount::ours(&v, &v.mountpoint("x"), &["--enable-xattr"]);
    let p = m.path("f");
    fs::write(&p, b"").unwrap();
    assert_eq!(setxattr(&p, "user.k", b"v1", 0), 0);
    assert_eq!(getxattr(&p, "user.k").unwrap(), b"v1");
    assert_eq!(
        setxattr(&p, "user.k", b"v2", libc::XATTR_CREATE),
        libc::EEXIST
    );
    assert_eq!(
        setxattr(&p, "user.new", b"v", libc::XATTR_REPLACE),
        libc::ENODATA
    );
    assert_eq!(setxattr(&p, "user.k", b"v2", libc::XATTR_REPLACE), 0);
    assert_eq!(getxattr(&p, "user.k").unwrap(), b"v2");
    assert_eq!(getxattr(&p, "user.missing"), Err(libc::ENODATA));
    assert_eq!(setxattr(&p, "user.other", b"", 0), 0);
    let mut list = vec![0u8; 256];
    // SAFETY: list is writable for its length.
    let n = unsafe { libc::listxattr(cpath(&p).as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    list.truncate(n as usize);
    let mut names: Vec<&[u8]> = list.split(|&b| b == 0).filter(|s| !s.is_empty()).collect();
    names.sort();
    assert_eq!(names, vec![&b"user.k"[..], &b"user.other"[..]]);
    let n = CString::new("user.k").unwrap();
    // SAFETY: valid paths.
    assert_eq!(
        unsafe { libc::removexattr(cpath(&p).as_ptr(), n.as_ptr()) },
        0
    );
    assert_eq!(getxattr(&p, "user.k"), Err(libc::ENODATA));
}

fn fuse_ops(mp: &Path, method: &str) -> u64 {
    let stats = fs::read_to_string(mp.join(".stats")).unwrap();
    let key = format!("method=\"{method}\"}}");
    stats
        .lines()
        .filter(|l| l.starts_with("juicefs_fuse_ops_total{") && l.contains(&key))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// As in JuiceFS, xattrs are off unless `--enable-xattr`: every call says ENOTSUP, and the
/// kernel, having heard it once, stops asking (no metadata round trip per `ls -l` entry).
fn xattrs_are_off_by_default_and_the_kernel_stops_asking(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let m = Mount::ours(&v, &v.mountpoint("nx"), &[]);
    let d = m.path("d");
    fs::create_dir(&d).unwrap();
    for i in 0..50 {
        fs::write(d.join(format!("f{i}")), b"x").unwrap();
    }
    let p = d.join("f0");
    assert_eq!(setxattr(&p, "user.k", b"v", 0), libc::EOPNOTSUPP);
    assert_eq!(getxattr(&p, "user.k"), Err(libc::EOPNOTSUPP));
    let asked = fuse_ops(&m.mp, "getxattr");
    assert!(asked >= 1, "the first getxattr reached the client");
    let ls = std::process::Command::new("ls")
        .arg("-l")
        .arg(&d)
        .output()
        .unwrap();
    assert!(ls.status.success());
    for i in 0..50 {
        assert_eq!(
            getxattr(&d.join(format!("f{i}")), "user.k"),
            Err(libc::EOPNOTSUPP)
        );
    }
    assert_eq!(
        fuse_ops(&m.mp, "getxattr"),
        asked,
        "the kernel remembered ENOTSUP"
    );
    drop(m);
    let m = Mount::ours(&v, &v.mountpoint("nx"), &["-o", "enable-xattr"]);
    assert_eq!(setxattr(&m.path("d/f0"), "user.k", b"v", 0), 0);
    assert_eq!(getxattr(&m.path("d/f0"), "user.k").unwrap(), b"v");
}

fn sparse_files_and_files_over_one_chunk(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let mp = v.mountpoint("s");
    let big = pattern(7, 80 << 20);
    {
        let m = Mount::ours(&v, &mp, &[]);
        let mut f = File::create(m.path("big")).unwrap();
        for piece in big.chunks(1 << 20) {
            f.write_all(piece).unwrap();
        }
        f.sync_all().unwrap();
        drop(f);
        let f = File::create(m.path("sparse")).unwrap();
        f.write_all_at(b"end", (200 << 20) - 3).unwrap();
        f.write_all_at(b"mid", 70 << 20).unwrap();
    }
    let m = Mount::ours(&v, &mp, &[]);
    let mut f = File::open(m.path("big")).unwrap();
    let mut got = Vec::new();
    f.read_to_end(&mut got).unwrap();
    assert!(got == big, "80 MiB file differs after remount");
    // A read that straddles the 64 MiB chunk boundary.
    let mut buf = vec![0u8; 1 << 20];
    f.seek(SeekFrom::Start((64 << 20) - 4096)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert!(buf[..] == big[(64 << 20) - 4096..(65 << 20) - 4096]);
    let s = File::open(m.path("sparse")).unwrap();
    assert_eq!(s.metadata().unwrap().len(), 200 << 20);
    let mut b = vec![1u8; 4096];
    s.read_exact_at(&mut b, 10 << 20).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    let mut b = [0u8; 3];
    s.read_exact_at(&mut b, 70 << 20).unwrap();
    assert_eq!(&b, b"mid");
    s.read_exact_at(&mut b, (200 << 20) - 3).unwrap();
    assert_eq!(&b, b"end");
}

fn permissions_for_other_users(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let m = Mount::ours(&v, &v.mountpoint("p"), &["-o", "allow_other"]);
    fs::write(m.path("secret"), b"s").unwrap();
    fs::set_permissions(m.path("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(m.path("public"), b"p").unwrap();
    fs::set_permissions(m.path("public"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(m.path("open")).unwrap();
    fs::set_permissions(m.path("open"), fs::Permissions::from_mode(0o777)).unwrap();
    let as_nobody = |script: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&m.mp)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    assert!(
        !as_nobody("cat secret").status.success(),
        "0600 file must not be readable by others"
    );
    assert_eq!(as_nobody("cat public").stdout, b"p");
    assert!(
        !as_nobody("echo x >> public").status.success(),
        "0644 file must not be writable by others"
    );
    assert!(as_nobody("echo mine > open/n").status.success());
    let md = fs::metadata(m.path("open/n")).unwrap();
    assert_eq!((md.uid(), md.gid()), (65534, 65534));
    std::os::unix::fs::chown(m.path("public"), Some(65534), Some(65534)).unwrap();
    assert!(
        as_nobody("echo x >> public").status.success(),
        "owner may write after chown"
    );
    assert_eq!(fs::read(m.path("public")).unwrap(), b"px\n");
}

fn unlinked_but_open_files_keep_their_data(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let m = Mount::ours(&v, &v.mountpoint("u"), &[]);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(m.path("tmp"))
        .unwrap();
    f.write_all(&pattern(3, 5 << 20)).unwrap();
    f.sync_all().unwrap();
    fs::remove_file(m.path("tmp")).unwrap();
    assert!(!m.path("tmp").exists());
    f.write_all(b"more").unwrap();
    let mut got = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), (5 << 20) + 4);
    assert!(got[..5 << 20] == pattern(3, 5 << 20)[..]);
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    let objects = || {
        walk(&v.dir.path().join("data"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("/chunks/"))
            .count()
    };
    assert!(objects() > 0);
    drop(f);
    // The last close deletes the data; objects go in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while objects() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(objects(), 0, "objects of the deleted file must be removed");
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn statfs_and_quotas(b: Backend) {
    let Some(v) = Volume::new(b) else {
        return;
    };
    v.format_ours(&["--capacity", "1", "--inodes", "3"]);
    let m = Mount::ours(&v, &v.mountpoint("q"), &[]);
    let out = Command::new("stat")
        .args(["-f", "-c", "%b %S %c"])
        .arg(&m.mp)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(
        f[0] * f[1],
        1 << 30,
        "capacity shows as the file system size: {s}"
    );
    assert_eq!(f[2], 3, "inode limit shows as the inode count: {s}");
    for i in 0..3 {
        fs::write(m.path(&format!("f{i}")), b"x").unwrap();
    }
    assert_eq!(errno_of(fs::write(m.path("f3"), b"x")), libc::ENOSPC);
}

fn fallocate_punch_hole_and_posix_locks(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let m = Mount::ours(&v, &v.mountpoint("f"), &[]);
    let p = m.path("f");
    fs::write(&p, pattern(5, 1 << 20)).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: valid fd.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            4096,
            8192,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let got = fs::read(&p).unwrap();
    assert_eq!(got.len(), 1 << 20);
    assert!(got[4096..12288].iter().all(|&b| b == 0));
    assert_eq!(got[12288..], pattern(5, 1 << 20)[12288..]);
    // SAFETY: valid fd.
    assert_eq!(unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 2 << 20) }, 0);
    assert_eq!(f.metadata().unwrap().len(), 2 << 20);

    // A POSIX write lock held by one process blocks another, and goes with the holder.
    let lock = |path: &Path, hold: &str| {
        Command::new("python3")
            .args(["-c", &format!(
                "import fcntl,sys,time\nf=open(sys.argv[1],'r+')\ntry:\n  fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError:\n  print('busy'); sys.exit(0)\nprint('locked',flush=True)\ntime.sleep({hold})"
            )])
            .arg(path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut holder = lock(&p, "3");
    let mut line = [0u8; 7];
    holder
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"locked\n");
    let other = lock(&p, "0").wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout).trim(), "busy");
    holder.wait().unwrap();
    let after = lock(&p, "0").wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&after.stdout).trim(), "locked");
}

fn large_directories_list_completely(b: Backend) {
    let Some(v) = volume(b) else {
        return;
    };
    let m = Mount::ours(&v, &v.mountpoint("d"), &[]);
    fs::create_dir(m.path("many")).unwrap();
    for i in 0..1500 {
        File::create(m.path(&format!("many/file-with-a-longish-name-{i:05}"))).unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(m.path("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 1500);
    assert_eq!(names[0], "file-with-a-longish-name-00000");
    let out = Command::new("ls")
        .arg("-la")
        .arg(m.path("many"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1503);
}

sqlite_and_redis!(
    create_overwrite_truncate_and_persist,
    rename_variants,
    hard_links_and_symlinks,
    xattrs,
    xattrs_are_off_by_default_and_the_kernel_stops_asking,
    sparse_files_and_files_over_one_chunk,
    permissions_for_other_users,
    unlinked_but_open_files_keep_their_data,
    statfs_and_quotas,
    fallocate_punch_hole_and_posix_locks,
    large_directories_list_completely,
);
