//! The node's own mount table work: mountinfo, bind mounts, stacked unmounts, and health
//! checks that cannot hang the caller on a dead FUSE connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub read_only: bool,
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                root: unescape(f.get(3)?),
                mount_point: PathBuf::from(unescape(f.get(4)?)),
                fs_type: r.first()?.to_string(),
                source: unescape(r.get(1).copied().unwrap_or_default()),
                read_only: f.get(5).is_some_and(|o| o.split(',').any(|x| x == "ro")),
            })
        })
        .collect()
}

pub fn mount_table() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// Whether the topmost mount at `path` is read-only, in a table already read.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_with_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    99 36 0:52 /team /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount rw shared:5 - fuse.juicefs myjfs rw,user_id=0\n";
        let e = parse_mountinfo(text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(e[0].root, "/mnt1");
        assert_eq!(e[1].fs_type, "fuse.juicefs");
        assert_eq!(e[1].source, "myjfs");
        assert_eq!(e[1].root, "/team");
        assert!(!e[1].read_only);
    }
}
