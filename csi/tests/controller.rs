//! The controller service through its unix socket: volumes per PV name or pathPattern
//! (filled from the PVC, never escaping), capability checks, expansion, and the RPCs it
//! does not offer answered Unimplemented.

mod common;
use common::{FileVolume, juicefs, mount_capability, serve_controller, walk_count};
use jfs_csi::proto::controller_client::ControllerClient;
use jfs_csi::proto::identity_client::IdentityClient;
use jfs_csi::proto::volume_capability::access_mode::Mode;
use jfs_csi::proto::*;
use jfs_fakekube::FakeApi;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use std::collections::HashMap;
use tonic::Code;
use tonic::transport::Channel;

async fn start() -> (
    tempfile::TempDir,
    FakeApi,
    ControllerClient<Channel>,
    IdentityClient<Channel>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.put::<PersistentVolumeClaim>(
        &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data", "namespace": "team-a",
                         "labels": {"app": "web", "bad": "../.."}},
            "spec": {}
        }))
        .unwrap(),
    );
    let ch = serve_controller(tmp.path(), &api).await;
    (
        tmp,
        api,
        ControllerClient::new(ch.clone()),
        IdentityClient::new(ch),
    )
}

fn create(name: &str, params: &[(&str, &str)], mode: Mode) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 5 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_capability(mode)],
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

#[tokio::test]
async fn creates_volumes_by_name_or_pattern() {
    let (_tmp, _api, mut c, mut id) = start().await;
    let v = c
        .create_volume(create(
            "pvc-1234",
            &[("juicefs/mount-cpu-limit", "2")],
            Mode::MultiNodeMultiWriter,
        ))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, "pvc-1234");
    assert_eq!(v.capacity_bytes, 5 << 30);
    assert_eq!(v.volume_context["subPath"], "pvc-1234");
    assert_eq!(v.volume_context["capacity"], (5u64 << 30).to_string());
    assert_eq!(v.volume_context["juicefs/mount-cpu-limit"], "2");

    let meta = [
        ("csi.storage.k8s.io/pvc/name", "data"),
        ("csi.storage.k8s.io/pvc/namespace", "team-a"),
        (
            "pathPattern",
            "${.pvc.namespace}/${.pvc.labels.app}-${.pvc.name}",
        ),
    ];
    let v = c
        .create_volume(create("pvc-5678", &meta, Mode::MultiNodeReaderOnly))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_context["subPath"], "team-a/web-data");
    assert!(!v.volume_context.contains_key("pathPattern"));
    assert!(
        !v.volume_context
            .keys()
            .any(|k| k.starts_with("csi.storage.k8s.io/"))
    );

    let caps = c
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caps.capabilities.len(), 2);
    let pc = id
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pc.capabilities.len(), 1, "CONTROLLER_SERVICE");
}

#[tokio::test]
async fn refuses_what_it_cannot_do_with_the_reason() {
    let (_tmp, _api, mut c, _) = start().await;
    let meta = |pattern: &'static str| {
        [
            ("csi.storage.k8s.io/pvc/name", "data"),
            ("csi.storage.k8s.io/pvc/namespace", "team-a"),
            ("pathPattern", pattern),
        ]
    };
    for (pattern, why) in [
        ("${.pvc.labels.bad}", "'/'"),
        ("../${.pvc.name}", "'..'"),
        ("${.pvc.labels.nope}", "no label"),
    ] {
        let e = c
            .create_volume(create("pvc-x", &meta(pattern), Mode::MultiNodeMultiWriter))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{pattern}");
        assert!(e.message().contains(why), "{pattern}: {}", e.message());
    }
    let e = c
        .create_volume(create("pvc-ro", &[], Mode::MultiNodeReaderOnly))
        .await
        .unwrap_err();
    assert!(e.message().contains("pathPattern"), "{}", e.message());
    let mut block = create("pvc-b", &[], Mode::SingleNodeWriter);
    block.volume_capabilities[0].access_type = Some(volume_capability::AccessType::Block(
        volume_capability::BlockVolume {},
    ));
    let e = c.create_volume(block).await.unwrap_err();
    assert!(e.message().contains("block access is not supported"));
    let e = c
        .create_volume(create("", &[], Mode::SingleNodeWriter))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .create_volume(create("../x", &[], Mode::SingleNodeWriter))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let ok = c
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: "pvc-1".into(),
            volume_capabilities: vec![mount_capability(Mode::MultiNodeMultiWriter)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.confirmed.is_some());
    let mut bad = mount_capability(Mode::SingleNodeWriter);
    bad.access_type = Some(volume_capability::AccessType::Block(
        volume_capability::BlockVolume {},
    ));
    let no = c
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: "pvc-1".into(),
            volume_capabilities: vec![bad],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(no.confirmed.is_none() && no.message.contains("block"));

    let grown = c
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: "pvc-1".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 10 << 30,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (grown.capacity_bytes, grown.node_expansion_required),
        (10 << 30, false)
    );
    let e = c
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: "pvc-1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .create_snapshot(CreateSnapshotRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let e = c
        .delete_volume(DeleteVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

fn pv(name: &str, sub_path: &str, policy: &str) -> k8s_openapi::api::core::v1::PersistentVolume {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"persistentVolumeReclaimPolicy": policy, "accessModes": ["ReadWriteMany"],
                 "capacity": {"storage": "1Gi"},
                 "csi": {"driver": "csi.juicefs.com", "volumeHandle": name,
                         "nodePublishSecretRef": {"name": "jfs", "namespace": "kube-system"},
                         "volumeAttributes": {"subPath": sub_path}}}
    }))
    .unwrap()
}

