//! Jobs with classic sidecars: once every app container of a pod that runs to completion
//! has terminated, mark the pod with `juicefs.com/app-exited`. The sidecar reads the mark
//! from its downward-API file, unmounts and exits, and the pod completes.
//!
//! The Go driver execs `umount` into the sidecar instead; a merge patch of one annotation
//! needs `pods: patch` rather than `pods/exec: create`, which would let the webhook run
//! any command in any pod of the cluster.

use futures::StreamExt;
use jfs_mountspec::container::{ANNOTATION_APP_EXITED, LABEL_EXIT_ON_APP_EXIT};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

fn is_sidecar(name: &str) -> bool {
    name == "jfs-mount" || name.starts_with("jfs-mount-")
}

/// Whether the pod's app is done and its classic sidecar should now exit.
pub fn app_exited(pod: &Pod) -> bool {
    let marked = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_APP_EXITED));
    let opted_in = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_EXIT_ON_APP_EXIT))
        .is_some_and(|v| v == "true");
    if marked || !opted_in || pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(spec) = &pod.spec else { return false };
    // OnFailure restarts a container that failed: only success is the end.
    let need_success = match spec.restart_policy.as_deref() {
        Some("Never") => false,
        Some("OnFailure") => true,
        _ => return false,
    };
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let apps: Vec<&str> = spec
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !is_sidecar(n))
        .collect();
    if apps.is_empty() {
        return false;
    }
    apps.iter().all(|name| {
        statuses
            .into_iter()
            .flatten()
            .find(|s| s.name == *name)
            .and_then(|s| s.state.as_ref())
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| !need_success || t.exit_code == 0)
    })
}

/// Sets the mark on one pod (a merge patch: repeating it, from either replica, is harmless).
pub async fn mark(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_APP_EXITED: now}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Watches the labelled pods of every namespace and marks those whose app has exited.
pub async fn run(client: kube::Client) {
    let cfg = watcher::Config::default().labels(&format!("{LABEL_EXIT_ON_APP_EXIT}=true"));
    let mut events = watcher::watcher(Api::<Pod>::all(client.clone()), cfg)
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        let pod = match ev {
            Ok(Event::Apply(p) | Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!("watching pods with classic sidecars: {e}");
                continue;
            }
        };
        if !app_exited(&pod) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        match mark(&Api::namespaced(client.clone(), &ns), &pod).await {
            Ok(()) => {
                crate::metrics::METRICS.app_exit_marks.inc();
                tracing::info!("{ns}/{name}: the app has exited; told the JuiceFS sidecar to stop")
            }
            Err(e) => tracing::warn!("{ns}/{name}: marking the pod for its sidecar to stop: {e}"),
        }
    }
}
