//! Which pods run on this node, for dropping references that outlived their app pod (a pod
//! force-deleted, a node that rebooted before kubelet could unpublish): from the kubelet's
//! `/pods` when it answers (`--kubelet-url`; no API server load), else from the API server
//! (pods with `spec.nodeName` = this node).

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, ObjectList};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct PodLister {
    kubelet: Option<kube::Client>,
    api: kube::Client,
    node: String,
    warned: AtomicBool,
}

fn uids(pods: impl IntoIterator<Item = Pod>) -> HashSet<String> {
    pods.into_iter().filter_map(|p| p.metadata.uid).collect()
}

impl PodLister {
    pub fn new(kubelet: Option<kube::Client>, api: kube::Client, node: &str) -> PodLister {
        PodLister {
            kubelet,
            api,
            node: node.into(),
            warned: AtomicBool::new(false),
        }
    }

    /// UIDs of the pods on this node.
    pub async fn uids(&self) -> Result<HashSet<String>, String> {
        if let Some(k) = &self.kubelet {
            let req = http::Request::get("/pods")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match k.request::<ObjectList<Pod>>(req).await {
                Ok(list) => return Ok(uids(list.items)),
                Err(e) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "the kubelet refused /pods ({e}); listing this node's pods from the API server instead"
                        );
                    }
                }
            }
        }
        let pods: Api<Pod> = Api::all(self.api.clone());
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        pods.list(&lp)
            .await
            .map(|l| uids(l.items))
            .map_err(|e| format!("listing the pods of node {}: {e}", self.node))
    }
}

/// A client for the kubelet at `url` (`https://HOST_IP:10250`) with this pod's credentials.
/// The kubelet's serving certificate is usually self-signed, so it is not verified; the
/// address is the node's own.
pub async fn kubelet_client(url: &str) -> Result<kube::Client, String> {
    let mut cfg = kube::Config::infer().await.map_err(|e| e.to_string())?;
    cfg.cluster_url = url
        .parse()
        .map_err(|e| format!("--kubelet-url {url:?}: {e}"))?;
    cfg.accept_invalid_certs = true;
    kube::Client::try_from(cfg).map_err(|e| e.to_string())
}
