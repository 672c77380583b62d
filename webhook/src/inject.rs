//! The injection decision for one pod, as a pure function of the pod and what the cluster
//! holds (read through `ClusterView`, which the server backs with watch caches): skip it,
//! deny it with the fix in the message, or mutate it (one mount container per JuiceFS
//! volume) and list the Secret copies the containers read.
//!
//! Nothing comes from the host unless the volume asks for it (the disk cache is an
//! `emptyDir`), so serverless pods get the same mutation as any other. A `cacheDirs` patch's
//! host path becomes an `emptyDir` on the serverless path, and a PV's `juicefs/host-path`
//! is denied there.
//!
//! Where the mount lives: the app's PVC volume becomes an `emptyDir` that the sidecar
//! mounts with `Bidirectional` propagation (privileged) and every app and init container
//! that uses it sees with `HostToContainer`; `subPath` and `readOnly` stay as they were.

use jfs_mountspec::container::{
    ContainerParams, LABEL_EXIT_ON_APP_EXIT, PODINFO_VOLUME, Placement, mount_container,
    secret_copy_data,
};
use jfs_mountspec::setting::{Inputs, resolve};
use jfs_mountspec::volumes::attach_volumes;
use jfs_mountspec::{DRIVER_NAME, GlobalConfig};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource,
    ObjectFieldSelector, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::BTreeMap;

pub const LABEL_DONE: &str = "done.sidecar.juicefs.com/inject";
pub const LABEL_DISABLE: &str = "disable.sidecar.juicefs.com/inject";
pub const FIRST_METRICS_PORT: u16 = 9567;
/// Proxies the client's own traffic may need: the mount container goes after them.
const MESH_PROXIES: &[&str] = &["istio-proxy", "linkerd-proxy"];

/// Read access to the objects a decision needs (watch caches in the server, maps in tests).
pub trait ClusterView {
    fn pvc(&self, namespace: &str, name: &str) -> Option<PersistentVolumeClaim>;
    fn pv(&self, name: &str) -> Option<PersistentVolume>;
    fn storage_class(&self, name: &str) -> Option<StorageClass>;
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret>;
    /// The Secret is known not to exist (a failed read proves nothing).
    fn secret_missing(&self, namespace: &str, name: &str) -> bool {
        self.secret(namespace, name).is_none()
    }
    fn node_labels(&self, name: &str) -> Option<BTreeMap<String, String>>;
    /// Fetches what the decision for `pod` will read and a cache cannot hold (Secrets).
    fn prepare<'a>(&'a self, _pod: &'a Pod, _namespace: &'a str) -> crate::server::BoxFut<'a, ()> {
        Box::pin(async {})
    }
}

#[derive(Clone, Debug)]
pub struct InjectConfig {
    pub global: GlobalConfig,
    /// Native sidecars (API server >= 1.29, or forced by `enableNativeSidecar`).
    pub native: bool,
    pub default_image: String,
}

/// A classic sidecar's `preStop` waits for the app's files to close inside the pod's grace
/// period; a shorter period is raised to this so the drain has time to flush.
pub const MIN_CLASSIC_GRACE_SECONDS: i64 = 30;

#[derive(Debug, PartialEq)]
pub enum Decision {
    Skip(String),
    Deny(String),
    Mutate {
        pod: Box<Pod>,
        secrets: Vec<Secret>,
        /// Settings that were ignored, and why (admission warnings).
        warnings: Vec<String>,
    },
}

fn is_true(labels: Option<&BTreeMap<String, String>>, key: &str) -> bool {
    labels.and_then(|l| l.get(key)).map(String::as_str) == Some("true")
}

/// One JuiceFS volume of the pod, with everything resolved.
struct Found {
    volume: String,
    pvc: PersistentVolumeClaim,
    pv: PersistentVolume,
    secret: Secret,
}

