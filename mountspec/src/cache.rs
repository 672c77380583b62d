//! Where the client's disk cache lives. A Mount Pod keeps it on the node (a restarted client
//! or the next Mount Pod of the volume finds its blocks, and the cache-clean Job reaches
//! it); a sidecar keeps it in an `emptyDir` of the pod (nothing from the host, so serverless
//! nodes work, and the kubelet accounts and removes it with the pod). A `cacheDirs` patch
//! chooses the volumes explicitly, as in the Go driver; on the serverless path its
//! `HostPath` entries become `emptyDir`. Without a patch, the volume context may name
//! cache volumes too (`juicefs/mount-cache-pvc`, `-emptydir`, `-inline-volume`), placed
//! before the directories of the `cache-dir` option as the Go driver does.

use crate::config::CacheDir;
use crate::container::Placement;
use crate::setting::{MountSetting, quantity_bytes};
use crate::{SpecError, invalid};
use k8s_openapi::api::core::v1::{
    CSIVolumeSource, Container, EmptyDirVolumeSource, EphemeralVolumeSource, HostPathVolumeSource,
    PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate, PersistentVolumeClaimVolumeSource,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The client's default cache directory (as root).
pub const DEFAULT_CACHE_DIR: &str = "/var/jfsCache";

pub const KEY_CACHE_PVC: &str = "juicefs/mount-cache-pvc";
pub const KEY_CACHE_EMPTYDIR: &str = "juicefs/mount-cache-emptydir";
pub const KEY_CACHE_INLINE: &str = "juicefs/mount-cache-inline-volume";

/// The volume behind a cache directory that is not the default one.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum CacheSource {
    /// A `cacheDirs` patch entry; the volume-context PVC and emptyDir keys become one too.
    Dir(CacheDir),
    /// `juicefs/mount-cache-inline-volume`: a CSI inline volume.
    Inline(CSIVolumeSource),
}

/// The container paths of a `cacheDirs` patch, in order: a host path keeps its path, the
/// others are mounted at `/var/jfsCache-<i>`. The setting's `cache-dir` option is set to
/// these, joined with ':'.
pub fn from_patch_list(dirs: &[CacheDir]) -> Vec<(String, CacheSource)> {
    dirs.iter()
        .enumerate()
        .map(|(i, d)| {
            let path = match (d.kind.as_str(), &d.path) {
                ("HostPath", Some(p)) => p.clone(),
                _ => format!("{DEFAULT_CACHE_DIR}-{i}"),
            };
            (path, CacheSource::Dir(d.clone()))
        })
        .collect()
}

/// The cache volumes the PV's volume context names, with the Go driver's paths:
/// `/var/jfsCache-<i>` per PVC of the comma list, `/var/jfsCache-emptyDir` for
/// `medium[:sizeLimit]`, `/var/jfsCache-inlineVolume-<i>` per entry of a JSON list of CSI
/// volume sources.
pub fn from_volume_context(
    pv: &str,
    attrs: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, CacheSource)>, SpecError> {
    let mut out = Vec::new();
    if let Some(list) = attrs.get(KEY_CACHE_PVC) {
        for (i, name) in list.split(',').map(str::trim).enumerate() {
            if name.is_empty() {
                continue;
            }
            out.push((
                format!("{DEFAULT_CACHE_DIR}-{i}"),
                CacheSource::Dir(CacheDir {
                    kind: "PVC".into(),
                    name: Some(name.into()),
                    ..Default::default()
                }),
            ));
        }
    }
    if let Some(v) = attrs.get(KEY_CACHE_EMPTYDIR).map(|v| v.trim()) {
        let (medium, size) = v.split_once(':').unwrap_or((v, ""));
        if !matches!(medium, "" | "Memory") && !medium.starts_with("HugePages") {
            return Err(invalid(
                format!("PV {pv} {KEY_CACHE_EMPTYDIR}"),
                format!(
                    "medium {medium:?} is not Memory (or empty for the node's disk); write MEDIUM:SIZE, e.g. Memory:1Gi or :10Gi"
                ),
            ));
        }
        if !size.is_empty() && quantity_bytes(size).is_none() {
            return Err(invalid(
                format!("PV {pv} {KEY_CACHE_EMPTYDIR}"),
                format!(
                    "size {size:?} is not a quantity like 10Gi; write MEDIUM:SIZE, e.g. Memory:1Gi"
                ),
            ));
        }
        out.push((
            format!("{DEFAULT_CACHE_DIR}-emptyDir"),
            CacheSource::Dir(CacheDir {
                kind: "EmptyDir".into(),
                medium: Some(medium.to_string()).filter(|m| !m.is_empty()),
                size_limit: Some(size.to_string()).filter(|s| !s.is_empty()),
                ..Default::default()
            }),
        ));
    }
    if let Some(v) = attrs.get(KEY_CACHE_INLINE) {
        let list: Vec<CSIVolumeSource> = serde_json::from_str(v).map_err(|e| {
            invalid(
                format!("PV {pv} {KEY_CACHE_INLINE}"),
                format!("not a JSON list of CSI volume sources ([{{\"driver\": \"...\", \"volumeAttributes\": {{...}}}}]): {e}"),
            )
        })?;
        for (i, csi) in list.into_iter().enumerate() {
            out.push((
                format!("{DEFAULT_CACHE_DIR}-inlineVolume-{i}"),
                CacheSource::Inline(csi),
            ));
        }
    }
    Ok(out)
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
pub(crate) fn attach_cache(
    s: &MountSetting,
    placement: Placement,
    prefix: &str,
    container: &mut Container,
) -> Vec<Volume> {
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    let mut volumes = Vec::new();
    for (i, path) in cache_dirs(s).iter().enumerate() {
        let name = format!("{prefix}cachedir-{i}");
        let mut v = match (s.cache_sources.get(path), placement) {
            (Some(CacheSource::Dir(d)), _) => from_patch(d, s.serverless),
            (Some(CacheSource::Inline(csi)), _) => Volume {
                csi: Some(csi.clone()),
                ..Default::default()
            },
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
