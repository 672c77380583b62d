//! The metadata engines driven directly (no FUSE): sessions and their cleanup, sustained
//! inodes, counters and quotas, locks across sessions, deleted-file queues. Runs on SQLite,
//! and on PostgreSQL and Redis when their test servers are up; the Redis engine is also
//! checked key by key against what the reference client writes.

mod common;
use common::*;
use jfs_mount::meta::{
    self, Caller, FileKind, Format, LockType, Meta, MetaError, PlockRecord, ROOT_INO, SessionInfo,
    Slice,
};
use std::sync::Arc;

fn format() -> Format {
    Format::parse(
        r#"{"Name":"engine","UUID":"u-1","Storage":"file","Bucket":"/tmp/x/","AccessKey":"","BlockSize":4096,"Compression":"none","Shards":0,"Partitions":0,"Capacity":0,"Inodes":0}"#,
    )
    .unwrap()
}

fn info() -> SessionInfo {
    SessionInfo {
        version: "test".into(),
        hostname: "h".into(),
        mount_point: "/m".into(),
        process_id: 1,
    }
}

/// Two engine instances on one fresh database, as two clients would be.
async fn two_clients(b: Backend) -> Option<(Volume, Arc<dyn Meta>, Arc<dyn Meta>)> {
    let v = Volume::new(b)?;
    let a = meta::create(&v.meta).await.unwrap();
    a.init(&format(), false).await.unwrap();
    let b = meta::open(&v.meta, false).await.unwrap();
    a.load_format().await.unwrap();
    b.load_format().await.unwrap();
    a.new_session(&info()).await.unwrap();
    b.new_session(&info()).await.unwrap();
    Some((v, a, b))
}

/// Creates `name` in the root with one committed slice of `size` bytes.
async fn file_with_slice(m: &Arc<dyn Meta>, name: &str, size: u32) -> (u64, u64) {
    let (ino, _) = m
        .mknod(
            ROOT_INO,
            name,
            FileKind::File,
            0o644,
            0,
            None,
            Caller::default(),
        )
        .await
        .unwrap();
    let id = m.new_slice_id().await.unwrap();
    let s = Slice {
        pos: 0,
        id,
        size,
        off: 0,
        len: size,
    };
    m.write_slice(ino, 0, s, 0).await.unwrap();
    (ino, id)
}

async fn sessions_locks_and_sustained(backend: Backend) {
    let Some((_v, a, b)) = two_clients(backend).await else {
        return;
    };
    let c = Caller::default();
    let (ino, _) = file_with_slice(&a, "f", 100).await;

    // POSIX locks conflict across sessions; flock too.
    let w = PlockRecord {
        ltype: LockType::Write,
        pid: 1,
        start: 0,
        end: 99,
    };
    a.setlk(ino, 7, w).await.unwrap();
    assert!(matches!(
        b.setlk(ino, 7, w).await,
        Err(MetaError::WouldBlock)
    ));
    assert_eq!(
        b.getlk(ino, 7, w).await.unwrap().map(|r| r.ltype),
        Some(LockType::Write)
    );
    let r = PlockRecord {
        ltype: LockType::Read,
        pid: 2,
        start: 100,
        end: 200,
    };
    b.setlk(ino, 7, r).await.unwrap();
    a.flock(ino, 1, LockType::Read).await.unwrap();
    b.flock(ino, 2, LockType::Read).await.unwrap();
    assert!(matches!(
        b.flock(ino, 2, LockType::Write).await,
        Err(MetaError::WouldBlock)
    ));

    // `a` keeps the file open while `b` unlinks it: the data stays until `a` lets go.
    a.open(ino).await.unwrap();
    // Opens in another client are invisible (as in JuiceFS): b deletes the data at once.
    let freed = b.unlink(ROOT_INO, "f", c).await.unwrap();
    assert_eq!(freed.len(), 1);
    let (ino2, _) = a
        .mknod(ROOT_INO, "g", FileKind::File, 0o644, 0, None, c)
        .await
        .unwrap();
    a.open(ino2).await.unwrap();
    let id2 = a.new_slice_id().await.unwrap();
    a.write_slice(
        ino2,
        0,
        Slice {
            pos: 0,
            id: id2,
            size: 10,
            off: 0,
            len: 10,
        },
        0,
    )
    .await
    .unwrap();
    assert!(
        a.unlink(ROOT_INO, "g", c).await.unwrap().is_empty(),
        "open here: kept as sustained"
    );
    assert_eq!(a.getattr(ino2).await.unwrap().nlink, 0);
    assert_eq!(a.read_chunk(ino2, 0).await.unwrap().len(), 1);

    // `a` dies without closing: its session goes stale and `b` cleans it up.
    let sessions = b.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 2);
    let stale = sessions.iter().map(|s| s.heartbeat).max().unwrap() + 1;
    let freed = b.clean_stale_sessions(stale).await.unwrap();
    assert_eq!(freed.len(), 1, "the sustained file's slice is freed");
    assert_eq!(freed[0].id, id2);
    assert!(matches!(b.getattr(ino2).await, Err(MetaError::NotFound)));
    assert_eq!(
        b.list_sessions().await.unwrap().len(),
        1,
        "only b's own session remains"
    );
    // a's locks went with its session.
    b.setlk(ino, 9, w).await.unwrap();
    b.flock(ino, 2, LockType::Write).await.unwrap();
}

