//! The CSI Node service: publish = Mount Pod (shared, reference-counted) + bind mount of its
//! mount onto the kubelet target; unpublish = unmount + drop the reference; volume stats
//! with an abnormal condition for a broken mount.

use crate::mountpods::{MountPods, PodError};
use crate::mounts::{self, Health};
use crate::proto::node_server::Node;
use crate::proto::*;
use crate::{events, target};
use jfs_mountspec::setting::{DEFAULT_IMAGE, Inputs, resolve};
use jfs_mountspec::{DRIVER_NAME, GlobalConfig};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, PersistentVolume, PersistentVolumeSpec,
};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

const STAT_TIMEOUT: Duration = Duration::from_secs(5);
pub const POD_NAME_KEY: &str = "csi.storage.k8s.io/pod.name";
pub const POD_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pod.namespace";

pub struct NodeService {
    pub pods: Arc<MountPods>,
    pub events: events::Events,
    /// The global ConfigMap's config.yaml as mounted (absent: defaults).
    pub config_path: Option<PathBuf>,
    pub node_labels: BTreeMap<String, String>,
    /// Targets with a publish or unpublish in flight (a second call for one is `Aborted`).
    busy: Mutex<HashSet<String>>,
}

struct Busy<'a>(&'a Mutex<HashSet<String>>, String);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.0.lock() {
            b.remove(&self.1);
        }
    }
}

impl NodeService {
    pub fn new(
        pods: Arc<MountPods>,
        events: events::Events,
        config_path: Option<PathBuf>,
        node_labels: BTreeMap<String, String>,
    ) -> NodeService {
        NodeService {
            pods,
            events,
            config_path,
            node_labels,
            busy: Mutex::new(HashSet::new()),
        }
    }

