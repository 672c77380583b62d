//! Prometheus text for the webhook on its `metrics` port: admissions by path and result,
//! their latency, Secret copies written, and app-exit marks set.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub const PATHS: [&str; 2] = ["inject", "serverless"];
pub const RESULTS: [&str; 5] = ["mutated", "skipped", "denied", "bad_request", "error"];
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    admissions: [[Counter; RESULTS.len()]; PATHS.len()],
    buckets: [Counter; BUCKETS.len()],
    count: Counter,
    /// Total latency in microseconds.
    sum_us: Counter,
    pub secret_writes: Counter,
    pub app_exit_marks: Counter,
}

pub static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::default);

impl Metrics {
    pub fn admission(&self, path: usize, result: usize, took: Duration) {
        if let Some(c) = self.admissions.get(path).and_then(|r| r.get(result)) {
            c.inc();
        }
        let secs = took.as_secs_f64();
        for (b, c) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *b {
                c.inc();
            }
        }
        self.count.inc();
        self.sum_us
            .0
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn admissions(&self, path: usize, result: usize) -> u64 {
        self.admissions[path][result].get()
    }

    pub fn render(&self, ready: bool) -> String {
        let mut s = String::with_capacity(2048);
        let _ = writeln!(
            s,
            "# HELP juicefs_webhook_admissions_total Admission reviews answered."
        );
        let _ = writeln!(s, "# TYPE juicefs_webhook_admissions_total counter");
        for (p, path) in PATHS.iter().enumerate() {
            for (r, result) in RESULTS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "juicefs_webhook_admissions_total{{path=\"{path}\",result=\"{result}\"}} {}",
                    self.admissions(p, r)
                );
            }
        }
        let h = "juicefs_webhook_admission_duration_seconds";
        let _ = writeln!(s, "# HELP {h} Time from request to response.");
        let _ = writeln!(s, "# TYPE {h} histogram");
        for (b, c) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(s, "{h}_bucket{{le=\"{b}\"}} {}", c.get());
        }
        let n = self.count.get();
        let _ = writeln!(s, "{h}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(s, "{h}_sum {}", self.sum_us.get() as f64 / 1e6);
        let _ = writeln!(s, "{h}_count {n}");
        for (name, help, c) in [
            (
                "juicefs_webhook_secret_writes_total",
                "Secret copies created or updated.",
                &self.secret_writes,
            ),
            (
                "juicefs_webhook_app_exit_marks_total",
                "Job pods told that their app has exited.",
                &self.app_exit_marks,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        let _ = writeln!(
            s,
            "# HELP juicefs_webhook_ready Watch caches synced.\n# TYPE juicefs_webhook_ready gauge\njuicefs_webhook_ready {}",
            u8::from(ready)
        );
        s
    }
}
