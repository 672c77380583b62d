//! The objects, their resource versions, and the change log that watches replay.

use crate::path::ResourcePath;
use crate::select::Selector;
use crate::{not_found, status};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::broadcast;

type Key = (String, String, String, String);

/// One stored change, as watches see it.
#[derive(Clone, Debug)]
pub struct Change {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub path: ResourcePath,
    pub object: Value,
    pub rv: u64,
}

#[derive(Serialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub object: Value,
}

impl Change {
    pub(crate) fn matches(&self, collection: &ResourcePath, sel: &Selector) -> bool {
        collection.contains(&self.path) && sel.matches(&self.object)
    }

    pub(crate) fn event(&self) -> WatchEvent {
        WatchEvent {
            kind: self.kind,
            object: self.object.clone(),
        }
    }
}

struct Inner {
    objects: BTreeMap<Key, (ResourcePath, Value)>,
    rv: u64,
    uid: u64,
    log: Vec<Change>,
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Change>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                rv: 1,
                uid: 0,
                log: Vec::new(),
            }),
            tx: broadcast::channel(4096).0,
        }
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn finalizers(v: &Value) -> usize {
    v["metadata"]["finalizers"].as_array().map_or(0, Vec::len)
}

impl Inner {
    fn record(
        &mut self,
        tx: &broadcast::Sender<Change>,
        kind: &'static str,
        p: &ResourcePath,
        obj: Value,
    ) {
        let c = Change {
            kind,
            path: p.clone(),
            object: obj,
            rv: self.rv,
        };
        self.log.push(c.clone());
        let _ = tx.send(c);
    }

    /// Stores `v` at `p` under a new resource version; `DELETED` when a deleting object has
    /// lost its last finalizer.
    fn commit(
        &mut self,
        tx: &broadcast::Sender<Change>,
        p: &ResourcePath,
        mut v: Value,
        added: bool,
    ) -> Value {
        self.rv += 1;
        v["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if !added && v["metadata"]["deletionTimestamp"].is_string() && finalizers(&v) == 0 {
            self.objects.remove(&p.key());
            self.record(tx, "DELETED", p, v.clone());
            return v;
        }
        self.objects.insert(p.key(), (p.clone(), v.clone()));
        self.record(tx, if added { "ADDED" } else { "MODIFIED" }, p, v.clone());
        v
    }
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    pub fn get(&self, p: &ResourcePath) -> Option<Value> {
        self.lock().objects.get(&p.key()).map(|(_, v)| v.clone())
    }

    pub fn list(&self, collection: &ResourcePath, sel: Option<&Selector>) -> Vec<Value> {
        self.lock()
            .objects
            .values()
            .filter(|(p, v)| collection.contains(p) && sel.is_none_or(|s| s.matches(v)))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn list_response(&self, collection: &ResourcePath, sel: &Selector) -> Value {
        let rv = self.lock().rv;
        let items = self.list(collection, Some(sel));
        let kind = items
            .first()
            .and_then(|i| i["kind"].as_str())
            .map_or("List".to_string(), |k| format!("{k}List"));
        json!({
            "apiVersion": collection.group_version, "kind": kind,
            "metadata": {"resourceVersion": rv.to_string()}, "items": items
        })
    }

    /// The changes after `since` and a receiver for the ones to come, with nothing lost
    /// in between.
    pub fn watch_from(
        &self,
        _collection: &ResourcePath,
        since: u64,
    ) -> (Vec<Change>, broadcast::Receiver<Change>) {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let backlog = inner.log.iter().filter(|c| c.rv > since).cloned().collect();
        (backlog, rx)
    }

    pub fn upsert(&self, p: &ResourcePath, mut v: Value) {
        let mut inner = self.lock();
        let existing = inner.objects.get(&p.key()).map(|(_, v)| v.clone());
        if existing.is_none() {
            inner.uid += 1;
            if v["metadata"]["uid"].as_str().is_none_or(str::is_empty) {
                v["metadata"]["uid"] = json!(format!("uid-{}", inner.uid));
            }
            v["metadata"]["creationTimestamp"] = json!(now());
        }
        if let Some(ns) = &p.namespace {
            v["metadata"]["namespace"] = json!(ns);
        }
        inner.commit(&self.tx, p, v, existing.is_none());
    }

    /// Replaces only `status` of a stored object, atomically (what the status subresource
    /// does: metadata and spec written meanwhile by others are kept). False when absent.
    pub fn set_status(&self, p: &ResourcePath, status: Value) -> bool {
        let mut inner = self.lock();
        let Some((_, mut v)) = inner.objects.get(&p.key()).cloned() else {
            return false;
        };
        v["status"] = status;
        inner.commit(&self.tx, p, v, false);
        true
    }

    pub fn remove(&self, p: &ResourcePath) {
        let mut inner = self.lock();
        if let Some((_, v)) = inner.objects.remove(&p.key()) {
            inner.rv += 1;
            inner.record(&self.tx, "DELETED", p, v);
        }
    }

    pub fn create(&self, collection: &ResourcePath, mut v: Value) -> Response {
        let mut inner = self.lock();
        inner.uid += 1;
        let uid = inner.uid;
        let mut name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            match v["metadata"]["generateName"].as_str() {
                Some(g) => name = format!("{g}{uid:05x}"),
                None => return status(422, "Invalid", "metadata.name: Required value"),
            }
        }
        let p = ResourcePath {
            name: name.clone(),
            ..collection.clone()
        };
        if inner.objects.contains_key(&p.key()) {
            return status(
                409,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", p.plural),
            );
        }
        let m = &mut v["metadata"];
        m["name"] = json!(name);
        m["uid"] = json!(format!("uid-{uid}"));
        m["creationTimestamp"] = json!(now());
        if let Some(ns) = &p.namespace {
            m["namespace"] = json!(ns);
        }
        let out = inner.commit(&self.tx, &p, v, true);
        (axum::http::StatusCode::CREATED, axum::Json(out)).into_response()
    }