fn find_volumes(pod: &Pod, ns: &str, view: &dyn ClusterView) -> Result<Vec<Found>, String> {
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(claim) = &v.persistent_volume_claim else {
            continue;
        };
        let claim = &claim.claim_name;
        let pvc = view.pvc(ns, claim).ok_or_else(|| {
            format!(
                "volume {:?}: PVC {ns}/{claim} not found; create it before the pod",
                v.name
            )
        })?;
        let spec = pvc.spec.clone().unwrap_or_default();
        let Some(pv_name) = spec.volume_name.filter(|n| !n.is_empty()) else {
            let sc = spec
                .storage_class_name
                .as_deref()
                .and_then(|n| view.storage_class(n));
            if let Some(sc) = sc.filter(|sc| sc.provisioner == DRIVER_NAME) {
                return Err(format!(
                    "volume {:?}: PVC {ns}/{claim} of StorageClass {} is not bound yet; the JuiceFS sidecar needs a bound PVC: use volumeBindingMode: Immediate on the StorageClass",
                    v.name,
                    sc.metadata.name.unwrap_or_default()
                ));
            }
            continue;
        };
        let Some(pv) = view.pv(&pv_name) else {
            continue;
        };
        let csi = pv.spec.as_ref().and_then(|s| s.csi.as_ref());
        if csi.map(|c| c.driver.as_str()) != Some(DRIVER_NAME) {
            continue;
        }
        let secret_ref = csi.and_then(|c| c.node_publish_secret_ref.clone()).ok_or_else(|| {
            format!(
                "volume {:?}: PV {pv_name} has no spec.csi.nodePublishSecretRef; point it at the Secret with the volume's name and metaurl",
                v.name
            )
        })?;
        let sns = secret_ref
            .namespace
            .clone()
            .unwrap_or_else(|| ns.to_string());
        let sname = secret_ref.name.clone().unwrap_or_default();
        let secret = view.secret(&sns, &sname).ok_or_else(|| {
            format!(
                "volume {:?}: Secret {sns}/{sname} (nodePublishSecretRef of PV {pv_name}) not found",
                v.name
            )
        })?;
        out.push(Found {
            volume: v.name.clone(),
            pvc,
            pv,
            secret,
        });
    }
    Ok(out)
}

pub(crate) fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// Where a new first container goes: after any service-mesh proxy.
fn insert_after_mesh(list: &mut Vec<Container>, c: Container) {
    let at = list
        .iter()
        .rposition(|x| MESH_PROXIES.contains(&x.name.as_str()))
        .map_or(0, |i| i + 1);
    list.insert(at, c);
}

fn unique_name(pod: &Pod, base: &str) -> String {
    let taken = |n: &str| {
        pod.spec.iter().any(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .any(|c| c.name == n)
        })
    };
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken(n))
        .unwrap_or_default()
}

