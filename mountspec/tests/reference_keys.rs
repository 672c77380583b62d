//! Every user Secret key and volume-context key of the JuiceFS CSI driver's reference tables,
//! and every `mountPodPatch` field: what each one does to the built container or Mount Pod,
//! and the settings hash moving with each of them.

use jfs_mountspec::GlobalConfig;
use jfs_mountspec::container::{Placement, mount_container, script, secret_copy_data};
use jfs_mountspec::pod::mount_pod;
use jfs_mountspec::volumes::attach_volumes;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use serde_json::json;
use std::collections::BTreeMap;

mod common;
use common::*;

fn with_keys(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    let mut d = secret();
    for (k, v) in pairs {
        d.insert(k.to_string(), v.as_bytes().to_vec());
    }
    d
}

fn resolve_secret(pairs: &[(&str, &str)]) -> Result<jfs_mountspec::MountSetting, String> {
    resolve_data(&with_keys(pairs))
}

fn resolve_data(d: &BTreeMap<String, Vec<u8>>) -> Result<jfs_mountspec::MountSetting, String> {
    setting_with(
        d,
        &pv(json!({}), json!({})),
        &pvc(json!({})),
        &GlobalConfig::default(),
    )
    .map_err(|e| e.to_string())
}

fn resolve_attrs(attrs: serde_json::Value) -> Result<jfs_mountspec::MountSetting, String> {
    setting_with(
        &secret(),
        &pv(attrs, json!({})),
        &pvc(json!({})),
        &GlobalConfig::default(),
    )
    .map_err(|e| e.to_string())
}

/// The sidecar and its pod volumes, as the webhook builds them.
fn sidecar(s: &jfs_mountspec::MountSetting) -> (Container, Vec<Volume>) {
    let p = params(Placement::NativeSidecar);
    let mut c = mount_container(s, &p);
    let v = attach_volumes(s, p.placement, "jfs-mount-", &mut c);
    (c, v)
}

fn pod_of(s: &jfs_mountspec::MountSetting) -> Pod {
    mount_pod(s, &pod_params("juicefs-pv-data-secret"))
}

fn mount_at<'a>(c: &'a Container, path: &str) -> Option<&'a str> {
    c.volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == path)
        .map(|m| m.name.as_str())
}

fn volume<'a>(vols: &'a [Volume], name: &str) -> &'a Volume {
    vols.iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name} in {vols:?}"))
}

#[test]
fn legacy_key_spellings_read_like_the_current_ones() {
    let mut d = secret();
    let ak = d.remove("access-key").unwrap();
    let sk = d.remove("secret-key").unwrap();
    d.insert("accesskey".into(), ak.clone());
    d.insert("secretkey".into(), sk.clone());
    let s = resolve_data(&d).unwrap();
    assert!(s.secret.has_access_key && s.secret.has_secret_key);
    let copy = secret_copy_data(&d);
    assert_eq!((&copy["access-key"], &copy["secret-key"]), (&ak, &sk));
    let names: Vec<String> = mount_container(&s, &params(Placement::MountPod))
        .env
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&"ACCESS_KEY".into()) && names.contains(&"SECRET_KEY".into()));
}

#[test]
fn format_keys_become_format_flags() {
    let s = resolve_secret(&[
        ("block-size", "4096"),
        ("compress", "zstd"),
        ("trash-days", "2"),
        ("capacity", "100"),
        ("inodes", "5000"),
        ("shards", "0"),
    ])
    .unwrap();
    let sc = script(&s, &params(Placement::NativeSidecar));
    let format = sc.lines().nth(1).unwrap();
    for flag in [
        "'--block-size=4096'",
        "'--compress=zstd'",
        "'--trash-days=2'",
        "'--capacity=100'",
        "'--inodes=5000'",
    ] {
        assert!(format.contains(flag), "{flag} missing from {format}");
    }
    assert!(!format.contains("shards"), "shards=0 is the default");
    // Without storage and bucket the volume exists already: no format at all.
    let mut d = secret();
    d.remove("storage");
    d.remove("bucket");
    let s = resolve_data(&d).unwrap();
    assert!(!script(&s, &params(Placement::MountPod)).contains("juicefs format"));
}

