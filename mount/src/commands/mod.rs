//! One module per `juicefs` subcommand.

pub mod app_exit;
pub mod drain;
pub mod format;
pub mod fsck;
pub mod gc;
pub mod info;
pub mod mount;
pub mod probe;
pub mod stats;
pub mod status;
pub mod umount;
pub mod volume;
pub mod warmup;

/// A current-thread runtime for short commands.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A META-URL argument, or `env:NAME` to read it from the environment: a sidecar passes
/// its metadata credentials this way, so they never appear in its command line.
pub fn meta_url(arg: &str) -> Result<String, String> {
    match arg.strip_prefix("env:") {
        Some(name) => std::env::var(name)
            .map_err(|_| format!("META-URL {arg:?}: environment variable {name} is not set")),
        None => Ok(arg.to_string()),
    }
}
