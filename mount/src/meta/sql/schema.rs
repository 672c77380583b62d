//! The JuiceFS 0.14 SQL schema, column for column as the reference client creates it, so
//! either client can format a database the other then mounts.

use super::db::Dialect;

pub fn statements(d: Dialect) -> Vec<&'static str> {
    match d {
        Dialect::Sqlite => vec![
            "CREATE TABLE IF NOT EXISTS `jfs_setting` (`name` TEXT PRIMARY KEY NOT NULL, `value` TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS `jfs_counter` (`name` TEXT PRIMARY KEY NOT NULL, `value` INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS `jfs_node` (`inode` INTEGER PRIMARY KEY NOT NULL, `type` INTEGER NOT NULL, `flags` INTEGER NOT NULL, `mode` INTEGER NOT NULL, `uid` INTEGER NOT NULL, `gid` INTEGER NOT NULL, `atime` INTEGER NOT NULL, `mtime` INTEGER NOT NULL, `ctime` INTEGER NOT NULL, `nlink` INTEGER NOT NULL, `length` INTEGER NOT NULL, `rdev` INTEGER NULL, `parent` INTEGER NULL)",
            "CREATE TABLE IF NOT EXISTS `jfs_edge` (`parent` INTEGER NOT NULL, `name` TEXT NOT NULL, `inode` INTEGER NOT NULL, `type` INTEGER NOT NULL)",
            "CREATE UNIQUE INDEX IF NOT EXISTS `UQE_jfs_edge_edge` ON `jfs_edge` (`parent`,`name`)",
            "CREATE TABLE IF NOT EXISTS `jfs_symlink` (`inode` INTEGER PRIMARY KEY NOT NULL, `target` TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS `jfs_xattr` (`inode` INTEGER NOT NULL, `name` TEXT NOT NULL, `value` BLOB NOT NULL)",
            "CREATE UNIQUE INDEX IF NOT EXISTS `UQE_jfs_xattr_name` ON `jfs_xattr` (`inode`,`name`)",
            "CREATE TABLE IF NOT EXISTS `jfs_chunk` (`inode` INTEGER NOT NULL, `indx` INTEGER NOT NULL, `slices` BLOB NOT NULL)",
            "CREATE UNIQUE INDEX IF NOT EXISTS `UQE_jfs_chunk_chunk` ON `jfs_chunk` (`inode`,`indx`)",
            "CREATE TABLE IF NOT EXISTS `jfs_chunk_ref` (`chunkid` INTEGER PRIMARY KEY NOT NULL, `size` INTEGER NOT NULL, `refs` INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS `jfs_session` (`sid` INTEGER PRIMARY KEY NOT NULL, `heartbeat` INTEGER NOT NULL, `info` BLOB NULL)",
            "CREATE TABLE IF NOT EXISTS `jfs_sustained` (`sid` INTEGER NOT NULL, `inode` INTEGER NOT NULL)",
            "CREATE UNIQUE INDEX IF NOT EXISTS `UQE_jfs_sustained_sustained` ON `jfs_sustained` (`sid`,`inode`)",
            "CREATE TABLE IF NOT EXISTS `jfs_delfile` (`inode` INTEGER PRIMARY KEY NOT NULL, `length` INTEGER NOT NULL, `expire` INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS `jfs_flock` (`inode` INTEGER NOT NULL, `sid` INTEGER NOT NULL, `owner` INTEGER NOT NULL, `ltype` INTEGER NOT NULL)",
            "CREATE UNIQUE INDEX IF NOT EXISTS `UQE_jfs_flock_flock` ON `jfs_flock` (`inode`,`sid`,`owner`)",
            "CREATE TABLE IF NOT EXISTS `jfs_plock` (`inode` INTEGER NOT NULL, `sid` INTEGER NOT NULL, `owner` INTEGER NOT NULL, `records` BLOB NOT NULL)",
            "CREATE UNIQUE INDEX IF NOT EXISTS `UQE_jfs_plock_plock` ON `jfs_plock` (`inode`,`sid`,`owner`)",
        ],
        Dialect::Postgres => vec![
            r#"CREATE TABLE IF NOT EXISTS "jfs_setting" ("name" VARCHAR(255) PRIMARY KEY NOT NULL, "value" VARCHAR(4096) NOT NULL)"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_counter" ("name" VARCHAR(255) PRIMARY KEY NOT NULL, "value" BIGINT NOT NULL)"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_node" ("inode" BIGINT PRIMARY KEY NOT NULL, "type" INTEGER NOT NULL, "flags" INTEGER NOT NULL, "mode" INTEGER NOT NULL, "uid" INTEGER NOT NULL, "gid" INTEGER NOT NULL, "atime" BIGINT NOT NULL, "mtime" BIGINT NOT NULL, "ctime" BIGINT NOT NULL, "nlink" INTEGER NOT NULL, "length" BIGINT NOT NULL, "rdev" INTEGER NULL, "parent" BIGINT NULL)"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_edge" ("parent" BIGINT NOT NULL, "name" VARCHAR(255) NOT NULL, "inode" BIGINT NOT NULL, "type" INTEGER NOT NULL)"#,
            r#"CREATE UNIQUE INDEX IF NOT EXISTS "UQE_jfs_edge_edge" ON "jfs_edge" ("parent","name")"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_symlink" ("inode" BIGINT PRIMARY KEY NOT NULL, "target" VARCHAR(4096) NOT NULL)"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_xattr" ("inode" BIGINT NOT NULL, "name" VARCHAR(255) NOT NULL, "value" BYTEA NOT NULL)"#,
            r#"CREATE UNIQUE INDEX IF NOT EXISTS "UQE_jfs_xattr_name" ON "jfs_xattr" ("inode","name")"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_chunk" ("inode" BIGINT NOT NULL, "indx" INTEGER NOT NULL, "slices" BYTEA NOT NULL)"#,
            r#"CREATE UNIQUE INDEX IF NOT EXISTS "UQE_jfs_chunk_chunk" ON "jfs_chunk" ("inode","indx")"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_chunk_ref" ("chunkid" BIGINT PRIMARY KEY NOT NULL, "size" INTEGER NOT NULL, "refs" INTEGER NOT NULL)"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_session" ("sid" BIGINT PRIMARY KEY NOT NULL, "heartbeat" BIGINT NOT NULL, "info" BYTEA NULL)"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_sustained" ("sid" BIGINT NOT NULL, "inode" BIGINT NOT NULL)"#,
            r#"CREATE UNIQUE INDEX IF NOT EXISTS "UQE_jfs_sustained_sustained" ON "jfs_sustained" ("sid","inode")"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_delfile" ("inode" BIGINT PRIMARY KEY NOT NULL, "length" BIGINT NOT NULL, "expire" BIGINT NOT NULL)"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_flock" ("inode" BIGINT NOT NULL, "sid" BIGINT NOT NULL, "owner" BIGINT NOT NULL, "ltype" INTEGER NOT NULL)"#,
            r#"CREATE UNIQUE INDEX IF NOT EXISTS "UQE_jfs_flock_flock" ON "jfs_flock" ("inode","sid","owner")"#,
            r#"CREATE TABLE IF NOT EXISTS "jfs_plock" ("inode" BIGINT NOT NULL, "sid" BIGINT NOT NULL, "owner" BIGINT NOT NULL, "records" BYTEA NOT NULL)"#,
            r#"CREATE UNIQUE INDEX IF NOT EXISTS "UQE_jfs_plock_plock" ON "jfs_plock" ("inode","sid","owner")"#,
        ],
    }
}
