//! Secret copies against a fake Kubernetes API server (in-memory Secrets over HTTP): a burst
//! of 500 concurrent admissions for one PVC writes the copy once; an unchanged copy is never
//! rewritten; a changed one is replaced; two webhook replicas racing create it once.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jfs_webhook::secrets::KubeSecretWriter;
use jfs_webhook::server::SecretWriter;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct FakeApi {
    secrets: Mutex<HashMap<(String, String), Value>>,
    creates: AtomicUsize,
    updates: AtomicUsize,
    gets: AtomicUsize,
}

fn status(code: u16, reason: &str, msg: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": msg});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

async fn get_secret(
    State(api): State<Arc<FakeApi>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    api.gets.fetch_add(1, Ordering::SeqCst);
    match api.secrets.lock().unwrap().get(&(ns, name.clone())) {
        Some(v) => axum::Json(v.clone()).into_response(),
        None => status(404, "NotFound", &format!("secrets \"{name}\" not found")),
    }
}

async fn create_secret(
    State(api): State<Arc<FakeApi>>,
    Path(ns): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    let mut m = api.secrets.lock().unwrap();
    if m.contains_key(&(ns.clone(), name.clone())) {
        return status(
            409,
            "AlreadyExists",
            &format!("secrets \"{name}\" already exists"),
        );
    }
    api.creates.fetch_add(1, Ordering::SeqCst);
    v["metadata"]["resourceVersion"] = json!("1");
    m.insert((ns, name), v.clone());
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

async fn replace_secret(
    State(api): State<Arc<FakeApi>>,
    Path((ns, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    let mut m = api.secrets.lock().unwrap();
    let Some(cur) = m.get(&(ns.clone(), name.clone())) else {
        return status(404, "NotFound", "gone");
    };
    if cur["metadata"]["resourceVersion"] != v["metadata"]["resourceVersion"] {
        return status(409, "Conflict", "the object has been modified");
    }
    api.updates.fetch_add(1, Ordering::SeqCst);
    let rv: u64 = cur["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    v["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
    m.insert((ns, name), v.clone());
    axum::Json(v).into_response()
}

async fn fake_api() -> (Arc<FakeApi>, kube::Client) {
    let api = Arc::new(FakeApi::default());
    let app = Router::new()
        .route("/api/v1/namespaces/{ns}/secrets", post(create_secret))
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(get_secret).put(replace_secret),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (api, kube::Client::try_from(config).unwrap())
}

fn copy(value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("data-jfs-secret".into()),
            namespace: Some("app".into()),
            ..Default::default()
        },
        data: Some([("metaurl".to_string(), ByteString(value.as_bytes().to_vec()))].into()),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_admissions_writes_the_copy_once() {
    // The workspace compiles rustls with ring and aws-lc (other crates pull it): pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (api, client) = fake_api().await;
    let writer = Arc::new(KubeSecretWriter::new(client.clone()));
    let secret = copy("redis://r/1");
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let (w, s) = (writer.clone(), secret.clone());
            tokio::spawn(async move { w.ensure(&s).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(api.creates.load(Ordering::SeqCst), 1);
    assert_eq!(api.updates.load(Ordering::SeqCst), 0);
    assert!(
        api.gets.load(Ordering::SeqCst) <= 2,
        "the burst is served from what we know"
    );

    // Unchanged: no API call at all. Changed: one replace.
    let gets = api.gets.load(Ordering::SeqCst);
    writer.ensure(&secret).await.unwrap();
    assert_eq!(api.gets.load(Ordering::SeqCst), gets);
    writer.ensure(&copy("redis://r/2")).await.unwrap();
    assert_eq!(api.updates.load(Ordering::SeqCst), 1);
    let stored =
        api.secrets.lock().unwrap()[&("app".to_string(), "data-jfs-secret".to_string())].clone();
    assert_eq!(stored["data"]["metaurl"], json!(base64_of("redis://r/2")));

    // Two replicas (no shared memory) racing on a new copy: created once, no error.
    let other = copy("redis://r/3");
    let (a, b) = (
        Arc::new(KubeSecretWriter::new(client.clone())),
        Arc::new(KubeSecretWriter::new(client.clone())),
    );
    let mut s2 = other.clone();
    s2.metadata.name = Some("models-jfs-secret".into());
    let (ra, rb) = tokio::join!(a.ensure(&s2), b.ensure(&s2));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(
        api.creates.load(Ordering::SeqCst),
        2,
        "one create for each distinct copy"
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
