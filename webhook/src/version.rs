//! Native or classic sidecars: native (a restartable init container) needs the API server at
//! Kubernetes 1.29 or later, unless `enableNativeSidecar` in the ConfigMap decides. The
//! version is read from `GET /version` at start, kept, and read again now and then (an
//! upgraded control plane switches to native without a restart).

use crate::inject::InjectConfig;
use crate::server::{AppState, BoxFut};
use k8s_openapi::apimachinery::pkg::version::Info;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An API server's major.minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

/// The first version with native sidecars (enabled by default).
pub const NATIVE_SINCE: ApiVersion = ApiVersion {
    major: 1,
    minor: 29,
};

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The number `s` starts with ("29+" -> 29); `None` when it starts with no digit.
fn leading_number(s: &str) -> Option<u32> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// Major.minor from a `gitVersion` such as `v1.30.2-eks-7f9249a` or `1.28.3+k3s1`.
fn from_git_version(git: &str) -> Option<ApiVersion> {
    let git = git.trim();
    let git = git.strip_prefix(['v', 'V']).unwrap_or(git);
    let mut parts = git.splitn(3, '.');
    let major = parts.next()?;
    let minor = parts.next()?;
    // The major must be the whole first component: "1-rc" is not a version we trust.
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(ApiVersion {
        major: major.parse().ok()?,
        minor: leading_number(minor)?,
    })
}

/// The version in a `/version` answer: `major` and `minor` (providers append to the minor,
/// as in "29+"), else the `gitVersion`. `None` when neither can be read.
pub fn parse(info: &Info) -> Option<ApiVersion> {
    match (leading_number(&info.major), leading_number(&info.minor)) {
        (Some(major), Some(minor)) => Some(ApiVersion { major, minor }),
        _ => from_git_version(&info.git_version),
    }
}

/// Whether sidecars are native: the ConfigMap's `enableNativeSidecar` when set, else whether
/// the API server is 1.29 or later. An unknown version means classic (works everywhere), and
/// says so in the log.
pub fn native_sidecars(config: Option<bool>, api: Option<ApiVersion>) -> bool {
    match (config, api) {
        (Some(forced), _) => forced,
        (None, Some(v)) => v >= NATIVE_SINCE,
        (None, None) => {
            tracing::warn!(
                "the API server's version is unknown: classic sidecars (set enableNativeSidecar in the ConfigMap to choose)"
            );
            false
        }
    }
}

/// Where the version comes from: the API server, or a test's stand-in.
pub trait VersionSource: Send + Sync {
    fn fetch(&self) -> BoxFut<'_, Result<Info, String>>;
}

impl VersionSource for kube::Client {
    fn fetch(&self) -> BoxFut<'_, Result<Info, String>> {
        Box::pin(async move { self.apiserver_version().await.map_err(|e| e.to_string()) })
    }
}

/// The API server's version as last read (`None`: its answer was unreadable).
#[derive(Default)]
pub struct VersionCache {
    last: Mutex<Option<ApiVersion>>,
}

impl VersionCache {
    pub fn get(&self) -> Option<ApiVersion> {
        self.last.lock().map(|v| *v).unwrap_or(None)
    }

    /// Reads the version and keeps it. `Err` only when the API server did not answer (the
    /// kept version stays); an answer without a readable version is kept as unknown.
    pub async fn fetch(&self, source: &dyn VersionSource) -> Result<Option<ApiVersion>, String> {
        let info = source.fetch().await?;
        let v = parse(&info);
        if v.is_none() {
            tracing::warn!(
                major = %info.major,
                minor = %info.minor,
                git_version = %info.git_version,
                "unreadable API server version"
            );
        }
        if let Ok(mut last) = self.last.lock() {
            *last = v;
        }
        Ok(v)
    }
}

/// Recomputes `native` in the served configuration from its `enableNativeSidecar` and the
/// kept version; returns the new value.
pub fn apply(state: &AppState, cache: &VersionCache) -> Option<bool> {
    apply_with(state, cache, |_| {})
}

/// `edit`s the served configuration (a reloaded ConfigMap) and recomputes `native` in the
/// same step, so no admission sees one without the other.
pub fn apply_with(
    state: &AppState,
    cache: &VersionCache,
    edit: impl FnOnce(&mut InjectConfig),
) -> Option<bool> {
    let mut guard = state.config.write().ok()?;
    let mut next = (**guard).clone();
    edit(&mut next);
    next.native = native_sidecars(next.global.enable_native_sidecar, cache.get());
    if next.native != guard.native {
        tracing::info!(
            native = next.native,
            "sidecar placement now: {}",
            if next.native {
                "native init container"
            } else {
                "classic container"
            }
        );
    }
    let native = next.native;
    *guard = Arc::new(next);
    Some(native)
}

