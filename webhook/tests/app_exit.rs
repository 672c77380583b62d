//! Jobs with classic sidecars complete: the decision (`app_exited`) for each container state
//! and restart policy, and the watcher against a fake API server marking exactly the pods
//! whose app has exited, once.

use jfs_fakekube::FakeApi;
use jfs_mountspec::container::{ANNOTATION_APP_EXITED, LABEL_EXIT_ON_APP_EXIT};
use jfs_webhook::app_exit::app_exited;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn state(s: &str) -> Value {
    match s {
        "running" => json!({"running": {"startedAt": "2026-11-22T10:00:00Z"}}),
        "ok" => json!({"terminated": {"exitCode": 0}}),
        "failed" => json!({"terminated": {"exitCode": 2}}),
        _ => json!({"waiting": {"reason": "CrashLoopBackOff"}}),
    }
}

fn pod(name: &str, restart: &str, labelled: bool, app: &[&str]) -> Pod {
    let mut containers = vec![json!({"name": "jfs-mount", "image": "m"})];
    let mut statuses = vec![
        json!({"name": "jfs-mount", "ready": true, "restartCount": 0,
        "image": "m", "imageID": "", "state": state("running")}),
    ];
    for (i, s) in app.iter().enumerate() {
        let n = format!("app-{i}");
        containers.push(json!({"name": n, "image": "busybox"}));
        statuses.push(json!({"name": n, "ready": false, "restartCount": 0,
            "image": "busybox", "imageID": "", "state": state(s)}));
    }
    let labels = if labelled {
        json!({LABEL_EXIT_ON_APP_EXIT: "true", "done.sidecar.juicefs.com/inject": "true"})
    } else {
        json!({"done.sidecar.juicefs.com/inject": "true"})
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "batch", "labels": labels},
        "spec": {"restartPolicy": restart, "containers": containers},
        "status": {"phase": "Running", "containerStatuses": statuses}
    }))
    .unwrap()
}

#[test]
fn decides_from_container_states_and_restart_policy() {
    assert!(app_exited(&pod("a", "Never", true, &["ok"])));
    assert!(app_exited(&pod("a", "Never", true, &["failed", "ok"])));
    assert!(!app_exited(&pod("a", "Never", true, &["ok", "running"])));
    assert!(app_exited(&pod("a", "OnFailure", true, &["ok"])));
    // OnFailure restarts a failed container: not the end yet.
    assert!(!app_exited(&pod("a", "OnFailure", true, &["failed"])));
    assert!(!app_exited(&pod("a", "OnFailure", true, &["waiting"])));
    assert!(!app_exited(&pod("a", "Always", true, &["ok"])));
    assert!(
        !app_exited(&pod("a", "Never", false, &["ok"])),
        "not opted in"
    );
    let mut marked = pod("a", "Never", true, &["ok"]);
    marked.metadata.annotations =
        Some([(ANNOTATION_APP_EXITED.to_string(), "t".to_string())].into());
    assert!(!app_exited(&marked), "already marked");
    let mut no_status = pod("a", "Never", true, &["ok"]);
    no_status.status = None;
    assert!(!app_exited(&no_status));
}

fn annotation(api: &FakeApi, name: &str) -> Option<String> {
    api.get::<Pod>(Some("batch"), name)?
        .metadata
        .annotations?
        .get(ANNOTATION_APP_EXITED)
        .cloned()
}

#[tokio::test]
async fn watcher_marks_finished_job_pods_once() {
    let api = FakeApi::start().await;
    api.put(&pod("still-running", "Never", true, &["running"]));
    api.put(&pod("finished-before-start", "Never", true, &["ok"]));
    api.put(&pod("not-labelled", "Never", false, &["ok"]));
    tokio::spawn(jfs_webhook::app_exit::run(api.client()));

    let deadline = Instant::now() + Duration::from_secs(10);
    while annotation(&api, "finished-before-start").is_none() {
        assert!(
            Instant::now() < deadline,
            "a pod that had finished was not marked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(annotation(&api, "still-running").is_none());

    // The app of the running pod exits: the watch event leads to the mark.
    api.put(&pod("still-running", "Never", true, &["ok"]));
    while annotation(&api, "still-running").is_none() {
        assert!(
            Instant::now() < deadline,
            "the pod whose app exited was not marked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(annotation(&api, "not-labelled").is_none());
    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2, "one patch per finished pod: {patches:?}");
    // The watch is narrowed to labelled pods.
    assert!(api.requests().iter().any(|r| {
        r.uri
            .contains("labelSelector=juicefs.com%2Fexit-on-app-exit%3Dtrue")
    }));
}
