//! The controller's background work, done by the Lease holder only: Mount Pods whose node
//! is gone can never be finalised by their node plugin (it went with the node), so their
//! finalizer would keep them terminating for ever. The leader removes it.

use crate::lease::Elector;
use jfs_mountspec::pod::{APP_MOUNT, FINALIZER, LABEL_APP};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::time::Duration;

/// One pass: finalisers removed from deleting Mount Pods whose node no longer exists.
pub async fn pass(client: &kube::Client, namespace: &str) -> Result<usize, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let nodes: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{LABEL_APP}={APP_MOUNT}"));
    let mut freed = 0;
    for p in pods.list(&lp).await?.items {
        if p.metadata.deletion_timestamp.is_none() || !p.finalizers().iter().any(|f| f == FINALIZER)
        {
            continue;
        }
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        if !node.is_empty() && nodes.get_opt(&node).await?.is_some() {
            continue;
        }
        let keep: Vec<String> = p
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        pods.patch(
            &p.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": keep}})),
        )
        .await?;
        tracing::info!(pod = %p.name_any(), node = %node, "node is gone: released its deleted Mount Pod");
        freed += 1;
    }
    Ok(freed)
}

/// Holds or waits for the Lease (when given one); while holding it, runs `pass` every
/// `every`.
pub async fn run(
    client: kube::Client,
    namespace: String,
    elector: Option<std::sync::Arc<Elector>>,
    every: Duration,
) {
    let mut leading = false;
    loop {
        // Without election (one replica) this replica always acts.
        let now = match elector.as_ref() {
            None => true,
            Some(el) => el.try_acquire().await.unwrap_or_else(|e| {
                tracing::warn!("leader election: {e}");
                false
            }),
        };
        if let Some(el) = elector.as_ref()
            && now != leading
        {
            tracing::info!(identity = %el.identity(), "{}", if now { "leading" } else { "following" });
        }
        leading = now;
        if leading && let Err(e) = pass(&client, &namespace).await {
            tracing::warn!("releasing Mount Pods of removed nodes: {e}");
        }
        tokio::time::sleep(every).await;
    }
}
