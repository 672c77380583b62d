//! The cluster as the webhook sees it: PVCs, PVs and StorageClasses from watch caches
//! (kube-runtime reflectors), so an admission normally makes no API round trip; the few
//! Secrets that JuiceFS PVs reference are read on demand and kept for a short while.

use crate::inject::{ClusterView, secret_data};
use crate::server::BoxFut;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a fetched Secret is trusted; rotations show up within this.
const SECRET_TTL: Duration = Duration::from_secs(30);

/// Secrets by (namespace, name), with when they were read (`None`: known to be missing).
type SecretCache = HashMap<(String, String), (Instant, Option<Secret>)>;

pub struct KubeView {
    client: kube::Client,
    pvcs: Store<PersistentVolumeClaim>,
    pvs: Store<PersistentVolume>,
    scs: Store<StorageClass>,
    secrets: Mutex<SecretCache>,
}

fn watch<K>(client: &kube::Client) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|r| {
        if let Err(e) = r {
            tracing::warn!("watch: {e}");
        }
        futures::future::ready(())
    });
    tokio::spawn(stream);
    reader
}

impl KubeView {
    /// Starts the watches; `ready` resolves once every cache holds a full list.
    pub fn start(client: kube::Client) -> KubeView {
        KubeView {
            pvcs: watch(&client),
            pvs: watch(&client),
            scs: watch(&client),
            client,
            secrets: Mutex::new(HashMap::new()),
        }
    }

    pub async fn ready(&self) {
        let _ = self.pvcs.wait_until_ready().await;
        let _ = self.pvs.wait_until_ready().await;
        let _ = self.scs.wait_until_ready().await;
    }

    /// Secrets referenced by the JuiceFS PVs this pod uses, and the Secrets their `configs`
    /// name (in the pod's namespace, where the sidecar mounts them), fetched unless fresh.
    async fn fetch_secrets(&self, pod: &Pod, ns: &str) {
        let claims = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone())
            });
        for claim in claims {
            let Some(pv_name) = self
                .pvc(ns, &claim)
                .and_then(|p| p.spec.and_then(|s| s.volume_name))
            else {
                continue;
            };
            let Some(r) = self.pv(&pv_name).and_then(|pv| {
                pv.spec
                    .and_then(|s| s.csi)
                    .and_then(|c| c.node_publish_secret_ref)
            }) else {
                continue;
            };
            let key = (
                r.namespace.clone().unwrap_or_else(|| ns.to_string()),
                r.name.clone().unwrap_or_default(),
            );
            let Some(secret) = self.fetch_secret(key).await else {
                continue;
            };
            for name in config_secret_names(&secret) {
                self.fetch_secret((ns.to_string(), name)).await;
            }
        }
    }

    /// One Secret, from the cache while fresh, else from the API server.
    async fn fetch_secret(&self, key: (String, String)) -> Option<Secret> {
        let cached = self.secrets.lock().ok().and_then(|m| {
            m.get(&key)
                .filter(|(t, _)| t.elapsed() < SECRET_TTL)
                .map(|(_, s)| s.clone())
        });
        if let Some(s) = cached {
            return s;
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.0);
        match api.get_opt(&key.1).await {
            Ok(found) => {
                if let Ok(mut m) = self.secrets.lock() {
                    m.insert(key, (Instant::now(), found.clone()));
                }
                found
            }
            Err(e) => {
                tracing::warn!("reading Secret {}/{}: {e}", key.0, key.1);
                None
            }
        }
    }
}

/// The Secret names in a volume Secret's `configs` (none when it does not parse: the
/// admission decision reports that).
fn config_secret_names(secret: &Secret) -> Vec<String> {
    let raw = secret_data(secret).remove("configs").unwrap_or_default();
    jfs_mountspec::secret::string_map("configs", &String::from_utf8_lossy(&raw))
        .map(|m| m.into_keys().collect())
        .unwrap_or_default()
}

impl ClusterView for KubeView {
    fn pvc(&self, namespace: &str, name: &str) -> Option<PersistentVolumeClaim> {
        self.pvcs
            .get(&ObjectRef::new(name).within(namespace))
            .map(|a| (*a).clone())
    }
    fn pv(&self, name: &str) -> Option<PersistentVolume> {
        self.pvs.get(&ObjectRef::new(name)).map(|a| (*a).clone())
    }
    fn storage_class(&self, name: &str) -> Option<StorageClass> {
        self.scs.get(&ObjectRef::new(name)).map(|a| (*a).clone())
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        let m = self.secrets.lock().ok()?;
        m.get(&(namespace.to_string(), name.to_string()))
            .and_then(|(_, s)| s.clone())
    }
    fn secret_missing(&self, namespace: &str, name: &str) -> bool {
        let Ok(m) = self.secrets.lock() else {
            return false;
        };
        matches!(
            m.get(&(namespace.to_string(), name.to_string())),
            Some((_, None))
        )
    }
    fn node_labels(&self, _name: &str) -> Option<BTreeMap<String, String>> {
        // Pods are rarely bound to a node at admission; the pod's nodeSelector stands in.
        None
    }
    fn prepare<'a>(&'a self, pod: &'a Pod, namespace: &'a str) -> BoxFut<'a, ()> {
        Box::pin(self.fetch_secrets(pod, namespace))
    }
}
