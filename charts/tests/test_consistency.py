"""The pieces of the chart agree with each other and with the binaries: Service ports, the
webhook's Service, paths and certificate names, the driver name, sockets and host paths, the
flags each binary accepts, and the global ConfigMap's schema."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import (
    MODES,
    NAMESPACE,
    REPO,
    all_values,
    binary_help,
    built_binary,
    containers,
    kinds,
    label_selector_matches,
    merged_values,
    mode_values,
    one,
    pod_specs,
    render,
)

CASES = [mode_values(m) for m in MODES] + [None]
IDS = [f"mode={m}" for m in MODES] + ["values-all"]


def values_of(v):
    return all_values() if v is None else v


def container(spec, name):
    found = [c for c in containers(spec) if c["name"] == name]
    assert len(found) == 1, f"container {name}: {len(found)} found"
    return found[0]


def flag(c, name):
    """The value of --name=value in a container's args (None when absent)."""
    for a in c.get("args") or []:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def workload(objs, kind, name):
    w = one(objs, kind, name)
    return w, w["spec"]["template"]["spec"]


# --- Services ------------------------------------------------------------------------------

@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_services_target_ports_the_containers_listen_on(values):
    objs = render(values_of(values))
    services = kinds(objs, "Service")
    assert services
    for svc in services:
        selected = [(w, spec) for w, spec in pod_specs(objs)
                    if label_selector_matches({"matchLabels": svc["spec"]["selector"]},
                                              w["spec"]["template"]["metadata"]["labels"])]
        assert selected, f"Service {svc['metadata']['name']} selects no pod"
        for w, spec in selected:
            ports = [p for c in spec["containers"] for p in c.get("ports") or []]
            for sp in svc["spec"]["ports"]:
                t = sp.get("targetPort", sp["port"])
                ok = [p for p in ports if p["containerPort"] == t or p.get("name") == t]
                assert ok, (f"Service {svc['metadata']['name']} port {sp['port']} -> {t}: no such "
                            f"container port in {w['kind']} {w['metadata']['name']}: {ports}")


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_metrics_ports_are_where_the_binaries_serve(values):
    v = merged_values(values_of(values))
    objs = render(values_of(values))
    port = v["metrics"]["port"]
    for w, spec in pod_specs(objs):
        for c in spec["containers"]:
            if not c.get("command", [""])[0].startswith("/usr/local/bin/juicefs-") or \
                    c["command"][0].endswith("juicefs-certs"):
                continue
            declared = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
            assert flag(c, "metrics-port") == str(port), c["name"]
            assert declared.get("metrics") == port, (c["name"], declared)
    names = {s["metadata"]["name"] for s in kinds(objs, "Service")}
    for w, _ in pod_specs(objs):
        assert f"{w['metadata']['name']}-metrics" in names, f"no metrics Service for {w['metadata']['name']}"
    for s in kinds(objs, "Service"):
        if s["metadata"]["name"].endswith("-metrics"):
            assert [(p["port"], p["targetPort"]) for p in s["spec"]["ports"]] == [(port, "metrics")]


