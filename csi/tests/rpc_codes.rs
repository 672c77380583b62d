//! Status codes and messages of the CSI RPCs through the real unix socket (tonic client):
//! the Controller RPCs the driver does not offer, refused Node arguments and Secrets, the
//! request's `readonly` flag, DeleteVolume of a volume without a PV, and the node's readiness
//! probe before its Mount Pod cache has synced (the real `juicefs-csi` binary).

mod common;
use common::{
    FileVolume, NODE, NS, Rig, channel, eventually, juicefs, juicefs_umount, mount_capability,
    serve_controller, walk_count,
};
use jfs_csi::proto::controller_client::ControllerClient;
use jfs_csi::proto::identity_client::IdentityClient;
use jfs_csi::proto::volume_capability::access_mode::Mode;
use jfs_csi::proto::*;
use jfs_fakekube::FakeApi;
use std::path::Path;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

/// The controller service on a unix socket, as the controller binary serves it.
async fn controller() -> (tempfile::TempDir, FakeApi, ControllerClient<Channel>) {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let ch = serve_controller(tmp.path(), &api).await;
    (tmp, api, ControllerClient::new(ch))
}

fn assert_status<T: std::fmt::Debug>(
    what: &str,
    got: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    says: &str,
) {
    let e = got.expect_err(what);
    assert_eq!(e.code(), code, "{what}: {}", e.message());
    assert!(
        e.message().contains(says),
        "{what}: message {:?} should say {says:?}",
        e.message()
    );
}

