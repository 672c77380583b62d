//! Every volume the mount container needs besides its mount point: the disk cache
//! (`cache`), the PV's extra host directories (`juicefs/host-path`) and the Secrets the
//! user Secret's `configs` names. One function for the Mount Pod and the sidecar, so both
//! mount the same things at the same paths.

use crate::cache::attach_cache;
use crate::container::Placement;
use crate::setting::MountSetting;
use k8s_openapi::api::core::v1::{
    Container, HostPathVolumeSource, SecretVolumeSource, Volume, VolumeMount,
};

/// Mounts the volumes into `container` and returns the pod volumes behind them, named
/// `<prefix>cachedir-<i>`, `<prefix>hostpath-<i>` and `<prefix>config-<i>`. Host paths are
/// never on the serverless path: `resolve` refuses them there.
pub fn attach_volumes(
    s: &MountSetting,
    placement: Placement,
    prefix: &str,
    container: &mut Container,
) -> Vec<Volume> {
    let mut volumes = attach_cache(s, placement, prefix, container);
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    for (i, path) in s.host_paths.iter().enumerate() {
        let name = format!("{prefix}hostpath-{i}");
        volumes.push(Volume {
            name: name.clone(),
            host_path: Some(HostPathVolumeSource {
                path: path.clone(),
                type_: None,
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: path.clone(),
            ..Default::default()
        });
    }
    // Sorted by Secret name (a map), so the names are the same on every build.
    for (i, (secret, path)) in s.secret.configs.iter().enumerate() {
        let name = format!("{prefix}config-{i}");
        volumes.push(Volume {
            name: name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: path.clone(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    volumes
}
