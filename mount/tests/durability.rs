//! Nothing acknowledged is lost: data whose fsync (or close) returned success survives a
//! client killed with SIGKILL, and a restarted client mounts over the dead mount.

mod common;
use common::*;
use std::fs::{self, File};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn write_and_close(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let mut f = File::create(path)?;
    f.write_all(data)?;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just released by `f` and is closed exactly once here.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn fsynced_data_survives_kill_9_and_the_dead_mount_is_replaced(b: Backend) {
    let Some(v) = Volume::new(b) else {
        return;
    };
    v.format_ours(&[]);
    let mp = v.mountpoint("k");
    let mut m = Mount::ours(&v, &mp, &[]);
    let acked: Arc<Mutex<Vec<(String, usize, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (acked, mp) = (acked.clone(), mp.clone());
        std::thread::spawn(move || {
            // Small files closed one by one, and one growing file fsync'ed every 256 KiB.
            let mut log = match File::create(mp.join("growing")) {
                Ok(f) => f,
                Err(_) => return,
            };
            let mut grown = 0usize;
            for i in 0u64.. {
                let name = format!("f{i}");
                let size = 1000 + (i as usize * 7919) % 300_000;
                // Only a close that succeeded acknowledges the data (std's File ignores
                // close errors on drop, so close explicitly).
                if write_and_close(&mp.join(&name), &pattern(i, size)).is_err() {
                    return;
                }
                acked.lock().unwrap().push((name, size, i));
                let piece = pattern(1_000_000 + i, 256 << 10);
                if log.write_all(&piece).is_err() || log.sync_all().is_err() {
                    return;
                }
                grown += piece.len();
                acked
                    .lock()
                    .unwrap()
                    .push(("growing".into(), grown, u64::MAX));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(2500));
    m.kill9_leave_dead_mount();
    let first_log = m.log();
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 10,
        "the workload should have made progress before the kill"
    );
    // The restarted client clears the dead mount itself (what a restarted sidecar does).
    let m = Mount::ours(&v, &mp, &[]);
    let mut growing_len = 0;
    for (name, size, seed) in &acked {
        if name == "growing" {
            growing_len = *size;
            continue;
        }
        let got = fs::read(m.path(name)).unwrap_or_else(|e| {
            // Which volume the metadata now holds, and its sessions: a name other than
            // ours means another test reformatted the database under this one.
            let status = std::process::Command::new(OURS)
                .args(["status", &v.meta])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!(
                "{name} lost after kill -9: {e}\nvolume {:?} now:\n{status}\nclient log:\n{}",
                v.name,
                m.log()
            )
        });
        let want = pattern(*seed, *size);
        if got != want {
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            let db = v.dir.path().join("meta.db");
            let rows = std::process::Command::new("sqlite3")
                .arg(&db)
                .arg(format!(
                    "SELECT n.inode, n.length, hex(c.slices) FROM jfs_edge e JOIN jfs_node n ON n.inode=e.inode LEFT JOIN jfs_chunk c ON c.inode=n.inode WHERE e.name='{name}'"
                ))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let ino = rows.split('|').next().unwrap_or("?").to_string();
            let related: Vec<&str> = first_log
                .lines()
                .filter(|l| l.contains(&ino) || l.contains("WARN") || l.contains("ERROR"))
                .collect();
            panic!(
                "{name} differs after kill -9: {} bytes, want {}; first difference at {first:?}; metadata: {rows}\nfirst client, about inode {ino}:\n{}",
                got.len(),
                want.len(),
                related.join("\n")
            );
        }
    }
    let got = fs::read(m.path("growing")).unwrap();
    assert!(
        got.len() >= growing_len,
        "fsync'ed length {growing_len} lost: now {}",
        got.len()
    );
    for (i, piece) in got[..growing_len].chunks(256 << 10).enumerate() {
        assert!(
            piece == pattern(1_000_000 + i as u64, 256 << 10),
            "growing file piece {i} differs"
        );
    }
}

fn the_read_only_guard_catches_writes_between_a_crash_and_the_remount(b: Backend) {
    let Some(v) = Volume::new(b) else {
        return;
    };
    v.format_ours(&[]);
    let mp = v.mountpoint("guard");
    let mut m = Mount::ours(&v, &mp, &["-o", "ro-guard"]);
    fs::write(mp.join("kept"), b"before the crash").unwrap();
    m.kill9_leave_dead_mount();
    // What the restarting sidecar does first: lazily unmount the dead FUSE mount.
    assert!(
        std::process::Command::new("umount")
            .arg("-l")
            .arg(&mp)
            .status()
            .unwrap()
            .success()
    );
    let err = fs::write(mp.join("lost"), b"would vanish under the new mount").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EROFS),
        "writes in the gap must fail, not land on disk"
    );
    let mut m = Mount::ours(&v, &mp, &["-o", "ro-guard"]);
    assert_eq!(fs::read(mp.join("kept")).unwrap(), b"before the crash");
    m.unmount();
    // A clean exit removes the guard: the directory is plain and writable again.
    assert!(!is_mounted(&mp));
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&*mp.to_string_lossy())),
        "guard left behind"
    );
    fs::write(mp.join("plain"), b"ok").unwrap();
}

sqlite_and_redis!(
    fsynced_data_survives_kill_9_and_the_dead_mount_is_replaced,
    the_read_only_guard_catches_writes_between_a_crash_and_the_remount,
);
