//! The webhook's view of the cluster against a fake API server that lists and watches PVCs,
//! PVs and StorageClasses and serves Secrets: after the caches sync, admissions are decided
//! without API round trips (each Secret read once, then not while it is fresh).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jfs_mountspec::GlobalConfig;
use jfs_webhook::cluster::KubeView;
use jfs_webhook::inject::InjectConfig;
use jfs_webhook::review;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Default)]
struct Api {
    lists: AtomicUsize,
    secret_gets: AtomicUsize,
}

fn list(kind: &str, api_version: &str, items: Value) -> Value {
    json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "10"}, "items": items})
}

/// A list, or (for `?watch=true`) a watch that stays open without events.
fn list_or_watch(api: &Api, q: &HashMap<String, String>, body: Value) -> Response {
    if q.get("watch").map(String::as_str) == Some("true") {
        let pending = futures::stream::pending::<Result<Vec<u8>, std::io::Error>>();
        return Body::from_stream(pending).into_response();
    }
    api.lists.fetch_add(1, Ordering::SeqCst);
    axum::Json(body).into_response()
}

async fn fake() -> (Arc<Api>, kube::Client) {
    let api = Arc::new(Api::default());
    let pvcs = list(
        "PersistentVolumeClaimList",
        "v1",
        json!([{
        "metadata": {"name": "data", "namespace": "app", "uid": "u-data", "resourceVersion": "5"},
        "spec": {"volumeName": "pv-data", "resources": {"requests": {"storage": "5Gi"}}}}]),
    );
    let pvs = list(
        "PersistentVolumeList",
        "v1",
        json!([{
        "metadata": {"name": "pv-data", "resourceVersion": "5"},
        "spec": {"csi": {"driver": "csi.juicefs.com", "volumeHandle": "pv-data",
                          "nodePublishSecretRef": {"name": "jfs", "namespace": "kube-system"}}}}]),
    );
    let scs = list("StorageClassList", "storage.k8s.io/v1", json!([]));
    let app = Router::new()
        .route(
            "/api/v1/persistentvolumeclaims",
            get({
                let b = pvcs.clone();
                move |State(a): State<Arc<Api>>, Query(q): Query<HashMap<String, String>>| async move {
                    list_or_watch(&a, &q, b)
                }
            }),
        )
        .route(
            "/api/v1/persistentvolumes",
            get(move |State(a): State<Arc<Api>>, Query(q): Query<HashMap<String, String>>| async move {
                list_or_watch(&a, &q, pvs)
            }),
        )
        .route(
            "/apis/storage.k8s.io/v1/storageclasses",
            get(move |State(a): State<Arc<Api>>, Query(q): Query<HashMap<String, String>>| async move {
                list_or_watch(&a, &q, scs)
            }),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(|State(a): State<Arc<Api>>, Path((ns, name)): Path<(String, String)>| async move {
                a.secret_gets.fetch_add(1, Ordering::SeqCst);
                let data = match (ns.as_str(), name.as_str()) {
                    ("kube-system", "jfs") => json!({"name": "myjfs", "metaurl": "redis://r:6379/1",
                        "configs": "{jfs-conf: /etc/jfs, jfs-missing: /etc/missing, jfs-forbidden: /etc/f}"}),
                    ("app", "jfs-conf") => json!({"juicefs.conf": "x"}),
                    ("app", "jfs-forbidden") => {
                        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "Forbidden", "code": 403, "message": "forbidden"});
                        return (axum::http::StatusCode::FORBIDDEN, axum::Json(status)).into_response();
                    }
                    _ => {
                        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "NotFound", "code": 404,
                            "message": format!("secrets \"{name}\" not found")});
                        return (axum::http::StatusCode::NOT_FOUND, axum::Json(status)).into_response();
                    }
                };
                axum::Json(json!({"kind": "Secret", "apiVersion": "v1",
                    "metadata": {"name": name, "namespace": ns}, "stringData": data}))
                .into_response()
            }),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cfg = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (api, kube::Client::try_from(cfg).unwrap())
}

fn admission() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "app",
            "operation": "CREATE",
            "object": {"metadata": {"name": "p", "namespace": "app"}, "spec": {
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                "containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}]}}}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_are_served_from_watch_caches() {
    // The workspace compiles rustls with ring and aws-lc (other crates pull it): pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (api, client) = fake().await;
    let view = KubeView::start(client);
    tokio::time::timeout(Duration::from_secs(10), view.ready())
        .await
        .expect("caches never synced");
    assert_eq!(api.lists.load(Ordering::SeqCst), 3);
    let cfg = InjectConfig {
        global: GlobalConfig::default(),
        native: true,
        default_image: "example/mount:1".into(),
    };
    for _ in 0..20 {
        let out = review::handle_async(&admission(), &view, &cfg, false)
            .await
            .unwrap();
        assert!(
            out.response["response"]["patch"].is_string(),
            "{}",
            out.response
        );
        assert_eq!(out.secrets.len(), 1);
        // The Secrets named in `configs` were looked up in the pod's namespace.
        let warnings = out.response["response"]["warnings"].to_string();
        assert!(warnings.contains("Secret app/jfs-missing"), "{warnings}");
        assert!(!warnings.contains("jfs-conf"), "{warnings}");
        // A Secret that could not be read is not reported as missing.
        assert!(!warnings.contains("jfs-forbidden"), "{warnings}");
    }
    assert_eq!(
        api.lists.load(Ordering::SeqCst),
        3,
        "no re-list per admission"
    );
    assert_eq!(
        api.secret_gets.load(Ordering::SeqCst),
        3 + 20,
        "each Secret that was read is read once while fresh; the unreadable one on each admission"
    );
}
