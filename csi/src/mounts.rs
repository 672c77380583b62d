//! The node's own mount table work: mountinfo, bind mounts, stacked unmounts, and health
//! checks that cannot hang the caller on a dead FUSE connection.

use std::path::Path;
use std::time::Duration;

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

pub use jfs_mount::mountinfo::{MountEntry, mount_table, parse_mountinfo};

pub fn is_read_only(table: &[MountEntry], path: &Path) -> bool {
    table
        .iter()
        .rev()
        .find(|e| e.mount_point == path)
        .is_some_and(|e| e.read_only)
}

/// How many mounts are stacked at `path`.
pub fn mount_count(path: &Path) -> usize {
    count_in(&mount_table(), path)
}

/// `mount_count` against a table already read (one parse for many targets).
pub fn count_in(table: &[MountEntry], path: &Path) -> usize {
    table.iter().filter(|e| e.mount_point == path).count()
}

/// Bind-mounts `source` at `target` (read-only when asked).
pub fn bind(source: &Path, target: &Path, read_only: bool) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "bind-mounting {} at {}: {e}",
            source.display(),
            target.display()
        )
    })?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
            let _ = unmount_all(target);
            return Err(format!("making {} read-only: {e}", target.display()));
        }
    }
    Ok(())
}

/// Unmounts every mount stacked at `path` (lazily: a dead FUSE mount cannot be unmounted
/// any other way), returning how many were removed.
pub fn unmount_all(path: &Path) -> Result<usize, String> {
    let mut n = 0;
    while mount_count(path) > 0 {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| format!("unmounting {}: {e}", path.display()))?;
        n += 1;
        if n > 64 {
            return Err(format!("{} keeps being mounted", path.display()));
        }
    }
    Ok(n)
}

/// What a path looks like from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Answers; `fuse_root` when it is the root of a FUSE file system.
    Ok {
        fuse_root: bool,
    },
    Missing,
    /// A dead or hung mount: ENOTCONN, EIO, ESTALE, or no answer in time.
    Corrupt(String),
}

fn check_now(path: &Path) -> Health {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => {
            let fuse = nix::sys::statfs::statfs(path)
                .map(|s| s.filesystem_type().0 == FUSE_SUPER_MAGIC)
                .unwrap_or(false);
            Health::Ok {
                fuse_root: fuse && m.ino() == 1,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Health::Missing,
        Err(e) => Health::Corrupt(e.to_string()),
    }
}

/// `check_now` on a blocking thread, bounded by `timeout` (a hung FUSE server must not hang
/// the node).
pub async fn check(path: &Path, timeout: Duration) -> Health {
    let p = path.to_path_buf();
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(move || check_now(&p))).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => Health::Corrupt(format!("checking {}: {e}", path.display())),
        Err(_) => Health::Corrupt(format!(
            "{} did not answer within {timeout:?}",
            path.display()
        )),
    }
}

/// Capacity and inode figures of a mounted volume.
pub struct Usage {
    pub total_bytes: i64,
    pub available_bytes: i64,
    pub used_bytes: i64,
    pub total_inodes: i64,
    pub free_inodes: i64,
    pub used_inodes: i64,
}

pub async fn usage(path: &Path, timeout: Duration) -> Result<Usage, String> {
    let p = path.to_path_buf();
    let st = tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || nix::sys::statvfs::statvfs(&p)),
    )
    .await
    .map_err(|_| format!("{} did not answer within {timeout:?}", path.display()))?
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("statfs {}: {e}", path.display()))?;
    let f = st.fragment_size() as i64;
    let total = st.blocks() as i64 * f;
    let avail = st.blocks_available() as i64 * f;
    let free = st.blocks_free() as i64 * f;
    Ok(Usage {
        total_bytes: total,
        available_bytes: avail,
        used_bytes: total - free,
        total_inodes: st.files() as i64,
        free_inodes: st.files_free() as i64,
        used_inodes: st.files() as i64 - st.files_free() as i64,
    })
}
