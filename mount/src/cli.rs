//! The `juicefs` command line (clap) and the `mount.juicefs` helper form. Commands live in
//! `commands/`; this file only parses and dispatches.

use crate::commands;
use crate::options::{MountOptions, OptionError, check_space_separated, parse_helper_args};
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "juicefs", version, about = "JuiceFS-format file system client")]
pub struct Cli {
    /// Log verbosely.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a volume: write its format into the metadata engine.
    Format(FormatArgs),
    /// Mount a volume (foreground unless -d).
    Mount(MountArgs),
    /// Unmount a mount point.
    Umount(UmountArgs),
    /// Show a volume's settings (secrets removed) and its client sessions.
    Status(StatusArgs),
    /// Exit 0 only when MOUNTPOINT is a live mount of this client (startup probes).
    Probe(ProbeArgs),
    /// Wait until nothing is open or being written on MOUNTPOINT (a sidecar's preStop).
    Drain(DrainArgs),
    /// Live rates of a mount: CPU, memory, FUSE, cache, object storage (reads `.stats`).
    Stats(StatsArgs),
    /// Read files (directories recursively) through the mount so they are cached.
    Warmup(WarmupArgs),
    /// What a file is made of (inode, chunks, slices, objects), or a directory's totals.
    Info(InfoArgs),
    /// Find objects no slice uses and files whose deletion is pending; remove them with --delete.
    Gc(GcArgs),
    /// Check that every block the metadata refers to is in the bucket (exit 1 if any is lost).
    Fsck(FsckArgs),
}

#[derive(Args, Debug)]
pub struct GcArgs {
    pub meta_url: String,
    /// Delete leaked objects and the data of pending deletions.
    #[arg(long)]
    pub delete: bool,
    /// Deletions at once.
    #[arg(long, short = 'p', default_value_t = 10)]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct FsckArgs {
    pub meta_url: String,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WarmupArgs {
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Files read at once.
    #[arg(long, short = 'p', default_value_t = 4)]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    pub mountpoint: String,
    /// Seconds between lines.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Stop after this many lines.
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    pub mountpoint: String,
    /// Give up waiting after this many seconds (keep it inside the pod's grace period).
    #[arg(long, default_value_t = 25)]
    pub timeout: u64,
    /// How long the mount must stay idle.
    #[arg(long, default_value_t = 2)]
    pub quiet: u64,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    pub mountpoint: String,
    /// Keep trying for this many seconds.
    #[arg(long)]
    pub wait: Option<u64>,
}

#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Metadata engine URL, e.g. sqlite3:///var/lib/jfs/meta.db (or env:VAR to read it from VAR)
    pub meta_url: String,
    /// Volume name: 3-63 letters, digits and '-'.
    pub name: String,
    /// Object storage type: file, s3 (minio is an alias of s3).
    #[arg(long, default_value = "file")]
    pub storage: String,
    /// Bucket: a directory for `file`, a URL like http://127.0.0.1:9000/bucket for `s3`.
    #[arg(long)]
    pub bucket: Option<String>,
    #[arg(long, env = "ACCESS_KEY", default_value = "")]
    pub access_key: String,
    #[arg(long, env = "SECRET_KEY", default_value = "", hide_env_values = true)]
    pub secret_key: String,
    /// Block size in KiB (64 to 16384).
    #[arg(long, default_value_t = 4096)]
    pub block_size: u64,
    /// Block compression: none, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compress: String,
    /// Capacity quota in GiB (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub capacity: u64,
    /// Inode quota (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub inodes: u64,
    /// Days deleted files stay in .trash (0 = no trash).
    #[arg(long, default_value_t = 0)]
    pub trash_days: u64,
    /// Overwrite an existing format.
    #[arg(long)]
    pub force: bool,
    /// Keep an existing format untouched and succeed.
    #[arg(long)]
    pub no_update: bool,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    pub meta_url: String,
    pub mountpoint: String,
    /// Run in the background once mounted.
    #[arg(short = 'd', long)]
    pub background: bool,
    /// Mount options, comma-separated: -o allow_other,subdir=/a
    #[arg(short = 'o', long = "options")]
    pub options: Vec<String>,
    /// Mount this subdirectory of the volume as its root.
    #[arg(long)]
    pub subdir: Option<String>,
    /// Refuse every change.
    #[arg(long)]
    pub read_only: bool,
    /// Serve extended attributes (off by default, as in JuiceFS: xattr calls get ENOTSUP).
    #[arg(long)]
    pub enable_xattr: bool,
    /// Acknowledge writes once staged on local disk (the first --cache-dir) and upload them
    /// in the background. Faster, but a lost node loses what was not uploaded yet.
    #[arg(long)]
    pub writeback: bool,
    /// Kernel attribute cache, seconds.
    #[arg(long, default_value = "1")]
    pub attr_cache: String,
    /// Kernel file entry cache, seconds.
    #[arg(long, default_value = "1")]
    pub entry_cache: String,
    /// Kernel directory entry cache, seconds.
    #[arg(long, default_value = "1")]
    pub dir_entry_cache: String,
    /// Log file (background mode).
    #[arg(long)]
    pub log: Option<String>,
    /// Do not run background jobs (stale-session and deleted-file cleanup).
    #[arg(long)]
    pub no_bgjob: bool,
    /// Session heartbeat, seconds.
    #[arg(long, default_value = "12")]
    pub heartbeat: String,
    /// Prometheus metrics address (default 127.0.0.1:9567, any free port if that is taken).
    #[arg(long)]
    pub metrics: Option<String>,
    /// Local block cache directories, colon-separated (`memory`: none) [default: /var/jfsCache
    /// for root, ~/.juicefs/cache otherwise].
    #[arg(long)]
    pub cache_dir: Option<String>,
    /// Disk cache size in MiB (0: no disk cache).
    #[arg(long)]
    pub cache_size: Option<String>,
    /// Keep at least this fraction of each cache disk free.
    #[arg(long)]
    pub free_space_ratio: Option<String>,
    /// Memory for read-ahead and write buffers, in MiB.
    #[arg(long)]
    pub buffer_size: Option<String>,
    /// Blocks uploaded at once per file.
    #[arg(long)]
    pub max_uploads: Option<String>,
    /// Seconds to keep the page cache of unchanged files across opens (0: off).
    #[arg(long)]
    pub open_cache: Option<String>,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    pub mountpoint: String,
    /// Lazy unmount, even when busy.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    pub meta_url: String,
}

