//! Mount Pods on this node: find the one serving (volume, settings hash) or create it, keep
//! one reference annotation per target, delete it (now or after `juicefs/mount-delete-delay`)
//! when the last reference goes. Lookups come from a watch cache narrowed to this node's
//! Mount Pods, overlaid with this process's own writes until the watch catches up, so a
//! publish on a live pod costs one API write (a merge patch of one annotation, which never
//! conflicts with another publish's patch).

use crate::target;
use futures::StreamExt;
use jfs_mountspec::MountSetting;
use jfs_mountspec::container::secret_copy_data;
use jfs_mountspec::pod::{
    ANNOTATION_CLEAN_CACHE, ANNOTATION_UUID, APP_MOUNT, LABEL_APP, LABEL_HASH, LABEL_VOLUME_ID,
    MountPodParams, mount_pod,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ANNOTATION_DELETE_DELAY: &str = "juicefs-delete-delay";
pub const ANNOTATION_DELETE_AT: &str = "juicefs-delete-at";

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_name: String,
    /// Where Mount Pods live (the driver's namespace).
    pub namespace: String,
    pub kubelet_dir: PathBuf,
    /// The host directory under which Mount Pods mount (their `/jfs`), as this process sees it.
    pub mount_dir: PathBuf,
    pub mount_image: String,
    pub priority_class: Option<String>,
    /// How long a publish waits for the client's mount to be live.
    pub ready_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

pub struct MountPods {
    client: kube::Client,
    pub cfg: NodeConfig,
    store: Store<Pod>,
    /// Our own writes, newer than the cache until the watch delivers them.
    recent: Mutex<HashMap<String, Pod>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Woken on every change the watch delivers (recovery reacts at once).
    pub changed: Arc<tokio::sync::Notify>,
    /// Pods whose volume UUID this process has recorded (once each).
    uuids: Mutex<std::collections::HashSet<String>>,
    /// The app pod (namespace, name) of each target this process published, for Events
    /// about the client behind it (lost on restart: the target path names only the pod UID).
    apps: Mutex<HashMap<String, (String, String)>>,
}

fn rv(p: &Pod) -> u64 {
    p.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn random_suffix() -> String {
    // Six lowercase letters, as the Go driver names its pods.
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        ^ (std::process::id() as u64) << 32;
    (0..6)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

/// The suffix of a Mount Pod's name (`juicefs-<node>-<volume>-<suffix>`).
pub fn suffix_of(pod: &Pod) -> String {
    pod.name_any()
        .rsplit('-')
        .next()
        .unwrap_or_default()
        .to_string()
}

pub fn is_gone(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
        || p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
}

impl MountPods {
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn note_app(&self, target: &str, app: (String, String)) {
        if let Ok(mut a) = self.apps.lock() {
            a.insert(target.to_string(), app);
        }
    }

    pub fn app_of(&self, target: &str) -> Option<(String, String)> {
        self.apps.lock().ok()?.get(target).cloned()
    }

    /// Starts the watch cache of this node's Mount Pods.
    pub fn start(client: kube::Client, cfg: NodeConfig) -> Arc<MountPods> {
        let api: Api<Pod> = Api::namespaced(client.clone(), &cfg.namespace);
        let wc = watcher::Config::default()
            .labels(&format!("{LABEL_APP}={APP_MOUNT}"))
            .fields(&format!("spec.nodeName={}", cfg.node_name));
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher::watcher(api, wc))
            .default_backoff()
            .touched_objects();
        let changed = Arc::new(tokio::sync::Notify::new());
        let notify = changed.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => notify.notify_one(),
                    Err(e) => tracing::warn!("watching Mount Pods: {e}"),
                }
            }
        });
        Arc::new(MountPods {
            client,
            cfg,
            store,
            recent: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            changed,
            uuids: Mutex::new(Default::default()),
            apps: Mutex::new(HashMap::new()),
        })
    }

    pub async fn synced(&self) {
        let _ = self.store.wait_until_ready().await;
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    fn remember(&self, p: Pod) {
        if let Ok(mut r) = self.recent.lock() {
            r.insert(p.name_any(), p);
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut r) = self.recent.lock() {
            r.remove(name);
        }
    }

    /// This node's Mount Pods: the cache, overlaid with our newer writes.
    pub fn pods(&self) -> Vec<Pod> {
        let mut by_name: BTreeMap<String, Pod> = self
            .store
            .state()
            .iter()
            .map(|p| (p.name_any(), (**p).clone()))
            .collect();
        if let Ok(mut recent) = self.recent.lock() {
            recent.retain(|name, p| match by_name.get(name) {
                Some(cached) if rv(cached) >= rv(p) => false,
                _ => {
                    by_name.insert(name.clone(), p.clone());
                    true
                }
            });
        }
        by_name.into_values().collect()
    }

    pub fn pods_of(&self, unique_id: &str) -> Vec<Pod> {
        self.pods()
            .into_iter()
            .filter(|p| p.labels().get(LABEL_VOLUME_ID).map(String::as_str) == Some(unique_id))
            .collect()
    }

    fn lock_for(&self, unique_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut l = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        l.entry(unique_id.to_string()).or_default().clone()
    }

    /// Where the pod's client mounts, as this process sees it.
    pub fn host_path(&self, pod: &Pod) -> PathBuf {
        let uid = pod
            .labels()
            .get(LABEL_VOLUME_ID)
            .cloned()
            .unwrap_or_default();
        self.cfg.mount_dir.join(format!("{uid}-{}", suffix_of(pod)))
    }

    async fn patch_annotations(&self, name: &str, ann: serde_json::Value) -> Result<Pod, PodError> {
        let patch = json!({"metadata": {"annotations": ann}});
        let p = self
            .api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.remember(p.clone());
        Ok(p)
    }

    async fn ensure_secret(
        &self,
        s: &MountSetting,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<String, PodError> {
        let name = format!("juicefs-{}-secret", s.volume_handle);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        let want: BTreeMap<String, ByteString> = secret_copy_data(data)
            .into_iter()
            .map(|(k, v)| (k, ByteString(v)))
            .collect();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                labels: Some([("juicefs/secret".to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            data: Some(want.clone()),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        match api.get_opt(&name).await? {
            Some(cur) if cur.data.as_ref() == Some(&want) => {}
            Some(cur) => {
                let mut next = secret;
                next.metadata.resource_version = cur.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &next).await?;
            }
            None => {
                api.create(&PostParams::default(), &secret).await?;
            }
        }
        Ok(name)
    }

    /// Records `target` on the Mount Pod for this setting (creating the pod if needed) and
    /// returns the pod's name and its mount path on this host.
    pub async fn acquire(
        &self,
        s: &MountSetting,
        secret_data: &BTreeMap<String, Vec<u8>>,
        target: &str,
    ) -> Result<(String, PathBuf), PodError> {
        let unique_id = s.volume_handle.clone();
        let lock = self.lock_for(&unique_id);
        let _held = lock.lock().await;
        let hash = s.hash();
        let key = target::ref_key(target);
        let pods = self.pods_of(&unique_id);
        let reusable = pods.iter().find(|p| {
            !is_gone(p) && p.labels().get(LABEL_HASH).map(String::as_str) == Some(hash.as_str())
        });
        // Another setting's pod may still hold this target from an earlier publish.
        for p in pods.iter().filter(|p| Some(*p) != reusable) {
            if p.annotations().contains_key(&key) {
                self.patch_annotations(&p.name_any(), json!({ key.clone(): null }))
                    .await?;
            }
        }
        if let Some(p) = reusable {
            let has_ref = p.annotations().get(&key).map(String::as_str) == Some(target);
            let delayed = p.annotations().contains_key(ANNOTATION_DELETE_AT);
            if !has_ref || delayed {
                self.patch_annotations(
                    &p.name_any(),
                    json!({ key: target, ANNOTATION_DELETE_AT: null }),
                )
                .await?;
            }
            return Ok((p.name_any(), self.host_path(p)));
        }
        let secret_name = self.ensure_secret(s, secret_data).await?;
        let mut pod = mount_pod(
            s,
            &MountPodParams {
                node_name: self.cfg.node_name.clone(),
                namespace: self.cfg.namespace.clone(),
                suffix: random_suffix(),
                host_mount_dir: self.cfg.mount_dir.display().to_string(),
                secret_name,
                priority_class: self.cfg.priority_class.clone(),
            },
        );
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key, target.to_string());
        let path = self.host_path(&pod);
        std::fs::create_dir_all(&path)
            .map_err(|e| PodError::Other(format!("creating {}: {e}", path.display())))?;
        let created = self.api().create(&PostParams::default(), &pod).await?;
        tracing::info!(pod = %created.name_any(), volume = %unique_id, "created Mount Pod");
        self.remember(created.clone());
        Ok((created.name_any(), path))
    }

    /// Drops `target`'s reference; at zero references the pod is deleted, or marked for
    /// deletion after its delay. Returns the pod that held it, if any.
    pub async fn release(&self, unique_id: &str, target: &str) -> Result<Option<String>, PodError> {
        let lock = self.lock_for(unique_id);
        let _held = lock.lock().await;
        if let Ok(mut a) = self.apps.lock() {
            a.remove(target);
        }
        let key = target::ref_key(target);
        let holders: Vec<Pod> = self
            .pods()
            .into_iter()
            .filter(|p| p.annotations().contains_key(&key))
            .collect();
        let mut released = None;
        for p in holders {
            let name = p.name_any();
            let after = self
                .patch_annotations(&name, json!({ key.clone(): null }))
                .await?;
            if target::refs(after.metadata.annotations.as_ref()).is_empty() {
                self.retire(&after).await?;
            }
            released = Some(name);
        }
        Ok(released)
    }

    /// A pod with no references: delete it now, or note when (delayed deletion).
    async fn retire(&self, p: &Pod) -> Result<(), PodError> {
        let name = p.name_any();
        let delay = p
            .annotations()
            .get(ANNOTATION_DELETE_DELAY)
            .and_then(|d| jfs_mountspec::setting::go_duration(d));
        if let Some(d) = delay.filter(|d| !d.is_zero()) {
            let at = k8s_openapi::jiff::Timestamp::now()
                + k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or_default();
            self.patch_annotations(&name, json!({ ANNOTATION_DELETE_AT: at.to_string() }))
                .await?;
            tracing::info!(pod = %name, "no references left: deleting after {d:?}");
            return Ok(());
        }
        self.delete(&name).await
    }

    async fn delete(&self, name: &str) -> Result<(), PodError> {
        match self.api().delete(name, &DeleteParams::default()).await {
            Ok(either) => {
                if let either::Either::Left(p) = either {
                    self.remember(p);
                } else {
                    self.forget(name);
                }
                tracing::info!(pod = %name, "deleted Mount Pod: no references left");
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                self.forget(name);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes pods whose delayed deletion is due and that gained no reference since.
    pub async fn reap_delayed(&self) {
        let now = k8s_openapi::jiff::Timestamp::now();
        for p in self.pods() {
            let due = p
                .annotations()
                .get(ANNOTATION_DELETE_AT)
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .is_some_and(|t| t <= now);
            if !due || is_gone(&p) {
                continue;
            }
            let uid = p.labels().get(LABEL_VOLUME_ID).cloned().unwrap_or_default();
            let lock = self.lock_for(&uid);
            let _held = lock.lock().await;
            let fresh = self
                .pods()
                .into_iter()
                .find(|x| x.name_any() == p.name_any());
            if let Some(f) = fresh
                && target::refs(f.metadata.annotations.as_ref()).is_empty()
                && let Err(e) = self.delete(&f.name_any()).await
            {
                tracing::warn!(pod = %f.name_any(), "delayed deletion: {e}");
            }
        }
    }

    /// A Mount Pod deleted while targets still use it (evicted, deleted by hand): the same
    /// pod under a new name and mount path, holding the same references. Its targets break
    /// when the old client exits and are re-bound from the new path by the recovery loop.
    pub async fn replace(&self, old: &Pod) -> Result<Option<String>, PodError> {
        let uid = old
            .labels()
            .get(LABEL_VOLUME_ID)
            .cloned()
            .unwrap_or_default();
        let lock = self.lock_for(&uid);
        let _held = lock.lock().await;
        let hash = old.labels().get(LABEL_HASH).cloned();
        let exists = self.pods_of(&uid).iter().any(|p| {
            !is_gone(p)
                && p.labels().get(LABEL_HASH) == hash.as_ref()
                && p.name_any() != old.name_any()
        });
        if exists {
            return Ok(None);
        }
        let (old_suffix, suffix) = (suffix_of(old), random_suffix());
        let mut pod = old.clone();
        let base = old.name_any();
        let name = format!("{}{suffix}", &base[..base.len() - old_suffix.len()]);
        pod.metadata = ObjectMeta {
            name: Some(name.clone()),
            namespace: old.metadata.namespace.clone(),
            labels: old.metadata.labels.clone(),
            annotations: old.metadata.annotations.clone(),
            finalizers: old.metadata.finalizers.clone(),
            ..Default::default()
        };
        pod.status = None;
        let (from, to) = (
            format!("/jfs/{uid}-{old_suffix}"),
            format!("/jfs/{uid}-{suffix}"),
        );
        if let Some(spec) = pod.spec.as_mut() {
            for c in spec.containers.iter_mut() {
                for arg in c
                    .command
                    .iter_mut()
                    .flatten()
                    .chain(c.args.iter_mut().flatten())
                {
                    *arg = arg.replace(&from, &to);
                }
            }
        }
        let path = self.host_path(&pod);
        std::fs::create_dir_all(&path)
            .map_err(|e| PodError::Other(format!("creating {}: {e}", path.display())))?;
        let created = self.api().create(&PostParams::default(), &pod).await?;
        tracing::warn!(old = %base, new = %name, "Mount Pod deleted while in use: replaced it");
        self.remember(created);
        Ok(Some(name))
    }

    /// Records the volume's UUID on the pod (from its client's `.config`), once: the
    /// cache-clean Job needs it after the client is gone.
    pub async fn record_uuid(&self, name: &str, mount_path: &std::path::Path) {
        // Every publish passes here: the cheap set first, the pod list once per pod.
        if !self
            .uuids
            .lock()
            .is_ok_and(|mut u| u.insert(name.to_string()))
        {
            return;
        }
        let known = self
            .pods()
            .iter()
            .any(|p| p.name_any() == name && p.annotations().contains_key(ANNOTATION_UUID));
        if known {
            return;
        }
        let cfg = tokio::fs::read(mount_path.join(".config")).await.ok();
        let uuid = cfg
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["UUID"].as_str().map(str::to_string));
        match uuid {
            Some(u) => {
                if let Err(e) = self
                    .patch_annotations(name, json!({ ANNOTATION_UUID: u }))
                    .await
                {
                    tracing::warn!(pod = %name, "recording the volume UUID: {e}");
                    if let Ok(mut set) = self.uuids.lock() {
                        set.remove(name);
                    }
                }
            }
            None => tracing::debug!(pod = %name, "no UUID in the client's .config"),
        }
    }

    /// The cache-clean Job for a deleted pod that asked for it, when no other Mount Pod of its
    /// volume is left on this node.
    async fn clean_cache(&self, p: &Pod) {
        if p.annotations()
            .get(ANNOTATION_CLEAN_CACHE)
            .map(String::as_str)
            != Some("true")
        {
            return;
        }
        let uid = p.labels().get(LABEL_VOLUME_ID).cloned().unwrap_or_default();
        if self
            .pods_of(&uid)
            .iter()
            .any(|o| o.name_any() != p.name_any() && !is_gone(o))
        {
            return;
        }
        let Some(job) = crate::cleancache::job(p, &self.cfg.node_name, &self.cfg.namespace) else {
            tracing::warn!(pod = %p.name_any(), "cache cleaning asked for, but the volume UUID or cache directories are unknown");
            return;
        };
        let api: Api<k8s_openapi::api::batch::v1::Job> =
            Api::namespaced(self.client.clone(), &self.cfg.namespace);
        match api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                tracing::info!(pod = %p.name_any(), job = %j.name_any(), "started the cache-clean Job")
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::debug!(pod = %p.name_any(), "the cache-clean Job was already started")
            }
            Err(e) => tracing::warn!(pod = %p.name_any(), "creating the cache-clean Job: {e}"),
        }
    }

    /// A deleted Mount Pod's last step: unmount its path on this host, clean its cache when
    /// asked, then let it go.
    pub async fn finalize(&self, p: &Pod) -> Result<(), PodError> {
        let path = self.host_path(p);
        let _ = crate::mounts::unmount_all(&path);
        let _ = std::fs::remove_dir(&path);
        if target::refs(p.metadata.annotations.as_ref()).is_empty() {
            self.clean_cache(p).await;
        }
        let finalizers: Vec<String> = p
            .finalizers()
            .iter()
            .filter(|f| f.as_str() != jfs_mountspec::pod::FINALIZER)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"finalizers": finalizers}});
        match self
            .api()
            .patch(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                self.forget(&p.name_any());
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                self.forget(&p.name_any());
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The last lines the Mount Pod's client wrote, for error messages.
    pub async fn last_log_lines(&self, name: &str) -> String {
        let lp = LogParams {
            tail_lines: Some(20),
            ..Default::default()
        };
        match self.api().logs(name, &lp).await {
            Ok(t) if !t.trim().is_empty() => t,
            Ok(_) => "(the Mount Pod has written no log yet)".into(),
            Err(e) => format!("(cannot read the Mount Pod's log: {e})"),
        }
    }

    /// A short account of a pod that is not serving: phase, container states, and what to do.
    pub fn describe(&self, name: &str) -> String {
        match self.pods().into_iter().find(|p| p.name_any() == name) {
            Some(p) => describe(&p),
            None => format!("Mount Pod {name} is not in the cache yet"),
        }
    }
}

/// Phase, container states and conditions of a Mount Pod that is not serving, with advice.
pub fn describe(p: &Pod) -> String {
    let st = p.status.clone().unwrap_or_default();
    let mut out = format!(
        "Mount Pod {}/{} is {}",
        p.namespace().unwrap_or_default(),
        p.name_any(),
        st.phase.clone().unwrap_or_else(|| "Pending".into())
    );
    for c in st.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            out.push_str(&format!(
                "; {} waiting: {}",
                c.name,
                w.reason.clone().unwrap_or_default()
            ));
        }
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            out.push_str(&format!("; {} exited with code {}", c.name, t.exit_code));
        }
    }
    for c in st
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.status == "False")
    {
        if let Some(m) = &c.message {
            out.push_str(&format!("; {}: {m}", c.type_));
        }
    }
    if let Some(a) = advice(p) {
        out.push_str(&format!(". {a}"));
    }
    out
}

