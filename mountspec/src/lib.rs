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
//! - [`pod`]: the Mount Pod around that container (CSI node path).

pub mod cache;
pub mod config;
pub mod container;
pub mod options;
pub mod pod;
pub mod secret;
pub mod setting;

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

pub(crate) fn invalid(what: impl Into<String>, why: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        what: what.into(),
        why: why.into(),
    }
}
