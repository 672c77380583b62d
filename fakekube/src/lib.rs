//! An in-memory Kubernetes API server for tests, over plain HTTP on loopback, that a real
//! `kube::Client` talks to: create / get / list / replace / patch (merge, strategic treated
//! as merge, JSON patch) / delete with finalizers and `deletionTimestamp`, list + watch with
//! label and field selectors and resource versions, `pods/log`, a settable `/version`, and a
//! log of every request so tests can count API calls. Typed helpers seed and read objects
//! directly.

mod path;
mod select;
mod store;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use k8s_openapi::{Metadata, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use path::ResourcePath;
pub use store::{Change, WatchEvent};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub uri: String,
}

impl Request {
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

/// A rule that answers matching requests with an error instead of serving them.
#[derive(Clone, Debug)]
struct Fault {
    method: Option<String>,
    path_contains: String,
    code: u16,
    times: Option<usize>,
}

#[derive(Default)]
struct Shared {
    store: store::Store,
    requests: Mutex<Vec<Request>>,
    faults: Mutex<Vec<Fault>>,
    logs: Mutex<HashMap<(String, String), String>>,
    /// What `/version` answers; `None`: 1.33.
    version: Mutex<Option<Value>>,
}

/// A kubeconfig naming `server` with an anonymous user.
pub fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\"}}}}]\n\
         users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n\
         current-context: x\n"
    )
}

/// The server; clones share it.
#[derive(Clone)]
pub struct FakeApi {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
}

impl FakeApi {
    /// Starts the server on a free loopback port (needs a tokio runtime).
    pub async fn start() -> FakeApi {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake API server");
        let addr = listener.local_addr().expect("fake API address");
        let app = Router::new().fallback(serve).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi { shared, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server, for binaries under test (`KUBECONFIG`).
    pub fn kubeconfig(&self) -> String {
        kubeconfig(&self.url())
    }

    /// A client for this server.
    pub fn client(&self) -> kube::Client {
        // Workspaces that compile both rustls backends need one chosen before any client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg = kube::Config::new(self.url().parse().expect("fake API URL"));
        kube::Client::try_from(cfg).expect("client for the fake API")
    }

    /// Stores `obj` (created or replaced) as if a controller had written it.
    pub fn put<
        K: Resource
            + Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
            + Serialize,
    >(
        &self,
        obj: &K,
    ) {
        let mut v = serde_json::to_value(obj).expect("serializable object");
        v["apiVersion"] = json!(K::API_VERSION);
        v["kind"] = json!(K::KIND);
        let p = ResourcePath::of::<K>(
            obj.metadata().namespace.as_deref(),
            obj.metadata().name.as_deref().unwrap_or_default(),
        );
        self.shared.store.upsert(&p, v);
    }

    /// Sets an object's status as kubelet or a controller would (status subresource), without
    /// a read-modify-write race against other writers. False when the object is absent.
    pub fn set_status<K: Resource>(
        &self,
        namespace: Option<&str>,
        name: &str,
        status: serde_json::Value,
    ) -> bool {
        self.shared
            .store
            .set_status(&ResourcePath::of::<K>(namespace, name), status)
    }

    pub fn get<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<K> {
        let p = ResourcePath::of::<K>(namespace, name);
        self.shared
            .store
            .get(&p)
            .and_then(|v| serde_json::from_value(v).ok())
    }

    /// Every stored object of this kind (all namespaces).
    pub fn list<K: Resource + DeserializeOwned>(&self) -> Vec<K> {
        let p = ResourcePath::of::<K>(None, "");
        self.shared
            .store
            .list(&p.collection(), None)
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Removes an object at once, finalizers or not (a node or test tearing things down).
    pub fn remove<K: Resource>(&self, namespace: Option<&str>, name: &str) {
        self.shared
            .store
            .remove(&ResourcePath::of::<K>(namespace, name));
    }

    /// Sets what `GET .../pods/NAME/log` returns.
    pub fn set_log(&self, namespace: &str, pod: &str, text: &str) {
        if let Ok(mut l) = self.shared.logs.lock() {
            l.insert((namespace.into(), pod.into()), text.into());
        }
    }

    /// Sets what `GET /version` answers (`major`, `minor`, `gitVersion`, as servers send
    /// them, e.g. "1", "29+", "v1.29.4-gke.1043"); 1.33 until set.
    pub fn set_version(&self, major: &str, minor: &str, git_version: &str) {
        if let Ok(mut v) = self.shared.version.lock() {
            *v = Some(json!({"major": major, "minor": minor, "gitVersion": git_version}));
        }
    }

    /// Every change from now on (for runners that act on objects, like a kubelet).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.shared.store.subscribe()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn clear_requests(&self) {
        if let Ok(mut r) = self.shared.requests.lock() {
            r.clear();
        }
    }

    /// Answers requests whose path contains `path_contains` (and of `method`, if given) with
    /// `code`, `times` times (`None`: until `clear_faults`).
    pub fn fail(&self, method: Option<&str>, path_contains: &str, code: u16, times: Option<usize>) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.push(Fault {
                method: method.map(str::to_string),
                path_contains: path_contains.into(),
                code,
                times,
            });
        }
    }

