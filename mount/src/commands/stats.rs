//! `juicefs stats MOUNTPOINT`: reads the mount's `.stats` every interval and prints one line
//! of rates: the client's CPU, memory and buffer; FUSE operations, latency and throughput;
//! metadata operations, their latency, transactions and conflict restarts; block cache
//! hits and misses; object storage GETs and PUTs.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Sums each series of a `.stats` text by name (labels ignored, except the object
/// storage method, kept as `name:METHOD`).
pub fn parse(text: &str) -> HashMap<String, f64> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let key = match labels.split(',').find_map(|l| l.strip_prefix("method=\"")) {
            Some(m) if name.starts_with("juicefs_object_request") => {
                format!("{name}:{}", m.trim_end_matches(['"', '}']))
            }
            _ => name.to_string(),
        };
        *out.entry(key).or_default() += v;
    }
    out
}

fn read(mp: &Path) -> Result<HashMap<String, f64>, String> {
    std::fs::read_to_string(mp.join(".stats"))
        .map(|t| parse(&t))
        .map_err(|e| {
            format!(
                "reading {}/.stats: {e} (is it a juicefs mount?)",
                mp.display()
            )
        })
}

const HEADER: &str = "  cpu    mem    buf |  ops  lat(ms)  read(MiB)  write(MiB) | m.ops m.lat(ms)  txn retry | cache.hit cache.miss |  get  get(MiB)  put  put(MiB)";

/// One line of rates between two samples `secs` apart.
pub fn line(a: &HashMap<String, f64>, b: &HashMap<String, f64>, secs: f64) -> String {
    let g = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let d = |k: &str| (g(b, k) - g(a, k)).max(0.0);
    let mib = |x: f64| x / (1 << 20) as f64;
    // (operations per second, mean milliseconds) of one latency histogram.
    let rate_lat = |h: &str| {
        let n = d(&format!("{h}_count"));
        let ms = if n > 0.0 {
            d(&format!("{h}_sum")) / n * 1000.0
        } else {
            0.0
        };
        (n / secs, ms)
    };
    let (ops, lat) = rate_lat("juicefs_fuse_ops_durations_histogram_seconds");
    let (mops, mlat) = rate_lat("juicefs_meta_ops_durations_histogram_seconds");
    let (txn, _) = rate_lat("juicefs_transaction_durations_histogram_seconds");
    format!(
        "{:4.0}% {:5.0}M {:5.0}M | {:4.0} {:8.2} {:10.1} {:11.1} | {:5.0} {:9.2} {:4.0} {:5.0} | {:9.0} {:10.0} | {:4.0} {:9.1} {:4.0} {:8.1}",
        d("juicefs_cpu_usage") / secs * 100.0,
        mib(g(b, "juicefs_memory")),
        mib(g(b, "juicefs_used_buffer_size_bytes")),
        ops,
        lat,
        mib(d("juicefs_fuse_read_size_bytes_sum")) / secs,
        mib(d("juicefs_fuse_written_size_bytes_sum")) / secs,
        mops,
        mlat,
        txn,
        d("juicefs_transaction_restart") / secs,
        d("juicefs_blockcache_hits") / secs,
        d("juicefs_blockcache_miss") / secs,
        d("juicefs_object_request_durations_histogram_seconds_count:GET") / secs,
        mib(d("juicefs_object_request_data_bytes:GET")) / secs,
        d("juicefs_object_request_durations_histogram_seconds_count:PUT") / secs,
        mib(d("juicefs_object_request_data_bytes:PUT")) / secs,
    )
}

pub fn run(mountpoint: &str, interval: f64, count: Option<u64>) -> ExitCode {
    let mp = Path::new(mountpoint);
    let every = Duration::from_secs_f64(interval.max(0.1));
    let mut prev = match read(mp) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("juicefs stats: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{HEADER}");
    let mut at = Instant::now();
    let mut printed = 0;
    while count.is_none_or(|c| printed < c) {
        std::thread::sleep(every);
        let now = match read(mp) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("juicefs stats: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("{}", line(&prev, &now, at.elapsed().as_secs_f64()));
        at = Instant::now();
        prev = now;
        printed += 1;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_two_samples() {
        let a = parse(
            "juicefs_cpu_usage{vol_name=\"v\"} 1.0\njuicefs_fuse_ops_durations_histogram_seconds_count{vol_name=\"v\"} 10\njuicefs_fuse_ops_durations_histogram_seconds_sum{vol_name=\"v\"} 0.01\njuicefs_object_request_durations_histogram_seconds_count{vol_name=\"v\",method=\"GET\"} 4\njuicefs_object_request_data_bytes{vol_name=\"v\",method=\"GET\"} 0\njuicefs_meta_ops_durations_histogram_seconds_count{vol_name=\"v\"} 5\njuicefs_meta_ops_durations_histogram_seconds_sum{vol_name=\"v\"} 0.5\njuicefs_transaction_restart{vol_name=\"v\"} 1\n",
        );
        let b = parse(
            "juicefs_cpu_usage{vol_name=\"v\"} 1.5\njuicefs_fuse_ops_durations_histogram_seconds_count{vol_name=\"v\"} 110\njuicefs_fuse_ops_durations_histogram_seconds_sum{vol_name=\"v\"} 0.21\njuicefs_object_request_durations_histogram_seconds_count{vol_name=\"v\",method=\"GET\"} 14\njuicefs_object_request_data_bytes{vol_name=\"v\",method=\"GET\"} 41943040\njuicefs_memory{vol_name=\"v\"} 104857600\njuicefs_meta_ops_durations_histogram_seconds_count{vol_name=\"v\"} 25\njuicefs_meta_ops_durations_histogram_seconds_sum{vol_name=\"v\"} 0.54\njuicefs_transaction_restart{vol_name=\"v\"} 4\n",
        );
        assert_eq!(
            b["juicefs_object_request_durations_histogram_seconds_count:GET"],
            14.0
        );
        let l = line(&a, &b, 1.0);
        let cols: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(cols[0], "50%");
        assert_eq!(cols[1], "100M");
        assert_eq!(cols[4], "100", "{l}");
        assert_eq!(cols[5], "2.00", "{l}");
        assert_eq!(cols[9], "20", "meta ops/s: {l}");
        assert_eq!(cols[10], "2.00", "meta latency: {l}");
        assert_eq!(cols[12], "3", "restarts/s: {l}");
        assert_eq!(cols[17], "10", "{l}");
        assert_eq!(cols[18], "40.0", "{l}");
    }
}
