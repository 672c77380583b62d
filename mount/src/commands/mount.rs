//! `juicefs mount`: open the volume, register a session, mount FUSE and serve until
//! unmounted or signalled; `-d` forks first and returns once the mount is live.

use crate::fuse::FuseFs;
use crate::meta::{self, Caller, FileKind, Ino, Meta, MetaError, ROOT_INO, SessionInfo};
use crate::object::ObjectStore;
use crate::options::MountOptions;
use crate::vfs::{Vfs, VfsConfig};
use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

struct Mounted {
    vfs: Arc<Vfs>,
    meta: Arc<dyn Meta>,
    sid: Option<u64>,
    name: String,
    uuid: String,
}

/// A dead FUSE mount (client killed) answers ENOTCONN: lazily unmount it so we can mount
/// again without the app restarting.
fn prepare_mountpoint(mp: &Path) -> Result<(), String> {
    match std::fs::metadata(mp) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("mount point {} is not a directory", mp.display())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(
                "{} is a dead mount (transport endpoint is not connected): unmounting it",
                mp.display()
            );
            super::umount::unmount(&mp.to_string_lossy(), true)?;
            prepare_mountpoint(mp)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(mp)
            .map_err(|e| format!("cannot create mount point {}: {e}", mp.display())),
        Err(e) => Err(format!("mount point {}: {e}", mp.display())),
    }
}

/// Source name of the read-only guard tmpfs, so we recognise our own.
const GUARD_SOURCE: &str = "jfs-ro-guard";

fn top_mount_source(mp: &Path) -> Option<String> {
    super::probe::top_mount_here(mp).map(|(src, _)| src)
}

/// Puts the read-only guard under the coming FUSE mount, unless it is already there (a
/// restart after a crash finds it once the dead mount is gone).
fn place_guard(mp: &Path) -> Result<(), String> {
    if top_mount_source(mp).as_deref() == Some(GUARD_SOURCE) {
        return Ok(());
    }
    use nix::mount::MsFlags;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::mount::mount(
        Some(GUARD_SOURCE),
        mp,
        Some("tmpfs"),
        flags,
        Some("size=4k,mode=0555"),
    )
    .map_err(|e| format!("placing the read-only guard at {}: {e}", mp.display()))
}

/// Removes the guard after a clean unmount (it would block the emptyDir's teardown).
fn remove_guard(mp: &Path) {
    if top_mount_source(mp).as_deref() == Some(GUARD_SOURCE)
        && let Err(e) = super::umount::unmount(&mp.to_string_lossy(), false)
    {
        tracing::warn!("removing the read-only guard at {}: {e}", mp.display());
    }
}

async fn resolve_subdir(m: &dyn Meta, subdir: &str, create: bool) -> Result<Ino, String> {
    let mut ino = ROOT_INO;
    for part in subdir.split('/').filter(|p| !p.is_empty()) {
        ino = match m.lookup(ino, part).await {
            Ok((i, a)) if a.kind == FileKind::Dir => i,
            Ok(_) => return Err(format!("subdir {subdir:?}: {part:?} is not a directory")),
            Err(MetaError::NotFound) if create => {
                m.mknod(ino, part, FileKind::Dir, 0o777, 0, None, Caller::default())
                    .await
                    .map_err(|e| format!("creating subdir {subdir:?}: {e}"))?
                    .0
            }
            Err(e) => return Err(format!("subdir {subdir:?}: {e}")),
        };
    }
    Ok(ino)
}

