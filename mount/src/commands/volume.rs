//! What `gc` and `fsck` share: a volume opened for maintenance (metadata and bucket, no
//! mount), and the rule for whether an object belongs to a slice.

use crate::meta::{self, Meta};
use crate::object::{Listed, ObjectStore};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Volume {
    pub meta: Arc<dyn Meta>,
    pub store: ObjectStore,
    pub name: String,
}

impl Volume {
    pub async fn open(url: &str, read_only: bool) -> Result<Volume, String> {
        let m = meta::open(url, read_only)
            .await
            .map_err(|e| format!("metadata {}: {e}", meta::url::redact(url)))?;
        let f = m.load_format().await.map_err(|e| e.to_string())?;
        f.check_supported().map_err(|e| e.to_string())?;
        let store = ObjectStore::new(&f).map_err(|e| e.to_string())?;
        Ok(Volume {
            meta: m,
            store,
            name: f.name,
        })
    }

    /// What `gc` and `fsck` compare: every slice the metadata refers to, `(id, size)`,
    /// and every block object in the bucket.
    pub async fn inventory(&self) -> Result<(Vec<(u64, u32)>, Vec<Listed>), String> {
        let slices = self
            .meta
            .list_slices()
            .await
            .map_err(|e| format!("listing slices: {e}"))?;
        let objects = self
            .store
            .list_blocks()
            .await
            .map_err(|e| format!("listing objects: {e}"))?;
        Ok((slices, objects))
    }
}

/// True when `o` is a block of a slice in `slices` (id -> size), with the index and
/// length that slice's size gives it.
pub fn classify(store: &ObjectStore, slices: &HashMap<u64, u32>, o: &Listed) -> bool {
    let Some(&size) = slices.get(&o.id) else {
        return false;
    };
    let blocks = (size as u64).div_ceil(store.block_size()).max(1);
    (o.index as u64) < blocks && store.block_len(size, o.index) == o.size
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
