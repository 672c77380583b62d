//! The virtual files in the mount root, at JuiceFS's inode numbers: `.stats` (the metrics,
//! one `name{labels} value` line each, what `juicefs stats` reads), `.config` (the mount's
//! settings as JSON, no secrets) and `.accesslog` (one line per operation while someone
//! reads it). They are looked up by name; a listing of the root does not show them.

use crate::metrics::Live;
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

const MIN_INTERNAL: u64 = 0x7FFF_FFFF_0000_0000;
pub const ACCESSLOG_INO: u64 = MIN_INTERNAL + 1;
/// Requests from `juicefs info`: write a JSON request, read the JSON answer.
pub const CONTROL_INO: u64 = MIN_INTERNAL + 2;
pub const STATS_INO: u64 = MIN_INTERNAL + 3;
pub const CONFIG_INO: u64 = MIN_INTERNAL + 4;
/// File handles of virtual files live above this, apart from the file system's own.
const FH_BASE: u64 = 1 << 62;

pub type LiveFn = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Live> + Send>> + Send + Sync>;

pub fn lookup(name: &str) -> Option<u64> {
    match name {
        ".accesslog" => Some(ACCESSLOG_INO),
        ".control" => Some(CONTROL_INO),
        ".stats" => Some(STATS_INO),
        ".config" => Some(CONFIG_INO),
        _ => None,
    }
}

pub fn is_internal(ino: u64) -> bool {
    ino > MIN_INTERNAL && ino <= CONFIG_INO
}

pub fn is_internal_fh(fh: u64) -> bool {
    fh >= FH_BASE
}

enum Open {
    Snapshot(Bytes),
    Log(tokio::sync::Mutex<broadcast::Receiver<String>>),
    Control(Mutex<Bytes>),
}

pub struct Internal {
    pub config_json: String,
    vfs: std::sync::Arc<crate::vfs::Vfs>,
    live: LiveFn,
    log: broadcast::Sender<String>,
    open: Mutex<HashMap<u64, std::sync::Arc<Open>>>,
    next: AtomicU64,
}

impl Internal {
    pub fn new(
        config_json: String,
        live: LiveFn,
        vfs: std::sync::Arc<crate::vfs::Vfs>,
    ) -> Internal {
        Internal {
            config_json,
            vfs,
            live,
            log: broadcast::channel(4096).0,
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(FH_BASE),
        }
    }

    /// Whether anyone reads `.accesslog` (formatting lines costs nothing otherwise).
    pub fn logging(&self) -> bool {
        self.log.receiver_count() > 0
    }

    pub fn log_line(&self, line: String) {
        let _ = self.log.send(line);
    }

    pub async fn open(&self, ino: u64) -> Option<u64> {
        let o = match ino {
            STATS_INO => {
                let live = (self.live)().await;
                let text: String = crate::metrics::METRICS
                    .render(&live)
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(|l| format!("{l}\n"))
                    .collect();
                Open::Snapshot(Bytes::from(text))
            }
            CONFIG_INO => Open::Snapshot(Bytes::from(self.config_json.clone())),
            ACCESSLOG_INO => Open::Log(tokio::sync::Mutex::new(self.log.subscribe())),
            CONTROL_INO => Open::Control(Mutex::new(Bytes::new())),
            _ => return None,
        };
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().ok()?.insert(fh, std::sync::Arc::new(o));
        Some(fh)
    }