#[test]
fn what_the_client_cannot_do_is_refused_with_the_reason() {
    for (pairs, want) in [
        (
            vec![("shards", "4")],
            "\"shards\" is \"4\": sharded buckets are not supported",
        ),
        (
            vec![("encrypt_rsa_key", "-----BEGIN RSA PRIVATE KEY-----")],
            "\"encrypt_rsa_key\": data encryption is not supported",
        ),
        (
            vec![("format-options", "session-token=abc")],
            "session-token is not supported",
        ),
    ] {
        let e = resolve_secret(&pairs).unwrap_err();
        assert!(e.contains(want) && e.contains("team/jfs-secret"), "{e}");
        assert!(!e.contains("BEGIN RSA") && !e.contains("abc"), "{e}");
    }
}

#[test]
fn enterprise_only_keys_are_reported_not_used() {
    let keys = [
        ("token", "t0ken-value"),
        ("bucket2", "http://replica/b2"),
        ("access-key2", "AK2-value"),
        ("secretkey2", "SK2-value"),
        ("passphrase", "pass-value"),
        ("initconfig", "init-value"),
        ("subdir", "/team-a"),
    ];
    let s = resolve_secret(&keys).unwrap();
    let warnings = s.secret.warnings.join("\n");
    for (k, v) in keys {
        let k = if k == "secretkey2" { "secret-key2" } else { k };
        assert!(
            warnings.contains(&format!("key {k:?} is ignored")),
            "{k}: {warnings}"
        );
        assert!(!warnings.contains(v), "the value of {k} leaked: {warnings}");
    }
    assert!(warnings.contains("mount option subdir=PATH"));
    let (c, _) = sidecar(&s);
    let spec = serde_json::to_string(&c).unwrap();
    for (k, v) in keys {
        assert!(!spec.contains(v), "{k} reached the container: {spec}");
    }
    assert_eq!(s.option("subdir"), None);
    assert!(resolve_secret(&[]).unwrap().secret.warnings.is_empty());
}

