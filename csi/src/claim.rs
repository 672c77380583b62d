//! The PVC behind a volume, for the settings it carries (`juicefs/mount-*` annotations,
//! `mountPodPatch` PVC selectors), so Mount Pods honour them as sidecars do. Kubelet does
//! not pass the PVC: it is found through the PV of the same name as the volume id (every
//! dynamic PV, and static PVs whose `volumeHandle` is their name, as the JuiceFS docs
//! write them). Two reads per publish; none when the PV is not found that way.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;

pub async fn find_pvc(
    client: &kube::Client,
    volume_id: &str,
) -> Result<Option<PersistentVolumeClaim>, kube::Error> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let Some(pv) = pvs.get_opt(volume_id).await? else {
        tracing::debug!(volume = %volume_id, "no PV named after the volume: PVC settings not read");
        return Ok(None);
    };
    let spec = pv.spec.unwrap_or_default();
    let ours = spec
        .csi
        .as_ref()
        .is_some_and(|c| c.volume_handle == volume_id);
    let claim = spec.claim_ref.filter(|_| ours);
    let (Some(ns), Some(name)) = claim.map(|c| (c.namespace, c.name)).unwrap_or_default() else {
        return Ok(None);
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    pvcs.get_opt(&name).await
}