async fn counters_and_quotas(backend: Backend) {
    let Some(v) = Volume::new(backend) else {
        return;
    };
    let m = meta::create(&v.meta).await.unwrap();
    let mut f = format();
    f.inodes = 2;
    f.capacity = 1 << 20;
    m.init(&f, false).await.unwrap();
    m.load_format().await.unwrap();
    m.new_session(&info()).await.unwrap();
    let c = Caller::default();
    let (i1, _) = m
        .mknod(ROOT_INO, "a", FileKind::File, 0o644, 0, None, c)
        .await
        .unwrap();
    let (i2, _) = m
        .mknod(ROOT_INO, "b", FileKind::Dir, 0o755, 0, None, c)
        .await
        .unwrap();
    assert_eq!(
        (i1, i2),
        (2, 3),
        "inode numbers start at 2, as JuiceFS allocates them"
    );
    assert!(matches!(
        m.mknod(ROOT_INO, "c", FileKind::File, 0o644, 0, None, c)
            .await,
        Err(MetaError::NoSpace(_))
    ));
    let (_, freed) = m.truncate(i1, 512 << 10).await.unwrap();
    assert!(freed.is_empty());
    assert!(matches!(
        m.truncate(i1, 2 << 20).await,
        Err(MetaError::NoSpace(_))
    ));
    m.flush_stats().await.unwrap();
    let st = m.statfs().await.unwrap();
    assert_eq!(st.used_inodes, 2);
    assert_eq!(st.total_space, 1 << 20);
    assert_eq!(st.avail_inodes, 0);
    // A second format with other settings is refused without --force.
    let mut other = f.clone();
    other.block_size = 1024;
    assert!(
        m.init(&other, false)
            .await
            .unwrap_err()
            .to_string()
            .contains("--force")
    );
    m.init(&other, true).await.unwrap();
    assert_eq!(m.load_format().await.unwrap().block_size, 1024);
}

async fn delfile_queue_from_the_reference(backend: Backend) {
    let Some((v, a, _b)) = two_clients(backend).await else {
        return;
    };
    let (ino, id) = file_with_slice(&a, "f", 5000).await;
    // What JuiceFS 0.14 leaves behind when it unlinks a file and dies before the data is
    // deleted: the node is gone, the chunks and a jfs_delfile row (a `delfiles` entry on
    // Redis) remain.
    let sql = format!(
        "DELETE FROM jfs_edge WHERE inode={ino}; DELETE FROM jfs_node WHERE inode={ino}; INSERT INTO jfs_delfile (inode,length,expire) VALUES ({ino},5000,1)"
    );
    match backend {
        Backend::RedisFile => {
            let r = v.redis.as_ref().unwrap();
            r.cli(&["HDEL", "d1", "f"]);
            r.cli(&["DEL", &format!("i{ino}")]);
            r.cli(&["ZADD", "delfiles", "1", &format!("{ino}:5000")]);
        }
        Backend::PgFile => {
            let conn = std::env::var("JFS_TEST_PG").unwrap();
            let db = v.meta.rsplit("dbname=").next().unwrap().to_string();
            assert!(psql(&conn, &db, &sql).status.success());
        }
        _ => {
            let db = v.dir.path().join("meta.db");
            let out = std::process::Command::new("sqlite3")
                .arg(db)
                .arg(&sql)
                .output()
                .unwrap();
            assert!(out.status.success());
        }
    }
    let freed = a.cleanup_deleted_files().await.unwrap();
    assert_eq!(freed.len(), 1);
    assert_eq!((freed[0].id, freed[0].size), (id, 5000));
    assert!(a.read_chunk(ino, 0).await.unwrap().is_empty());
    assert!(
        a.cleanup_deleted_files().await.unwrap().is_empty(),
        "the queue is drained"
    );
}

