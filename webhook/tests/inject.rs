//! Injection decisions against an in-memory cluster: realistic pods in, the mutated pod,
//! Secret copies and JSON Patch out; skips and denials with the fix in the message.

mod common;
use common::{FakeCluster, obj};
use jfs_mountspec::GlobalConfig;
use jfs_webhook::inject::{Decision, InjectConfig, LABEL_DONE, decide};
use k8s_openapi::api::core::v1::{Pod, PodSpec, Secret, Volume};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn cfg(native: bool) -> InjectConfig {
    InjectConfig {
        global: GlobalConfig::default(),
        native,
        default_image: "example/mount:1".into(),
    }
}

fn pod(volumes: Value, containers: Value, init: Value) -> Pod {
    obj(json!({
        "metadata": {"name": "p", "namespace": "app", "labels": {"app": "x"}},
        "spec": {"volumes": volumes, "containers": containers, "initContainers": init}
    }))
}

fn app_pod() -> Pod {
    pod(
        json!([
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "ebs", "persistentVolumeClaim": {"claimName": "ebs"}},
            {"name": "cfg", "configMap": {"name": "c"}}
        ]),
        json!([{"name": "app", "image": "busybox", "volumeMounts": [
            {"name": "data", "mountPath": "/data", "subPath": "sub", "readOnly": true},
            {"name": "ebs", "mountPath": "/ebs"}]}]),
        json!([{"name": "prep", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]),
    )
}

fn volumes_by_name(spec: &PodSpec) -> BTreeMap<&str, &Volume> {
    spec.volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect()
}

fn mutate(p: &Pod, c: &FakeCluster, conf: &InjectConfig) -> (Pod, Vec<Secret>) {
    match decide(p, "app", c, conf, false) {
        Decision::Mutate { pod, secrets, .. } => (*pod, secrets),
        other => panic!("expected a mutation, got {other:?}"),
    }
}

#[test]
fn native_sidecar_is_the_first_init_container_and_the_patch_reproduces_it() {
    let c = FakeCluster::standard();
    let original = app_pod();
    let (m, secrets) = mutate(&original, &c, &cfg(true));
    let spec = m.spec.as_ref().unwrap();
    let init = spec.init_containers.as_ref().unwrap();
    assert_eq!(init[0].name, "jfs-mount");
    assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
    assert_eq!(init[1].name, "prep");
    assert_eq!(
        spec.containers.len(),
        1,
        "app containers untouched in number"
    );
    // The PVC volume became an emptyDir; the other volumes stayed.
    let vols = volumes_by_name(spec);
    assert!(vols["data"].empty_dir.is_some() && vols["data"].persistent_volume_claim.is_none());
    assert!(vols["ebs"].persistent_volume_claim.is_some());
    assert!(vols["cfg"].config_map.is_some());
    // App and init containers see later mounts; subPath and readOnly kept.
    let app_mount = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        app_mount.mount_propagation.as_deref(),
        Some("HostToContainer")
    );
    assert_eq!(
        (app_mount.sub_path.as_deref(), app_mount.read_only),
        (Some("sub"), Some(true))
    );
    assert!(
        spec.containers[0].volume_mounts.as_ref().unwrap()[1]
            .mount_propagation
            .is_none(),
        "ebs untouched"
    );
    assert_eq!(
        init[1].volume_mounts.as_ref().unwrap()[0]
            .mount_propagation
            .as_deref(),
        Some("HostToContainer")
    );
    let side = &init[0].volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        (side.name.as_str(), side.mount_propagation.as_deref()),
        ("data", Some("Bidirectional"))
    );
    assert_eq!(side.mount_path, "/jfs/uid-data");
    assert_eq!(m.metadata.labels.as_ref().unwrap()[LABEL_DONE], "true");
    // The Secret copy lives in the pod's namespace, owned by the PVC.
    assert_eq!(secrets.len(), 1);
    let s = &secrets[0];
    assert_eq!(s.metadata.name.as_deref(), Some("data-jfs-secret"));
    assert_eq!(s.metadata.namespace.as_deref(), Some("app"));
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("PersistentVolumeClaim", "data", "uid-data")
    );
    assert_eq!(
        s.data.as_ref().unwrap()["metaurl"].0,
        b"redis://:pw@redis:6379/1"
    );
    // No credential in the pod.
    let text = serde_json::to_string(&m).unwrap();
    assert!(!text.contains(":pw@") && !text.contains("\"SK\""));
    // The JSON Patch turns the submitted pod into the mutated one.
    let patch = jfs_webhook::json_patch(&original, &m).unwrap();
    let mut doc = serde_json::to_value(&original).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    assert_eq!(doc, serde_json::to_value(&m).unwrap());
}

