//! Admission webhook load test on loopback: starts a fake Kubernetes API (list/watch of
//! PVCs, PVs, StorageClasses; Secrets; /version), runs the real `juicefs-webhook` binary
//! against it with a fresh certificate, waits for warm caches, then sends realistic
//! AdmissionReviews over TLS (keep-alive connections) at a fixed rate for a fixed time.
//! Latency is measured from each request's scheduled time, so a stall counts in full.
//! Prints p50, p99, max, errors and the webhook's peak RSS.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::Parser;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
struct Args {
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Concurrent keep-alive TLS connections.
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// The webhook binary (default: next to this one).
    #[arg(long)]
    webhook: Option<std::path::PathBuf>,
}

fn list(kind: &str, api: &str, items: Value) -> Value {
    json!({"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": "10"}, "items": items})
}

fn list_or_watch(q: &HashMap<String, String>, body: Value) -> axum::response::Response {
    if q.get("watch").map(String::as_str) == Some("true") {
        return Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>())
            .into_response();
    }
    axum::Json(body).into_response()
}

async fn fake_api() -> std::net::SocketAddr {
    let pvcs = list(
        "PersistentVolumeClaimList",
        "v1",
        json!([{
        "metadata": {"name": "data", "namespace": "app", "uid": "u-data", "resourceVersion": "5"},
        "spec": {"volumeName": "pv-data", "resources": {"requests": {"storage": "50Gi"}}}}]),
    );
    let pvs = list(
        "PersistentVolumeList",
        "v1",
        json!([{
        "metadata": {"name": "pv-data", "resourceVersion": "5"},
        "spec": {"accessModes": ["ReadWriteMany"], "mountOptions": ["cache-size=2048"],
                 "csi": {"driver": "csi.juicefs.com", "volumeHandle": "pv-data",
                         "nodePublishSecretRef": {"name": "jfs", "namespace": "kube-system"},
                         "volumeAttributes": {"juicefs/mount-cpu-limit": "2"}}}}]),
    );
    let scs = list("StorageClassList", "storage.k8s.io/v1", json!([]));
    let secret = json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "jfs", "namespace": "kube-system"},
        "stringData": {"name": "myjfs", "metaurl": "redis://:pw@redis:6379/1", "storage": "s3",
                       "bucket": "http://minio:9000/b", "access-key": "AK", "secret-key": "SK"}});
    let copies: Arc<std::sync::Mutex<HashMap<String, Value>>> = Default::default();
    let c1 = copies.clone();
    let app = Router::new()
        .route("/version", get(|| async { axum::Json(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"})) }))
        .route("/api/v1/persistentvolumeclaims", get(move |Query(q): Query<HashMap<String, String>>| async move { list_or_watch(&q, pvcs) }))
        .route("/api/v1/persistentvolumes", get(move |Query(q): Query<HashMap<String, String>>| async move { list_or_watch(&q, pvs) }))
        .route("/apis/storage.k8s.io/v1/storageclasses", get(move |Query(q): Query<HashMap<String, String>>| async move { list_or_watch(&q, scs) }))
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(move |Path((ns, name)): Path<(String, String)>| async move {
                if ns == "kube-system" && name == "jfs" {
                    return axum::Json(secret).into_response();
                }
                match c1.lock().unwrap().get(&format!("{ns}/{name}")) {
                    Some(v) => axum::Json(v.clone()).into_response(),
                    None => (axum::http::StatusCode::NOT_FOUND, axum::Json(json!({"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound"}))).into_response(),
                }
            }),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            post(move |Path(ns): Path<String>, body: axum::body::Bytes| async move {
                let mut v: Value = serde_json::from_slice(&body).unwrap_or_default();
                v["metadata"]["resourceVersion"] = json!("1");
                let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
                copies.lock().unwrap().insert(format!("{ns}/{name}"), v.clone());
                (axum::http::StatusCode::CREATED, axum::Json(v))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn review(i: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": format!("req-{i}"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "app", "operation": "CREATE",
            "object": {"metadata": {"generateName": "web-7d4b9c-", "namespace": "app",
                                    "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
                                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c", "uid": "rs-1", "controller": true}]},
                "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                                     {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
                         "containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                                         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                                         "volumeMounts": [{"name": "data", "mountPath": "/usr/share/nginx/html", "subPath": "site"},
                                                          {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}]}}}
    }))
    .unwrap()
}

struct Conn {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(
        addr: std::net::SocketAddr,
        connector: &tokio_rustls::TlsConnector,
    ) -> std::io::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        Ok(Conn {
            tls: connector.connect(name, tcp).await?,
            buf: Vec::new(),
        })
    }

    /// One keep-alive request; the status and body.
    async fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.tls.write_all(head.as_bytes()).await?;
        self.tls.write_all(body).await?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let headers = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let status: u16 = headers
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let len: usize = headers
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let total = end + 4 + len;
                while self.buf.len() < total {
                    self.fill().await?;
                }
                let body = self.buf[end + 4..total].to_vec();
                self.buf.drain(..total);
                return Ok((status, body));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16384];
        let n = self.tls.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // A CA and a serving certificate for localhost.
    let mut ca_p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_p.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_p, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();

    let api = fake_api().await;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://{api}\"}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
    )).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = a.webhook.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .unwrap()
            .with_file_name("juicefs-webhook")
    });
    let mut child = std::process::Command::new(&bin)
        .args(["--port", &port.to_string(), "--cert"])
        .arg(dir.path().join("tls.crt"))
        .arg("--key")
        .arg(dir.path().join("tls.key"))
        .arg("--config")
        .arg(dir.path().join("none.yaml"))
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Warm: ready caches and one admission (writes the Secret copy once).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = Conn::open(addr, &connector).await
            && let Ok((200, _)) = c.post("/juicefs/inject-v1-pod", &review(0)).await
        {
            break;
        }
        assert!(Instant::now() < deadline, "the webhook never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let total = a.rate * a.seconds;
    let interval = Duration::from_nanos(1_000_000_000 / a.rate);
    let start = Instant::now() + Duration::from_millis(100);
    // One queue per connection, filled round-robin: no lock shared by the workers.
    let body = Arc::new(review(1));
    let mut queues = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..a.conns {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Instant)>(4096);
        queues.push(tx);
        let (connector, body) = (connector.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, &connector).await.ok();
            let mut lat = Vec::new();
            let mut sched = Vec::new();
            let mut errors = 0u64;
            while let Some((due, dispatched)) = rx.recv().await {
                // The clock stops when the answer is in; checking it is not the webhook's time.
                let answer = match conn.as_mut() {
                    Some(c) => c.post("/juicefs/inject-v1-pod", &body[..]).await.ok(),
                    None => None,
                };
                lat.push(dispatched.elapsed());
                sched.push(due.elapsed());
                let ok = match answer {
                    Some((200, b)) => serde_json::from_slice::<Value>(&b)
                        .map(|v| {
                            v["response"]["allowed"] == json!(true)
                                && v["response"]["patch"].is_string()
                        })
                        .unwrap_or(false),
                    _ => false,
                };
                if !ok {
                    errors += 1;
                    conn = Conn::open(addr, &connector).await.ok();
                }
            }
            (lat, sched, errors)
        }));
    }
    // The schedule runs on its own OS thread: `thread::sleep` wakes within tens of
    // microseconds of `due`, where tokio's timer wheel rounds up to the next millisecond.
    let dispatcher = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + interval * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // Time queued behind a busy connection still counts.
            if queues[i as usize % queues.len()]
                .blocking_send((due, Instant::now()))
                .is_err()
            {
                break;
            }
        }
    });
    tokio::task::spawn_blocking(move || dispatcher.join())
        .await
        .unwrap()
        .unwrap();
    let elapsed = start.elapsed();
    let mut lat = Vec::new();
    let mut sched = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, s, e) = w.await.unwrap();
        lat.extend(l);
        sched.extend(s);
        errors += e;
    }
    let rss = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    lat.sort();
    sched.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{{\"requests\": {}, \"seconds\": {:.1}, \"rate\": {:.0}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"p99_from_schedule_ms\": {:.3}, \"errors\": {}, \"webhook_peak_rss_mib\": {:.1}}}",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        ms(pct(&lat, 0.50)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap()),
        ms(pct(&sched, 0.99)),
        errors,
        rss as f64 / 1024.0
    );
}