/// What a user can do about a Mount Pod that does not come up (the Go driver's
/// troubleshooting guide, condensed).
pub fn advice(p: &Pod) -> Option<&'static str> {
    let st = p.status.as_ref()?;
    let unschedulable = st.conditions.iter().flatten().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.message
                .as_deref()
                .is_some_and(|m| m.contains("Insufficient"))
    });
    if unschedulable || st.reason.as_deref().is_some_and(|r| r.starts_with("OutOf")) {
        return Some(
            "The node lacks the CPU or memory the Mount Pod requests: lower juicefs/mount-cpu-request and juicefs/mount-memory-request (PVC annotations or mountPodPatch in the juicefs-csi-driver-config ConfigMap), or free resources on the node",
        );
    }
    let waiting: Vec<&str> = st
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
        .collect();
    if waiting
        .iter()
        .any(|r| matches!(*r, "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName"))
    {
        return Some(
            "The mount image cannot be pulled: check the mount image name (chart value mountImage, PV attribute juicefs/mount-image) and the node's access to its registry",
        );
    }
    if waiting.contains(&"CreateContainerConfigError") {
        return Some(
            "The container cannot be configured, usually a missing Secret key: check the volume's Secret has name and metaurl",
        );
    }
    let crashed = waiting.contains(&"CrashLoopBackOff")
        || st
            .container_statuses
            .iter()
            .flatten()
            .any(|c| c.restart_count > 0);
    crashed.then_some("The JuiceFS client keeps exiting: its log lines below say why (metadata engine or object storage unreachable, wrong credentials, bad mount options)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "juicefs-n-pv-abcdef", "namespace": "jfs"}, "status": status})).unwrap()
    }

    #[test]
    fn advice_names_the_fix() {
        let pending = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "message": "0/3 nodes are available: 3 Insufficient memory."}]}),
        );
        let d = describe(&pending);
        assert!(
            d.contains("Insufficient memory") && d.contains("juicefs/mount-memory-request"),
            "{d}"
        );
        let pull = pod(
            json!({"phase": "Pending", "containerStatuses": [{"name": "jfs-mount", "ready": false,
            "restartCount": 0, "image": "x", "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
        );
        assert!(advice(&pull).unwrap().contains("mount image"));
        let crash = pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "jfs-mount", "ready": false,
            "restartCount": 3, "image": "x", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        );
        assert!(advice(&crash).unwrap().contains("log lines"));
        assert_eq!(advice(&pod(json!({"phase": "Running"}))), None);
        assert_eq!(suffix_of(&pull), "abcdef");
    }
}
