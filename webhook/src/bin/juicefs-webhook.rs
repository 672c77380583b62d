//! `juicefs-webhook`: wires the Kubernetes client, the watch caches, the global ConfigMap
//! file and the TLS files to the admission server.

use clap::Parser;
use jfs_mountspec::GlobalConfig;
use jfs_webhook::cluster::KubeView;
use jfs_webhook::inject::InjectConfig;
use jfs_webhook::secrets::KubeSecretWriter;
use jfs_webhook::server::{self, AppState};
use jfs_webhook::version::{self, VersionCache};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "juicefs-webhook",
    version,
    about = "Injects the JuiceFS mount sidecar into pods"
)]
struct Args {
    /// HTTPS port.
    #[arg(long, default_value_t = 9444)]
    port: u16,
    /// Serving certificate and key (PEM); reloaded when they change.
    #[arg(long, default_value = "/etc/webhook/certs/tls.crt")]
    cert: PathBuf,
    #[arg(long, default_value = "/etc/webhook/certs/tls.key")]
    key: PathBuf,
    /// The global ConfigMap's config.yaml as mounted; reloaded when it changes.
    #[arg(long, default_value = "/etc/juicefs/config.yaml")]
    config: PathBuf,
    /// Mount image when nothing else names one.
    #[arg(long, env = "JUICEFS_MOUNT_IMAGE", default_value = jfs_mountspec::setting::DEFAULT_IMAGE)]
    mount_image: String,
    /// Plain-HTTP port for `GET /metrics` (Prometheus text; 0: off).
    #[arg(long, default_value_t = 9567)]
    metrics_port: u16,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn load_config(path: &PathBuf) -> Result<GlobalConfig, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => GlobalConfig::parse(&text).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GlobalConfig::default()),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

async fn run(a: Args) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot configure the Kubernetes client: {e}"))?;
    let versions = Arc::new(VersionCache::default());
    versions
        .fetch(&client)
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API server: {e}"))?;
    let global = load_config(&a.config)?;
    let native = version::native_sidecars(global.enable_native_sidecar, versions.get());
    tracing::info!(
        native,
        "sidecar placement: {}",
        if native {
            "native init container"
        } else {
            "classic container"
        }
    );
    let view = Arc::new(KubeView::start(client.clone()));
    let state = Arc::new(AppState {
        view: view.clone(),
        writer: Arc::new(KubeSecretWriter::new(client.clone())),
        config: RwLock::new(Arc::new(InjectConfig {
            global,
            native,
            default_image: a.mount_image.clone(),
        })),
        ready: AtomicBool::new(false),
    });
    {
        let state = state.clone();
        tokio::spawn(async move {
            view.ready().await;
            state.ready.store(true, Ordering::Relaxed);
            tracing::info!("watch caches synced: ready");
        });
    }
    // The API server's version, read again every 10 minutes.
    tokio::spawn(version::refresh_loop(
        state.clone(),
        versions.clone(),
        Arc::new(client.clone()),
        Duration::from_secs(600),
    ));
    {
        // Config changes, re-read in the background.
        let (state, path, versions) = (state.clone(), a.config.clone(), versions.clone());
        tokio::spawn(async move {
            let mut last = std::fs::read_to_string(&path).ok();
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let now = std::fs::read_to_string(&path).ok();
                if now == last {
                    continue;
                }
                match load_config(&path) {
                    Ok(g) => {
                        version::apply_with(&state, &versions, |c| c.global = g);
                        tracing::info!("reloaded {}", path.display());
                        last = now;
                    }
                    Err(e) => tracing::error!("keeping the last good configuration: {e}"),
                }
            }
        });
    }
    // Jobs with classic sidecars complete once their app exits.
    tokio::spawn(jfs_webhook::app_exit::run(client.clone()));
    if a.metrics_port != 0 {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], a.metrics_port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("metrics port {addr}: {e}"))?;
        let app = server::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("metrics server: {e}");
            }
        });
        tracing::info!("metrics at http://{addr}/metrics");
    }
    let tls = server::tls_config(a.cert.clone(), a.key.clone(), Duration::from_secs(10))
        .await
        .map_err(|e| format!("loading the serving certificate {}: {e}", a.cert.display()))?;
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], a.port));
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            h.graceful_shutdown(Some(Duration::from_secs(10)));
        }
    });
    tracing::info!("serving on {addr}");
    axum_server::bind_rustls(addr, tls)
        .handle(handle)
        .serve(server::router(state).into_make_service())
        .await
        .map_err(|e| format!("serving on {addr}: {e}"))
}

fn main() -> ExitCode {
    let a = Args::parse();
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        );
    if a.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    // One thread serves 1,000 admissions/s with room to spare; more threads only add
    // context switches on the small nodes a webhook runs on.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("juicefs-webhook: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("juicefs-webhook: {e}");
            ExitCode::FAILURE
        }
    }
}
