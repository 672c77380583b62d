//! `juicefs` (and, through a symlink or copy named `mount.juicefs`, the mount helper).

fn main() -> std::process::ExitCode {
    tune_malloc();
    jfs_mount::cli::main_with(std::env::args().collect())
}

/// Data blocks are megabytes each and cross threads (FUSE workers, runtime, uploads).
/// A fixed mmap threshold above the block size keeps them in the heap, where freed blocks
/// are reused without page faults (a fresh mapping per block costs a fault per page), and
/// few arenas bound how much freed memory the process keeps.
fn tune_malloc() {
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}
