//! The HTTPS server: the two injection paths, health endpoints, a body size limit, and TLS
//! from PEM files reloaded when they change (certificate rotation without a restart).

use crate::inject::{ClusterView, InjectConfig};
use crate::review::{self, BadRequest};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Secret;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

pub const INJECT_PATH: &str = "/juicefs/inject-v1-pod";
pub const SERVERLESS_PATH: &str = "/juicefs/serverless/inject-v1-pod";
/// The API server never sends more than 3 MiB; anything larger is refused unread.
pub const MAX_BODY: usize = 3 << 20;
/// A body that takes longer than this to arrive is refused (the API server's own webhook
/// timeout is at most 30 s; a stalled client must not hold a connection task for ever).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes sure a Secret copy exists with this content (create when missing, update when
/// different, nothing otherwise).
pub trait SecretWriter: Send + Sync {
    fn ensure<'a>(&'a self, secret: &'a Secret) -> BoxFut<'a, Result<(), String>>;
}

pub struct AppState {
    pub view: Arc<dyn ClusterView + Send + Sync>,
    pub writer: Arc<dyn SecretWriter>,
    /// Swapped whole on reload; a request holds the version it started with.
    pub config: RwLock<Arc<InjectConfig>>,
    /// Set once the watch caches have synced.
    pub ready: AtomicBool,
}

/// The plain-HTTP metrics endpoint (`GET /metrics`), served on its own port.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Arc<AppState>>| async move {
                crate::metrics::METRICS.render(s.ready.load(Ordering::Relaxed))
            }),
        )
        .with_state(state)
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(INJECT_PATH, post(inject))
        .route(SERVERLESS_PATH, post(inject))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        // The limit is applied while reading, with a 400 that says why (not axum's bare 413).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet").into_response()
    }
}

async fn inject(State(s): State<Arc<AppState>>, path: MatchedPath, body: Body) -> Response {
    let start = std::time::Instant::now();
    let serverless = path.as_str() == SERVERLESS_PATH;
    let (response, result) = match read_body(body).await {
        Ok(body) => admit(&s, body, serverless).await,
        Err(why) => {
            tracing::warn!("bad admission request: {why}");
            ((StatusCode::BAD_REQUEST, why).into_response(), BAD_REQUEST)
        }
    };
    let p = usize::from(serverless);
    crate::metrics::METRICS.admission(p, result, start.elapsed());
    response
}

async fn read_body(body: Body) -> Result<Bytes, String> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(format!(
            "request body unreadable or larger than {} MiB: {e}",
            MAX_BODY >> 20
        )),
        Err(_) => Err(format!(
            "request body did not arrive within {} s",
            BODY_TIMEOUT.as_secs()
        )),
    }
}

/// Result indexes into `metrics::RESULTS`.
const MUTATED: usize = 0;
const SKIPPED: usize = 1;
const DENIED: usize = 2;
const BAD_REQUEST: usize = 3;
const ERROR: usize = 4;

fn result_of(review: &serde_json::Value) -> usize {
    let r = &review["response"];
    match (r["allowed"].as_bool(), r.get("patch").is_some()) {
        (Some(true), true) => MUTATED,
        (Some(true), false) => SKIPPED,
        _ => DENIED,
    }
}

async fn admit(s: &AppState, body: Bytes, serverless: bool) -> (Response, usize) {
    let cfg = match s.config.read() {
        Ok(c) => c.clone(),
        Err(_) => {
            return (
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "configuration lock poisoned",
                )
                    .into_response(),
                ERROR,
            );
        }
    };
    let outcome = match review::handle_async(&body, &*s.view, &cfg, serverless).await {
        Ok(o) => o,
        Err(BadRequest(why)) => {
            tracing::warn!("bad admission request: {why}");
            return ((StatusCode::BAD_REQUEST, why).into_response(), BAD_REQUEST);
        }
    };
    // The Secret copies must exist before the pod can start; a dry run writes nothing.
    if !outcome.dry_run {
        for secret in &outcome.secrets {
            if let Err(e) = s.writer.ensure(secret).await {
                let name = secret.metadata.name.clone().unwrap_or_default();
                let msg = format!("JuiceFS: cannot write Secret {name} for the sidecar: {e}");
                tracing::error!("{msg}");
                return (
                    Json(review::deny(&outcome.uid, 500, &msg)).into_response(),
                    ERROR,
                );
            }
        }
    }
    let result = result_of(&outcome.response);
    (Json(outcome.response).into_response(), result)
}

/// TLS from `cert`/`key` PEM files, reloaded within `every` of a change.
pub async fn tls_config(
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
) -> std::io::Result<axum_server::tls_rustls::RustlsConfig> {
    // Both ring and aws-lc may be compiled in (other crates pull aws-lc): pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await?;
    let reloader = config.clone();
    tokio::spawn(async move {
        let stamp = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen: (Option<SystemTime>, Option<SystemTime>) = (stamp(&cert), stamp(&key));
        loop {
            tokio::time::sleep(every).await;
            let now = (stamp(&cert), stamp(&key));
            if now != seen {
                match reloader.reload_from_pem_file(&cert, &key).await {
                    Ok(()) => {
                        tracing::info!("reloaded the serving certificate from {}", cert.display());
                        seen = now;
                    }
                    // Half-written files during rotation: try again next round.
                    Err(e) => tracing::warn!("reloading the serving certificate: {e}"),
                }
            }
        }
    });
    Ok(config)
}
