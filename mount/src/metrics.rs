//! Prometheus metrics with the JuiceFS names (so existing dashboards work), kept in
//! process-wide atomics and rendered as text on `--metrics` (`/metrics`). One mount per
//! process, so one set of metrics per process.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// JuiceFS's latency buckets: 10 µs growing by 1.8, 29 of them.
static BUCKETS: LazyLock<[f64; 29]> =
    LazyLock::new(|| std::array::from_fn(|i| 1e-5 * 1.8f64.powi(i as i32)));

fn buckets() -> &'static [f64; 29] {
    &BUCKETS
}

#[derive(Default)]
struct Histogram {
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: (0..29).map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        }
    }
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = buckets().iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (b, c) in buckets().iter().zip(&self.counts) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b:e}\"}} {cum}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{}}} {sum}", labels.trim_end_matches(','));
        let _ = writeln!(
            out,
            "{name}_count{{{}}} {count}",
            labels.trim_end_matches(',')
        );
    }
}

/// Count and seconds per method: `<prefix>_total` and `<prefix>_durations_seconds`.
#[derive(Default)]
struct ByMethod(Mutex<BTreeMap<&'static str, (u64, f64)>>);

impl ByMethod {
    fn add(&self, method: &'static str, d: Duration) {
        if let Ok(mut m) = self.0.lock() {
            let e = m.entry(method).or_default();
            e.0 += 1;
            e.1 += d.as_secs_f64();
        }
    }

    fn render(&self, out: &mut String, prefix: &str, what: &str, base: &str) {
        let Ok(m) = self.0.lock() else { return };
        let _ = writeln!(
            out,
            "# HELP {prefix}_total {what} by method.\n# TYPE {prefix}_total counter"
        );
        for (method, (n, _)) in m.iter() {
            let _ = writeln!(out, "{prefix}_total{{{base}method=\"{method}\"}} {n}");
        }
        let _ = writeln!(out, "# TYPE {prefix}_durations_seconds counter");
        for (method, (_, s)) in m.iter() {
            let _ = writeln!(
                out,
                "{prefix}_durations_seconds{{{base}method=\"{method}\"}} {s}"
            );
        }
    }
}

pub struct Metrics {
    started: Instant,
    fuse_ops: Histogram,
    fuse_by_method: ByMethod,
    meta_ops: Histogram,
    meta_by_method: ByMethod,
    transactions: Histogram,
    transaction_restarts: AtomicU64,
    fuse_errors: Mutex<BTreeMap<i32, u64>>,
    object: Mutex<BTreeMap<&'static str, (Histogram, AtomicU64)>>,
    block_cache_hits: AtomicU64,
    block_cache_miss: AtomicU64,
    fuse_read_bytes: AtomicU64,
    fuse_written_bytes: AtomicU64,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    started: Instant::now(),
    fuse_ops: Histogram::new(),
    fuse_by_method: ByMethod::default(),
    meta_ops: Histogram::new(),
    meta_by_method: ByMethod::default(),
    transactions: Histogram::new(),
    transaction_restarts: AtomicU64::new(0),
    fuse_errors: Mutex::new(BTreeMap::new()),
    object: Mutex::new(BTreeMap::new()),
    block_cache_hits: AtomicU64::new(0),
    block_cache_miss: AtomicU64::new(0),
    fuse_read_bytes: AtomicU64::new(0),
    fuse_written_bytes: AtomicU64::new(0),
});

/// Figures only the running mount knows, read at scrape time.
#[derive(Default)]
pub struct Live {
    pub vol_name: String,
    pub mount_point: String,
    pub used_space: u64,
    pub used_inodes: u64,
    pub open_handles: usize,
    /// Bytes of the `--buffer-size` budget in use.
    pub used_buffer: u64,
    /// `--writeback` blocks staged on local disk and not uploaded yet.
    pub staging_blocks: usize,
}

impl Metrics {
    /// Bytes returned by FUSE reads / accepted by FUSE writes.
    pub fn fuse_io(&self, read: u64, written: u64) {
        self.fuse_read_bytes.fetch_add(read, Ordering::Relaxed);
        self.fuse_written_bytes
            .fetch_add(written, Ordering::Relaxed);
    }

