//! The JuiceFS CSI driver: the Identity, Node and Controller services over the CSI unix
//! socket. The node runs the JuiceFS client in Mount Pods built by `mountspec` (the same
//! container as the sidecar), shared by reference count and re-bound when a client comes
//! back after a crash.
//!
//! - [`identity`]: plugin info and a readiness probe.
//! - [`node`]: publish/unpublish, volume stats; [`claim`]: the PVC behind a volume.
//! - [`mountpods`]: finding, creating, referencing and retiring Mount Pods.
//! - [`recovery`]: re-binding targets when a Mount Pod's client returns; finalizers.
//! - [`mounts`], [`target`]: mount table work and kubelet target paths.
//! - [`events`]: Kubernetes Events on app pods.

pub mod claim;
pub mod cleancache;
pub mod controller;
pub mod events;
pub mod identity;
pub mod lease;
pub mod mountpods;
pub mod mounts;
pub mod node;
pub mod orphans;
pub mod podlist;
pub mod ratelimit;
pub mod recovery;
pub mod server;
pub mod target;

#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("csi.v1");
}
