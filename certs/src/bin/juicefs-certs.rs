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
    /// Check again every this many seconds (0: once).
    #[arg(long, default_value_t = 0)]
    every: u64,
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
        match (&done, a.every) {
            (Ok(plan), _) => tracing::info!(?plan, "webhook certificates are in order"),
            (Err(e), 0) => return Err(e.clone()),
            (Err(e), _) => tracing::error!("{e}"),
        }
        if a.every == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(a.every)).await;
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