#[test]
fn configs_mount_whole_secrets_read_only() {
    let s = resolve_secret(&[(
        "configs",
        "{gcs-key: /root/.config/gcloud, ca-bundle: /etc/ssl/jfs}",
    )])
    .unwrap();
    let (c, vols) = sidecar(&s);
    // Named by Secret in sorted order, so every build names them alike.
    for (i, (secret, path)) in [
        ("ca-bundle", "/etc/ssl/jfs"),
        ("gcs-key", "/root/.config/gcloud"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("jfs-mount-config-{i}");
        assert_eq!(mount_at(&c, path), Some(name.as_str()));
        let v = volume(&vols, &name);
        assert_eq!(
            v.secret.as_ref().unwrap().secret_name.as_deref(),
            Some(secret)
        );
    }
    assert!(
        c.volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.name.contains("config-"))
            .all(|m| m.read_only == Some(true))
    );
    let p = pod_of(&s);
    let vols = p.spec.unwrap().volumes.unwrap();
    assert!(
        vols.iter()
            .any(|v| v.name == "config-0" && v.secret.is_some())
    );
    for (bad, want) in [
        ("{gcs: etc/gcloud}", "must be an absolute path"),
        (
            "{gcs: /etc/../root}",
            "must be an absolute path without '..'",
        ),
        ("{Bad_Name: /etc/x}", "is not a Secret name"),
        ("[a, b]", "must be a map"),
    ] {
        let e = resolve_secret(&[("configs", bad)]).unwrap_err();
        assert!(e.contains("configs") && e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn keys_for_the_provisioner_and_the_kubelet_change_nothing_mounted() {
    let base = base();
    for attrs in [
        json!({"pathPattern": "${.pvc.namespace}-${.pvc.name}"}),
        json!({"secretFinalizer": "true"}),
        json!({"juicefs/controller-quota-set": "true"}),
        json!({"csi.storage.k8s.io/pod.name": "web-0", "csi.storage.k8s.io/pod.namespace": "team"}),
    ] {
        let s = resolve_attrs(attrs.clone()).unwrap();
        assert_eq!(s.hash(), base.hash(), "{attrs}");
        assert_eq!(
            mount_container(&s, &params(Placement::MountPod)),
            mount_container(&base, &params(Placement::MountPod))
        );
    }
}

#[test]
fn capacity_comes_from_the_claim_else_the_volume_context() {
    assert_eq!(base().capacity, Some(10 << 30));
    let unclaimed: k8s_openapi::api::core::v1::PersistentVolumeClaim = Default::default();
    let s = setting_with(
        &secret(),
        &pv(json!({"capacity": "2147483648"}), json!({})),
        &unclaimed,
        &GlobalConfig::default(),
    )
    .unwrap();
    assert_eq!(s.capacity, Some(2 << 30));
    let e = setting_with(
        &secret(),
        &pv(json!({"capacity": "2Gi"}), json!({})),
        &unclaimed,
        &GlobalConfig::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("\"2Gi\" is not a number of bytes"),
        "{e}"
    );
}

#[test]
fn each_resource_key_sets_its_own_value() {
    for (key, limit, res, v) in [
        ("juicefs/mount-cpu-request", false, "cpu", "250m"),
        ("juicefs/mount-memory-request", false, "memory", "512Mi"),
        ("juicefs/mount-cpu-limit", true, "cpu", "3"),
        ("juicefs/mount-memory-limit", true, "memory", "3Gi"),
    ] {
        for s in [
            resolve_attrs(json!({ key: v })).unwrap(),
            setting_with(
                &secret(),
                &pv(json!({}), json!({})),
                &pvc(json!({ key: v })),
                &GlobalConfig::default(),
            )
            .unwrap(),
        ] {
            let r = &s.resources;
            let (set, other) = if limit {
                (&r.limits, &r.requests)
            } else {
                (&r.requests, &r.limits)
            };
            assert_eq!(set.as_ref().unwrap()[res].0, v, "{key}");
            let default = if limit { ["1", "1Gi"] } else { ["5", "5Gi"] };
            let o = other.as_ref().unwrap();
            assert_eq!(
                [o["cpu"].0.as_str(), o["memory"].0.as_str()],
                default,
                "{key}"
            );
        }
    }
}

#[test]
fn the_mount_service_account_is_the_mount_pods() {
    let s = resolve_attrs(json!({"juicefs/mount-service-account": "jfs-s3-irsa"})).unwrap();
    assert_eq!(s.service_account.as_deref(), Some("jfs-s3-irsa"));
    let p = pod_of(&s);
    assert_eq!(
        p.spec.unwrap().service_account_name.as_deref(),
        Some("jfs-s3-irsa")
    );
    assert_eq!(pod_of(&base()).spec.unwrap().service_account_name, None);
}

#[test]
fn host_paths_mount_at_the_same_path_and_never_on_serverless() {
    let attrs = json!({"juicefs/host-path": "/data/models, /etc/localtime,"});
    let s = resolve_attrs(attrs.clone()).unwrap();
    assert_eq!(s.host_paths, ["/data/models", "/etc/localtime"]);
    for (c, vols, prefix) in [
        {
            let (c, v) = sidecar(&s);
            (c, v, "jfs-mount-")
        },
        {
            let spec = pod_of(&s).spec.unwrap();
            (spec.containers[0].clone(), spec.volumes.unwrap(), "")
        },
    ] {
        for (i, path) in ["/data/models", "/etc/localtime"].into_iter().enumerate() {
            let name = format!("{prefix}hostpath-{i}");
            assert_eq!(mount_at(&c, path), Some(name.as_str()));
            assert_eq!(volume(&vols, &name).host_path.as_ref().unwrap().path, path);
        }
    }
    let e = resolve_with(
        &secret(),
        &pv(attrs, json!({})),
        &pvc(json!({})),
        &GlobalConfig::default(),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("juicefs/host-path") && e.contains("serverless"),
        "{e}"
    );
    for bad in ["data/models", "/data/../etc"] {
        let e = resolve_attrs(json!({"juicefs/host-path": bad})).unwrap_err();
        assert!(e.contains("must be an absolute path"), "{bad}: {e}");
    }
}

#[test]
fn cache_volumes_of_the_volume_context_come_before_the_option_dirs() {
    let s = resolve_attrs(json!({
        "mountOptions": "cache-dir=/mnt/ssd:memory",
        "juicefs/mount-cache-pvc": "cache-a, ,cache-b",
        "juicefs/mount-cache-emptydir": "Memory:1Gi",
        "juicefs/mount-cache-inline-volume": r#"[{"driver": "local.csi.example.com", "volumeAttributes": {"size": "10Gi"}}]"#,
    }))
    .unwrap();
    assert_eq!(
        s.option("cache-dir").and_then(|o| o.value.as_deref()),
        Some(
            "/var/jfsCache-0:/var/jfsCache-2:/var/jfsCache-emptyDir:/var/jfsCache-inlineVolume-0:/mnt/ssd:memory"
        )
    );
    let spec = pod_of(&s).spec.unwrap();
    let c = &spec.containers[0];
    let vols = spec.volumes.unwrap();
    let at = |path: &str| volume(&vols, mount_at(c, path).unwrap()).clone();
    assert_eq!(
        at("/var/jfsCache-0")
            .persistent_volume_claim
            .unwrap()
            .claim_name,
        "cache-a"
    );
    assert_eq!(
        at("/var/jfsCache-2")
            .persistent_volume_claim
            .unwrap()
            .claim_name,
        "cache-b"
    );
    let e = at("/var/jfsCache-emptyDir").empty_dir.unwrap();
    assert_eq!(
        (e.medium.as_deref(), e.size_limit.map(|q| q.0)),
        (Some("Memory"), Some("1Gi".to_string()))
    );
    assert_eq!(
        at("/var/jfsCache-inlineVolume-0").csi.unwrap().driver,
        "local.csi.example.com"
    );
    assert_eq!(at("/mnt/ssd").host_path.unwrap().path, "/mnt/ssd");
    // On a sidecar the option's directory lives in the pod, the named volumes stay.
    let (c, vols) = sidecar(&s);
    let at = |path: &str| volume(&vols, mount_at(&c, path).unwrap()).clone();
    assert!(at("/mnt/ssd").empty_dir.is_some());
    assert!(at("/var/jfsCache-0").persistent_volume_claim.is_some());
    // No cache-dir option: only the named volumes, no default directory.
    let s = resolve_attrs(json!({"juicefs/mount-cache-emptydir": ":10Gi"})).unwrap();
    assert_eq!(
        s.option("cache-dir").and_then(|o| o.value.as_deref()),
        Some("/var/jfsCache-emptyDir")
    );
    for (attrs, want) in [
        (
            json!({"juicefs/mount-cache-emptydir": "Disk:1Gi"}),
            "medium \"Disk\" is not Memory",
        ),
        (
            json!({"juicefs/mount-cache-emptydir": "Memory:lots"}),
            "size \"lots\" is not a quantity",
        ),
        (
            json!({"juicefs/mount-cache-inline-volume": "{\"driver\": \"x\"}"}),
            "not a JSON list of CSI volume sources",
        ),
    ] {
        let e = resolve_attrs(attrs.clone()).unwrap_err();
        assert!(e.contains(want), "{attrs}: {e}");
    }
}

#[test]
fn a_cache_dirs_patch_replaces_the_volume_context_cache() {
    let cfg =
        GlobalConfig::parse("mountPodPatch:\n  - cacheDirs: [{type: PVC, name: fleet-cache}]\n")
            .unwrap();
    let s = setting_with(
        &secret(),
        &pv(json!({"juicefs/mount-cache-pvc": "mine"}), json!({})),
        &pvc(json!({})),
        &cfg,
    )
    .unwrap();
    assert_eq!(
        s.option("cache-dir").and_then(|o| o.value.as_deref()),
        Some("/var/jfsCache-0")
    );
    let spec = pod_of(&s).spec.unwrap();
    let vols = spec.volumes.unwrap();
    let v = volume(
        &vols,
        mount_at(&spec.containers[0], "/var/jfsCache-0").unwrap(),
    );
    assert_eq!(
        v.persistent_volume_claim.as_ref().unwrap().claim_name,
        "fleet-cache"
    );
}

const PATCH_FIELDS: &str = r#"
mountPodPatch:
  - pvcSelector: {matchName: data, matchExpressions: [{key: team, operator: In, values: [ml]}]}
    eeMountImage: example/ee:5
    imagePullPolicy: Always
    hostPID: true
    annotations: {juicefs-delete-delay: 10m, juicefs-clean-cache: "true", keep: me}
    livenessProbe: {exec: {command: [juicefs, probe, live]}, periodSeconds: 7}
    readinessProbe: {exec: {command: [juicefs, probe, ready]}}
    startupProbe: {exec: {command: [juicefs, probe, start]}, failureThreshold: 9}
    lifecycle: {preStop: {exec: {command: [sleep, "3"]}}}
    volumes: [{name: dev-fuse, hostPath: {path: /dev/fuse}}, {name: certs, secret: {secretName: ca}}]
    volumeDevices: [{name: dev-fuse, devicePath: /dev/fuse}]
    volumeMounts: [{name: certs, mountPath: /etc/ssl/ca}]
    env: [{name: GODEBUG, value: x509ignoreCN=0}]
"#;

#[test]
fn every_patch_field_reaches_the_container_or_pod() {
    let cfg = GlobalConfig::parse(PATCH_FIELDS).unwrap();
    let s = setting_with(&secret(), &pv(json!({}), json!({})), &pvc(json!({})), &cfg).unwrap();
    assert_eq!(
        s.image,
        jfs_mountspec::setting::DEFAULT_IMAGE,
        "eeMountImage is for Enterprise Edition volumes"
    );
    assert_eq!(s.delete_delay.as_deref(), Some("10m"));
    assert!(s.clean_cache);
    assert_eq!(
        s.annotations.keys().collect::<Vec<_>>(),
        ["keep"],
        "setting annotations are consumed"
    );
    for placement in [Placement::NativeSidecar, Placement::MountPod] {
        let c = mount_container(&s, &params(placement));
        assert_eq!(mount_at(&c, "/etc/ssl/ca"), Some("certs"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(c.liveness_probe.unwrap().period_seconds, Some(7));
        assert!(c.readiness_probe.is_some());
        assert_eq!(
            c.startup_probe.unwrap().failure_threshold,
            Some(9),
            "{placement:?}: the patch's startup probe replaces ours"
        );
        let stop = c.lifecycle.unwrap().pre_stop.unwrap();
        assert_eq!(stop.exec.unwrap().command.unwrap(), ["sleep", "3"]);
        assert_eq!(c.volume_devices.unwrap()[0].device_path, "/dev/fuse");
        let env = c.env.unwrap();
        let e = env.iter().find(|e| e.name == "GODEBUG").unwrap();
        assert_eq!(e.value.as_deref(), Some("x509ignoreCN=0"));
    }
    let p = pod_of(&s);
    assert_eq!(p.spec.as_ref().unwrap().host_pid, Some(true));
    let a = p.metadata.annotations.unwrap();
    assert_eq!(
        (
            a["juicefs-delete-delay"].as_str(),
            a["juicefs-clean-cache"].as_str(),
            a["keep"].as_str()
        ),
        ("10m", "true", "me")
    );
    assert!(
        p.spec
            .unwrap()
            .volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "dev-fuse")
    );

    // matchName and matchExpressions both must hold.
    let other_name: k8s_openapi::api::core::v1::PersistentVolumeClaim = {
        let mut c = pvc(json!({}));
        c.metadata.name = Some("logs".into());
        c
    };
    let other_team = {
        let mut c = pvc(json!({}));
        c.metadata.labels = Some([("team".to_string(), "web".to_string())].into());
        c
    };
    for claim in [other_name, other_team] {
        let s = setting_with(&secret(), &pv(json!({}), json!({})), &claim, &cfg).unwrap();
        assert_eq!(s.image_pull_policy, None);
        assert!(!s.clean_cache);
    }
}

/// Same inputs, same hash; each of these settings alone gives a hash of its own.
#[test]
fn the_hash_moves_with_every_setting() {
    let patch = |yaml: &str| -> GlobalConfig {
        GlobalConfig::parse(&format!("mountPodPatch:\n  - {yaml}\n")).unwrap()
    };
    let none = GlobalConfig::default();
    let mut variants: Vec<(String, jfs_mountspec::MountSetting)> = Vec::new();
    let mut add = |what: &str, r: Result<jfs_mountspec::MountSetting, jfs_mountspec::SpecError>| {
        variants.push((
            what.to_string(),
            r.unwrap_or_else(|e| panic!("{what}: {e}")),
        ));
    };
    add(
        "base",
        setting_with(&secret(), &pv(json!({}), json!({})), &pvc(json!({})), &none),
    );
    for (k, v) in [
        ("name", "other"),
        ("metaurl", "redis://other:6379/2"),
        ("storage", "minio"),
        ("bucket", "http://other/b"),
        ("access-key", "AK-rotated"),
        ("secret-key", "SK-rotated"),
        ("envs", "{TZ: UTC}"),
        ("configs", "{conf: /etc/conf}"),
        ("format-options", "hash-prefix"),
        ("block-size", "1024"),
        ("compress", "lz4"),
        ("trash-days", "7"),
        ("capacity", "50"),
        ("inodes", "99"),
        ("token", "ignored-but-in-the-secret"),
    ] {
        add(
            &format!("secret {k}"),
            setting_with(
                &with_keys(&[(k, v)]),
                &pv(json!({}), json!({})),
                &pvc(json!({})),
                &none,
            ),
        );
    }
    for attrs in [
        json!({"subPath": "pvc-1"}),
        json!({"mountOptions": "cache-size=1"}),
        json!({"juicefs/mount-image": "x/y:z"}),
        json!({"juicefs/mount-service-account": "sa"}),
        json!({"juicefs/mount-cpu-limit": "4"}),
        json!({"juicefs/mount-memory-limit": "4Gi"}),
        json!({"juicefs/mount-cpu-request": "2"}),
        json!({"juicefs/mount-memory-request": "2Gi"}),
        json!({"juicefs/mount-labels": "{a: b}"}),
        json!({"juicefs/mount-annotations": "{a: b}"}),
        json!({"juicefs/mount-delete-delay": "1m"}),
        json!({"juicefs/clean-cache": "true"}),
        json!({"juicefs/mount-cache-pvc": "c"}),
        json!({"juicefs/mount-cache-emptydir": "Memory"}),
        json!({"juicefs/mount-cache-inline-volume": "[{\"driver\": \"d\"}]"}),
        json!({"juicefs/host-path": "/data"}),
    ] {
        add(
            &format!("volume context {attrs}"),
            setting_with(
                &secret(),
                &pv(attrs.clone(), json!({})),
                &pvc(json!({})),
                &none,
            ),
        );
    }
    add(
        "ReadOnlyMany",
        setting_with(
            &secret(),
            &pv(
                json!({}),
                json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
            ),
            &pvc(json!({})),
            &none,
        ),
    );
    add(
        "PVC size",
        setting_with(
            &secret(),
            &pv(json!({}), json!({})),
            &{
                let mut c = pvc(json!({}));
                c.spec
                    .as_mut()
                    .unwrap()
                    .resources
                    .as_mut()
                    .unwrap()
                    .requests = Some(
                    [(
                        "storage".to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity("20Gi".into()),
                    )]
                    .into(),
                );
                c
            },
            &none,
        ),
    );
    add(
        "serverless",
        resolve_with(
            &secret(),
            &pv(json!({}), json!({})),
            &pvc(json!({})),
            &none,
            true,
        ),
    );
    for yaml in [
        "ceMountImage: a/b:c",
        "imagePullPolicy: Never",
        "labels: {a: b}",
        "annotations: {a: b}",
        "annotations: {juicefs-delete-delay: 5m}",
        "annotations: {juicefs-clean-cache: \"true\"}",
        "hostNetwork: true",
        "hostPID: true",
        "dnsPolicy: None",
        "dnsConfig: {nameservers: [1.1.1.1]}",
        "hostnameKey: podname",
        "livenessProbe: {periodSeconds: 3}",
        "readinessProbe: {periodSeconds: 3}",
        "startupProbe: {periodSeconds: 3}",
        "lifecycle: {preStop: {exec: {command: [x]}}}",
        "resources: {limits: {cpu: \"1\"}}",
        "terminationGracePeriodSeconds: 99",
        "volumes: [{name: v, emptyDir: {}}]",
        "volumes: [{name: v, emptyDir: {}}]\n    volumeMounts: [{name: v, mountPath: /v}]",
        "volumes: [{name: v, emptyDir: {}}]\n    volumeDevices: [{name: v, devicePath: /dev/v}]",
        "env: [{name: A, value: b}]",
        "initContainers: [{name: i, image: busybox}]",
        "mountOptions: [\"cache-size=7\"]",
        "cacheDirs: [{type: EmptyDir}]",
        "cacheDirs: [{type: PVC, name: other}]",
    ] {
        add(
            &format!("patch {yaml}"),
            setting_with(
                &secret(),
                &pv(json!({}), json!({})),
                &pvc(json!({})),
                &patch(yaml),
            ),
        );
    }
    let again = setting_with(&secret(), &pv(json!({}), json!({})), &pvc(json!({})), &none).unwrap();
    assert_eq!(again.hash(), variants[0].1.hash(), "same inputs, same hash");
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (what, s) in &variants {
        if let Some(first) = seen.insert(s.hash(), what.clone()) {
            panic!("{what} has the same hash as {first}");
        }
    }
    assert_eq!(seen.len(), variants.len());
}
