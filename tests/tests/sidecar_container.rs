//! The mount container that `mountspec` builds really works: its command and env, with the
//! workspace's own `juicefs` binary, format and mount an embedded volume (SQLite + local
//! directory) into a directory standing in for the pod's emptyDir; the startup probe passes
//! only once the mount is live; SIGTERM flushes and unmounts; nothing written is lost.

use jfs_mountspec::GlobalConfig;
use jfs_mountspec::container::{
    ANNOTATION_APP_EXITED, ContainerParams, PODINFO_DIR, Placement, mount_container,
    secret_copy_data,
};
use jfs_mountspec::setting::{DEFAULT_IMAGE, Inputs, resolve};
use k8s_openapi::api::core::v1::{Container, PersistentVolume, PersistentVolumeClaim};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The workspace's `juicefs`, built next to this test binary by `cargo test --workspace`.
fn juicefs_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("juicefs");
    assert!(
        bin.exists(),
        "{} missing: run `cargo test --workspace --all-targets`",
        bin.display()
    );
    bin
}

fn objects(
    tmp: &Path,
) -> (
    PersistentVolume,
    PersistentVolumeClaim,
    BTreeMap<String, Vec<u8>>,
) {
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv-embedded"},
        "spec": {"accessModes": ["ReadWriteMany"], "csi": {
            "driver": "csi.juicefs.com", "volumeHandle": "pv-embedded",
            "nodePublishSecretRef": {"name": "s", "namespace": "default"},
            "volumeAttributes": {"mountOptions": "attr-cache=1"}}}
    }))
    .unwrap();
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data", "namespace": "default", "uid": "0a1b"},
        "spec": {"volumeName": "pv-embedded"}
    }))
    .unwrap();
    let secret = [
        ("name", "embedded"),
        ("metaurl", &*format!("sqlite3://{}/meta.db", tmp.display())),
        ("storage", "file"),
        ("bucket", &*format!("{}/data", tmp.display())),
        ("envs", "{JFS_TEST_MARK: present}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    (pv, pvc, secret)
}

/// Runs the container's command the way the kubelet would: its env resolved from the
/// Secret copy, `juicefs` on PATH.
fn run_container(c: &Container, secret_copy: &BTreeMap<String, Vec<u8>>, path_dir: &Path) -> Child {
    let cmd = c.command.as_ref().unwrap();
    let mut p = Command::new(&cmd[0]);
    p.args(&cmd[1..]).env_clear().env(
        "PATH",
        format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", path_dir.display()),
    );
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            Some(src) => {
                let r = src.secret_key_ref.as_ref().expect("only secretKeyRef env");
                String::from_utf8(secret_copy[&r.key].clone()).unwrap()
            }
            None => e.value.clone().unwrap_or_default(),
        };
        p.env(&e.name, value);
    }
    p.spawn().unwrap()
}

fn probe_ok(c: &Container, path_dir: &Path) -> bool {
    let probe = c.startup_probe.as_ref().and_then(|p| p.exec.as_ref());
    run_hook(probe.and_then(|e| e.command.as_ref()).unwrap(), path_dir)
}

struct Rig {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    bin_dir: PathBuf,
    empty_dir: PathBuf,
    container: Container,
    copy: BTreeMap<String, Vec<u8>>,
}

fn rig(placement: Placement, exit_on_app_exit: bool) -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let bin_dir = root.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(juicefs_bin(), bin_dir.join("juicefs")).unwrap();
    let empty_dir = root.join("emptydir");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let (pv, pvc, secret) = objects(&root);
    let setting = resolve(&Inputs {
        secret_id: "default/s",
        secret_data: &secret,
        pv: &pv,
        pvc: &pvc,
        node_labels: &BTreeMap::new(),
        config: &GlobalConfig::default(),
        default_image: DEFAULT_IMAGE,
        serverless: false,
    })
    .unwrap();
    let params = ContainerParams {
        name: "jfs-mount".into(),
        mount_path: empty_dir.display().to_string(),
        volume_name: "data".into(),
        secret_name: "data-jfs-secret".into(),
        metrics_port: 9567,
        metrics_port_name: "metrics".into(),
        placement,
        grace_seconds: 30,
        exit_on_app_exit,
    };
    let mut container = mount_container(&setting, &params);
    // The kubelet mounts the downward-API volume at PODINFO_DIR; here it is a directory.
    let podinfo = root.join("podinfo");
    std::fs::create_dir_all(&podinfo).unwrap();
    for arg in container.command.iter_mut().flatten() {
        *arg = arg.replace(PODINFO_DIR, &podinfo.display().to_string());
    }
    let copy = secret_copy_data(&secret);
    Rig {
        _tmp: tmp,
        root,
        bin_dir,
        empty_dir,
        container,
        copy,
    }
}

/// Runs a lifecycle or probe command of the container (`juicefs` from the rig).
fn run_hook(cmd: &[String], bin_dir: &Path) -> bool {
    let mut bin = cmd[0].clone();
    if bin == "juicefs" {
        bin = bin_dir.join("juicefs").display().to_string();
    }
    Command::new(bin)
        .args(&cmd[1..])
        .output()
        .unwrap()
        .status
        .success()
}

