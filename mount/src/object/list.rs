//! Listing a volume's block objects (`chunks/...`), for `gc` and `fsck`.

use super::{Backend, ObjectError, ObjectStore, Result};
use std::path::Path;
use std::time::SystemTime;

/// One block object found in the bucket.
#[derive(Clone, Debug)]
pub struct Listed {
    pub key: String,
    pub id: u64,
    pub index: u32,
    /// The block length its name states.
    pub size: u32,
    pub modified: Option<SystemTime>,
}

/// `(slice id, block index, block length)` from a key's last component `ID_INDEX_LEN`;
/// None for anything else (temporary files, probes, foreign objects).
pub fn parse_block_name(key: &str) -> Option<(u64, u32, u32)> {
    let name = key.rsplit('/').next()?;
    let mut parts = name.split('_');
    let (id, index, size) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((id.parse().ok()?, index.parse().ok()?, size.parse().ok()?))
}

fn listed(key: String, modified: Option<SystemTime>) -> Option<Listed> {
    let (id, index, size) = parse_block_name(&key)?;
    Some(Listed {
        key,
        id,
        index,
        size,
        modified,
    })
}

/// Files under `dir`, as keys relative to `root`.
pub(super) fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, Option<SystemTime>)>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let ty = e.file_type()?;
        if ty.is_dir() {
            walk(root, &e.path(), out)?;
        } else if ty.is_file() {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let key = rel
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            out.push((key, e.metadata().ok().and_then(|m| m.modified().ok())));
        }
    }
    Ok(())
}

impl ObjectStore {
    /// Every block object of the volume, with when it was written.
    pub async fn list_blocks(&self) -> Result<Vec<Listed>> {
        let prefix = format!("{}chunks/", self.prefix);
        let found: Vec<(String, Option<SystemTime>)> = match &self.backend {
            Backend::Dir(d) => {
                let root = d.root().to_path_buf();
                let p = prefix.clone();
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    walk(&root, &root.join(&p), &mut out).map(|_| out)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|source| ObjectError::Local {
                    key: prefix.clone(),
                    source,
                })?
            }
            Backend::Dal(op) => op
                .list_with(&prefix)
                .recursive(true)
                .await
                .map_err(|source| ObjectError::Io {
                    key: prefix.clone(),
                    source,
                })?
                .into_iter()
                .filter(|e| !e.path().ends_with('/'))
                .map(|e| {
                    let modified = e.metadata().last_modified().map(SystemTime::from);
                    (e.path().to_string(), modified)
                })
                .collect(),
        };
        Ok(found
            .into_iter()
            .filter_map(|(k, m)| listed(k, m))
            .collect())
    }

    /// Removes one object by key (what `gc --delete` found leaked).
    pub async fn delete_object(&self, key: &str) -> Result<()> {
        self.delete(key).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn block_names() {
        use super::parse_block_name as p;
        assert_eq!(p("vol/chunks/0/0/12_3_4194304"), Some((12, 3, 4194304)));
        assert_eq!(p("vol/chunks/0C/0/12_0_10"), Some((12, 0, 10)));
        assert_eq!(p("vol/chunks/0/0/12_0_10.tmp77"), None);
        assert_eq!(p("vol/chunks/0/0/12_0"), None);
        assert_eq!(p("vol/chunks/0/0/12_0_1_2"), None);
        assert_eq!(p("vol/testing/abc"), None);
    }
}
