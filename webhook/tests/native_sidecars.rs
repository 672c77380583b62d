//! Native or classic sidecars from the API server's `/version` (served by `jfs-fakekube`):
//! read at start, refreshed in the background (an upgrade to 1.29+ switches admissions to
//! native sidecars without a restart), overridden by `enableNativeSidecar`, classic when the
//! version is unreadable, and kept when the API server does not answer.

mod common;
use base64::Engine;
use common::server::{Pki, Server, start};
use jfs_fakekube::FakeApi;
use jfs_mountspec::GlobalConfig;
use jfs_webhook::server::INJECT_PATH;
use jfs_webhook::version::{self, ApiVersion, VersionCache};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn native(s: &Server) -> bool {
    s.state.config.read().unwrap().native
}

/// Waits until `native` becomes `want` (the refresh loop runs every 50 ms).
async fn wait_native(s: &Server, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while native(s) != want {
        assert!(Instant::now() < deadline, "native never became {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where an admission puts the sidecar: "initContainers" (native) or "containers".
async fn placement(s: &Server) -> String {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "namespace": "app", "operation": "CREATE", "dryRun": true,
                    "object": {"metadata": {"name": "p", "namespace": "app"},
                        "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                                 "containers": [{"name": "app", "image": "busybox",
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}}
    });
    let (code, body, _) = s
        .call("POST", INJECT_PATH, &serde_json::to_vec(&review).unwrap())
        .await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let patch = base64::engine::general_purpose::STANDARD
        .decode(v["response"]["patch"].as_str().unwrap())
        .unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&patch).unwrap();
    let op = ops
        .iter()
        .find(|o| o["value"].to_string().contains("jfs-mount"))
        .expect("the sidecar is added");
    op["path"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(2)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_picks_up_a_version_change() {
    let api = FakeApi::start().await;
    api.set_version("1", "28", "v1.28.9");
    let client = api.client();
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &Pki::new()).await;

    // At start: 1.28, classic.
    let cache = Arc::new(VersionCache::default());
    assert_eq!(
        cache.fetch(&client).await,
        Ok(Some(ApiVersion {
            major: 1,
            minor: 28
        }))
    );
    assert_eq!(version::apply(&s.state, &cache), Some(false));
    assert_eq!(placement(&s).await, "containers");

    tokio::spawn(version::refresh_loop(
        s.state.clone(),
        cache.clone(),
        Arc::new(client.clone()),
        Duration::from_millis(50),
    ));

    // The control plane is upgraded (as EKS reports it): native from the next refresh.
    api.set_version("1", "30+", "v1.30.2-eks-7f9249a");
    wait_native(&s, true).await;
    assert_eq!(placement(&s).await, "initContainers");

    // The API server stops answering /version: the last version stays.
    api.fail(Some("GET"), "/version", 500, None);
    let before = api.requests().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.requests()[before..]
        .iter()
        .filter(|r| r.uri == "/version")
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "the refresh stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(native(&s), "kept while the API server is silent");
    api.clear_faults();

    // The ConfigMap forces classic: the version no longer matters.
    version::apply_with(&s.state, &cache, |c| {
        c.global = GlobalConfig {
            enable_native_sidecar: Some(false),
            ..GlobalConfig::default()
        }
    });
    assert!(!native(&s));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!native(&s), "the refresh keeps the override");
    assert_eq!(placement(&s).await, "containers");

    // Override removed: native again (1.30).
    version::apply_with(&s.state, &cache, |c| c.global = GlobalConfig::default());
    assert!(native(&s));

    // An answer without a readable version: classic.
    api.set_version("", "", "unknown");
    wait_native(&s, false).await;
    assert_eq!(cache.get(), None);

    // Only gitVersion, and it says 1.29: native.
    api.set_version("", "", "v1.29.0");
    wait_native(&s, true).await;
}
