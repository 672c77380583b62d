//! gRPC over the CSI unix socket.

use std::path::{Path, PathBuf};

/// `unix:///csi/csi.sock` or a plain path → the socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let p = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !p.starts_with('/') {
        return Err(format!(
            "endpoint {endpoint:?}: expected unix:///absolute/path"
        ));
    }
    Ok(PathBuf::from(p))
}

/// Binds the socket (replacing a stale one left by a previous run).
pub fn bind(path: &Path) -> Result<tokio_stream::wrappers::UnixListenerStream, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing stale {}: {e}", path.display())),
    }
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("binding {}: {e}", path.display()))?;
    Ok(tokio_stream::wrappers::UnixListenerStream::new(l))
}
