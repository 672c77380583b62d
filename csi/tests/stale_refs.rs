//! References that outlive their app pod (force-deleted pod, node rebooted before kubelet
//! could unpublish) are dropped, using the kubelet's `/pods` or, when it refuses, the API
//! server; a target that is still mounted is never touched.

mod common;
use common::{NODE, NS, Rig};
use jfs_csi::podlist::PodLister;
use jfs_csi::recovery::sweep_stale_refs;
use jfs_csi::target::refs;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::time::Duration;

fn app_pod(uid: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("app-{uid}"), "namespace": "default", "uid": uid},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "busybox"}]}
    }))
    .unwrap()
}

/// A stand-in kubelet answering `GET /pods` with `status` and these pods.
async fn fake_kubelet(status: u16, pods: Vec<Pod>) -> kube::Client {
    let list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods});
    let app = axum::Router::new().route(
        "/pods",
        axum::routing::get(move || {
            let list = list.clone();
            async move {
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    axum::Json(list),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn references_of_gone_app_pods_are_dropped_and_nothing_else() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("stale");
    let (ta, tb, tc) = (
        rig.target("uid-a", "pv-s"),
        rig.target("uid-b", "pv-s"),
        rig.target("uid-c", "pv-s"),
    );
    for t in [&ta, &tb, &tc] {
        rig.publish("pv-s", t, &secrets).await.unwrap();
    }
    // uid-a was force-deleted and its bind is gone (node reboot); uid-c is gone from the API
    // too but its target is still mounted; uid-b is alive.
    rig.api.put(&app_pod("uid-b"));
    jfs_csi::mounts::unmount_all(std::path::Path::new(&ta)).unwrap();

    // The kubelet refuses (401): the API server answers instead.
    let refusing = PodLister::new(
        Some(fake_kubelet(401, vec![]).await),
        rig.api.client(),
        NODE,
    );
    assert_eq!(sweep_stale_refs(&rig.pods, &refusing).await, 1);
    let pod = rig.mount_pods().remove(0);
    let mut left = refs(pod.metadata.annotations.as_ref());
    left.sort();
    assert_eq!(
        left,
        vec![tb.clone(), tc.clone()],
        "only the unmounted target of a gone pod is dropped"
    );
    assert!(
        rig.api
            .requests()
            .iter()
            .any(|r| r.uri.contains("fieldSelector=spec.nodeName%3Dnode-1"))
    );

    // The kubelet answers: it is believed, and the API server is not asked.
    jfs_csi::mounts::unmount_all(std::path::Path::new(&tc)).unwrap();
    let kubelet = PodLister::new(
        Some(fake_kubelet(200, vec![app_pod("uid-b"), app_pod("uid-c")]).await),
        rig.api.client(),
        NODE,
    );
    rig.api.clear_requests();
    assert_eq!(
        sweep_stale_refs(&rig.pods, &kubelet).await,
        0,
        "the kubelet still runs uid-c"
    );
    assert!(
        !rig.api
            .requests()
            .iter()
            .any(|r| r.uri.starts_with("/api/v1/pods"))
    );
    let kubelet = PodLister::new(
        Some(fake_kubelet(200, vec![app_pod("uid-b")]).await),
        rig.api.client(),
        NODE,
    );
    assert_eq!(sweep_stale_refs(&rig.pods, &kubelet).await, 1);
    let pod = rig.mount_pods().remove(0);
    assert_eq!(refs(pod.metadata.annotations.as_ref()), vec![tb.clone()]);
    assert_eq!(
        rig.mount_pods()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(NS))
            .count(),
        1
    );
    rig.unpublish("pv-s", &tb).await.unwrap();
}
