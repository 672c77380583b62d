//! Extended attributes: one hash `x{ino}` per inode.

use super::node::must_from;
use super::txn::{txn, watching};
use super::{RedisMeta, keys};
use crate::meta::rules::{check_setxattr, check_xattr_name};
use crate::meta::*;

impl RedisMeta {
    /// Tells "no such attribute" from "no such inode".
    async fn no_attr(&self, ino: Ino) -> MetaError {
        match self.get_attr(ino).await {
            Ok(_) => MetaError::NoAttr,
            Err(e) => e,
        }
    }

    pub(crate) async fn do_getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        check_xattr_name(name)?;
        let v: Option<Vec<u8>> = self
            .conn
            .run(::redis::cmd("HGET").arg(keys::xattrs(ino)).arg(name))
            .await?;
        match v {
            Some(v) => Ok(v),
            None => Err(self.no_attr(ino).await),
        }
    }

    pub(crate) async fn do_listxattr(&self, ino: Ino) -> Result<Vec<String>> {
        self.get_attr(ino).await?;
        self.conn
            .run(::redis::cmd("HKEYS").arg(keys::xattrs(ino)))
            .await
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
        let (ik, xk) = (keys::inode(ino), keys::xattrs(ino));
        txn!(self, &xk, |tx| {
            let mut q = watching(&[&ik, &xk]);
            q.cmd("GET").arg(&ik).cmd("HEXISTS").arg(&xk).arg(name);
            let (a, exists): (Option<Vec<u8>>, bool) = tx.read_pipe(&q).await?;
            must_from(ino, a)?;
            if exists && flags & libc::XATTR_CREATE != 0 {
                return Err(MetaError::Exists);
            }
            if !exists && flags & libc::XATTR_REPLACE != 0 {
                return Err(MetaError::NoAttr);
            }
            tx.pipe.cmd("HSET").arg(&xk).arg(name).arg(value);
            Ok(())
        })?;
        Ok(())
    }

    pub(crate) async fn do_removexattr(&self, ino: Ino, name: &str) -> Result<()> {
        self.check_writable()?;
        check_xattr_name(name)?;
        let n: u64 = self
            .conn
            .run(::redis::cmd("HDEL").arg(keys::xattrs(ino)).arg(name))
            .await?;
        if n == 0 {
            return Err(self.no_attr(ino).await);
        }
        Ok(())
    }
}
