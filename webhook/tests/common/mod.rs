//! An in-memory cluster for webhook tests: PVCs, PVs, StorageClasses and Secrets.
#![allow(dead_code)]

use jfs_webhook::inject::ClusterView;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub mod server;

#[derive(Default)]
pub struct FakeCluster {
    pub pvcs: BTreeMap<(String, String), PersistentVolumeClaim>,
    pub pvs: BTreeMap<String, PersistentVolume>,
    pub scs: BTreeMap<String, StorageClass>,
    pub secrets: BTreeMap<(String, String), Secret>,
}

impl ClusterView for FakeCluster {
    fn pvc(&self, ns: &str, name: &str) -> Option<PersistentVolumeClaim> {
        self.pvcs.get(&(ns.into(), name.into())).cloned()
    }
    fn pv(&self, name: &str) -> Option<PersistentVolume> {
        self.pvs.get(name).cloned()
    }
    fn storage_class(&self, name: &str) -> Option<StorageClass> {
        self.scs.get(name).cloned()
    }
    fn secret(&self, ns: &str, name: &str) -> Option<Secret> {
        self.secrets.get(&(ns.into(), name.into())).cloned()
    }
    fn node_labels(&self, _name: &str) -> Option<BTreeMap<String, String>> {
        None
    }
}

pub fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

impl FakeCluster {
    pub fn juicefs_pvc(&mut self, name: &str, attrs: Value, secret_ref: bool) {
        self.pvcs.insert(
            ("app".into(), name.into()),
            obj(
                json!({"metadata": {"name": name, "namespace": "app", "uid": format!("uid-{name}")},
                       "spec": {"volumeName": format!("pv-{name}"), "storageClassName": "jfs",
                                "resources": {"requests": {"storage": "10Gi"}}}}),
            ),
        );
        let mut csi = json!({"driver": "csi.juicefs.com", "volumeHandle": format!("pv-{name}"), "volumeAttributes": attrs});
        if secret_ref {
            csi["nodePublishSecretRef"] = json!({"name": "jfs-secret", "namespace": "kube-system"});
        }
        self.pvs.insert(
            format!("pv-{name}"),
            obj(json!({"metadata": {"name": format!("pv-{name}")}, "spec": {"csi": csi}})),
        );
    }

    pub fn standard() -> FakeCluster {
        let mut c = FakeCluster::default();
        c.juicefs_pvc("data", json!({}), true);
        c.juicefs_pvc("models", json!({"mountOptions": "cache-size=1024"}), true);
        c.pvcs.insert(
            ("app".into(), "ebs".into()),
            obj(json!({"metadata": {"name": "ebs"}, "spec": {"volumeName": "pv-ebs"}})),
        );
        c.pvs.insert("pv-ebs".into(), obj(json!({"metadata": {"name": "pv-ebs"}, "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "v"}}})));
        c.scs.insert(
            "jfs".into(),
            obj(json!({"metadata": {"name": "jfs"}, "provisioner": "csi.juicefs.com"})),
        );
        c.secrets.insert(
            ("kube-system".into(), "jfs-secret".into()),
            obj(json!({"metadata": {"name": "jfs-secret", "namespace": "kube-system"},
                       "stringData": {"name": "myjfs", "metaurl": "redis://:pw@redis:6379/1", "storage": "s3",
                                      "bucket": "http://minio:9000/b", "access-key": "AK", "secret-key": "SK"}})),
        );
        c
    }
}
