//! Extended attributes in `jfs_xattr`.

use super::*;

use crate::meta::rules::{check_setxattr, check_xattr_name};

impl SqlMeta {
    pub(crate) async fn do_getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        check_xattr_name(name)?;
        txn!(self, false, |tx| {
            let rows = tx
                .query(
                    "SELECT value FROM jfs_xattr WHERE inode=? AND name=?",
                    &[ino.into(), name.into()],
                )
                .await?;
            match rows.into_iter().next() {
                Some(mut r) => r.remove(0).blob(),
                None => {
                    must_node(&mut tx, ino).await?;
                    Err(MetaError::NoAttr)
                }
            }
        })
    }

    pub(crate) async fn do_listxattr(&self, ino: Ino) -> Result<Vec<String>> {
        txn!(self, false, |tx| {
            must_node(&mut tx, ino).await?;
            let rows = tx
                .query("SELECT name FROM jfs_xattr WHERE inode=?", &[ino.into()])
                .await?;
            rows.into_iter().map(|mut r| r.remove(0).text()).collect()
        })
    }

    pub(crate) async fn do_setxattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        self.check_writable()?;
        check_setxattr(name, value)?;
        txn!(self, true, |tx| {
            must_node(&mut tx, ino).await?;
            let exists = !tx
                .query(
                    "SELECT name FROM jfs_xattr WHERE inode=? AND name=?",
                    &[ino.into(), name.into()],
                )
                .await?
                .is_empty();
            if exists && flags & libc::XATTR_CREATE != 0 {
                return Err(MetaError::Exists);
            }
            if !exists && flags & libc::XATTR_REPLACE != 0 {
                return Err(MetaError::NoAttr);
            }
            if exists {
                tx.exec(
                    "UPDATE jfs_xattr SET value=? WHERE inode=? AND name=?",
                    &[value.into(), ino.into(), name.into()],
                )
                .await?;
            } else {
                tx.exec(
                    "INSERT INTO jfs_xattr (inode,name,value) VALUES (?,?,?)",
                    &[ino.into(), name.into(), value.into()],
                )
                .await?;
            }
            Ok(())
        })
    }

    pub(crate) async fn do_removexattr(&self, ino: Ino, name: &str) -> Result<()> {
        self.check_writable()?;
        check_xattr_name(name)?;
        txn!(self, true, |tx| {
            let n = tx
                .exec(
                    "DELETE FROM jfs_xattr WHERE inode=? AND name=?",
                    &[ino.into(), name.into()],
                )
                .await?;
            if n == 0 {
                must_node(&mut tx, ino).await?;
                return Err(MetaError::NoAttr);
            }
            Ok(())
        })
    }
}
