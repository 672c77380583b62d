//! Publishes 1,000 targets of one volume whose Mount Pod is already live (the common case:
//! a Deployment scaling up on a node), then unpublishes them, through the node's unix
//! socket; prints latency percentiles and API requests per publish as one JSON line.
//! The harness is the CSI tests' own (fake API server, a runner standing in for kubelet
//! that runs Mount Pods as real `juicefs` processes on real FUSE).

#[path = "../../../csi/tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let rig = common::Rig::start(Duration::from_secs(60)).await;
    let secrets = rig.volume_secrets("bench");
    let first = rig.target("warm", "pv-bench");
    rig.publish("pv-bench", &first, &secrets)
        .await
        .expect("first publish");
    let targets: Vec<String> = (0..n)
        .map(|i| rig.target(&format!("pod-{i}"), "pv-bench"))
        .collect();
    rig.api.clear_requests();
    let mut lat = Vec::with_capacity(n);
    for t in &targets {
        let start = Instant::now();
        rig.publish("pv-bench", t, &secrets).await.expect("publish");
        lat.push(start.elapsed());
    }
    let reqs = rig.api.requests();
    let writes = reqs.iter().filter(|r| r.is_write()).count();
    let reads = reqs.len() - writes;
    rig.api.clear_requests();
    let mut un = Vec::with_capacity(n);
    for t in &targets {
        let start = Instant::now();
        rig.unpublish("pv-bench", t).await.expect("unpublish");
        un.push(start.elapsed());
    }
    let un_writes = rig.api.requests().iter().filter(|r| r.is_write()).count();
    rig.unpublish("pv-bench", &first)
        .await
        .expect("last unpublish");
    println!(
        "{{\"publishes\": {n}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"api_writes_per_publish\": {:.3}, \"api_reads_per_publish\": {:.3}, \"unpublish_p50_ms\": {:.3}, \"unpublish_p99_ms\": {:.3}, \"api_writes_per_unpublish\": {:.3}}}",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        writes as f64 / n as f64,
        reads as f64 / n as f64,
        pct(&mut un, 0.5),
        pct(&mut un, 0.99),
        un_writes as f64 / n as f64,
    );
}
