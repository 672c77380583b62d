//! `juicefs-certs`: create or renew the webhook's certificates and publish the caBundle;
//! once (a Helm hook Job) or every `--every` seconds (a long-running sidecar).

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "juicefs-certs",
    version,
    about = "Webhook TLS: create, rotate, publish the caBundle"
)]
struct Args {
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    namespace: String,
    /// The webhook Service whose DNS names the certificate carries.
    #[arg(long, default_value = "juicefs-admission-webhook")]
    service: String,
    #[arg(long, default_value = jfs_certs::publish::SECRET_NAME)]
    secret: String,
    /// The MutatingWebhookConfiguration to publish the caBundle into.
    #[arg(long, default_value = "juicefs-admission-webhook")]
    webhook_config: String,
    /// Check again every this many seconds (0: once); while looping, the caBundle is
    /// re-checked at least every 30 s, so a re-applied webhook configuration gets it back.
    #[arg(long, default_value_t = 0)]
    every: u64,
    /// Also write tls.crt, tls.key and ca.crt here (a volume shared with the webhook, so
    /// it need not wait for the kubelet to sync the Secret).
    #[arg(long)]
    write_dir: Option<std::path::PathBuf>,
}

/// Writes a file only when its content changed, by rename so readers never see half.
fn write_if_changed(path: &std::path::Path, content: &str) -> Result<bool, String> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == content) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(true)
}

fn write_files(dir: &std::path::Path, m: &jfs_certs::Material) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // The key first: the webhook reloads when the certificate changes.
    let key = write_if_changed(&dir.join("tls.key"), &m.leaf.key)?;
    let cert = write_if_changed(&dir.join("tls.crt"), &m.leaf.cert)?;
    write_if_changed(&dir.join("ca.crt"), &m.bundle)?;
    if key || cert {
        tracing::info!("wrote the serving certificate to {}", dir.display());
    }
    Ok(())
}

async fn run(a: Args) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot configure the Kubernetes client: {e}"))?;
    let dns = jfs_certs::service_dns_names(&a.service, &a.namespace);
    loop {
        let done = jfs_certs::publish::ensure(
            client.clone(),
            &a.namespace,
            &a.secret,
            &a.webhook_config,
            &dns,
        )
        .await;
        let done = done.and_then(|d| match &a.write_dir {
            Some(dir) => write_files(dir, &d.material).map(|()| d),
            None => Ok(d),
        });
        match (&done, a.every) {
            (Ok(d), _) => {
                tracing::debug!(plan = ?d.plan, published = d.published, "webhook certificates are in order")
            }
            (Err(e), 0) => return Err(e.clone()),
            (Err(e), _) => tracing::error!("{e}"),
        }
        if a.every == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(a.every.min(30))).await;
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("juicefs-certs: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(Args::parse())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("juicefs-certs: {e}");
            ExitCode::FAILURE
        }
    }
}
