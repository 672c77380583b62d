//! Certificates published against a fake Kubernetes API: the Secret is created and the
//! caBundle patched into every webhook; a second run writes nothing; the stored serving
//! certificate verifies against the published bundle for the Service's DNS names.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jfs_certs::publish::{SECRET_NAME, ensure};
use jfs_certs::{Plan, service_dns_names};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct FakeApi {
    objects: Mutex<HashMap<String, Value>>,
    writes: AtomicUsize,
}

fn not_found() -> Response {
    let s = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
    (StatusCode::NOT_FOUND, axum::Json(s)).into_response()
}

async fn get_obj(State(a): State<Arc<FakeApi>>, Path(p): Path<Vec<String>>) -> Response {
    match a.objects.lock().unwrap().get(&p.join("/")) {
        Some(v) => axum::Json(v.clone()).into_response(),
        None => not_found(),
    }
}

async fn put_obj(
    State(a): State<Arc<FakeApi>>,
    Path(p): Path<Vec<String>>,
    body: axum::body::Bytes,
) -> Response {
    a.writes.fetch_add(1, Ordering::SeqCst);
    let v: Value = serde_json::from_slice(&body).unwrap();
    a.objects.lock().unwrap().insert(p.join("/"), v.clone());
    axum::Json(v).into_response()
}

async fn create_secret(
    State(a): State<Arc<FakeApi>>,
    Path(ns): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    a.writes.fetch_add(1, Ordering::SeqCst);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    a.objects
        .lock()
        .unwrap()
        .insert(format!("{ns}/{name}"), v.clone());
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

async fn fake() -> (Arc<FakeApi>, kube::Client) {
    let api = Arc::new(FakeApi::default());
    api.objects.lock().unwrap().insert(
        "jfs-webhook".into(),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
               "metadata": {"name": "jfs-webhook"},
               "webhooks": [
                 {"name": "sidecar.inject.juicefs.com", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
                  "clientConfig": {"service": {"name": "juicefs-admission-webhook", "namespace": "kube-system", "path": "/juicefs/inject-v1-pod"}}},
                 {"name": "sidecar.inject.serverless.juicefs.com", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
                  "clientConfig": {"service": {"name": "juicefs-admission-webhook", "namespace": "kube-system", "path": "/juicefs/serverless/inject-v1-pod"}}}]}),
    );
    let app = Router::new()
        .route("/api/v1/namespaces/{ns}/secrets", post(create_secret))
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(|s, Path((ns, n)): Path<(String, String)>| get_obj(s, Path(vec![ns, n]))).put(
                |s, Path((ns, n)): Path<(String, String)>, b| put_obj(s, Path(vec![ns, n]), b),
            ),
        )
        .route(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}",
            get(|s, Path(n): Path<String>| get_obj(s, Path(vec![n])))
                .put(|s, Path(n): Path<String>, b| put_obj(s, Path(vec![n]), b)),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cfg = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (api, kube::Client::try_from(cfg).unwrap())
}

fn b64(v: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn ders(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    let text = String::from_utf8_lossy(pem).into_owned();
    text.split("-----END CERTIFICATE-----")
        .filter(|p| p.contains("BEGIN CERTIFICATE"))
        .map(|block| {
            use base64::Engine;
            let body: String = block.lines().filter(|l| !l.starts_with("-----")).collect();
            CertificateDer::from(
                base64::engine::general_purpose::STANDARD
                    .decode(body.trim())
                    .unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_created_published_and_left_alone() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (api, client) = fake().await;
    let dns = service_dns_names("juicefs-admission-webhook", "kube-system");
    let plan = ensure(
        client.clone(),
        "kube-system",
        SECRET_NAME,
        "jfs-webhook",
        &dns,
    )
    .await
    .unwrap();
    assert_eq!(plan, Plan::NewCa);
    assert_eq!(
        api.writes.load(Ordering::SeqCst),
        2,
        "one Secret, one webhook configuration"
    );
    let objects = api.objects.lock().unwrap().clone();
    let secret = &objects[&format!("kube-system/{SECRET_NAME}")];
    let cfg = &objects["jfs-webhook"];
    let bundle = b64(&cfg["webhooks"][0]["clientConfig"]["caBundle"]);
    assert_eq!(
        bundle,
        b64(&cfg["webhooks"][1]["clientConfig"]["caBundle"]),
        "every webhook gets the bundle"
    );
    assert_eq!(bundle, b64(&secret["data"]["ca-bundle.crt"]));

    // The serving certificate verifies against the bundle for each Service name.
    let mut roots = rustls::RootCertStore::empty();
    for ca in ders(&bundle) {
        roots.add(ca).unwrap();
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let leaf = ders(&b64(&secret["data"]["tls.crt"])).remove(0);
    for name in &dns {
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(name.clone()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from("evil.example").unwrap(),
                &[],
                UnixTime::now()
            )
            .is_err()
    );

    // Nothing changed: nothing written.
    let plan = ensure(client, "kube-system", SECRET_NAME, "jfs-webhook", &dns)
        .await
        .unwrap();
    assert_eq!(plan, Plan::Keep);
    assert_eq!(api.writes.load(Ordering::SeqCst), 2);
}