#[test]
fn classic_sidecar_goes_first_after_a_mesh_proxy() {
    let c = FakeCluster::standard();
    let p = pod(
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
        json!([{"name": "istio-proxy", "image": "istio"}, {"name": "app", "image": "busybox",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]),
        json!([]),
    );
    let (m, _) = mutate(&p, &c, &cfg(false));
    let names: Vec<&str> = m
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["istio-proxy", "jfs-mount", "app"]);
    let side = &m.spec.as_ref().unwrap().containers[1];
    assert!(side.restart_policy.is_none());
    assert!(side.lifecycle.as_ref().unwrap().post_start.is_some());
}

#[test]
fn two_volumes_get_two_containers_with_distinct_ports() {
    let c = FakeCluster::standard();
    let p = pod(
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
               {"name": "models", "persistentVolumeClaim": {"claimName": "models"}}]),
        json!([{"name": "app", "image": "busybox", "volumeMounts": [
            {"name": "data", "mountPath": "/data"}, {"name": "models", "mountPath": "/models"}]}]),
        json!([]),
    );
    let (m, secrets) = mutate(&p, &c, &cfg(true));
    let init = m.spec.as_ref().unwrap().init_containers.clone().unwrap();
    let summary: Vec<(String, i32, String)> = init
        .iter()
        .map(|c| {
            let port = &c.ports.as_ref().unwrap()[0];
            (
                c.name.clone(),
                port.container_port,
                port.name.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("jfs-mount".to_string(), 9567, "metrics".to_string()),
            ("jfs-mount-1".into(), 9568, "metrics-1".into())
        ]
    );
    let script = init[1].command.as_ref().unwrap()[2].clone();
    assert!(
        script.contains("metrics=0.0.0.0:9568") && script.contains("cache-size=1024"),
        "{script}"
    );
    assert_eq!(secrets.len(), 2);
}

#[test]
fn skips() {
    let c = FakeCluster::standard();
    let mut p = app_pod();
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(LABEL_DONE.into(), "true".into());
    assert!(
        matches!(decide(&p, "app", &c, &cfg(true), false), Decision::Skip(r) if r.contains("already done"))
    );
    let mut p = app_pod();
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("disable.sidecar.juicefs.com/inject".into(), "true".into());
    assert!(
        matches!(decide(&p, "app", &c, &cfg(true), false), Decision::Skip(r) if r.contains("disabled"))
    );
    let p = pod(
        json!([{"name": "ebs", "persistentVolumeClaim": {"claimName": "ebs"}}]),
        json!([{"name": "a"}]),
        json!([]),
    );
    assert!(
        matches!(decide(&p, "app", &c, &cfg(true), false), Decision::Skip(r) if r.contains("no JuiceFS volume"))
    );
}

