//! The `file` storage type: objects as files under a directory, the way JuiceFS stores
//! them. Written to a temporary name and renamed, so a reader never sees half an object.
//! Like JuiceFS, it does not fsync each object: an object is stored once the local file
//! system has it, which survives a killed client; power-loss durability is the host file
//! system's (OpenDAL's fs service would force an fsync per 4 MiB block).

use bytes::Bytes;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

pub struct LocalDir {
    root: PathBuf,
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

impl LocalDir {
    pub fn new(root: &str) -> LocalDir {
        LocalDir {
            root: PathBuf::from(root),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    pub async fn put(&self, key: &str, data: Bytes) -> std::io::Result<()> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || write_atomic(&path, &data))
            .await
            .map_err(std::io::Error::other)?
    }

    pub async fn get(&self, key: &str) -> std::io::Result<Bytes> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || crate::mapped::read(&path, None))
            .await
            .map_err(std::io::Error::other)?
    }

    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(e) if !not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The bucket directory must exist or be creatable, and be a directory.
    pub async fn check(&self) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.root).await?;
        let md = tokio::fs::metadata(&self.root).await?;
        if !md.is_dir() {
            return Err(std::io::Error::new(
                ErrorKind::NotADirectory,
                "bucket is not a directory",
            ));
        }
        Ok(())
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = |p: &Path| std::fs::write(p, data);
    if let Err(e) = write(&tmp) {
        if !not_found(&e) {
            return Err(e);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write(&tmp)?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
