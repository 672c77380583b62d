//! Kubelet target paths: which ones a node accepts, and the reference key each one gets on
//! its Mount Pod (the Go driver's format, so existing Mount Pods keep their counts).

use sha2::{Digest, Sha256};
use std::path::{Component, Path};

/// Why a path is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target path {0:?} must be absolute")]
    Relative(String),
    #[error("target path {0:?} must not contain '.' or '..' components")]
    Traversal(String),
    #[error("target path {path:?} is outside the kubelet pods directory {pods_dir}")]
    Outside { path: String, pods_dir: String },
}

/// Accepts `<kubelet_dir>/pods/<anything below>` with no `.`/`..` components.
pub fn validate(path: &str, kubelet_dir: &Path) -> Result<(), TargetError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(TargetError::Relative(path.into()));
    }
    // `Path::components` drops interior `.`; look at the raw text too.
    if path.split('/').any(|c| c == "." || c == "..")
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(TargetError::Traversal(path.into()));
    }
    let pods = kubelet_dir.join("pods");
    if !p.starts_with(&pods) || p == pods {
        return Err(TargetError::Outside {
            path: path.into(),
            pods_dir: pods.display().to_string(),
        });
    }
    Ok(())
}

/// The annotation key that records `target` as a reference on a Mount Pod: `juicefs-` and
/// the SHA-256 of the path in hex, 63 characters in all (a valid annotation name).
pub fn ref_key(target: &str) -> String {
    let hex: String = Sha256::digest(target.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("juicefs-{hex}").chars().take(63).collect()
}

/// References recorded in a pod's annotations: those whose key matches their value.
pub fn refs(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Vec<String> {
    annotations
        .into_iter()
        .flatten()
        .filter(|(k, v)| k.starts_with("juicefs-") && **k == ref_key(v))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The app pod's UID in `<kubelet>/pods/<uid>/volumes/...`.
pub fn pod_uid(target: &str, kubelet_dir: &Path) -> Option<String> {
    let rest = Path::new(target)
        .strip_prefix(kubelet_dir.join("pods"))
        .ok()?;
    rest.components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubelet_targets_only() {
        let k = Path::new("/var/lib/kubelet");
        let good = "/var/lib/kubelet/pods/8c1f/volumes/kubernetes.io~csi/pv-1/mount";
        assert_eq!(validate(good, k), Ok(()));
        assert!(matches!(
            validate("/etc/passwd", k),
            Err(TargetError::Outside { .. })
        ));
        assert!(matches!(
            validate("/var/lib/kubelet/pods", k),
            Err(TargetError::Outside { .. })
        ));
        assert!(matches!(
            validate("/var/lib/kubeletX/pods/a", k),
            Err(TargetError::Outside { .. })
        ));
        assert_eq!(
            validate("/var/lib/kubelet/pods/../../../etc", k),
            Err(TargetError::Traversal(
                "/var/lib/kubelet/pods/../../../etc".into()
            ))
        );
        assert!(matches!(
            validate("/var/lib/kubelet/pods/./a", k),
            Err(TargetError::Traversal(_))
        ));
        assert!(matches!(
            validate("var/lib/kubelet/pods/a", k),
            Err(TargetError::Relative(_))
        ));
        assert_eq!(pod_uid(good, k).as_deref(), Some("8c1f"));
    }

    #[test]
    fn reference_keys_are_63_characters_and_self_checking() {
        let t = "/var/lib/kubelet/pods/8c1f/volumes/kubernetes.io~csi/pv-1/mount";
        let k = ref_key(t);
        assert_eq!(k.len(), 63);
        assert!(k.starts_with("juicefs-"));
        assert_ne!(
            k,
            ref_key("/var/lib/kubelet/pods/other/volumes/kubernetes.io~csi/pv-1/mount")
        );
        let ann = [
            (k.clone(), t.to_string()),
            ("juicefs-hash".to_string(), "x".to_string()),
            (ref_key("/a"), "/b".to_string()),
        ]
        .into();
        assert_eq!(refs(Some(&ann)), vec![t.to_string()]);
    }
}