#[tokio::test]
async fn controller_rpcs_it_does_not_offer_answer_unimplemented() {
    let (_tmp, _api, mut c) = controller().await;
    const ATTACH: &str = "JuiceFS volumes need no attach";
    const SNAP: &str = "snapshots are not supported";
    const NOT: &str = "not supported";
    let u = Code::Unimplemented;
    assert_status(
        "ControllerPublishVolume",
        c.controller_publish_volume(ControllerPublishVolumeRequest {
            volume_id: "pv-1".into(),
            node_id: NODE.into(),
            volume_capability: Some(mount_capability(Mode::MultiNodeMultiWriter)),
            ..Default::default()
        })
        .await,
        u,
        ATTACH,
    );
    assert_status(
        "ControllerUnpublishVolume",
        c.controller_unpublish_volume(ControllerUnpublishVolumeRequest {
            volume_id: "pv-1".into(),
            node_id: NODE.into(),
            ..Default::default()
        })
        .await,
        u,
        ATTACH,
    );
    assert_status(
        "ListVolumes",
        c.list_volumes(ListVolumesRequest::default()).await,
        u,
        NOT,
    );
    assert_status(
        "GetCapacity",
        c.get_capacity(GetCapacityRequest::default()).await,
        u,
        NOT,
    );
    assert_status(
        "CreateSnapshot",
        c.create_snapshot(CreateSnapshotRequest {
            source_volume_id: "pv-1".into(),
            name: "snap-1".into(),
            ..Default::default()
        })
        .await,
        u,
        SNAP,
    );
    assert_status(
        "DeleteSnapshot",
        c.delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: "snap-1".into(),
            ..Default::default()
        })
        .await,
        u,
        SNAP,
    );
    assert_status(
        "ListSnapshots",
        c.list_snapshots(ListSnapshotsRequest::default()).await,
        u,
        SNAP,
    );
    assert_status(
        "GetSnapshot",
        c.get_snapshot(GetSnapshotRequest {
            snapshot_id: "snap-1".into(),
            ..Default::default()
        })
        .await,
        u,
        SNAP,
    );
    assert_status(
        "ControllerGetVolume",
        c.controller_get_volume(ControllerGetVolumeRequest {
            volume_id: "pv-1".into(),
        })
        .await,
        u,
        NOT,
    );
    assert_status(
        "ControllerModifyVolume",
        c.controller_modify_volume(ControllerModifyVolumeRequest {
            volume_id: "pv-1".into(),
            ..Default::default()
        })
        .await,
        u,
        NOT,
    );

    // And the capabilities advertise none of them.
    use controller_service_capability::rpc::Type;
    let caps = c
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(controller_service_capability::Type::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![Type::CreateDeleteVolume as i32, Type::ExpandVolume as i32]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_unpublish_refuses_missing_or_foreign_targets_with_the_reason() {
    let rig = Rig::start(Duration::from_secs(4)).await;
    let unpublish = |volume: &str, target: &str| {
        let mut node = rig.node.clone();
        let req = NodeUnpublishVolumeRequest {
            volume_id: volume.into(),
            target_path: target.into(),
        };
        async move { node.node_unpublish_volume(req).await }
    };
    let good = rig.target("pod-a", "pv-1");
    assert_status(
        "empty volume_id",
        unpublish("", &good).await,
        Code::InvalidArgument,
        "volume_id is required",
    );
    assert_status(
        "empty target_path",
        unpublish("pv-1", "").await,
        Code::InvalidArgument,
        "target_path is required",
    );

    // An empty directory outside the kubelet's pods directory: an unpublish that went ahead
    // would unmount it and remove it.
    let outside = rig.tmp.path().join("outside/dir");
    std::fs::create_dir_all(&outside).unwrap();
    let outside = outside.display().to_string();
    let kubelet = rig.kubelet.display().to_string();
    for (path, why) in [
        (outside.clone(), "is outside the kubelet pods directory"),
        (
            "/etc/cron.d/x".to_string(),
            "is outside the kubelet pods directory",
        ),
        (
            format!("{kubelet}X/pods/a/mount"),
            "is outside the kubelet pods directory",
        ),
        (
            format!("{kubelet}/pods"),
            "is outside the kubelet pods directory",
        ),
        (
            format!("{kubelet}/pods/../../outside/dir"),
            "must not contain '.' or '..' components",
        ),
        (
            format!("{kubelet}/pods/a/../b/mount"),
            "must not contain '.' or '..' components",
        ),
        ("relative/pods/x".to_string(), "must be absolute"),
    ] {
        let e = unpublish("pv-1", &path).await.expect_err(&path);
        assert_eq!(e.code(), Code::InvalidArgument, "{path}: {}", e.message());
        assert!(e.message().contains(why), "{path}: {}", e.message());
        assert!(
            e.message().contains(&path),
            "{path}: the message names the path: {}",
            e.message()
        );
    }
    assert!(
        Path::new(&outside).is_dir(),
        "a refused unpublish removes nothing"
    );
    // A good target that was never published: idempotent success.
    unpublish("pv-1", &good).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_get_volume_stats_requires_volume_id_and_volume_path() {
    let rig = Rig::start(Duration::from_secs(4)).await;
    let good = rig.target("pod-a", "pv-1");
    for (id, path, what) in [
        ("", good.as_str(), "empty volume_id"),
        ("pv-1", "", "empty volume_path"),
        ("", "", "both empty"),
    ] {
        assert_status(
            what,
            rig.node
                .clone()
                .node_get_volume_stats(NodeGetVolumeStatsRequest {
                    volume_id: id.into(),
                    volume_path: path.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "volume_id and volume_path are required",
        );
    }
}

/// Stats for a path outside the kubelet pods directory (or climbing out of it with `..`)
/// must be refused like the same path in publish and unpublish, not answered with the
/// usage of whatever file system lies there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_get_volume_stats_refuses_paths_outside_the_kubelet_dir() {
    let rig = Rig::start(Duration::from_secs(4)).await;
    let kubelet = rig.kubelet.display().to_string();
    let mut wrong = Vec::new();
    for (path, why) in [
        // Mount points: "/" is one, so a stat there reports the host's root file system.
        ("/".to_string(), "outside"),
        ("/proc".to_string(), "outside"),
        (rig.tmp.path().display().to_string(), "outside"),
        (format!("{kubelet}/pods/../../.."), "'..'"),
    ] {
        let got = rig
            .node
            .clone()
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: "pv-1".into(),
                volume_path: path.clone(),
                ..Default::default()
            })
            .await;
        match got {
            Err(e) if e.code() == Code::InvalidArgument && e.message().contains(why) => {}
            Err(e) => wrong.push(format!("{path}: {:?} {:?}", e.code(), e.message())),
            Ok(r) => wrong.push(format!("{path}: answered OK {:?}", r.into_inner())),
        }
    }
    assert!(
        wrong.is_empty(),
        "expected InvalidArgument naming the problem, got:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_publish_without_a_volume_capability_is_refused() {
    let rig = Rig::start(Duration::from_secs(4)).await;
    let secrets = rig.volume_secrets("nocap");
    let t = rig.target("pod-a", "pv-1");
    let mut req = rig.publish_request("pv-1", &t, &secrets);
    req.volume_capability = None;
    assert_status(
        "no volume_capability",
        rig.node.clone().node_publish_volume(req).await,
        Code::InvalidArgument,
        "volume_capability is required",
    );
    let mut req = rig.publish_request("pv-1", &t, &secrets);
    req.volume_capability.as_mut().unwrap().access_type = None;
    assert_status(
        "no access type",
        rig.node.clone().node_publish_volume(req).await,
        Code::InvalidArgument,
        "volume_capability has no access type",
    );
    assert!(rig.mount_pods().is_empty(), "nothing created");
    assert!(!Path::new(&t).exists(), "no target created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_publish_names_the_missing_secret_key() {
    let rig = Rig::start(Duration::from_secs(4)).await;
    let secrets = rig.volume_secrets("badsecret");
    let meta = secrets["metaurl"].clone();
    let t = rig.target("pod-a", "pv-1");

    let mut no_name = secrets.clone();
    no_name.remove("name");
    let mut blank_name = secrets.clone();
    blank_name.insert("name".into(), "  ".into());
    let mut no_meta = secrets.clone();
    no_meta.remove("metaurl");
    for (what, s, key) in [
        ("no name", no_name, "name"),
        ("blank name", blank_name, "name"),
        // The first required key is named: the volume name.
        ("empty map", Default::default(), "name"),
        ("no metaurl", no_meta, "metaurl"),
    ] {
        let e = rig
            .node
            .clone()
            .node_publish_volume(rig.publish_request("pv-1", &t, &s))
            .await
            .expect_err(what);
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {}", e.message());
        assert!(
            e.message()
                .contains(&format!("key {key:?} is missing or empty")),
            "{what}: {}",
            e.message()
        );
        assert!(
            e.message().contains("pv-1"),
            "{what}: names the volume: {}",
            e.message()
        );
        assert!(
            !e.message().contains(&meta),
            "{what}: the metaurl value must not be echoed: {}",
            e.message()
        );
    }
    assert!(
        rig.mount_pods().is_empty(),
        "nothing created for bad Secrets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readonly_flag_alone_gives_a_read_only_bind() {
    let rig = Rig::start(Duration::from_secs(30)).await;
    let secrets = rig.volume_secrets("roflag");
    let (rw, ro) = (rig.target("pod-w", "pv-ro"), rig.target("pod-r", "pv-ro"));
    rig.publish("pv-ro", &rw, &secrets).await.unwrap();
    // A writer access mode: only the request's readonly flag asks for read-only.
    let mut req = rig.publish_request("pv-ro", &ro, &secrets);
    req.readonly = true;
    assert_eq!(
        req.volume_capability
            .as_ref()
            .unwrap()
            .access_mode
            .unwrap()
            .mode,
        Mode::MultiNodeMultiWriter as i32
    );
    rig.node.clone().node_publish_volume(req).await.unwrap();

    std::fs::write(format!("{rw}/f"), b"data").unwrap();
    assert_eq!(std::fs::read(format!("{ro}/f")).unwrap(), b"data");
    let err = std::fs::write(format!("{ro}/g"), b"no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::create_dir(format!("{ro}/d")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::remove_file(format!("{ro}/f")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert!(Path::new(&format!("{rw}/f")).exists());

    // The mount table says so too; the writer's target stays writable.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let opts = |t: &str| -> Vec<String> {
        info.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.get(4) == Some(&t)).then(|| f[5].to_string())
            })
            .collect()
    };
    let (ro_opts, rw_opts) = (opts(&ro), opts(&rw));
    assert!(
        !ro_opts.is_empty() && ro_opts.iter().all(|o| o.split(',').any(|x| x == "ro")),
        "{ro}: {ro_opts:?}"
    );
    assert!(
        !rw_opts.is_empty() && rw_opts.iter().all(|o| o.split(',').any(|x| x == "rw")),
        "{rw}: {rw_opts:?}"
    );
    std::fs::write(format!("{rw}/h"), b"still writable").unwrap();

    rig.unpublish("pv-ro", &ro).await.unwrap();
    rig.unpublish("pv-ro", &rw).await.unwrap();
}

/// Without a PV neither the directory nor the reclaim policy is known: DeleteVolume
/// succeeds (the provisioner must not retry forever) and removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_volume_of_an_unknown_volume_succeeds_and_removes_nothing() {
    let (tmp, api, mut c) = controller().await;
    let FileVolume { meta, data, mp } =
        FileVolume::with_dirs(tmp.path(), "unknownvol", &["pvc-unknown/deep", "pvc-other"]);
    let before = walk_count(&data);
    assert!(before > 0);

    let del = DeleteVolumeRequest {
        volume_id: "pvc-unknown".into(),
        secrets: [("metaurl".to_string(), meta.clone())].into(),
    };
    c.delete_volume(del.clone()).await.unwrap();
    // Again (the provisioner retries): still fine.
    c.delete_volume(del).await.unwrap();
    assert!(
        api.requests()
            .iter()
            .any(|r| r.method == "GET" && r.uri.contains("persistentvolumes/pvc-unknown")),
        "the PV was looked up: {:?}",
        api.requests()
    );
    assert!(
        api.requests().iter().all(|r| !r.is_write()),
        "nothing written to the API: {:?}",
        api.requests()
    );

    juicefs(&["mount", "-d", &meta, &mp.display().to_string()]);
    let state = (
        mp.join("pvc-unknown/deep/f").exists(),
        mp.join("pvc-other/f").exists(),
    );
    juicefs_umount(&mp);
    assert_eq!(state, (true, true), "both directories kept");
    assert_eq!(walk_count(&data), before, "no object removed");
}

