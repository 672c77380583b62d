//! `juicefs umount`: unmount directly as root, through fusermount3 otherwise.

use std::ffi::CString;
use std::process::ExitCode;

pub fn unmount(mp: &str, lazy: bool) -> Result<(), String> {
    let c = CString::new(mp).map_err(|_| format!("mount point {mp:?} contains a NUL byte"))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), flags) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EPERM) {
        let mut cmd = std::process::Command::new("fusermount3");
        cmd.arg("-u");
        if lazy {
            cmd.arg("-z");
        }
        let out = cmd
            .arg(mp)
            .output()
            .map_err(|e| format!("running fusermount3: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    match err.raw_os_error() {
        Some(libc::EBUSY) => Err(format!(
            "{mp} is busy: files are open; close them or use --force"
        )),
        Some(libc::EINVAL) => Err(format!("{mp} is not a mount point")),
        _ => Err(format!("{mp}: {err}")),
    }
}

pub fn run(mp: &str, force: bool) -> ExitCode {
    match unmount(mp, force) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("juicefs umount: {e}");
            ExitCode::FAILURE
        }
    }
}
