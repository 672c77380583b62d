//! A stand-in for the kubelet and the API server around the real node service: the
//! in-memory API (`jfs-fakekube`), the node served over a real unix socket and called with
//! a tonic client, and a runner that starts each Mount Pod's container command as a local
//! process with the workspace's `juicefs` binary (real FUSE), restarting it on failure as
//! `restartPolicy: OnFailure` says and stopping it when the pod is deleted.

#![allow(dead_code)]

use jfs_csi::mountpods::{MountPods, NodeConfig};
use jfs_csi::node::NodeService;
use jfs_csi::proto::identity_client::IdentityClient;
use jfs_csi::proto::identity_server::IdentityServer;
use jfs_csi::proto::node_client::NodeClient;
use jfs_csi::proto::node_server::NodeServer;
use jfs_csi::proto::*;
use jfs_fakekube::FakeApi;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

pub const NS: &str = "jfs-system";
pub const NODE: &str = "node-1";

pub fn juicefs_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("juicefs");
    assert!(
        bin.exists(),
        "{} missing: run `cargo test --workspace --all-targets`",
        bin.display()
    );
    bin
}

/// A running Mount Pod container.
pub struct Proc {
    pub child: Child,
    pub restarts: u32,
    pub log: PathBuf,
    /// When the pod's deletion was first seen (SIGTERM), for the SIGKILL after the grace period.
    pub terminating: Option<std::time::Instant>,
}

pub struct Rig {
    pub tmp: tempfile::TempDir,
    pub api: FakeApi,
    pub kubelet: PathBuf,
    pub mount_dir: PathBuf,
    pub node: NodeClient<Channel>,
    pub identity: IdentityClient<Channel>,
    pub procs: Arc<Mutex<HashMap<String, Proc>>>,
    pub pods: Arc<MountPods>,
}

impl Drop for Rig {
    /// A test that ends with Mount Pods alive (delayed deletion, a failed assertion) must not
    /// leave clients serving or mounts stacked under a deleted temporary directory.
    fn drop(&mut self) {
        if let Ok(mut procs) = self.procs.lock() {
            for p in procs.values_mut() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
            procs.clear();
        }
        let root = self.tmp.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        // Deepest first: bind mounts of targets sit on top of the clients' mount points.
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

impl Rig {
    pub async fn start(ready_timeout: Duration) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let api = FakeApi::start().await;
        let kubelet = tmp.path().join("kubelet");
        let mount_dir = tmp.path().join("host-jfs");
        std::fs::create_dir_all(kubelet.join("pods")).unwrap();
        std::fs::create_dir_all(&mount_dir).unwrap();
        let cfg = NodeConfig {
            node_name: NODE.into(),
            namespace: NS.into(),
            kubelet_dir: kubelet.clone(),
            mount_dir: mount_dir.clone(),
            mount_image: "example/mount:1".into(),
            priority_class: None,
            ready_timeout,
        };
        let pods = MountPods::start(api.client(), cfg);
        pods.synced().await;
        let events = jfs_csi::events::Events::new(api.client(), "csi.juicefs.com", NODE);
        tokio::spawn(jfs_csi::recovery::run(
            pods.clone(),
            None,
            events.clone(),
            Duration::from_secs(3600),
        ));
        let node = NodeService::new(pods.clone(), events, None, BTreeMap::new());
        let sock = tmp.path().join("csi.sock");
        let incoming = jfs_csi::server::bind(&sock).unwrap();
        let identity = jfs_csi::identity::IdentityService {
            name: "csi.juicefs.com".into(),
            controller: false,
            ready: Arc::new(AtomicBool::new(true)),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(IdentityServer::new(identity))
                .add_service(NodeServer::new(node))
                .serve_with_incoming(incoming),
        );
        let channel = channel(sock).await;
        let procs = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(kubelet_runner(
            api.clone(),
            mount_dir.clone(),
            tmp.path().join("logs"),
            procs.clone(),
        ));
        Rig {
            tmp,
            api,
            kubelet,
            mount_dir,
            node: NodeClient::new(channel.clone()),
            identity: IdentityClient::new(channel),
            procs,
            pods,
        }
    }

    /// A volume (SQLite + local directory) and the node-publish Secret data for it.
    pub fn volume_secrets(&self, name: &str) -> HashMap<String, String> {
        let dir = self.tmp.path().join(format!("vol-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        [
            ("name", name.to_string()),
            ("metaurl", format!("sqlite3://{}/meta.db", dir.display())),
            ("storage", "file".into()),
            ("bucket", format!("{}/data", dir.display())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn target(&self, pod_uid: &str, pv: &str) -> String {
        self.kubelet
            .join(format!(
                "pods/{pod_uid}/volumes/kubernetes.io~csi/{pv}/mount"
            ))
            .display()
            .to_string()
    }

    pub fn publish_request(
        &self,
        volume: &str,
        target: &str,
        secrets: &HashMap<String, String>,
    ) -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: volume.into(),
            target_path: target.into(),
            volume_capability: Some(mount_capability(
                volume_capability::access_mode::Mode::MultiNodeMultiWriter,
            )),
            readonly: false,
            secrets: secrets.clone(),
            volume_context: [
                ("csi.storage.k8s.io/pod.name".to_string(), "app".to_string()),
                (
                    "csi.storage.k8s.io/pod.namespace".to_string(),
                    "default".to_string(),
                ),
            ]
            .into(),
            ..Default::default()
        }
    }

    pub async fn publish(
        &self,
        volume: &str,
        target: &str,
        secrets: &HashMap<String, String>,
    ) -> Result<(), tonic::Status> {
        self.node
            .clone()
            .node_publish_volume(self.publish_request(volume, target, secrets))
            .await
            .map(|_| ())
    }

    pub async fn unpublish(&self, volume: &str, target: &str) -> Result<(), tonic::Status> {
        self.node
            .clone()
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: volume.into(),
                target_path: target.into(),
            })
            .await
            .map(|_| ())
    }

    pub fn mount_pods(&self) -> Vec<Pod> {
        self.api
            .list::<Pod>()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(NS))
            .collect()
    }

