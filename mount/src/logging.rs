//! Log set-up: `tracing` to stderr (the log file in background mode), text or JSON lines,
//! `RUST_LOG`-style filtering through `JFS_LOG`.

use tracing_subscriber::EnvFilter;

pub fn init(debug: bool, json: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("JFS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a terminal: log files and container logs get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests, helper re-entry) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
