//! `juicefs` (and, through a symlink or copy named `mount.juicefs`, the mount helper).

fn main() -> std::process::ExitCode {
    jfs_mount::cli::main_with(std::env::args().collect())
}
