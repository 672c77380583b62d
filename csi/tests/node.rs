//! The node service through its unix socket, with Mount Pods run as real `juicefs` clients
//! on real FUSE mounts and real bind mounts into a temporary kubelet directory.

mod common;
use common::{NS, Rig, eventually, mount_capability};
use jfs_csi::proto::*;
use jfs_csi::target::{ref_key, refs};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_targets_share_one_client_and_the_last_unpublish_retires_it() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("shared");
    let (t1, t2) = (rig.target("pod-a", "pv-1"), rig.target("pod-b", "pv-1"));
    rig.publish("pv-1", &t1, &secrets).await.unwrap();
    rig.publish("pv-1", &t2, &secrets).await.unwrap();
    // Idempotent: publishing a live target again changes nothing.
    rig.publish("pv-1", &t1, &secrets).await.unwrap();

    let pods = rig.mount_pods();
    assert_eq!(pods.len(), 1, "one Mount Pod for one volume on one node");
    let pod = &pods[0];
    let mut got = refs(pod.metadata.annotations.as_ref());
    got.sort();
    let mut want = vec![t1.clone(), t2.clone()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(pod.labels()["app.kubernetes.io/name"], "juicefs-mount");
    assert_eq!(pod.labels()["volume-id"], "pv-1");
    assert_eq!(pod.finalizers(), ["juicefs.com/finalizer"]);
    assert_eq!(rig.running_clients(), 1);

    std::fs::write(format!("{t1}/hello"), b"through target one").unwrap();
    assert_eq!(
        std::fs::read(format!("{t2}/hello")).unwrap(),
        b"through target one"
    );

    rig.unpublish("pv-1", &t1).await.unwrap();
    assert!(!std::path::Path::new(&t1).exists(), "target removed");
    let pod: Pod = rig.api.get(Some(NS), &pod.name_any()).unwrap();
    assert_eq!(refs(pod.metadata.annotations.as_ref()), vec![t2.clone()]);
    assert_eq!(
        std::fs::read(format!("{t2}/hello")).unwrap(),
        b"through target one"
    );

    rig.unpublish("pv-1", &t2).await.unwrap();
    let name = pod.name_any();
    eventually("the Mount Pod is gone", 20, async || {
        rig.api.get::<Pod>(Some(NS), &name).is_none()
    })
    .await;
    eventually("the client exited", 20, async || rig.running_clients() == 0).await;
    let host = rig
        .mount_dir
        .join(format!("pv-1-{}", name.rsplit('-').next().unwrap()));
    assert!(!host.exists(), "the host mount path is cleaned up");
    // Unpublishing again is fine (kubelet retries).
    rig.unpublish("pv-1", &t2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_client_comes_back_and_targets_work_again() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("crashy");
    let t = rig.target("pod-a", "pv-2");
    rig.publish("pv-2", &t, &secrets).await.unwrap();
    std::fs::write(format!("{t}/kept"), b"closed before the crash").unwrap();
    let pod = rig.mount_pods().remove(0).name_any();
    let pid = rig.client_pid(&pod).unwrap();
    // The shell execs juicefs: the pid is the client's.
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    eventually("the target serves again", 15, async || {
        std::fs::read(format!("{t}/kept")).is_ok_and(|b| b == b"closed before the crash")
    })
    .await;
    let took = killed.elapsed();
    assert!(
        rig.client_pid(&pod).unwrap() != pid,
        "the runner restarted the client"
    );
    eprintln!("target back {took:?} after kill -9");
    assert!(took < Duration::from_secs(5), "recovery took {took:?}");
    std::fs::write(format!("{t}/after"), b"x").unwrap();
    // The app pod's owner learns why its open files failed, and where to look.
    let events: Vec<Event> = rig.api.list();
    let ev = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("JuiceFSClientRestarted"))
        .expect("an Event on the app pod about the restarted client");
    assert_eq!(ev.involved_object.name.as_deref(), Some("app"));
    let msg = ev.message.clone().unwrap_or_default();
    assert!(
        msg.contains(&pod) && msg.contains("reopen") && msg.contains("--previous"),
        "{msg}"
    );
    rig.unpublish("pv-2", &t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_publishes_make_one_pod_and_a_hundred_references() {
    let rig = Rig::start(Duration::from_secs(60)).await;
    let secrets = rig.volume_secrets("busy");
    let targets: Vec<String> = (0..100)
        .map(|i| rig.target(&format!("pod-{i}"), "pv-3"))
        .collect();
    let mut tasks = Vec::new();
    for t in &targets {
        let (node, req) = (rig.node.clone(), rig.publish_request("pv-3", t, &secrets));
        tasks.push(tokio::spawn(async move {
            node.clone().node_publish_volume(req).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let pods = rig.mount_pods();
    assert_eq!(pods.len(), 1);
    assert_eq!(refs(pods[0].metadata.annotations.as_ref()).len(), 100);
    assert_eq!(rig.running_clients(), 1);
    let creates = rig
        .api
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.uri.contains("/pods"))
        .count();
    assert_eq!(creates, 1);

    let mut tasks = Vec::new();
    for t in &targets {
        let (node, t) = (rig.node.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            node.clone()
                .node_unpublish_volume(NodeUnpublishVolumeRequest {
                    volume_id: "pv-3".into(),
                    target_path: t,
                })
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let name = pods[0].name_any();
    eventually("the Mount Pod is gone", 20, async || {
        rig.api.get::<Pod>(Some(NS), &name).is_none()
    })
    .await;
    let deletes = rig
        .api
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.uri.contains(&name))
        .count();
    assert_eq!(deletes, 1, "deleted exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_setting_gets_a_new_pod_and_delayed_deletion_waits() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("settings");
    let (t1, t2) = (rig.target("pod-a", "pv-4"), rig.target("pod-b", "pv-4"));
    let mut r1 = rig.publish_request("pv-4", &t1, &secrets);
    r1.volume_context
        .insert("juicefs/mount-delete-delay".into(), "3s".into());
    rig.node.clone().node_publish_volume(r1).await.unwrap();
    let mut r2 = rig.publish_request("pv-4", &t2, &secrets);
    r2.volume_context
        .insert("juicefs/mount-delete-delay".into(), "3s".into());
    r2.volume_context
        .insert("mountOptions".into(), "attr-cache=3".into());
    rig.node.clone().node_publish_volume(r2).await.unwrap();
    let pods = rig.mount_pods();
    assert_eq!(
        pods.len(),
        2,
        "a different setting hash gets its own Mount Pod"
    );
    assert_ne!(
        pods[0].labels()["juicefs-hash"],
        pods[1].labels()["juicefs-hash"]
    );

    rig.unpublish("pv-4", &t1).await.unwrap();
    let holder = pods
        .iter()
        .find(|p| p.annotations().contains_key(&ref_key(&t1)))
        .unwrap()
        .name_any();
    let pod: Pod = rig
        .api
        .get(Some(NS), &holder)
        .expect("kept during the delay");
    assert!(pod.annotations().contains_key("juicefs-delete-at"));
    assert!(pod.metadata.deletion_timestamp.is_none());
    eventually("deleted after the delay", 15, async || {
        rig.api.get::<Pod>(Some(NS), &holder).is_none()
    })
    .await;
    assert_eq!(rig.mount_pods().len(), 1, "the other setting's pod stays");
    rig.unpublish("pv-4", &t2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_the_reason() {
    use tonic::Code;
    let rig = Rig::start(Duration::from_secs(4)).await;
    let secrets = rig.volume_secrets("bad");
    let t = rig.target("pod-a", "pv-5");
    let call = |req: NodePublishVolumeRequest| {
        let mut node = rig.node.clone();
        async move { node.node_publish_volume(req).await.unwrap_err() }
    };

    let mut no_meta = secrets.clone();
    no_meta.remove("metaurl");
    let e = call(rig.publish_request("pv-5", &t, &no_meta)).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("metaurl"), "{}", e.message());

    for (path, why) in [
        ("/etc/cron.d/x".to_string(), "outside"),
        (format!("{}/pods/../../etc", rig.kubelet.display()), "'..'"),
        ("relative/pods/x".to_string(), "absolute"),
    ] {
        let e = call(rig.publish_request("pv-5", &path, &secrets)).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{path}");
        assert!(e.message().contains(why), "{path}: {}", e.message());
    }
    let mut block = rig.publish_request("pv-5", &t, &secrets);
    block.volume_capability = Some(VolumeCapability {
        access_mode: mount_capability(volume_capability::access_mode::Mode::SingleNodeWriter)
            .access_mode,
        access_type: Some(volume_capability::AccessType::Block(
            volume_capability::BlockVolume {},
        )),
    });
    let e = call(block).await;
    assert!(
        e.message().contains("block access is not supported"),
        "{}",
        e.message()
    );
    let e = call(rig.publish_request("", &t, &secrets)).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut opts = rig.publish_request("pv-5", &t, &secrets);
    opts.volume_context
        .insert("mountOptions".into(), "debug foreground".into());
    let e = call(opts).await;
    assert!(e.message().contains("comma-separated"), "{}", e.message());
    assert!(
        rig.mount_pods().is_empty(),
        "nothing created for refused requests"
    );

    // Unknown volume / target: unpublish is idempotent, stats say NotFound.
    rig.unpublish("pv-unknown", &rig.target("nobody", "pv-unknown"))
        .await
        .unwrap();
    let e = rig
        .node
        .clone()
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "pv-unknown".into(),
            volume_path: rig.target("nobody", "pv-unknown"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // A client that cannot start: Unavailable with its last log lines and an Event on the app pod.
    let mut dead = secrets.clone();
    dead.insert(
        "metaurl".into(),
        "postgres://nobody:x@127.0.0.1:1/none".into(),
    );
    let e = call(rig.publish_request("pv-6", &rig.target("pod-z", "pv-6"), &dead)).await;
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("did not mount"), "{}", e.message());
    assert!(e.message().contains("last log lines"), "{}", e.message());
    let events: Vec<Event> = rig.api.list();
    let ev = events
        .iter()
        .find(|e| e.involved_object.name.as_deref() == Some("app"))
        .expect("an Event on the app pod");
    assert_eq!(ev.reason.as_deref(), Some("JuiceFSMountFailed"));
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_only_targets_refuse_writes_and_stats_report_usage() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("readonly");
    let (rw, ro) = (rig.target("pod-w", "pv-7"), rig.target("pod-r", "pv-7"));
    rig.publish("pv-7", &rw, &secrets).await.unwrap();
    let mut req = rig.publish_request("pv-7", &ro, &secrets);
    req.volume_capability = Some(mount_capability(
        volume_capability::access_mode::Mode::MultiNodeReaderOnly,
    ));
    rig.node.clone().node_publish_volume(req).await.unwrap();
    std::fs::write(format!("{rw}/f"), b"data").unwrap();
    assert_eq!(std::fs::read(format!("{ro}/f")).unwrap(), b"data");
    let err = std::fs::write(format!("{ro}/g"), b"no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    let stats = rig
        .node
        .clone()
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "pv-7".into(),
            volume_path: rw.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 2);
    assert!(
        stats.usage[0].total > 0 && stats.usage[1].used >= 1,
        "{stats:?}"
    );
    assert!(!stats.volume_condition.unwrap().abnormal);

    let info = rig
        .node
        .clone()
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, common::NODE);
    let plugin = rig
        .identity
        .clone()
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plugin.name, "csi.juicefs.com");
    let probe = rig
        .identity
        .clone()
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    let caps = rig
        .identity
        .clone()
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        caps.capabilities.is_empty(),
        "a node plugin offers no controller service"
    );
    let ncaps = rig
        .node
        .clone()
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<i32> = ncaps
        .capabilities
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(node_service_capability::Type::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    use node_service_capability::rpc::Type;
    assert_eq!(
        kinds,
        vec![Type::GetVolumeStats as i32, Type::VolumeCondition as i32],
        "no STAGE_UNSTAGE, no EXPAND"
    );
    let e = rig
        .node
        .clone()
        .node_stage_volume(NodeStageVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    let e = rig
        .node
        .clone()
        .node_unstage_volume(NodeUnstageVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    let e = rig
        .node
        .clone()
        .node_expand_volume(NodeExpandVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    rig.unpublish("pv-7", &ro).await.unwrap();
    rig.unpublish("pv-7", &rw).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mount_pod_deleted_while_in_use_is_replaced_and_targets_rebound() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("evicted");
    let t = rig.target("pod-a", "pv-8");
    rig.publish("pv-8", &t, &secrets).await.unwrap();
    std::fs::write(format!("{t}/before"), b"kept").unwrap();
    let old = rig.mount_pods().remove(0).name_any();
    let old_pid = rig.client_pid(&old).unwrap();
    let api: kube::Api<Pod> = kube::Api::namespaced(rig.api.client(), NS);
    api.delete(&old, &Default::default()).await.unwrap();
    eventually("the old pod is gone", 20, async || {
        rig.api.get::<Pod>(Some(NS), &old).is_none()
    })
    .await;
    eventually("a replacement holds the reference", 20, async || {
        rig.mount_pods().iter().any(|p| {
            p.name_any() != old && refs(p.metadata.annotations.as_ref()) == vec![t.clone()]
        })
    })
    .await;
    // The old client is gone (SIGTERM, then SIGKILL as the kubelet does), so the target
    // must now be served by the replacement's client.
    eventually("the old client exited", 20, async || {
        rig.procs
            .lock()
            .unwrap()
            .get_mut(&old)
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(Some(_))))
    })
    .await;
    eventually("the target serves again", 20, async || {
        std::fs::read(format!("{t}/before")).is_ok_and(|b| b == b"kept")
    })
    .await;
    let new = rig.mount_pods().remove(0).name_any();
    assert_ne!(rig.client_pid(&new), Some(old_pid));
    std::fs::write(format!("{t}/after"), b"new client").unwrap();
    assert_eq!(rig.mount_pods().len(), 1);
    rig.unpublish("pv-8", &t).await.unwrap();
    eventually("no Mount Pod left", 20, async || {
        rig.mount_pods().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_mount_pod_of_a_volume_cleans_its_cache_when_asked() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("cleaned");
    let cache = rig.tmp.path().join("node-cache");
    let t = rig.target("pod-a", "pv-9");
    let mut req = rig.publish_request("pv-9", &t, &secrets);
    req.volume_context
        .insert("juicefs/clean-cache".into(), "true".into());
    req.volume_context.insert(
        "mountOptions".into(),
        format!("cache-dir={},free-space-ratio=0.01", cache.display()),
    );
    rig.node.clone().node_publish_volume(req).await.unwrap();
    std::fs::write(format!("{t}/f"), vec![5u8; 3 << 20]).unwrap();
    assert_eq!(std::fs::read(format!("{t}/f")).unwrap().len(), 3 << 20);
    let pod = rig.mount_pods().remove(0);
    let uuid = pod
        .annotations()
        .get("juicefs-uuid")
        .cloned()
        .expect("the node recorded the volume UUID");
    let raw = cache.join(&uuid).join("raw");
    eventually("blocks in the node's cache", 10, async || {
        std::fs::read_dir(raw.join("chunks")).is_ok()
    })
    .await;

    rig.unpublish("pv-9", &t).await.unwrap();
    eventually("the cache-clean Job ran", 20, async || {
        rig.api
            .list::<k8s_openapi::api::batch::v1::Job>()
            .iter()
            .any(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1))
    })
    .await;
    // A recovery pass whose cache still shows the deleted pod finalizes it a second time:
    // that must find the first Job, not start another.
    rig.pods.finalize(&pod).await.unwrap();
    let jobs = rig.api.list::<k8s_openapi::api::batch::v1::Job>();
    assert_eq!(jobs.len(), 1);
    let spec = jobs[0].spec.clone().unwrap().template.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(common::NODE));
    assert!(!raw.exists(), "the volume's cache is gone");
    assert!(cache.exists(), "only the volume's own directory is removed");
}

/// Mount Pods honour the settings on the PVC as sidecars do: a resource annotation on the
/// PVC bound to the volume's PV reaches the Mount Pod's container.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pvc_annotations_reach_the_mount_pod() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("pvcsettings");
    let pv: k8s_openapi::api::core::v1::PersistentVolume =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pv-9"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                     "claimRef": {"namespace": "app", "name": "data"},
                     "csi": {"driver": "csi.juicefs.com", "volumeHandle": "pv-9"}}
        }))
        .unwrap();
    let pvc: k8s_openapi::api::core::v1::PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "data", "namespace": "app",
                     "annotations": {"juicefs/mount-cpu-limit": "3", "juicefs/mount-memory-request": "300Mi"}},
        "spec": {"volumeName": "pv-9", "accessModes": ["ReadWriteMany"],
                 "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    rig.api.put(&pv);
    rig.api.put(&pvc);
    let t = rig.target("pod-a", "pv-9");
    rig.node
        .clone()
        .node_publish_volume(rig.publish_request("pv-9", &t, &secrets))
        .await
        .unwrap();
    let pods = rig.mount_pods();
    let res = pods[0].spec.as_ref().unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(res.limits.unwrap()["cpu"].0, "3");
    assert_eq!(res.requests.unwrap()["memory"].0, "300Mi");
    rig.unpublish("pv-9", &t).await.unwrap();
}

/// A target whose client does not answer reports an abnormal volume condition (kubelet
/// shows it on the pod) instead of hanging or failing the call; it reads as healthy again
/// once the client answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_client_reports_an_abnormal_volume_condition() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("hung");
    let t = rig.target("pod-a", "pv-10");
    rig.publish("pv-10", &t, &secrets).await.unwrap();
    let pod = rig.mount_pods().remove(0).name_any();
    let pid = rig.client_pid(&pod).unwrap() as i32;
    let stats = |node: &mut jfs_csi::proto::node_client::NodeClient<tonic::transport::Channel>| {
        let req = NodeGetVolumeStatsRequest {
            volume_id: "pv-10".into(),
            volume_path: t.clone(),
            ..Default::default()
        };
        let mut node = node.clone();
        async move { node.node_get_volume_stats(req).await.unwrap().into_inner() }
    };
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let hung = stats(&mut rig.node.clone()).await;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let cond = hung.volume_condition.expect("a volume condition");
    assert!(cond.abnormal, "{cond:?}");
    assert!(
        cond.message.contains("broken") && cond.message.contains(&t),
        "{}",
        cond.message
    );
    assert!(hung.usage.is_empty());
    let healthy = stats(&mut rig.node.clone()).await;
    assert!(
        !healthy
            .volume_condition
            .as_ref()
            .is_some_and(|c| c.abnormal)
            && healthy.usage.len() == 2,
        "{healthy:?}"
    );
    rig.unpublish("pv-10", &t).await.unwrap();
}