/// Kills the child this test started (by its own handle) when the test ends.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real node binary: its Identity Probe answers ready=false while its Mount Pod cache
/// cannot sync (the API refuses the list), and ready=true once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_probe_is_not_ready_until_the_mount_pod_cache_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let pods_path = format!("namespaces/{NS}/pods");
    api.fail(Some("GET"), &pods_path, 500, None);
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let sock = tmp.path().join("csi.sock");
    let kubelet = tmp.path().join("kubelet");
    std::fs::create_dir_all(kubelet.join("pods")).unwrap();
    let _child = Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_juicefs-csi"))
            .arg("node")
            .arg("--endpoint")
            .arg(format!("unix://{}", sock.display()))
            .args(["--metrics-port", "0", "--namespace", NS, "--node-id", NODE])
            .arg("--kubelet-dir")
            .arg(&kubelet)
            .arg("--mount-dir")
            .arg(tmp.path().join("host-jfs"))
            .arg("--config")
            .arg(tmp.path().join("none.yaml"))
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("NODE_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("starting juicefs-csi"),
    );
    eventually("the CSI socket", 20, async || sock.exists()).await;
    let mut id = IdentityClient::new(channel(sock.clone()).await);
    // The binary has tried (and failed) to list its Mount Pods: not ready.
    eventually("a refused Mount Pod list", 20, async || {
        api.requests()
            .iter()
            .any(|r| r.method == "GET" && r.uri.contains(&pods_path))
    })
    .await;
    for _ in 0..5 {
        let p = id.probe(ProbeRequest {}).await.unwrap().into_inner();
        assert_eq!(p.ready, Some(false), "ready before the cache synced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Identity answers the rest meanwhile.
    let info = id
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "csi.juicefs.com");

    api.clear_faults();
    eventually("ready after the cache synced", 60, async || {
        id.clone()
            .probe(ProbeRequest {})
            .await
            .is_ok_and(|p| p.into_inner().ready == Some(true))
    })
    .await;
}