    /// A snapshot is read like a file; the access log blocks until lines arrive (at most a
    /// second, then an empty read ends a `cat`'s loop only if nothing is happening).
    pub async fn read(&self, fh: u64, off: u64, size: u32) -> Option<Bytes> {
        let o = self.open.lock().ok()?.get(&fh).cloned()?;
        match &*o {
            Open::Snapshot(b) => {
                let start = (off as usize).min(b.len());
                let end = (start + size as usize).min(b.len());
                Some(b.slice(start..end))
            }
            Open::Control(answer) => {
                let b = answer.lock().ok()?.clone();
                let start = (off as usize).min(b.len());
                let end = (start + size as usize).min(b.len());
                Some(b.slice(start..end))
            }
            Open::Log(rx) => {
                let mut rx = rx.lock().await;
                let mut out = String::new();
                let first =
                    tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await;
                match first {
                    Ok(Ok(l)) => out.push_str(&l),
                    Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                        out.push_str(&format!("#### {n} lines dropped ####\n"))
                    }
                    _ => return Some(Bytes::from_static(b"#\n")),
                }
                while out.len() < size as usize / 2 {
                    match rx.try_recv() {
                        Ok(l) => out.push_str(&l),
                        Err(_) => break,
                    }
                }
                out.truncate(size as usize);
                Some(Bytes::from(out))
            }
        }
    }

    /// A request written to `.control`; its answer is what reading the handle returns.
    pub async fn write(&self, fh: u64, data: &[u8]) -> Option<u32> {
        let o = self.open.lock().ok()?.get(&fh).cloned()?;
        let Open::Control(answer) = &*o else {
            return None;
        };
        let reply = match serde_json::from_slice::<serde_json::Value>(data) {
            Ok(req) => match (req["op"].as_str(), req["inode"].as_u64()) {
                (Some("info"), Some(ino)) => crate::commands::info::describe(&self.vfs, ino).await,
                _ => {
                    serde_json::json!({"error": "unknown request: expected {\"op\": \"info\", \"inode\": N}"})
                }
            },
            Err(e) => serde_json::json!({"error": format!("malformed request: {e}")}),
        };
        *answer.lock().ok()? = Bytes::from(serde_json::to_vec(&reply).unwrap_or_default());
        Some(data.len() as u32)
    }

    pub fn writable(ino: u64) -> bool {
        ino == CONTROL_INO
    }

    pub fn release(&self, fh: u64) {
        if let Ok(mut o) = self.open.lock() {
            o.remove(&fh);
        }
    }
}

/// One access-log line in JuiceFS's shape, which `juicefs profile` parses:
/// `2021.01.15 08:26:11.003330 [uid:0,gid:0,pid:4403] write (17669,8666,4993160): OK <0.000010>`.
pub fn access_line(
    who: &crate::meta::Caller,
    op: &str,
    args: &str,
    errno: Option<i32>,
    secs: f64,
) -> String {
    let now = utc_now();
    let result = match errno {
        None => "OK".to_string(),
        Some(e) => std::io::Error::from_raw_os_error(e).to_string(),
    };
    format!(
        "{now} [uid:{},gid:{},pid:{}] {op} ({args}): {result} <{secs:.6}>\n",
        who.uid, who.gid, who.pid
    )
}

/// Local time as `2006.01.02 15:04:05.000000` without a time-zone crate: UTC is enough here.
fn utc_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::civil::civil_from_days(days);
    format!(
        "{year:04}.{month:02}.{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_inodes() {
        assert_eq!(lookup(".stats"), Some(STATS_INO));
        assert_eq!(lookup(".config"), Some(CONFIG_INO));
        assert_eq!(lookup(".accesslog"), Some(ACCESSLOG_INO));
        assert_eq!(lookup("stats"), None);
        assert!(is_internal(STATS_INO) && !is_internal(1) && !is_internal(CONFIG_INO + 1));
        let who = crate::meta::Caller {
            uid: 1000,
            gid: 100,
            pid: 4403,
        };
        let l = access_line(&who, "lookup", "1,a b", Some(libc::ENOENT), 0.000123);
        assert!(
            l.contains(
                " [uid:1000,gid:100,pid:4403] lookup (1,a b): No such file or directory (os error 2) <0.000123>\n"
            ),
            "{l}"
        );
        assert!(l.starts_with("20"), "{l}");
    }
}
