//! Certificates published against the in-memory Kubernetes API: the Secret is created and
//! the caBundle patched into every webhook; a second run writes nothing; the stored serving
//! certificate verifies against the published bundle for the Service's DNS names; a webhook
//! configuration that appears later gets the bundle; the binary writes the files the
//! webhook serves.

use jfs_certs::publish::{SECRET_NAME, ensure};
use jfs_certs::{Plan, service_dns_names};
use jfs_fakekube::FakeApi;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;
use std::sync::Arc;

fn webhook_config(name: &str) -> MutatingWebhookConfiguration {
    let hook = |n: &str, path: &str| {
        json!({"name": n, "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
               "clientConfig": {"service": {"name": "juicefs-admission-webhook",
                                            "namespace": "kube-system", "path": path}}})
    };
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [hook("sidecar.juicefs.com", "/juicefs/inject-v1-pod"),
                     hook("serverless.sidecar.juicefs.com", "/juicefs/serverless/inject-v1-pod")]
    }))
    .unwrap()
}

fn writes(api: &FakeApi) -> usize {
    api.requests().iter().filter(|r| r.is_write()).count()
}

fn b64(v: &k8s_openapi::ByteString) -> Vec<u8> {
    v.0.clone()
}

fn ders(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    let text = String::from_utf8_lossy(pem).into_owned();
    text.split("-----END CERTIFICATE-----")
        .filter(|p| p.contains("BEGIN CERTIFICATE"))
        .map(|block| {
            use base64::Engine;
            let body: String = block.lines().filter(|l| !l.starts_with("-----")).collect();
            CertificateDer::from(
                base64::engine::general_purpose::STANDARD
                    .decode(body.trim())
                    .unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_created_published_and_left_alone() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = FakeApi::start().await;
    api.put(&webhook_config("jfs-webhook"));
    let client = api.client();
    let dns = service_dns_names("juicefs-admission-webhook", "kube-system");
    let done = ensure(
        client.clone(),
        "kube-system",
        SECRET_NAME,
        "jfs-webhook",
        &dns,
    )
    .await
    .unwrap();
    assert_eq!(done.plan, Plan::NewCa);
    assert!(done.published);
    assert_eq!(writes(&api), 2, "one Secret, one webhook configuration");
    let secret: Secret = api.get(Some("kube-system"), SECRET_NAME).unwrap();
    let data = secret.data.unwrap();
    let cfg: MutatingWebhookConfiguration = api.get(None, "jfs-webhook").unwrap();
    let hooks = cfg.webhooks.unwrap();
    let bundle = b64(hooks[0].client_config.ca_bundle.as_ref().unwrap());
    assert_eq!(
        bundle,
        b64(hooks[1].client_config.ca_bundle.as_ref().unwrap()),
        "every webhook gets the bundle"
    );
    assert_eq!(bundle, b64(&data["ca-bundle.crt"]));
    assert_eq!(done.material.leaf.cert.as_bytes(), &data["tls.crt"].0[..]);

    // The serving certificate verifies against the bundle for each Service name.
    let mut roots = rustls::RootCertStore::empty();
    for ca in ders(&bundle) {
        roots.add(ca).unwrap();
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let leaf = ders(&data["tls.crt"].0).remove(0);
    for name in &dns {
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(name.clone()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from("evil.example").unwrap(),
                &[],
                UnixTime::now()
            )
            .is_err()
    );

    // Nothing changed: nothing written.
    let done = ensure(client, "kube-system", SECRET_NAME, "jfs-webhook", &dns)
        .await
        .unwrap();
    assert_eq!(done.plan, Plan::Keep);
    assert_eq!(writes(&api), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_configuration_created_later_gets_the_bundle() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = FakeApi::start().await;
    let dns = service_dns_names("juicefs-admission-webhook", "kube-system");
    let first = ensure(
        api.client(),
        "kube-system",
        SECRET_NAME,
        "jfs-webhook",
        &dns,
    )
    .await
    .unwrap();
    assert!(
        !first.published,
        "no configuration yet: nothing to publish into"
    );
    assert!(
        api.get::<Secret>(Some("kube-system"), SECRET_NAME)
            .is_some()
    );

    // Helm creates (or re-applies, with an empty caBundle) the configuration.
    api.put(&webhook_config("jfs-webhook"));
    let second = ensure(
        api.client(),
        "kube-system",
        SECRET_NAME,
        "jfs-webhook",
        &dns,
    )
    .await
    .unwrap();
    assert!(second.published);
    assert_eq!(second.plan, Plan::Keep, "the stored certificate is reused");
    assert_eq!(second.material, first.material);
    let cfg: MutatingWebhookConfiguration = api.get(None, "jfs-webhook").unwrap();
    let hooks = cfg.webhooks.unwrap();
    assert_eq!(
        hooks[1].client_config.ca_bundle.as_ref().unwrap().0,
        first.material.bundle.as_bytes()
    );
}

/// `juicefs-certs --write-dir` against the fake API through a kubeconfig: the files the
/// webhook serves equal what the Secret holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_the_serving_files() {
    let api = FakeApi::start().await;
    api.put(&webhook_config("juicefs-admission-webhook"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let out_dir = dir.path().join("certs");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_juicefs-certs"))
        .args(["--namespace", "jfs", "--write-dir"])
        .arg(&out_dir)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret: Secret = api.get(Some("jfs"), SECRET_NAME).unwrap();
    let data = secret.data.unwrap();
    for (file, key) in [
        ("tls.crt", "tls.crt"),
        ("tls.key", "tls.key"),
        ("ca.crt", "ca-bundle.crt"),
    ] {
        assert_eq!(
            std::fs::read(out_dir.join(file)).unwrap(),
            data[key].0,
            "{file}"
        );
    }
    let cfg: MutatingWebhookConfiguration = api.get(None, "juicefs-admission-webhook").unwrap();
    assert!(cfg.webhooks.unwrap()[0].client_config.ca_bundle.is_some());
}
