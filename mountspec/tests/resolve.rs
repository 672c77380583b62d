//! Settings resolution, hash stability and the built container, from realistic objects.

use jfs_mountspec::GlobalConfig;
use jfs_mountspec::container::{Placement, mount_container, script, secret_copy_data};
use jfs_mountspec::setting::quantity_bytes;
use serde_json::json;

mod common;
use common::*;

#[test]
fn volume_context_annotations_and_patches_resolve_in_order() {
    let attrs = json!({
        "mountOptions": "buffer-size=300,subdir=/base",
        "subPath": "pvc-123",
        "juicefs/mount-image": "example/mount:pv",
        "juicefs/mount-cpu-limit": "3",
        "juicefs/mount-memory-request": "0",
        "juicefs/mount-labels": "{app: jfs}",
        "juicefs/mount-annotations": "{\"note\": \"x\"}",
        "juicefs/mount-delete-delay": "1h30m",
        "juicefs/clean-cache": "true"
    });
    let claim = pvc(json!({
        "juicefs/mount-memory-limit": "6Gi",
        "juicefs/mount-image": "attacker/image:latest"
    }));
    let cfg = GlobalConfig::parse(
        "mountPodPatch:\n  - pvcSelector: {matchLabels: {team: ml}}\n    mountOptions: [\"cache-size=4096\"]\n    labels: {patched: \"yes\"}\n",
    )
    .unwrap();
    let s = setting_with(&secret(), &pv(attrs, json!({})), &claim, &cfg).unwrap();
    assert_eq!(
        s.image, "example/mount:pv",
        "PVC annotations may not pick the image"
    );
    let opts: Vec<String> = s.options.iter().map(ToString::to_string).collect();
    assert_eq!(
        opts,
        [
            "allow_other",
            "buffer-size=300",
            "subdir=/base/pvc-123",
            "cache-size=4096"
        ]
    );
    let r = &s.resources;
    assert_eq!(r.limits.as_ref().unwrap()["cpu"].0, "3");
    assert_eq!(
        r.limits.as_ref().unwrap()["memory"].0,
        "6Gi",
        "PVC resource annotations apply"
    );
    assert!(
        !r.requests.as_ref().unwrap().contains_key("memory"),
        "0 means no request"
    );
    assert_eq!(r.requests.as_ref().unwrap()["cpu"].0, "1");
    assert_eq!(s.labels["app"], "jfs");
    assert_eq!(s.labels["patched"], "yes");
    assert_eq!(s.annotations["note"], "x");
    assert_eq!(s.delete_delay.as_deref(), Some("1h30m"));
    assert!(s.clean_cache);
    assert_eq!(s.capacity, Some(10 << 30));
    assert!(!s.read_only);
}

#[test]
fn read_only_many_mounts_read_only() {
    let p = pv(
        json!({}),
        json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
    );
    let s = setting_with(&secret(), &p, &pvc(json!({})), &GlobalConfig::default()).unwrap();
    assert!(s.read_only);
    assert!(s.option("ro").is_some());
}

