//! The CSI Controller service: a subdirectory per volume (the PV name, or the
//! StorageClass's `pathPattern` filled from the PVC), capability checks, expansion, and
//! DeleteVolume, which removes the directory through the metadata engine and object storage
//! (`jfs_mount::tree`, no mount needed) unless the PV retains its data or another PV of the
//! same file system uses the directory; never the root.
//!
//! Every template value is one path component: a value containing `/`, or equal to `.` or
//! `..`, is refused, and the finished path must be relative with no such components, so no
//! PVC name, label or annotation can point a volume outside its file system's tree or at
//! another volume's parent.

use crate::proto::controller_server::Controller;
use crate::proto::*;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use std::collections::{BTreeMap, HashMap};
use tonic::{Request, Response, Status};

pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";

/// What a `pathPattern` may refer to.
#[derive(Default)]
pub struct PvcInfo {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

fn component(what: &str, v: &str) -> Result<String, String> {
    if v.is_empty() || v == "." || v == ".." || v.contains('/') || v.contains('\0') {
        return Err(format!(
            "pathPattern: {what} is {v:?}, which cannot be one directory name (empty, '.', '..' or containing '/')"
        ));
    }
    Ok(v.to_string())
}

/// Fills `${.pvc.name}`, `${.pvc.namespace}`, `${.pvc.labels.KEY}`,
/// `${.pvc.annotations.KEY}` (also the legacy `${.PVC.…}`) and checks the result.
pub fn resolve_pattern(pattern: &str, pvc: &PvcInfo) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("pathPattern {pattern:?}: unclosed ${{"))?;
        let expr = rest[start + 2..start + end].trim();
        let key = expr
            .strip_prefix(".pvc.")
            .or_else(|| expr.strip_prefix(".PVC."))
            .ok_or_else(|| format!("pathPattern {pattern:?}: unknown template ${{{expr}}}; use ${{.pvc.name}}, ${{.pvc.namespace}}, ${{.pvc.labels.KEY}} or ${{.pvc.annotations.KEY}}"))?;
        let value = match key {
            "name" => component("the PVC name", &pvc.name)?,
            "namespace" => component("the PVC namespace", &pvc.namespace)?,
            k => {
                let (map, label) = if let Some(l) = k.strip_prefix("labels.") {
                    (&pvc.labels, l)
                } else if let Some(a) = k.strip_prefix("annotations.") {
                    (&pvc.annotations, a)
                } else {
                    return Err(format!(
                        "pathPattern {pattern:?}: unknown template ${{{expr}}}"
                    ));
                };
                let v = map.get(label).ok_or_else(|| {
                    format!(
                        "pathPattern {pattern:?}: PVC {}/{} has no {} {label:?}",
                        pvc.namespace,
                        pvc.name,
                        if k.starts_with("labels.") {
                            "label"
                        } else {
                            "annotation"
                        }
                    )
                })?;
                component(&format!("{k} of the PVC"), v)?
            }
        };
        out.push_str(&value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    check_sub_path(&out)?;
    Ok(out)
}

/// Whether directory `inner` is `outer` or lies inside it (paths compared by component,
/// so `team-a2` is not inside `team-a`).
fn within(inner: &str, outer: &str) -> bool {
    let parts = |p: &str| {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    parts(inner).starts_with(&parts(outer))
}

/// A volume's directory inside the file system: relative, no empty, `.` or `..` parts.
pub fn check_sub_path(p: &str) -> Result<(), String> {
    if p.is_empty()
        || p.starts_with('/')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "volume path {p:?} must be relative, without empty, '.' or '..' components"
        ));
    }
    Ok(())
}

pub struct ControllerService {
    /// Reads PVCs for label/annotation templates (absent in tests that pass none).
    pub client: Option<kube::Client>,
}

fn check_caps(caps: &[VolumeCapability]) -> Result<bool, Status> {
    if caps.is_empty() {
        return Err(Status::invalid_argument("volume_capabilities are required"));
    }
    let mut read_only = false;
    for c in caps {
        if let Some(volume_capability::AccessType::Block(_)) = c.access_type {
            return Err(Status::invalid_argument(
                "block access is not supported: JuiceFS is a file system; use volumeMode: Filesystem",
            ));
        }
        let mode = c.access_mode.as_ref().map(|m| m.mode).unwrap_or_default();
        read_only |= mode == volume_capability::access_mode::Mode::MultiNodeReaderOnly as i32
            || mode == volume_capability::access_mode::Mode::SingleNodeReaderOnly as i32;
    }
    Ok(read_only)
}