async fn setup(meta_url: &str, mp: &Path, o: &MountOptions) -> Result<Mounted, String> {
    let m = meta::open(meta_url, o.read_only)
        .await
        .map_err(|e| e.to_string())?;
    let m: Arc<dyn Meta> = Arc::new(meta::instrumented::Instrumented(m));
    let f = match m.load_format().await {
        Ok(f) => f,
        Err(MetaError::NotFormatted(why)) => {
            return Err(format!(
                "database {} is not formatted ({why}): run `juicefs format {} NAME` first",
                meta::url::redact(meta_url),
                meta::url::redact(meta_url)
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    f.check_supported().map_err(|e| e.to_string())?;
    let mut store = ObjectStore::new(&f).map_err(|e| e.to_string())?;
    if !o.read_only {
        store
            .check()
            .await
            .map_err(|e| format!("cannot use object storage {} {}: {e}", f.storage, f.bucket))?;
        if o.writeback {
            store = start_writeback(store, o, &f.uuid)?;
        }
    }
    if f.trash_days > 0 && !o.read_only {
        m.create_trash_root().await.map_err(|e| e.to_string())?;
    }
    let root = resolve_subdir(&*m, o.subdir.as_deref().unwrap_or(""), !o.read_only).await?;
    let sid = if o.read_only {
        None
    } else {
        let info = SessionInfo {
            version: format!("{} (jfs-rs)", env!("CARGO_PKG_VERSION")),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            mount_point: mp.to_string_lossy().into_owned(),
            process_id: std::process::id(),
        };
        Some(m.new_session(&info).await.map_err(|e| e.to_string())?)
    };
    let disk_cache = if o.cache_dirs.is_empty() || o.cache_size_mib == 0 {
        None
    } else {
        let dc = crate::vfs::disk_cache::DiskCacheConfig {
            dirs: o.cache_dirs.iter().map(PathBuf::from).collect(),
            capacity: o.cache_size_mib << 20,
            free_ratio: o.free_space_ratio,
        };
        match crate::vfs::disk_cache::DiskCache::open(&dc, &f.uuid, f.block_size as u64 * 1024) {
            Ok(c) => Some(Arc::new(c)),
            // A cache is an optimisation: mount without it rather than not at all.
            Err(e) => {
                tracing::warn!("disk cache disabled: {e}");
                None
            }
        }
    };
    let buffer = o.buffer_size_mib << 20;
    let cfg = VfsConfig {
        attr_ttl: o.attr_cache,
        entry_ttl: o.entry_cache,
        dir_entry_ttl: o.dir_entry_cache,
        read_only: o.read_only,
        root,
        block_cache_bytes: (buffer / 4).clamp(16 << 20, 256 << 20),
        buffer_bytes: buffer,
        max_uploads: o.max_uploads,
        disk_cache,
        open_cache: o.open_cache,
        xattr: o.enable_xattr,
        trash_days: f.trash_days,
        ..VfsConfig::default()
    };
    Ok(Mounted {
        vfs: Arc::new(Vfs::new(m.clone(), store, cfg)),
        meta: m,
        sid,
        name: f.name,
        uuid: f.uuid,
    })
}

/// `--writeback`: stage blocks in the first cache directory, upload them in the background,
/// and first upload what a killed predecessor left staged.
fn start_writeback(
    store: ObjectStore,
    o: &MountOptions,
    uuid: &str,
) -> Result<ObjectStore, String> {
    let Some(dir) = o.cache_dirs.first() else {
        return Err("--writeback stages blocks on local disk: it needs a --cache-dir".into());
    };
    let dir = PathBuf::from(dir).join(uuid).join("rawstaging");
    tracing::warn!(
        "--writeback: writes are acknowledged once staged in {}, before they reach object \
         storage; losing that disk loses what is not uploaded yet",
        dir.display()
    );
    let store = store.with_staging(&dir, o.max_uploads);
    if let Some(st) = store.staging() {
        match st.recover() {
            Ok(0) => {}
            Ok(n) => tracing::info!("writeback: uploading {n} blocks staged by an earlier client"),
            Err(e) => {
                return Err(format!(
                    "reading the staging directory {}: {e}",
                    dir.display()
                ));
            }
        }
    }
    Ok(store)
}

/// Heartbeat, usage counters, stale-session and deleted-file cleanup.
fn spawn_background(rt: &tokio::runtime::Runtime, mounted: &Mounted, o: &MountOptions) {
    let Some(sid) = mounted.sid else { return };
    let (meta, vfs, beat) = (mounted.meta.clone(), mounted.vfs.clone(), o.heartbeat);
    rt.spawn(async move {
        loop {
            tokio::time::sleep(beat).await;
            if let Err(e) = meta.refresh_session(sid).await {
                tracing::warn!("session heartbeat: {e}");
            }
        }
    });
    let meta = mounted.meta.clone();
    rt.spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Err(e) = meta.flush_stats().await {
                tracing::warn!("updating usage counters: {e}");
            }
        }
    });
    if o.no_bgjob {
        return;
    }
    let days = mounted.vfs.cfg.trash_days;
    if days > 0 {
        let vfs = mounted.vfs.clone();
        rt.spawn(async move {
            // Soon after start (a client that was down catches up), then every hour.
            tokio::time::sleep(Duration::from_secs(1)).await;
            loop {
                match vfs
                    .cleanup_trash(days, meta::now_nanos() / 1_000_000_000)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!("trash: deleted {n} hour directories older than {days} days")
                    }
                    Err(e) => tracing::warn!("cleaning the trash: {e}"),
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
    }
    let meta = mounted.meta.clone();
    rt.spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let stale_before = meta::now_nanos() / 1_000_000_000 - 300;
            match meta.clean_stale_sessions(stale_before).await {
                Ok(freed) => vfs.free_slices(freed),
                Err(e) => tracing::warn!("cleaning stale sessions: {e}"),
            }
            match meta.cleanup_deleted_files().await {
                Ok(freed) => vfs.free_slices(freed),
                Err(e) => tracing::warn!("cleaning deleted files: {e}"),
            }
        }
    });
}

