//! The global ConfigMap `juicefs-csi-driver-config` (key `config.yaml`): switches and the
//! ordered `mountPodPatch` list whose entries apply to the PVCs and nodes they select.
//! Unknown keys are refused (a typo must not silently do nothing).

use crate::{SpecError, invalid};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, Lifecycle, PodDNSConfig, Probe, ResourceRequirements, Volume, VolumeDevice,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CONFIGMAP_NAME: &str = "juicefs-csi-driver-config";
pub const CONFIGMAP_KEY: &str = "config.yaml";

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalConfig {
    /// Force native (`true`) or classic (`false`) sidecars; unset: native from Kubernetes 1.29.
    pub enable_native_sidecar: Option<bool>,
    pub enable_node_selector: Option<bool>,
    pub enable_set_quota: Option<bool>,
    pub enable_controller_set_quota: Option<bool>,
    pub enable_auto_remove_request_resources: Option<bool>,
    pub enable_auto_abort_stuck_mount_pod: Option<bool>,
    pub enable_lazy_umount_target: Option<bool>,
    pub enable_kubelet_list_mount_pod: Option<bool>,
    #[serde(default)]
    pub mount_pod_patch: Vec<MountPodPatch>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PvcSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
    pub match_name: Option<String>,
    pub match_storage_class_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheDir {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<String>,
    pub name: Option<String>,
    pub medium: Option<String>,
    pub size_limit: Option<String>,
    /// `Ephemeral`: the volume claim template's class, size and access modes.
    pub storage_class_name: Option<String>,
    pub storage: Option<String>,
    pub access_modes: Option<Vec<String>>,
}

/// Every field a patch may set; `None` leaves the built value alone.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountPodPatch {
    pub pvc_selector: Option<PvcSelector>,
    pub node_selector: Option<LabelSelector>,
    pub ce_mount_image: Option<String>,
    pub ee_mount_image: Option<String>,
    pub image_pull_policy: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub host_network: Option<bool>,
    #[serde(rename = "hostPID")]
    pub host_pid: Option<bool>,
    /// Mount Pods only (a sidecar shares the app pod's DNS).
    pub dns_policy: Option<String>,
    pub dns_config: Option<PodDNSConfig>,
    /// Mount Pods only: the pod's hostname is the volume id (`volumeid`, the default) or the
    /// pod's name (`podname`).
    pub hostname_key: Option<String>,
    /// Accepted so a Go driver ConfigMap parses, then refused by `validate` with the fix.
    pub resource_percentages: Option<serde_json::Value>,
    /// Mount Pods only.
    pub init_containers: Option<Vec<Container>>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
    pub lifecycle: Option<Lifecycle>,
    pub resources: Option<ResourceRequirements>,
    pub termination_grace_period_seconds: Option<i64>,
    pub volumes: Option<Vec<Volume>>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
    pub volume_devices: Option<Vec<VolumeDevice>>,
    pub env: Option<Vec<EnvVar>>,
    pub mount_options: Option<Vec<String>>,
    pub cache_dirs: Option<Vec<CacheDir>>,
}

/// Volume names the builder uses itself.
const RESERVED_VOLUME_PREFIXES: &[&str] = &[
    "jfs-",
    "rsa-key",
    "init-config",
    "config-",
    "updatedb",
    "update-db",
    "cachedir-",
];

impl GlobalConfig {
    /// Parses and validates `config.yaml`; errors name the entry and field.
    pub fn parse(yaml: &str) -> Result<GlobalConfig, SpecError> {
        if yaml.trim().is_empty() {
            return Ok(GlobalConfig::default());
        }
        let c: GlobalConfig = serde_norway::from_str(yaml).map_err(|e| {
            invalid(
                format!("ConfigMap {CONFIGMAP_NAME} key {CONFIGMAP_KEY}"),
                e.to_string(),
            )
        })?;
        for (i, p) in c.mount_pod_patch.iter().enumerate() {
            p.validate().map_err(|why| {
                invalid(
                    format!("ConfigMap {CONFIGMAP_NAME}: mountPodPatch[{i}]"),
                    why,
                )
            })?;
        }
        Ok(c)
    }