impl MountArgs {
    pub fn to_options(&self) -> Result<MountOptions, OptionError> {
        let mut o = MountOptions {
            background: self.background,
            read_only: self.read_only,
            enable_xattr: self.enable_xattr,
            writeback: self.writeback,
            no_bgjob: self.no_bgjob,
            log: self.log.clone(),
            ..MountOptions::default()
        };
        for (k, v) in [
            ("attr-cache", &self.attr_cache),
            ("entry-cache", &self.entry_cache),
            ("dir-entry-cache", &self.dir_entry_cache),
            ("heartbeat", &self.heartbeat),
        ] {
            o.apply(&format!("{k}={v}"))?;
        }
        if let Some(s) = &self.subdir {
            o.apply(&format!("subdir={s}"))?;
        }
        if let Some(m) = &self.metrics {
            o.apply(&format!("metrics={m}"))?;
        }
        for (k, v) in [
            ("cache-dir", &self.cache_dir),
            ("cache-size", &self.cache_size),
            ("free-space-ratio", &self.free_space_ratio),
            ("buffer-size", &self.buffer_size),
            ("max-uploads", &self.max_uploads),
            ("open-cache", &self.open_cache),
        ] {
            if let Some(v) = v {
                o.apply(&format!("{k}={v}"))?;
            }
        }
        for list in &self.options {
            o.apply_list(list)?;
        }
        Ok(o)
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("juicefs: {msg}");
    ExitCode::FAILURE
}

/// Entry point of the binary: `argv[0]` decides between `juicefs` and `mount.juicefs`.
pub fn main_with(argv: Vec<String>) -> ExitCode {
    let prog = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if prog.starts_with("mount.juicefs") {
        return match parse_helper_args(&argv[1..]) {
            Ok((meta, mp, opts)) => {
                crate::logging::init(opts.debug, false);
                match commands::meta_url(&meta) {
                    Ok(meta) => commands::mount::run(&meta, &mp, opts),
                    Err(e) => fail(e),
                }
            }
            Err(e) => fail(e),
        };
    }
    if let Err(e) = check_space_separated(&argv[1..]) {
        return fail(e);
    }
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.cmd {
        Cmd::Format(mut a) => {
            crate::logging::init(cli.verbose, cli.log_json);
            match commands::meta_url(&a.meta_url) {
                Ok(m) => {
                    a.meta_url = m;
                    commands::format::run(a)
                }
                Err(e) => fail(e),
            }
        }
        Cmd::Mount(a) => match (a.to_options(), commands::meta_url(&a.meta_url)) {
            (Ok(mut o), Ok(meta)) => {
                o.debug |= cli.verbose;
                crate::logging::init(o.debug, cli.log_json);
                commands::mount::run(&meta, &a.mountpoint, o)
            }
            (Err(e), _) => fail(e),
            (_, Err(e)) => fail(e),
        },
        Cmd::Umount(a) => commands::umount::run(&a.mountpoint, a.force),
        Cmd::Status(a) => {
            crate::logging::init(cli.verbose, cli.log_json);
            match commands::meta_url(&a.meta_url) {
                Ok(m) => commands::status::run(&m),
                Err(e) => fail(e),
            }
        }
        Cmd::Probe(a) => commands::probe::run(&a.mountpoint, a.wait),
        Cmd::Drain(a) => commands::drain::run(&a.mountpoint, a.timeout, a.quiet),
        Cmd::Stats(a) => commands::stats::run(&a.mountpoint, a.interval, a.count),
        Cmd::Warmup(a) => commands::warmup::run(&a.paths, a.threads),
        Cmd::Info(a) => commands::info::run(&a.paths, a.json),
        Cmd::Gc(a) => {
            crate::logging::init(cli.verbose, cli.log_json);
            match commands::meta_url(&a.meta_url) {
                Ok(m) => commands::gc::run(&m, a.delete, a.threads),
                Err(e) => fail(e),
            }
        }
        Cmd::Fsck(a) => {
            crate::logging::init(cli.verbose, cli.log_json);
            match commands::meta_url(&a.meta_url) {
                Ok(m) => commands::fsck::run(&m),
                Err(e) => fail(e),
            }
        }
    }
}