    pub fn fuse_op(&self, method: &'static str, d: Duration, errno: Option<i32>) {
        self.fuse_ops.observe(d);
        self.fuse_by_method.add(method, d);
        if let Some(errno) = errno
            && let Ok(mut m) = self.fuse_errors.lock()
        {
            *m.entry(errno).or_default() += 1;
        }
    }

    /// One call of the metadata engine (see `meta::instrumented`).
    pub fn meta_op(&self, method: &'static str, d: Duration) {
        self.meta_ops.observe(d);
        self.meta_by_method.add(method, d);
    }

    /// One committed (or finally failed) engine transaction and the times it was restarted
    /// after a conflict.
    pub fn transaction(&self, d: Duration, restarts: u32) {
        self.transactions.observe(d);
        self.transaction_restarts
            .fetch_add(u64::from(restarts), Ordering::Relaxed);
    }

    pub fn object_request(&self, method: &'static str, d: Duration, bytes: u64) {
        if let Ok(mut m) = self.object.lock() {
            let e = m
                .entry(method)
                .or_insert_with(|| (Histogram::new(), AtomicU64::new(0)));
            e.0.observe(d);
            e.1.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub fn block_cache(&self, hit: bool) {
        let c = if hit {
            &self.block_cache_hits
        } else {
            &self.block_cache_miss
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, live: &Live) -> String {
        let base = format!(
            "vol_name=\"{}\",mp=\"{}\",",
            live.vol_name, live.mount_point
        );
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{}}} {v}",
                base.trim_end_matches(',')
            );
        };
        gauge(
            &mut out,
            "juicefs_uptime",
            "Seconds since the mount started.",
            self.started.elapsed().as_secs_f64(),
        );
        gauge(
            &mut out,
            "juicefs_used_space",
            "Bytes used by the volume.",
            live.used_space as f64,
        );
        gauge(
            &mut out,
            "juicefs_used_inodes",
            "Inodes used by the volume.",
            live.used_inodes as f64,
        );
        gauge(
            &mut out,
            "juicefs_fuse_open_handlers",
            "Open file handles.",
            live.open_handles as f64,
        );
        gauge(
            &mut out,
            "juicefs_used_buffer_size_bytes",
            "Bytes of the read/write buffer budget in use.",
            live.used_buffer as f64,
        );
        gauge(
            &mut out,
            "juicefs_staging_blocks",
            "Blocks staged on local disk (--writeback) and not uploaded yet.",
            live.staging_blocks as f64,
        );
        for (name, help, c) in [
            (
                "juicefs_fuse_read_size_bytes_sum",
                "Bytes read through FUSE.",
                &self.fuse_read_bytes,
            ),
            (
                "juicefs_fuse_written_size_bytes_sum",
                "Bytes written through FUSE.",
                &self.fuse_written_bytes,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{}}} {}",
                base.trim_end_matches(','),
                c.load(Ordering::Relaxed)
            );
        }
        let (rss, cpu) = process_usage();
        gauge(
            &mut out,
            "juicefs_memory",
            "Resident memory of the client, bytes.",
            rss as f64,
        );
        gauge(
            &mut out,
            "juicefs_cpu_usage",
            "CPU seconds used by the client.",
            cpu,
        );
        let histogram = |out: &mut String, name: &str, help: &str, h: &Histogram| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.render(out, name, &base);
        };
        histogram(
            &mut out,
            "juicefs_fuse_ops_durations_histogram_seconds",
            "FUSE operation latency.",
            &self.fuse_ops,
        );
        self.fuse_by_method
            .render(&mut out, "juicefs_fuse_ops", "FUSE operations", &base);
        histogram(
            &mut out,
            "juicefs_meta_ops_durations_histogram_seconds",
            "Metadata engine operation latency.",
            &self.meta_ops,
        );
        histogram(
            &mut out,
            "juicefs_transaction_durations_histogram_seconds",
            "Metadata engine transaction latency, restarts included.",
            &self.transactions,
        );
        self.meta_by_method.render(
            &mut out,
            "juicefs_meta_ops",
            "Metadata engine operations",
            &base,
        );
        let _ = writeln!(
            out,
            "# HELP juicefs_transaction_restart Transactions restarted after a conflict.\n# TYPE juicefs_transaction_restart counter\njuicefs_transaction_restart{{{}}} {}",
            base.trim_end_matches(','),
            self.transaction_restarts.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE juicefs_fuse_ops_io_errors counter");
        if let Ok(m) = self.fuse_errors.lock() {
            for (errno, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "juicefs_fuse_ops_io_errors{{{base}errno=\"{errno}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP juicefs_object_request_durations_histogram_seconds Object storage request latency.\n# TYPE juicefs_object_request_durations_histogram_seconds histogram"
        );
        if let Ok(m) = self.object.lock() {
            for (method, (h, _)) in m.iter() {
                h.render(
                    &mut out,
                    "juicefs_object_request_durations_histogram_seconds",
                    &format!("{base}method=\"{method}\","),
                );
            }
            let _ = writeln!(out, "# TYPE juicefs_object_request_data_bytes counter");
            for (method, (_, b)) in m.iter() {
                let _ = writeln!(
                    out,
                    "juicefs_object_request_data_bytes{{{base}method=\"{method}\"}} {}",
                    b.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# TYPE juicefs_blockcache_hits counter\njuicefs_blockcache_hits{{{}}} {}",
            base.trim_end_matches(','),
            self.block_cache_hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE juicefs_blockcache_miss counter\njuicefs_blockcache_miss{{{}}} {}",
            base.trim_end_matches(','),
            self.block_cache_miss.load(Ordering::Relaxed)
        );
        out
    }
}

/// (resident bytes, CPU seconds) of this process, from /proc.
fn process_usage() -> (u64, f64) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096);
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

/// Serves `GET /metrics` on `addr`; returns the address bound (port 0 picks one).
pub async fn serve(
    addr: &str,
    live: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Live> + Send>>
    + Send
    + Sync
    + 'static,
) -> std::io::Result<std::net::SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let live = std::sync::Arc::new(live);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let live = live.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if head.starts_with("GET /metrics") {
                    ("200 OK", METRICS.render(&live().await))
                } else {
                    ("404 Not Found", "try /metrics\n".to_string())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_named_like_juicefs() {
        METRICS.fuse_op("read", Duration::from_micros(50), None);
        METRICS.fuse_op("read", Duration::from_millis(3), Some(5));
        METRICS.object_request("GET", Duration::from_millis(2), 4096);
        METRICS.meta_op("lookup", Duration::from_micros(80));
        METRICS.transaction(Duration::from_millis(1), 2);
        let text = METRICS.render(&Live {
            vol_name: "v".into(),
            mount_point: "/m".into(),
            ..Default::default()
        });
        assert!(
            text.contains("juicefs_fuse_ops_total{vol_name=\"v\",mp=\"/m\",method=\"read\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("juicefs_fuse_ops_io_errors{vol_name=\"v\",mp=\"/m\",errno=\"5\"} 1")
        );
        assert!(text.contains(
            "juicefs_object_request_data_bytes{vol_name=\"v\",mp=\"/m\",method=\"GET\"} 4096"
        ));
        assert!(
            text.contains("juicefs_meta_ops_total{vol_name=\"v\",mp=\"/m\",method=\"lookup\"} 1")
        );
        assert!(text.contains("juicefs_transaction_restart{vol_name=\"v\",mp=\"/m\"} 2"));
        assert!(text.contains(
            "juicefs_transaction_durations_histogram_seconds_count{vol_name=\"v\",mp=\"/m\"} 1"
        ));
        let inf = text
            .lines()
            .find(|l| {
                l.starts_with("juicefs_fuse_ops_durations_histogram_seconds_bucket")
                    && l.contains("+Inf")
            })
            .unwrap();
        assert!(inf.ends_with(" 2"), "{inf}");
    }
}
