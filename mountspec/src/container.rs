//! The mount container built from a `MountSetting`: the `juicefs` client formatting (once)
//! and mounting the volume, credentials only through `secretKeyRef`, readiness probed the
//! way ARCHITECTURE §3.1 measured it, and a metrics port per container.

use crate::secret::{ENV_KEY_PREFIX, KEY_ACCESS_KEY, KEY_METAURL, KEY_SECRET_KEY};
use crate::setting::MountSetting;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, Lifecycle, LifecycleHandler, Probe,
    SecretKeySelector, SecurityContext, VolumeMount,
};
use std::collections::BTreeMap;

/// The env var the client reads its META-URL from (`juicefs mount env:metaurl ...`).
pub const META_ENV: &str = "metaurl";

/// Classic sidecars of pods that run to completion (Jobs) learn that the app has exited
/// from this pod annotation, which the webhook's app-exit watcher sets; the client reads it
/// through a downward-API volume, unmounts once nothing is open, and exits so the pod can
/// complete. No `pods/exec` is needed anywhere.
pub const ANNOTATION_APP_EXITED: &str = "juicefs.com/app-exited";
/// The label that marks such pods, so the watcher only watches them.
pub const LABEL_EXIT_ON_APP_EXIT: &str = "juicefs.com/exit-on-app-exit";
/// The downward-API volume holding the pod's annotations, and where the sidecar sees it.
pub const PODINFO_VOLUME: &str = "jfs-podinfo";
pub const PODINFO_DIR: &str = "/etc/jfs-podinfo";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// An init container with `restartPolicy: Always` (Kubernetes >= 1.29).
    NativeSidecar,
    /// A regular first container, held back by `postStart` until the mount is live.
    ClassicSidecar,
    /// The only container of a Mount Pod (CSI node path).
    MountPod,
}

#[derive(Clone, Debug)]
pub struct ContainerParams {
    pub name: String,
    /// Where the client mounts inside the container.
    pub mount_path: String,
    /// The volume (shared emptyDir for sidecars) mounted at `mount_path`.
    pub volume_name: String,
    /// The Secret the env refers to (the copy made by `secret_copy_data`).
    pub secret_name: String,
    pub metrics_port: u16,
    /// Unique within the pod, at most 15 characters.
    pub metrics_port_name: String,
    pub placement: Placement,
    /// The pod's termination grace period: the classic `preStop` waits inside it.
    pub grace_seconds: i64,
    /// Classic sidecar of a pod that runs to completion: exit when the app has exited
    /// (the pod must carry the [`PODINFO_VOLUME`] downward-API volume).
    pub exit_on_app_exit: bool,
}

/// What the Secret copy holds: only the values the container reads, under fixed keys.
pub fn secret_copy_data(original: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    let data = crate::secret::normalise(original);
    let mut out = BTreeMap::new();
    for key in [KEY_METAURL, KEY_ACCESS_KEY, KEY_SECRET_KEY] {
        if let Some(v) = data.get(key) {
            out.insert(key.to_string(), v.clone());
        }
    }
    let envs = data
        .get("envs")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    if let Ok(m) = crate::secret::string_map("envs", &envs) {
        for (k, v) in m {
            out.insert(format!("{ENV_KEY_PREFIX}{k}"), v.into_bytes());
        }
    }
    out
}

/// Single-quotes a value for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exec(cmd: &[&str]) -> ExecAction {
    ExecAction {
        command: Some(cmd.iter().map(|s| s.to_string()).collect()),
    }
}

/// The shell script the container runs: format once (when the Secret says how), then mount
/// in the foreground. Only non-secret values appear in it.
pub fn script(s: &MountSetting, p: &ContainerParams) -> String {
    let mut lines = vec!["set -e".to_string()];
    if s.secret.storage.is_some() || s.secret.bucket.is_some() {
        let mut f = vec!["juicefs format --no-update".to_string()];
        if let Some(st) = &s.secret.storage {
            f.push(format!("--storage {}", sh_quote(st)));
        }
        if let Some(b) = &s.secret.bucket {
            f.push(format!("--bucket {}", sh_quote(b)));
        }
        f.extend(s.secret.format_options.iter().map(|o| sh_quote(o)));
        f.push(format!("env:{META_ENV}"));
        f.push(sh_quote(&s.secret.name));
        lines.push(f.join(" "));
    }
    let mut opts = vec![
        "allow_other".to_string(),
        format!("metrics=0.0.0.0:{}", p.metrics_port),
    ];
    if p.placement != Placement::MountPod {
        // Writes between a crash and the remount fail (EROFS) instead of vanishing.
        opts.push("ro-guard".to_string());
    }
    if p.exit_on_app_exit {
        opts.push(format!("pod-annotations={PODINFO_DIR}/annotations"));
    }
    opts.extend(
        s.options
            .iter()
            .filter(|o| o.key != "allow_other")
            .map(ToString::to_string),
    );
    lines.push(format!(
        "exec juicefs mount env:{META_ENV} {} -o {}",
        sh_quote(&p.mount_path),
        sh_quote(&opts.join(","))
    ));
    lines.join("\n")
}