#[tokio::test]
async fn sqlite_sessions_locks_and_sustained() {
    sessions_locks_and_sustained(Backend::SqliteFile).await
}
#[tokio::test]
async fn postgres_sessions_locks_and_sustained() {
    sessions_locks_and_sustained(Backend::PgFile).await
}
#[tokio::test]
async fn sqlite_counters_and_quotas() {
    counters_and_quotas(Backend::SqliteFile).await
}
#[tokio::test]
async fn postgres_counters_and_quotas() {
    counters_and_quotas(Backend::PgFile).await
}
#[tokio::test]
async fn sqlite_delfile_queue() {
    delfile_queue_from_the_reference(Backend::SqliteFile).await
}
#[tokio::test]
async fn postgres_delfile_queue() {
    delfile_queue_from_the_reference(Backend::PgFile).await
}
#[tokio::test]
async fn redis_sessions_locks_and_sustained() {
    sessions_locks_and_sustained(Backend::RedisFile).await
}
#[tokio::test]
async fn redis_counters_and_quotas() {
    counters_and_quotas(Backend::RedisFile).await
}
#[tokio::test]
async fn redis_delfile_queue() {
    delfile_queue_from_the_reference(Backend::RedisFile).await
}

/// The keys and values we write are the reference's: see `meta/redis/keys.rs`.
#[tokio::test]
async fn redis_keys_match_the_reference_schema() {
    let Some((v, a, _b)) = two_clients(Backend::RedisFile).await else {
        return;
    };
    let r = v.redis.as_ref().unwrap();
    let (ino, id) = file_with_slice(&a, "f", 5000).await;
    assert_eq!(ino, 2, "first inode of a fresh volume");
    assert_eq!(
        r.cli(&["GET", "nextinode"]),
        "100",
        "holds the last id handed out"
    );
    assert_eq!(r.cli(&["GET", "nextchunk"]), "1000");
    assert_eq!(r.cli(&["GET", "nextsession"]), "2");
    assert_eq!(r.cli(&["STRLEN", "i2"]), "72");
    assert_eq!(r.cli(&["STRLEN", "i1"]), "72");
    assert_eq!(r.cli(&["TYPE", "d1"]), "hash");
    let entry = r.cli(&["--no-raw", "HGET", "d1", "f"]);
    assert_eq!(entry, r#""\x01\x00\x00\x00\x00\x00\x00\x00\x02""#);
    assert_eq!(r.cli(&["LLEN", "c2_0"]), "1");
    assert_eq!(
        r.cli(&["EXISTS", "sliceRef"]),
        "0",
        "one reference is no entry"
    );
    assert_eq!(r.cli(&["GET", "totalInodes"]), "1");
    assert_eq!(r.cli(&["GET", "usedSpace"]), "8192");
    assert_eq!(r.cli(&["ZCARD", "sessions"]), "2");
    assert!(
        r.cli(&["HGET", "sessionInfos", "1"])
            .contains("\"MountPoint\":\"/m\"")
    );
    // A second reference (what the reference's copy_file_range or compaction records):
    // the slice survives the first file and is freed with the second.
    a.link(ino, ROOT_INO, "hard").await.unwrap();
    r.cli(&["HINCRBY", "sliceRef", &format!("k{id}_5000"), "1"]);
    let rec = r.cli(&["LINDEX", "c2_0", "0"]);
    let (other, _) = a
        .mknod(
            ROOT_INO,
            "g",
            FileKind::File,
            0o644,
            0,
            None,
            Caller::default(),
        )
        .await
        .unwrap();
    let copy = Slice {
        pos: 0,
        id,
        size: 5000,
        off: 0,
        len: 5000,
    };
    a.write_slice(other, 0, copy, 0).await.unwrap();
    assert_eq!(r.cli(&["LINDEX", &format!("c{other}_0"), "0"]), rec);
    assert!(
        a.unlink(ROOT_INO, "f", Caller::default())
            .await
            .unwrap()
            .is_empty()
    );
    let freed = a.unlink(ROOT_INO, "hard", Caller::default()).await.unwrap();
    assert!(freed.is_empty(), "still referenced by g");
    assert_eq!(r.cli(&["HGET", "sliceRef", &format!("k{id}_5000")]), "0");
    let freed = a.unlink(ROOT_INO, "g", Caller::default()).await.unwrap();
    assert_eq!(freed.len(), 1);
    assert_eq!(r.cli(&["EXISTS", "sliceRef"]), "0");
    assert_eq!(
        r.cli(&["ZCARD", "delfiles"]),
        "0",
        "data deleted, queue drained"
    );
    assert_eq!(r.cli(&["EXISTS", "c2_0", &format!("c{other}_0")]), "0");
}

/// Two clients racing on one directory: every change lands once (WATCH/MULTI/EXEC reruns
/// the losers), and the directory and counters add up.
#[tokio::test]
async fn redis_concurrent_changes_from_two_clients() {
    let Some((v, a, b)) = two_clients(Backend::RedisFile).await else {
        return;
    };
    let c = Caller::default();
    let (dir, _) = a
        .mknod(ROOT_INO, "d", FileKind::Dir, 0o755, 0, None, c)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (n, m) in [a.clone(), b.clone()].into_iter().enumerate() {
        for t in 0..4 {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    let name = format!("c{n}-{t}-{i}");
                    let kind = if i % 5 == 0 {
                        FileKind::Dir
                    } else {
                        FileKind::File
                    };
                    m.mknod(dir, &name, kind, 0o644, 0, None, c).await.unwrap();
                    if i % 3 == 0 {
                        m.rename(
                            dir,
                            &name,
                            dir,
                            &format!("{name}-r"),
                            meta::RenameMode::Replace,
                            c,
                        )
                        .await
                        .unwrap();
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let entries = b.readdir(dir, true).await.unwrap();
    assert_eq!(entries.len(), 200);
    let subdirs = entries.iter().filter(|e| e.kind == FileKind::Dir).count();
    assert_eq!(subdirs, 40);
    assert_eq!(a.getattr(dir).await.unwrap().nlink, 2 + 40);
    let r = v.redis.as_ref().unwrap();
    assert_eq!(r.cli(&["GET", "totalInodes"]), "201");
    assert_eq!(r.cli(&["GET", "usedSpace"]), (201 * 4096).to_string());
}

/// Files too big to drop in one transaction (Redis queues them in `delfiles` and empties
/// them chunk by chunk), shrinking truncates, and the slices both give back.
async fn big_files_free_their_slices(backend: Backend) {
    let Some((_v, a, _b)) = two_clients(backend).await else {
        return;
    };
    let c = Caller::default();
    let (ino, first) = file_with_slice(&a, "big", 1000).await;
    let far = a.new_slice_id().await.unwrap();
    let s = Slice {
        pos: 0,
        id: far,
        size: 1000,
        off: 0,
        len: 1000,
    };
    // Chunk 40: the file spans 2.5 GiB, sparse in between.
    a.write_slice(ino, 40, s, 0).await.unwrap();
    assert_eq!(a.getattr(ino).await.unwrap().length, 40 * (64 << 20) + 1000);
    let (attr, freed) = a.truncate(ino, 500).await.unwrap();
    assert_eq!(attr.length, 500);
    assert_eq!(freed.iter().map(|f| f.id).collect::<Vec<_>>(), vec![far]);
    assert!(a.read_chunk(ino, 40).await.unwrap().is_empty());
    // Grown again: the cut-off range reads as zeros (a hole covers it).
    a.truncate(ino, 2000).await.unwrap();
    let view = jfs_mount::meta::slice::build_view(&a.read_chunk(ino, 0).await.unwrap());
    assert!(
        view.iter()
            .any(|p| p.id == 0 && p.pos <= 500 && p.pos + p.len >= 1000)
    );
    a.write_slice(ino, 40, Slice { id: far + 1, ..s }, 0)
        .await
        .unwrap();
    let mut ids: Vec<u64> = a
        .unlink(ROOT_INO, "big", c)
        .await
        .unwrap()
        .iter()
        .map(|f| f.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec![first, far + 1]);
    assert!(a.read_chunk(ino, 0).await.unwrap().is_empty());
    assert!(a.read_chunk(ino, 40).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_big_files_free_their_slices() {
    big_files_free_their_slices(Backend::SqliteFile).await
}
#[tokio::test]
async fn redis_big_files_free_their_slices() {
    big_files_free_their_slices(Backend::RedisFile).await
}

/// A directory bigger than one HSCAN page and one MGET batch lists every name once.
#[tokio::test]
async fn redis_huge_directories_list_completely() {
    let Some((v, a, _b)) = two_clients(Backend::RedisFile).await else {
        return;
    };
    let c = Caller::default();
    let (dir, _) = a
        .mknod(ROOT_INO, "huge", FileKind::Dir, 0o755, 0, None, c)
        .await
        .unwrap();
    let (f, _) = a
        .mknod(dir, "f", FileKind::File, 0o644, 0, None, c)
        .await
        .unwrap();
    // 30,000 hard links to one file, written straight into the entry hash.
    let fill = "local e = redis.call('HGET', KEYS[1], 'f') \
                for i = 1, 30000 do redis.call('HSET', KEYS[1], 'link-' .. i, e) end";
    let r = v.redis.as_ref().unwrap();
    r.cli(&["EVAL", fill, "1", &format!("d{dir}")]);
    for plus in [false, true] {
        let entries = a.readdir(dir, plus).await.unwrap();
        let names: std::collections::HashSet<&str> =
            entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(entries.len(), 30_001, "plus={plus}");
        assert_eq!(names.len(), 30_001, "plus={plus}: no name twice");
        assert!(entries.iter().all(|e| e.ino == f));
        assert_eq!(entries.iter().all(|e| e.attr.is_some()), plus);
    }
}
