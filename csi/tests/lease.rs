//! Leader election against the in-memory API: one holder at a time, takeover after expiry
//! or release; and the leader's work, releasing Mount Pods whose node is gone.

use jfs_csi::lease::Elector;
use jfs_fakekube::FakeApi;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use std::time::Duration;

#[tokio::test]
async fn one_holder_at_a_time() {
    let api = FakeApi::start().await;
    let a = Elector::new(
        api.client(),
        "jfs",
        "lease-x",
        "replica-a",
        Duration::from_secs(1),
    );
    let b = Elector::new(
        api.client(),
        "jfs",
        "lease-x",
        "replica-b",
        Duration::from_secs(1),
    );
    assert!(a.try_acquire().await.unwrap());
    assert!(
        !b.try_acquire().await.unwrap(),
        "b must wait while a's Lease is valid"
    );
    assert!(a.try_acquire().await.unwrap(), "a renews");
    let l: Lease = api.get(Some("jfs"), "lease-x").unwrap();
    assert_eq!(
        l.spec.unwrap().holder_identity.as_deref(),
        Some("replica-a")
    );

    // a stops renewing: once the Lease has expired, b takes it and a follows.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(b.try_acquire().await.unwrap());
    assert!(!a.try_acquire().await.unwrap());
    let l: Lease = api.get(Some("jfs"), "lease-x").unwrap();
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));

    // Released on shutdown: a takes over at once.
    b.release().await;
    assert!(a.try_acquire().await.unwrap());
}

fn mount_pod(name: &str, node: &str, deleting: bool) -> Pod {
    let mut meta = serde_json::json!({"name": name, "namespace": "jfs",
        "labels": {"app.kubernetes.io/name": "juicefs-mount"}, "finalizers": ["juicefs.com/finalizer"]});
    if deleting {
        meta["deletionTimestamp"] = serde_json::json!("2026-11-22T10:00:00Z");
    }
    serde_json::from_value(
        serde_json::json!({"metadata": meta, "spec": {"nodeName": node, "containers": []}}),
    )
    .unwrap()
}

#[tokio::test]
async fn the_leader_releases_mount_pods_of_removed_nodes() {
    let api = FakeApi::start().await;
    api.put::<Node>(
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "node-1"}})).unwrap(),
    );
    api.put(&mount_pod("on-live-node", "node-1", true));
    api.put(&mount_pod("on-gone-node", "node-2", true));
    api.put(&mount_pod("running-on-gone-node", "node-2", false));
    let freed = jfs_csi::orphans::pass(&api.client(), "jfs").await.unwrap();
    assert_eq!(freed, 1);
    assert!(
        api.get::<Pod>(Some("jfs"), "on-gone-node").is_none(),
        "finalizer removed: the pod is gone"
    );
    assert!(
        api.get::<Pod>(Some("jfs"), "on-live-node").is_some(),
        "its node plugin finalises it"
    );
    assert!(
        api.get::<Pod>(Some("jfs"), "running-on-gone-node")
            .is_some()
    );
    assert_eq!(
        jfs_csi::orphans::pass(&api.client(), "jfs").await.unwrap(),
        0
    );
}
