//! Everything that decides how a volume is mounted, resolved from the Kubernetes objects
//! into one `MountSetting`, and its hash (same inputs, same hash; any change, a new one).
//!
//! Precedence, lowest first: built-in defaults, PV `volumeAttributes` (where StorageClass
//! parameters land at provisioning), PVC annotations (only the four `juicefs/mount-*`
//! resource keys, in both the webhook and the CSI node: letting a PVC writer pick the image
//! or host paths of a privileged container would let namespaces escape), then the
//! ConfigMap patches that select the PVC and node.

use crate::cache::{self, CacheSource};
use crate::config::{GlobalConfig, MountPodPatch, PvcFacts};
use crate::options::{self, MountOption};
use crate::secret::{self, VolumeSecret};
use crate::{DRIVER_NAME, SpecError, check_abs_path, invalid};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const DEFAULT_IMAGE: &str = "juicedata/juicefs-rs-mount:latest";
const RESOURCE_KEYS: [(&str, bool, &str); 4] = [
    ("juicefs/mount-cpu-request", false, "cpu"),
    ("juicefs/mount-memory-request", false, "memory"),
    ("juicefs/mount-cpu-limit", true, "cpu"),
    ("juicefs/mount-memory-limit", true, "memory"),
];

pub struct Inputs<'a> {
    /// `namespace/name` of the user Secret, for messages.
    pub secret_id: &'a str,
    pub secret_data: &'a BTreeMap<String, Vec<u8>>,
    pub pv: &'a PersistentVolume,
    pub pvc: &'a PersistentVolumeClaim,
    pub node_labels: &'a BTreeMap<String, String>,
    pub config: &'a GlobalConfig,
    /// The mount image when nothing else names one.
    pub default_image: &'a str,
    /// A sidecar on the serverless path: nothing may come from the host.
    pub serverless: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MountSetting {
    pub pv_name: String,
    pub volume_handle: String,
    pub secret: VolumeSecret,
    pub options: Vec<MountOption>,
    pub read_only: bool,
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub resources: ResourceRequirements,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `juicefs/mount-delete-delay` (a Go duration such as `1h30m`).
    pub delete_delay: Option<String>,
    pub clean_cache: bool,
    /// The PVC's requested size in bytes (quota).
    pub capacity: Option<u64>,
    /// `juicefs/mount-service-account` (Mount Pods; a sidecar runs as its pod's).
    pub service_account: Option<String>,
    /// `juicefs/host-path`: host directories mounted at the same path.
    pub host_paths: Vec<String>,
    /// Cache directories (of the `cache-dir` option) with a volume chosen by a `cacheDirs`
    /// patch or the volume context; the others get the placement's default.
    pub cache_sources: BTreeMap<String, CacheSource>,
    /// Built for the serverless path (cache host paths become `emptyDir`).
    pub serverless: bool,
    /// The ConfigMap patch that applies, selectors removed.
    pub patch: MountPodPatch,
}

impl MountSetting {
    /// SHA-256 of the canonical JSON of the setting, first 63 hex digits (fits a label).
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut h = crate::secret::hex(&Sha256::digest(json));
        h.truncate(63);
        h
    }

    pub fn option(&self, key: &str) -> Option<&MountOption> {
        self.options.iter().find(|o| o.key == key)
    }
}

fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_string(), q("1")),
                ("memory".to_string(), q("1Gi")),
            ]
            .into(),
        ),
        limits: Some(
            [
                ("cpu".to_string(), q("5")),
                ("memory".to_string(), q("5Gi")),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

/// Bytes of a Kubernetes quantity (`10Gi`, `500M`, `1e3`, `1.5Gi`).
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mul: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => 1e-3,
        _ => return None,
    };
    (n >= 0.0).then(|| (n * mul).ceil() as u64)
}

fn check_quantity(what: &str, v: &str) -> Result<(), SpecError> {
    quantity_bytes(v)
        .map(|_| ())
        .ok_or_else(|| invalid(what, format!("{v:?} is not a quantity like 500m, 2, 1Gi")))
}

/// A Go duration: one or more `<number><unit>` with units ns, us, ms, s, m, h
/// (`30s`, `5m`, `1h30m`).
pub fn go_duration(v: &str) -> Option<std::time::Duration> {
    let mut rest = v.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if n == 0 {
            return None;
        }
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let (unit, secs) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))?;
        rest = &rest[unit.len()..];
        total += num * secs;
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

