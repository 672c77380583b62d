//! Mount options: what `-o a,b=c` and the mount-helper form (`mount.juicefs META MP -o ..`)
//! may say, split into kernel FUSE options and client settings, with errors that show the
//! right form. Shared by `juicefs mount` and `mount.juicefs`.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct MountOptions {
    /// Options handed to the kernel / fusermount (`allow_other`, `ro`, ...).
    pub fuse: Vec<String>,
    pub allow_other: bool,
    pub read_only: bool,
    pub subdir: Option<String>,
    pub background: bool,
    pub attr_cache: Duration,
    pub entry_cache: Duration,
    pub dir_entry_cache: Duration,
    pub log: Option<String>,
    pub no_bgjob: bool,
    pub heartbeat: Duration,
    pub debug: bool,
    /// Keep a read-only tmpfs under the FUSE mount, so writes in the gap between a crash
    /// and the remount fail with EROFS instead of landing on the bare directory.
    pub ro_guard: bool,
    /// Prometheus address (`host:port`); default 127.0.0.1:9567, or any free port if busy.
    pub metrics: Option<String>,
    /// A downward-API file of the pod's annotations: when it shows the app-exit mark, the
    /// client unmounts once nothing is open and exits (classic sidecars in Jobs).
    pub pod_annotations: Option<String>,
    /// Local disk block cache directories (`cache-dir=a:b`); empty or `memory`: none.
    pub cache_dirs: Vec<String>,
    /// Disk cache size over all directories, MiB (0: no disk cache).
    pub cache_size_mib: u64,
    /// Keep at least this fraction of each cache disk free.
    pub free_space_ratio: f64,
    /// Memory for data in flight (read-ahead, write buffers), MiB.
    pub buffer_size_mib: u64,
    /// Blocks uploaded at once per file.
    pub max_uploads: usize,
    /// Keep the kernel page cache of unchanged files across opens for this long.
    pub open_cache: Duration,
    /// Serve extended attributes (off by default, as in JuiceFS: see `VfsConfig::xattr`).
    pub enable_xattr: bool,
    /// Acknowledge blocks once staged in the first cache directory and upload them in the
    /// background (off by default: it trades durability for speed).
    pub writeback: bool,
    /// Options accepted for compatibility with JuiceFS that do not change behaviour yet.
    pub ignored: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            fuse: Vec::new(),
            allow_other: false,
            read_only: false,
            subdir: None,
            background: false,
            attr_cache: Duration::from_secs(1),
            entry_cache: Duration::from_secs(1),
            dir_entry_cache: Duration::from_secs(1),
            log: None,
            no_bgjob: false,
            heartbeat: Duration::from_secs(12),
            debug: false,
            ro_guard: false,
            metrics: None,
            pod_annotations: None,
            cache_dirs: vec![default_cache_dir()],
            cache_size_mib: 102_400,
            free_space_ratio: 0.1,
            buffer_size_mib: 300,
            max_uploads: 20,
            open_cache: Duration::ZERO,
            enable_xattr: false,
            writeback: false,
            ignored: Vec::new(),
        }
    }
}

/// JuiceFS's default: `/var/jfsCache` for root, `~/.juicefs/cache` otherwise.
fn default_cache_dir() -> String {
    if nix::unistd::geteuid().is_root() {
        "/var/jfsCache".into()
    } else {
        std::env::var("HOME")
            .map(|h| format!("{h}/.juicefs/cache"))
            .unwrap_or_else(|_| "/tmp/jfsCache".into())
    }
}

fn number<T: std::str::FromStr>(
    name: &str,
    v: Option<&str>,
    example: &str,
) -> Result<T, OptionError> {
    v.and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| OptionError::BadValue {
            name: name.into(),
            why: format!("needs a number, e.g. {name}={example}"),
        })
}