    /// The patches selecting this PVC and node, merged in list order (later wins).
    pub fn patch_for(
        &self,
        pvc: &PvcFacts,
        node_labels: &BTreeMap<String, String>,
    ) -> MountPodPatch {
        let mut out = MountPodPatch::default();
        for p in self
            .mount_pod_patch
            .iter()
            .filter(|p| p.selects(pvc, node_labels))
        {
            out.merge(p);
        }
        out
    }
}

/// What a PVC selector looks at.
#[derive(Clone, Debug, Default)]
pub struct PvcFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub storage_class: Option<String>,
}

fn requirement_matches(r: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let v = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        _ => false,
    }
}

fn labels_match(
    match_labels: Option<&BTreeMap<String, String>>,
    exprs: Option<&[LabelSelectorRequirement]>,
    labels: &BTreeMap<String, String>,
) -> bool {
    match_labels.is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        && exprs.is_none_or(|e| e.iter().all(|r| requirement_matches(r, labels)))
}

impl MountPodPatch {
    fn validate(&self) -> Result<(), String> {
        let names: Vec<&str> = self
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        if let Some(bad) = names
            .iter()
            .find(|n| RESERVED_VOLUME_PREFIXES.iter().any(|p| n.starts_with(p)))
        {
            return Err(format!(
                "volume name {bad:?} is reserved for the driver's own volumes"
            ));
        }
        for m in self.volume_mounts.iter().flatten() {
            if !names.contains(&m.name.as_str()) {
                return Err(format!(
                    "volumeMounts: {:?} names no volume of this patch",
                    m.name
                ));
            }
        }
        for d in self.volume_devices.iter().flatten() {
            if !names.contains(&d.name.as_str()) {
                return Err(format!(
                    "volumeDevices: {:?} names no volume of this patch",
                    d.name
                ));
            }
        }
        for e in self.env.iter().flatten() {
            if e.name.is_empty() || e.name.contains('=') {
                return Err(format!("env: {:?} is not a valid variable name", e.name));
            }
        }
        for o in self.mount_options.iter().flatten() {
            crate::options::parse_item(o).map_err(|e| format!("mountOptions: {e}"))?;
        }
        for (i, c) in self.cache_dirs.iter().flatten().enumerate() {
            let ok = match c.kind.as_str() {
                "HostPath" => c.path.is_some(),
                "PVC" => c.name.is_some(),
                "EmptyDir" => true,
                "Ephemeral" => c.storage.is_some(),
                other => {
                    return Err(format!(
                        "cacheDirs[{i}]: type {other:?} is not HostPath, PVC, EmptyDir or Ephemeral"
                    ));
                }
            };
            if !ok {
                return Err(format!(
                    "cacheDirs[{i}]: type {} needs {}",
                    c.kind,
                    match c.kind.as_str() {
                        "HostPath" => "path",
                        "Ephemeral" => "storage (the claim's size, e.g. 10Gi)",
                        _ => "name",
                    }
                ));
            }
        }
        if let Some(p) = &self.dns_policy
            && !matches!(
                p.as_str(),
                "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None"
            )
        {
            return Err(format!(
                "dnsPolicy {p:?} is not ClusterFirst, ClusterFirstWithHostNet, Default or None"
            ));
        }
        if let Some(k) = &self.hostname_key
            && !matches!(k.as_str(), "volumeid" | "podname")
        {
            return Err(format!("hostnameKey {k:?} is not volumeid or podname"));
        }
        if self.resource_percentages.is_some() {
            return Err("resourcePercentages is not supported: set resources (requests and limits) in the patch, or the juicefs/mount-cpu-limit family of PVC annotations".into());
        }
        if let Some(p) = &self.image_pull_policy
            && !matches!(p.as_str(), "Always" | "IfNotPresent" | "Never")
        {
            return Err(format!(
                "imagePullPolicy {p:?} is not Always, IfNotPresent or Never"
            ));
        }
        Ok(())
    }