fn fuser_config(o: &MountOptions, name: &str) -> fuser::Config {
    use fuser::MountOption as M;
    let mut opts = vec![
        M::FSName(format!("JuiceFS:{name}")),
        M::Subtype("juicefs".into()),
        M::DefaultPermissions,
    ];
    if o.read_only {
        opts.push(M::RO);
    }
    opts.extend(
        o.fuse
            .iter()
            .filter(|f| *f != "default_permissions")
            .map(|f| M::CUSTOM(f.clone())),
    );
    let mut c = fuser::Config::default();
    c.mount_options = opts;
    c.acl = acl(o);
    c.n_threads = Some(16);
    c.clone_fd = true;
    c
}

fn acl(o: &MountOptions) -> fuser::SessionACL {
    if o.allow_other {
        fuser::SessionACL::All
    } else if o.fuse.iter().any(|f| f == "allow_root") {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    }
}

/// Mounts `/dev/fuse` at `mp` with type `fuse.juicefs` (what probes and `df -t` look for).
/// Needs CAP_SYS_ADMIN; `None` on EPERM so the caller falls back to fusermount3.
fn kernel_mount(mp: &Path, o: &MountOptions, name: &str) -> Result<Option<OwnedFd>, String> {
    use nix::mount::MsFlags;
    use std::os::unix::fs::PermissionsExt;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| format!("opening /dev/fuse: {e}"))?;
    let mode = std::fs::metadata(mp)
        .map_err(|e| format!("{}: {e}", mp.display()))?
        .permissions()
        .mode();
    let fd = OwnedFd::from(dev);
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={},default_permissions",
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        mode & libc::S_IFMT,
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    if o.allow_other || o.fuse.iter().any(|f| f == "allow_root") {
        data.push_str(",allow_other");
    }
    let mut flags = MsFlags::empty();
    let has = |k: &str| o.fuse.iter().any(|f| f == k);
    if !has("dev") {
        flags |= MsFlags::MS_NODEV;
    }
    if !has("suid") {
        flags |= MsFlags::MS_NOSUID;
    }
    if o.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    for f in &o.fuse {
        match f.as_str() {
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => flags |= MsFlags::MS_DIRSYNC,
            k if k.starts_with("max_read=") || k.starts_with("blksize=") => {
                data.push(',');
                data.push_str(k);
            }
            _ => {}
        }
    }
    let source = format!("JuiceFS:{name}");
    match nix::mount::mount(
        Some(source.as_str()),
        mp,
        Some("fuse.juicefs"),
        flags,
        Some(data.as_str()),
    ) {
        Ok(()) => Ok(Some(fd)),
        Err(nix::errno::Errno::EPERM) => Ok(None),
        Err(e) => Err(format!("mount({}): {e}", mp.display())),
    }
}

