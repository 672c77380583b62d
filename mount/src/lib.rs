//! The JuiceFS-format FUSE client: metadata engines (`meta`), object storage (`object`),
//! the chunk/slice/block data path (`chunk`), the file system layer (`vfs`), its FUSE
//! adapter (`fuse`) and the command line (`cli`). Nothing here knows about Kubernetes.

pub mod meta;
pub mod object;
