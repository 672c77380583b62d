//! `juicefs-csi node|controller`: the CSI driver's two halves on the CSI unix socket.

use clap::{Parser, Subcommand};
use jfs_csi::controller::ControllerService;
use jfs_csi::identity::IdentityService;
use jfs_csi::mountpods::{MountPods, NodeConfig};
use jfs_csi::node::NodeService;
use jfs_csi::proto::controller_server::ControllerServer;
use jfs_csi::proto::identity_server::IdentityServer;
use jfs_csi::proto::node_server::NodeServer;
use k8s_openapi::api::core::v1::Node;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "juicefs-csi", version, about = "The JuiceFS CSI driver")]
struct Args {
    #[command(subcommand)]
    role: Role,
    /// The CSI socket (`unix:///path`).
    #[arg(long, global = true, default_value = "unix:///csi/csi.sock")]
    endpoint: String,
    /// The driver's namespace (Mount Pods and their Secrets live here).
    #[arg(
        long,
        global = true,
        env = "POD_NAMESPACE",
        default_value = "kube-system"
    )]
    namespace: String,
    #[arg(long, global = true, default_value = jfs_mountspec::DRIVER_NAME)]
    driver_name: String,
    /// Plain-HTTP port for `GET /metrics` (0: off).
    #[arg(long, global = true, default_value_t = 9567)]
    metrics_port: u16,
    #[arg(long, global = true)]
    log_json: bool,
    /// Client-side limit on Kubernetes API requests per second (token bucket).
    #[arg(long, global = true, env = "KUBE_QPS", default_value_t = 20.0, value_parser = positive)]
    kube_qps: f64,
    /// Requests allowed at once before the per-second limit applies.
    #[arg(long, global = true, env = "KUBE_BURST", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    kube_burst: u32,
}

fn positive(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|q| *q > 0.0 && q.is_finite())
        .ok_or_else(|| format!("{v:?} is not a positive number"))
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Node plugin: Mount Pods and bind mounts on this node.
    Node {
        #[arg(long, env = "NODE_NAME")]
        node_id: String,
        #[arg(long, default_value = "/var/lib/kubelet")]
        kubelet_dir: PathBuf,
        /// Host directory of the Mount Pods' mounts (their `/jfs`).
        #[arg(long, default_value = jfs_mountspec::pod::DEFAULT_MOUNT_DIR)]
        mount_dir: PathBuf,
        #[arg(long, env = "JUICEFS_MOUNT_IMAGE", default_value = jfs_mountspec::setting::DEFAULT_IMAGE)]
        mount_image: String,
        /// The global ConfigMap's config.yaml as mounted.
        #[arg(long, default_value = "/etc/juicefs/config.yaml")]
        config: PathBuf,
        /// PriorityClass of Mount Pods (default system-node-critical).
        #[arg(long, env = "JUICEFS_MOUNT_PRIORITY_NAME")]
        mount_priority_class: Option<String>,
        /// How long a publish waits for the client's mount, in seconds.
        #[arg(long, default_value_t = 60)]
        ready_timeout: u64,
        /// The kubelet's API (`https://$(HOST_IP):10250`), to list this node's pods without the
        /// API server; the API server is used when it is not given or refuses.
        #[arg(long)]
        kubelet_url: Option<String>,
    },
    /// Controller plugin: CreateVolume, DeleteVolume, expansion.
    Controller {
        /// Hold the Lease csi-controller.juicefs.com before background work (several replicas).
        #[arg(long)]
        leader_election: bool,
    },
}