/// Kernel read-ahead for this mount, KiB. The FUSE default (128 KiB) leaves a sequential
/// reader waiting on one request at a time; 1 MiB measured 10-20 % faster on cached data.
const KERNEL_READAHEAD_KIB: u32 = 1024;

/// Sets the mount's read-ahead once the kernel has finished FUSE INIT (which would
/// otherwise lower it again). Best effort: sysfs may be read-only in a container.
fn widen_kernel_readahead(mp: &Path) {
    let Some(dev) = mount_device(mp) else {
        tracing::debug!("no mountinfo entry for {}", mp.display());
        return;
    };
    // stat waits for INIT to be answered.
    if let Err(e) = std::fs::metadata(mp) {
        tracing::debug!("stat {}: {e}", mp.display());
        return;
    }
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&knob, KERNEL_READAHEAD_KIB.to_string()) {
        Ok(()) => tracing::debug!("{knob} = {KERNEL_READAHEAD_KIB}"),
        Err(e) => tracing::debug!("cannot widen read-ahead ({knob}): {e}"),
    }
}

/// `major:minor` of the file system mounted at `mp` (the topmost one).
fn mount_device(mp: &Path) -> Option<String> {
    crate::mountinfo::mount_table()
        .into_iter()
        .filter(|e| e.mount_point == mp)
        .map(|e| e.dev)
        .next_back()
}

