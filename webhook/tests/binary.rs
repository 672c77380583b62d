//! The `juicefs-webhook` binary fails at start-up with one clear line, never a panic, when
//! it cannot reach the cluster or read its certificate.

use std::process::Command;

#[test]
fn unreachable_api_server_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, jfs_fakekube::kubeconfig("http://127.0.0.1:1")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_juicefs-webhook"))
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("cannot reach the Kubernetes API server"),
        "{err}"
    );
}