#[test]
fn bad_settings_are_refused_with_the_fix() {
    let e = |attrs: serde_json::Value| {
        setting_with(
            &secret(),
            &pv(attrs, json!({})),
            &pvc(json!({})),
            &GlobalConfig::default(),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(
        e(json!({"mountOptions": "debug foreground"}))
            .contains("comma-separated: debug,foreground")
    );
    assert!(e(json!({"mountOptions": "metrics=0.0.0.0:1"})).contains("set by the driver"));
    assert!(e(json!({"juicefs/mount-cpu-limit": "lots"})).contains("not a quantity"));
    assert!(e(json!({"juicefs/mount-delete-delay": "soon"})).contains("not a duration"));
    assert!(e(json!({"subPath": "../../etc"})).contains("must not contain '..'"));
    assert!(e(json!({"juicefs/mount-labels": "[1]"})).contains("must be a map"));
    let not_ours = pv(
        json!({}),
        json!({"spec": {"csi": {"driver": "ebs.csi.aws.com"}}}),
    );
    let err = setting_with(
        &secret(),
        &not_ours,
        &pvc(json!({})),
        &GlobalConfig::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("is not a csi.juicefs.com volume"));
}

#[test]
fn quantities() {
    assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
    assert_eq!(quantity_bytes("500M"), Some(500_000_000));
    assert_eq!(quantity_bytes("1.5Ki"), Some(1536));
    assert_eq!(quantity_bytes("100"), Some(100));
    assert_eq!(quantity_bytes("1e3"), Some(1000));
    assert_eq!(quantity_bytes("abc"), None);
}

#[test]
fn containers_carry_no_credentials_and_probe_the_mount() {
    let s = base();
    for placement in [
        Placement::NativeSidecar,
        Placement::ClassicSidecar,
        Placement::MountPod,
    ] {
        let c = mount_container(&s, &params(placement));
        let text = serde_json::to_string(&c).unwrap();
        for secret in ["s3cretpw", "AKIAEXAMPLE", "wJalrSECRETKEY", "Asia/Shanghai"] {
            assert!(
                !text.contains(secret),
                "{secret} leaked into the {placement:?} container"
            );
        }
        let env: Vec<(String, String)> = c
            .env
            .iter()
            .flatten()
            .map(|e| {
                let r = e
                    .value_from
                    .as_ref()
                    .unwrap()
                    .secret_key_ref
                    .as_ref()
                    .unwrap();
                (e.name.clone(), format!("{}/{}", r.name, r.key))
            })
            .collect();
        assert_eq!(
            env,
            [
                ("metaurl".to_string(), "data-jfs-secret/metaurl".to_string()),
                ("ACCESS_KEY".into(), "data-jfs-secret/access-key".into()),
                ("SECRET_KEY".into(), "data-jfs-secret/secret-key".into()),
                ("TZ".into(), "data-jfs-secret/envs.TZ".into()),
            ]
        );
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 9567);
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
        // A sidecar's volume is the mount point; a Mount Pod's is the host directory above it.
        let m = &c.volume_mounts.as_ref().unwrap()[0];
        let want = if placement == Placement::MountPod {
            "/jfs"
        } else {
            "/jfs/u-1"
        };
        assert_eq!(
            (m.mount_path.as_str(), m.mount_propagation.as_deref()),
            (want, Some("Bidirectional"))
        );
        match placement {
            Placement::NativeSidecar => {
                assert_eq!(c.restart_policy.as_deref(), Some("Always"));
                let p = c.startup_probe.as_ref().unwrap();
                assert_eq!(
                    p.exec.as_ref().unwrap().command.as_ref().unwrap(),
                    &["juicefs", "probe", "/jfs/u-1"]
                );
                assert_eq!((p.period_seconds, p.failure_threshold), (Some(1), Some(60)));
            }
            Placement::ClassicSidecar => {
                assert!(c.restart_policy.is_none());
                let ps = c.lifecycle.as_ref().unwrap().post_start.as_ref().unwrap();
                assert!(
                    ps.exec
                        .as_ref()
                        .unwrap()
                        .command
                        .as_ref()
                        .unwrap()
                        .contains(&"--wait".to_string())
                );
                let stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
                assert_eq!(
                    stop.exec.as_ref().unwrap().command.as_ref().unwrap(),
                    &["juicefs", "drain", "/jfs/u-1", "--timeout", "25"]
                );
            }
            Placement::MountPod => assert!(c.startup_probe.is_none() && c.lifecycle.is_none()),
        }
    }
    let sc = script(&s, &params(Placement::NativeSidecar));
    assert_eq!(
        sc,
        "set -e\njuicefs format --no-update --storage 's3' --bucket 'http://minio:9000/bkt' env:metaurl 'myjfs'\n\
         exec juicefs mount env:metaurl '/jfs/u-1' -o 'allow_other,metrics=0.0.0.0:9567,ro-guard,cache-size=2048'"
    );
}

#[test]
fn the_secret_copy_holds_what_the_env_reads() {
    let copy = secret_copy_data(&secret());
    let keys: Vec<&str> = copy.keys().map(String::as_str).collect();
    assert_eq!(keys, ["access-key", "envs.TZ", "metaurl", "secret-key"]);
    assert_eq!(copy["envs.TZ"], b"Asia/Shanghai");
}

#[test]
fn mount_pods_keep_the_go_driver_contract() {
    use jfs_mountspec::pod::mount_pod;
    let cfg = GlobalConfig::parse(
        "mountPodPatch:\n  - terminationGracePeriodSeconds: 45\n    hostNetwork: true\n    labels: {team: storage}\n",
    )
    .unwrap();
    let attrs = json!({"juicefs/mount-delete-delay": "5m", "juicefs/clean-cache": "true"});
    let s = setting_with(&secret(), &pv(attrs, json!({})), &pvc(json!({})), &cfg).unwrap();
    let p = mount_pod(&s, &pod_params("juicefs-pv-data-secret"));
    let m = &p.metadata;
    assert_eq!(m.name.as_deref(), Some("juicefs-node-1-pv-data-abcdef"));
    let labels = m.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/name"], "juicefs-mount");
    assert_eq!(labels["volume-id"], "pv-data");
    assert_eq!(labels["juicefs-hash"], s.hash());
    assert_eq!(labels["team"], "storage");
    let ann = m.annotations.as_ref().unwrap();
    assert_eq!(
        (
            ann["juicefs-delete-delay"].as_str(),
            ann["juicefs-clean-cache"].as_str()
        ),
        ("5m", "true")
    );
    assert_eq!(
        m.finalizers.as_deref(),
        Some(&["juicefs.com/finalizer".to_string()][..])
    );
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("node-1"));
    assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(spec.termination_grace_period_seconds, Some(45));
    assert_eq!(spec.host_network, Some(true));
    let host = spec.volumes.as_ref().unwrap()[0]
        .host_path
        .as_ref()
        .unwrap();
    assert_eq!(host.path, "/var/lib/juicefs/volume");
    let c = &spec.containers[0];
    let vm = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        (vm.mount_path.as_str(), vm.mount_propagation.as_deref()),
        ("/jfs", Some("Bidirectional"))
    );
    let script = &c.command.as_ref().unwrap()[2];
    assert!(
        script.contains("'/jfs/pv-data-abcdef'") && !script.contains("ro-guard"),
        "{script}"
    );
    assert!(c.restart_policy.is_none() && c.startup_probe.is_none());
    let text = serde_json::to_string(&p).unwrap();
    assert!(!text.contains("s3cretpw") && !text.contains("wJalrSECRETKEY"));
    // The default cache directory is kept on the node.
    let cache = &spec.volumes.as_ref().unwrap()[1];
    assert_eq!(cache.name, "cachedir-0");
    assert_eq!(cache.host_path.as_ref().unwrap().path, "/var/jfsCache");
    assert!(
        c.volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == "cachedir-0" && m.mount_path == "/var/jfsCache")
    );

    // Given cache directories become one hostPath each; `memory` none.
    let attrs = json!({"mountOptions": "cache-dir=/mnt/ssd1:memory:/mnt/ssd2"});
    let s = setting_with(&secret(), &pv(attrs, json!({})), &pvc(json!({})), &cfg).unwrap();
    assert_eq!(
        jfs_mountspec::cache::cache_dirs(&s),
        vec!["/mnt/ssd1".to_string(), "/mnt/ssd2".to_string()]
    );
    let p = mount_pod(&s, &pod_params("x"));
    let paths: Vec<String> = p
        .spec
        .unwrap()
        .volumes
        .unwrap()
        .iter()
        .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
        .collect();
    assert_eq!(
        paths,
        vec!["/var/lib/juicefs/volume", "/mnt/ssd1", "/mnt/ssd2"]
    );
}