fn serve(
    meta_url: &str,
    mp: &Path,
    o: &MountOptions,
    ready: Option<OwnedFd>,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| format!("starting runtime: {e}"))?;
    let mounted = rt.block_on(setup(meta_url, mp, o))?;
    let internal = Arc::new(crate::internal::Internal::new(
        config_json(meta_url, mp, o, &mounted),
        live_fn(&mounted, mp),
        mounted.vfs.clone(),
    ));
    let fs = FuseFs::new(mounted.vfs.clone(), rt.handle().clone(), internal);
    let config = fuser_config(o, &mounted.name);
    if o.ro_guard {
        place_guard(mp)?;
    }
    let session = kernel_mount(mp, o, &mounted.name).and_then(|fd| match fd {
        Some(fd) => fuser::Session::from_fd(fs, fd, acl(o), config).map_err(|e| {
            let _ = super::umount::unmount(&mp.to_string_lossy(), true);
            format!("starting FUSE session on {}: {e}", mp.display())
        }),
        None => fuser::Session::new(fs, mp, &config)
            .map_err(|e| format!("mounting {}: {e}", mp.display())),
    });
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            if o.ro_guard {
                remove_guard(mp);
            }
            if let Some(sid) = mounted.sid {
                let _ = rt.block_on(mounted.meta.close_session(sid));
            }
            return Err(e);
        }
    };
    tracing::info!("{} is ready at {}", mounted.name, mp.display());
    if let Some(fd) = ready {
        let mut f = std::fs::File::from(fd);
        let _ = f.write_all(b"OK\n");
    }
    spawn_background(&rt, &mounted, o);
    {
        let mp = mp.to_path_buf();
        rt.spawn_blocking(move || widen_kernel_readahead(&mp));
    }
    {
        let _guard = rt.enter();
        mounted.vfs.spawn_auto_commit();
        if !o.read_only {
            mounted.vfs.spawn_compactor();
        }
    }
    {
        let live = live_fn(&mounted, mp);
        let wanted = o.metrics.clone();
        rt.block_on(async move {
            let addr = wanted.clone().unwrap_or_else(|| "127.0.0.1:9567".into());
            let live = Arc::new(live);
            let l2 = live.clone();
            let bound = match crate::metrics::serve(&addr, move || l2()).await {
                Ok(a) => Some(a),
                // The default port is taken (another mount): any free one, as JuiceFS does.
                Err(_) if wanted.is_none() => crate::metrics::serve("127.0.0.1:0", move || live())
                    .await
                    .ok(),
                Err(e) => {
                    tracing::warn!("cannot serve metrics on {addr}: {e}");
                    None
                }
            };
            if let Some(a) = bound {
                tracing::info!("metrics at http://{a}/metrics");
            }
        });
    }
    {
        // State for `juicefs drain` (the classic sidecar's preStop) in this container.
        let (vfs, mp) = (mounted.vfs.clone(), mp.to_path_buf());
        rt.spawn(async move {
            loop {
                let state = super::drain::MountState {
                    pid: std::process::id(),
                    open_handles: vfs.open_handles(),
                    dirty_files: vfs.dirty_files().await,
                };
                if let Err(e) = super::drain::publish(&mp, &state) {
                    tracing::debug!("publishing mount state: {e}");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    if let Some(file) = o.pod_annotations.clone() {
        let (vfs, mp_str) = (mounted.vfs.clone(), mp.to_string_lossy().into_owned());
        rt.spawn(super::app_exit::watch(file.into(), vfs, mp_str));
    }
    let (vfs, mp_str) = (mounted.vfs.clone(), mp.to_string_lossy().into_owned());
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("signal received: flushing and unmounting {mp_str}");
        flush_and_unmount(&vfs, &mp_str).await;
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    let served = session.run();
    super::drain::withdraw(mp);
    if o.ro_guard {
        remove_guard(mp);
    }
    let closed = rt.block_on(async {
        mounted.vfs.flush_all().await.map_err(|e| e.to_string())?;
        if let Some(d) = &mounted.vfs.cfg.disk_cache {
            d.settle(Duration::from_secs(10)).await;
        }
        if let Some(st) = mounted.vfs.store.staging()
            && st.pending() > 0
        {
            // Staged blocks survive this exit, but a pod's disk may not: upload them now.
            // A second signal still stops the client at once.
            tracing::info!(
                "writeback: uploading {} staged blocks before exiting",
                st.pending()
            );
            if !st.drain(Duration::from_secs(3600)).await {
                tracing::warn!(
                    "writeback: {} blocks stay staged for the next mount",
                    st.pending()
                );
            }
        }
        if let Some(sid) = mounted.sid {
            let freed = mounted
                .meta
                .close_session(sid)
                .await
                .map_err(|e| e.to_string())?;
            mounted.vfs.free_slices(freed);
            // Let the object deletions just queued finish.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok::<(), String>(())
    });
    tracing::info!("{} unmounted from {}", mounted.name, mp.display());
    served.map_err(|e| format!("serving {}: {e}", mp.display()))?;
    closed
}

/// What the metrics and `.stats` report about this mount right now.
fn live_fn(mounted: &Mounted, mp: &Path) -> crate::internal::LiveFn {
    let (vfs, name, mp_s) = (
        mounted.vfs.clone(),
        mounted.name.clone(),
        mp.to_string_lossy().into_owned(),
    );
    Box::new(move || {
        let (vfs, name, mp_s) = (vfs.clone(), name.clone(), mp_s.clone());
        Box::pin(async move {
            let st = vfs.statfs().await.unwrap_or_default();
            crate::metrics::Live {
                vol_name: name,
                mount_point: mp_s,
                used_space: st.total_space.saturating_sub(st.avail_space),
                used_inodes: st.used_inodes,
                open_handles: vfs.open_handles(),
                used_buffer: vfs.used_buffer(),
                staging_blocks: vfs.store.staging().map_or(0, |s| s.pending()),
            }
        })
    })
}

/// `.config`: the mount's settings as JSON, without secrets.
fn config_json(meta_url: &str, mp: &Path, o: &MountOptions, mounted: &Mounted) -> String {
    let c = &mounted.vfs.cfg;
    let v = serde_json::json!({
        "Meta": {"Url": meta::url::redact(meta_url)},
        "Name": mounted.name,
        "UUID": mounted.uuid,
        "Mountpoint": mp.display().to_string(),
        "Pid": std::process::id(),
        "Version": env!("CARGO_PKG_VERSION"),
        "ReadOnly": o.read_only,
        "Subdir": o.subdir,
        "AttrCacheSeconds": c.attr_ttl.as_secs_f64(),
        "EntryCacheSeconds": c.entry_ttl.as_secs_f64(),
        "DirEntryCacheSeconds": c.dir_entry_ttl.as_secs_f64(),
        "BufferSizeMiB": o.buffer_size_mib,
        "MaxUploads": o.max_uploads,
        "Writeback": mounted.vfs.store.staging().is_some(),
        "BlockSizeKiB": mounted.vfs.store.block_size() / 1024,
        "CacheDirs": if c.disk_cache.is_some() { o.cache_dirs.clone() } else { Vec::new() },
        "CacheSizeMiB": o.cache_size_mib,
        "FreeSpaceRatio": o.free_space_ratio,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Flushes every writer, then unmounts; a busy mount is detached and the kernel ends the
/// session when the last file closes. Either way `Session::run` returns.
pub(super) async fn flush_and_unmount(vfs: &Vfs, mp: &str) {
    if let Err(e) = vfs.flush_all().await {
        tracing::error!("flushing before unmount: {e}");
    }
    if super::umount::unmount(mp, false).is_err()
        && let Err(e) = super::umount::unmount(mp, true)
    {
        tracing::error!("unmounting {mp}: {e}");
    }
}

fn default_log() -> String {
    if nix::unistd::geteuid().is_root() {
        "/var/log/juicefs.log".into()
    } else {
        format!(
            "{}/.juicefs/juicefs.log",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())
        )
    }
}

/// Forks; the parent waits for the child's "mounted" (or its error) and exits with it.
fn daemonize(meta_url: &str, mp: &Path, o: &MountOptions) -> Result<(), String> {
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let log = o.log.clone().unwrap_or_else(default_log);
    // SAFETY: no other thread exists yet (the runtime starts in the child), so the child
    // may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(w);
            // One line: "OK" or "ERR <why>"; the child keeps the pipe open while it serves.
            let mut msg = String::new();
            let _ = std::io::BufReader::new(std::fs::File::from(r)).read_line(&mut msg);
            if msg.starts_with("OK") {
                Ok(())
            } else if msg.is_empty() {
                Err(format!(
                    "the mount process exited before {} was mounted; see {log}",
                    mp.display()
                ))
            } else {
                Err(msg.trim_start_matches("ERR ").trim().to_string())
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            if let Some(dir) = Path::new(&log).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Ok(f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
            {
                let fd = f.into_raw_fd();
                // SAFETY: `fd` is an open file we own; dup2 onto the standard descriptors.
                unsafe {
                    libc::dup2(fd, 1);
                    libc::dup2(fd, 2);
                    libc::close(fd);
                }
            }
            // SAFETY: `w` is the pipe's write end, owned here; we take it back as a File.
            let wfd = w.into_raw_fd();
            let dup = unsafe { libc::dup(wfd) };
            let ready = unsafe { OwnedFd::from_raw_fd(wfd) };
            let code = match serve(meta_url, mp, o, Some(ready)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("{e}");
                    if dup >= 0 {
                        // SAFETY: `dup` is our duplicate of the pipe's write end.
                        let mut f = unsafe { std::fs::File::from_raw_fd(dup) };
                        let _ = f.write_all(format!("ERR {e}\n").as_bytes());
                    }
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

pub fn run(meta_url: &str, mountpoint: &str, o: MountOptions) -> ExitCode {
    for i in &o.ignored {
        tracing::warn!(
            "mount option {i:?} is accepted for JuiceFS compatibility but has no effect in this client yet"
        );
    }
    let mp: PathBuf = match std::path::absolute(mountpoint) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("juicefs mount: mount point {mountpoint:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = prepare_mountpoint(&mp).and_then(|()| {
        if o.background {
            daemonize(meta_url, &mp, &o)
        } else {
            serve(meta_url, &mp, &o, None)
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("juicefs mount: {e}");
            ExitCode::FAILURE
        }
    }
}
