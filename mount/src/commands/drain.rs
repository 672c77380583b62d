//! Mount state for helpers in the same container, and `juicefs drain MOUNTPOINT`, the
//! classic sidecar's `preStop`: it returns once no file is open on the mount and nothing
//! is waiting to be written, for a quiet period, or when the timeout (inside the pod's
//! grace period) runs out. The client itself flushes and unmounts on the SIGTERM that
//! follows.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct MountState {
    pub pid: u32,
    pub open_handles: usize,
    pub dirty_files: usize,
}

fn runtime_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(if nix::unistd::geteuid().is_root() {
                "/run"
            } else {
                "/tmp"
            })
        })
        .join("juicefs")
}

/// Where the client serving `mountpoint` publishes its state.
pub fn state_path(mountpoint: &Path) -> PathBuf {
    let name: String = mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    runtime_dir().join(format!("{name}.json"))
}

pub fn publish(mountpoint: &Path, state: &MountState) -> std::io::Result<()> {
    let path = state_path(mountpoint);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(state).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

pub fn withdraw(mountpoint: &Path) {
    let _ = std::fs::remove_file(state_path(mountpoint));
}

pub fn run(mountpoint: &str, timeout: u64, quiet: u64) -> ExitCode {
    let mp = match std::path::absolute(mountpoint) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("juicefs drain: {mountpoint}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = state_path(&mp);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut idle_since: Option<Instant> = None;
    loop {
        let state: Option<MountState> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        // No state, or state left by a client that is gone: nothing to wait for.
        let alive =
            |pid: u32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
        let Some(state) = state.filter(|s| alive(s.pid)) else {
            println!("juicefs drain: no client is serving {}", mp.display());
            return ExitCode::SUCCESS;
        };
        if state.open_handles == 0 && state.dirty_files == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(quiet) {
                println!("juicefs drain: {} is idle", mp.display());
                return ExitCode::SUCCESS;
            }
        } else {
            idle_since = None;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "juicefs drain: {} still has {} open files and {} files being written after {timeout} s; letting the pod stop",
                mp.display(),
                state.open_handles,
                state.dirty_files
            );
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