/// `serverless`: the request came on the serverless path, where nothing may come from the
/// host, so `HostPath` cache patches become `emptyDir`.
pub fn decide(
    pod: &Pod,
    request_namespace: &str,
    view: &dyn ClusterView,
    cfg: &InjectConfig,
    serverless: bool,
) -> Decision {
    let labels = pod.metadata.labels.as_ref();
    if is_true(labels, LABEL_DONE) {
        // Reinvoked after later webhooks ran: a webhook built against an old Kubernetes
        // API drops fields it does not know, and a native sidecar without
        // `restartPolicy: Always` blocks the pod in PodInitializing forever.
        let stripped = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .find(|c| c.name.starts_with("jfs-mount") && c.restart_policy.is_none());
        if let Some(c) = stripped {
            return Decision::Deny(format!(
                "init container {:?} lost restartPolicy: Always after injection: another mutating webhook rewrote the pod with an API older than Kubernetes 1.28; upgrade that webhook, or set enableNativeSidecar: false in the juicefs-csi-driver-config ConfigMap",
                c.name
            ));
        }
        return Decision::Skip("injection is already done".into());
    }
    if is_true(labels, LABEL_DISABLE) {
        return Decision::Skip("injection is disabled by label".into());
    }
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| request_namespace.to_string());
    let found = match find_volumes(pod, &ns, view) {
        Ok(f) => f,
        Err(e) => return Decision::Deny(e),
    };
    if found.is_empty() {
        return Decision::Skip("the pod uses no JuiceFS volume".into());
    }
    let node_labels = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .and_then(|n| view.node_labels(n))
        .or_else(|| pod.spec.as_ref().and_then(|s| s.node_selector.clone()))
        .unwrap_or_default();
    if !cfg.native
        && let Some((c, v)) = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .find_map(|c| {
                let m = c.volume_mounts.iter().flatten();
                m.map(|m| &m.name)
                    .find(|n| found.iter().any(|f| &f.volume == *n))
                    .map(|v| (c.name.clone(), v.clone()))
            })
    {
        return Decision::Deny(format!(
            "init container {c:?} mounts JuiceFS volume {v:?}, but this cluster gets classic sidecars (Kubernetes < 1.29 or enableNativeSidecar: false), which start after init containers: its writes would land on the node's disk, hidden under the mount. Use native sidecars (Kubernetes >= 1.29), or do that work in an app container"
        ));
    }
    let quota_on = cfg.global.enable_set_quota != Some(false);
    // A classic sidecar would keep a Job's pod running after the app exits.
    let exit_on_app_exit = !cfg.native
        && matches!(
            pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()),
            Some("Never" | "OnFailure")
        );

    let mut out = pod.clone();
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds);
    let grace = if cfg.native {
        grace.unwrap_or(30)
    } else {
        let raised = grace.unwrap_or(30).max(MIN_CLASSIC_GRACE_SECONDS);
        if grace.is_some_and(|g| g < raised) {
            out.spec
                .get_or_insert_with(Default::default)
                .termination_grace_period_seconds = Some(raised);
        }
        raised
    };
    let mut secrets = Vec::new();
    let mut warnings = Vec::new();
    let mut sidecars = Vec::new();
    let mut volumes: Vec<Volume> = Vec::new();
    for (i, f) in found.iter().enumerate() {
        let pvc_name = f.pvc.metadata.name.clone().unwrap_or_default();
        let secret_id = format!(
            "{}/{}",
            f.secret.metadata.namespace.clone().unwrap_or_default(),
            f.secret.metadata.name.clone().unwrap_or_default()
        );
        let data = secret_data(&f.secret);
        let setting = match resolve(&Inputs {
            secret_id: &secret_id,
            secret_data: &data,
            pv: &f.pv,
            pvc: &f.pvc,
            node_labels: &node_labels,
            config: &cfg.global,
            default_image: &cfg.default_image,
            serverless,
        }) {
            Ok(s) => s,
            Err(e) => {
                return Decision::Deny(format!("volume {:?} (PVC {ns}/{pvc_name}): {e}", f.volume));
            }
        };
        warnings.extend(setting.secret.warnings.iter().cloned());
        if let Some(sa) = &setting.service_account {
            warnings.push(format!(
                "PV {}: juicefs/mount-service-account {sa:?} is ignored: a sidecar runs as its pod's service account",
                setting.pv_name
            ));
        }
        // The sidecar mounts them from the pod's namespace; without one the kubelet keeps
        // the pod in ContainerCreating, with a message that does not say who asked for it.
        for name in setting.secret.configs.keys() {
            if view.secret_missing(&ns, name) {
                warnings.push(format!(
                    "Secret {ns}/{name} (in configs of Secret {secret_id}) was not found: the pod waits in ContainerCreating until it exists in namespace {ns}"
                ));
            }
        }
        let dynamic =
            f.pv.spec
                .as_ref()
                .and_then(|s| s.csi.as_ref())
                .and_then(|c| c.volume_attributes.as_ref())
                .is_some_and(|a| a.contains_key("subPath"));
        if quota_on
            && dynamic
            && let Some(cap) = setting.capacity.filter(|c| *c < 1 << 30)
        {
            return Decision::Deny(format!(
                "volume {:?}: PVC {ns}/{pvc_name} requests {cap} bytes; JuiceFS quotas need at least 1Gi: raise spec.resources.requests.storage",
                f.volume
            ));
        }
        let copy_name = format!("{pvc_name}-jfs-secret");
        let uid = f
            .pvc
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| pvc_name.clone());
        let port = FIRST_METRICS_PORT + i as u16;
        let base = if i == 0 {
            "jfs-mount".to_string()
        } else {
            format!("jfs-mount-{i}")
        };
        let params = ContainerParams {
            name: unique_name(&out, &base),
            mount_path: format!("/jfs/{uid}"),
            volume_name: f.volume.clone(),
            secret_name: copy_name.clone(),
            metrics_port: port,
            metrics_port_name: if i == 0 {
                "metrics".into()
            } else {
                format!("metrics-{i}")
            },
            placement: if cfg.native {
                Placement::NativeSidecar
            } else {
                Placement::ClassicSidecar
            },
            grace_seconds: grace,
            exit_on_app_exit,
        };
        let mut container = mount_container(&setting, &params);
        let prefix = format!("{}-", params.name);
        volumes.extend(attach_volumes(
            &setting,
            params.placement,
            &prefix,
            &mut container,
        ));
        // The patch's volumeMounts are on the container: their volumes join the pod.
        for v in setting.patch.volumes.iter().flatten() {
            let existing = out
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .chain(volumes.iter())
                .find(|x| x.name == v.name);
            match existing {
                Some(x) if x == v => {}
                Some(_) => {
                    return Decision::Deny(format!(
                        "volume {:?} of a mountPodPatch in ConfigMap juicefs-csi-driver-config has the name of a different volume of the pod: rename it in the patch",
                        v.name
                    ));
                }
                None => volumes.push(v.clone()),
            }
        }
        sidecars.push(container);
        secrets.push(Secret {
            metadata: ObjectMeta {
                name: Some(copy_name),
                namespace: Some(ns.clone()),
                labels: Some([("juicefs/secret".to_string(), "true".to_string())].into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "PersistentVolumeClaim".into(),
                    name: pvc_name.clone(),
                    uid: uid.clone(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            data: Some(
                secret_copy_data(&data)
                    .into_iter()
                    .map(|(k, v)| (k, ByteString(v)))
                    .collect(),
            ),
            type_: Some("Opaque".into()),
            ..Default::default()
        });
        rewrite_volume(&mut out, &f.volume);
    }
    let spec = out.spec.get_or_insert_with(Default::default);
    spec.volumes.get_or_insert_with(Vec::new).extend(volumes);
    // Insert in reverse so the first volume's container ends up first.
    for c in sidecars.into_iter().rev() {
        if cfg.native {
            insert_after_mesh(spec.init_containers.get_or_insert_with(Vec::new), c);
        } else {
            insert_after_mesh(&mut spec.containers, c);
        }
    }
    let labels = out.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(LABEL_DONE.into(), "true".into());
    if exit_on_app_exit {
        labels.insert(LABEL_EXIT_ON_APP_EXIT.into(), "true".into());
        add_podinfo_volume(&mut out);
    }
    Decision::Mutate {
        pod: Box::new(out),
        secrets,
        warnings,
    }
}

/// The pod's annotations as a file the classic sidecar watches for the app-exit mark.
fn add_podinfo_volume(pod: &mut Pod) {
    let volumes = pod
        .spec
        .get_or_insert_with(Default::default)
        .volumes
        .get_or_insert_with(Vec::new);
    if volumes.iter().any(|v| v.name == PODINFO_VOLUME) {
        return;
    }
    volumes.push(Volume {
        name: PODINFO_VOLUME.into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![DownwardAPIVolumeFile {
                path: "annotations".into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.annotations".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
}

/// The PVC volume becomes an emptyDir; its users see the FUSE mount made later.
fn rewrite_volume(pod: &mut Pod, name: &str) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    for v in spec.volumes.iter_mut().flatten().filter(|v| v.name == name) {
        *v = Volume {
            name: v.name.clone(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        };
    }
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        for m in c
            .volume_mounts
            .iter_mut()
            .flatten()
            .filter(|m| m.name == name)
        {
            m.mount_propagation = Some("HostToContainer".into());
        }
    }
}