def test_metrics_services_can_be_turned_off():
    objs = render({"metrics": {"enabled": False}})
    assert not [s for s in kinds(objs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert one(objs, "Service", "juicefs-admission-webhook")


# --- the webhook: Service, paths, certificates --------------------------------------------

def rust_const(path, name):
    m = re.search(rf'const {name}: &str = "([^"]*)";', (REPO / path).read_text())
    assert m, f"{name} not found in {path}"
    return m.group(1)


@pytest.mark.parametrize("values", [mode_values("sidecar|serverless"), None], ids=["both", "values-all"])
def test_webhook_service_paths_and_certificate_agree(values):
    v = merged_values(values_of(values))
    objs = render(values_of(values))
    svc = one(objs, "Service", "juicefs-admission-webhook")
    mwc = one(objs, "MutatingWebhookConfiguration", "juicefs-admission-webhook")
    dep, spec = workload(objs, "Deployment", "juicefs-csi-webhook")
    web = container(spec, "webhook")

    # Paths: the ones juicefs-webhook routes (webhook/src/server.rs).
    served = {rust_const("webhook/src/server.rs", "INJECT_PATH"),
              rust_const("webhook/src/server.rs", "SERVERLESS_PATH")}
    paths = {w["name"]: w["clientConfig"]["service"]["path"] for w in mwc["webhooks"]}
    assert paths == {"sidecar.inject.juicefs.com": "/juicefs/inject-v1-pod",
                     "sidecar.inject.serverless.juicefs.com": "/juicefs/serverless/inject-v1-pod"}
    assert set(paths.values()) == served

    # Service: the MWC's target, port 443 -> the webhook's HTTPS port.
    for w in mwc["webhooks"]:
        ref = w["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"]) == (svc["metadata"]["name"], NAMESPACE)
        sp = [p for p in svc["spec"]["ports"] if p["port"] == ref["port"]]
        assert len(sp) == 1
        target = sp[0]["targetPort"]
        cport = [p for p in web["ports"] if target in (p["name"], p["containerPort"])]
        assert len(cport) == 1
        assert cport[0]["containerPort"] == int(flag(web, "port")) == v["webhook"]["port"]
        assert "caBundle" not in w["clientConfig"], "juicefs-certs owns the caBundle"
    for probe in ("readinessProbe", "livenessProbe"):
        assert web[probe]["httpGet"]["scheme"] == "HTTPS"
        assert web[probe]["httpGet"]["port"] in ("https", v["webhook"]["port"])
    assert {web["readinessProbe"]["httpGet"]["path"], web["livenessProbe"]["httpGet"]["path"]} == {"/readyz", "/healthz"}

    # Certificates: juicefs-certs is told this Service, namespace, Secret and configuration;
    # the DNS names it issues (certs/src/lib.rs) include what the API server dials.
    lib = (REPO / "certs/src/lib.rs").read_text()
    assert 'format!("{service}.{namespace}.svc")' in lib
    for name in ("certs-init", "certs"):
        c = container(spec, name)
        assert flag(c, "service") == svc["metadata"]["name"]
        assert flag(c, "namespace") == "$(POD_NAMESPACE)"
        assert any(e["name"] == "POD_NAMESPACE" and e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
                   for e in c["env"])
        assert flag(c, "webhook-config") == mwc["metadata"]["name"]
        assert flag(c, "secret") == rust_const("certs/src/publish.rs", "SECRET_NAME")
        # It writes where the webhook reads, through the same volume.
        write_dir = flag(c, "write-dir")
        certs_mount = [m for m in c["volumeMounts"] if m["mountPath"] == write_dir]
        assert len(certs_mount) == 1
        web_mount = [m for m in web["volumeMounts"] if m["name"] == certs_mount[0]["name"]]
        assert len(web_mount) == 1
        assert flag(web, "cert") == f"{web_mount[0]['mountPath']}/tls.crt"
        assert flag(web, "key") == f"{web_mount[0]['mountPath']}/tls.key"
    assert flag(container(spec, "certs-init"), "every") is None, "the init container runs once"
    assert int(flag(container(spec, "certs"), "every")) == v["webhook"]["certsEvery"] > 0
    assert [c["name"] for c in spec["initContainers"]] == ["certs-init"]


def test_webhook_configuration_shape():
    objs = render(all_values())
    mwc = one(objs, "MutatingWebhookConfiguration", "juicefs-admission-webhook")
    for w in mwc["webhooks"]:
        assert w["sideEffects"] == "NoneOnDryRun"
        assert w["reinvocationPolicy"] == "IfNeeded"
        assert w["admissionReviewVersions"] == ["v1"]
        assert w["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                               "resources": ["pods"], "scope": "Namespaced"}]
    defaults = one(render(), "MutatingWebhookConfiguration", "juicefs-admission-webhook")
    assert {w["failurePolicy"] for w in defaults["webhooks"]} == {"Fail"}


def selected_webhooks(mwc, ns_labels, pod_labels):
    return [w["name"] for w in mwc["webhooks"]
            if label_selector_matches(w.get("namespaceSelector"), ns_labels)
            and label_selector_matches(w.get("objectSelector"), pod_labels)]


@pytest.mark.parametrize("values", [mode_values("sidecar|serverless"), mode_values("sidecar"), None],
                         ids=["both", "sidecar", "values-all"])
def test_webhook_selects_labelled_namespaces_only_and_never_itself(values):
    objs = render(values_of(values))
    mwc = one(objs, "MutatingWebhookConfiguration", "juicefs-admission-webhook")
    names = {w["name"] for w in mwc["webhooks"]}
    extra = {"team": "ml"} if values is None else {}
    app = {"app": "web"}

    def ns(name, **labels):
        return {"kubernetes.io/metadata.name": name, **extra, **labels}

    inj = {"juicefs.com/enable-injection": "true"}
    srv = {"juicefs.com/enable-serverless-injection": "true"}
    if "sidecar.inject.juicefs.com" in names:
        assert selected_webhooks(mwc, ns("apps", **inj), app) == ["sidecar.inject.juicefs.com"]
    if "sidecar.inject.serverless.juicefs.com" in names:
        assert selected_webhooks(mwc, ns("vk", **srv), app) == ["sidecar.inject.serverless.juicefs.com"]
    # A namespace with both labels is injected once.
    assert len(selected_webhooks(mwc, ns("both", **inj, **srv), app)) == 1
    assert selected_webhooks(mwc, ns("plain"), app) == []
    assert selected_webhooks(mwc, ns("apps", **{"juicefs.com/enable-injection": "false"}), app) == []
    # Never the release namespace, even when someone labels it.
    assert selected_webhooks(mwc, ns(NAMESPACE, **inj, **srv), app) == []
    webhook_pod = one(objs, "Deployment", "juicefs-csi-webhook")["spec"]["template"]["metadata"]["labels"]
    assert selected_webhooks(mwc, ns(NAMESPACE, **inj), webhook_pod) == []
    # Never Mount Pods; opted-out pods are skipped.
    assert selected_webhooks(mwc, ns("apps", **inj, **srv), {"app.kubernetes.io/name": "juicefs-mount"}) == []
    assert selected_webhooks(mwc, ns("apps", **inj, **srv), {"disable.sidecar.juicefs.com/inject": "true"}) == []
    # Already-injected pods still reach the webhook (reinvocation checks them).
    assert selected_webhooks(mwc, ns("apps", **inj), {"done.sidecar.juicefs.com/inject": "true"})
    if values is None:
        assert selected_webhooks(mwc, {"kubernetes.io/metadata.name": "x", **inj}, app) == [], \
            "the extra namespaceExpressions must apply"


def test_sidecar_only_keeps_serving_namespaces_labelled_for_both():
    mwc = one(render({"mountMode": "sidecar"}), "MutatingWebhookConfiguration", "juicefs-admission-webhook")
    labels = {"kubernetes.io/metadata.name": "apps", "juicefs.com/enable-injection": "true",
              "juicefs.com/enable-serverless-injection": "true"}
    assert selected_webhooks(mwc, labels, {}) == ["sidecar.inject.juicefs.com"]


# --- driver name, sockets, host paths ------------------------------------------------------

@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_driver_name_is_the_same_everywhere(values):
    v = merged_values(values_of(values))
    objs = render(values_of(values))
    driver = v["driverName"]
    assert driver == rust_const("mountspec/src/lib.rs", "DRIVER_NAME")
    assert [o["metadata"]["name"] for o in kinds(objs, "CSIDriver")] == [driver]
    for sc in kinds(objs, "StorageClass"):
        assert sc["provisioner"] == driver
    for _, spec in pod_specs(objs):
        for c in containers(spec):
            d = flag(c, "driver-name")
            if c["name"] in ("csi-controller", "csi-node"):
                assert d == driver
    csid = kinds(objs, "CSIDriver")[0]["spec"]
    assert csid["attachRequired"] is False and csid["podInfoOnMount"] is True
    assert csid["fsGroupPolicy"] == "None"


@pytest.mark.parametrize("values", [{}, None], ids=["default", "values-all"])
def test_node_plugin_paths_agree(values):
    v = merged_values(values_of(values))
    objs = render(values_of(values))
    _, spec = workload(objs, "DaemonSet", "juicefs-csi-node")
    vols = {x["name"]: x for x in spec["volumes"]}
    plugin = container(spec, "csi-node")
    reg = container(spec, "node-driver-registrar")
    probe = container(spec, "liveness-probe")
    kubelet = v["kubeletDir"].rstrip("/")
    mounts = {m["name"]: m for m in plugin["volumeMounts"]}

    # The plugin's socket: what it listens on, what its sidecars dial, where kubelet finds it.
    endpoint = flag(plugin, "endpoint")
    assert endpoint.startswith("unix://")
    sock = endpoint[len("unix://"):]
    sock_dir = sock.rsplit("/", 1)[0]
    assert mounts["plugin-dir"]["mountPath"] == sock_dir
    assert flag(reg, "csi-address") == sock == flag(probe, "csi-address")
    for c in (reg, probe):
        assert any(m["name"] == "plugin-dir" and m["mountPath"] == sock_dir for m in c["volumeMounts"])
    plugin_host = vols["plugin-dir"]["hostPath"]["path"]
    assert plugin_host == f"{kubelet}/plugins/{v['driverName']}"
    assert flag(reg, "kubelet-registration-path") == f"{plugin_host}/csi.sock"
    assert vols["registration-dir"]["hostPath"]["path"] == f"{kubelet}/plugins_registry"
    assert any(m["name"] == "registration-dir" and m["mountPath"] == "/registration" for m in reg["volumeMounts"])

    # kubelet dir and Mount Pod dir: same path inside as on the host, Bidirectional.
    assert flag(plugin, "kubelet-dir") == kubelet == vols["kubelet-dir"]["hostPath"]["path"] \
        == mounts["kubelet-dir"]["mountPath"]
    assert flag(plugin, "mount-dir") == v["jfsMountDir"] == vols["jfs-dir"]["hostPath"]["path"] \
        == mounts["jfs-dir"]["mountPath"]
    assert mounts["kubelet-dir"]["mountPropagation"] == "Bidirectional"
    assert mounts["jfs-dir"]["mountPropagation"] == "Bidirectional"

    # Global config: the ConfigMap mountspec names, where --config points.
    cfg = flag(plugin, "config")
    assert vols["config"]["configMap"]["name"] == rust_const("mountspec/src/config.rs", "CONFIGMAP_NAME")
    assert cfg == f"{mounts['config']['mountPath']}/{rust_const('mountspec/src/config.rs', 'CONFIGMAP_KEY')}"

    # Health: the livenessprobe sidecar serves the port the plugin's probe uses.
    hp = {p["name"]: p["containerPort"] for p in plugin["ports"]}
    assert flag(probe, "health-port") == str(hp["healthz"]) == str(v["node"]["healthPort"])
    assert plugin["livenessProbe"]["httpGet"]["port"] == "healthz"
    rp = {p["name"]: p["containerPort"] for p in reg["ports"]}
    assert flag(reg, "http-endpoint") == f":{rp[reg['livenessProbe']['httpGet']['port']]}"

    # Identity from the downward API.
    assert flag(plugin, "node-id") == "$(NODE_NAME)"
    env = {e["name"]: e for e in plugin["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # The kubelet's /pods (node IP from the downward API) only when asked for.
    polling = v["node"]["ifPollingKubelet"]
    assert ("--kubelet-url=https://$(HOST_IP):10250" in plugin["args"]) == polling
    if polling:
        assert env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    else:
        assert "HOST_IP" not in env


@pytest.mark.parametrize("values", [{}, None], ids=["default", "values-all"])
def test_controller_socket_is_shared(values):
    objs = render(values_of(values))
    _, spec = workload(objs, "Deployment", "juicefs-csi-controller")
    plugin = container(spec, "csi-controller")
    endpoint = flag(plugin, "endpoint")
    assert endpoint == "unix:///var/lib/csi/sockets/pluginproxy/csi.sock"
    sock = endpoint[len("unix://"):]
    sock_dir = sock.rsplit("/", 1)[0]
    vol = [m["name"] for m in plugin["volumeMounts"] if m["mountPath"] == sock_dir]
    assert len(vol) == 1
    assert "emptyDir" in {x["name"]: x for x in spec["volumes"]}[vol[0]]
    for name in ("csi-provisioner", "csi-resizer"):
        c = container(spec, name)
        assert flag(c, "csi-address") == sock
        assert any(m["name"] == vol[0] and m["mountPath"] == sock_dir for m in c["volumeMounts"])
    prov = container(spec, "csi-provisioner")
    assert "--extra-create-metadata" in prov["args"], "pathPattern needs the PVC name and namespace"
    # Every container that acts on the API on its own elects a leader: the sidecars, and
    # juicefs-csi controller for its background work.
    for c in spec["containers"]:
        assert "--leader-election" in c["args"], c["name"]


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_images_and_mount_image(values):
    v = merged_values(values_of(values))
    objs = render(values_of(values))
    app = yaml.safe_load((REPO / "charts/juicefs-csi-driver/Chart.yaml").read_text())["appVersion"]
    image = f"{v['image']['repository']}:{v['image']['tag'] or app}"
    mount = f"{v['mountImage']['repository']}:{v['mountImage']['tag'] or app}"
    sidecar_images = {s["image"] for s in v["sidecars"].values()}
    for _, spec in pod_specs(objs):
        for c in containers(spec):
            if c["name"] in ("csi-provisioner", "csi-resizer", "node-driver-registrar", "liveness-probe"):
                assert c["image"] in sidecar_images
                assert re.search(r":v\d+\.\d+\.\d+$", c["image"]), f"unpinned {c['image']}"
            else:
                assert c["image"] == image, c["name"]
            if c["name"] in ("webhook", "csi-node"):
                assert flag(c, "mount-image") == mount


def test_default_sidecar_images_are_pinned_sig_storage_releases():
    v = merged_values({})
    expected = {"provisioner": ("csi-provisioner", 5), "resizer": ("csi-resizer", 1),
                "nodeDriverRegistrar": ("csi-node-driver-registrar", 2), "livenessProbe": ("livenessprobe", 2)}
    for key, (name, major) in expected.items():
        m = re.fullmatch(rf"registry\.k8s\.io/sig-storage/{name}:v(\d+)\.(\d+)\.(\d+)", v["sidecars"][key]["image"])
        assert m and int(m.group(1)) == major, v["sidecars"][key]["image"]


# --- flags against the binaries' argument parsers ------------------------------------------

BINARIES = {"juicefs-webhook": "webhook", "juicefs-certs": "certs", "juicefs-csi": "csi"}


def clap_flags(crate: str) -> dict[str, str]:
    """Long flags declared with clap's derive API in a crate: name -> field type."""
    flags = {}
    for path in (REPO / crate / "src").rglob("*.rs"):
        text = path.read_text()
        for m in re.finditer(r"#\[(?:arg|clap)\(([^\]]*)\)\]\s*(?:#\[[^\]]*\]\s*|///[^\n]*\n\s*)*"
                             r"(?:pub(?:\([^)]*\))?\s+)?(\w+)\s*:\s*([^,\n]+)", text):
            attr, field, ty = m.groups()
            if not re.search(r"\blong\b", attr):
                continue
            explicit = re.search(r'\blong\s*=\s*"([^"]+)"', attr)
            flags[explicit.group(1) if explicit else field.replace("_", "-")] = ty.strip()
    return flags


def chart_flags(objs):
    """(binary, flag, value or None) for every --flag the chart passes to our binaries."""
    for _, spec in pod_specs(objs):
        for c in containers(spec):
            cmd = (c.get("command") or [""])[0]
            binary = cmd.rsplit("/", 1)[-1]
            if binary not in BINARIES:
                continue
            for a in c.get("args") or []:
                if a.startswith("--"):
                    name, _, value = a[2:].partition("=")
                    yield binary, name, (value if "=" in a else None)


def test_clap_parser_reader_finds_known_flags():
    """The parser reader works (so the next test can fail)."""
    flags = clap_flags("webhook")
    assert {"port", "cert", "key", "config", "mount-image", "log-json"} <= set(flags)
    assert flags["log-json"] == "bool" and flags["port"] == "u16"


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_chart_passes_only_flags_the_binaries_accept(values):
    objs = render(values_of(values))
    problems = []
    checked = set()
    for binary, name, value in chart_flags(objs):
        declared = clap_flags(BINARIES[binary])
        assert declared, f"no clap flags found in {BINARIES[binary]}/src"
        checked.add(binary)
        if name not in declared:
            problems.append(f"{binary} has no --{name}")
            continue
        is_bool = declared[name] == "bool"
        if is_bool and value is not None:
            problems.append(f"{binary} --{name} is a switch, the chart gives it a value")
        if not is_bool and value is None:
            problems.append(f"{binary} --{name} takes a value, the chart gives none")
    assert not problems, problems
    assert {"juicefs-webhook", "juicefs-certs"} & checked or "mountpod" in str(values)


def csi_containers(objs):
    """(subcommand, container) of every container that runs juicefs-csi."""
    for _, spec in pod_specs(objs):
        for c in containers(spec):
            if (c.get("command") or [""])[0].rsplit("/", 1)[-1] == "juicefs-csi":
                yield c["args"][0], c


@pytest.fixture(scope="module")
def csi_binary():
    path = built_binary("juicefs-csi")
    if path is None:
        pytest.skip("juicefs-csi is not built (target/debug or $CARGO_TARGET_DIR/debug)")
    return path


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_csi_binary_flags(values, csi_binary):
    """Each juicefs-csi container's flags, against `juicefs-csi <subcommand> --help` of the
    built binary: the subcommand has the flag, and a switch gets no value, a value flag one."""
    objs = render(values_of(values))
    problems = []
    seen = set()
    for sub, c in csi_containers(objs):
        assert sub in ("node", "controller"), c["args"]
        seen.add(sub)
        flags, _ = binary_help(csi_binary, sub)
        assert {"endpoint", "namespace", "driver-name"} <= set(flags), "help output not understood"
        for a in c["args"][1:]:
            assert a.startswith("--"), a
            name, eq, _ = a[2:].partition("=")
            if name not in flags:
                problems.append(f"juicefs-csi {sub} has no --{name}")
            elif flags[name] != bool(eq):
                problems.append(f"juicefs-csi {sub} --{name}: "
                                + ("takes a value" if flags[name] else "is a switch"))
    assert not problems, problems
    assert "controller" in seen


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_csi_env_is_what_the_binary_reads(values, csi_binary):
    """The chart sets no environment variable on juicefs-csi that it does not read: each is a
    flag's `[env: ...]` in --help, or expanded in the args as $(NAME). Extra variables from
    controller.envs / node.envs are the user's."""
    v = merged_values(values_of(values))
    objs = render(values_of(values))
    for sub, c in csi_containers(objs):
        _, read = binary_help(csi_binary, sub)
        user = {e["name"] for e in v[sub]["envs"]}
        used = {n for a in c["args"] for n in re.findall(r"\$\((\w+)\)", a)}
        unread = {e["name"] for e in c.get("env") or []} - user - read - used
        assert not unread, f"juicefs-csi {sub} does not read {sorted(unread)}"
    node = dict(csi_containers(objs)).get("node")
    if node and v["node"]["mountPodNonPreempting"]:
        assert {"name": "JUICEFS_MOUNT_PRIORITY_NAME", "value": "juicefs-mount-priority-nonpreempting"} \
            in node["env"]


# --- the global ConfigMap ------------------------------------------------------------------

def serde_fields(struct: str) -> set[str]:
    """camelCase field names of a `#[serde(rename_all = "camelCase")]` struct in config.rs."""
    text = (REPO / "mountspec/src/config.rs").read_text()
    m = re.search(rf"pub struct {struct} \{{(.*?)\n\}}", text, re.S)
    assert m, struct
    out = set()
    pending_rename = None
    for line in m.group(1).splitlines():
        r = re.search(r'rename = "([^"]+)"', line)
        if r:
            pending_rename = r.group(1)
            continue
        f = re.match(r"\s*pub (\w+):", line)
        if f:
            name = f.group(1)
            camel = re.sub(r"_(\w)", lambda x: x.group(1).upper(), name)
            out.add(pending_rename or camel)
            pending_rename = None
    return out


@pytest.mark.parametrize("values", [{}, None], ids=["default", "values-all"])
def test_global_config_uses_only_keys_the_binaries_know(values):
    objs = render(values_of(values))
    cm = one(objs, "ConfigMap", "juicefs-csi-driver-config")
    config = yaml.safe_load(cm["data"]["config.yaml"]) or {}
    top, patch, pvc = serde_fields("GlobalConfig"), serde_fields("MountPodPatch"), serde_fields("PvcSelector")
    assert {"enableNativeSidecar", "mountPodPatch"} <= top and {"pvcSelector", "hostPID"} <= patch
    assert set(config) <= top, set(config) - top
    for p in config.get("mountPodPatch") or []:
        assert set(p) <= patch, set(p) - patch
        assert set(p.get("pvcSelector") or {}) <= pvc
    if values is None:
        assert config["enableNativeSidecar"] is True and len(config["mountPodPatch"]) == 3
    assert "enabled" not in config and "manageByHelm" not in config


def test_global_config_can_be_left_out():
    objs = render({"globalConfig": {"enabled": False}})
    assert not [o for o in objs if o["kind"] == "ConfigMap"]
    # Pods still start: the mounted ConfigMap is optional and the binaries default.
    for _, spec in pod_specs(objs):
        for vol in spec.get("volumes") or []:
            if "configMap" in vol:
                assert vol["configMap"]["optional"] is True