/// Kernel and fusermount options passed through unchanged.
const FUSE_FLAGS: &[&str] = &[
    "allow_root",
    "default_permissions",
    "nonempty",
    "noatime",
    "atime",
    "relatime",
    "strictatime",
    "nodev",
    "dev",
    "nosuid",
    "suid",
    "noexec",
    "exec",
    "sync",
    "async",
    "dirsync",
    "auto_unmount",
];
const FUSE_VALUED: &[&str] = &[
    "fsname", "subtype", "max_read", "user_id", "group_id", "rootmode", "blksize",
];
/// fstab/mount(8) words that mean nothing to a FUSE client.
const MOUNT8_NOISE: &[&str] = &[
    "defaults", "_netdev", "noauto", "auto", "user", "users", "nofail", "nouser",
];
/// JuiceFS client options we accept but do not act on yet (cache, upload tuning, ...).
const JFS_LATER: &[&str] = &[
    "cache-partial-only",
    "prefetch",
    "max-deletes",
    "upload-limit",
    "download-limit",
    "get-timeout",
    "put-timeout",
    "io-retries",
    "consul",
    "no-usage-report",
    "backup-meta",
    "max-readahead",
    "verify-cache-checksum",
    "cache-mode",
    "no-syslog",
    "update-fstab",
    "atime-mode",
    "skip-dir-nlink",
    "writeback_cache",
    "negative-entry-cache",
    "readdir-cache",
    "cache-eviction",
    "cache-scan-interval",
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptionError {
    #[error("options are comma-separated: use `-o {0}`, not `-o {1}`")]
    SpaceSeparated(String, String),
    #[error("unknown mount option {0:?}{1}")]
    Unknown(String, String),
    #[error("mount option {name:?}: {why}")]
    BadValue { name: String, why: String },
}

fn is_known(key: &str) -> bool {
    let k = key.trim_start_matches('-');
    matches!(
        k,
        "allow_other"
            | "ro"
            | "rw"
            | "read-only"
            | "subdir"
            | "debug"
            | "foreground"
            | "f"
            | "background"
            | "d"
            | "attr-cache"
            | "entry-cache"
            | "dir-entry-cache"
            | "log"
            | "no-bgjob"
            | "heartbeat"
            | "writeback"
            | "ro-guard"
            | "metrics"
            | "pod-annotations"
            | "cache-dir"
            | "cache-size"
            | "free-space-ratio"
            | "buffer-size"
            | "max-uploads"
            | "open-cache"
            | "enable-xattr"
    ) || FUSE_FLAGS.contains(&k)
        || FUSE_VALUED.contains(&k)
        || MOUNT8_NOISE.contains(&k)
        || JFS_LATER.contains(&k)
}

fn secs(name: &str, v: Option<&str>) -> Result<Duration, OptionError> {
    let v = v.ok_or_else(|| OptionError::BadValue {
        name: name.into(),
        why: "needs a value in seconds, e.g. attr-cache=1".into(),
    })?;
    let s: f64 = v
        .trim_end_matches('s')
        .parse()
        .map_err(|_| OptionError::BadValue {
            name: name.into(),
            why: format!("{v:?} is not a number of seconds"),
        })?;
    if !(0.0..=86400.0 * 365.0).contains(&s) {
        return Err(OptionError::BadValue {
            name: name.into(),
            why: format!("{v} is out of range"),
        });
    }
    Ok(Duration::from_secs_f64(s))
}

impl MountOptions {
    /// Applies one `key[=value]` item of `-o`.
    pub fn apply(&mut self, item: &str) -> Result<(), OptionError> {
        let item = item.trim();
        if item.is_empty() {
            return Ok(());
        }
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item, None),
        };
        let key = key.trim_start_matches("--");
        match key {
            "allow_other" => {
                self.allow_other = true;
            }
            "ro" | "read-only" => self.read_only = true,
            "rw" => {}
            "debug" => self.debug = true,
            "foreground" | "f" => self.background = false,
            "background" | "d" => self.background = true,
            "subdir" => {
                let v = value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| OptionError::BadValue {
                        name: "subdir".into(),
                        why: "needs a path, e.g. subdir=/team-a".into(),
                    })?;
                self.subdir = Some(check_subdir(v)?);
            }
            "attr-cache" => self.attr_cache = secs(key, value)?,
            "entry-cache" => self.entry_cache = secs(key, value)?,
            "dir-entry-cache" => self.dir_entry_cache = secs(key, value)?,
            "heartbeat" => self.heartbeat = secs(key, value)?.max(Duration::from_secs(1)),
            "log" => self.log = value.map(str::to_string),
            "no-bgjob" => self.no_bgjob = true,
            "ro-guard" => self.ro_guard = true,
            "metrics" => {
                let v = value
                    .filter(|v| v.contains(':'))
                    .ok_or_else(|| OptionError::BadValue {
                        name: "metrics".into(),
                        why: "needs host:port, e.g. metrics=0.0.0.0:9567".into(),
                    })?;
                self.metrics = Some(v.to_string());
            }
            "pod-annotations" => {
                let v = value
                    .filter(|v| v.starts_with('/'))
                    .ok_or_else(|| OptionError::BadValue {
                        name: "pod-annotations".into(),
                        why: "needs an absolute path, e.g. pod-annotations=/etc/jfs-podinfo/annotations".into(),
                    })?;
                self.pod_annotations = Some(v.to_string());
            }
            "cache-dir" => {
                let v = value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| OptionError::BadValue {
                        name: "cache-dir".into(),
                        why: "needs directories, e.g. cache-dir=/var/jfsCache:/mnt/ssd (or memory)"
                            .into(),
                    })?;
                let dirs: Vec<String> = v
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect();
                if let Some(bad) = dirs.iter().find(|d| *d != "memory" && !d.starts_with('/')) {
                    return Err(OptionError::BadValue {
                        name: "cache-dir".into(),
                        why: format!("{bad:?} is not an absolute path"),
                    });
                }
                self.cache_dirs = dirs.into_iter().filter(|d| d != "memory").collect();
            }
            "cache-size" => self.cache_size_mib = number(key, value, "102400")?,
            "free-space-ratio" => {
                let r: f64 = number(key, value, "0.1")?;
                if !(0.0..1.0).contains(&r) {
                    return Err(OptionError::BadValue {
                        name: key.into(),
                        why: format!("{r} is not a fraction between 0 and 1"),
                    });
                }
                self.free_space_ratio = r;
            }
            "buffer-size" => {
                let m: u64 = number(key, value, "300")?;
                if m < 32 {
                    return Err(OptionError::BadValue {
                        name: key.into(),
                        why: format!("{m} MiB is too small: at least 32"),
                    });
                }
                self.buffer_size_mib = m;
            }
            "max-uploads" => {
                let n: usize = number(key, value, "20")?;
                if n == 0 {
                    return Err(OptionError::BadValue {
                        name: key.into(),
                        why: "must be at least 1".into(),
                    });
                }
                self.max_uploads = n;
            }
            "open-cache" => self.open_cache = secs(key, value)?,
            "enable-xattr" => self.enable_xattr = true,
            "writeback" => self.writeback = true,
            k if FUSE_FLAGS.contains(&k) => self.fuse.push(k.to_string()),
            k if FUSE_VALUED.contains(&k) => match value {
                Some(v) => self.fuse.push(format!("{k}={v}")),
                None => {
                    return Err(OptionError::BadValue {
                        name: k.into(),
                        why: format!("needs a value: {k}=..."),
                    });
                }
            },
            k if MOUNT8_NOISE.contains(&k) => {}
            k if JFS_LATER.contains(&k) => self.ignored.push(item.to_string()),
            other => {
                let hint = if other.contains(' ') {
                    let fixed = other.split_whitespace().collect::<Vec<_>>().join(",");
                    format!("; options are comma-separated: -o {fixed}")
                } else {
                    String::new()
                };
                return Err(OptionError::Unknown(other.to_string(), hint));
            }
        }
        Ok(())
    }

    /// Applies a comma-separated `-o` value.
    pub fn apply_list(&mut self, list: &str) -> Result<(), OptionError> {
        for item in list.split(',') {
            self.apply(item)?;
        }
        Ok(())
    }
}

