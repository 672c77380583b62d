//! One module per `juicefs` subcommand.

pub mod format;
pub mod mount;
pub mod status;
pub mod umount;

/// A current-thread runtime for short commands.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