fn check_duration(what: &str, v: &str) -> Result<(), SpecError> {
    go_duration(v).map(|_| ()).ok_or_else(|| {
        invalid(
            what,
            format!("{v:?} is not a duration like 30s, 5m or 1h30m"),
        )
    })
}

fn apply_resource_keys(
    r: &mut ResourceRequirements,
    source: &str,
    keys: &BTreeMap<String, String>,
) -> Result<(), SpecError> {
    for (key, limit, res) in RESOURCE_KEYS {
        let Some(v) = keys.get(key) else { continue };
        check_quantity(&format!("{source} {key}"), v)?;
        let map = if limit {
            &mut r.limits
        } else {
            &mut r.requests
        };
        let m = map.get_or_insert_with(BTreeMap::new);
        // A zero limit or request means "none", as in the Go driver.
        if quantity_bytes(v) == Some(0) {
            m.remove(res);
        } else {
            m.insert(res.to_string(), Quantity(v.clone()));
        }
    }
    Ok(())
}

pub fn resolve(i: &Inputs) -> Result<MountSetting, SpecError> {
    let pv_name = i.pv.metadata.name.clone().unwrap_or_default();
    let spec =
        i.pv.spec
            .as_ref()
            .ok_or_else(|| invalid(format!("PV {pv_name}"), "has no spec"))?;
    let csi = spec
        .csi
        .as_ref()
        .filter(|c| c.driver == DRIVER_NAME)
        .ok_or_else(|| {
            invalid(
                format!("PV {pv_name}"),
                format!("is not a {DRIVER_NAME} volume"),
            )
        })?;
    let attrs = csi.volume_attributes.clone().unwrap_or_default();
    let secret = secret::parse(i.secret_id, i.secret_data)?;
    if secret.has_session_token {
        return Err(SpecError::Unsupported(format!(
            "Secret {}: format-options session-token is not supported by this client",
            i.secret_id
        )));
    }

    let read_only = spec.access_modes.as_deref() == Some(&["ReadOnlyMany".to_string()][..]);
    let mut opts = Vec::new();
    if read_only {
        opts.push(options::parse_item("ro")?);
    }
    for item in spec.mount_options.iter().flatten() {
        opts = options::merge(opts, options::parse_list(item)?);
    }
    if let Some(list) = attrs.get("mountOptions") {
        opts = options::merge(opts, options::parse_list(list)?);
    }
    if let Some(sub) = attrs.get("subPath").filter(|s| !s.is_empty()) {
        let base = opts
            .iter()
            .find(|o| o.key == "subdir")
            .and_then(|o| o.value.clone());
        let joined = match base {
            Some(b) => format!(
                "{}/{}",
                b.trim_end_matches('/'),
                sub.trim_start_matches('/')
            ),
            None => sub.clone(),
        };
        opts = options::merge(
            opts,
            vec![MountOption {
                key: "subdir".into(),
                value: Some(joined),
            }],
        );
    }
    if let Some(sub) = opts
        .iter()
        .find(|o| o.key == "subdir")
        .and_then(|o| o.value.as_ref())
        && sub.split('/').any(|p| p == "..")
    {
        return Err(invalid(
            format!("PV {pv_name} subdir"),
            format!("{sub:?} must not contain '..'"),
        ));
    }

    let pvc_name = i.pvc.metadata.name.clone().unwrap_or_default();
    let facts = PvcFacts {
        name: pvc_name.clone(),
        labels: i.pvc.metadata.labels.clone().unwrap_or_default(),
        storage_class: i
            .pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone()),
    };
    let patch = i.config.patch_for(&facts, i.node_labels);
    if let Some(p) = &patch.mount_options {
        let parsed = p
            .iter()
            .map(|o| options::parse_item(o))
            .collect::<Result<Vec<_>, _>>()?;
        opts = options::merge(opts, parsed);
    }
    let patch_dirs = patch.cache_dirs.as_deref().filter(|d| !d.is_empty());
    let cache_sources = match patch_dirs {
        Some(dirs) => cache::from_patch_list(dirs),
        None => cache::from_volume_context(&pv_name, &attrs)?,
    };
    if !cache_sources.is_empty() {
        let mut paths: Vec<String> = cache_sources.iter().map(|(p, _)| p.clone()).collect();
        // The volume context's volumes come first; a patch replaces the option outright.
        if patch_dirs.is_none()
            && let Some(user) = opts
                .iter()
                .find(|o| o.key == "cache-dir")
                .and_then(|o| o.value.clone())
        {
            paths.extend(user.split(':').filter(|d| !d.is_empty()).map(String::from));
        }
        let dir = options::MountOption {
            key: "cache-dir".into(),
            value: Some(paths.join(":")),
        };
        opts = options::merge(opts, vec![dir]);
    }
    let cache_sources: BTreeMap<String, CacheSource> = cache_sources.into_iter().collect();

    let host_paths: Vec<String> = attrs
        .get("juicefs/host-path")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    for p in &host_paths {
        check_abs_path(&format!("PV {pv_name} juicefs/host-path"), p)?;
    }
    if i.serverless && !host_paths.is_empty() {
        return Err(SpecError::Unsupported(format!(
            "PV {pv_name}: juicefs/host-path mounts directories of the node, which the serverless path never does; use a StorageClass without it for serverless pods"
        )));
    }
    let service_account = attrs
        .get("juicefs/mount-service-account")
        .filter(|s| !s.is_empty())
        .cloned();

    let mut image = i.default_image.to_string();
    if let Some(img) = attrs.get("juicefs/mount-image").filter(|s| !s.is_empty()) {
        image = img.clone();
    }
    if let Some(img) = &patch.ce_mount_image {
        image = img.clone();
    }

    let mut resources = default_resources();
    apply_resource_keys(&mut resources, &format!("PV {pv_name}"), &attrs)?;
    let annotations = i.pvc.metadata.annotations.clone().unwrap_or_default();
    apply_resource_keys(
        &mut resources,
        &format!("PVC {pvc_name} annotation"),
        &annotations,
    )?;
    if let Some(r) = &patch.resources {
        resources = r.clone();
    }

    let yaml_map = |key: &str| -> Result<BTreeMap<String, String>, SpecError> {
        match attrs.get(key) {
            Some(v) => secret::string_map(&format!("PV {pv_name} {key}"), v),
            None => Ok(BTreeMap::new()),
        }
    };
    let mut labels = yaml_map("juicefs/mount-labels")?;
    let mut pod_annotations = yaml_map("juicefs/mount-annotations")?;
    labels.extend(patch.labels.clone().unwrap_or_default());
    pod_annotations.extend(patch.annotations.clone().unwrap_or_default());

    let mut delete_delay = attrs.get("juicefs/mount-delete-delay").cloned();
    if let Some(d) = pod_annotations.remove("juicefs-delete-delay") {
        delete_delay = Some(d);
    }
    if let Some(d) = &delete_delay {
        check_duration(&format!("PV {pv_name} juicefs/mount-delete-delay"), d)?;
    }
    let clean_cache = attrs.get("juicefs/clean-cache").map(String::as_str) == Some("true")
        || pod_annotations.remove("juicefs-clean-cache").as_deref() == Some("true");

    let capacity = i
        .pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| quantity_bytes(&q.0));
    // The PVC says what its user wants now (it grows on expansion); the volume context
    // keeps what CreateVolume was asked for, for PVs without a claim.
    let capacity = match (capacity, attrs.get("capacity")) {
        (Some(c), _) => Some(c),
        (None, Some(v)) => Some(v.trim().parse::<u64>().map_err(|_| {
            invalid(
                format!("PV {pv_name} capacity"),
                format!("{v:?} is not a number of bytes"),
            )
        })?),
        (None, None) => None,
    };

    let mut patch = patch;
    patch.pvc_selector = None;
    patch.node_selector = None;
    Ok(MountSetting {
        pv_name,
        volume_handle: csi.volume_handle.clone(),
        secret,
        options: opts,
        read_only,
        image,
        image_pull_policy: patch.image_pull_policy.clone(),
        resources,
        labels,
        annotations: pod_annotations,
        delete_delay,
        clean_cache,
        capacity,
        service_account,
        host_paths,
        cache_sources,
        serverless: i.serverless,
        patch,
    })
}