/// Waits up to `secs` for `child` to exit, failing with `why` if it does not.
fn wait_exit(child: &mut Child, secs: u64, why: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn injected_container_mounts_serves_and_flushes() {
    let Rig {
        _tmp,
        bin_dir,
        empty_dir,
        container: c,
        copy,
        ..
    } = rig(Placement::NativeSidecar, false);
    assert!(
        !probe_ok(&c, &bin_dir),
        "the probe must fail before the mount is live"
    );

    let mut child = run_container(&c, &copy, &bin_dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe_ok(&c, &bin_dir) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the mount container exited early"
        );
        assert!(Instant::now() < deadline, "startup probe never passed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(empty_dir.join("app-file"), &data).unwrap();
    assert_eq!(std::fs::read(empty_dir.join("app-file")).unwrap(), data);

    // Pod termination: SIGTERM flushes and unmounts; the probe then fails.
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the client should exit cleanly on SIGTERM: {status}"
    );
    assert!(!probe_ok(&c, &bin_dir));
    assert!(
        !empty_dir.join("app-file").exists(),
        "unmounted: the emptyDir is bare again"
    );

    // Start again (a restarted sidecar): the data is there, and the format step is a no-op.
    let mut child = run_container(&c, &copy, &bin_dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe_ok(&c, &bin_dir) {
        assert!(Instant::now() < deadline, "second start never became live");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(std::fs::read(empty_dir.join("app-file")).unwrap(), data);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// A Job's classic sidecar: `postStart` returns once the mount is live; after the app-exit
/// mark appears in the pod's annotations the client waits for the last open file to close,
/// then unmounts and exits 0, and what the app wrote is stored.
#[test]
fn classic_sidecar_exits_after_the_app_of_a_job() {
    let r = rig(Placement::ClassicSidecar, true);
    let lifecycle = r.container.lifecycle.clone().unwrap();
    let post_start = lifecycle.post_start.unwrap().exec.unwrap().command.unwrap();
    let mut child = run_container(&r.container, &r.copy, &r.bin_dir);
    assert!(
        run_hook(&post_start, &r.bin_dir),
        "postStart must pass once the mount is live"
    );
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 241) as u8).collect();
    let mut f = std::fs::File::create(r.empty_dir.join("result")).unwrap();
    std::io::Write::write_all(&mut f, &data).unwrap();

    // The watcher marks the pod; the kubelet writes the annotations file.
    let annotations = r.root.join("podinfo/annotations");
    std::fs::write(
        &annotations,
        format!("kubernetes.io/config.seen=\"2026-11-22T10:00:00Z\"\n{ANNOTATION_APP_EXITED}=\"2026-11-22T10:05:00Z\"\n"),
    )
    .unwrap();
    // A file is still open: the client must keep serving.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited while a file was open"
    );
    drop(f);
    let status = wait_exit(&mut child, 20, "the sidecar did not exit after the app");
    assert!(
        status.success(),
        "the sidecar must exit 0 so the Job completes: {status}"
    );
    assert!(!r.empty_dir.join("result").exists(), "unmounted");

    // Mount again without the mark: the file is complete.
    std::fs::remove_file(&annotations).unwrap();
    let mut child = run_container(&r.container, &r.copy, &r.bin_dir);
    assert!(run_hook(&post_start, &r.bin_dir));
    assert_eq!(std::fs::read(r.empty_dir.join("result")).unwrap(), data);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// A classic sidecar's `preStop` (pod termination of a long-running pod): the hook keeps
/// the client serving while the app still has a file open, returns once it is closed, and
/// the SIGTERM that follows unmounts with everything stored.
#[test]
fn classic_pre_stop_waits_for_the_app_then_the_client_stops_cleanly() {
    let r = rig(Placement::ClassicSidecar, false);
    let lifecycle = r.container.lifecycle.clone().unwrap();
    let post_start = lifecycle.post_start.unwrap().exec.unwrap().command.unwrap();
    let pre_stop = lifecycle.pre_stop.unwrap().exec.unwrap().command.unwrap();
    assert!(pre_stop.iter().any(|a| a == "drain"), "{pre_stop:?}");
    let mut child = run_container(&r.container, &r.copy, &r.bin_dir);
    assert!(run_hook(&post_start, &r.bin_dir));
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 239) as u8).collect();
    let mut f = std::fs::File::create(r.empty_dir.join("log")).unwrap();
    std::io::Write::write_all(&mut f, &data).unwrap();

    // The kubelet runs preStop; the app is still writing.
    let mut cmd = pre_stop.clone();
    cmd[0] = r.bin_dir.join("juicefs").display().to_string();
    let mut hook = Command::new(&cmd[0]).args(&cmd[1..]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        hook.try_wait().unwrap().is_none(),
        "preStop returned while the app still had a file open"
    );
    std::io::Write::write_all(&mut f, b"last line\n").unwrap();
    drop(f);
    let status = wait_exit(&mut hook, 30, "preStop did not return after the close");
    assert!(status.success(), "preStop: {status}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the client must still run after preStop"
    );
    // Then the kubelet's SIGTERM.
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    let mut child = run_container(&r.container, &r.copy, &r.bin_dir);
    assert!(run_hook(&post_start, &r.bin_dir));
    let mut want = data.clone();
    want.extend_from_slice(b"last line\n");
    assert_eq!(std::fs::read(r.empty_dir.join("log")).unwrap(), want);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
