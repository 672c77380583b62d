//! The metrics port: admissions counted by path and result, their latency histogram, and
//! the readiness gauge, in Prometheus text.

mod common;
use common::server::{Pki, start};
use jfs_webhook::server;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn review(pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "m", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "app", "operation": "CREATE", "object": pod}
    }))
    .unwrap()
}

fn pod_with_claim(claim: &str) -> Value {
    json!({"metadata": {"name": "p", "namespace": "app"},
           "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
                    "containers": [{"name": "app", "image": "busybox"}]}})
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("series {series} missing in\n{text}"))
}

#[tokio::test]
async fn admissions_are_counted_by_path_and_result() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &Pki::new()).await;
    for (path, body) in [
        (server::INJECT_PATH, review(pod_with_claim("data"))),
        (server::INJECT_PATH, review(pod_with_claim("data"))),
        (server::SERVERLESS_PATH, review(pod_with_claim("data"))),
        (
            server::INJECT_PATH,
            review(json!({"metadata": {"name": "plain"}, "spec": {"containers": []}})),
        ),
        (server::INJECT_PATH, review(pod_with_claim("missing"))),
        (server::INJECT_PATH, b"{not json".to_vec()),
    ] {
        s.call("POST", path, &body).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, server::metrics_router(s.state.clone())).into_future());
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let c = |p: &str, r: &str| {
        value(
            &out,
            &format!("juicefs_webhook_admissions_total{{path=\"{p}\",result=\"{r}\"}}"),
        )
    };
    assert_eq!(c("inject", "mutated"), 2.0);
    assert_eq!(c("serverless", "mutated"), 1.0);
    assert_eq!(c("inject", "skipped"), 1.0);
    assert_eq!(c("inject", "denied"), 1.0);
    assert_eq!(c("inject", "bad_request"), 1.0);
    assert_eq!(
        value(&out, "juicefs_webhook_admission_duration_seconds_count"),
        6.0
    );
    assert_eq!(
        value(
            &out,
            "juicefs_webhook_admission_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        6.0
    );
    assert_eq!(value(&out, "juicefs_webhook_ready"), 1.0);
}
