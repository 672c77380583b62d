"""The chart renders with the real Helm SDK for every mountMode and for a values file that sets
every key; lint is clean; every object validates against the Kubernetes 1.29 and 1.33 schemas;
what each mode renders (and does not)."""

from __future__ import annotations

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from conftest import (
    CHART,
    MODES,
    NAMESPACE,
    TESTS,
    all_values,
    containers,
    kinds,
    load_yaml,
    mode_values,
    one,
    pod_specs,
    render,
    render_notes,
    strip,
)

CASES = [(f"mode={m}", mode_values(m)) for m in MODES] + [("values-all", None)]
CASE_IDS = [c[0] for c in CASES]


def case_values(values):
    return all_values() if values is None else values


# kubernetes-validate ships one schema set per minor; use the exact versions it has.
def _versions():
    have = kubernetes_validate.utils.all_versions()
    out = []
    for minor in ("1.29", "1.33"):
        match = [v for v in have if v == minor or v.startswith(minor + ".")]
        assert match, f"kubernetes-validate has no {minor} schemas (has {have})"
        out.append(match[-1])
    return out


K8S_VERSIONS = _versions()


@pytest.mark.parametrize("values", [c[1] for c in CASES], ids=CASE_IDS)
def test_renders(values):
    objs = render(case_values(values))
    assert objs, "nothing rendered"
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    assert len(names) == len(set(names)), f"duplicate objects: {names}"
    for o in objs:
        if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "CSIDriver", "StorageClass",
                         "MutatingWebhookConfiguration", "PriorityClass"):
            assert "namespace" not in o["metadata"], o["metadata"]
        else:
            assert o["metadata"].get("namespace") == NAMESPACE, (o["kind"], o["metadata"])


