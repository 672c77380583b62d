//! The JuiceFS-format FUSE client: metadata engines (`meta`), object storage (`object`),
//! the file system layer with its read and write paths (`vfs`), its FUSE adapter (`fuse`),
//! mount options (`options`) and the command line (`cli`, `commands`). Nothing here knows
//! about Kubernetes.

pub mod civil;
pub mod cli;
pub mod commands;
pub mod fuse;
pub mod internal;
pub mod logging;
pub mod mapped;
pub mod meta;
pub mod metrics;
pub mod mountinfo;
pub mod object;
pub mod options;
pub mod tree;
pub mod vfs;
