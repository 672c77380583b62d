//! The real HTTPS server on loopback with a fresh CA, and a rustls client for it.
#![allow(dead_code)]

use super::FakeCluster;
use jfs_mountspec::GlobalConfig;
use jfs_webhook::inject::{ClusterView, InjectConfig};
use jfs_webhook::server::{self, AppState, BoxFut, SecretWriter};
use k8s_openapi::api::core::v1::Secret;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Records every `ensure`, then passes it to `inner` (a real writer) if there is one.
#[derive(Default)]
pub struct Recorder {
    pub writes: AtomicUsize,
    pub names: Mutex<Vec<String>>,
    pub inner: Option<Arc<dyn SecretWriter>>,
}

impl Recorder {
    pub fn wrapping(inner: Arc<dyn SecretWriter>) -> Recorder {
        Recorder {
            inner: Some(inner),
            ..Recorder::default()
        }
    }
}

impl SecretWriter for Recorder {
    fn ensure<'a>(&'a self, s: &'a Secret) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.names
                .lock()
                .unwrap()
                .push(s.metadata.name.clone().unwrap_or_default());
            match &self.inner {
                Some(w) => w.ensure(s).await,
                None => Ok(()),
            }
        })
    }
}

pub struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Pki {
            ca_der: cert.der().clone(),
            ca: rcgen::Issuer::new(p, key),
        }
    }

    /// Writes a fresh serving certificate for localhost; returns its DER.
    pub fn issue(&self, dir: &Path) -> Vec<u8> {
        let p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        // Written aside and renamed, as a Secret volume update is.
        std::fs::write(dir.join("tls.crt.new"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key.new"), key.serialize_pem()).unwrap();
        std::fs::rename(dir.join("tls.key.new"), dir.join("tls.key")).unwrap();
        std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt")).unwrap();
        cert.der().to_vec()
    }
}

pub struct Server {
    pub addr: std::net::SocketAddr,
    pub connector: tokio_rustls::TlsConnector,
    pub writer: Arc<Recorder>,
    pub state: Arc<AppState>,
}

pub async fn start(dir: &Path, pki: &Pki) -> Server {
    start_with(dir, pki, FakeCluster::standard()).await
}

pub async fn start_with(dir: &Path, pki: &Pki, cluster: FakeCluster) -> Server {
    start_parts(dir, pki, Arc::new(cluster), Recorder::default()).await
}

/// The server over any view of the cluster (e.g. the watch caches of a `KubeView`) and any
/// writer (e.g. a `Recorder` wrapping a real `KubeSecretWriter`).
pub async fn start_parts(
    dir: &Path,
    pki: &Pki,
    view: Arc<dyn ClusterView + Send + Sync>,
    writer: Recorder,
) -> Server {
    pki.issue(dir);
    let writer = Arc::new(writer);
    let state = Arc::new(AppState {
        view,
        writer: writer.clone(),
        config: RwLock::new(Arc::new(InjectConfig {
            global: GlobalConfig::default(),
            native: true,
            default_image: "example/mount:1".into(),
        })),
        ready: AtomicBool::new(true),
    });
    let tls = server::tls_config(
        dir.join("tls.crt"),
        dir.join("tls.key"),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    let served = state.clone();
    tokio::spawn(async move {
        axum_server::bind_rustls("127.0.0.1:0".parse().unwrap(), tls)
            .handle(h)
            .serve(server::router(served).into_make_service())
            .await
            .unwrap();
    });
    let addr = handle.listening().await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Server {
        addr,
        connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        writer,
        state,
    }
}

impl Server {
    /// One HTTP/1.1 request on a new TLS connection: (status, body, server leaf cert).
    pub async fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>, Vec<u8>) {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = self.connector.connect(name, tcp).await.unwrap();
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        // A refused oversized body may close the connection before it is all sent.
        let _ = tls.write_all(body).await;
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(out.len(), |i| i + 4);
        (status, out[split..].to_vec(), leaf)
    }
}
