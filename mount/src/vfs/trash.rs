//! `--trash-days N` (a volume setting): what is deleted, and a file replaced by a rename,
//! is moved to `.trash/YYYY-MM-DD-HH/{parent}-{inode}-{name}` (the UTC hour of the
//! deletion), where root can read or move it back, and is deleted for good once its hour
//! is N days old. The layout is JuiceFS 1.x's. Every move is a rename inside the metadata
//! engine, so both engines get trash from the operations they already have.
//! What is deleted inside `.trash` is deleted for good.

use super::{Result, Vfs};
use crate::meta::{
    Caller, FileKind, FreedSlice, Ino, Meta, MetaError, ROOT_INO, RenameMode, TRASH_INO, now_nanos,
};

/// Days to keep, from the volume format; 0 is no trash.
pub fn enabled(days: u64) -> bool {
    days > 0
}

const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 0,
};

/// The hour directory for a time in Unix seconds: `2026-11-22-09` (UTC).
pub fn hour_name(secs: i64) -> String {
    let (y, m, d) = crate::civil::civil_from_days(secs.div_euclid(86_400));
    let h = secs.rem_euclid(86_400) / 3600;
    format!("{y:04}-{m:02}-{d:02}-{h:02}")
}

/// The start of an hour directory's hour in Unix seconds, or `None` for another name.
pub fn parse_hour(name: &str) -> Option<i64> {
    let parts: Vec<&str> = name.split('-').collect();
    let [y, m, d, h] = parts.as_slice() else {
        return None;
    };
    if [y.len(), m.len(), d.len(), h.len()] != [4, 2, 2, 2] {
        return None;
    }
    let (y, m, d, h): (i64, i64, i64, i64) = (
        y.parse().ok()?,
        m.parse().ok()?,
        d.parse().ok()?,
        h.parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(0..24).contains(&h) {
        return None;
    }
    Some(crate::civil::days_from_civil(y, m, d) * 86_400 + h * 3600)
}

/// `{parent}-{inode}-{name}`, cut to 255 bytes (at a character boundary) so any name fits.
pub fn entry_name(parent: Ino, ino: Ino, name: &str) -> String {
    let mut s = format!("{parent}-{ino}-{name}");
    if s.len() > 255 {
        let mut end = 255;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Vfs {
    /// `.trash` in the volume's root, when the volume has a trash (a `--subdir` mount has
    /// no way up to it).
    pub(super) fn is_trash_name(&self, parent: Ino, name: &str) -> bool {
        name == ".trash"
            && parent == ROOT_INO
            && self.cfg.root == ROOT_INO
            && enabled(self.cfg.trash_days)
    }

    /// The hour directory deletions from `parent` go to, or `None` when they are final:
    /// no trash, or `parent` is in the trash already.
    async fn trash_for(&self, parent: Ino) -> Result<Option<Ino>> {
        if !enabled(self.cfg.trash_days) || parent == TRASH_INO {
            return Ok(None);
        }
        if self.meta.getattr(parent).await?.parent == TRASH_INO {
            return Ok(None);
        }
        let name = hour_name(now_nanos().div_euclid(1_000_000_000));
        for _ in 0..3 {
            match self.meta.lookup(TRASH_INO, &name).await {
                Ok((ino, _)) => return Ok(Some(ino)),
                Err(MetaError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            match self
                .meta
                .mknod(TRASH_INO, &name, FileKind::Dir, 0o555, 0, None, ROOT)
                .await
            {
                Ok((ino, _)) => return Ok(Some(ino)),
                // Another client made it first.
                Err(MetaError::Exists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetaError::Db(format!("cannot create trash directory {name}")).into())
    }

    /// Moves `parent/name` (a directory, which must be empty, for rmdir; anything else for
    /// unlink) into the trash; `Ok(false)` when there is no trash for it.
    pub(super) async fn trash_remove(
        &self,
        parent: Ino,
        name: &str,
        dir: bool,
        caller: Caller,
    ) -> Result<bool> {
        if dir && (name == "." || name == "..") {
            return Ok(false);
        }
        let Some(hour) = self.trash_for(parent).await? else {
            return Ok(false);
        };
        let (ino, a) = self.meta.lookup(parent, name).await?;
        self.check_kinds(dir, ino, a.kind == FileKind::Dir).await?;
        self.to_trash(parent, name, &entry_name(parent, ino, name), hour, caller)
            .await?;
        Ok(true)
    }

    /// The errors of removing or replacing `victim` by an operation on a directory (`dir`)
    /// or on anything else: EISDIR, ENOTDIR, or ENOTEMPTY for a directory with entries.
    async fn check_kinds(&self, dir: bool, victim: Ino, victim_is_dir: bool) -> Result<()> {
        match (dir, victim_is_dir) {
            (false, true) => Err(MetaError::IsDir.into()),
            (true, false) => Err(MetaError::NotDir.into()),
            (true, true) if !self.meta.readdir(victim, false).await?.is_empty() => {
                Err(MetaError::NotEmpty.into())
            }
            _ => Ok(()),
        }
    }

    /// A rename onto an existing name: the two swap atomically (the new name never
    /// disappears), then the replaced inode moves from the old name into the trash.
    /// `Ok(false)` when the rename has nothing to trash.
    pub(super) async fn trash_rename(
        &self,
        sp: Ino,
        sname: &str,
        dp: Ino,
        dname: &str,
        caller: Caller,
    ) -> Result<bool> {
        if !enabled(self.cfg.trash_days) {
            return Ok(false);
        }
        let (dino, da) = match self.meta.lookup(dp, dname).await {
            Ok(d) => d,
            Err(MetaError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let (sino, sa) = self.meta.lookup(sp, sname).await?;
        if sino == dino {
            return Ok(false);
        }
        let Some(dir) = self.trash_for(dp).await? else {
            return Ok(false);
        };
        self.check_kinds(sa.kind == FileKind::Dir, dino, da.kind == FileKind::Dir)
            .await?;
        self.meta
            .rename(sp, sname, dp, dname, RenameMode::Exchange, caller)
            .await?;
        // Named for where it was replaced, though it now sits at the source name.
        let entry = entry_name(dp, dino, dname);
        self.to_trash(sp, sname, &entry, dir, ROOT).await?;
        Ok(true)
    }

    /// Renames `parent/name` to `entry` in the hour directory `dir`.
    async fn to_trash(
        &self,
        parent: Ino,
        name: &str,
        entry: &str,
        dir: Ino,
        caller: Caller,
    ) -> Result<()> {
        let freed = self
            .meta
            .rename(parent, name, dir, entry, RenameMode::NoReplace, caller)
            .await?;
        self.free_slices(freed);
        Ok(())
    }

    /// Deletes for good every hour directory of the trash older than `days` (with what is
    /// in it). Errors from a client cleaning at the same time are skipped.
    pub async fn cleanup_trash(&self, days: u64, now_secs: i64) -> Result<usize> {
        let cutoff = now_secs - days as i64 * 86_400;
        let hours = match self.meta.readdir(TRASH_INO, false).await {
            Ok(h) => h,
            Err(MetaError::NotFound) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut removed = 0;
        for h in hours {
            // An hour's directory goes once the whole hour is past the cutoff.
            if parse_hour(&h.name).is_none_or(|t| t + 3600 > cutoff) || h.kind != FileKind::Dir {
                continue;
            }
            let freed = remove_tree(&*self.meta, h.ino).await;
            self.free_slices(freed);
            match self.meta.rmdir(TRASH_INO, &h.name, ROOT).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("trash: removing {}: {e}", h.name),
            }
        }
        Ok(removed)
    }
}

/// Deletes everything under directory `dir` (not `dir` itself), depth first.
async fn remove_tree(meta: &dyn Meta, dir: Ino) -> Vec<FreedSlice> {
    let mut freed = Vec::new();
    let mut stack = vec![(dir, false)];
    while let Some((d, emptied)) = stack.pop() {
        let Ok(entries) = meta.readdir(d, false).await else {
            continue;
        };
        if emptied || entries.iter().all(|e| e.kind != FileKind::Dir) {
            for e in entries {
                let r = if e.kind == FileKind::Dir {
                    meta.rmdir(d, &e.name, ROOT).await.map(|_| Vec::new())
                } else {
                    meta.unlink(d, &e.name, ROOT).await
                };
                match r {
                    Ok(f) => freed.extend(f),
                    Err(e) => tracing::debug!("trash: {e}"),
                }
            }
            continue;
        }
        // Subdirectories first, then this one again to remove what is left.
        stack.push((d, true));
        for e in entries.iter().filter(|e| e.kind == FileKind::Dir) {
            stack.push((e.ino, false));
        }
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_names_round_trip() {
        assert_eq!(hour_name(0), "1970-01-01-00");
        // 2026-11-22 09:30:00 UTC
        let t = 1_795_339_800;
        assert_eq!(hour_name(t), "2026-11-22-09");
        assert_eq!(parse_hour("2026-11-22-09"), Some(t - 1800));
        assert_eq!(parse_hour("2024-02-29-23"), Some(1_709_247_600));
        for bad in [
            "2026-11-22",
            "2026-13-01-00",
            "x026-11-22-09",
            "2026-11-22-24",
            "a-b-c-d",
        ] {
            assert_eq!(parse_hour(bad), None, "{bad}");
        }
    }

    #[test]
    fn entry_names_fit_in_a_name() {
        assert_eq!(entry_name(1, 42, "a.txt"), "1-42-a.txt");
        let long = "é".repeat(127);
        let n = entry_name(123, 456, &long);
        assert!(n.len() <= 255 && n.starts_with("123-456-é"), "{n}");
    }
}