@pytest.mark.parametrize("kube", ["v1.29.0", "v1.33.0"])
@pytest.mark.parametrize("values", [c[1] for c in CASES], ids=CASE_IDS)
def test_lint_has_no_errors(values, kube):
    report = helm.lint(str(CHART), case_values(values), namespace=NAMESPACE, strict=True,
                       kube_version=kube)
    errors = [m for m in report["messages"] if m["severity"] >= 3]
    assert not errors and not report["errors"], report
    # Strict lint: warnings count too (the only allowed finding is the icon hint).
    warnings = [m for m in report["messages"] if m["severity"] == 2]
    assert not warnings, warnings


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("values", [c[1] for c in CASES], ids=CASE_IDS)
def test_objects_validate_against_kubernetes_schema(values, version):
    for o in render(case_values(values)):
        try:
            kubernetes_validate.validate(strip(o), version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{o['kind']}/{o['metadata']['name']} ({o['_template']}) against "
                        f"{version}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"no {version} schema for {o['kind']} {o['apiVersion']}: {e.message}")


def test_sidecar_only_has_no_daemonset_and_no_mount_pod_pieces():
    objs = render({"mountMode": "sidecar"})
    assert not kinds(objs, "DaemonSet")
    assert not any(o["metadata"]["name"] == "juicefs-csi-node" for o in objs)
    hooks = one(objs, "MutatingWebhookConfiguration", "juicefs-admission-webhook")["webhooks"]
    assert [w["name"] for w in hooks] == ["sidecar.inject.juicefs.com"]


def test_mountpod_only_has_no_webhook():
    objs = render({"mountMode": "mountpod"})
    assert not kinds(objs, "MutatingWebhookConfiguration")
    assert not any("webhook" in o["metadata"]["name"] for o in objs)
    assert len(kinds(objs, "DaemonSet")) == 1


@pytest.mark.parametrize("mode", ["sidecar|mountpod", None, "mountpod|sidecar"])
def test_both_paths_render_webhook_and_daemonset(mode):
    objs = render(mode_values(mode))
    assert len(kinds(objs, "DaemonSet")) == 1
    assert len(kinds(objs, "MutatingWebhookConfiguration")) == 1


def test_default_mode_is_sidecar_and_mountpod():
    assert load_yaml(CHART / "values.yaml")["mountMode"] == "sidecar|mountpod"


def _host_paths(objs):
    found = []
    for w, spec in pod_specs(objs):
        for v in spec.get("volumes") or []:
            if "hostPath" in v:
                found.append((w["metadata"]["name"], v["name"], v["hostPath"]["path"]))
    return found


def _privileged(objs):
    found = []
    for w, spec in pod_specs(objs):
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            found.append((w["metadata"]["name"], "host namespaces"))
        for c in containers(spec):
            sc = c.get("securityContext") or {}
            if sc.get("privileged") or sc.get("allowPrivilegeEscalation", True) is not False:
                found.append((w["metadata"]["name"], c["name"]))
    return found


def test_serverless_has_no_hostpath_no_privileged_pod_no_daemonset():
    objs = render({"mountMode": "serverless"})
    assert not kinds(objs, "DaemonSet")
    assert _host_paths(objs) == []
    assert _privileged(objs) == []
    hooks = one(objs, "MutatingWebhookConfiguration", "juicefs-admission-webhook")["webhooks"]
    assert [w["name"] for w in hooks] == ["sidecar.inject.serverless.juicefs.com"]
    # The checks above can fail: the Mount Pod path does render host paths and privilege.
    both = render({"mountMode": "serverless|mountpod"})
    assert _host_paths(both) and _privileged(both)


@pytest.mark.parametrize("bad", ["sidecars", "sidecar,mountpod", "", "process", "sidecar|"])
def test_bad_mount_mode_is_refused(bad):
    with pytest.raises((helm.HelmRenderError, helm.HelmValuesError)):
        render({"mountMode": bad})


def test_bad_mount_mode_message_names_the_key():
    with pytest.raises(helm.HelmError) as e:
        render({"mountMode": "sidecar|fuse"})
    assert "mountMode" in str(e.value)


def test_duplicate_modes_render_once():
    objs = render({"mountMode": "sidecar|mountpod|sidecar"})
    hooks = one(objs, "MutatingWebhookConfiguration", "juicefs-admission-webhook")["webhooks"]
    assert [w["name"] for w in hooks] == ["sidecar.inject.juicefs.com"]


def test_other_driver_name_is_refused_with_the_reason():
    with pytest.raises(helm.HelmRenderError) as e:
        render({"driverName": "juicefs.example.com"})
    assert "only csi.juicefs.com" in str(e.value)


def test_enterprise_token_is_refused():
    sc = {"name": "ee", "enabled": True, "backend": {"name": "v", "token": "t"}}
    with pytest.raises(helm.HelmRenderError) as e:
        render({"storageClasses": [sc]})
    assert "metaurl" in str(e.value) or "Enterprise" in str(e.value)


def test_leaderless_replicas_are_refused():
    with pytest.raises(helm.HelmRenderError) as e:
        render({"controller": {"replicas": 2, "leaderElection": {"enabled": False}}})
    assert "leaderElection" in str(e.value)
    objs = render({"controller": {"replicas": 1, "leaderElection": {"enabled": False}}})
    ctl = one(objs, "Deployment", "juicefs-csi-controller")
    args = [a for c in ctl["spec"]["template"]["spec"]["containers"] for a in c.get("args", [])]
    assert "--leader-election" not in args
    role = one(objs, "Role", "juicefs-csi-controller")
    assert not [r for r in role["rules"] if "leases" in r["resources"]], "no Lease rule without election"


def test_schema_rejects_unknown_keys():
    with pytest.raises(helm.HelmValuesError):
        render({"webhok": {"replicas": 1}})
    with pytest.raises(helm.HelmValuesError):
        render({"webhook": {"timeoutSeconds": 31}})


def test_values_all_covers_every_key():
    """values-all.yaml sets every key that values.yaml has (lists: the keys of their items)."""
    defaults = load_yaml(CHART / "values.yaml")
    every = all_values()
    missing = []

    def walk(d, a, path):
        if isinstance(d, dict):
            if not isinstance(a, dict):
                missing.append(path)
                return
            for k, v in d.items():
                if k not in a:
                    missing.append(f"{path}.{k}".lstrip("."))
                else:
                    walk(v, a[k], f"{path}.{k}")
        elif isinstance(d, list) and d and isinstance(d[0], dict):
            if not a or not isinstance(a[0], dict):
                missing.append(path)
                return
            walk(d[0], a[0], f"{path}[0]")

    walk(defaults, every, "")
    assert not missing, f"values-all.yaml does not set: {missing}"


def test_values_all_changes_what_it_sets():
    """Spot checks that the exercised keys reach the manifests."""
    objs = render(all_values())
    node = one(objs, "DaemonSet", "juicefs-csi-node")
    spec = node["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    plugin = next(c for c in spec["containers"] if c["name"] == "csi-node")
    assert "--kubelet-dir=/var/lib/k0s/kubelet" in plugin["args"]
    assert "--mount-dir=/srv/juicefs/volume" in plugin["args"]
    assert "--mount-image=registry.example.com/juicefs-rs-mount:0.1.0-test" in plugin["args"]
    env = {e["name"]: e.get("value") for e in plugin["env"]}
    assert env["JUICEFS_MOUNT_PRIORITY_NAME"] == "juicefs-mount-priority-nonpreempting"
    assert env["RUST_LOG"] == "info"
    assert (env["KUBE_QPS"], env["KUBE_BURST"]) == ("50", "100")
    one(objs, "PriorityClass", "juicefs-mount-priority-nonpreempting")
    reg = next(c for c in spec["containers"] if c["name"] == "node-driver-registrar")
    assert "--kubelet-registration-path=/var/lib/k0s/kubelet/plugins/csi.juicefs.com/csi.sock" in reg["args"]
    hook = one(objs, "MutatingWebhookConfiguration", "juicefs-admission-webhook")
    assert {w["failurePolicy"] for w in hook["webhooks"]} == {"Ignore"}
    assert {w["timeoutSeconds"] for w in hook["webhooks"]} == {10}
    csid = one(objs, "CSIDriver", "csi.juicefs.com")
    assert "helm.sh/hook" not in csid["metadata"]["annotations"]
    assert one(objs, "PodDisruptionBudget", "juicefs-csi-webhook")["spec"]["minAvailable"] == 2
    wh = one(objs, "Deployment", "juicefs-csi-webhook")
    assert wh["spec"]["replicas"] == 3
    assert one(objs, "Deployment", "juicefs-csi-controller")["spec"]["replicas"] == 3


def test_manage_by_helm_false_renders_the_configmap_only_on_install():
    v = {"globalConfig": {"manageByHelm": False}}
    with helm.Chart.load(str(CHART)) as c:
        install = c.render(v, name="x", namespace="y", is_install=True)
        upgrade = c.render(v, name="x", namespace="y", is_upgrade=True, is_install=False)
    assert "juicefs-csi-driver-config" in install["juicefs-csi-driver/templates/configmap.yaml"]
    assert "juicefs-csi-driver-config" not in upgrade.get("juicefs-csi-driver/templates/configmap.yaml", "")


def test_storage_class_and_secret_keep_the_go_driver_contract():
    objs = render(all_values())
    sc = one(objs, "StorageClass", "juicefs-fast")
    p = sc["parameters"]
    assert sc["provisioner"] == "csi.juicefs.com"
    assert sc["volumeBindingMode"] == "Immediate"
    assert sc["reclaimPolicy"] == "Delete" and sc["allowVolumeExpansion"] is True
    assert sc["mountOptions"] == ["cache-size=204800", "writeback_cache"]
    for kind in ("provisioner", "node-publish", "controller-expand"):
        assert p[f"csi.storage.k8s.io/{kind}-secret-name"] == "juicefs-fast-secret"
        assert p[f"csi.storage.k8s.io/{kind}-secret-namespace"] == NAMESPACE
    assert p["pathPattern"] == "${.pvc.namespace}-${.pvc.name}"
    assert p["juicefs/mount-cpu-limit"] == "2" and p["juicefs/mount-memory-request"] == "1Gi"
    assert p["juicefs/mount-image"].endswith(":0.1.0-test")
    assert yaml.safe_load(p["juicefs/mount-labels"]) == {"team": "storage"}
    secret = one(objs, "Secret", "juicefs-fast-secret")
    assert secret["stringData"] == {
        "name": "myjfs",
        "metaurl": "redis://:pass@redis.juicefs-system:6379/1",
        "storage": "s3",
        "bucket": "https://s3.example.com/myjfs",
        "access-key": "AKIAEXAMPLE",
        "secret-key": "secretexample",
        "envs": '{"TZ":"UTC"}',
        "format-options": "block-size=4096,compress=lz4",
        "trash-days": "1",
    }
    shared = one(objs, "StorageClass", "juicefs-shared")
    assert shared["parameters"]["csi.storage.k8s.io/node-publish-secret-name"] == "juicefs-shared-secret"
    assert "csi.storage.k8s.io/controller-expand-secret-name" not in shared["parameters"]
    assert not [o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "juicefs-shared-secret"]
    # Disabled by default: nothing rendered.
    assert not kinds(render(), "StorageClass")


@pytest.mark.parametrize("mode", MODES)
def test_notes_say_how_to_label_and_check(mode):
    notes = render_notes(mode_values(mode))
    modes = (mode or "sidecar|mountpod").split("|")
    assert "kubectl -n" in notes and "get pods" in notes
    assert ("juicefs.com/enable-injection=true" in notes) == ("sidecar" in modes)
    assert ("juicefs.com/enable-serverless-injection=true" in notes) == ("serverless" in modes)
    assert ("daemonset/juicefs-csi-node" in notes) == ("mountpod" in modes)


def test_single_webhook_replica_gets_no_disruption_budget():
    assert not kinds(render({"webhook": {"replicas": 1}}), "PodDisruptionBudget")
    pdb = one(render(), "PodDisruptionBudget", "juicefs-csi-webhook")
    dep = one(render(), "Deployment", "juicefs-csi-webhook")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]