#[test]
fn go_durations_parse_like_time_parse_duration() {
    use jfs_mountspec::setting::go_duration;
    use std::time::Duration;
    assert_eq!(go_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(go_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(go_duration("1.5m"), Some(Duration::from_secs(90)));
    assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
    for bad in ["", "5", "m", "5x", "-5s", "5 s"] {
        assert_eq!(go_duration(bad), None, "{bad:?}");
    }
}

/// A Go driver ConfigMap with the pod-level patch fields parses, and a Mount Pod carries
/// them: DNS policy and config, hostname key, init containers, and cache directories of
/// every type (the client's `cache-dir` follows the volumes). Sidecars keep their cache in
/// the pod (`emptyDir`), never on the host.
#[test]
fn pod_level_patch_fields_and_cache_dirs_reach_the_mount_pod() {
    use jfs_mountspec::pod::mount_pod;
    use jfs_mountspec::volumes::attach_volumes;
    let cfg = GlobalConfig::parse(
        r#"
mountPodPatch:
  - dnsPolicy: ClusterFirstWithHostNet
    dnsConfig: {nameservers: ["10.0.0.10"]}
    hostnameKey: podname
    initContainers:
      - {name: warm, image: busybox, command: ["true"]}
    cacheDirs:
      - {type: HostPath, path: /mnt/nvme}
      - {type: PVC, name: jfs-cache}
      - {type: EmptyDir, medium: Memory, sizeLimit: 1Gi}
      - {type: Ephemeral, storageClassName: fast, storage: 20Gi}
"#,
    )
    .unwrap();
    let s = setting_with(&secret(), &pv(json!({}), json!({})), &pvc(json!({})), &cfg).unwrap();
    assert_eq!(
        s.option("cache-dir")
            .and_then(|o| o.value.clone())
            .as_deref(),
        Some("/mnt/nvme:/var/jfsCache-1:/var/jfsCache-2:/var/jfsCache-3")
    );
    let p = mount_pod(&s, &pod_params("x"));
    let spec = p.spec.unwrap();
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_eq!(
        spec.dns_config.unwrap().nameservers,
        Some(vec!["10.0.0.10".to_string()])
    );
    assert_eq!(
        spec.hostname.as_deref(),
        Some("juicefs-node-1-pv-data-abcdef")
    );
    assert_eq!(spec.init_containers.unwrap()[0].name, "warm");
    let v = spec.volumes.unwrap();
    let by = |n: &str| v.iter().find(|x| x.name == n).unwrap().clone();
    assert_eq!(by("cachedir-0").host_path.unwrap().path, "/mnt/nvme");
    assert_eq!(
        by("cachedir-1").persistent_volume_claim.unwrap().claim_name,
        "jfs-cache"
    );
    assert_eq!(
        by("cachedir-2").empty_dir.unwrap().medium.as_deref(),
        Some("Memory")
    );
    let eph = by("cachedir-3")
        .ephemeral
        .unwrap()
        .volume_claim_template
        .unwrap()
        .spec;
    assert_eq!(eph.storage_class_name.as_deref(), Some("fast"));
    let mounts = spec.containers[0].volume_mounts.clone().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "cachedir-3" && m.mount_path == "/var/jfsCache-3")
    );

    // A sidecar on the serverless path: the host path becomes an emptyDir.
    let mut c = k8s_openapi::api::core::v1::Container::default();
    let serverless = resolve_with(
        &secret(),
        &pv(json!({}), json!({})),
        &pvc(json!({})),
        &cfg,
        true,
    )
    .unwrap();
    let vols = attach_volumes(&serverless, Placement::NativeSidecar, "jfs-mount-", &mut c);
    assert!(vols[0].host_path.is_none() && vols[0].empty_dir.is_some());
    let vols = attach_volumes(&s, Placement::NativeSidecar, "jfs-mount-", &mut c);
    assert!(vols[0].host_path.is_some());
    // Without a patch: the node for a Mount Pod, the pod for a sidecar.
    let plain = base();
    let mut c = k8s_openapi::api::core::v1::Container::default();
    let vols = attach_volumes(&plain, Placement::ClassicSidecar, "jfs-mount-", &mut c);
    let mounts = c.volume_mounts.clone().unwrap();
    assert_eq!(
        (vols[0].empty_dir.is_some(), mounts[0].mount_path.as_str()),
        (true, "/var/jfsCache")
    );
    let vols = attach_volumes(&plain, Placement::MountPod, "", &mut c);
    assert!(vols[0].host_path.is_some());
}

#[test]
fn pod_level_patch_fields_are_checked() {
    for (yaml, want) in [
        (
            "dnsPolicy: Cluster",
            "dnsPolicy \"Cluster\" is not ClusterFirst",
        ),
        (
            "hostnameKey: node",
            "hostnameKey \"node\" is not volumeid or podname",
        ),
        (
            "resourcePercentages: {requests: 10}",
            "resourcePercentages is not supported: set resources",
        ),
        (
            "cacheDirs: [{type: Ephemeral}]",
            "type Ephemeral needs storage",
        ),
        (
            "cacheDirs: [{type: Disk}]",
            "is not HostPath, PVC, EmptyDir or Ephemeral",
        ),
    ] {
        let e = GlobalConfig::parse(&format!("mountPodPatch:\n  - {yaml}\n")).unwrap_err();
        assert!(e.to_string().contains(want), "{yaml}: {e}");
    }
}
