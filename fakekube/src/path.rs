//! Where a request points: group/version, resource (plural), namespace, name, subresource.

use k8s_openapi::Resource;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePath {
    /// `v1` for the core group, else `group/version`.
    pub group_version: String,
    pub plural: String,
    pub namespace: Option<String>,
    /// Empty for a collection.
    pub name: String,
    pub subresource: Option<String>,
}

impl ResourcePath {
    pub fn of<K: Resource>(namespace: Option<&str>, name: &str) -> ResourcePath {
        ResourcePath {
            group_version: K::API_VERSION.to_string(),
            plural: K::URL_PATH_SEGMENT.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            subresource: None,
        }
    }

    pub fn parse(path: &str) -> Option<ResourcePath> {
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (gv, rest) = match seg.as_slice() {
            ["api", v, rest @ ..] => (v.to_string(), rest),
            ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        let (plural, name, sub) = match rest {
            [p] => (p, "", None),
            [p, n] => (p, *n, None),
            [p, n, s] => (p, *n, Some(s.to_string())),
            _ => return None,
        };
        Some(ResourcePath {
            group_version: gv,
            plural: plural.to_string(),
            namespace,
            name: name.to_string(),
            subresource: sub,
        })
    }

    pub fn collection(&self) -> ResourcePath {
        ResourcePath {
            name: String::new(),
            subresource: None,
            ..self.clone()
        }
    }

    pub(crate) fn key(&self) -> (String, String, String, String) {
        (
            self.group_version.clone(),
            self.plural.clone(),
            self.namespace.clone().unwrap_or_default(),
            self.name.clone(),
        )
    }

    /// Whether an object at `other` belongs to this collection (any namespace when this
    /// collection names none).
    pub(crate) fn contains(&self, other: &ResourcePath) -> bool {
        self.group_version == other.group_version
            && self.plural == other.plural
            && (self.namespace.is_none() || self.namespace == other.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_core_group_namespaced_and_cluster_paths() {
        let p = ResourcePath::parse("/api/v1/namespaces/kube-system/pods/mp-1/log").unwrap();
        assert_eq!(p.group_version, "v1");
        assert_eq!(p.namespace.as_deref(), Some("kube-system"));
        assert_eq!((p.plural.as_str(), p.name.as_str()), ("pods", "mp-1"));
        assert_eq!(p.subresource.as_deref(), Some("log"));
        let p = ResourcePath::parse("/apis/coordination.k8s.io/v1/namespaces/x/leases").unwrap();
        assert_eq!(p.group_version, "coordination.k8s.io/v1");
        assert!(p.name.is_empty());
        let p = ResourcePath::parse("/api/v1/persistentvolumes/pv-1").unwrap();
        assert_eq!(p.namespace, None);
        assert_eq!(p.name, "pv-1");
        let p = ResourcePath::parse("/api/v1/namespaces/default").unwrap();
        assert_eq!(
            (p.plural.as_str(), p.name.as_str()),
            ("namespaces", "default")
        );
        assert!(ResourcePath::parse("/healthz").is_none());
    }
}