fn deny(c: &FakeCluster, p: &Pod) -> String {
    match decide(p, "app", c, &cfg(true), false) {
        Decision::Deny(m) => m,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn denials_carry_the_fix() {
    let one = |claim: &str| {
        pod(
            json!([{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]),
            json!([{"name": "a"}]),
            json!([]),
        )
    };
    let mut c = FakeCluster::standard();
    c.pvcs.insert(
        ("app".into(), "pending".into()),
        obj(json!({"metadata": {"name": "pending"}, "spec": {"storageClassName": "jfs"}})),
    );
    assert!(deny(&c, &one("pending")).contains("volumeBindingMode: Immediate"));
    assert!(deny(&c, &one("nope")).contains("PVC app/nope not found"));
    c.juicefs_pvc("noref", json!({}), false);
    assert!(deny(&c, &one("noref")).contains("nodePublishSecretRef"));
    c.juicefs_pvc("badopts", json!({"mountOptions": "debug foreground"}), true);
    assert!(deny(&c, &one("badopts")).contains("comma-separated: debug,foreground"));
    c.juicefs_pvc("small", json!({"subPath": "pvc-small"}), true);
    c.pvcs
        .get_mut(&("app".into(), "small".into()))
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .resources = Some(obj(json!({"requests": {"storage": "100Mi"}})));
    assert!(deny(&c, &one("small")).contains("at least 1Gi"));
    c.secrets.insert(
        ("kube-system".into(), "jfs-secret".into()),
        obj(json!({"metadata": {"name": "jfs-secret", "namespace": "kube-system"}, "stringData": {"name": "x"}})),
    );
    let m = deny(&c, &one("data"));
    assert!(
        m.contains("\"metaurl\"") && m.contains("kube-system/jfs-secret"),
        "{m}"
    );
    c.secrets.clear();
    assert!(deny(&c, &one("data")).contains("Secret kube-system/jfs-secret"));
}

#[test]
fn a_sidecar_stripped_by_another_webhook_is_reported() {
    let c = FakeCluster::standard();
    let (mut m, _) = mutate(&app_pod(), &c, &cfg(true));
    // Reinvocation with the pod as an old webhook left it.
    assert!(matches!(
        decide(&m, "app", &c, &cfg(true), false),
        Decision::Skip(_)
    ));
    m.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].restart_policy = None;
    let msg = deny(&c, &m);
    assert!(
        msg.contains("lost restartPolicy: Always") && msg.contains("enableNativeSidecar: false"),
        "{msg}"
    );
}

/// The volume context's host paths and cache PVCs and the Secret's `configs` become volumes
/// of the pod, mounted into the sidecar; keys a sidecar cannot honour come back as admission
/// warnings (kubectl prints them), and what the serverless path cannot do is denied.
#[test]
fn extra_volumes_join_the_pod_and_ignored_settings_warn() {
    let mut c = FakeCluster::standard();
    c.juicefs_pvc(
        "extra",
        json!({"juicefs/host-path": "/data/models", "juicefs/mount-service-account": "irsa",
               "juicefs/mount-cache-pvc": "cache"}),
        true,
    );
    let secret = c
        .secrets
        .get_mut(&("kube-system".into(), "jfs-secret".into()))
        .unwrap();
    let data = secret.string_data.as_mut().unwrap();
    data.insert("configs".into(), "{jfs-conf: /etc/jfs}".into());
    data.insert("bucket2".into(), "http://mirror-b2/x".into());
    let p = pod(
        json!([{"name": "v", "persistentVolumeClaim": {"claimName": "extra"}}]),
        json!([{"name": "a", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]),
        json!([]),
    );
    let Decision::Mutate {
        pod: m, warnings, ..
    } = decide(&p, "app", &c, &cfg(true), false)
    else {
        panic!("expected a mutation");
    };
    let spec = m.spec.as_ref().unwrap();
    let vols = volumes_by_name(spec);
    assert_eq!(
        vols["jfs-mount-hostpath-0"]
            .host_path
            .as_ref()
            .unwrap()
            .path,
        "/data/models"
    );
    assert_eq!(
        vols["jfs-mount-config-0"]
            .secret
            .as_ref()
            .unwrap()
            .secret_name
            .as_deref(),
        Some("jfs-conf")
    );
    assert_eq!(
        vols["jfs-mount-cachedir-0"]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "cache"
    );
    let mounts: BTreeMap<_, _> = spec.init_containers.as_ref().unwrap()[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(mounts["jfs-mount-hostpath-0"], "/data/models");
    assert_eq!(mounts["jfs-mount-config-0"], "/etc/jfs");
    assert_eq!(mounts["jfs-mount-cachedir-0"], "/var/jfsCache-0");
    assert_eq!(spec.service_account_name, None, "the app pod keeps its own");
    let w = warnings.join("\n");
    assert!(w.contains("key \"bucket2\" is ignored"), "{w}");
    assert!(
        w.contains("juicefs/mount-service-account \"irsa\" is ignored"),
        "{w}"
    );
    assert!(
        !w.contains("mirror-b2"),
        "a Secret value leaked into a warning: {w}"
    );

    // The review carries the warnings to the user.
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "operation": "CREATE", "namespace": "app", "object": p}});
    let out =
        jfs_webhook::review::handle(review.to_string().as_bytes(), &c, &cfg(true), false).unwrap();
    let sent = out.response["response"]["warnings"].as_array().unwrap();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(
        w.contains(
            "Secret app/jfs-conf (in configs of Secret kube-system/jfs-secret) was not found"
        ),
        "{w}"
    );

    // Once the configs Secret exists in the pod's namespace, that warning goes.
    c.secrets.insert(
        ("app".into(), "jfs-conf".into()),
        obj(json!({"metadata": {"name": "jfs-conf", "namespace": "app"}})),
    );
    let Decision::Mutate { warnings, .. } = decide(&p, "app", &c, &cfg(true), false) else {
        panic!("expected a mutation");
    };
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(!warnings.join("\n").contains("jfs-conf"), "{warnings:?}");

    match decide(&p, "app", &c, &cfg(true), true) {
        Decision::Deny(m) => assert!(
            m.contains("juicefs/host-path") && m.contains("serverless"),
            "{m}"
        ),
        other => panic!("expected a denial on the serverless path, got {other:?}"),
    }
}

#[test]
fn a_patch_volume_may_not_take_the_name_of_a_pod_volume() {
    let c = FakeCluster::standard();
    let mut conf = cfg(true);
    conf.global =
        GlobalConfig::parse("mountPodPatch:\n  - volumes: [{name: cfg, emptyDir: {}}]\n").unwrap();
    let m = match decide(&app_pod(), "app", &c, &conf, false) {
        Decision::Deny(m) => m,
        other => panic!("expected a denial, got {other:?}"),
    };
    assert!(
        m.contains("\"cfg\"") && m.contains("rename it in the patch"),
        "{m}"
    );
}
