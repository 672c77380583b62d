//! Secret copies through real admissions: the HTTPS server, its watch caches (`KubeView`)
//! and the real `KubeSecretWriter`, both against the in-memory API server (`jfs-fakekube`).
//! 500 concurrent admissions of pods sharing one PVC create `<pvc>-jfs-secret` exactly once
//! and are all mutated; a dry-run burst writes nothing; a copy deleted by hand comes back on
//! an admission once the writer's memory of it has expired.

mod common;
use base64::Engine;
use common::server::{Pki, Recorder, Server, start_parts};
use jfs_fakekube::FakeApi;
use jfs_webhook::cluster::KubeView;
use jfs_webhook::secrets::KubeSecretWriter;
use jfs_webhook::server::INJECT_PATH;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const COPY: &str = "data-jfs-secret";
const COPY_PATH: &str = "/api/v1/namespaces/app/secrets";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// The API server holding one JuiceFS PVC `app/data`, its PV, StorageClass and Secret.
async fn cluster() -> FakeApi {
    let api = FakeApi::start().await;
    api.put::<PersistentVolumeClaim>(&obj(json!({
        "metadata": {"name": "data", "namespace": "app", "uid": "uid-data"},
        "spec": {"volumeName": "pv-data", "storageClassName": "jfs",
                 "resources": {"requests": {"storage": "10Gi"}}}})));
    api.put::<PersistentVolume>(&obj(json!({
        "metadata": {"name": "pv-data"},
        "spec": {"csi": {"driver": "csi.juicefs.com", "volumeHandle": "pv-data",
                         "nodePublishSecretRef": {"name": "jfs-secret", "namespace": "kube-system"}}}})));
    api.put::<StorageClass>(&obj(json!({
        "metadata": {"name": "jfs"}, "provisioner": "csi.juicefs.com"})));
    api.put::<Secret>(&obj(json!({
        "metadata": {"name": "jfs-secret", "namespace": "kube-system"},
        "stringData": {"name": "myjfs", "metaurl": "redis://:pw@redis:6379/1", "storage": "s3",
                       "bucket": "http://minio:9000/b", "access-key": "AK", "secret-key": "SK"}})));
    api
}

/// The real server over the watch caches and a real writer (behind a `Recorder` that counts
/// the `ensure` calls).
async fn serve(dir: &std::path::Path, pki: &Pki, api: &FakeApi, trust_for: Duration) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let view = Arc::new(KubeView::start(api.client()));
    tokio::time::timeout(Duration::from_secs(10), view.ready())
        .await
        .expect("watch caches never synced");
    let writer = Arc::new(KubeSecretWriter::trusting_for(api.client(), trust_for));
    start_parts(dir, pki, view, Recorder::wrapping(writer)).await
}

fn review(i: usize, dry_run: bool) -> Vec<u8> {
    let name = format!("web-{i}");
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": format!("uid-{i}"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "app", "operation": "CREATE", "dryRun": dry_run,
                    "object": {"metadata": {"name": name, "namespace": "app"},
                        "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                                 "containers": [{"name": "app", "image": "busybox",
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}}
    }))
    .unwrap()
}

/// Admits `n` pods at once; panics unless each is allowed with a patch that adds the sidecar.
async fn burst(s: &Arc<Server>, n: usize, dry_run: bool) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let (code, body, _) = s.call("POST", INJECT_PATH, &review(i, dry_run)).await;
                (i, code, body)
            })
        })
        .collect();
    for t in tasks {
        let (i, code, body) = t.await.unwrap();
        let text = String::from_utf8_lossy(&body).to_string();
        assert_eq!(code, 200, "admission {i}: {text}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let r = &v["response"];
        assert_eq!(r["uid"], format!("uid-{i}"), "{text}");
        assert_eq!(r["allowed"], true, "admission {i}: {text}");
        assert_eq!(r["patchType"], "JSONPatch", "admission {i}: {text}");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().expect("a patch"))
            .unwrap();
        let patch = String::from_utf8(patch).unwrap();
        assert!(
            patch.contains("jfs-mount") && patch.contains(COPY),
            "{patch}"
        );
    }
}

