//! Keeping published targets working. When a Mount Pod's client dies, the kubelet restarts
//! its container and the client mounts its path again, but every target bound from the old
//! mount now answers ENOTCONN. This loop wakes on every Mount Pod change the watch delivers
//! (a restart changes the pod's status) and every 2 s as a backstop, and re-binds each
//! referenced target whose mount is broken once its pod's path is live again. Apps that
//! mount the volume with `HostToContainer` propagation see it again. It also finishes
//! deleted Mount Pods (unmount, finalizer), first replacing one that targets still use, and
//! deletes pods whose delayed deletion is due.

use crate::mountpods::{MountPods, is_gone};
use crate::mounts::{self, Health};
use crate::target;
use kube::ResourceExt;
use std::sync::Arc;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One pass over this node's Mount Pods; `events` tells app pods when their client came back.
pub async fn pass(pods: &MountPods, events: &crate::events::Events) {
    pods.reap_delayed().await;
    // One read of the mount table for every target of every pod.
    let table = mounts::mount_table();
    for p in pods.pods() {
        let refs = target::refs(p.metadata.annotations.as_ref());
        if p.metadata.deletion_timestamp.is_some() {
            if !p
                .finalizers()
                .iter()
                .any(|f| f == jfs_mountspec::pod::FINALIZER)
            {
                continue;
            }
            if !refs.is_empty()
                && let Err(e) = pods.replace(&p).await
            {
                tracing::warn!(pod = %p.name_any(), "replacing a deleted Mount Pod still in use: {e}");
                continue;
            }
            if let Err(e) = pods.finalize(&p).await {
                tracing::warn!(pod = %p.name_any(), "finalizing: {e}");
            }
            continue;
        }
        if is_gone(&p) || refs.is_empty() {
            continue;
        }
        let source = pods.host_path(&p);
        if mounts::check(&source, CHECK_TIMEOUT).await != (Health::Ok { fuse_root: true }) {
            continue;
        }
        for t in refs {
            let tp = std::path::PathBuf::from(&t);
            if mounts::count_in(&table, &tp) == 0 {
                continue;
            }
            if let Health::Corrupt(why) = mounts::check(&tp, CHECK_TIMEOUT).await {
                let ro = mounts::is_read_only(&table, &tp);
                let rebound = mounts::unmount_all(&tp).and_then(|_| mounts::bind(&source, &tp, ro));
                match rebound {
                    Ok(()) => {
                        tracing::info!(pod = %p.name_any(), target = %t, "re-bound a broken target ({why})");
                        if let Some((ns, name)) = pods.app_of(&t) {
                            events
                                .warn(&ns, &name, "JuiceFSClientRestarted", &restart_message(&p))
                                .await;
                        }
                    }
                    Err(e) => tracing::warn!(pod = %p.name_any(), target = %t, "re-binding: {e}"),
                }
            }
        }
    }
}

/// What an app pod's owner needs to know after its volume's client came back.
fn restart_message(p: &k8s_openapi::api::core::v1::Pod) -> String {
    let last = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| {
            format!(
                " ({}, exit code {})",
                t.reason.as_deref().unwrap_or("terminated"),
                t.exit_code
            )
        })
        .unwrap_or_default();
    let ns = p.namespace().unwrap_or_default();
    let volume = p
        .labels()
        .get(jfs_mountspec::pod::LABEL_VOLUME_ID)
        .cloned()
        .unwrap_or_default();
    format!(
        "the JuiceFS client of volume {volume} (Mount Pod {ns}/{}) exited{last} and is back; the volume was mounted again in this pod. Files opened before that answer errors: reopen them. Why it exited: kubectl -n {ns} logs {} --previous",
        p.name_any(),
        p.name_any()
    )
}

/// Drops references whose app pod is no longer on this node and whose target is not
/// mounted: nothing will ever unpublish them, and they would keep the Mount Pod for ever.
pub async fn sweep_stale_refs(pods: &MountPods, lister: &crate::podlist::PodLister) -> usize {
    let live = match lister.uids().await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!("checking references: {e}");
            return 0;
        }
    };
    let mut dropped = 0;
    let table = mounts::mount_table();
    for p in pods.pods() {
        if is_gone(&p) {
            continue;
        }
        let volume = p
            .labels()
            .get(jfs_mountspec::pod::LABEL_VOLUME_ID)
            .cloned()
            .unwrap_or_default();
        for t in target::refs(p.metadata.annotations.as_ref()) {
            let owner = target::pod_uid(&t, &pods.cfg.kubelet_dir);
            let gone = owner.is_some_and(|u| !live.contains(&u));
            if gone && mounts::count_in(&table, std::path::Path::new(&t)) == 0 {
                match pods.release(&volume, &t).await {
                    Ok(_) => {
                        tracing::info!(pod = %p.name_any(), target = %t, "dropped the reference of an app pod that is gone");
                        dropped += 1;
                    }
                    Err(e) => tracing::warn!(target = %t, "dropping a stale reference: {e}"),
                }
            }
        }
    }
    dropped
}

/// Runs `pass` on every watch change and every 2 s, and the stale-reference sweep every
/// `sweep_every` when given a pod lister.
pub async fn run(
    pods: Arc<MountPods>,
    lister: Option<crate::podlist::PodLister>,
    events: crate::events::Events,
    sweep_every: Duration,
) {
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        pass(&pods, &events).await;
        if let Some(l) = &lister
            && last_sweep.elapsed() >= sweep_every
        {
            sweep_stale_refs(&pods, l).await;
            last_sweep = tokio::time::Instant::now();
        }
        tokio::select! {
            _ = pods.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