/// DeleteVolume removes the volume's directory and its data, and nothing else: not a
/// directory another PV uses or that holds another PV's directory (whatever its Secret),
/// not one whose PV retains its data or is gone, never the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_volume_removes_only_what_it_owns() {
    let (tmp, api, mut c, _) = start().await;
    let dirs = [
        "pvc-gone/deep/er",
        "shared",
        "kept",
        "other",
        "team/web",
        "ghost",
    ];
    let FileVolume { meta, data, mp } = FileVolume::with_dirs(tmp.path(), "delvol", &dirs);
    let objects = || walk_count(&data);
    let before = objects();
    api.put(&pv("pvc-gone", "pvc-gone", "Delete"));
    api.put(&pv("pv-shared-1", "shared", "Delete"));
    api.put(&pv("pv-shared-2", "shared", "Delete"));
    api.put(&pv("pv-kept", "kept", "Retain"));
    api.put(&pv("pv-root", "/", "Delete"));
    // A PV whose directory lies inside another's, reached through a different Secret.
    api.put(&pv("pv-team", "team", "Delete"));
    let mut web = pv("pv-team-web", "team/web", "Delete");
    if let Some(csi) = web.spec.as_mut().and_then(|s| s.csi.as_mut()) {
        csi.node_publish_secret_ref.as_mut().unwrap().name = Some("jfs-other".into());
    }
    api.put(&web);
    let del = |id: &str, with_secret: bool| DeleteVolumeRequest {
        volume_id: id.into(),
        secrets: if with_secret {
            [("metaurl".to_string(), meta.clone())].into()
        } else {
            Default::default()
        },
    };
    c.delete_volume(del("pvc-gone", true)).await.unwrap();
    c.delete_volume(del("pv-shared-1", true)).await.unwrap();
    c.delete_volume(del("pv-kept", true)).await.unwrap();
    c.delete_volume(del("other", false)).await.unwrap();
    c.delete_volume(del("pv-team", true)).await.unwrap();
    // No PV: neither its directory nor its reclaim policy is known, so nothing is removed.
    c.delete_volume(del("ghost", true)).await.unwrap();
    let e = c.delete_volume(del("pv-root", true)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("refusing"), "{}", e.message());
    // Deleting again is fine.
    c.delete_volume(del("pvc-gone", true)).await.unwrap();

    juicefs(&["mount", "-d", &meta, &mp.display().to_string()]);
    let exists = |d: &str| mp.join(d).exists();
    let state = (
        exists("pvc-gone"),
        exists("shared/f"),
        exists("kept/f"),
        exists("other/f"),
        exists("team/web/f"),
        exists("ghost/f"),
    );
    juicefs(&["umount", &mp.display().to_string()]);
    assert_eq!(state, (false, true, true, true, true, true));
    assert!(
        objects() < before,
        "the removed file's objects are deleted ({} -> {})",
        before,
        objects()
    );
}
