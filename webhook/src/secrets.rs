//! Secret copies through the Kubernetes API, written as rarely as possible: a copy is
//! created when missing, replaced only when its data or owner differ, and concurrent
//! admissions of pods that share a PVC wait for one writer instead of racing (no 409 storm
//! when hundreds of pods of one workload are admitted per second). What was written is
//! trusted for a minute, then checked again with a read, so a copy deleted or edited by hand
//! comes back on a later admission.

use crate::server::{BoxFut, SecretWriter};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a copy known to be in the cluster is trusted without reading it again.
pub const TRUST_FOR: Duration = Duration::from_secs(60);

/// Per Secret copy: a lock held while writing, over the digest last known in the cluster and
/// when it was known.
type Slot = Arc<tokio::sync::Mutex<Option<(Vec<u8>, Instant)>>>;

pub struct KubeSecretWriter {
    client: kube::Client,
    /// Per Secret: a lock, and the digest of the content last known to be in the cluster.
    known: Mutex<HashMap<(String, String), Slot>>,
    trust_for: Duration,
}

/// What makes two copies equal: data, type and owner.
fn digest(s: &Secret) -> Vec<u8> {
    let mut h = Sha256::new();
    for (k, v) in s.data.iter().flatten() {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.0.len() as u64).to_be_bytes());
        h.update(&v.0);
    }
    for o in s.metadata.owner_references.iter().flatten() {
        h.update(o.uid.as_bytes());
    }
    h.update(s.type_.as_deref().unwrap_or_default().as_bytes());
    h.finalize().to_vec()
}

fn same(a: &Secret, b: &Secret) -> bool {
    let owners = |s: &Secret| -> Vec<String> {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| o.uid.clone())
            .collect()
    };
    a.data == b.data && owners(a) == owners(b) && a.type_ == b.type_
}

impl KubeSecretWriter {
    pub fn new(client: kube::Client) -> KubeSecretWriter {
        KubeSecretWriter::trusting_for(client, TRUST_FOR)
    }

    /// A writer that reads a copy again once what it knows is older than `trust_for`.
    pub fn trusting_for(client: kube::Client, trust_for: Duration) -> KubeSecretWriter {
        KubeSecretWriter {
            client,
            known: Mutex::new(HashMap::new()),
            trust_for,
        }
    }

    async fn write(&self, want: &Secret) -> Result<(), String> {
        let ns = want.metadata.namespace.clone().unwrap_or_default();
        let name = want.metadata.name.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let slot = {
            let mut m = self
                .known
                .lock()
                .map_err(|_| "secret cache poisoned".to_string())?;
            m.entry((ns.clone(), name.clone())).or_default().clone()
        };
        let mut known = slot.lock().await;
        let d = digest(want);
        if let Some((k, at)) = known.as_ref()
            && *k == d
            && at.elapsed() < self.trust_for
        {
            return Ok(());
        }
        for _ in 0..5 {
            match api
                .get_opt(&name)
                .await
                .map_err(|e| format!("reading {ns}/{name}: {e}"))?
            {
                Some(cur) if same(&cur, want) => {
                    *known = Some((d, Instant::now()));
                    return Ok(());
                }
                Some(cur) => {
                    let mut next = want.clone();
                    next.metadata.resource_version = cur.metadata.resource_version.clone();
                    match api.replace(&name, &PostParams::default(), &next).await {
                        Ok(_) => {
                            crate::metrics::METRICS.secret_writes.inc();
                            *known = Some((d, Instant::now()));
                            return Ok(());
                        }
                        Err(kube::Error::Api(e)) if e.code == 409 => continue,
                        Err(e) => return Err(format!("updating {ns}/{name}: {e}")),
                    }
                }
                None => match api.create(&PostParams::default(), want).await {
                    Ok(_) => {
                        crate::metrics::METRICS.secret_writes.inc();
                        *known = Some((d, Instant::now()));
                        return Ok(());
                    }
                    // Another replica created it meanwhile: compare again.
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(format!("creating {ns}/{name}: {e}")),
                },
            }
        }
        Err(format!(
            "Secret {ns}/{name} kept changing under us; giving up after 5 tries"
        ))
    }
}

impl SecretWriter for KubeSecretWriter {
    fn ensure<'a>(&'a self, secret: &'a Secret) -> BoxFut<'a, Result<(), String>> {
        Box::pin(self.write(secret))
    }
}
