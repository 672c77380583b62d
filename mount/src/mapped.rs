//! Whole files as `Bytes` backed by a read-only mapping of the page cache, so serving a
//! block from a local object or cache file costs no copy into our heap.
//!
//! Safe only for files that are replaced by rename and never truncated in place: objects of
//! `file` storage and disk cache blocks are both written to a temporary name first. A
//! mapping keeps an unlinked file's pages alive, so eviction and deletion are harmless.

use bytes::Bytes;
use std::os::fd::AsRawFd;
use std::path::Path;

struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and never changes while we hold it.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared reads of immutable memory.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: ptr points to len readable bytes for the mapping's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned, once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The file's contents; `expect` (if given) must equal its length, else InvalidData.
pub fn read(path: &Path, expect: Option<u64>) -> std::io::Result<Bytes> {
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if expect.is_some_and(|e| e != len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} has {len} bytes, expected {expect:?}", path.display()),
        ));
    }
    // Small files: a copy is cheaper than a mapping.
    if len < 256 << 10 {
        return std::fs::read(path).map(Bytes::from);
    }
    // Fault-driven reads of a cold file go page by page; ask for all of it in one go first.
    // SAFETY: plain readahead(2) on our open fd.
    unsafe { libc::readahead(f.as_raw_fd(), 0, len as usize) };
    // SAFETY: a private read-only mapping of a file we opened; checked for MAP_FAILED.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_POPULATE,
            f.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Bytes::from_owner(Mapping {
        ptr,
        len: len as usize,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn maps_large_files_copies_small_ones_and_checks_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
        let small = b"tail of a file".to_vec();
        std::fs::write(dir.path().join("big"), &big).unwrap();
        std::fs::write(dir.path().join("small"), &small).unwrap();
        let b = super::read(&dir.path().join("big"), Some(big.len() as u64)).unwrap();
        // Unlinking does not disturb a mapping.
        std::fs::remove_file(dir.path().join("big")).unwrap();
        assert!(b[..] == big[..]);
        assert_eq!(b.slice(1000..1010)[..], big[1000..1010]);
        assert_eq!(
            super::read(&dir.path().join("small"), None).unwrap()[..],
            small[..]
        );
        let e = super::read(&dir.path().join("small"), Some(99)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(super::read(&dir.path().join("big"), None).is_err());
    }
}