impl ControllerService {
    /// The directory DeleteVolume may remove, or `None` when it must stay: the PV keeps
    /// its data (reclaim policy), or another PV of the same file system uses it.
    async fn deletion_plan(&self, volume_id: &str) -> Result<Option<String>, Status> {
        let Some(client) = &self.client else {
            return Err(Status::failed_precondition(
                "no Kubernetes client to look up the PV",
            ));
        };
        let api: kube::Api<PersistentVolume> = kube::Api::all(client.clone());
        let pv = api
            .get_opt(volume_id)
            .await
            .map_err(|e| Status::unavailable(format!("reading PV {volume_id}: {e}")))?;
        let attrs = |p: &PersistentVolume| {
            p.spec
                .as_ref()
                .and_then(|s| s.csi.as_ref())
                .and_then(|c| c.volume_attributes.clone())
                .unwrap_or_default()
        };
        let sub_path = match &pv {
            Some(p) => {
                let policy = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.persistent_volume_reclaim_policy.clone());
                if policy.as_deref().is_some_and(|x| x != "Delete") {
                    tracing::info!(volume = %volume_id, "reclaim policy {policy:?}: the directory is kept");
                    return Ok(None);
                }
                attrs(p)
                    .get("subPath")
                    .cloned()
                    .unwrap_or_else(|| volume_id.to_string())
            }
            // Without its PV neither the directory nor the reclaim policy is known for sure.
            None => {
                tracing::warn!(volume = %volume_id, "PV not found: its directory is kept");
                return Ok(None);
            }
        };
        check_sub_path(&sub_path).map_err(|e| {
            Status::failed_precondition(format!("volume {volume_id}: refusing to delete: {e}"))
        })?;
        let others = api
            .list(&Default::default())
            .await
            .map_err(|e| Status::unavailable(format!("listing PVs: {e}")))?;
        // Any other JuiceFS PV whose directory is this one or lies inside it keeps it. Secrets
        // are not compared: two Secrets may name one file system, and a kept directory is
        // only a log line while a removed one is another volume's data.
        let shared = others.items.iter().find(|o| {
            o.metadata.name.as_deref() != Some(volume_id)
                && o.spec
                    .as_ref()
                    .and_then(|s| s.csi.as_ref())
                    .is_some_and(|c| c.driver == jfs_mountspec::DRIVER_NAME)
                && attrs(o)
                    .get("subPath")
                    .is_some_and(|theirs| within(theirs, &sub_path))
        });
        if let Some(o) = shared {
            tracing::info!(volume = %volume_id, "directory {sub_path:?} holds the directory of PV {}: kept", o.metadata.name.clone().unwrap_or_default());
            return Ok(None);
        }
        Ok(Some(sub_path))
    }

    async fn pvc_info(
        &self,
        params: &HashMap<String, String>,
        needs_metadata: bool,
    ) -> Result<PvcInfo, Status> {
        let mut info = PvcInfo {
            name: params.get(PVC_NAME).cloned().unwrap_or_default(),
            namespace: params.get(PVC_NAMESPACE).cloned().unwrap_or_default(),
            ..Default::default()
        };
        if needs_metadata && let Some(client) = &self.client {
            let api: kube::Api<PersistentVolumeClaim> =
                kube::Api::namespaced(client.clone(), &info.namespace);
            let pvc = api.get(&info.name).await.map_err(|e| {
                Status::unavailable(format!(
                    "reading PVC {}/{} for pathPattern: {e}",
                    info.namespace, info.name
                ))
            })?;
            info.labels = pvc.metadata.labels.unwrap_or_default();
            info.annotations = pvc.metadata.annotations.unwrap_or_default();
        }
        Ok(info)
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let r = request.into_inner();
        if r.name.is_empty() {
            return Err(Status::invalid_argument("name is required"));
        }
        let read_only = check_caps(&r.volume_capabilities)?;
        let pattern = r.parameters.get("pathPattern").cloned();
        if read_only && pattern.is_none() {
            return Err(Status::invalid_argument(
                "a read-only volume would be a new, empty directory: set pathPattern in the StorageClass to point at existing data",
            ));
        }
        let sub_path = match &pattern {
            Some(p) => {
                let needs = p.contains(".labels.") || p.contains(".annotations.");
                let pvc = self.pvc_info(&r.parameters, needs).await?;
                resolve_pattern(p, &pvc).map_err(Status::invalid_argument)?
            }
            None => {
                check_sub_path(&r.name).map_err(Status::invalid_argument)?;
                r.name.clone()
            }
        };
        let capacity = r.capacity_range.as_ref().map_or(0, |c| c.required_bytes);
        let mut ctx: HashMap<String, String> = r
            .parameters
            .iter()
            .filter(|(k, _)| !k.starts_with("csi.storage.k8s.io/") && k.as_str() != "pathPattern")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ctx.insert("subPath".into(), sub_path.clone());
        if capacity > 0 {
            ctx.insert("capacity".into(), capacity.to_string());
        }
        tracing::info!(volume = %r.name, sub_path = %sub_path, "created volume");
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(Volume {
                capacity_bytes: capacity,
                volume_id: r.name,
                volume_context: ctx,
                ..Default::default()
            }),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let r = request.into_inner();
        if r.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        let Some(meta_url) = r.secrets.get("metaurl").filter(|m| !m.is_empty()) else {
            tracing::warn!(volume = %r.volume_id, "no provisioner Secret with metaurl: the volume's directory is kept");
            return Ok(Response::new(DeleteVolumeResponse {}));
        };
        let Some(plan) = self.deletion_plan(&r.volume_id).await? else {
            return Ok(Response::new(DeleteVolumeResponse {}));
        };
        let removed = jfs_mount::tree::remove(meta_url, &plan)
            .await
            .map_err(|e| {
                Status::unavailable(format!("removing {plan:?} of volume {}: {e}", r.volume_id))
            })?;
        tracing::info!(volume = %r.volume_id, sub_path = %plan, files = removed.files, dirs = removed.dirs, existed = removed.existed, "removed the volume's directory");
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let r = request.into_inner();
        if r.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        match check_caps(&r.volume_capabilities) {
            Ok(_) => Ok(Response::new(ValidateVolumeCapabilitiesResponse {
                confirmed: Some(validate_volume_capabilities_response::Confirmed {
                    volume_context: r.volume_context,
                    volume_capabilities: r.volume_capabilities,
                    parameters: r.parameters,
                    ..Default::default()
                }),
                message: String::new(),
            })),
            Err(s)
                if s.code() == tonic::Code::InvalidArgument
                    && !r.volume_capabilities.is_empty() =>
            {
                Ok(Response::new(ValidateVolumeCapabilitiesResponse {
                    confirmed: None,
                    message: s.message().into(),
                }))
            }
            Err(s) => Err(s),
        }
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let r = request.into_inner();
        if r.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        let bytes = r
            .capacity_range
            .map(|c| c.required_bytes)
            .unwrap_or_default();
        if bytes <= 0 {
            return Err(Status::invalid_argument(
                "capacity_range.required_bytes must be positive",
            ));
        }
        Ok(Response::new(ControllerExpandVolumeResponse {
            capacity_bytes: bytes,
            node_expansion_required: false,
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        use controller_service_capability::rpc::Type;
        let caps = [Type::CreateDeleteVolume, Type::ExpandVolume]
            .into_iter()
            .map(|t| ControllerServiceCapability {
                r#type: Some(controller_service_capability::Type::Rpc(
                    controller_service_capability::Rpc { r#type: t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: caps,
        }))
    }

    async fn controller_publish_volume(
        &self,
        _: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        Err(Status::unimplemented("JuiceFS volumes need no attach"))
    }
    async fn controller_unpublish_volume(
        &self,
        _: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        Err(Status::unimplemented("JuiceFS volumes need no attach"))
    }
    async fn list_volumes(
        &self,
        _: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        Err(Status::unimplemented("not supported"))
    }
    async fn get_capacity(
        &self,
        _: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        Err(Status::unimplemented("not supported"))
    }
    async fn create_snapshot(
        &self,
        _: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }
    async fn delete_snapshot(
        &self,
        _: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }
    async fn list_snapshots(
        &self,
        _: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }
    async fn get_snapshot(
        &self,
        _: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }
    async fn controller_get_volume(
        &self,
        _: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        Err(Status::unimplemented("not supported"))
    }
    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented("not supported"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc() -> PvcInfo {
        PvcInfo {
            name: "data".into(),
            namespace: "team-a".into(),
            labels: [
                ("app".to_string(), "web".to_string()),
                ("evil".to_string(), "../..".to_string()),
            ]
            .into(),
            annotations: [("dir".to_string(), "..".to_string())].into(),
        }
    }

    #[test]
    fn patterns_fill_from_the_pvc() {
        assert_eq!(
            resolve_pattern("${.pvc.namespace}-${.pvc.name}", &pvc()).unwrap(),
            "team-a-data"
        );
        assert_eq!(
            resolve_pattern("apps/${.pvc.labels.app}/${.PVC.name}", &pvc()).unwrap(),
            "apps/web/data"
        );
    }

    #[test]
    fn within_compares_whole_components() {
        assert!(within("team/web", "team"));
        assert!(within("/team/web/", "team"));
        assert!(within("team", "team"));
        assert!(!within("team-a2", "team-a"));
        assert!(!within("team", "team/web"));
        assert!(!within("/", "team"));
    }

    #[test]
    fn patterns_cannot_escape() {
        for (p, why) in [
            ("${.pvc.labels.evil}", "'/'"),
            ("x/${.pvc.annotations.dir}", "'..'"),
            ("../${.pvc.name}", "'..'"),
            ("/abs/${.pvc.name}", "relative"),
            ("a//${.pvc.name}", "empty"),
            ("${.pvc.labels.missing}", "no label"),
            ("${.node.name}", "unknown template"),
            ("${.pvc.name", "unclosed"),
        ] {
            let e = resolve_pattern(p, &pvc()).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