/// A subdirectory must stay inside the volume: no `..`, no empty path.
pub fn check_subdir(s: &str) -> Result<String, OptionError> {
    let parts: Vec<&str> = s
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(OptionError::BadValue {
            name: "subdir".into(),
            why: format!("{s:?} must not contain '..'"),
        });
    }
    Ok(parts.join("/"))
}

/// Finds `-o a b` (space instead of comma): a `-o` value followed by words that are
/// themselves mount options. Returns the error showing the right form.
pub fn check_space_separated(args: &[String]) -> Result<(), OptionError> {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let value = if a == "-o" || a == "--options" {
            i += 1;
            args.get(i).cloned()
        } else {
            a.strip_prefix("-o")
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        if let Some(v) = value {
            let mut stray = Vec::new();
            let mut j = i + 1;
            while let Some(next) = args.get(j) {
                let key = next.split('=').next().unwrap_or("");
                if next.starts_with('-')
                    || next.contains("://")
                    || next.contains('/')
                    || !is_known(key)
                {
                    break;
                }
                stray.push(next.clone());
                j += 1;
            }
            if !stray.is_empty() {
                let wrong = std::iter::once(v.clone())
                    .chain(stray.iter().cloned())
                    .collect::<Vec<_>>();
                return Err(OptionError::SpaceSeparated(
                    wrong.join(","),
                    wrong.join(" "),
                ));
            }
        }
        i += 1;
    }
    Ok(())
}