    pub fn clear_faults(&self) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.clear();
        }
    }
}

pub(crate) fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    });
    let sc = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (sc, axum::Json(body)).into_response()
}

fn injected_fault(s: &Shared, method: &Method, uri: &Uri) -> Option<u16> {
    let mut faults = s.faults.lock().ok()?;
    let i = faults.iter().position(|f| {
        f.method.as_deref().is_none_or(|m| m == method.as_str())
            && uri.path().contains(&f.path_contains)
    })?;
    let code = faults[i].code;
    if let Some(t) = faults[i].times.as_mut() {
        *t -= 1;
        if *t == 0 {
            faults.remove(i);
        }
    }
    Some(code)
}

async fn serve(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Ok(mut r) = s.requests.lock() {
        r.push(Request {
            method: method.to_string(),
            uri: uri.to_string(),
        });
    }
    if let Some(code) = injected_fault(&s, &method, &uri) {
        return status(code, "InternalError", "fault injected by the test");
    }
    if uri.path() == "/version" {
        let set = s.version.lock().ok().and_then(|v| v.clone());
        let v =
            set.unwrap_or_else(|| json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}));
        return axum::Json(v).into_response();
    }
    let Some(p) = ResourcePath::parse(uri.path()) else {
        return status(
            404,
            "NotFound",
            &format!("the fake API does not serve {}", uri.path()),
        );
    };
    let ctype = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    match (method.as_str(), p.name.is_empty(), p.subresource.as_deref()) {
        ("GET", _, Some("log")) => {
            let key = (p.namespace.clone().unwrap_or_default(), p.name.clone());
            let text = s.logs.lock().ok().and_then(|l| l.get(&key).cloned());
            match text {
                Some(t) => {
                    let tail = q.get("tailLines").and_then(|n| n.parse::<usize>().ok());
                    let lines: Vec<&str> = t.lines().collect();
                    let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
                    lines[from..].join("\n").into_response()
                }
                None => status(404, "NotFound", "no log for this pod"),
            }
        }
        ("GET", true, _) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(&s, &p, &q)
        }
        ("GET", true, _) => match select::Selector::from_query(&q) {
            Ok(sel) => axum::Json(s.store.list_response(&p, &sel)).into_response(),
            Err(e) => status(400, "BadRequest", &e),
        },
        ("GET", false, _) => match s.store.get(&p) {
            Some(v) => axum::Json(v).into_response(),
            None => not_found(&p),
        },
        ("POST", true, _) => match serde_json::from_slice::<Value>(&body) {
            Ok(v) => s.store.create(&p, v),
            Err(e) => status(400, "BadRequest", &format!("body: {e}")),
        },
        ("PUT", false, _) => match serde_json::from_slice::<Value>(&body) {
            Ok(v) => s.store.replace(&p, v),
            Err(e) => status(400, "BadRequest", &format!("body: {e}")),
        },
        ("PATCH", false, _) => s.store.patch(&p, ctype, &body),
        ("DELETE", false, _) => s.store.delete(&p),
        _ => status(405, "MethodNotAllowed", &format!("{method} {}", uri.path())),
    }
}

pub(crate) fn not_found(p: &ResourcePath) -> Response {
    status(
        404,
        "NotFound",
        &format!("{} \"{}\" not found", p.plural, p.name),
    )
}

fn watch(s: &Shared, p: &ResourcePath, q: &HashMap<String, String>) -> Response {
    let sel = match select::Selector::from_query(q) {
        Ok(sel) => sel,
        Err(e) => return status(400, "BadRequest", &e),
    };
    let since: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (backlog, rx) = s.store.watch_from(p, since);
    let p = p.clone();
    let line = |e: &WatchEvent| {
        let mut b = serde_json::to_vec(e).unwrap_or_default();
        b.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(b))
    };
    let first: Vec<Result<Bytes, std::io::Error>> = backlog
        .iter()
        .filter(|c| c.matches(&p, &sel))
        .map(|c| line(&c.event()))
        .collect();
    let live = futures::stream::unfold((rx, p, sel), move |(mut rx, p, sel)| async move {
        loop {
            match rx.recv().await {
                Ok(c) if c.matches(&p, &sel) => {
                    let item = line(&c.event());
                    return Some((item, (rx, p, sel)));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    let stream = futures::StreamExt::chain(futures::stream::iter(first), live);
    Body::from_stream(stream).into_response()
}