    fn claim(&self, target: &str) -> Result<Busy<'_>, Status> {
        let mut b = self
            .busy
            .lock()
            .map_err(|_| Status::internal("lock poisoned"))?;
        if !b.insert(target.to_string()) {
            return Err(Status::aborted(format!(
                "an operation on {target} is already in progress"
            )));
        }
        Ok(Busy(&self.busy, target.to_string()))
    }

    fn global(&self) -> Result<GlobalConfig, Status> {
        let Some(p) = &self.config_path else {
            return Ok(GlobalConfig::default());
        };
        match std::fs::read_to_string(p) {
            Ok(t) => GlobalConfig::parse(&t)
                .map_err(|e| Status::failed_precondition(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GlobalConfig::default()),
            Err(e) => Err(Status::internal(format!("reading {}: {e}", p.display()))),
        }
    }

    fn check_target(&self, t: &str) -> Result<(), Status> {
        if t.is_empty() {
            return Err(Status::invalid_argument("target_path is required"));
        }
        target::validate(t, &self.pods.cfg.kubelet_dir)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    /// Waits until the Mount Pod's client serves its mount path, or explains why not.
    async fn wait_live(&self, pod: &str, path: &Path) -> Result<(), Status> {
        let deadline = Instant::now() + self.pods.cfg.ready_timeout;
        loop {
            if let Health::Ok { fuse_root: true } = mounts::check(path, STAT_TIMEOUT).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs = self.pods.last_log_lines(pod).await;
                return Err(Status::unavailable(format!(
                    "the JuiceFS client in {} did not mount {} within {:?}; its last log lines:\n{logs}",
                    self.pods.describe(pod),
                    path.display(),
                    self.pods.cfg.ready_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn publish(&self, r: &NodePublishVolumeRequest) -> Result<(), Status> {
        if r.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        self.check_target(&r.target_path)?;
        let cap = r
            .volume_capability
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        let mount = match &cap.access_type {
            Some(volume_capability::AccessType::Mount(m)) => m.clone(),
            Some(volume_capability::AccessType::Block(_)) => {
                return Err(Status::invalid_argument(
                    "block access is not supported: JuiceFS is a file system; use volumeMode: Filesystem",
                ));
            }
            None => {
                return Err(Status::invalid_argument(
                    "volume_capability has no access type",
                ));
            }
        };
        let reader_only = cap.access_mode.as_ref().is_some_and(|m| {
            m.mode == volume_capability::access_mode::Mode::MultiNodeReaderOnly as i32
                || m.mode == volume_capability::access_mode::Mode::SingleNodeReaderOnly as i32
        });
        let read_only = r.readonly || reader_only;
        let _busy = self.claim(&r.target_path)?;
        let target = PathBuf::from(&r.target_path);
        // Idempotent: a live bind is already there.
        if mounts::mount_count(&target) > 0 {
            match mounts::check(&target, STAT_TIMEOUT).await {
                Health::Ok { .. } => return Ok(()),
                _ => {
                    mounts::unmount_all(&target).map_err(Status::internal)?;
                }
            }
        }

        let global = self.global()?;
        let secret_data: BTreeMap<String, Vec<u8>> = r
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        let attrs: BTreeMap<String, String> = r
            .volume_context
            .iter()
            .filter(|(k, _)| !k.starts_with("csi.storage.k8s.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // The request carries the PV's attributes and mount options.
        let pv = PersistentVolume {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(r.volume_id.clone()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: DRIVER_NAME.into(),
                    volume_handle: r.volume_id.clone(),
                    volume_attributes: Some(attrs),
                    ..Default::default()
                }),
                mount_options: (!mount.mount_flags.is_empty()).then(|| mount.mount_flags.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let image = if self.pods.cfg.mount_image.is_empty() {
            DEFAULT_IMAGE
        } else {
            &self.pods.cfg.mount_image
        };
        let pvc = crate::claim::find_pvc(&self.pods.client(), &r.volume_id)
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "reading the PV and PVC of volume {} for their settings: {e}",
                    r.volume_id
                ))
            })?
            .unwrap_or_default();
        let setting = resolve(&Inputs {
            secret_id: &format!("nodePublishSecretRef of volume {}", r.volume_id),
            secret_data: &secret_data,
            pv: &pv,
            pvc: &pvc,
            node_labels: &self.node_labels,
            config: &global,
            default_image: image,
            serverless: false,
        })
        .map_err(|e| Status::invalid_argument(format!("volume {}: {e}", r.volume_id)))?;
        for w in &setting.secret.warnings {
            tracing::warn!(volume = %r.volume_id, "{w}");
        }

        let (pod, source) = self
            .pods
            .acquire(&setting, &secret_data, &r.target_path)
            .await
            .map_err(|e| match e {
                PodError::Api(e) => {
                    Status::unavailable(format!("creating or updating the Mount Pod: {e}"))
                }
                PodError::Other(m) => Status::internal(m),
            })?;
        self.wait_live(&pod, &source).await?;
        self.pods.record_uuid(&pod, &source).await;
        std::fs::create_dir_all(&target)
            .map_err(|e| Status::internal(format!("creating {}: {e}", target.display())))?;
        mounts::bind(&source, &target, read_only).map_err(Status::internal)?;
        if let Some(app) = app_pod(&r.volume_context) {
            self.pods.note_app(&r.target_path, app);
        }
        tracing::info!(volume = %r.volume_id, target = %r.target_path, pod = %pod, read_only, "published");
        Ok(())
    }
}

fn app_pod(ctx: &std::collections::HashMap<String, String>) -> Option<(String, String)> {
    Some((
        ctx.get(POD_NAMESPACE_KEY)?.clone(),
        ctx.get(POD_NAME_KEY)?.clone(),
    ))
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let r = request.into_inner();
        match self.publish(&r).await {
            Ok(()) => Ok(Response::new(NodePublishVolumeResponse {})),
            Err(status) => {
                if status.code() != tonic::Code::Aborted
                    && let Some((ns, name)) = app_pod(&r.volume_context)
                {
                    self.events
                        .warn(
                            &ns,
                            &name,
                            "JuiceFSMountFailed",
                            &format!("volume {}: {}", r.volume_id, status.message()),
                        )
                        .await;
                }
                tracing::warn!(volume = %r.volume_id, target = %r.target_path, "publish failed: {}", status.message());
                Err(status)
            }
        }
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let r = request.into_inner();
        if r.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        self.check_target(&r.target_path)?;
        let _busy = self.claim(&r.target_path)?;
        let target = PathBuf::from(&r.target_path);
        mounts::unmount_all(&target).map_err(Status::internal)?;
        match std::fs::remove_dir(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Status::internal(format!(
                    "removing {}: {e}",
                    target.display()
                )));
            }
        }
        self.pods
            .release(&r.volume_id, &r.target_path)
            .await
            .map_err(|e| Status::unavailable(format!("dropping the Mount Pod reference: {e}")))?;
        tracing::info!(volume = %r.volume_id, target = %r.target_path, "unpublished");
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let r = request.into_inner();
        if r.volume_id.is_empty() || r.volume_path.is_empty() {
            return Err(Status::invalid_argument(
                "volume_id and volume_path are required",
            ));
        }
        self.check_target(&r.volume_path)?;
        let path = PathBuf::from(&r.volume_path);
        match mounts::check(&path, STAT_TIMEOUT).await {
            Health::Missing => Err(Status::not_found(format!(
                "{} does not exist",
                r.volume_path
            ))),
            Health::Corrupt(why) => Ok(Response::new(NodeGetVolumeStatsResponse {
                usage: vec![],
                volume_condition: Some(VolumeCondition {
                    abnormal: true,
                    message: format!(
                        "the JuiceFS mount at {} is broken ({why}); the node re-binds it when its Mount Pod's client is back",
                        r.volume_path
                    ),
                }),
            })),
            Health::Ok { .. } if mounts::mount_count(&path) == 0 => Err(Status::not_found(
                format!("{} is not a published volume", r.volume_path),
            )),
            Health::Ok { .. } => {
                let u = mounts::usage(&path, STAT_TIMEOUT)
                    .await
                    .map_err(Status::internal)?;
                let bytes = volume_usage::Unit::Bytes as i32;
                let inodes = volume_usage::Unit::Inodes as i32;
                Ok(Response::new(NodeGetVolumeStatsResponse {
                    usage: vec![
                        VolumeUsage {
                            available: u.available_bytes,
                            total: u.total_bytes,
                            used: u.used_bytes,
                            unit: bytes,
                        },
                        VolumeUsage {
                            available: u.free_inodes,
                            total: u.total_inodes,
                            used: u.used_inodes,
                            unit: inodes,
                        },
                    ],
                    volume_condition: Some(VolumeCondition {
                        abnormal: false,
                        message: "mounted".into(),
                    }),
                }))
            }
        }
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        use node_service_capability::rpc::Type;
        let caps = [Type::GetVolumeStats, Type::VolumeCondition]
            .into_iter()
            .map(|t| NodeServiceCapability {
                r#type: Some(node_service_capability::Type::Rpc(
                    node_service_capability::Rpc { r#type: t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: caps,
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.pods.cfg.node_name.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }

    async fn node_stage_volume(
        &self,
        _: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        Err(Status::unimplemented("JuiceFS volumes need no staging"))
    }

    async fn node_unstage_volume(
        &self,
        _: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        Err(Status::unimplemented("JuiceFS volumes need no staging"))
    }

    async fn node_expand_volume(
        &self,
        _: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "expansion is done by the controller (quota); nothing to do on the node",
        ))
    }
}
