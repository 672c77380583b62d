//! `juicefs probe MOUNTPOINT`: exit 0 only when the mount is live. Used by the sidecar's
//! startup probe and classic `postStart` hook. `/proc/mounts` alone lies after a crash (the
//! dead mount stays listed) and `stat` can be answered from the kernel's cache, so the check
//! is: the top mount at the path is `fuse.juicefs`, and the client answers `statfs`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

/// (source, file system type) of the topmost mount at `path`, from `/proc/self/mounts` text.
pub fn top_mount(mounts: &str, path: &str) -> Option<(String, String)> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (src, mp, ty) = (f.next()?, f.next()?, f.next()?);
            (mp.replace("\\040", " ") == path).then(|| (src.to_string(), ty.to_string()))
        })
        .next_back()
}

/// The topmost mount at `path` in this process's mount namespace.
pub fn top_mount_here(path: &std::path::Path) -> Option<(String, String)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    top_mount(&mounts, &path.to_string_lossy())
}

pub fn check(path: &str) -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("reading /proc/self/mounts: {e}"))?;
    match top_mount(&mounts, path) {
        Some((_, t)) if t == "fuse.juicefs" => {}
        Some((_, t)) => return Err(format!("{path} is a {t} mount, not fuse.juicefs")),
        None => return Err(format!("{path} is not mounted")),
    }
    nix::sys::statfs::statfs(path)
        .map(|_| ())
        .map_err(|e| format!("{path} does not answer: {e}"))
}

pub fn run(path: &str, wait: Option<u64>) -> ExitCode {
    let path = match std::path::absolute(path) {
        Ok(p) => p.to_string_lossy().trim_end_matches('/').to_string(),
        Err(e) => {
            eprintln!("juicefs probe: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(wait.unwrap_or(0));
    loop {
        match check(&path) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) if Instant::now() >= deadline => {
                eprintln!("juicefs probe: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topmost_mount_decides() {
        let m = "tmpfs /jfs/a tmpfs ro 0 0\nJuiceFS:v /jfs/a fuse.juicefs rw 0 0\nJuiceFS:w /jfs/b fuse.juicefs rw 0 0\ntmpfs /jfs/b tmpfs rw 0 0\n";
        assert_eq!(
            top_mount(m, "/jfs/a").map(|t| t.1).as_deref(),
            Some("fuse.juicefs")
        );
        assert_eq!(
            top_mount(m, "/jfs/b"),
            Some(("tmpfs".into(), "tmpfs".into()))
        );
        assert_eq!(top_mount(m, "/jfs/c"), None);
    }
}
