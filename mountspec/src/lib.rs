//! Volume settings to a mount container: the one place where the JuiceFS client's
//! container (sidecar) and Mount Pod are built. Callers fetch the Kubernetes objects (user
//! Secret, PV, PVC, global ConfigMap) and pass them in; everything here is a pure function,
//! so the webhook and the CSI node make the same decisions and tests need no cluster.
//!
//! - [`secret`]: the user Secret's keys (`name`, `metaurl`, `storage`, `bucket`, ...).
//! - [`options`]: mount option parsing and validation.
//! - [`config`]: the global ConfigMap (`mountPodPatch` with PVC/node selectors).
//! - [`setting`]: everything resolved into one [`MountSetting`] and its hash.
//! - [`container`]: the container built from a setting.
//! - [`cache`]: the disk cache's volumes (node for Mount Pods, pod for sidecars).
//! - [`volumes`]: cache, host paths and config Secrets mounted into the container.
//! - [`pod`]: the Mount Pod around that container (CSI node path).

pub mod cache;
pub mod config;
pub mod container;
pub mod options;
pub mod pod;
pub mod secret;
pub mod setting;
pub mod volumes;

pub use config::GlobalConfig;
pub use container::{ContainerParams, Placement, mount_container, secret_copy_data};
pub use setting::{Inputs, MountSetting, resolve};

/// The CSI driver name: PVs with this driver are JuiceFS volumes.
pub const DRIVER_NAME: &str = "csi.juicefs.com";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A required key of the user Secret is missing or empty.
    #[error("Secret {secret}: key {key:?} is missing or empty{hint}")]
    MissingKey {
        secret: String,
        key: &'static str,
        hint: &'static str,
    },
    /// A value that does not parse; the message names the key and shows the expected form.
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
    /// A mount option given wrongly.
    #[error(transparent)]
    Option(#[from] options::OptionError),
    /// Something the Go driver offers that this system does not do.
    #[error("{0}")]
    Unsupported(String),
}

/// An absolute path without `..` (where a Secret or host directory is mounted).
pub(crate) fn check_abs_path(what: &str, path: &str) -> Result<(), SpecError> {
    if !path.starts_with('/') || path.split('/').any(|p| p == "..") {
        return Err(invalid(
            what,
            format!("{path:?} must be an absolute path without '..', e.g. /etc/juicefs"),
        ));
    }
    Ok(())
}

pub(crate) fn invalid(what: impl Into<String>, why: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        what: what.into(),
        why: why.into(),
    }
}