/// One refresh: read the version again and apply it. When the API server does not answer,
/// the kept version stays in force.
pub async fn refresh(state: &AppState, cache: &VersionCache, source: &dyn VersionSource) {
    if let Err(e) = cache.fetch(source).await {
        tracing::warn!("reading the API server version (keeping the last one): {e}");
        return;
    }
    apply(state, cache);
}

/// Refreshes every `every`, for ever.
pub async fn refresh_loop(
    state: Arc<AppState>,
    cache: Arc<VersionCache>,
    source: Arc<dyn VersionSource>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        refresh(&state, &cache, &*source).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(major: &str, minor: &str, git: &str) -> Info {
        Info {
            major: major.into(),
            minor: minor.into(),
            git_version: git.into(),
            ..Default::default()
        }
    }

    fn v(major: u32, minor: u32) -> Option<ApiVersion> {
        Some(ApiVersion { major, minor })
    }

    #[test]
    fn parses_major_and_minor_with_provider_suffixes() {
        assert_eq!(parse(&info("1", "29", "v1.29.0")), v(1, 29));
        assert_eq!(parse(&info("1", "29+", "v1.29.4-gke.1043")), v(1, 29));
        assert_eq!(parse(&info("1+", "30+", "")), v(1, 30));
        assert_eq!(parse(&info(" 1 ", " 28 ", "")), v(1, 28));
        assert_eq!(parse(&info("1", "100", "")), v(1, 100));
        // Fields win over gitVersion when both are readable.
        assert_eq!(parse(&info("1", "27", "v1.31.0")), v(1, 27));
    }

    #[test]
    fn falls_back_to_git_version() {
        assert_eq!(parse(&info("", "", "v1.30.2-eks-7f9249a")), v(1, 30));
        assert_eq!(parse(&info("1", "", "v1.29.0")), v(1, 29));
        assert_eq!(parse(&info("", "31", "v1.31.1")), v(1, 31));
        assert_eq!(parse(&info("x", "y", "1.28.3+k3s1")), v(1, 28));
        assert_eq!(parse(&info("", "", "V1.33")), v(1, 33));
        assert_eq!(parse(&info("", "", "v1.29-rc.0")), v(1, 29));
    }

    #[test]
    fn unreadable_versions_are_none() {
        assert_eq!(parse(&info("", "", "")), None);
        assert_eq!(parse(&info("+", "+", "v")), None);
        assert_eq!(parse(&info("", "", "v1")), None);
        assert_eq!(parse(&info("", "", "v1.")), None);
        assert_eq!(parse(&info("", "", "v1.x")), None);
        assert_eq!(parse(&info("", "", "vx.29")), None);
        assert_eq!(parse(&info("", "", "1-rc.29")), None);
        assert_eq!(parse(&info("", "", "unknown")), None);
        assert_eq!(parse(&info("", "", "99999999999.1")), None, "overflow");
    }

    #[test]
    fn native_from_1_29_unless_the_config_decides() {
        assert!(!native_sidecars(None, v(1, 28)));
        assert!(native_sidecars(None, v(1, 29)));
        assert!(native_sidecars(None, v(1, 33)));
        assert!(native_sidecars(None, v(2, 0)));
        assert!(!native_sidecars(None, v(0, 99)));
        assert!(!native_sidecars(None, None), "unknown: classic");
        assert!(!native_sidecars(Some(false), v(1, 33)));
        assert!(native_sidecars(Some(true), v(1, 25)));
        assert!(native_sidecars(Some(true), None));
        assert!(!native_sidecars(Some(false), None));
    }

    struct Scripted(Mutex<Vec<Result<Info, String>>>);

    impl VersionSource for Scripted {
        fn fetch(&self) -> BoxFut<'_, Result<Info, String>> {
            let next = self.0.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    #[tokio::test]
    async fn the_cache_keeps_the_last_answer_when_the_server_is_silent() {
        let src = Scripted(Mutex::new(vec![
            Ok(info("1", "28", "")),
            Err("connection refused".into()),
            Ok(info("1", "30+", "")),
            Ok(info("", "", "garbage")),
        ]));
        let cache = VersionCache::default();
        assert_eq!(cache.get(), None);
        assert_eq!(cache.fetch(&src).await, Ok(v(1, 28)));
        assert!(cache.fetch(&src).await.is_err());
        assert_eq!(cache.get(), v(1, 28), "kept");
        assert_eq!(cache.fetch(&src).await, Ok(v(1, 30)));
        assert_eq!(cache.get(), v(1, 30));
        assert_eq!(cache.fetch(&src).await, Ok(None));
        assert_eq!(cache.get(), None, "an unreadable answer is unknown");
    }
}
