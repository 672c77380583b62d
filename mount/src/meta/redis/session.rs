//! The volume format, client sessions (heartbeat, stale-session cleanup), usage counters and
//! quotas.

use super::{RedisMeta, attr, keys, poisoned};
use crate::meta::rules::{self, unix_secs};
use crate::meta::*;
use std::sync::atomic::Ordering;

impl RedisMeta {
    pub(crate) async fn do_load_format(&self) -> Result<Format> {
        let body: Option<String> = self
            .conn
            .run(::redis::cmd("GET").arg(keys::SETTING))
            .await?;
        let Some(body) = body else {
            return Err(MetaError::NotFormatted(format!(
                "no {:?} key in {}",
                keys::SETTING,
                self.conn.shown
            )));
        };
        let f = Format::parse(&body)?;
        *self.format.lock().map_err(poisoned)? = Some(f.clone());
        Ok(f)
    }

    pub(crate) async fn do_init(&self, format: &Format, force: bool) -> Result<()> {
        self.check_writable()?;
        let old: Option<String> = self
            .conn
            .run(::redis::cmd("GET").arg(keys::SETTING))
            .await?;
        if let Some(old) = &old {
            let old = Format::parse(old)?;
            if !force && !rules::same_volume(&old, format) {
                return Err(MetaError::Invalid(format!(
                    "database already holds volume {:?} (uuid {}) with other settings; use --force to overwrite or --no-update to keep it",
                    old.name, old.uuid
                )));
            }
        }
        self.conn
            .run::<()>(::redis::cmd("SET").arg(keys::SETTING).arg(format.to_json()))
            .await?;
        let mut root = Attr::new(FileKind::Dir, 0o777, 0, 0);
        root.nlink = 2;
        root.length = 4096;
        root.parent = ROOT_INO;
        // NX: formatting again (or with --force) keeps the existing tree.
        self.conn
            .run::<()>(
                ::redis::cmd("SET")
                    .arg(keys::inode(ROOT_INO))
                    .arg(attr::encode(&root))
                    .arg("NX"),
            )
            .await?;
        *self.format.lock().map_err(poisoned)? = Some(format.clone());
        Ok(())
    }

    pub(crate) async fn do_new_session(&self, info: &SessionInfo) -> Result<u64> {
        self.check_writable()?;
        let sid: u64 = self
            .conn
            .run_once(::redis::cmd("INCR").arg(keys::NEXT_SESSION))
            .await?;
        let info = serde_json::to_vec(info).map_err(|e| MetaError::Db(e.to_string()))?;
        let mut p = ::redis::pipe();
        p.cmd("ZADD")
            .arg(keys::SESSIONS)
            .arg(unix_secs())
            .arg(sid)
            .cmd("HSET")
            .arg(keys::SESSION_INFOS)
            .arg(sid)
            .arg(info);
        self.conn.run_pipe::<()>(&p).await?;
        self.sid.store(sid, Ordering::Relaxed);
        Ok(sid)
    }

    pub(crate) async fn do_refresh_session(&self, sid: u64) -> Result<()> {
        self.conn
            .run(
                ::redis::cmd("ZADD")
                    .arg(keys::SESSIONS)
                    .arg(unix_secs())
                    .arg(sid),
            )
            .await
    }

    pub(crate) async fn do_list_sessions(&self) -> Result<Vec<Session>> {
        let mut p = ::redis::pipe();
        p.cmd("ZRANGE")
            .arg(keys::SESSIONS)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .cmd("HGETALL")
            .arg(keys::SESSION_INFOS);
        type Infos = std::collections::HashMap<String, Vec<u8>>;
        let (beats, infos): (Vec<(String, f64)>, Infos) = self.conn.run_pipe(&p).await?;
        let mut out = Vec::with_capacity(beats.len());
        for (sid, beat) in beats {
            let Ok(n) = sid.parse() else { continue };
            out.push(Session {
                sid: n,
                heartbeat: beat as i64,
                info: infos.get(&sid).and_then(|b| serde_json::from_slice(b).ok()),
            });
        }
        out.sort_by_key(|s| s.sid);
        Ok(out)
    }

    pub(crate) async fn do_clean_stale_sessions(
        &self,
        stale_before: i64,
    ) -> Result<Vec<FreedSlice>> {
        let stale: Vec<u64> = self
            .conn
            .run(
                ::redis::cmd("ZRANGEBYSCORE")
                    .arg(keys::SESSIONS)
                    .arg("-inf")
                    .arg(format!("({stale_before}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(100),
            )
            .await?;
        let mut freed = Vec::new();
        for sid in stale {
            if sid != self.sid() {
                tracing::info!(sid, "cleaning stale session");
                freed.extend(self.clean_session(sid).await?);
            }
        }
        Ok(freed)
    }

    /// Ends a session: deletes the files it kept open after they were unlinked, releases
    /// its locks, and forgets it.
    pub(crate) async fn clean_session(&self, sid: u64) -> Result<Vec<FreedSlice>> {
        self.check_writable()?;
        let held: Vec<u64> = self
            .conn
            .run(::redis::cmd("SMEMBERS").arg(keys::sustained(sid)))
            .await?;
        let mut freed = Vec::new();
        for ino in held {
            freed.extend(self.release_sustained(sid, ino).await?);
        }
        let locked: Vec<String> = self
            .conn
            .run(::redis::cmd("SMEMBERS").arg(keys::locked(sid)))
            .await?;
        let mine = format!("{sid}_");
        for key in locked {
            let owners: Vec<String> = self.conn.run(::redis::cmd("HKEYS").arg(&key)).await?;
            let owners: Vec<&String> = owners.iter().filter(|o| o.starts_with(&mine)).collect();
            if !owners.is_empty() {
                self.conn
                    .run::<()>(::redis::cmd("HDEL").arg(&key).arg(owners))
                    .await?;
            }
        }
        let mut p = ::redis::pipe();
        p.cmd("DEL")
            .arg(keys::locked(sid))
            .arg(keys::sustained(sid))
            .cmd("ZREM")
            .arg(keys::SESSIONS)
            .arg(sid)
            .cmd("HDEL")
            .arg(keys::SESSION_INFOS)
            .arg(sid);
        self.conn.run_pipe::<()>(&p).await?;
        Ok(freed)
    }

    /// Space and inodes in use, as the counters say.
    pub(crate) async fn usage(&self) -> Result<(i64, i64)> {
        let (space, inodes): (Option<i64>, Option<i64>) = self
            .conn
            .run(
                ::redis::cmd("MGET")
                    .arg(keys::USED_SPACE)
                    .arg(keys::TOTAL_INODES),
            )
            .await?;
        Ok((space.unwrap_or(0), inodes.unwrap_or(0)))
    }

    /// Refuses a new inode or more space when the volume's quota would be exceeded.
    pub(crate) async fn check_quota(&self, space: i64, inodes: i64) -> Result<()> {
        let Some(f) = self.cached_format() else {
            return Ok(());
        };
        if (space <= 0 || f.capacity == 0) && (inodes <= 0 || f.inodes == 0) {
            return Ok(());
        }
        rules::check_quota(&f, self.usage().await?, (space, inodes))
    }
}