async fn serve_metrics(port: u16, pods: Option<Arc<MountPods>>) -> Result<(), String> {
    if port == 0 {
        return Ok(());
    }
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics port {addr}: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let pods = pods.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let mut body = String::from(
                    "# HELP juicefs_csi_up The driver is running.\n# TYPE juicefs_csi_up gauge\njuicefs_csi_up 1\n",
                );
                if let Some(p) = pods {
                    let all = p.pods();
                    let refs: usize = all
                        .iter()
                        .map(|x| jfs_csi::target::refs(x.metadata.annotations.as_ref()).len())
                        .sum();
                    body.push_str(&format!(
                        "# HELP juicefs_csi_mount_pods Mount Pods on this node.\n# TYPE juicefs_csi_mount_pods gauge\njuicefs_csi_mount_pods {}\n# HELP juicefs_csi_mount_references Targets referencing them.\n# TYPE juicefs_csi_mount_references gauge\njuicefs_csi_mount_references {refs}\n",
                        all.len()
                    ));
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(())
}

async fn run(a: Args) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if a.driver_name != jfs_mountspec::DRIVER_NAME {
        return Err(format!(
            "--driver-name {:?}: only {} is supported (PVs, the webhook and Mount Pods all use that name)",
            a.driver_name,
            jfs_mountspec::DRIVER_NAME
        ));
    }
    let sock = jfs_csi::server::socket_path(&a.endpoint)?;
    let config = kube::Config::infer()
        .await
        .map_err(|e| format!("cannot configure the Kubernetes client: {e}"))?;
    let limit = jfs_csi::ratelimit::RateLimitLayer(Arc::new(jfs_csi::ratelimit::Bucket::new(
        a.kube_qps,
        a.kube_burst,
    )));
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot configure the Kubernetes client: {e}"))?
        .with_layer(&limit)
        .build();
    let ready = Arc::new(AtomicBool::new(false));
    let mut held_lease: Option<Arc<jfs_csi::lease::Elector>> = None;
    let mut router = tonic::transport::Server::builder();
    let router = match a.role {
        Role::Node {
            node_id,
            kubelet_dir,
            mount_dir,
            mount_image,
            config,
            mount_priority_class,
            ready_timeout,
            kubelet_url,
        } => {
            let nodes: kube::Api<Node> = kube::Api::all(client.clone());
            let node_labels = match nodes.get_opt(&node_id).await {
                Ok(n) => n.and_then(|n| n.metadata.labels).unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(
                        "reading node {node_id}'s labels (node-selected patches will not match): {e}"
                    );
                    Default::default()
                }
            };
            let pods = MountPods::start(
                client.clone(),
                NodeConfig {
                    node_name: node_id.clone(),
                    namespace: a.namespace.clone(),
                    kubelet_dir,
                    mount_dir,
                    mount_image,
                    priority_class: mount_priority_class,
                    ready_timeout: Duration::from_secs(ready_timeout),
                },
            );
            let kubelet = match &kubelet_url {
                Some(u) => match jfs_csi::podlist::kubelet_client(u).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!("kubelet client for {u}: {e}; using the API server");
                        None
                    }
                },
                None => None,
            };
            let lister = jfs_csi::podlist::PodLister::new(kubelet, client.clone(), &node_id);
            let events = jfs_csi::events::Events::new(client.clone(), &a.driver_name, &node_id);
            {
                let (pods, ready, events) = (pods.clone(), ready.clone(), events.clone());
                tokio::spawn(async move {
                    pods.synced().await;
                    ready.store(true, Ordering::Relaxed);
                    tracing::info!("Mount Pod cache synced: ready");
                    jfs_csi::recovery::run(pods, Some(lister), events, Duration::from_secs(60))
                        .await;
                });
            }
            serve_metrics(a.metrics_port, Some(pods.clone())).await?;
            let node = NodeService::new(pods, events, Some(config), node_labels);
            router
                .add_service(IdentityServer::new(IdentityService {
                    name: a.driver_name.clone(),
                    controller: false,
                    ready,
                }))
                .add_service(NodeServer::new(node))
        }
        Role::Controller { leader_election } => {
            ready.store(true, Ordering::Relaxed);
            let identity = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("juicefs-csi-{}", std::process::id()));
            let lease = jfs_csi::lease::Elector::new(
                client.clone(),
                &a.namespace,
                jfs_csi::lease::LEASE_NAME,
                &identity,
                Duration::from_secs(15),
            );
            if !leader_election {
                tracing::info!(
                    "no --leader-election: this replica does the background work unconditionally"
                );
            }
            let lease = lease.filter(leader_election).map(Arc::new);
            held_lease = lease.clone();
            tokio::spawn(jfs_csi::orphans::run(
                client.clone(),
                a.namespace.clone(),
                lease,
                Duration::from_secs(5),
            ));
            serve_metrics(a.metrics_port, None).await?;
            router
                .add_service(IdentityServer::new(IdentityService {
                    name: a.driver_name.clone(),
                    controller: true,
                    ready,
                }))
                .add_service(ControllerServer::new(ControllerService {
                    client: Some(client),
                }))
        }
    };
    let incoming = jfs_csi::server::bind(&sock)?;
    tracing::info!("serving CSI on {}", sock.display());
    let shutdown = async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
        }
    };
    let served = router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("serving {}: {e}", sock.display()));
    // Another replica takes over at once instead of waiting for the Lease to expire.
    if let Some(l) = held_lease {
        l.release().await;
    }
    served
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
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("juicefs-csi: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("juicefs-csi: {e}");
            ExitCode::FAILURE
        }
    }
}
