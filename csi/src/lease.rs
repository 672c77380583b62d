//! Leader election on a `coordination.k8s.io` Lease, for the controller's own background
//! work (the gRPC services are stateless and answer only their pod's sidecars, which elect
//! their own leader): a replica acts only while it holds the Lease, renewing it every third
//! of its duration; another takes over once it expires.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use std::time::Duration;

pub const LEASE_NAME: &str = "csi-controller.juicefs.com";

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// `Some(self)` when election is wanted.
    pub fn filter(self, wanted: bool) -> Option<Elector> {
        wanted.then_some(self)
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Takes or renews the Lease; `Ok(false)` while another holder's Lease is valid.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let secs = self.duration.as_secs().max(1) as i32;
        let Some(cur) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = cur.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let held_for =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).max(1) as u64);
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let age = now.duration_since(t.0);
            age.is_negative() || age.unsigned_abs() > held_for
        });
        if !mine
            && !expired
            && spec
                .holder_identity
                .as_deref()
                .is_some_and(|h| !h.is_empty())
        {
            return Ok(false);
        }
        let mut next = cur.clone();
        let s = next.spec.get_or_insert_with(Default::default);
        if !mine {
            s.acquire_time = Some(MicroTime(now));
            s.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            tracing::info!(identity = %self.identity, previous = ?spec.holder_identity, "took the {} Lease", self.name);
        }
        s.holder_identity = Some(self.identity.clone());
        s.lease_duration_seconds = Some(secs);
        s.renew_time = Some(MicroTime(now));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Lets go of the Lease (on shutdown), so another replica need not wait for it to expire.
    pub async fn release(&self) {
        if let Ok(Some(mut cur)) = self.api.get_opt(&self.name).await
            && cur.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                == Some(self.identity.as_str())
        {
            if let Some(s) = cur.spec.as_mut() {
                s.holder_identity = None;
            }
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &cur)
                .await;
        }
    }
}