pub fn mount_container(s: &MountSetting, p: &ContainerParams) -> Container {
    let mut env = vec![secret_env(META_ENV, &p.secret_name, KEY_METAURL)];
    if s.secret.has_access_key {
        env.push(secret_env("ACCESS_KEY", &p.secret_name, KEY_ACCESS_KEY));
    }
    if s.secret.has_secret_key {
        env.push(secret_env("SECRET_KEY", &p.secret_name, KEY_SECRET_KEY));
    }
    for n in &s.secret.env_names {
        env.push(secret_env(
            n,
            &p.secret_name,
            &format!("{ENV_KEY_PREFIX}{n}"),
        ));
    }
    env.extend(s.patch.env.clone().unwrap_or_default());

    // Live = the top mount at the path is ours and the client answers (statfs is never
    // served from the kernel's cache); `/proc/mounts` alone lies after a crash.
    let probe_cmd = ["juicefs", "probe", p.mount_path.as_str()];
    let mut lifecycle = s.patch.lifecycle.clone();
    let mut startup = s.patch.startup_probe.clone();
    match p.placement {
        Placement::NativeSidecar => {
            startup.get_or_insert(Probe {
                exec: Some(exec(&probe_cmd)),
                period_seconds: Some(1),
                timeout_seconds: Some(3),
                failure_threshold: Some(60),
                ..Default::default()
            });
        }
        Placement::ClassicSidecar => {
            let l = lifecycle.get_or_insert_with(Lifecycle::default);
            l.post_start.get_or_insert(LifecycleHandler {
                exec: Some(exec(&[
                    "juicefs",
                    "probe",
                    "--wait",
                    "60",
                    p.mount_path.as_str(),
                ])),
                ..Default::default()
            });
            // Containers stop in no order: wait for the app's files to close (bounded by the
            // grace period) before the client gets its SIGTERM and unmounts.
            let timeout = (p.grace_seconds - 5).max(1).to_string();
            l.pre_stop.get_or_insert(LifecycleHandler {
                exec: Some(exec(&[
                    "juicefs",
                    "drain",
                    p.mount_path.as_str(),
                    "--timeout",
                    &timeout,
                ])),
                ..Default::default()
            });
        }
        Placement::MountPod => {}
    }

    // A sidecar's volume is the mount point itself; a Mount Pod gets the host's mount
    // directory at the parent (`/jfs`) and mounts in a subdirectory of it.
    let volume_path = match p.placement {
        Placement::MountPod => std::path::Path::new(&p.mount_path)
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/jfs".into()),
        _ => p.mount_path.clone(),
    };
    let mut mounts = vec![VolumeMount {
        name: p.volume_name.clone(),
        mount_path: volume_path,
        mount_propagation: Some("Bidirectional".into()),
        ..Default::default()
    }];
    if p.exit_on_app_exit {
        mounts.push(VolumeMount {
            name: PODINFO_VOLUME.into(),
            mount_path: PODINFO_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    mounts.extend(s.patch.volume_mounts.clone().unwrap_or_default());

    Container {
        name: p.name.clone(),
        image: Some(s.image.clone()),
        image_pull_policy: s.image_pull_policy.clone(),
        command: Some(vec!["sh".into(), "-c".into(), script(s, p)]),
        env: Some(env),
        resources: Some(s.resources.clone()),
        ports: Some(vec![ContainerPort {
            name: Some(p.metrics_port_name.clone()),
            container_port: p.metrics_port as i32,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        volume_mounts: Some(mounts),
        volume_devices: s.patch.volume_devices.clone(),
        // Bidirectional propagation (the mount must reach the app) requires privileged.
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }),
        startup_probe: startup,
        liveness_probe: s.patch.liveness_probe.clone(),
        readiness_probe: s.patch.readiness_probe.clone(),
        lifecycle,
        restart_policy: (p.placement == Placement::NativeSidecar).then(|| "Always".to_string()),
        ..Default::default()
    }
}
