//! The cache-clean Job: when a Mount Pod that asked for it (`juicefs/clean-cache: "true"`)
//! is gone and no other Mount Pod of its volume remains on the node, a Job on that node
//! removes the volume's blocks from each of its hostPath cache directories
//! (`<dir>/<volume UUID>/raw`). Only that volume's directory is touched.

use jfs_mountspec::pod::{ANNOTATION_UUID, LABEL_VOLUME_ID};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

pub const LABEL_JOB: &str = "juicefs-job";

fn short_hash(s: &str, bytes: usize) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The Job for a deleted Mount Pod, or `None` when there is nothing to clean (no UUID known,
/// no hostPath cache directory). Its name comes from the pod's UID, so a second attempt for
/// the same pod (a recovery pass that still sees the pod in a lagging cache) finds the first
/// Job instead of starting another.
pub fn job(pod: &Pod, node: &str, namespace: &str) -> Option<Job> {
    let uuid = pod.annotations().get(ANNOTATION_UUID)?.clone();
    // A UUID is letters, digits and '-': anything else is not ours to put in a command.
    if uuid.is_empty() || !uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let image = spec.containers.first()?.image.clone();
    let caches: Vec<(Volume, String)> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.name.starts_with("cachedir-"))
        .filter_map(|v| Some((v.clone(), v.host_path.as_ref()?.path.clone())))
        .collect();
    if caches.is_empty() {
        return None;
    }
    let volume = pod
        .labels()
        .get(LABEL_VOLUME_ID)
        .cloned()
        .unwrap_or_default();
    let hex = short_hash(&format!("{volume}-{node}"), 4);
    let pod_id = pod.uid().unwrap_or_else(|| pod.name_any());
    let suffix = short_hash(&pod_id, 3);
    let script: Vec<String> = caches
        .iter()
        .map(|(_, dir)| format!("rm -rf {}", sh_quote(&format!("{dir}/{uuid}/raw"))))
        .collect();
    Some(Job {
        metadata: ObjectMeta {
            name: Some(format!("juicefs-{hex}-cleancache-{suffix}")),
            namespace: Some(namespace.into()),
            labels: Some([("app.kubernetes.io/name".to_string(), LABEL_JOB.to_string())].into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(1),
            ttl_seconds_after_finished: Some(5),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    node_name: Some(node.into()),
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "clean-cache".into(),
                        image,
                        command: Some(vec!["sh".into(), "-c".into(), script.join(" && ")]),
                        volume_mounts: Some(
                            caches
                                .iter()
                                .map(|(v, dir)| VolumeMount {
                                    name: v.name.clone(),
                                    mount_path: dir.clone(),
                                    ..Default::default()
                                })
                                .collect(),
                        ),
                        ..Default::default()
                    }],
                    volumes: Some(caches.into_iter().map(|(v, _)| v).collect()),
                    tolerations: spec.tolerations.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uuid: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "juicefs-n-pv-abcdef", "labels": {"volume-id": "pv"},
                         "annotations": {"juicefs-uuid": uuid, "juicefs-clean-cache": "true"}},
            "spec": {"containers": [{"name": "jfs-mount", "image": "example/mount:1"}],
                     "volumes": [{"name": "jfs-dir", "hostPath": {"path": "/var/lib/juicefs/volume"}},
                                 {"name": "cachedir-0", "hostPath": {"path": "/var/jfsCache"}},
                                 {"name": "cachedir-1", "hostPath": {"path": "/mnt/ssd"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn cleans_only_the_volume_directory_on_its_node() {
        let j = job(&pod("470bc328-1296-49ac"), "node-1", "jfs").unwrap();
        let name = j.metadata.name.clone().unwrap();
        assert!(
            name.starts_with("juicefs-") && name.contains("-cleancache-") && name.len() <= 63,
            "{name}"
        );
        let spec = j.spec.unwrap().template.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        let cmd = &spec.containers[0].command.as_ref().unwrap()[2];
        assert_eq!(
            cmd,
            "rm -rf '/var/jfsCache/470bc328-1296-49ac/raw' && rm -rf '/mnt/ssd/470bc328-1296-49ac/raw'"
        );
        let vols: Vec<_> = spec.volumes.unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(
            vols,
            ["cachedir-0", "cachedir-1"],
            "not the mount directory"
        );
        assert!(
            job(&pod("../../etc"), "node-1", "jfs").is_none(),
            "a bad UUID cleans nothing"
        );
        assert!(job(&pod(""), "node-1", "jfs").is_none());
    }

    #[test]
    fn one_job_name_per_pod() {
        let name = |uid: &str| {
            let mut p = pod("470bc328-1296-49ac");
            p.metadata.uid = Some(uid.into());
            job(&p, "node-1", "jfs").unwrap().metadata.name.unwrap()
        };
        assert_eq!(name("uid-1"), name("uid-1"), "a retry finds the same Job");
        assert_ne!(
            name("uid-1"),
            name("uid-2"),
            "a later pod of the volume gets its own"
        );
    }
}