/// (creates, updates, gets) of the copy seen by the API server.
fn copy_calls(api: &FakeApi) -> (usize, usize, usize) {
    let reqs = api.requests();
    let count = |method: &str, path: &str| {
        reqs.iter()
            .filter(|r| r.method == method && r.uri.split('?').next() == Some(path))
            .count()
    };
    let one = format!("{COPY_PATH}/{COPY}");
    (
        count("POST", COPY_PATH),
        count("PUT", &one) + count("PATCH", &one),
        count("GET", &one),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_admissions_for_one_pvc_create_the_copy_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let api = cluster().await;
    let s = Arc::new(serve(dir.path(), &pki, &api, Duration::from_secs(60)).await);
    api.clear_requests();

    // Dry runs: every pod mutated, nothing written.
    burst(&s, 500, true).await;
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.is_write())
        .collect();
    assert!(writes.is_empty(), "a dry run wrote: {writes:?}");
    assert!(api.get::<Secret>(Some("app"), COPY).is_none());
    assert_eq!(s.writer.writes.load(Ordering::SeqCst), 0);
    assert_eq!(copy_calls(&api), (0, 0, 0), "a dry run does not even read");

    // The real burst: 500 admissions, one create, no update.
    burst(&s, 500, false).await;
    assert_eq!(
        s.writer.writes.load(Ordering::SeqCst),
        500,
        "each admission ensured the copy"
    );
    let (creates, updates, gets) = copy_calls(&api);
    assert_eq!((creates, updates), (1, 0), "{:#?}", api.requests());
    assert!(
        gets <= 2,
        "the burst is served from what the writer knows: {gets} GETs"
    );
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.is_write())
        .collect();
    assert_eq!(writes.len(), 1, "only the copy is written: {writes:?}");
    let copy = api
        .get::<Secret>(Some("app"), COPY)
        .expect("the copy exists");
    let data = copy.data.unwrap_or_default();
    assert_eq!(
        data.get("metaurl").map(|b| b.0.as_slice()),
        Some(&b"redis://:pw@redis:6379/1"[..])
    );
    let owner = &copy.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("PersistentVolumeClaim", "uid-data")
    );

    // A second dry-run burst, with the copy in place: still nothing written.
    api.clear_requests();
    burst(&s, 100, true).await;
    assert!(api.requests().iter().all(|r| !r.is_write()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_deleted_by_hand_comes_back_once_the_memory_expires() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let api = cluster().await;
    let trust = Duration::from_secs(1);
    let s = Arc::new(serve(dir.path(), &pki, &api, trust).await);
    api.clear_requests();

    burst(&s, 1, false).await;
    assert_eq!(copy_calls(&api), (1, 0, 1));
    // Deleted by hand: within the lifetime the writer still trusts its memory (no call).
    api.remove::<Secret>(Some("app"), COPY);
    burst(&s, 1, false).await;
    assert_eq!(copy_calls(&api), (1, 0, 1), "trusted while fresh");
    assert!(api.get::<Secret>(Some("app"), COPY).is_none());

    // Once it has expired, the next admission reads the copy again and recreates it.
    tokio::time::sleep(trust + Duration::from_millis(100)).await;
    burst(&s, 1, false).await;
    assert_eq!(copy_calls(&api), (2, 0, 2), "read again, then created");
    assert!(api.get::<Secret>(Some("app"), COPY).is_some(), "recreated");

    // An intact copy past the lifetime costs one read and no write; then it is fresh again.
    tokio::time::sleep(trust + Duration::from_millis(100)).await;
    burst(&s, 3, false).await;
    assert_eq!(copy_calls(&api), (2, 0, 3));

    // Edited by hand: put back as it should be after the lifetime.
    let mut edited = api.get::<Secret>(Some("app"), COPY).unwrap();
    edited.data = Some(
        [(
            "metaurl".to_string(),
            k8s_openapi::ByteString(b"x".to_vec()),
        )]
        .into(),
    );
    api.put(&edited);
    tokio::time::sleep(trust + Duration::from_millis(100)).await;
    burst(&s, 1, false).await;
    assert_eq!(copy_calls(&api), (2, 1, 4), "read again, then replaced");
    let data = api.get::<Secret>(Some("app"), COPY).unwrap().data.unwrap();
    assert_eq!(data["metaurl"].0, b"redis://:pw@redis:6379/1");
}