    pub fn running_clients(&self) -> usize {
        let mut p = self.procs.lock().unwrap();
        p.values_mut()
            .map(|x| matches!(x.child.try_wait(), Ok(None)))
            .filter(|r| *r)
            .count()
    }

    pub fn client_pid(&self, pod: &str) -> Option<u32> {
        self.procs.lock().unwrap().get(pod).map(|p| p.child.id())
    }
}

/// A gRPC channel over the CSI unix socket, as kubelet and the sidecars use it.
pub async fn channel(sock: PathBuf) -> Channel {
    tonic::transport::Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(sock).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

pub fn mount_capability(mode: volume_capability::access_mode::Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(volume_capability::AccessMode { mode: mode as i32 }),
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume::default(),
        )),
    }
}

fn start_container(api: &FakeApi, pod: &Pod, mount_dir: &Path, log: &Path) -> Option<Child> {
    let c = pod.spec.as_ref()?.containers.first()?.clone();
    let cmd = c.command.clone()?;
    let script = cmd
        .get(2)?
        .replace("/jfs/", &format!("{}/", mount_dir.display()));
    let bin_dir = log.parent()?.join("bin");
    std::fs::create_dir_all(&bin_dir).ok()?;
    let link = bin_dir.join("juicefs");
    if !link.exists() {
        std::os::unix::fs::symlink(juicefs_bin(), &link).ok()?;
    }
    let mut p = Command::new("sh");
    p.args(["-c", &script])
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", bin_dir.display()),
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).ok()?)
        .stderr(std::fs::OpenOptions::new().append(true).open(log).ok()?);
    for e in c.env.iter().flatten() {
        let value = match e
            .value_from
            .as_ref()
            .and_then(|s| s.secret_key_ref.as_ref())
        {
            Some(r) => {
                let s: Secret = api.get(Some(NS), &r.name)?;
                String::from_utf8(s.data?.get(&r.key)?.0.clone()).ok()?
            }
            None => e.value.clone().unwrap_or_default(),
        };
        p.env(&e.name, value);
    }
    p.spawn().ok()
}

fn set_status(api: &FakeApi, name: &str, phase: &str, restarts: u32, exit: Option<i32>) {
    let state = match exit {
        None => serde_json::json!({"running": {"startedAt": "2026-11-22T10:00:00Z"}}),
        Some(code) => serde_json::json!({"terminated": {"exitCode": code}}),
    };
    // Status only, atomically: a get-then-put here once overwrote a reference the node
    // plugin had just added to the pod's annotations.
    api.set_status::<Pod>(
        Some(NS),
        name,
        serde_json::json!({
            "phase": phase,
            "containerStatuses": [{"name": "jfs-mount", "ready": exit.is_none(), "restartCount": restarts,
                                   "image": "example/mount:1", "imageID": "", "state": state}]
        }),
    );
}

/// What the kubelet does to a deleted pod's container: SIGTERM, then SIGKILL after a (short)
/// grace period.
fn stop(p: &mut Proc) {
    if !matches!(p.child.try_wait(), Ok(None)) {
        return;
    }
    let since = *p.terminating.get_or_insert_with(std::time::Instant::now);
    let sig = if since.elapsed() > Duration::from_secs(2) {
        libc::SIGKILL
    } else {
        libc::SIGTERM
    };
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(p.child.id() as i32, sig) };
}

