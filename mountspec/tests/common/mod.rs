//! Realistic objects the mountspec tests resolve: a dynamic PV of a team's StorageClass, its
//! PVC, the user Secret, and the container and Mount Pod parameters.
#![allow(dead_code)]

use jfs_mountspec::container::{ContainerParams, Placement};
use jfs_mountspec::setting::{DEFAULT_IMAGE, Inputs, resolve};
use jfs_mountspec::{GlobalConfig, MountSetting, SpecError};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde_json::json;
use std::collections::BTreeMap;

pub fn pv(attrs: serde_json::Value, extra: serde_json::Value) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": "pv-data"},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "capacity": {"storage": "10Gi"},
            "mountOptions": ["cache-size=2048", "allow_other"],
            "csi": {
                "driver": "csi.juicefs.com",
                "volumeHandle": "pv-data",
                "nodePublishSecretRef": {"name": "jfs-secret", "namespace": "team"},
                "volumeAttributes": attrs
            }
        }
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

pub fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), &b) {
        for (k, v) in b {
            match a.get_mut(k) {
                Some(x) if x.is_object() && v.is_object() => merge(x, v.clone()),
                _ => {
                    a.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

pub fn pvc(annotations: serde_json::Value) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": "data", "namespace": "team", "uid": "u-1", "labels": {"team": "ml"}, "annotations": annotations},
        "spec": {"storageClassName": "jfs", "volumeName": "pv-data", "resources": {"requests": {"storage": "10Gi"}}}
    }))
    .unwrap()
}

pub fn secret() -> BTreeMap<String, Vec<u8>> {
    [
        ("name", "myjfs"),
        ("metaurl", "redis://:s3cretpw@redis:6379/1"),
        ("storage", "s3"),
        ("bucket", "http://minio:9000/bkt"),
        ("access-key", "AKIAEXAMPLE"),
        ("secret-key", "wJalrSECRETKEY"),
        ("envs", "{TZ: Asia/Shanghai}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

pub fn setting_with(
    secret_data: &BTreeMap<String, Vec<u8>>,
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
    cfg: &GlobalConfig,
) -> Result<MountSetting, SpecError> {
    resolve_with(secret_data, pv, pvc, cfg, false)
}

pub fn resolve_with(
    secret_data: &BTreeMap<String, Vec<u8>>,
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
    cfg: &GlobalConfig,
    serverless: bool,
) -> Result<MountSetting, SpecError> {
    resolve(&Inputs {
        secret_id: "team/jfs-secret",
        secret_data,
        pv,
        pvc,
        node_labels: &BTreeMap::new(),
        config: cfg,
        default_image: DEFAULT_IMAGE,
        serverless,
    })
}

pub fn base() -> MountSetting {
    setting_with(
        &secret(),
        &pv(json!({}), json!({})),
        &pvc(json!({})),
        &GlobalConfig::default(),
    )
    .unwrap()
}

pub fn params(placement: Placement) -> ContainerParams {
    ContainerParams {
        name: "jfs-mount".into(),
        mount_path: "/jfs/u-1".into(),
        volume_name: "data".into(),
        secret_name: "data-jfs-secret".into(),
        metrics_port: 9567,
        metrics_port_name: "metrics".into(),
        placement,
        grace_seconds: 30,
        exit_on_app_exit: false,
    }
}

/// A Mount Pod on node-1 in kube-system, reading its credentials from `secret_name`.
pub fn pod_params(secret_name: &str) -> jfs_mountspec::pod::MountPodParams {
    jfs_mountspec::pod::MountPodParams {
        node_name: "node-1".into(),
        namespace: "kube-system".into(),
        suffix: "abcdef".into(),
        host_mount_dir: "/var/lib/juicefs/volume".into(),
        secret_name: secret_name.into(),
        priority_class: None,
    }
}
