//! The Mount Pod (CSI node path): the same container as a sidecar, in a pod of its own on
//! the node, with the Go driver's naming, label and annotation contract so existing tools
//! keep finding it (`app.kubernetes.io/name=juicefs-mount`, `volume-id`, `juicefs-hash`,
//! finalizer `juicefs.com/finalizer`).

use crate::cache::host_path;
use crate::container::{ContainerParams, Placement, mount_container};
use crate::setting::MountSetting;
use crate::volumes::attach_volumes;
use k8s_openapi::api::core::v1::{Pod, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

pub const LABEL_APP: &str = "app.kubernetes.io/name";
pub const APP_MOUNT: &str = "juicefs-mount";
pub const LABEL_VOLUME_ID: &str = "volume-id";
pub const LABEL_HASH: &str = "juicefs-hash";
pub const FINALIZER: &str = "juicefs.com/finalizer";
pub const DEFAULT_MOUNT_DIR: &str = "/var/lib/juicefs/volume";
pub const ANNOTATION_CLEAN_CACHE: &str = "juicefs-clean-cache";
/// The volume's UUID, recorded by the node once the client is up (cache cleaning needs it).
pub const ANNOTATION_UUID: &str = "juicefs-uuid";

#[derive(Clone, Debug)]
pub struct MountPodParams {
    pub node_name: String,
    /// The driver's namespace.
    pub namespace: String,
    /// Six lowercase letters chosen by the caller: distinguishes pods of one volume.
    pub suffix: String,
    /// Host directory holding every Mount Pod's mount point.
    pub host_mount_dir: String,
    /// The Secret (in `namespace`) the container reads credentials from.
    pub secret_name: String,
    pub priority_class: Option<String>,
}

/// The pod name for a volume on a node (`juicefs-<node>-<volume>-<suffix>`).
pub fn pod_name(node: &str, unique_id: &str, suffix: &str) -> String {
    format!("juicefs-{node}-{unique_id}-{suffix}")
}

pub fn mount_pod(s: &MountSetting, p: &MountPodParams) -> Pod {
    let unique_id = s.volume_handle.clone();
    let mount_path = format!("/jfs/{unique_id}-{}", p.suffix);
    let name = pod_name(&p.node_name, &unique_id, &p.suffix);
    let mut container = mount_container(
        s,
        &ContainerParams {
            name: "jfs-mount".into(),
            mount_path,
            volume_name: "jfs-dir".into(),
            secret_name: p.secret_name.clone(),
            metrics_port: 9567,
            metrics_port_name: "metrics".into(),
            placement: Placement::MountPod,
            grace_seconds: 10,
            exit_on_app_exit: false,
        },
    );
    let mut labels = s.labels.clone();
    labels.insert(LABEL_APP.into(), APP_MOUNT.into());
    labels.insert(LABEL_VOLUME_ID.into(), unique_id.clone());
    labels.insert(LABEL_HASH.into(), s.hash());
    let mut annotations: BTreeMap<String, String> = s.annotations.clone();
    annotations.insert("juicefs-uniqueid".into(), unique_id.clone());
    if let Some(d) = &s.delete_delay {
        annotations.insert("juicefs-delete-delay".into(), d.clone());
    }
    if s.clean_cache {
        annotations.insert(ANNOTATION_CLEAN_CACHE.into(), "true".into());
    }
    let mut volumes = vec![Volume {
        name: "jfs-dir".into(),
        ..host_path(&p.host_mount_dir)
    }];
    volumes.extend(attach_volumes(s, Placement::MountPod, "", &mut container));
    volumes.extend(s.patch.volumes.clone().unwrap_or_default());
    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(p.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            finalizers: Some(vec![FINALIZER.into()]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(p.node_name.clone()),
            containers: vec![container],
            volumes: Some(volumes),
            // Exit 0 means "unmounted on purpose": the pod completes instead of restarting.
            restart_policy: Some("OnFailure".into()),
            priority_class_name: Some(
                p.priority_class
                    .clone()
                    .unwrap_or_else(|| "system-node-critical".into()),
            ),
            termination_grace_period_seconds: Some(
                s.patch.termination_grace_period_seconds.unwrap_or(10),
            ),
            host_network: s.patch.host_network,
            host_pid: s.patch.host_pid,
            hostname: Some(
                match s.patch.hostname_key.as_deref() {
                    Some("podname") => name,
                    _ => unique_id.clone(),
                }
                .chars()
                .take(63)
                .collect(),
            ),
            dns_policy: s.patch.dns_policy.clone(),
            dns_config: s.patch.dns_config.clone(),
            init_containers: s.patch.init_containers.clone(),
            service_account_name: s.service_account.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
