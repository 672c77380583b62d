//! Golden tests: each realistic pod in `tests/golden/*.pod.json` goes through the real HTTPS
//! server (both paths, native and classic); the returned JSON Patch, applied to the input,
//! must equal the checked-in expectation `NAME.native.json` / `NAME.classic.json` (the
//! mutated pod, the Secret copies written, or the answer when nothing is mutated).
//! A case may carry its own ConfigMap (`NAME.config.yaml`) and, where the serverless path
//! must differ, its expectation there (`NAME.MODE.serverless.json`).
//! `UPDATE_GOLDEN=1 cargo test -p jfs-webhook --test golden` rewrites them; review the diff.

mod common;
use base64::Engine;
use common::FakeCluster;
use common::server::{Pki, start_with};
use jfs_webhook::server::{INJECT_PATH, SERVERLESS_PATH};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn review(pod: &Value, uid: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "app", "operation": "CREATE", "object": pod}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_pods_through_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let mut cluster = FakeCluster::standard();
    cluster.juicefs_pvc("data-db-0", json!({"subPath": "pvc-db-0"}), true);
    let s = start_with(dir.path(), &pki, cluster).await;
    let update = std::env::var("UPDATE_GOLDEN").is_ok();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pod.json"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10, "the golden folder lost its pods");
    let mut mismatches = Vec::new();
    for input in inputs {
        let name = input
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".pod.json")
            .to_string();
        let pod: Value = serde_json::from_slice(&std::fs::read(&input).unwrap()).unwrap();
        // A case may bring its own global ConfigMap (`NAME.config.yaml`).
        if let Ok(yaml) = std::fs::read_to_string(golden_dir().join(format!("{name}.config.yaml")))
        {
            std::sync::Arc::make_mut(&mut *s.state.config.write().unwrap()).global =
                jfs_mountspec::GlobalConfig::parse(&yaml).unwrap();
        }
        for native in [true, false] {
            std::sync::Arc::make_mut(&mut *s.state.config.write().unwrap()).native = native;
            let mut outcomes = Vec::new();
            // Both paths serve the same mutation (nothing comes from the host).
            for path in [INJECT_PATH, SERVERLESS_PATH] {
                let before = s.writer.writes.load(Ordering::SeqCst);
                let (code, body, _) = s.call("POST", path, &review(&pod, &name)).await;
                assert_eq!(code, 200, "{name}: {}", String::from_utf8_lossy(&body));
                let v: Value = serde_json::from_slice(&body).unwrap();
                let r = &v["response"];
                assert_eq!(r["uid"], name.as_str());
                let written: Vec<String> = s.writer.names.lock().unwrap()[before..].to_vec();
                let result = match r["patch"].as_str() {
                    Some(p) => {
                        let patch: json_patch::Patch = serde_json::from_slice(
                            &base64::engine::general_purpose::STANDARD.decode(p).unwrap(),
                        )
                        .unwrap();
                        let mut out = pod.clone();
                        json_patch::patch(&mut out, &patch).unwrap();
                        json!({"allowed": true, "pod": out, "secretCopies": written})
                    }
                    None => {
                        json!({"allowed": r["allowed"], "message": r["status"]["message"], "secretCopies": written})
                    }
                };
                outcomes.push(result);
            }
            let mode = if native { "native" } else { "classic" };
            // The serverless path differs only where a case says so with its own file.
            let serverless = golden_dir().join(format!("{name}.{mode}.serverless.json"));
            let mut expected = vec![(golden_dir().join(format!("{name}.{mode}.json")), 0)];
            if serverless.exists() || (update && outcomes[0] != outcomes[1]) {
                expected.push((serverless, 1));
            } else {
                assert_eq!(
                    outcomes[0], outcomes[1],
                    "{name}: the serverless path differs"
                );
            }
            for (file, i) in expected {
                let got = serde_json::to_string_pretty(&outcomes[i]).unwrap() + "\n";
                if update {
                    std::fs::write(&file, &got).unwrap();
                } else if std::fs::read_to_string(&file).unwrap_or_default() != got {
                    mismatches.push(file.display().to_string());
                }
            }
        }
        std::sync::Arc::make_mut(&mut *s.state.config.write().unwrap()).global = Default::default();
    }
    assert!(
        mismatches.is_empty(),
        "differs from the golden files (UPDATE_GOLDEN=1 to accept): {mismatches:?}"
    );
}