/// Parses the mount-helper form `mount.juicefs META-URL MOUNTPOINT [-o opts] [-f -n -s -v]`.
pub fn parse_helper_args(args: &[String]) -> Result<(String, String, MountOptions), OptionError> {
    check_space_separated(args)?;
    let mut opts = MountOptions {
        // mount(8) expects the helper to return once the file system is mounted.
        background: true,
        ..MountOptions::default()
    };
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-o" => {
                i += 1;
                let v = args.get(i).ok_or_else(|| OptionError::BadValue {
                    name: "-o".into(),
                    why: "needs a value, e.g. -o allow_other,subdir=/a".into(),
                })?;
                opts.apply_list(v)?;
            }
            // mount(8) flags: fake, no-mtab, sloppy, verbose.
            "-n" | "-s" | "-v" => {}
            "-f" | "--foreground" => opts.background = false,
            _ if a.starts_with("-o") => opts.apply_list(&a[2..])?,
            _ if a.starts_with('-') => {
                return Err(OptionError::Unknown(
                    a.to_string(),
                    "; use -o key=value".into(),
                ));
            }
            _ => positional.push(a.to_string()),
        }
        i += 1;
    }
    match positional.as_slice() {
        [meta, mp] => Ok((meta.clone(), mp.clone(), opts)),
        _ => Err(OptionError::BadValue {
            name: "arguments".into(),
            why: format!(
                "expected `mount.juicefs META-URL MOUNTPOINT -o opt1,opt2`, got {} positional arguments",
                positional.len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn space_separated_options_are_refused_with_the_right_form() {
        let e =
            check_space_separated(&v("mount -o debug foreground sqlite3://a.db /mnt")).unwrap_err();
        assert_eq!(
            e,
            OptionError::SpaceSeparated("debug,foreground".into(), "debug foreground".into())
        );
        assert!(
            e.to_string()
                .contains("options are comma-separated: use `-o debug,foreground`")
        );
        check_space_separated(&v("mount -o debug,foreground sqlite3://a.db /mnt")).unwrap();
        check_space_separated(&v("mount sqlite3://a.db /mnt -o allow_other")).unwrap();
    }

    #[test]
    fn helper_form() {
        let (meta, mp, o) = parse_helper_args(&v(
            "sqlite3:///a.db /mnt/x -o allow_other,subdir=/team/a,attr-cache=2,rw,_netdev",
        ))
        .unwrap();
        assert_eq!((meta.as_str(), mp.as_str()), ("sqlite3:///a.db", "/mnt/x"));
        assert!(o.allow_other && o.background);
        assert_eq!(o.subdir.as_deref(), Some("team/a"));
        assert_eq!(o.attr_cache, Duration::from_secs(2));
        let e = parse_helper_args(&v("sqlite3:///a.db /mnt/x -o debug foreground")).unwrap_err();
        assert!(e.to_string().contains("-o debug,foreground"), "{e}");
        assert!(parse_helper_args(&v("sqlite3:///a.db")).is_err());
    }

    #[test]
    fn unknown_and_bad_values() {
        let mut o = MountOptions::default();
        assert!(matches!(o.apply("bogus"), Err(OptionError::Unknown(..))));
        assert!(
            o.apply("attr-cache=fast")
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        assert!(
            o.apply("subdir=../x")
                .unwrap_err()
                .to_string()
                .contains("..")
        );
        assert!(o.apply("subdir=a/../../x").is_err());
        assert!(!o.writeback, "off by default");
        o.apply("writeback").unwrap();
        assert!(o.writeback);
        o.apply_list("allow_other,ro,fsname=x,cache-size=100,prefetch=2")
            .unwrap();
        assert!(o.allow_other && o.read_only);
        assert_eq!(o.fuse, vec!["fsname=x".to_string()]);
        assert_eq!(o.cache_size_mib, 100);
        assert_eq!(o.ignored, vec!["prefetch=2".to_string()]);
        o.apply_list("cache-dir=/a:memory:/b,buffer-size=64,max-uploads=4,free-space-ratio=0.2")
            .unwrap();
        assert_eq!(o.cache_dirs, vec!["/a".to_string(), "/b".to_string()]);
        assert_eq!(
            (o.buffer_size_mib, o.max_uploads, o.free_space_ratio),
            (64, 4, 0.2)
        );
        for bad in [
            "cache-dir=rel/path",
            "buffer-size=8",
            "max-uploads=0",
            "free-space-ratio=1.5",
            "cache-size=lots",
        ] {
            assert!(o.apply(bad).is_err(), "{bad}");
        }
    }
}
