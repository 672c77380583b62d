//! The Kubernetes side: the Secret the webhook mounts (`tls.crt`, `tls.key`, plus the CA and
//! its bundle so a later run can renew the leaf with the same CA) and the caBundle of every
//! webhook in the MutatingWebhookConfiguration. Writes happen only when something changed.

use crate::{Material, Pem, Plan, next, plan};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;

pub const SECRET_NAME: &str = "juicefs-webhook-certs";

fn text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

fn read(s: &Secret) -> Option<Material> {
    Some(Material {
        ca: Pem {
            cert: text(s, "ca.crt")?,
            key: text(s, "ca.key")?,
        },
        leaf: Pem {
            cert: text(s, "tls.crt")?,
            key: text(s, "tls.key")?,
        },
        bundle: text(s, "ca-bundle.crt")?,
    })
}

fn data(m: &Material) -> BTreeMap<String, ByteString> {
    [
        ("ca.crt", &m.ca.cert),
        ("ca.key", &m.ca.key),
        ("tls.crt", &m.leaf.cert),
        ("tls.key", &m.leaf.key),
        ("ca-bundle.crt", &m.bundle),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
    .collect()
}

/// What `ensure` did and what is now stored.
#[derive(Debug)]
pub struct Ensured {
    pub plan: Plan,
    /// The certificates as stored in the Secret (what the webhook must serve).
    pub material: Material,
    /// False when the MutatingWebhookConfiguration does not exist yet (the chart creates
    /// it alongside the webhook; a later round publishes).
    pub published: bool,
}

/// Makes the Secret and the caBundle right; returns what was done.
pub async fn ensure(
    client: kube::Client,
    namespace: &str,
    secret_name: &str,
    webhook_config: &str,
    dns: &[String],
) -> Result<Ensured, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let current = secrets
        .get_opt(secret_name)
        .await
        .map_err(|e| format!("reading Secret {namespace}/{secret_name}: {e}"))?;
    let existing = current.as_ref().and_then(read);
    let now = time::OffsetDateTime::now_utc();
    let decided = plan(existing.as_ref(), dns, now);
    let material = next(existing.as_ref(), dns, now).map_err(|e| e.to_string())?;
    if decided != Plan::Keep || existing.is_none() {
        let mut s = Secret {
            metadata: ObjectMeta {
                name: Some(secret_name.to_string()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data(&material)),
            ..Default::default()
        };
        match current {
            Some(cur) => {
                s.metadata.resource_version = cur.metadata.resource_version;
                secrets
                    .replace(secret_name, &PostParams::default(), &s)
                    .await
                    .map_err(|e| format!("updating Secret {namespace}/{secret_name}: {e}"))?;
            }
            None => {
                secrets
                    .create(&PostParams::default(), &s)
                    .await
                    .map_err(|e| format!("creating Secret {namespace}/{secret_name}: {e}"))?;
            }
        }
        tracing::info!(
            ?decided,
            "stored new webhook certificates in {namespace}/{secret_name}"
        );
    }
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client);
    let Some(mut cfg) = configs
        .get_opt(webhook_config)
        .await
        .map_err(|e| format!("reading MutatingWebhookConfiguration {webhook_config}: {e}"))?
    else {
        tracing::warn!(
            "MutatingWebhookConfiguration {webhook_config} does not exist yet: the caBundle is published once it does"
        );
        return Ok(Ensured {
            plan: decided,
            material,
            published: false,
        });
    };
    let bundle = ByteString(material.bundle.clone().into_bytes());
    let mut changed = false;
    for w in cfg.webhooks.iter_mut().flatten() {
        if w.client_config.ca_bundle.as_ref() != Some(&bundle) {
            w.client_config.ca_bundle = Some(bundle.clone());
            changed = true;
        }
    }
    if changed {
        configs
            .replace(webhook_config, &PostParams::default(), &cfg)
            .await
            .map_err(|e| format!("publishing the caBundle to {webhook_config}: {e}"))?;
        tracing::info!("published the caBundle to {webhook_config}");
    }
    Ok(Ensured {
        plan: decided,
        material,
        published: true,
    })
}
