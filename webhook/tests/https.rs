//! The real HTTPS server with a rustls client: AdmissionReviews in, patches out, Secret
//! copies written (never on dry run), malformed and oversized bodies refused with a reason,
//! and the serving certificate rotated while requests keep flowing.

mod common;
use base64::Engine;
use common::server::{Pki, start};
use jfs_webhook::server;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn review(pod: Value, dry_run: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "req-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "app", "operation": "CREATE", "object": pod, "dryRun": dry_run}
    }))
    .unwrap()
}

fn juicefs_pod() -> Value {
    json!({"metadata": {"name": "p", "namespace": "app"},
           "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                    "containers": [{"name": "app", "image": "busybox",
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}})
}

#[tokio::test]
async fn reviews_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let s = start(dir.path(), &pki).await;

    let (code, body, _) = s
        .call("POST", server::INJECT_PATH, &review(juicefs_pod(), false))
        .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let resp = &v["response"];
    assert_eq!(
        (resp["uid"].as_str(), resp["allowed"].as_bool()),
        (Some("req-1"), Some(true))
    );
    assert_eq!(resp["patchType"], "JSONPatch");
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut pod = juicefs_pod();
    json_patch::patch(&mut pod, &patch).unwrap();
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "jfs-mount");
    assert_eq!(pod["spec"]["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(s.writer.writes.load(Ordering::SeqCst), 1);
    assert_eq!(s.writer.names.lock().unwrap()[0], "data-jfs-secret");

    // The serverless path serves the same review; a dry run writes nothing.
    let (code, body, _) = s
        .call(
            "POST",
            server::SERVERLESS_PATH,
            &review(juicefs_pod(), true),
        )
        .await;
    assert_eq!(code, 200);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["response"]["patch"].is_string());
    assert_eq!(
        s.writer.writes.load(Ordering::SeqCst),
        1,
        "dry run must not write"
    );

    // A denial is an answer, with the reason.
    let mut bad = juicefs_pod();
    bad["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = json!("missing");
    let (code, body, _) = s
        .call("POST", server::INJECT_PATH, &review(bad, false))
        .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (code, v["response"]["allowed"].as_bool()),
        (200, Some(false))
    );
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not found")
    );

    // Health.
    assert_eq!(s.call("GET", "/healthz", b"").await.0, 200);
    assert_eq!(s.call("GET", "/readyz", b"").await.0, 200);
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_400_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let s = start(dir.path(), &pki).await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "malformed AdmissionReview"),
        (b"[]".to_vec(), 400, "malformed AdmissionReview"),
        (br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":null}"#.to_vec(), 400, "expected apiVersion"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), 400, "no request"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec(), 400, "malformed"),
        (vec![b' '; server::MAX_BODY + 1024], 400, "larger than 3 MiB"),
    ];
    for (body, want, reason) in cases {
        let (code, out, _) = s.call("POST", server::INJECT_PATH, &body).await;
        assert_eq!(code, want, "{}", String::from_utf8_lossy(&out));
        assert!(
            String::from_utf8_lossy(&out).contains(reason),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    // Not a pod, or not a create: allowed untouched.
    let mut r: Value = serde_json::from_slice(&review(juicefs_pod(), false)).unwrap();
    r["request"]["kind"]["kind"] = json!("Deployment");
    let (code, out, _) = s
        .call(
            "POST",
            server::INJECT_PATH,
            &serde_json::to_vec(&r).unwrap(),
        )
        .await;
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (code, v["response"]["allowed"].as_bool()),
        (200, Some(true))
    );
    assert!(v["response"]["patch"].is_null());
    // A pod that does not decode is denied, not a crash.
    let mut r: Value = serde_json::from_slice(&review(juicefs_pod(), false)).unwrap();
    r["request"]["object"]["spec"]["containers"] = json!("nope");
    let (_, out, _) = s
        .call(
            "POST",
            server::INJECT_PATH,
            &serde_json::to_vec(&r).unwrap(),
        )
        .await;
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["response"]["allowed"], false);
    // The server is still serving.
    assert_eq!(s.call("GET", "/healthz", b"").await.0, 200);
}

#[tokio::test]
async fn certificate_rotation_drops_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let s = Arc::new(start(dir.path(), &pki).await);
    let (_, _, first_leaf) = s.call("GET", "/healthz", b"").await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (s, stop, failures, sent) = (s.clone(), stop.clone(), failures.clone(), sent.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (code, _, _) = s
                    .call("POST", server::INJECT_PATH, &review(juicefs_pod(), true))
                    .await;
                sent.fetch_add(1, Ordering::SeqCst);
                if code != 200 {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_leaf = pki.issue(dir.path());
    let mut rotated = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.call("GET", "/healthz", b"").await.2 == new_leaf {
            rotated = true;
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert!(rotated, "the new certificate was never served");
    assert_ne!(first_leaf, new_leaf);
    assert!(sent.load(Ordering::SeqCst) > 5, "the load kept running");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "no request may fail during rotation"
    );
}

/// A client that announces a body and stops sending gets a 400 once the body timeout
/// passes, instead of holding the connection for ever.
#[tokio::test]
async fn a_stalled_body_is_refused_with_a_reason() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let s = start(dir.path(), &pki).await;
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = s.connector.connect(name, tcp).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"apiVersion\"",
        server::INJECT_PATH
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let wait = server::BODY_TIMEOUT + Duration::from_secs(10);
    let _ = tokio::time::timeout(wait, tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive within 10 s"), "{text}");
}