    /// Server-owned fields survive whatever the client sends.
    fn keep_server_fields(old: &Value, new: &mut Value) {
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "namespace",
            "name",
        ] {
            match old["metadata"].get(k) {
                Some(x) => new["metadata"][k] = x.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
    }

    pub fn replace(&self, p: &ResourcePath, mut v: Value) -> Response {
        let mut inner = self.lock();
        let Some((_, old)) = inner.objects.get(&p.key()).cloned() else {
            return not_found(p);
        };
        let sent = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !sent.is_empty()
            && sent
                != old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
        {
            return status(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    p.plural, p.name
                ),
            );
        }
        Self::keep_server_fields(&old, &mut v);
        let base = ResourcePath {
            subresource: None,
            ..p.clone()
        };
        axum::Json(inner.commit(&self.tx, &base, v, false)).into_response()
    }

    pub fn patch(&self, p: &ResourcePath, content_type: &str, body: &[u8]) -> Response {
        let mut inner = self.lock();
        let Some((_, old)) = inner.objects.get(&p.key()).cloned() else {
            return not_found(p);
        };
        let mut v = old.clone();
        let applied = if content_type.starts_with("application/json-patch+json") {
            serde_json::from_slice::<json_patch::Patch>(body)
                .map_err(|e| e.to_string())
                .and_then(|patch| json_patch::patch(&mut v, &patch).map_err(|e| e.to_string()))
        } else {
            // Merge, strategic-merge and apply patches: a JSON merge patch is close enough
            // for the maps and scalars tests patch.
            serde_json::from_slice::<Value>(body)
                .map_err(|e| e.to_string())
                .map(|patch| json_patch::merge(&mut v, &patch))
        };
        if let Err(e) = applied {
            return status(422, "Invalid", &format!("patch: {e}"));
        }
        if let Some(rv) = v["metadata"]["resourceVersion"].as_str()
            && rv
                != old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
        {
            return status(409, "Conflict", "the object has been modified");
        }
        Self::keep_server_fields(&old, &mut v);
        let base = ResourcePath {
            subresource: None,
            ..p.clone()
        };
        axum::Json(inner.commit(&self.tx, &base, v, false)).into_response()
    }

    pub fn delete(&self, p: &ResourcePath) -> Response {
        let mut inner = self.lock();
        let Some((_, mut v)) = inner.objects.get(&p.key()).cloned() else {
            return not_found(p);
        };
        if finalizers(&v) == 0 {
            inner.objects.remove(&p.key());
            inner.rv += 1;
            inner.record(&self.tx, "DELETED", p, v.clone());
            return axum::Json(v).into_response();
        }
        if v["metadata"]["deletionTimestamp"].is_string() {
            return axum::Json(v).into_response();
        }
        v["metadata"]["deletionTimestamp"] = json!(now());
        axum::Json(inner.commit(&self.tx, p, v, false)).into_response()
    }
}
