//! The admission webhook: decides per pod (`inject`), speaks AdmissionReview v1 (`review`)
//! with a JSON Patch computed from typed objects, and serves it over HTTPS (`server`); native
//! or classic sidecars follow the API server's version (`version`).

pub mod app_exit;
pub mod cluster;
pub mod inject;
pub mod metrics;
pub mod review;
pub mod secrets;
pub mod server;
pub mod version;

use k8s_openapi::api::core::v1::Pod;

/// The JSON Patch turning `original` into `mutated`.
pub fn json_patch(original: &Pod, mutated: &Pod) -> Result<json_patch::Patch, serde_json::Error> {
    let a = serde_json::to_value(original)?;
    let b = serde_json::to_value(mutated)?;
    Ok(json_patch::diff(&a, &b))
}
