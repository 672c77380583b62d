//! Where the client's disk cache lives. A Mount Pod keeps it on the node (a restarted client
//! or the next Mount Pod of the volume finds its blocks, and the cache-clean Job reaches
//! it); a sidecar keeps it in an `emptyDir` of the pod (nothing from the host, so serverless
//! nodes work, and the kubelet accounts and removes it with the pod). A `cacheDirs` patch
//! chooses the volumes explicitly, as in the Go driver; on the serverless path its
//! `HostPath` entries become `emptyDir`.

use crate::config::CacheDir;
use crate::container::Placement;
use crate::setting::MountSetting;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EphemeralVolumeSource, HostPathVolumeSource,
    PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate, PersistentVolumeClaimVolumeSource,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The client's default cache directory (as root).
pub const DEFAULT_CACHE_DIR: &str = "/var/jfsCache";

/// The container paths of a `cacheDirs` patch, in order: a host path keeps its path, the
/// others are mounted at `/var/jfsCache-<i>`. The setting's `cache-dir` option is set to
/// these, joined with ':'.
pub fn patch_paths(dirs: &[CacheDir]) -> Vec<String> {
    dirs.iter()
        .enumerate()
        .map(|(i, d)| match (d.kind.as_str(), &d.path) {
            ("HostPath", Some(p)) => p.clone(),
            _ => format!("{DEFAULT_CACHE_DIR}-{i}"),
        })
        .collect()
}

/// The disk cache directories of a setting (`cache-dir=a:b`, `memory` excluded; the
/// client's default when none is given).
pub fn cache_dirs(s: &MountSetting) -> Vec<String> {
    match s.option("cache-dir").and_then(|o| o.value.clone()) {
        Some(v) => v
            .split(':')
            .filter(|d| !d.is_empty() && *d != "memory")
            .map(str::to_string)
            .collect(),
        None => vec![DEFAULT_CACHE_DIR.to_string()],
    }
}

fn empty_dir(d: Option<&CacheDir>) -> Volume {
    Volume {
        empty_dir: Some(EmptyDirVolumeSource {
            medium: d.and_then(|d| d.medium.clone()),
            size_limit: d.and_then(|d| d.size_limit.clone()).map(Quantity),
        }),
        ..Default::default()
    }
}

pub(crate) fn host_path(path: &str) -> Volume {
    Volume {
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some("DirectoryOrCreate".into()),
        }),
        ..Default::default()
    }
}

fn from_patch(d: &CacheDir, serverless: bool) -> Volume {
    match d.kind.as_str() {
        "HostPath" if !serverless => host_path(d.path.as_deref().unwrap_or(DEFAULT_CACHE_DIR)),
        "PVC" => Volume {
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: d.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        },
        "Ephemeral" => Volume {
            ephemeral: Some(EphemeralVolumeSource {
                volume_claim_template: Some(PersistentVolumeClaimTemplate {
                    metadata: None,
                    spec: PersistentVolumeClaimSpec {
                        access_modes: Some(
                            d.access_modes
                                .clone()
                                .unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                        ),
                        storage_class_name: d.storage_class_name.clone(),
                        resources: d.storage.clone().map(|s| VolumeResourceRequirements {
                            requests: Some([("storage".to_string(), Quantity(s))].into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                }),
            }),
            ..Default::default()
        },
        _ => empty_dir(Some(d)),
    }
}

/// Mounts the cache directories into `container` and returns the pod volumes behind them
/// (named `<prefix>cachedir-<i>`).
pub fn attach_cache(
    s: &MountSetting,
    placement: Placement,
    serverless: bool,
    prefix: &str,
    container: &mut Container,
) -> Vec<Volume> {
    let patch = s.patch.cache_dirs.as_deref().unwrap_or_default();
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    let mut volumes = Vec::new();
    for (i, path) in cache_dirs(s).iter().enumerate() {
        let name = format!("{prefix}cachedir-{i}");
        let mut v = match (patch.get(i), placement) {
            (Some(d), _) => from_patch(d, serverless),
            (None, Placement::MountPod) => host_path(path),
            (None, _) => empty_dir(None),
        };
        v.name = name.clone();
        volumes.push(v);
        mounts.push(VolumeMount {
            name,
            mount_path: path.clone(),
            ..Default::default()
        });
    }
    volumes
}