    fn selects(&self, pvc: &PvcFacts, node_labels: &BTreeMap<String, String>) -> bool {
        let pvc_ok = match &self.pvc_selector {
            None => true,
            Some(s) => {
                if s.match_name.as_ref().is_some_and(|n| *n != pvc.name) {
                    false
                } else if let Some(sc) = &s.match_storage_class_name {
                    // As in the Go driver, a storage class selector alone decides.
                    pvc.storage_class.as_ref() == Some(sc)
                } else {
                    labels_match(
                        Some(&s.match_labels),
                        Some(&s.match_expressions),
                        &pvc.labels,
                    )
                }
            }
        };
        let node_ok = self.node_selector.as_ref().is_none_or(|n| {
            labels_match(
                n.match_labels.as_ref(),
                n.match_expressions.as_deref(),
                node_labels,
            )
        });
        pvc_ok && node_ok
    }

    fn merge(&mut self, p: &MountPodPatch) {
        macro_rules! take {
            ($($f:ident),*) => {$( if p.$f.is_some() { self.$f = p.$f.clone(); } )*};
        }
        take!(
            ce_mount_image,
            ee_mount_image,
            image_pull_policy,
            labels,
            annotations,
            host_network,
            host_pid,
            dns_policy,
            dns_config,
            hostname_key,
            resource_percentages,
            init_containers,
            liveness_probe,
            readiness_probe,
            startup_probe,
            lifecycle,
            resources,
            termination_grace_period_seconds,
            volumes,
            volume_mounts,
            volume_devices,
            env,
            mount_options,
            cache_dirs
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
enableNativeSidecar: false
mountPodPatch:
  - ceMountImage: example/mount:base
    mountOptions: ["cache-size=100"]
  - pvcSelector:
      matchLabels: {team: ml}
    resources:
      limits: {cpu: "2", memory: 4Gi}
    mountOptions: ["cache-size=200", "allow_other"]
  - pvcSelector:
      matchStorageClassName: fast
    annotations: {a: b}
  - nodeSelector:
      matchExpressions:
        - {key: zone, operator: In, values: [z1]}
    ceMountImage: example/mount:z1
"#;

    fn pvc(labels: &[(&str, &str)], sc: Option<&str>) -> PvcFacts {
        PvcFacts {
            name: "data".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            storage_class: sc.map(str::to_string),
        }
    }

    #[test]
    fn patches_select_and_merge_in_order() {
        let c = GlobalConfig::parse(YAML).unwrap();
        assert_eq!(c.enable_native_sidecar, Some(false));
        let none = BTreeMap::new();
        let p = c.patch_for(&pvc(&[], None), &none);
        assert_eq!(p.ce_mount_image.as_deref(), Some("example/mount:base"));
        assert_eq!(p.mount_options, Some(vec!["cache-size=100".to_string()]));
        assert!(p.resources.is_none() && p.annotations.is_none());
        let p = c.patch_for(&pvc(&[("team", "ml")], Some("fast")), &none);
        assert_eq!(
            p.mount_options.as_ref().unwrap().len(),
            2,
            "later entry replaces"
        );
        assert!(p.resources.is_some());
        assert_eq!(p.annotations.as_ref().unwrap()["a"], "b");
        let z1: BTreeMap<_, _> = [("zone".to_string(), "z1".to_string())].into();
        assert_eq!(
            c.patch_for(&pvc(&[], None), &z1).ce_mount_image.as_deref(),
            Some("example/mount:z1")
        );
    }

    #[test]
    fn bad_configs_name_the_entry_and_field() {
        let e = GlobalConfig::parse("mountPodPatches: []")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field") && e.contains("mountPodPatches"),
            "{e}"
        );
        let e = GlobalConfig::parse("mountPodPatch:\n  - volumes: [{name: jfs-dir, emptyDir: {}}]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mountPodPatch[0]") && e.contains("reserved"),
            "{e}"
        );
        let e = GlobalConfig::parse("mountPodPatch:\n  - volumeMounts: [{name: x, mountPath: /x}]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no volume"), "{e}");
        let e = GlobalConfig::parse("mountPodPatch:\n  - mountOptions: [\"debug foreground\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("comma-separated: debug,foreground"), "{e}");
        let e = GlobalConfig::parse("mountPodPatch:\n  - cacheDirs: [{type: PVC}]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cacheDirs[0]") && e.contains("needs name"),
            "{e}"
        );
        assert_eq!(GlobalConfig::parse("").unwrap(), GlobalConfig::default());
    }
}
