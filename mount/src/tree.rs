//! Removing a directory tree straight through the metadata engine and object storage,
//! without a mount: what the CSI controller's DeleteVolume does with a volume's directory.
//! Data objects are deleted (awaited) as each file goes, as a mounted `rm -rf` would.

use crate::meta::{self, Caller, FileKind, Ino, Meta, MetaError, ROOT_INO};
use crate::object::ObjectStore;
use std::sync::Arc;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub existed: bool,
    pub files: u64,
    pub dirs: u64,
}

const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 0,
};

/// Opens the volume at `meta_url` and removes `path` (relative to the root, `a/b/c`) with
/// everything below it. Refuses the root itself and any `.`/`..`/empty component.
pub async fn remove(meta_url: &str, path: &str) -> Result<Removed, String> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if path.trim_matches('/').is_empty()
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(format!(
            "refusing to remove {path:?}: not a directory below the root"
        ));
    }
    let m = meta::open(meta_url, false)
        .await
        .map_err(|e| e.to_string())?;
    let f = m.load_format().await.map_err(|e| match e {
        MetaError::NotFormatted(why) => {
            format!("{} is not formatted ({why})", meta::url::redact(meta_url))
        }
        e => e.to_string(),
    })?;
    f.check_supported().map_err(|e| e.to_string())?;
    let store = ObjectStore::new(&f).map_err(|e| e.to_string())?;
    let mut parent = ROOT_INO;
    for p in &parts[..parts.len() - 1] {
        match m.lookup(parent, p).await {
            Ok((ino, _)) => parent = ino,
            Err(e) if e.errno() == libc::ENOENT => return Ok(Removed::default()),
            Err(e) => return Err(format!("looking up {p:?} in {path:?}: {e}")),
        }
    }
    let last = parts[parts.len() - 1];
    let (ino, attr) = match m.lookup(parent, last).await {
        Ok(x) => x,
        Err(e) if e.errno() == libc::ENOENT => return Ok(Removed::default()),
        Err(e) => return Err(format!("looking up {path:?}: {e}")),
    };
    let mut done = Removed {
        existed: true,
        ..Default::default()
    };
    if attr.kind == FileKind::Dir {
        remove_children(&m, &store, ino, &mut done).await?;
        m.rmdir(parent, last, ROOT)
            .await
            .map_err(|e| format!("removing {path:?}: {e}"))?;
        done.dirs += 1;
    } else {
        unlink(&m, &store, parent, last, &mut done).await?;
    }
    Ok(done)
}

async fn unlink(
    m: &Arc<dyn Meta>,
    store: &ObjectStore,
    parent: Ino,
    name: &str,
    done: &mut Removed,
) -> Result<(), String> {
    let freed = m
        .unlink(parent, name, ROOT)
        .await
        .map_err(|e| format!("removing {name:?}: {e}"))?;
    for s in freed {
        store
            .delete_slice(s.id, s.size)
            .await
            .map_err(|e| format!("deleting the data of {name:?}: {e}"))?;
    }
    done.files += 1;
    Ok(())
}

/// Empties directory `dir`; each level's future is boxed, so deep trees live on the heap.
async fn remove_children(
    m: &Arc<dyn Meta>,
    store: &ObjectStore,
    dir: Ino,
    done: &mut Removed,
) -> Result<(), String> {
    let entries = m
        .readdir(dir, false)
        .await
        .map_err(|e| format!("listing inode {dir}: {e}"))?;
    for e in entries.iter().filter(|e| e.name != "." && e.name != "..") {
        if e.kind == FileKind::Dir {
            Box::pin(remove_children(m, store, e.ino, done)).await?;
            m.rmdir(dir, &e.name, ROOT)
                .await
                .map_err(|err| format!("removing {:?}: {err}", e.name))?;
            done.dirs += 1;
        } else {
            unlink(m, store, dir, &e.name, done).await?;
        }
    }
    Ok(())
}