/// The kubelet: starts Mount Pods' containers, restarts failed ones, stops deleted ones.
async fn kubelet_runner(
    api: FakeApi,
    mount_dir: PathBuf,
    logs: PathBuf,
    procs: Arc<Mutex<HashMap<String, Proc>>>,
) {
    std::fs::create_dir_all(&logs).unwrap();
    let mut jobs_run = std::collections::HashSet::new();
    loop {
        // Jobs (cache cleaning): run their one container's command here, once.
        for job in api.list::<k8s_openapi::api::batch::v1::Job>() {
            let name = job.name_any();
            if !jobs_run.insert(name.clone()) {
                continue;
            }
            let cmd = job
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.command.clone())
                .unwrap_or_default();
            if cmd.len() == 3 {
                let ok = Command::new(&cmd[0])
                    .args(&cmd[1..])
                    .status()
                    .is_ok_and(|s| s.success());
                api.set_status::<k8s_openapi::api::batch::v1::Job>(
                    job.namespace().as_deref(),
                    &name,
                    serde_json::json!({"succeeded": u8::from(ok), "failed": u8::from(!ok)}),
                );
            }
        }
        for pod in api.list::<Pod>() {
            if pod.namespace().as_deref() != Some(NS) {
                continue;
            }
            let name = pod.name_any();
            let log = logs.join(format!("{name}.log"));
            let deleting = pod.metadata.deletion_timestamp.is_some();
            let mut guard = procs.lock().unwrap();
            match guard.get_mut(&name) {
                None if !deleting => {
                    if let Some(child) = start_container(&api, &pod, &mount_dir, &log) {
                        guard.insert(
                            name.clone(),
                            Proc {
                                child,
                                restarts: 0,
                                log: log.clone(),
                                terminating: None,
                            },
                        );
                        drop(guard);
                        set_status(&api, &name, "Running", 0, None);
                    }
                }
                Some(p) if deleting => stop(p),
                Some(p) => {
                    if let Ok(Some(st)) = p.child.try_wait() {
                        api.set_log(
                            NS,
                            &name,
                            &std::fs::read_to_string(&p.log).unwrap_or_default(),
                        );
                        if st.success() {
                            drop(guard);
                            set_status(&api, &name, "Succeeded", 0, Some(0));
                        } else if let Some(child) = start_container(&api, &pod, &mount_dir, &log) {
                            // restartPolicy: OnFailure.
                            p.child = child;
                            p.restarts += 1;
                            let r = p.restarts;
                            drop(guard);
                            set_status(&api, &name, "Running", r, None);
                        }
                    }
                }
                None => {}
            }
        }
        // A pod removed from the API has no containers any more.
        let live: std::collections::HashSet<String> =
            api.list::<Pod>().iter().map(|p| p.name_any()).collect();
        for (name, p) in procs.lock().unwrap().iter_mut() {
            if !live.contains(name) {
                stop(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `f` holds, checking every 100 ms, failing the test after `secs`.
pub async fn eventually<F: AsyncFnMut() -> bool>(what: &str, secs: u64, mut f: F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Identity (ready, with the controller service) and Controller services on a unix
/// socket in `dir`, as `juicefs-csi controller` serves them, reading `api`.
pub async fn serve_controller(dir: &Path, api: &FakeApi) -> Channel {
    let sock = dir.join("csi.sock");
    let incoming = jfs_csi::server::bind(&sock).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IdentityServer::new(jfs_csi::identity::IdentityService {
                name: "csi.juicefs.com".into(),
                controller: true,
                ready: Arc::new(AtomicBool::new(true)),
            }))
            .add_service(jfs_csi::proto::controller_server::ControllerServer::new(
                jfs_csi::controller::ControllerService {
                    client: Some(api.client()),
                },
            ))
            .serve_with_incoming(incoming),
    );
    channel(sock).await
}

/// Runs the workspace's `juicefs` and fails the test with its stderr if it fails.
pub fn juicefs(args: &[&str]) {
    let out = Command::new(juicefs_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "juicefs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `juicefs umount`, retried for a few seconds: beside tests that spawn processes and
/// mount, it once failed with a transient EBUSY right after the writes.
pub fn juicefs_umount(mp: &Path) {
    let mp = mp.display().to_string();
    for _ in 0..25 {
        let out = Command::new(juicefs_bin())
            .args(["umount", &mp])
            .output()
            .unwrap();
        if out.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    juicefs(&["umount", &mp]);
}

/// The number of files below `dir` (objects of a `file` store).
pub fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk_count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A formatted SQLite + local-directory volume (metadata and objects in `dir`) holding
/// `dirs`, each with a 300 kB file `f`; unmounted again, its mount point kept for checks.
pub struct FileVolume {
    pub meta: String,
    pub data: PathBuf,
    pub mp: PathBuf,
}

impl FileVolume {
    pub fn with_dirs(dir: &Path, name: &str, dirs: &[&str]) -> FileVolume {
        let meta = format!("sqlite3://{}/meta.db", dir.display());
        let data = dir.join("data");
        let bucket = data.display().to_string();
        juicefs(&[
            "format",
            "--storage",
            "file",
            "--bucket",
            &bucket,
            &meta,
            name,
        ]);
        let mp = dir.join("mnt");
        std::fs::create_dir_all(&mp).unwrap();
        juicefs(&["mount", "-d", &meta, &mp.display().to_string()]);
        for d in dirs {
            std::fs::create_dir_all(mp.join(d)).unwrap();
            std::fs::write(mp.join(d).join("f"), vec![7u8; 300_000]).unwrap();
        }
        juicefs_umount(&mp);
        FileVolume { meta, data, mp }
    }
}
