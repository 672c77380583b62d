//! `juicefs` (and, through a symlink or copy named `mount.juicefs`, the mount helper).

// mimalloc returns freed blocks to the OS promptly across the many FUSE and runtime
// threads, where glibc's per-thread arenas keep them: lower peak RSS under I/O.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    jfs_mount::cli::main_with(std::env::args().collect())
}
