//! AdmissionReview `admission.k8s.io/v1` in and out. A body that is not a well-formed
//! review is a 400 with the reason; a well-formed review always gets a review back.

use crate::inject::{ClusterView, Decision, InjectConfig, decide};
use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: String,
    kind: String,
    request: Option<Request>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    kind: Gvk,
    #[serde(default)]
    namespace: Option<String>,
    operation: String,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Gvk {
    #[serde(default)]
    group: String,
    kind: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    /// Shown to the user by kubectl: settings that were ignored, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// What the server does with a review: answer it, and write these Secret copies first.
#[derive(Debug)]
pub struct Outcome {
    pub response: Value,
    pub secrets: Vec<Secret>,
    pub dry_run: bool,
    pub uid: String,
}

/// A request the server refuses outright (HTTP 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn wrap(r: Response) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
}

pub fn allow(uid: &str, message: &str) -> Value {
    wrap(Response {
        uid: uid.to_string(),
        allowed: true,
        status: Some(json!({"message": message})),
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
    })
}

pub fn deny(uid: &str, code: u16, message: &str) -> Value {
    wrap(Response {
        uid: uid.to_string(),
        allowed: false,
        status: Some(json!({"code": code, "message": message})),
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
    })
}

/// A decoded review: answered already, or a pod to decide on.
enum Parsed {
    Answer(Outcome),
    Pod {
        uid: String,
        namespace: String,
        pod: Box<Pod>,
        dry_run: bool,
    },
}

fn parse(body: &[u8]) -> Result<Parsed, BadRequest> {
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("malformed AdmissionReview: {e}")))?;
    if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
        return Err(BadRequest(format!(
            "expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got {} {}",
            review.api_version, review.kind
        )));
    }
    let req = review
        .request
        .ok_or_else(|| BadRequest("AdmissionReview has no request".into()))?;
    let dry_run = req.dry_run.unwrap_or(false);
    let answer = |response| {
        Parsed::Answer(Outcome {
            response,
            secrets: Vec::new(),
            dry_run,
            uid: req.uid.clone(),
        })
    };
    if !req.kind.group.is_empty() || req.kind.kind != "Pod" || req.operation != "CREATE" {
        return Ok(answer(allow(
            &req.uid,
            &format!(
                "ignored: {} {} is not a Pod CREATE",
                req.operation, req.kind.kind
            ),
        )));
    }
    let Some(object) = req.object else {
        return Ok(answer(deny(&req.uid, 400, "the request carries no pod")));
    };
    let pod: Pod = match serde_json::from_value(object) {
        Ok(p) => p,
        Err(e) => {
            return Ok(answer(deny(
                &req.uid,
                400,
                &format!("the pod does not decode: {e}"),
            )));
        }
    };
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .or(req.namespace)
        .unwrap_or_else(|| "default".into());
    Ok(Parsed::Pod {
        uid: req.uid,
        namespace,
        pod: Box::new(pod),
        dry_run,
    })
}

fn decide_pod(
    uid: String,
    namespace: &str,
    pod: &Pod,
    dry_run: bool,
    view: &dyn ClusterView,
    cfg: &InjectConfig,
    serverless: bool,
) -> Result<Outcome, BadRequest> {
    let done = |response| Outcome {
        response,
        secrets: Vec::new(),
        dry_run,
        uid: uid.clone(),
    };
    match decide(pod, namespace, view, cfg, serverless) {
        Decision::Skip(why) => Ok(done(allow(&uid, &format!("skip mutating the pod: {why}")))),
        Decision::Deny(why) => Ok(done(deny(&uid, 403, &format!("JuiceFS: {why}")))),
        Decision::Mutate {
            pod: mutated,
            secrets,
            warnings,
        } => {
            let patch = crate::json_patch(pod, &mutated)
                .map_err(|e| BadRequest(format!("cannot encode the patch: {e}")))?;
            let patch = serde_json::to_vec(&patch).map_err(|e| BadRequest(e.to_string()))?;
            let response = wrap(Response {
                uid: uid.clone(),
                allowed: true,
                status: None,
                patch_type: Some("JSONPatch"),
                patch: Some(base64::engine::general_purpose::STANDARD.encode(patch)),
                warnings,
            });
            Ok(Outcome {
                response,
                secrets,
                dry_run,
                uid,
            })
        }
    }
}

/// Decodes, lets the view fetch what it needs (Secrets), then decides (`serverless`: the
/// request came on the serverless path).
pub async fn handle_async(
    body: &[u8],
    view: &(dyn ClusterView + Sync),
    cfg: &InjectConfig,
    serverless: bool,
) -> Result<Outcome, BadRequest> {
    match parse(body)? {
        Parsed::Answer(o) => Ok(o),
        Parsed::Pod {
            uid,
            namespace,
            pod,
            dry_run,
        } => {
            view.prepare(&pod, &namespace).await;
            decide_pod(uid, &namespace, &pod, dry_run, view, cfg, serverless)
        }
    }
}

/// `handle_async` run to completion on the calling thread (tests, views that fetch nothing).
pub fn handle(
    body: &[u8],
    view: &(dyn ClusterView + Sync),
    cfg: &InjectConfig,
    serverless: bool,
) -> Result<Outcome, BadRequest> {
    futures::executor::block_on(handle_async(body, view, cfg, serverless))
}
